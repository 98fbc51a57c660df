//! Falcon API simulator: OAuth2, rate limits, hosts and host groups, IOC Manager, alerts and Real
//! Time Response over a generated fleet whose hosts implement the collector protocol
//! (`docs/collector-protocol.md`).
//!
//! Every route and knob is documented in `docs/sandbox.md`. Module map:
//! [`fql`] (filter parser), `wire` (envelope), `auth` (tokens and rate limit), `fleet` (hosts and
//! host groups), `iocs` (IOC Manager), `alerts`, `rtr` (sessions, commands, host model, libraries),
//! `control` (`/_sandbox/...`).

#![allow(clippy::result_large_err)] // handlers return early with a ready `Response`; it is never stored

mod actions;
mod alerts;
mod auth;
mod control;
mod fleet;
pub mod fql;
mod host;
mod iocs;
mod mssp;
mod rtr;
mod streams;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cado::Bucket;
use crate::faults::{FaultConfig, Faults, Injected};

/// Falcon simulator knobs. Plain fields with [`Default`]; see `docs/sandbox.md`.
#[derive(Debug, Clone)]
pub struct FalconConfig {
    /// Number of generated hosts (default 100).
    pub hosts: usize,
    /// Number of generated host groups (default 6).
    pub host_groups: usize,
    /// Share of hosts that start offline (default 0.2).
    pub offline_share: f64,
    /// Offline hosts come online at a random moment within this delay after start (`None`: they
    /// stay offline until `/_sandbox/hosts/online` says otherwise). Default `None`.
    pub online_within: Option<Duration>,
    /// Share of collector runs that fail (default 0.0).
    pub failure_rate: f64,
    /// How long a collector runs before it exits (default 3 s).
    pub collector_duration: Duration,
    /// Requests per minute per client id, sliding window; `None` disables the limit (default 6,000).
    pub rate_limit_per_minute: Option<u32>,
    /// OAuth2 token lifetime (default 1,799 s: `expires_in`).
    pub token_ttl: Duration,
    /// RTR session lifetime without refresh (default 600 s).
    pub session_ttl: Duration,
    /// RTR stdout chunk size: longer output spans several `sequence_id`s (default 4,096 bytes).
    pub stdout_chunk_bytes: usize,
    /// Accepted client id (`None`: derived from the seed).
    pub client_id: Option<String>,
    /// Accepted client secret (`None`: derived from the seed).
    pub client_secret: Option<String>,
    /// Customer id of the simulated tenant (`None`: derived from the seed).
    pub cid: Option<String>,
    /// Value of the `X-Cs-Region` header (default `US-1`). Real Falcon sends lower-case `us-1`, but
    /// FalconPy 1.6.6 then moves a custom `base_url` to `https://api.crowdstrike.com` (it compares the
    /// dash-stripped header case-sensitively with `US1`); `US-1` names the same region and keeps it
    /// on the sandbox. See `docs/sandbox.md`.
    pub region: String,
    /// Number of generated alerts (`None`: one per four hosts).
    pub alerts: Option<usize>,
    /// IOCs created at start (by the sandbox's own client id), for benchmarks. Default 0.
    pub iocs: usize,
    /// Fault injection at start.
    pub faults: FaultConfig,
    /// How long a containment change stays `*_pending` before an online host acknowledges it
    /// (default 1 s; offline hosts stay pending until they come online).
    pub containment_delay: Duration,
    /// Most ids per host-action request (default 500 contain/lift/suppress, 100 hide/unhide).
    pub action_caps: ActionCaps,
    /// Event Streams partitions (default 1).
    pub stream_partitions: usize,
    /// Event Streams session lifetime without refresh, `refreshActiveSessionInterval` (default 1,800 s).
    pub stream_session_ttl: Duration,
    /// Flight Control: child CIDs of this (parent) tenant, each with its own fleet, IOC store, alerts,
    /// streams and rate-limit window (default 0).
    pub children: usize,
    /// Hosts of each child's fleet (default 20).
    pub child_hosts: usize,
    /// Longest request target (path and query) the gateway accepts; longer ones get `414`
    /// (`None`: no limit). Default 18,500, Falcon's practical limit (`falcon-api.md` §1.5).
    pub max_url_length: Option<usize>,
    /// Whether the API client has the `ioc:write` scope (default true). Without it, IOC creates,
    /// updates and deletes answer `403` (`falcon-api.md` §8).
    pub ioc_write_scope: bool,
    /// Other clouds served by this simulator, by region name (e.g. `us-1` while `region` is `eu-1`):
    /// each gets its own listener ([`FalconServer::cloud_urls`]) where the token endpoint answers like
    /// the tenant's home cloud (201 and the home `X-Cs-Region`) and every other call answers `401`,
    /// as a tenant's token is unknown to another cloud (`falcon-api.md` §1.4). Default none.
    pub other_clouds: Vec<String>,
}

