//! What a real tenant does that a friendly simulator does not: another cloud, Falcon's URL length
//! limit, a read-only API client, a state file left by another stream.

use falcon_sdk::Region;
use serde_json::json;

use crate::common::*;

/// Runs until caught up, expecting the run to stop with an error (within 60 s, not retrying forever).
async fn run_fails(config: &ioc_sync::config::Config) -> ioc_sync::Error {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        ioc_sync::run(
            config,
            &ioc_sync::RunOptions {
                until_caught_up: true,
                ..Default::default()
            },
            std::future::pending(),
        ),
    )
    .await
    .expect("stops instead of retrying forever")
    .unwrap_err()
}

/// A tenant on EU-1, with the simulator also playing the US-1 gateway.
async fn eu_tenant(indicators: usize) -> sandbox::Sandbox {
    sandbox(indicators, |c| {
        c.falcon.region = "eu-1".into();
        c.falcon.other_clouds = vec!["us-1".into()];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_on_another_cloud_syncs_with_the_default_base_url() {
    let sb = eu_tenant(200).await;
    let info = sb.info().clone();
    let us1 = info.falcon_cloud_urls["us-1"].clone();
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    // The default configuration: no CROWDSTRIKE_API_BASE_URL (https://api.crowdstrike.com).
    e.remove("CROWDSTRIKE_API_BASE_URL");
    let mut config = config(&e);
    // The real clouds' hosts, played by the simulator.
    config.crowdstrike.region_urls = vec![
        (Region::Us1, us1.parse().unwrap()),
        (Region::Eu1, info.falcon_url.parse().unwrap()),
    ];
    let s = sync_until_caught_up(&config).await;
    assert!(s.created > 0, "{s:?}");
    assert_eq!(s.dead_letters, 0, "{s:?}");
    assert_converged(&info).await;

    // `check` follows the region too.
    let checks = ioc_sync::check(&config).await;
    let falcon: Vec<_> = checks
        .iter()
        .filter(|c| c.name.starts_with("falcon"))
        .collect();
    assert_eq!(falcon.len(), 2, "{checks:?}");
    assert!(falcon.iter().all(|c| c.ok), "{checks:?}");
    assert!(falcon[0].detail.contains(&info.falcon_url), "{checks:?}");

    // A fixed URL on the wrong cloud is used as given: every call fails 401, loudly and for good.
    let mut pinned = config.clone();
    pinned.crowdstrike.endpoint = ioc_sync::config::FalconEndpoint::Url(us1);
    create_indicator(
        &info,
        json!({"pattern": "[domain-name:value = 'new.example']", "pattern_type": "stix",
               "score": 85, "platforms": ["windows"]}),
    )
    .await;
    let e = run_fails(&pinned).await;
    assert!(e.is_falcon_auth(), "{e:?}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_fit_falcon_url_limit() {
    // Falcon's practical limit (18,500 characters) is on in the simulator by default.
    let sb = sandbox(0, |c| assert_eq!(c.falcon.max_url_length, Some(18_500))).await;
    let info = sb.info().clone();
    // 400 SHA-256 values: about 29,000 characters in one lookup URL if sized by count.
    for i in 0..400u32 {
        create_indicator(
            &info,
            json!({"pattern": format!("[file:hashes.'SHA-256' = '{i:064x}']"),
                   "pattern_type": "stix", "score": 85, "platforms": ["windows"]}),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    // The documented maximum: 500 values per lookup.
    e.insert("IOC_SYNC_LOOKUP_CHUNK".into(), "500".into());
    e.insert("IOC_SYNC_BATCH_SIZE".into(), "2000".into());
    e.insert("IOC_SYNC_BATCH_WINDOW_MS".into(), "3000".into());
    let s = sync_until_caught_up(&config(&e)).await;
    assert_eq!(s.dead_letters, 0, "{s:?}");
    assert_converged(&info).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_lookup_is_dead_lettered_and_never_crash_loops() {
    let sb = sandbox(100, |_| {}).await;
    let info = sb.info().clone();
    // A gateway that refuses every lookup URL (shorter than ioc-sync's own limit).
    post(
        format!("{}/_sandbox/knobs", info.falcon_url),
        json!({"max_url_length": 200}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    let first = sync_until_caught_up(&config).await;
    let text = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(first.dead_letters, lines.len() as u64, "{first:?}");
    let lettered: std::collections::BTreeSet<String> = lines.iter().map(key).collect();
    for k in expected(&info).await.keys() {
        assert!(lettered.contains(k), "{k} has no dead letter");
    }
    for l in &lines {
        assert_eq!(l["operation"], "lookup");
        assert!(l["reason"].as_str().unwrap().contains("414"), "{l}");
    }
    // The cursor moved past the batch: a restart does not replay it, and does not fail.
    let again = sync_until_caught_up(&config).await;
    assert_eq!(again.dead_letters, 0, "{again:?}");
    assert!(falcon_all(&info).await.is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_api_client_fails_check_and_stops_the_run() {
    let sb = sandbox(50, |c| c.falcon.ioc_write_scope = false).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    let checks = ioc_sync::check(&config).await;
    let read = checks.iter().find(|c| c.name == "falcon").unwrap();
    let write = checks.iter().find(|c| c.name == "falcon write").unwrap();
    assert!(read.ok, "{checks:?}");
    assert!(!write.ok, "{checks:?}");
    assert!(
        write.detail.contains("IOC Manager: write") && write.detail.contains("403"),
        "{write:?}"
    );
    let e = run_fails(&config).await;
    assert!(e.is_falcon_auth(), "{e:?}");
    assert!(
        !dir.path().join("dead.jsonl").exists(),
        "a missing scope is no dead letter"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_another_stream_is_refused() {
    let sb = sandbox(50, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let e = env(&info, dir.path());
    sync_until_caught_up(&config(&e)).await;
    let saved = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(saved.contains(&info.live_stream_id), "{saved}");
    // Same working directory, another stream: the global one.
    let mut other = e.clone();
    other.insert("CONNECTOR_LIVE_STREAM_ID".into(), "live".into());
    let err = run_fails(&config(&other)).await;
    let msg = err.to_string();
    assert!(
        matches!(err, ioc_sync::Error::StateMismatch { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("state.json") && msg.contains("`live`"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state.json")).unwrap(),
        saved,
        "the other stream's file is left alone"
    );
    sb.shutdown().await;
}
