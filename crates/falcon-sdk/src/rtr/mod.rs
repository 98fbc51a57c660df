//! Real Time Response (RTR): single-host and batch sessions, commands, files and scripts.
//!
//! Entry point: [`FalconClient::rtr`]. See `docs/rtr.md` for session lifetime handling, batch
//! semantics, quoting rules, limits and what is not verified against the real API.
//!
//! # Batch (the path for many hosts)
//!
//! ```no_run
//! # async fn demo(client: falcon_sdk::FalconClient, aids: Vec<String>) -> Result<(), falcon_sdk::Error> {
//! use std::time::Duration;
//! use falcon_sdk::rtr::{HostStatus, runscript::Runscript};
//!
//! let rtr = client.rtr();
//! // One batch session per 10,000 hosts; every host gets an outcome.
//! let init = rtr.batch_init(&aids).queue_offline(true).timeout(Duration::from_secs(60)).send().await?;
//! for (aid, host) in init.failed() {
//!     eprintln!("{aid}: {:?} {:?}", host.status, host.errors);
//! }
//! let cmd = Runscript::raw("Get-Process | Select-Object -First 5").timeout(50).to_command_string()?;
//! for batch in &init.batches {
//!     let out = rtr
//!         .batch_admin_command(&batch.batch_id, "runscript", &cmd)
//!         .expected_hosts(&batch.hosts)
//!         .timeout(Duration::from_secs(60))
//!         .send()
//!         .await?;
//!     for (aid, r) in out.with_status(HostStatus::Complete) {
//!         println!("{aid}: {}", r.stdout);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Single host
//!
//! ```no_run
//! # async fn demo(client: falcon_sdk::FalconClient) -> Result<(), falcon_sdk::Error> {
//! use std::time::Duration;
//! let rtr = client.rtr();
//! let session = rtr.session("0123456789abcdef0123456789abcdef").origin("my-tool").open().await?;
//! let out = session.command("ls", "ls C:\\Windows").run_and_wait(Duration::from_secs(120)).await?;
//! println!("{}", out.stdout);
//! session.close().await?;
//! # Ok(()) }
//! ```
//
// NEEDS FROM CORE: nothing at the moment. The transport's `ApiRequest` (JSON bodies, query
// parameters, per-request timeout, idempotency marking, multipart factories, `send_json`,
// `send_stream`) covers every RTR call.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;

use crate::FalconClient;
use crate::error::{Error, Result};

mod batch;
mod command;
mod files;
mod http;
pub mod limits;
mod results;
pub mod runscript;
mod session;
mod types;

pub use batch::{
    BatchCommandBuilder, BatchGetStatusBuilder, BatchInitBuilder, BatchRefreshBuilder, split_hosts,
};
pub use command::{CommandOutput, PollPolicy, Role};
pub use files::{
    IdPage, ListParams, MAX_COMMENT_LEN, MAX_NAME_LEN, NewPutFile, NewScript, Permission, PutFiles,
    Scripts,
};
pub use limits::ArgumentError;
pub use results::{
    BatchCommand, BatchGetStatus, BatchInit, BatchRefresh, BatchSession, HostCommandResult,
    HostRefresh, HostResult, HostSession, HostStatus,
};
pub use runscript::RunscriptError;
pub use session::{CommandRequest, Session, SessionBuilder};
pub use types::{
    GetFile, PutFile, QueuedCommand, QueuedSession, Script, ScriptHelp, SessionFile, SessionInfo,
    SessionInit, SessionLog, StatusChunk, SubmittedCommand,
};

/// A downloaded file's bytes (a 7-Zip archive, password `infected`), streamed.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

impl From<ArgumentError> for Error {
    fn from(e: ArgumentError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<RunscriptError> for Error {
    fn from(e: RunscriptError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl FalconClient {
    /// Real Time Response: sessions, commands, batches, files and scripts.
    pub fn rtr(&self) -> Rtr<'_> {
        Rtr { client: self }
    }
}

const SESSIONS_QUERY: &str = "/real-time-response/queries/sessions/v1";
const SESSIONS_GET: &str = "/real-time-response/entities/sessions/GET/v1";
const QUEUED_GET: &str = "/real-time-response/entities/queued-sessions/GET/v1";
const QUEUED_COMMAND: &str = "/real-time-response/entities/queued-sessions/command/v1";

#[derive(Serialize)]
struct IdsBody<'a> {
    ids: &'a [String],
}

/// The RTR handler, from [`FalconClient::rtr`].
#[derive(Debug, Clone, Copy)]
pub struct Rtr<'a> {
    client: &'a FalconClient,
}

impl<'a> Rtr<'a> {
    // ----- single-host sessions -----

    /// Prepares a single-host session on `device_id`; `.open().await` opens it.
    pub fn session(&self, device_id: impl Into<String>) -> SessionBuilder {
        SessionBuilder::new(self.client.clone(), device_id.into())
    }

