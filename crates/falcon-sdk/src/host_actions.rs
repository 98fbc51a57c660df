//! Host actions (`PerformActionV2`): containment, hiding, detection suppression, with a per-host result.
//!
//! Wire contract: `shared/reference/falcon-streams-actions-mssp.md` §2. One request per chunk of ids
//! (`POST /devices/entities/devices-actions/v2?action_name=…`, body `{"ids":[…]}`), chunked at the
//! per-action maximum (100 for hide/unhide, 500 for the others). The answer is **202** with the hosts
//! that were acted on in `resources[].id` and the others as `errors[]` entries whose message names the
//! aid; an entry with code 409 means the host is already in the requested state.
//!
//! Not idempotent in Falcon's eyes (a repeat answers 409, a contain can race a lift): a request is
//! retried only when provably not sent (connect failure, 429). Every host given comes back in the
//! [`ActionReport`], whatever happened to its request.

use std::collections::BTreeMap;
use std::fmt;

use futures::{StreamExt, stream};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::client::FalconClient;
use crate::envelope::null_default;
use crate::error::{ApiErrorItem, Error, Result};
use crate::hosts::Hosts;
use crate::transport::ApiRequest;

const PATH: &str = "/devices/entities/devices-actions/v2";

/// Requests in flight at once for one action (chunks are independent).
const CONCURRENCY: usize = 4;

/// An action of `PerformActionV2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostAction {
    /// `contain`: network-isolate the host.
    Contain,
    /// `lift_containment`: restore normal networking.
    LiftContainment,
    /// `hide_host`: remove the host from console and API views.
    Hide,
    /// `unhide_host`: restore a hidden host.
    Unhide,
    /// `detection_suppress` (accepted by the API, semantics undocumented: FalconPy allow-list).
    DetectionSuppress,
    /// `detection_unsuppress`.
    DetectionUnsuppress,
}

impl HostAction {
    /// The `action_name` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HostAction::Contain => "contain",
            HostAction::LiftContainment => "lift_containment",
            HostAction::Hide => "hide_host",
            HostAction::Unhide => "unhide_host",
            HostAction::DetectionSuppress => "detection_suppress",
            HostAction::DetectionUnsuppress => "detection_unsuppress",
        }
    }

    /// Most ids the API takes in one request for this action: 100 for hide/unhide (Ansible, PSFalcon),
    /// 500 for the others (PSFalcon's batch size; no spec limit).
    pub fn max_ids(self) -> usize {
        match self {
            HostAction::Hide | HostAction::Unhide => 100,
            _ => 500,
        }
    }
}

impl fmt::Display for HostAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostOutcome {
    /// Accepted (202): the host is on its way to the requested state (containment is `*_pending` until
    /// the sensor acknowledges).
    Accepted,
    /// Already in the requested state (a 409 entry): nothing to do.
    AlreadyDone,
    /// Refused for this host: an `errors[]` entry naming it (unknown aid: code 404).
    Failed {
        /// The entry's code.
        code: Option<i64>,
        /// The entry's message.
        message: String,
    },
    /// The request carrying this host failed as a whole (whether it was applied is unknown unless the
    /// error says it was not sent: see [`Error::is_not_sent`]). Retry later, after reading the status.
    RequestFailed {
        /// A description of the failure (`Display` of the error, no secret).
        error: String,
        /// True when the request provably did not reach Falcon.
        not_sent: bool,
        /// HTTP status, if Falcon answered.
        status: Option<StatusCode>,
    },
    /// Falcon's answer named neither this host as done nor as failed (seen in the wild, ansible#666).
    Unreported,
}

impl HostOutcome {
    /// True when the host is (or is on its way to be) in the requested state.
    pub fn is_ok(&self) -> bool {
        matches!(self, HostOutcome::Accepted | HostOutcome::AlreadyDone)
    }
}

