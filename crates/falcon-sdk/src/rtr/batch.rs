//! Batch sessions: init (split at 10,000 hosts), refresh, commands for the three roles, `get`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use serde::Serialize;

use crate::FalconClient;
use crate::error::{Error, Result};

use super::command::Role;
use super::http;
use super::limits::{
    ArgumentError, BATCH_INIT_CONCURRENCY, MAX_BATCH_HOSTS, Timeouts, distinct_ids,
};
use super::results::{
    BatchCommand, BatchGetStatus, BatchInit, BatchRefresh, BatchSession, HostRefresh, HostResult,
    HostStatus, attribute,
};
use super::types::{BatchCommandWire, BatchGetStatusWire, BatchInitWire, BatchRefreshWire};

const INIT_PATH: &str = "/real-time-response/combined/batch-init-session/v1";
const REFRESH_PATH: &str = "/real-time-response/combined/batch-refresh-session/v1";
const GET_PATH: &str = "/real-time-response/combined/batch-get-command/v1";

/// Splits a host list into batches of at most [`MAX_BATCH_HOSTS`] (after removing duplicates).
pub fn split_hosts<S: AsRef<str>>(hosts: &[S]) -> Result<Vec<Vec<String>>> {
    let ids = distinct_ids("host_ids", hosts)?;
    Ok(ids.chunks(MAX_BATCH_HOSTS).map(|c| c.to_vec()).collect())
}

#[derive(Serialize)]
struct InitBody<'a> {
    host_ids: &'a [String],
    queue_offline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing_batch_id: Option<&'a str>,
}

/// Builder of a batch session init, from [`Rtr::batch_init`](super::Rtr::batch_init).
#[derive(Debug, Clone)]
#[must_use = "call .send().await"]
pub struct BatchInitBuilder<'a> {
    client: &'a FalconClient,
    hosts: Vec<String>,
    queue_offline: bool,
    existing_batch_id: Option<String>,
    timeouts: Timeouts,
    concurrency: usize,
}

impl<'a> BatchInitBuilder<'a> {
    pub(crate) fn new(client: &'a FalconClient, hosts: Vec<String>) -> Self {
        BatchInitBuilder {
            client,
            hosts,
            queue_offline: false,
            existing_batch_id: None,
            timeouts: Timeouts::default(),
            concurrency: BATCH_INIT_CONCURRENCY,
        }
    }

    /// Queue the session for offline hosts (they report [`HostStatus::QueuedOffline`](super::HostStatus)).
    pub fn queue_offline(mut self, yes: bool) -> Self {
        self.queue_offline = yes;
        self
    }

    /// Add the hosts to an existing batch (only for at most 10,000 hosts).
    pub fn existing_batch_id(mut self, batch_id: impl Into<String>) -> Self {
        self.existing_batch_id = Some(batch_id.into());
        self
    }

