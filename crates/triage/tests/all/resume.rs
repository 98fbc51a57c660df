//! A run killed mid-way resumes from its journal without a second launch on any launched host.

use std::sync::Arc;

use triage::{CadoOptions, HostState, JobId, Run, RunSettings};

use crate::common::{PROJECT, fast_settings, platforms, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_kill_mid_run_launches_nothing_twice() {
    let env = sandbox(200, 0.1, 0.0, 23).await;
    let hosts = env.all_hosts().await;
    let ps = platforms(&hosts);
    let job = JobId::random();
    let set = env
        .cado
        .collector_set(PROJECT, &CadoOptions::default(), &ps)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("run.jsonl");
    let settings = RunSettings {
        max_concurrent: Some(120),
        ..fast_settings(40)
    };
    // "kill": drop the run future once some hosts are launched while others wait for a slot (no cleanup
    // code runs, as with SIGKILL; every journal line was synced before the progress event)
    let mid_run = Arc::new(tokio::sync::Notify::new());
    let signal = mid_run.clone();
    let run = Run::new(&env.api, job.clone(), settings)
        .collector(set.clone())
        .on_progress(move |p| {
            if p.phase == "launched"
                && p.counts[&HostState::Launched] > 0
                && p.counts[&HostState::Session] > 0
            {
                signal.notify_one();
            }
        })
        .start(hosts, &journal);
    tokio::select! {
        r = run => panic!("the run ended before the kill: {:?}", r.map(|o| o.report.summary)),
        _ = mid_run.notified() => {}
    }
    let before = triage::journal::replay(&journal).unwrap();
    assert!(!before.finished);
    let launched_before: Vec<String> = before
        .hosts
        .values()
        .filter(|h| h.state.launch_sent())
        .map(|h| h.device_id.clone())
        .collect();
    let waiting_before = before
        .hosts
        .values()
        .filter(|h| h.state == HostState::Session)
        .count();
    assert!(
        !launched_before.is_empty(),
        "some hosts were launched before the kill"
    );
    assert!(
        waiting_before > 0,
        "some hosts were waiting for a slot (max_concurrent) at the kill"
    );
    let launches_before = env.api.launches.lock().unwrap().clone();

    let outcome = Run::new(&env.api, job.clone(), RunSettings::default())
        .collector(set)
        .resume(&journal)
        .await
        .unwrap();
    assert_eq!(
        outcome.report.summary.succeeded,
        200,
        "{}",
        outcome.report.table()
    );
    let launches = env.api.launches.lock().unwrap().clone();
    for id in &launched_before {
        assert_eq!(
            launches.get(id),
            launches_before.get(id),
            "{id} was sent a second launch after resume"
        );
    }
    for (id, jobs) in env.jobs().await {
        assert_eq!(jobs.len(), 1, "{id} ran {} collectors", jobs.len());
    }
    let after = triage::journal::replay(&journal).unwrap();
    assert!(after.finished);
    assert_eq!(after.resumes, 1);
    assert_eq!(after.job, job);
}