/// The result of an action over many hosts: one entry per distinct host id given, never fewer.
#[derive(Debug, Clone, Default)]
pub struct ActionReport {
    /// The action performed.
    pub action: Option<HostAction>,
    /// Per-host outcome, by aid.
    pub hosts: BTreeMap<String, HostOutcome>,
    /// Requests sent (one per chunk).
    pub requests: usize,
}

impl ActionReport {
    /// Hosts whose outcome is not ok.
    pub fn failed(&self) -> impl Iterator<Item = (&str, &HostOutcome)> {
        self.hosts
            .iter()
            .filter(|(_, o)| !o.is_ok())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// True when every host is accepted or already in the state.
    pub fn all_ok(&self) -> bool {
        self.hosts.values().all(HostOutcome::is_ok)
    }
}

#[derive(Debug, Default, Deserialize)]
struct Affected {
    #[serde(default)]
    id: String,
}

#[derive(Debug, Default, Deserialize)]
struct ActionReply {
    #[serde(default, deserialize_with = "null_default")]
    resources: Vec<Affected>,
    #[serde(default, deserialize_with = "null_default")]
    errors: Vec<ApiErrorItem>,
}

/// Builder of a host action, from [`Hosts::action`].
#[derive(Debug, Clone)]
#[must_use = "call .send().await"]
pub struct HostActionBuilder {
    client: FalconClient,
    action: HostAction,
    ids: Vec<String>,
    note: Option<String>,
    chunk: Option<usize>,
}

impl Hosts {
    /// `POST /devices/entities/devices-actions/v2`: performs `action` on `ids` (duplicates removed),
    /// chunked at [`HostAction::max_ids`].
    ///
    /// ```no_run
    /// # async fn f(client: falcon_sdk::FalconClient) -> Result<(), falcon_sdk::Error> {
    /// use falcon_sdk::host_actions::HostAction;
    /// let report = client.hosts().action(HostAction::Contain, &["aid1", "aid2"]).send().await?;
    /// for (aid, outcome) in report.failed() {
    ///     eprintln!("{aid}: {outcome:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn action<S: AsRef<str>>(&self, action: HostAction, ids: &[S]) -> HostActionBuilder {
        HostActionBuilder {
            client: self.client().clone(),
            action,
            ids: ids.iter().map(|s| s.as_ref().to_string()).collect(),
            note: None,
            chunk: None,
        }
    }

    /// The containment status of each host (`normal`, `containment_pending`, `contained`,
    /// `lift_containment_pending`), from the device records; unknown ids are absent.
    pub async fn containment<S: AsRef<str>>(&self, ids: &[S]) -> Result<BTreeMap<String, String>> {
        let devices = self.details(ids).await?;
        Ok(devices
            .into_iter()
            .map(|d| (d.device_id, d.status.unwrap_or_default()))
            .collect())
    }
}

