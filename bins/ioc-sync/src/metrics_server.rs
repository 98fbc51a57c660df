//! The Prometheus endpoint (`/metrics`) and the liveness endpoint (`/healthz`) on
//! `METRICS_ADDR:METRICS_PORT`, served when `METRICS_ENABLE=true`.

use std::net::SocketAddr;

use tokio::task::JoinHandle;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use ioc_sync::config::Config;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Longest time without progress (a written batch or a heartbeat) before `/healthz` fails.
pub const STALL_LIMIT_SECS: i64 = 300;

/// Installs the recorder and serves the endpoints in the background; the task ends only if the
/// server fails (the caller supervises it).
pub async fn start(config: &Config) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    ioc_sync::metrics::describe();
    let addr = SocketAddr::new(config.metrics.addr, config.metrics.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, router(handle))
            .await
            .context("serving /metrics")
    });
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    Ok(task)
}

fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(healthz))
}

async fn healthz() -> (StatusCode, String) {
    let age = ioc_sync::engine::last_progress().map(|t| (chrono::Utc::now() - t).num_seconds());
    match age {
        Some(a) if a <= STALL_LIMIT_SECS => (
            StatusCode::OK,
            format!("{{\"status\":\"ok\",\"seconds_since_progress\":{a}}}"),
        ),
        Some(a) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{{\"status\":\"stalled\",\"seconds_since_progress\":{a}}}"),
        ),
        None => (StatusCode::OK, "{\"status\":\"starting\"}".to_string()),
    }
}
