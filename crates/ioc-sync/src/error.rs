//! The crate's error type.

use crate::config::ConfigError;

/// A boxed source error from a client crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the engine, by phase. [`Error::is_retryable`] says whether waiting
/// and trying again can help (the engine retries those itself, blocking the cursor).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (never retryable).
    #[error("invalid configuration")]
    Config(#[source] ConfigError),
    /// A Falcon request failed.
    #[error("falcon request failed during {phase}")]
    Falcon {
        /// `authenticate`, `lookup`, `create`, `update`, `delete`, `list`.
        phase: &'static str,
        /// Whether a retry can help (5xx, 429, transport, timeout).
        retryable: bool,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// An OpenCTI request (GraphQL) failed.
    #[error("opencti request failed during {phase}")]
    OpenCti {
        /// `health check`, `register`, `ping`, `stream collection`, `indicators`.
        phase: &'static str,
        /// Whether a retry can help.
        retryable: bool,
        /// The client error.
        #[source]
        source: BoxError,
    },
    /// The live stream ended for good (unauthorized, unknown or stopped stream).
    #[error("live stream ended")]
    StreamEnded(#[source] BoxError),
    /// The local state file could not be read or written.
    #[error("cannot access the state file")]
    StateFile(#[source] std::io::Error),
    /// The dead-letter file could not be written.
    #[error("cannot write the dead-letter file")]
    DeadLetterFile(#[source] std::io::Error),
    /// `reconcile` would remove more IOCs than allowed without confirmation; nothing was written.
    #[error(
        "reconcile would remove {removals} IOCs, more than the limit of {limit}: nothing was written; \
         check the plan with --dry-run, then confirm with --yes or raise --max-removals"
    )]
    RemovalLimit {
        /// IOCs the plan removes (deletes and soft deletes).
        removals: usize,
        /// The allowed number.
        limit: usize,
    },
    /// The pattern of an input could not be read (the `map` command).
    #[error("invalid input")]
    Input(#[source] BoxError),
}

impl Error {
    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Falcon { retryable, .. } | Error::OpenCti { retryable, .. } => *retryable,
            Error::StateFile(_) | Error::DeadLetterFile(_) => true,
            Error::Config(_)
            | Error::StreamEnded(_)
            | Error::Input(_)
            | Error::RemovalLimit { .. } => false,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
