//! The queue of status reports waiting for OpenCTI: coalesced per indicator (the latest report
//! wins), bounded, retried with backoff, and delivered within a time bound so it never holds up
//! the IOC writes (reference §2 constants: 10 000 reports, 5 s → 300 s backoff, 24 h).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use opencti_client::{DeploymentReport, DeploymentWriteBack, MAX_BATCH_REPORTS, Sent};
use tokio::time::Instant;

/// Most reports kept; beyond, the oldest are dropped (counted).
pub const QUEUE_CAP: usize = 10_000;
/// First retry delay after a failed delivery; it doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// A report still undelivered after this long is dropped (counted).
pub const GIVE_UP: Duration = Duration::from_secs(24 * 3600);
/// Default bound of one delivery: the most a batch waits for its reports before its cursor is
/// acknowledged; what is left stays queued for the next batch.
pub const DELIVERY_BOUND: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Queued {
    report: DeploymentReport,
    queued_at: Instant,
}

/// Counters of the queue (exported as metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Reports applied by the platform.
    pub sent: u64,
    /// Reports refused by the platform, one by one or as a whole call (final).
    pub rejected: u64,
    /// Reports dropped because the queue was full.
    pub dropped_full: u64,
    /// Reports dropped after [`GIVE_UP`].
    pub dropped_expired: u64,
    /// Reports dropped because the platform has no dissemination assurance.
    pub dropped_unsupported: u64,
    /// Deliveries that failed (transport, rate limit beyond retries, timeout): re-queued.
    pub failed_deliveries: u64,
    /// `indicatorReportDeployments` calls made.
    pub calls: u64,
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing queued.
    Empty,
    /// Every queued report was delivered (or refused, final).
    Done,
    /// Waiting for the retry delay; nothing sent.
    NotDue,
    /// A call failed or the bound was reached: the rest stays queued.
    Partial,
    /// The platform has no dissemination assurance: the queue was emptied, and stays so.
    Unsupported,
}

/// The report queue. Time is `tokio::time::Instant` (tests drive it with a paused clock).
#[derive(Debug)]
pub struct ReportQueue {
    order: VecDeque<String>,
    items: HashMap<String, Queued>,
    cap: usize,
    delay: Duration,
    next_attempt: Option<Instant>,
    unsupported: bool,
    stats: QueueStats,
}

impl Default for ReportQueue {
    fn default() -> Self {
        Self::with_capacity(QUEUE_CAP)
    }
}

impl ReportQueue {
    /// A queue keeping at most `cap` reports.
    pub fn with_capacity(cap: usize) -> Self {
        ReportQueue {
            order: VecDeque::new(),
            items: HashMap::new(),
            cap: cap.max(1),
            delay: RETRY_MIN,
            next_attempt: None,
            unsupported: false,
            stats: QueueStats::default(),
        }
    }

    /// Queued reports.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Queues reports; a newer report of an indicator replaces the queued one.
    pub fn push(&mut self, reports: impl IntoIterator<Item = DeploymentReport>) {
        if self.unsupported {
            return;
        }
        let now = Instant::now();
        for r in reports {
            let id = r.indicator_id.clone();
            match self.items.get_mut(&id) {
                Some(q) => {
                    q.report = r;
                    q.queued_at = now;
                }
                None => {
                    self.order.push_back(id.clone());
                    self.items.insert(
                        id,
                        Queued {
                            report: r,
                            queued_at: now,
                        },
                    );
                }
            }
        }
        while self.items.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.items.remove(&old);
                self.stats.dropped_full += 1;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let before = self.items.len();
        self.items
            .retain(|_, q| now.duration_since(q.queued_at) < GIVE_UP);
        let gone = before - self.items.len();
        if gone > 0 {
            self.stats.dropped_expired += gone as u64;
            tracing::warn!(
                reports = gone,
                "deployment reports undelivered for 24 h dropped"
            );
            let items = &self.items;
            self.order.retain(|id| items.contains_key(id));
        }
    }

    fn backoff(&mut self, now: Instant) {
        self.stats.failed_deliveries += 1;
        self.next_attempt = Some(now + self.delay);
        self.delay = (self.delay * 2).min(RETRY_MAX);
    }

