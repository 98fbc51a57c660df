//! Cado platform API simulator and the simulated capture bucket.
//!
//! Routes (all but `/_sandbox/*` need `Authorization: Bearer <api key>`):
//!
//! - `POST /api/v3/import/cado-host`: validates the request (`rtr-triage.md` §1.5) and answers
//!   `{"data": {"command", "presigned_data", "cloud_storage_info"}}` with a per-OS one-liner;
//! - `GET /api/v3/import/cado-host?os=<os>`: the collector binary download link;
//! - `GET /api/v3/pipelines?project_id=N`: one pipeline per capture that landed in the bucket;
//! - `GET /_sandbox/bucket`, `POST /_sandbox/bucket`: list captures, record one by hand;
//! - `GET /_sandbox/requests`, `GET|POST|DELETE /_sandbox/faults`.
//!
//! Simulated hosts upload through [`Bucket::upload_with_command`] (or [`Bucket::put_capture`]).

mod bucket;
mod command;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use bucket::{Bucket, Capture, UploadRejected};

use crate::faults::{FaultConfig, Faults};
use crate::opencti::counts::{self, RequestCounts};

/// Cado simulator knobs.
#[derive(Clone)]
pub struct CadoConfig {
    /// API key accepted as `Authorization: Bearer <key>` (a sandbox credential).
    pub api_key: String,
    /// Project ids that exist (requests for others get 404).
    pub projects: Vec<u64>,
    /// Name of the simulated evidence bucket.
    pub bucket_name: String,
    /// AWS region written into the credentials.
    pub region: String,
    /// Lifetime of issued presigned data (real figures vary from 2 to 24 hours; default 12 h).
    pub presigned_ttl: Duration,
    /// Time a pipeline takes from `queued` to `complete` once its capture landed.
    pub pipeline_processing: Duration,
    /// Share of pipelines that end `failed` (seeded).
    pub pipeline_failure_rate: f64,
    /// Cado Host version in download links.
    pub cado_host_version: String,
    /// Base URL of the binary downloads in generated commands (never contacted by the sandbox).
    pub download_base: String,
    /// Request faults at start (changeable through `/_sandbox/faults`).
    pub faults: FaultConfig,
}

impl Default for CadoConfig {
    fn default() -> Self {
        Self {
            api_key: "sandbox-cado-api-key".into(),
            projects: vec![1],
            bucket_name: "cado-sandbox-evidence".into(),
            region: "us-east-1".into(),
            presigned_ttl: Duration::from_secs(12 * 3600),
            pipeline_processing: Duration::from_secs(2),
            pipeline_failure_rate: 0.0,
            cado_host_version: "v3.7.0".into(),
            download_base: "https://cado-public.s3-accelerate.amazonaws.com".into(),
            faults: FaultConfig::default(),
        }
    }
}

impl std::fmt::Debug for CadoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CadoConfig")
            .field("api_key", &"<redacted>")
            .field("projects", &self.projects)
            .field("bucket_name", &self.bucket_name)
            .field("region", &self.region)
            .field("presigned_ttl", &self.presigned_ttl)
            .field("pipeline_processing", &self.pipeline_processing)
            .field("pipeline_failure_rate", &self.pipeline_failure_rate)
            .field("cado_host_version", &self.cado_host_version)
            .field("download_base", &self.download_base)
            .field("faults", &self.faults)
            .finish()
    }
}

#[derive(Clone)]
struct AppState {
    config: std::sync::Arc<CadoConfig>,
    bucket: Bucket,
    counts: RequestCounts,
    seed: u64,
    issued: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A running Cado platform simulator.
pub struct CadoServer {
    url: String,
    api_key: String,
    bucket: Bucket,
    faults: Faults,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl CadoServer {
    /// Starts serving on `listener` (in the current tokio runtime).
    pub fn start(listener: TcpListener, config: CadoConfig, seed: u64) -> Self {
        let url = format!("http://{}", listener.local_addr().expect("bound listener"));
        let bucket = Bucket::new(&config.bucket_name, seed, config.pipeline_failure_rate);
        let faults = Faults::new(config.faults.clone(), seed ^ 0xCAD0);
        let counts = RequestCounts::default();
        let api_key = config.api_key.clone();
        let state = AppState {
            config: std::sync::Arc::new(config),
            bucket: bucket.clone(),
            counts: counts.clone(),
            seed,
            issued: Default::default(),
        };
        let app = Router::new()
            .route(
                "/api/v3/import/cado-host",
                post(import_cado_host).get(download_link),
            )
            .route("/api/v3/pipelines", get(pipelines))
            .route("/_sandbox/bucket", get(list_bucket).post(put_bucket))
            .route("/_sandbox/requests", get(requests))
            .with_state(state)
            .merge(crate::faults::routes(faults.clone()))
            .route_layer(axum::middleware::from_fn_with_state(counts, counts::count))
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                crate::faults::middleware,
            ));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "cado simulator stopped");
            }
        });
        CadoServer {
            url,
            api_key,
            bucket,
            faults,
            stop,
            task,
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Accepted API key.
    pub fn api_key(&self) -> String {
        self.api_key.clone()
    }

    /// The bucket simulated hosts upload into.
    pub fn bucket(&self) -> Bucket {
        self.bucket.clone()
    }

    /// The fault knobs of this server.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"message": message.into()}))).into_response()
}

