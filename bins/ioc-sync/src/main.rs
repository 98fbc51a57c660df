//! `ioc-sync`: the OpenCTI -> CrowdStrike Falcon IOC stream connector (a drop-in replacement for the
//! Python "CrowdStrike Endpoint Security" connector). See `docs/configuration.md` and
//! `docs/operations.md`.

#[cfg(feature = "demo")]
mod demo;
mod exit;
mod logging;
mod metrics_server;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ioc_sync::config::Config;
use ioc_sync::mapping::{MappingOptions, map_indicator};

/// OpenCTI -> CrowdStrike Falcon IOC sync (drop-in replacement for the Python connector).
#[derive(Debug, Parser)]
#[command(name = "ioc-sync", version, about, long_about = None)]
struct Cli {
    /// config.yml to read (default: ./config.yml when it exists). Environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the connector (the service).
    Run {
        /// Look up and plan, but write nothing to Falcon and do not move the stream cursor.
        #[arg(long)]
        dry_run: bool,
        /// Exit 0 once the recovery snapshot and everything up to the stream's last event at connect
        /// time is written.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Diff the indicators matching the live stream against the IOCs the connector owns; fix the drift.
    Reconcile {
        /// Print what would change; change nothing anywhere.
        #[arg(long)]
        dry_run: bool,
        /// Most IOCs the plan may remove (delete or soft delete) without --yes; above it nothing is
        /// written and the exit code is 1.
        #[arg(long, value_name = "N", default_value_t = ioc_sync::DEFAULT_MAX_REMOVALS)]
        max_removals: usize,
        /// Confirm a plan that removes more than --max-removals IOCs.
        #[arg(long)]
        yes: bool,
    },
    /// Run one dissemination-assurance reconciliation and hit collection now; print what it did as JSON.
    ///
    /// The platform's deployments are compared with what Falcon holds ("Deploy again" and "Remove
    /// from this platform" included), then the hits are read. The running service does the same
    /// every DEPLOYMENT_RECONCILIATION_INTERVAL minutes. Exit 1 when the run was skipped.
    ReconcileDeployments,
    /// Check the configuration and connectivity (OpenCTI, live stream, Falcon), with a verdict for each.
    Check,
    /// Read STIX indicators (a bundle, an array, one object or JSON lines) on stdin and print the IOCs
    /// that would be written and the skip reasons, one JSON line per indicator.
    Map,
    /// Start the embedded sandbox (simulated OpenCTI + Falcon), sync it until caught up, print a summary.
    #[cfg(feature = "demo")]
    Demo {
        /// Indicators generated in the simulated OpenCTI.
        #[arg(long, default_value_t = 2000)]
        indicators: usize,
    },
    /// Benchmark an initial sync against the sandbox with Falcon's real 6,000 requests/minute limit.
    #[cfg(feature = "demo")]
    Bench {
        /// Indicators generated in the simulated OpenCTI.
        #[arg(long, default_value_t = 100_000)]
        indicators: usize,
        /// Dissemination assurance (DEPLOYMENT_REPORTING_ENABLED) during the sync.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        reporting: bool,
        /// After the sync, time one deployment reconciliation of the platform's deployments
        /// (needs --reporting true).
        #[arg(long)]
        reconcile: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit::ERROR.into();
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code.into(),
        Err(e) => {
            tracing::error!(reason = %format!("{e:#}"), "ioc-sync failed");
            eprintln!("error: {e:#}");
            exit::of(&e).into()
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run {
            dry_run,
            until_caught_up,
        } => {
            let config = load_config(cli.config.as_deref())?;
            // The metrics endpoint is supervised: if it stops, the run winds down and exits 1.
            let (server_tx, mut server_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
            if config.metrics.enable {
                let server = metrics_server::start(&config).await?;
                tokio::spawn(async move {
                    let e = match server.await {
                        Ok(Ok(())) => anyhow::anyhow!("the metrics endpoint stopped"),
                        Ok(Err(e)) => e.context("the metrics endpoint failed"),
                        Err(e) => anyhow::Error::new(e).context("the metrics endpoint panicked"),
                    };
                    tracing::error!(reason = %format!("{e:#}"), "stopping the connector");
                    let _ = server_tx.send(e);
                });
            }
            let mut server_failed = None;
            let shutdown = async {
                tokio::select! {
                    _ = shutdown_signal() => {}
                    r = &mut server_rx => if let Ok(e) = r { server_failed = Some(e) } else { std::future::pending::<()>().await },
                }
            };
            let opts = ioc_sync::RunOptions {
                dry_run,
                until_caught_up,
            };
            let summary = ioc_sync::run(&config, &opts, shutdown).await;
            if let Some(e) = server_failed {
                return Err(e);
            }
            let summary = summary?;
            tracing::info!(summary = %serde_json::to_string(&summary)?, "ioc-sync stopped");
            println!("{}", serde_json::to_string(&summary)?);
            if std::env::var_os("IOC_SYNC_REPORT_PEAK_RSS").is_some() {
                println!("{}", serde_json::json!({"peak_rss_kb": peak_rss_kb()}));
            }
            Ok(exit::OK)
        }
        Command::Reconcile {
            dry_run,
            max_removals,
            yes,
        } => {
            let config = load_config(cli.config.as_deref())?;
            let opts = ioc_sync::ReconcileOptions {
                dry_run,
                max_removals,
                confirmed: yes,
            };
            let summary = ioc_sync::reconcile(&config, &opts, |p| {
                // The plan goes to stderr before anything is written; stdout keeps the JSON summary.
                eprintln!(
                    "reconcile plan: {} indicators, {} IOCs wanted, {} owned: {} to create, {} to update, {} to remove, {} unchanged{}",
                    p.indicators,
                    p.wanted,
                    p.owned,
                    p.creates,
                    p.updates,
                    p.removals,
                    p.unchanged,
                    if dry_run { " (dry run: nothing is written)" } else { "" }
                );
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(exit::OK)
        }
        Command::Check => {
            let config = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    println!("configuration  FAIL  {e:#}");
                    return Ok(exit::CHECK_FAILED);
                }
            };
            println!(
                "configuration  ok    connector `{}`, stream `{}`",
                config.connector.name, config.connector.live_stream_id
            );
            let results = ioc_sync::check(&config).await;
            let mut ok = true;
            for r in &results {
                ok &= r.ok;
                println!(
                    "{:<14} {:<5} {}",
                    r.name,
                    if r.ok { "ok" } else { "FAIL" },
                    r.detail
                );
            }
            Ok(if ok { exit::OK } else { exit::CHECK_FAILED })
        }
        Command::Map => {
            init_logging_plain("warn");
            let opts = match load_config(cli.config.as_deref()) {
                Ok(c) => MappingOptions::from_config(&c),
                Err(_) => MappingOptions::default(),
            };
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading stdin")?;
            let objects = parse_stix_input(&input)?;
            let now = chrono::Utc::now();
            for o in objects
                .iter()
                .filter(|o| o.get("type").and_then(|t| t.as_str()) == Some("indicator"))
            {
                let m = map_indicator(o, &opts, now);
                println!("{}", serde_json::to_string(&m)?);
            }
            Ok(exit::OK)
        }
        #[cfg(feature = "demo")]
        Command::Demo { indicators } => {
            init_logging_plain("warn");
            demo::demo(indicators).await?;
            Ok(exit::OK)
        }
        #[cfg(feature = "demo")]
        Command::Bench {
            indicators,
            reporting,
            reconcile,
        } => {
            init_logging_plain("warn");
            if reconcile && !reporting {
                bail!("--reconcile needs --reporting true (no deployments are reported otherwise)");
            }
            demo::bench(indicators, reporting, reconcile).await?;
            Ok(exit::OK)
        }
        Command::ReconcileDeployments => {
            let config = load_config(cli.config.as_deref())?;
            let run = ioc_sync::reconcile_deployments(&config).await?;
            println!("{}", serde_json::json!({ "reconcile_deployments": &run }));
            if std::env::var_os("IOC_SYNC_REPORT_PEAK_RSS").is_some() {
                println!("{}", serde_json::json!({"peak_rss_kb": peak_rss_kb()}));
            }
            match run.skipped {
                Some(why) => bail!("no deployment reconciliation: {why}"),
                None => Ok(exit::OK),
            }
        }
    }
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), in KiB.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Parses a STIX bundle, an array of objects, one object, or JSON lines.
fn parse_stix_input(input: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Array(a)) => Ok(a),
        Ok(v) if v.get("type").and_then(|t| t.as_str()) == Some("bundle") => Ok(v
            .get("objects")
            .and_then(|o| o.as_array())
            .cloned()
            .unwrap_or_default()),
        Ok(v) => Ok(vec![v]),
        Err(_) => trimmed
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).with_context(|| format!("stdin line {}: not JSON", n + 1))
            })
            .collect(),
    }
}

