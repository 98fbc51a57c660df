//! Hosts and host groups: pagination past 10,000, device details split, streams.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::common::*;

const SCROLL: &str = "/devices/queries/devices-scroll/v1";
const DETAILS: &str = "/devices/entities/devices/v2";

/// Scroll endpoint over `total` ids, tokens `tok-<next index>`.
fn scroll_responder(total: usize) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync {
    move |req: &Request| {
        let limit: usize = query_value(req, "limit").unwrap().parse().unwrap();
        let start: usize = query_value(req, "offset")
            .map(|t| t.trim_start_matches("tok-").parse().unwrap())
            .unwrap_or(0);
        let end = (start + limit).min(total);
        let ids: Vec<String> = (start..end).map(|i| format!("aid{i:05}")).collect();
        let token = if end < total {
            format!("tok-{end}")
        } else {
            String::new()
        };
        ResponseTemplate::new(200).set_body_json(paged(
            json!(ids),
            json!({"offset": token, "expires_at": 1_700_000_000, "limit": limit, "total": total}),
        ))
    }
}

/// Device details endpoint echoing a device per id, recording batch sizes.
fn details_responder(
    sizes: Arc<Mutex<Vec<usize>>>,
) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync {
    move |req: &Request| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let ids = body["ids"].as_array().unwrap();
        sizes.lock().unwrap().push(ids.len());
        if ids.len() > 5000 {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"errors": [{"code": 400, "message": "too many ids"}]}));
        }
        let devices: Vec<Value> = ids
            .iter()
            .map(|id| json!({"device_id": id, "cid": "c1", "hostname": format!("host-{}", id.as_str().unwrap()),
                              "platform_name": "Windows", "last_seen": "2025-06-16T19:36:52Z", "groups": null,
                              "policies": [{"policy_type": "prevention"}]}))
            .collect();
        ResponseTemplate::new(200).set_body_json(envelope(json!(devices)))
    }
}

#[tokio::test]
async fn host_ids_stream_crosses_the_10000_boundary() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path(SCROLL))
        .and(query_param("filter", "platform_name:'Windows'"))
        .respond_with(scroll_responder(12_345))
        .expect(3)
        .mount(&server)
        .await;
    let ids: Vec<String> = client
        .hosts()
        .scroll()
        .filter(falcon_sdk::fql::Fql::eq("platform_name", "Windows"))
        .ids()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids.len(), 12_345);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 12_345);
    assert_eq!(ids[10_000], "aid10000");
}

#[tokio::test]
async fn query_builder_ids_use_scrolling_not_offsets() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path(SCROLL))
        .and(query_param("sort", "hostname.asc"))
        .respond_with(scroll_responder(10_001))
        .expect(3)
        .mount(&server)
        .await;
    let n = client
        .hosts()
        .query()
        .sort("hostname.asc")
        .ids()
        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap();
    assert_eq!(n, 10_001);
}

#[tokio::test]
async fn device_details_are_split_at_5000_ids() {
    let (server, client) = setup().await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(DETAILS))
        .respond_with(details_responder(sizes.clone()))
        .expect(3)
        .mount(&server)
        .await;
    let ids: Vec<String> = (0..12_000).map(|i| format!("aid{i}")).collect();
    let devices = client.hosts().details(&ids).await.unwrap();
    assert_eq!(devices.len(), 12_000);
    assert_eq!(*sizes.lock().unwrap(), vec![5000, 5000, 2000]);
    assert_eq!(devices[11_999].device_id, "aid11999");
    assert_eq!(devices[0].hostname.as_deref(), Some("host-aid0"));
    assert!(devices[0].groups.is_empty());
    assert!(devices[0].last_seen.is_some());
    assert!(devices[0].extra.contains_key("policies"));
}

#[tokio::test]
async fn host_stream_hides_ids_then_entities() {
    let (server, client) = setup().await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path(SCROLL))
        .respond_with(scroll_responder(7_000))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(DETAILS))
        .respond_with(details_responder(sizes.clone()))
        .expect(2)
        .mount(&server)
        .await;
    let devices: Vec<_> = client
        .hosts()
        .scroll()
        .devices()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(devices.len(), 7_000);
    assert_eq!(*sizes.lock().unwrap(), vec![5000, 2000]);
}