    /// Pulses the caller's session on a host (`refresh-session`), without a [`Session`] handle.
    pub async fn refresh_session(
        &self,
        device_id: &str,
        queue_offline: bool,
    ) -> Result<SessionInit> {
        session::pulse(self.client, device_id, queue_offline).await
    }

    /// Deletes a session by id.
    pub async fn delete_session(&self, session_id: &str) -> Result<()> {
        session::delete(self.client, session_id).await
    }

    /// Lists the caller's session ids (one page). `filter` is FQL, e.g. `deleted_at:null`.
    pub async fn list_sessions(&self, params: &ListParams) -> Result<IdPage> {
        let mut q = Vec::new();
        if let Some(f) = &params.filter {
            q.push(("filter", f.clone()));
        }
        if let Some(l) = params.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(o) = params.offset {
            q.push(("offset", o.to_string()));
        }
        if let Some(s) = &params.sort {
            q.push(("sort", s.clone()));
        }
        let (ids, total) =
            http::get_ids_page(self.client, SESSIONS_QUERY, &q, http::Opts::idempotent()).await?;
        Ok(IdPage { ids, total })
    }

    /// Gets sessions by id (only the caller's sessions are returned).
    pub async fn sessions<S: AsRef<str>>(&self, session_ids: &[S]) -> Result<Vec<SessionInfo>> {
        let ids = limits::distinct_ids("session ids", session_ids)?;
        http::post_resources(
            self.client,
            SESSIONS_GET,
            &[],
            &IdsBody { ids: &ids },
            http::Opts::idempotent(),
        )
        .await
    }

    // ----- single-host commands (lower level than Session) -----

    /// Submits a command in a session without polling (commands are never retried unless provably
    /// not sent).
    pub async fn execute(
        &self,
        role: Role,
        session_id: &str,
        base_command: &str,
        command_string: &str,
    ) -> Result<SubmittedCommand> {
        command::submit(
            self.client,
            role,
            session_id,
            None,
            base_command,
            command_string,
        )
        .await
    }

    /// One status request for a command chunk (`cloud_request_id`, `sequence_id`).
    pub async fn command_status(
        &self,
        role: Role,
        cloud_request_id: &str,
        sequence_id: u64,
    ) -> Result<StatusChunk> {
        command::status(self.client, role, cloud_request_id, sequence_id).await
    }

    /// Polls a command until complete or `timeout`, reassembling output across sequences. Does not
    /// refresh any session: for waits beyond a few minutes use [`Session::wait`].
    pub async fn wait_for_command(
        &self,
        role: Role,
        cloud_request_id: &str,
        timeout: Duration,
        poll: PollPolicy,
    ) -> Result<CommandOutput> {
        let out = CommandOutput {
            cloud_request_id: cloud_request_id.to_owned(),
            ..CommandOutput::default()
        };
        let poller = command::Poller::new(role, out, poll);
        command::poll_until(self.client, poller, timeout, || async { Ok(()) }).await
    }

    // ----- batch -----

    /// Opens batch sessions on `device_ids` (split into batches of 10,000; duplicates removed).
    pub fn batch_init<S: AsRef<str>>(&self, device_ids: &[S]) -> BatchInitBuilder<'a> {
        BatchInitBuilder::new(
            self.client,
            device_ids.iter().map(|s| s.as_ref().to_owned()).collect(),
        )
    }

