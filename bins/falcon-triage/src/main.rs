//! `falcon-triage`: Cado Host (or any templated collector) on thousands of hosts through CrowdStrike
//! Falcon RTR. A thin binary over the `triage` library: arguments, environment, files, progress, exit
//! codes. See `docs/triage.md`.

mod cli;
mod output;
#[cfg(feature = "demo")]
mod sim;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use secrecy::SecretString;
use triage::api::FalconApi;
use triage::exit_codes;
use triage::sdk::SdkApi;
use triage::{
    CadoClient, CadoOptions, CollectorSet, Control, HostRecord, JobId, Platform, Run, RunSettings,
    Selection,
};

use crate::cli::{Cli, CollectorArgs, Command, Output, RunOptions, SelectionArgs};

/// `print!` that tolerates a closed stdout: `falcon-triage status | head` must not panic when `head`
/// leaves. The output is dropped; the exit code still tells the outcome.
macro_rules! emit {
    ($($arg:tt)*) => {
        write_stdout(&format!($($arg)*))
    };
}

/// `println!` counterpart of [`emit!`].
macro_rules! emitln {
    () => {
        write_stdout("\n")
    };
    ($($arg:tt)*) => {
        write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes `text` to stdout; a broken pipe is ignored, any other write error is reported on stderr.
fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write to standard output: {e}");
    }
}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit_codes::ERROR);
        }
    };
    let code = match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_codes::ERROR
        }
    };
    std::process::exit(code);
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,triage=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let out = cli.output;
    match cli.command {
        Command::Run(args) => {
            let api = falcon_api()?;
            run_command(&api, args, out).await
        }
        Command::Resume(args) => {
            let api = falcon_api()?;
            resume_command(&api, &args.journal, &args.collector, out).await
        }
        Command::Status(args) => status_command(&args.journal, out),
        Command::Hosts(args) => {
            let api = falcon_api()?;
            hosts_command(&api, &args.selection, out).await
        }
        Command::Preflight => {
            let api = falcon_api()?;
            preflight_command(&api, out).await
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => sim::demo(args, out).await,
        #[cfg(feature = "demo")]
        Command::Bench(args) => sim::bench(args).await,
        #[cfg(feature = "demo")]
        Command::BenchSandbox(args) => sim::bench_sandbox(args).await,
    }
}

fn falcon_api() -> anyhow::Result<SdkApi> {
    let builder = falcon_sdk::FalconClientBuilder::from_env_with(|k| std::env::var(k).ok())
        .context("Falcon credentials (FALCON_CLIENT_ID, FALCON_CLIENT_SECRET, FALCON_CLOUD)")?;
    let client = builder
        .user_agent("falcon-triage")
        .build()
        .context("building the Falcon client")?;
    Ok(SdkApi::new(client))
}

pub(crate) fn selection(args: &SelectionArgs) -> anyhow::Result<Selection> {
    let mut device_ids = args.device_ids.clone();
    if let Some(f) = &args.device_ids_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --device-ids-file {}", f.display()))?;
        device_ids.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(Selection {
        hostnames: args
            .hostnames
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        device_ids,
        filter: args.filter.clone(),
        host_group: args.host_group.clone(),
        alerts: args.alerts.clone(),
        all: args.all,
        platforms: args.platforms.clone(),
    })
}

fn read_secret(file: Option<&Path>, env: &str, what: &str) -> anyhow::Result<Option<SecretString>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the {what} file {}", f.display()))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            bail!("the {what} file {} is empty", f.display());
        }
        return Ok(Some(SecretString::from(text)));
    }
    Ok(std::env::var(env)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .map(SecretString::from))
}

fn cado_options(a: &CollectorArgs) -> CadoOptions {
    CadoOptions {
        mode: a.mode,
        memory: a.memory,
        extended_memory: a.extended_memory,
        groups: a.groups.clone(),
        additional_files: a.additional_files.clone(),
        skip_ssl_verify: a.skip_ssl_verify,
        verbose: a.collector_verbose,
        cli: a.cado_cli,
    }
}

/// The Cado API client when `--cado-url` is given (key from CADO_API_KEY).
fn cado_client(a: &CollectorArgs) -> anyhow::Result<Option<CadoClient>> {
    let Some(url) = &a.cado_url else {
        return Ok(None);
    };
    let key = read_secret(None, "CADO_API_KEY", "Cado API key")?
        .context("--cado-url needs the API key in CADO_API_KEY")?;
    Ok(Some(CadoClient::new(url, key)?))
}

