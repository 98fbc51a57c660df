//! Host selection against the sandbox: alerts, host groups, hostnames, device ids, platform filter.

use triage::{Platform, Selection};

use crate::common::sandbox;

#[tokio::test]
async fn alert_based_selection_picks_the_hosts_of_the_alerts() {
    let env = sandbox(40, 0.0, 0.0, 3).await;
    let client = env.api.inner.client().clone();
    let ids: serde_json::Value = client
        .get("/alerts/queries/alerts/v2", &[("limit", "3")])
        .await
        .unwrap();
    let composite: Vec<String> = ids["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!composite.is_empty());
    let alerts: serde_json::Value = client
        .post(
            "/alerts/entities/alerts/v2",
            &(),
            &serde_json::json!({"composite_ids": composite}),
        )
        .await
        .unwrap();
    let mut expected: Vec<String> = alerts["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| {
            a.pointer("/device/device_id")
                .and_then(|v| v.as_str())
                .map(String::from)
        })
        .collect();
    expected.sort();
    expected.dedup();
    let resolved = Selection {
        alerts: composite,
        ..Default::default()
    }
    .resolve(&env.api)
    .await
    .unwrap();
    let mut got: Vec<String> = resolved.hosts.iter().map(|h| h.device_id.clone()).collect();
    got.sort();
    assert_eq!(got, expected);
    assert!(resolved.not_found.is_empty());
}

#[tokio::test]
async fn hostnames_device_ids_groups_and_platforms() {
    let env = sandbox(40, 0.0, 0.0, 4).await;
    let fleet = env.falcon_get("/_sandbox/hosts").await;
    let hosts = fleet["hosts"].as_array().unwrap();
    let name0 = hosts[0]["hostname"].as_str().unwrap().to_string();
    let id1 = hosts[1]["device_id"].as_str().unwrap().to_string();
    let sel = Selection {
        hostnames: vec![name0.clone(), "no-such-host".into()],
        device_ids: vec![id1.clone(), "ffffffffffffffffffffffffffffffff".into()],
        ..Default::default()
    };
    let r = sel.resolve(&env.api).await.unwrap();
    assert_eq!(r.hosts.len(), 2);
    assert!(r.hosts.iter().any(|h| h.hostname == name0));
    assert!(r.hosts.iter().any(|h| h.device_id == id1));
    assert!(r.not_found.contains(&"no-such-host".to_string()));
    assert!(
        r.not_found
            .contains(&"ffffffffffffffffffffffffffffffff".to_string())
    );

    // host group by name: exactly its members
    let group = &fleet["groups"][0];
    let gid = group["id"].as_str().unwrap();
    let members: Vec<&str> = hosts
        .iter()
        .filter(|h| {
            h["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g.as_str() == Some(gid))
        })
        .map(|h| h["device_id"].as_str().unwrap())
        .collect();
    let r = Selection {
        host_group: Some(group["name"].as_str().unwrap().to_string()),
        ..Default::default()
    }
    .resolve(&env.api)
    .await
    .unwrap();
    assert_eq!(r.hosts.len(), members.len());
    assert!(
        r.hosts
            .iter()
            .all(|h| members.contains(&h.device_id.as_str()))
    );

    // FQL filter + platform filter
    let r = Selection {
        filter: Some("platform_name:'Windows'".into()),
        ..Default::default()
    }
    .resolve(&env.api)
    .await
    .unwrap();
    assert!(
        !r.hosts.is_empty()
            && r.hosts
                .iter()
                .all(|h| h.platform == Some(Platform::Windows))
    );
    let r = Selection {
        all: true,
        platforms: vec![Platform::Linux],
        ..Default::default()
    }
    .resolve(&env.api)
    .await
    .unwrap();
    assert!(r.hosts.iter().all(|h| h.platform == Some(Platform::Linux)));
    assert_eq!(r.hosts.len() + r.filtered_out, 40);

    let err = Selection::default().resolve(&env.api).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid host selection");
}