    /// Refreshes every session of a batch.
    pub fn batch_refresh(&self, batch_id: impl Into<String>) -> BatchRefreshBuilder<'a> {
        BatchRefreshBuilder::new(self.client, batch_id.into())
    }

    /// A read-only command on a batch.
    pub fn batch_command(
        &self,
        batch_id: impl Into<String>,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> BatchCommandBuilder<'a> {
        self.batch_role_command(Role::ReadOnly, batch_id, base_command, command_string)
    }

    /// An active-responder command on a batch.
    pub fn batch_active_responder_command(
        &self,
        batch_id: impl Into<String>,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> BatchCommandBuilder<'a> {
        self.batch_role_command(
            Role::ActiveResponder,
            batch_id,
            base_command,
            command_string,
        )
    }

    /// An admin command on a batch (`runscript -Raw=`, `put`, `run`, ...).
    pub fn batch_admin_command(
        &self,
        batch_id: impl Into<String>,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> BatchCommandBuilder<'a> {
        self.batch_role_command(Role::Admin, batch_id, base_command, command_string)
    }

    /// A batch command for any role.
    pub fn batch_role_command(
        &self,
        role: Role,
        batch_id: impl Into<String>,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> BatchCommandBuilder<'a> {
        BatchCommandBuilder::command(
            self.client,
            role,
            batch_id.into(),
            base_command.into(),
            command_string.into(),
        )
    }

    /// Runs one command on every batch of a [`BatchInit`] (3 batches at a time), each batch
    /// expecting its own hosts, and merges the per-host results into one map. `configure` sets
    /// per-call options (timeouts) on each batch's builder. Each host's result carries its own
    /// `batch_id`; the merged `BatchCommand::batch_id` is empty. A batch whose call fails (it is
    /// not retried, so it may or may not have run) has all its hosts reported
    /// [`HostStatus::Failed`] with the error; 401/403 and invalid arguments are returned as `Err`.
    pub async fn batch_command_all(
        &self,
        role: Role,
        batches: &[BatchSession],
        base_command: &str,
        command_string: &str,
        configure: impl Fn(BatchCommandBuilder<'a>) -> BatchCommandBuilder<'a>,
    ) -> Result<BatchCommand> {
        // Futures collected first (see `batch.rs`): keeps this future `Send`.
        let futures: Vec<_> = batches
            .iter()
            .map(|b| {
                let builder = configure(
                    self.batch_role_command(role, &b.batch_id, base_command, command_string)
                        .expected_hosts(&b.hosts),
                );
                async move { (b, builder.send().await) }
            })
            .collect();
        let parts: Vec<_> = futures::stream::iter(futures)
            .buffered(limits::BATCH_INIT_CONCURRENCY)
            .collect()
            .await;
        let mut merged = BatchCommand::default();
        for (b, r) in parts {
            match r {
                Ok(p) => {
                    merged.hosts.extend(p.hosts);
                    merged.errors.extend(p.errors);
                    merged.trace_id = p.trace_id.or(merged.trace_id);
                }
                Err(e) if batch::is_fatal(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(batch_id = %b.batch_id, error = %e, "rtr batch command failed for one batch");
                    let errors = batch::errors_of(&e);
                    for aid in &b.hosts {
                        merged
                            .hosts
                            .insert(aid.clone(), HostResult::failed(&b.batch_id, &errors));
                    }
                    merged.errors.extend(errors);
                }
            }
        }
        Ok(merged)
    }

    /// `get` a file on every host of a batch; poll with [`Rtr::batch_get_status`].
    pub fn batch_get(
        &self,
        batch_id: impl Into<String>,
        file_path: impl Into<String>,
    ) -> BatchCommandBuilder<'a> {
        BatchCommandBuilder::get(self.client, batch_id.into(), file_path.into())
    }

    /// Status of a batch `get` (`batch_get_cmd_req_id`): the files uploaded so far, per host.
    pub fn batch_get_status(
        &self,
        batch_get_cmd_req_id: impl Into<String>,
    ) -> BatchGetStatusBuilder<'a> {
        BatchGetStatusBuilder::new(self.client, batch_get_cmd_req_id.into())
    }

    // ----- files and scripts -----

    /// The put-files library.
    pub fn put_files(&self) -> PutFiles<'a> {
        PutFiles {
            client: self.client,
        }
    }

    /// The custom scripts library.
    pub fn scripts(&self) -> Scripts<'a> {
        Scripts {
            client: self.client,
        }
    }

    /// Files extracted by `get` in a session.
    pub async fn session_files(&self, session_id: &str) -> Result<Vec<SessionFile>> {
        files::session_files(self.client, session_id).await
    }

    /// Deletes an extracted file from a session.
    pub async fn delete_session_file(&self, session_id: &str, file_id: &str) -> Result<()> {
        files::delete_session_file(self.client, session_id, file_id).await
    }

    /// Downloads an extracted file as a byte stream: a 7-Zip archive holding the file, password
    /// `infected`. `filename` names the file inside the archive (optional).
    pub async fn download_file(
        &self,
        session_id: &str,
        sha256: &str,
        filename: Option<&str>,
    ) -> Result<ByteStream> {
        files::download(self.client, session_id, sha256, filename).await
    }

    // ----- queued sessions (offline hosts) -----

    /// Queued sessions (with their queued commands) by session id.
    pub async fn queued_sessions<S: AsRef<str>>(
        &self,
        session_ids: &[S],
    ) -> Result<Vec<QueuedSession>> {
        let ids = limits::distinct_ids("session ids", session_ids)?;
        http::post_resources(
            self.client,
            QUEUED_GET,
            &[],
            &IdsBody { ids: &ids },
            http::Opts::idempotent(),
        )
        .await
    }

    /// Deletes one queued command of an offline host.
    pub async fn delete_queued_command(
        &self,
        session_id: &str,
        cloud_request_id: &str,
    ) -> Result<()> {
        http::delete(
            self.client,
            QUEUED_COMMAND,
            &[
                ("session_id", session_id.to_owned()),
                ("cloud_request_id", cloud_request_id.to_owned()),
            ],
        )
        .await
    }
}