/// Per-request id caps of `PerformActionV2` (reference §2.3: 100 hide/unhide, 500 the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionCaps {
    /// `contain`, `lift_containment`, `detection_suppress`, `detection_unsuppress`.
    pub contain: usize,
    /// `hide_host`, `unhide_host`.
    pub hide: usize,
}

impl Default for ActionCaps {
    fn default() -> Self {
        ActionCaps {
            contain: 500,
            hide: 100,
        }
    }
}

impl Default for FalconConfig {
    fn default() -> Self {
        Self {
            hosts: 100,
            host_groups: 6,
            offline_share: 0.2,
            online_within: None,
            failure_rate: 0.0,
            collector_duration: Duration::from_secs(3),
            rate_limit_per_minute: Some(6_000),
            token_ttl: Duration::from_secs(1_799),
            session_ttl: Duration::from_secs(600),
            stdout_chunk_bytes: 4_096,
            client_id: None,
            client_secret: None,
            cid: None,
            region: "US-1".to_string(),
            alerts: None,
            iocs: 0,
            faults: FaultConfig::default(),
            containment_delay: Duration::from_secs(1),
            action_caps: ActionCaps::default(),
            stream_partitions: 1,
            stream_session_ttl: Duration::from_secs(1_800),
            children: 0,
            child_hosts: 20,
            max_url_length: Some(18_500),
            ioc_write_scope: true,
            other_clouds: Vec::new(),
        }
    }
}

/// Knobs that can change at run time through `POST /_sandbox/knobs` (partial JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Knobs {
    /// Requests per minute per client id; `null` disables the limit.
    pub rate_limit_per_minute: Option<u32>,
    /// Token lifetime for tokens issued from now on, in seconds.
    pub token_ttl_secs: u64,
    /// RTR session lifetime, in seconds.
    pub session_ttl_secs: u64,
    /// Share of collector runs that fail.
    pub failure_rate: f64,
    /// Collector run time, in milliseconds.
    pub collector_duration_ms: u64,
    /// RTR stdout chunk size in bytes.
    pub stdout_chunk_bytes: usize,
    /// `X-Cs-Region` value.
    pub region: String,
    /// Longest request target (path and query); `null`: no limit.
    pub max_url_length: Option<usize>,
    /// Whether the client has the `ioc:write` scope.
    pub ioc_write_scope: bool,
    /// Store `sha256`, `md5` and `domain` values in the case they were sent (lookups and duplicate
    /// checks stay case-insensitive), as an IOC the Python connector wrote from a mixed-case pattern may
    /// be stored; default off: values are lower-cased. Falcon's own behaviour is unverified.
    #[serde(default)]
    pub keep_value_case: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs::from(&FalconConfig::default())
    }
}

impl From<&FalconConfig> for Knobs {
    fn from(c: &FalconConfig) -> Self {
        Knobs {
            rate_limit_per_minute: c.rate_limit_per_minute,
            token_ttl_secs: c.token_ttl.as_secs(),
            session_ttl_secs: c.session_ttl.as_secs(),
            failure_rate: c.failure_rate,
            collector_duration_ms: c.collector_duration.as_millis() as u64,
            stdout_chunk_bytes: c.stdout_chunk_bytes.max(16),
            region: c.region.clone(),
            max_url_length: c.max_url_length,
            ioc_write_scope: c.ioc_write_scope,
            keep_value_case: false,
        }
    }
}