/// The 401 answer when the request lacks the API key.
fn unauthorized(headers: &HeaderMap, key: &str) -> Option<Response> {
    let ok = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token.trim() == key);
    (!ok).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: invalid or missing API key",
        )
    })
}

async fn import_cado_host(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = unauthorized(&headers, &state.config.api_key) {
        return r;
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("request body is not JSON: {e}"),
            );
        }
    };
    let request = match command::ImportRequest::parse(&body) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    if !state.config.projects.contains(&request.project_id) {
        return error(
            StatusCode::NOT_FOUND,
            format!("project {} not found", request.project_id),
        );
    }
    let n = state
        .issued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let built = command::build(
        &request,
        &state.config,
        &state.bucket,
        state.seed,
        n,
        chrono::Utc::now(),
    );
    Json(json!({"data": built})).into_response()
}

#[derive(Deserialize)]
struct OsQuery {
    os: Option<String>,
}

async fn download_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<OsQuery>,
) -> Response {
    if let Some(r) = unauthorized(&headers, &state.config.api_key) {
        return r;
    }
    let os = q.os.unwrap_or_default();
    let Some(path) = command::binary_path(&os) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("os: unsupported value {os:?}"),
        );
    };
    let url = format!(
        "{}/cado-host/{}/{path}",
        state.config.download_base, state.config.cado_host_version
    );
    Json(json!({"data": {"download_url": url, "version": state.config.cado_host_version}}))
        .into_response()
}

#[derive(Deserialize)]
struct ProjectQuery {
    project_id: Option<String>,
}

async fn pipelines(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ProjectQuery>,
) -> Response {
    if let Some(r) = unauthorized(&headers, &state.config.api_key) {
        return r;
    }
    let Some(project_id) = q.project_id.as_deref().and_then(|p| p.parse::<u64>().ok()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "project_id: a positive integer is required",
        );
    };
    if !state.config.projects.contains(&project_id) {
        return error(
            StatusCode::NOT_FOUND,
            format!("project {project_id} not found"),
        );
    }
    let now = chrono::Utc::now();
    let list: Vec<Value> = state
        .bucket
        .pipelines(project_id)
        .iter()
        .map(|p| {
            json!({
                "pipeline_id": p.pipeline_id,
                "project_id": p.project_id,
                "pipeline_type": "processing",
                "status": p.status(now, state.config.pipeline_processing),
                "hostname": p.hostname,
                "evidence_name": p.evidence_name,
                "created": bucket::rfc3339(p.created),
            })
        })
        .collect();
    Json(json!({"pipelines": list})).into_response()
}

async fn list_bucket(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"bucket": state.bucket.name(), "captures": state.bucket.captures()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutCapture {
    key: String,
    #[serde(default)]
    size: u64,
    hostname: String,
    #[serde(default)]
    device_id: String,
}

async fn put_bucket(
    State(state): State<AppState>,
    Json(put): Json<PutCapture>,
) -> (StatusCode, Json<Capture>) {
    let capture = state
        .bucket
        .put_capture(&put.key, put.size, &put.hostname, &put.device_id);
    (StatusCode::CREATED, Json(capture))
}

async fn requests(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"requests": state.counts.snapshot()}))
}

impl std::fmt::Debug for CadoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CadoServer")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("bucket", &self.bucket.name())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_api_key() {
        let config = CadoConfig {
            api_key: "k3y-value".into(),
            ..CadoConfig::default()
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("k3y-value") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
