//! Documented RTR limits, and the checks that refuse out-of-bounds arguments before anything is sent.

use std::time::Duration;

/// Maximum number of hosts in one batch session (`falcon-api.md` §5.5). Larger sets are split.
pub const MAX_BATCH_HOSTS: usize = 10_000;
/// Maximum request `timeout` of RTR calls: 5 minutes in the current spec (it was 10 minutes before
/// the December 2023 spec update; values above 5 minutes are treated as unsupported).
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Request timeout the API applies when none is given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle lifetime of an RTR session unless refreshed.
pub const SESSION_EXPIRY: Duration = Duration::from_secs(600);
/// A session handle pulses its session when less than this remains of [`SESSION_EXPIRY`].
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(180);
/// Maximum number of batch sessions initialised concurrently when a host set is split (Caracara uses 3).
pub const BATCH_INIT_CONCURRENCY: usize = 3;

/// An argument refused before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgumentError {
    /// `timeout` outside `1 s ..= 300 s`.
    #[error("{param} of {value:?} is out of bounds (1s..={max:?})")]
    TimeoutOutOfBounds {
        /// Parameter name.
        param: &'static str,
        /// Requested value.
        value: Duration,
        /// Documented maximum.
        max: Duration,
    },
    /// `timeout` is an integer number of seconds on the wire.
    #[error("{param} of {value:?} is not a whole number of seconds")]
    NotWholeSeconds {
        /// Parameter name.
        param: &'static str,
        /// Requested value.
        value: Duration,
    },
    /// `host_timeout_duration` must be positive and below the request timeout.
    #[error(
        "host_timeout_duration of {host:?} must be above zero and below the request timeout of {timeout:?}"
    )]
    HostTimeoutOutOfBounds {
        /// Requested host timeout.
        host: Duration,
        /// Effective request timeout (given or the 30 s default).
        timeout: Duration,
    },
    /// A required list is empty.
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// An id in a list is empty or blank.
    #[error("{what} has an empty id at index {index}")]
    EmptyId {
        /// Which list.
        what: &'static str,
        /// Index in the list as given.
        index: usize,
    },
    /// `existing_batch_id` cannot be combined with a host set that needs several batches.
    #[error("existing_batch_id cannot be used with {hosts} hosts (more than {max} per batch)")]
    ExistingBatchTooLarge {
        /// Number of distinct hosts.
        hosts: usize,
        /// Batch maximum.
        max: usize,
    },
    /// A text field exceeds its documented length.
    #[error("{what} is {len} characters long (maximum {max})")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Documented maximum.
        max: usize,
    },
}

/// Request `timeout` and `host_timeout_duration` of an RTR call, validated on use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub timeout: Option<Duration>,
    pub host_timeout: Option<Duration>,
}

impl Timeouts {
    /// Checks the bounds and returns the query parameters to send.
    pub(crate) fn query(&self) -> Result<Vec<(&'static str, String)>, ArgumentError> {
        let mut q = Vec::with_capacity(2);
        if let Some(t) = self.timeout {
            check_timeout("timeout", t)?;
            q.push(("timeout", t.as_secs().to_string()));
        }
        if let Some(h) = self.host_timeout {
            let timeout = self.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
            if h.is_zero() || h >= timeout || h < Duration::from_millis(1) {
                return Err(ArgumentError::HostTimeoutOutOfBounds { host: h, timeout });
            }
            q.push(("host_timeout_duration", go_duration(h)));
        }
        Ok(q)
    }
}

/// Checks one request `timeout` value: whole seconds within `1 ..= 300`.
pub(crate) fn check_timeout(param: &'static str, t: Duration) -> Result<(), ArgumentError> {
    if t < Duration::from_secs(1) || t > MAX_REQUEST_TIMEOUT {
        return Err(ArgumentError::TimeoutOutOfBounds {
            param,
            value: t,
            max: MAX_REQUEST_TIMEOUT,
        });
    }
    if t.subsec_nanos() != 0 {
        return Err(ArgumentError::NotWholeSeconds { param, value: t });
    }
    Ok(())
}

/// Formats a duration as a Go duration string (`27s`, `1500ms`).
pub(crate) fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Checks a list of ids: not empty, no blank id. Returns the distinct ids in first-seen order.
pub(crate) fn distinct_ids<S: AsRef<str>>(
    what: &'static str,
    ids: &[S],
) -> Result<Vec<String>, ArgumentError> {
    if ids.is_empty() {
        return Err(ArgumentError::Empty { what });
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let id = id.as_ref().trim();
        if id.is_empty() {
            return Err(ArgumentError::EmptyId { what, index });
        }
        if seen.insert(id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_bounds() {
        let ok = Timeouts {
            timeout: Some(Duration::from_secs(300)),
            host_timeout: Some(Duration::from_millis(299_500)),
        };
        assert_eq!(
            ok.query().unwrap(),
            vec![
                ("timeout", "300".to_owned()),
                ("host_timeout_duration", "299500ms".to_owned())
            ]
        );
        for bad in [0, 301, 600] {
            let t = Timeouts {
                timeout: Some(Duration::from_secs(bad)),
                host_timeout: None,
            };
            assert!(
                matches!(t.query(), Err(ArgumentError::TimeoutOutOfBounds { .. })),
                "{bad}"
            );
        }
        let frac = Timeouts {
            timeout: Some(Duration::from_millis(1500)),
            host_timeout: None,
        };
        assert!(matches!(
            frac.query(),
            Err(ArgumentError::NotWholeSeconds { .. })
        ));
    }

    #[test]
    fn host_timeout_must_be_below_effective_timeout() {
        // default request timeout is 30 s
        let t = Timeouts {
            timeout: None,
            host_timeout: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            t.query(),
            Err(ArgumentError::HostTimeoutOutOfBounds {
                host: Duration::from_secs(30),
                timeout: Duration::from_secs(30)
            })
        );
        let t = Timeouts {
            timeout: None,
            host_timeout: Some(Duration::from_secs(27)),
        };
        assert_eq!(
            t.query().unwrap(),
            vec![("host_timeout_duration", "27s".to_owned())]
        );
        let t = Timeouts {
            timeout: Some(Duration::from_secs(60)),
            host_timeout: Some(Duration::ZERO),
        };
        assert!(t.query().is_err());
    }

    #[test]
    fn distinct_ids_dedups_and_rejects_blanks() {
        assert_eq!(
            distinct_ids("host_ids", &["a", "b", "a"]).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            distinct_ids("host_ids", &["a", " "]),
            Err(ArgumentError::EmptyId {
                what: "host_ids",
                index: 1
            })
        );
        assert_eq!(
            distinct_ids::<&str>("host_ids", &[]),
            Err(ArgumentError::Empty { what: "host_ids" })
        );
    }
}
