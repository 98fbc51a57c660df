//! The per-host state machine.
//!
//! ```text
//! pending -> session -> queued_offline -> launched -> running -> succeeded
//!                                                            \-> failed(reason) | timed_out | cancelled
//! ```
//! `queued_offline` hosts may jump straight to `running` or a terminal state (the queued launch ran while the
//! orchestrator was not looking); `session` may repeat when a run is resumed.

use serde::{Deserialize, Serialize};

use crate::platform::Platform;

/// Where one host stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Selected, nothing sent yet.
    Pending,
    /// Part of an RTR batch session; the launch is not sent yet (or waits for a concurrency slot).
    Session,
    /// The host is offline; the launch is queued server-side and runs when the sensor reconnects.
    QueuedOffline,
    /// The launch script answered `launched` (or `already-launched`).
    Launched,
    /// A status probe saw the collector running.
    Running,
    /// The collector exited 0, its output shows no failure, and the capture arrived (when checked).
    Succeeded,
    /// The collection failed; the reason says why.
    Failed,
    /// The deadline passed before the host came online or the collector finished.
    TimedOut,
    /// The user stopped the run before this host was launched.
    Cancelled,
}

impl HostState {
    /// Every state, in the machine's order.
    pub const ALL: [HostState; 9] = [
        HostState::Pending,
        HostState::Session,
        HostState::QueuedOffline,
        HostState::Launched,
        HostState::Running,
        HostState::Succeeded,
        HostState::Failed,
        HostState::TimedOut,
        HostState::Cancelled,
    ];

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            HostState::Succeeded | HostState::Failed | HostState::TimedOut | HostState::Cancelled
        )
    }

    /// Whether the collector may be running (a launch was sent and acknowledged or queued): such a host is
    /// never sent a launch again, only probes.
    pub fn launch_sent(self) -> bool {
        matches!(self, HostState::Launched | HostState::Running)
    }

    /// The snake_case name used in the journal, the report and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Pending => "pending",
            HostState::Session => "session",
            HostState::QueuedOffline => "queued_offline",
            HostState::Launched => "launched",
            HostState::Running => "running",
            HostState::Succeeded => "succeeded",
            HostState::Failed => "failed",
            HostState::TimedOut => "timed_out",
            HostState::Cancelled => "cancelled",
        }
    }

    /// Whether `self -> to` is a transition of the machine.
    pub fn can_go_to(self, to: HostState) -> bool {
        use HostState::*;
        match self {
            Pending => matches!(to, Session | Failed | TimedOut | Cancelled),
            Session => matches!(
                to,
                Session | QueuedOffline | Launched | Failed | TimedOut | Cancelled
            ),
            QueuedOffline => matches!(
                to,
                QueuedOffline | Launched | Running | Succeeded | Failed | TimedOut | Cancelled
            ),
            Launched => matches!(to, Running | Succeeded | Failed | TimedOut),
            Running => matches!(to, Succeeded | Failed | TimedOut),
            Succeeded | Failed | TimedOut | Cancelled => false,
        }
    }
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host of a run and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Falcon device id (AID).
    pub device_id: String,
    /// Host name as Falcon knows it.
    pub hostname: String,
    /// Platform (`None` when Falcon reported one the collectors do not support).
    pub platform: Option<Platform>,
    /// Current state.
    pub state: HostState,
    /// Why the host failed, timed out or was cancelled (`<class>: <detail>`), or a note on the current state.
    pub reason: Option<String>,
    /// When the launch was acknowledged (RFC 3339), for matching the capture and the collection timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Pid reported by the launch or a probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// Last collector log line seen (redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_log: Option<String>,
    /// The queued session holding this host's launch while it waits offline (read through the
    /// queued-session API; kept so `resume` follows the same queued launch instead of sending another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_session: Option<String>,
    /// Commands of this run deleted from the host's offline queue (its launch, when it ended `timed_out`
    /// or `cancelled` before reconnecting).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued_deleted: u32,
    /// The archive the collector left, as the host measured it after the collector exited (name, size,
    /// SHA-256, required files not found): the chain of custody of the evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::evidence::ArchiveFacts>,
    /// Whether a command of this run may still wait in the host's offline queue (the delete failed, or the
    /// run was left with the host still queued): it runs if the host reconnects within 7 days.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued_left: bool,
    /// When the state last changed.
    pub updated: chrono::DateTime<chrono::Utc>,
}

