//! Token caching, refresh (expiry, 401), single flight, region autodiscovery, revoke.

use std::time::Duration;

use falcon_sdk::{Region, StatusCode};
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

async fn mount_ids(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/devices/queries/devices/v1"))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!(["a"]))))
        .mount(server)
        .await;
}

#[tokio::test]
async fn token_is_cached_across_calls_and_sent_as_form_fields() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("client_id=my-client-id"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("member_cid=child-cid"))
        .respond_with(token_response(1799))
        .expect(1)
        .mount(&server)
        .await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server).member_cid("child-cid").build().unwrap();
    for _ in 0..3 {
        let page = client.hosts().query().send().await.unwrap();
        assert_eq!(page.items, vec!["a".to_string()]);
    }
    assert_eq!(client.token_fetches(), 1);
}

#[tokio::test]
async fn absurd_expires_in_is_capped_not_a_panic() {
    let server = MockServer::start().await;
    mount_token(&server, u64::MAX, Some(1)).await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    client.hosts().query().send().await.unwrap();
    client.hosts().query().send().await.unwrap();
    assert_eq!(client.token_fetches(), 1);
}

#[tokio::test(start_paused = true)]
async fn token_is_refreshed_before_expiry() {
    let _clock = hold_clock();
    let server = MockServer::start().await;
    // 1,799 s lifetime, renewed 120 s before it expires.
    mount_token(&server, 1799, Some(2)).await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    client.hosts().query().send().await.unwrap();
    tokio::time::advance(Duration::from_secs(1600)).await;
    client.hosts().query().send().await.unwrap();
    assert_eq!(client.token_fetches(), 1);
    tokio::time::advance(Duration::from_secs(100)).await;
    client.hosts().query().send().await.unwrap();
    assert_eq!(client.token_fetches(), 2);
}

/// Review m4: a failing renewal must not drop the still-valid token; it is used until its real expiry.
#[tokio::test(start_paused = true)]
async fn a_failed_renewal_keeps_the_current_token_until_it_really_expires() {
    let _clock = hold_clock();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(token_response(1799))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server)
        .configure(|s| s.max_attempts = 1)
        .build()
        .unwrap();
    client.hosts().query().send().await.unwrap();
    // Inside the refresh buffer: the renewal fails, the current token still works.
    tokio::time::advance(Duration::from_secs(1700)).await;
    let page = client.hosts().query().send().await.unwrap();
    assert_eq!(page.items, vec!["a".to_string()]);
    assert_eq!(hits(&server, "/oauth2/token").await, 2);
    // Past the real expiry the failure is reported.
    tokio::time::advance(Duration::from_secs(100)).await;
    let err = client.hosts().query().send().await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "{err:?}"
    );
    assert_eq!(hits(&server, "/devices/queries/devices/v1").await, 2);
}

/// Review m4: callers queued behind a failing token request share its error instead of each
/// re-running it; after the window a new request is made.
#[tokio::test(start_paused = true)]
async fn a_failed_token_request_is_shared_with_its_waiters() {
    let _clock = hold_clock();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(100)))
        .mount(&server)
        .await;
    catch_all(&server).await;
    let client = builder(&server)
        .configure(|s| s.max_attempts = 1)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.hosts().query().send().await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(
            err.status(),
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "{err:?}"
        );
    }
    assert_eq!(hits(&server, "/oauth2/token").await, 1);
    // A caller arriving within the window shares it too; after the window, a new request is made.
    client.hosts().query().send().await.unwrap_err();
    assert_eq!(hits(&server, "/oauth2/token").await, 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    client.hosts().query().send().await.unwrap_err();
    assert_eq!(hits(&server, "/oauth2/token").await, 2);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let server = MockServer::start().await;
    mount_token(&server, 1799, Some(2)).await;
    Mock::given(method("GET"))
        .and(path("/devices/queries/devices/v1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "meta": {"trace_id": "t401"}, "errors": [{"code": 401, "message": "access denied, invalid bearer token"}]
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let page = client.hosts().query().send().await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(client.token_fetches(), 2);
}

#[tokio::test]
async fn a_persistent_401_is_an_error_after_one_refresh() {
    let server = MockServer::start().await;
    mount_token(&server, 1799, Some(2)).await;
    Mock::given(method("GET"))
        .and(path("/devices/queries/devices/v1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "meta": {"trace_id": "t401"}, "errors": [{"code": 401, "message": "access denied"}]
        })))
        .expect(2)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(err.trace_id(), Some("t401"));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn fifty_concurrent_calls_share_one_token_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(token_response(1799).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.hosts().query().send().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().items.len(), 1);
    }
    assert_eq!(client.token_fetches(), 1);
    assert_eq!(hits(&server, "/devices/queries/devices/v1").await, 50);
}

