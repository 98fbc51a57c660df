//! Retries, backoff, rate limits, idempotency, raw escape hatch, catch-all.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use falcon_sdk::iocs::{Action, IocType, NewIndicator};
use falcon_sdk::{Envelope, Error, StatusCode};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const IDS: &str = "/devices/queries/devices/v1";

fn ok_ids() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(envelope(json!(["a", "b"])))
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({
            "meta": {"trace_id": "t503"}, "errors": [{"code": 503, "message": "unavailable"}]
        })))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ok_ids())
        .expect(1)
        .mount(&server)
        .await;
    let page = client.hosts().query().send().await.unwrap();
    assert_eq!(page.items, vec!["a", "b"]);
    assert_eq!(client.rate_limit().retries, 2);
    assert_eq!(hits(&server, IDS).await, 3);
}

#[tokio::test]
async fn exhausted_retry_budget_is_a_typed_error() {
    let (server, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "meta": {"trace_id": "trace-500"},
            "errors": [{"code": 500, "message": "Internal Server Error: Please provide trace-id='trace-500' to support"}]
        })))
        .expect(3)
        .mount(&server)
        .await;
    let client = builder(&server)
        .configure(|s| s.max_attempts = 3)
        .build()
        .unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    match &err {
        Error::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert_eq!(last.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(err.trace_id(), Some("trace-500"));
}

#[tokio::test]
async fn total_retry_time_is_bounded() {
    let (server, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let client = builder(&server)
        .configure(|s| {
            s.max_attempts = 1000;
            s.initial_backoff = Duration::from_millis(100);
            s.max_backoff = Duration::from_millis(100);
            s.max_retry_time = Duration::from_millis(500);
        })
        .build()
        .unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    // 100 ms backoffs within a 500 ms budget: the budget, not the 1,000 attempts, stops the loop (the
    // last wait that would cross it is not taken). Counted, not timed: CI machines are slow.
    match err {
        Error::RetriesExhausted { attempts, .. } => {
            assert!((2..=6).contains(&attempts), "attempts {attempts}");
            assert_eq!(hits(&server, IDS).await, attempts as usize);
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}

#[tokio::test]
async fn a_429_waits_until_the_epoch_retry_after() {
    let (server, _) = setup().await;
    let client = builder(&server)
        .configure(|s| s.max_rate_limit_wait = Duration::from_secs(20))
        .build()
        .unwrap();
    let retry_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-Ratelimit-Limit", "6000")
                .insert_header("X-Ratelimit-Remaining", "0")
                .insert_header("X-Ratelimit-Retryafter", retry_at.to_string().as_str())
                .set_body_json(json!({"meta": {}, "errors": [{"code": 429, "message": "API rate limit exceeded."}]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(
            ok_ids()
                .insert_header("X-Ratelimit-Limit", "6000")
                .insert_header("X-Ratelimit-Remaining", "5999"),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    client.hosts().query().send().await.unwrap();
    let waited = started.elapsed();
    // Read as epoch seconds: about 1-2 s. Read as a delay it would be capped at 20 s; ignored, ~10 ms.
    assert!(waited >= Duration::from_millis(900), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    let rl = client.rate_limit();
    assert_eq!(rl.throttled_responses, 1);
    assert_eq!(rl.limit, Some(6000));
    assert_eq!(rl.remaining, Some(5999));
    assert_eq!(
        rl.retry_after
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        retry_at
    );
}

/// Paused, held clock: the first call's 429 starts a 60 s cooldown; a second call made during it does not
/// reach the server until simulated time passes it (synchronised on the client's state, not on sleeps).
#[tokio::test(start_paused = true)]
async fn a_429_cooldown_is_shared_by_concurrent_calls() {
    let _clock = hold_clock();
    let (server, _) = setup().await;
    let client = builder(&server)
        .configure(|s| s.max_rate_limit_wait = Duration::from_secs(120))
        .build()
        .unwrap();
    let retry_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    Mock::given(method("GET"))
        .and(path(IDS))
        .and(query_param("filter", "first"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-Ratelimit-Retryafter", retry_at.to_string().as_str())
                .set_body_json(json!({"errors": [{"code": 429, "message": "rate limited"}]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ok_ids())
        .mount(&server)
        .await;
    let c1 = client.clone();
    let first = tokio::spawn(async move { c1.hosts().query().filter("first").send().await });
    while !client.rate_limit().cooling_down {
        real_pause().await;
    }
    let c2 = client.clone();
    let second = tokio::spawn(async move { c2.hosts().query().filter("second").send().await });
    for _ in 0..4 {
        real_pause().await;
    }
    assert!(
        !second.is_finished(),
        "the second call went through the cooldown"
    );
    assert_eq!(hits(&server, IDS).await, 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(hits(&server, IDS).await, 3);
}

/// Review s4: the client secret must not travel in clear text to a remote host.
#[test]
fn plain_http_is_refused_for_a_remote_host_unless_allowed() {
    let b = || {
        falcon_sdk::FalconClient::builder()
            .client_id("id")
            .client_secret(secrecy::SecretString::from(SECRET))
    };
    let err = b()
        .base_url("http://falcon-proxy.example:8080")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("plain http is refused"), "{err}");
    assert!(!err.to_string().contains(SECRET));
    let err = b()
        .region_url(falcon_sdk::Region::Eu1, "http://10.0.0.5".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("10.0.0.5"), "{err}");
    b().base_url("http://falcon-proxy.example:8080")
        .allow_insecure_http(true)
        .build()
        .unwrap();
    for ok in [
        "http://127.0.0.1:9",
        "http://[::1]:9",
        "http://localhost:9",
        "https://proxy.example",
    ] {
        b().base_url(ok).build().unwrap();
    }
}

/// Review m2: a success body larger than the cap is an error, not an unbounded buffer.
#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let (server, _) = setup().await;
    let client = builder(&server)
        .configure(|s| s.max_response_bytes = 1024)
        .build()
        .unwrap();
    let ids: Vec<String> = (0..200).map(|i| format!("aid-{i:04}")).collect();
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!(ids))))
        .mount(&server)
        .await;
    let err = client.hosts().query().send().await.unwrap_err();
    assert!(
        matches!(err, Error::BodyTooLarge { limit: 1024, .. }),
        "{err:?}"
    );
}

/// Review m2: an error body is read through a 64 KiB cap; the excerpt stays short.
#[tokio::test]
async fn a_huge_error_body_is_read_through_a_cap() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ResponseTemplate::new(400).set_body_string("x".repeat(5 * 1024 * 1024)))
        .mount(&server)
        .await;
    let err = client.hosts().query().send().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    let shown = format!("{:?}", err);
    assert!(shown.len() < 4096, "{} bytes", shown.len());
}

#[tokio::test]
async fn low_remaining_budget_slows_calls_down() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .respond_with(ok_ids().insert_header("X-RateLimit-Remaining", "3"))
        .mount(&server)
        .await;
    client.hosts().query().send().await.unwrap();
    assert_eq!(client.rate_limit().slowdowns, 0);
    let t = Instant::now();
    client.hosts().query().send().await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(client.rate_limit().slowdowns, 1);
    assert_eq!(client.rate_limit().remaining, Some(3));
}

#[tokio::test]
async fn non_idempotent_calls_are_not_retried_after_a_5xx() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path("/iocs/entities/indicators/v1"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"errors": [{"code": 500, "message": "boom"}]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client
        .iocs()
        .create(vec![NewIndicator::new(
            IocType::Domain,
            "evil.example",
            Action::Detect,
        )])
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(matches!(err, Error::Api { .. }));
}

#[tokio::test]
async fn non_idempotent_calls_are_retried_after_a_429() {
    let (server, client) = setup().await;
    let retry_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Mock::given(method("POST"))
        .and(path("/iocs/entities/indicators/v1"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-RateLimit-RetryAfter", retry_at.to_string().as_str())
                .set_body_json(json!({"errors": [{"code": 429, "message": "slow down"}]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/iocs/entities/indicators/v1"))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([
            {"id": "i1", "type": "domain", "value": "evil.example", "action": "detect"}
        ]))))
        .expect(1)
        .mount(&server)
        .await;
    let report = client
        .iocs()
        .create(vec![NewIndicator::new(
            IocType::Domain,
            "evil.example",
            Action::Detect,
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(report.written.len(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported_not_sent() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = falcon_sdk::FalconClient::builder()
        .client_id("id")
        .client_secret(secrecy::SecretString::from(SECRET))
        .base_url(format!("http://{addr}"))
        .configure(|s| {
            s.max_attempts = 2;
            s.initial_backoff = Duration::from_millis(5);
        })
        .build()
        .unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    match &err {
        Error::RetriesExhausted {
            attempts: 2, last, ..
        } => assert!(last.is_not_sent(), "{last:?}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unmatched_routes_are_named_by_the_catch_all() {
    let (_server, client) = setup().await;
    let err = client.hosts().query().send().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::IM_A_TEAPOT));
    let chain = format!("{:?}", err);
    assert!(
        chain.contains("unmatched route: GET /devices/queries/devices/v1"),
        "{chain}"
    );
}

#[tokio::test]
async fn raw_escape_hatch_uses_the_same_stack() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/detects/queries/detects/v1"))
        .respond_with(
            ResponseTemplate::new(405)
                .set_body_json(json!({"errors": [{"code": 405, "message": "Method Not Allowed"}]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/spotlight/queries/vulnerabilities/v1"))
        .and(query_param("filter", "status:'open'"))
        .and(query_param("limit", "2"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/spotlight/queries/vulnerabilities/v1"))
        .respond_with(ok_ids())
        .mount(&server)
        .await;
    let err = client
        .get::<serde_json::Value>("/detects/queries/detects/v1", &[("limit", "1")])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::METHOD_NOT_ALLOWED));
    let env: Envelope<Vec<String>> = client
        .get(
            "/spotlight/queries/vulnerabilities/v1",
            &[("filter", "status:'open'"), ("limit", "2")],
        )
        .await
        .unwrap();
    assert_eq!(env.resources, vec!["a", "b"]);
    assert_eq!(env.meta.trace_id.as_deref(), Some("trace-ok"));
}

#[tokio::test]
async fn requests_carry_user_agent_and_bearer() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path(IDS))
        .and(wiremock::matchers::header(
            "user-agent",
            falcon_sdk::USER_AGENT,
        ))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ok_ids())
        .expect(1)
        .mount(&server)
        .await;
    client.hosts().query().send().await.unwrap();
}

#[tokio::test]
async fn a_token_failure_is_retried_even_for_non_idempotent_calls() {
    let server = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_token(&server, 1799, Some(1)).await;
    Mock::given(method("POST"))
        .and(path("/iocs/entities/indicators/v1"))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([
            {"id": "i1", "type": "domain", "value": "evil.example", "action": "detect"}
        ]))))
        .expect(1)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let report = client
        .iocs()
        .create(vec![NewIndicator::new(
            IocType::Domain,
            "evil.example",
            Action::Detect,
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(report.written.len(), 1);
    assert_eq!(client.rate_limit().retries, 1);
}
