//! The acknowledged position of a live stream, shared between the stream and its consumer.

use std::cmp::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::state::{StreamState, compare_event_ids};

/// Handle on a live stream's cursor. Clone it freely; every clone sees the same cursor.
///
/// The consumer calls [`CursorHandle::ack`] with the id of an event once it is done with it
/// (including events it chose to ignore). [`CursorHandle::state`] is what to persist (e.g. in
/// `pingConnector`); after any disconnect the stream resumes from it.
///
/// **Shared ids.** Several events can carry one id (dependency events are sent with the id of
/// the event that caused them). Resuming from id X makes the platform skip *every* event with
/// id X, so the committed position only moves to X once the stream has delivered a later id
/// (the group X is complete); until then `ack(X)` commits the id delivered before the X group.
/// `ack(X)` means: every event delivered so far with id X, and every earlier event, is done.
///
/// **Heartbeats.** With auto-acknowledgement on (the default), a heartbeat's id is acknowledged
/// by the stream itself when every data event delivered before it has been acknowledged, so the
/// cursor keeps moving through quiet periods (a restart never replays old history).
#[derive(Clone)]
pub struct CursorHandle {
    pub(crate) inner: Arc<Mutex<Cursor>>,
}

impl std::fmt::Debug for CursorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.lock();
        f.debug_struct("CursorHandle")
            .field("state", &c.committed)
            .field("open_id", &c.open_id)
            .finish()
    }
}

/// Counters of a live stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Connections opened successfully.
    pub connections: u64,
    /// Reconnections (after a disconnect, read timeout or HTTP error).
    pub reconnects: u64,
    /// Events delivered (all kinds, malformed ones included).
    pub events: u64,
    /// Malformed events delivered as errors.
    pub malformed: u64,
    /// Read timeouts (no byte for the read timeout).
    pub read_timeouts: u64,
}

#[derive(Debug)]
pub(crate) struct Cursor {
    pub(crate) committed: StreamState,
    /// Id of the group of events delivered last (the group may still grow).
    open_id: Option<String>,
    open_is_heartbeat: bool,
    /// Id of the group delivered before `open_id`: complete by construction.
    before_open: Option<String>,
    /// Id of the last data event delivered and whether it was acknowledged since.
    last_data: Option<String>,
    last_data_acked: bool,
    pub(crate) epoch: u64,
    pub(crate) stats: StreamStats,
}

fn newer(a: &str, b: &str) -> bool {
    // Non-comparable ids (not `<ms>-<seq>`): take the new one; ids are then opaque.
    compare_event_ids(a, b) != Some(Ordering::Less) && a != b
}

