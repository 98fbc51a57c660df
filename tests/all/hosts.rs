//! Hosts past the 10,000 boundary, device details, host groups: falcon-sdk against the sandbox fleet.

use std::collections::{BTreeMap, BTreeSet};

use falcon_sdk::fql::Fql;
use futures::TryStreamExt;

use crate::common::{self, s};

const FLEET: usize = 10_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_stream_past_10000_and_groups() {
    let mut config = common::config(FLEET, 10);
    // One group holding every host: its members cross the 10,000 ceiling of the members endpoint.
    config.falcon.host_groups = 1;
    let sb = common::start(config).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    let expected: BTreeMap<String, String> = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (s(&h["device_id"]).to_owned(), s(&h["hostname"]).to_owned()))
        .collect();
    assert_eq!(expected.len(), FLEET);

    // Ids: the scroll has no 10,000 ceiling; every host exactly once.
    let ids: Vec<String> = client
        .hosts()
        .scroll()
        .ids()
        .try_collect()
        .await
        .expect("ids");
    assert_eq!(ids.len(), FLEET, "ids streamed");
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), FLEET, "an id was streamed twice");
    assert!(ids.iter().all(|i| expected.contains_key(i)));
    // 5,000 per page: 3 pages (plus at most one empty final page).
    let scrolls = common::falcon_requests(info, "GET /devices/queries/devices-scroll/v1").await;
    assert!((3..=4).contains(&scrolls), "{scrolls} scroll requests");

    // Offset paging refuses to cross the ceiling; the SDK reports it as a non-retryable 400.
    let err = client
        .hosts()
        .query()
        .offset(9_999)
        .limit(5)
        .send()
        .await
        .expect_err("offset + limit > 10,000");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400), "{err:#}");
    assert!(!err.is_retryable());

    // Full records: ids then details POSTs of at most 5,000 ids.
    common::delete(format!("{}/_sandbox/requests", info.falcon_url)).await;
    let devices: Vec<falcon_sdk::hosts::Device> = client
        .hosts()
        .scroll()
        .devices()
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(devices.len(), FLEET);
    let got: BTreeMap<String, String> = devices
        .iter()
        .map(|d| (d.device_id.clone(), d.hostname.clone().expect("hostname")))
        .collect();
    assert_eq!(got, expected, "device details differ from the fleet");
    assert!(
        devices
            .iter()
            .all(|d| d.platform_name.is_some() && !d.groups.is_empty())
    );
    assert_eq!(
        common::falcon_requests(info, "POST /devices/entities/devices/v2").await,
        3,
        "details of 10,500 ids take three POSTs"
    );

    // details() on an explicit list above 5,000 ids splits it too, and keeps every id.
    let some: Vec<&str> = ids.iter().take(5_001).map(String::as_str).collect();
    let details = client.hosts().details(&some).await.expect("details");
    let got: BTreeSet<&str> = details.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(got, some.iter().copied().collect::<BTreeSet<_>>());

    // An FQL filter is evaluated by the server: Linux hosts only.
    let linux_expected = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["platform_name"] == "Linux")
        .count();
    let linux: Vec<String> = client
        .hosts()
        .scroll()
        .filter(Fql::eq("platform_name", "Linux"))
        .ids()
        .try_collect()
        .await
        .expect("linux ids");
    assert!(linux_expected > 0);
    assert_eq!(linux.len(), linux_expected);

    // The combined endpoint follows `next` past 10,000 too.
    let combined: Vec<falcon_sdk::hosts::Device> = client
        .hosts()
        .combined()
        .stream()
        .try_collect()
        .await
        .expect("combined");
    let ids_combined: BTreeSet<&str> = combined.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(combined.len(), FLEET);
    assert_eq!(ids_combined.len(), FLEET);

    // FQL escaping: a quote in a value is escaped, not a syntax error; a wildcard is evaluated.
    let none = client
        .hosts()
        .query()
        .filter(Fql::eq("hostname", "o'brien\\laptop").to_string())
        .send()
        .await
        .expect("escaped filter");
    assert!(none.items.is_empty());
    let web_want = expected.values().filter(|h| h.starts_with("web-")).count();
    let web: Vec<String> = client
        .hosts()
        .scroll()
        .filter(Fql::wildcard("hostname", "web-*"))
        .ids()
        .try_collect()
        .await
        .expect("wildcard");
    assert!(web_want > 0);
    assert_eq!(web.len(), web_want);

    // Host groups: find by name, then its members, compared with the fleet's memberships.
    let groups = fleet["groups"].as_array().unwrap();
    assert!(!groups.is_empty());
    assert_eq!(groups.len(), 1);
    common::delete(format!("{}/_sandbox/requests", info.falcon_url)).await;
    for g in groups {
        let name = s(&g["name"]);
        let found = client
            .host_groups()
            .find_by_name(name)
            .await
            .expect("find by name")
            .unwrap_or_else(|| panic!("group {name} not found"));
        assert_eq!(found.id, s(&g["id"]));
        assert_eq!(found.name, name);
        let want: BTreeSet<String> = fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| {
                h["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == &g["id"])
            })
            .map(|h| s(&h["device_id"]).to_owned())
            .collect();
        let members: Vec<String> = client
            .host_groups()
            .members(&found.id)
            .ids()
            .try_collect()
            .await
            .expect("members");
        assert_eq!(
            members.len(),
            want.len(),
            "members of {name} streamed twice?"
        );
        assert_eq!(
            members.into_iter().collect::<BTreeSet<_>>(),
            want,
            "members of {name}"
        );
    }
    let missing = client
        .host_groups()
        .find_by_name("No Such Group")
        .await
        .expect("find by name");
    assert!(missing.is_none());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_member_devices_carry_the_group() {
    let sb = common::start(common::config(300, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    // Every group is found by its name, and its members are the fleet's.
    let groups = fleet["groups"].as_array().unwrap();
    assert!(groups.len() >= 4);
    for g in groups {
        let found = client
            .host_groups()
            .find_by_name(s(&g["name"]))
            .await
            .expect("find")
            .expect("found");
        assert_eq!(found.id, s(&g["id"]));
        let want: BTreeSet<String> = fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["groups"].as_array().unwrap().contains(&g["id"]))
            .map(|h| s(&h["device_id"]).to_owned())
            .collect();
        let got: BTreeSet<String> = client
            .host_groups()
            .members(&found.id)
            .ids()
            .try_collect()
            .await
            .expect("members");
        assert_eq!(got, want, "members of {}", found.name);
    }
    let group = &fleet["groups"][0];
    let devices: Vec<falcon_sdk::hosts::Device> = client
        .host_groups()
        .members(s(&group["id"]))
        .devices()
        .try_collect()
        .await
        .expect("member devices");
    assert!(!devices.is_empty());
    for d in &devices {
        assert!(
            d.groups.iter().any(|g| g == s(&group["id"])),
            "{} not in group",
            d.device_id
        );
    }
    let got = client
        .host_groups()
        .get(&[s(&group["id"])])
        .await
        .expect("get");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, s(&group["name"]));
    sb.shutdown().await;
}
