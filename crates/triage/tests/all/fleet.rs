//! 1,000 hosts, 10% offline at start (coming online later), 5% failing: every host ends in the right
//! state with the right reason, captures are verified, secrets stay out of every output.

use std::collections::HashSet;

use secrecy::ExposeSecret;
use triage::{CadoOptions, HostState, JobId, Platform, Run, RunSettings};

use crate::common::{PROJECT, fast_settings, platforms, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_hosts_with_offline_and_failing_hosts_end_in_the_right_state() {
    let env = sandbox(1000, 0.1, 0.05, 11).await;
    let hosts = env.all_hosts().await;
    assert_eq!(hosts.len(), 1000);
    let ps = platforms(&hosts);
    assert!(
        ps.contains(&Platform::Mac)
            && ps.contains(&Platform::Windows)
            && ps.contains(&Platform::Linux)
    );
    let job = JobId::random();
    let set = env
        .cado
        .collector_set(PROJECT, &CadoOptions::default(), &ps)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("run.jsonl");
    let settings = RunSettings {
        verify_project: Some(PROJECT),
        ..fast_settings(40)
    };
    let offline_at_start: HashSet<String> = env.falcon_get("/_sandbox/hosts").await["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["online"] == false)
        .map(|h| h["device_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        offline_at_start.len() >= 30,
        "the sandbox should start ~10% offline, got {}",
        offline_at_start.len()
    );

    let outcome = Run::new(&env.api, job.clone(), settings)
        .collector(set)
        .cado(env.cado.clone())
        .start(hosts, &journal)
        .await
        .unwrap();

    eprintln!(
        "DEBUG stats {:?} calls {:?}",
        outcome.stats,
        env.api.calls.lock().unwrap()
    );
    for h in outcome
        .report
        .hosts
        .iter()
        .filter(|h| offline_at_start.contains(&h.device_id))
        .take(3)
    {
        eprintln!("DEBUG {h:?}");
    }
    let jobs = env.jobs().await;
    let mut failed = 0;
    for h in &outcome.report.hosts {
        let js = jobs
            .get(&h.device_id)
            .unwrap_or_else(|| panic!("{} never ran a collector", h.hostname));
        assert_eq!(js.len(), 1, "{} ran {} collectors", h.hostname, js.len());
        let fails = js[0]["fails"].as_bool().unwrap();
        let reason = h.reason.clone().unwrap_or_default();
        if fails {
            failed += 1;
            assert_eq!(h.state, HostState::Failed, "{}: {reason}", h.hostname);
            match h.platform {
                Some(Platform::Windows) => assert!(
                    reason.starts_with("exit_code: 1"),
                    "{}: {reason}",
                    h.hostname
                ),
                _ => assert!(
                    reason.starts_with("collector_failed: Cado Host has failed"),
                    "{}: {reason}",
                    h.hostname
                ),
            }
        } else {
            assert_eq!(h.state, HostState::Succeeded, "{}: {reason}", h.hostname);
            assert!(h.reason.is_none());
        }
        assert_eq!(
            env.api.launches.lock().unwrap().get(&h.device_id).copied(),
            Some(1),
            "{}",
            h.hostname
        );
    }
    assert!(
        (20..=90).contains(&failed),
        "about 5% should fail, got {failed}"
    );
    assert_eq!(
        outcome.report.summary.exit_code,
        triage::exit_codes::SOME_FAILED
    );
    // offline hosts were queued, then followed until they came online
    let text = std::fs::read_to_string(&journal).unwrap();
    let replay = triage::journal::replay(&journal).unwrap();
    assert!(replay.finished);
    let queued: HashSet<String> = text
        .lines()
        .filter(|l| l.contains("\"state\":\"queued_offline\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["device_id"].as_str().unwrap().to_string())
        .collect();
    // (a few offline hosts may come online between the selection and the session init)
    assert!(
        queued.is_subset(&offline_at_start),
        "only offline hosts are queued"
    );
    assert!(
        queued.len() * 2 >= offline_at_start.len(),
        "most offline hosts were queued: {} of {}",
        queued.len(),
        offline_at_start.len()
    );
    for id in &queued {
        let h = outcome
            .report
            .hosts
            .iter()
            .find(|h| &h.device_id == id)
            .unwrap();
        assert!(
            matches!(h.state, HostState::Succeeded | HostState::Failed),
            "queued host {} ended {}",
            h.hostname,
            h.state
        );
    }
    // launch: one launch call per platform and batch (the online hosts' batch, and the queue_offline batch
    // of the offline hosts); polls: one polyglot probe call per round for the whole mixed-OS batch, which
    // the hosts whose queued launch ran joined (`existing_batch_id`)
    assert!(outcome.stats.launch_calls <= 6, "{:?}", outcome.stats);
    assert_eq!(outcome.stats.max_probe_calls_per_round, 1);
    // no probe was ever queued: each offline host's queue held its launch only
    let queued_cmds = env.falcon_get("/_sandbox/rtr").await["queued_per_host"].clone();
    for id in &offline_at_start {
        assert!(
            queued_cmds[id].as_u64().unwrap_or(0) <= 1,
            "{id} had {} commands queued",
            queued_cmds[id]
        );
    }
    assert!(
        outcome.stats.refresh_calls >= 1,
        "sessions were refreshed during the run"
    );
    // secrets: neither the API key nor any pre-signed data in the journal or the report
    let report = serde_json::to_string(&outcome.report).unwrap() + &outcome.report.table();
    let key = env.cado.api_key().expose_secret().to_string();
    for j in jobs.values().flatten().take(50) {
        let cmd = j["command"].as_str().unwrap();
        let data = presigned(cmd).expect("the collector got pre-signed data");
        assert!(
            !text.contains(&data) && !report.contains(&data),
            "pre-signed data leaked"
        );
    }
    assert!(!text.contains(&key) && !report.contains(&key));
}

fn presigned(cmd: &str) -> Option<String> {
    let at = cmd.find("--presigned_data")?;
    let rest = cmd[at + 16..].trim_start_matches([' ', '=', '"', '\'']);
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "+/=".contains(*c))
        .collect();
    (v.len() > 16).then_some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macos_hosts_with_presigned_data_and_a_version() {
    let env = sandbox(60, 0.0, 0.0, 5).await;
    let sel = triage::Selection {
        all: true,
        platforms: vec![Platform::Mac],
        ..Default::default()
    };
    let resolved = sel.resolve(&env.api).await.unwrap();
    assert!(!resolved.hosts.is_empty() && resolved.filtered_out > 0);
    assert!(
        resolved
            .hosts
            .iter()
            .all(|h| h.platform == Some(Platform::Mac))
    );
    // pre-signed data minted by the (simulated) platform, given to falcon-triage with a version
    let minted = env
        .cado
        .cado_host_command(PROJECT, Platform::Mac, &CadoOptions::default())
        .await
        .unwrap();
    let job = JobId::random();
    let set = triage::CollectorSet::cado_presigned(
        &minted.presigned_data,
        "v3.7.0",
        triage::collector::DEFAULT_DOWNLOAD_BASE,
        &CadoOptions::default(),
        &[Platform::Mac],
        &job,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = RunSettings {
        verify_project: Some(PROJECT),
        ..fast_settings(30)
    };
    let n = resolved.hosts.len();
    let outcome = Run::new(&env.api, job.clone(), settings)
        .collector(set)
        .cado(env.cado.clone())
        .start(resolved.hosts, &dir.path().join("mac.jsonl"))
        .await
        .unwrap();
    assert_eq!(
        outcome.report.summary.succeeded,
        n,
        "{}",
        outcome.report.table()
    );
    // the capture landed in the bucket under the pre-signed key template
    let bucket: serde_json::Value = env
        .http
        .get(format!("{}/_sandbox/bucket", env.sb.info().cado_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = bucket.to_string();
    assert!(
        text.contains("cado-collector/project-1/cado-host/"),
        "{text}"
    );
    for j in env.jobs().await.values().flatten() {
        let cmd = j["command"].as_str().unwrap();
        assert!(
            cmd.contains(&format!("/tmp/cado-host-{job}")),
            "the collector runs in the job's work directory: {cmd}"
        );
        assert!(cmd.contains("/osx/cado-host"));
    }
}
