//! Single-host session handle: refreshes itself before expiry while in use, closes on drop.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::FalconClient;
use crate::error::Result;

use super::command::{self, CommandOutput, PollPolicy, Poller, Role};
use super::http;
use super::limits::{self, DEFAULT_REFRESH_MARGIN, SESSION_EXPIRY};
use super::types::{SessionFile, SessionInit, SubmittedCommand};

pub(crate) const SESSION_PATH: &str = "/real-time-response/entities/sessions/v1";
pub(crate) const PULSE_PATH: &str = "/real-time-response/entities/refresh-session/v1";

#[derive(Serialize)]
pub(crate) struct InitBody<'a> {
    pub device_id: &'a str,
    pub queue_offline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a str>,
}

/// Opens a single-host session: `POST /real-time-response/entities/sessions/v1`.
pub(crate) async fn init(
    client: &FalconClient,
    body: &InitBody<'_>,
    timeout: Option<Duration>,
) -> Result<SessionInit> {
    let mut q = Vec::new();
    if let Some(t) = timeout {
        limits::check_timeout("timeout", t)?;
        q.push(("timeout", t.as_secs().to_string()));
    }
    // RTR reuses the caller's existing session on the host, so a retry opens no second session.
    let mut items: Vec<SessionInit> = http::post_resources(
        client,
        SESSION_PATH,
        &q,
        body,
        http::Opts::idempotent().rtr_timeout(timeout),
    )
    .await?;
    items
        .pop()
        .ok_or_else(|| http::empty_resources("POST", SESSION_PATH))
}

/// Refreshes (pulses) the session of a host: `POST /real-time-response/entities/refresh-session/v1`.
pub(crate) async fn pulse(
    client: &FalconClient,
    device_id: &str,
    queue_offline: bool,
) -> Result<SessionInit> {
    let body = InitBody {
        device_id,
        queue_offline,
        origin: None,
    };
    let mut items: Vec<SessionInit> =
        http::post_resources(client, PULSE_PATH, &[], &body, http::Opts::idempotent()).await?;
    items
        .pop()
        .ok_or_else(|| http::empty_resources("POST", PULSE_PATH))
}

/// Deletes a session: `DELETE /real-time-response/entities/sessions/v1?session_id=`.
pub(crate) async fn delete(client: &FalconClient, session_id: &str) -> Result<()> {
    http::delete(
        client,
        SESSION_PATH,
        &[("session_id", session_id.to_owned())],
    )
    .await
}

/// Builder of a single-host [`Session`], from [`Rtr::session`](super::Rtr::session).
#[derive(Debug, Clone)]
#[must_use = "call .open().await"]
pub struct SessionBuilder {
    client: FalconClient,
    device_id: String,
    origin: Option<String>,
    queue_offline: bool,
    timeout: Option<Duration>,
    refresh_margin: Duration,
    poll: PollPolicy,
}

impl SessionBuilder {
    pub(crate) fn new(client: FalconClient, device_id: String) -> Self {
        SessionBuilder {
            client,
            device_id,
            origin: None,
            queue_offline: false,
            timeout: None,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            poll: PollPolicy::default(),
        }
    }

    /// Free-text origin recorded in the audit log (e.g. `falcon-triage`).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Queue commands when the host is offline (default false).
    pub fn queue_offline(mut self, yes: bool) -> Self {
        self.queue_offline = yes;
        self
    }

    /// Request timeout of the init call (1 s ..= 5 min; default 30 s server-side).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Pulse the session when less than this remains of its 10-minute lifetime (default 180 s,
    /// clamped to 10 s ..= 590 s).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin.clamp(Duration::from_secs(10), Duration::from_secs(590));
        self
    }

    /// Status polling pace of commands run through this session.
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Opens the session.
    pub async fn open(self) -> Result<Session> {
        if self.device_id.trim().is_empty() {
            return Err(crate::Error::InvalidArgument("device id is empty".into()));
        }
        let body = InitBody {
            device_id: &self.device_id,
            queue_offline: self.queue_offline,
            origin: self.origin.as_deref(),
        };
        let init = init(&self.client, &body, self.timeout).await?;
        tracing::debug!(device_id = %self.device_id, session_id = %init.session_id, "rtr session opened");
        Ok(Session {
            session_id: Mutex::new(init.session_id.clone()),
            client: self.client,
            device_id: self.device_id,
            queue_offline: self.queue_offline,
            refreshed_at: Mutex::new(Instant::now()),
            refresh_margin: self.refresh_margin,
            poll: self.poll,
            closed: AtomicBool::new(false),
            init,
        })
    }
}

/// An open single-host RTR session.
///
/// Every call made through the handle first pulses the session when less than the refresh margin
/// (default 180 s) remains of its 10-minute lifetime, including between the status polls of a long
/// [`CommandRequest::run_and_wait`]. An idle handle is not kept alive. The session is deleted by
/// [`Session::close`], or on drop (in a background task, when a Tokio runtime is available).
#[derive(Debug)]
pub struct Session {
    client: FalconClient,
    device_id: String,
    session_id: Mutex<String>,
    queue_offline: bool,
    refreshed_at: Mutex<Instant>,
    refresh_margin: Duration,
    poll: PollPolicy,
    closed: AtomicBool,
    init: SessionInit,
}

impl Session {
    /// The session id.
    pub fn id(&self) -> String {
        self.session_id.lock().expect("lock").clone()
    }

