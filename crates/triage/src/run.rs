//! The orchestrator: sessions, launches, polling rounds, verification, deadlines, the journal and progress.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::api::{FalconApi, HostReply};
use crate::cado::{CadoClient, capture_arrived};
use crate::collector::CollectorSet;
use crate::error::{Error, Result};
use crate::journal::{self, Entry, Journal};
use crate::platform::{JobId, Platform};
use crate::probe::{LaunchAnswer, Status, parse_launch, parse_status};
use crate::redact::Redactor;
use crate::report::{Report, counts};
use crate::script::{runscript_command, status_probe};
use crate::state::{HostRecord, HostState, reason};

/// Hosts per RTR batch session (Falcon's limit).
pub const MAX_BATCH_HOSTS: usize = 10_000;

/// Run settings (no secret; written to the journal header and reused by `resume`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSettings {
    /// Queue the launch for offline hosts (`queue_offline`); they are followed until they come online or the
    /// deadline passes.
    pub queue_offline: bool,
    /// At most this many collections at once (queued, launched or running); `None` = no limit.
    pub max_concurrent: Option<usize>,
    /// Time between polling rounds.
    pub poll_interval: Duration,
    /// Time between session refreshes.
    pub refresh_interval: Duration,
    /// Request timeout of batch RTR calls (the runscript `-Timeout` is 2 s less).
    pub rtr_timeout: Duration,
    /// Hosts not launched by then (offline, or waiting for a slot) end `timed_out`. `None` at start means
    /// start + 24 h; the journal keeps the absolute time.
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// A collection still running this long after its launch ends `timed_out`.
    pub collection_timeout: Duration,
    /// Check the capture's arrival in this Cado project (needs the Cado API).
    pub verify_project: Option<u64>,
    /// How long after a clean exit to wait for the capture's pipeline.
    pub capture_grace: Duration,
    /// Hosts per batch session (at most [`MAX_BATCH_HOSTS`]).
    pub batch_size: usize,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            queue_offline: true,
            max_concurrent: None,
            poll_interval: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(180),
            rtr_timeout: Duration::from_secs(30),
            deadline: None,
            collection_timeout: Duration::from_secs(2 * 3600),
            verify_project: None,
            capture_grace: Duration::from_secs(600),
            batch_size: MAX_BATCH_HOSTS,
        }
    }
}

/// Stops a run: the first [`Control::interrupt`] stops launching (hosts not launched yet are cancelled, the
/// rest is followed), the second leaves at once with the journal intact.
#[derive(Debug, Clone, Default)]
pub struct Control {
    inner: Arc<ControlInner>,
}

#[derive(Debug, Default)]
struct ControlInner {
    presses: AtomicU8,
    stop: AtomicBool,
    abort: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Control {
    /// A fresh control.
    pub fn new() -> Control {
        Control::default()
    }
    /// Ctrl-C semantics: returns how many times it was pressed (1 = stop launching, 2+ = leave).
    pub fn interrupt(&self) -> u8 {
        let n = self
            .inner
            .presses
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        if n == 1 {
            self.stop_launching()
        } else {
            self.abort()
        }
        n
    }
    /// Stop launching; keep following what was launched.
    pub fn stop_launching(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.notify.notify_one();
    }
    /// Leave as soon as possible.
    pub fn abort(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.abort.store(true, Ordering::SeqCst);
        self.inner.notify.notify_one();
    }
    /// Whether launching stopped.
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }
    /// Whether the run must leave.
    pub fn is_aborted(&self) -> bool {
        self.inner.abort.load(Ordering::SeqCst)
    }
}

/// A progress event: counts per state after a phase.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Hosts per state.
    pub counts: BTreeMap<HostState, usize>,
    /// Polling rounds done.
    pub round: u64,
    /// Time since the run (or resume) started.
    pub elapsed: Duration,
    /// Whether launching was stopped.
    pub stopping: bool,
    /// What just happened.
    pub phase: &'static str,
}

/// API calls and timings of a run, for the benchmark and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunStats {
    /// Batch session inits.
    pub session_calls: u64,
    /// Batch launch commands.
    pub launch_calls: u64,
    /// Batch status probes.
    pub probe_calls: u64,
    /// Session refreshes.
    pub refresh_calls: u64,
    /// Cado pipeline listings.
    pub capture_checks: u64,
    /// Polling rounds.
    pub rounds: u64,
    /// Most probe calls in one round: one per batch with hosts still followed (the probe is one script
    /// for every OS).
    pub max_probe_calls_per_round: u64,
    /// Batch sessions opened.
    pub batches: u64,
    /// Milliseconds from start until no host was waiting for its launch (`None` if never).
    pub all_launched_ms: Option<u64>,
    /// Journal lines written.
    pub journal_lines: u64,
}

