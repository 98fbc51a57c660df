//! The sync loop: stream events -> bounded batches -> coalesced changes -> bulk lookup -> paced,
//! batched writes -> dead letters -> cursor acknowledgement -> state saved (and pinged).
//!
//! The engine is generic over where events come from ([`EventSource`]), where IOCs live ([`IocStore`])
//! and where the state is pinged ([`StatePinger`]); the Falcon and OpenCTI clients are the real ones,
//! the unit tests below script all three.
//!
//! **Invariants.**
//! - The cursor is acknowledged (and the state saved) only after every change of the batch it covers
//!   was written, or its dead letter is on disk. A transient failure retries the whole batch with
//!   backoff (the lookup makes the retry idempotent), so nothing is lost and nothing is duplicated.
//! - No batch can stop the engine: a request Falcon refuses for good (any non-retryable error but
//!   an authentication or permission one) dead-letters the changes it carried, and the engine moves on.
//! - Falcon refusing the credentials or the scope (401 after the token refresh, 403, a token
//!   request refused) stops the engine with that error after an `error!` line: waiting cannot fix it.
//! - The state is pinged to OpenCTI every `ping_interval`, also while a batch is retried or waits
//!   for its backoff.
//! - Shutdown is level-triggered (a [`CancellationToken`]): once cancelled, the batch in flight gets
//!   at most `shutdown_grace` (in-flight requests included) to be written; otherwise it is left
//!   unacknowledged and replayed on restart.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::assurance::report::{Held, Holdings};
use crate::batch::{self, Batch, ChangeRef, EventAction, ExistingIoc, Intent, IocUpdate, Plan};
use crate::deadletter::{DeadLetter, DeadLetterFile};
use crate::error::{Error, chain};
use crate::mapping::{DesiredIoc, IocKey, MappingOptions, SkipReason};
use crate::metrics as m;
use crate::state::{StateFile, compare_event_ids, parse_event_id};

/// One event as the engine sees it.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// The stream (re)connected; `last_event_id` is the newest event id of the stream at that time.
    Connected {
        /// Newest event id in the stream when connecting.
        last_event_id: Option<String>,
    },
    /// A heartbeat (moves the cursor).
    Heartbeat {
        /// Event id.
        id: String,
    },
    /// A create/update/delete/merge event.
    Data {
        /// Event id.
        id: String,
        /// SSE event name.
        action: EventAction,
        /// The STIX object (`data.data`).
        stix: Value,
        /// `data.context` (patches, merge sources).
        context: Option<Value>,
    },
    /// Any other event with an id (moves the cursor, nothing to write).
    Other {
        /// Event id.
        id: String,
        /// Event name.
        name: String,
    },
    /// An event that could not be decoded: counted, logged, skipped.
    Malformed {
        /// Event id, if it had one.
        id: Option<String>,
        /// What was wrong.
        detail: String,
    },
}

/// A stream of events with a cursor.
pub trait EventSource: Send {
    /// The next event; `None` when the stream is over (only in tests: the live stream reconnects).
    fn next_event(&mut self) -> impl Future<Output = Option<Result<SourceEvent, Error>>> + Send;
    /// Acknowledges every event up to `id`: a reconnect resumes after it.
    fn ack(&mut self, id: &str);
    /// The current state JSON (`{"start_from", "recover_until"}`) as of the last acknowledgement.
    fn state_json(&self) -> String;
}

/// Where the state is reported (OpenCTI `pingConnector`).
pub trait StatePinger: Send + Sync {
    /// Pings with the state; returns `true` when the platform reset the state.
    fn ping(&self, state_json: &str) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// A pinger that does nothing (dry runs, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPing;

impl StatePinger for NoPing {
    async fn ping(&self, _state_json: &str) -> Result<bool, Error> {
        Ok(false)
    }
}

/// One item of a write request that Falcon refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFailure {
    /// Index in the request, when the store could match it.
    pub index: Option<usize>,
    /// Type and value, when Falcon says.
    pub key: Option<IocKey>,
    /// Falcon's message.
    pub message: String,
}

/// What Falcon said about one create or update request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// Indexes (in the request) of the items Falcon reports written.
    pub written: Vec<usize>,
    /// Falcon ids of written items, by index, when the answer carries them (a create's id).
    pub ids: HashMap<usize, String>,
    /// The items Falcon refused.
    pub failed: Vec<ItemFailure>,
}

/// The IOC side: lookups and writes of owned IOCs. One call = one Falcon request.
pub trait IocStore: Send + Sync {
    /// The owned IOCs (created by this client, with the connector's source) among `keys`.
    fn lookup(
        &self,
        keys: &[IocKey],
    ) -> impl Future<Output = Result<Vec<ExistingIoc>, Error>> + Send;
    /// Splits `keys` into lookups of at most `max` keys that each fit in one request (Falcon's URL
    /// length limit for a GET). The default splits by count only.
    fn split_lookup<'k>(&self, keys: &'k [IocKey], max: usize) -> Vec<&'k [IocKey]> {
        keys.chunks(max.max(1)).collect()
    }
    /// Creates IOCs; says which were written and which refused.
    fn create(
        &self,
        items: &[DesiredIoc],
    ) -> impl Future<Output = Result<WriteOutcome, Error>> + Send;
    /// Updates IOCs; says which were written and which refused.
    fn update(
        &self,
        items: &[IocUpdate],
    ) -> impl Future<Output = Result<WriteOutcome, Error>> + Send;
    /// Deletes IOCs by id; returns the ids Falcon reports deleted.
    fn delete(&self, ids: &[String]) -> impl Future<Output = Result<Vec<String>, Error>> + Send;
    /// `X-RateLimit-Remaining` last seen, if known.
    fn rate_limit_remaining(&self) -> Option<u64> {
        None
    }
}