    /// The host's device id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The init response (platform, pwd, offline_queued, available commands).
    pub fn init_response(&self) -> &SessionInit {
        &self.init
    }

    /// True when the host was offline at init and commands are queued.
    pub fn is_offline_queued(&self) -> bool {
        self.init.offline_queued
    }

    /// When the session expires unless refreshed (10 minutes after the last init or pulse).
    pub fn expires_at(&self) -> Instant {
        *self.refreshed_at.lock().expect("lock") + SESSION_EXPIRY
    }

    /// Pulses the session now.
    pub async fn refresh(&self) -> Result<()> {
        let r = pulse(&self.client, &self.device_id, self.queue_offline).await?;
        if !r.session_id.is_empty() {
            *self.session_id.lock().expect("lock") = r.session_id;
        }
        *self.refreshed_at.lock().expect("lock") = Instant::now();
        tracing::debug!(device_id = %self.device_id, "rtr session refreshed");
        Ok(())
    }

    /// Pulses the session if less than the refresh margin remains before expiry.
    pub async fn keep_alive(&self) -> Result<()> {
        let due = self.expires_at() - self.refresh_margin;
        if Instant::now() >= due {
            self.refresh().await?;
        }
        Ok(())
    }

    /// A read-only command (`ls`, `ps`, ...). `command_string` is the full line, e.g. `ls C:\`.
    pub fn command(
        &self,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> CommandRequest<'_> {
        self.request(Role::ReadOnly, base_command.into(), command_string.into())
    }

    /// An active-responder command (`get`, `rm`, `runscript -CloudFile=`, ...).
    pub fn active_responder_command(
        &self,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> CommandRequest<'_> {
        self.request(
            Role::ActiveResponder,
            base_command.into(),
            command_string.into(),
        )
    }

    /// An admin command (`put`, `run`, `runscript -Raw=`, ...).
    pub fn admin_command(
        &self,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> CommandRequest<'_> {
        self.request(Role::Admin, base_command.into(), command_string.into())
    }

    /// A command for any role (see [`Role::for_command`] to pick the role from a command line).
    pub fn role_command(
        &self,
        role: Role,
        base_command: impl Into<String>,
        command_string: impl Into<String>,
    ) -> CommandRequest<'_> {
        self.request(role, base_command.into(), command_string.into())
    }

    fn request(&self, role: Role, base: String, cmd: String) -> CommandRequest<'_> {
        CommandRequest {
            session: self,
            role,
            base_command: base,
            command_string: cmd,
        }
    }

    /// Polls a submitted command until complete or `timeout`, refreshing the session as needed.
    pub async fn wait(
        &self,
        role: Role,
        submitted: &SubmittedCommand,
        timeout: Duration,
    ) -> Result<CommandOutput> {
        let out = CommandOutput {
            cloud_request_id: submitted.cloud_request_id.clone(),
            queued_offline: submitted.queued_command_offline,
            ..CommandOutput::default()
        };
        self.resume(role, out, timeout).await
    }

    /// Continues polling a command whose wait timed out (`complete: false`) from where it stopped.
    pub async fn resume(
        &self,
        role: Role,
        output: CommandOutput,
        timeout: Duration,
    ) -> Result<CommandOutput> {
        let poller = Poller::new(role, output, self.poll);
        command::poll_until(&self.client, poller, timeout, || self.keep_alive()).await
    }

    /// Files extracted by `get` in this session.
    pub async fn files(&self) -> Result<Vec<SessionFile>> {
        self.keep_alive().await?;
        super::files::session_files(&self.client, &self.id()).await
    }

    /// Deletes the session now. Dropping the handle does the same in the background.
    pub async fn close(self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        delete(&self.client, &self.id()).await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let id = self
            .session_id
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let client = self.client.clone();
                rt.spawn(async move {
                    if let Err(e) = delete(&client, &id).await {
                        tracing::warn!(session_id = %id, error = %e, "could not delete rtr session on drop");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(session_id = %id, "rtr session dropped outside a tokio runtime; it expires in 10 minutes")
            }
        }
    }
}

/// A command to run in a [`Session`]: [`submit`](Self::submit) it, or [`run_and_wait`](Self::run_and_wait).
#[derive(Debug)]
#[must_use = "call .submit() or .run_and_wait()"]
pub struct CommandRequest<'s> {
    session: &'s Session,
    role: Role,
    base_command: String,
    command_string: String,
}

impl CommandRequest<'_> {
    /// Submits the command and returns its `cloud_request_id` (poll it with [`Session::wait`]).
    pub async fn submit(&self) -> Result<SubmittedCommand> {
        self.session.keep_alive().await?;
        command::submit(
            &self.session.client,
            self.role,
            &self.session.id(),
            Some(&self.session.device_id),
            &self.base_command,
            &self.command_string,
        )
        .await
    }

    /// Submits the command and polls its status until complete or `timeout`, reassembling stdout and
    /// stderr across sequences. On timeout (or when the host is offline and the command queued) the
    /// output so far is returned with `complete: false`; continue with [`Session::resume`].
    pub async fn run_and_wait(&self, timeout: Duration) -> Result<CommandOutput> {
        let submitted = self.submit().await?;
        if submitted.queued_command_offline {
            return Ok(CommandOutput {
                cloud_request_id: submitted.cloud_request_id,
                queued_offline: true,
                ..CommandOutput::default()
            });
        }
        self.session.wait(self.role, &submitted, timeout).await
    }
}
