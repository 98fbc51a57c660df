//! Shared helpers: a sandbox, an SDK-backed API, and a counting wrapper that records every launch command.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use falcon_sdk::FalconClient;
use sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use triage::api::{BatchSession, FalconApi, HostInfo, HostReply, QueuedCommand};
use triage::sdk::SdkApi;
use triage::{CadoClient, HostRecord, Platform, RunSettings, Selection};

pub const PROJECT: u64 = 1;

pub struct Env {
    pub sb: Sandbox,
    pub api: Counting<SdkApi>,
    pub cado: CadoClient,
    pub http: reqwest::Client,
}

pub async fn sandbox(hosts: usize, offline_share: f64, failure_rate: f64, seed: u64) -> Env {
    let mut cfg = SandboxConfig {
        seed,
        ..Default::default()
    };
    cfg.falcon.hosts = hosts;
    cfg.falcon.offline_share = offline_share;
    cfg.falcon.online_within = Some(Duration::from_millis(4500));
    cfg.falcon.failure_rate = failure_rate;
    cfg.falcon.collector_duration = Duration::from_millis(800);
    cfg.falcon.rate_limit_per_minute = None;
    let sb = Sandbox::start(cfg).await.expect("sandbox starts");
    let info = sb.info().clone();
    let client = FalconClient::builder()
        .client_id(info.falcon_client_id.clone())
        .client_secret(SecretString::from(info.falcon_client_secret.clone()))
        .base_url(&info.falcon_url)
        .build()
        .expect("client");
    let cado = CadoClient::new(
        &info.cado_url,
        SecretString::from(info.cado_api_key.clone()),
    )
    .expect("cado client");
    Env {
        sb,
        api: Counting::new(SdkApi::new(client)),
        cado,
        http: reqwest::Client::new(),
    }
}

impl Env {
    pub async fn all_hosts(&self) -> Vec<HostRecord> {
        Selection {
            all: true,
            ..Default::default()
        }
        .resolve(&self.api)
        .await
        .expect("resolve")
        .hosts
    }

    pub async fn falcon_get(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.sb.info().falcon_url);
        self.http
            .get(url)
            .send()
            .await
            .expect("control api")
            .json()
            .await
            .expect("json")
    }

    /// POSTs `body` to the Falcon simulator's control route `path`.
    pub async fn falcon_post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}{path}", self.sb.info().falcon_url);
        self.http
            .post(url)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("control api")
            .json()
            .await
            .expect("json")
    }

    /// `/_sandbox/rtr` jobs by device id.
    pub async fn jobs(&self) -> HashMap<String, Vec<serde_json::Value>> {
        let dump = self.falcon_get("/_sandbox/rtr").await;
        let mut m: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        for j in dump["jobs"].as_array().expect("jobs") {
            m.entry(j["aid"].as_str().unwrap().to_string())
                .or_default()
                .push(j.clone());
        }
        m
    }
}

pub fn fast_settings(deadline_secs: i64) -> RunSettings {
    RunSettings {
        poll_interval: Duration::from_millis(300),
        refresh_interval: Duration::from_secs(2),
        rtr_timeout: Duration::from_secs(30),
        deadline: Some(chrono::Utc::now() + chrono::Duration::seconds(deadline_secs)),
        collection_timeout: Duration::from_secs(60),
        capture_grace: Duration::from_secs(5),
        ..Default::default()
    }
}

pub fn platforms(hosts: &[HostRecord]) -> Vec<Platform> {
    let mut p: Vec<Platform> = hosts.iter().filter_map(|h| h.platform).collect();
    p.sort();
    p.dedup();
    p
}

/// Wraps a [`FalconApi`], recording every launch command per device id and every call.
#[derive(Clone)]
pub struct Counting<A> {
    pub inner: A,
    pub launches: Arc<Mutex<BTreeMap<String, u32>>>,
    pub calls: Arc<Mutex<BTreeMap<&'static str, u32>>>,
}

impl<A> Counting<A> {
    pub fn new(inner: A) -> Self {
        Counting {
            inner,
            launches: Arc::default(),
            calls: Arc::default(),
        }
    }
    fn count(&self, what: &'static str) {
        *self.calls.lock().unwrap().entry(what).or_default() += 1;
    }
}

impl<A: FalconApi> FalconApi for Counting<A> {
    async fn host_ids(&self, filter: Option<String>) -> triage::Result<Vec<String>> {
        self.count("host_ids");
        self.inner.host_ids(filter).await
    }
    async fn host_details(&self, ids: &[String]) -> triage::Result<Vec<HostInfo>> {
        self.count("host_details");
        self.inner.host_details(ids).await
    }
    async fn host_group_members(&self, name: &str) -> triage::Result<Vec<String>> {
        self.count("host_group_members");
        self.inner.host_group_members(name).await
    }
    async fn alert_device_ids(&self, ids: &[String]) -> triage::Result<Vec<String>> {
        self.count("alert_device_ids");
        self.inner.alert_device_ids(ids).await
    }
    async fn batch_init(
        &self,
        ids: &[String],
        q: bool,
        existing: Option<&str>,
        t: Duration,
    ) -> triage::Result<Vec<BatchSession>> {
        self.count("batch_init");
        self.inner.batch_init(ids, q, existing, t).await
    }
    async fn batch_admin_command(
        &self,
        batch_id: &str,
        base: &str,
        cmd: &str,
        hosts: &[String],
        t: Duration,
    ) -> triage::Result<BTreeMap<String, HostReply>> {
        if cmd.contains("FALCON-TRIAGE launched") {
            self.count("launch");
            let mut l = self.launches.lock().unwrap();
            for h in hosts {
                *l.entry(h.clone()).or_default() += 1;
            }
        } else {
            self.count("probe");
        }
        self.inner
            .batch_admin_command(batch_id, base, cmd, hosts, t)
            .await
    }
    async fn queued_commands(
        &self,
        sessions: &[String],
        marker: &str,
    ) -> triage::Result<Vec<QueuedCommand>> {
        self.count("queued_commands");
        self.inner.queued_commands(sessions, marker).await
    }
    async fn delete_queued_command(&self, session: &str, id: &str) -> triage::Result<bool> {
        self.count("delete_queued_command");
        self.inner.delete_queued_command(session, id).await
    }
    async fn batch_refresh(&self, batch_id: &str, t: Duration) -> triage::Result<()> {
        self.count("refresh");
        self.inner.batch_refresh(batch_id, t).await
    }
}
