//! Falcon simulator: hosts, FQL filters, pagination and host groups.

use reqwest::Method;
use sandbox::falcon::FalconConfig;
use serde_json::{Value, json};

use crate::falcon::{Falcon, ids};

#[tokio::test]
async fn fql_filters_hosts_by_the_fields_our_tools_use() {
    let f = Falcon::start(FalconConfig {
        hosts: 60,
        ..FalconConfig::default()
    })
    .await;
    let fleet = f.hosts().await;
    let linux = fleet.iter().filter(|h| h.1 == "Linux").count();
    let (status, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", "platform_name:'Linux'"), ("limit", "500")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["pagination"]["total"], linux);
    let (_, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[(
                "filter",
                "platform_name:['Linux','Mac']+platform_name:!'Mac'",
            )],
        )
        .await;
    assert_eq!(ids(&body).len(), linux);
    let (_, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[(
                "filter",
                "(platform_name:'Linux',platform_name:'Windows'),platform_name:'Mac'",
            )],
        )
        .await;
    assert_eq!(body["meta"]["pagination"]["total"], 60);

    // Details: hostname wildcard, then POST entities.
    let some = &fleet[0].0;
    let (_, body) = f
        .send(
            Method::POST,
            "/devices/entities/devices/v2",
            &[],
            json!({"ids": [some]}),
        )
        .await;
    let host = &body["resources"][0];
    let hostname = host["hostname"].as_str().unwrap();
    assert_eq!(host["device_id"], some.as_str());
    let prefix: String = hostname.chars().take(hostname.len() - 1).collect();
    let (_, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", &format!("hostname:*'{}*'", prefix.to_lowercase()))],
        )
        .await;
    assert!(ids(&body).contains(some));
    let (_, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", &format!("device_id:'{some}'"))],
        )
        .await;
    assert_eq!(ids(&body), vec![some.clone()]);
    let group = host["groups"][0].as_str().unwrap();
    let (_, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", &format!("groups:'{group}'")), ("limit", "500")],
        )
        .await;
    assert!(ids(&body).contains(some));
    let (_, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", "last_seen:>'2000-01-01T00:00:00Z'")],
        )
        .await;
    assert_eq!(body["meta"]["pagination"]["total"], 60);

    let (status, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", "hostname:'unterminated")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unterminated")
    );
    let (status, _) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", "no_such_field:'x'")],
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = f
        .send(
            Method::POST,
            "/devices/entities/devices/v2",
            &[],
            json!({"ids": ["0000"]}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["errors"][0]["code"], 404);
}

#[tokio::test]
async fn offset_paging_has_the_10000_ceiling_and_scroll_does_not() {
    let f = Falcon::start(FalconConfig {
        hosts: 10_050,
        offline_share: 0.1,
        ..FalconConfig::default()
    })
    .await;
    let (status, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("offset", "9900"), ("limit", "100")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body).len(), 100);
    let (status, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("offset", "9901"), ("limit", "100")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("offset + limit must be less than or equal to 10000")
    );
    let (status, _) = f
        .get("/devices/queries/devices/v1", &[("limit", "5001")])
        .await;
    assert_eq!(status, 400);

    // Scroll walks the whole fleet past 10,000.
    let mut all = Vec::new();
    let mut offset = String::new();
    loop {
        let mut q = vec![("limit", "5000")];
        if !offset.is_empty() {
            q.push(("offset", offset.as_str()));
        }
        let (status, body) = f.get("/devices/queries/devices-scroll/v1", &q).await;
        assert_eq!(status, 200);
        assert_eq!(body["meta"]["pagination"]["total"], 10_050);
        all.extend(ids(&body));
        offset = body["meta"]["pagination"]["offset"]
            .as_str()
            .unwrap()
            .to_string();
        if offset.is_empty() {
            break;
        }
    }
    assert_eq!(all.len(), 10_050);
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 10_050);

    // Combined follows `next`.
    let (_, body) = f
        .get(
            "/devices/combined/devices/v1",
            &[("limit", "10000"), ("fields", "device_id,hostname")],
        )
        .await;
    assert_eq!(body["resources"].as_array().unwrap().len(), 10_000);
    assert_eq!(body["resources"][0].as_object().unwrap().len(), 2);
    let next = body["meta"]["pagination"]["next"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = f
        .get(
            "/devices/combined/devices/v1",
            &[("limit", "10000"), ("offset", &next)],
        )
        .await;
    assert_eq!(body["resources"].as_array().unwrap().len(), 50);
    assert_eq!(body["meta"]["pagination"]["next"], "");
}

#[tokio::test]
async fn host_groups_and_members() {
    let f = Falcon::start(FalconConfig {
        hosts: 50,
        host_groups: 4,
        ..FalconConfig::default()
    })
    .await;
    let (_, body) = f
        .get(
            "/devices/queries/host-groups/v1",
            &[("filter", "name:'Servers'")],
        )
        .await;
    let gid = ids(&body).pop().expect("a Servers group");
    let (_, body) = f
        .get("/devices/entities/host-groups/v1", &[("ids", gid.as_str())])
        .await;
    assert_eq!(body["resources"][0]["name"], "Servers");
    let (_, body) = f.get("/devices/combined/host-groups/v1", &[]).await;
    assert_eq!(body["resources"].as_array().unwrap().len(), 4);
    let (_, body) = f
        .get(
            "/devices/queries/host-group-members/v1",
            &[("id", gid.as_str()), ("limit", "500")],
        )
        .await;
    let members = ids(&body);
    assert!(!members.is_empty());
    let (_, details) = f
        .send(
            Method::POST,
            "/devices/entities/devices/v2",
            &[],
            json!({"ids": members}),
        )
        .await;
    for d in details["resources"].as_array().unwrap() {
        assert!(
            d["groups"]
                .as_array()
                .unwrap()
                .contains(&Value::from(gid.as_str()))
        );
    }
    let (_, body) = f
        .get(
            "/devices/queries/devices/v1",
            &[("filter", &format!("groups:['{gid}']")), ("limit", "500")],
        )
        .await;
    assert_eq!(ids(&body).len(), members.len());
    let (status, _) = f
        .get("/devices/queries/host-group-members/v1", &[("id", "nope")])
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn online_state_follows_the_control_api() {
    let f = Falcon::start(FalconConfig {
        hosts: 10,
        offline_share: 0.0,
        ..FalconConfig::default()
    })
    .await;
    let aid = f.hosts().await[0].0.clone();
    let (_, body) = f
        .get(
            "/devices/entities/online-state/v1",
            &[("ids", aid.as_str())],
        )
        .await;
    assert_eq!(body["resources"][0]["state"], "online");
    f.control(
        Method::POST,
        "/_sandbox/hosts/online",
        Some(json!({"ids": [aid], "online": false})),
    )
    .await;
    let (_, body) = f
        .get(
            "/devices/entities/online-state/v1",
            &[("ids", aid.as_str())],
        )
        .await;
    assert_eq!(body["resources"][0]["state"], "offline");
}