impl CursorHandle {
    pub(crate) fn new(state: StreamState) -> CursorHandle {
        CursorHandle {
            inner: Arc::new(Mutex::new(Cursor {
                committed: state,
                open_id: None,
                open_is_heartbeat: false,
                before_open: None,
                last_data: None,
                last_data_acked: true,
                epoch: 0,
                stats: StreamStats::default(),
            })),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Cursor> {
        // A panic while holding this short lock cannot leave the cursor inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Acknowledges `id` (see the type docs). Empty ids are ignored; the committed position never
    /// moves backwards.
    pub fn ack(&self, id: &str) {
        if id.is_empty() {
            return;
        }
        self.lock().ack(id);
    }

    /// The state to persist: last committed id and recovery date.
    pub fn state(&self) -> StreamState {
        self.lock().committed.clone()
    }

    /// Replaces the cursor (e.g. after [`PingOutcome::reset`](crate::PingOutcome::reset)) and makes the
    /// stream drop its connection and reconnect from `state`: on its next poll when called
    /// between polls, otherwise after the message it is waiting for (the event read meanwhile
    /// from the old connection is dropped).
    pub fn reset(&self, state: StreamState) {
        let mut c = self.lock();
        c.committed = state;
        c.open_id = None;
        c.open_is_heartbeat = false;
        c.before_open = None;
        c.last_data = None;
        c.last_data_acked = true;
        c.epoch += 1;
    }

    /// Counters since the stream was built.
    pub fn stats(&self) -> StreamStats {
        self.lock().stats
    }
}

impl Cursor {
    fn commit(&mut self, id: &str) {
        match self.committed.start_from.as_deref() {
            Some(cur) if !newer(id, cur) => {}
            _ => self.committed.start_from = Some(id.to_string()),
        }
    }

    pub(crate) fn ack(&mut self, id: &str) {
        if let Some(d) = &self.last_data
            && !newer(d, id)
        {
            self.last_data_acked = true;
        }
        if self.open_id.as_deref() == Some(id) && !self.open_is_heartbeat {
            if let Some(prev) = self.before_open.clone() {
                self.commit(&prev);
            }
        } else {
            self.commit(id);
        }
    }

    /// Records that the stream delivered an event with this id.
    pub(crate) fn delivered(&mut self, id: &str, heartbeat: bool) {
        if id.is_empty() {
            return;
        }
        match self.open_id.as_deref() {
            Some(open) if open == id => {
                if !heartbeat {
                    self.open_is_heartbeat = false;
                }
            }
            Some(open) if !newer(id, open) => {} // an older id (replay): groups only move forward
            _ => {
                self.before_open = self.open_id.take();
                self.open_id = Some(id.to_string());
                self.open_is_heartbeat = heartbeat;
            }
        }
        if !heartbeat {
            self.last_data = Some(id.to_string());
            self.last_data_acked = false;
        }
    }

    /// Heartbeat auto-acknowledgement: only when every delivered data event was acknowledged.
    pub(crate) fn heartbeat(&mut self, id: &str) {
        if self.last_data_acked {
            self.ack(id);
        }
    }

    pub(crate) fn no_recover(&mut self) {
        self.committed.recover_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(from: &str) -> CursorHandle {
        CursorHandle::new(StreamState {
            start_from: Some(from.into()),
            recover_until: None,
        })
    }

    fn at(c: &CursorHandle) -> String {
        c.state().start_from.unwrap()
    }

    #[test]
    fn shared_ids_commit_only_complete_groups() {
        let c = cursor("1-0");
        c.lock().delivered("5-0", false); // identity (dependency)
        c.ack("5-0");
        assert_eq!(at(&c), "1-0", "group 5-0 may still grow");
        c.lock().delivered("5-0", false); // indicator, same id
        c.ack("5-0");
        assert_eq!(at(&c), "1-0");
        c.lock().delivered("6-0", false);
        assert_eq!(at(&c), "1-0", "delivery alone commits nothing");
        c.ack("6-0");
        assert_eq!(at(&c), "5-0", "group 5-0 complete, 6-0 still open");
        c.lock().delivered("7-0", true);
        c.lock().heartbeat("7-0");
        assert_eq!(at(&c), "7-0", "heartbeat after everything acked");
    }

    #[test]
    fn heartbeat_waits_for_unacked_data() {
        let c = cursor("1-0");
        c.lock().delivered("2-0", false);
        c.lock().delivered("3-0", true);
        c.lock().heartbeat("3-0");
        assert_eq!(at(&c), "1-0", "event 2-0 not acknowledged yet");
        c.ack("2-0");
        assert_eq!(at(&c), "2-0");
        c.lock().delivered("4-0", true);
        c.lock().heartbeat("4-0");
        assert_eq!(at(&c), "4-0");
    }

    #[test]
    fn never_moves_backwards_and_reset_replaces() {
        let c = cursor("9-0");
        c.ack("3-0");
        assert_eq!(at(&c), "9-0");
        c.ack("");
        assert_eq!(at(&c), "9-0");
        let epoch = c.lock().epoch;
        c.reset(StreamState::default());
        assert_eq!(c.state(), StreamState::default());
        assert_eq!(c.lock().epoch, epoch + 1);
        c.ack("2-0");
        assert_eq!(at(&c), "2-0");
    }

    #[test]
    fn older_ids_after_reconnect_do_not_reopen_groups() {
        let c = cursor("1-0");
        c.lock().delivered("5-0", false);
        // reconnect from 1-0: a heartbeat carrying 1-0, then 5-0 again
        c.lock().delivered("1-0", true);
        c.ack("5-0");
        assert_eq!(at(&c), "1-0", "5-0 is still the open group");
    }
}
