//! The sync loop: stream events -> bounded batches -> coalesced changes -> bulk lookup -> paced,
//! batched writes -> cursor acknowledgement -> state saved (and pinged).
//!
//! The engine is generic over where events come from ([`EventSource`]), where IOCs live ([`IocStore`])
//! and where the state is pinged ([`StatePinger`]); [`crate::falcon::FalconStore`] and
//! [`crate::opencti::OpenCtiSource`] are the real ones.
//!
//! **Invariant:** the cursor is acknowledged (and the state saved) only after every write of the batch
//! it covers succeeded or was dead-lettered. A transient failure retries the whole batch with backoff
//! (the lookup makes the retry idempotent), so nothing is lost and nothing is duplicated.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, error, info, warn};

use crate::batch::{self, Batch, EventAction, ExistingIoc, IocUpdate, Plan};
use crate::deadletter::{DeadLetter, DeadLetterFile};
use crate::error::{BoxError, Error};
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
    /// Index in the request, when Falcon says.
    pub index: Option<usize>,
    /// Type and value, when Falcon says.
    pub key: Option<IocKey>,
    /// Falcon's message.
    pub message: String,
}

/// The IOC side: lookups and writes of owned IOCs. One call = one Falcon request.
pub trait IocStore: Send + Sync {
    /// The owned IOCs (created by this client, with the connector's source) among `keys`.
    fn lookup(
        &self,
        keys: &[IocKey],
    ) -> impl Future<Output = Result<Vec<ExistingIoc>, Error>> + Send;
    /// Creates IOCs; returns the items Falcon refused.
    fn create(
        &self,
        items: &[DesiredIoc],
    ) -> impl Future<Output = Result<Vec<ItemFailure>, Error>> + Send;
    /// Updates IOCs; returns the items Falcon refused.
    fn update(
        &self,
        items: &[IocUpdate],
    ) -> impl Future<Output = Result<Vec<ItemFailure>, Error>> + Send;
    /// Deletes IOCs by id.
    fn delete(&self, ids: &[String]) -> impl Future<Output = Result<(), Error>> + Send;
    /// `X-RateLimit-Remaining` last seen, if known.
    fn rate_limit_remaining(&self) -> Option<u64> {
        None
    }
}

