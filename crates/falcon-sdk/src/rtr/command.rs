//! Single-host commands: roles, submission, status polling and output reassembly.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::FalconClient;
use crate::error::{Error, Result};

use super::http;
use super::types::{StatusChunk, SubmittedCommand};

/// The three RTR roles; each has its own command and status endpoints and API scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Read-only commands (`ls`, `ps`, `cat`, ...): scope `real-time-response:read`.
    ReadOnly,
    /// Active-responder commands (`get`, `rm`, `runscript -CloudFile=`, ...): `real-time-response:write`.
    ActiveResponder,
    /// Admin commands (`put`, `run`, `runscript -Raw=`, ...): `real-time-response-admin:write`.
    Admin,
}

impl Role {
    /// The lowest role that may run a command line, following Caracara's permission map:
    /// `put`, `run`, `put-and-run`, `falconscript`, `cswindiag` and `runscript` (except
    /// `-CloudFile=`) are admin; `cp encrypt get kill map memdump mkdir mv reg (not query) restart
    /// rm rmdir shutdown tar umount unmap update xmemdump zip` and `runscript -CloudFile=` are active
    /// responder; everything else is read-only.
    ///
    /// ```
    /// use falcon_sdk::rtr::Role;
    /// assert_eq!(Role::for_command("runscript -Raw=```id```"), Role::Admin);
    /// assert_eq!(Role::for_command("runscript -CloudFile=\"x\" -CommandLine=\"\""), Role::ActiveResponder);
    /// assert_eq!(Role::for_command("reg query HKLM\\Software"), Role::ReadOnly);
    /// assert_eq!(Role::for_command("ls /tmp"), Role::ReadOnly);
    /// ```
    pub fn for_command(command_line: &str) -> Role {
        let mut words = command_line.split_whitespace();
        let base = words.next().unwrap_or("").to_ascii_lowercase();
        match base.as_str() {
            "put" | "run" | "put-and-run" | "falconscript" | "cswindiag" => Role::Admin,
            "runscript" => {
                if command_line.contains("-CloudFile=") {
                    Role::ActiveResponder
                } else {
                    Role::Admin
                }
            }
            "reg" => match words.next().map(str::to_ascii_lowercase).as_deref() {
                Some("query") | None => Role::ReadOnly,
                _ => Role::ActiveResponder,
            },
            "cp" | "encrypt" | "get" | "kill" | "map" | "memdump" | "mkdir" | "mv" | "restart"
            | "rm" | "rmdir" | "shutdown" | "tar" | "umount" | "unmap" | "update" | "xmemdump"
            | "zip" => Role::ActiveResponder,
            _ => Role::ReadOnly,
        }
    }

    /// Path of the single-host execute and status endpoint.
    pub fn command_path(self) -> &'static str {
        match self {
            Role::ReadOnly => "/real-time-response/entities/command/v1",
            Role::ActiveResponder => "/real-time-response/entities/active-responder-command/v1",
            Role::Admin => "/real-time-response/entities/admin-command/v1",
        }
    }

    /// Path of the batch command endpoint.
    pub fn batch_path(self) -> &'static str {
        match self {
            Role::ReadOnly => "/real-time-response/combined/batch-command/v1",
            Role::ActiveResponder => {
                "/real-time-response/combined/batch-active-responder-command/v1"
            }
            Role::Admin => "/real-time-response/combined/batch-admin-command/v1",
        }
    }
}

/// Output of a single-host command, reassembled across status sequences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOutput {
    /// Id of the command (poll it again with [`Rtr::wait_for_command`](super::Rtr::wait_for_command)).
    pub cloud_request_id: String,
    /// Standard output, all chunks concatenated in sequence order.
    pub stdout: String,
    /// Standard error, all chunks concatenated in sequence order.
    pub stderr: String,
    /// True when the command finished; false when the wait timed out or the command was queued.
    pub complete: bool,
    /// True when the host was offline and the command was queued (it runs when the host returns).
    pub queued_offline: bool,
    /// The sequence id to poll next (number of chunks received).
    pub next_sequence_id: u64,
    /// Base command echoed by the API.
    pub base_command: Option<String>,
    /// Task id on the host.
    pub task_id: Option<String>,
}

/// How status polling paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// First wait between two status requests (default 250 ms).
    pub initial: Duration,
    /// Longest wait between two status requests (default 5 s); the wait doubles up to it.
    pub max: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
        }
    }
}

