//! An in-memory [`FalconApi`] for the orchestrator's unit tests: hosts follow `docs/collector-protocol.md`
//! (pid marker, exit code, log tail), may be offline until a time, fail, or vanish.
//!
//! The launch guard is modelled as the host shell runs it, in two steps on a host's [`Disk`]: the decision
//! (the old script's `[ -f "$d/pid" ]` check, or the fixed script's `mkdir "$d"`) and, later, the markers.
//! Interleaving the steps of two launches shows the old shape's race (see the tests).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{BatchSession, FalconApi, HostInfo, HostReply, QueuedCommand};
use crate::error::Result;

#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Ok,
    Exit(i32),
    WrapperFailure,
    Vanish,
    /// Exits 0 leaving an archive of this many bytes (the other outcomes leave 48 MB).
    Archive(u64),
    /// The launch finds this many bytes free, below the 1 GiB required: nothing starts.
    NoSpace(u64),
}

/// How a launch script guards against a second launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// The fixed script: `mkdir "$d"` (no `-p`) both decides and creates, atomically.
    MkdirLock,
    /// The old script: `[ -f "$d/pid" ]`, then `mkdir -p`, start, and only then write `pid`.
    CheckThenCreate,
}

impl Guard {
    /// The guard of a launch script, from its text; `None` when it is not a launch script.
    pub fn of(script: &str) -> Option<Guard> {
        if !script.contains("FALCON-TRIAGE launched") {
            None
        } else if script.contains("if ! mkdir \"$d\"")
            || script.contains("[System.IO.FileMode]::CreateNew")
        {
            Some(Guard::MkdirLock)
        } else {
            Some(Guard::CheckThenCreate)
        }
    }
}

/// The part of a host's disk the launch guard touches.
#[derive(Debug, Default)]
pub(crate) struct Disk {
    dirs: BTreeSet<String>,
    pid_markers: BTreeSet<String>,
}

impl Disk {
    /// Step 1 of a launch: whether this launch goes on to start a collector.
    pub fn decide(&mut self, guard: Guard, wd: &str) -> bool {
        match guard {
            // one atomic operation: create, or fail because it exists
            Guard::MkdirLock => self.dirs.insert(wd.to_string()),
            // a read; nothing is created until step 2
            Guard::CheckThenCreate => !self.pid_markers.contains(wd),
        }
    }

    /// Step 2 of a launch that went on: `mkdir -p` (old shape) and the `pid` marker.
    pub fn commit(&mut self, wd: &str) {
        self.dirs.insert(wd.to_string());
        self.pid_markers.insert(wd.to_string());
    }
}

#[derive(Debug)]
pub(crate) struct FakeHost {
    pub platform: &'static str,
    pub online_at: Instant,
    pub outcome: Outcome,
    pub duration: Duration,
    pub started: Option<Instant>,
    pub launches: u32,
    pub launch_cmds: u32,
    /// Commands waiting for the host: (cloud request id, command).
    pub queued: Vec<(String, String)>,
    /// Every command ever queued for the host (what a reconnecting laptop would run).
    pub queued_total: u32,
    /// Queued commands deleted through the API.
    pub queue_deleted: u32,
    /// Once launched, every command times out (`50401`).
    pub silent: bool,
    pub disk: Disk,
}

#[derive(Default, Debug)]
pub(crate) struct Calls {
    pub init: u32,
    pub admin: u32,
    pub refresh: u32,
    pub queue_checks: u32,
    pub max_running: usize,
    /// Batches opened with `queue_offline`.
    pub queueing: std::collections::BTreeSet<String>,
}

#[derive(Debug)]
pub(crate) struct Fake {
    pub hosts: Mutex<BTreeMap<String, FakeHost>>,
    pub calls: Mutex<Calls>,
    pub job: String,
}