/// Engine settings (from [`crate::config::Config`] plus command-line flags).
#[derive(Debug, Clone)]
pub struct EngineOptions {
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
    pub fn from_config(c: &crate::config::Config) -> EngineOptions {
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
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Counters of one run (also exported as metrics).
#[derive(Debug, Default)]
pub struct Stats {
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
    pub fn summary(&self, ended: &str) -> Summary {
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
pub enum RunEnd {
    /// Shutdown was requested (SIGTERM/SIGINT): the batch in flight was written, state saved and pinged.
    Shutdown,
    /// `--until-caught-up` and everything up to the stream's end at connect time is written.
    CaughtUp,
    /// The event source ended.
    SourceEnded,
    /// The platform reset the connector state: start over with a fresh state.
    StateReset,
}

/// The sync engine.
pub struct Engine<S> {
    store: S,
    opts: EngineOptions,
    limiter: DefaultDirectRateLimiter,
    dead_letters: DeadLetterFile,
    state_file: StateFile,
    stats: Arc<Stats>,
}

impl<S: IocStore> Engine<S> {
    /// An engine writing to `store`.
    pub fn new(
        store: S,
        opts: EngineOptions,
        state_file: StateFile,
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
        }
    }

    /// The run's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
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

    /// Consumes `source` until shutdown, catch-up or the end of the source.
    pub async fn run<E: EventSource, P: StatePinger>(
        &self,
        source: &mut E,
        pinger: &P,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunEnd, Error> {
        let name = self.opts.name.clone();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut batch = Batch::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut last_ping = Instant::now();
        let mut target: Option<Option<(u64, u64)>> = None;
        let recover_ms = recover_ms(&source.state_json());
        let end;
        let mut ping_tick = tokio::time::interval(self.opts.ping_interval);
        ping_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping_tick.tick().await;

        mark_progress();
        if !self.opts.dry_run && ping_state(pinger, &source.state_json()).await {
            return Ok(RunEnd::StateReset);
        }
        loop {
            let flush_now;
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    info!("shutdown requested: finishing the batch in flight");
                    end = RunEnd::Shutdown;
                    break;
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    flush_now = true;
                }
                _ = ping_tick.tick() => {
                    if !self.opts.dry_run && last_ping.elapsed() >= self.opts.ping_interval {
                        last_ping = Instant::now();
                        if ping_state(pinger, &source.state_json()).await {
                            end = RunEnd::StateReset;
                            break;
                        }
                    }
                    continue;
                }
                ev = source.next_event() => {
                    match ev {
                        None => { end = RunEnd::SourceEnded; break; }
                        Some(Err(e)) if !e.is_retryable() => {
                            self.flush(&mut batch, source, &mut shutdown, false).await?;
                            return Err(e);
                        }
                        Some(Err(e)) => {
                            warn!(reason = %format!("{e:#}"), "live stream error; the stream reconnects");
                            continue;
                        }
                        Some(Ok(ev)) => {
                            Stats::add(&self.stats.events, 1);
                            match ev {
                                SourceEvent::Connected { last_event_id } => {
                                    if target.is_none() {
                                        let last = last_event_id.as_deref().and_then(parse_event_id);
                                        let t = match (last, recover_ms) {
                                            (Some(a), Some(r)) => Some(a.max((r, 0))),
                                            (a, r) => a.or(r.map(|r| (r, 0))),
                                        };
                                        info!(last_event_id = ?last_event_id, "connected to the live stream");
                                        target = Some(t);
                                    }
                                }
                                SourceEvent::Heartbeat { id } | SourceEvent::Other { id, .. } => batch.cover(&id),
                                SourceEvent::Malformed { id, detail } => {
                                    Stats::add(&self.stats.malformed, 1);
                                    metrics::counter!(m::MALFORMED_EVENTS, "name" => name.clone()).increment(1);
                                    self.stats.skip(&name, SkipReason::MalformedEvent, 1);
                                    warn!(event_id = ?id, reason = %detail, "malformed stream event skipped");
                                    if let Some(id) = id { batch.cover(&id); }
                                }
                                SourceEvent::Data { id, action, stix, context } => {
                                    Stats::add(&self.stats.data_events, 1);
                                    metrics::counter!(m::PROCESSED_MESSAGES, "name" => name.clone(), "action" => action.as_str()).increment(1);
                                    if let Some((ms, _)) = parse_event_id(&id) {
                                        metrics::gauge!(m::CURRENT_STATE, "name" => name.clone()).set(ms as f64);
                                    }
                                    let out = batch::changes_for_event(action, &id, &stix, context.as_ref(), &self.opts.mapping, chrono::Utc::now());
                                    for s in &out.skipped {
                                        if s.reason != SkipReason::NotIndicator {
                                            debug!(event_id = %id, reason = %s.reason, detail = %s.detail, "comparison skipped");
                                        }
                                        self.stats.skip(&name, s.reason, 1);
                                    }
                                    for c in out.changes { batch.push(c); }
                                    batch.cover(&id);
                                }
                            }
                            if deadline.is_none() && !batch.is_empty() {
                                deadline = Some(tokio::time::Instant::now() + self.opts.batch_window);
                            }
                            flush_now = batch.events >= self.opts.batch_size;
                        }
                    }
                }
            }
            if flush_now {
                deadline = None;
                self.flush(&mut batch, source, &mut shutdown, false).await?;
                if self.opts.until_caught_up
                    && let Some(t) = target
                    && caught_up(t, source, &batch)
                {
                    end = RunEnd::CaughtUp;
                    break;
                }
            }
        }
        if end != RunEnd::StateReset {
            self.flush(
                &mut batch,
                source,
                &mut std::pin::pin!(std::future::pending::<()>()),
                end == RunEnd::Shutdown,
            )
            .await?;
            if !self.opts.dry_run {
                ping_state(pinger, &source.state_json()).await;
            }
        }
        info!(summary = ?self.stats.summary(""), "sync stopped");
        Ok(end)
    }

    /// Writes the batch (retrying transient failures with backoff), then acknowledges and saves state.
    async fn flush<E: EventSource>(
        &self,
        batch: &mut Batch,
        source: &mut E,
        shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
        shutting_down: bool,
    ) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut dead: HashSet<IocKey> = HashSet::new();
        let mut backoff = Duration::from_millis(500);
        let mut shutdown_at: Option<Instant> = if shutting_down {
            Some(Instant::now())
        } else {
            None
        };
        loop {
            match self.write_batch(batch, &mut dead).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    Stats::add(&self.stats.retries, 1);
                    metrics::counter!(m::RETRIES, "name" => self.opts.name.clone()).increment(1);
                    if let Some(t) = shutdown_at
                        && t.elapsed() > self.opts.shutdown_grace
                    {
                        error!(reason = %format!("{e:#}"), "giving up on the batch at shutdown; it will be replayed on restart");
                        return Ok(());
                    }
                    warn!(reason = %format!("{e:#}"), wait_ms = backoff.as_millis() as u64, "transient failure; retrying the batch");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.as_mut(), if shutdown_at.is_none() => { shutdown_at = Some(Instant::now()); }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        }
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
            self.state_file
                .save(&source.state_json())
                .map_err(Error::StateFile)?;
            if let Some((ms, _)) = parse_event_id(&id) {
                let lag = (chrono::Utc::now().timestamp_millis() as f64 - ms as f64) / 1000.0;
                metrics::gauge!(m::STREAM_LAG, "name" => self.opts.name.clone()).set(lag.max(0.0));
            }
        }
        let last = batch.last_event_id.take();
        *batch = Batch::new();
        batch.last_event_id = last;
        batch.events = 0;
        Ok(())
    }