/// Which collector source the arguments name (exactly one).
enum Source {
    CadoApi(CadoClient, u64),
    Presigned(SecretString, String),
    Templates(BTreeMap<Platform, String>, Option<SecretString>),
}

fn source(a: &CollectorArgs) -> anyhow::Result<Option<Source>> {
    let presigned = read_secret(
        a.presigned_data_file.as_deref(),
        "CADO_PRESIGNED_DATA",
        "pre-signed data",
    )?;
    let mut sources = Vec::new();
    if !a.templates.is_empty() {
        let mut t = BTreeMap::new();
        for (p, f) in &a.templates {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the {p} template {}", f.display()))?;
            t.insert(*p, text.trim().to_string());
        }
        let secret = read_secret(
            a.template_secret_file.as_deref(),
            "TRIAGE_TEMPLATE_SECRET",
            "template secret",
        )?;
        sources.push(Source::Templates(t, secret));
    }
    if let Some(data) = presigned {
        let version = a
            .cado_version
            .clone()
            .context("pre-signed data needs --cado-version (e.g. v3.7.0)")?;
        sources.push(Source::Presigned(data, version));
    }
    // with a template or pre-signed data, --cado-url only serves capture verification
    if sources.is_empty()
        && let Some(client) = cado_client(a)?
    {
        let project = a
            .cado_project
            .context("--cado-url needs --cado-project (or CADO_PROJECT_ID)")?;
        sources.push(Source::CadoApi(client, project));
    }
    match sources.len() {
        0 => Ok(None),
        1 => Ok(sources.pop()),
        _ => bail!(
            "give one collector source: --template, pre-signed data (--presigned-data-file / CADO_PRESIGNED_DATA) or --cado-url"
        ),
    }
}

/// Builds the collector set. In a dry run the Cado API is not called (it would mint credentials): the
/// commands are placeholders naming the call.
async fn collector_set(
    a: &CollectorArgs,
    job: &JobId,
    platforms: &[Platform],
    dry_run: bool,
) -> anyhow::Result<Option<CollectorSet>> {
    let Some(src) = source(a)? else {
        return Ok(None);
    };
    let opts = cado_options(a);
    if !matches!(src, Source::Templates(..)) {
        // before anything is launched: options whose archives can exceed the upload limit
        for w in opts.size_warnings(platforms) {
            eprintln!("warning: {w}");
        }
    }
    let set = match src {
        Source::CadoApi(client, project) if dry_run => {
            let commands = platforms
                .iter()
                .map(|p| (*p, SecretString::from(format!("<command issued by POST /api/v3/import/cado-host, project {project}, os {p}, at launch>"))))
                .collect();
            let _ = client;
            CollectorSet::from_commands(
                format!("cado-host (cado api, project {project})"),
                commands,
                &[],
            )
        }
        Source::CadoApi(client, project) => client
            .collector_set(project, &opts, platforms)
            .await
            .context("getting the Cado Host commands")?,
        Source::Presigned(data, version) => {
            CollectorSet::cado_presigned(&data, &version, &a.download_base, &opts, platforms, job)?
        }
        Source::Templates(t, secret) => {
            CollectorSet::from_templates(a.collector_name.clone(), &t, secret.as_ref(), job)?
        }
    };
    Ok(Some(set))
}

fn settings(o: &RunOptions, a: &CollectorArgs) -> anyhow::Result<RunSettings> {
    if a.verify_capture && (a.cado_url.is_none() || a.cado_project.is_none()) {
        bail!("--verify-capture needs --cado-url, --cado-project and CADO_API_KEY");
    }
    Ok(RunSettings {
        queue_offline: !o.no_queue_offline,
        max_concurrent: o.max_concurrent,
        poll_interval: o.poll_interval,
        refresh_interval: o.refresh_interval,
        rtr_timeout: o.rtr_timeout.clamp(
            std::time::Duration::from_secs(5),
            falcon_sdk::rtr::limits::MAX_REQUEST_TIMEOUT,
        ),
        deadline: Some(
            chrono::Duration::from_std(o.deadline)
                .ok()
                .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                .context("--deadline too large")?,
        ),
        collection_timeout: o.collection_timeout,
        verify_project: if a.verify_capture {
            a.cado_project
        } else {
            None
        },
        capture_grace: o.capture_grace,
        batch_size: triage::run::MAX_BATCH_HOSTS,
        queue_check_interval: o.queue_check_interval,
    })
}

