//! Polling rounds: one batch status probe per batch, sent to the launched hosts of that batch whatever
//! their OS (the probe is one polyglot script). Hosts whose launch waits in the offline queue are never
//! probed (see `super::queue`).

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::{Engine, timeout_secs};
use crate::api::{FalconApi, HostReply};
use crate::error::Result;
use crate::probe::{Status, parse_status};
use crate::script::{runscript_command, status_probe};
use crate::state::{HostState, reason};

impl<A: FalconApi> Engine<'_, A> {
    pub(super) async fn probe(&mut self) -> Result<()> {
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in self.hosts_in(&[HostState::Launched, HostState::Running]) {
            if self.track[i].awaiting_capture.is_some() {
                continue;
            }
            if let Some(b) = self.track[i].batch.filter(|&b| !self.batches[b].queueing) {
                groups.entry(b).or_default().push(i);
            }
        }
        let command_string = runscript_command(
            &status_probe(&self.ctx.job),
            timeout_secs(self.ctx.settings.rtr_timeout),
        )?;
        let mut calls = 0;
        let mut queued = Vec::new();
        for (b, members) in groups {
            if self.ctx.control.is_aborted() {
                break;
            }
            self.stats.probe_calls += 1;
            calls += 1;
            let replies = match self.runscript(b, &command_string, &members).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), batch = %self.batches[b].id, hosts = members.len(), "probe call failed; next round");
                    continue;
                }
            };
            for &i in &members {
                match replies.get(&self.hosts[i].device_id) {
                    Some(reply) if reply.offline_queued => {
                        // Falcon queued the probe anyway (a session kept from an offline time): take it back
                        self.track[i].unanswered += 1;
                        if reply.session_id.is_some() {
                            self.hosts[i].queued_session = reply.session_id.clone();
                        }
                        queued.push(i);
                    }
                    Some(reply) => {
                        let reply = reply.clone();
                        self.on_probe_reply(i, &reply)?;
                    }
                    None => self.track[i].unanswered += 1,
                }
            }
            self.commit().await?;
        }
        self.stats.max_probe_calls_per_round = self.stats.max_probe_calls_per_round.max(calls);
        if !queued.is_empty() {
            tracing::warn!(
                hosts = queued.len(),
                "probes were queued for offline hosts; deleting them"
            );
            self.withdraw(&queued).await?;
            self.commit().await?;
        }
        Ok(())
    }

    fn on_probe_reply(&mut self, i: usize, reply: &HostReply) -> Result<()> {
        if !reply.complete || reply.is_offline_error() {
            self.track[i].unanswered += 1;
            return Ok(()); // offline or slow: next round
        }
        let answer = parse_status(&reply.stdout, &self.ctx.job);
        if let Some(line) = answer.log_tail.last() {
            self.hosts[i].last_log =
                Some(crate::report::truncate(&self.redactor.redact(line), 300));
        }
        let telling = answer
            .telling_line()
            .map(|l| self.redactor.redact(l))
            .unwrap_or_default();
        if !matches!(answer.status, Status::Unrecognised) {
            self.track[i].answered = true;
        }
        let now = self.ctx.clock.now();
        match answer.status {
            Status::Running { pid } => {
                let h = &mut self.hosts[i];
                h.pid = pid.or(h.pid);
                h.launched_at.get_or_insert(now);
                self.set(i, HostState::Running, None)
            }
            Status::Exited { code: Some(0) } if !answer.reports_failure() => {
                self.hosts[i].launched_at.get_or_insert(now);
                if let Some(problem) = self.judge_evidence(i, answer.archive) {
                    return self.set(i, HostState::Failed, Some(problem));
                }
                if self.ctx.settings.verify_project.is_some() && self.ctx.cado.is_some() {
                    self.set(i, HostState::Running, None)?;
                    self.track[i].awaiting_capture = Some(Instant::now());
                    Ok(())
                } else {
                    self.set(i, HostState::Succeeded, None)
                }
            }
            Status::Exited { code: Some(0) } => {
                self.hosts[i].archive = answer.archive;
                self.set(
                    i,
                    HostState::Failed,
                    Some(format!("{}: {telling}", reason::COLLECTOR_FAILED)),
                )
            }
            Status::Exited { code } => {
                self.hosts[i].archive = answer.archive;
                let c = code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "unreadable".into());
                let why = if telling.is_empty() {
                    format!("{}: {c}", reason::EXIT_CODE)
                } else {
                    format!("{}: {c}: {telling}", reason::EXIT_CODE)
                };
                self.set(i, HostState::Failed, Some(why))
            }
            Status::Vanished => {
                let last = if telling.is_empty() {
                    String::new()
                } else {
                    format!("; last log: {telling}")
                };
                let why = format!(
                    "{}: collector process gone without an exit code{last}",
                    reason::INTERRUPTED
                );
                self.set(i, HostState::Failed, Some(why))
            }
            Status::Absent => self.set(
                i,
                HostState::Failed,
                Some(format!(
                    "{}: no work directory markers on the host after the launch",
                    reason::MARKERS_MISSING
                )),
            ),
            Status::Untrusted { reason: r } => self.set(
                i,
                HostState::Failed,
                Some(format!(
                    "{}: the job directory's markers fail the owner/mode check ({r})",
                    reason::UNTRUSTED
                )),
            ),
            Status::Unrecognised => {
                self.track[i].unanswered += 1;
                tracing::debug!(device_id = %self.hosts[i].device_id, "unrecognised probe answer");
                Ok(())
            }
        }
    }
}
