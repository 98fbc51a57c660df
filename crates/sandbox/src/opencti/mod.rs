//! OpenCTI simulator: the GraphQL operations a stream connector sends, and the live stream (SSE)
//! over a seeded set of indicators, as `shared/reference/opencti.md` describes the platform.
//!
//! Routes:
//!
//! - `POST /graphql` (Bearer token): `about`, `me`, `registerConnector`, `pingConnector`,
//!   `resetStateConnector`, `deleteConnector`, `streamCollection(s)`, `connector(s)`, `indicator`,
//!   `indicators` (filters, search, cursor pagination); dissemination assurance
//!   (`securityPlatformAdd`, `indicatorReportDeployment(s)`, `stixCoreRelationships` of
//!   `deployed-on`, `indicatorReportHits`, the analyst actions; absent when the
//!   `dissemination_assurance` knob is off);
//! - `GET /stream/{id}` (Bearer token unless the collection is public; `live` = the unfiltered
//!   global stream): `connected`, recovery snapshot, live events, heartbeats;
//! - control routes under `/_sandbox/` (no auth, never faulted): indicators, streams,
//!   connectors, churn, faults, raw events, request counts. `docs/sandbox.md` documents them.

mod churn;
mod control;
pub(crate) mod counts;
mod deployments;
mod filters;
mod graphql;
mod model;
mod store;
mod stream;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::faults::{FaultConfig, Faults};
use counts::RequestCounts;
use store::{Store, StreamDef};

/// The filter of the default live stream: "Entity type = Indicator AND Revoked = No", the CES
/// README's recommendation.
pub const DEFAULT_STREAM_FILTERS: &str = r#"{"mode":"and","filters":[{"key":["entity_type"],"operator":"eq","values":["Indicator"],"mode":"or"},{"key":["revoked"],"operator":"eq","values":["false"],"mode":"or"}],"filterGroups":[]}"#;

/// Background changes to the indicator set: `events_per_second` operations drawn with the given
/// weights. `events_per_second = 0` (the default) turns churn off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChurnConfig {
    /// Operations per second (0 = off).
    pub events_per_second: f64,
    /// Weight of score/label/validity updates.
    pub updates: u32,
    /// Weight of pattern changes (a new value of the same observable type).
    pub pattern_changes: u32,
    /// Weight of revocations (`revoked = true`; a `delete` on the default stream).
    pub revocations: u32,
    /// Weight of deletions.
    pub deletions: u32,
    /// Weight of creations.
    pub creations: u32,
    /// Weight of merges (one indicator merged into another).
    pub merges: u32,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        Self {
            events_per_second: 0.0,
            updates: 50,
            pattern_changes: 10,
            revocations: 10,
            deletions: 10,
            creations: 15,
            merges: 5,
        }
    }
}

/// OpenCTI simulator knobs.
#[derive(Clone)]
pub struct OpenCtiConfig {
    /// Number of generated indicators (M).
    pub indicators: usize,
    /// API token accepted as `Authorization: Bearer <token>` (a sandbox credential).
    pub token: String,
    /// Id of the default live stream (`None`: a UUID derived from the seed).
    pub live_stream_id: Option<String>,
    /// FilterGroup JSON of the default live stream (`None`: [`DEFAULT_STREAM_FILTERS`]).
    pub stream_filters: Option<String>,
    /// Heartbeat period of the live stream (the platform's default is 5 s).
    pub heartbeat_interval: Duration,
    /// Version answered by `about { version }`.
    pub version: String,
    /// Churn at start (changeable through `/_sandbox/churn`).
    pub churn: ChurnConfig,
    /// Faults at start (changeable through `/_sandbox/faults`).
    pub faults: FaultConfig,
    /// Dissemination assurance (deployment write-back) present; `false` simulates an older
    /// platform (changeable through `/_sandbox/deployments/feature`).
    pub dissemination_assurance: bool,
    /// Removal grace period of the expiry manager (the platform's default is 24 h).
    pub removal_grace: Duration,
    /// Truncated `indicators` listings at start (changeable through `/_sandbox/listing`).
    pub listing: ListingFaults,
    /// The platform's rate limits on the deployment write-back calls.
    pub deployment_rate_limits: DeploymentRateLimits,
}

/// Calls per second the platform accepts, per kind, before it answers `Too many requests`
/// (`dissemination-assurance.md` §2 and Appendix A: per account and API node, 200 single reports,
/// 20 batch calls and 200 hit reports a second, in one-second buckets). 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentRateLimits {
    /// `indicatorReportDeployment` calls per second.
    pub single: u32,
    /// `indicatorReportDeployments` calls per second.
    pub batch: u32,
    /// `indicatorReportHits` calls per second.
    pub hits: u32,
}

impl Default for DeploymentRateLimits {
    fn default() -> Self {
        DeploymentRateLimits {
            single: 200,
            batch: 20,
            hits: 200,
        }
    }
}

/// Ways a paged `indicators` listing can come back incomplete, as a busy or buggy platform (or a proxy)
/// can produce them (`shared/reference/opencti.md` §3: cursors are opaque, `pageInfo.globalCount` is the
/// total): a client must treat each as an error, never as the whole list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListingFaults {
    /// From this page on (0 = the first), every page answers the `after` cursor it was asked for as its
    /// `endCursor` (a repeated cursor) with `hasNextPage: true`.
    pub repeat_cursor_from_page: Option<usize>,
    /// The listing ends (`hasNextPage: false`) after this many indicators, while `globalCount` still
    /// says the full total.
    pub stop_after: Option<usize>,
}