/// Engine settings (from [`crate::config::Config`] plus command-line flags).
#[derive(Debug, Clone)]
pub(crate) struct EngineOptions {
    /// Connector name (the `name` metric label).
    pub name: String,
    /// Mapping settings.
    pub mapping: MappingOptions,
    /// Delete permanently rather than soft delete.
    pub permanent_delete: bool,
    /// Most events per batch.
    pub batch_size: usize,
    /// Longest wait for a batch to fill.
    pub batch_window: Duration,
    /// IOCs per write request.
    pub write_chunk: usize,
    /// Values per lookup request.
    pub lookup_chunk: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Falcon requests per minute this engine may make.
    pub requests_per_minute: u32,
    /// State ping interval (at most 40 s).
    pub ping_interval: Duration,
    /// Look up and plan, but write nothing and do not move the cursor.
    pub dry_run: bool,
    /// Stop once everything up to the stream's end at connect time is written.
    pub until_caught_up: bool,
    /// Longest retry time for a batch after shutdown was requested.
    pub shutdown_grace: Duration,
}

impl EngineOptions {
    /// From the configuration.
    pub(crate) fn from_config(c: &crate::config::Config) -> EngineOptions {
        let rpm = (f64::from(c.crowdstrike.rate_limit_per_minute) * c.crowdstrike.rate_limit_share)
            .floor();
        EngineOptions {
            name: c.connector.name.clone(),
            mapping: MappingOptions::from_config(c),
            permanent_delete: c.crowdstrike.permanent_delete,
            batch_size: c.sync.batch_size,
            batch_window: c.sync.batch_window,
            write_chunk: c.sync.write_chunk,
            lookup_chunk: c.sync.lookup_chunk,
            concurrency: c.sync.concurrency,
            requests_per_minute: (rpm as u32).max(1),
            ping_interval: c.sync.ping_interval,
            dry_run: false,
            until_caught_up: false,
            shutdown_grace: c.sync.shutdown_grace,
        }
    }
}

/// Counters of one run (also exported as metrics).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Stream events read (including heartbeats).
    pub events: AtomicU64,
    /// Data events (create/update/delete/merge).
    pub data_events: AtomicU64,
    /// IOCs created.
    pub created: AtomicU64,
    /// IOCs updated.
    pub updated: AtomicU64,
    /// IOCs soft deleted.
    pub soft_deleted: AtomicU64,
    /// IOCs deleted.
    pub deleted: AtomicU64,
    /// Changes that needed no write.
    pub unchanged: AtomicU64,
    /// Dead letters.
    pub dead_letters: AtomicU64,
    /// Falcon requests made.
    pub falcon_requests: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// Batch retries.
    pub retries: AtomicU64,
    /// Malformed events.
    pub malformed: AtomicU64,
    skipped: std::sync::Mutex<std::collections::BTreeMap<SkipReason, u64>>,
}

/// A summary of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Stream events read.
    pub events: u64,
    /// Data events.
    pub data_events: u64,
    /// IOCs created.
    pub created: u64,
    /// IOCs updated.
    pub updated: u64,
    /// IOCs soft deleted.
    pub soft_deleted: u64,
    /// IOCs deleted.
    pub deleted: u64,
    /// Changes that needed no write.
    pub unchanged: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Falcon requests made by the engine.
    pub falcon_requests: u64,
    /// Batches.
    pub batches: u64,
    /// Batch retries.
    pub retries: u64,
    /// Malformed events.
    pub malformed: u64,
    /// Skips by reason.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Why the run ended.
    pub ended: String,
}

impl Stats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn skip(&self, name: &str, reason: SkipReason, n: u64) {
        *self
            .skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += n;
        metrics::counter!(m::SKIPPED, "name" => name.to_string(), "reason" => reason.as_str())
            .increment(n);
    }

    /// A snapshot.
    pub(crate) fn summary(&self, ended: &str) -> Summary {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            events: g(&self.events),
            data_events: g(&self.data_events),
            created: g(&self.created),
            updated: g(&self.updated),
            soft_deleted: g(&self.soft_deleted),
            deleted: g(&self.deleted),
            unchanged: g(&self.unchanged),
            dead_letters: g(&self.dead_letters),
            falcon_requests: g(&self.falcon_requests),
            batches: g(&self.batches),
            retries: g(&self.retries),
            malformed: g(&self.malformed),
            skipped: self
                .skipped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
            ended: ended.to_string(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// Shutdown was requested (SIGTERM/SIGINT): the batch in flight was written (or, past the grace
    /// period, left for a replay), state saved and pinged.
    Shutdown,
    /// `--until-caught-up` and everything up to the stream's end at connect time is written.
    CaughtUp,
    /// The event source ended.
    SourceEnded,
    /// The platform reset the connector state: start over with a fresh state.
    StateReset,
}

/// Consecutive failed attempts of one batch after which the retries are logged at `error`.
const ESCALATE_AFTER: u32 = 3;
/// Longest backoff between two attempts of a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Ids per delete request (the SDK's ids per query string).
const DELETE_CHUNK: usize = 200;

/// The state ping timer, shared by the main loop and the retry loop.
struct Pings {
    tick: tokio::time::Interval,
    /// The platform reset the state during a ping.
    reset: bool,
}

impl Pings {
    fn new(every: Duration) -> Pings {
        let every = every.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Pings { tick, reset: false }
    }
}

/// Whether the batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flushed {
    /// Written (or dead-lettered), acknowledged, state saved.
    Done,
    /// Shutdown grace over before the batch was written: left unacknowledged for a replay.
    Abandoned,
}

/// The sync engine.
pub(crate) struct Engine<S> {
    store: S,
    opts: EngineOptions,
    limiter: DefaultDirectRateLimiter,
    dead_letters: DeadLetterFile,
    state_file: Option<StateFile>,
    stats: Arc<Stats>,
    /// Dissemination assurance: reports after each batch (none: off, or a dry run).
    assurance: Option<Arc<crate::assurance::runtime::SharedAssurance>>,
}