/// Shared state of one Falcon simulator.
pub(crate) struct Sim {
    pub client_id: String,
    pub client_secret: String,
    pub cid: String,
    pub knobs: RwLock<Knobs>,
    pub auth: auth::AuthState,
    pub fleet: RwLock<fleet::Fleet>,
    pub iocs: RwLock<iocs::IocStore>,
    pub alerts: RwLock<alerts::AlertStore>,
    pub rtr: Mutex<rtr::Rtr>,
    pub requests: Mutex<HashMap<String, u64>>,
    pub faults: Faults,
    pub bucket: Bucket,
    pub seed: u64,
    pub actions: actions::ActionState,
    pub action_caps: ActionCaps,
    pub containment_delay: Duration,
    pub streams: streams::StreamsState,
    pub mssp: mssp::MsspState,
}

impl Sim {
    /// A tenant's state: fleet, alerts and IOCs generated from `config` and `seed`.
    fn build(
        config: &FalconConfig,
        seed: u64,
        bucket: Bucket,
        url: &str,
        [client_id, client_secret, cid]: [String; 3],
        children: Vec<mssp::Child>,
    ) -> Shared {
        let started = Instant::now();
        let fleet = fleet::Fleet::generate(config, seed, &cid, started);
        let alerts = alerts::AlertStore::generate(
            &fleet,
            config.alerts.unwrap_or(config.hosts / 4),
            seed,
            &cid,
        );
        let mut iocs = iocs::IocStore::default();
        iocs.preload(config.iocs, seed, &client_id);
        let streams = streams::StreamsState::new(
            url,
            &cid,
            config.stream_partitions,
            config.stream_session_ttl,
        );
        let sim = Arc::new(Sim {
            client_id,
            client_secret,
            cid,
            knobs: RwLock::new(Knobs::from(config)),
            auth: auth::AuthState::default(),
            fleet: RwLock::new(fleet),
            iocs: RwLock::new(iocs),
            alerts: RwLock::new(alerts),
            rtr: Mutex::new(rtr::Rtr::default()),
            requests: Mutex::new(HashMap::new()),
            faults: Faults::new(config.faults.clone(), seed),
            bucket,
            seed,
            actions: actions::ActionState::default(),
            action_caps: config.action_caps,
            containment_delay: config.containment_delay,
            streams,
            mssp: mssp::MsspState::new(children),
        });
        streams::publish_alerts(&sim);
        sim
    }

    pub(crate) fn knobs(&self) -> Knobs {
        self.knobs.read().expect("knobs lock").clone()
    }
}

pub(crate) type Shared = Arc<Sim>;

