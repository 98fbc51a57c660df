//! Launches: one batch `runscript` per (batch, platform), within the concurrency limit.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;

use super::{Engine, timeout_secs};
use crate::api::{FalconApi, HostReply};
use crate::error::Result;
use crate::platform::Platform;
use crate::probe::{LaunchAnswer, parse_launch};
use crate::script::runscript_command;
use crate::state::{HostState, reason};

impl<A: FalconApi> Engine<'_, A> {
    /// Collections that count against `max_concurrent` (queued, launched or running, not yet verified).
    fn active(&self) -> usize {
        (0..self.hosts.len())
            .filter(|&i| {
                matches!(
                    self.hosts[i].state,
                    HostState::QueuedOffline | HostState::Launched | HostState::Running
                ) && self.track[i].awaiting_capture.is_none()
            })
            .count()
    }

    pub(super) async fn launch(&mut self) -> Result<()> {
        let Some(collector) = self.ctx.collector.clone() else {
            return Ok(());
        };
        let mut slots = self
            .ctx
            .settings
            .max_concurrent
            .map(|m| m.saturating_sub(self.active()))
            .unwrap_or(usize::MAX);
        // (queueing batches first: their launches only wait in Falcon's queue, so are sent at once)
        let mut groups: BTreeMap<(bool, usize, Platform), Vec<usize>> = BTreeMap::new();
        for i in 0..self.hosts.len() {
            let (Some(b), Some(p)) = (self.track[i].batch, self.hosts[i].platform) else {
                continue;
            };
            let take = match self.hosts[i].state {
                HostState::Session if slots > 0 => {
                    slots -= 1;
                    true
                }
                HostState::QueuedOffline => self.track[i].resend,
                _ => false,
            };
            if take {
                let queueing = self.batches[b].queueing;
                groups.entry((!queueing, b, p)).or_default().push(i);
            }
        }
        for ((_, b, p), members) in groups {
            if self.ctx.control.is_aborted() {
                break;
            }
            let Some(script) = collector.launch_script(p, &self.ctx.job) else {
                continue;
            };
            let command_string = runscript_command(
                script.expose_secret(),
                timeout_secs(self.ctx.settings.rtr_timeout),
            )?;
            self.stats.launch_calls += 1;
            match self.runscript(b, &command_string, &members).await {
                Ok(replies) => {
                    for &i in &members {
                        self.track[i].resend = false;
                        let reply = replies.get(&self.hosts[i].device_id).cloned();
                        self.on_launch_reply(i, reply)?;
                    }
                }
                Err(e) => {
                    let text = self.redactor.redact(&format!("{e:#}"));
                    tracing::warn!(error = %text, hosts = members.len(), platform = %p, "launch call failed");
                    for &i in &members {
                        let t = &mut self.track[i];
                        // saturating: queued hosts of a resumed run are resent every round
                        t.launch_failures = t.launch_failures.saturating_add(1);
                        if t.launch_failures >= 3 && self.hosts[i].state == HostState::Session {
                            let why = format!(
                                "{}: launch call failed 3 times: {text}",
                                reason::RTR_ERROR
                            );
                            self.set(i, HostState::Failed, Some(why))?;
                        }
                    }
                }
            }
            self.commit().await?;
        }
        Ok(())
    }

    fn on_launch_reply(&mut self, i: usize, reply: Option<HostReply>) -> Result<()> {
        let Some(reply) = reply else {
            tracing::debug!(device_id = %self.hosts[i].device_id, "no launch answer for host; retrying next round");
            return Ok(());
        };
        let now = self.ctx.clock.now();
        if reply.offline_queued && !reply.complete {
            if reply.session_id.is_some() {
                self.hosts[i].queued_session = reply.session_id.clone();
            }
            return self.set(i, HostState::QueuedOffline, None);
        }
        if reply.is_offline_error() {
            // offline without queueing: try again next round
            return Ok(());
        }
        // a host reached through a queueing session is probed through another one
        if self.track[i]
            .batch
            .is_some_and(|b| self.batches[b].queueing)
        {
            self.track[i].batch = None;
        }
        match parse_launch(&reply.stdout, &self.ctx.job) {
            LaunchAnswer::Launched { pid } | LaunchAnswer::AlreadyLaunched { pid } => {
                let h = &mut self.hosts[i];
                h.pid = pid.or(h.pid);
                h.launched_at.get_or_insert(now);
                self.set(i, HostState::Launched, None)
            }
            LaunchAnswer::NoSpace {
                free_bytes,
                required_bytes,
            } => self.set(
                i,
                HostState::Failed,
                Some(format!(
                    "{}: {free_bytes} bytes free on the job directory's volume, {required_bytes} required",
                    reason::NO_SPACE
                )),
            ),
            LaunchAnswer::Error { reason: r } => self.set(
                i,
                HostState::Failed,
                Some(format!("{}: {r}", reason::LAUNCH_ERROR)),
            ),
            LaunchAnswer::Unrecognised
                if reply.is_timeout_error() || (!reply.complete && reply.errors.is_empty()) =>
            {
                // the script may have run: the probe decides (the launch script refuses a second launch)
                self.hosts[i].launched_at.get_or_insert(now);
                self.set(i, HostState::Launched, None)
            }
            LaunchAnswer::Unrecognised => {
                let detail = if !reply.errors.is_empty() {
                    format!("{}: {}", reason::RTR_ERROR, reply.error_text())
                } else {
                    let out = if reply.stderr.trim().is_empty() {
                        &reply.stdout
                    } else {
                        &reply.stderr
                    };
                    format!("{}: {}", reason::NO_LAUNCH_ANSWER, out.trim())
                };
                self.set(i, HostState::Failed, Some(detail))
            }
        }
    }
}
