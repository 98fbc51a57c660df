//! The Falcon operations the orchestrator needs, as a trait, so the run logic is independent of transport.
//!
//! [`crate::sdk::SdkApi`] implements it over `falcon_sdk::FalconClient`; tests may implement it in memory.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// What the orchestrator needs to know of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Device id (AID).
    pub device_id: String,
    /// Host name (empty when Falcon has none).
    pub hostname: String,
    /// Falcon `platform_name` (`Windows`, `Linux`, `Mac`).
    pub platform_name: Option<String>,
}

/// One host's answer to a batch session init or a batch command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReply {
    /// RTR session id.
    pub session_id: Option<String>,
    /// Whether the command completed.
    pub complete: bool,
    /// Whether the host is offline and the command was queued.
    pub offline_queued: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Errors reported for this host: (code, message).
    pub errors: Vec<(i64, String)>,
}

impl HostReply {
    /// Whether Falcon reported this host offline (`40401 Could not establish sensor comms`).
    pub fn is_offline_error(&self) -> bool {
        self.errors.iter().any(|(c, _)| *c == 40401)
    }

    /// Whether the command outlived the request timeout (`50401`): its effect is unknown.
    pub fn is_timeout_error(&self) -> bool {
        self.errors.iter().any(|(c, _)| *c == 50401)
    }

    /// The errors as one line.
    pub fn error_text(&self) -> String {
        self.errors
            .iter()
            .map(|(c, m)| format!("{c} {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One batch session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSession {
    /// The batch id.
    pub batch_id: String,
    /// Per-host outcome of the init, by device id.
    pub hosts: BTreeMap<String, HostReply>,
}

/// One command queued for an offline host, as the queued-session API reports it
/// (`RTR_ListQueuedSessions`, `DomainQueuedSessionJob.Commands[]`). The command string is not kept: it
/// holds the collector command, a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCommand {
    /// The queued session.
    pub session_id: String,
    /// The host.
    pub device_id: String,
    /// The command's id, for deleting it.
    pub cloud_request_id: String,
    /// Whether it still waits for the host (status `PENDING`, or no status and not deleted).
    pub pending: bool,
    /// The status as Falcon wrote it (`PENDING`, `FINISHED`, ...; the values other than `PENDING` are
    /// unverified).
    pub status: Option<String>,
}

/// The Falcon operations of a triage run. Futures are `Send` so runs can be spawned.
pub trait FalconApi: Send + Sync {
    /// Device ids matching an FQL filter (all hosts for `None`), every page.
    fn host_ids(&self, filter: Option<String>) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Details of the given devices (unknown ids are left out).
    fn host_details(&self, ids: &[String]) -> impl Future<Output = Result<Vec<HostInfo>>> + Send;
    /// Device ids of the members of the host group named `name` (exact name, case-insensitive).
    fn host_group_members(&self, name: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Device ids of the hosts of the given alerts (composite ids); alerts without a device are left out.
    fn alert_device_ids(
        &self,
        composite_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Opens batch sessions over `ids` (at most 10,000 per batch; larger lists give several batches), or
    /// adds them to `existing_batch` (`existing_batch_id`; the batch's hosts and `ids` together at most
    /// 10,000).
    fn batch_init(
        &self,
        ids: &[String],
        queue_offline: bool,
        existing_batch: Option<&str>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<BatchSession>>> + Send;
    /// Runs an admin command (`runscript`) on the `optional_hosts` of a batch.
    fn batch_admin_command(
        &self,
        batch_id: &str,
        base_command: &str,
        command_string: &str,
        optional_hosts: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<BTreeMap<String, HostReply>>> + Send;
    /// The commands queued in the given sessions whose command string contains `marker` (the run's job id),
    /// so commands of other runs reusing the same session are left alone.
    fn queued_commands(
        &self,
        session_ids: &[String],
        marker: &str,
    ) -> impl Future<Output = Result<Vec<QueuedCommand>>> + Send;
    /// Deletes one queued command (`RTR_DeleteQueuedSession`): `Ok(true)` when deleted, `Ok(false)` when
    /// Falcon no longer had it (`404`: it ran, or the session expired).
    fn delete_queued_command(
        &self,
        session_id: &str,
        cloud_request_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Keeps a batch's sessions alive.
    fn batch_refresh(
        &self,
        batch_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
}
