//! `demo` and the hidden `bench`: runs against an in-process sandbox (loopback only).

use std::time::{Duration, Instant};

use anyhow::Context;
use falcon_sdk::FalconClient;
use sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use triage::sdk::SdkApi;
use triage::{CadoClient, CadoOptions, JobId, Platform, Run, RunSettings, Selection};

use crate::cli::{BenchArgs, DemoArgs, Output};
use crate::{Mode, execute};

/// The Cado project the sandbox knows.
const SANDBOX_PROJECT: u64 = 1;

async fn start_sandbox(cfg: SandboxConfig) -> anyhow::Result<(Sandbox, SdkApi, CadoClient)> {
    let sb = Sandbox::start(cfg).await.context("starting the sandbox")?;
    let info = sb.info().clone();
    let client = FalconClient::builder()
        .client_id(info.falcon_client_id.clone())
        .client_secret(SecretString::from(info.falcon_client_secret.clone()))
        .base_url(&info.falcon_url)
        .user_agent("falcon-triage-demo")
        .build()
        .context("building the Falcon client")?;
    let cado = CadoClient::new(
        &info.cado_url,
        SecretString::from(info.cado_api_key.clone()),
    )?;
    Ok((sb, SdkApi::new(client), cado))
}

pub async fn demo(args: DemoArgs, out: Output) -> anyhow::Result<i32> {
    let mut cfg = SandboxConfig {
        seed: args.seed,
        ..Default::default()
    };
    cfg.falcon.hosts = args.hosts;
    cfg.falcon.offline_share = args.offline_share;
    cfg.falcon.online_within = Some(args.online_within);
    cfg.falcon.failure_rate = args.failure_rate;
    cfg.falcon.collector_duration = args.collector_duration;
    let (sb, api, cado) = start_sandbox(cfg).await?;
    eprintln!(
        "sandbox: falcon {} cado {}",
        sb.info().falcon_url,
        sb.info().cado_url
    );
    let resolved = Selection {
        all: true,
        ..Default::default()
    }
    .resolve(&api)
    .await?;
    eprint!("{}", crate::output::selection_summary(&resolved));
    let platforms: Vec<Platform> = {
        let mut p: Vec<_> = resolved.hosts.iter().filter_map(|h| h.platform).collect();
        p.sort();
        p.dedup();
        p
    };
    let job = JobId::random();
    let set = cado
        .collector_set(SANDBOX_PROJECT, &CadoOptions::default(), &platforms)
        .await?;
    for p in &platforms {
        eprintln!("{p} command: {}", set.display(*p).unwrap_or_default());
    }
    let settings = RunSettings {
        poll_interval: args.poll_interval,
        refresh_interval: Duration::from_secs(60),
        deadline: Some(
            chrono::Utc::now()
                + chrono::Duration::from_std(args.online_within + Duration::from_secs(30))?,
        ),
        collection_timeout: Duration::from_secs(600),
        verify_project: Some(SANDBOX_PROJECT),
        capture_grace: Duration::from_secs(30),
        ..Default::default()
    };
    let journal = args
        .journal
        .unwrap_or_else(|| std::env::temp_dir().join(format!("falcon-triage-demo-{job}.jsonl")));
    let code = execute(
        &api,
        job,
        settings,
        Some(set),
        Some(cado),
        Mode::Start(resolved.hosts),
        &journal,
        out,
    )
    .await;
    sb.shutdown().await;
    let code = code?;
    eprintln!(
        "see it again with: falcon-triage status --journal {}",
        journal.display()
    );
    Ok(code)
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn bench_config(args: &BenchArgs) -> SandboxConfig {
    let mut cfg = SandboxConfig::default();
    cfg.falcon.hosts = args.hosts;
    // offline hosts stay offline until the benchmark brings them back (after `offline_rounds` rounds)
    cfg.falcon.offline_share = args.offline_share;
    cfg.falcon.online_within = None;
    cfg.falcon.failure_rate = 0.05;
    cfg.falcon.collector_duration = args.collector_duration;
    cfg
}

/// The benchmark's sandbox process: prints the info line, serves until stdin closes.
pub async fn bench_sandbox(args: BenchArgs) -> anyhow::Result<i32> {
    let sb = Sandbox::start(bench_config(&args))
        .await
        .context("starting the sandbox")?;
    println!("{}", serde_json::to_string(sb.info())?);
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await?;
    sb.shutdown().await;
    Ok(triage::exit_codes::SUCCESS)
}

/// Runs a collection over a sandbox started in a child process (so the peak RSS measured is the
/// orchestrator's alone) and prints the figures.
pub async fn bench(args: BenchArgs) -> anyhow::Result<i32> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(["bench-sandbox", "--hosts", &args.hosts.to_string()])
        .arg("--offline-share")
        .arg(args.offline_share.to_string())
        .arg("--collector-duration")
        .arg(format!("{}ms", args.collector_duration.as_millis()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the sandbox process")?;
    let stdout = child.stdout.take().context("sandbox stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let info: serde_json::Value = serde_json::from_str(&line).context("sandbox info line")?;
    let s = |k: &str| info[k].as_str().unwrap_or_default().to_string();
    let falcon_url = s("falcon_url");
    let client = FalconClient::builder()
        .client_id(s("falcon_client_id"))
        .client_secret(SecretString::from(s("falcon_client_secret")))
        .base_url(&falcon_url)
        .user_agent("falcon-triage-bench")
        .build()?;
    let api = SdkApi::new(client);
    let cado = CadoClient::new(&s("cado_url"), SecretString::from(s("cado_api_key")))?;
    let http = reqwest::Client::new();
    let rss_start = peak_rss_kib();
    let resolved = Selection {
        all: true,
        ..Default::default()
    }
    .resolve(&api)
    .await?;
    let platforms = vec![Platform::Windows, Platform::Linux, Platform::Mac];
    let job = JobId::random();
    let set = cado
        .collector_set(SANDBOX_PROJECT, &CadoOptions::default(), &platforms)
        .await?;
    let dir = tempfile::tempdir()?;
    let journal = dir.path().join("bench.jsonl");
    // the queue is read every 4 rounds, as the defaults do (30 s rounds, 2 min queue checks)
    let settings = RunSettings {
        poll_interval: args.poll_interval,
        queue_check_interval: args.poll_interval * 4,
        deadline: Some(chrono::Utc::now() + chrono::Duration::seconds(300)),
        collection_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    let offline: Vec<String> = http
        .get(format!("{falcon_url}/_sandbox/hosts"))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|h| h["online"] == false)
                .filter_map(|h| h["device_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    http.delete(format!("{falcon_url}/_sandbox/requests"))
        .send()
        .await?;
    let hosts = resolved.hosts;
    let n = hosts.len();
    // after `offline_rounds` polling rounds, every offline host reconnects; the requests of those rounds
    // are counted apart
    let reconnect = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = reconnect.clone();
    let offline_rounds = args.offline_rounds;
    let reconnector = tokio::spawn({
        let http = http.clone();
        let falcon_url = falcon_url.clone();
        async move {
            reconnect.notified().await;
            let during: serde_json::Value = http
                .get(format!("{falcon_url}/_sandbox/requests"))
                .send()
                .await?
                .json()
                .await?;
            http.post(format!("{falcon_url}/_sandbox/hosts/online"))
                .json(&serde_json::json!({"all": true, "online": true}))
                .send()
                .await?;
            anyhow::Ok(during)
        }
    });
    let t0 = Instant::now();
    let outcome = Run::new(&api, job, settings)
        .collector(set)
        .on_progress(move |p| {
            if p.phase == "polled" && p.round == offline_rounds {
                signal.notify_one();
            }
        })
        .start(hosts, &journal)
        .await?;
    let elapsed = t0.elapsed();
    let during_offline = if reconnector.is_finished() {
        reconnector.await??
    } else {
        reconnector.abort();
        serde_json::Value::Null
    };
    let dump: serde_json::Value = http
        .get(format!("{falcon_url}/_sandbox/rtr"))
        .send()
        .await?
        .json()
        .await?;
    let queued: Vec<u64> = offline
        .iter()
        .map(|id| dump["queued_per_host"][id].as_u64().unwrap_or(0))
        .collect();
    let requests: serde_json::Value = http
        .get(format!("{falcon_url}/_sandbox/requests"))
        .send()
        .await?
        .json()
        .await?;
    let rss = peak_rss_kib();
    drop(child.stdin.take());
    let _ = child.wait();
    let st = &outcome.stats;
    let batches = st.batches.max(1);
    println!("hosts                          {n}");
    println!(
        "all launches sent after        {} ms (target <= 30000 ms)",
        st.all_launched_ms.unwrap_or(0)
    );
    println!(
        "launch-phase API calls         {} ({} session init + {} launch) for {} batch(es) (online hosts: 1 init + 1 launch per OS; offline hosts: 1 queue_offline init + 1 launch per OS, 1 init to join the probe batch per reconnect wave)",
        st.session_calls + st.launch_calls,
        st.session_calls,
        st.launch_calls,
        st.batches
    );
    println!(
        "probe calls per round          max {} over {} rounds, {} batch(es): one per batch (target <= 1 per 10,000 hosts)",
        st.max_probe_calls_per_round, st.rounds, batches
    );
    println!(
        "offline hosts                  {} ({} rounds offline, then all reconnect)",
        offline.len(),
        args.offline_rounds
    );
    println!(
        "queued commands per offline host max {}, total {} (target <= 1 each: its launch)",
        queued.iter().max().copied().unwrap_or(0),
        queued.iter().sum::<u64>()
    );
    println!(
        "queue reads                    {} (every {} rounds; each is one call per 100 queued sessions)",
        st.queue_checks, 4
    );
    if let Some(rounds) = during_offline["total"]
        .as_u64()
        .map(|_| args.offline_rounds)
    {
        println!(
            "sandbox requests while offline {} over {rounds} rounds: {}",
            during_offline["total"],
            serde_json::to_string(&during_offline["routes"])?
        );
    }
    println!("session refreshes              {}", st.refresh_calls);
    println!(
        "run time                       {:.1} s",
        elapsed.as_secs_f64()
    );
    println!("journal lines                  {}", st.journal_lines);
    println!(
        "outcome                        {}",
        outcome.report.summary_line()
    );
    if let (Some(a), Some(b)) = (rss_start, rss) {
        println!(
            "peak RSS (VmHWM, orchestrator) {:.1} MB (target < 200 MB; {:.1} MB before the selection)",
            b as f64 / 1024.0,
            a as f64 / 1024.0
        );
    }
    println!(
        "sandbox requests               {}",
        serde_json::to_string(&requests)?
    );
    Ok(triage::exit_codes::SUCCESS)
}
