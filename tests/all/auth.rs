//! Token expiry, injected 429s and the simulator's rate limit: the SDK's auth and retry stack
//! against the sandbox.

use std::time::{Duration, Instant};

use falcon_sdk::RetryKind;
use serde_json::json;

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_renewed_once() {
    let sb = common::start(common::config(20, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);
    let page = client
        .hosts()
        .query()
        .limit(5)
        .send()
        .await
        .expect("first call");
    assert_eq!(page.items.len(), 5);
    assert_eq!(common::falcon_requests(info, "POST /oauth2/token").await, 1);

    let expired = common::post(
        format!("{}/_sandbox/tokens/expire", info.falcon_url),
        json!({}),
    )
    .await;
    assert_eq!(expired["expired"], 1);
    // The cached token is now refused with 401; the SDK logs in again and retries the call.
    let page = client
        .hosts()
        .query()
        .limit(5)
        .send()
        .await
        .expect("after expiry");
    assert_eq!(page.items.len(), 5);
    assert_eq!(common::falcon_requests(info, "POST /oauth2/token").await, 2);
    // Concurrent calls after another expiry share one renewal.
    common::post(
        format!("{}/_sandbox/tokens/expire", info.falcon_url),
        json!({}),
    )
    .await;
    let calls = (0..8).map(|_| {
        let c = client.clone();
        async move { c.hosts().query().limit(1).send().await }
    });
    for r in futures::future::join_all(calls).await {
        r.expect("concurrent call after expiry");
    }
    assert_eq!(common::falcon_requests(info, "POST /oauth2/token").await, 3);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_429s_are_waited_out() {
    let sb = common::start(common::config(50, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);
    client
        .hosts()
        .query()
        .limit(1)
        .send()
        .await
        .expect("warm-up");
    common::post(
        format!("{}/_sandbox/faults", info.falcon_url),
        json!({"throttle_rate": 0.3, "throttle_retry_after_secs": 1}),
    )
    .await;
    let started = Instant::now();
    for _ in 0..12 {
        let page = client
            .hosts()
            .query()
            .limit(10)
            .send()
            .await
            .expect("call under 429s");
        assert_eq!(page.items.len(), 10);
    }
    let faults = common::get(format!("{}/_sandbox/faults", info.falcon_url)).await;
    let injected = faults["injected"]["throttles"].as_u64().unwrap();
    let snap = client.rate_limit();
    assert!(injected > 0, "no 429 injected: the test proves nothing");
    assert_eq!(
        snap.throttled_responses, injected,
        "every 429 seen by the SDK"
    );
    assert!(snap.retries >= injected);
    // Each 429 says "retry in about 1 s"; the SDK waits it out, not for decades.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_exhaustion_is_bounded() {
    let mut config = common::config(50, 10);
    config.falcon.rate_limit_per_minute = Some(8);
    let sb = common::start(config).await;
    let info = sb.info();
    let client = common::falcon_with(info, |s| {
        s.max_rate_limit_wait = Duration::from_secs(1);
        s.max_retry_time = Duration::from_secs(3);
    });
    let started = Instant::now();
    let mut ok = 0;
    let err = loop {
        match client.hosts().query().limit(1).send().await {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok <= 8, "the simulator's limit of 8/min was not enforced");
    };
    assert_eq!(ok, 8, "calls allowed before the limit");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429), "{err:#}");
    assert_eq!(err.retry_kind(), RetryKind::Throttled);
    assert!(err.retry_after().is_some(), "RetryAfter hint lost");
    // Retrying is bounded by max_retry_time (3 s) even though the window frees up only in ~60 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let snap = client.rate_limit();
    assert_eq!(snap.remaining, Some(0));
    assert!(snap.throttled_responses >= 2, "the 429 was not retried");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_base_url_ignores_the_region_header() {
    let sb = common::start(common::config(20, 10)).await;
    let info = sb.info();
    // Real Falcon answers `X-Cs-Region: us-1` (lower case) or another region's name.
    common::post(
        format!("{}/_sandbox/knobs", info.falcon_url),
        json!({"region": "eu-1"}),
    )
    .await;
    let client = common::falcon(info);
    let before = client.base_url();
    let page = client.hosts().query().limit(3).send().await.expect("call");
    assert_eq!(page.items.len(), 3);
    assert_eq!(
        client.base_url(),
        before,
        "the client moved away from the sandbox"
    );
    assert_eq!(
        common::falcon_requests(info, "POST /oauth2/revoke").await,
        0
    );
    sb.shutdown().await;
}