    /// Request `timeout` (whole seconds, 1 s ..= 5 min; refused before sending otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.timeout = Some(timeout);
        self
    }

    /// `host_timeout_duration` (above zero, below the request timeout).
    pub fn host_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.host_timeout = Some(timeout);
        self
    }

    /// How many batch inits run concurrently when the hosts are split (default 3, minimum 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Opens one batch session per 10,000 hosts and reports every host's outcome.
    ///
    /// A batch whose init call fails (after the client's retries) does not fail the whole call: its
    /// hosts are reported [`HostStatus::Failed`] with the error's `errors[]` (a 404 "no successful
    /// hosts initialized" body is decoded, so its per-host errors are kept) and the batch is left out
    /// of [`BatchInit::batches`]. Authentication and authorisation errors (401/403) and invalid
    /// arguments are returned as `Err`.
    pub async fn send(self) -> Result<BatchInit> {
        let query = self.timeouts.query().map_err(Error::from)?;
        let chunks = split_hosts(&self.hosts)?;
        if self.existing_batch_id.is_some() && chunks.len() > 1 {
            return Err(ArgumentError::ExistingBatchTooLarge {
                hosts: chunks.iter().map(Vec::len).sum(),
                max: MAX_BATCH_HOSTS,
            }
            .into());
        }
        // A 404 ("no successful hosts initialized on RTR") still carries the per-host errors.
        let opts = http::Opts::idempotent()
            .rtr_timeout(self.timeouts.timeout)
            .accept(reqwest::StatusCode::NOT_FOUND);
        let client = self.client;
        let queue_offline = self.queue_offline;
        let existing = self.existing_batch_id.as_deref();
        let query = &query;
        let results: Vec<(Vec<String>, Result<BatchInitWire>)> = stream::iter(chunks)
            .map(|hosts| async move {
                let body = InitBody {
                    host_ids: &hosts,
                    queue_offline,
                    existing_batch_id: existing,
                };
                let r =
                    http::post_raw::<_, BatchInitWire>(client, INIT_PATH, query, &body, opts).await;
                (hosts, r)
            })
            .buffered(self.concurrency)
            .collect()
            .await;

        let mut out = BatchInit::default();
        for (hosts, r) in results {
            match r {
                Ok(w) => {
                    for e in &w.errors {
                        out.batch_errors.push((w.batch_id.clone(), e.clone()));
                    }
                    attribute(&mut out.hosts, &w.batch_id, &hosts, w.resources, &w.errors);
                    if w.batch_id.is_empty() {
                        // No batch was created: a host without its own entry failed with the batch.
                        for aid in &hosts {
                            if let Some(h) = out.hosts.get_mut(aid)
                                && h.status == HostStatus::Missing
                            {
                                h.status = HostStatus::Failed;
                            }
                        }
                    } else {
                        out.batches.push(BatchSession {
                            batch_id: w.batch_id,
                            hosts,
                        });
                    }
                }
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(hosts = hosts.len(), error = %e, "rtr batch init failed for one batch");
                    let errors = errors_of(&e);
                    for err in &errors {
                        out.batch_errors.push((String::new(), err.clone()));
                    }
                    for aid in &hosts {
                        out.hosts
                            .entry(aid.clone())
                            .or_insert_with(|| HostResult::failed("", &errors));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The `errors[]` to attribute to each host of a batch whose call failed.
pub(crate) fn errors_of(e: &Error) -> Vec<crate::error::ApiErrorItem> {
    let mut errors = e.api_errors().to_vec();
    if errors.is_empty() {
        errors.push(crate::error::ApiErrorItem {
            code: e.status().map(|s| i64::from(s.as_u16())),
            message: format!(
                "{e}: {}",
                std::error::Error::source(e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ),
            id: None,
        });
    }
    errors
}

/// Errors that concern the whole call (credentials, arguments), not one batch.
pub(crate) fn is_fatal(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidArgument(_) | Error::Config(_) | Error::Auth { .. }
    ) || matches!(e.status().map(|s| s.as_u16()), Some(401 | 403))
}

#[derive(Serialize)]
struct RefreshBody<'a> {
    batch_id: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    hosts_to_remove: &'a [String],
}

/// Builder of a batch refresh, from [`Rtr::batch_refresh`](super::Rtr::batch_refresh).
#[derive(Debug, Clone)]
#[must_use = "call .send().await"]
pub struct BatchRefreshBuilder<'a> {
    client: &'a FalconClient,
    batch_id: String,
    hosts_to_remove: Vec<String>,
    timeouts: Timeouts,
}

impl<'a> BatchRefreshBuilder<'a> {
    pub(crate) fn new(client: &'a FalconClient, batch_id: String) -> Self {
        BatchRefreshBuilder {
            client,
            batch_id,
            hosts_to_remove: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }

    /// Hosts to drop from the batch: they stop being refreshed and their sessions expire.
    pub fn hosts_to_remove<S: AsRef<str>>(mut self, hosts: &[S]) -> Self {
        self.hosts_to_remove = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
        self
    }

    /// Request `timeout` (whole seconds, 1 s ..= 5 min).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.timeout = Some(timeout);
        self
    }

    /// Refreshes every host of the batch.
    pub async fn send(self) -> Result<BatchRefresh> {
        let query = self.timeouts.query().map_err(Error::from)?;
        if self.batch_id.trim().is_empty() {
            return Err(Error::InvalidArgument("batch_id is empty".into()));
        }
        let body = RefreshBody {
            batch_id: &self.batch_id,
            hosts_to_remove: &self.hosts_to_remove,
        };
        let w: BatchRefreshWire = http::post_raw(
            self.client,
            REFRESH_PATH,
            &query,
            &body,
            http::Opts::idempotent().rtr_timeout(self.timeouts.timeout),
        )
        .await?;
        Ok(BatchRefresh {
            batch_id: self.batch_id,
            hosts: w
                .resources
                .into_iter()
                .map(|(aid, h)| {
                    (
                        aid,
                        HostRefresh {
                            session_id: (!h.session_id.is_empty()).then_some(h.session_id),
                            errors: h.errors,
                        },
                    )
                })
                .collect(),
            errors: w.errors,
        })
    }
}

#[derive(Serialize)]
struct CommandBody<'a> {
    base_command: &'a str,
    command_string: &'a str,
    batch_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    optional_hosts: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    persist_all: Option<bool>,
}

#[derive(Serialize)]
struct GetBody<'a> {
    batch_id: &'a str,
    file_path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    optional_hosts: Option<&'a [String]>,
}