#[tokio::test]
async fn combined_hosts_follow_the_next_token() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/devices/combined/devices/v1"))
        .respond_with(|req: &Request| {
            let page = match query_value(req, "offset").as_deref() {
                None => 0,
                Some("n1") => 1,
                Some(o) => panic!("unexpected offset {o}"),
            };
            let next = if page == 0 { "n1" } else { "" };
            ResponseTemplate::new(200).set_body_json(paged(
                json!([{"device_id": format!("d{page}"), "hostname": "h"}]),
                json!({"next": next, "limit": 1, "total": 2}),
            ))
        })
        .expect(2)
        .mount(&server)
        .await;
    let devices: Vec<_> = client
        .hosts()
        .combined()
        .fields(["device_id", "hostname"])
        .limit(1)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        devices
            .iter()
            .map(|d| d.device_id.as_str())
            .collect::<Vec<_>>(),
        ["d0", "d1"]
    );
}

#[tokio::test]
async fn host_groups_find_by_name_and_members() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/devices/combined/host-groups/v1"))
        .and(query_param("filter", r"name:'SOC \'lab\''"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            {"id": "g1", "name": "soc 'lab'", "group_type": "static"},
            {"id": "g2", "name": "SOC 'lab'", "group_type": "dynamic", "assignment_rule": "platform_name:'Linux'"}
        ]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/devices/queries/host-group-members/v1"))
        .and(query_param("id", "g2"))
        .respond_with(|req: &Request| {
            let offset: usize = query_value(req, "offset").unwrap().parse().unwrap();
            let limit: usize = query_value(req, "limit").unwrap().parse().unwrap();
            let ids: Vec<String> = (offset..(offset + limit).min(3))
                .map(|i| format!("m{i}"))
                .collect();
            ResponseTemplate::new(200).set_body_json(paged(
                json!(ids),
                json!({"offset": offset, "limit": limit, "total": 3}),
            ))
        })
        .mount(&server)
        .await;
    let g = client
        .host_groups()
        .find_by_name("SOC 'lab'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.id, "g2");
    assert_eq!(g.assignment_rule.as_deref(), Some("platform_name:'Linux'"));
    let members: Vec<String> = client
        .host_groups()
        .members("g2")
        .ids()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(members, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn large_groups_are_scrolled_by_groups_filter() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/devices/queries/host-group-members/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(paged(
            json!(["m0"]),
            json!({"offset": 0, "limit": 1, "total": 10_500}),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SCROLL))
        .and(query_param("filter", "groups:'g9'"))
        .respond_with(scroll_responder(10_500))
        .expect(3)
        .mount(&server)
        .await;
    let n = client
        .host_groups()
        .members("g9")
        .ids()
        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap();
    assert_eq!(n, 10_500);
}

#[tokio::test]
async fn decode_errors_name_the_json_path_and_show_the_body() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path(DETAILS))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            {"device_id": "ok"},
            {"device_id": 42, "hostname": "broken"}
        ]))))
        .mount(&server)
        .await;
    let err = client.hosts().details(&["ok", "broken"]).await.unwrap_err();
    assert_eq!(err.decode_path(), Some("resources[1].device_id"));
    let falcon_sdk::Error::Decode(d) = &err else {
        panic!("{err:?}")
    };
    assert!(
        d.excerpt
            .as_deref()
            .unwrap()
            .contains("\"hostname\":\"broken\""),
        "{d}"
    );
    assert!(d.to_string().contains("resources[1].device_id"));
    assert!(!err.is_retryable());
}

/// Review m5: a server that hands back the cursor it was given would make the stream loop for ever;
/// it ends with an error naming the endpoint instead (no total, so nothing else stops it).
#[tokio::test]
async fn a_repeated_next_token_ends_the_combined_stream_with_an_error() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/devices/combined/devices/v1"))
        .respond_with(|_: &Request| {
            ResponseTemplate::new(200).set_body_json(paged(
                json!([{"device_id": "d0"}]),
                json!({"next": "same", "limit": 1}),
            ))
        })
        .expect(2)
        .mount(&server)
        .await;
    let items: Vec<_> = client.hosts().combined().stream().collect().await;
    // The first page, then the error (the repeated page is not delivered: it would duplicate).
    assert_eq!(items.len(), 2, "{items:?}");
    let err = items[1].as_ref().unwrap_err();
    assert!(
        matches!(err, falcon_sdk::Error::Pagination { seen: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/devices/combined/devices/v1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_repeated_scroll_token_ends_the_id_stream_with_an_error() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path(SCROLL))
        .respond_with(|_: &Request| {
            ResponseTemplate::new(200)
                .set_body_json(paged(json!(["a"]), json!({"offset": "tok", "limit": 1})))
        })
        .expect(2)
        .mount(&server)
        .await;
    let items: Vec<_> = client.hosts().query().ids().collect().await;
    assert!(
        matches!(
            items.last(),
            Some(Err(falcon_sdk::Error::Pagination { .. }))
        ),
        "{items:?}"
    );
}
