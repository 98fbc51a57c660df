//! Parsers of the hosts' answers to the launch script and the status probe.

pub use crate::evidence::ArchiveFacts;
use crate::platform::JobId;
use crate::script::MARKER;

/// `launch-error` reason: the job directory (or a link in its place) existed before this launch, and the
/// launch script refuses to use a directory it did not create.
pub const REASON_WORKDIR_EXISTS: &str = "workdir-exists";
/// `launch-error` reason: the job directory could not be created.
pub const REASON_WORKDIR: &str = "workdir";

/// Text the Cado Linux wrapper prints when the collector failed (it still exits 0).
pub const CADO_FAILURE_TEXT: &str = "Cado Host has failed";

/// What a host answered to the launch script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchAnswer {
    /// The collector started.
    Launched {
        /// Process id of the detached collector.
        pid: Option<u64>,
    },
    /// A previous launch of this job exists; nothing was started.
    AlreadyLaunched {
        /// Process id from the existing `pid` marker.
        pid: Option<u64>,
    },
    /// The job directory's volume has less free space than the collector needs; nothing was started
    /// (`no_space`).
    NoSpace {
        /// Free bytes on the volume.
        free_bytes: u64,
        /// Bytes the collector requires ([`crate::evidence::EvidenceRules::min_free_bytes`]).
        required_bytes: u64,
    },
    /// Nothing was started (e.g. [`REASON_WORKDIR_EXISTS`]).
    Error {
        /// The `reason=` word.
        reason: String,
    },
    /// No marker line for this job in the output.
    Unrecognised,
}

/// What a host answered to the status probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAnswer {
    /// The status line.
    pub status: Status,
    /// Up to 20 last lines of `collector.log`.
    pub log_tail: Vec<String>,
    /// The archive the collector left, measured by the host after the collector exited; `None` while it runs
    /// or when the host reported nothing about it.
    pub archive: Option<ArchiveFacts>,
}

/// The status of the collector on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Still running.
    Running {
        /// Its pid.
        pid: Option<u64>,
    },
    /// Exited with this code (`None` when the marker held no number).
    Exited {
        /// The exit code.
        code: Option<i32>,
    },
    /// pid marker present, process gone, no exit code: interrupted (e.g. a reboot).
    Vanished,
    /// Never launched on this host.
    Absent,
    /// Markers exist but fail the owner/mode check (not owned by root/SYSTEM, writable by others, or a
    /// link): nothing in them is believed.
    Untrusted {
        /// The host's `reason=` word (`owner`, `mode`, `link`...).
        reason: String,
    },
    /// No marker line for this job in the output.
    Unrecognised,
}

/// Splits a marker line `FALCON-TRIAGE <word> job=<job> k=v...` for `job`; `None` for any other line.
fn marker_line<'a>(line: &'a str, job: &JobId) -> Option<(&'a str, Vec<(&'a str, &'a str)>)> {
    let rest = line.trim().strip_prefix(MARKER)?.trim_start();
    let mut words = rest.split_whitespace();
    let word = words.next()?;
    let mut kv = Vec::new();
    let mut job_ok = false;
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            if k == "job" {
                job_ok = v == job.as_str();
            } else {
                kv.push((k, v));
            }
        }
    }
    job_ok.then_some((word, kv))
}

/// The value of `key=` running to the end of the line (for names that may hold spaces), when `key=` is the
/// last field of a marker line for `job`.
fn tail_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = line.trim_end_matches(['\r', '\n']);
    let at = line.find(&format!(" {key}="))?;
    Some(&line[at + key.len() + 2..])
}

fn get<'a>(kv: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Parses the stdout of the launch script.
pub fn parse_launch(stdout: &str, job: &JobId) -> LaunchAnswer {
    for line in stdout.lines() {
        let Some((word, kv)) = marker_line(line, job) else {
            continue;
        };
        let pid = get(&kv, "pid").and_then(|p| p.trim().parse().ok());
        match word {
            "launched" => return LaunchAnswer::Launched { pid },
            "no-space" => {
                let num = |k| get(&kv, k).and_then(|v| v.parse().ok()).unwrap_or(0);
                return LaunchAnswer::NoSpace {
                    free_bytes: num("free"),
                    required_bytes: num("required"),
                };
            }
            "already-launched" => return LaunchAnswer::AlreadyLaunched { pid },
            "launch-error" => {
                return LaunchAnswer::Error {
                    reason: get(&kv, "reason").unwrap_or("unknown").to_string(),
                };
            }
            _ => {}
        }
    }
    LaunchAnswer::Unrecognised
}