/// The keys whose changes were dead-lettered, with Falcon's reason: a retry of the batch skips them.
pub(crate) type Dead = HashMap<IocKey, String>;

impl<S: IocStore> Engine<S> {
    /// An engine writing to `store`; the state is saved to `state_file` after each batch (none: not
    /// saved, e.g. `reconcile`).
    pub(crate) fn new(
        store: S,
        opts: EngineOptions,
        state_file: Option<StateFile>,
        dead_letters: DeadLetterFile,
    ) -> Engine<S> {
        let rpm = NonZeroU32::new(opts.requests_per_minute.max(1)).expect("max(1)");
        // Burst of about one second's worth: at most `rpm + burst` requests in any sliding minute.
        let burst = NonZeroU32::new(opts.requests_per_minute.div_ceil(60).max(1)).expect("max(1)");
        let limiter = RateLimiter::direct(Quota::per_minute(rpm).allow_burst(burst));
        Engine {
            store,
            opts,
            limiter,
            dead_letters,
            state_file,
            stats: Arc::new(Stats::default()),
            assurance: None,
        }
    }

    /// Reports each written batch to OpenCTI (dissemination assurance).
    pub(crate) fn with_assurance(
        mut self,
        a: Arc<crate::assurance::runtime::SharedAssurance>,
    ) -> Self {
        self.assurance = Some(a);
        self
    }

    /// The store.
    pub(crate) fn store_ref(&self) -> &S {
        &self.store
    }

    /// The options.
    pub(crate) fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// One report per indicator of a written batch, queued and delivered within the assurance's
    /// bound. Built from what Falcon answered to the writes (`held`); only the IOCs the answers
    /// leave unknown are read back. Never fails: a failed read-back leaves the batch unreported
    /// (the next reconciliation confirms it).
    async fn report_batch(&self, batch: &Batch, held: Option<Holdings>, dead: &Dead) {
        let (Some(a), Some(mut held)) = (&self.assurance, held) else {
            return;
        };
        let pending = batch.pending();
        let keys: Vec<IocKey> = pending
            .iter()
            .filter(|p| p.changes.iter().any(|c| c.indicator_id.is_some()))
            .filter(|p| !dead.contains_key(&p.key))
            .map(|p| p.key.clone())
            .collect();
        if keys.is_empty() && dead.is_empty() {
            return;
        }
        if let Err(e) = self.read_back(&mut held, &keys).await {
            warn!(reason = %chain(&e), "cannot read the written IOCs back; this batch is not reported (reconciliation will)");
            return;
        }
        let reports =
            crate::assurance::report::batch_reports(&pending, &held, dead, chrono::Utc::now());
        a.submit(reports).await;
    }

    /// Looks up the IOCs among `keys` whose state the write answers left unknown.
    pub(crate) async fn read_back(
        &self,
        held: &mut Holdings,
        keys: &[IocKey],
    ) -> Result<(), Error> {
        let unknown = held.unknown(keys);
        if unknown.is_empty() {
            return Ok(());
        }
        debug!(
            iocs = unknown.len(),
            "reading back IOCs Falcon's answers did not describe"
        );
        let (found, _) = self.lookup_all(&unknown).await?;
        held.settle(&unknown, &found);
        Ok(())
    }

    /// The run's counters.
    pub(crate) fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    async fn paced(&self) {
        self.limiter.until_ready().await;
        Stats::add(&self.stats.falcon_requests, 1);
    }

    fn request_metric(&self, endpoint: &'static str, ok: bool) {
        metrics::counter!(m::FALCON_REQUESTS, "name" => self.opts.name.clone(), "endpoint" => endpoint,
            "status" => if ok { "ok" } else { "error" })
        .increment(1);
    }

