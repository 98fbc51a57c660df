//! The IO around the assurance parts: the security platform, report delivery, the hit collection
//! and the reconciliation run. Every call to OpenCTI goes through one
//! [`DeploymentWriteBack`] handle, so a platform without the feature costs one probe, then nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use falcon_sdk::FalconClient;
use futures::StreamExt;
use opencti_client::{DeploymentReport, DeploymentWriteBack, Feature, OpenCtiClient, Sent};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::hits::{
    HitAggregator, HitCursor, HitStats, MAX_ALERTS_PER_WINDOW, SETTLE, ValueIndex, Window,
};
use super::queue::{DELIVERY_BOUND, Delivery, ReportQueue};
use super::reconcile::{Action, FalconIndex, ReconcileCounts, Reconciler};
use super::settings::AssuranceSettings;
use crate::batch::ExistingIoc;
use crate::mapping::IocKey;

/// Most owned IOCs read by one reconciliation; beyond, the read counts as truncated (no absence
/// is decided). Upstream: 1 000 000.
pub const READ_BACK_LIMIT: usize = 1_000_000;
/// Delay before a failed platform resolution is retried (upstream: 300 s).
pub const RESOLVE_RETRY: Duration = Duration::from_secs(300);

/// The dissemination-assurance state of one connector run.
#[derive(Debug)]
pub struct Assurance {
    settings: AssuranceSettings,
    wb: DeploymentWriteBack,
    platform: Option<String>,
    resolve_after: Option<Instant>,
    queue: ReportQueue,
    bound: Duration,
}

/// What a hit collection did.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct HitRun {
    /// The window read, if any.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Alert counters.
    pub stats: HitStats,
    /// Hit reports applied by the platform.
    pub reported: u64,
    /// Hit reports refused (final).
    pub rejected: u64,
    /// Whether every report was delivered (the window is closed); otherwise it is redone next run.
    pub complete: bool,
}

/// What a reconciliation run did.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ReconcileRun {
    /// Why the run was skipped, if it was.
    pub skipped: Option<String>,
    /// Owned IOCs read.
    pub falcon_iocs: usize,
    /// The Falcon read stopped at [`READ_BACK_LIMIT`].
    pub falcon_truncated: bool,
    /// Decision counters.
    pub counts: ReconcileCounts,
    /// Withdrawals that failed (nothing reported for them).
    pub withdrawal_failed: u64,
    /// Re-pushes that could not be done (nothing reported, or `failed`).
    pub repush_failed: u64,
    /// Reports queued.
    pub reports: u64,
    /// The hit collection that followed, when hits are on and it ran.
    pub hits: Option<HitRun>,
    /// Why the hit collection failed (it is redone from the same window next run).
    pub hits_failed: Option<String>,
}

/// The Falcon writes a reconciliation needs, supplied by the engine.
pub trait Writer {
    /// Withdraws (per `CROWDSTRIKE_PERMANENT_DELETE`) the IOCs `iocs` owned by `indicator` (an
    /// IOC another indicator still owns is kept for it); `Ok` once done.
    fn withdraw(
        &self,
        indicator: &str,
        iocs: &[IocKey],
    ) -> impl Future<Output = Result<(), String>>;
    /// Pushes an indicator again (read from OpenCTI by its internal id) and answers its report
    /// (`deployed` or `failed`), or `None` when it maps to no IOC.
    fn repush(
        &self,
        indicator: &str,
        standard_id: &str,
    ) -> impl Future<Output = Result<Option<DeploymentReport>, String>>;
}

impl Assurance {
    /// The assurance of a run, or `None` when `DEPLOYMENT_REPORTING_ENABLED` is false (then no
    /// write-back call is ever made).
    pub fn new(client: &OpenCtiClient, settings: AssuranceSettings) -> Option<Assurance> {
        settings.reporting_enabled.then(|| Assurance {
            settings,
            wb: client.deployment_write_back(),
            platform: None,
            resolve_after: None,
            queue: ReportQueue::default(),
            bound: DELIVERY_BOUND,
        })
    }

