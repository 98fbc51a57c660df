//! The orchestrator: sessions, launches, polling rounds, verification, deadlines, the journal and progress.
//!
//! One private module per phase of a round: `sessions` (batch sessions and their refresh), `launch`,
//! `queue` (hosts whose launch waits in Falcon's offline queue), `probe` (status probes), `verify`
//! (evidence and capture checks) and `deadlines` (deadlines, timeouts, stop).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::api::FalconApi;
use crate::cado::CadoClient;
use crate::collector::CollectorSet;
use crate::error::{Error, Result};
use crate::journal::{self, Entry, Journal};
use crate::platform::{JobId, Platform};
use crate::redact::Redactor;
use crate::report::{Report, counts};
use crate::state::{HostRecord, HostState};

mod clock;
mod deadlines;
mod launch;
mod probe;
mod queue;
mod sessions;
mod settings;
mod verify;

pub use clock::{Clock, SystemClock, TokioClock};
pub use settings::{Control, MAX_BATCH_HOSTS, Progress, RunOutcome, RunSettings, RunStats};

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
    ctx: Ctx,
}

/// What every phase reads: the run's identity, settings and hooks.
struct Ctx {
    job: JobId,
    settings: RunSettings,
    collector: Option<CollectorSet>,
    cado: Option<CadoClient>,
    control: Control,
    progress: Option<ProgressFn>,
    clock: Arc<dyn Clock>,
}

impl<'a, A: FalconApi> Run<'a, A> {
    /// A run of `job` with `settings`.
    pub fn new(api: &'a A, job: JobId, settings: RunSettings) -> Self {
        Run {
            api,
            ctx: Ctx {
                job,
                settings,
                collector: None,
                cado: None,
                control: Control::new(),
                progress: None,
                clock: Arc::new(SystemClock),
            },
        }
    }

    /// The collector commands (required unless every host was already launched).
    pub fn collector(mut self, set: CollectorSet) -> Self {
        self.ctx.collector = Some(set);
        self
    }

    /// The Cado API client, for capture verification when `settings.verify_project` is set.
    pub fn cado(mut self, client: CadoClient) -> Self {
        self.ctx.cado = Some(client);
        self
    }

    /// The stop control (wire Ctrl-C to [`Control::interrupt`]).
    pub fn control(mut self, control: Control) -> Self {
        self.ctx.control = control;
        self
    }

    /// A progress callback, called after every phase.
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.ctx.progress = Some(Arc::new(f));
        self
    }

    /// The wall clock of the journal's stamps, the deadline and the collection timeout ([`SystemClock`]
    /// by default; tests give a [`TokioClock`] and run on paused time).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.ctx.clock = Arc::new(clock);
        self
    }

    /// Starts a new run over `hosts`, journaling to `journal_path` (which must not exist; it is created
    /// owner-only).
    pub async fn start(
        mut self,
        hosts: Vec<HostRecord>,
        journal_path: &Path,
    ) -> Result<RunOutcome> {
        let now = self.ctx.clock.now();
        if self.ctx.settings.deadline.is_none() {
            self.ctx.settings.deadline = Some(now + chrono::Duration::hours(24));
        }
        let collector = self
            .ctx
            .collector
            .clone()
            .ok_or_else(|| Error::invalid("run", "no collector given"))?;
        let label = collector.label().to_string();
        let header = Entry::Run {
            job: self.ctx.job.clone(),
            started: now,
            collector: label.clone(),
            settings: self.ctx.settings.clone(),
        };
        let path = journal_path.to_path_buf();
        let hosts = hosts
            .into_iter()
            .map(|mut h| {
                h.updated = now;
                h
            })
            .collect::<Vec<_>>();
        let (journal, hosts) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut journal = Journal::create(&path, &header)?;
            for h in &hosts {
                journal.stage_record(None, h)?;
            }
            journal.commit()?;
            Ok((journal, hosts))
        })
        .await
        .map_err(|e| Error::journal(journal_path, e))??;
        let lines = 1 + hosts.len() as u64;
        let mut engine = Engine::new(self, hosts, journal, label, false);
        engine.stats.journal_lines = lines;
        engine.run().await
    }

    /// Resumes the run journaled in `journal_path`. The job id and settings come from the journal (the
    /// `job` and `settings` given to [`Run::new`] are replaced). Hosts whose launch was acknowledged are only
    /// probed, never launched again; hosts whose launch is queued are followed through their queued session.
    pub async fn resume(mut self, journal_path: &Path) -> Result<RunOutcome> {
        let path = journal_path.to_path_buf();
        let replay = tokio::task::spawn_blocking(move || journal::replay(&path))
            .await
            .map_err(|e| Error::journal(journal_path, e))??;
        self.ctx.job = replay.job.clone();
        self.ctx.settings = replay.settings.clone();
        let hosts: Vec<HostRecord> = replay.hosts.into_values().collect();
        let needs_launch = hosts
            .iter()
            .filter(|h| {
                matches!(h.state, HostState::Pending | HostState::Session)
                    || (h.state == HostState::QueuedOffline && h.queued_session.is_none())
            })
            .count();
        if needs_launch > 0 && self.ctx.collector.is_none() {
            return Err(Error::invalid(
                "resume",
                format!(
                    "{needs_launch} hosts were not launched yet: give the collector options of the run again"
                ),
            ));
        }
        let path = journal_path.to_path_buf();
        let at = self.ctx.clock.now();
        let journal = tokio::task::spawn_blocking(move || -> Result<Journal> {
            let mut journal = Journal::open_append(&path)?;
            journal.append(&Entry::Resumed { at })?;
            Ok(journal)
        })
        .await
        .map_err(|e| Error::journal(journal_path, e))??;
        let mut engine = Engine::new(self, hosts, journal, replay.collector, true);
        engine.stats.journal_lines = 1;
        engine.run().await
    }
}

