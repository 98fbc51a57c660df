//! Wire types of every RTR response this module decodes.
//!
//! Decoding is lenient on purpose (`falcon-api.md` §2.1): the spec marks fields required that real
//! responses omit or send as `null`, so every field here has a default and `null` reads as the default.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ApiErrorItem;

/// Reads `null` as the type's default value (the Falcon API sends `null` for empty lists and strings).
pub(crate) fn null_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// Lenient wire form of an `errors[]` item (`null` code or message tolerated).
#[derive(Debug, Clone, Default, Deserialize)]
struct ErrorWire {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    message: String,
    #[serde(default)]
    id: Option<String>,
}

/// Reads an `errors[]` array (or `null`) into the crate's [`ApiErrorItem`]s.
pub(crate) fn lenient_errors<'de, D>(de: D) -> Result<Vec<ApiErrorItem>, D::Error>
where
    D: Deserializer<'de>,
{
    let v: Option<Vec<ErrorWire>> = Option::deserialize(de)?;
    Ok(v.unwrap_or_default()
        .into_iter()
        .map(|e| ApiErrorItem {
            code: e.code,
            message: e.message,
            id: e.id,
        })
        .collect())
}

/// Help for one command available in a session (`DomainScriptHelp`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScriptHelp {
    /// Command name.
    #[serde(default, deserialize_with = "null_default")]
    pub command: String,
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Examples.
    #[serde(default, deserialize_with = "null_default")]
    pub examples: String,
    /// Whether the command is runnable.
    #[serde(default, deserialize_with = "null_default")]
    pub runnable: bool,
    /// Whether the command is internal only.
    #[serde(default, deserialize_with = "null_default")]
    pub internal_only: bool,
    /// Arguments (kept as raw JSON).
    #[serde(default, deserialize_with = "null_default")]
    pub args: Vec<serde_json::Value>,
    /// Sub-commands (kept as raw JSON).
    #[serde(default, deserialize_with = "null_default")]
    pub sub_commands: Vec<serde_json::Value>,
}

/// Response of a single-host session init or pulse (`DomainInitResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionInit {
    /// Session id (RTR reuses an existing session of the calling user on that host).
    #[serde(default, deserialize_with = "null_default")]
    pub session_id: String,
    /// Device (agent) id.
    #[serde(default, deserialize_with = "null_default")]
    pub device_id: String,
    /// Creation time as sent by the API.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Number of sessions the caller already had on this host.
    #[serde(default)]
    pub existing_aid_sessions: Option<i64>,
    /// True when the host is offline and commands will be queued.
    #[serde(default, deserialize_with = "null_default")]
    pub offline_queued: bool,
    /// Platform name.
    #[serde(default)]
    pub platform: Option<String>,
    /// Current directory on the host.
    #[serde(default)]
    pub pwd: Option<String>,
    /// Commands available in the session.
    #[serde(default, deserialize_with = "null_default")]
    pub scripts: Vec<ScriptHelp>,
    /// Commands previously run in this session (raw JSON).
    #[serde(default, deserialize_with = "null_default")]
    pub previous_commands: Vec<serde_json::Value>,
}

/// One log line of a session (`DomainSession.logs[]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionLog {
    /// Log id.
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// Cloud request id of the command.
    #[serde(default)]
    pub cloud_request_id: Option<String>,
    /// Base command.
    #[serde(default)]
    pub base_command: Option<String>,
    /// Full command string.
    #[serde(default)]
    pub command_string: Option<String>,
    /// Directory the command ran in.
    #[serde(default)]
    pub current_directory: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A session as listed by `POST /real-time-response/entities/sessions/GET/v1` (`DomainSession`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Session id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Device id.
    #[serde(default, deserialize_with = "null_default")]
    pub device_id: String,
    /// Customer id.
    #[serde(default)]
    pub cid: Option<String>,
    /// Host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// User who opened the session.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Origin string given at init.
    #[serde(default)]
    pub origin: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Deletion time (absent while the session is live).
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// Whether the session was queued for an offline host.
    #[serde(default, deserialize_with = "null_default")]
    pub offline_queued: bool,
    /// Whether commands are queued.
    #[serde(default, deserialize_with = "null_default")]
    pub commands_queued: bool,
    /// Cloud request ids of the session's commands.
    #[serde(default, deserialize_with = "null_default")]
    pub cloud_request_ids: Vec<String>,
    /// Command log.
    #[serde(default, deserialize_with = "null_default")]
    pub logs: Vec<SessionLog>,
    /// Platform name.
    #[serde(default)]
    pub platform_name: Option<String>,
}

