//! IOC management: batched create with per-item reports, update, delete, pagination with `after`.

use std::sync::{Arc, Mutex};

use falcon_sdk::iocs::{Action, IndicatorUpdate, IocType, NewIndicator, Platform, Severity};
use futures::TryStreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::common::*;

const ENTITIES: &str = "/iocs/entities/indicators/v1";

fn stored(item: &Value, i: usize) -> Value {
    let mut v = item.clone();
    v["id"] = json!(format!("{:064x}", i));
    v["created_by"] = json!("my-client-id");
    v["created_on"] = json!("2025-06-01T00:00:00Z");
    v
}

#[tokio::test]
async fn duplicate_in_a_batch_is_reported_per_item() {
    let (server, client) = setup().await;
    let bodies = Arc::new(Mutex::new(Vec::<Value>::new()));
    let seen = bodies.clone();
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .and(query_param("ignore_warnings", "false"))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            seen.lock().unwrap().push(body.clone());
            let items = body["indicators"].as_array().unwrap();
            if let Some(dup) = items.iter().find(|i| i["value"] == "dup.example") {
                return ResponseTemplate::new(400).set_body_json(json!({
                    "meta": {"trace_id": "t-dup", "powered_by": "ioc-manager"},
                    "errors": [{"code": 400, "message": "Invalid indicators"}],
                    "resources": [{
                        "type": dup["type"], "value": dup["value"], "message_type": "warning",
                        "message": "Warning: Duplicate type: 'domain' and value: 'dup.example' combination."
                    }]
                }));
            }
            let out: Vec<Value> = items.iter().enumerate().map(|(i, it)| stored(it, i)).collect();
            ResponseTemplate::new(201).set_body_json(envelope(json!(out)))
        })
        .expect(2)
        .mount(&server)
        .await;
    let items = vec![
        NewIndicator::new(IocType::Domain, "a.example", Action::Detect).severity(Severity::High),
        NewIndicator::new(IocType::Domain, "dup.example", Action::Detect).severity(Severity::High),
        NewIndicator::new(
            IocType::Md5,
            "d41d8cd98f00b204e9800998ecf8427e",
            Action::Prevent,
        )
        .severity(Severity::Critical)
        .platforms([Platform::Windows]),
    ];
    let report = client
        .iocs()
        .create(items)
        .comment("sync")
        .ignore_warnings(false)
        .send()
        .await
        .unwrap();
    assert_eq!(report.written.len(), 2);
    assert_eq!(report.failed.len(), 1);
    let f = &report.failed[0];
    assert_eq!(f.index, Some(1));
    assert_eq!(f.value.as_deref(), Some("dup.example"));
    assert_eq!(f.message_type.as_deref(), Some("warning"));
    assert!(f.is_duplicate());
    assert_eq!(report.requests, 2);
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies[0]["comment"], "sync");
    assert_eq!(bodies[0]["indicators"][0]["applied_globally"], true);
    assert_eq!(bodies[1]["indicators"].as_array().unwrap().len(), 2);
    assert_eq!(report.written[1].platforms, vec![Platform::Windows]);
}

#[tokio::test]
async fn create_is_split_by_the_batch_setting_and_validates_locally() {
    let (server, _) = setup().await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let s2 = sizes.clone();
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let items = body["indicators"].as_array().unwrap();
            s2.lock().unwrap().push(items.len());
            let out: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(i, it)| stored(it, i))
                .collect();
            ResponseTemplate::new(201).set_body_json(envelope(json!(out)))
        })
        .expect(3)
        .mount(&server)
        .await;
    let client = builder(&server).ioc_batch_size(2).build().unwrap();
    let mut items: Vec<NewIndicator> = (0..5)
        .map(|i| {
            NewIndicator::new(IocType::Ipv4, format!("10.0.0.{i}"), Action::Detect)
                .severity(Severity::Low)
        })
        .collect();
    items.insert(
        2,
        NewIndicator::new(IocType::Sha256, "not-a-hash", Action::Prevent),
    );
    let report = client.iocs().create(items).send().await.unwrap();
    assert_eq!(*sizes.lock().unwrap(), vec![2, 2, 1]);
    assert_eq!(report.written.len(), 5);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].index, Some(2));
    assert!(
        report.failed[0].message.contains("SHA-256"),
        "{}",
        report.failed[0].message
    );
}

