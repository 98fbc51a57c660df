//! Per-host results of batch operations, keyed by device id (aid).
//!
//! Every host that was asked for appears in the result map, even when the API left it out of its
//! response ([`HostStatus::Missing`]): batches never lose hosts silently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiErrorItem;

use super::types::{GetFile, MultiStatusSensorResponse};

/// Outcome of one host in a batch response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HostStatus {
    /// The host answered: it has a session (batch init) or finished the command (`complete: true`).
    Complete,
    /// The host is offline; the session or command is queued and runs when it reconnects.
    QueuedOffline,
    /// No error, but not complete: the command still runs on the host (batch commands return at the
    /// request timeout) or the session is open but its first command did not finish.
    Pending,
    /// The host reported errors (see [`HostResult::errors`], e.g. `40401` sensor unreachable,
    /// `50401` timeout exceeded).
    Failed,
    /// The host was requested but the API returned nothing for it (the batch-level errors, if any,
    /// are copied into [`HostResult::errors`]).
    Missing,
}

/// What one host reported in a batch response (`DomainMultiStatusSensorResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostResult {
    /// Batch the host belongs to.
    pub batch_id: String,
    /// Outcome, derived from the fields below.
    pub status: HostStatus,
    /// RTR session id of the host (`None` when it failed).
    pub session_id: Option<String>,
    /// Task id of the command on the host.
    pub task_id: Option<String>,
    /// Whether the host finished within the request timeout.
    pub complete: bool,
    /// Whether the request was queued for an offline host.
    pub offline_queued: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Base command echoed by the API.
    pub base_command: Option<String>,
    /// Per-host errors.
    pub errors: Vec<ApiErrorItem>,
}

/// Per-host result of a batch session init (contract name).
pub type HostSession = HostResult;
/// Per-host result of a batch command (contract name).
pub type HostCommandResult = HostResult;

impl HostResult {
    pub(crate) fn from_wire(batch_id: &str, w: MultiStatusSensorResponse) -> Self {
        let status = if !w.errors.is_empty() {
            HostStatus::Failed
        } else if w.offline_queued {
            HostStatus::QueuedOffline
        } else if w.complete {
            HostStatus::Complete
        } else {
            HostStatus::Pending
        };
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        HostResult {
            batch_id: batch_id.to_owned(),
            status,
            session_id: non_empty(w.session_id),
            task_id: non_empty(w.task_id),
            complete: w.complete,
            offline_queued: w.offline_queued,
            stdout: w.stdout,
            stderr: w.stderr,
            base_command: non_empty(w.base_command),
            errors: w.errors,
        }
    }

    pub(crate) fn missing(batch_id: &str, batch_errors: &[ApiErrorItem]) -> Self {
        HostResult {
            batch_id: batch_id.to_owned(),
            status: HostStatus::Missing,
            session_id: None,
            task_id: None,
            complete: false,
            offline_queued: false,
            stdout: String::new(),
            stderr: String::new(),
            base_command: None,
            errors: batch_errors.to_vec(),
        }
    }

    pub(crate) fn failed(batch_id: &str, errors: &[ApiErrorItem]) -> Self {
        HostResult {
            status: HostStatus::Failed,
            ..HostResult::missing(batch_id, errors)
        }
    }

    /// True when the host has a usable session: it answered without errors, or was queued offline.
    pub fn is_usable(&self) -> bool {
        matches!(
            self.status,
            HostStatus::Complete | HostStatus::QueuedOffline | HostStatus::Pending
        ) && (self.session_id.is_some() || self.offline_queued)
    }

    /// True when the host finished without error and wrote nothing to stderr.
    pub fn succeeded(&self) -> bool {
        self.status == HostStatus::Complete && self.stderr.is_empty()
    }

    /// True when one of the host's errors has this Falcon code (e.g. `50401`).
    pub fn has_error_code(&self, code: i64) -> bool {
        self.errors.iter().any(|e| e.code == Some(code))
    }
}

/// Merges one batch response into `hosts`: every returned host, then every expected host that was
/// not returned (as [`HostStatus::Missing`]).
pub(crate) fn attribute(
    hosts: &mut BTreeMap<String, HostResult>,
    batch_id: &str,
    expected: &[String],
    returned: BTreeMap<String, MultiStatusSensorResponse>,
    batch_errors: &[ApiErrorItem],
) {
    for (aid, w) in returned {
        let aid = if aid.is_empty() { w.aid.clone() } else { aid };
        hosts.insert(aid, HostResult::from_wire(batch_id, w));
    }
    for aid in expected {
        if !hosts.contains_key(aid) {
            hosts.insert(aid.clone(), HostResult::missing(batch_id, batch_errors));
        }
    }
}

/// Helpers shared by the per-host maps.
fn by_status(
    hosts: &BTreeMap<String, HostResult>,
    status: HostStatus,
) -> impl Iterator<Item = (&str, &HostResult)> {
    hosts
        .iter()
        .filter(move |(_, h)| h.status == status)
        .map(|(a, h)| (a.as_str(), h))
}

/// One batch session and the hosts it was opened for (serializable, e.g. for a journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchSession {
    /// Batch id, used by batch commands and refresh.
    pub batch_id: String,
    /// Hosts requested in this batch (at most 10,000).
    pub hosts: Vec<String>,
}

impl BatchSession {
    /// A batch session known from elsewhere (e.g. restored from a journal).
    pub fn new(batch_id: impl Into<String>, hosts: Vec<String>) -> Self {
        BatchSession {
            batch_id: batch_id.into(),
            hosts,
        }
    }
}

