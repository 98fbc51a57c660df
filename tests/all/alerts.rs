//! Alerts query / get / update through falcon-sdk against the sandbox.

use std::collections::{BTreeMap, BTreeSet};

use falcon_sdk::alerts::{AlertAction, AlertStatus};
use falcon_sdk::fql::Fql;
use futures::TryStreamExt;

use crate::common::{self, s};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_query_get_update() {
    // 400 hosts -> 100 alerts (hosts / 4).
    let sb = common::start(common::config(400, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    let hostnames: BTreeMap<&str, &str> = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (s(&h["device_id"]), s(&h["hostname"])))
        .collect();

    let ids: Vec<String> = client
        .alerts()
        .query()
        .ids()
        .try_collect()
        .await
        .expect("ids");
    assert_eq!(ids.len(), 100);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        100,
        "an id twice"
    );

    let alerts = client.alerts().get(&ids).await.expect("get");
    assert_eq!(alerts.len(), 100);
    for a in &alerts {
        assert!(ids.contains(&a.composite_id));
        let dev = a.device.as_ref().expect("device");
        assert!(
            a.composite_id.contains(&format!(":ind:{}:", dev.device_id)),
            "{} names another host than {}",
            a.composite_id,
            dev.device_id
        );
        assert_eq!(
            dev.hostname.as_deref(),
            hostnames.get(dev.device_id.as_str()).copied(),
            "alert host is not the fleet's"
        );
        assert_eq!(a.status.as_deref(), Some("new"));
        assert!(a.severity.is_some_and(|s| (10..=100).contains(&s)));
    }

    // Combined listing with a server-side filter agrees with a local filter of the same alerts.
    let severe: BTreeSet<String> = client
        .alerts()
        .combined()
        .filter(Fql::ge("severity", 70).to_string())
        .limit(7)
        .stream()
        .map_ok(|a| a.composite_id)
        .try_collect()
        .await
        .expect("combined");
    let want: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.severity.unwrap() >= 70)
        .map(|a| a.composite_id.clone())
        .collect();
    assert_eq!(severe, want);

    // Update five alerts; the status filter then finds exactly those.
    let picked: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
    client
        .alerts()
        .update(&picked, AlertAction::Status(AlertStatus::InProgress))
        .and(AlertAction::AddTag("e2e".into()))
        .and(AlertAction::Comment("triage started".into()))
        .send()
        .await
        .expect("update");
    let in_progress: BTreeSet<String> = client
        .alerts()
        .query()
        .filter(Fql::eq("status", "in_progress").to_string())
        .ids()
        .try_collect()
        .await
        .expect("in progress");
    assert_eq!(in_progress, picked.iter().map(|s| s.to_string()).collect());
    let updated = client.alerts().get(&picked).await.expect("get updated");
    assert!(
        updated
            .iter()
            .all(|a| a.status.as_deref() == Some("in_progress"))
    );
    assert!(updated.iter().all(|a| a.tags.iter().any(|t| t == "e2e")));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_ids_past_10000() {
    let mut config = common::config(100, 10);
    config.falcon.alerts = Some(10_300);
    let sb = common::start(config).await;
    let info = sb.info();
    let client = common::falcon(info);
    // Above 10,000 the query endpoint's offset stops; the SDK takes ids from combined `after`.
    let ids: Vec<String> = client
        .alerts()
        .query()
        .ids()
        .try_collect()
        .await
        .expect("ids");
    assert_eq!(ids.len(), 10_300);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        10_300,
        "an id twice"
    );
    let combined = common::falcon_requests(info, "POST /alerts/combined/alerts/v1").await;
    assert!(combined >= 11, "{combined} combined pages of at most 1,000");
    // Entities of every id: requests of at most 1,000 composite ids.
    let alerts = client.alerts().get(&ids).await.expect("get all");
    assert_eq!(alerts.len(), 10_300);
    assert_eq!(
        common::falcon_requests(info, "POST /alerts/entities/alerts/v2").await,
        11
    );
    sb.shutdown().await;
}
