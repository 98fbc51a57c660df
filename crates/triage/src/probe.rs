//! Parsers of the hosts' answers to the launch script and the status probe.

use crate::platform::JobId;
use crate::script::MARKER;

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
    /// Nothing was started.
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
    for line in stdout.lines() {
        if let Some((word, kv)) = marker_line(line, job) {
            match word {
                "running" if status == Status::Unrecognised => {
                    status = Status::Running {
                        pid: get(&kv, "pid").and_then(|p| p.trim().parse().ok()),
                    }
                }
                "exited" if status == Status::Unrecognised => {
                    status = Status::Exited {
                        code: get(&kv, "code").and_then(|c| c.trim().parse().ok()),
                    }
                }
                "vanished" if status == Status::Unrecognised => status = Status::Vanished,
                "absent" if status == Status::Unrecognised => status = Status::Absent,
                "log-tail" => in_tail = true,
                _ => {}
            }
            continue;
        }
        if in_tail {
            let l = line.trim_end_matches('\r');
            if !l.trim().is_empty() {
                log_tail.push(l.to_string());
            }
        }
    }
    if log_tail.len() > 20 {
        log_tail.drain(..log_tail.len() - 20);
    }
    StatusAnswer { status, log_tail }
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
}
