//! The crate's single error type.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// One item of a Falcon response's `errors[]` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApiErrorItem {
    /// Numeric error code (often the HTTP status, sometimes a Falcon code such as `40401`).
    #[serde(default)]
    pub code: Option<i64>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Optional id of the entity the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Details of an API error response (the `source()` of [`Error::Api`] and [`Error::Auth`]).
#[derive(Debug, Clone, Default)]
pub struct ApiErrorDetail {
    /// The `errors[]` array of the response (may be empty).
    pub errors: Vec<ApiErrorItem>,
    /// `meta.trace_id` of the response, or its `X-Cs-Traceid` header.
    pub trace_id: Option<String>,
    /// The request method and path (no query string, never a secret).
    pub endpoint: String,
    /// A short excerpt of the body when it was not a Falcon envelope.
    pub body_excerpt: Option<String>,
}

impl fmt::Display for ApiErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.endpoint)?;
        if let (true, Some(b)) = (self.errors.is_empty(), &self.body_excerpt) {
            write!(f, ": {b}")?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            match e.code {
                Some(c) => write!(f, "{sep}[{c}] {}", e.message)?,
                None => write!(f, "{sep}{}", e.message)?,
            }
        }
        if let Some(t) = &self.trace_id {
            write!(f, " (trace id {t})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiErrorDetail {}

/// Where a response body failed to decode (the `source()` of [`Error::Decode`]).
#[derive(Debug)]
pub struct DecodeDetail {
    /// JSON path of the value that failed (e.g. `resources[3].expiration`).
    pub path: String,
    /// The serde error message.
    pub message: String,
    /// The request method and path.
    pub endpoint: String,
    /// The first bytes of the body (at most [`DecodeDetail::EXCERPT_LEN`] characters); `None` when the
    /// body may hold a secret (token endpoint).
    pub excerpt: Option<String>,
}

impl DecodeDetail {
    /// Maximum length of the body excerpt kept in decode errors.
    pub const EXCERPT_LEN: usize = 512;
}

impl fmt::Display for DecodeDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at `{}`: {}", self.endpoint, self.path, self.message)?;
        if let Some(e) = &self.excerpt {
            write!(f, "; body starts with: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeDetail {}

/// How an error may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryKind {
    /// Do not retry: the same request would fail the same way.
    No,
    /// Transient: retry after a backoff (5xx, connection failure).
    Transient,
    /// Rate limited: retry after the server's hint.
    Throttled,
}

/// Every failure of the SDK. Variants follow the phase in which the call failed.
///
/// `Display` is a short phrase; the detail (Falcon `errors[]`, trace id, JSON path) is in
/// [`std::error::Error::source`]. Print with `{:#}` (anyhow) or walk the chain to see it all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call was never sent: an argument or setting is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Configuration (builder or environment) is incomplete or invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The OAuth2 token could not be obtained.
    #[error("authentication failed{}", status_suffix(*.status))]
    Auth {
        /// HTTP status of the token endpoint, when it answered.
        status: Option<StatusCode>,
        /// Response details.
        #[source]
        detail: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The request failed in transport (DNS, connect, TLS, reset, body read).
    #[error("request failed")]
    Transport {
        /// True when the request provably never reached the server (connect failure).
        not_sent: bool,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The request timed out (it may have been processed).
    #[error("request timed out")]
    Timeout {
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The response body could not be decoded.
    #[error("cannot decode response")]
    Decode(#[source] Box<DecodeDetail>),

    /// Falcon answered with an error status.
    #[error("falcon api error {status}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// When the server asked us to retry (from `X-RateLimit-RetryAfter`), for 429.
        retry_after: Option<SystemTime>,
        /// `errors[]`, trace id and endpoint.
        #[source]
        detail: Box<ApiErrorDetail>,
    },

    /// Retries stopped (attempt count or total retry time reached) while the failure was still retryable.
    #[error("retry budget exhausted after {attempts} attempts in {elapsed:?}")]
    RetriesExhausted {
        /// Number of attempts made.
        attempts: u32,
        /// Time spent since the first attempt.
        elapsed: Duration,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },

    /// A response body exceeded [`crate::Settings::max_response_bytes`]; reading stopped there.
    #[error("{endpoint}: response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The request method and path.
        endpoint: String,
        /// The cap that was exceeded.
        limit: usize,
    },

    /// A paginated listing cannot go on: the server returned the cursor it was given, so following it
    /// would loop forever, and stopping quietly would pass a truncated listing off as complete.
    #[error("{endpoint}: the server repeated the pagination cursor after {seen} items")]
    Pagination {
        /// The request method and path.
        endpoint: String,
        /// Items received before the repeat.
        seen: u64,
    },

    /// A multi-part operation stopped part-way (e.g. a batch write after some requests succeeded).
    #[error("operation incomplete after {completed} of {total} requests")]
    Partial {
        /// Requests that completed before the failure.
        completed: usize,
        /// Requests planned.
        total: usize,
        /// The failure.
        #[source]
        source: Box<Error>,
    },
}

fn status_suffix(s: Option<StatusCode>) -> String {
    match s {
        Some(s) => format!(" ({s})"),
        None => String::new(),
    }
}

impl Error {
    /// How this error may be retried.
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => RetryKind::Transient,
            Error::Api { status, .. } => {
                if *status == StatusCode::TOO_MANY_REQUESTS {
                    RetryKind::Throttled
                } else if status.is_server_error() {
                    RetryKind::Transient
                } else {
                    RetryKind::No
                }
            }
            Error::Auth { status, .. } => match status {
                Some(s) if *s == StatusCode::TOO_MANY_REQUESTS => RetryKind::Throttled,
                Some(s) if s.is_server_error() => RetryKind::Transient,
                None => RetryKind::Transient,
                _ => RetryKind::No,
            },
            Error::RetriesExhausted { last, .. } => last.retry_kind(),
            Error::Partial { source, .. } => source.retry_kind(),
            _ => RetryKind::No,
        }
    }

    /// True when trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry_kind() != RetryKind::No
    }

    /// The server's retry hint (`X-RateLimit-RetryAfter`), if any.
    pub fn retry_after(&self) -> Option<SystemTime> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            Error::RetriesExhausted { last, .. } => last.retry_after(),
            Error::Partial { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// HTTP status of the failing response, if there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Auth { status, .. } => *status,
            Error::Transport { source, .. } | Error::Timeout { source } => source.status(),
            Error::RetriesExhausted { last, .. } => last.status(),
            Error::Partial { source, .. } => source.status(),
            _ => None,
        }
    }

    /// `meta.trace_id` (or `X-Cs-Traceid`) of the failing response: quote it to CrowdStrike support.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            Error::Api { detail, .. } => detail.trace_id.as_deref(),
            Error::Auth { detail, .. } => detail
                .downcast_ref::<ApiErrorDetail>()
                .and_then(|d| d.trace_id.as_deref()),
            Error::RetriesExhausted { last, .. } => last.trace_id(),
            Error::Partial { source, .. } => source.trace_id(),
            _ => None,
        }
    }

    /// The Falcon `errors[]` of the failing response (empty if none).
    pub fn api_errors(&self) -> &[ApiErrorItem] {
        match self {
            Error::Api { detail, .. } => &detail.errors,
            Error::Auth { detail, .. } => detail
                .downcast_ref::<ApiErrorDetail>()
                .map(|d| d.errors.as_slice())
                .unwrap_or(&[]),
            Error::RetriesExhausted { last, .. } => last.api_errors(),
            Error::Partial { source, .. } => source.api_errors(),
            _ => &[],
        }
    }

    /// The JSON path of a decode error.
    pub fn decode_path(&self) -> Option<&str> {
        match self {
            Error::Decode(d) => Some(&d.path),
            _ => None,
        }
    }

    /// True when the request provably did not reach the server (safe to retry any call).
    pub fn is_not_sent(&self) -> bool {
        match self {
            Error::InvalidArgument(_) | Error::Config(_) => true,
            Error::Transport { not_sent, .. } => *not_sent,
            // The gateway rejects rate-limited calls before they reach the service.
            Error::Api { status, .. } => *status == StatusCode::TOO_MANY_REQUESTS,
            _ => false,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Error {
        if e.is_connect() || e.is_builder() {
            Error::Transport {
                not_sent: true,
                source: e,
            }
        } else if e.is_timeout() {
            Error::Timeout { source: e }
        } else {
            Error::Transport {
                not_sent: false,
                source: e,
            }
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
