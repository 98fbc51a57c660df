//! `cti-sandbox`: local Falcon, OpenCTI and Cado simulators on loopback.
//!
//! Binds 127.0.0.1 ports (0 = any free port), prints exactly one JSON line (`SandboxInfo`: URLs and
//! credentials) on stdout, and serves until SIGINT or SIGTERM. Logs go to stderr (`RUST_LOG`).
//! See `docs/sandbox.md`.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sandbox::faults::FaultConfig;
use sandbox::{Sandbox, SandboxConfig};

/// Local simulators of the CrowdStrike Falcon API, OpenCTI and the Cado platform API.
#[derive(Debug, Parser)]
#[command(name = "cti-sandbox", version, about)]
struct Cli {
    /// Number of simulated Falcon hosts.
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Number of generated OpenCTI indicators.
    #[arg(long, default_value_t = 1_000)]
    indicators: usize,
    /// Falcon requests per minute per client id (sliding window); 0 turns the limit off.
    #[arg(long, default_value_t = 6_000)]
    rate_limit_per_minute: u32,
    /// Seed for every generated fleet, indicator set and random outcome.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Falcon simulator port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    falcon_port: u16,
    /// OpenCTI simulator port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    opencti_port: u16,
    /// Cado simulator port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    cado_port: u16,
    /// Number of simulated Falcon host groups.
    #[arg(long, default_value_t = 6)]
    host_groups: usize,
    /// Share of hosts that start offline (0.0 to 1.0).
    #[arg(long, default_value_t = 0.2)]
    offline_share: f64,
    /// Offline hosts come online at a random moment within this many seconds (unset: they stay offline).
    #[arg(long)]
    online_within_secs: Option<f64>,
    /// Share of collector runs that fail (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// How long a simulated collector runs, in seconds.
    #[arg(long, default_value_t = 3.0)]
    collector_duration_secs: f64,
    /// OAuth2 token lifetime in seconds.
    #[arg(long, default_value_t = 1_799)]
    token_ttl_secs: u64,
    /// RTR session lifetime without refresh, in seconds.
    #[arg(long, default_value_t = 600)]
    session_ttl_secs: u64,
    /// IOCs pre-created in the Falcon IOC store (for benchmarks).
    #[arg(long, default_value_t = 0)]
    falcon_iocs: usize,
    /// OpenCTI live-stream heartbeat interval in seconds.
    #[arg(long, default_value_t = 5.0)]
    heartbeat_secs: f64,
    /// OpenCTI churn: indicator changes (updates, revocations, deletions...) per second; 0 = none.
    #[arg(long, default_value_t = 0.0)]
    churn_per_second: f64,
    /// Fault: share of requests answered with a 5xx (all three servers).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fault: share of requests answered 429 (all three servers).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Fault: latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fault: streams are closed after this many events.
    #[arg(long)]
    close_stream_every: Option<u64>,
    /// Fault: streams stall (stay open, send nothing) after this many events.
    #[arg(long)]
    stall_stream_after: Option<u64>,
}

impl Cli {
    fn config(&self) -> anyhow::Result<SandboxConfig> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(anyhow::anyhow!("--{name} must be between 0 and 1, got {v}"))
            }
        };
        let secs = |name: &str, v: f64| {
            Duration::try_from_secs_f64(v).map_err(|_| {
                anyhow::anyhow!("--{name} must be a non-negative number of seconds, got {v}")
            })
        };
        let faults = FaultConfig {
            error_rate: share("error-rate", self.error_rate)?,
            throttle_rate: share("throttle-rate", self.throttle_rate)?,
            latency_ms: self.latency_ms,
            close_stream_every: self.close_stream_every.filter(|k| *k > 0),
            stall_stream_after: self.stall_stream_after,
            ..FaultConfig::default()
        };
        let mut config = SandboxConfig {
            seed: self.seed,
            falcon_port: self.falcon_port,
            opencti_port: self.opencti_port,
            cado_port: self.cado_port,
            ..SandboxConfig::default()
        };
        let falcon = &mut config.falcon;
        falcon.hosts = self.hosts;
        falcon.host_groups = self.host_groups;
        falcon.offline_share = share("offline-share", self.offline_share)?;
        falcon.online_within = self
            .online_within_secs
            .map(|s| secs("online-within-secs", s))
            .transpose()?;
        falcon.failure_rate = share("failure-rate", self.failure_rate)?;
        falcon.collector_duration = secs("collector-duration-secs", self.collector_duration_secs)?;
        falcon.rate_limit_per_minute =
            (self.rate_limit_per_minute > 0).then_some(self.rate_limit_per_minute);
        falcon.token_ttl = Duration::from_secs(self.token_ttl_secs);
        falcon.session_ttl = Duration::from_secs(self.session_ttl_secs);
        falcon.iocs = self.falcon_iocs;
        falcon.faults = faults.clone();
        config.opencti.indicators = self.indicators;
        config.opencti.heartbeat_interval = secs("heartbeat-secs", self.heartbeat_secs)?;
        config.opencti.churn.events_per_second = self.churn_per_second.max(0.0);
        config.opencti.faults = faults.clone();
        config.cado.faults = faults;
        Ok(config)
    }
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("cti-sandbox: error: {error:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let config = cli.config()?;
    let sandbox = Sandbox::start(config)
        .await
        .context("starting the sandbox")?;
    let line = serde_json::to_string(sandbox.info()).context("serializing the sandbox info")?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }
    wait_for_signal().await?;
    tracing::info!("stopping");
    sandbox.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_snapshot() {
        let help = Cli::command()
            .term_width(100)
            .render_long_help()
            .to_string();
        insta::assert_snapshot!(help);
    }

    #[test]
    fn flags_map_to_the_config() {
        let cli = Cli::parse_from([
            "cti-sandbox",
            "--hosts",
            "7",
            "--rate-limit-per-minute",
            "0",
            "--error-rate",
            "0.5",
            "--online-within-secs",
            "2.5",
        ]);
        let c = cli.config().unwrap();
        assert_eq!(c.falcon.hosts, 7);
        assert_eq!(c.falcon.rate_limit_per_minute, None);
        assert_eq!(c.falcon.online_within, Some(Duration::from_millis(2_500)));
        assert_eq!(c.falcon.faults.error_rate, 0.5);
        assert_eq!(c.cado.faults.error_rate, 0.5);
    }

    #[test]
    fn bad_shares_are_rejected_with_the_flag_name() {
        let cli = Cli::parse_from(["cti-sandbox", "--failure-rate", "1.5"]);
        let e = cli.config().unwrap_err().to_string();
        assert!(e.contains("--failure-rate"), "{e}");
    }
}