impl HostActionBuilder {
    /// A free-text note sent as `action_parameters: [{"name":"note","value":…}]` (FalconPy's `note`).
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Ids per request, at most [`HostAction::max_ids`] (larger values are lowered to it).
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk = Some(n.max(1));
        self
    }

    /// Sends the requests (a few at a time) and returns one outcome per distinct host. Fails as a whole
    /// only for an invalid argument (no id, an empty id); a failed request is reported on its hosts.
    pub async fn send(self) -> Result<ActionReport> {
        let mut ids: Vec<String> = Vec::with_capacity(self.ids.len());
        let mut seen = std::collections::HashSet::with_capacity(self.ids.len());
        for id in self.ids {
            let id = id.trim().to_string();
            if id.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "host action {}: an empty host id",
                    self.action
                )));
            }
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "host action {}: no host id given",
                self.action
            )));
        }
        let chunk = self.chunk.unwrap_or(usize::MAX).min(self.action.max_ids());
        let params = self
            .note
            .as_ref()
            .map(|n| serde_json::json!([{"name": "note", "value": n}]));
        let client = &self.client;
        let action = self.action;
        let results: Vec<(Vec<String>, Result<ActionReply>)> =
            stream::iter(ids.chunks(chunk).map(<[String]>::to_vec))
                .map(|chunk| {
                    let params = params.clone();
                    async move {
                        let r = send_chunk(client, action, &chunk, params).await;
                        (chunk, r)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut report = ActionReport {
            action: Some(action),
            hosts: BTreeMap::new(),
            requests: results.len(),
        };
        for (chunk, result) in results {
            attribute(&mut report.hosts, &chunk, result);
        }
        Ok(report)
    }
}

async fn send_chunk(
    client: &FalconClient,
    action: HostAction,
    ids: &[String],
    params: Option<serde_json::Value>,
) -> Result<ActionReply> {
    let mut body = serde_json::json!({ "ids": ids });
    if let Some(p) = params {
        body["action_parameters"] = p;
    }
    let req = ApiRequest::post(PATH)
        .query("action_name", action.as_str())
        .json(&body)?
        .idempotent(false)
        // 409 (all already in state) and 400/404 with per-id entries carry a per-host answer.
        .accept_status(StatusCode::CONFLICT)
        .accept_status(StatusCode::NOT_FOUND);
    client
        .send_json::<Option<ActionReply>>(req)
        .await
        .map(Option::unwrap_or_default)
}

/// Attributes one chunk's answer to its hosts: listed ids are accepted, error entries naming an aid are
/// that host's failure (409: already done), and a host named by neither is `Unreported`.
fn attribute(
    out: &mut BTreeMap<String, HostOutcome>,
    chunk: &[String],
    result: Result<ActionReply>,
) {
    let reply = match result {
        Ok(r) => r,
        Err(e) => {
            let outcome = HostOutcome::RequestFailed {
                error: format!("{e}"),
                not_sent: e.is_not_sent(),
                status: e.status(),
            };
            for id in chunk {
                out.insert(id.clone(), outcome.clone());
            }
            return;
        }
    };
    let in_chunk: std::collections::HashSet<&str> = chunk.iter().map(String::as_str).collect();
    for r in &reply.resources {
        if in_chunk.contains(r.id.as_str()) {
            out.insert(r.id.clone(), HostOutcome::Accepted);
        }
    }
    for e in &reply.errors {
        // The aid is in `id` when present, else found in the message (Ansible's rule).
        let named: Vec<&String> = match &e.id {
            Some(id) => chunk.iter().filter(|c| *c == id).collect(),
            None => chunk
                .iter()
                .filter(|c| e.message.contains(c.as_str()))
                .collect(),
        };
        for id in named {
            let o = if e.code == Some(409) {
                HostOutcome::AlreadyDone
            } else {
                HostOutcome::Failed {
                    code: e.code,
                    message: e.message.clone(),
                }
            };
            out.entry(id.clone()).or_insert(o);
        }
    }
    for id in chunk {
        out.entry(id.clone()).or_insert(HostOutcome::Unreported);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_gets_an_outcome() {
        let chunk: Vec<String> = ["a1", "a2", "a3", "a4"].map(String::from).to_vec();
        let reply = ActionReply {
            resources: vec![Affected { id: "a1".into() }],
            errors: vec![
                ApiErrorItem {
                    code: Some(409),
                    message: "Host a2 is already contained".into(),
                    id: None,
                },
                ApiErrorItem {
                    code: Some(404),
                    message: "Device a3 not found".into(),
                    id: None,
                },
            ],
        };
        let mut out = BTreeMap::new();
        attribute(&mut out, &chunk, Ok(reply));
        assert_eq!(out["a1"], HostOutcome::Accepted);
        assert_eq!(out["a2"], HostOutcome::AlreadyDone);
        assert!(matches!(
            out["a3"],
            HostOutcome::Failed {
                code: Some(404),
                ..
            }
        ));
        assert_eq!(out["a4"], HostOutcome::Unreported);
    }
}