    /// Changes the delivery bound (default [`DELIVERY_BOUND`]).
    pub fn with_delivery_bound(mut self, bound: Duration) -> Self {
        self.bound = bound;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &AssuranceSettings {
        &self.settings
    }

    /// The report queue.
    pub fn queue(&self) -> &ReportQueue {
        &self.queue
    }

    /// Whether the platform is known to lack the feature.
    pub async fn unsupported(&self) -> bool {
        self.wb.feature().await == Feature::Unsupported
    }

    /// The security platform id: `SECURITY_PLATFORM_ID` once verified, else the entity upserted by
    /// name. `None` while unknown (retried after [`RESOLVE_RETRY`]) or on an older platform.
    pub async fn platform_id(&mut self) -> Option<String> {
        if self.platform.is_some() {
            return self.platform.clone();
        }
        if self.resolve_after.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let r = match &self.settings.platform_id {
            Some(id) => match self.wb.security_platform(id).await {
                Ok(Sent::Done(Some(p))) => Ok(Some(p.id)),
                Ok(Sent::Done(None)) => Err(format!(
                    "SECURITY_PLATFORM_ID `{id}` names no security platform readable by this account"
                )),
                Ok(_) => Ok(None),
                Err(e) => Err(format!("{e:#}")),
            },
            None => match self
                .wb
                .security_platform_add(
                    &self.settings.platform_name,
                    self.settings.platform_type.as_deref(),
                )
                .await
            {
                Ok(Sent::Done(p)) => Ok(Some(p.id)),
                Ok(_) => Ok(None),
                Err(e) => Err(format!("{e:#}")),
            },
        };
        match r {
            Ok(Some(id)) => {
                tracing::info!(platform_id = %id, "dissemination assurance: reporting to the security platform");
                self.platform = Some(id);
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(reason = %why, retry_s = RESOLVE_RETRY.as_secs(), "security platform not resolved; reports are kept");
                self.resolve_after = Some(Instant::now() + RESOLVE_RETRY);
            }
        }
        self.platform.clone()
    }

    /// Queues reports (dropped at once on a platform without the feature).
    pub fn push(&mut self, reports: Vec<DeploymentReport>) {
        metrics::counter!(super::metrics::REPORTS_QUEUED).increment(reports.len() as u64);
        self.queue.push(reports);
    }

    /// Delivers the queued reports within the delivery bound; never fails (see
    /// [`ReportQueue::deliver`]).
    pub async fn flush(&mut self) -> Delivery {
        if self.queue.is_empty() {
            return Delivery::Empty;
        }
        let before = self.queue.stats();
        let out = match self.platform_id().await {
            Some(p) => self.queue.deliver(&self.wb, &p, self.bound).await,
            None if self.unsupported().await => self.queue.deliver(&self.wb, "", self.bound).await,
            None => Delivery::NotDue,
        };
        let after = self.queue.stats();
        metrics::counter!(super::metrics::REPORTS_SENT).increment(after.sent - before.sent);
        metrics::counter!(super::metrics::REPORTS_REJECTED)
            .increment(after.rejected - before.rejected);
        metrics::counter!(super::metrics::REPORTS_DROPPED).increment(
            (after.dropped_full + after.dropped_expired + after.dropped_unsupported)
                - (before.dropped_full + before.dropped_expired + before.dropped_unsupported),
        );
        metrics::gauge!(super::metrics::REPORTS_PENDING).set(self.queue.len() as f64);
        out
    }

    /// Reads the Falcon alerts of the next closed window and reports the hits. `cursor` is the
    /// persisted hit cursor; `save` persists a new one (called with the window in progress before
    /// any report, and with the closed window at the end).
    pub async fn collect_hits(
        &mut self,
        falcon: &FalconClient,
        index: &ValueIndex,
        cursor: Option<&HitCursor>,
        now: DateTime<Utc>,
        mut save: impl FnMut(&HitCursor),
    ) -> Result<HitRun, String> {
        let mut run = HitRun::default();
        let Some(platform) = self.platform_id().await else {
            return Ok(run);
        };
        let Some(mut w) = Window::plan(cursor, now, SETTLE) else {
            run.complete = true;
            return Ok(run);
        };
        let agg = loop {
            match read_window(falcon, w, index).await? {
                Some(agg) => break agg,
                None => match w.halve() {
                    Some(half) => w = half,
                    None => return Err("more than 100 000 alerts in one second".into()),
                },
            }
        };
        save(&w.in_progress());
        run.window = Some((w.since, w.until));
        run.stats = agg.stats();
        let mut complete = true;
        for r in agg.reports() {
            match self.wb.report_hits(&platform, &r).await {
                Ok(Sent::Done(_)) => run.reported += 1,
                Ok(_) => complete = false,
                Err(e) if e.is_rejection() => {
                    run.rejected += 1;
                    tracing::info!(indicator = %r.indicator_id, error = %e, "hit report refused");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hit reports not delivered; the window is redone next run");
                    complete = false;
                    break;
                }
            }
        }
        metrics::counter!(super::metrics::HITS_REPORTED).increment(run.reported);
        if complete {
            save(&w.done());
        }
        run.complete = complete;
        Ok(run)
    }

    /// One reconciliation: the owned IOCs (`owned`, a stream from Falcon) against the platform's
    /// deployments; Falcon actions through `writer`; every report queued and flushed. Also
    /// answers the value index for the hit collection.
    pub async fn reconcile<W: Writer>(
        &mut self,
        owned: impl futures::Stream<Item = Result<ExistingIoc, crate::Error>>,
        writer: &W,
        run_start: DateTime<Utc>,
    ) -> (ReconcileRun, ValueIndex) {
        let mut run = ReconcileRun::default();
        let mut values = ValueIndex::default();
        let skip = |mut run: ReconcileRun, why: String, values| {
            tracing::warn!(reason = %why, "reconciliation skipped");
            metrics::counter!(super::metrics::RECONCILIATIONS, "outcome" => "skipped").increment(1);
            run.skipped = Some(why);
            (run, values)
        };
        if self.flush().await == Delivery::Partial || !self.queue.is_empty() {
            if self.unsupported().await {
                return skip(
                    run,
                    "Write-back not supported by the OpenCTI platform".into(),
                    values,
                );
            }
            return skip(
                run,
                "stream reports could not be delivered first".into(),
                values,
            );
        }
        let Some(platform) = self.platform_id().await else {
            let why = if self.unsupported().await {
                "Write-back not supported by the OpenCTI platform"
            } else {
                "security platform not resolved"
            };
            return skip(run, why.into(), values);
        };
        let mut index = FalconIndex::default();
        let mut owned = std::pin::pin!(owned);
        while let Some(ioc) = owned.next().await {
            match ioc {
                Ok(ioc) => {
                    if index.iocs() >= READ_BACK_LIMIT {
                        run.falcon_truncated = true;
                        break;
                    }
                    for o in index.insert(&ioc, run_start) {
                        values.insert_shared(&o, &ioc.key.value);
                    }
                }
                Err(e) => return skip(run, format!("Falcon read-back failed: {e:#}"), values),
            }
        }
        run.falcon_iocs = index.iocs();
        let mut rec = Reconciler::new(index, run_start, !run.falcon_truncated);
        let mut listing = self.wb.deployments(platform).stream();
        let mut reports = Vec::new();
        let mut listing_ok = true;
        while let Some(d) = listing.next().await {
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "deployment listing failed; no more decisions this run");
                    listing_ok = false;
                    break;
                }
            };
            let decision = rec.decide(&d);
            match decision.action {
                None => reports.extend(decision.report),
                Some(Action::Withdraw { indicator, iocs }) => {
                    match writer.withdraw(&indicator, &iocs).await {
                        Ok(()) => reports.extend(decision.report),
                        Err(why) => {
                            run.withdrawal_failed += 1;
                            tracing::warn!(indicator = %indicator, reason = %why, "withdrawal failed; retried next run");
                        }
                    }
                }
                Some(Action::Repush {
                    indicator,
                    standard_id,
                }) => match writer.repush(&indicator, &standard_id).await {
                    Ok(r) => reports.extend(r),
                    Err(why) => {
                        run.repush_failed += 1;
                        let mut r = DeploymentReport::new(
                            standard_id,
                            opencti_client::DeploymentStatus::Failed,
                        );
                        r.error_message = Some(why);
                        r.last_sync_at = Some(run_start);
                        reports.push(r);
                    }
                },
            }
            if reports.len() >= opencti_client::MAX_BATCH_REPORTS {
                run.reports += reports.len() as u64;
                self.push(std::mem::take(&mut reports));
                self.flush().await;
            }
        }
        if listing_ok {
            reports.extend(rec.discovered());
        }
        run.reports += reports.len() as u64;
        self.push(reports);
        self.flush().await;
        run.counts = rec.counts();
        metrics::counter!(super::metrics::RECONCILIATIONS, "outcome" => if listing_ok { "done" } else { "partial" }).increment(1);
        (run, values)
    }
}