/// Parses the stdout of the status probe.
pub fn parse_status(stdout: &str, job: &JobId) -> StatusAnswer {
    let mut status = Status::Unrecognised;
    let mut log_tail = Vec::new();
    let mut in_tail = false;
    let mut archive: Option<ArchiveFacts> = None;
    let mut missing = Vec::new();
    for line in stdout.lines() {
        // once the log tail starts, every line is the collector's: a marker there is not the probe's answer
        if in_tail {
            let l = line.trim_end_matches('\r');
            if !l.trim().is_empty() {
                log_tail.push(l.to_string());
            }
            continue;
        }
        let Some((word, kv)) = marker_line(line, job) else {
            continue;
        };
        let first = status == Status::Unrecognised;
        match word {
            "running" if first => {
                status = Status::Running {
                    pid: get(&kv, "pid").and_then(|p| p.trim().parse().ok()),
                }
            }
            "exited" if first => {
                status = Status::Exited {
                    code: get(&kv, "code").and_then(|c| c.trim().parse().ok()),
                }
            }
            "vanished" if first => status = Status::Vanished,
            "absent" if first => status = Status::Absent,
            "untrusted" if first => {
                status = Status::Untrusted {
                    reason: get(&kv, "reason").unwrap_or("unknown").to_string(),
                }
            }
            "archive" if archive.is_none() => {
                let sha256 = get(&kv, "sha256")
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(str::to_ascii_lowercase);
                archive = Some(ArchiveFacts {
                    name: tail_value(line, "name").unwrap_or("").to_string(),
                    bytes: get(&kv, "bytes").and_then(|b| b.parse().ok()).unwrap_or(0),
                    sha256,
                    missing: Vec::new(),
                });
            }
            "missing" => {
                if let Some(f) = tail_value(line, "file").filter(|f| !f.is_empty()) {
                    missing.push(f.to_string());
                }
            }
            "log-tail" => in_tail = true,
            _ => {}
        }
    }
    if let Some(a) = archive.as_mut() {
        a.missing = missing;
    }
    if log_tail.len() > 20 {
        log_tail.drain(..log_tail.len() - 20);
    }
    // facts about an archive only mean something once the collector has exited
    if !matches!(status, Status::Exited { .. }) {
        archive = None;
    }
    StatusAnswer {
        status,
        log_tail,
        archive,
    }
}

impl StatusAnswer {
    /// Whether the collector's own output says it failed (the Cado Linux wrapper exits 0 anyway).
    pub fn reports_failure(&self) -> bool {
        self.log_tail.iter().any(|l| l.contains(CADO_FAILURE_TEXT))
    }