#[tokio::test]
async fn update_sends_ids_and_changed_fields_only() {
    let (server, client) = setup().await;
    Mock::given(method("PATCH"))
        .and(path(ENTITIES))
        .and(body_partial_json(json!({
            "comment": "withdrawn",
            "indicators": [{"id": "i1", "action": "no_action", "tags": ["TO_DELETE"]}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            {"id": "i1", "type": "domain", "value": "x.example", "action": "no_action", "tags": ["TO_DELETE"]}
        ]))))
        .expect(1)
        .mount(&server)
        .await;
    let mut u = IndicatorUpdate::new("i1");
    u.action = Some(Action::NoAction);
    u.tags = Some(vec!["TO_DELETE".into()]);
    let report = client
        .iocs()
        .update(vec![u])
        .comment("withdrawn")
        .send()
        .await
        .unwrap();
    assert_eq!(report.written[0].action, Some(Action::NoAction));
    let req = &server.received_requests().await.unwrap()[1];
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert!(body["indicators"][0].get("severity").is_none());
}

#[tokio::test]
async fn delete_by_filter_and_by_ids_with_comment() {
    let (server, client) = setup().await;
    Mock::given(method("DELETE"))
        .and(path(ENTITIES))
        .and(query_param("filter", "source:'feed'+expired:true"))
        .and(query_param("comment", "cleanup"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!(["x", "y"]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(ENTITIES))
        .and(query_param("ids", "a"))
        .and(query_param("ids", "b"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!(["a", "b"]))))
        .expect(1)
        .mount(&server)
        .await;
    let f =
        falcon_sdk::fql::Fql::eq("source", "feed").and(falcon_sdk::fql::Fql::eq("expired", true));
    let deleted = client
        .iocs()
        .delete_filter(f)
        .comment("cleanup")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.deleted, ["x", "y"]);
    assert_eq!((deleted.failed.len(), deleted.requests), (0, 1));
    let deleted = client.iocs().delete_ids(&["a", "b"]).send().await.unwrap();
    assert_eq!(deleted.deleted, ["a", "b"]);
    assert!(deleted.failed.is_empty());
    assert!(client.iocs().delete_filter(" ").send().await.is_err());
}

#[tokio::test]
async fn delete_reports_the_ids_falcon_did_not_delete() {
    let (server, client) = setup().await;
    let mut body = envelope(json!(["a"]));
    body["errors"] = json!([{"code": 404, "message": "Could not find indicator", "id": "b"}]);
    Mock::given(method("DELETE"))
        .and(path(ENTITIES))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let report = client
        .iocs()
        .delete_ids(&["a", "b", "c"])
        .send()
        .await
        .unwrap();
    assert_eq!(report.deleted, ["a"]);
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|f| (f.index, f.id.as_deref(), f.code, f.message.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            (Some(1), Some("b"), Some(404), "Could not find indicator"),
            (Some(2), Some("c"), None, "not reported deleted by Falcon"),
        ]
    );

    // Every id unknown: a 404 naming the ids is a report, not an error.
    server.reset().await;
    mount_token(&server, 1799, None).await;
    let mut body = envelope(json!([]));
    body["errors"] = json!([{"code": 404, "message": "Indicator z not found", "id": "z"}]);
    Mock::given(method("DELETE"))
        .and(path(ENTITIES))
        .respond_with(ResponseTemplate::new(404).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let report = client.iocs().delete_ids(&["z"]).send().await.unwrap();
    assert!(report.deleted.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].id.as_deref(), Some("z"));
}

