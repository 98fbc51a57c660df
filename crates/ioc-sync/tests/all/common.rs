//! Shared helpers: a sandbox, the connector's configuration for it, and the expected IOC set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use ioc_sync::config::Config;
use ioc_sync::mapping::{MappingOptions, map_indicator};
use sandbox::{Sandbox, SandboxConfig, SandboxInfo};
use serde_json::{Value, json};

pub async fn sandbox(indicators: usize, tune: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let mut cfg = SandboxConfig::default();
    cfg.opencti.indicators = indicators;
    cfg.opencti.heartbeat_interval = Duration::from_millis(200);
    cfg.falcon.hosts = 5;
    tune(&mut cfg);
    Sandbox::start(cfg).await.expect("sandbox starts")
}

pub fn env(info: &SandboxInfo, dir: &Path) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    for (k, v) in [
        ("OPENCTI_URL", info.opencti_url.clone()),
        ("OPENCTI_TOKEN", info.opencti_token.clone()),
        (
            "CONNECTOR_ID",
            "6a4c9c0e-1f3b-4b4e-9a59-2d5d2f6c0001".to_string(),
        ),
        ("CONNECTOR_LIVE_STREAM_ID", info.live_stream_id.clone()),
        ("CROWDSTRIKE_API_BASE_URL", info.falcon_url.clone()),
        ("CROWDSTRIKE_CLIENT_ID", info.falcon_client_id.clone()),
        (
            "CROWDSTRIKE_CLIENT_SECRET",
            info.falcon_client_secret.clone(),
        ),
        (
            "IOC_SYNC_STATE_FILE",
            dir.join("state.json").display().to_string(),
        ),
        (
            "IOC_SYNC_DEAD_LETTER_FILE",
            dir.join("dead.jsonl").display().to_string(),
        ),
        ("IOC_SYNC_BATCH_WINDOW_MS", "100".to_string()),
    ] {
        e.insert(k.to_string(), v);
    }
    e
}

pub fn config(env: &BTreeMap<String, String>) -> Config {
    Config::load(env, None).expect("valid config").0
}

pub async fn sync_until_caught_up(config: &Config) -> ioc_sync::Summary {
    let opts = ioc_sync::RunOptions {
        until_caught_up: true,
        ..Default::default()
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        ioc_sync::run(config, &opts, std::future::pending()),
    )
    .await
    .expect("caught up within 60 s")
    .expect("sync succeeds")
}

/// An SDK client on the sandbox with the connector's credentials (to cause drift behind its back).
pub fn falcon_client(info: &SandboxInfo) -> falcon_sdk::FalconClient {
    falcon_sdk::FalconClient::builder()
        .client_id(info.falcon_client_id.clone())
        .client_secret(info.falcon_client_secret.clone().into())
        .base_url(&info.falcon_url)
        .build()
        .unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn get(url: String) -> Value {
    http()
        .get(url)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn post(url: String, body: Value) -> Value {
    let r = http().post(url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST failed {status}: {v}");
    v
}

/// Creates an indicator through the OpenCTI simulator's control API and returns its id.
pub async fn create_indicator(info: &SandboxInfo, body: Value) -> String {
    let v = post(format!("{}/_sandbox/indicators", info.opencti_url), body).await;
    v["indicator"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no indicator id in {v}"))
        .to_string()
}

pub async fn indicators(info: &SandboxInfo) -> Vec<Value> {
    get(format!("{}/_sandbox/indicators", info.opencti_url)).await["indicators"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `type:value` -> the IOC the current OpenCTI indicators call for (revoked and expired ones excluded).
pub async fn expected(info: &SandboxInfo) -> BTreeMap<String, Value> {
    expected_with(info, false).await
}

/// [`expected`], optionally counting inferred indicators (which the GraphQL API lists and the stream
/// does not carry).
pub async fn expected_with(info: &SandboxInfo, inferred: bool) -> BTreeMap<String, Value> {
    let now = chrono::Utc::now();
    let mut out = BTreeMap::new();
    for ind in indicators(info).await {
        // The live stream carries neither revoked nor inferred indicators (default filters, no inferences).
        let is_inferred =
            ind["extensions"][ioc_sync::mapping::OPENCTI_EXTENSION]["is_inferred"] == json!(true);
        if ind["revoked"] == json!(true) || (is_inferred && !inferred) {
            continue;
        }
        let m = map_indicator(&ind, &MappingOptions::default(), now);
        if m.withdrawn.is_none() {
            for i in m.iocs {
                out.insert(i.key.to_string(), serde_json::to_value(&i).unwrap());
            }
        }
    }
    out
}

/// All IOCs in the Falcon simulator.
pub async fn falcon_all(info: &SandboxInfo) -> Vec<Value> {
    get(format!("{}/_sandbox/iocs", info.falcon_url)).await["iocs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn key(i: &Value) -> String {
    format!(
        "{}:{}",
        i["type"].as_str().unwrap_or(""),
        i["value"].as_str().unwrap_or("")
    )
}

pub fn withdrawn(i: &Value) -> bool {
    i["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == "TO_DELETE"))
}

/// Expired in Falcon (an indicator created with `valid_until` a second ahead expires during the test).
pub fn expired(i: &Value) -> bool {
    i["expired"] == json!(true)
        || i["expiration"]
            .as_str()
            .and_then(ioc_sync::mapping::parse_time)
            .is_some_and(|t| t <= chrono::Utc::now())
}

/// Live (not soft-deleted) IOCs created by the connector.
pub async fn live_owned(info: &SandboxInfo) -> BTreeSet<String> {
    falcon_all(info)
        .await
        .iter()
        .filter(|i| i["created_by"] == json!(info.falcon_client_id) && !withdrawn(i) && !expired(i))
        .map(key)
        .collect()
}

pub async fn assert_converged(info: &SandboxInfo) {
    assert_converged_with(info, false).await
}

pub async fn assert_converged_with(info: &SandboxInfo, inferred: bool) {
    // IOCs expiring within the next seconds flip while the two sets are read: leave them out of both.
    let soon = chrono::Utc::now() + chrono::Duration::seconds(15);
    let expiring = |i: &Value| {
        i["expiration"]
            .as_str()
            .and_then(ioc_sync::mapping::parse_time)
            .is_some_and(|t| t <= soon)
    };
    let want: BTreeSet<String> = expected_with(info, inferred)
        .await
        .into_iter()
        .filter(|(_, i)| !expiring(i))
        .map(|(k, _)| k)
        .collect();
    let have: BTreeSet<String> = falcon_all(info)
        .await
        .iter()
        .filter(|i| {
            i["created_by"] == json!(info.falcon_client_id)
                && !withdrawn(i)
                && !expired(i)
                && !expiring(i)
        })
        .map(key)
        .collect();
    let missing: Vec<_> = want.difference(&have).take(5).collect();
    let extra: Vec<_> = have.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?} (want {}, have {})",
        want.len(),
        have.len()
    );
}

/// Reconcile options that write and accept any number of removals.
pub fn confirmed() -> ioc_sync::ReconcileOptions {
    ioc_sync::ReconcileOptions {
        confirmed: true,
        ..Default::default()
    }
}

/// Reconcile options of a dry run.
pub fn dry() -> ioc_sync::ReconcileOptions {
    ioc_sync::ReconcileOptions {
        dry_run: true,
        ..Default::default()
    }
}