/// Environment + config file -> configuration, then logging.
fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let env = environment()?;
    let (yaml, file) = match path {
        Some(p) => (
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?),
            Some(p.to_path_buf()),
        ),
        None => {
            let p = PathBuf::from("config.yml");
            match std::fs::read_to_string(&p) {
                Ok(t) => (Some(t), Some(p)),
                Err(_) => (None, None),
            }
        }
    };
    let (config, warnings) = Config::load(&env, yaml.as_deref()).map_err(|e| match &file {
        Some(f) => anyhow::Error::new(e)
            .context(format!("configuration (environment and {})", f.display())),
        None => anyhow::Error::new(e).context("configuration (environment)"),
    })?;
    logging::init(&config);
    for w in warnings {
        tracing::warn!("{w}");
    }
    for e in config.insecure_settings() {
        tracing::error!("{e}");
    }
    Ok(config)
}

/// Secrets may come from files (`*_FILE`, e.g. Docker secrets) instead of the environment.
const SECRET_FILE_VARS: &[(&str, &str)] = &[
    ("OPENCTI_TOKEN_FILE", "OPENCTI_TOKEN"),
    (
        "CROWDSTRIKE_CLIENT_SECRET_FILE",
        "CROWDSTRIKE_CLIENT_SECRET",
    ),
    ("FALCON_CLIENT_SECRET_FILE", "FALCON_CLIENT_SECRET"),
];

fn environment() -> anyhow::Result<BTreeMap<String, String>> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    for (file_var, var) in SECRET_FILE_VARS {
        if let Some(path) = env.get(*file_var).cloned() {
            if env.contains_key(*var) {
                bail!("both {var} and {file_var} are set; set only one");
            }
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("{file_var}: reading {path}"))?;
            env.insert(var.to_string(), value.trim().to_string());
        }
    }
    Ok(env)
}

fn init_logging_plain(level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("signal received: finishing the batch in flight");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn stix_input_forms() {
        let one = r#"{"type":"indicator","pattern":"[ipv4-addr:value = '1.2.3.4']","pattern_type":"stix"}"#;
        assert_eq!(parse_stix_input(one).unwrap().len(), 1);
        assert_eq!(
            parse_stix_input(&format!("[{one},{one}]")).unwrap().len(),
            2
        );
        assert_eq!(
            parse_stix_input(&format!("{{\"type\":\"bundle\",\"objects\":[{one}]}}"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_stix_input(&format!("{one}\n{one}\n")).unwrap().len(),
            2
        );
        assert!(
            parse_stix_input("{nope")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }
}
