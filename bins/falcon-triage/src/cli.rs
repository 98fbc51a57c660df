//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use triage::{CollectionMode, Platform};

/// Cado Host (or any templated collector) on thousands of hosts through CrowdStrike Falcon RTR, followed
/// host by host to a verified end.
///
/// Falcon credentials come from FALCON_CLIENT_ID, FALCON_CLIENT_SECRET, FALCON_MEMBER_CID and
/// FALCON_CLOUD (a cloud name or a base URL). Exit codes: 0 all succeeded, 1 error, 2 some failed,
/// 3 nothing succeeded, 4 preflight failed or not confirmed, 130 left early (resume with the journal).
#[derive(Debug, Parser)]
#[command(name = "falcon-triage", version, propagate_version = true)]
pub struct Cli {
    /// Output format of reports and listings.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// JSON on stdout (reports: an object with `summary` and `hosts`).
    Json,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
pub enum Command {
    /// Select hosts, launch the collector on each and follow every host to its end.
    Run(RunArgs),
    /// Continue a run from its journal (never launches a second collection on a host).
    Resume(ResumeArgs),
    /// Show where every host of a journal stands.
    Status(StatusArgs),
    /// List the hosts a selection resolves to.
    Hosts(HostsArgs),
    /// Check the API client's scopes and print the Falcon exclusions Cado Host needs.
    Preflight,
    /// Run a collection against an in-process sandbox (simulated Falcon and Cado, some hosts offline
    /// or failing).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Benchmark against an in-process sandbox and print the figures (docs/benchmarks.md).
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    Bench(BenchArgs),
    /// The benchmark's sandbox, in its own process: prints its JSON info line, serves until stdin closes.
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    BenchSandbox(BenchArgs),
}

/// Which hosts.
#[derive(Debug, Clone, Args, Default)]
pub struct SelectionArgs {
    /// Host names (repeat or comma-separate).
    #[arg(long = "hostname", value_delimiter = ',')]
    pub hostnames: Vec<String>,
    /// Device ids / AIDs (repeat or comma-separate).
    #[arg(long = "device-id", value_delimiter = ',')]
    pub device_ids: Vec<String>,
    /// A file with one device id per line.
    #[arg(long)]
    pub device_ids_file: Option<PathBuf>,
    /// An FQL filter over hosts, e.g. "platform_name:'Windows'+tags:'FalconGroupingTags/prod'".
    #[arg(long)]
    pub filter: Option<String>,
    /// A host group, by name.
    #[arg(long)]
    pub host_group: Option<String>,
    /// The hosts of these alerts (composite ids; repeat or comma-separate).
    #[arg(long = "alert", value_delimiter = ',')]
    pub alerts: Vec<String>,
    /// Every host of the CID.
    #[arg(long)]
    pub all: bool,
    /// Keep only these platforms: windows, linux, mac (repeat or comma-separate).
    #[arg(long = "platform", value_delimiter = ',')]
    pub platforms: Vec<Platform>,
}

/// The collector: Cado API, pre-signed data + version, or templates.
#[derive(Debug, Clone, Args, Default)]
pub struct CollectorArgs {
    /// Cado platform URL: the command per OS comes from POST /api/v3/import/cado-host (API key in
    /// CADO_API_KEY).
    #[arg(long, env = "CADO_URL", hide_env_values = true)]
    pub cado_url: Option<String>,
    /// Cado project id.
    #[arg(long, env = "CADO_PROJECT_ID", hide_env_values = true)]
    pub cado_project: Option<u64>,
    /// Verify each capture's arrival as a Cado pipeline (needs --cado-url, --cado-project, CADO_API_KEY).
    #[arg(long)]
    pub verify_capture: bool,
    /// File holding pre-signed upload data (the secret never goes on the command line; or set
    /// CADO_PRESIGNED_DATA).
    #[arg(long)]
    pub presigned_data_file: Option<PathBuf>,
    /// Cado Host version to download with pre-signed data, e.g. v3.7.0.
    #[arg(long)]
    pub cado_version: Option<String>,
    /// Cado Host command-line form: flat (v1), subcommands (v3: capture + upload) or detect (asks the
    /// binary on the host). Default: from --cado-version (v3+ subcommands, v2 detect, v1 flat).
    #[arg(long, value_name = "FORM")]
    pub cado_cli: Option<triage::collector::CadoCli>,
    /// Where Cado Host binaries are downloaded from.
    #[arg(long, default_value = triage::collector::DEFAULT_DOWNLOAD_BASE)]
    pub download_base: String,
    /// Collector template per platform, PLATFORM=FILE (repeat): the file's text is the command, with
    /// {job}, {workdir}, {secret} (one quoted word), {secret_raw} and {secret_file} placeholders (UAC,
    /// KAPE, Velociraptor offline collector...).
    #[arg(long = "template", value_parser = parse_template_arg)]
    pub templates: Vec<(Platform, PathBuf)>,
    /// File holding the template secret for {secret} (or set TRIAGE_TEMPLATE_SECRET).
    #[arg(long)]
    pub template_secret_file: Option<PathBuf>,
    /// Label of the templated collector in reports.
    #[arg(long, default_value = "template")]
    pub collector_name: String,
    /// Cado Host collection mode.
    #[arg(long, value_parser = parse_mode, default_value = "default")]
    pub mode: CollectionMode,
    /// Collect process memory.
    #[arg(long)]
    pub memory: bool,
    /// Collect open files and memory over 1 MB.
    #[arg(long)]
    pub extended_memory: bool,
    /// Cado Host collection group (repeat).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Additional file or folder to collect (repeat).
    #[arg(long = "additional-file")]
    pub additional_files: Vec<String>,
    /// Skip TLS verification of the upload (insecure; for TLS-intercepting proxies).
    #[arg(long)]
    pub skip_ssl_verify: bool,
    /// Verbose Cado Host logging.
    #[arg(long)]
    pub collector_verbose: bool,
}

/// Run timing and limits.
#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    /// Journal file (JSON lines); default falcon-triage-<job>.jsonl in the current directory.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// At most this many collections at once (queued, launched or running).
    #[arg(long, value_parser = parse_positive)]
    pub max_concurrent: Option<usize>,
    /// Time between status rounds (e.g. 30s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub poll_interval: Duration,
    /// Time between RTR session refreshes.
    #[arg(long, value_parser = parse_duration, default_value = "3m")]
    pub refresh_interval: Duration,
    /// Time between reads of Falcon's offline queue for hosts whose launch is queued (they are never probed).
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    pub queue_check_interval: Duration,
    /// Request timeout of batch RTR calls (runscript -Timeout is 2 s less; at most 5m).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub rtr_timeout: Duration,
    /// Hosts not launched within this time from the start (offline, or waiting for a slot) end timed_out.
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub deadline: Duration,
    /// A collection still running this long after its launch ends timed_out.
    #[arg(long, value_parser = parse_duration, default_value = "2h")]
    pub collection_timeout: Duration,
    /// How long after a clean exit to wait for the capture's Cado pipeline.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub capture_grace: Duration,
    /// Do not queue the launch for offline hosts (they are retried until the deadline instead).
    #[arg(long)]
    pub no_queue_offline: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub collector: CollectorArgs,
    #[command(flatten)]
    pub options: RunOptions,
    /// Print the selection and the exact command per OS (secrets redacted); send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Ask for confirmation when more hosts than this are selected.
    #[arg(long, default_value_t = 20)]
    pub confirm_above: usize,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run's journal.
    #[arg(long)]
    pub journal: PathBuf,
    /// The collector options of the run (needed only when hosts were not launched yet).
    #[command(flatten)]
    pub collector: CollectorArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run's journal.
    #[arg(long)]
    pub journal: PathBuf,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of simulated hosts.
    #[arg(long, default_value_t = 200)]
    pub hosts: usize,
    /// Share of hosts offline at start (they come online within --online-within).
    #[arg(long, default_value_t = 0.1)]
    pub offline_share: f64,
    /// Offline hosts come online within this delay.
    #[arg(long, value_parser = parse_duration, default_value = "6s")]
    pub online_within: Duration,
    /// Share of collections that fail.
    #[arg(long, default_value_t = 0.05)]
    pub failure_rate: f64,
    /// How long a simulated collection runs.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub collector_duration: Duration,
    /// Time between status rounds.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub poll_interval: Duration,
    /// Journal file (default: a file in the system temp directory).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Random seed of the simulated fleet.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Number of simulated hosts.
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    /// How long a simulated collection runs.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub collector_duration: Duration,
    /// Time between status rounds.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub poll_interval: Duration,
    /// Share of hosts offline at the start.
    #[arg(long, default_value_t = 0.2)]
    pub offline_share: f64,
    /// Polling rounds the offline hosts stay offline before they all reconnect.
    #[arg(long, default_value_t = 10)]
    pub offline_rounds: u64,
}