impl Fake {
    pub fn new(job: &str) -> Fake {
        Fake {
            hosts: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Calls::default()),
            job: job.to_string(),
        }
    }

    pub fn add(
        &self,
        id: &str,
        platform: &'static str,
        offline_for: Duration,
        outcome: Outcome,
        duration: Duration,
    ) {
        self.hosts.lock().unwrap().insert(
            id.to_string(),
            FakeHost {
                platform,
                online_at: Instant::now() + offline_for,
                outcome,
                duration,
                started: None,
                launches: 0,
                launch_cmds: 0,
                queued: vec![],
                queued_total: 0,
                queue_deleted: 0,
                silent: false,
                disk: Disk::default(),
            },
        );
    }

    /// A host back online runs its queued commands first, in order.
    fn reconnect(job: &str, h: &mut FakeHost) {
        if Instant::now() >= h.online_at {
            for (_, q) in std::mem::take(&mut h.queued) {
                Fake::execute(job, h, &q);
            }
        }
    }

    fn execute(job: &str, h: &mut FakeHost, cmd: &str) -> String {
        if let Some(guard) = Guard::of(cmd) {
            if let Outcome::NoSpace(free) = h.outcome {
                return format!("FALCON-TRIAGE no-space job={job} free={free} required=1073741824");
            }
            let wd = format!("cado-host-{job}");
            if !h.disk.decide(guard, &wd) {
                return format!("FALCON-TRIAGE already-launched job={job} pid=100");
            }
            h.disk.commit(&wd);
            h.started = Some(Instant::now());
            h.launches += 1;
            return format!("FALCON-TRIAGE launched job={job} pid=100");
        }
        let Some(t) = h.started else {
            return format!("FALCON-TRIAGE absent job={job}\nFALCON-TRIAGE log-tail job={job}\n");
        };
        let status = if t.elapsed() < h.duration {
            format!("FALCON-TRIAGE running job={job} pid=100")
        } else {
            match h.outcome {
                Outcome::Ok | Outcome::WrapperFailure | Outcome::Archive(_) => {
                    format!(
                        "FALCON-TRIAGE exited job={job} code=0\n{}",
                        archive(job, &h.outcome)
                    )
                }
                Outcome::Exit(c) => format!(
                    "FALCON-TRIAGE exited job={job} code={c}\n{}",
                    archive(job, &h.outcome)
                ),
                Outcome::Vanish | Outcome::NoSpace(_) => {
                    format!("FALCON-TRIAGE vanished job={job}")
                }
            }
        };
        let tail = match h.outcome {
            Outcome::WrapperFailure => {
                "[2026-11-22 08:00:00,000][ERROR] - upload failed\nCado Host has failed. For troubleshooting"
            }
            Outcome::Exit(_) => "[2026-11-22 08:00:00,000][ERROR] - disk full",
            _ => "[2026-11-22 08:00:00,000][INFO] - Uploading capture",
        };
        format!("{status}\nFALCON-TRIAGE log-tail job={job}\n{tail}\n")
    }
}

/// The archive line of the status probe after exit (`docs/collector-protocol.md`).
fn archive(job: &str, outcome: &Outcome) -> String {
    let bytes = match outcome {
        Outcome::Archive(b) => *b,
        _ => 48_000_000,
    };
    format!(
        "FALCON-TRIAGE archive job={job} bytes={bytes} sha256={} name=capture.tar.lz4",
        "ab".repeat(32)
    )
}