    /// One attempt at writing a batch.
    async fn write_batch(&self, batch: &Batch, dead: &mut HashSet<IocKey>) -> Result<(), Error> {
        let pending: Vec<_> = batch
            .pending()
            .into_iter()
            .filter(|p| !dead.contains(&p.key))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let keys: Vec<IocKey> = pending.iter().map(|p| p.key.clone()).collect();
        let existing = self.lookup_all(&keys).await?;
        let plan = batch::plan(&pending, &existing, self.opts.permanent_delete);
        self.execute(plan, dead).await
    }

    /// Looks up owned IOCs for `keys` in chunks (concurrently, paced).
    pub async fn lookup_all(&self, keys: &[IocKey]) -> Result<HashMap<IocKey, ExistingIoc>, Error> {
        let results: Vec<Result<Vec<ExistingIoc>, Error>> =
            futures::stream::iter(keys.chunks(self.opts.lookup_chunk))
                .map(|chunk| async move {
                    self.paced().await;
                    let r = self.store.lookup(chunk).await;
                    self.request_metric("lookup", r.is_ok());
                    r
                })
                .buffer_unordered(self.opts.concurrency)
                .collect()
                .await;
        let mut out = HashMap::new();
        for r in results {
            for e in r? {
                out.insert(e.key.clone(), e);
            }
        }
        Ok(out)
    }

    /// Executes a plan: creates, updates and deletes in chunks; refused items become dead letters.
    pub async fn execute(&self, plan: Plan, dead: &mut HashSet<IocKey>) -> Result<(), Error> {
        let name = self.opts.name.clone();
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
            Stats::add(
                &self.stats.updated,
                plan.updates.iter().filter(|u| !u.0.soft_delete).count() as u64,
            );
            Stats::add(
                &self.stats.soft_deleted,
                plan.updates.iter().filter(|u| u.0.soft_delete).count() as u64,
            );
            Stats::add(&self.stats.deleted, plan.deletes.len() as u64);
            return Ok(());
        }
        let mut letters = Vec::new();
        let mut first_err: Option<Error> = None;

        // creates
        let chunks: Vec<_> = plan.creates.chunks(self.opts.write_chunk).collect();
        let results: Vec<_> = futures::stream::iter(chunks)
            .map(|chunk| async move {
                let items: Vec<DesiredIoc> = chunk.iter().map(|(d, _)| d.clone()).collect();
                self.paced().await;
                let r = self.store.create(&items).await;
                self.request_metric("create", r.is_ok());
                (chunk, r)
            })
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;
        for (chunk, r) in results {
            match r {
                Ok(failures) => {
                    let failed = attribute(&failures, chunk.iter().map(|(d, _)| &d.key));
                    for (i, (d, cref)) in chunk.iter().enumerate() {
                        if let Some(msg) = failed.get(&i) {
                            letters.push(letter(
                                "create",
                                &d.key,
                                cref,
                                msg,
                                serde_json::to_value(d).ok(),
                            ));
                        } else {
                            Stats::add(&self.stats.created, 1);
                            metrics::counter!(m::IOC_WRITES, "name" => name.clone(), "operation" => "create").increment(1);
                        }
                    }
                }
                Err(e) if e.is_retryable() => first_err = first_err.or(Some(e)),
                Err(e) => {
                    for (d, cref) in chunk {
                        letters.push(letter(
                            "create",
                            &d.key,
                            cref,
                            &format!("{e:#}"),
                            serde_json::to_value(d).ok(),
                        ));
                    }
                }
            }
        }

