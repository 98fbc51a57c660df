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
pub mod settings;
