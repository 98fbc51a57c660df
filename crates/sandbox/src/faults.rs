//! Fault injection shared by the three simulators: 5xx and 429 at a rate, added latency, streams
//! closed every K events, stalled streams.
//!
//! Each server owns one [`Faults`] (cheap to clone, shared by its handlers). Request faults are
//! applied by [`middleware`] (or by a server's own middleware calling [`Faults::decide`] to answer in
//! its own error envelope); stream faults are read by the streaming handlers through
//! [`Faults::config`] (`close_stream_every`, `stall_stream_after`). The knobs change at run time
//! through the control routes of [`routes`]:
//!
//! - `GET /_sandbox/faults` returns `{"config": FaultConfig, "injected": FaultCounts}`;
//! - `POST /_sandbox/faults` takes a partial [`FaultConfig`] (missing fields keep their value, `null`
//!   clears an optional knob) and returns the same document as `GET`;
//! - `DELETE /_sandbox/faults` resets every knob to "no faults".
//!
//! Control routes (`/_sandbox/...`) are never subject to faults.
//!
//! ```
//! use sandbox::faults::{FaultConfig, Faults};
//! let faults = Faults::new(FaultConfig { error_rate: 0.1, ..FaultConfig::default() }, 7);
//! let injected = (0..1000).filter(|_| faults.decide().is_some()).count();
//! assert!(injected > 50 && injected < 150);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Fault knobs. `Default` injects nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    /// Share of requests (0.0 to 1.0) answered with [`FaultConfig::error_status`].
    pub error_rate: f64,
    /// Status used for injected server errors (default 503; 500, 502, 504 are also useful).
    pub error_status: u16,
    /// Share of requests (0.0 to 1.0) answered 429 Too Many Requests.
    pub throttle_rate: f64,
    /// Seconds a client is told to wait after an injected 429 (default 1).
    pub throttle_retry_after_secs: u64,
    /// Latency added to every request, in milliseconds.
    pub latency_ms: u64,
    /// Streams are closed by the server after this many events (then the client must reconnect).
    pub close_stream_every: Option<u64>,
    /// Streams stop sending anything (connection kept open, no heartbeats) after this many events.
    pub stall_stream_after: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_status: 503,
            throttle_rate: 0.0,
            throttle_retry_after_secs: 1,
            latency_ms: 0,
            close_stream_every: None,
            stall_stream_after: None,
        }
    }
}

/// A partial update of [`FaultConfig`], the body of `POST /_sandbox/faults`.
///
/// Missing fields keep their value; for the optional stream knobs an explicit `null` clears them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    /// See [`FaultConfig::error_rate`].
    pub error_rate: Option<f64>,
    /// See [`FaultConfig::error_status`].
    pub error_status: Option<u16>,
    /// See [`FaultConfig::throttle_rate`].
    pub throttle_rate: Option<f64>,
    /// See [`FaultConfig::throttle_retry_after_secs`].
    pub throttle_retry_after_secs: Option<u64>,
    /// See [`FaultConfig::latency_ms`].
    pub latency_ms: Option<u64>,
    /// See [`FaultConfig::close_stream_every`] (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    pub close_stream_every: Option<Option<u64>>,
    /// See [`FaultConfig::stall_stream_after`] (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    pub stall_stream_after: Option<Option<u64>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

impl FaultPatch {
    /// Applies the patch to `config`.
    pub fn apply(&self, config: &mut FaultConfig) {
        if let Some(v) = self.error_rate {
            config.error_rate = v.clamp(0.0, 1.0);
        }
        if let Some(v) = self.error_status {
            config.error_status = v;
        }
        if let Some(v) = self.throttle_rate {
            config.throttle_rate = v.clamp(0.0, 1.0);
        }
        if let Some(v) = self.throttle_retry_after_secs {
            config.throttle_retry_after_secs = v;
        }
        if let Some(v) = self.latency_ms {
            config.latency_ms = v;
        }
        if let Some(v) = self.close_stream_every {
            config.close_stream_every = v.filter(|k| *k > 0);
        }
        if let Some(v) = self.stall_stream_after {
            config.stall_stream_after = v;
        }
    }
}

/// A fault chosen for one request by [`Faults::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer with this server-error status.
    ServerError(StatusCode),
    /// Answer 429; the client may retry after this many seconds.
    Throttle {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

/// How many faults were injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Injected server errors.
    pub server_errors: u64,
    /// Injected 429s.
    pub throttles: u64,
    /// Streams closed by `close_stream_every`.
    pub streams_closed: u64,
    /// Streams stalled by `stall_stream_after`.
    pub streams_stalled: u64,
}