impl FalconApi for Fake {
    async fn host_ids(&self, _filter: Option<String>) -> Result<Vec<String>> {
        Ok(self.hosts.lock().unwrap().keys().cloned().collect())
    }
    async fn host_details(&self, ids: &[String]) -> Result<Vec<HostInfo>> {
        let hosts = self.hosts.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| {
                hosts.get(id).map(|h| HostInfo {
                    device_id: id.clone(),
                    hostname: format!("host-{id}"),
                    platform_name: Some(h.platform.into()),
                })
            })
            .collect())
    }
    async fn host_group_members(&self, _name: &str) -> Result<Vec<String>> {
        Ok(vec![])
    }
    async fn alert_device_ids(&self, _ids: &[String]) -> Result<Vec<String>> {
        Ok(vec![])
    }
    async fn batch_init(
        &self,
        ids: &[String],
        queue_offline: bool,
        existing: Option<&str>,
        _t: Duration,
    ) -> Result<Vec<BatchSession>> {
        let mut calls = self.calls.lock().unwrap();
        calls.init += 1;
        let mut hosts = self.hosts.lock().unwrap();
        let mut out = Vec::new();
        for (n, chunk) in ids.chunks(10_000).enumerate() {
            let batch_id = existing
                .map(str::to_string)
                .unwrap_or_else(|| format!("batch-{}-{n}", calls.init));
            if queue_offline {
                calls.queueing.insert(batch_id.clone());
            }
            let mut m = BTreeMap::new();
            for id in chunk {
                let Some(h) = hosts.get_mut(id) else { continue };
                Fake::reconnect(&self.job, h);
                let online = Instant::now() >= h.online_at;
                let mut r = HostReply {
                    session_id: Some(format!("s-{id}")),
                    complete: online,
                    ..Default::default()
                };
                if !online {
                    if queue_offline {
                        r.offline_queued = true;
                    } else {
                        r.errors
                            .push((40401, "Could not establish sensor comms".into()));
                    }
                }
                m.insert(id.clone(), r);
            }
            out.push(BatchSession { batch_id, hosts: m });
        }
        Ok(out)
    }
    async fn batch_admin_command(
        &self,
        batch: &str,
        base: &str,
        cmd: &str,
        ids: &[String],
        _t: Duration,
    ) -> Result<BTreeMap<String, HostReply>> {
        assert_eq!(base, "runscript");
        assert!(cmd.starts_with("runscript -Raw=```"));
        let queueing = {
            let mut c = self.calls.lock().unwrap();
            c.admin += 1;
            c.queueing.contains(batch)
        };
        let launch = Guard::of(cmd).is_some();
        let mut hosts = self.hosts.lock().unwrap();
        let mut out = BTreeMap::new();
        for id in ids {
            let Some(h) = hosts.get_mut(id) else { continue };
            if launch {
                h.launch_cmds += 1;
            }
            Fake::reconnect(&self.job, h);
            if Instant::now() < h.online_at {
                let mut r = HostReply::default();
                if queueing {
                    h.queued_total += 1;
                    h.queued
                        .push((format!("cr-{id}-{}", h.queued_total), cmd.to_string()));
                    r.offline_queued = true;
                } else {
                    r.errors
                        .push((40401, "Could not establish sensor comms".into()));
                }
                out.insert(id.clone(), r);
                continue;
            }
            if h.silent && h.started.is_some() {
                let mut r = HostReply::default();
                r.errors.push((50401, "Exceeded maximum timeout".into()));
                out.insert(id.clone(), r);
                continue;
            }
            let stdout = Fake::execute(&self.job, h, cmd);
            out.insert(
                id.clone(),
                HostReply {
                    complete: true,
                    stdout,
                    ..Default::default()
                },
            );
        }
        let running = hosts
            .values()
            .filter(|h| h.started.is_some_and(|t| t.elapsed() < h.duration))
            .count();
        let mut c = self.calls.lock().unwrap();
        c.max_running = c.max_running.max(running);
        Ok(out)
    }
    async fn queued_commands(
        &self,
        sessions: &[String],
        marker: &str,
    ) -> Result<Vec<QueuedCommand>> {
        self.calls.lock().unwrap().queue_checks += 1;
        let mut hosts = self.hosts.lock().unwrap();
        let mut out = Vec::new();
        for s in sessions {
            let Some(id) = s.strip_prefix("s-") else {
                continue;
            };
            let Some(h) = hosts.get_mut(id) else { continue };
            Fake::reconnect(&self.job, h);
            for (cr, cmd) in &h.queued {
                if cmd.contains(marker) {
                    out.push(QueuedCommand {
                        session_id: s.clone(),
                        device_id: id.to_string(),
                        cloud_request_id: cr.clone(),
                        pending: true,
                        status: Some("PENDING".into()),
                    });
                }
            }
        }
        Ok(out)
    }
    async fn delete_queued_command(&self, session: &str, cr: &str) -> Result<bool> {
        let mut hosts = self.hosts.lock().unwrap();
        let Some(h) = session.strip_prefix("s-").and_then(|id| hosts.get_mut(id)) else {
            return Ok(false);
        };
        let before = h.queued.len();
        h.queued.retain(|(c, _)| c != cr);
        let deleted = h.queued.len() < before;
        h.queue_deleted += u32::from(deleted);
        Ok(deleted)
    }
    async fn batch_refresh(&self, _b: &str, _t: Duration) -> Result<()> {
        self.calls.lock().unwrap().refresh += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two launches whose steps interleave (both decide, then both commit), as two queued or concurrent
    /// launches do on a real host: the old check-then-create shape starts two collectors, the mkdir lock one.
    #[test]
    fn interleaved_launches_race_only_with_the_old_guard() {
        let started = |guard| {
            let mut disk = Disk::default();
            let a = disk.decide(guard, "cado-host-3f9a1c2e");
            let b = disk.decide(guard, "cado-host-3f9a1c2e");
            for go in [a, b] {
                if go {
                    disk.commit("cado-host-3f9a1c2e");
                }
            }
            [a, b].iter().filter(|&&g| g).count()
        };
        assert_eq!(started(Guard::CheckThenCreate), 2, "the old shape races");
        assert_eq!(started(Guard::MkdirLock), 1);
        // and the real scripts have the fixed shape
        let job = crate::JobId::parse("3f9a1c2e").unwrap();
        let cmd = secrecy::SecretString::from("true");
        let rules = crate::evidence::EvidenceRules::template_default();
        for p in crate::Platform::ALL {
            let s = crate::script::launch_script(
                p,
                &job,
                crate::script::Launch {
                    command: &cmd,
                    rules: &rules,
                    secret_file: None,
                },
            );
            use secrecy::ExposeSecret as _;
            assert_eq!(Guard::of(s.expose_secret()), Some(Guard::MkdirLock), "{p}");
        }
        let old = "if [ -f \"$d/pid\" ]; then exit 0; fi\nmkdir -p \"$d\"\necho \"FALCON-TRIAGE launched job=x\"";
        assert_eq!(Guard::of(old), Some(Guard::CheckThenCreate));
        assert_eq!(Guard::of(&crate::script::status_probe(&job)), None);
    }
}
