//! Host actions against the sandbox: containment state transitions, chunking, per-host outcomes.

use std::collections::BTreeMap;
use std::time::Duration;

use falcon_sdk::FalconClient;
use falcon_sdk::host_actions::{HostAction, HostOutcome};
use serde_json::json;

use crate::common::{self, s};

/// Polls the device records until every host of `ids` reads `status` (bounded by a round count).
async fn wait_status(
    client: &FalconClient,
    ids: &[String],
    status: &str,
) -> BTreeMap<String, String> {
    for _ in 0..200 {
        let now = client.hosts().containment(ids).await.expect("containment");
        if now.values().all(|s| s == status) && now.len() == ids.len() {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.hosts().containment(ids).await.expect("containment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contain_then_lift_with_pending_states_and_per_host_outcomes() {
    let mut config = common::config(1_200, 1);
    config.falcon.containment_delay = Duration::from_millis(200);
    let sb = common::start(config).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    let mut ids: Vec<String> = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| s(&h["device_id"]).to_string())
        .collect();
    // One host offline: its sensor cannot acknowledge, it stays pending.
    let offline = ids[0].clone();
    common::post(
        format!("{}/_sandbox/hosts/online", info.falcon_url),
        json!({"ids": [offline], "online": false}),
    )
    .await;
    let unknown = "f".repeat(32);
    let mut asked = ids.clone();
    asked.push(unknown.clone());

    let report = client
        .hosts()
        .action(HostAction::Contain, &asked)
        .send()
        .await
        .expect("contain");
    // 1,201 ids at 500 per request.
    assert_eq!(report.requests, 3);
    assert_eq!(
        common::falcon_requests(info, "POST /devices/entities/devices-actions/v2").await,
        3
    );
    assert_eq!(report.hosts.len(), 1_201);
    assert!(matches!(
        report.hosts[&unknown],
        HostOutcome::Failed {
            code: Some(404),
            ..
        }
    ));
    assert_eq!(report.failed().count(), 1);

    let right_after = client.hosts().containment(&ids[..10]).await.unwrap();
    assert!(
        right_after
            .values()
            .all(|s| s == "containment_pending" || s == "contained"),
        "{right_after:?}"
    );
    let online = ids.split_off(1);
    let status = wait_status(&client, &online, "contained").await;
    assert!(
        status.values().all(|s| s == "contained"),
        "not all contained"
    );
    let off = client
        .hosts()
        .containment(std::slice::from_ref(&offline))
        .await
        .unwrap();
    assert_eq!(off[&offline], "containment_pending");

    // Again: every host is already contained (or pending), a 409 per host, reported as done.
    let again = client
        .hosts()
        .action(HostAction::Contain, &online[..600])
        .send()
        .await
        .expect("contain again");
    assert!(again.hosts.values().all(|o| *o == HostOutcome::AlreadyDone));

    let lift = client
        .hosts()
        .action(HostAction::LiftContainment, &online)
        .send()
        .await
        .expect("lift");
    assert!(lift.all_ok());
    let status = wait_status(&client, &online, "normal").await;
    assert!(status.values().all(|s| s == "normal"), "not all lifted");

    // Over the per-call maximum the simulator answers 400, as the reference gives.
    let hide = client
        .hosts()
        .action(HostAction::Hide, &online[..150])
        .send()
        .await
        .expect("hide");
    assert_eq!(hide.requests, 2, "hide is chunked at 100");
    assert!(hide.all_ok());
}
