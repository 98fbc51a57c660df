//! Process-level tests of `falcon-triage` against an in-process sandbox: dry run, kill and resume, secrets,
//! listings, preflight, and snapshots of the human-facing output.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sandbox::{Sandbox, SandboxConfig};

const BIN: &str = env!("CARGO_BIN_EXE_falcon-triage");

async fn start(hosts: usize, offline: f64) -> Sandbox {
    let mut cfg = SandboxConfig {
        seed: 31,
        ..Default::default()
    };
    cfg.falcon.hosts = hosts;
    cfg.falcon.offline_share = offline;
    cfg.falcon.online_within = Some(Duration::from_secs(3));
    cfg.falcon.failure_rate = 0.0;
    cfg.falcon.collector_duration = Duration::from_millis(1500);
    cfg.falcon.rate_limit_per_minute = None;
    Sandbox::start(cfg).await.expect("sandbox")
}

fn cmd(sb: &Sandbox) -> Command {
    let info = sb.info();
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("FALCON_CLIENT_ID", &info.falcon_client_id)
        .env("FALCON_CLIENT_SECRET", &info.falcon_client_secret)
        .env("FALCON_CLOUD", &info.falcon_url)
        .env("CADO_API_KEY", &info.cado_api_key)
        .env("CADO_URL", &info.cado_url)
        .env("CADO_PROJECT_ID", "1")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null());
    c
}

async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("runs"))
        .await
        .unwrap()
}

