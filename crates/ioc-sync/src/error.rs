//! The crate's error type.

use std::path::PathBuf;

use crate::config::ConfigError;

/// A boxed source error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the engine, by phase. [`Error::is_retryable`] says whether waiting
/// and trying again can help (the engine retries those itself, blocking the cursor); for Falcon and
/// OpenCTI it is the client crate's own classification, never re-decided here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (never retryable).
    #[error("invalid configuration")]
    Config(#[source] ConfigError),
    /// A Falcon request failed.
    #[error("falcon request failed during {phase}")]
    Falcon {
        /// `client setup`, `lookup`, `create`, `update`, `delete`, `list`, `check`.
        phase: &'static str,
        /// The SDK error (status, `errors[]`, trace id, retry classification).
        #[source]
        source: falcon_sdk::Error,
    },
    /// An OpenCTI request (GraphQL) failed.
    #[error("opencti request failed during {phase}")]
    OpenCti {
        /// `health check`, `register`, `ping`, `stream collection`, `indicators`.
        phase: &'static str,
        /// The client error.
        #[source]
        source: opencti_client::Error,
    },
    /// The live stream ended for good (unauthorized, unknown or stopped stream).
    #[error("live stream ended")]
    StreamEnded(#[source] opencti_client::Error),
    /// The local state file could not be read or written.
    #[error("cannot access the state file {}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The local state file belongs to another stream, platform or connector.
    #[error(
        "the state file {} was written for {found}, not for this connector ({expected}); \
         remove it (or point IOC_SYNC_STATE_FILE elsewhere) to start over",
        path.display()
    )]
    StateMismatch {
        /// The file.
        path: PathBuf,
        /// What the file says it belongs to.
        found: String,
        /// What this run is configured for.
        expected: String,
    },
    /// The dead-letter file could not be written.
    #[error("cannot write the dead-letter file {}", path.display())]
    DeadLetterFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
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
            Error::Falcon { source, .. } => source.is_retryable(),
            Error::OpenCti { source, .. } => source.is_retryable(),
            // A full disk or a read-only volume may be fixed while the engine waits.
            Error::DeadLetterFile { .. } => true,
            Error::StateFile { .. }
            | Error::StateMismatch { .. }
            | Error::Config(_)
            | Error::StreamEnded(_)
            | Error::Input(_)
            | Error::RemovalLimit { .. } => false,
        }
    }

    /// Falcon refused the credentials or the scope: the token request failed with a 4xx (wrong
    /// secret, IP allow-list, other cloud), or a call answered 401 after the SDK's token refresh, or
    /// 403 (missing `ioc:write`/`ioc:read` scope). Retrying cannot help until an operator acts; the
    /// binary exits with its own code (`docs/operations.md`).
    pub fn is_falcon_auth(&self) -> bool {
        let Error::Falcon { source, .. } = self else {
            return false;
        };
        match source {
            falcon_sdk::Error::Auth { status, .. } => status.is_some_and(|s| s.is_client_error()),
            e => matches!(e.status().map(|s| s.as_u16()), Some(401 | 403)),
        }
    }
}

/// `error: cause: cause` for an error chain (what `anyhow`'s `{:#}` prints).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn api(status: u16) -> falcon_sdk::Error {
        falcon_sdk::Error::Api {
            status: falcon_sdk::StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            detail: Box::new(falcon_sdk::ApiErrorDetail {
                endpoint: "GET /iocs/combined/indicator/v1".into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn retryability_is_the_sdks() {
        let f = |s| Error::Falcon {
            phase: "lookup",
            source: api(s),
        };
        assert!(f(500).is_retryable());
        assert!(f(429).is_retryable());
        for s in [400, 401, 403, 414] {
            assert!(!f(s).is_retryable(), "{s}");
        }
        assert!(f(401).is_falcon_auth() && f(403).is_falcon_auth());
        assert!(!f(400).is_falcon_auth() && !f(500).is_falcon_auth());
        let auth = |s: Option<u16>| Error::Falcon {
            phase: "authenticate",
            source: falcon_sdk::Error::Auth {
                status: s.map(|s| falcon_sdk::StatusCode::from_u16(s).unwrap()),
                detail: "x".into(),
            },
        };
        assert!(auth(Some(403)).is_falcon_auth() && auth(Some(400)).is_falcon_auth());
        assert!(!auth(Some(503)).is_falcon_auth() && !auth(None).is_falcon_auth());
    }
}
