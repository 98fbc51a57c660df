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
    reqwest::get(url)
        .await
        .expect("control api")
        .json()
        .await
        .expect("json")
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
    assert!(
        out.status.success(),
        "list_hosts failed: {}",
        text(&out.stderr)
    );

    let fleet = control(format!("{}/_sandbox/hosts", sb.info().falcon_url)).await;
    let mut expected: Vec<String> = fleet["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h["device_id"].as_str().unwrap(),
                h["hostname"].as_str().unwrap()
            )
        })
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

fn falcon_client(info: &SandboxInfo) -> falcon_sdk::FalconClient {
    falcon_sdk::FalconClient::builder()
        .client_id(&info.falcon_client_id)
        .client_secret(secrecy::SecretString::from(
            info.falcon_client_secret.clone(),
        ))
        .base_url(&info.falcon_url)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_iocs_creates_then_updates() {
    let sb = start(10).await;
    let info = sb.info();
    let run_once = || async {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_upsert_iocs"));
        falcon_env(&mut cmd, info);
        let out = run(cmd).await;
        assert!(
            out.status.success(),
            "upsert_iocs failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    // First run: three IOCs created.
    let first = run_once().await;
    let created: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with("created "))
        .collect();
    assert_eq!(created.len(), 3, "{first}");
    assert_eq!(first.lines().count(), 3, "{first}");

    // Someone downgrades one of them in the console...
    let store = control(format!("{}/_sandbox/iocs", info.falcon_url)).await;
    let domain = store["iocs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "malware.example.com")
        .expect("domain created")
        .clone();
    assert_eq!(domain["severity"], "high");
    let mut u = falcon_sdk::iocs::IndicatorUpdate::new(domain["id"].as_str().unwrap());
    u.severity = Some(falcon_sdk::iocs::Severity::Low);
    falcon_client(info)
        .iocs()
        .update(vec![u])
        .send()
        .await
        .expect("downgrade");

    // ...the second run finds the three as duplicates and updates them back.
    let second = run_once().await;
    let updated: Vec<&str> = second
        .lines()
        .filter(|l| l.starts_with("updated "))
        .collect();
    assert_eq!(updated.len(), 3, "{second}");
    assert!(
        !second.contains("created ") && !second.contains("rejected"),
        "{second}"
    );
    for line in &created {
        let id = line.split_whitespace().nth(1).unwrap();
        assert!(
            second.contains(&format!("updated {id} ")),
            "{id} not updated: {second}"
        );
    }

    let store = control(format!("{}/_sandbox/iocs", info.falcon_url)).await;
    let iocs = store["iocs"].as_array().expect("iocs");
    assert_eq!(iocs.len(), 3, "duplicates were created: {store}");
    for i in iocs {
        assert_eq!(
            i["created_by"].as_str(),
            Some(info.falcon_client_id.as_str())
        );
        assert_eq!(i["source"], "falcon-sdk-example");
    }
    let domain = iocs
        .iter()
        .find(|i| i["value"] == "malware.example.com")
        .unwrap();
    assert_eq!(
        domain["severity"], "high",
        "the update did not restore the severity"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_alerts_prints_the_100_most_recent_with_their_hosts() {
    // 480 hosts -> 120 alerts (hosts / 4): the example shows the 100 most recent.
    let sb = start(480).await;
    let info = sb.info();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_list_alerts"));
    falcon_env(&mut cmd, info);
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "list_alerts failed: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        text(&out.stderr).contains("100 alerts shown (total 120)"),
        "{}",
        text(&out.stderr)
    );
    let fleet = control(format!("{}/_sandbox/hosts", info.falcon_url)).await;
    let hostname = |aid: &str| -> String {
        fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["device_id"] == aid)
            .map(|h| h["hostname"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{aid} is not in the fleet"))
    };
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 100, "{stdout}");
    let mut printed = Vec::new();
    for line in &lines {
        // `<cid>:ind:<aid>:<id> severity=N status=new host=<hostname of aid>`
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 4, "{line}");
        let aid = f[0].split(':').nth(2).expect("aid in composite id");
        assert!(
            f[1].strip_prefix("severity=")
                .is_some_and(|s| s.parse::<u32>().is_ok()),
            "{line}"
        );
        assert_eq!(f[2], "status=new");
        assert_eq!(f[3], format!("host={}", hostname(aid)), "{line}");
        printed.push(f[0].to_owned());
    }
    // The same 100 alerts, in the same order, as the newest-first listing of the SDK.
    let newest: Vec<String> = falcon_client(info)
        .alerts()
        .combined()
        .sort("created_timestamp|desc")
        .limit(100)
        .send()
        .await
        .expect("alerts")
        .items
        .into_iter()
        .map(|a| a.composite_id)
        .collect();
    assert_eq!(printed, newest);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtr_run_runs_a_command_on_one_host_and_on_a_batch() {
    let sb = start(20).await;
    let info = sb.info();
    let fleet = control(format!("{}/_sandbox/hosts", info.falcon_url)).await;
    let hosts = fleet["hosts"].as_array().unwrap();
    let pick = |p: &str| -> String {
        hosts
            .iter()
            .find(|h| h["platform_name"] == p)
            .map(|h| h["device_id"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {p} host"))
    };
    let (win, linux) = (pick("Windows"), pick("Linux"));

    // One host: `pwd` prints the working directory of the platform.
    for (aid, want) in [(&win, "C:\\"), (&linux, "/")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtr_run"));
        falcon_env(&mut cmd, info);
        cmd.arg(aid).arg("pwd");
        let out = run(cmd).await;
        assert!(
            out.status.success(),
            "rtr_run failed: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim_end(), want);
    }

    // A batch with an offline host: one line per host, exit status 2.
    let offline = hosts
        .iter()
        .map(|h| h["device_id"].as_str().unwrap())
        .find(|a| *a != win && *a != linux)
        .unwrap()
        .to_owned();
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/hosts/online", info.falcon_url))
        .json(&serde_json::json!({"ids": [offline], "online": false}))
        .send()
        .await
        .expect("control api");
    assert!(r.status().is_success());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtr_run"));
    falcon_env(&mut cmd, info);
    cmd.arg(format!("{win},{linux},{offline}")).arg("pwd");
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = |aid: &str| -> String {
        stdout
            .lines()
            .find(|l| l.starts_with(aid))
            .unwrap_or_else(|| panic!("no line for {aid}: {stdout}"))
            .to_owned()
    };
    assert_eq!(line(&win), format!("{win} Complete C:\\"));
    assert_eq!(line(&linux), format!("{linux} Complete /"));
    let off = line(&offline);
    assert!(off.contains("[40401]"), "{off}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
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
    assert!(
        out.status.success(),
        "tail_stream failed: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 20, "{stdout}");
    // First the `connected` event, then the recovery snapshot of indicators.
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    assert!(fields.iter().all(|f| f.len() == 3), "{stdout}");
    assert_eq!(fields[0], ["-", "connected", "-"], "{stdout}");
    // The snapshot: `create` events with an id; each indicator once, ids non-decreasing.
    let creates: Vec<&Vec<&str>> = fields[1..]
        .iter()
        .filter(|f| f[1] == "create" && f[2].starts_with("indicator--"))
        .collect();
    assert!(creates.len() >= 10, "{stdout}");
    let mut stix: Vec<&str> = creates.iter().map(|f| f[2]).collect();
    stix.sort();
    stix.dedup();
    assert_eq!(stix.len(), creates.len(), "an indicator twice: {stdout}");
    for f in &fields[1..] {
        assert!(f[0].contains('-') && f[0] != "-", "event without id: {f:?}");
    }
    let ms = |id: &str| id.split('-').next().unwrap().parse::<u64>().unwrap();
    assert!(
        fields[1..].windows(2).all(|w| ms(w[0][0]) <= ms(w[1][0])),
        "{stdout}"
    );
    // It stops after 20 events and prints the state to resume from, not the token.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("resume state") && stderr.contains("start_from"),
        "{stderr}"
    );
    assert!(!stdout.contains(&info.opencti_token) && !stderr.contains(&info.opencti_token));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contain_hosts_is_a_dry_run_unless_told_yes() {
    let sb = start(40).await;
    let info = sb.info();
    let fleet = control(format!("{}/_sandbox/hosts", info.falcon_url)).await;
    let target = fleet["hosts"][0]["hostname"].as_str().unwrap().to_string();
    let aid = fleet["hosts"][0]["device_id"].as_str().unwrap().to_string();
    let filter = format!("hostname:'{target}'");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_contain_hosts"));
    falcon_env(&mut cmd, info);
    cmd.arg(&filter);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{aid} would contain\n"));
    let requests = control(format!("{}/_sandbox/requests", info.falcon_url)).await;
    assert!(
        requests["routes"]["POST /devices/entities/devices-actions/v2"].is_null(),
        "a dry run acted: {requests}"
    );

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_contain_hosts"));
    falcon_env(&mut cmd, info);
    cmd.args(["--yes", &filter]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{aid} Accepted\n"));
    let client = falcon_sdk::FalconClient::builder()
        .client_id(&info.falcon_client_id)
        .client_secret(secrecy::SecretString::from(
            info.falcon_client_secret.clone(),
        ))
        .base_url(&info.falcon_url)
        .build()
        .unwrap();
    let states = client
        .hosts()
        .containment(std::slice::from_ref(&aid))
        .await
        .unwrap();
    let status = states[&aid].as_str();
    assert!(
        status == "containment_pending" || status == "contained",
        "{status}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_detections_resumes_from_its_persisted_offset() {
    let sb = start(80).await; // 20 alerts → 20 detection events at offsets 1..=20
    let info = sb.info();
    let file = std::env::temp_dir().join(format!("tail-detections-{}.offset", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut printed = Vec::new();
    // Each run is a new consumer: a new appId (the previous one's session lingers, as in Falcon).
    let runs: [&[&str]; 2] = [&["--from-beginning", "--max", "12"], &["--max", "8"]];
    for (i, args) in runs.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tail_detections"));
        falcon_env(&mut cmd, info);
        cmd.env("TAIL_OFFSET_FILE", &file)
            .env("FALCON_APP_ID", format!("tail{i}"))
            .args(args.iter());
        let out = run(cmd).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        printed.extend(text(&out.stdout).lines().map(str::to_owned));
    }
    let offsets: Vec<u64> = printed
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(offsets, (1..=20).collect::<Vec<u64>>(), "{printed:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "20");
    let _ = std::fs::remove_file(&file);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_children_counts_each_childs_hosts() {
    let mut config = SandboxConfig::default();
    config.falcon.rate_limit_per_minute = None;
    config.falcon.offline_share = 0.0;
    config.falcon.children = 3;
    config.falcon.child_hosts = 7;
    let sb = Sandbox::start(config).await.expect("sandbox starts");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_list_children"));
    falcon_env(&mut cmd, sb.info());
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for l in lines {
        let parts: Vec<&str> = l.splitn(3, ' ').collect();
        assert_eq!(parts[0].len(), 32, "{l}");
        assert_eq!(parts[1], "7", "{l}");
        assert!(parts[2].starts_with("Child tenant"), "{l}");
    }
    sb.shutdown().await;
}