impl HostRecord {
    /// A pending host.
    pub fn new(
        device_id: impl Into<String>,
        hostname: impl Into<String>,
        platform: Option<Platform>,
    ) -> HostRecord {
        HostRecord {
            device_id: device_id.into(),
            hostname: hostname.into(),
            platform,
            state: HostState::Pending,
            reason: None,
            launched_at: None,
            pid: None,
            last_log: None,
            queued_session: None,
            queued_deleted: 0,
            queued_left: false,
            archive: None,
            updated: chrono::Utc::now(),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Reason classes (the part before `:` in [`HostRecord::reason`]), documented in `docs/triage.md`.
pub mod reason {
    /// The platform is neither Windows, Linux nor macOS, or the collector set has no command for it.
    pub const UNSUPPORTED_PLATFORM: &str = "unsupported_platform";
    /// Falcon refused the session or the command for this host (RTR error code and message follow).
    pub const RTR_ERROR: &str = "rtr_error";
    /// The launch script answered `launch-error`.
    pub const LAUNCH_ERROR: &str = "launch_error";
    /// The launch answer had no marker line.
    pub const NO_LAUNCH_ANSWER: &str = "no_launch_answer";
    /// The collector exited with a non-zero code.
    pub const EXIT_CODE: &str = "exit_code";
    /// The collector exited 0 but its output says it failed.
    pub const COLLECTOR_FAILED: &str = "collector_failed";
    /// The collector process disappeared without an exit code (reboot, kill).
    pub const INTERRUPTED: &str = "interrupted";
    /// The markers of a launched collector are gone.
    pub const MARKERS_MISSING: &str = "markers_missing";
    /// The Cado platform never showed a capture for this host.
    pub const NO_CAPTURE: &str = "no_capture";
    /// The host stayed offline until the deadline.
    pub const OFFLINE: &str = "offline";
    /// The collector still ran at the deadline.
    pub const STILL_RUNNING: &str = "still_running";
    /// (`failed`) The launch script found less free space on the job directory's volume than the collector
    /// needs; nothing was started (free and required bytes follow).
    pub const NO_SPACE: &str = "no_space";
    /// (`failed`) The collector exited 0 but its archive is below the collector's minimum size, absent, or
    /// lacks required files.
    pub const TOO_SMALL: &str = "too_small";
    /// (`failed`) The collector's archive is above the upload limit: the upload fails or failed.
    pub const TOO_LARGE: &str = "too_large";
    /// (`failed`) The job directory's markers fail the owner/mode check: nothing in them is believed.
    pub const UNTRUSTED: &str = "untrusted";
    /// Every command sent to the host since its launch timed out (`50401`) or found it offline: nothing
    /// is known of its collector.
    pub const NO_ANSWER: &str = "no_answer";
    /// The user stopped the run before this host was launched.
    pub const STOPPED: &str = "stopped_by_user";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_is_allowed() {
        use HostState::*;
        let path = [
            Pending,
            Session,
            QueuedOffline,
            Launched,
            Running,
            Succeeded,
        ];
        for w in path.windows(2) {
            assert!(w[0].can_go_to(w[1]), "{} -> {}", w[0], w[1]);
        }
        assert!(Session.can_go_to(Launched));
        assert!(QueuedOffline.can_go_to(Running));
    }

    #[test]
    fn terminal_states_are_final_and_launched_hosts_are_never_cancelled() {
        use HostState::*;
        for t in [Succeeded, Failed, TimedOut, Cancelled] {
            assert!(t.is_terminal());
            for s in HostState::ALL {
                assert!(!t.can_go_to(s), "{t} -> {s}");
            }
        }
        assert!(!Launched.can_go_to(Cancelled));
        assert!(!Running.can_go_to(Cancelled));
        assert!(!Running.can_go_to(Launched));
        assert!(!Pending.can_go_to(Running));
        assert!(Launched.launch_sent() && Running.launch_sent() && !QueuedOffline.launch_sent());
    }

    #[test]
    fn names_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&HostState::QueuedOffline).unwrap(),
            "\"queued_offline\""
        );
        assert_eq!(HostState::TimedOut.as_str(), "timed_out");
        for s in HostState::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