/// A whole number of at least 1 (0 collections at once would launch nothing and time every host out).
pub fn parse_positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 30s, 5m, 2h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h, d)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is too long a duration"))
}

fn parse_mode(s: &str) -> Result<CollectionMode, String> {
    s.parse()
}

fn parse_template_arg(s: &str) -> Result<(Platform, PathBuf), String> {
    let (p, f) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected PLATFORM=FILE, e.g. linux=uac.txt"))?;
    Ok((p.parse()?, PathBuf::from(f)))
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
    fn max_concurrent_must_be_positive() {
        assert_eq!(parse_positive("4"), Ok(4));
        assert!(parse_positive("0").unwrap_err().contains("at least 1"));
        assert!(parse_positive("x").is_err());
        let err = Cli::try_parse_from(["falcon-triage", "run", "--all", "--max-concurrent", "0"])
            .expect_err("0 is refused");
        assert!(err.to_string().contains("--max-concurrent"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("x").is_err());
        // beyond `Duration`: an error, not a panic
        assert!(parse_duration("99999999999999999999999999s").is_err());
        assert!(parse_duration("9999999999999999999999d").is_err());
    }

    #[test]
    fn template_args() {
        assert_eq!(
            parse_template_arg("linux=uac.txt").unwrap(),
            (Platform::Linux, PathBuf::from("uac.txt"))
        );
        assert!(parse_template_arg("beos=x").is_err());
        assert!(parse_template_arg("linux").is_err());
    }
}