#[tokio::test]
async fn a_delete_failing_after_the_first_request_is_partial() {
    let (server, client) = setup().await;
    let ids: Vec<String> = (0..250).map(|i| format!("id{i:03}")).collect();
    Mock::given(method("DELETE"))
        .and(path(ENTITIES))
        .and(query_param("ids", "id000"))
        .respond_with(|req: &Request| {
            let ids: Vec<String> = req
                .url
                .query_pairs()
                .filter(|(k, _)| k == "ids")
                .map(|(_, v)| v.into_owned())
                .collect();
            ResponseTemplate::new(200).set_body_json(envelope(json!(ids)))
        })
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(ENTITIES))
        .and(query_param("ids", "id200"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "meta": {}, "resources": null,
            "errors": [{"code": 400, "message": "bad request"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client.iocs().delete_ids(&ids).send().await.unwrap_err();
    match err {
        falcon_sdk::Error::Partial {
            completed, total, ..
        } => assert_eq!((completed, total), (1, 2)),
        other => panic!("expected a partial failure, got {other:?}"),
    }
}

#[tokio::test]
async fn ioc_pagination_crosses_10000_with_after() {
    let (server, client) = setup().await;
    const TOTAL: usize = 10_500;
    Mock::given(method("GET"))
        .and(path("/iocs/queries/indicators/v1"))
        .respond_with(|req: &Request| {
            assert!(
                query_value(req, "offset").is_none(),
                "offset must not be used with after"
            );
            let limit: usize = query_value(req, "limit").unwrap().parse().unwrap();
            let start: usize = query_value(req, "after")
                .map(|a| a.trim_start_matches("after-").parse().unwrap())
                .unwrap_or(0);
            let end = (start + limit).min(TOTAL);
            let ids: Vec<String> = (start..end).map(|i| format!("{i:064x}")).collect();
            let after = if end < TOTAL {
                format!("after-{end}")
            } else {
                String::new()
            };
            ResponseTemplate::new(200).set_body_json(paged(
                json!(ids),
                json!({"limit": limit, "total": TOTAL, "after": after}),
            ))
        })
        .expect(21)
        .mount(&server)
        .await;
    let ids: Vec<String> = client
        .iocs()
        .query()
        .filter("source:'feed'")
        .ids()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids.len(), TOTAL);
    assert_eq!(ids[10_000], format!("{:064x}", 10_000));
}

#[tokio::test]
async fn combined_and_get_decode_typed_indicators() {
    let (server, client) = setup().await;
    let ioc = json!({"id": "i9", "type": "sha256", "value": "ab", "action": "prevent", "severity": "critical",
                     "platforms": ["windows", "linux"], "applied_globally": true, "host_groups": null,
                     "tags": ["t"], "source": "feed", "expiration": "2030-01-01T00:00:00Z",
                     "expired": false, "deleted": false, "mobile_action": "no_action",
                     "metadata": {"filename": "x.exe"}, "brand_new_field": 1});
    Mock::given(method("GET"))
        .and(path("/iocs/combined/indicator/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(paged(json!([ioc]), json!({"total": 1, "after": "z"}))),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ENTITIES))
        .and(query_param("ids", "i9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([ioc]))))
        .expect(1)
        .mount(&server)
        .await;
    let all: Vec<_> = client
        .iocs()
        .combined()
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let got = client.iocs().get(&["i9"]).await.unwrap();
    assert_eq!(got, all);
    let i = &got[0];
    assert_eq!(i.type_, IocType::Sha256);
    assert_eq!(i.severity, Some(Severity::Critical));
    assert_eq!(i.platforms, vec![Platform::Windows, Platform::Linux]);
    assert_eq!(
        i.expiration.unwrap().to_rfc3339(),
        "2030-01-01T00:00:00+00:00"
    );
    assert_eq!(i.extra["brand_new_field"], 1);
}
