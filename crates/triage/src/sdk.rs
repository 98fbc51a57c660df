//! [`FalconApi`] over `falcon_sdk::FalconClient`.

use std::collections::BTreeMap;
use std::time::Duration;

use falcon_sdk::FalconClient;
use futures::TryStreamExt;

use crate::api::{BatchSession, FalconApi, HostInfo, HostReply, QueuedCommand};
use crate::error::{Error, Result};

/// The Falcon SDK client as the orchestrator's [`FalconApi`].
#[derive(Debug, Clone)]
pub struct SdkApi {
    client: FalconClient,
}

impl SdkApi {
    /// Wraps a client.
    pub fn new(client: FalconClient) -> SdkApi {
        SdkApi { client }
    }

    /// The client.
    pub fn client(&self) -> &FalconClient {
        &self.client
    }
}

pub(crate) fn falcon_error(operation: &'static str, e: falcon_sdk::Error) -> Error {
    Error::Falcon {
        operation,
        retryable: e.is_retryable(),
        source: Box::new(e),
    }
}

fn reply(r: &falcon_sdk::rtr::HostResult) -> HostReply {
    HostReply {
        session_id: r.session_id.clone(),
        complete: r.complete,
        offline_queued: r.offline_queued,
        stdout: r.stdout.clone(),
        stderr: r.stderr.clone(),
        errors: r
            .errors
            .iter()
            .map(|e| (e.code.unwrap_or(0), e.message.clone()))
            .collect(),
    }
}

/// Session ids per queued-session lookup. Falcon documents no limit for `RTR_ListQueuedSessions`; 100 is
/// the smallest entity-lookup limit of the API, so it is safe whatever the real one is.
const QUEUED_LOOKUP_CHUNK: usize = 100;

/// Whether a queued command still waits for its host: `PENDING` (any case), or no status at all while not
/// deleted (tolerant: the other status values are unverified).
fn queued_pending(c: &falcon_sdk::rtr::QueuedCommand) -> bool {
    match &c.status {
        Some(s) => s.eq_ignore_ascii_case("pending"),
        None => c.deleted_at.as_deref().is_none_or(str::is_empty),
    }
}

impl FalconApi for SdkApi {
    async fn host_ids(&self, filter: Option<String>) -> Result<Vec<String>> {
        let mut scroll = self.client.hosts().scroll();
        if let Some(f) = filter {
            scroll = scroll.filter(f);
        }
        scroll
            .ids()
            .try_collect()
            .await
            .map_err(|e| falcon_error("query hosts", e))
    }

    async fn host_details(&self, ids: &[String]) -> Result<Vec<HostInfo>> {
        let devices = self
            .client
            .hosts()
            .details(ids)
            .await
            .map_err(|e| falcon_error("host details", e))?;
        Ok(devices
            .into_iter()
            .map(|d| HostInfo {
                device_id: d.device_id,
                hostname: d.hostname.unwrap_or_default(),
                platform_name: d.platform_name,
            })
            .collect())
    }

    async fn host_group_members(&self, name: &str) -> Result<Vec<String>> {
        let groups = self.client.host_groups();
        let Some(group) = groups
            .find_by_name(name)
            .await
            .map_err(|e| falcon_error("find host group", e))?
        else {
            return Ok(Vec::new());
        };
        groups
            .members(group.id)
            .ids()
            .try_collect()
            .await
            .map_err(|e| falcon_error("host group members", e))
    }

    async fn alert_device_ids(&self, composite_ids: &[String]) -> Result<Vec<String>> {
        let alerts = self
            .client
            .alerts()
            .get(composite_ids)
            .await
            .map_err(|e| falcon_error("get alerts", e))?;
        let mut out: Vec<String> = alerts
            .into_iter()
            .filter_map(|a| a.device.map(|d| d.device_id))
            .filter(|id| !id.is_empty())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn batch_init(
        &self,
        ids: &[String],
        queue_offline: bool,
        existing_batch: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<BatchSession>> {
        let mut init = self
            .client
            .rtr()
            .batch_init(ids)
            .queue_offline(queue_offline)
            .timeout(timeout);
        if let Some(b) = existing_batch {
            init = init.existing_batch_id(b);
        }
        let init = init
            .send()
            .await
            .map_err(|e| falcon_error("batch session init", e))?;
        let mut sessions: Vec<BatchSession> = init
            .batches
            .iter()
            .map(|b| BatchSession {
                batch_id: b.batch_id.clone(),
                hosts: BTreeMap::new(),
            })
            .collect();
        for (aid, r) in &init.hosts {
            if let Some(s) = sessions.iter_mut().find(|s| s.batch_id == r.batch_id) {
                s.hosts.insert(aid.clone(), reply(r));
            } else if let Some(s) = sessions.first_mut() {
                s.hosts.insert(aid.clone(), reply(r));
            }
        }
        Ok(sessions)
    }

    async fn batch_admin_command(
        &self,
        batch_id: &str,
        base_command: &str,
        command_string: &str,
        optional_hosts: &[String],
        timeout: Duration,
    ) -> Result<BTreeMap<String, HostReply>> {
        let out = self
            .client
            .rtr()
            .batch_admin_command(batch_id, base_command, command_string)
            .optional_hosts(optional_hosts)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| falcon_error("batch admin command", e))?;
        Ok(out
            .hosts
            .iter()
            .map(|(aid, r)| (aid.clone(), reply(r)))
            .collect())
    }

    async fn queued_commands(
        &self,
        session_ids: &[String],
        marker: &str,
    ) -> Result<Vec<QueuedCommand>> {
        let mut out = Vec::new();
        for chunk in session_ids.chunks(QUEUED_LOOKUP_CHUNK) {
            let sessions = self
                .client
                .rtr()
                .queued_sessions(chunk)
                .await
                .map_err(|e| falcon_error("queued sessions", e))?;
            for s in sessions {
                for c in &s.commands {
                    if !c
                        .command_string
                        .as_deref()
                        .is_some_and(|cmd| cmd.contains(marker))
                    {
                        continue;
                    }
                    out.push(QueuedCommand {
                        session_id: s.id.clone(),
                        device_id: s.aid.clone(),
                        cloud_request_id: c.cloud_request_id.clone(),
                        pending: queued_pending(c),
                        status: c.status.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn delete_queued_command(
        &self,
        session_id: &str,
        cloud_request_id: &str,
    ) -> Result<bool> {
        match self
            .client
            .rtr()
            .delete_queued_command(session_id, cloud_request_id)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.status() == Some(falcon_sdk::StatusCode::NOT_FOUND) => Ok(false),
            Err(e) => Err(falcon_error("delete queued command", e)),
        }
    }

    async fn batch_refresh(&self, batch_id: &str, timeout: Duration) -> Result<()> {
        self.client
            .rtr()
            .batch_refresh(batch_id)
            .timeout(timeout)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| falcon_error("batch session refresh", e))
    }
}
