//! Human-facing output: selection summary, dry run, host listing, preflight table, live progress.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use triage::preflight::{ScopeCheck, ScopeStatus};
use triage::report::table;
use triage::script::{runscript_command, status_probe};
use triage::{CollectorSet, HostState, JobId, Progress, Resolved};

use crate::cli::Output;

pub fn selection_summary(r: &Resolved) -> String {
    let mut s = String::new();
    let per: Vec<String> = r
        .per_platform()
        .iter()
        .map(|(p, n)| format!("{} {n}", p.map(|p| p.as_str()).unwrap_or("unsupported")))
        .collect();
    let _ = writeln!(
        s,
        "selected {} hosts ({})",
        r.hosts.len(),
        if per.is_empty() {
            "none".into()
        } else {
            per.join(", ")
        }
    );
    if r.filtered_out > 0 {
        let _ = writeln!(
            s,
            "{} hosts left out by the platform filter",
            r.filtered_out
        );
    }
    if !r.not_found.is_empty() {
        let _ = writeln!(s, "not found: {}", r.not_found.join(", "));
    }
    s
}

fn host_rows(r: &Resolved) -> Vec<[String; 3]> {
    r.hosts
        .iter()
        .map(|h| {
            [
                h.hostname.clone(),
                h.device_id.clone(),
                h.platform
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

pub fn hosts(r: &Resolved, out: Output) -> anyhow::Result<String> {
    Ok(match out {
        Output::Table => {
            let mut s = table(&["HOSTNAME", "DEVICE ID", "PLATFORM"], &host_rows(r));
            s.push_str(&selection_summary(r));
            s
        }
        Output::Json => {
            let hosts: Vec<_> = r
                .hosts
                .iter()
                .map(|h| serde_json::json!({"device_id": h.device_id, "hostname": h.hostname, "platform": h.platform}))
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &serde_json::json!({"hosts": hosts, "not_found": r.not_found})
                )?
            )
        }
    })
}

/// The dry run: the selection and, per platform, the collector command and the launch script, with secrets
/// redacted. Nothing is sent.
pub fn dry_run(
    job: &JobId,
    r: &Resolved,
    set: &CollectorSet,
    script_timeout: u64,
    out: Output,
) -> anyhow::Result<String> {
    let redactor = set.redactor().clone();
    let platforms: Vec<_> = {
        let mut p: Vec<_> = r.hosts.iter().filter_map(|h| h.platform).collect();
        p.sort();
        p.dedup();
        p
    };
    let mut per = Vec::new();
    for p in platforms {
        let Some(launch) = set.launch_script_redacted(p, job) else {
            continue;
        };
        let launch = redactor.redact_known(&runscript_command(&launch, script_timeout)?);
        per.push((p, set.display(p).unwrap_or_default(), launch));
    }
    // One status probe for every platform: a script valid for POSIX shells and PowerShell alike.
    let probe = runscript_command(&status_probe(job), script_timeout)?;
    Ok(match out {
        Output::Json => {
            let commands: serde_json::Map<String, serde_json::Value> = per
                .iter()
                .map(|(p, c, l)| {
                    (
                        p.as_str().to_string(),
                        serde_json::json!({"command": c, "launch": l}),
                    )
                })
                .collect();
            let hosts: Vec<_> = r
                .hosts
                .iter()
                .map(|h| serde_json::json!({"device_id": h.device_id, "hostname": h.hostname, "platform": h.platform}))
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&serde_json::json!({
                    "dry_run": true, "job": job.as_str(), "collector": set.label(),
                    "hosts": hosts, "not_found": r.not_found, "commands": commands, "probe": probe,
                }))?
            )
        }
        Output::Table => {
            let mut s = format!(
                "dry run: job {job}, collector {}; nothing is sent\n\n",
                set.label()
            );
            s.push_str(&table(
                &["HOSTNAME", "DEVICE ID", "PLATFORM"],
                &host_rows(r),
            ));
            s.push_str(&selection_summary(r));
            for (p, c, l) in per {
                let _ = write!(
                    s,
                    "\n== {p}: collector command ==\n{c}\n\n== {p}: launch (batch admin runscript) ==\n{l}\n"
                );
            }
            let _ = write!(
                s,
                "\n== status probe, every platform (batch admin runscript, one call per batch per round) ==\n{probe}\n"
            );
            s
        }
    })
}

pub fn preflight(checks: &[ScopeCheck]) -> String {
    let rows: Vec<[String; 4]> = checks
        .iter()
        .map(|c| {
            let status = match (c.status, c.optional) {
                (ScopeStatus::Granted, _) => "ok",
                (ScopeStatus::Missing, true) => "missing (optional)",
                (ScopeStatus::Missing, false) => "MISSING",
                (_, true) => "unproven (optional)",
                (_, false) => "UNPROVEN",
            };
            [
                c.scope.to_string(),
                status.to_string(),
                c.needed_for.to_string(),
                c.detail.clone(),
            ]
        })
        .collect();
    table(&["SCOPE", "STATUS", "NEEDED FOR", "ANSWER"], &rows)
}

/// One line of counts per state, e.g. `running 80 · succeeded 800 · failed 50`.
pub fn counts_line(p: &Progress) -> String {
    let short = |s: HostState| match s {
        HostState::QueuedOffline => "queued",
        other => other.as_str(),
    };
    let parts: Vec<String> = HostState::ALL
        .iter()
        .filter_map(|s| {
            p.counts
                .get(s)
                .filter(|n| **n > 0)
                .map(|n| format!("{} {n}", short(*s)))
        })
        .collect();
    let stop = if p.stopping {
        " [stopping: no new launches]"
    } else {
        ""
    };
    format!("round {}: {}{stop}", p.round, parts.join(" · "))
}

/// Live progress on stderr: an indicatif bar on a terminal, a line per change (at most every 2 s) otherwise.
pub struct ProgressView {
    bar: Option<ProgressBar>,
    last: Mutex<(Instant, String)>,
}

impl ProgressView {
    pub fn new(total: u64) -> ProgressView {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        ProgressView {
            bar,
            last: Mutex::new((Instant::now() - Duration::from_secs(60), String::new())),
        }
    }

    pub fn update(&self, p: &Progress) {
        let done: usize = p
            .counts
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        let line = counts_line(p);
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
            b.set_message(line);
        } else if let Ok(mut last) = self.last.lock()
            && last.1 != line
            && last.0.elapsed() >= Duration::from_secs(2)
        {
            eprintln!("{line}");
            *last = (Instant::now(), line);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
