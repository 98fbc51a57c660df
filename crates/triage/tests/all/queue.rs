//! Offline hosts against the sandbox's offline queue: a host offline for many polling rounds has exactly one
//! command queued (its launch), and a host still queued when the run stops has its launch deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use triage::{CadoOptions, Control, HostState, JobId, Run, RunSettings};

use crate::common::{PROJECT, fast_settings, platforms, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_hosts_get_one_queued_command_and_a_stop_deletes_it() {
    let env = sandbox(10, 0.0, 0.0, 31).await;
    let hosts = env.all_hosts().await;
    let (back, away) = (hosts[0].device_id.clone(), hosts[1].device_id.clone());
    let falcon = env.sb.info().falcon_url.clone();
    let set_online = move |ids: Vec<String>, online: bool| {
        let url = format!("{falcon}/_sandbox/hosts/online");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"ids": ids, "online": online}))
                .send()
                .await
                .expect("control api")
                .error_for_status()
                .expect("set online");
        }
    };
    set_online(vec![back.clone(), away.clone()], false).await;
    let set = env
        .cado
        .collector_set(PROJECT, &CadoOptions::default(), &platforms(&hosts))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = RunSettings {
        poll_interval: Duration::from_millis(50),
        queue_check_interval: Duration::from_millis(50),
        ..fast_settings(600)
    };
    // after 30 rounds one host reconnects; once it left the queue, launching is stopped
    let reconnect = Arc::new(tokio::sync::Notify::new());
    let r2 = reconnect.clone();
    let control = Control::new();
    let c2 = control.clone();
    let reconnected = Arc::new(AtomicBool::new(false));
    let seen = reconnected.clone();
    let helper = tokio::spawn({
        let set_online = set_online.clone();
        let back = back.clone();
        async move {
            r2.notified().await;
            set_online(vec![back], true).await;
            seen.store(true, Ordering::SeqCst);
        }
    });
    let outcome = Run::new(&env.api, JobId::random(), settings)
        .collector(set)
        .control(control)
        .on_progress(move |p| {
            if p.phase != "polled" {
                return;
            }
            if p.round == 30 {
                reconnect.notify_one();
            }
            if p.round > 30
                && reconnected.load(Ordering::SeqCst)
                && p.counts[&HostState::QueuedOffline] == 1
                && !c2.is_stopping()
            {
                c2.interrupt();
            }
        })
        .start(hosts, &dir.path().join("run.jsonl"))
        .await
        .unwrap();
    helper.await.unwrap();
    assert!(outcome.stats.rounds > 30);
    let by = |id: &str| {
        outcome
            .report
            .hosts
            .iter()
            .find(|h| h.device_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by(&back).state,
        HostState::Succeeded,
        "{}",
        outcome.report.table()
    );
    let gone = by(&away);
    assert_eq!(gone.state, HostState::Cancelled);
    assert_eq!(
        gone.reason.as_deref(),
        Some("stopped_by_user: launching was stopped (Ctrl-C); its queued launch was deleted")
    );
    assert_eq!(outcome.report.summary.queued_deleted, 1);
    let rtr = env.falcon_get("/_sandbox/rtr").await;
    // over 30+ rounds offline, each host's queue received one command: its launch
    assert_eq!(rtr["queued_per_host"][&back], 1, "{rtr}");
    assert_eq!(rtr["queued_per_host"][&away], 1, "{rtr}");
    assert_eq!(rtr["deleted_per_host"][&away], 1, "{rtr}");
    assert_eq!(rtr["pending_commands"], 0, "nothing is left queued");
    let jobs = env.jobs().await;
    assert_eq!(jobs[&back].len(), 1);
    assert!(!jobs.contains_key(&away), "the deleted launch never ran");
}