/// A running Falcon API simulator.
pub struct FalconServer {
    url: String,
    clouds: Vec<(String, String)>,
    sim: Shared,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
    /// Background loops of the newer modules (aborted on shutdown).
    aux: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FalconServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FalconServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn derive_hex(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl FalconServer {
    /// Starts serving on `listener` in the current tokio runtime. Simulated hosts whose collector
    /// succeeds upload their capture into `bucket`. [`FalconConfig::other_clouds`] need their
    /// listeners: see [`FalconServer::start_with_clouds`].
    pub fn start(listener: TcpListener, config: FalconConfig, seed: u64, bucket: Bucket) -> Self {
        Self::start_with_clouds(listener, Vec::new(), config, seed, bucket)
    }

    /// [`FalconServer::start`], with one listener per other cloud (region name, listener).
    pub fn start_with_clouds(
        listener: TcpListener,
        clouds: Vec<(String, TcpListener)>,
        config: FalconConfig,
        seed: u64,
        bucket: Bucket,
    ) -> Self {
        let url = format!("http://{}", listener.local_addr().expect("bound listener"));
        let mut rng = StdRng::seed_from_u64(seed ^ 0xFA1C_0000);
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| derive_hex(&mut rng, 16));
        let client_secret = config
            .client_secret
            .clone()
            .unwrap_or_else(|| derive_hex(&mut rng, 20));
        let cid = config
            .cid
            .clone()
            .unwrap_or_else(|| derive_hex(&mut rng, 16).to_uppercase());
        let children = mssp::children(&config, seed, &bucket, &url, &client_id, &client_secret);
        let sim = Sim::build(
            &config,
            seed,
            bucket,
            &url,
            [client_id, client_secret, cid],
            children,
        );
        let app = router(sim.clone());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut stopped = stop_rx.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "falcon simulator stopped");
            }
        });
        let mut tasks = vec![server];
        let mut cloud_urls = Vec::new();
        for (region, listener) in clouds {
            let url = format!("http://{}", listener.local_addr().expect("bound listener"));
            let app = router(sim.clone()).layer(axum::Extension(OtherCloud));
            let mut stopped = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                });
                if let Err(error) = serve.await {
                    tracing::error!(%error, "falcon simulator (other cloud) stopped");
                }
            }));
            cloud_urls.push((region, url));
        }
        let mut aux = vec![tokio::spawn(actions::ticker(sim.clone()))];
        for child in &sim.mssp.children {
            aux.push(tokio::spawn(actions::ticker(child.sim.clone())));
            aux.push(tokio::spawn(rtr::ticker(child.sim.clone())));
        }
        // The ticker is last: shutdown aborts it rather than waiting.
        tasks.push(tokio::spawn(rtr::ticker(sim.clone())));
        FalconServer {
            url,
            clouds: cloud_urls,
            sim,
            stop: Some(stop),
            tasks,
            aux,
        }
    }

    /// Base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The other clouds' base URLs, by region name ([`FalconConfig::other_clouds`]).
    pub fn cloud_urls(&self) -> Vec<(String, String)> {
        self.clouds.clone()
    }

    /// Accepted client id.
    pub fn client_id(&self) -> String {
        self.sim.client_id.clone()
    }

    /// Accepted client secret (a sandbox credential).
    pub fn client_secret(&self) -> String {
        self.sim.client_secret.clone()
    }

    /// Customer id of the simulated tenant.
    pub fn cid(&self) -> String {
        self.sim.cid.clone()
    }

    /// The fault state (also reachable at `/_sandbox/faults`).
    pub fn faults(&self) -> Faults {
        self.sim.faults.clone()
    }

    /// Current run-time knobs.
    pub fn knobs(&self) -> Knobs {
        self.sim.knobs()
    }

    /// Stops the server and its background tasks.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for task in self.aux.drain(..) {
            task.abort();
        }
        let mut tasks = std::mem::take(&mut self.tasks);
        if let Some(ticker) = tasks.pop() {
            ticker.abort();
        }
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for FalconServer {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(&self.aux) {
            task.abort();
        }
    }
}

fn router(sim: Shared) -> Router {
    let api = Router::new()
        .merge(auth::routes())
        .merge(fleet::routes())
        .merge(iocs::routes())
        .merge(alerts::routes())
        .merge(actions::routes())
        .merge(streams::routes())
        .merge(mssp::routes())
        .merge(rtr::routes())
        .with_state(sim.clone())
        .route_layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            middleware,
        ))
        .fallback(fallback);
    api.merge(control::routes(sim.clone()))
        .merge(streams::open_routes(sim.clone()))
        .merge(alerts::control_routes(sim.clone()))
        .merge(crate::faults::routes(sim.faults.clone()))
        .layer(axum::middleware::from_fn_with_state(sim, mssp::dispatch))
}

async fn fallback(request: Request) -> Response {
    let ctx = wire::Ctx {
        trace_id: uuid::Uuid::new_v4().to_string(),
        start: Instant::now(),
        client_id: String::new(),
    };
    let path = request.uri().path().to_string();
    wire::CTX
        .scope(ctx, async move {
            wire::error(
                StatusCode::NOT_FOUND,
                "crowdstrike-api-gateway",
                format!("no route for {path}"),
            )
        })
        .await
}

/// Marks the requests that reach a listener of another cloud ([`FalconConfig::other_clouds`]).
#[derive(Debug, Clone)]
struct OtherCloud;

