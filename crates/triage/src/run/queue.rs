//! Hosts whose launch waits in Falcon's offline queue: their state is read through the queued-session API
//! (never by sending them a probe, which would be queued too), and their queued commands are deleted when
//! they end `timed_out` or `cancelled`.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::Engine;
use crate::api::{FalconApi, QueuedCommand};
use crate::error::Result;
use crate::state::HostState;

/// What became of a host's queued commands when the run withdrew them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Withdrawn {
    /// This many pending commands were deleted (0: none was pending).
    Deleted(u32),
    /// The queued launch already left the queue: the host reconnected and ran it.
    Ran,
    /// Falcon could not be asked or refused the delete: the commands may still run.
    Left,
}

impl Withdrawn {
    /// The end of a reason: what happened to the queue.
    pub(super) fn note(self) -> &'static str {
        match self {
            Withdrawn::Deleted(0) => "",
            Withdrawn::Deleted(_) => "; its queued launch was deleted",
            Withdrawn::Ran => "",
            Withdrawn::Left => {
                "; its queued launch could not be deleted: it runs if the host reconnects within 7 days"
            }
        }
    }
}

impl<A: FalconApi> Engine<'_, A> {
    /// The run's commands in the queued sessions of hosts `idx`, by host index (`Err` when the lookup
    /// failed).
    async fn queued_of(&mut self, idx: &[usize]) -> Result<BTreeMap<usize, Vec<QueuedCommand>>> {
        let sessions: Vec<String> = idx
            .iter()
            .filter_map(|&i| self.hosts[i].queued_session.clone())
            .collect();
        let mut out: BTreeMap<usize, Vec<QueuedCommand>> =
            idx.iter().map(|&i| (i, Vec::new())).collect();
        if sessions.is_empty() {
            return Ok(out);
        }
        self.stats.queue_checks += 1;
        let commands = self
            .api
            .queued_commands(&sessions, self.ctx.job.as_str())
            .await?;
        for c in commands {
            if let Some(&i) = self.index.get(&c.device_id)
                && let Some(v) = out.get_mut(&i)
            {
                v.push(c);
            }
        }
        Ok(out)
    }

    /// Reads the queue of the hosts waiting offline (every `queue_check_interval`). A host whose queued
    /// launch left the queue reconnected and ran it: it becomes `launched` and is probed from then on
    /// through a session opened without `queue_offline`.
    pub(super) async fn check_queue(&mut self) -> Result<()> {
        if self
            .last_queue_check
            .is_some_and(|t| t.elapsed() < self.ctx.settings.queue_check_interval)
        {
            return Ok(());
        }
        let waiting: Vec<usize> = self
            .hosts_in(&[HostState::QueuedOffline])
            .filter(|&i| !self.track[i].resend && self.hosts[i].queued_session.is_some())
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        self.last_queue_check = Some(Instant::now());
        let queued = match self.queued_of(&waiting).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %self.redactor.redact(&format!("{e:#}")), hosts = waiting.len(), "reading the offline queue failed; next check");
                return Ok(());
            }
        };
        let now = self.ctx.clock.now();
        for (i, commands) in queued {
            if commands.iter().any(|c| c.pending) {
                continue;
            }
            tracing::debug!(device_id = %self.hosts[i].device_id, "queued launch left the queue: host reconnected");
            self.hosts[i].launched_at.get_or_insert(now);
            self.hosts[i].queued_left = false;
            self.track[i].batch = None;
            self.set(i, HostState::Launched, None)?;
        }
        self.commit().await
    }

    /// Deletes every pending command of this run queued for hosts `idx`, and says per host what became of
    /// them. A host whose launch already left the queue is moved to `launched` (it is followed, not ended).
    pub(super) async fn withdraw(&mut self, idx: &[usize]) -> Result<BTreeMap<usize, Withdrawn>> {
        let mut result = BTreeMap::new();
        for &i in idx {
            if self.hosts[i].queued_session.is_none() {
                // an old journal's queued host: the queued session is unknown, its launch may wait
                result.insert(i, Withdrawn::Left);
            }
        }
        let known: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|i| !result.contains_key(i))
            .collect();
        if known.is_empty() {
            return self.record_withdrawn(result);
        }
        let queued = match self.queued_of(&known).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %self.redactor.redact(&format!("{e:#}")), hosts = known.len(), "reading the offline queue failed; queued launches left");
                result.extend(known.iter().map(|&i| (i, Withdrawn::Left)));
                return self.record_withdrawn(result);
            }
        };
        for (i, commands) in queued {
            let pending: Vec<&QueuedCommand> = commands.iter().filter(|c| c.pending).collect();
            if pending.is_empty() && self.hosts[i].state == HostState::QueuedOffline {
                result.insert(i, Withdrawn::Ran);
                continue;
            }
            let mut outcome = Withdrawn::Deleted(0);
            for c in pending {
                match self
                    .api
                    .delete_queued_command(&c.session_id, &c.cloud_request_id)
                    .await
                {
                    Ok(true) => {
                        self.stats.queued_deleted += 1;
                        if let Withdrawn::Deleted(n) = &mut outcome {
                            *n += 1;
                        }
                    }
                    // gone meanwhile: the host reconnected and ran it
                    Ok(false) => outcome = Withdrawn::Ran,
                    Err(e) => {
                        tracing::warn!(error = %self.redactor.redact(&format!("{e:#}")), device_id = %self.hosts[i].device_id, "deleting a queued command failed");
                        outcome = Withdrawn::Left;
                        break;
                    }
                }
            }
            result.insert(i, outcome);
        }
        self.record_withdrawn(result)
    }

    fn record_withdrawn(
        &mut self,
        result: BTreeMap<usize, Withdrawn>,
    ) -> Result<BTreeMap<usize, Withdrawn>> {
        let now = self.ctx.clock.now();
        for (&i, w) in &result {
            match w {
                Withdrawn::Deleted(n) => self.hosts[i].queued_deleted += n,
                Withdrawn::Left => self.hosts[i].queued_left = true,
                Withdrawn::Ran => {
                    if self.hosts[i].state == HostState::QueuedOffline {
                        self.hosts[i].launched_at.get_or_insert(now);
                        self.hosts[i].queued_left = false;
                        self.track[i].batch = None;
                        self.set(i, HostState::Launched, None)?;
                    }
                }
            }
        }
        Ok(result)
    }

    /// The run is left (second Ctrl-C): hosts still queued keep their queued launch (a `resume` follows it);
    /// the report says so.
    pub(super) fn leave_queued(&mut self) -> Result<()> {
        for i in self
            .hosts_in(&[HostState::QueuedOffline])
            .collect::<Vec<_>>()
        {
            if !self.hosts[i].queued_left {
                self.hosts[i].queued_left = true;
                self.note(i)?;
            }
        }
        Ok(())
    }
}