        // updates
        let chunks: Vec<_> = plan.updates.chunks(self.opts.write_chunk).collect();
        let results: Vec<_> = futures::stream::iter(chunks)
            .map(|chunk| async move {
                let items: Vec<IocUpdate> = chunk.iter().map(|(u, _)| u.clone()).collect();
                self.paced().await;
                let r = self.store.update(&items).await;
                self.request_metric("update", r.is_ok());
                (chunk, r)
            })
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;
        for (chunk, r) in results {
            match r {
                Ok(failures) => {
                    let failed = attribute(&failures, chunk.iter().map(|(u, _)| &u.key));
                    for (i, (u, cref)) in chunk.iter().enumerate() {
                        let op = if u.soft_delete {
                            "soft_delete"
                        } else {
                            "update"
                        };
                        if let Some(msg) = failed.get(&i) {
                            letters.push(letter(op, &u.key, cref, msg, None));
                        } else {
                            Stats::add(
                                if u.soft_delete {
                                    &self.stats.soft_deleted
                                } else {
                                    &self.stats.updated
                                },
                                1,
                            );
                            metrics::counter!(m::IOC_WRITES, "name" => name.clone(), "operation" => op).increment(1);
                        }
                    }
                }
                Err(e) if e.is_retryable() => first_err = first_err.or(Some(e)),
                Err(e) => {
                    for (u, cref) in chunk {
                        letters.push(letter("update", &u.key, cref, &format!("{e:#}"), None));
                    }
                }
            }
        }

        // deletes
        let chunks: Vec<_> = plan
            .deletes
            .chunks(self.opts.write_chunk.max(100))
            .collect();
        let results: Vec<_> = futures::stream::iter(chunks)
            .map(|chunk| async move {
                let ids: Vec<String> = chunk.iter().map(|(id, _, _)| id.clone()).collect();
                self.paced().await;
                let r = self.store.delete(&ids).await;
                self.request_metric("delete", r.is_ok());
                (chunk, r)
            })
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;
        for (chunk, r) in results {
            match r {
                Ok(()) => {
                    Stats::add(&self.stats.deleted, chunk.len() as u64);
                    metrics::counter!(m::IOC_WRITES, "name" => name.clone(), "operation" => "delete")
                        .increment(chunk.len() as u64);
                }
                Err(e) if e.is_retryable() => first_err = first_err.or(Some(e)),
                Err(e) => {
                    for (_, k, cref) in chunk {
                        letters.push(letter("delete", k, cref, &format!("{e:#}"), None));
                    }
                }
            }
        }

        if !letters.is_empty() {
            for l in &letters {
                error!(event_id = %l.event_id, operation = %l.operation, ioc_type = %l.ioc_type, value = %l.value,
                       reason = %l.reason, "[API] Error while processing indicator");
                metrics::counter!(m::DEAD_LETTERS, "name" => name.clone(), "operation" => l.operation.clone()).increment(1);
                if let Some(t) = crate::mapping::IocType::from_wire(&l.ioc_type) {
                    dead.insert(IocKey {
                        ioc_type: t,
                        value: l.value.clone(),
                    });
                }
            }
            Stats::add(&self.stats.dead_letters, letters.len() as u64);
            self.dead_letters
                .append(&letters)
                .map_err(Error::DeadLetterFile)?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Maps per-item failures to positions in the request.
fn attribute<'a>(
    failures: &[ItemFailure],
    keys: impl Iterator<Item = &'a IocKey>,
) -> HashMap<usize, String> {
    let keys: Vec<&IocKey> = keys.collect();
    let mut out = HashMap::new();
    for f in failures {
        let pos = f
            .key
            .as_ref()
            .and_then(|k| keys.iter().position(|x| *x == k))
            .or(f.index.filter(|i| *i < keys.len()));
        match pos {
            Some(p) => {
                out.insert(p, f.message.clone());
            }
            None => warn!(message = %f.message, "falcon refused an item it did not identify"),
        }
    }
    out
}

fn letter(
    op: &str,
    key: &IocKey,
    r: &batch::ChangeRef,
    reason: &str,
    body: Option<Value>,
) -> DeadLetter {
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

async fn ping_state<P: StatePinger>(pinger: &P, state: &str) -> bool {
    match pinger.ping(state).await {
        Ok(reset) => {
            if reset {
                warn!(state = %state, "Connector state has been remotely reset");
            }
            reset
        }
        Err(e) => {
            warn!(reason = %format!("{e:#}"), "Error pinging the API");
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

fn caught_up<E: EventSource>(target: Option<(u64, u64)>, source: &E, batch: &Batch) -> bool {
    let Some((ms, seq)) = target else { return true };
    let t = format!("{ms}-{seq}");
    let acked = batch.last_event_id.clone().or_else(|| {
        serde_json::from_str::<Value>(&source.state_json())
            .ok()
            .and_then(|v| {
                v.get("start_from")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
    });
    acked
        .and_then(|a| compare_event_ids(&a, &t))
        .is_some_and(|o| o != std::cmp::Ordering::Less)
}

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

/// Wraps a client error for [`Error::Falcon`].
pub fn falcon_error(phase: &'static str, retryable: bool, source: impl Into<BoxError>) -> Error {
    Error::Falcon {
        phase,
        retryable,
        source: source.into(),
    }
}
