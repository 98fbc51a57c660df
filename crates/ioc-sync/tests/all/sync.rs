//! Initial sync, churn, deletes, faults, poison events, ownership.

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_equals_the_expected_ioc_set() {
    let sb = sandbox(5_000, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    let summary = sync_until_caught_up(&config).await;
    let want = expected(&info).await;
    let have: std::collections::BTreeMap<String, serde_json::Value> = falcon_all(&info)
        .await
        .into_iter()
        .map(|i| (key(&i), i))
        .collect();
    let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).collect();
    if !missing.is_empty() {
        for k in missing.iter().take(3) {
            let (t, v) = k.split_once(':').unwrap();
            for ind in indicators(&info).await {
                if ind["pattern"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(v)
                {
                    eprintln!("{t} {v} <- {ind}");
                }
            }
        }
    }
    assert!(missing.is_empty(), "missing {missing:?}");
    assert_eq!(have.len(), want.len(), "no unexpected IOC");
    for (k, w) in &want {
        let h = &have[k];
        for f in [
            "action",
            "mobile_action",
            "severity",
            "source",
            "applied_globally",
        ] {
            assert_eq!(h[f], w[f], "{k} field {f}");
        }
        assert_eq!(h["created_by"], json!(info.falcon_client_id));
    }
    assert_eq!(summary.dead_letters, 0);
    assert!(
        summary
            .skipped
            .get("unsupported_type")
            .copied()
            .unwrap_or(0)
            > 0
    );
    sb.shutdown().await;
}

/// No two IOCs with the same type and value.
async fn assert_no_duplicates(info: &sandbox::SandboxInfo) {
    let all = falcon_all(info).await;
    let keys: std::collections::BTreeSet<String> = all.iter().map(key).collect();
    assert_eq!(keys.len(), all.len(), "duplicate IOCs in Falcon");
}

async fn set_merges(info: &sandbox::SandboxInfo, weight: u32) {
    post(
        format!("{}/_sandbox/churn", info.opencti_url),
        json!({"merges": weight}),
    )
    .await;
}

async fn churn(info: &sandbox::SandboxInfo, count: u64) -> serde_json::Value {
    post(
        format!("{}/_sandbox/churn/step", info.opencti_url),
        json!({"count": count}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_converges_with_soft_delete() {
    let sb = sandbox(800, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    sync_until_caught_up(&config).await;
    assert_converged(&info).await;
    // Updates, pattern changes, revocations, deletions, creations: the stream alone converges.
    set_merges(&info, 0).await;
    let ops = churn(&info, 400).await;
    for op in [
        "update",
        "create",
        "deletion",
        "revocation",
        "pattern_change",
    ] {
        assert!(
            ops["operations"].to_string().contains(op),
            "churn did {op}: {ops}"
        );
    }
    let s = sync_until_caught_up(&config).await;
    assert_converged(&info).await;
    assert_no_duplicates(&info).await;
    assert!(s.soft_deleted > 0, "removals were soft deletes: {s:?}");
    assert_eq!(s.deleted, 0);
    for i in falcon_all(&info).await.iter().filter(|i| withdrawn(i)) {
        assert_eq!(
            i["action"], "no_action",
            "a soft-deleted IOC stops alerting: {i}"
        );
    }
    // Merges too. A merge into an indicator outside the stream's filters (revoked, inferred) is not
    // announced by the platform, so its merged-away IOCs are left for `reconcile`.
    set_merges(&info, 30).await;
    let ops = churn(&info, 300).await;
    assert!(ops["operations"].to_string().contains("merge"), "{ops}");
    let s = sync_until_caught_up(&config).await;
    assert!(s.data_events > 0);
    ioc_sync::reconcile(&config, &confirmed(), |_| {})
        .await
        .expect("reconcile");
    assert_converged(&info).await;
    assert_no_duplicates(&info).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_converges_with_permanent_delete() {
    let sb = sandbox(800, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    e.insert("CROWDSTRIKE_PERMANENT_DELETE".into(), "true".into());
    let config = config(&e);
    sync_until_caught_up(&config).await;
    set_merges(&info, 0).await;
    churn(&info, 400).await;
    let s = sync_until_caught_up(&config).await;
    assert!(s.deleted > 0, "{s:?}");
    assert_eq!(s.soft_deleted, 0);
    assert_converged(&info).await;
    assert!(
        falcon_all(&info).await.iter().all(|i| !withdrawn(i)),
        "nothing soft-deleted"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_change_revocation_deletion_and_merge_of_known_indicators() {
    let sb = sandbox(0, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    let base = format!("{}/_sandbox/indicators", info.opencti_url);
    let mk = |pattern: &str| json!({"pattern": pattern, "pattern_type": "stix", "score": 85, "labels": ["c2"], "platforms": ["windows"]});
    let a = create_indicator(&info, mk("[domain-name:value = 'a-old.example']")).await;
    let b = create_indicator(&info, mk("[ipv4-addr:value = '198.51.100.7']")).await;
    let c = create_indicator(
        &info,
        mk("[file:hashes.MD5 = 'D41D8CD98F00B204E9800998ECF8427E']"),
    )
    .await;
    let d = create_indicator(&info, mk("[domain-name:value = 'merged-away.example']")).await;
    let t = create_indicator(&info, mk("[domain-name:value = 'merge-target.example']")).await;
    sync_until_caught_up(&config).await;
    let live = live_owned(&info).await;
    assert!(
        live.contains("md5:d41d8cd98f00b204e9800998ecf8427e"),
        "unquoted upper-case MD5 written lower-case: {live:?}"
    );
    let ioc = falcon_all(&info)
        .await
        .into_iter()
        .find(|i| i["value"] == "a-old.example")
        .unwrap();
    assert_eq!(
        (ioc["severity"].as_str(), ioc["action"].as_str()),
        (Some("critical"), Some("detect"))
    );
    assert_eq!(ioc["platforms"], json!(["windows"]));
    assert_eq!(ioc["tags"], json!(["c2", format!("opencti:{a}")]));

    let patch = |id: &str, body: serde_json::Value| {
        let url = format!("{base}/{id}");
        async move {
            http()
                .patch(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
        }
    };
    patch(
        &a,
        json!({"pattern": "[domain-name:value = 'a-new.example']"}),
    )
    .await;
    patch(&b, json!({"revoked": true})).await;
    http()
        .delete(format!("{base}/{c}"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    post(format!("{base}/{t}/merge"), json!({"sources": [d]})).await;
    sync_until_caught_up(&config).await;
    let live = live_owned(&info).await;
    let want: std::collections::BTreeSet<String> =
        ["domain:a-new.example", "domain:merge-target.example"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(live, want);
    sb.shutdown().await;
}

/// The tags of the one IOC with `value` in the Falcon simulator (and whether it is soft deleted).
async fn tags_of(info: &sandbox::SandboxInfo, value: &str) -> Option<(Vec<String>, bool)> {
    let all: Vec<_> = falcon_all(info)
        .await
        .into_iter()
        .filter(|i| i["value"] == value)
        .collect();
    assert!(all.len() <= 1, "one IOC per value: {all:?}");
    all.first().map(|i| {
        let tags = i["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        (tags, withdrawn(i) && i["action"] == "no_action")
    })
}

async fn ioc_id(info: &sandbox::SandboxInfo, value: &str) -> Option<String> {
    falcon_all(info)
        .await
        .into_iter()
        .find(|i| i["value"] == value)
        .and_then(|i| i["id"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_value_stays_while_one_indicator_carries_it() {
    for permanent in [false, true] {
        let sb = sandbox(0, |_| {}).await;
        let info = sb.info().clone();
        let dir = tempfile::tempdir().unwrap();
        let mut e = env(&info, dir.path());
        e.insert("CROWDSTRIKE_PERMANENT_DELETE".into(), permanent.to_string());
        let config = config(&e);
        let base = format!("{}/_sandbox/indicators", info.opencti_url);
        let mk = |label: &str| json!({"pattern": "[domain-name:value = 'shared.example']", "pattern_type": "stix", "score": 85, "labels": [label], "platforms": ["windows"]});
        let a = create_indicator(&info, mk("from-a")).await;
        let b = create_indicator(&info, mk("from-b")).await;
        // A second pair, whose first indicator goes away in the same batch as the second is created.
        let c = create_indicator(
            &info,
            json!({"pattern": "[ipv4-addr:value = '203.0.113.9']", "pattern_type": "stix", "labels": ["from-c"]}),
        )
        .await;
        sync_until_caught_up(&config).await;
        let (tags, gone) = tags_of(&info, "shared.example").await.unwrap();
        assert!(!gone);
        assert_eq!(
            tags,
            vec![
                "from-b".to_string(),
                format!("opencti:{a}"),
                format!("opencti:{b}")
            ],
            "the last writer's labels, both owners"
        );

        // A is revoked: the IOC stays, owned by B alone.
        http()
            .patch(format!("{base}/{a}"))
            .json(&json!({"revoked": true}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        // C is deleted and D, carrying the same value, created before the batch is written.
        http()
            .delete(format!("{base}/{c}"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let d = create_indicator(
            &info,
            json!({"pattern": "[ipv4-addr:value = '203.0.113.9']", "pattern_type": "stix", "labels": ["from-d"]}),
        )
        .await;
        let id_before = ioc_id(&info, "shared.example").await;
        let s = sync_until_caught_up(&config).await;
        assert_eq!(s.dead_letters, 0, "{s:?}");
        assert_eq!(
            ioc_id(&info, "shared.example").await,
            id_before,
            "neither deleted nor re-created"
        );
        let (tags, gone) = tags_of(&info, "shared.example").await.unwrap();
        assert!(!gone, "B still carries the value");
        assert_eq!(tags, vec!["from-b".to_string(), format!("opencti:{b}")]);
        let (tags, gone) = tags_of(&info, "203.0.113.9").await.unwrap();
        assert!(!gone);
        assert_eq!(tags, vec!["from-d".to_string(), format!("opencti:{d}")]);
        assert_converged(&info).await;

        // reconcile agrees (no write), and repairs owner tags that drifted.
        let r = ioc_sync::reconcile(&config, &confirmed(), |_| {})
            .await
            .unwrap();
        assert_eq!(
            (
                r.writes.created,
                r.writes.updated,
                r.writes.deleted,
                r.writes.soft_deleted
            ),
            (0, 0, 0, 0),
            "{r:?}"
        );
        let id = falcon_all(&info)
            .await
            .into_iter()
            .find(|i| i["value"] == "shared.example")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let mut drifted = falcon_sdk::iocs::IndicatorUpdate::new(id);
        drifted.tags = Some(vec![
            "from-b".into(),
            format!("opencti:{b}"),
            "opencti:indicator--00000000-0000-4000-8000-000000000000".into(),
        ]);
        let report = falcon_client(&info)
            .iocs()
            .update(vec![drifted])
            .send()
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        let r = ioc_sync::reconcile(&config, &confirmed(), |_| {})
            .await
            .unwrap();
        assert_eq!(r.writes.updated, 1, "{r:?}");
        let (tags, _) = tags_of(&info, "shared.example").await.unwrap();
        assert_eq!(tags, vec!["from-b".to_string(), format!("opencti:{b}")]);

        // B is deleted: no owner remains.
        http()
            .delete(format!("{base}/{b}"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        sync_until_caught_up(&config).await;
        match tags_of(&info, "shared.example").await {
            None => assert!(permanent, "soft delete keeps the IOC"),
            Some((tags, gone)) => {
                assert!(!permanent && gone, "withdrawn: {tags:?}");
                assert_eq!(tags, vec!["from-b".to_string(), "TO_DELETE".to_string()]);
            }
        }
        assert_converged(&info).await;
        sb.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_and_falcon_errors_lose_nothing() {
    let sb = sandbox(2_000, |c| {
        c.opencti.faults.close_stream_every = Some(500);
        c.falcon.faults.error_rate = 0.1;
        c.falcon.faults.throttle_rate = 0.1;
        c.falcon.faults.throttle_retry_after_secs = 1;
    })
    .await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    e.insert("IOC_SYNC_BATCH_SIZE".into(), "300".into());
    e.insert("IOC_SYNC_WRITE_CHUNK".into(), "50".into());
    e.insert("IOC_SYNC_LOOKUP_CHUNK".into(), "50".into());
    let config = config(&e);
    let s = sync_until_caught_up(&config).await;
    let faults = get(format!("{}/_sandbox/faults", info.falcon_url)).await;
    assert!(
        faults["injected"]["server_errors"].as_u64() > Some(0),
        "5xx injected: {faults}"
    );
    assert!(
        faults["injected"]["throttles"].as_u64() > Some(0),
        "429 injected: {faults}"
    );
    let octi_faults = get(format!("{}/_sandbox/faults", info.opencti_url)).await;
    assert!(
        octi_faults["injected"]["streams_closed"].as_u64() >= Some(3),
        "stream dropped: {octi_faults}"
    );
    post(
        format!("{}/_sandbox/faults", info.falcon_url),
        json!({"error_rate": 0.0, "throttle_rate": 0.0}),
    )
    .await;
    assert_converged(&info).await;
    assert_no_duplicates(&info).await;
    assert_eq!(
        s.dead_letters, 0,
        "transient failures are retried, never dead-lettered"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_skipped_and_counted() {
    let sb = sandbox(50, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    sync_until_caught_up(&config).await;
    let raw = format!("{}/_sandbox/events/raw", info.opencti_url);
    post(
        raw.clone(),
        json!({"event": "create", "data": "this is not json"}),
    )
    .await;
    let bad = json!({"version": "4", "type": "create", "data": {"id": "indicator--bad", "type": "indicator",
        "pattern_type": "stix", "pattern": "[ipv4-addr:value = "}});
    post(raw.clone(), json!({"event": "create", "data": bad})).await;
    let nospace = json!({"version": "4", "type": "create", "data": {"id": "indicator--ns", "type": "indicator",
        "pattern_type": "stix", "pattern": "[ipv4-addr:value='203.0.113.9']", "x_opencti_score": 50}});
    post(raw, json!({"event": "create", "data": nospace})).await;
    let s = sync_until_caught_up(&config).await;
    assert_eq!(s.malformed, 1, "{s:?}");
    assert_eq!(s.skipped.get("invalid_pattern"), Some(&1), "{s:?}");
    assert!(
        live_owned(&info).await.contains("ipv4:203.0.113.9"),
        "the event after the poison ones is written"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iocs_not_owned_by_the_connector_are_untouched() {
    let sb = sandbox(300, |c| c.falcon.iocs = 40).await;
    let info = sb.info().clone();
    let foreign: Vec<serde_json::Value> = falcon_all(&info).await;
    assert_eq!(foreign.len(), 40);
    let taken = foreign.iter().find(|i| i["type"] == "domain").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("{}/_sandbox/indicators", info.opencti_url);
    post(base.clone(), json!({"pattern": format!("[domain-name:value = '{taken}']"), "pattern_type": "stix", "score": 50})).await;
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    e.insert("CROWDSTRIKE_PERMANENT_DELETE".into(), "true".into());
    let config = config(&e);
    let s = sync_until_caught_up(&config).await;
    assert_eq!(
        s.dead_letters, 1,
        "creating a value another source owns fails and is dead-lettered: {s:?}"
    );
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    assert!(dead.contains(&taken), "{dead}");
    churn(&info, 200).await;
    sync_until_caught_up(&config).await;
    ioc_sync::reconcile(&config, &confirmed(), |_| {})
        .await
        .expect("reconcile");
    let after: std::collections::BTreeMap<String, serde_json::Value> = falcon_all(&info)
        .await
        .into_iter()
        .map(|i| (key(&i), i))
        .collect();
    for f in &foreign {
        assert_eq!(after.get(&key(f)), Some(f), "foreign IOC changed");
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_fixes_drift_both_ways() {
    let sb = sandbox(300, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(&info, dir.path());
    e.insert("CROWDSTRIKE_PERMANENT_DELETE".into(), "true".into());
    let config = config(&e);
    sync_until_caught_up(&config).await;
    // Drift: an owned IOC deleted behind the connector's back, and an owned IOC no indicator wants.
    let falcon = falcon_client(&info);
    let some = falcon_all(&info).await.into_iter().next().unwrap();
    falcon
        .iocs()
        .delete_ids(&[some["id"].as_str().unwrap().to_string()])
        .send()
        .await
        .unwrap();
    use falcon_sdk::iocs::{Action, IocType, NewIndicator, Platform, Severity};
    let mut stray = NewIndicator::new(
        IocType::from("domain"),
        "stray.example",
        Action::from("detect"),
    );
    stray.mobile_action = Some(Action::from("detect"));
    stray.severity = Some(Severity::from("low"));
    stray.applied_globally = Some(true);
    stray.source = Some(ioc_sync::mapping::SOURCE.to_string());
    stray.platforms = vec![Platform::from("windows")];
    let report = falcon.iocs().create(vec![stray]).send().await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    // The GraphQL API also lists inferred indicators, which the stream (without inferences) does not carry.
    // Without `with-inferences` reconcile leaves them out too.
    assert!(expected_with(&info, true).await.len() > expected(&info).await.len());
    let dry = ioc_sync::reconcile(&config, &dry(), |_| {}).await.unwrap();
    assert_eq!((dry.writes.created, dry.writes.deleted), (1, 1), "{dry:?}");
    assert!(
        live_owned(&info).await.contains("domain:stray.example"),
        "dry run changes nothing"
    );
    assert!(
        !live_owned(&info).await.contains(&key(&some)),
        "dry run changes nothing"
    );
    let done = ioc_sync::reconcile(&config, &confirmed(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        (done.writes.created, done.writes.deleted),
        (1, 1),
        "{done:?}"
    );
    assert_converged(&info).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_keeps_no_state() {
    let sb = sandbox(300, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let e = env(&info, dir.path());
    let config = config(&e);
    let opts = ioc_sync::RunOptions {
        dry_run: true,
        until_caught_up: true,
    };
    let s = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        ioc_sync::run(&config, &opts, std::future::pending()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(s.created > 0, "the plan is reported: {s:?}");
    let reconciled = ioc_sync::reconcile(&config, &dry(), |_| {}).await.unwrap();
    assert!(reconciled.plan.creates > 0, "{reconciled:?}");
    let connectors = get(format!("{}/_sandbox/connectors", info.opencti_url)).await;
    assert!(
        !connectors.to_string().contains(&e["CONNECTOR_ID"]),
        "a dry run registers nothing (registering can also clear the state file): {connectors}"
    );
    assert!(falcon_all(&info).await.is_empty(), "nothing written");
    assert!(!dir.path().join("state.json").exists(), "no state saved");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_reset_in_opencti_triggers_a_full_resync() {
    let sb = sandbox(300, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let e = env(&info, dir.path());
    let config = config(&e);
    let first = sync_until_caught_up(&config).await;
    let again = sync_until_caught_up(&config).await;
    assert!(
        again.data_events < first.data_events / 10,
        "a restart resumes: {again:?}"
    );
    post(
        format!(
            "{}/_sandbox/connectors/{}/reset",
            info.opencti_url, e["CONNECTOR_ID"]
        ),
        json!({}),
    )
    .await;
    let after = sync_until_caught_up(&config).await;
    assert_eq!(
        after.data_events, first.data_events,
        "the reset replays the whole snapshot"
    );
    assert_eq!(
        after.created, 0,
        "nothing rewritten: every IOC is already as wanted"
    );
    assert_converged(&info).await;
    sb.shutdown().await;
}