#[derive(Debug, Clone)]
enum CommandKind {
    Command {
        role: Role,
        base_command: String,
        command_string: String,
        persist_all: Option<bool>,
    },
    Get {
        file_path: String,
    },
}

/// Builder of a batch command (three roles) or batch `get`, from
/// [`Rtr::batch_admin_command`](super::Rtr::batch_admin_command) and friends.
#[derive(Debug, Clone)]
#[must_use = "call .send().await"]
pub struct BatchCommandBuilder<'a> {
    client: &'a FalconClient,
    batch_id: String,
    kind: CommandKind,
    optional_hosts: Option<Vec<String>>,
    expected_hosts: Vec<String>,
    timeouts: Timeouts,
}

impl<'a> BatchCommandBuilder<'a> {
    pub(crate) fn command(
        client: &'a FalconClient,
        role: Role,
        batch_id: String,
        base_command: String,
        command_string: String,
    ) -> Self {
        Self::new(
            client,
            batch_id,
            CommandKind::Command {
                role,
                base_command,
                command_string,
                persist_all: None,
            },
        )
    }

    pub(crate) fn get(client: &'a FalconClient, batch_id: String, file_path: String) -> Self {
        Self::new(client, batch_id, CommandKind::Get { file_path })
    }

    fn new(client: &'a FalconClient, batch_id: String, kind: CommandKind) -> Self {
        BatchCommandBuilder {
            client,
            batch_id,
            kind,
            optional_hosts: None,
            expected_hosts: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }

    /// Restricts the command to these hosts of the batch (`optional_hosts`). They are also the
    /// hosts expected in the result: any the API leaves out is reported
    /// [`HostStatus::Missing`](super::HostStatus).
    pub fn optional_hosts<S: AsRef<str>>(mut self, hosts: &[S]) -> Self {
        self.optional_hosts = Some(hosts.iter().map(|h| h.as_ref().to_owned()).collect());
        self
    }

    /// Hosts expected in the result without restricting the command (typically
    /// [`BatchSession::hosts`]): any the API leaves out is reported `Missing`.
    pub fn expected_hosts<S: AsRef<str>>(mut self, hosts: &[S]) -> Self {
        self.expected_hosts = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
        self
    }

    /// `persist_all` (semantics undocumented; passed through).
    pub fn persist_all(mut self, yes: bool) -> Self {
        if let CommandKind::Command { persist_all, .. } = &mut self.kind {
            *persist_all = Some(yes);
        }
        self
    }

    /// Request `timeout` (whole seconds, 1 s ..= 5 min): the call returns when every host finished
    /// or at this timeout, with unfinished hosts `Pending` or failed with `50401`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.timeout = Some(timeout);
        self
    }

