//! The end-of-run report: `--output json` object (`summary` + `hosts`), the per-host table, and the exit
//! code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exit_codes;
use crate::state::{HostRecord, HostState};

/// Counts per state and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Job id.
    pub job: String,
    /// Collector label.
    pub collector: String,
    /// Number of hosts.
    pub total: usize,
    /// Hosts per state (every state present, zero included).
    pub states: BTreeMap<String, usize>,
    /// Hosts that succeeded.
    pub succeeded: usize,
    /// Hosts that failed, timed out or were cancelled.
    pub unsuccessful: usize,
    /// Hosts not in a terminal state (the run was left early).
    pub unfinished: usize,
    /// Hosts that failed, timed out or were cancelled, per reason class (`too_small`, `no_space`, `offline`...).
    #[serde(default)]
    pub reasons: BTreeMap<String, usize>,
    /// Commands of this run deleted from offline hosts' queues (launches of hosts that timed out or were
    /// cancelled while offline).
    #[serde(default)]
    pub queued_deleted: usize,
    /// Hosts that may still have a launch of this run in Falcon's offline queue (the run was left, or a
    /// delete failed): it runs if the host reconnects within 7 days.
    #[serde(default)]
    pub queued_left: usize,
    /// The exit code `falcon-triage` returns for this report.
    pub exit_code: i32,
}

/// The report: a summary and one entry per host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Summary.
    pub summary: Summary,
    /// Hosts, sorted by host name then device id.
    pub hosts: Vec<HostRecord>,
}

/// Counts hosts per state.
pub fn counts<'a>(hosts: impl IntoIterator<Item = &'a HostRecord>) -> BTreeMap<HostState, usize> {
    let mut c: BTreeMap<HostState, usize> = HostState::ALL.iter().map(|s| (*s, 0)).collect();
    for h in hosts {
        *c.entry(h.state).or_default() += 1;
    }
    c
}

/// Counts the unsuccessful hosts per reason class (the part of the reason before the first `:`).
pub fn reason_counts<'a>(
    hosts: impl IntoIterator<Item = &'a HostRecord>,
) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for h in hosts {
        if h.state.is_terminal() && h.state != HostState::Succeeded {
            let class = h
                .reason
                .as_deref()
                .and_then(|r| r.split(':').next())
                .filter(|c| !c.is_empty())
                .unwrap_or("unknown");
            *c.entry(class.to_string()).or_default() += 1;
        }
    }
    c
}

/// The exit code for a set of final states (see [`crate::exit_codes`]).
pub fn exit_code(counts: &BTreeMap<HostState, usize>) -> i32 {
    let total: usize = counts.values().sum();
    let succeeded = counts.get(&HostState::Succeeded).copied().unwrap_or(0);
    let unfinished: usize = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    if unfinished > 0 {
        exit_codes::INTERRUPTED
    } else if total > 0 && succeeded == total {
        exit_codes::SUCCESS
    } else if succeeded == 0 {
        exit_codes::NOTHING_RAN
    } else {
        exit_codes::SOME_FAILED
    }
}

impl Report {
    /// Builds the report from the hosts' records.
    pub fn new(job: &str, collector: &str, hosts: impl IntoIterator<Item = HostRecord>) -> Report {
        let mut hosts: Vec<HostRecord> = hosts.into_iter().collect();
        hosts.sort_by(|a, b| {
            (a.hostname.to_lowercase(), &a.device_id)
                .cmp(&(b.hostname.to_lowercase(), &b.device_id))
        });
        let c = counts(&hosts);
        let succeeded = c[&HostState::Succeeded];
        let unfinished: usize = c
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        let summary = Summary {
            job: job.to_string(),
            collector: collector.to_string(),
            total: hosts.len(),
            states: c
                .iter()
                .map(|(s, n)| (s.as_str().to_string(), *n))
                .collect(),
            succeeded,
            unsuccessful: hosts.len() - succeeded - unfinished,
            unfinished,
            reasons: reason_counts(&hosts),
            queued_deleted: hosts.iter().map(|h| h.queued_deleted as usize).sum(),
            queued_left: hosts.iter().filter(|h| h.queued_left).count(),
            exit_code: exit_code(&c),
        };
        Report { summary, hosts }
    }