    /// Consumes `source` until `shutdown` is cancelled, catch-up or the end of the source.
    pub(crate) async fn run<E: EventSource, P: StatePinger>(
        &self,
        source: &mut E,
        pinger: &P,
        shutdown: &CancellationToken,
    ) -> Result<RunEnd, Error> {
        let name = self.opts.name.clone();
        let mut batch = Batch::new();
        let mut deadline: Option<Instant> = None;
        let mut caught = CatchUp::new(recover_ms(&source.state_json()));
        let mut pings = Pings::new(self.opts.ping_interval);
        // With `--until-caught-up`: when the stream went quiet (no event for a batch window).
        let mut quiet_at: Option<Instant> = None;
        let mut abandoned = false;

        mark_progress();
        if !self.opts.dry_run && ping_state(pinger, &source.state_json()).await {
            return Ok(RunEnd::StateReset);
        }
        let end = loop {
            let flush_now;
            let mut quiet = false;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    info!("shutdown requested: finishing the batch in flight");
                    break RunEnd::Shutdown;
                }
                _ = sleep_opt(deadline) => flush_now = true,
                _ = sleep_opt(quiet_at) => { quiet_at = None; quiet = true; flush_now = true; }
                _ = pings.tick.tick() => {
                    if !self.opts.dry_run && ping_state(pinger, &source.state_json()).await {
                        break RunEnd::StateReset;
                    }
                    continue;
                }
                ev = source.next_event() => {
                    match ev {
                        None => break RunEnd::SourceEnded,
                        Some(Err(e)) if !e.is_retryable() => {
                            self.flush(&mut batch, source, pinger, &mut pings, shutdown).await?;
                            return Err(e);
                        }
                        Some(Err(e)) => {
                            warn!(reason = %chain(&e), "live stream error; the stream reconnects");
                            // A reconnecting stream is not a quiet one.
                            quiet_at = None;
                            continue;
                        }
                        Some(Ok(ev)) => {
                            Stats::add(&self.stats.events, 1);
                            // Only what the stream delivers after connecting shows it flowing.
                            let arms = !matches!(ev, SourceEvent::Connected { .. });
                            self.on_event(ev, &mut batch, &mut caught, &name);
                            if deadline.is_none() && !batch.is_empty() {
                                deadline = Some(Instant::now() + self.opts.batch_window);
                            }
                            if self.opts.until_caught_up && arms && caught.target.is_some() {
                                quiet_at = Some(Instant::now() + self.opts.batch_window);
                            }
                            flush_now = batch.events >= self.opts.batch_size;
                        }
                    }
                }
            }
            if flush_now {
                deadline = None;
                // Silent for a window before this flush (the time spent writing does not count).
                let quiet = quiet || quiet_at.is_some_and(|q| q <= Instant::now());
                if self
                    .flush(&mut batch, source, pinger, &mut pings, shutdown)
                    .await?
                    == Flushed::Abandoned
                {
                    abandoned = true;
                    break RunEnd::Shutdown;
                }
                if pings.reset {
                    break RunEnd::StateReset;
                }
                if self.opts.until_caught_up && caught.done(source, &batch, quiet) {
                    info!(target = ?caught.target, "caught up with the stream");
                    break RunEnd::CaughtUp;
                }
                // Quiet means no event while listening: the time spent writing does not count.
                if quiet_at.is_some() {
                    quiet_at = Some(Instant::now() + self.opts.batch_window);
                }
            }
        };
        if end != RunEnd::StateReset {
            if !abandoned {
                self.flush(&mut batch, source, pinger, &mut pings, shutdown)
                    .await?;
            }
            if !self.opts.dry_run {
                ping_state(pinger, &source.state_json()).await;
            }
        }
        info!(summary = ?self.stats.summary(""), "sync stopped");
        Ok(end)
    }

    fn on_event(&self, ev: SourceEvent, batch: &mut Batch, caught: &mut CatchUp, name: &str) {
        match ev {
            SourceEvent::Connected { last_event_id } => {
                if caught.target.is_none() {
                    info!(last_event_id = ?last_event_id, "connected to the live stream");
                    caught.connected(last_event_id.as_deref());
                }
            }
            SourceEvent::Heartbeat { id } | SourceEvent::Other { id, .. } => {
                caught.seen(&id);
                batch.cover(&id)
            }
            SourceEvent::Malformed { id, detail } => {
                Stats::add(&self.stats.malformed, 1);
                metrics::counter!(m::MALFORMED_EVENTS, "name" => name.to_string()).increment(1);
                self.stats.skip(name, SkipReason::MalformedEvent, 1);
                warn!(event_id = ?id, reason = %detail, "malformed stream event skipped");
                if let Some(id) = id {
                    caught.seen(&id);
                    batch.cover(&id);
                }
            }
            SourceEvent::Data {
                id,
                action,
                stix,
                context,
            } => {
                Stats::add(&self.stats.data_events, 1);
                metrics::counter!(m::PROCESSED_MESSAGES, "name" => name.to_string(), "action" => action.as_str()).increment(1);
                if let Some((ms, _)) = parse_event_id(&id) {
                    metrics::gauge!(m::CURRENT_STATE, "name" => name.to_string()).set(ms as f64);
                }
                let out = batch::changes_for_event(
                    action,
                    &id,
                    &stix,
                    context.as_ref(),
                    &self.opts.mapping,
                    chrono::Utc::now(),
                );
                for s in &out.skipped {
                    if s.reason != SkipReason::NotIndicator {
                        debug!(event_id = %id, reason = %s.reason, detail = %s.detail, "comparison skipped");
                    }
                    self.stats.skip(name, s.reason, 1);
                }
                for c in out.changes {
                    batch.push(c);
                }
                caught.seen(&id);
                batch.cover(&id);
            }
        }
    }

    /// Writes the batch (retrying transient failures with backoff, pinging meanwhile), then
    /// acknowledges and saves the state. Past the shutdown grace the batch is abandoned.
    async fn flush<E: EventSource, P: StatePinger>(
        &self,
        batch: &mut Batch,
        source: &mut E,
        pinger: &P,
        pings: &mut Pings,
        shutdown: &CancellationToken,
    ) -> Result<Flushed, Error> {
        if batch.is_empty() {
            return Ok(Flushed::Done);
        }
        let grace = self.opts.shutdown_grace;
        let mut dead = Dead::new();
        // What Falcon holds is kept only for the reports (not with reporting off, nor in a dry run).
        let mut held = (self.assurance.is_some() && !self.opts.dry_run).then(Holdings::default);
        let mut backoff = Duration::from_millis(500);
        let mut shutdown_at: Option<Instant> = shutdown.is_cancelled().then(Instant::now);
        let mut failures = 0u32;
        loop {
            // One attempt; a shutdown starts the grace period, which also bounds the requests in flight.
            let attempt = {
                let write = self.write_batch(batch, &mut dead, held.as_mut());
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut write => break Some(r),
                        _ = shutdown.cancelled(), if shutdown_at.is_none() => shutdown_at = Some(Instant::now()),
                        _ = sleep_opt(shutdown_at.map(|t| t + grace)) => break None,
                        _ = pings.tick.tick() => self.ping_while_waiting(pinger, source, pings).await,
                    }
                }
            };
            let e = match attempt {
                Some(Ok(())) => break,
                None => {
                    error!(
                        grace_secs = grace.as_secs(),
                        "shutdown grace period over with a request in flight; the batch will be replayed on restart"
                    );
                    return Ok(Flushed::Abandoned);
                }
                Some(Err(e)) if e.is_falcon_auth() => {
                    error!(reason = %chain(&e), "Falcon refused the credentials or the API scope; stopping (fix the API client, then restart)");
                    return Err(e);
                }
                Some(Err(e)) if e.is_retryable() => e,
                Some(Err(e)) => return Err(e),
            };
            failures += 1;
            Stats::add(&self.stats.retries, 1);
            metrics::counter!(m::RETRIES, "name" => self.opts.name.clone()).increment(1);
            if shutdown_at.is_some_and(|t| t.elapsed() >= grace) {
                error!(reason = %chain(&e), "giving up on the batch at shutdown; it will be replayed on restart");
                return Ok(Flushed::Abandoned);
            }
            let reason = chain(&e);
            let wait_ms = backoff.as_millis() as u64;
            if failures > ESCALATE_AFTER {
                error!(reason = %reason, attempts = failures, wait_ms, "Falcon keeps failing; the batch is retried (the cursor waits)");
            } else {
                warn!(reason = %reason, attempts = failures, wait_ms, "transient failure; retrying the batch");
            }
            let wake = Instant::now() + backoff;
            loop {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep_until(wake) => break,
                    _ = shutdown.cancelled(), if shutdown_at.is_none() => {
                        info!("shutdown requested during a backoff: retrying now, within the grace period");
                        shutdown_at = Some(Instant::now());
                        break;
                    }
                    _ = sleep_opt(shutdown_at.map(|t| t + grace)) => {
                        error!(reason = %reason, "giving up on the batch at shutdown; it will be replayed on restart");
                        return Ok(Flushed::Abandoned);
                    }
                    _ = pings.tick.tick() => self.ping_while_waiting(pinger, source, pings).await,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.report_batch(batch, held, &dead).await;
        Stats::add(&self.stats.batches, 1);
        mark_progress();
        metrics::counter!(m::BATCHES, "name" => self.opts.name.clone()).increment(1);
        if let Some(r) = self.store.rate_limit_remaining() {
            metrics::gauge!(m::RATE_LIMIT_REMAINING, "name" => self.opts.name.clone())
                .set(r as f64);
        }
        if let Some(id) = batch.last_event_id.clone()
            && !self.opts.dry_run
        {
            source.ack(&id);
            if let Some(f) = &self.state_file {
                f.save(&source.state_json()).await?;
            }
            if let Some((ms, _)) = parse_event_id(&id) {
                let lag = (chrono::Utc::now().timestamp_millis() as f64 - ms as f64) / 1000.0;
                metrics::gauge!(m::STREAM_LAG, "name" => self.opts.name.clone()).set(lag.max(0.0));
            }
        }
        let last = batch.last_event_id.take();
        *batch = Batch::new();
        batch.last_event_id = last;
        batch.events = 0;
        Ok(Flushed::Done)
    }

    async fn ping_while_waiting<E: EventSource, P: StatePinger>(
        &self,
        pinger: &P,
        source: &E,
        pings: &mut Pings,
    ) {
        if !self.opts.dry_run && ping_state(pinger, &source.state_json()).await {
            pings.reset = true;
        }
    }

    /// One attempt at writing a batch; `held`, when given, records what Falcon holds for its IOCs.
    pub(crate) async fn write_batch(
        &self,
        batch: &Batch,
        dead: &mut Dead,
        mut held: Option<&mut Holdings>,
    ) -> Result<(), Error> {
        let mut pending: Vec<_> = batch
            .pending()
            .into_iter()
            .filter(|p| !dead.contains_key(&p.key))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let keys: Vec<IocKey> = pending.iter().map(|p| p.key.clone()).collect();
        let (existing, refused) = self.lookup_all(&keys).await?;
        if let Some(h) = held.as_deref_mut() {
            h.looked_up(&keys, &existing);
        }
        if !refused.is_empty() {
            // Falcon refused these lookups for good: without knowing what exists nothing can be
            // written safely. Their changes become dead letters; the rest of the batch goes on.
            let mut letters = Vec::new();
            pending.retain(|p| match refused.get(&p.key) {
                None => true,
                Some(reason) => {
                    for c in &p.changes {
                        let body = match &c.intent {
                            Intent::Upsert(d) => serde_json::to_value(d).ok(),
                            _ => None,
                        };
                        letters.push(letter("lookup", &p.key, &change_ref(c), reason, body));
                    }
                    false
                }
            });
            self.dead_letter(letters, dead).await?;
        }
        let plan = batch::plan(&pending, &existing, self.opts.permanent_delete);
        if let Some(h) = held.as_deref_mut() {
            h.planned(&plan);
        }
        self.execute(plan, dead, held).await
    }

    /// Looks up owned IOCs for `keys` in requests that fit Falcon's limits (concurrently, paced).
    /// A transient or authentication failure is the error; keys whose lookup Falcon refused for good
    /// are returned with the reason.
    pub(crate) async fn lookup_all(
        &self,
        keys: &[IocKey],
    ) -> Result<(HashMap<IocKey, ExistingIoc>, HashMap<IocKey, String>), Error> {
        let chunks = self.store.split_lookup(keys, self.opts.lookup_chunk);
        let results = self
            .requests(chunks, "lookup", |chunk| self.store.lookup(chunk))
            .await;
        let mut out = HashMap::new();
        let mut refused = HashMap::new();
        let mut first_err: Option<Error> = None;
        for (chunk, r) in results {
            match r {
                Ok(found) => {
                    for e in found {
                        out.insert(e.key.clone(), e);
                    }
                }
                Err(e) if e.is_retryable() || e.is_falcon_auth() => {
                    first_err = Some(keep_worse(first_err, e))
                }
                Err(e) => {
                    let reason = chain(&e);
                    error!(reason = %reason, keys = chunk.len(), "Falcon refused a lookup; its changes go to the dead-letter file");
                    refused.extend(chunk.iter().map(|k| (k.clone(), reason.clone())));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok((out, refused)),
        }
    }

    /// Writes letters to the dead-letter file, then (only once they are on disk) marks their keys
    /// so that a retry of the batch skips them.
    async fn dead_letter(&self, letters: Vec<DeadLetter>, dead: &mut Dead) -> Result<(), Error> {
        if letters.is_empty() {
            return Ok(());
        }
        self.dead_letters.append(&letters).await?;
        for l in &letters {
            error!(event_id = %l.event_id, operation = %l.operation, ioc_type = %l.ioc_type, value = %l.value,
                   reason = %l.reason, "[API] Error while processing indicator");
            metrics::counter!(m::DEAD_LETTERS, "name" => self.opts.name.clone(), "operation" => l.operation.clone()).increment(1);
            if let Some(t) = crate::mapping::IocType::from_wire(&l.ioc_type) {
                let key = IocKey {
                    ioc_type: t,
                    value: l.value.clone(),
                };
                dead.insert(key, l.reason.clone());
            }
        }
        Stats::add(&self.stats.dead_letters, letters.len() as u64);
        Ok(())
    }

    fn written(&self, op: &'static str, n: u64) {
        let c = match op {
            "create" => &self.stats.created,
            "update" => &self.stats.updated,
            "soft_delete" => &self.stats.soft_deleted,
            _ => &self.stats.deleted,
        };
        Stats::add(c, n);
        metrics::counter!(m::IOC_WRITES, "name" => self.opts.name.clone(), "operation" => op)
            .increment(n);
    }

    /// Executes a plan: creates, updates and deletes in chunks. Refused items become dead letters;
    /// items Falcon reports neither written nor refused are re-verified with a lookup (creates and
    /// deletes) or dead-lettered (updates, whose content a lookup cannot confirm cheaply). What
    /// the written items left in Falcon, from Falcon's answers, is applied to `held` when given.
    pub(crate) async fn execute(
        &self,
        plan: Plan,
        dead: &mut Dead,
        held: Option<&mut Holdings>,
    ) -> Result<(), Error> {
        self.stats
            .unchanged
            .fetch_add(plan.unchanged as u64, Ordering::Relaxed);
        if self.opts.dry_run {
            for (c, r) in &plan.creates {
                info!(event_id = %r.event_id, ioc = %c.key, "dry run: would create");
            }
            for (u, r) in &plan.updates {
                info!(event_id = %r.event_id, ioc = %u.key, soft_delete = u.soft_delete, "dry run: would update");
            }
            for (_, k, r) in &plan.deletes {
                info!(event_id = %r.event_id, ioc = %k, "dry run: would delete");
            }
            Stats::add(&self.stats.created, plan.creates.len() as u64);
            let soft = plan.updates.iter().filter(|u| u.0.soft_delete).count() as u64;
            Stats::add(&self.stats.updated, plan.updates.len() as u64 - soft);
            Stats::add(&self.stats.soft_deleted, soft);
            Stats::add(&self.stats.deleted, plan.deletes.len() as u64);
            return Ok(());
        }
        let mut out = Outcomes {
            held: held.is_some().then(Vec::new),
            ..Outcomes::default()
        };
        let write_chunk = self.opts.write_chunk.max(1);

        let creates = self.requests(plan.creates.chunks(write_chunk), "create", |c| {
            let items: Vec<DesiredIoc> = c.iter().map(|(d, _)| d.clone()).collect();
            async move { self.store.create(&items).await }
        });
        for (chunk, r) in creates.await {
            let items: Vec<Item> = chunk
                .iter()
                .map(|(d, r)| Item {
                    op: "create",
                    key: &d.key,
                    cref: r,
                    post: Post::Create(d),
                })
                .collect();
            out.add(items, r.map(Reply::Write));
        }

        let updates = self.requests(plan.updates.chunks(write_chunk), "update", |c| {
            let items: Vec<IocUpdate> = c.iter().map(|(u, _)| u.clone()).collect();
            async move { self.store.update(&items).await }
        });
        for (chunk, r) in updates.await {
            let items: Vec<Item> = chunk
                .iter()
                .map(|(u, r)| Item {
                    op: if u.soft_delete {
                        "soft_delete"
                    } else {
                        "update"
                    },
                    key: &u.key,
                    cref: r,
                    post: Post::Update(u),
                })
                .collect();
            out.add(items, r.map(Reply::Write));
        }

        let deletes = self.requests(plan.deletes.chunks(DELETE_CHUNK), "delete", |c| {
            let ids: Vec<String> = c.iter().map(|(id, _, _)| id.clone()).collect();
            async move { self.store.delete(&ids).await }
        });
        for (chunk, r) in deletes.await {
            let items: Vec<Item> = chunk
                .iter()
                .map(|(_, k, r)| Item {
                    op: "delete",
                    key: k,
                    cref: r,
                    post: Post::Delete,
                })
                .collect();
            let ids: Vec<&str> = chunk.iter().map(|(id, _, _)| id.as_str()).collect();
            out.add(
                items,
                r.map(|deleted| {
                    let deleted: HashSet<&str> = deleted.iter().map(String::as_str).collect();
                    Reply::Deleted(ids.iter().map(|id| deleted.contains(id)).collect())
                }),
            );
        }

        for (op, n) in std::mem::take(&mut out.written) {
            self.written(op, n);
        }
        self.reverify(&mut out).await;
        for (op, n) in std::mem::take(&mut out.written) {
            self.written(op, n);
        }
        self.dead_letter(out.letters, dead).await?;
        if let Some(e) = out.first_err {
            return Err(e);
        }
        if let (Some(h), Some(written)) = (held, out.held) {
            h.apply(written);
        }
        Ok(())
    }

    /// One request per chunk, at most `concurrency` at a time, each paced by the rate limiter and
    /// counted under `endpoint`; answers each chunk with its reply (in completion order).
    async fn requests<'p, T: 'p, R, Fut>(
        &self,
        chunks: impl IntoIterator<Item = &'p [T]>,
        endpoint: &'static str,
        call: impl Fn(&'p [T]) -> Fut,
    ) -> Vec<(&'p [T], Result<R, Error>)>
    where
        Fut: Future<Output = Result<R, Error>>,
    {
        futures::stream::iter(chunks)
            .map(|chunk| {
                let request = call(chunk);
                async move {
                    self.paced().await;
                    let r = request.await;
                    self.request_metric(endpoint, r.is_ok());
                    (chunk, r)
                }
            })
            .buffer_unordered(self.opts.concurrency.max(1))
            .collect()
            .await
    }

    /// Looks up the items Falcon reported neither written nor refused: a created IOC that exists, or
    /// a deleted IOC that is gone, was written; anything else is dead-lettered.
    async fn reverify(&self, out: &mut Outcomes<'_>) {
        let unverified = std::mem::take(&mut out.unverified);
        if unverified.is_empty() {
            return;
        }
        let note = if out.unattributed.is_empty() {
            String::new()
        } else {
            format!(
                " (Falcon also refused items it did not identify: {})",
                out.unattributed.join("; ")
            )
        };
        warn!(
            items = unverified.len(),
            "Falcon reported items neither written nor refused; re-checking them"
        );
        let (checkable, rest): (Vec<_>, Vec<_>) = unverified
            .into_iter()
            .partition(|i| i.op == "create" || i.op == "delete");
        for i in rest {
            out.letters.push(i.letter(&format!(
                "Falcon reported this item neither written nor refused{note}"
            )));
        }
        if checkable.is_empty() {
            return;
        }
        let keys: Vec<IocKey> = checkable.iter().map(|i| i.key.clone()).collect();
        match self.lookup_all(&keys).await {
            Ok((found, refused)) => {
                for i in checkable {
                    let present = found.contains_key(i.key);
                    match (i.op, present, refused.get(i.key)) {
                        (_, _, Some(reason)) => out.letters.push(i.letter(&format!(
                            "Falcon reported this item neither written nor refused, and refused the re-check: {reason}"
                        ))),
                        ("create", true, None) => out.resolved(&i, || {
                            found.get(i.key).cloned().map_or(Held::Unknown, Held::Present)
                        }),
                        ("delete", false, None) => out.resolved(&i, || Held::Absent),
                        _ => out.letters.push(i.letter(&format!(
                            "Falcon reported this item neither written nor refused, and a lookup shows it was not{note}"
                        ))),
                    }
                }
            }
            Err(e) => {
                let reason = chain(&e);
                for i in checkable {
                    out.letters.push(i.letter(&format!(
                        "Falcon reported this item neither written nor refused, and the re-check failed: {reason}"
                    )));
                }
            }
        }
    }
}

/// One planned write, for outcomes and dead letters.
struct Item<'a> {
    op: &'static str,
    key: &'a IocKey,
    cref: &'a ChangeRef,
    post: Post<'a>,
}

/// What a planned write asks of Falcon.
enum Post<'a> {
    Create(&'a DesiredIoc),
    Update(&'a IocUpdate),
    Delete,
}

impl Item<'_> {
    fn letter(&self, reason: &str) -> DeadLetter {
        let body = match self.post {
            Post::Create(d) => serde_json::to_value(d).ok(),
            Post::Update(_) | Post::Delete => None,
        };
        letter(self.op, self.key, self.cref, reason, body)
    }

    /// What this write, once done, left in Falcon (`id`: the id Falcon answered with).
    fn held(&self, id: Option<&String>) -> Held {
        match self.post {
            Post::Create(d) => id.map_or(Held::Unknown, |id| {
                Held::Present(ExistingIoc::from_desired(d, id.clone()))
            }),
            Post::Update(u) => Held::Updated(u.clone()),
            Post::Delete => Held::Absent,
        }
    }
}

/// What Falcon answered to one write request.
enum Reply {
    Write(WriteOutcome),
    /// For each requested id, whether Falcon reports it deleted.
    Deleted(Vec<bool>),
}

/// The outcomes of the write requests of one plan.
#[derive(Default)]
struct Outcomes<'a> {
    written: Vec<(&'static str, u64)>,
    letters: Vec<DeadLetter>,
    unverified: Vec<Item<'a>>,
    unattributed: Vec<String>,
    first_err: Option<Error>,
    /// What the written items left in Falcon (kept only for reports).
    held: Option<Vec<(IocKey, Held)>>,
}

impl<'a> Outcomes<'a> {
    /// `i` was written; `held` tells what it left (asked only when that is kept).
    fn resolved(&mut self, i: &Item<'a>, held: impl FnOnce() -> Held) {
        self.written.push((i.op, 1));
        if let Some(v) = &mut self.held {
            v.push((i.key.clone(), held()));
        }
    }

    fn add(&mut self, items: Vec<Item<'a>>, reply: Result<Reply, Error>) {
        match reply {
            Ok(Reply::Write(w)) => {
                let (failed, unattributed) = attribute(&w.failed, items.iter().map(|i| i.key));
                self.unattributed.extend(unattributed);
                let written: HashSet<usize> = w.written.into_iter().collect();
                for (n, i) in items.into_iter().enumerate() {
                    if let Some(msg) = failed.get(&n) {
                        self.letters.push(i.letter(msg));
                    } else if written.contains(&n) {
                        self.resolved(&i, || i.held(w.ids.get(&n)));
                    } else {
                        self.unverified.push(i);
                    }
                }
            }
            Ok(Reply::Deleted(confirmed)) => {
                for (i, ok) in items.into_iter().zip(confirmed) {
                    if ok {
                        self.resolved(&i, || i.held(None));
                    } else {
                        self.unverified.push(i);
                    }
                }
            }
            // Retried as a whole (the lookup makes the retry idempotent); auth failures stop the engine.
            Err(e) if e.is_retryable() || e.is_falcon_auth() => {
                self.first_err = Some(keep_worse(self.first_err.take(), e))
            }
            Err(e) => {
                let reason = chain(&e);
                for i in items {
                    self.letters.push(i.letter(&reason));
                }
            }
        }
    }
}

/// Of two failures, the one that must decide: an authentication failure wins over a transient one.
fn keep_worse(a: Option<Error>, b: Error) -> Error {
    match a {
        Some(a) if a.is_falcon_auth() || !b.is_falcon_auth() => a,
        _ => b,
    }
}

fn change_ref(c: &batch::Change) -> ChangeRef {
    ChangeRef {
        event_id: c.event_id.clone(),
        indicator_id: c.indicator_id.clone(),
    }
}

/// Maps per-item failures to positions in the request (by the index the store matched, else by type
/// and value, case-insensitively as Falcon compares them); the messages of failures that match no
/// item are returned apart.
fn attribute<'a>(
    failures: &[ItemFailure],
    keys: impl Iterator<Item = &'a IocKey>,
) -> (HashMap<usize, String>, Vec<String>) {
    let keys: Vec<&IocKey> = keys.collect();
    let mut out = HashMap::new();
    let mut lost = Vec::new();
    for f in failures {
        let pos = f.index.filter(|i| *i < keys.len()).or_else(|| {
            f.key.as_ref().and_then(|k| {
                keys.iter().position(|x| {
                    x.ioc_type == k.ioc_type && x.value.eq_ignore_ascii_case(&k.value)
                })
            })
        });
        match pos {
            Some(p) => {
                out.insert(p, f.message.clone());
            }
            None => {
                warn!(message = %f.message, "falcon refused an item it did not identify");
                lost.push(f.message.clone());
            }
        }
    }
    (out, lost)
}

fn letter(op: &str, key: &IocKey, r: &ChangeRef, reason: &str, body: Option<Value>) -> DeadLetter {
    DeadLetter {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        event_id: r.event_id.clone(),
        indicator_id: r.indicator_id.clone(),
        operation: op.to_string(),
        ioc_type: key.ioc_type.as_str().to_string(),
        value: key.value.clone(),
        reason: reason.to_string(),
        body,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn ping_state<P: StatePinger>(pinger: &P, state: &str) -> bool {
    match pinger.ping(state).await {
        Ok(reset) => {
            if reset {
                warn!(state = %state, "Connector state has been remotely reset");
            }
            reset
        }
        Err(e) => {
            warn!(reason = %chain(&e), "Error pinging the API");
            false
        }
    }
}

fn recover_ms(state: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(state).ok()?;
    let r = v.get("recover_until")?.as_str()?;
    if ["no", "none", "false", "null"].contains(&r.to_ascii_lowercase().as_str()) {
        return None;
    }
    crate::mapping::parse_time(r)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(r, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_hms_opt(0, 0, 0).expect("valid").and_utc())
        })
        .map(|t| t.timestamp_millis().max(0) as u64)
}

/// When `--until-caught-up` is done.
///
/// At connect the stream names its newest event `L`. With recovery (`R`, the recover date, after the
/// start), a snapshot of everything updated up to `R` comes first, in ascending `updated_at` order
/// with ids `<updated_at_ms>-0`, then live events from `R`. Every update writes a stream event, so
/// nothing the server had at connect time is newer than `L`.
///
/// The run is caught up once the cursor reaches `max(L, R)` (a heartbeat carries it past `R`), or
/// sooner, once an event at or past `L` (past `<L_ms>-0` in a snapshot) has been written and the
/// stream then stays quiet for a batch window (same-millisecond stragglers): waiting for the next
/// heartbeat (every 5 s on OpenCTI) is not needed. When `L` itself is not in the stream (filtered
/// out), the heartbeat rule applies.
#[derive(Debug, Clone, PartialEq)]
struct CatchUp {
    recover_ms: Option<u64>,
    /// `max(L, R)`, once connected (`Some(None)`: nothing to wait for).
    target: Option<Option<(u64, u64)>>,
    /// The event that shows everything up to `L` delivered (`<L_ms>-0` when a snapshot comes first).
    early: Option<(u64, u64)>,
    /// Newest event id delivered since connecting.
    newest: Option<(u64, u64)>,
}

impl CatchUp {
    fn new(recover_ms: Option<u64>) -> CatchUp {
        CatchUp {
            recover_ms,
            target: None,
            early: None,
            newest: None,
        }
    }

    fn connected(&mut self, last_event_id: Option<&str>) {
        let last = last_event_id.and_then(parse_event_id);
        let recover = self.recover_ms.map(|r| (r, 0));
        self.target = Some(last.max(recover));
        self.early = last.map(|(ms, seq)| match recover {
            Some(r) if r > (ms, seq) => (ms, 0),
            _ => (ms, seq),
        });
    }

    fn seen(&mut self, id: &str) {
        if self.target.is_some() {
            self.newest = self.newest.max(parse_event_id(id));
        }
    }

    /// Whether the run is caught up after a flush (`quiet`: the stream has been silent for a window).
    fn done<E: EventSource>(&self, source: &E, batch: &Batch, quiet: bool) -> bool {
        let Some(target) = self.target else {
            return false;
        };
        let Some((ms, seq)) = target else {
            return true;
        };
        let acked = batch.last_event_id.clone().or_else(|| {
            serde_json::from_str::<Value>(&source.state_json())
                .ok()
                .and_then(|v| v.get("start_from")?.as_str().map(str::to_string))
        });
        let reached = acked
            .and_then(|a| compare_event_ids(&a, &format!("{ms}-{seq}")))
            .is_some_and(|o| o != std::cmp::Ordering::Less);
        reached || (quiet && batch.is_empty() && self.early.is_some() && self.newest >= self.early)
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

static LAST_PROGRESS_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn mark_progress() {
    LAST_PROGRESS_MS.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
}

/// When an engine in this process last made progress (started, or wrote a batch or a heartbeat).
/// `/healthz` reports a stall from it.
pub fn last_progress() -> Option<chrono::DateTime<chrono::Utc>> {
    match LAST_PROGRESS_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => chrono::DateTime::from_timestamp_millis(ms),
    }
}
