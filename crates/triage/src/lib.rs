//! Triage orchestration over CrowdStrike Falcon Real Time Response: run Cado Host (or any templated
//! collector: UAC, KAPE, a Velociraptor offline collector) on thousands of hosts and follow every host to a
//! verified end.
//!
//! The pieces, in the order a run uses them:
//!
//! - [`Selection`] resolves hostnames, device ids, an FQL filter, a host group, the hosts of alerts, or all
//!   hosts, then filters by [`Platform`].
//! - [`CollectorSet`] holds one collector command per platform: from the Cado platform API
//!   ([`CadoClient::collector_set`]), from pre-signed data and a Cado Host version
//!   ([`CollectorSet::cado_presigned`]) or from user templates ([`CollectorSet::from_templates`]). Commands are
//!   secrets; every printed form goes through a [`Redactor`].
//! - [`script`] builds the launch and status-probe scripts of `docs/collector-protocol.md`; [`probe`] parses
//!   the answers.
//! - [`Run`] opens batch RTR sessions, launches detached collectors, polls them with batched probes,
//!   verifies success, and journals every [`HostState`] transition ([`journal`]) so [`Run::resume`] continues
//!   after a crash without launching a second collection.
//! - [`Report`] is the end result (`summary` + `hosts`), with a table and the [`exit_codes`].
//!
//! Falcon is reached through the [`api::FalconApi`] trait; [`sdk::SdkApi`] implements it over
//! `falcon_sdk::FalconClient`.
//!
//! # Examples
//!
//! Select the Linux hosts of a host group and print them:
//!
//! ```no_run
//! # async fn demo(client: falcon_sdk::FalconClient) -> triage::Result<()> {
//! use triage::{Platform, Selection, sdk::SdkApi};
//! let api = SdkApi::new(client);
//! let selection = Selection { host_group: Some("web servers".into()), platforms: vec![Platform::Linux], ..Default::default() };
//! let resolved = selection.resolve(&api).await?;
//! for h in &resolved.hosts {
//!     println!("{} {}", h.device_id, h.hostname);
//! }
//! # Ok(()) }
//! ```
//!
//! Run Cado Host with pre-signed data and follow every host:
//!
//! ```no_run
//! # async fn demo(api: triage::sdk::SdkApi, hosts: Vec<triage::HostRecord>) -> triage::Result<()> {
//! use secrecy::SecretString;
//! use triage::{CadoOptions, CollectorSet, JobId, Platform, Run, RunSettings};
//! let job = JobId::random();
//! let presigned = SecretString::from("eyJ1cmwiOi...".to_string());
//! let set = CollectorSet::cado_presigned(&presigned, "v3.7.0", triage::collector::DEFAULT_DOWNLOAD_BASE,
//!                                        &CadoOptions::default(), &Platform::ALL, &job)?;
//! let outcome = Run::new(&api, job, RunSettings::default())
//!     .collector(set)
//!     .on_progress(|p| tracing::info!(round = p.round, "{:?}", p.counts))
//!     .start(hosts, std::path::Path::new("triage-run.jsonl"))
//!     .await?;
//! println!("{}", outcome.report.table());
//! std::process::exit(outcome.report.summary.exit_code);
//! # }
//! ```
//!
//! Resume after a crash (collector options are needed only for hosts not launched yet):
//!
//! ```no_run
//! # async fn demo(api: triage::sdk::SdkApi, set: triage::CollectorSet) -> triage::Result<()> {
//! let replay = triage::journal::replay(std::path::Path::new("triage-run.jsonl"))?;
//! let outcome = triage::Run::new(&api, replay.job.clone(), replay.settings.clone())
//!     .collector(set)
//!     .resume(std::path::Path::new("triage-run.jsonl"))
//!     .await?;
//! # let _ = outcome; Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod cado;
pub mod collector;
pub mod error;
pub mod evidence;
pub mod exit_codes;
#[cfg(test)]
mod fake;
pub mod journal;
pub mod platform;
pub mod preflight;
pub mod probe;
pub mod redact;
pub mod report;
pub mod run;
pub mod script;
pub mod sdk;
pub mod select;
pub mod state;

pub use cado::CadoClient;
pub use collector::{CadoOptions, CollectionMode, CollectorSet};
pub use error::{Error, Result};
pub use platform::{JobId, Platform};
pub use redact::Redactor;
pub use report::Report;
pub use run::{Control, Progress, Run, RunOutcome, RunSettings, RunStats};
pub use select::{Resolved, Selection};
pub use state::{HostRecord, HostState};