    /// The per-host table and a summary line, for a terminal.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .hosts
            .iter()
            .map(|h| {
                [
                    h.hostname.clone(),
                    h.device_id.clone(),
                    h.platform
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_else(|| "-".into()),
                    h.state.as_str().to_string(),
                    truncate(h.reason.as_deref().unwrap_or(""), 100),
                ]
            })
            .collect();
        let mut out = table(
            &["HOSTNAME", "DEVICE ID", "PLATFORM", "STATE", "REASON"],
            &rows,
        );
        out.push('\n');
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }

    /// One line: `job 3f9a1c2e: 10 hosts: 8 succeeded, 1 failed, 1 timed_out`.
    pub fn summary_line(&self) -> String {
        let parts: Vec<String> = HostState::ALL
            .iter()
            .filter_map(|s| {
                self.summary
                    .states
                    .get(s.as_str())
                    .filter(|n| **n > 0)
                    .map(|n| format!("{n} {s}"))
            })
            .collect();
        let parts = if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(", ")
        };
        let mut line = format!(
            "job {}: {} hosts: {}",
            self.summary.job, self.summary.total, parts
        );
        if !self.summary.reasons.is_empty() {
            let r: Vec<String> = self
                .summary
                .reasons
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            line.push_str(&format!(" (reasons: {})", r.join(", ")));
        }
        if self.summary.queued_deleted > 0 {
            line.push_str(&format!(
                "; {} queued launches deleted",
                self.summary.queued_deleted
            ));
        }
        if self.summary.queued_left > 0 {
            line.push_str(&format!(
                "; {} hosts still have a queued launch (it runs if they reconnect within 7 days)",
                self.summary.queued_left
            ));
        }
        line
    }
}

/// Truncates to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.chars().count() <= max {
        s
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// Left-aligned columns separated by two spaces, with a header row.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    fn host(id: &str, name: &str, state: HostState, reason: Option<&str>) -> HostRecord {
        let mut h = HostRecord::new(id, name, Some(Platform::Linux));
        h.state = state;
        h.reason = reason.map(Into::into);
        h
    }

    #[test]
    fn exit_codes_follow_the_outcome() {
        let ok = [host("a", "a", HostState::Succeeded, None)];
        assert_eq!(
            Report::new("j", "c", ok.clone()).summary.exit_code,
            exit_codes::SUCCESS
        );
        let some = [
            host("a", "a", HostState::Succeeded, None),
            host("b", "b", HostState::Failed, Some("exit_code: 2")),
        ];
        assert_eq!(
            Report::new("j", "c", some).summary.exit_code,
            exit_codes::SOME_FAILED
        );
        let none = [host(
            "b",
            "b",
            HostState::TimedOut,
            Some("offline: until deadline"),
        )];
        assert_eq!(
            Report::new("j", "c", none).summary.exit_code,
            exit_codes::NOTHING_RAN
        );
        assert_eq!(
            Report::new("j", "c", Vec::new()).summary.exit_code,
            exit_codes::NOTHING_RAN
        );
        let left = [
            host("a", "a", HostState::Succeeded, None),
            host("b", "b", HostState::Running, None),
        ];
        let r = Report::new("j", "c", left);
        assert_eq!(r.summary.exit_code, exit_codes::INTERRUPTED);
        assert_eq!(r.summary.unfinished, 1);
    }

    #[test]
    fn json_shape_has_summary_and_hosts_with_required_fields() {
        let r = Report::new(
            "3f9a1c2e",
            "cado",
            [host(
                "aid1",
                "web-1",
                HostState::Failed,
                Some("exit_code: 1"),
            )],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["summary"]["total"], 1);
        assert_eq!(v["summary"]["states"]["failed"], 1);
        assert_eq!(v["summary"]["states"]["succeeded"], 0);
        let h = &v["hosts"][0];
        for k in ["device_id", "hostname", "platform", "state", "reason"] {
            assert!(h.get(k).is_some(), "missing {k}");
        }
        assert_eq!(h["state"], "failed");
        assert_eq!(h["platform"], "linux");
        let ok = Report::new("j", "c", [host("a", "a", HostState::Succeeded, None)]);
        assert!(serde_json::to_value(&ok).unwrap()["hosts"][0]["reason"].is_null());
    }

    #[test]
    fn table_is_aligned_and_sorted() {
        let r = Report::new(
            "3f9a1c2e",
            "cado",
            [
                host("aid2", "web-2", HostState::Succeeded, None),
                host(
                    "aid1",
                    "db-1",
                    HostState::Failed,
                    Some("exit_code: 2: [x][ERROR] - boom"),
                ),
            ],
        );
        let t = r.table();
        let expected = "HOSTNAME  DEVICE ID  PLATFORM  STATE      REASON\n\
                        db-1      aid1       linux     failed     exit_code: 2: [x][ERROR] - boom\n\
                        web-2     aid2       linux     succeeded\n\
                        \njob 3f9a1c2e: 2 hosts: 1 succeeded, 1 failed (reasons: exit_code 1)\n";
        assert_eq!(t, expected);
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
