//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in this crate, by failure phase.
///
/// The live stream yields the same type (see [`StreamError`]): [`Error::Malformed`] is
/// yielded and the stream goes on, [`Error::Unauthorized`], [`Error::NotFound`] and
/// [`Error::Gone`] are yielded once and end the stream; transient failures (transport,
/// read timeout, 5xx) are retried inside the stream and never yielded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be built (bad URL, bad header, bad argument); nothing was sent.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What was wrong, naming the setting.
        reason: String,
    },
    /// The connection failed or broke; the request may or may not have been sent.
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
    /// No response (or, on the live stream, no byte) arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// HTTP 401: missing or bad token, or (on the live stream) an unknown or forbidden collection.
    #[error("unauthorized (http 401)")]
    Unauthorized,
    /// HTTP 404: the path or the live stream does not exist.
    #[error("not found (http 404)")]
    NotFound,
    /// HTTP 410: the live stream is stopped (`stream_live = false`).
    #[error("live stream is stopped (http 410)")]
    Gone,
    /// Any other unexpected HTTP status.
    #[error("unexpected http status {status}")]
    Http {
        /// The status code.
        status: u16,
        /// The first bytes of the body (for logs).
        body_excerpt: String,
    },
    /// HTTP 200 whose body carries GraphQL `errors`.
    #[error("graphql error: {}", .errors.first().map(|e| e.message.as_str()).unwrap_or("(no message)"))]
    GraphQl {
        /// Every error the server returned, in order.
        errors: Vec<GraphQlError>,
    },
    /// A response body did not have the expected shape.
    #[error("cannot decode response at `{path}`")]
    Decode {
        /// JSON path of the offending value (`serde_path_to_error` style).
        path: String,
        /// The first bytes of the body.
        body_excerpt: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A paged listing stopped before it delivered everything the platform announced (a repeated
    /// cursor, fewer items than `globalCount`), or its filters cannot be read. A shorter list must never
    /// be taken for the whole one; listing again may succeed.
    #[error("incomplete listing: {reason}")]
    Incomplete {
        /// What was wrong, with the figures.
        reason: String,
    },
    /// A live-stream event whose `data:` is not what its event name announces.
    /// The stream yields it and goes on.
    #[error("malformed {event} event {id:?}")]
    Malformed {
        /// The event id (`""` when the event had none).
        id: String,
        /// The SSE event name.
        event: String,
        /// The raw `data:` text.
        raw: String,
        /// Why it was rejected.
        #[source]
        source: serde_json::Error,
    },
}

/// The live stream's item error: the crate's [`Error`].
pub type StreamError = Error;

/// One entry of a GraphQL `errors` array.
///
/// OpenCTI versions differ in where an error's details go: a top-level `data` and `name`
/// (the shape pycti reads), Apollo's `extensions.data` and `extensions.code`, or both at once.
/// Every shape is accepted (the exact one of the newest platforms is not verified).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(from = "RawGraphQlError")]
pub struct GraphQlError {
    /// Human-readable message.
    pub message: String,
    /// OpenCTI's error name (e.g. `FUNCTIONAL_ERROR`, `AUTH_REQUIRED`), when present: `name`,
    /// else `extensions.code`.
    pub name: Option<String>,
    /// Extra data, when present: `data`, else `extensions.data`, else `extensions`.
    pub data: Option<serde_json::Value>,
}

/// A GraphQL error as any OpenCTI version writes it.
#[derive(serde::Deserialize)]
struct RawGraphQlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    extensions: Option<serde_json::Value>,
}

impl From<RawGraphQlError> for GraphQlError {
    fn from(r: RawGraphQlError) -> Self {
        let ext = r.extensions.filter(|e| !e.is_null());
        let name = r
            .name
            .or_else(|| ext.as_ref()?.get("code")?.as_str().map(str::to_owned));
        let data = r.data.filter(|d| !d.is_null()).or_else(|| {
            let ext = ext?;
            match ext.get("data") {
                Some(d) if !d.is_null() => Some(d.clone()),
                _ => Some(ext),
            }
        });
        GraphQlError {
            message: r.message,
            name,
            data,
        }
    }
}

impl fmt::Display for GraphQlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// How a caller should react to an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryKind {
    /// Retrying the same request may succeed (network, timeout, 5xx, 429).
    Transient,
    /// Retrying will fail the same way until something is fixed (auth, config, stopped stream).
    Permanent,
    /// Retrying is pointless: the input itself is bad (malformed event, undecodable body).
    Skip,
}

