//! Shared helpers: starting a sandbox, building clients, the control API.

use std::time::Duration;

use falcon_sdk::FalconClient;
use opencti_client::OpenCtiClient;
use sandbox::{Sandbox, SandboxConfig, SandboxInfo};
use secrecy::SecretString;
use serde_json::Value;

/// A sandbox config: `hosts` Falcon hosts (all online, no rate limit), `indicators` OpenCTI
/// indicators.
pub fn config(hosts: usize, indicators: usize) -> SandboxConfig {
    let mut c = SandboxConfig {
        seed: 11,
        ..SandboxConfig::default()
    };
    c.falcon.hosts = hosts;
    c.falcon.offline_share = 0.0;
    c.falcon.rate_limit_per_minute = None;
    c.opencti.indicators = indicators;
    c
}

pub async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("sandbox starts")
}

/// A Falcon client on the sandbox, with short backoffs so that retries stay fast.
pub fn falcon(info: &SandboxInfo) -> FalconClient {
    falcon_with(info, |_| {})
}

pub fn falcon_with(info: &SandboxInfo, f: impl FnOnce(&mut falcon_sdk::Settings)) -> FalconClient {
    FalconClient::builder()
        .client_id(&info.falcon_client_id)
        .client_secret(SecretString::from(info.falcon_client_secret.clone()))
        .base_url(&info.falcon_url)
        .configure(|s| {
            s.initial_backoff = Duration::from_millis(50);
            s.max_backoff = Duration::from_millis(400);
            f(s);
        })
        .build()
        .expect("falcon client")
}

pub fn opencti(info: &SandboxInfo) -> OpenCtiClient {
    OpenCtiClient::builder(
        &info.opencti_url,
        SecretString::from(info.opencti_token.clone()),
    )
    .build()
    .expect("opencti client")
}

/// `GET` on a control route; panics unless 2xx JSON.
pub async fn get(url: impl AsRef<str>) -> Value {
    let r = reqwest::get(url.as_ref()).await.expect("control api");
    assert!(
        r.status().is_success(),
        "GET {} -> {}",
        url.as_ref(),
        r.status()
    );
    r.json().await.expect("json")
}

/// `POST` of a JSON body on a control route; panics unless 2xx JSON.
pub async fn post(url: impl AsRef<str>, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(url.as_ref())
        .json(&body)
        .send()
        .await
        .expect("control api");
    assert!(
        r.status().is_success(),
        "POST {} -> {}",
        url.as_ref(),
        r.status()
    );
    r.json().await.expect("json")
}

/// `DELETE` on a control route; panics unless 2xx.
pub async fn delete(url: impl AsRef<str>) {
    let r = reqwest::Client::new()
        .delete(url.as_ref())
        .send()
        .await
        .expect("control api");
    assert!(
        r.status().is_success(),
        "DELETE {} -> {}",
        url.as_ref(),
        r.status()
    );
}

/// How many times the Falcon simulator served `route` (`"GET /devices/queries/devices-scroll/v1"`).
pub async fn falcon_requests(info: &SandboxInfo, route: &str) -> u64 {
    let v = get(format!("{}/_sandbox/requests", info.falcon_url)).await;
    v["routes"][route].as_u64().unwrap_or(0)
}

/// The fleet as the control API sees it.
pub async fn fleet(info: &SandboxInfo) -> Value {
    get(format!("{}/_sandbox/hosts", info.falcon_url)).await
}

/// The IOC store as the control API sees it.
pub async fn ioc_store(info: &SandboxInfo) -> Vec<Value> {
    let v = get(format!("{}/_sandbox/iocs", info.falcon_url)).await;
    v["iocs"].as_array().expect("iocs").clone()
}

pub fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}