    /// Sends the queued reports, oldest first, in calls of at most 500, for at most `bound`.
    /// Never fails: an undelivered report stays queued and is retried after a backoff; a refused
    /// one is dropped and logged; on a platform without the feature the queue is emptied.
    pub async fn deliver(
        &mut self,
        wb: &DeploymentWriteBack,
        platform_id: &str,
        bound: Duration,
    ) -> Delivery {
        let start = Instant::now();
        self.expire(start);
        if self.unsupported {
            return Delivery::Unsupported;
        }
        if self.items.is_empty() {
            return Delivery::Empty;
        }
        if self.next_attempt.is_some_and(|t| start < t) {
            return Delivery::NotDue;
        }
        while !self.order.is_empty() {
            let ids: Vec<String> = self.order.iter().take(MAX_BATCH_REPORTS).cloned().collect();
            let chunk: Vec<DeploymentReport> = ids
                .iter()
                .filter_map(|id| self.items.get(id).map(|q| q.report.clone()))
                .collect();
            let left = bound.saturating_sub(start.elapsed());
            let res = tokio::time::timeout(left, wb.report_deployments(platform_id, &chunk)).await;
            let now = Instant::now();
            match res {
                Ok(Ok(Sent::Done(out))) => {
                    self.stats.calls += out.calls;
                    self.stats.sent += out.processed;
                    self.stats.rejected += out.errors.len() as u64;
                    for e in &out.errors {
                        tracing::info!(indicator = %e.indicator_id, kind = ?e.kind, message = %e.message, "deployment report refused");
                    }
                    self.remove_front(ids.len());
                    self.delay = RETRY_MIN;
                    self.next_attempt = None;
                }
                Ok(Ok(Sent::Unsupported)) => {
                    self.stats.dropped_unsupported += self.items.len() as u64;
                    self.items.clear();
                    self.order.clear();
                    self.unsupported = true;
                    return Delivery::Unsupported;
                }
                Ok(Ok(Sent::Deferred)) => {
                    self.backoff(now);
                    return Delivery::Partial;
                }
                Ok(Err(e)) if e.is_rejection() => {
                    self.stats.rejected += chunk.len() as u64;
                    tracing::warn!(reports = chunk.len(), error = %e, "deployment reports refused as a whole");
                    self.remove_front(ids.len());
                }
                Ok(Err(e)) => {
                    tracing::warn!(reports = self.items.len(), error = %e, retry_in_s = self.delay.as_secs(), "deployment reports not delivered; kept for a retry");
                    self.backoff(now);
                    return Delivery::Partial;
                }
                Err(_) => {
                    tracing::warn!(
                        reports = self.items.len(),
                        bound_ms = bound.as_millis() as u64,
                        "deployment report delivery took longer than its bound; kept for a retry"
                    );
                    self.backoff(now);
                    return Delivery::Partial;
                }
            }
        }
        Delivery::Done
    }

    fn remove_front(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(id) = self.order.pop_front() {
                self.items.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencti_client::DeploymentStatus;

    fn r(id: &str, s: DeploymentStatus) -> DeploymentReport {
        DeploymentReport::new(id, s)
    }

    #[test]
    fn latest_report_of_an_indicator_wins_and_the_cap_drops_the_oldest() {
        let mut q = ReportQueue::with_capacity(2);
        q.push([
            r("a", DeploymentStatus::Deployed),
            r("b", DeploymentStatus::Deployed),
        ]);
        q.push([r("a", DeploymentStatus::Removed)]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.items["a"].report.status, DeploymentStatus::Removed);
        q.push([r("c", DeploymentStatus::Deployed)]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.stats().dropped_full, 1);
        assert!(
            !q.items.contains_key("a"),
            "the oldest indicator is dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn undelivered_reports_are_dropped_after_a_day() {
        let mut q = ReportQueue::default();
        q.push([r("a", DeploymentStatus::Deployed)]);
        tokio::time::advance(GIVE_UP).await;
        q.expire(Instant::now());
        assert!(q.is_empty());
        assert_eq!(q.stats().dropped_expired, 1);
    }
}