#[derive(Debug)]
struct Inner {
    config: RwLock<FaultConfig>,
    rng: Mutex<StdRng>,
    server_errors: AtomicU64,
    throttles: AtomicU64,
    streams_closed: AtomicU64,
    streams_stalled: AtomicU64,
}

/// The fault state of one server. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(FaultConfig::default(), 0)
    }
}

impl Faults {
    /// Fault state starting from `config`, with random draws seeded by `seed`.
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Faults {
            inner: Arc::new(Inner {
                config: RwLock::new(config),
                rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xFA17)),
                server_errors: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                streams_closed: AtomicU64::new(0),
                streams_stalled: AtomicU64::new(0),
            }),
        }
    }

    /// The current knobs.
    pub fn config(&self) -> FaultConfig {
        self.inner.config.read().expect("fault config lock").clone()
    }

    /// Replaces every knob.
    pub fn set(&self, config: FaultConfig) {
        *self.inner.config.write().expect("fault config lock") = config;
    }

    /// Applies a partial update and returns the resulting knobs.
    pub fn update(&self, patch: &FaultPatch) -> FaultConfig {
        let mut config = self.inner.config.write().expect("fault config lock");
        patch.apply(&mut config);
        config.clone()
    }

    /// Counts of injected faults.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            server_errors: self.inner.server_errors.load(Ordering::Relaxed),
            throttles: self.inner.throttles.load(Ordering::Relaxed),
            streams_closed: self.inner.streams_closed.load(Ordering::Relaxed),
            streams_stalled: self.inner.streams_stalled.load(Ordering::Relaxed),
        }
    }

    /// The latency to add to the current request.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(
            self.inner
                .config
                .read()
                .expect("fault config lock")
                .latency_ms,
        )
    }

    /// Draws the fault (if any) for one request and counts it.
    pub fn decide(&self) -> Option<Injected> {
        let config = self.inner.config.read().expect("fault config lock");
        if config.error_rate <= 0.0 && config.throttle_rate <= 0.0 {
            return None;
        }
        let draw: f64 = self.inner.rng.lock().expect("fault rng lock").random();
        if draw < config.error_rate {
            self.inner.server_errors.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(config.error_status)
                .ok()
                .filter(|s| s.is_server_error())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Some(Injected::ServerError(status))
        } else if draw < config.error_rate + config.throttle_rate {
            self.inner.throttles.fetch_add(1, Ordering::Relaxed);
            Some(Injected::Throttle {
                retry_after_secs: config.throttle_retry_after_secs,
            })
        } else {
            None
        }
    }

    /// What a stream must do after it has sent `sent` events on the current connection.
    ///
    /// Streaming handlers call it after each event; it counts the faults it reports.
    pub fn stream_action(&self, sent: u64) -> StreamAction {
        let config = self.inner.config.read().expect("fault config lock");
        if config.stall_stream_after.is_some_and(|k| sent >= k) {
            self.inner.streams_stalled.fetch_add(1, Ordering::Relaxed);
            return StreamAction::Stall;
        }
        if config
            .close_stream_every
            .is_some_and(|k| k > 0 && sent >= k)
        {
            self.inner.streams_closed.fetch_add(1, Ordering::Relaxed);
            return StreamAction::Close;
        }
        StreamAction::Continue
    }
}

/// What a streaming handler does next (see [`Faults::stream_action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAction {
    /// Keep streaming.
    Continue,
    /// End the response now (the client sees the connection close).
    Close,
    /// Send nothing more, keep the connection open (the client must time out).
    Stall,
}

/// The generic answer to an injected fault: status, JSON `{"errors":[{"code","message"}]}`, and for
/// 429 a `Retry-After` header. Servers with their own error envelope build their own.
pub fn generic_response(injected: Injected) -> Response {
    match injected {
        Injected::ServerError(status) => (
            status,
            Json(serde_json::json!({"errors": [{"code": status.as_u16(), "message": "injected fault: server error"}]})),
        )
            .into_response(),
        Injected::Throttle { retry_after_secs } => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({"errors": [{"code": 429, "message": "injected fault: too many requests"}]})),
            )
                .into_response();
            response.headers_mut().insert("retry-after", HeaderValue::from(retry_after_secs));
            response
        }
    }
}