/// Reads every alert of `w`; `None` when there are more than [`MAX_ALERTS_PER_WINDOW`].
async fn read_window<'a>(
    falcon: &FalconClient,
    w: Window,
    index: &'a ValueIndex,
) -> Result<Option<HitAggregator<'a>>, String> {
    let mut agg = HitAggregator::new(w, index);
    let mut after: Option<String> = None;
    let mut seen_after = BTreeSet::new();
    loop {
        let mut body =
            json!({"filter": w.filter(), "sort": "created_timestamp|asc", "limit": 1000});
        if let Some(a) = &after {
            body["after"] = a.clone().into();
        }
        let v: Value = falcon
            .raw(falcon_sdk::Method::POST, "/alerts/combined/alerts/v1")
            .json(&body)
            .idempotent(true)
            .send()
            .await
            .map_err(|e| format!("Falcon alerts read failed: {e}"))?;
        let Some(items) = v.get("resources").and_then(Value::as_array) else {
            return Err("Falcon alerts page without resources".into());
        };
        for a in items {
            agg.push(a);
        }
        if agg.alerts_held() > MAX_ALERTS_PER_WINDOW {
            return Ok(None);
        }
        let next = v
            .pointer("/meta/pagination/after")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        match next {
            Some(n) if !items.is_empty() => {
                if !seen_after.insert(n.clone()) {
                    return Err(format!("Falcon repeated the alerts cursor `{n}`"));
                }
                after = Some(n);
            }
            _ => return Ok(Some(agg)),
        }
    }
}