async fn get(url: String) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_no_write_and_shows_commands_redacted() {
    let sb = start(20, 0.0).await;
    let info = sb.info().clone();
    // pre-signed data minted beforehand, given in a file
    let minted: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v3/import/cado-host", info.cado_url))
        .bearer_auth(&info.cado_api_key)
        .json(&serde_json::json!({"project_id": 1, "deployment": "auto", "os": "windows", "downloadable": false, "command_options": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = minted["data"]["presigned_data"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("presigned.txt");
    std::fs::write(&data_file, &data).unwrap();
    reqwest::Client::new()
        .delete(format!("{}/_sandbox/requests", info.falcon_url))
        .send()
        .await
        .unwrap();
    let cado_before = get(format!("{}/_sandbox/requests", info.cado_url)).await;

    let mut c = cmd(&sb);
    c.env_remove("CADO_URL")
        .args([
            "run",
            "--all",
            "--dry-run",
            "--cado-version",
            "v3.7.0",
            "--presigned-data-file",
        ])
        .arg(&data_file);
    let o = output(c).await;
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(!all.contains(&data), "pre-signed data printed");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("== windows: collector command =="));
    assert!(stdout.contains("--presigned_data '<redacted>'"), "{stdout}");
    assert!(
        stdout.contains("runscript -Raw=```d=/tmp/cado-host-"),
        "{stdout}"
    );
    // the Windows launch script holds the command (redacted) for its owner-only cmd.ps1 file
    assert!(
        stdout.contains("WriteAllText(\"$d\\cmd.ps1\", '")
            && stdout.contains("--presigned_data ''<redacted>''"),
        "{stdout}"
    );

    // the Cado API source in a dry run mints nothing either
    let mut c = cmd(&sb);
    c.args(["--output", "json", "run", "--all", "--dry-run"]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["hosts"].as_array().unwrap().len(), 20);

    // a template collector, Linux hosts only: the human-facing dry run, snapshotted (job id filtered)
    let template = dir.path().join("uac.txt");
    std::fs::write(
        &template,
        "cd {workdir} && ./uac -p ir_triage --aws-s3-presigned-url {secret} out",
    )
    .unwrap();
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(
        &secret_file,
        "https://bucket.example/up?X-Amz-Signature=0123456789abcdef",
    )
    .unwrap();
    let mut c = cmd(&sb);
    c.args([
        "run",
        "--all",
        "--platform",
        "linux",
        "--dry-run",
        "--collector-name",
        "uac",
    ])
    .arg("--template")
    .arg(format!("linux={}", template.display()))
    .arg("--template-secret-file")
    .arg(&secret_file);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("0123456789abcdef"));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(stdout.contains("hosts left out by the platform filter"));
    // the fleet-independent part: commands, launch and probe per OS
    let commands = &stdout[stdout
        .find("== linux: collector command ==")
        .expect("commands shown")..];
    insta::with_settings!({filters => vec![(r"\b[0-9a-f]{8}\b", "[job]")]}, {
        insta::assert_snapshot!("dry_run_template", commands);
    });

    let falcon = get(format!("{}/_sandbox/requests", info.falcon_url)).await;
    let routes = falcon["routes"].to_string();
    assert!(
        !routes.contains("real-time-response"),
        "a dry run touched RTR: {routes}"
    );
    let cado_after = get(format!("{}/_sandbox/requests", info.cado_url)).await;
    let imports = |v: &serde_json::Value| {
        v["requests"]["POST /api/v3/import/cado-host"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(
        imports(&cado_before),
        imports(&cado_after),
        "a dry run minted Cado credentials"
    );
    assert_eq!(imports(&cado_after), 1, "only the test's own mint");
    sb.shutdown().await;
}

fn journal_lines_with(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumes_without_double_launch_and_never_prints_secrets() {
    let sb = start(150, 0.1).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("run.jsonl");
    let mut c = cmd(&sb);
    c.args([
        "run",
        "--all",
        "--yes",
        "--verify-capture",
        "--poll-interval",
        "300ms",
        "--deadline",
        "40s",
        "--capture-grace",
        "10s",
        "--max-concurrent",
        "100",
    ])
    .arg("--journal")
    .arg(&journal)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let t0 = Instant::now();
    while journal_lines_with(&journal, "\"state\":\"launched\"") < 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the run did not launch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup
    let first = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let before = triage::journal::replay(&journal).unwrap();
    assert!(!before.finished);
    let launched_before: Vec<String> = before
        .hosts
        .values()
        .filter(|h| h.state.launch_sent())
        .map(|h| h.device_id.clone())
        .collect();
    assert!(!launched_before.is_empty());

    let mut c = cmd(&sb);
    c.args(["--output", "json", "resume", "--journal"])
        .arg(&journal);
    let o = output(c).await;
    let all = text(&o) + &text(&first);
    assert_eq!(o.status.code(), Some(0), "{all}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["summary"]["succeeded"], 150);
    for h in report["hosts"].as_array().unwrap() {
        for k in ["device_id", "hostname", "platform", "state", "reason"] {
            assert!(h.get(k).is_some(), "{k}");
        }
    }
    // one collector per host: nothing launched twice (the launch script also refuses a second one)
    let dump = get(format!("{}/_sandbox/rtr", info.falcon_url)).await;
    let jobs = dump["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 150);
    let mut aids: Vec<&str> = jobs.iter().map(|j| j["aid"].as_str().unwrap()).collect();
    aids.sort();
    aids.dedup();
    assert_eq!(aids.len(), 150);
    // secrets: the Cado API key, the Falcon secret and any pre-signed data never in stdout/stderr (debug
    // logging on) or the journal
    let journal_text = std::fs::read_to_string(&journal).unwrap();
    for secret in [
        info.cado_api_key.as_str(),
        info.falcon_client_secret.as_str(),
    ] {
        assert!(
            !all.contains(secret) && !journal_text.contains(secret),
            "secret leaked"
        );
    }
    for j in jobs.iter().take(30) {
        let cmd = j["command"].as_str().unwrap();
        let at = cmd.find("--presigned_data").unwrap() + 16;
        let data: String = cmd[at..]
            .trim_start_matches([' ', '"', '\''])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "+/=".contains(*c))
            .collect();
        assert!(data.len() > 16);
        assert!(
            !all.contains(&data) && !journal_text.contains(&data),
            "pre-signed data leaked"
        );
    }

    // status of the finished run
    let mut c = cmd(&sb);
    c.args(["status", "--journal"]).arg(&journal);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("150 hosts: 150 succeeded"));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_listing_and_preflight() {
    let sb = start(25, 0.0).await;
    let mut c = cmd(&sb);
    c.args([
        "--output",
        "json",
        "hosts",
        "--all",
        "--platform",
        "windows,linux",
    ]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    assert!(!hosts.is_empty() && hosts.len() < 25);
    assert!(
        hosts
            .iter()
            .all(|h| h["platform"] == "windows" || h["platform"] == "linux")
    );

    let mut c = cmd(&sb);
    c.arg("preflight");
    let o = output(c).await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        out.contains("Real Time Response (Admin): Write")
            && out.contains(r"Windows\Temp\cado-host-*\cado-host.exe")
    );

    // a run over more hosts than the threshold without --yes and without a terminal asks and stops
    let mut c = cmd(&sb);
    c.args(["run", "--all", "--confirm-above", "5"]);
    let o = output(c).await;
    assert_eq!(
        o.status.code(),
        Some(triage::exit_codes::PREFLIGHT_FAILED),
        "{}",
        text(&o)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --yes"));
    sb.shutdown().await;
}

#[test]
fn status_output_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.jsonl");
    let lines = [
        r#"{"type":"run","job":"3f9a1c2e","started":"2026-11-22T08:00:00Z","collector":"cado-host (cado api, project 1)","settings":{}}"#,
        r#"{"type":"host","from":null,"device_id":"a1","hostname":"web-1","platform":"linux","state":"pending","reason":null,"updated":"2026-11-22T08:00:00Z"}"#,
        r#"{"type":"host","from":"running","device_id":"a1","hostname":"web-1","platform":"linux","state":"succeeded","reason":null,"updated":"2026-11-22T08:01:00Z"}"#,
        r#"{"type":"host","from":"running","device_id":"a2","hostname":"DC-1","platform":"windows","state":"failed","reason":"exit_code: 1: [2026-11-22 08:00:03,000][ERROR] - An error occurred. Exiting.","updated":"2026-11-22T08:01:00Z"}"#,
        r#"{"type":"host","from":"queued_offline","device_id":"a3","hostname":"mbp-7","platform":"mac","state":"timed_out","reason":"offline: host stayed offline until the deadline","updated":"2026-11-22T08:01:00Z"}"#,
        r#"{"type":"host","from":"session","device_id":"a4","hostname":"db-2","platform":"linux","state":"running","reason":null,"updated":"2026-11-22T08:01:00Z"}"#,
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let o = Command::new(BIN)
        .args(["status", "--journal"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(triage::exit_codes::INTERRUPTED));
    insta::assert_snapshot!("status_table", String::from_utf8_lossy(&o.stdout));
    let o = Command::new(BIN)
        .args(["--output", "json", "status", "--journal"])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    insta::assert_json_snapshot!("status_json_summary", v["summary"]);
}

#[test]
fn help_snapshot_and_bad_input_errors() {
    let o = Command::new(BIN)
        .env_clear()
        .arg("--help")
        .output()
        .unwrap();
    insta::assert_snapshot!("help", String::from_utf8_lossy(&o.stdout));
    let o = Command::new(BIN)
        .env_clear()
        .args(["run", "--help"])
        .output()
        .unwrap();
    insta::assert_snapshot!("run_help", String::from_utf8_lossy(&o.stdout));
    // missing credentials: a clear error, exit 1
    let o = Command::new(BIN)
        .env_clear()
        .args(["hosts", "--all"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(triage::exit_codes::ERROR));
    insta::assert_snapshot!("missing_credentials", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(BIN)
        .args(["status", "--journal", "/nonexistent/j.jsonl"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(triage::exit_codes::ERROR));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .starts_with("error: journal error at /nonexistent/j.jsonl: ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_once_stops_launching_twice_leaves_and_resume_finishes() {
    let sb = start(60, 0.0).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("run.jsonl");
    let mut c = cmd(&sb);
    c.args([
        "run",
        "--all",
        "--yes",
        "--max-concurrent",
        "10",
        "--poll-interval",
        "200ms",
    ])
    .arg("--journal")
    .arg(&journal)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id().to_string();
    let t0 = Instant::now();
    while journal_lines_with(&journal, "\"state\":\"launched\"") < 10 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the run did not launch"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let sigint = |pid: &str| Command::new("kill").args(["-INT", pid]).status().unwrap();
    assert!(sigint(&pid).success());
    let t0 = Instant::now();
    while journal_lines_with(&journal, "\"state\":\"cancelled\"") < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "hosts not launched yet were not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(sigint(&pid).success());
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(triage::exit_codes::INTERRUPTED),
        "{err}"
    );
    assert!(
        err.contains("stopping: no new launches") && err.contains("leaving now"),
        "{err}"
    );
    let replay = triage::journal::replay(&journal).unwrap();
    assert!(!replay.finished);
    let cancelled: Vec<_> = replay
        .hosts
        .values()
        .filter(|h| h.state == triage::HostState::Cancelled)
        .collect();
    assert_eq!(cancelled.len(), 50);
    assert!(
        cancelled
            .iter()
            .all(|h| h.reason.as_deref().unwrap().starts_with("stopped_by_user:"))
    );
    // nothing was launched after the first Ctrl-C: exactly the 10 launched hosts ran a collector
    let dump = get(format!("{}/_sandbox/rtr", info.falcon_url)).await;
    assert_eq!(dump["jobs"].as_array().unwrap().len(), 10);

    let mut c = cmd(&sb);
    c.args(["resume", "--journal"]).arg(&journal);
    let o = output(c).await;
    assert_eq!(
        o.status.code(),
        Some(triage::exit_codes::SOME_FAILED),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("60 hosts: 10 succeeded, 50 cancelled"),
        "{}",
        text(&o)
    );
    sb.shutdown().await;
}

#[test]
fn status_into_a_closed_pipe_exits_cleanly() {
    // `falcon-triage status --journal F | head -1`: the reader leaves early. The table of 3,000 hosts is
    // larger than a pipe buffer, so the write fails with EPIPE whatever the timing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.jsonl");
    let mut journal = String::from(
        r#"{"type":"run","job":"3f9a1c2e","started":"2026-11-22T08:00:00Z","collector":"uac (template)","settings":{}}"#,
    );
    journal.push('\n');
    for i in 0..3000 {
        journal.push_str(&format!(
            r#"{{"type":"host","from":"running","device_id":"aid{i:05}","hostname":"host-{i:05}","platform":"linux","state":"succeeded","reason":null,"updated":"2026-11-22T08:01:00Z"}}"#
        ));
        journal.push('\n');
    }
    std::fs::write(&path, journal).unwrap();

    let expected = Command::new(BIN)
        .args(["status", "--journal"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        expected.stdout.len() > 1 << 16,
        "the table outgrows a pipe buffer"
    );

    let mut child = Command::new(BIN)
        .args(["status", "--journal"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), expected.status.code(), "{stderr}");
}
