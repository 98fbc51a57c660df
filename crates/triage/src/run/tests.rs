//! The orchestrator over the in-memory fake, on paused time: no test waits on the wall clock.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::collector::CollectorSet;
use crate::fake::{Fake, Outcome};
use crate::platform::{JobId, Platform};
use secrecy::SecretString;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The wall-clock start of every test run (the clock then moves with tokio's paused time).
fn t0() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn settings(deadline_ms: i64) -> RunSettings {
    RunSettings {
        poll_interval: MS(40),
        refresh_interval: MS(100),
        queue_check_interval: MS(40),
        deadline: Some(t0() + chrono::Duration::milliseconds(deadline_ms)),
        collection_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

/// A run on the paused clock.
fn run<'a>(api: &'a Fake, job: &JobId, s: RunSettings) -> Run<'a, Fake> {
    Run::new(api, job.clone(), s).clock(TokioClock::starting_at(t0()))
}

fn collector(job: &JobId) -> CollectorSet {
    let mut t = BTreeMap::new();
    t.insert(Platform::Linux, "./collect --key {secret}".to_string());
    t.insert(Platform::Mac, "./collect --key {secret}".to_string());
    t.insert(Platform::Windows, "collect.exe --key {secret}".to_string());
    CollectorSet::from_templates("test", &t, Some(&SecretString::from("s3cr3t-value")), job)
        .unwrap()
}

async fn pending(api: &Fake) -> Vec<HostRecord> {
    let ids = api.host_ids(None).await.unwrap();
    api.host_details(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            HostRecord::new(
                d.device_id,
                d.hostname,
                d.platform_name.as_deref().and_then(Platform::from_falcon),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_host_ends_in_the_right_state_with_the_right_reason() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    api.add("lin-ok", "Linux", MS(0), Outcome::Ok, MS(60));
    api.add("win-ok", "Windows", MS(0), Outcome::Ok, MS(60));
    api.add("mac-ok", "Mac", MS(0), Outcome::Ok, MS(0));
    api.add("exit2", "Linux", MS(0), Outcome::Exit(2), MS(0));
    api.add("wrapper", "Linux", MS(0), Outcome::WrapperFailure, MS(0));
    api.add("vanish", "Windows", MS(0), Outcome::Vanish, MS(0));
    api.add("late", "Linux", MS(150), Outcome::Ok, MS(20));
    api.add(
        "never",
        "Linux",
        Duration::from_secs(3600),
        Outcome::Ok,
        MS(0),
    );
    api.add("solaris", "Solaris", MS(0), Outcome::Ok, MS(0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.jsonl");
    let hosts = pending(&api).await;
    let out = run(&api, &job, settings(900))
        .collector(collector(&job))
        .start(hosts, &path)
        .await
        .unwrap();
    let by: BTreeMap<&str, &HostRecord> = out
        .report
        .hosts
        .iter()
        .map(|h| (h.device_id.as_str(), h))
        .collect();
    let st = |id: &str| (by[id].state, by[id].reason.clone().unwrap_or_default());
    assert_eq!(st("lin-ok").0, HostState::Succeeded);
    assert_eq!(st("win-ok").0, HostState::Succeeded);
    assert_eq!(st("mac-ok").0, HostState::Succeeded);
    assert_eq!(st("late").0, HostState::Succeeded, "{:?}", st("late"));
    assert_eq!(st("exit2").0, HostState::Failed);
    assert!(
        st("exit2")
            .1
            .starts_with("exit_code: 2: [2026-11-22 08:00:00,000][ERROR] - disk full"),
        "{}",
        st("exit2").1
    );
    assert_eq!(st("wrapper").0, HostState::Failed);
    assert!(
        st("wrapper")
            .1
            .starts_with("collector_failed: Cado Host has failed"),
        "{}",
        st("wrapper").1
    );
    assert_eq!(st("vanish").0, HostState::Failed);
    assert!(st("vanish").1.starts_with("interrupted:"));
    assert_eq!(st("never").0, HostState::TimedOut);
    assert!(st("never").1.starts_with("offline:"));
    assert_eq!(st("solaris").0, HostState::Failed);
    assert!(st("solaris").1.starts_with("unsupported_platform:"));
    assert_eq!(out.report.summary.exit_code, crate::exit_codes::SOME_FAILED);
    for (id, h) in api.hosts.lock().unwrap().iter() {
        assert!(h.launches <= 1, "{id} launched {} times", h.launches);
    }
    // one launch per platform group; session inits: one for all, one with queue_offline for the offline
    // hosts' launches, one (without) to probe "late" once its queued launch ran
    assert_eq!(out.stats.session_calls, 3);
    // three platforms online, plus one launch queued for the two offline Linux hosts
    assert_eq!(out.stats.launch_calls, 4);
    // one probe per batch per round, whatever the OSes in it, and none once only queued hosts are left
    assert_eq!(out.stats.max_probe_calls_per_round, 1);
    assert!(out.stats.probe_calls < out.stats.rounds);
    for id in ["late", "never"] {
        assert_eq!(api.hosts.lock().unwrap()[id].queued_total, 1, "{id}");
    }
    // the journal replays to the same final states, with no secret inside
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("s3cr3t-value"));
    let replay = crate::journal::replay(&path).unwrap();
    assert!(replay.finished);
    for h in &out.report.hosts {
        assert_eq!(replay.hosts[&h.device_id].state, h.state);
    }
}

#[tokio::test(start_paused = true)]
async fn resume_after_leaving_never_sends_a_second_launch_to_launched_hosts() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    for i in 0..6 {
        api.add(&format!("h{i}"), "Linux", MS(0), Outcome::Ok, MS(150));
    }
    api.add("off", "Linux", MS(250), Outcome::Ok, MS(10));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.jsonl");
    let control = Control::new();
    let c2 = control.clone();
    let out = run(&api, &job, settings(5000))
        .collector(collector(&job))
        .control(control)
        .on_progress(move |p| {
            if p.phase == "launched" {
                c2.interrupt();
                c2.interrupt();
            }
        })
        .start(pending(&api).await, &path)
        .await
        .unwrap();
    assert!(out.aborted);
    assert_eq!(out.report.summary.exit_code, crate::exit_codes::INTERRUPTED);
    let replay = crate::journal::replay(&path).unwrap();
    assert_eq!(replay.hosts["h0"].state, HostState::Launched);
    assert_eq!(replay.hosts["off"].state, HostState::QueuedOffline);
    assert!(replay.hosts["off"].queued_left);
    // resume: every host was launched or has its launch queued, so no collector is needed
    let out = run(&api, &job, RunSettings::default())
        .resume(&path)
        .await
        .unwrap();
    assert_eq!(out.report.summary.succeeded, 7, "{}", out.report.table());
    let hosts = api.hosts.lock().unwrap();
    for i in 0..6 {
        assert_eq!(
            hosts[&format!("h{i}")].launch_cmds,
            1,
            "h{i} got a second launch command"
        );
        assert_eq!(hosts[&format!("h{i}")].launches, 1);
    }
    // the queued host was followed through its queued session: no second launch was sent
    assert!(!out.report.hosts.iter().any(|h| h.queued_left));
    assert_eq!(hosts["off"].launch_cmds, 1);
    assert_eq!(hosts["off"].queued_total, 1);
    assert_eq!(hosts["off"].launches, 1);
    assert_eq!(crate::journal::replay(&path).unwrap().resumes, 1);
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_and_stop_launching() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    for i in 0..5 {
        api.add(&format!("h{i}"), "Linux", MS(0), Outcome::Ok, MS(60));
    }
    let dir = tempfile::tempdir().unwrap();
    let s = RunSettings {
        max_concurrent: Some(2),
        ..settings(10_000)
    };
    let out = run(&api, &job, s.clone())
        .collector(collector(&job))
        .start(pending(&api).await, &dir.path().join("a.jsonl"))
        .await
        .unwrap();
    assert_eq!(out.report.summary.succeeded, 5);
    assert!(api.calls.lock().unwrap().max_running <= 2);

    let api = Fake::new(job.as_str());
    for i in 0..3 {
        api.add(&format!("h{i}"), "Linux", MS(0), Outcome::Ok, MS(30));
    }
    let control = Control::new();
    let c2 = control.clone();
    let s = RunSettings {
        max_concurrent: Some(1),
        ..settings(10_000)
    };
    let out = run(&api, &job, s)
        .collector(collector(&job))
        .control(control)
        .on_progress(move |p| {
            if p.phase == "launched" && p.counts[&HostState::Launched] == 1 {
                c2.interrupt();
            }
        })
        .start(pending(&api).await, &dir.path().join("b.jsonl"))
        .await
        .unwrap();
    let c = counts(&out.report.hosts);
    assert_eq!(c[&HostState::Succeeded], 1, "{}", out.report.table());
    assert_eq!(c[&HostState::Cancelled], 2);
    assert!(
        out.report
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Cancelled)
            .all(|h| h.reason.as_deref().unwrap().starts_with("stopped_by_user"))
    );
}

fn by_id(out: &RunOutcome) -> BTreeMap<String, HostRecord> {
    out.report
        .hosts
        .iter()
        .map(|h| (h.device_id.clone(), h.clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_host_offline_for_many_rounds_gets_its_launch_queued_once_and_no_probe() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    api.add("online", "Linux", MS(0), Outcome::Ok, MS(100));
    // offline for 200 polling rounds, then back
    api.add("laptop", "Windows", MS(200 * 40), Outcome::Ok, MS(100));
    let dir = tempfile::tempdir().unwrap();
    let out = run(&api, &job, settings(60_000))
        .collector(collector(&job))
        .start(pending(&api).await, &dir.path().join("j.jsonl"))
        .await
        .unwrap();
    let hosts = by_id(&out);
    assert_eq!(
        hosts["laptop"].state,
        HostState::Succeeded,
        "{}",
        out.report.table()
    );
    assert!(out.stats.rounds >= 200, "{} rounds", out.stats.rounds);
    let fake = api.hosts.lock().unwrap();
    // one queued command in 200 rounds: its launch; every probe waited until the host was back
    assert_eq!(fake["laptop"].queued_total, 1);
    assert_eq!(fake["laptop"].launch_cmds, 1);
    assert_eq!(fake["laptop"].launches, 1);
    assert_eq!(fake["online"].queued_total, 0);
    // the queue was read instead, and the probe stayed one call per batch per round
    assert!(api.calls.lock().unwrap().queue_checks >= 200);
    assert_eq!(out.stats.max_probe_calls_per_round, 1);
    assert_eq!(hosts["laptop"].queued_session.as_deref(), Some("s-laptop"));
}

#[tokio::test(start_paused = true)]
async fn a_queued_host_past_the_deadline_has_its_launch_deleted() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    api.add("ok", "Linux", MS(0), Outcome::Ok, MS(0));
    api.add("gone", "Mac", Duration::from_secs(3600), Outcome::Ok, MS(0));
    let dir = tempfile::tempdir().unwrap();
    let out = run(&api, &job, settings(2_000))
        .collector(collector(&job))
        .start(pending(&api).await, &dir.path().join("j.jsonl"))
        .await
        .unwrap();
    let hosts = by_id(&out);
    let gone = &hosts["gone"];
    assert_eq!(gone.state, HostState::TimedOut);
    assert_eq!(
        gone.reason.as_deref(),
        Some("offline: host stayed offline until the deadline; its queued launch was deleted")
    );
    assert_eq!(gone.queued_deleted, 1);
    assert!(!gone.queued_left);
    assert_eq!(out.report.summary.queued_deleted, 1);
    assert_eq!(out.report.summary.queued_left, 0);
    assert!(
        out.report
            .summary_line()
            .contains("1 queued launches deleted")
    );
    let fake = api.hosts.lock().unwrap();
    assert!(fake["gone"].queued.is_empty(), "nothing left in its queue");
    assert_eq!(fake["gone"].queue_deleted, 1);
    assert_eq!(out.stats.queued_deleted, 1);
}

#[tokio::test(start_paused = true)]
async fn stopping_cancels_queued_hosts_and_deletes_their_launch() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    api.add("busy", "Linux", MS(0), Outcome::Ok, MS(400));
    api.add(
        "away",
        "Linux",
        Duration::from_secs(3600),
        Outcome::Ok,
        MS(0),
    );
    let control = Control::new();
    let c2 = control.clone();
    let dir = tempfile::tempdir().unwrap();
    let out = run(&api, &job, settings(60_000))
        .collector(collector(&job))
        .control(control)
        .on_progress(move |p| {
            if p.phase == "polled" && p.round == 2 {
                c2.interrupt();
            }
        })
        .start(pending(&api).await, &dir.path().join("j.jsonl"))
        .await
        .unwrap();
    let hosts = by_id(&out);
    assert_eq!(hosts["busy"].state, HostState::Succeeded);
    assert_eq!(hosts["away"].state, HostState::Cancelled);
    assert!(
        hosts["away"]
            .reason
            .as_deref()
            .unwrap()
            .ends_with("; its queued launch was deleted")
    );
    assert!(api.hosts.lock().unwrap()["away"].queued.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_host_whose_every_probe_timed_out_reads_no_answer() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    api.add(
        "mute",
        "Linux",
        MS(0),
        Outcome::Ok,
        Duration::from_secs(3600),
    );
    api.hosts.lock().unwrap().get_mut("mute").unwrap().silent = true;
    let dir = tempfile::tempdir().unwrap();
    let s = RunSettings {
        collection_timeout: Duration::from_secs(45),
        ..settings(600_000)
    };
    let out = run(&api, &job, s)
        .collector(collector(&job))
        .start(pending(&api).await, &dir.path().join("j.jsonl"))
        .await
        .unwrap();
    let mute = &by_id(&out)["mute"];
    assert_eq!(mute.state, HostState::TimedOut);
    let why = mute.reason.as_deref().unwrap();
    assert!(
        why.starts_with("no_answer: no answer from the host in the 45 s after its launch ("),
        "{why}"
    );
    assert!(!why.contains("0 min"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn evidence_verdicts_end_hosts_with_sizes_and_hashes_journaled() {
    let job = JobId::parse("0badc0de").unwrap();
    let api = Fake::new(job.as_str());
    api.add("good", "Linux", MS(0), Outcome::Ok, MS(0));
    api.add("empty", "Linux", MS(0), Outcome::Archive(0), MS(0));
    api.add(
        "huge",
        "Linux",
        MS(0),
        Outcome::Archive(6_000_000_000),
        MS(0),
    );
    api.add("full", "Linux", MS(0), Outcome::NoSpace(52_428_800), MS(0));
    let rules = crate::evidence::EvidenceRules {
        max_bytes: Some(crate::evidence::S3_SINGLE_UPLOAD_LIMIT),
        ..crate::evidence::EvidenceRules::template_default()
    };
    let set = collector(&job).with_rules(Platform::Linux, rules);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.jsonl");
    let out = run(&api, &job, settings(60_000))
        .collector(set)
        .start(pending(&api).await, &path)
        .await
        .unwrap();
    let hosts = by_id(&out);
    let why = |id: &str| hosts[id].reason.clone().unwrap_or_default();
    assert_eq!(hosts["good"].state, HostState::Succeeded);
    assert_eq!(hosts["empty"].state, HostState::Failed);
    assert!(
        why("empty").starts_with("too_small: archive `capture.tar.lz4` is 0 bytes"),
        "{}",
        why("empty")
    );
    assert_eq!(hosts["huge"].state, HostState::Failed);
    assert!(
        why("huge").starts_with("too_large: archive `capture.tar.lz4` is 6000000000 bytes"),
        "{}",
        why("huge")
    );
    assert_eq!(hosts["full"].state, HostState::Failed);
    assert_eq!(
        why("full"),
        "no_space: 52428800 bytes free on the job directory's volume, 1073741824 required"
    );
    assert_eq!(
        api.hosts.lock().unwrap()["full"].launches,
        0,
        "nothing started"
    );
    // chain of custody: size and hash in the journal and the report, for good and bad archives alike
    let replay = crate::journal::replay(&path).unwrap();
    for id in ["good", "huge"] {
        let a = replay.hosts[id].archive.clone().expect("archive journaled");
        assert_eq!(a.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(hosts[id].archive, Some(a));
    }
    assert_eq!(
        replay.hosts["good"].archive.as_ref().unwrap().bytes,
        48_000_000
    );
    // counted in the summary
    let r = &out.report.summary.reasons;
    assert_eq!((r["too_small"], r["too_large"], r["no_space"]), (1, 1, 1));
    assert!(
        out.report.summary_line().contains("no_space 1"),
        "{}",
        out.report.summary_line()
    );
}
