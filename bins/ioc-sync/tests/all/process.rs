use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ioc_sync::mapping::{MappingOptions, OPENCTI_EXTENSION, map_indicator};
use sandbox::{Sandbox, SandboxConfig, SandboxInfo};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ioc-sync");

async fn sandbox(indicators: usize) -> Sandbox {
    let mut cfg = SandboxConfig::default();
    cfg.opencti.indicators = indicators;
    cfg.opencti.heartbeat_interval = Duration::from_millis(200);
    cfg.falcon.hosts = 5;
    Sandbox::start(cfg).await.expect("sandbox starts")
}

fn env(info: &SandboxInfo, dir: &Path) -> BTreeMap<String, String> {
    [
        ("OPENCTI_URL", info.opencti_url.clone()),
        ("OPENCTI_TOKEN", info.opencti_token.clone()),
        (
            "CONNECTOR_ID",
            "6a4c9c0e-1f3b-4b4e-9a59-2d5d2f6c0002".to_string(),
        ),
        ("CONNECTOR_LIVE_STREAM_ID", info.live_stream_id.clone()),
        ("CONNECTOR_LOG_LEVEL", "info".to_string()),
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
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn command(env: &BTreeMap<String, String>, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .envs(env)
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    c
}

async fn get(url: String) -> Value {
    reqwest::get(url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn falcon_all(info: &SandboxInfo) -> Vec<Value> {
    get(format!("{}/_sandbox/iocs", info.falcon_url)).await["iocs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn key(i: &Value) -> String {
    format!(
        "{}:{}",
        i["type"].as_str().unwrap_or(""),
        i["value"].as_str().unwrap_or("")
    )
}

async fn expected(info: &SandboxInfo) -> BTreeSet<String> {
    let v = get(format!("{}/_sandbox/indicators", info.opencti_url)).await;
    let now = chrono::Utc::now();
    let mut out = BTreeSet::new();
    for ind in v["indicators"].as_array().into_iter().flatten() {
        if ind["revoked"] == json!(true)
            || ind["extensions"][OPENCTI_EXTENSION]["is_inferred"] == json!(true)
        {
            continue;
        }
        let m = map_indicator(ind, &MappingOptions::default(), now);
        if m.withdrawn.is_none() {
            out.extend(m.iocs.iter().map(|i| i.key.to_string()));
        }
    }
    out
}

async fn assert_exact(info: &SandboxInfo) {
    let all = falcon_all(info).await;
    let keys: BTreeSet<String> = all.iter().map(key).collect();
    assert_eq!(keys.len(), all.len(), "no duplicate IOCs");
    assert_eq!(
        keys,
        expected(info).await,
        "Falcon holds exactly the expected IOCs"
    );
}

async fn run_until_caught_up(env: &BTreeMap<String, String>) -> (Value, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        command(env, &["run", "--until-caught-up"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("caught up in time")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        serde_json::from_str(stdout.lines().next().unwrap_or("null")).unwrap(),
        stderr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_sync_and_restarted_converges_exactly() {
    let sb = sandbox(5_000).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let mut slow = env(&info, dir.path());
    // Slow the first run down so that it is killed half-way: 100 events per batch, 10 requests/s.
    slow.insert("IOC_SYNC_BATCH_SIZE".into(), "100".into());
    slow.insert("CROWDSTRIKE_RATE_LIMIT_PER_MINUTE".into(), "600".into());
    slow.insert("IOC_SYNC_CONCURRENCY".into(), "1".into());
    let mut child = command(&slow, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let n = falcon_all(&info).await.len();
        if n >= 300 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the first run makes progress ({n} IOCs)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap(); // SIGKILL
    let written_before = falcon_all(&info).await.len();
    let want = expected(&info).await;
    assert!(
        written_before < want.len(),
        "killed mid-sync ({written_before} of {})",
        want.len()
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap())
            .unwrap();
    assert_ne!(
        state["start_from"],
        json!("0-0"),
        "the state moved before the kill: {state}"
    );

    let (summary, _) = run_until_caught_up(&env(&info, dir.path())).await;
    assert_exact(&info).await;
    assert!(
        summary["data_events"].as_u64().unwrap() < 4_900,
        "the restart resumed from the saved state: {summary}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_saves_pings_and_exits_zero() {
    let sb = sandbox(400).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    e.insert("METRICS_ENABLE".into(), "true".into());
    e.insert("METRICS_ADDR".into(), "127.0.0.1".into());
    e.insert("METRICS_PORT".into(), port.to_string());
    let child = command(&e, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let want = expected(&info).await;
    let started = Instant::now();
    while falcon_all(&info).await.len() < want.len() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "initial sync finishes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last batch's metrics (its acknowledgement sets the stream lag) follow its writes: wait
    // until every one is exported.
    let wanted = [
        r#"processed_messages_total{name="CrowdstrikeEndpointSecurity",action="create"}"#,
        r#"current_state{name="CrowdstrikeEndpointSecurity"}"#,
        r#"ioc_sync_ioc_writes_total{name="CrowdstrikeEndpointSecurity",operation="create"}"#,
        r#"ioc_sync_skipped_total{name="CrowdstrikeEndpointSecurity",reason="unsupported_type"}"#,
        "ioc_sync_falcon_requests_total{",
        "ioc_sync_rate_limit_remaining{",
        "ioc_sync_stream_lag_seconds{",
    ];
    let exported = Instant::now();
    loop {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if wanted.iter().all(|m| metrics.contains(m)) {
            break;
        }
        assert!(
            exported.elapsed() < Duration::from_secs(30),
            "missing {:?} in\n{metrics}",
            wanted
                .iter()
                .filter(|m| !metrics.contains(*m))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "SIGTERM exits 0");
    let local: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap())
            .unwrap();
    let connectors = get(format!("{}/_sandbox/connectors", info.opencti_url)).await;
    let c = connectors["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == e["CONNECTOR_ID"])
        .expect("registered")
        .clone();
    let pinged: Value = serde_json::from_str(c["connector_state"].as_str().unwrap()).unwrap();
    assert_eq!(
        pinged["start_from"], local["start_from"],
        "the final ping carries the saved state"
    );
    assert_exact(&info).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_pycti_json_without_secrets() {
    let sb = sandbox(200).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    e.insert("CONNECTOR_LOG_LEVEL".into(), "DEBUG".into());
    let (_, stderr) = run_until_caught_up(&e).await;
    assert!(!stderr.is_empty());
    assert!(
        !stderr.contains(&info.falcon_client_secret),
        "Falcon secret in logs"
    );
    assert!(
        !stderr.contains(&info.opencti_token),
        "OpenCTI token in logs"
    );
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for k in ["timestamp", "level", "name", "message"] {
            assert!(v.get(k).is_some(), "{k} missing: {line}");
        }
    }
    assert!(stderr.contains("\"name\": \"CrowdstrikeEndpointSecurity\""));
    assert!(stderr.contains("Connector registered with ID"));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_gives_a_verdict_per_dependency() {
    let sb = sandbox(10).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let e = env(&info, dir.path());
    let out = command(&e, &["check"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for dep in ["configuration", "opencti", "live stream", "falcon"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(dep) && l.contains(" ok ")),
            "{dep}: {text}"
        );
    }
    let mut bad = e.clone();
    bad.insert(
        "CROWDSTRIKE_CLIENT_SECRET".into(),
        "wrong-secret-value".into(),
    );
    let out = command(&bad, &["check"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("falcon") && l.contains("FAIL")),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-value"));
    let mut invalid = e.clone();
    invalid.insert("CROWDSTRIKE_ACTION_ON_IP".into(), "prevent".into());
    let out = command(&invalid, &["run"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CROWDSTRIKE_ACTION_ON_IP") && err.contains("no_action | detect"),
        "{err}"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn map_prints_iocs_and_skip_reasons() {
    let bundle = json!({"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "indicator", "id": "indicator--a", "pattern_type": "stix", "x_opencti_score": 90,
         "pattern": "[file:hashes.'SHA-256' = 'E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855' OR file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709' OR file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"},
        {"type": "indicator", "id": "indicator--b", "pattern_type": "stix", "pattern": "[url:value = 'http://x.example/a']"},
        {"type": "identity", "id": "identity--c", "name": "ACME"}
    ]});
    let mut child = Command::new(BIN)
        .arg("map")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bundle.to_string().as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one line per indicator");
    let iocs: Vec<String> = lines[0]["iocs"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    assert_eq!(
        iocs,
        vec![
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "md5:d41d8cd98f00b204e9800998ecf8427e"
        ]
    );
    assert_eq!(lines[0]["iocs"][0]["severity"], "critical");
    assert_eq!(
        lines[0]["iocs"][0]["tags"],
        serde_json::json!(["opencti:indicator--a"]),
        "the owner tag it would carry"
    );
    assert_eq!(lines[0]["skipped"][0]["reason"], "unsupported_hash");
    assert_eq!(lines[1]["skipped"][0]["reason"], "unsupported_type");
}

#[test]
fn help_texts() {
    for args in [&["--help"][..], &["run", "--help"], &["demo", "--help"]] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success());
        let name = if args.len() == 1 {
            "help_main".to_string()
        } else {
            format!("help_{}", args[0])
        };
        insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_falcon_fails_every_request_exits_cleanly_within_the_grace() {
    let sb = sandbox(200).await;
    let info = sb.info().clone();
    // Every Falcon request (token included) answers 5xx: the engine retries its first batch.
    sb.falcon().faults().update(&sandbox::faults::FaultPatch {
        error_rate: Some(1.0),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    // A grace shorter than the default 20 s (Docker's stop timeout is 10 s).
    e.insert("IOC_SYNC_SHUTDOWN_GRACE_SECS".into(), "2".into());
    let child = command(&e, &["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let started = Instant::now();
    loop {
        let f = get(format!("{}/_sandbox/faults", info.falcon_url)).await;
        if f["injected"]["server_errors"].as_u64() >= Some(5) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "retrying: {f}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let signalled = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "SIGTERM exits 0: {stderr}");
    // The configured shutdown grace bounds the wait, in-flight requests included.
    assert!(
        signalled.elapsed() < Duration::from_secs(2 + 10),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        stderr.contains("giving up on the batch at shutdown")
            || stderr.contains("shutdown grace period over"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("summary line"),
    )
    .unwrap();
    assert_eq!(summary["ended"], "shutdown", "{summary}");
    assert_eq!(summary["created"], 0, "{summary}");
    assert!(falcon_all(&info).await.is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_deployments_runs_once_and_prints_what_it_did() {
    let sb = sandbox(150).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let env = env(&info, dir.path());
    run_until_caught_up(&env).await;
    let run = |env: BTreeMap<String, String>| async move {
        tokio::time::timeout(
            Duration::from_secs(60),
            command(&env, &["reconcile-deployments"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output(),
        )
        .await
        .expect("one reconciliation in time")
        .expect("runs")
    };
    let out = run(env.clone()).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let v: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("null"),
    )
    .unwrap();
    let r = &v["reconcile_deployments"];
    assert_eq!(r["skipped"], Value::Null, "{v}");
    let deps = get(format!("{}/_sandbox/deployments", info.opencti_url)).await;
    let active = deps["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["deployment_status"] == "active")
        .count() as u64;
    assert!(active > 0, "{deps}");
    assert_eq!(
        r["counts"]["confirmed_active"].as_u64(),
        Some(active),
        "every deployment the sync reported is confirmed: {v}"
    );
    // Reporting off: nothing is reconciled, exit 1 with the reason.
    let mut off = env.clone();
    off.insert("DEPLOYMENT_REPORTING_ENABLED".into(), "false".into());
    let out = run(off).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEPLOYMENT_REPORTING_ENABLED"), "{stderr}");
}