#[tokio::test]
async fn auto_cloud_follows_x_cs_region_and_revokes_the_discovery_token() {
    let us1 = MockServer::start().await;
    let us2 = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(token_response(1799).insert_header("X-Cs-Region", "us-2"))
        .expect(1)
        .mount(&us1)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth2/revoke"))
        .and(body_string_contains(
            format!("token={ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .expect(1)
        .mount(&us1)
        .await;
    catch_all(&us1).await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(token_response(1799).insert_header("X-Cs-Region", "us-2"))
        .expect(1)
        .mount(&us2)
        .await;
    mount_ids(&us2).await;
    catch_all(&us2).await;
    let client = builder(&us1)
        .cloud(falcon_sdk::Cloud::Auto)
        .region_url(Region::Us1, us1.uri().parse().unwrap())
        .region_url(Region::Us2, us2.uri().parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(client.region(), Some(Region::Us1));
    client.hosts().query().send().await.unwrap();
    client.hosts().query().send().await.unwrap();
    assert_eq!(client.region(), Some(Region::Us2));
    assert_eq!(client.base_url().as_str().trim_end_matches('/'), us2.uri());
    assert_eq!(hits(&us2, "/devices/queries/devices/v1").await, 2);
    assert_eq!(hits(&us1, "/devices/queries/devices/v1").await, 0);
}

#[tokio::test]
async fn an_explicit_base_url_ignores_x_cs_region() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(token_response(1799).insert_header("X-Cs-Region", "eu-1"))
        .expect(1)
        .mount(&server)
        .await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server)
        .region_url(Region::Eu1, "http://127.0.0.1:9".parse().unwrap())
        .build()
        .unwrap();
    client.hosts().query().send().await.unwrap();
    client.hosts().query().send().await.unwrap();
    assert_eq!(
        client.base_url().as_str().trim_end_matches('/'),
        server.uri()
    );
    assert_eq!(hits(&server, "/devices/queries/devices/v1").await, 2);
}

#[tokio::test]
async fn token_request_does_not_follow_redirects() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(308).insert_header(
            "Location",
            format!("{}/oauth2/token", elsewhere.uri()).as_str(),
        ))
        .mount(&server)
        .await;
    mount_token(&elsewhere, 1799, Some(0)).await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    assert!(matches!(err, falcon_sdk::Error::Auth { .. }), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::PERMANENT_REDIRECT));
}

#[tokio::test]
async fn bad_credentials_are_an_auth_error_with_falcon_details() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "meta": {"trace_id": "trace-403", "powered_by": "csam"},
            "errors": [{"code": 403, "message": "access denied, authorization failed"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    assert!(matches!(err, falcon_sdk::Error::Auth { .. }));
    assert!(!err.is_retryable());
    assert_eq!(err.trace_id(), Some("trace-403"));
    assert_eq!(
        err.api_errors()[0].message,
        "access denied, authorization failed"
    );
}

#[tokio::test]
async fn revoke_posts_the_token_and_forgets_it() {
    let (server, client) = setup().await;
    mount_ids(&server).await;
    Mock::given(method("POST"))
        .and(path("/oauth2/revoke"))
        .and(header(
            "authorization",
            "Basic bXktY2xpZW50LWlkOnN1cGVyLXNlY3JldC12YWx1ZS00Mg==",
        ))
        .and(body_string_contains(
            format!("token={ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .expect(1)
        .mount(&server)
        .await;
    client.hosts().query().send().await.unwrap();
    client.revoke().await.unwrap();
    client.hosts().query().send().await.unwrap();
    assert_eq!(client.token_fetches(), 2);
}

#[tokio::test]
async fn concurrent_401s_cause_a_single_refresh() {
    let server = MockServer::start().await;
    mount_token(&server, 1799, Some(2)).await;
    // The first 20 API calls are rejected (token revoked server-side), then the new token works.
    Mock::given(method("GET"))
        .and(path("/devices/queries/devices/v1"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"errors": [{"code": 401, "message": "access denied, invalid bearer token"}]}))
                .set_delay(Duration::from_millis(50)),
        )
        .up_to_n_times(20)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ids(&server).await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.hosts().query().send().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().items.len(), 1);
    }
    assert_eq!(client.token_fetches(), 2);
}