fn platforms_of(hosts: &[HostRecord]) -> Vec<Platform> {
    let mut p: Vec<Platform> = hosts.iter().filter_map(|h| h.platform).collect();
    p.sort();
    p.dedup();
    p
}

fn confirm(n: usize, args: &cli::RunArgs) -> anyhow::Result<bool> {
    if args.yes || n <= args.confirm_above {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "{n} hosts selected (more than --confirm-above {}): pass --yes to launch without a prompt",
            args.confirm_above
        );
        return Ok(false);
    }
    eprint!("Launch the collector on {n} hosts? [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

async fn run_command<A: FalconApi>(
    api: &A,
    args: cli::RunArgs,
    out: Output,
) -> anyhow::Result<i32> {
    let sel = selection(&args.selection)?;
    let resolved = sel
        .resolve(api)
        .await
        .context("resolving the host selection")?;
    let job = JobId::random();
    let platforms = platforms_of(&resolved.hosts);
    let set = collector_set(&args.collector, &job, &platforms, args.dry_run).await?;
    let Some(set) = set else {
        bail!(
            "no collector: give --cado-url with --cado-project, pre-signed data with --cado-version, or --template PLATFORM=FILE"
        );
    };
    if args.dry_run {
        let rtr_timeout = args.options.rtr_timeout.clamp(
            std::time::Duration::from_secs(5),
            falcon_sdk::rtr::limits::MAX_REQUEST_TIMEOUT,
        );
        let script_timeout = rtr_timeout.as_secs().saturating_sub(2).max(1);
        emit!(
            "{}",
            output::dry_run(&job, &resolved, &set, script_timeout, out)?
        );
        return Ok(exit_codes::SUCCESS);
    }
    eprint!("{}", output::selection_summary(&resolved));
    if resolved.hosts.is_empty() {
        eprintln!("no host selected: nothing to do");
        return Ok(exit_codes::NOTHING_RAN);
    }
    if !confirm(resolved.hosts.len(), &args)? {
        return Ok(exit_codes::PREFLIGHT_FAILED);
    }
    let settings = settings(&args.options, &args.collector)?;
    let cado = if settings.verify_project.is_some() {
        cado_client(&args.collector)?
    } else {
        None
    };
    let journal = args
        .options
        .journal
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("falcon-triage-{job}.jsonl")));
    execute(
        api,
        job,
        settings,
        Some(set),
        cado,
        Mode::Start(resolved.hosts),
        &journal,
        out,
    )
    .await
}

pub(crate) enum Mode {
    Start(Vec<HostRecord>),
    Resume,
}

/// Runs (or resumes) with Ctrl-C handling and live progress; prints the report; returns the exit code.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn execute<A: FalconApi>(
    api: &A,
    job: JobId,
    settings: RunSettings,
    set: Option<CollectorSet>,
    cado: Option<CadoClient>,
    mode: Mode,
    journal: &Path,
    out: Output,
) -> anyhow::Result<i32> {
    let control = Control::new();
    let c = control.clone();
    let journal_text = journal.display().to_string();
    // first press: stop launching; second: the run leaves after the call in flight, through its abort
    // path (journal synced, report printed); a third exits at once (every transition is already synced)
    let signals = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            match c.interrupt() {
                1 => eprintln!(
                    "\nstopping: no new launches, queued launches deleted, following what runs (Ctrl-C again to leave)"
                ),
                2 => eprintln!(
                    "\nleaving after the current call; the journal is synced: falcon-triage resume --journal {journal_text} (Ctrl-C again to exit at once)"
                ),
                _ => std::process::exit(exit_codes::INTERRUPTED),
            }
        }
    });
    let total = match &mode {
        Mode::Start(h) => h.len(),
        Mode::Resume => triage::journal::replay(journal)?.hosts.len(),
    };
    let progress = Arc::new(output::ProgressView::new(total as u64));
    let p2 = progress.clone();
    let mut run = Run::new(api, job, settings)
        .control(control)
        .on_progress(move |p| p2.update(p));
    if let Some(set) = set {
        run = run.collector(set);
    }
    if let Some(cado) = cado {
        run = run.cado(cado);
    }
    eprintln!("journal: {}", journal.display());
    let outcome = match mode {
        Mode::Start(hosts) => run.start(hosts, journal).await,
        Mode::Resume => run.resume(journal).await,
    };
    progress.finish();
    signals.abort();
    let outcome = outcome?;
    match out {
        Output::Table => emit!("{}", outcome.report.table()),
        Output::Json => emitln!("{}", serde_json::to_string_pretty(&outcome.report)?),
    }
    if outcome.report.summary.unfinished > 0 {
        eprintln!(
            "resume with: falcon-triage resume --journal {}",
            journal.display()
        );
    }
    Ok(outcome.report.summary.exit_code)
}

