//! OpenCTI client for stream connectors: the GraphQL calls a stream connector makes
//! (health check, register, ping with state, stream collection, delete, paged indicators) and
//! a live-stream (SSE) consumer that never loses an event.
//!
//! The wire behaviour follows pycti (the Python connector helper): same GraphQL operations,
//! same `GET /stream/{id}` headers and `?recover=` parameter, same state JSON
//! (`{"start_from": …, "recover_until": …}`), so a connector id moves between the Python
//! connector and this client and resumes where it was. Unlike pycti, the live stream
//! reconnects with backoff on disconnects, read timeouts and HTTP errors, yields a malformed
//! event as an error item and goes on, and resumes from the last *acknowledged* event id.
//!
//! # Register, then follow the stream from the stored state
//!
//! ```no_run
//! use futures::StreamExt;
//! use opencti_client::{ConnectorRegistration, EventKind, LiveStream, OpenCtiClient, StreamState};
//! use secrecy::SecretString;
//!
//! # async fn run() -> Result<(), opencti_client::Error> {
//! let client = OpenCtiClient::builder("https://opencti.example:8080", SecretString::from("token"))
//!     .build()?;
//! println!("platform {}", client.health_check().await?);
//! let reg = client
//!     .register_connector(&ConnectorRegistration {
//!         id: "5c0d4f0e-0000-4000-8000-000000000001".into(),
//!         name: "CrowdStrike".into(),
//!         scope: vec!["crowdstrike".into()],
//!         ..Default::default()
//!     })
//!     .await?;
//! let (mut events, cursor) = LiveStream::builder(client.clone(), "9d3f0e52-stream-id")
//!     .state(reg.state.unwrap_or_else(StreamState::first_run))
//!     .build();
//! while let Some(item) = events.next().await {
//!     match item {
//!         Ok(ev) => {
//!             if matches!(ev.kind, EventKind::Create | EventKind::Update | EventKind::Delete) {
//!                 // ... handle ev.data ...
//!             }
//!             cursor.ack(&ev.id); // done with it: a reconnect resumes after it
//!         }
//!         Err(e) if e.is_terminal() => return Err(e), // 401 / 404 / 410
//!         Err(opencti_client::Error::Malformed { id, .. }) => cursor.ack(&id), // skip it
//!         Err(_) => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Persist the cursor and detect a reset done in the UI
//!
//! ```no_run
//! # async fn run(client: opencti_client::OpenCtiClient, cursor: opencti_client::CursorHandle) -> Result<(), opencti_client::Error> {
//! use opencti_client::{ConnectorInfo, StreamState};
//! let ping = client
//!     .ping_connector("connector-id", Some(&cursor.state()), &ConnectorInfo::default())
//!     .await?;
//! if ping.reset {
//!     // The state was reset in the UI: start over, as pycti does.
//!     cursor.reset(ping.state.unwrap_or_else(StreamState::first_run));
//! }
//! # Ok(()) }
//! ```
//!
//! # Walk every indicator matching the stream's filters (reconciliation)
//!
//! ```no_run
//! # async fn run(client: opencti_client::OpenCtiClient) -> Result<(), opencti_client::Error> {
//! use futures::TryStreamExt;
//! let collection = client.stream_collection("9d3f0e52-stream-id").await?;
//! let mut all = client
//!     .indicators()
//!     .filters(collection.filters_json()?.unwrap_or(serde_json::Value::Null))
//!     .stream();
//! while let Some(ind) = all.try_next().await? {
//!     println!("{:?} {:?} score={:?}", ind.standard_id, ind.pattern, ind.x_opencti_score);
//! }
//! # Ok(()) }
//! ```
//!
//! See `docs/opencti-client.md` for the wire behaviours covered and the resumption semantics.

#![warn(missing_docs)]

mod client;
mod connector;
mod cursor;
mod deployments;
mod error;
mod event;
mod indicators;
mod state;
mod stream;

pub use client::redact_url;
pub use client::{ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, OpenCtiClient};
pub use connector::{
    ConnectorInfo, ConnectorRegistration, ConnectorType, PingOutcome, RegisteredConnector,
    StreamCollection,
};
pub use cursor::{CursorHandle, StreamStats};
pub use deployments::{
    BatchOutcome, DEPLOYMENT_PAGE_SIZE, DETECTION_RETRY, DeployedIndicator, Deployment,
    DeploymentPage, DeploymentQuery, DeploymentReport, DeploymentStatus, DeploymentWriteBack,
    Feature, HitReport, LISTED_STATUSES, MAX_BATCH_REPORTS, MAX_ERROR_MESSAGE_CHARS,
    MAX_EXTERNAL_ID_CHARS, MAX_REPORT_ID_CHARS, ReportError, ReportErrorKind, SecurityPlatform,
    Sent, cut_message, iso,
};
pub use error::{Error, GraphQlError, RetryKind, StreamError};
pub use event::{
    ConnectedInfo, EventContext, EventData, EventKind, MITRE_EXTENSION, OPENCTI_EXTENSION,
    OPENCTI_SCO_EXTENSION, StreamEvent,
};
pub use indicators::{
    DEFAULT_PAGE_SIZE, IndicatorNode, IndicatorPage, IndicatorQuery, IndicatorsHandler,
};
pub use state::{StreamState, compare_event_ids};
pub use stream::{
    DEFAULT_HEARTBEAT_PERIOD, DEFAULT_READ_TIMEOUT_HEARTBEATS, LiveEvents, LiveStream,
    LiveStreamBuilder,
};

/// The secret type of the token, re-exported for convenience.
pub use secrecy::SecretString;
