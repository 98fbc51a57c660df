//! `ioc-sync demo` and `ioc-sync bench`: an initial sync against the embedded sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ioc_sync::config::Config;
use ioc_sync::mapping::{MappingOptions, map_indicator};
use sandbox::{Sandbox, SandboxConfig, SandboxInfo};

/// Starts a sandbox with `indicators` indicators and Falcon's real rate limit.
async fn start_sandbox(indicators: usize) -> anyhow::Result<Sandbox> {
    let mut cfg = SandboxConfig::default();
    cfg.opencti.indicators = indicators;
    // OpenCTI's real heartbeat period (`shared/reference/opencti.md`): `--until-caught-up` must not
    // depend on it.
    cfg.opencti.heartbeat_interval = Duration::from_secs(5);
    cfg.falcon.rate_limit_per_minute = Some(6000);
    cfg.falcon.hosts = 10;
    Sandbox::start(cfg).await.context("starting the sandbox")
}

/// The connector's environment for a sandbox, with its files under `dir`.
pub fn sandbox_env(info: &SandboxInfo, dir: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("OPENCTI_URL", info.opencti_url.clone());
    set("OPENCTI_TOKEN", info.opencti_token.clone());
    set(
        "CONNECTOR_ID",
        "6a4c9c0e-1f3b-4b4e-9a59-2d5d2f6c0001".into(),
    );
    set("CONNECTOR_LIVE_STREAM_ID", info.live_stream_id.clone());
    set("CONNECTOR_LOG_LEVEL", "warn".into());
    set("CROWDSTRIKE_API_BASE_URL", info.falcon_url.clone());
    set("CROWDSTRIKE_CLIENT_ID", info.falcon_client_id.clone());
    set(
        "CROWDSTRIKE_CLIENT_SECRET",
        info.falcon_client_secret.clone(),
    );
    set(
        "IOC_SYNC_STATE_FILE",
        dir.join("state.json").display().to_string(),
    );
    set(
        "IOC_SYNC_DEAD_LETTER_FILE",
        dir.join("dead-letter.jsonl").display().to_string(),
    );
    env
}

/// The IOC keys (`type:value`) the indicators currently in the sandbox's OpenCTI should produce.
pub async fn expected_iocs(
    http: &reqwest::Client,
    info: &SandboxInfo,
) -> anyhow::Result<BTreeSet<String>> {
    let v = get_json(http, format!("{}/_sandbox/indicators", info.opencti_url)).await?;
    let now = chrono::Utc::now();
    let mut out = BTreeSet::new();
    for ind in v["indicators"].as_array().into_iter().flatten() {
        // The live stream carries neither revoked nor inferred indicators (default filters, no inferences).
        let inferred = ind["extensions"][ioc_sync::mapping::OPENCTI_EXTENSION]["is_inferred"]
            .as_bool()
            == Some(true);
        if ind.get("revoked").and_then(|r| r.as_bool()) == Some(true) || inferred {
            continue;
        }
        let m = map_indicator(ind, &MappingOptions::default(), now);
        if m.withdrawn.is_none() {
            out.extend(m.iocs.iter().map(|i| i.key.to_string()));
        }
    }
    Ok(out)
}

/// The live (not soft-deleted) IOCs in the sandbox's Falcon, as `type:value`.
pub async fn falcon_iocs(
    http: &reqwest::Client,
    info: &SandboxInfo,
) -> anyhow::Result<BTreeSet<String>> {
    let v = get_json(http, format!("{}/_sandbox/iocs", info.falcon_url)).await?;
    Ok(v["iocs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            !i["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == "TO_DELETE"))
        })
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap_or(""),
                i["value"].as_str().unwrap_or("")
            )
        })
        .collect())
}

/// GET `url` (a sandbox control route) as JSON.
async fn get_json(http: &reqwest::Client, url: String) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The Falcon sandbox's request counts: the total and the sum over the routes `keep` selects.
async fn request_counts(
    http: &reqwest::Client,
    info: &SandboxInfo,
    keep: impl Fn(&str) -> bool,
) -> anyhow::Result<(u64, u64)> {
    let v = get_json(http, format!("{}/_sandbox/requests", info.falcon_url)).await?;
    let total = v["total"].as_u64().unwrap_or(0);
    let kept: u64 = v["routes"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| keep(k))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    Ok((total, kept))
}

async fn falcon_requests(http: &reqwest::Client, info: &SandboxInfo) -> anyhow::Result<(u64, u64)> {
    request_counts(http, info, |k| k.contains("/iocs/")).await
}

/// IOC write requests (create, update, delete) the sandbox has answered so far.
async fn ioc_writes(http: &reqwest::Client, info: &SandboxInfo) -> anyhow::Result<u64> {
    let (_, writes) = request_counts(http, info, |k| {
        k.ends_with("/iocs/entities/indicators/v1") && !k.starts_with("GET ")
    })
    .await?;
    Ok(writes)
}