async fn resume_command<A: FalconApi>(
    api: &A,
    journal: &Path,
    a: &CollectorArgs,
    out: Output,
) -> anyhow::Result<i32> {
    let replay = triage::journal::replay(journal)?;
    if replay.finished {
        eprintln!(
            "the run in {} already finished; its report:",
            journal.display()
        );
        return status_command(journal, out);
    }
    let platforms = platforms_of(&replay.hosts.values().cloned().collect::<Vec<_>>());
    let set = collector_set(a, &replay.job, &platforms, false).await?;
    let cado = if replay.settings.verify_project.is_some() {
        Some(
            cado_client(a)?
                .context("this run verifies captures: give --cado-url and CADO_API_KEY again")?,
        )
    } else {
        None
    };
    execute(
        api,
        replay.job.clone(),
        replay.settings.clone(),
        set,
        cado,
        Mode::Resume,
        journal,
        out,
    )
    .await
}

fn status_command(journal: &Path, out: Output) -> anyhow::Result<i32> {
    let replay = triage::journal::replay(journal)?;
    let report = triage::Report::new(
        replay.job.as_str(),
        &replay.collector,
        replay.hosts.into_values(),
    );
    match out {
        Output::Table => {
            emit!("{}", report.table());
            let state = if replay.finished {
                "finished"
            } else {
                "not finished (resume it, or it is still running)"
            };
            emitln!(
                "run started {}, {state}; resumed {} times",
                replay.started.format("%Y-%m-%d %H:%M:%S UTC"),
                replay.resumes
            );
        }
        Output::Json => emitln!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.summary.exit_code)
}

async fn hosts_command<A: FalconApi>(
    api: &A,
    sel: &SelectionArgs,
    out: Output,
) -> anyhow::Result<i32> {
    let resolved = selection(sel)?
        .resolve(api)
        .await
        .context("resolving the host selection")?;
    emit!("{}", output::hosts(&resolved, out)?);
    if !resolved.not_found.is_empty() {
        eprintln!("not found: {}", resolved.not_found.join(", "));
    }
    Ok(exit_codes::SUCCESS)
}

async fn preflight_command(api: &SdkApi, out: Output) -> anyhow::Result<i32> {
    let checks = triage::preflight::check_scopes(api.client()).await;
    // a required scope proven missing fails; one no answer could prove is reported, not failed
    let missing = checks
        .iter()
        .any(|c| c.status == triage::preflight::ScopeStatus::Missing && !c.optional);
    match out {
        Output::Json => emitln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"scopes": checks, "exclusions": triage::preflight::EXCLUSIONS})
            )?
        ),
        Output::Table => {
            emit!("{}", output::preflight(&checks));
            emitln!();
            emit!("{}", triage::preflight::EXCLUSIONS);
        }
    }
    Ok(if missing {
        exit_codes::PREFLIGHT_FAILED
    } else {
        exit_codes::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_settings(args: &[&str]) -> anyhow::Result<RunSettings> {
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not a run command")
        };
        settings(&r.options, &r.collector)
    }

    #[test]
    fn a_deadline_beyond_the_calendar_is_an_error_not_a_panic() {
        let ok = run_settings(&["falcon-triage", "run", "--all", "--deadline", "2h"]).unwrap();
        assert!(ok.deadline.is_some());
        // fits in chrono's TimeDelta, not in its DateTime range
        let e = run_settings(&["falcon-triage", "run", "--all", "--deadline", "100000000d"])
            .unwrap_err();
        assert!(format!("{e:#}").contains("--deadline too large"), "{e:#}");
    }

    #[test]
    fn rtr_timeout_is_clamped_to_the_api_maximum() {
        // the SDK refuses an RTR request timeout above 5 minutes: a larger flag must not fail every call
        let s = run_settings(&["falcon-triage", "run", "--all", "--rtr-timeout", "8m"]).unwrap();
        assert_eq!(s.rtr_timeout, falcon_sdk::rtr::limits::MAX_REQUEST_TIMEOUT);
        let s = run_settings(&["falcon-triage", "run", "--all", "--rtr-timeout", "1m"]).unwrap();
        assert_eq!(s.rtr_timeout, std::time::Duration::from_secs(60));
    }
}