    /// The most telling log line for a failure reason: the failure text, else the last `[ERROR]`/`[CRITICAL]`
    /// line, else the last line.
    pub fn telling_line(&self) -> Option<&str> {
        self.log_tail
            .iter()
            .rev()
            .find(|l| l.contains(CADO_FAILURE_TEXT))
            .or_else(|| {
                self.log_tail
                    .iter()
                    .rev()
                    .find(|l| l.contains("[ERROR]") || l.contains("[CRITICAL]"))
            })
            .or_else(|| self.log_tail.last())
            .map(|s| s.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobId {
        JobId::parse("3f9a1c2e").unwrap()
    }

    #[test]
    fn launch_answers() {
        let j = job();
        assert_eq!(
            parse_launch("FALCON-TRIAGE launched job=3f9a1c2e pid=4242\n", &j),
            LaunchAnswer::Launched { pid: Some(4242) }
        );
        assert_eq!(
            parse_launch(
                "noise\r\nFALCON-TRIAGE already-launched job=3f9a1c2e pid=17\r\n",
                &j
            ),
            LaunchAnswer::AlreadyLaunched { pid: Some(17) }
        );
        assert_eq!(
            parse_launch("FALCON-TRIAGE launch-error job=3f9a1c2e reason=workdir", &j),
            LaunchAnswer::Error {
                reason: "workdir".into()
            }
        );
        // another job's answer is not ours
        assert_eq!(
            parse_launch("FALCON-TRIAGE launched job=00000000 pid=1", &j),
            LaunchAnswer::Unrecognised
        );
        assert_eq!(parse_launch("", &j), LaunchAnswer::Unrecognised);
    }

    #[test]
    fn status_answers_and_log_tail() {
        let j = job();
        let out = "FALCON-TRIAGE exited job=3f9a1c2e code=0\nFALCON-TRIAGE log-tail job=3f9a1c2e\n\
                   [2026-11-22 08:00:00,000][INFO] - Uploading capture\n\
                   Cado Host has failed. For troubleshooting run with --verbose\n";
        let a = parse_status(out, &j);
        assert_eq!(a.status, Status::Exited { code: Some(0) });
        assert_eq!(a.log_tail.len(), 2);
        assert!(a.reports_failure());
        assert_eq!(
            a.telling_line(),
            Some("Cado Host has failed. For troubleshooting run with --verbose")
        );

        let a = parse_status(
            "FALCON-TRIAGE running job=3f9a1c2e pid=99\nFALCON-TRIAGE log-tail job=3f9a1c2e\n",
            &j,
        );
        assert_eq!(a.status, Status::Running { pid: Some(99) });
        assert!(a.log_tail.is_empty());
        assert!(!a.reports_failure());

        assert_eq!(
            parse_status("FALCON-TRIAGE vanished job=3f9a1c2e", &j).status,
            Status::Vanished
        );
        assert_eq!(
            parse_status("FALCON-TRIAGE absent job=3f9a1c2e", &j).status,
            Status::Absent
        );
        assert_eq!(
            parse_status("FALCON-TRIAGE exited job=3f9a1c2e code=\r\n", &j).status,
            Status::Exited { code: None }
        );
        assert_eq!(parse_status("garbage", &j).status, Status::Unrecognised);
    }

    #[test]
    fn telling_line_prefers_errors() {
        let a = StatusAnswer {
            status: Status::Exited { code: Some(2) },
            log_tail: vec![
                "[x][ERROR] - upload refused: 403".into(),
                "[x][INFO] - cleaning up".into(),
            ],
            archive: None,
        };
        assert_eq!(a.telling_line(), Some("[x][ERROR] - upload refused: 403"));
    }

    #[test]
    fn long_tails_are_capped() {
        let j = job();
        let mut out = String::from(
            "FALCON-TRIAGE running job=3f9a1c2e pid=1\nFALCON-TRIAGE log-tail job=3f9a1c2e\n",
        );
        for i in 0..30 {
            out.push_str(&format!("line {i}\n"));
        }
        let a = parse_status(&out, &j);
        assert_eq!(a.log_tail.len(), 20);
        assert_eq!(a.log_tail[0], "line 10");
    }

    #[test]
    fn no_space_and_refused_workdir() {
        let j = job();
        assert_eq!(
            parse_launch(
                "FALCON-TRIAGE no-space job=3f9a1c2e free=104857600 required=2147483648\n",
                &j
            ),
            LaunchAnswer::NoSpace {
                free_bytes: 104_857_600,
                required_bytes: 2_147_483_648
            }
        );
        assert_eq!(
            parse_launch(
                "FALCON-TRIAGE launch-error job=3f9a1c2e reason=workdir-exists\n",
                &j
            ),
            LaunchAnswer::Error {
                reason: REASON_WORKDIR_EXISTS.into()
            }
        );
    }

    #[test]
    fn archive_facts_after_exit() {
        let j = job();
        let sha = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        let out = format!(
            "FALCON-TRIAGE exited job=3f9a1c2e code=0\r\n\
             FALCON-TRIAGE archive job=3f9a1c2e bytes=145000000 sha256={sha} name=cado-host capture 1.tar.lz4\r\n\
             FALCON-TRIAGE missing job=3f9a1c2e file=out/*.log\n\
             FALCON-TRIAGE missing job=3f9a1c2e file=C:\\x y\\z.txt\n\
             FALCON-TRIAGE log-tail job=3f9a1c2e\n\
             FALCON-TRIAGE archive job=3f9a1c2e bytes=1 name=forged-by-the-log\n\
             FALCON-TRIAGE missing job=3f9a1c2e file=forged\n"
        );
        let a = parse_status(&out, &j);
        assert_eq!(a.status, Status::Exited { code: Some(0) });
        assert_eq!(
            a.archive,
            Some(ArchiveFacts {
                name: "cado-host capture 1.tar.lz4".into(),
                bytes: 145_000_000,
                sha256: Some(sha.to_ascii_lowercase()),
                missing: vec!["out/*.log".into(), "C:\\x y\\z.txt".into()],
            })
        );
        // the log's lines stay log lines
        assert_eq!(a.log_tail.len(), 2);
        // no archive found, and a malformed hash is unknown rather than trusted
        let a = parse_status(
            "FALCON-TRIAGE exited job=3f9a1c2e code=0\nFALCON-TRIAGE archive job=3f9a1c2e bytes=0 sha256=zz name=\n",
            &j,
        );
        assert_eq!(
            a.archive,
            Some(ArchiveFacts {
                name: String::new(),
                bytes: 0,
                sha256: None,
                missing: vec![],
            })
        );
        // while running, archive lines are ignored
        let a = parse_status(
            "FALCON-TRIAGE running job=3f9a1c2e pid=3\nFALCON-TRIAGE archive job=3f9a1c2e bytes=9 name=a\n",
            &j,
        );
        assert_eq!(a.archive, None);
    }

    #[test]
    fn untrusted_markers() {
        let j = job();
        assert_eq!(
            parse_status("FALCON-TRIAGE untrusted job=3f9a1c2e reason=owner\n", &j).status,
            Status::Untrusted {
                reason: "owner".into()
            }
        );
        // a forged status inside the log tail does not count
        assert_eq!(
            parse_status(
                "FALCON-TRIAGE log-tail job=3f9a1c2e\nFALCON-TRIAGE exited job=3f9a1c2e code=0\n",
                &j
            )
            .status,
            Status::Unrecognised
        );
    }
}