/// Polls the sandbox every 10 ms until `stop`; returns when the last IOC write request was seen
/// (the moment its count last changed).
async fn watch_last_write(
    info: SandboxInfo,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Instant> {
    let http = reqwest::Client::new();
    let (mut seen, mut at) = (0, None);
    while !*stop.borrow() {
        if let Ok(n) = ioc_writes(&http, &info).await
            && n != seen
        {
            (seen, at) = (n, Some(Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    at
}

/// `ioc-sync demo`.
pub async fn demo(indicators: usize) -> anyhow::Result<()> {
    println!(
        "Starting the sandbox (simulated OpenCTI with {indicators} indicators, simulated Falcon at 6,000 requests/minute)..."
    );
    let sb = start_sandbox(indicators).await?;
    let info = sb.info().clone();
    let dir = std::env::temp_dir().join(format!("ioc-sync-demo-{}", std::process::id()));
    let env = sandbox_env(&info, &dir);
    let (config, _) = Config::load(&env, None)?;
    println!("Syncing OpenCTI -> Falcon until caught up...");
    let started = Instant::now();
    let summary = ioc_sync::run(
        &config,
        &ioc_sync::RunOptions {
            until_caught_up: true,
            ..Default::default()
        },
        std::future::pending(),
    )
    .await?;
    let elapsed = started.elapsed();
    let http = reqwest::Client::new();
    let expected = expected_iocs(&http, &info).await?;
    let actual = falcon_iocs(&http, &info).await?;
    let (_, ioc_requests) = falcon_requests(&http, &info).await?;
    println!();
    println!("  stream events read              {}", summary.events);
    println!("  indicator events                {}", summary.data_events);
    println!("  IOCs created                    {}", summary.created);
    println!("  IOCs updated                    {}", summary.updated);
    println!("  no write needed                 {}", summary.unchanged);
    println!("  dead letters                    {}", summary.dead_letters);
    for (reason, n) in &summary.skipped {
        let label = format!("skipped: {reason}");
        println!("  {label:<32}{n}");
    }
    println!("  Falcon IOC requests             {ioc_requests}");
    println!(
        "  elapsed                         {:.1} s",
        elapsed.as_secs_f64()
    );
    println!();
    let missing = expected.difference(&actual).count();
    let extra = actual.difference(&expected).count();
    if missing == 0 && extra == 0 {
        println!(
            "Falcon holds exactly the {} IOCs the OpenCTI indicators call for.",
            actual.len()
        );
    } else {
        println!(
            "Falcon holds {} IOCs; {missing} expected ones are missing and {extra} are unexpected.",
            actual.len()
        );
        for k in expected.difference(&actual).take(10) {
            println!("  missing    {k}");
        }
        for k in actual.difference(&expected).take(10) {
            println!("  unexpected {k}");
        }
    }
    sb.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if missing > 0 || extra > 0 {
        bail!("the sync did not converge");
    }
    Ok(())
}

/// What a child process of the benchmark printed and how long it took.
struct ChildRun {
    elapsed: Duration,
    /// The last JSON line that is not the peak RSS one.
    summary: serde_json::Value,
    peak_rss_kb: Option<u64>,
}

/// Runs this binary with `args` and the connector environment `env`; its peak RSS is its own.
async fn run_child(args: &[&str], env: &BTreeMap<String, String>) -> anyhow::Result<ChildRun> {
    let exe = std::env::current_exe().context("locating the ioc-sync binary")?;
    let started = Instant::now();
    // `output()` would capture stderr too (tokio pipes both): spawn, so that the child's log and
    // errors reach the terminal.
    let out = tokio::process::Command::new(exe)
        .args(args)
        .env_clear()
        .envs(env)
        .env("IOC_SYNC_REPORT_PEAK_RSS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting ioc-sync {}", args.join(" ")))?
        .wait_with_output()
        .await
        .with_context(|| format!("running ioc-sync {}", args.join(" ")))?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!("ioc-sync {} exited with {}", args.join(" "), out.status);
    }
    let mut run = ChildRun {
        elapsed,
        summary: serde_json::Value::Null,
        peak_rss_kb: None,
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            match v.get("peak_rss_kb") {
                Some(kb) => run.peak_rss_kb = kb.as_u64(),
                None => run.summary = v,
            }
        }
    }
    Ok(run)
}

fn print_rss(label: &str, kb: Option<u64>) {
    match kb {
        Some(kb) => println!("{label:<24}{:.1} MB (target < 64 MB)", kb as f64 / 1024.0),
        None => println!("{label:<24}unknown (no /proc/self/status)"),
    }
}

/// The OpenCTI simulator's request counts (control routes left out): GraphQL requests and all.
async fn opencti_requests(
    http: &reqwest::Client,
    info: &SandboxInfo,
) -> anyhow::Result<(u64, u64)> {
    let v = get_json(http, format!("{}/_sandbox/requests", info.opencti_url)).await?;
    let (mut graphql, mut all) = (0, 0);
    for (route, n) in v["requests"].as_object().into_iter().flatten() {
        let n = n.as_u64().unwrap_or(0);
        if route.contains("/_sandbox/") {
            continue;
        }
        all += n;
        if route == "POST /graphql" {
            graphql += n;
        }
    }
    Ok((graphql, all))
}

/// Deployments the simulated platform holds, per status.
async fn deployment_statuses(
    http: &reqwest::Client,
    info: &SandboxInfo,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let v = get_json(http, format!("{}/_sandbox/deployments", info.opencti_url)).await?;
    let mut out = BTreeMap::new();
    for d in v["deployments"].as_array().into_iter().flatten() {
        let status = d["deployment_status"].as_str().unwrap_or("?").to_owned();
        *out.entry(status).or_default() += 1;
    }
    Ok(out)
}

/// `ioc-sync bench`: the connector runs as a child process (`run --until-caught-up`) so that its peak
/// RSS is its own, not the in-process sandbox's. With `reconcile`, a second child then runs one
/// deployment reconciliation of what the sync reported.
pub async fn bench(indicators: usize, reporting: bool, reconcile: bool) -> anyhow::Result<()> {
    println!(
        "Starting the sandbox with {indicators} indicators and a 6,000 requests/minute Falcon limit..."
    );
    let sb = start_sandbox(indicators).await?;
    let info = sb.info().clone();
    let dir = std::env::temp_dir().join(format!("ioc-sync-bench-{}", std::process::id()));
    let mut env = sandbox_env(&info, &dir);
    env.insert("DEPLOYMENT_REPORTING_ENABLED".into(), reporting.to_string());
    let http = reqwest::Client::new();
    let (graphql_before, opencti_before) = opencti_requests(&http, &info).await?;
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_last_write(info.clone(), stopped));
    let child = run_child(&["run", "--until-caught-up"], &env).await;
    let _ = stop.send(true);
    let last_write = watcher.await.ok().flatten().map(|t| t - started);
    let ChildRun {
        elapsed,
        summary,
        peak_rss_kb: rss,
    } = child?;
    let (graphql, opencti) = opencti_requests(&http, &info).await?;
    let (graphql, opencti) = (graphql - graphql_before, opencti - opencti_before);
    let (total, ioc) = falcon_requests(&http, &info).await?;
    let actual = falcon_iocs(&http, &info).await?;
    let expected = expected_iocs(&http, &info).await?;
    let per_1000 = |n: u64| n as f64 * 1000.0 / indicators.max(1) as f64;
    println!("indicators              {indicators}");
    println!(
        "IOCs in Falcon          {} (expected {}, exact: {})",
        actual.len(),
        expected.len(),
        actual == expected
    );
    println!(
        "elapsed                 {:.1} s (target < 60 s)",
        elapsed.as_secs_f64()
    );
    match last_write {
        Some(w) => println!(
            "last IOC write          {:.2} s; exit {:.2} s after it (target <= 0.5 s)",
            w.as_secs_f64(),
            (elapsed.saturating_sub(w)).as_secs_f64()
        ),
        None => println!("last IOC write          none seen"),
    }
    println!(
        "Falcon requests         {total} total, {ioc} IOC API = {:.2} per 1,000 indicators (target <= 15)",
        per_1000(ioc)
    );
    println!(
        "OpenCTI requests        {opencti} (stream included), {graphql} GraphQL = {:.2} per 1,000 indicators (target <= 3 with reporting on)",
        per_1000(graphql)
    );
    println!(
        "deployment reporting    {}",
        if reporting { "on" } else { "off" }
    );
    if reporting {
        println!(
            "deployments             {:?}",
            deployment_statuses(&http, &info).await?
        );
    }
    print_rss("connector peak RSS", rss);
    println!("summary                 {summary}");
    if actual != expected {
        let v = get_json(&http, format!("{}/_sandbox/indicators", info.opencti_url)).await?;
        for k in expected.symmetric_difference(&actual).take(5) {
            let value = k.split_once(':').map_or(k.as_str(), |(_, v)| v);
            let holders: Vec<String> = v["indicators"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| {
                    i["pattern"]
                        .as_str()
                        .is_some_and(|p| p.to_lowercase().contains(value))
                })
                .map(|i| {
                    format!(
                        "{} valid_until={} revoked={}",
                        i["id"], i["valid_until"], i["revoked"]
                    )
                })
                .collect();
            let side = if actual.contains(k) {
                "unexpected"
            } else {
                "missing"
            };
            println!("  {side} {k}: indicators with this value: {holders:?}");
        }
    }
    if reconcile {
        let (graphql_before, _) = opencti_requests(&http, &info).await?;
        let (falcon_before, _) = falcon_requests(&http, &info).await?;
        let run = run_child(&["reconcile-deployments"], &env).await?;
        let (graphql_after, _) = opencti_requests(&http, &info).await?;
        let (falcon_after, _) = falcon_requests(&http, &info).await?;
        println!();
        println!(
            "reconciliation          {:.1} s, {} GraphQL and {} Falcon requests",
            run.elapsed.as_secs_f64(),
            graphql_after - graphql_before,
            falcon_after - falcon_before
        );
        print_rss("reconciliation peak RSS", run.peak_rss_kb);
        println!(
            "reconciliation run      {}",
            run.summary["reconcile_deployments"]
        );
        println!(
            "deployments after       {:?}",
            deployment_statuses(&http, &info).await?
        );
    }
    sb.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
