//! Shared helpers: a mock Falcon with a token endpoint and a catch-all that names unmatched routes.

use std::time::Duration;

use falcon_sdk::FalconClient;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const SECRET: &str = "super-secret-value-42";
pub const ACCESS_TOKEN: &str = "access-token-abcdef-123";

pub fn token_response(ttl: u64) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "access_token": ACCESS_TOKEN, "expires_in": ttl, "token_type": "bearer"
    }))
}

/// Token endpoint answering 201 with `ttl` seconds of lifetime, expected `times` times (if given).
pub async fn mount_token(server: &MockServer, ttl: u64, times: Option<u64>) {
    let m = Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(token_response(ttl));
    let m = match times {
        Some(n) => m.expect(n),
        None => m,
    };
    m.mount(server).await;
}

/// Catch-all that names the unmatched route, so a wrong path fails loudly.
pub async fn catch_all(server: &MockServer) {
    Mock::given(wiremock::matchers::any())
        .respond_with(|req: &Request| {
            ResponseTemplate::new(418).set_body_string(format!(
                "unmatched route: {} {}",
                req.method,
                req.url.path()
            ))
        })
        .with_priority(u8::MAX)
        .mount(server)
        .await;
}

pub fn builder(server: &MockServer) -> falcon_sdk::FalconClientBuilder {
    FalconClient::builder()
        .client_id("my-client-id")
        .client_secret(SecretString::from(SECRET))
        .base_url(server.uri())
        .configure(|s| {
            s.initial_backoff = Duration::from_millis(10);
            s.max_backoff = Duration::from_millis(40);
        })
}

/// A mock server with a token endpoint and catch-all, and a client on it with fast retries.
pub async fn setup() -> (MockServer, FalconClient) {
    let server = MockServer::start().await;
    mount_token(&server, 1799, None).await;
    catch_all(&server).await;
    let client = builder(&server).build().expect("client");
    (server, client)
}

pub fn envelope(resources: Value) -> Value {
    json!({
        "meta": {"query_time": 0.01, "powered_by": "test", "trace_id": "trace-ok"},
        "errors": [],
        "resources": resources
    })
}

pub fn paged(resources: Value, pagination: Value) -> Value {
    json!({
        "meta": {"query_time": 0.01, "trace_id": "trace-ok", "pagination": pagination},
        "errors": null,
        "resources": resources
    })
}

pub fn query_value(req: &Request, key: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Number of requests the server received on `path`.
pub async fn hits(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

/// Holds a paused clock: auto-advance is inhibited (a parked blocking task counts as work), because
/// auto-advance would jump to the HTTP client's timeouts while a loopback response is in flight. Time
/// moves only through `tokio::time::advance`. Use inside `#[tokio::test(start_paused = true)]`.
pub struct HeldClock {
    stop: Option<std::sync::mpsc::Sender<()>>,
}

pub fn hold_clock() -> HeldClock {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    HeldClock { stop: Some(tx) }
}

impl Drop for HeldClock {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// Lets other tasks and the loopback server run for a moment of real time without moving a held clock.
pub async fn real_pause() {
    let _ = tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50))).await;
}
