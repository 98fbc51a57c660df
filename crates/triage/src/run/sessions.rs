//! Batch sessions: every host is first reached through a session opened without `queue_offline` (so no
//! command sent through it can wait in Falcon's offline queue); only hosts found offline, and only for their
//! launch, get a second session opened with `queue_offline`.

use tokio::time::Instant;

use super::{Batch, Engine};
use crate::api::{BatchSession, FalconApi};
use crate::error::Result;
use crate::state::{HostState, reason};

impl<A: FalconApi> Engine<'_, A> {
    /// Whether host `i` needs a session now.
    fn needs_session(&self, i: usize) -> bool {
        let h = &self.hosts[i];
        if h.state.is_terminal() || self.track[i].batch.is_some() {
            return false;
        }
        // a queued launch is followed through the queued-session API
        !(h.state == HostState::QueuedOffline
            && h.queued_session.is_some()
            && !self.track[i].resend)
    }

    /// Whether host `i` still needs its launch sent (so may be queued for an offline host).
    fn launch_pending(&self, i: usize) -> bool {
        matches!(self.hosts[i].state, HostState::Pending | HostState::Session)
            || (self.hosts[i].state == HostState::QueuedOffline && self.track[i].resend)
    }

    pub(super) async fn open_sessions(&mut self) -> Result<()> {
        let need: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.needs_session(i))
            .collect();
        let mut offline = Vec::new();
        // hosts join the last probe batch while it has room (one probe call per batch and round), then
        // new batches
        let mut rest: &[usize] = &need;
        let mut chunks: Vec<(&[usize], Option<usize>)> = Vec::new();
        if let Some(b) = self.open_batch_with_room() {
            let room = self.ctx.settings.batch_size - self.batches[b].members;
            let (head, tail) = rest.split_at(room.min(rest.len()));
            chunks.push((head, Some(b)));
            rest = tail;
        }
        chunks.extend(rest.chunks(self.ctx.settings.batch_size).map(|c| (c, None)));
        for (chunk, existing) in chunks {
            for s in self.init(chunk, false, existing).await {
                let b = match existing {
                    Some(b) if self.batches[b].id == s.batch_id => b,
                    _ => self.add_batch(&s, false),
                };
                for (aid, reply) in &s.hosts {
                    let Some(&i) = self.index.get(aid) else {
                        continue;
                    };
                    // (`offline_queued` may still be set on a session Falcon reused from an offline time;
                    // a probe it queues anyway is deleted at once, see `probe`)
                    if reply.errors.is_empty() {
                        self.joined(i, b)?;
                    } else if reply.is_offline_error() {
                        if self.ctx.settings.queue_offline && self.launch_pending(i) {
                            offline.push(i);
                        } else {
                            tracing::debug!(device_id = %aid, "host offline, no session; retrying next round");
                        }
                    } else if !self.hosts[i].state.launch_sent() {
                        let why = format!("{}: session: {}", reason::RTR_ERROR, reply.error_text());
                        self.set(i, HostState::Failed, Some(why))?;
                    }
                }
            }
        }
        // offline hosts: a queueing session, for their launch only
        for chunk in offline.chunks(self.ctx.settings.batch_size) {
            for s in self.init(chunk, true, None).await {
                let b = self.add_batch(&s, true);
                for (aid, reply) in &s.hosts {
                    let Some(&i) = self.index.get(aid) else {
                        continue;
                    };
                    if reply.errors.is_empty() || reply.offline_queued {
                        if reply.offline_queued {
                            self.hosts[i].queued_session = reply.session_id.clone();
                        }
                        self.joined(i, b)?;
                    }
                }
            }
        }
        self.commit().await
    }

    /// The last batch opened without `queue_offline`, if it is alive and holds fewer hosts than a batch may.
    fn open_batch_with_room(&self) -> Option<usize> {
        let b = self.batches.iter().rposition(|b| !b.queueing)?;
        let batch = &self.batches[b];
        (!batch.dead && batch.members < self.ctx.settings.batch_size).then_some(b)
    }

    async fn init(
        &mut self,
        idx: &[usize],
        queue_offline: bool,
        existing: Option<usize>,
    ) -> Vec<BatchSession> {
        if idx.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = idx
            .iter()
            .map(|&i| self.hosts[i].device_id.clone())
            .collect();
        self.stats.session_calls += 1;
        match self
            .api
            .batch_init(
                &ids,
                queue_offline,
                existing.map(|b| self.batches[b].id.as_str()),
                self.ctx.settings.rtr_timeout,
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %self.redactor.redact(&format!("{e:#}")), hosts = ids.len(), queue_offline, "batch session init failed; retrying next round");
                Vec::new()
            }
        }
    }

    fn add_batch(&mut self, s: &BatchSession, queueing: bool) -> usize {
        self.stats.batches += 1;
        self.batches.push(Batch {
            id: s.batch_id.clone(),
            last_refresh: Instant::now(),
            queueing,
            members: 0,
            dead: false,
        });
        self.batches.len() - 1
    }

    fn joined(&mut self, i: usize, b: usize) -> Result<()> {
        self.track[i].batch = Some(b);
        self.batches[b].members += 1;
        if self.hosts[i].state == HostState::Pending {
            self.set(i, HostState::Session, None)?;
        }
        Ok(())
    }

    /// Keeps the sessions of the batches with hosts still followed alive. Queueing batches are left alone
    /// (a queued session lives 7 days); a batch whose refresh fails is reopened next round.
    pub(super) async fn refresh(&mut self) {
        let now = Instant::now();
        for b in 0..self.batches.len() {
            if self.batches[b].queueing
                || now.duration_since(self.batches[b].last_refresh)
                    < self.ctx.settings.refresh_interval
            {
                continue;
            }
            let live = (0..self.hosts.len())
                .any(|i| self.track[i].batch == Some(b) && !self.hosts[i].state.is_terminal());
            if !live {
                continue;
            }
            self.stats.refresh_calls += 1;
            match self
                .api
                .batch_refresh(&self.batches[b].id, self.ctx.settings.rtr_timeout)
                .await
            {
                Ok(()) => self.batches[b].last_refresh = now,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), batch = %self.batches[b].id, "session refresh failed; reopening");
                    self.batches[b].dead = true;
                    for t in self.track.iter_mut().filter(|t| t.batch == Some(b)) {
                        t.batch = None;
                    }
                }
            }
        }
    }
}
