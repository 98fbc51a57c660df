//! Deadlines, collection timeouts, unsupported platforms and the stop of launching.

use super::{Engine, human};
use crate::api::FalconApi;
use crate::error::Result;
use crate::state::{HostState, reason};

impl<A: FalconApi> Engine<'_, A> {
    /// Hosts no collector command exists for fail at once.
    pub(super) fn refuse_unsupported(&mut self) -> Result<()> {
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if h.state.is_terminal() || h.state.launch_sent() {
                continue;
            }
            let supported = match (h.platform, &self.ctx.collector) {
                (Some(p), Some(c)) => c.command(p).is_some(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !supported {
                let p = h.platform.map(|p| p.as_str()).unwrap_or("unknown");
                self.set(
                    i,
                    HostState::Failed,
                    Some(format!(
                        "{}: no collector command for platform {p}",
                        reason::UNSUPPORTED_PLATFORM
                    )),
                )?;
            }
        }
        Ok(())
    }

    /// Ends the hosts past the run deadline or their collection timeout. A queued host's launch is deleted
    /// from Falcon's offline queue first.
    pub(super) async fn check_deadlines(&mut self) -> Result<()> {
        let now = self.ctx.clock.now();
        let timeout = self.ctx.settings.collection_timeout;
        let collection = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        let past_deadline = now > self.deadline;
        let mut queued = Vec::new();
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if h.state.is_terminal() || self.track[i].awaiting_capture.is_some() {
                continue;
            }
            match h.state {
                HostState::Launched | HostState::Running
                    if h.launched_at.is_some_and(|t| now - t > collection) =>
                {
                    let t = &self.track[i];
                    let why = if t.answered {
                        format!(
                            "{}: collector still running after {}",
                            reason::STILL_RUNNING,
                            human(timeout)
                        )
                    } else {
                        format!(
                            "{}: no answer from the host in the {} after its launch ({} probes timed out or found it offline)",
                            reason::NO_ANSWER,
                            human(timeout),
                            t.unanswered
                        )
                    };
                    self.set(i, HostState::TimedOut, Some(why))?;
                }
                HostState::QueuedOffline if past_deadline => queued.push(i),
                HostState::Pending | HostState::Session if past_deadline => {
                    let why = if self.track[i].batch.is_none() {
                        format!("{}: no RTR session before the deadline", reason::OFFLINE)
                    } else {
                        format!(
                            "{}: not launched before the deadline (concurrency limit)",
                            reason::STILL_RUNNING
                        )
                    };
                    self.set(i, HostState::TimedOut, Some(why))?;
                }
                _ => {}
            }
        }
        if !queued.is_empty() {
            for (i, w) in self.withdraw(&queued).await? {
                if self.hosts[i].state == HostState::QueuedOffline {
                    self.set(
                        i,
                        HostState::TimedOut,
                        Some(format!(
                            "{}: host stayed offline until the deadline{}",
                            reason::OFFLINE,
                            w.note()
                        )),
                    )?;
                }
            }
        }
        self.commit().await
    }

    /// Launching stopped (first Ctrl-C): hosts not launched are cancelled, and the launches queued for
    /// offline hosts are deleted (a host whose queued launch already ran is followed instead).
    pub(super) async fn cancel_unlaunched(&mut self) -> Result<()> {
        let why = format!("{}: launching was stopped (Ctrl-C)", reason::STOPPED);
        for i in self
            .hosts_in(&[HostState::Pending, HostState::Session])
            .collect::<Vec<_>>()
        {
            self.set(i, HostState::Cancelled, Some(why.clone()))?;
        }
        let queued: Vec<usize> = self.hosts_in(&[HostState::QueuedOffline]).collect();
        if !queued.is_empty() {
            for (i, w) in self.withdraw(&queued).await? {
                if self.hosts[i].state == HostState::QueuedOffline {
                    self.set(i, HostState::Cancelled, Some(format!("{why}{}", w.note())))?;
                }
            }
        }
        self.commit().await
    }
}