    /// `host_timeout_duration` (above zero, below the request timeout).
    pub fn host_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.host_timeout = Some(timeout);
        self
    }

    /// Sends the command once (commands are not retried unless provably not sent) and reports every
    /// host's result.
    pub async fn send(self) -> Result<BatchCommand> {
        let query = self.timeouts.query().map_err(Error::from)?;
        if self.batch_id.trim().is_empty() {
            return Err(Error::InvalidArgument("batch_id is empty".into()));
        }
        let optional = match &self.optional_hosts {
            Some(h) => Some(distinct_ids("optional_hosts", h)?),
            None => None,
        };
        let opts = http::Opts::not_idempotent().rtr_timeout(self.timeouts.timeout);
        let w: BatchCommandWire = match &self.kind {
            CommandKind::Command {
                role,
                base_command,
                command_string,
                persist_all,
            } => {
                if base_command.trim().is_empty() || command_string.trim().is_empty() {
                    return Err(Error::InvalidArgument(
                        "base_command and command_string must not be empty".into(),
                    ));
                }
                if !command_string.starts_with(base_command.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "command_string must start with the base command `{base_command}`"
                    )));
                }
                let body = CommandBody {
                    base_command,
                    command_string,
                    batch_id: &self.batch_id,
                    optional_hosts: optional.as_deref(),
                    persist_all: *persist_all,
                };
                http::post_raw(self.client, role.batch_path(), &query, &body, opts).await?
            }
            CommandKind::Get { file_path } => {
                if file_path.trim().is_empty() {
                    return Err(Error::InvalidArgument("file_path is empty".into()));
                }
                let body = GetBody {
                    batch_id: &self.batch_id,
                    file_path,
                    optional_hosts: optional.as_deref(),
                };
                http::post_raw(self.client, GET_PATH, &query, &body, opts).await?
            }
        };
        let mut returned = w.combined.resources;
        if returned.is_empty() {
            returned = w.resources;
        }
        let expected = optional.unwrap_or(self.expected_hosts);
        let mut hosts = BTreeMap::new();
        attribute(&mut hosts, &self.batch_id, &expected, returned, &w.errors);
        Ok(BatchCommand {
            batch_id: self.batch_id,
            batch_get_cmd_req_id: w.batch_get_cmd_req_id,
            hosts,
            errors: w.errors,
            trace_id: w.meta.trace_id,
        })
    }
}

/// Builder of a batch `get` status query, from [`Rtr::batch_get_status`](super::Rtr::batch_get_status).
#[derive(Debug, Clone)]
#[must_use = "call .send().await"]
pub struct BatchGetStatusBuilder<'a> {
    client: &'a FalconClient,
    req_id: String,
    timeouts: Timeouts,
}

impl<'a> BatchGetStatusBuilder<'a> {
    pub(crate) fn new(client: &'a FalconClient, req_id: String) -> Self {
        BatchGetStatusBuilder {
            client,
            req_id,
            timeouts: Timeouts::default(),
        }
    }

    /// Request `timeout` (whole seconds, 1 s ..= 5 min).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.timeout = Some(timeout);
        self
    }

    /// Fetches the files uploaded so far, per host.
    pub async fn send(self) -> Result<BatchGetStatus> {
        let mut query = self.timeouts.query().map_err(Error::from)?;
        if self.req_id.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "batch_get_cmd_req_id is empty".into(),
            ));
        }
        query.push(("batch_get_cmd_req_id", self.req_id));
        let w: BatchGetStatusWire = http::get_raw(
            self.client,
            GET_PATH,
            &query,
            http::Opts::idempotent().rtr_timeout(self.timeouts.timeout),
        )
        .await?;
        Ok(BatchGetStatus {
            hosts: w
                .resources
                .into_iter()
                .map(|(aid, f)| (aid, f.into_vec()))
                .collect(),
            errors: w.errors,
        })
    }
}
