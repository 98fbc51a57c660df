//! What a run is given and gives back: settings, the stop control, progress events and call counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::state::HostState;

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
    /// Time between reads of the queued-session API for hosts whose launch waits in Falcon's offline queue
    /// (the reference polls it "every few minutes").
    pub queue_check_interval: Duration,
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
            queue_check_interval: Duration::from_secs(120),
        }
    }
}

/// Stops a run: the first [`Control::interrupt`] stops launching (hosts not launched yet are cancelled and
/// their queued launches deleted, the rest is followed), the second leaves at the next step with the journal
/// synced and the report built.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub(super) inner: Arc<ControlInner>,
}

#[derive(Debug, Default)]
pub(super) struct ControlInner {
    presses: AtomicU8,
    stop: AtomicBool,
    abort: AtomicBool,
    pub(super) notify: tokio::sync::Notify,
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
    /// Queued commands deleted so far.
    pub queued_deleted: u64,
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
    /// Queued-session reads (hosts whose launch waits in the offline queue).
    pub queue_checks: u64,
    /// Queued commands deleted (hosts that timed out or were cancelled while their launch was queued).
    pub queued_deleted: u64,
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