/// What a run returns.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The per-host report.
    pub report: Report,
    /// API calls and timings.
    pub stats: RunStats,
    /// Whether the run was left early (second interrupt).
    pub aborted: bool,
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// A triage run over a [`FalconApi`].
///
/// ```no_run
/// # async fn demo(api: impl triage::api::FalconApi, set: triage::CollectorSet, job: triage::JobId,
/// #               hosts: Vec<triage::HostRecord>) -> triage::Result<()> {
/// let outcome = triage::Run::new(&api, job, triage::RunSettings::default())
///     .collector(set)
///     .start(hosts, std::path::Path::new("run.jsonl"))
///     .await?;
/// println!("{}", outcome.report.table());
/// # Ok(()) }
/// ```
pub struct Run<'a, A: FalconApi> {
    api: &'a A,
    job: JobId,
    settings: RunSettings,
    collector: Option<CollectorSet>,
    cado: Option<CadoClient>,
    control: Control,
    progress: Option<ProgressFn>,
}

impl<'a, A: FalconApi> Run<'a, A> {
    /// A run of `job` with `settings`.
    pub fn new(api: &'a A, job: JobId, settings: RunSettings) -> Self {
        Run {
            api,
            job,
            settings,
            collector: None,
            cado: None,
            control: Control::new(),
            progress: None,
        }
    }

    /// The collector commands (required unless every host was already launched).
    pub fn collector(mut self, set: CollectorSet) -> Self {
        self.collector = Some(set);
        self
    }

    /// The Cado API client, for capture verification when `settings.verify_project` is set.
    pub fn cado(mut self, client: CadoClient) -> Self {
        self.cado = Some(client);
        self
    }

    /// The stop control (wire Ctrl-C to [`Control::interrupt`]).
    pub fn control(mut self, control: Control) -> Self {
        self.control = control;
        self
    }

    /// A progress callback, called after every phase.
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Starts a new run over `hosts`, journaling to `journal_path` (which must not exist).
    pub async fn start(
        mut self,
        hosts: Vec<HostRecord>,
        journal_path: &Path,
    ) -> Result<RunOutcome> {
        if self.settings.deadline.is_none() {
            self.settings.deadline = Some(chrono::Utc::now() + chrono::Duration::hours(24));
        }
        let collector = self
            .collector
            .clone()
            .ok_or_else(|| Error::invalid("run", "no collector given"))?;
        let header = Entry::Run {
            job: self.job.clone(),
            started: chrono::Utc::now(),
            collector: collector.label().to_string(),
            settings: self.settings.clone(),
        };
        let mut journal = Journal::create(journal_path, &header)?;
        let mut lines = 1;
        for h in &hosts {
            journal.record(None, h)?;
            lines += 1;
        }
        let label = collector.label().to_string();
        let mut engine = Engine::new(self, hosts, journal, label, false)?;
        engine.stats.journal_lines = lines;
        engine.run().await
    }

    /// Resumes the run journaled in `journal_path`. The job id and settings come from the journal (the
    /// `job` and `settings` given to [`Run::new`] are replaced). Hosts whose launch was acknowledged are only
    /// probed, never launched again.
    pub async fn resume(mut self, journal_path: &Path) -> Result<RunOutcome> {
        let replay = journal::replay(journal_path)?;
        self.job = replay.job.clone();
        self.settings = replay.settings.clone();
        let hosts: Vec<HostRecord> = replay.hosts.into_values().collect();
        let needs_launch = hosts
            .iter()
            .filter(|h| {
                matches!(
                    h.state,
                    HostState::Pending | HostState::Session | HostState::QueuedOffline
                )
            })
            .count();
        if needs_launch > 0 && self.collector.is_none() {
            return Err(Error::invalid(
                "resume",
                format!(
                    "{needs_launch} hosts were not launched yet: give the collector options of the run again"
                ),
            ));
        }
        let mut journal = Journal::open_append(journal_path)?;
        journal.append(&Entry::Resumed {
            at: chrono::Utc::now(),
        })?;
        let mut engine = Engine::new(self, hosts, journal, replay.collector, true)?;
        engine.stats.journal_lines = 1;
        engine.run().await
    }
}

struct Batch {
    id: String,
    last_refresh: Instant,
}

struct Engine<'a, A: FalconApi> {
    api: &'a A,
    job: JobId,
    settings: RunSettings,
    deadline: chrono::DateTime<chrono::Utc>,
    collector: Option<CollectorSet>,
    cado: Option<CadoClient>,
    control: Control,
    progress: Option<ProgressFn>,
    redactor: Redactor,
    label: String,
    hosts: Vec<HostRecord>,
    index: HashMap<String, usize>,
    batch_of: Vec<Option<usize>>,
    batches: Vec<Batch>,
    /// QueuedOffline hosts from a journal whose launch is sent again (the launch script refuses a second
    /// collection).
    resend: Vec<bool>,
    launch_failures: Vec<u8>,
    awaiting_capture: HashMap<usize, Instant>,
    journal: Journal,
    stats: RunStats,
    started: Instant,
}

