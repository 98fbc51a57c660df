//! `ioc-sync`: the OpenCTI -> CrowdStrike Falcon IOC sync engine, a drop-in replacement for OpenCTI's
//! Python "CrowdStrike Endpoint Security" stream connector.
//!
//! It reads the connector's configuration (the Python connector's variables and `config.yml` keys),
//! consumes the OpenCTI live stream in bounded batches, maps every STIX indicator to Falcon IOCs
//! ([`mapping`]), coalesces the changes per IOC ([`batch`]), looks the owned IOCs up in bulk and writes
//! creates, updates and deletes in batches within a share of the Falcon rate limit ([`engine`]). The
//! stream cursor moves only after the batch it covers is written or dead-lettered; the state is
//! saved locally (with the OpenCTI URL, stream and connector it belongs to) and pinged to OpenCTI.
//!
//! The public surface is [`run`], [`reconcile`], [`check`], [`config::Config`], [`mapping`] and the
//! engine's traits ([`engine::EventSource`], [`engine::IocStore`], [`engine::StatePinger`]) with the
//! types they carry; the Falcon and OpenCTI adapters, the state and dead-letter files are internal.
//!
//! Map one indicator (pure, no IO):
//!
//! ```no_run
//! use ioc_sync::mapping::{map_indicator, MappingOptions};
//! let stix = serde_json::json!({"type": "indicator", "pattern_type": "stix",
//!     "pattern": "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"});
//! let m = map_indicator(&stix, &MappingOptions::default(), chrono::Utc::now());
//! assert_eq!(m.iocs[0].key.value, "d41d8cd98f00b204e9800998ecf8427e");
//! ```
//!
//! Load the configuration the binary hands over (environment map + `config.yml` text):
//!
//! ```no_run
//! # fn f(env: std::collections::BTreeMap<String, String>) -> Result<(), ioc_sync::config::ConfigError> {
//! let (config, warnings) = ioc_sync::config::Config::load(&env, None)?;
//! # Ok(()) }
//! ```
//!
//! Run the connector until it has caught up with the stream:
//!
//! ```no_run
//! # async fn f(config: ioc_sync::config::Config) -> Result<(), ioc_sync::Error> {
//! let options = ioc_sync::RunOptions { until_caught_up: true, ..Default::default() };
//! let summary = ioc_sync::run(&config, &options, std::future::pending()).await?;
//! println!("{} IOCs created", summary.created);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod assurance;
pub mod batch;
pub mod config;
mod deadletter;
pub mod engine;
mod error;
mod falcon;
pub mod mapping;
pub mod metrics;
mod opencti;
mod pattern;
mod service;
mod state;

pub use engine::Summary;
pub use error::{BoxError, Error};
pub use service::{
    CheckResult, DEFAULT_MAX_REMOVALS, ReconcileOptions, ReconcilePlan, ReconcileSummary,
    RunOptions, check, reconcile, reconcile_deployments, run,
};