/// One batch session.
struct Batch {
    id: String,
    last_refresh: Instant,
    /// Opened with `queue_offline`: it carries only launches (a command sent through it to an offline host
    /// waits in Falcon's queue), never probes.
    queueing: bool,
    /// Hosts that joined it (at most `batch_size`).
    members: usize,
    /// Its refresh failed: no host joins it any more.
    dead: bool,
}

/// What the engine tracks of a host besides its journaled record.
#[derive(Debug, Clone, Default)]
struct Track {
    /// The batch session the host is reached through.
    batch: Option<usize>,
    /// A queued host from an old journal (no queued session known): its launch is sent again (the launch
    /// script refuses a second collection).
    resend: bool,
    launch_failures: u8,
    /// Exited 0; waiting for the capture's pipeline since then.
    awaiting_capture: Option<Instant>,
    /// Probes sent since the launch that got no answer (timed out or offline).
    unanswered: u32,
    /// Whether the host ever answered a probe with a marker line.
    answered: bool,
}

struct Engine<'a, A: FalconApi> {
    api: &'a A,
    ctx: Ctx,
    deadline: chrono::DateTime<chrono::Utc>,
    redactor: Redactor,
    label: String,
    hosts: Vec<HostRecord>,
    track: Vec<Track>,
    index: HashMap<String, usize>,
    batches: Vec<Batch>,
    /// `None` only while a commit runs on a blocking thread.
    journal: Option<Journal>,
    stats: RunStats,
    started: Instant,
    last_queue_check: Option<Instant>,
}

fn timeout_secs(d: Duration) -> u64 {
    d.as_secs().saturating_sub(2).max(1)
}

/// `45 s`, `12 min`, `2 h 5 min`: a duration as a reason reads it.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

