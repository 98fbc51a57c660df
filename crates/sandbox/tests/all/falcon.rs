//! Falcon simulator: helpers shared by the `falcon*` modules, OAuth2, rate limit, faults, alerts.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use sandbox::falcon::FalconConfig;
use sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

/// A sandbox plus an authenticated HTTP client for its Falcon simulator.
pub struct Falcon {
    pub sb: Sandbox,
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Falcon {
    pub async fn start(falcon: FalconConfig) -> Falcon {
        let sb = Sandbox::start(SandboxConfig {
            seed: 7,
            falcon,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let url = sb.info().falcon_url.clone();
        let mut f = Falcon {
            sb,
            http,
            url,
            token: String::new(),
        };
        f.token = f.new_token().await;
        f
    }

    pub async fn new_token(&self) -> String {
        let info = self.sb.info();
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.url))
            .form(&[
                ("client_id", info.falcon_client_id.as_str()),
                ("client_secret", info.falcon_client_secret.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// GET with query pairs; returns (status, body).
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        parse(
            self.req(Method::GET, path)
                .query(query)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Value,
    ) -> (u16, Value) {
        parse(
            self.req(method, path)
                .query(query)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    /// Hosts from the control API: (device_id, platform_name, online).
    pub async fn hosts(&self) -> Vec<(String, String, bool)> {
        let v = self.control(Method::GET, "/_sandbox/hosts", None).await;
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["device_id"].as_str().unwrap().to_string(),
                    h["platform_name"].as_str().unwrap().to_string(),
                    h["online"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

pub async fn parse(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub fn ids(body: &Value) -> Vec<String> {
    body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn token_carries_region_expiry_and_rate_headers() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        ..FalconConfig::default()
    })
    .await;
    let info = f.sb.info();
    let r = f
        .http
        .post(format!("{}/oauth2/token", f.url))
        .form(&[
            ("client_id", info.falcon_client_id.as_str()),
            ("client_secret", info.falcon_client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-cs-region"], "US-1");
    assert!(r.headers().contains_key("x-cs-traceid"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], 1799);
    assert_eq!(body["token_type"], "bearer");

    let r = f
        .http
        .post(format!("{}/oauth2/token", f.url))
        .form(&[
            ("client_id", info.falcon_client_id.as_str()),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        "access denied, authorization failed"
    );

    let r = f
        .req(Method::GET, "/devices/queries/devices/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit"], "6000");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "5999");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["meta"]["trace_id"].as_str().unwrap().len(), 36);
    assert_eq!(body["errors"], json!([]));
}

#[tokio::test]
async fn unknown_expired_and_revoked_tokens_get_401() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        ..FalconConfig::default()
    })
    .await;
    let r = f
        .http
        .get(format!("{}/devices/queries/devices/v1", f.url))
        .bearer_auth("bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-ratelimit-limit"], "15");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        "access denied, invalid bearer token"
    );
    assert_eq!(body["errors"][0]["code"], 401);

    // A short-lived token expires by itself.
    f.control(
        Method::POST,
        "/_sandbox/knobs",
        Some(json!({"token_ttl_secs": 1})),
    )
    .await;
    let short = f.new_token().await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = f
        .http
        .get(format!("{}/devices/queries/devices/v1", f.url))
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Revoke needs basic auth and kills the token.
    let info = f.sb.info();
    let t = f.new_token().await;
    let r = f
        .http
        .post(format!("{}/oauth2/revoke", f.url))
        .basic_auth("x", Some("y"))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = f
        .http
        .post(format!("{}/oauth2/revoke", f.url))
        .basic_auth(&info.falcon_client_id, Some(&info.falcon_client_secret))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = f
        .http
        .get(format!("{}/devices/queries/devices/v1", f.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The control route expires every token at once.
    let r = f
        .req(Method::GET, "/devices/queries/devices/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    f.control(Method::POST, "/_sandbox/tokens/expire", None)
        .await;
    let r = f
        .req(Method::GET, "/devices/queries/devices/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn sliding_window_rate_limit_answers_429_with_epoch_retry_after() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        rate_limit_per_minute: Some(5),
        ..FalconConfig::default()
    })
    .await;
    for i in 0..5 {
        let r = f
            .req(Method::GET, "/devices/queries/devices/v1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            (4 - i).to_string().as_str()
        );
    }
    let r = f
        .req(Method::GET, "/devices/queries/devices/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let at: i64 = r.headers()["x-ratelimit-retryafter"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        at > now && at <= now + 61,
        "retry-after {at} is an epoch in the next minute (now {now})"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 429);

    // Turning the limit off at run time lets requests through.
    let k = f
        .control(
            Method::POST,
            "/_sandbox/knobs",
            Some(json!({"rate_limit_per_minute": null})),
        )
        .await;
    assert_eq!(k["rate_limit_per_minute"], Value::Null);
    let r = f
        .req(Method::GET, "/devices/queries/devices/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = f
        .http
        .post(format!("{}/_sandbox/knobs", f.url))
        .json(&json!({"no_such_knob": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn injected_faults_hit_the_api_not_the_control_routes() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        ..FalconConfig::default()
    })
    .await;
    f.control(
        Method::POST,
        "/_sandbox/faults",
        Some(json!({"error_rate": 1.0, "error_status": 500})),
    )
    .await;
    let (status, body) = f.get("/devices/queries/devices/v1", &[]).await;
    assert_eq!(status, 500);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("trace-id")
    );
    f.control(
        Method::POST,
        "/_sandbox/faults",
        Some(json!({"error_rate": 0.0, "throttle_rate": 1.0})),
    )
    .await;
    let r = f
        .req(Method::GET, "/devices/queries/devices/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("x-ratelimit-retryafter"));
    let faults = f.control(Method::GET, "/_sandbox/faults", None).await;
    assert_eq!(faults["injected"]["server_errors"], 1);
    assert_eq!(faults["injected"]["throttles"], 1);
    f.control(Method::DELETE, "/_sandbox/faults", None).await;
    assert_eq!(f.get("/devices/queries/devices/v1", &[]).await.0, 200);
    let counts = f.control(Method::GET, "/_sandbox/requests", None).await;
    assert_eq!(counts["routes"]["GET /devices/queries/devices/v1"], 3);
}

#[tokio::test]
async fn alerts_query_get_update_and_page_with_after() {
    let f = Falcon::start(FalconConfig {
        hosts: 40,
        alerts: Some(25),
        ..FalconConfig::default()
    })
    .await;
    let (status, body) = f
        .get(
            "/alerts/queries/alerts/v2",
            &[("limit", "10"), ("sort", "created_timestamp|asc")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["pagination"]["total"], 25);
    let first = ids(&body);
    assert_eq!(first.len(), 10);
    assert!(first[0].contains(":ind:"));
    let (status, body) = f
        .send(
            Method::POST,
            "/alerts/entities/alerts/v2",
            &[],
            json!({"composite_ids": [first[0]]}),
        )
        .await;
    assert_eq!(status, 200);
    let alert = &body["resources"][0];
    let aid = alert["device"]["device_id"].as_str().unwrap();
    assert!(first[0].contains(aid));
    assert_eq!(alert["status"], "new");

    let (status, _) = f
        .send(
            Method::PATCH,
            "/alerts/entities/alerts/v3",
            &[],
            json!({"composite_ids": [first[0]], "action_parameters": [{"name": "update_status", "value": "in_progress"}, {"name": "add_tag", "value": "triage"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let filter = "status:'in_progress'+tags:'triage'";
    let (_, body) = f
        .get("/alerts/queries/alerts/v2", &[("filter", filter)])
        .await;
    assert_eq!(ids(&body), vec![first[0].clone()]);
    let (status, _) = f
        .send(Method::PATCH, "/alerts/entities/alerts/v3", &[], json!({"composite_ids": [first[0]], "action_parameters": [{"name": "update_status", "value": "bogus"}]}))
        .await;
    assert_eq!(status, 400);

    // Combined pages with `after` until it is empty, visiting every alert once.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = f
            .send(
                Method::POST,
                "/alerts/combined/alerts/v1",
                &[],
                json!({"limit": 10, "after": after}),
            )
            .await;
        assert_eq!(status, 200);
        seen.extend(
            body["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["composite_id"].as_str().unwrap().to_string()),
        );
        after = body["meta"]["pagination"]["after"]
            .as_str()
            .unwrap()
            .to_string();
        if after.is_empty() {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
}