/// Result of [`batch_init`](super::Rtr::batch_init): the batches opened and each host's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchInit {
    /// The batch sessions, in the order of the host list (one per 10,000 hosts).
    pub batches: Vec<BatchSession>,
    /// Every requested host, keyed by device id.
    pub hosts: BTreeMap<String, HostSession>,
    /// Batch-level `errors[]`, with the batch id they came from.
    pub batch_errors: Vec<(String, ApiErrorItem)>,
}

impl BatchInit {
    /// Hosts with a live session (answered without errors and not queued).
    pub fn connected(&self) -> impl Iterator<Item = &str> {
        self.hosts
            .iter()
            .filter(|(_, h)| {
                matches!(h.status, HostStatus::Complete | HostStatus::Pending)
                    && h.session_id.is_some()
            })
            .map(|(a, _)| a.as_str())
    }

    /// Hosts that are offline and whose session was queued.
    pub fn queued_offline(&self) -> impl Iterator<Item = &str> {
        by_status(&self.hosts, HostStatus::QueuedOffline).map(|(a, _)| a)
    }

    /// Hosts that failed (errors) or are missing from the response, with their result.
    pub fn failed(&self) -> impl Iterator<Item = (&str, &HostSession)> {
        self.hosts
            .iter()
            .filter(|(_, h)| matches!(h.status, HostStatus::Failed | HostStatus::Missing))
            .map(|(a, h)| (a.as_str(), h))
    }

    /// The batch a host belongs to.
    pub fn batch_of(&self, aid: &str) -> Option<&str> {
        self.hosts.get(aid).map(|h| h.batch_id.as_str())
    }
}

/// Result of a batch command (read-only, active-responder or admin) or a batch `get`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchCommand {
    /// Batch the command ran in.
    pub batch_id: String,
    /// For a batch `get`: the id to query its status with.
    pub batch_get_cmd_req_id: Option<String>,
    /// Per-host result, keyed by device id. Contains every host of `optional_hosts` /
    /// `expected_hosts`, and every host the API returned.
    pub hosts: BTreeMap<String, HostCommandResult>,
    /// Batch-level `errors[]`.
    pub errors: Vec<ApiErrorItem>,
    /// `meta.trace_id` of the response.
    pub trace_id: Option<String>,
}

impl BatchCommand {
    /// Hosts with this status.
    pub fn with_status(&self, status: HostStatus) -> impl Iterator<Item = (&str, &HostResult)> {
        by_status(&self.hosts, status)
    }

    /// Hosts that finished without errors and with empty stderr.
    pub fn succeeded(&self) -> impl Iterator<Item = (&str, &HostResult)> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.succeeded())
            .map(|(a, h)| (a.as_str(), h))
    }

    /// Counts of hosts per status.
    pub fn counts(&self) -> BTreeMap<HostStatus, usize> {
        let mut m = BTreeMap::new();
        for h in self.hosts.values() {
            *m.entry(h.status).or_insert(0) += 1;
        }
        m
    }
}

/// One host of a batch refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostRefresh {
    /// Session id (`None` when the refresh failed for this host).
    pub session_id: Option<String>,
    /// Per-host errors.
    pub errors: Vec<ApiErrorItem>,
}

/// Result of a batch refresh.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchRefresh {
    /// Batch refreshed.
    pub batch_id: String,
    /// Per-host result, keyed by device id.
    pub hosts: BTreeMap<String, HostRefresh>,
    /// Batch-level `errors[]`.
    pub errors: Vec<ApiErrorItem>,
}

impl BatchRefresh {
    /// Hosts whose refresh reported errors.
    pub fn failed(&self) -> impl Iterator<Item = (&str, &HostRefresh)> {
        self.hosts
            .iter()
            .filter(|(_, h)| !h.errors.is_empty())
            .map(|(a, h)| (a.as_str(), h))
    }
}

/// Result of a batch `get` status: the files each host uploaded so far.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchGetStatus {
    /// Files per device id (a host still uploading has an entry with an empty `sha256`, or none).
    pub hosts: BTreeMap<String, Vec<GetFile>>,
    /// Batch-level `errors[]`.
    pub errors: Vec<ApiErrorItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(json: &str) -> BTreeMap<String, MultiStatusSensorResponse> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn mixed_outcomes_are_attributed_per_host() {
        let mut hosts = BTreeMap::new();
        let expected: Vec<String> = ["ok", "queued", "fail", "slow", "lost"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        attribute(
            &mut hosts,
            "b1",
            &expected,
            wire(
                r#"{"ok":{"aid":"ok","session_id":"s1","complete":true,"stdout":"C:\\"},
                    "queued":{"aid":"queued","session_id":"s2","offline_queued":true},
                    "fail":{"aid":"fail","errors":[{"code":40401,"message":"Could not establish sensor comms"}]},
                    "slow":{"aid":"slow","session_id":"s4","complete":false}}"#,
            ),
            &[ApiErrorItem {
                code: Some(500),
                message: "partial".into(),
                id: None,
            }],
        );
        assert_eq!(hosts["ok"].status, HostStatus::Complete);
        assert_eq!(hosts["queued"].status, HostStatus::QueuedOffline);
        assert_eq!(hosts["fail"].status, HostStatus::Failed);
        assert!(hosts["fail"].has_error_code(40401));
        assert_eq!(hosts["fail"].session_id, None);
        assert_eq!(hosts["slow"].status, HostStatus::Pending);
        assert_eq!(hosts["lost"].status, HostStatus::Missing);
        assert_eq!(hosts["lost"].errors[0].message, "partial");
        assert!(hosts.values().all(|h| h.batch_id == "b1"));
    }
}
