//! Dissemination assurance end to end against the sandbox: the stream path reports every
//! indicator's deployment, reconciliation honours the analyst's buttons, a platform without the
//! feature works as before.

use std::collections::{BTreeMap, BTreeSet};

use ioc_sync::mapping::{MappingOptions, map_indicator};
use serde_json::{Value, json};

use crate::common::{
    assert_converged, config, create_indicator, env, falcon_all, get, indicators, post, sandbox,
    sync_until_caught_up,
};

async fn deployments(opencti_url: &str) -> BTreeMap<String, Value> {
    let snap = get(format!("{opencti_url}/_sandbox/deployments")).await;
    let stix: BTreeMap<String, String> = get(format!("{opencti_url}/_sandbox/indicators"))
        .await["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let internal = i["extensions"]["extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            (internal, i["id"].as_str().unwrap().to_owned())
        })
        .collect();
    snap["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| {
            let id = stix.get(d["indicator"].as_str()?)?;
            Some((id.clone(), d.clone()))
        })
        .collect()
}

/// Indicators of the initial-sync test (the size).
const INITIAL_SYNC_INDICATORS: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_reports_every_deployable_indicator_and_nothing_else() {
    // Foreign IOCs (another source's, not the connector's): Falcon refuses to create their values
    // again (a duplicate warning), so the indicators that want them are `failed`.
    let sb = sandbox(INITIAL_SYNC_INDICATORS, |c| c.falcon.iocs = 30).await;
    let info = sb.info().clone();
    let foreign: Vec<String> = falcon_all(&info)
        .await
        .iter()
        .filter(|i| i["type"] == "domain")
        .map(|i| i["value"].as_str().unwrap().to_owned())
        .collect();
    assert!(foreign.len() >= 2, "{foreign:?}");
    let refused = create_indicator(
        &info,
        json!({"pattern": format!("[domain-name:value = '{}']", foreign[0]), "pattern_type": "stix", "score": 50}),
    )
    .await;
    // Two values, Falcon refuses the second: `failed`, with the id of the IOC that was written.
    let half = create_indicator(
        &info,
        json!({"pattern": format!("[domain-name:value = 'half-refused.example.org'] OR [domain-name:value = '{}']", foreign[1]),
               "pattern_type": "stix", "score": 50}),
    )
    .await;
    let foreign: BTreeSet<String> = foreign.iter().map(|v| format!("domain:{v}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&env(&info, dir.path()));
    let summary = sync_until_caught_up(&cfg).await;
    let deps = deployments(&info.opencti_url).await;
    let opts = MappingOptions::from_config(&cfg);
    let now = chrono::Utc::now();
    let (mut deployed, mut failed, mut none) = (0, 0, 0);
    for ind in indicators(&info).await {
        let id = ind["id"].as_str().unwrap();
        let m = map_indicator(&ind, &opts, now);
        // The live stream carries neither revoked nor inferred indicators (default filters).
        let inferred =
            ind["extensions"][ioc_sync::mapping::OPENCTI_EXTENSION]["is_inferred"] == true;
        let on_stream = ind["revoked"] != true && !inferred;
        let deployable = on_stream && m.withdrawn.is_none() && !m.iocs.is_empty();
        let Some(d) = deps.get(id) else {
            assert!(!deployable, "{id} is deployable but has no deployment");
            if on_stream && m.withdrawn.is_none() {
                // Skipped: every reason is counted (and logged) by the run.
                for s in &m.skipped {
                    assert!(
                        summary.skipped.contains_key(s.reason.as_str()),
                        "{id}: skip reason {} not counted: {:?}",
                        s.reason,
                        summary.skipped
                    );
                }
            }
            none += 1;
            continue;
        };
        assert!(deployable, "{id}: {d}");
        let ids = d["external_id"]
            .as_str()
            .map_or(0, |e| e.split(',').count());
        let refused_keys: Vec<String> = m
            .iocs
            .iter()
            .map(|i| i.key.to_string())
            .filter(|k| foreign.contains(k))
            .collect();
        if refused_keys.is_empty() {
            assert_eq!(d["deployment_status"], "deployed", "{id}: {d}");
            assert_eq!(ids, m.iocs.len(), "one Falcon id per IOC of {id}");
            deployed += 1;
        } else {
            assert_eq!(d["deployment_status"], "failed", "{id}: {d}");
            let msg = d["error_message"].as_str().unwrap_or_default();
            for k in &refused_keys {
                let value = k.split_once(':').unwrap().1;
                assert!(
                    msg.contains("Duplicate type") && msg.contains(value),
                    "{id}: Falcon's message for {k} in {msg:?}"
                );
            }
            assert_eq!(ids, m.iocs.len() - refused_keys.len(), "{id}: {d}");
            failed += 1;
        }
    }
    for (id, ids) in [(&refused, 0), (&half, 1)] {
        let d = &deps[id];
        assert_eq!(d["deployment_status"], "failed", "{id}: {d}");
        assert_eq!(
            d["external_id"]
                .as_str()
                .map_or(0, |e| e.split(',').count()),
            ids,
            "{id}: {d}"
        );
    }
    assert!(
        deployed > INITIAL_SYNC_INDICATORS / 3
            && failed >= 2
            && none > INITIAL_SYNC_INDICATORS / 20,
        "{deployed} deployed, {failed} failed, {none} without"
    );
    // Batched: one report call per written batch (whatever its size), plus a fixed few (feature
    // detection, platform, registration, state): not one per indicator. The batch count depends on
    // the test's 100 ms batch window and the machine's load; the per-1,000 figure at the default
    // window is the benchmark's (docs/benchmarks.md).
    let req = get(format!("{}/_sandbox/requests", info.opencti_url)).await;
    let graphql = req["requests"]["POST /graphql"].as_u64().unwrap();
    assert!(
        graphql <= summary.batches + 10,
        "{graphql} GraphQL calls for {} batches: {summary:?}",
        summary.batches
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn churn_moves_statuses_and_the_analyst_buttons_take_effect_within_one_reconciliation() {
    let sb = sandbox(200, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&env(&info, dir.path()));
    sync_until_caught_up(&cfg).await;
    let deps = deployments(&info.opencti_url).await;
    let mut live = deps
        .iter()
        .filter(|(_, d)| d["deployment_status"] == "deployed");
    let (a, da) = live.next().unwrap();
    let (b, db) = live.next().unwrap();
    let (c, _) = live.next().unwrap();
    let (e, de) = live.next().unwrap();
    let (f, df) = live.next().unwrap();
    // Revocation on the stream: removed. A new value: deployed, with the new IOC's id. A deletion:
    // its IOCs withdrawn (the platform drops a deleted indicator's deployments with it).
    let client = crate::common::http();
    let r = client
        .patch(format!("{}/_sandbox/indicators/{c}", info.opencti_url))
        .json(&json!({"revoked": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = client
        .patch(format!("{}/_sandbox/indicators/{e}", info.opencti_url))
        .json(&json!({"pattern": "[domain-name:value = 'moved-value.example.org']"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = client
        .delete(format!("{}/_sandbox/indicators/{f}", info.opencti_url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let summary = sync_until_caught_up(&cfg).await;
    assert_eq!(summary.dead_letters, 0, "{summary:?}");
    let now = deployments(&info.opencti_url).await;
    assert_eq!(now[c]["deployment_status"], "removed");
    assert_eq!(now[e]["deployment_status"], "deployed", "{}", now[e]);
    let falcon_now = crate::common::falcon_all(&info).await;
    let moved: Vec<&Value> = falcon_now
        .iter()
        .filter(|i| i["value"] == "moved-value.example.org")
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(now[e]["external_id"], moved[0]["id"], "{}", now[e]);
    assert_ne!(now[e]["external_id"], de["external_id"]);
    let live_ids = |d: &Value| -> usize {
        let ids: Vec<&str> = d["external_id"].as_str().unwrap().split(',').collect();
        falcon_now
            .iter()
            .filter(|i| ids.contains(&i["id"].as_str().unwrap()) && !crate::common::withdrawn(i))
            .count()
    };
    assert_eq!(live_ids(de), 0, "the old value of e is withdrawn");
    assert_eq!(live_ids(df), 0, "the deleted f's IOCs are withdrawn");
    // "Remove from this platform" on a, and a withdrawn behind the connector's back then
    // "Deploy again" on b.
    post(
        format!(
            "{}/_sandbox/deployments/{}/remove",
            info.opencti_url,
            da["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    let run = ioc_sync::reconcile_deployments(&cfg).await.unwrap();
    assert_eq!(run.skipped, None, "{run:?}");
    let now = deployments(&info.opencti_url).await;
    assert_eq!(now[a]["deployment_status"], "removed", "{run:?}");
    assert_eq!(
        now[b]["deployment_status"], "active",
        "present in Falcon: confirmed"
    );
    let a_ids: Vec<&str> = da["external_id"].as_str().unwrap().split(',').collect();
    let still_live = crate::common::falcon_all(&info)
        .await
        .into_iter()
        .filter(|i| a_ids.contains(&i["id"].as_str().unwrap()) && !crate::common::withdrawn(i))
        .count();
    assert_eq!(still_live, 0, "a's IOCs withdrawn");
    // b: its IOCs deleted by someone in Falcon, then the next run marks it removed; Deploy again
    // then re-pushes it at the following run.
    let falcon = crate::common::falcon_client(&info);
    let ids: Vec<String> = db["external_id"]
        .as_str()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    falcon.iocs().delete_ids(&ids).send().await.unwrap();
    ioc_sync::reconcile_deployments(&cfg).await.unwrap();
    assert_eq!(
        deployments(&info.opencti_url).await[b]["deployment_status"],
        "removed"
    );
    post(
        format!(
            "{}/_sandbox/deployments/{}/retry",
            info.opencti_url,
            db["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    let run = ioc_sync::reconcile_deployments(&cfg).await.unwrap();
    assert_eq!(run.counts.repush, 1, "{run:?}");
    assert_eq!(
        deployments(&info.opencti_url).await[b]["deployment_status"],
        "deployed"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn a_platform_without_the_feature_syncs_exactly_as_before() {
    let sb = sandbox(200, |c| c.opencti.dissemination_assurance = false).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&env(&info, dir.path()));
    sync_until_caught_up(&cfg).await;
    assert_converged(&info).await;
    let snap = get(format!("{}/_sandbox/deployments", info.opencti_url)).await;
    assert_eq!(snap["deployments"].as_array().unwrap().len(), 0);
    let run = ioc_sync::reconcile_deployments(&cfg).await.unwrap();
    assert_eq!(
        run.skipped.as_deref(),
        Some("Write-back not supported by the OpenCTI platform")
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn hits_on_the_second_value_are_counted_once_across_restarts_and_stream_updates() {
    let sb = sandbox(50, |c| c.falcon.alerts = Some(0)).await;
    let info = sb.info().clone();
    let ind = create_indicator(
        &info,
        json!({"pattern": "[domain-name:value = 'first-hit.example.org'] OR [domain-name:value = 'second-hit.example.org']",
               "pattern_type": "stix", "score": 80}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&env(&info, dir.path()));
    sync_until_caught_up(&cfg).await;
    assert_eq!(
        deployments(&info.opencti_url).await[&ind]["deployment_status"],
        "deployed"
    );
    // Two alerts name only the pattern's second value, inside the first closed window.
    for ago in [20 * 60, 30 * 60] {
        post(
            format!("{}/_sandbox/alerts/ioc-hit", info.falcon_url),
            json!({"values": ["SECOND-HIT.example.org"], "ago_secs": ago}),
        )
        .await;
    }
    let hits = |run: &ioc_sync::assurance::runtime::ReconcileRun| {
        run.hits.as_ref().map(|h| (h.stats.hits, h.reported))
    };
    let run = ioc_sync::reconcile_deployments(&cfg).await.unwrap();
    assert_eq!(hits(&run), Some((2, 1)), "{run:?}");
    let d = deployments(&info.opencti_url).await[&ind].clone();
    assert_eq!(d["hit_count"], 2, "{d}");
    assert_eq!(d["deployment_status"], "active", "{d}");
    assert!(
        dir.path().join("state.json.hits.json").exists(),
        "the hit window is persisted next to the state file"
    );
    // A restart: a new run reads the persisted window and counts nothing twice.
    let run = ioc_sync::reconcile_deployments(&cfg).await.unwrap();
    assert_eq!(run.skipped, None, "{run:?}");
    assert_eq!(deployments(&info.opencti_url).await[&ind]["hit_count"], 2);
    // The stream sends the indicator again (an update): its report neither resets nor adds hits.
    let r = crate::common::http()
        .patch(format!("{}/_sandbox/indicators/{ind}", info.opencti_url))
        .json(&json!({"score": 90}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    sync_until_caught_up(&cfg).await;
    let d = deployments(&info.opencti_url).await[&ind].clone();
    assert_eq!(d["hit_count"], 2, "{d}");
    assert_eq!(
        d["deployment_status"], "active",
        "deployed never downgrades active: {d}"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn hit_reports_past_the_platforms_rate_limit_wait_for_its_hint_and_all_arrive() {
    // The platform accepts 2 hit reports a second; 8 indicators were hit (sequential reports on
    // loopback take milliseconds, so the limit is reached however loaded the machine is).
    let sb = sandbox(20, |c| {
        c.falcon.alerts = Some(0);
        c.opencti.deployment_rate_limits.hits = 2;
    })
    .await;
    let info = sb.info().clone();
    let mut hit = Vec::new();
    for n in 0..8 {
        let value = format!("rate-limited-{n}.example.org");
        let id = create_indicator(
            &info,
            json!({"pattern": format!("[domain-name:value = '{value}']"), "pattern_type": "stix", "score": 80}),
        )
        .await;
        hit.push((id, value));
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&env(&info, dir.path()));
    sync_until_caught_up(&cfg).await;
    for (_, value) in &hit {
        post(
            format!("{}/_sandbox/alerts/ioc-hit", info.falcon_url),
            json!({"values": [value], "ago_secs": 20 * 60}),
        )
        .await;
    }
    let run = ioc_sync::reconcile_deployments(&cfg).await.unwrap();
    let h = run.hits.as_ref().expect("hits collected");
    assert!(h.complete, "{run:?}");
    assert_eq!((h.stats.hits, h.reported), (8, 8), "{run:?}");
    let snap = get(format!("{}/_sandbox/deployments", info.opencti_url)).await;
    assert!(
        snap["rate_limited"]["hits"].as_u64().unwrap_or(0) >= 1,
        "the limit was reached: {}",
        snap["rate_limited"]
    );
    let deps = deployments(&info.opencti_url).await;
    for (id, _) in &hit {
        assert_eq!(deps[id]["hit_count"], 1, "{}", deps[id]);
    }
    sb.shutdown().await;
}