/// True for the control routes, which faults never touch.
pub fn is_control_path(path: &str) -> bool {
    path.starts_with("/_sandbox/") || path == "/_sandbox"
}

/// Axum middleware applying latency and request faults with [`generic_response`]:
/// `router.layer(axum::middleware::from_fn_with_state(faults.clone(), sandbox::faults::middleware))`.
pub async fn middleware(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    if is_control_path(request.uri().path()) {
        return next.run(request).await;
    }
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(injected) = faults.decide() {
        return generic_response(injected);
    }
    next.run(request).await
}

/// The `/_sandbox/faults` control routes (GET, POST, DELETE), to merge into a server's router.
pub fn routes(faults: Faults) -> Router {
    Router::new()
        .route(
            "/_sandbox/faults",
            get(get_faults).post(post_faults).delete(delete_faults),
        )
        .with_state(faults)
}

#[derive(Serialize)]
struct FaultsDoc {
    config: FaultConfig,
    injected: FaultCounts,
}

async fn get_faults(State(faults): State<Faults>) -> Json<FaultsDoc> {
    Json(FaultsDoc {
        config: faults.config(),
        injected: faults.counts(),
    })
}

async fn post_faults(
    State(faults): State<Faults>,
    Json(patch): Json<FaultPatch>,
) -> Json<FaultsDoc> {
    let config = faults.update(&patch);
    Json(FaultsDoc {
        config,
        injected: faults.counts(),
    })
}

async fn delete_faults(State(faults): State<Faults>) -> Json<FaultsDoc> {
    faults.set(FaultConfig::default());
    Json(FaultsDoc {
        config: faults.config(),
        injected: faults.counts(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_by_default() {
        let faults = Faults::default();
        assert!((0..10_000).all(|_| faults.decide().is_none()));
        assert_eq!(faults.stream_action(1_000_000), StreamAction::Continue);
    }

    #[test]
    fn rates_are_respected_and_counted() {
        let faults = Faults::new(
            FaultConfig {
                error_rate: 0.2,
                throttle_rate: 0.3,
                ..FaultConfig::default()
            },
            1,
        );
        let draws: Vec<_> = (0..10_000).map(|_| faults.decide()).collect();
        let errors = draws
            .iter()
            .filter(|d| matches!(d, Some(Injected::ServerError(_))))
            .count();
        let throttles = draws
            .iter()
            .filter(|d| matches!(d, Some(Injected::Throttle { .. })))
            .count();
        assert!((1_700..2_300).contains(&errors), "{errors}");
        assert!((2_700..3_300).contains(&throttles), "{throttles}");
        let counts = faults.counts();
        assert_eq!(counts.server_errors as usize, errors);
        assert_eq!(counts.throttles as usize, throttles);
    }

    #[test]
    fn patch_keeps_missing_fields_and_null_clears() {
        let faults = Faults::new(
            FaultConfig {
                latency_ms: 5,
                close_stream_every: Some(3),
                ..FaultConfig::default()
            },
            1,
        );
        let patch: FaultPatch = serde_json::from_str(r#"{"error_rate": 2.0}"#).unwrap();
        let config = faults.update(&patch);
        assert_eq!(config.error_rate, 1.0, "rates are clamped");
        assert_eq!(config.latency_ms, 5);
        assert_eq!(config.close_stream_every, Some(3));
        let patch: FaultPatch = serde_json::from_str(r#"{"close_stream_every": null}"#).unwrap();
        assert_eq!(faults.update(&patch).close_stream_every, None);
        assert!(serde_json::from_str::<FaultPatch>(r#"{"eror_rate": 1}"#).is_err());
    }

    #[test]
    fn stream_actions() {
        let faults = Faults::new(
            FaultConfig {
                close_stream_every: Some(10),
                ..FaultConfig::default()
            },
            1,
        );
        assert_eq!(faults.stream_action(9), StreamAction::Continue);
        assert_eq!(faults.stream_action(10), StreamAction::Close);
        faults.update(&FaultPatch {
            stall_stream_after: Some(Some(5)),
            ..FaultPatch::default()
        });
        assert_eq!(faults.stream_action(5), StreamAction::Stall);
        assert_eq!(faults.counts().streams_closed, 1);
        assert_eq!(faults.counts().streams_stalled, 1);
    }
}
