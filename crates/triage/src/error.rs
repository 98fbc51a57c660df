//! The one public error type of the crate.

/// Everything that can go wrong in a triage run, by failure phase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input from the caller (a flag, a template, a host list); never sent anywhere.
    #[error("invalid {what}")]
    Invalid {
        /// What was wrong (e.g. `collector template for windows`).
        what: String,
        /// Detail.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Falcon API call failed.
    #[error("falcon api call failed: {operation}")]
    Falcon {
        /// Which call (e.g. `batch init`).
        operation: &'static str,
        /// Whether repeating the call may help.
        retryable: bool,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Cado platform API call failed.
    #[error("cado api call failed: {operation}")]
    Cado {
        /// Which call.
        operation: &'static str,
        /// Whether repeating the call may help.
        retryable: bool,
        /// Detail.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing the journal failed.
    #[error("journal error at {path}")]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// Detail.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether repeating the failed operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Falcon { retryable, .. } | Error::Cado { retryable, .. } => *retryable,
            Error::Invalid { .. } | Error::Journal { .. } => false,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            source: detail.into().into(),
        }
    }

    pub(crate) fn journal(
        path: &std::path::Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Journal {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