impl Error {
    /// Classification for retry loops.
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            Error::Transport(_) | Error::Timeout(_) | Error::Incomplete { .. } => {
                RetryKind::Transient
            }
            Error::Http { status, .. } if *status >= 500 || *status == 429 || *status == 408 => {
                RetryKind::Transient
            }
            Error::GraphQl { .. } if self.is_rate_limited() => RetryKind::Transient,
            Error::Http { .. }
            | Error::Config { .. }
            | Error::Unauthorized
            | Error::NotFound
            | Error::Gone
            | Error::GraphQl { .. } => RetryKind::Permanent,
            Error::Decode { .. } | Error::Malformed { .. } => RetryKind::Skip,
        }
    }

    /// `true` when retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry_kind() == RetryKind::Transient
    }

    /// `true` for the platform's `Too many requests` GraphQL error (dissemination assurance
    /// rate limits, reference §3.0).
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Error::GraphQl { errors } => errors
                .iter()
                .any(|e| e.message.to_ascii_lowercase().contains("too many requests")),
            Error::Http { status: 429, .. } => true,
            _ => false,
        }
    }

    /// The server's wait hint of a rate-limit error (`data.retry_after_ms`), when given.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::GraphQl { errors } => errors.iter().find_map(|e| {
                e.data
                    .as_ref()?
                    .get("retry_after_ms")?
                    .as_u64()
                    .map(std::time::Duration::from_millis)
            }),
            _ => None,
        }
    }

    /// `true` when the platform refused the request itself (a GraphQL error other than a rate
    /// limit, or a request refused before sending): re-sending it unchanged will fail the same
    /// way, so a report is dropped. Every other failure leaves a report unsent (re-queued).
    pub fn is_rejection(&self) -> bool {
        match self {
            Error::GraphQl { .. } => !self.is_rate_limited(),
            Error::Config { .. } => true,
            _ => false,
        }
    }

    /// `true` for the errors that end a live stream (401, 404, 410, bad configuration).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Error::Unauthorized | Error::NotFound | Error::Gone | Error::Config { .. }
        )
    }

    /// The HTTP status behind the error, when there is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized => Some(401),
            Error::NotFound => Some(404),
            Error::Gone => Some(410),
            Error::Http { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    pub(crate) fn from_status(status: u16, body: &[u8]) -> Error {
        match status {
            401 => Error::Unauthorized,
            404 => Error::NotFound,
            410 => Error::Gone,
            _ => Error::Http {
                status,
                body_excerpt: excerpt(body),
            },
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Error {
        Error::Config {
            reason: reason.into(),
        }
    }
}

/// `error: cause: cause…` for logs (our `Display` is short; the detail is in `source()`).
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

/// First 512 bytes of a body, lossily decoded.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 512;
    let cut = body.len().min(MAX);
    let mut s = String::from_utf8_lossy(&body[..cut]).into_owned();
    if body.len() > MAX {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Error::Timeout(std::time::Duration::from_secs(1)).is_retryable());
        assert!(Error::from_status(503, b"").is_retryable());
        assert!(!Error::from_status(400, b"").is_retryable());
        assert!(Error::from_status(401, b"").is_terminal());
        assert!(Error::from_status(404, b"").is_terminal());
        assert!(Error::from_status(410, b"").is_terminal());
        assert!(!Error::from_status(500, b"").is_terminal());
        assert_eq!(Error::from_status(410, b"").status(), Some(410));
        let e = Error::GraphQl {
            errors: vec![GraphQlError {
                message: "No connector found with the specified ID".into(),
                name: None,
                data: None,
            }],
        };
        assert_eq!(
            e.to_string(),
            "graphql error: No connector found with the specified ID"
        );
        assert_eq!(e.retry_kind(), RetryKind::Permanent);
        assert!(e.is_rejection());
    }

    #[test]
    fn rate_limit_is_transient_with_the_servers_hint() {
        let e = Error::GraphQl {
            errors: vec![GraphQlError {
                message: "Too many requests".into(),
                name: Some("FUNCTIONAL_ERROR".into()),
                data: Some(serde_json::json!({"kind": "batch", "retry_after_ms": 1500})),
            }],
        };
        assert!(e.is_rate_limited());
        assert!(e.is_retryable());
        assert!(
            !e.is_rejection(),
            "a rate-limited report is unsent, not rejected"
        );
        assert_eq!(
            e.retry_after(),
            Some(std::time::Duration::from_millis(1500))
        );
        assert!(!Error::from_status(502, b"").is_rejection());
    }

    #[test]
    fn every_error_shape_of_the_platform_is_read() {
        let hint = std::time::Duration::from_millis(1500);
        for body in [
            // pycti's shape: top-level name and data.
            r#"{"message":"Too many requests","name":"FUNCTIONAL_ERROR","data":{"kind":"hits","retry_after_ms":1500}}"#,
            // Apollo's: extensions.code and extensions.data.
            r#"{"message":"Too many requests","path":["indicatorReportHits"],"extensions":{"code":"FUNCTIONAL_ERROR","data":{"kind":"hits","retry_after_ms":1500}}}"#,
            // Both at once.
            r#"{"message":"Too many requests","name":"FUNCTIONAL_ERROR","data":{"kind":"hits","retry_after_ms":1500},"extensions":{"code":"FUNCTIONAL_ERROR","data":{"kind":"hits","retry_after_ms":1500}}}"#,
        ] {
            let g: GraphQlError =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(g.name.as_deref(), Some("FUNCTIONAL_ERROR"), "{body}");
            let e = Error::GraphQl { errors: vec![g] };
            assert!(e.is_rate_limited(), "{body}");
            assert_eq!(e.retry_after(), Some(hint), "{body}");
        }
        let g: GraphQlError =
            serde_json::from_str(r#"{"message":"x","extensions":{"code":"FORBIDDEN_ACCESS"}}"#)
                .unwrap();
        assert_eq!(g.name.as_deref(), Some("FORBIDDEN_ACCESS"));
    }
}