impl<'a, A: FalconApi> Engine<'a, A> {
    fn new(
        run: Run<'a, A>,
        hosts: Vec<HostRecord>,
        journal: Journal,
        label: String,
        resumed: bool,
    ) -> Self {
        let mut ctx = run.ctx;
        let mut redactor = ctx
            .collector
            .as_ref()
            .map(|c| c.redactor().clone())
            .unwrap_or_default();
        if let Some(c) = &ctx.cado {
            redactor.add(c.api_key());
        }
        // encoded Windows commands embed the secret: register them too
        if let Some(cmd) = ctx
            .collector
            .as_ref()
            .and_then(|c| c.command(Platform::Windows))
        {
            redactor.add_str(&crate::script::powershell_encode(cmd.expose_secret()));
        }
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.device_id.clone(), i))
            .collect();
        let track = hosts
            .iter()
            .map(|h| Track {
                resend: resumed
                    && h.state == HostState::QueuedOffline
                    && h.queued_session.is_none(),
                ..Track::default()
            })
            .collect();
        let deadline = ctx
            .settings
            .deadline
            .unwrap_or_else(|| ctx.clock.now() + chrono::Duration::hours(24));
        ctx.settings.batch_size = ctx.settings.batch_size.clamp(1, MAX_BATCH_HOSTS);
        Engine {
            api: run.api,
            ctx,
            deadline,
            redactor,
            label,
            hosts,
            track,
            index,
            batches: Vec::new(),
            journal: Some(journal),
            stats: RunStats::default(),
            started: Instant::now(),
            last_queue_check: None,
        }
    }

    fn journal(&mut self) -> &mut Journal {
        self.journal
            .as_mut()
            .expect("journal present between commits")
    }

    /// Moves host `i` to `to` (if the machine allows it) and stages the journal line.
    fn set(&mut self, i: usize, to: HostState, why: Option<String>) -> Result<()> {
        let from = self.hosts[i].state;
        if from == to {
            return Ok(());
        }
        if !from.can_go_to(to) {
            tracing::warn!(device_id = %self.hosts[i].device_id, %from, %to, "ignoring impossible transition");
            return Ok(());
        }
        let now = self.ctx.clock.now();
        let h = &mut self.hosts[i];
        h.state = to;
        h.reason = why.map(|r| crate::report::truncate(&self.redactor.redact(&r), 400));
        h.updated = now;
        tracing::debug!(device_id = %h.device_id, hostname = %h.hostname, %from, %to, reason = ?h.reason, "transition");
        let record = h.clone();
        self.journal().stage_record(Some(from), &record)?;
        self.stats.journal_lines += 1;
        Ok(())
    }

    /// Stages a host's record without a state change (a note such as a deleted queued launch).
    fn note(&mut self, i: usize) -> Result<()> {
        let from = self.hosts[i].state;
        let record = self.hosts[i].clone();
        self.journal().stage_record(Some(from), &record)?;
        self.stats.journal_lines += 1;
        Ok(())
    }

    /// Writes and syncs the staged journal lines on a blocking thread, before the next command is sent.
    async fn commit(&mut self) -> Result<()> {
        if !self.journal.as_ref().is_some_and(Journal::has_staged) {
            return Ok(());
        }
        let mut journal = self.journal.take().expect("journal present");
        let path = journal.path().to_path_buf();
        let (journal, res) = tokio::task::spawn_blocking(move || {
            let res = journal.commit();
            (journal, res)
        })
        .await
        .map_err(|e| Error::journal(&path, e))?;
        self.journal = Some(journal);
        res
    }

    fn emit(&self, phase: &'static str) {
        if let Some(p) = &self.ctx.progress {
            p(&Progress {
                counts: counts(&self.hosts),
                round: self.stats.rounds,
                queued_deleted: self.stats.queued_deleted,
                elapsed: self.started.elapsed(),
                stopping: self.ctx.control.is_stopping(),
                phase,
            });
        }
    }

    fn all_terminal(&self) -> bool {
        self.hosts.iter().all(|h| h.state.is_terminal())
    }

    fn hosts_in(&self, states: &[HostState]) -> impl Iterator<Item = usize> + '_ {
        let states = states.to_vec();
        (0..self.hosts.len()).filter(move |&i| states.contains(&self.hosts[i].state))
    }

    async fn run(&mut self) -> Result<RunOutcome> {
        self.refuse_unsupported()?;
        self.commit().await?;
        self.emit("selected");
        let aborted = loop {
            if self.ctx.control.is_aborted() {
                break true;
            }
            self.check_deadlines().await?;
            self.open_sessions().await?;
            if self.ctx.control.is_stopping() {
                self.cancel_unlaunched().await?;
            } else {
                self.launch().await?;
            }
            if self.stats.all_launched_ms.is_none()
                && self
                    .hosts_in(&[HostState::Pending, HostState::Session])
                    .next()
                    .is_none()
            {
                self.stats.all_launched_ms = Some(self.started.elapsed().as_millis() as u64);
            }
            self.emit("launched");
            if self.all_terminal() {
                break false;
            }
            self.sleep(self.ctx.settings.poll_interval).await;
            if self.ctx.control.is_aborted() {
                break true;
            }
            self.refresh().await;
            self.check_queue().await?;
            self.probe().await?;
            self.check_captures().await?;
            self.stats.rounds += 1;
            self.emit("polled");
            if self.all_terminal() {
                break false;
            }
        };
        if aborted {
            self.leave_queued()?;
        } else {
            let at = self.ctx.clock.now();
            self.journal().stage(&Entry::Finished { at })?;
            self.stats.journal_lines += 1;
        }
        self.commit().await?;
        let report = Report::new(self.ctx.job.as_str(), &self.label, self.hosts.clone());
        Ok(RunOutcome {
            report,
            stats: self.stats.clone(),
            aborted,
        })
    }

    /// Sends one batch `runscript` (`command_string`) to hosts `members` of batch `b`.
    async fn runscript(
        &self,
        b: usize,
        command_string: &str,
        members: &[usize],
    ) -> Result<std::collections::BTreeMap<String, crate::api::HostReply>> {
        let ids: Vec<String> = members
            .iter()
            .map(|&i| self.hosts[i].device_id.clone())
            .collect();
        self.api
            .batch_admin_command(
                &self.batches[b].id,
                "runscript",
                command_string,
                &ids,
                self.ctx.settings.rtr_timeout,
            )
            .await
    }

    /// Waits `d`, or less when the control is pressed.
    async fn sleep(&self, d: Duration) {
        let notified = self.ctx.control.inner.notify.notified();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = notified => {}
        }
    }
}

#[cfg(test)]
mod tests;
