//! [`FalconApi`] over `falcon_sdk::FalconClient`.

use std::collections::BTreeMap;
use std::time::Duration;

use falcon_sdk::FalconClient;
use futures::TryStreamExt;

use crate::api::{BatchSession, FalconApi, HostInfo, HostReply};
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

#[derive(serde::Deserialize)]
struct AlertsEnvelope {
    #[serde(default)]
    resources: Option<Vec<serde_json::Value>>,
}

impl FalconApi for SdkApi {
    async fn host_ids(&self, filter: Option<String>) -> Result<Vec<String>> {
        self.client
            .hosts()
            .ids(filter)
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
        let mut out = Vec::new();
        for chunk in composite_ids.chunks(1000) {
            let env: AlertsEnvelope = self
                .client
                .post(
                    "/alerts/entities/alerts/v2",
                    &(),
                    &serde_json::json!({ "composite_ids": chunk }),
                )
                .await
                .map_err(|e| falcon_error("get alerts", e))?;
            for a in env.resources.unwrap_or_default() {
                if let Some(id) = a.pointer("/device/device_id").and_then(|v| v.as_str()) {
                    out.push(id.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn batch_init(
        &self,
        ids: &[String],
        queue_offline: bool,
        timeout: Duration,
    ) -> Result<Vec<BatchSession>> {
        let init = self
            .client
            .rtr()
            .batch_init(ids)
            .queue_offline(queue_offline)
            .timeout(timeout)
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
