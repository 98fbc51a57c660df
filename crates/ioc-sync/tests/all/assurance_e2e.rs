//! Dissemination assurance end to end against the sandbox: the stream path reports every
//! indicator's deployment, reconciliation honours the analyst's buttons, a platform without the
//! feature works as before.

use std::collections::BTreeMap;

use ioc_sync::mapping::{MappingOptions, map_indicator};
use serde_json::{Value, json};

use crate::common::{
    assert_converged, config, env, get, indicators, post, sandbox, sync_until_caught_up,
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

#[tokio::test]
async fn initial_sync_reports_every_deployable_indicator_and_nothing_else() {
    let sb = sandbox(600, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&env(&info, dir.path()));
    sync_until_caught_up(&cfg).await;
    assert_converged(&info).await;
    let deps = deployments(&info.opencti_url).await;
    let opts = MappingOptions::from_config(&cfg);
    let now = chrono::Utc::now();
    let (mut deployed, mut none) = (0, 0);
    for ind in indicators(&info).await {
        let id = ind["id"].as_str().unwrap();
        let m = map_indicator(&ind, &opts, now);
        // The live stream carries neither revoked nor inferred indicators (default filters).
        let inferred =
            ind["extensions"][ioc_sync::mapping::OPENCTI_EXTENSION]["is_inferred"] == true;
        let on_stream = ind["revoked"] != true && !inferred;
        match deps.get(id) {
            Some(d) => {
                assert!(
                    on_stream && m.withdrawn.is_none() && !m.iocs.is_empty(),
                    "{id}: {d}"
                );
                assert_eq!(d["deployment_status"], "deployed", "{id}: {d}");
                let ids = d["external_id"].as_str().unwrap().split(',').count();
                assert_eq!(ids, m.iocs.len(), "one Falcon id per IOC of {id}");
                deployed += 1;
            }
            None => {
                assert!(
                    !on_stream || m.withdrawn.is_some() || m.iocs.is_empty(),
                    "{id} is deployable but has no deployment"
                );
                none += 1;
            }
        }
    }
    assert!(
        deployed > 200 && none > 50,
        "{deployed} deployed, {none} without"
    );
    // Batched: a handful of OpenCTI calls for hundreds of indicators.
    let req = get(format!("{}/_sandbox/requests", info.opencti_url)).await;
    let graphql = req["requests"]["POST /graphql"].as_u64().unwrap();
    assert!(
        graphql < 20,
        "{graphql} GraphQL calls for {deployed} reports"
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
    // Revocation on the stream: removed.
    let client = crate::common::http();
    let r = client
        .patch(format!("{}/_sandbox/indicators/{c}", info.opencti_url))
        .json(&json!({"revoked": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    sync_until_caught_up(&cfg).await;
    assert_eq!(
        deployments(&info.opencti_url).await[c]["deployment_status"],
        "removed"
    );
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
