//! Typed async SDK for the CrowdStrike Falcon REST API.
//!
//! It covers OAuth2 (a cached token, renewed before it expires, again after a 401, and refreshed by one
//! caller at a time), region autodiscovery, and one transport that every call goes through. That
//! transport retries with jittered exponential backoff, honours `X-RateLimit-RetryAfter` with a cooldown
//! shared by all concurrent calls, slows down when `X-RateLimit-Remaining` is low, and bounds the total
//! retry time. On top of it sit typed handlers for hosts, host groups, IOCs ([`iocs`]), alerts
//! ([`alerts`]), host actions ([`host_actions`]), Event Streams ([`streams`]), Flight Control
//! ([`flight_control`]) and Real Time Response ([`rtr`]), pagination streams that hide Falcon's two-step
//! ids-then-entities listing and its 10,000-offset ceiling, an [`fql`] filter builder, and a raw escape
//! hatch ([`FalconClient::get`], [`FalconClient::raw`]) for the endpoints that are not wrapped.
//!
//! # Connect
//!
//! ```no_run
//! # async fn f() -> Result<(), falcon_sdk::Error> {
//! use falcon_sdk::{Cloud, FalconClient};
//! use secrecy::SecretString;
//!
//! let client = FalconClient::builder()
//!     .client_id("0123abcd")
//!     .client_secret(SecretString::from("s3cr3t"))
//!     .cloud(Cloud::Auto) // or Cloud::Eu1, or .base_url("http://127.0.0.1:8080")
//!     .build()?;
//! // Or: FALCON_CLIENT_ID, FALCON_CLIENT_SECRET, FALCON_MEMBER_CID, FALCON_CLOUD (name or URL).
//! let client = FalconClient::from_env()?;
//! # Ok(()) }
//! ```
//!
//! # Task 1: list every host
//!
//! ```no_run
//! # async fn f(client: falcon_sdk::FalconClient) -> Result<(), falcon_sdk::Error> {
//! use falcon_sdk::fql::Fql;
//! use futures::TryStreamExt;
//!
//! let filter = Fql::eq("platform_name", "Windows");
//! let mut hosts = std::pin::pin!(client.hosts().scroll().filter(filter).devices());
//! while let Some(device) = hosts.try_next().await? {
//!     println!("{} {}", device.device_id, device.hostname.unwrap_or_default());
//! }
//! # Ok(()) }
//! ```
//!
//! # Task 2: upload IOCs and see which ones failed
//!
//! ```no_run
//! # async fn f(client: falcon_sdk::FalconClient) -> Result<(), falcon_sdk::Error> {
//! use falcon_sdk::iocs::{Action, IocType, NewIndicator, Platform, Severity};
//!
//! let items = vec![
//!     NewIndicator::new(IocType::Domain, "evil.example", Action::Detect)
//!         .severity(Severity::High)
//!         .platforms([Platform::Windows, Platform::Mac, Platform::Linux])
//!         .source("my-feed"),
//! ];
//! let report = client.iocs().create(items).comment("from my-feed").send().await?;
//! for f in &report.failed {
//!     eprintln!("item {:?} rejected: {} (duplicate: {})", f.index, f.message, f.is_duplicate());
//! }
//! # Ok(()) }
//! ```
//!
//! # Task 3: triage recent alerts
//!
//! ```no_run
//! # async fn f(client: falcon_sdk::FalconClient) -> Result<(), falcon_sdk::Error> {
//! use falcon_sdk::alerts::{AlertAction, AlertStatus};
//! use falcon_sdk::fql::Fql;
//! use futures::TryStreamExt;
//!
//! let alerts: Vec<_> = client
//!     .alerts()
//!     .combined()
//!     .filter(Fql::eq("status", "new").and(Fql::ge("severity", 70)))
//!     .sort("created_timestamp|asc")
//!     .stream()
//!     .try_collect()
//!     .await?;
//! let ids: Vec<&str> = alerts.iter().map(|a| a.composite_id.as_str()).collect();
//! client
//!     .alerts()
//!     .update(&ids, AlertAction::Status(AlertStatus::InProgress))
//!     .and(AlertAction::Comment("triage started".into()))
//!     .send()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Every call returns [`Error`]: [`Error::is_retryable`], [`Error::status`], [`Error::trace_id`] and
//! [`Error::api_errors`] expose what a caller needs; retries already happened inside the client.
#![warn(missing_docs)]

pub mod alerts;
mod auth;
mod client;
mod config;
mod envelope;
mod error;
pub mod flight_control;
pub mod fql;
pub mod host_actions;
pub mod host_groups;
pub mod hosts;
pub mod iocs;
mod pagination;
mod raw;
pub mod streams;
mod transport;

pub mod rtr;

pub use client::{FalconClient, FalconClientBuilder, USER_AGENT};
pub use config::{Cloud, Credentials, Region, Settings};
pub use envelope::{Envelope, Meta, Offset, Page, Pagination, Writes};
pub use error::{ApiErrorDetail, ApiErrorItem, DecodeDetail, Error, Result, RetryKind};
pub use raw::RawRequest;
pub use reqwest::{Method, StatusCode};
pub use transport::RateLimitSnapshot;
