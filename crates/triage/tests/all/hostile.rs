//! Hosts whose disk is not what the launch expects: a job directory someone else left there, a full
//! volume. The host script refuses, and each host ends failed with the host's own reason.

use triage::{CadoOptions, HostState, JobId, Run};

use crate::common::{PROJECT, fast_settings, platforms, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_directories_and_full_disks_are_refused_by_the_host() {
    let env = sandbox(12, 0.0, 0.0, 31).await;
    let hosts = env.all_hosts().await;
    let ps = platforms(&hosts);
    let job = JobId::random();
    let ids: Vec<String> = hosts.iter().map(|h| h.device_id.clone()).collect();
    let (planted, full) = (&ids[..3], &ids[3..6]);
    let r = env
        .falcon_post(
            "/_sandbox/hosts/workdir",
            serde_json::json!({"ids": planted, "job": job.as_str()}),
        )
        .await;
    assert_eq!(r["planted"], 3);
    env.falcon_post(
        "/_sandbox/hosts/disk",
        serde_json::json!({"ids": full, "free_bytes": 10_000_000}),
    )
    .await;
    let set = env
        .cado
        .collector_set(PROJECT, &CadoOptions::default(), &ps)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = Run::new(&env.api, job.clone(), fast_settings(30))
        .collector(set)
        .start(hosts, &dir.path().join("run.jsonl"))
        .await
        .unwrap();
    for h in &outcome.report.hosts {
        let reason = h.reason.clone().unwrap_or_default();
        if planted.contains(&h.device_id) {
            assert_eq!(h.state, HostState::Failed, "{}", h.hostname);
            assert!(reason.contains("workdir-exists"), "{reason}");
        } else if full.contains(&h.device_id) {
            assert_eq!(h.state, HostState::Failed, "{}", h.hostname);
            assert!(reason.contains("no_space"), "{reason}");
            assert!(reason.contains("10000000"), "{reason}");
        } else {
            assert_eq!(h.state, HostState::Succeeded, "{}: {reason}", h.hostname);
        }
    }
    // no collector ran where the host refused
    let jobs = env.jobs().await;
    for id in planted.iter().chain(full) {
        assert!(
            jobs.get(id).is_none_or(|j| j.is_empty()),
            "{id} ran a collector"
        );
    }
}