impl Default for OpenCtiConfig {
    fn default() -> Self {
        Self {
            indicators: 1_000,
            token: "d434ce02-e58e-4cac-8b4c-42bf16748e84".into(),
            live_stream_id: None,
            stream_filters: None,
            heartbeat_interval: Duration::from_secs(5),
            version: "6.8.13".into(),
            churn: ChurnConfig::default(),
            faults: FaultConfig::default(),
            dissemination_assurance: true,
            removal_grace: Duration::from_secs(86_400),
            listing: ListingFaults::default(),
            deployment_rate_limits: DeploymentRateLimits::default(),
        }
    }
}

impl std::fmt::Debug for OpenCtiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCtiConfig")
            .field("indicators", &self.indicators)
            .field("token", &"<redacted>")
            .field("live_stream_id", &self.live_stream_id)
            .field("stream_filters", &self.stream_filters)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("version", &self.version)
            .field("churn", &self.churn)
            .field("faults", &self.faults)
            .field("dissemination_assurance", &self.dissemination_assurance)
            .field("removal_grace", &self.removal_grace)
            .field("deployment_rate_limits", &self.deployment_rate_limits)
            .finish()
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) store: Arc<Store>,
    pub(crate) token: Arc<str>,
    pub(crate) url: Arc<str>,
    pub(crate) version: Arc<str>,
    pub(crate) heartbeat: Duration,
    pub(crate) faults: Faults,
    pub(crate) counts: RequestCounts,
    pub(crate) churn: Arc<Mutex<ChurnConfig>>,
    pub(crate) churn_changed: Arc<Notify>,
    pub(crate) listing: Arc<Mutex<ListingFaults>>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) seed: u64,
    pub(crate) deployments: Arc<deployments::Deployments>,
}

impl App {
    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .is_some_and(|t| t.trim() == &*self.token)
    }
}

/// A running OpenCTI simulator.
pub struct OpenCtiServer {
    url: String,
    token: String,
    live_stream_id: String,
    app: App,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    churn_task: JoinHandle<()>,
}

impl OpenCtiServer {
    /// Generates the indicator set and starts serving on `listener` (in the current tokio runtime).
    ///
    /// # Panics
    ///
    /// When `config.stream_filters` is not a valid FilterGroup.
    pub fn start(listener: TcpListener, config: OpenCtiConfig, seed: u64) -> Self {
        let url = format!("http://{}", listener.local_addr().expect("bound listener"));
        let refs = model::refs(seed);
        let mut generator = model::Gen::new(seed, &refs);
        let now = chrono::Utc::now();
        let initial = generator.initial(config.indicators, now);
        let live_stream_id = config.live_stream_id.clone().unwrap_or_else(|| {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0x57AE);
            model::uuid_from(&mut rng)
        });
        let filters = config
            .stream_filters
            .clone()
            .unwrap_or_else(|| DEFAULT_STREAM_FILTERS.to_owned());
        let group = filters::FilterGroup::parse(&serde_json::Value::String(filters.clone()))
            .unwrap_or_else(|e| panic!("invalid OpenCtiConfig::stream_filters: {e}"));
        let stream = StreamDef {
            id: live_stream_id.clone(),
            name: "Indicators for CrowdStrike".into(),
            description: "Entity type = Indicator AND Revoked = No".into(),
            filters: Some(filters),
            group: Some(group),
            stream_live: true,
            stream_public: false,
        };
        let store = Arc::new(Store::new(refs, generator, initial, vec![stream]));
        let faults = Faults::new(config.faults.clone(), seed ^ 0x0C71);
        let counts = RequestCounts::default();
        let (stop, stopped) = watch::channel(false);
        let app = App {
            store,
            token: config.token.as_str().into(),
            url: url.as_str().into(),
            version: config.version.as_str().into(),
            heartbeat: config.heartbeat_interval,
            faults: faults.clone(),
            counts: counts.clone(),
            churn: Arc::new(Mutex::new(config.churn.clone())),
            churn_changed: Arc::new(Notify::new()),
            listing: Arc::new(Mutex::new(config.listing.clone())),
            stop: stopped.clone(),
            connections: Arc::new(AtomicUsize::new(0)),
            seed,
            deployments: Arc::new(deployments::Deployments::new(
                config.dissemination_assurance,
                config.removal_grace,
                config.deployment_rate_limits,
            )),
        };
        let router = Router::new()
            .route("/graphql", post(graphql::handler))
            .route("/stream/{id}", get(stream::handler))
            .merge(control::routes())
            .with_state(app.clone())
            .merge(crate::faults::routes(faults.clone()))
            .route_layer(axum::middleware::from_fn_with_state(counts, counts::count))
            .layer(axum::middleware::from_fn_with_state(
                faults,
                crate::faults::middleware,
            ));
        let mut stopped_serve = stopped;
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped_serve.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "opencti simulator stopped");
            }
        });
        let churn_task = tokio::spawn(churn::run(app.clone()));
        OpenCtiServer {
            url,
            token: config.token,
            live_stream_id,
            app,
            stop,
            task,
            churn_task,
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Accepted API token.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Id of the live stream carrying the generated indicators.
    pub fn live_stream_id(&self) -> String {
        self.live_stream_id.clone()
    }

    /// The fault knobs of this server.
    pub fn faults(&self) -> Faults {
        self.app.faults.clone()
    }

    /// Number of indicators currently in the platform.
    pub fn indicator_count(&self) -> usize {
        self.app.store.len()
    }

    /// Stops the server: open streams end, then the listener closes.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.churn_task.abort();
        let _ = self.task.await;
    }
}

impl std::fmt::Debug for OpenCtiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCtiServer")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("live_stream_id", &self.live_stream_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_token() {
        let config = OpenCtiConfig {
            token: "s3cr3t-token".into(),
            ..OpenCtiConfig::default()
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("s3cr3t-token") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