/// A command queued for an offline host (`DomainQueuedSessionJob.Commands[]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueuedCommand {
    /// Cloud request id.
    #[serde(default, deserialize_with = "null_default")]
    pub cloud_request_id: String,
    /// Base command.
    #[serde(default)]
    pub base_command: Option<String>,
    /// Full command string.
    #[serde(default)]
    pub command_string: Option<String>,
    /// Status, e.g. `PENDING`.
    #[serde(default)]
    pub status: Option<String>,
    /// Status detail.
    #[serde(default)]
    pub status_text: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Deletion time.
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// A queued session of an offline host (`DomainQueuedSessionJob`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueuedSession {
    /// Session id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Device id.
    #[serde(default, deserialize_with = "null_default")]
    pub aid: String,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
    /// User who queued the commands.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Deletion time.
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// Queued commands (the wire name is `Commands`, capital C; `commands` is accepted too).
    #[serde(
        default,
        rename = "Commands",
        alias = "commands",
        deserialize_with = "null_default"
    )]
    pub commands: Vec<QueuedCommand>,
}

/// Acknowledgement of a single-host command submission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubmittedCommand {
    /// Id to poll the command status with.
    #[serde(default, deserialize_with = "null_default")]
    pub cloud_request_id: String,
    /// Session the command runs in.
    #[serde(default, deserialize_with = "null_default")]
    pub session_id: String,
    /// True when the host is offline and the command was queued.
    #[serde(default, deserialize_with = "null_default")]
    pub queued_command_offline: bool,
}

/// One chunk of a single-host command status (`DomainStatusResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusChunk {
    /// True once the command finished and this is its last chunk.
    #[serde(default, deserialize_with = "null_default")]
    pub complete: bool,
    /// Standard output of this chunk.
    #[serde(default, deserialize_with = "null_default")]
    pub stdout: String,
    /// Standard error of this chunk.
    #[serde(default, deserialize_with = "null_default")]
    pub stderr: String,
    /// Session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Task id.
    #[serde(default)]
    pub task_id: Option<String>,
    /// Sequence id of this chunk.
    #[serde(default)]
    pub sequence_id: Option<u64>,
    /// Base command.
    #[serde(default)]
    pub base_command: Option<String>,
}

/// Per-host object of batch responses (`DomainMultiStatusSensorResponse`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct MultiStatusSensorResponse {
    /// Device id.
    #[serde(default, deserialize_with = "null_default")]
    pub aid: String,
    /// Session id (empty when the host failed).
    #[serde(default, deserialize_with = "null_default")]
    pub session_id: String,
    /// Task id.
    #[serde(default, deserialize_with = "null_default")]
    pub task_id: String,
    /// Whether the host finished within the request timeout.
    #[serde(default, deserialize_with = "null_default")]
    pub complete: bool,
    /// Standard output.
    #[serde(default, deserialize_with = "null_default")]
    pub stdout: String,
    /// Standard error.
    #[serde(default, deserialize_with = "null_default")]
    pub stderr: String,
    /// Base command.
    #[serde(default, deserialize_with = "null_default")]
    pub base_command: String,
    /// Per-host errors.
    #[serde(default, deserialize_with = "lenient_errors")]
    pub errors: Vec<ApiErrorItem>,
    /// True when the host is offline and the request was queued.
    #[serde(default, deserialize_with = "null_default")]
    pub offline_queued: bool,
    /// Server-side query time.
    #[serde(default)]
    pub query_time: Option<f64>,
    /// Sequence id.
    #[serde(default)]
    pub sequence_id: Option<u64>,
}

/// Envelope `meta` object, as far as RTR needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub(crate) struct WireMeta {
    /// Trace id to quote to CrowdStrike support.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// Server-side query time in seconds.
    #[serde(default)]
    pub query_time: Option<f64>,
    /// Service that answered.
    #[serde(default)]
    pub powered_by: Option<String>,
}

/// `POST .../combined/batch-init-session/v1` response body (not the usual envelope: `batch_id` is top-level).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct BatchInitWire {
    #[serde(default, deserialize_with = "null_default")]
    pub batch_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub resources: BTreeMap<String, MultiStatusSensorResponse>,
    #[serde(default, deserialize_with = "lenient_errors")]
    pub errors: Vec<ApiErrorItem>,
}

/// `{ "resources": {aid: ...} }` nested under `combined`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Combined {
    #[serde(default, deserialize_with = "null_default")]
    pub resources: BTreeMap<String, MultiStatusSensorResponse>,
}

/// Batch command / batch get response body: per-host results under `combined.resources`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct BatchCommandWire {
    #[serde(default)]
    pub batch_get_cmd_req_id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub combined: Combined,
    /// Some deployments put the map directly under `resources`: accepted too.
    #[serde(default, deserialize_with = "null_default")]
    pub resources: BTreeMap<String, MultiStatusSensorResponse>,
    #[serde(default, deserialize_with = "lenient_errors")]
    pub errors: Vec<ApiErrorItem>,
    #[serde(default)]
    pub meta: WireMeta,
}

/// Per-host object of a batch refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct RefreshHostWire {
    #[serde(default, deserialize_with = "null_default")]
    pub session_id: String,
    #[serde(default, deserialize_with = "lenient_errors")]
    pub errors: Vec<ApiErrorItem>,
}

/// Batch refresh response body.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct BatchRefreshWire {
    #[serde(default, deserialize_with = "null_default")]
    pub resources: BTreeMap<String, RefreshHostWire>,
    #[serde(default, deserialize_with = "lenient_errors")]
    pub errors: Vec<ApiErrorItem>,
}