/// The assurance shared by the engine (stream path) and the reconciliation loop. The engine never
/// waits for a reconciliation: its reports go to an inbox, delivered by whichever side holds the
/// assurance next (the engine when it is free, else the reconciliation right after its own batch,
/// as upstream does).
#[derive(Debug)]
pub struct SharedAssurance {
    inner: tokio::sync::Mutex<Assurance>,
    inbox: std::sync::Mutex<Vec<DeploymentReport>>,
}

impl SharedAssurance {
    /// Shares an assurance.
    pub fn new(a: Assurance) -> std::sync::Arc<SharedAssurance> {
        std::sync::Arc::new(SharedAssurance {
            inner: tokio::sync::Mutex::new(a),
            inbox: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn drain(&self) -> Vec<DeploymentReport> {
        std::mem::take(&mut *self.inbox.lock().expect("inbox lock"))
    }

    /// Queues reports and, unless a reconciliation holds the assurance, delivers the queue
    /// within the delivery bound.
    pub async fn submit(&self, reports: Vec<DeploymentReport>) {
        self.inbox.lock().expect("inbox lock").extend(reports);
        if let Ok(mut a) = self.inner.try_lock() {
            let r = self.drain();
            a.push(r);
            a.flush().await;
        }
    }

    /// The assurance, with the inbox moved into its queue.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, Assurance> {
        let mut a = self.inner.lock().await;
        let r = self.drain();
        a.push(r);
        a
    }
}
