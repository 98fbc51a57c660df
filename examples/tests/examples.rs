//! The examples are tests: each one runs, unchanged, against the in-process sandbox, configured only
//! by the environment variables a user would set for a real tenant.

use std::process::{Command, Output};

use sandbox::{Sandbox, SandboxConfig, SandboxInfo};
use serde_json::Value;

fn falcon_env(cmd: &mut Command, info: &SandboxInfo) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FALCON_CLIENT_ID", &info.falcon_client_id)
        .env("FALCON_CLIENT_SECRET", &info.falcon_client_secret)
        .env("FALCON_CLOUD", &info.falcon_url);
}

/// Runs an example binary off the test runtime's worker threads and returns its output.
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("example starts"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn control(url: String) -> Value {
    reqwest::get(url).await.expect("control api").json().await.expect("json")
}

async fn start(hosts: usize) -> Sandbox {
    let mut config = SandboxConfig::default();
    config.falcon.hosts = hosts;
    config.falcon.offline_share = 0.0;
    config.falcon.rate_limit_per_minute = None;
    config.opencti.indicators = 50;
    Sandbox::start(config).await.expect("sandbox starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_hosts_prints_every_host_once() {
    let sb = start(120).await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_list_hosts"));
    falcon_env(&mut cmd, sb.info());
    let out = run(cmd).await;
    assert!(out.status.success(), "list_hosts failed: {}", text(&out.stderr));

    let fleet = control(format!("{}/_sandbox/hosts", sb.info().falcon_url)).await;
    let mut expected: Vec<String> = fleet["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| format!("{} {}", h["device_id"].as_str().unwrap(), h["hostname"].as_str().unwrap()))
        .collect();
    let stdout = text(&out.stdout);
    let mut printed: Vec<String> = stdout.lines().map(str::to_owned).collect();
    expected.sort();
    printed.sort();
    assert_eq!(printed.len(), 120);
    assert_eq!(printed, expected);
    // The secret never reaches the output.
    assert!(!stdout.contains(&sb.info().falcon_client_secret));
    assert!(!text(&out.stderr).contains(&sb.info().falcon_client_secret));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_iocs_creates_then_updates() {
    let sb = start(10).await;
    for round in 0..2 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_upsert_iocs"));
        falcon_env(&mut cmd, sb.info());
        let out = run(cmd).await;
        assert!(out.status.success(), "round {round}: {}", text(&out.stderr));
    }
    let store = control(format!("{}/_sandbox/iocs", sb.info().falcon_url)).await;
    let iocs = store["iocs"].as_array().expect("iocs");
    assert!(!iocs.is_empty(), "upsert_iocs wrote nothing");
    // Running it twice must not create duplicates: (type, value) stays unique.
    let mut keys: Vec<(String, String)> = iocs
        .iter()
        .map(|i| (i["type"].as_str().unwrap().to_owned(), i["value"].as_str().unwrap().to_owned()))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
    for i in iocs {
        assert_eq!(i["created_by"].as_str(), Some(sb.info().falcon_client_id.as_str()));
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_alerts_prints_alerts_with_their_hosts() {
    let sb = start(40).await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_list_alerts"));
    falcon_env(&mut cmd, sb.info());
    let out = run(cmd).await;
    assert!(out.status.success(), "list_alerts failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let fleet = control(format!("{}/_sandbox/hosts", sb.info().falcon_url)).await;
    let hostnames: Vec<&str> = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hostname"].as_str().unwrap())
        .collect();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no alert printed");
    for line in &lines {
        assert!(
            hostnames.iter().any(|h| line.contains(h)),
            "alert line names no fleet host: {line}"
        );
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtr_run_runs_a_command_on_one_host() {
    let sb = start(5).await;
    let fleet = control(format!("{}/_sandbox/hosts", sb.info().falcon_url)).await;
    let host = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["online"].as_bool() == Some(true))
        .expect("an online host")
        .clone();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtr_run"));
    falcon_env(&mut cmd, sb.info());
    cmd.arg(host["device_id"].as_str().unwrap()).arg("pwd");
    let out = run(cmd).await;
    assert!(out.status.success(), "rtr_run failed: {}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty(), "pwd printed nothing");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_stream_prints_one_line_per_event() {
    let sb = start(5).await;
    let info = sb.info().clone();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tail_stream"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPENCTI_URL", &info.opencti_url)
        .env("OPENCTI_TOKEN", &info.opencti_token)
        .env("TAIL_MAX_EVENTS", "20")
        .arg(&info.live_stream_id);
    let out = run(cmd).await;
    assert!(out.status.success(), "tail_stream failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 20, "{stdout}");
    // First the `connected` event, then the recovery snapshot of indicators.
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    assert!(fields.iter().all(|f| f.len() == 3), "{stdout}");
    assert!(
        fields.iter().any(|f| f[2].starts_with("indicator--")),
        "no indicator event: {stdout}"
    );
    assert!(!stdout.contains(&info.opencti_token));
    sb.shutdown().await;
}
