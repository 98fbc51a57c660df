//! OAuth2 token and revoke, bearer-token checks, and the per-client sliding-window rate limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Form, Router};
use base64::Engine as _;
use serde_json::json;

use super::{Shared, wire};

const POWERED_BY: &str = "csam";
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub client_id: String,
    pub expires: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    pub tokens: RwLock<HashMap<String, Token>>,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
}

async fn token(State(sim): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let id = form
        .get("client_id")
        .map(String::as_str)
        .unwrap_or_default();
    let secret = form
        .get("client_secret")
        .map(String::as_str)
        .unwrap_or_default();
    if id.is_empty() || secret.is_empty() {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "client_id and client_secret are required",
        );
    }
    if id != sim.client_id || secret != sim.client_secret {
        return wire::error(
            StatusCode::FORBIDDEN,
            POWERED_BY,
            "access denied, authorization failed",
        );
    }
    let ttl = Duration::from_secs(sim.knobs().token_ttl_secs);
    let token = format!("eyJ{}", uuid::Uuid::new_v4().simple());
    let now = Instant::now();
    {
        let mut tokens = sim.auth.tokens.write().expect("token lock");
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            token.clone(),
            Token {
                client_id: id.to_string(),
                expires: now + ttl,
            },
        );
    }
    wire::json_response(
        StatusCode::CREATED,
        json!({"access_token": token, "expires_in": ttl.as_secs(), "token_type": "bearer"}),
    )
}

async fn revoke(
    State(sim): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("basic ")
                .or_else(|| v.strip_prefix("Basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!("{}:{}", sim.client_id, sim.client_secret);
    if basic.as_deref() != Some(expected.as_str()) {
        return wire::error(
            StatusCode::FORBIDDEN,
            POWERED_BY,
            "access denied, authorization failed",
        );
    }
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "token is required");
    };
    sim.auth.tokens.write().expect("token lock").remove(token);
    wire::ok(StatusCode::OK, POWERED_BY, json!([]))
}

/// The client id behind the request's bearer token, or `Err` for a missing, unknown or expired one.
pub(crate) fn authenticate(sim: &Shared, headers: &HeaderMap) -> Result<String, ()> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(())?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(())?
        .trim();
    let tokens = sim.auth.tokens.read().expect("token lock");
    let t = tokens.get(token).ok_or(())?;
    if t.expires <= Instant::now() {
        return Err(());
    }
    Ok(t.client_id.clone())
}

/// `X-RateLimit-*` values for one response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitHeaders {
    limit: u64,
    remaining: u64,
    retry_after_epoch: Option<u64>,
}

impl LimitHeaders {
    pub(crate) fn apply(&self, response: &mut Response) {
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        if let Some(at) = self.retry_after_epoch {
            h.insert("x-ratelimit-retryafter", HeaderValue::from(at));
        }
    }
}

/// Counts one request of `client_id` in its sliding 60 s window. `Err` when the window is full
/// (answer 429 with `X-RateLimit-RetryAfter` = epoch seconds when the oldest request leaves it).
pub(crate) fn rate_limit(sim: &Shared, client_id: &str) -> Result<LimitHeaders, LimitHeaders> {
    let Some(limit) = sim.knobs.read().expect("knobs lock").rate_limit_per_minute else {
        // Limit off: still advertise Falcon's figure so clients behave as in production.
        return Ok(LimitHeaders {
            limit: 6_000,
            remaining: 6_000,
            retry_after_epoch: None,
        });
    };
    let limit = u64::from(limit);
    let now = Instant::now();
    let mut windows = sim.auth.windows.lock().expect("rate limit lock");
    let window = windows.entry(client_id.to_string()).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        window.pop_front();
    }
    if window.len() as u64 >= limit {
        let oldest = *window.front().expect("full window");
        let wait = WINDOW.saturating_sub(now.duration_since(oldest));
        let at = chrono::Utc::now().timestamp() as u64 + wait.as_secs_f64().ceil().max(1.0) as u64;
        return Err(LimitHeaders {
            limit,
            remaining: 0,
            retry_after_epoch: Some(at),
        });
    }
    window.push_back(now);
    Ok(LimitHeaders {
        limit,
        remaining: limit - window.len() as u64,
        retry_after_epoch: None,
    })
}
