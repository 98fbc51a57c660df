//! Alerts: query v2, entities v2, combined with `after`, update v3.

use falcon_sdk::alerts::{AlertAction, AlertStatus};
use futures::TryStreamExt;
use serde_json::json;
use wiremock::matchers::{body_json, body_partial_json, method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::common::*;

#[tokio::test]
async fn alerts_by_composite_id_carry_their_device() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path("/alerts/entities/alerts/v2"))
        .and(body_json(json!({"composite_ids": ["cid1:ind:aid1:1"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "composite_id": "cid1:ind:aid1:1", "agent_id": "aid1", "severity": 70, "status": "new",
            "created_timestamp": "2025-06-01T00:00:00.123Z", "tags": null,
            "device": {"device_id": "aid1", "hostname": "web-1", "platform_name": "Linux", "ou": []}
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    let alerts = client.alerts().get(&["cid1:ind:aid1:1"]).await.unwrap();
    let dev = alerts[0].device.as_ref().unwrap();
    assert_eq!(dev.device_id, "aid1");
    assert_eq!(dev.hostname.as_deref(), Some("web-1"));
    assert_eq!(alerts[0].severity, Some(70));
    assert!(alerts[0].created_timestamp.is_some());
}

#[tokio::test]
async fn alert_query_ids_page_by_offset() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/alerts/queries/alerts/v2"))
        .and(query_param("filter", "status:'new'"))
        .respond_with(|req: &Request| {
            let offset: usize = query_value(req, "offset").unwrap().parse().unwrap();
            let limit: usize = query_value(req, "limit").unwrap().parse().unwrap();
            let ids: Vec<String> = (offset..(offset + limit).min(5))
                .map(|i| format!("c:{i}"))
                .collect();
            ResponseTemplate::new(200).set_body_json(paged(
                json!(ids),
                json!({"offset": offset, "limit": limit, "total": 5}),
            ))
        })
        .expect(3)
        .mount(&server)
        .await;
    let ids: Vec<String> = client
        .alerts()
        .query()
        .filter("status:'new'")
        .limit(2)
        .offset(0)
        .ids()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids, ["c:0", "c:1", "c:2", "c:3", "c:4"]);
}

#[tokio::test]
async fn combined_alerts_follow_after_in_the_body() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path("/alerts/combined/alerts/v1"))
        .respond_with(|req: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["sort"], "created_timestamp|asc");
            let (ids, after) = match body.get("after").and_then(|a| a.as_str()) {
                None => (vec!["a1", "a2"], "cursor-2"),
                Some("cursor-2") => (vec!["a3"], ""),
                Some(other) => panic!("bad cursor {other}"),
            };
            let alerts: Vec<_> = ids.iter().map(|i| json!({"composite_id": i})).collect();
            ResponseTemplate::new(200).set_body_json(paged(
                json!(alerts),
                json!({"after": after, "limit": 2, "total": 3}),
            ))
        })
        .expect(2)
        .mount(&server)
        .await;
    let alerts: Vec<_> = client
        .alerts()
        .combined()
        .sort("created_timestamp|asc")
        .limit(2)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        alerts
            .iter()
            .map(|a| a.composite_id.as_str())
            .collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
}

#[tokio::test]
async fn update_v3_sends_action_parameters() {
    let (server, client) = setup().await;
    Mock::given(method("PATCH"))
        .and(path("/alerts/entities/alerts/v3"))
        .and(body_partial_json(json!({
            "composite_ids": ["c1", "c2"],
            "action_parameters": [
                {"name": "update_status", "value": "closed"},
                {"name": "append_comment", "value": "benign"},
                {"name": "show_in_ui", "value": "false"}
            ]
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"meta": {"trace_id": "x"}, "errors": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    client
        .alerts()
        .update(&["c1", "c2"], AlertAction::Status(AlertStatus::Closed))
        .and(AlertAction::Comment("benign".into()))
        .and(AlertAction::ShowInUi(false))
        .send()
        .await
        .unwrap();
}

const UPDATE: &str = "/alerts/entities/alerts/v3";

/// Answers 500 to the first request on the update path, then 200.
async fn mount_update_500_then_200(server: &wiremock::MockServer) {
    Mock::given(method("PATCH"))
        .and(path(UPDATE))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"errors": [{"code": 500, "message": "boom"}]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(UPDATE))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .mount(server)
        .await;
}

/// Review M6: a comment may already have been appended when the server answers 500; a retry would
/// duplicate it on every alert of the batch.
#[tokio::test]
async fn an_update_with_a_comment_is_not_retried_after_a_possibly_sent_failure() {
    let (server, client) = setup().await;
    mount_update_500_then_200(&server).await;
    let err = client
        .alerts()
        .update(&["c1", "c2"], AlertAction::Status(AlertStatus::InProgress))
        .and(AlertAction::Comment("triage started".into()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(falcon_sdk::StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(hits(&server, UPDATE).await, 1);
}

#[tokio::test]
async fn an_update_that_only_sets_state_is_retried_after_a_5xx() {
    let (server, client) = setup().await;
    mount_update_500_then_200(&server).await;
    client
        .alerts()
        .update(&["c1"], AlertAction::Status(AlertStatus::Closed))
        .and(AlertAction::AddTag("triaged".into()))
        .and(AlertAction::AssignToName("Ann".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(hits(&server, UPDATE).await, 2);
}
