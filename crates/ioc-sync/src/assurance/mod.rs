//! Dissemination assurance: report to OpenCTI where each indicator is deployed in Falcon and
//! whether it fired (`shared/reference/dissemination-assurance.md`).
//!
//! Self-contained parts, each pure or driven by an injected clock, designed to plug into the
//! engine's batch outcome and run loop:
//!
//! - [`settings`]: the upstream variables and `config.yml` keys with their defaults, as data;
//! - [`report`]: one status report per indicator from the IOC write outcomes of a batch;
//! - [`queue`]: the bounded retry queue of reports that never blocks IOC writes for long;
//! - [`hits`]: Falcon alerts → hit reports per indicator, every value of every pattern, late
//!   alerts included, idempotent on replay;
//! - [`reconcile`]: the reconciliation diff of the platform's deployments against what Falcon holds.

pub mod hits;
pub mod queue;
pub mod reconcile;
pub mod report;
pub(crate) mod run;
pub mod runtime;
pub mod settings;

/// Metric names of dissemination assurance (Prometheus; `docs/metrics.md`).
pub mod metrics {
    /// Deployment reports queued (stream path and reconciliation).
    pub const REPORTS_QUEUED: &str = "ioc_sync_deployment_reports_queued_total";
    /// Deployment reports applied by OpenCTI.
    pub const REPORTS_SENT: &str = "ioc_sync_deployment_reports_sent_total";
    /// Deployment reports refused by OpenCTI (final).
    pub const REPORTS_REJECTED: &str = "ioc_sync_deployment_reports_rejected_total";
    /// Deployment reports dropped (queue full, undelivered for 24 h, platform without the feature).
    pub const REPORTS_DROPPED: &str = "ioc_sync_deployment_reports_dropped_total";
    /// Deployment reports waiting in the queue.
    pub const REPORTS_PENDING: &str = "ioc_sync_deployment_reports_pending";
    /// Hit reports applied by OpenCTI.
    pub const HITS_REPORTED: &str = "ioc_sync_hit_reports_sent_total";
    /// Reconciliation runs, label `outcome` = `done`, `partial` (listing failed), `skipped`.
    pub const RECONCILIATIONS: &str = "ioc_sync_deployment_reconciliations_total";
}