/// A file retrieved by `get` on one host, as reported by batch get status (`ModelFile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GetFile {
    /// File id.
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// Session id (needed to download the contents).
    #[serde(default, deserialize_with = "null_default")]
    pub session_id: String,
    /// Cloud request id.
    #[serde(default)]
    pub cloud_request_id: Option<String>,
    /// Remote path of the file.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// SHA-256 (needed to download the contents; empty until the upload finished).
    #[serde(default, deserialize_with = "null_default")]
    pub sha256: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Deletion time.
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// Per host: one file or several (the wire shape is documented as one object; a list is accepted).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    // `Many` first: a struct also deserializes from a JSON array (positionally).
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    pub(crate) fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Batch get status response body.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct BatchGetStatusWire {
    #[serde(default, deserialize_with = "null_default")]
    pub resources: BTreeMap<String, OneOrMany<GetFile>>,
    #[serde(default, deserialize_with = "lenient_errors")]
    pub errors: Vec<ApiErrorItem>,
}

/// A file extracted by `get` in a single-host session (`DomainFileV2`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionFile {
    /// File id (used to delete it).
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Session id.
    #[serde(default, deserialize_with = "null_default")]
    pub session_id: String,
    /// Cloud request id of the `get`.
    #[serde(default)]
    pub cloud_request_id: Option<String>,
    /// Remote path of the file.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// SHA-256 of the file (needed to download it).
    #[serde(default, deserialize_with = "null_default")]
    pub sha256: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Upload progress.
    #[serde(default)]
    pub progress: Option<serde_json::Value>,
    /// Upload stage.
    #[serde(default)]
    pub stage: Option<String>,
    /// Upload status.
    #[serde(default)]
    pub status: Option<String>,
    /// Whether the upload to the cloud finished.
    #[serde(default, deserialize_with = "null_default")]
    pub complete: bool,
    /// Error message, if the upload failed.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Deletion time.
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// A file of the put-files library (`EmpowerapiRemoteCommandPutFileV2`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PutFile {
    /// File id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Name used by `put <name>`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// SHA-256 of the content.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// File type.
    #[serde(default)]
    pub file_type: Option<String>,
    /// Platforms.
    #[serde(default, deserialize_with = "null_default")]
    pub platform: Vec<String>,
    /// Permission type.
    #[serde(default)]
    pub permission_type: Option<String>,
    /// Uploader.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Upload time.
    #[serde(default)]
    pub created_timestamp: Option<String>,
    /// Last modification time.
    #[serde(default)]
    pub modified_timestamp: Option<String>,
}

/// A custom script of the scripts library (`EmpowerapiRemoteCommandPutFileV2`-shaped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Script {
    /// Script id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Name used by `runscript -CloudFile=`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Script text (returned by get).
    #[serde(default)]
    pub content: Option<String>,
    /// SHA-256 of the content.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Platforms (`windows`, `mac`, `linux`).
    #[serde(default, deserialize_with = "null_default")]
    pub platform: Vec<String>,
    /// Permission type (`private`, `group`, `public`).
    #[serde(default)]
    pub permission_type: Option<String>,
    /// Uploader.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Upload time.
    #[serde(default)]
    pub created_timestamp: Option<String>,
    /// Last modification time.
    #[serde(default)]
    pub modified_timestamp: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_init_decodes_nulls_and_missing_fields() {
        let body = r#"{"meta":{"query_time":1.2,"powered_by":"empower-api","trace_id":"t"},
            "batch_id":"b1","errors":null,
            "resources":{"a1":{"aid":"a1","session_id":"s1","complete":true,"stdout":"C:\\","stderr":null,
                               "errors":null,"offline_queued":false},
                         "a2":{"aid":"a2","session_id":"","errors":[{"code":40401,"message":"Could not establish sensor comms"}]}}}"#;
        let w: BatchInitWire = serde_json::from_str(body).unwrap();
        assert_eq!(w.batch_id, "b1");
        assert_eq!(w.resources["a1"].stdout, "C:\\");
        assert_eq!(w.resources["a1"].stderr, "");
        assert_eq!(w.resources["a2"].errors[0].code, Some(40401));
    }

    #[test]
    fn queued_session_reads_capital_commands() {
        let s: QueuedSession = serde_json::from_str(
            r#"{"id":"s","aid":"a","Commands":[{"cloud_request_id":"c","status":"PENDING"}]}"#,
        )
        .unwrap();
        assert_eq!(s.commands[0].cloud_request_id, "c");
    }

    #[test]
    fn batch_get_status_accepts_object_or_list_per_host() {
        let w: BatchGetStatusWire = serde_json::from_str(
            r#"{"resources":{"a":{"session_id":"s","sha256":"h","name":"C:\\x"},
                             "b":[{"session_id":"s2","sha256":"h2","name":"/x"}]}}"#,
        )
        .unwrap();
        let a = w.resources["a"].clone().into_vec();
        let b = w.resources["b"].clone().into_vec();
        assert_eq!(a[0].sha256, "h");
        assert_eq!(b[0].session_id, "s2");
    }
}