impl PollPolicy {
    /// A fixed interval.
    pub fn fixed(interval: Duration) -> Self {
        PollPolicy {
            initial: interval,
            max: interval,
        }
    }
}

#[derive(Serialize)]
struct ExecuteBody<'a> {
    base_command: &'a str,
    command_string: &'a str,
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<&'a str>,
}

/// Submits a command; never retried unless provably not sent (commands are not idempotent).
pub(crate) async fn submit(
    client: &FalconClient,
    role: Role,
    session_id: &str,
    device_id: Option<&str>,
    base_command: &str,
    command_string: &str,
) -> Result<SubmittedCommand> {
    if base_command.trim().is_empty() {
        return Err(Error::InvalidArgument("base_command is empty".into()));
    }
    if command_string.trim().is_empty() {
        return Err(Error::InvalidArgument("command_string is empty".into()));
    }
    if !command_string.starts_with(base_command) {
        return Err(Error::InvalidArgument(format!(
            "command_string must start with the base command `{base_command}`"
        )));
    }
    let body = ExecuteBody {
        base_command,
        command_string,
        session_id,
        device_id,
    };
    let mut items: Vec<SubmittedCommand> = http::post_resources(
        client,
        role.command_path(),
        &[],
        &body,
        http::Opts::not_idempotent(),
    )
    .await?;
    items
        .pop()
        .ok_or_else(|| http::empty_resources("POST", role.command_path()))
}

/// One status request.
pub(crate) async fn status(
    client: &FalconClient,
    role: Role,
    cloud_request_id: &str,
    sequence_id: u64,
) -> Result<StatusChunk> {
    let q = [
        ("cloud_request_id", cloud_request_id.to_owned()),
        ("sequence_id", sequence_id.to_string()),
    ];
    let mut items: Vec<StatusChunk> =
        http::get_resources(client, role.command_path(), &q, http::Opts::idempotent()).await?;
    Ok(items.pop().unwrap_or_default())
}

/// Polling state of one command: the output so far and the next sequence to ask for.
pub(crate) struct Poller {
    pub role: Role,
    pub out: CommandOutput,
    interval: Duration,
    policy: PollPolicy,
}

impl Poller {
    pub(crate) fn new(role: Role, out: CommandOutput, policy: PollPolicy) -> Self {
        Poller {
            role,
            out,
            interval: policy.initial,
            policy,
        }
    }

    /// Sends one status request and folds the chunk in. Returns true once complete.
    ///
    /// A chunk with output (or `complete: true`) is appended and the next sequence id is asked for;
    /// an empty, incomplete chunk means the command still runs: the same sequence is asked again.
    pub(crate) async fn step(&mut self, client: &FalconClient) -> Result<bool> {
        let chunk = status(
            client,
            self.role,
            &self.out.cloud_request_id,
            self.out.next_sequence_id,
        )
        .await?;
        let has_output = !chunk.stdout.is_empty() || !chunk.stderr.is_empty();
        if has_output || chunk.complete {
            self.out.stdout.push_str(&chunk.stdout);
            self.out.stderr.push_str(&chunk.stderr);
            self.out.next_sequence_id = chunk
                .sequence_id
                .unwrap_or(self.out.next_sequence_id)
                .max(self.out.next_sequence_id)
                // A wire value cannot overflow it (u64::MAX would panic in debug, wrap in release).
                .saturating_add(1);
            self.interval = self.policy.initial;
        } else {
            self.interval = (self.interval * 2).min(self.policy.max);
        }
        if chunk.base_command.is_some() {
            self.out.base_command = chunk.base_command;
        }
        if chunk.task_id.is_some() {
            self.out.task_id = chunk.task_id;
        }
        self.out.complete = chunk.complete;
        Ok(chunk.complete)
    }

    /// How long to wait before the next step, or `None` when `deadline` would pass first.
    pub(crate) fn next_wait(&self, deadline: Instant) -> Option<Duration> {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        Some(self.interval.min(deadline - now))
    }
}

/// Polls until complete or `timeout`; `before_step` runs before each status request (session refresh).
pub(crate) async fn poll_until<F, Fut>(
    client: &FalconClient,
    mut poller: Poller,
    timeout: Duration,
    mut before_step: F,
) -> Result<CommandOutput>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        before_step().await?;
        if poller.step(client).await? {
            return Ok(poller.out);
        }
        match poller.next_wait(deadline) {
            Some(w) if !w.is_zero() => tokio::time::sleep(w).await,
            _ => return Ok(poller.out),
        }
    }
}