fn timeout_secs(d: Duration) -> u64 {
    d.as_secs().saturating_sub(2).max(1)
}

impl<'a, A: FalconApi> Engine<'a, A> {
    fn new(
        run: Run<'a, A>,
        hosts: Vec<HostRecord>,
        journal: Journal,
        label: String,
        resumed: bool,
    ) -> Result<Self> {
        let mut redactor = run
            .collector
            .as_ref()
            .map(|c| c.redactor().clone())
            .unwrap_or_default();
        if let Some(c) = &run.cado {
            redactor.add(c.api_key());
        }
        // encoded Windows commands embed the secret: register them too
        if let Some(cmd) = run
            .collector
            .as_ref()
            .and_then(|c| c.command(Platform::Windows))
        {
            redactor.add_str(&crate::script::powershell_encode(cmd.expose_secret()));
        }
        let n = hosts.len();
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.device_id.clone(), i))
            .collect();
        let resend = hosts
            .iter()
            .map(|h| resumed && h.state == HostState::QueuedOffline)
            .collect();
        let deadline = run
            .settings
            .deadline
            .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::hours(24));
        let mut settings = run.settings;
        settings.batch_size = settings.batch_size.clamp(1, MAX_BATCH_HOSTS);
        Ok(Engine {
            api: run.api,
            job: run.job,
            settings,
            deadline,
            collector: run.collector,
            cado: run.cado,
            control: run.control,
            progress: run.progress,
            redactor,
            label,
            hosts,
            index,
            batch_of: vec![None; n],
            batches: Vec::new(),
            resend,
            launch_failures: vec![0; n],
            awaiting_capture: HashMap::new(),
            journal,
            stats: RunStats::default(),
            started: Instant::now(),
        })
    }

    fn set(&mut self, i: usize, to: HostState, why: Option<String>) -> Result<()> {
        let from = self.hosts[i].state;
        if from == to {
            return Ok(());
        }
        if !from.can_go_to(to) {
            tracing::warn!(device_id = %self.hosts[i].device_id, %from, %to, "ignoring impossible transition");
            return Ok(());
        }
        let h = &mut self.hosts[i];
        h.state = to;
        h.reason = why.map(|r| crate::report::truncate(&self.redactor.redact(&r), 400));
        h.updated = chrono::Utc::now();
        tracing::debug!(device_id = %h.device_id, hostname = %h.hostname, %from, %to, reason = ?h.reason, "transition");
        self.journal.record(Some(from), h)?;
        self.stats.journal_lines += 1;
        Ok(())
    }

    fn emit(&self, phase: &'static str) {
        if let Some(p) = &self.progress {
            p(&Progress {
                counts: counts(&self.hosts),
                round: self.stats.rounds,
                elapsed: self.started.elapsed(),
                stopping: self.control.is_stopping(),
                phase,
            });
        }
    }

    fn all_terminal(&self) -> bool {
        self.hosts.iter().all(|h| h.state.is_terminal())
    }

    async fn run(&mut self) -> Result<RunOutcome> {
        // hosts no collector command exists for
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if h.state.is_terminal() || h.state.launch_sent() {
                continue;
            }
            let supported = match (h.platform, &self.collector) {
                (Some(p), Some(c)) => c.command(p).is_some(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !supported {
                let p = h.platform.map(|p| p.as_str()).unwrap_or("unknown");
                self.set(
                    i,
                    HostState::Failed,
                    Some(format!(
                        "{}: no collector command for platform {p}",
                        reason::UNSUPPORTED_PLATFORM
                    )),
                )?;
            }
        }
        self.emit("selected");
        let mut aborted = false;
        loop {
            if self.control.is_aborted() {
                aborted = true;
                break;
            }
            self.check_deadlines()?;
            self.open_sessions().await?;
            if self.control.is_stopping() {
                self.cancel_unlaunched()?;
            } else {
                self.launch().await?;
            }
            if self.stats.all_launched_ms.is_none()
                && !self
                    .hosts
                    .iter()
                    .any(|h| matches!(h.state, HostState::Pending | HostState::Session))
            {
                self.stats.all_launched_ms = Some(self.started.elapsed().as_millis() as u64);
            }
            self.emit("launched");
            if self.all_terminal() {
                break;
            }
            self.sleep(self.settings.poll_interval).await;
            if self.control.is_aborted() {
                aborted = true;
                break;
            }
            self.refresh().await;
            self.probe().await?;
            self.check_captures().await?;
            self.stats.rounds += 1;
            self.emit("polled");
            if self.all_terminal() {
                break;
            }
        }
        if !aborted {
            self.journal.append(&Entry::Finished {
                at: chrono::Utc::now(),
            })?;
            self.stats.journal_lines += 1;
        }
        self.journal.sync()?;
        let report = Report::new(self.job.as_str(), &self.label, self.hosts.clone());
        Ok(RunOutcome {
            report,
            stats: self.stats.clone(),
            aborted,
        })
    }

    async fn sleep(&self, d: Duration) {
        let notified = self.control.inner.notify.notified();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = notified => {}
        }
    }

    fn check_deadlines(&mut self) -> Result<()> {
        let now = chrono::Utc::now();
        let collection = chrono::Duration::from_std(self.settings.collection_timeout)
            .unwrap_or(chrono::Duration::MAX);
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if h.state.is_terminal() || self.awaiting_capture.contains_key(&i) {
                continue;
            }
            match h.state {
                HostState::Launched | HostState::Running
                    if h.launched_at.is_some_and(|t| now - t > collection) =>
                {
                    let mins = self.settings.collection_timeout.as_secs() / 60;
                    self.set(
                        i,
                        HostState::TimedOut,
                        Some(format!(
                            "{}: collector still running after {mins} min",
                            reason::STILL_RUNNING
                        )),
                    )?;
                }
                HostState::QueuedOffline if now > self.deadline => {
                    self.set(
                        i,
                        HostState::TimedOut,
                        Some(format!(
                            "{}: host stayed offline until the deadline",
                            reason::OFFLINE
                        )),
                    )?;
                }
                HostState::Pending | HostState::Session if now > self.deadline => {
                    let why = if self.batch_of[i].is_none() {
                        format!("{}: no RTR session before the deadline", reason::OFFLINE)
                    } else {
                        format!(
                            "{}: not launched before the deadline (concurrency limit)",
                            reason::STILL_RUNNING
                        )
                    };
                    self.set(i, HostState::TimedOut, Some(why))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn cancel_unlaunched(&mut self) -> Result<()> {
        for i in 0..self.hosts.len() {
            if matches!(self.hosts[i].state, HostState::Pending | HostState::Session) {
                self.set(
                    i,
                    HostState::Cancelled,
                    Some(format!(
                        "{}: launching was stopped (Ctrl-C)",
                        reason::STOPPED
                    )),
                )?;
            }
        }
        Ok(())
    }

    async fn open_sessions(&mut self) -> Result<()> {
        let need: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| !self.hosts[i].state.is_terminal() && self.batch_of[i].is_none())
            .collect();
        if need.is_empty() {
            return Ok(());
        }
        for chunk in need.chunks(self.settings.batch_size) {
            let ids: Vec<String> = chunk
                .iter()
                .map(|&i| self.hosts[i].device_id.clone())
                .collect();
            self.stats.session_calls += 1;
            let sessions = match self
                .api
                .batch_init(&ids, self.settings.queue_offline, self.settings.rtr_timeout)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %self.redactor.redact(&format!("{e:#}")), hosts = ids.len(), "batch session init failed; retrying next round");
                    continue;
                }
            };
            for s in sessions {
                self.stats.batches += 1;
                let b = self.batches.len();
                self.batches.push(Batch {
                    id: s.batch_id.clone(),
                    last_refresh: Instant::now(),
                });
                for (aid, reply) in &s.hosts {
                    let Some(&i) = self.index.get(aid) else {
                        continue;
                    };
                    if reply.errors.is_empty() || reply.offline_queued {
                        self.batch_of[i] = Some(b);
                        if self.hosts[i].state == HostState::Pending {
                            self.set(i, HostState::Session, None)?;
                        }
                    } else if reply.is_offline_error() {
                        tracing::debug!(device_id = %aid, "host offline, no session (queue_offline off); retrying");
                    } else if !self.hosts[i].state.launch_sent() {
                        self.set(
                            i,
                            HostState::Failed,
                            Some(format!(
                                "{}: session: {}",
                                reason::RTR_ERROR,
                                reply.error_text()
                            )),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    fn active(&self) -> usize {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| {
                matches!(
                    h.state,
                    HostState::QueuedOffline | HostState::Launched | HostState::Running
                ) && !self.awaiting_capture.contains_key(i)
            })
            .count()
    }

    async fn launch(&mut self) -> Result<()> {
        let Some(collector) = self.collector.clone() else {
            return Ok(());
        };
        let mut slots = self
            .settings
            .max_concurrent
            .map(|m| m.saturating_sub(self.active()))
            .unwrap_or(usize::MAX);
        // (batch, platform) -> hosts
        let mut groups: BTreeMap<(usize, Platform), Vec<usize>> = BTreeMap::new();
        for i in 0..self.hosts.len() {
            let Some(b) = self.batch_of[i] else { continue };
            let Some(p) = self.hosts[i].platform else {
                continue;
            };
            let h = &self.hosts[i];
            let take = if h.state == HostState::Session && slots > 0 {
                slots -= 1;
                true
            } else {
                h.state == HostState::QueuedOffline && self.resend[i]
            };
            if take {
                groups.entry((b, p)).or_default().push(i);
            }
        }
        for ((b, p), members) in groups {
            let Some(script) = collector.launch_script(p, &self.job) else {
                continue;
            };
            let command_string = runscript_command(
                script.expose_secret(),
                timeout_secs(self.settings.rtr_timeout),
            )?;
            let ids: Vec<String> = members
                .iter()
                .map(|&i| self.hosts[i].device_id.clone())
                .collect();
            let batch_id = self.batches[b].id.clone();
            self.stats.launch_calls += 1;
            let replies = match self
                .api
                .batch_admin_command(
                    &batch_id,
                    "runscript",
                    &command_string,
                    &ids,
                    self.settings.rtr_timeout,
                )
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let text = self.redactor.redact(&format!("{e:#}"));
                    tracing::warn!(error = %text, hosts = ids.len(), platform = %p, "launch call failed");
                    for &i in &members {
                        // saturating: queued hosts of a resumed run are resent every round
                        self.launch_failures[i] = self.launch_failures[i].saturating_add(1);
                        if self.launch_failures[i] >= 3 && self.hosts[i].state == HostState::Session
                        {
                            self.set(
                                i,
                                HostState::Failed,
                                Some(format!(
                                    "{}: launch call failed 3 times: {text}",
                                    reason::RTR_ERROR
                                )),
                            )?;
                        }
                    }
                    continue;
                }
            };
            for &i in &members {
                self.resend[i] = false;
                let reply = replies.get(&self.hosts[i].device_id).cloned();
                self.on_launch_reply(i, reply)?;
            }
        }
        Ok(())
    }

    fn on_launch_reply(&mut self, i: usize, reply: Option<HostReply>) -> Result<()> {
        let Some(reply) = reply else {
            tracing::debug!(device_id = %self.hosts[i].device_id, "no launch answer for host; retrying next round");
            return Ok(());
        };
        let now = chrono::Utc::now();
        if reply.offline_queued && !reply.complete {
            return self.set(i, HostState::QueuedOffline, None);
        }
        if reply.is_offline_error() {
            // offline without queueing: try again next round
            return Ok(());
        }
        match parse_launch(&reply.stdout, &self.job) {
            LaunchAnswer::Launched { pid } | LaunchAnswer::AlreadyLaunched { pid } => {
                let h = &mut self.hosts[i];
                h.pid = pid.or(h.pid);
                h.launched_at.get_or_insert(now);
                self.set(i, HostState::Launched, None)
            }
            LaunchAnswer::NoSpace {
                free_bytes,
                required_bytes,
            } => self.set(
                i,
                HostState::Failed,
                Some(format!(
                    "no_space: {free_bytes} bytes free on the job directory's volume, {required_bytes} required"
                )),
            ),
            LaunchAnswer::Error { reason: r } => self.set(
                i,
                HostState::Failed,
                Some(format!("{}: {r}", reason::LAUNCH_ERROR)),
            ),
            LaunchAnswer::Unrecognised
                if reply.is_timeout_error() || (!reply.complete && reply.errors.is_empty()) =>
            {
                // the script may have run: the probe decides (the launch script refuses a second launch)
                self.hosts[i].launched_at.get_or_insert(now);
                self.set(i, HostState::Launched, None)
            }
            LaunchAnswer::Unrecognised => {
                let detail = if !reply.errors.is_empty() {
                    format!("{}: {}", reason::RTR_ERROR, reply.error_text())
                } else {
                    let out = if reply.stderr.trim().is_empty() {
                        &reply.stdout
                    } else {
                        &reply.stderr
                    };
                    format!("{}: {}", reason::NO_LAUNCH_ANSWER, out.trim())
                };
                self.set(i, HostState::Failed, Some(detail))
            }
        }
    }

    async fn refresh(&mut self) {
        let now = Instant::now();
        for b in 0..self.batches.len() {
            let live = (0..self.hosts.len())
                .any(|i| self.batch_of[i] == Some(b) && !self.hosts[i].state.is_terminal());
            if !live
                || now.duration_since(self.batches[b].last_refresh) < self.settings.refresh_interval
            {
                continue;
            }
            self.stats.refresh_calls += 1;
            match self
                .api
                .batch_refresh(&self.batches[b].id, self.settings.rtr_timeout)
                .await
            {
                Ok(()) => self.batches[b].last_refresh = now,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), batch = %self.batches[b].id, "session refresh failed; reopening");
                    // reopen sessions for its hosts next round
                    for i in 0..self.hosts.len() {
                        if self.batch_of[i] == Some(b) {
                            self.batch_of[i] = None;
                        }
                    }
                }
            }
        }
    }

    /// One polling round: one batch status probe per batch, sent to the hosts of that batch still being
    /// followed, whatever their OS (the probe is one polyglot script for every platform).
    async fn probe(&mut self) -> Result<()> {
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if !matches!(
                h.state,
                HostState::QueuedOffline | HostState::Launched | HostState::Running
            ) || self.awaiting_capture.contains_key(&i)
            {
                continue;
            }
            let Some(b) = self.batch_of[i] else {
                continue;
            };
            groups.entry(b).or_default().push(i);
        }
        let command_string = runscript_command(
            &status_probe(&self.job),
            timeout_secs(self.settings.rtr_timeout),
        )?;
        let mut calls = 0;
        for (b, members) in groups {
            let ids: Vec<String> = members
                .iter()
                .map(|&i| self.hosts[i].device_id.clone())
                .collect();
            let batch_id = self.batches[b].id.clone();
            self.stats.probe_calls += 1;
            calls += 1;
            let replies = match self
                .api
                .batch_admin_command(
                    &batch_id,
                    "runscript",
                    &command_string,
                    &ids,
                    self.settings.rtr_timeout,
                )
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), batch = %batch_id, hosts = ids.len(), "probe call failed; next round");
                    continue;
                }
            };
            for &i in &members {
                if let Some(reply) = replies.get(&self.hosts[i].device_id) {
                    let reply = reply.clone();
                    self.on_probe_reply(i, &reply)?;
                }
            }
        }
        self.stats.max_probe_calls_per_round = self.stats.max_probe_calls_per_round.max(calls);
        Ok(())
    }

    fn on_probe_reply(&mut self, i: usize, reply: &HostReply) -> Result<()> {
        if !reply.complete || reply.is_offline_error() {
            return Ok(()); // offline or slow: next round
        }
        let answer = parse_status(&reply.stdout, &self.job);
        if let Some(line) = answer.log_tail.last() {
            self.hosts[i].last_log =
                Some(crate::report::truncate(&self.redactor.redact(line), 300));
        }
        let telling = answer
            .telling_line()
            .map(|l| self.redactor.redact(l))
            .unwrap_or_default();
        let state = self.hosts[i].state;
        match answer.status {
            Status::Running { pid } => {
                let h = &mut self.hosts[i];
                h.pid = pid.or(h.pid);
                h.launched_at.get_or_insert_with(chrono::Utc::now);
                self.set(i, HostState::Running, None)
            }
            Status::Exited { code: Some(0) } if !answer.reports_failure() => {
                self.hosts[i]
                    .launched_at
                    .get_or_insert_with(chrono::Utc::now);
                if self.settings.verify_project.is_some() && self.cado.is_some() {
                    self.set(i, HostState::Running, None)?;
                    self.awaiting_capture.insert(i, Instant::now());
                    Ok(())
                } else {
                    self.set(i, HostState::Succeeded, None)
                }
            }
            Status::Exited { code: Some(0) } => self.set(
                i,
                HostState::Failed,
                Some(format!("{}: {telling}", reason::COLLECTOR_FAILED)),
            ),
            Status::Exited { code } => {
                let c = code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "unreadable".into());
                let why = if telling.is_empty() {
                    format!("{}: {c}", reason::EXIT_CODE)
                } else {
                    format!("{}: {c}: {telling}", reason::EXIT_CODE)
                };
                self.set(i, HostState::Failed, Some(why))
            }
            Status::Vanished => {
                let why = if telling.is_empty() {
                    format!(
                        "{}: collector process gone without an exit code",
                        reason::INTERRUPTED
                    )
                } else {
                    format!(
                        "{}: collector process gone without an exit code; last log: {telling}",
                        reason::INTERRUPTED
                    )
                };
                self.set(i, HostState::Failed, Some(why))
            }
            Status::Absent if state == HostState::QueuedOffline => Ok(()), // the queued launch has not run yet
            Status::Absent => self.set(
                i,
                HostState::Failed,
                Some(format!(
                    "{}: no work directory markers on the host after the launch",
                    reason::MARKERS_MISSING
                )),
            ),
            Status::Untrusted { reason: r } => self.set(
                i,
                HostState::Failed,
                Some(format!(
                    "untrusted: job directory markers fail the owner/mode check ({r})"
                )),
            ),
            Status::Unrecognised => {
                tracing::debug!(device_id = %self.hosts[i].device_id, "unrecognised probe answer");
                Ok(())
            }
        }
    }

    async fn check_captures(&mut self) -> Result<()> {
        if self.awaiting_capture.is_empty() {
            return Ok(());
        }
        let (Some(cado), Some(project)) = (self.cado.clone(), self.settings.verify_project) else {
            return Ok(());
        };
        self.stats.capture_checks += 1;
        let pipelines = match cado.pipelines(project).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "listing cado pipelines failed; next round");
                Vec::new()
            }
        };
        let waiting: Vec<(usize, Instant)> = self
            .awaiting_capture
            .iter()
            .map(|(i, t)| (*i, *t))
            .collect();
        for (i, since) in waiting {
            let h = &self.hosts[i];
            if let Some(id) = capture_arrived(&pipelines, &h.hostname, h.launched_at) {
                self.awaiting_capture.remove(&i);
                tracing::debug!(hostname = %h.hostname, pipeline = id, "capture arrived");
                self.set(i, HostState::Succeeded, None)?;
            } else if since.elapsed() > self.settings.capture_grace {
                self.awaiting_capture.remove(&i);
                let secs = self.settings.capture_grace.as_secs();
                self.set(
                    i,
                    HostState::Failed,
                    Some(format!(
                        "{}: collector exited 0 but no Cado pipeline for this host within {secs} s",
                        reason::NO_CAPTURE
                    )),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Fake, Outcome};
    use secrecy::SecretString;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn settings(deadline_ms: i64) -> RunSettings {
        RunSettings {
            poll_interval: MS(40),
            refresh_interval: MS(100),
            deadline: Some(chrono::Utc::now() + chrono::Duration::milliseconds(deadline_ms)),
            collection_timeout: Duration::from_secs(30),
            ..Default::default()
        }
    }

    fn collector(job: &JobId) -> CollectorSet {
        let mut t = BTreeMap::new();
        t.insert(Platform::Linux, "./collect --key {secret}".to_string());
        t.insert(Platform::Mac, "./collect --key {secret}".to_string());
        t.insert(Platform::Windows, "collect.exe --key {secret}".to_string());
        CollectorSet::from_templates("test", &t, Some(&SecretString::from("s3cr3t-value")), job)
            .unwrap()
    }

    async fn pending(api: &Fake) -> Vec<HostRecord> {
        let ids = api.host_ids(None).await.unwrap();
        api.host_details(&ids)
            .await
            .unwrap()
            .into_iter()
            .map(|d| {
                HostRecord::new(
                    d.device_id,
                    d.hostname,
                    d.platform_name.as_deref().and_then(Platform::from_falcon),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_host_ends_in_the_right_state_with_the_right_reason() {
        let job = JobId::parse("0badc0de").unwrap();
        let api = Fake::new(job.as_str());
        api.add("lin-ok", "Linux", MS(0), Outcome::Ok, MS(60));
        api.add("win-ok", "Windows", MS(0), Outcome::Ok, MS(60));
        api.add("mac-ok", "Mac", MS(0), Outcome::Ok, MS(0));
        api.add("exit2", "Linux", MS(0), Outcome::Exit(2), MS(0));
        api.add("wrapper", "Linux", MS(0), Outcome::WrapperFailure, MS(0));
        api.add("vanish", "Windows", MS(0), Outcome::Vanish, MS(0));
        api.add("late", "Linux", MS(150), Outcome::Ok, MS(20));
        api.add(
            "never",
            "Linux",
            Duration::from_secs(3600),
            Outcome::Ok,
            MS(0),
        );
        api.add("solaris", "Solaris", MS(0), Outcome::Ok, MS(0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let hosts = pending(&api).await;
        let out = Run::new(&api, job.clone(), settings(900))
            .collector(collector(&job))
            .start(hosts, &path)
            .await
            .unwrap();
        let by: BTreeMap<&str, &HostRecord> = out
            .report
            .hosts
            .iter()
            .map(|h| (h.device_id.as_str(), h))
            .collect();
        let st = |id: &str| (by[id].state, by[id].reason.clone().unwrap_or_default());
        assert_eq!(st("lin-ok").0, HostState::Succeeded);
        assert_eq!(st("win-ok").0, HostState::Succeeded);
        assert_eq!(st("mac-ok").0, HostState::Succeeded);
        assert_eq!(st("late").0, HostState::Succeeded, "{:?}", st("late"));
        assert_eq!(st("exit2").0, HostState::Failed);
        assert!(
            st("exit2")
                .1
                .starts_with("exit_code: 2: [2026-11-22 08:00:00,000][ERROR] - disk full"),
            "{}",
            st("exit2").1
        );
        assert_eq!(st("wrapper").0, HostState::Failed);
        assert!(
            st("wrapper")
                .1
                .starts_with("collector_failed: Cado Host has failed"),
            "{}",
            st("wrapper").1
        );
        assert_eq!(st("vanish").0, HostState::Failed);
        assert!(st("vanish").1.starts_with("interrupted:"));
        assert_eq!(st("never").0, HostState::TimedOut);
        assert!(st("never").1.starts_with("offline:"));
        assert_eq!(st("solaris").0, HostState::Failed);
        assert!(st("solaris").1.starts_with("unsupported_platform:"));
        assert_eq!(out.report.summary.exit_code, crate::exit_codes::SOME_FAILED);
        for (id, h) in api.hosts.lock().unwrap().iter() {
            assert!(h.launches <= 1, "{id} launched {} times", h.launches);
        }
        // one launch per platform group, one session init
        assert_eq!(out.stats.session_calls, 1);
        assert_eq!(out.stats.launch_calls, 3);
        // one probe per batch per round, whatever the OSes in it
        assert_eq!(out.stats.max_probe_calls_per_round, 1);
        assert_eq!(out.stats.probe_calls, out.stats.rounds);
        // the journal replays to the same final states, with no secret inside
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cr3t-value"));
        let replay = crate::journal::replay(&path).unwrap();
        assert!(replay.finished);
        for h in &out.report.hosts {
            assert_eq!(replay.hosts[&h.device_id].state, h.state);
        }
    }

    #[tokio::test]
    async fn resume_after_leaving_never_sends_a_second_launch_to_launched_hosts() {
        let job = JobId::parse("0badc0de").unwrap();
        let api = Fake::new(job.as_str());
        for i in 0..6 {
            api.add(&format!("h{i}"), "Linux", MS(0), Outcome::Ok, MS(150));
        }
        api.add("off", "Linux", MS(250), Outcome::Ok, MS(10));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let control = Control::new();
        let c2 = control.clone();
        let out = Run::new(&api, job.clone(), settings(5000))
            .collector(collector(&job))
            .control(control)
            .on_progress(move |p| {
                if p.phase == "launched" {
                    c2.interrupt();
                    c2.interrupt();
                }
            })
            .start(pending(&api).await, &path)
            .await
            .unwrap();
        assert!(out.aborted);
        assert_eq!(out.report.summary.exit_code, crate::exit_codes::INTERRUPTED);
        let replay = crate::journal::replay(&path).unwrap();
        assert_eq!(replay.hosts["h0"].state, HostState::Launched);
        assert_eq!(replay.hosts["off"].state, HostState::QueuedOffline);
        // resume: without a collector it refuses, because a host is only queued
        let err = Run::new(&api, job.clone(), RunSettings::default())
            .resume(&path)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid resume"));
        let out = Run::new(&api, job.clone(), RunSettings::default())
            .collector(collector(&job))
            .resume(&path)
            .await
            .unwrap();
        assert_eq!(out.report.summary.succeeded, 7, "{}", out.report.table());
        let hosts = api.hosts.lock().unwrap();
        for i in 0..6 {
            assert_eq!(
                hosts[&format!("h{i}")].launch_cmds,
                1,
                "h{i} got a second launch command"
            );
            assert_eq!(hosts[&format!("h{i}")].launches, 1);
        }
        // the queued host's launch was sent again on resume, but the launch script refused a second collection
        assert_eq!(hosts["off"].launches, 1);
        assert_eq!(crate::journal::replay(&path).unwrap().resumes, 1);
    }

    #[tokio::test]
    async fn concurrency_limit_and_stop_launching() {
        let job = JobId::parse("0badc0de").unwrap();
        let api = Fake::new(job.as_str());
        for i in 0..5 {
            api.add(&format!("h{i}"), "Linux", MS(0), Outcome::Ok, MS(60));
        }
        let dir = tempfile::tempdir().unwrap();
        let s = RunSettings {
            max_concurrent: Some(2),
            ..settings(10_000)
        };
        let out = Run::new(&api, job.clone(), s.clone())
            .collector(collector(&job))
            .start(pending(&api).await, &dir.path().join("a.jsonl"))
            .await
            .unwrap();
        assert_eq!(out.report.summary.succeeded, 5);
        assert!(api.calls.lock().unwrap().max_running <= 2);

        let api = Fake::new(job.as_str());
        for i in 0..3 {
            api.add(&format!("h{i}"), "Linux", MS(0), Outcome::Ok, MS(30));
        }
        let control = Control::new();
        let c2 = control.clone();
        let s = RunSettings {
            max_concurrent: Some(1),
            ..settings(10_000)
        };
        let out = Run::new(&api, job.clone(), s)
            .collector(collector(&job))
            .control(control)
            .on_progress(move |p| {
                if p.phase == "launched" && p.counts[&HostState::Launched] == 1 {
                    c2.interrupt();
                }
            })
            .start(pending(&api).await, &dir.path().join("b.jsonl"))
            .await
            .unwrap();
        let c = counts(&out.report.hosts);
        assert_eq!(c[&HostState::Succeeded], 1, "{}", out.report.table());
        assert_eq!(c[&HostState::Cancelled], 2);
        assert!(
            out.report
                .hosts
                .iter()
                .filter(|h| h.state == HostState::Cancelled)
                .all(|h| h.reason.as_deref().unwrap().starts_with("stopped_by_user"))
        );
    }
}