/// URL length, counting, faults, authentication, scopes, rate limiting and the common headers, for
/// every API route.
async fn middleware(
    State(sim): State<Shared>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = format!(
        "{} {}",
        request.method(),
        matched
            .as_ref()
            .map(MatchedPath::as_str)
            .unwrap_or(request.uri().path())
    );
    *sim.requests
        .lock()
        .expect("requests lock")
        .entry(route)
        .or_default() += 1;
    let trace_id = uuid::Uuid::new_v4().to_string();
    let path = request.uri().path().to_string();
    let mut ctx = wire::Ctx {
        trace_id: trace_id.clone(),
        start,
        client_id: String::new(),
    };

    let latency = sim.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let is_auth_route = path.starts_with("/oauth2/");
    let mut limit_headers: Option<auth::LimitHeaders> = None;
    let knobs = sim.knobs();
    let other_cloud = request.extensions().get::<OtherCloud>().cloned();
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let response = 'answer: {
        if knobs.max_url_length.is_some_and(|max| target_len > max) {
            // A gateway refusal: not a Falcon envelope.
            let mut r = Response::new(axum::body::Body::from(
                "<html><body><h1>414 Request-URI Too Large</h1></body></html>",
            ));
            *r.status_mut() = StatusCode::URI_TOO_LONG;
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/html"));
            break 'answer r;
        }
        if let Some(injected) = sim.faults.decide() {
            let response = wire::CTX
                .scope(ctx.clone(), async {
                    match injected {
                        Injected::ServerError(status) => wire::error(
                            status,
                            "crowdstrike-api-gateway",
                            format!("Internal Server Error: Please provide trace-id='{trace_id}' to support"),
                        ),
                        Injected::Throttle { retry_after_secs } => {
                            let mut r = wire::error(
                                StatusCode::TOO_MANY_REQUESTS,
                                "crowdstrike-api-gateway",
                                "API rate limit exceeded.",
                            );
                            let at = chrono::Utc::now().timestamp() as u64 + retry_after_secs.max(1);
                            r.headers_mut().insert("x-ratelimit-retryafter", HeaderValue::from(at));
                            r.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from(0));
                            r
                        }
                    }
                })
                .await;
            break 'answer response;
        }
        if !is_auth_route {
            // Another cloud does not know this tenant's tokens.
            let authenticated = match other_cloud {
                Some(_) => Err(()),
                None => auth::authenticate(&sim, request.headers()),
            };
            match authenticated {
                Ok(client_id) => ctx.client_id = client_id,
                Err(()) => {
                    let mut r = wire::CTX
                        .scope(ctx.clone(), async {
                            wire::error(
                                StatusCode::UNAUTHORIZED,
                                "crowdstrike-api-gateway",
                                "access denied, invalid bearer token",
                            )
                        })
                        .await;
                    r.headers_mut()
                        .insert("x-ratelimit-limit", HeaderValue::from(15));
                    r.headers_mut()
                        .insert("x-ratelimit-remaining", HeaderValue::from(14));
                    break 'answer r;
                }
            }
            match auth::rate_limit(&sim, &ctx.client_id) {
                Ok(headers) => limit_headers = Some(headers),
                Err(headers) => {
                    let mut r = wire::CTX
                        .scope(ctx.clone(), async {
                            wire::error(
                                StatusCode::TOO_MANY_REQUESTS,
                                "crowdstrike-api-gateway",
                                "API rate limit exceeded.",
                            )
                        })
                        .await;
                    headers.apply(&mut r);
                    break 'answer r;
                }
            }
        }
        let ioc_write = path == "/iocs/entities/indicators/v1"
            && matches!(request.method().as_str(), "POST" | "PATCH" | "DELETE");
        if ioc_write && !knobs.ioc_write_scope {
            break 'answer wire::CTX
                .scope(ctx.clone(), async {
                    wire::error(
                        StatusCode::FORBIDDEN,
                        "crowdstrike-api-gateway",
                        "access denied, authorization failed",
                    )
                })
                .await;
        }
        wire::CTX.scope(ctx.clone(), next.run(request)).await
    };
    let mut response = response;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        headers.insert("x-cs-traceid", v);
    }
    if let Ok(v) = HeaderValue::from_str(&knobs.region) {
        headers.insert("x-cs-region", v);
    }
    if let Some(limit) = limit_headers {
        limit.apply(&mut response);
    } else if is_auth_route {
        response
            .headers_mut()
            .entry("x-ratelimit-limit")
            .or_insert(HeaderValue::from(300));
        response
            .headers_mut()
            .entry("x-ratelimit-remaining")
            .or_insert(HeaderValue::from(299));
    }
    response
}
