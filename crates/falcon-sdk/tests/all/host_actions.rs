//! Host actions: wire shape, chunking at the per-action maximum, per-host outcomes, retry rule.

use falcon_sdk::host_actions::{HostAction, HostOutcome};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::common::*;

const ACTIONS: &str = "/devices/entities/devices-actions/v2";

fn aids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:032x}")).collect()
}

/// Accepts every id of the body (202), echoing `resources[{id, path}]`.
fn accept_all(req: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let res: Vec<Value> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| json!({"id": id, "path": ""}))
        .collect();
    ResponseTemplate::new(202).set_body_json(envelope(json!(res)))
}

fn bodies(reqs: &[Request]) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r.url.path() == ACTIONS)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn contain_sends_action_name_and_ids_in_chunks_of_500() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path(ACTIONS))
        .and(query_param("action_name", "contain"))
        .respond_with(accept_all)
        .expect(3)
        .mount(&server)
        .await;
    let ids = aids(1_200);
    let report = client
        .hosts()
        .action(HostAction::Contain, &ids)
        .note("case 42")
        .send()
        .await
        .unwrap();
    assert_eq!(report.requests, 3);
    assert_eq!(report.hosts.len(), 1_200);
    assert!(report.all_ok());
    let reqs = server.received_requests().await.unwrap();
    let mut sizes: Vec<usize> = bodies(&reqs)
        .iter()
        .map(|b| b["ids"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [200, 500, 500]);
    let b = &bodies(&reqs)[0];
    assert_eq!(
        b["action_parameters"],
        json!([{"name": "note", "value": "case 42"}])
    );
    let ct = reqs
        .iter()
        .find(|r| r.url.path() == ACTIONS)
        .unwrap()
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(ct, "application/json");
}

#[tokio::test]
async fn hide_is_chunked_at_100() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path(ACTIONS))
        .and(query_param("action_name", "hide_host"))
        .respond_with(accept_all)
        .expect(3)
        .mount(&server)
        .await;
    let report = client
        .hosts()
        .action(HostAction::Hide, &aids(250))
        .send()
        .await
        .unwrap();
    assert_eq!(report.requests, 3);
    assert!(report.all_ok());
}

/// A mixed answer: accepted, already contained (409 entry), unknown (404 entry), and a host the
/// answer does not mention; duplicates in the input are sent once.
#[tokio::test]
async fn every_host_gets_its_own_outcome() {
    let (server, client) = setup().await;
    let ids = aids(4);
    let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    Mock::given(method("POST"))
        .and(path(ACTIONS))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({
            "meta": {"trace_id": "t"},
            "resources": [{"id": a, "path": ""}],
            "errors": [
                {"code": 409, "message": format!("Host {b} is already contained")},
                {"code": 404, "message": format!("Device {c} not found")}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut input = ids.clone();
    input.push(ids[0].clone());
    let report = client
        .hosts()
        .action(HostAction::Contain, &input)
        .send()
        .await
        .unwrap();
    assert_eq!(report.hosts.len(), 4);
    assert_eq!(report.hosts[&ids[0]], HostOutcome::Accepted);
    assert_eq!(report.hosts[&ids[1]], HostOutcome::AlreadyDone);
    assert!(matches!(
        report.hosts[&ids[2]],
        HostOutcome::Failed {
            code: Some(404),
            ..
        }
    ));
    assert_eq!(report.hosts[&ids[3]], HostOutcome::Unreported);
    let body = &bodies(&server.received_requests().await.unwrap())[0];
    assert_eq!(body["ids"].as_array().unwrap().len(), 4);
}

/// Not idempotent: a 500 is not retried (the action may have been applied); the hosts of that
/// request are reported as failed, the other chunk's hosts as accepted.
#[tokio::test]
async fn a_5xx_is_not_retried_and_is_reported_on_its_hosts_only() {
    let (server, client) = setup().await;
    let ids = aids(600);
    let first = ids[0].clone();
    Mock::given(method("POST"))
        .and(path(ACTIONS))
        .and(move |r: &Request| String::from_utf8_lossy(&r.body).contains(first.as_str()))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ACTIONS))
        .respond_with(accept_all)
        .expect(1)
        .mount(&server)
        .await;
    let report = client
        .hosts()
        .action(HostAction::Contain, &ids)
        .send()
        .await
        .unwrap();
    assert_eq!(report.hosts.len(), 600);
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 500);
    assert!(matches!(
        failed[0].1,
        HostOutcome::RequestFailed {
            not_sent: false,
            ..
        }
    ));
}

/// A 429 is rejected by the gateway before the service: retried.
#[tokio::test]
async fn a_429_is_retried() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path(ACTIONS))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            json!({"errors": [{"code": 429, "message": "API rate limit exceeded."}]}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ACTIONS))
        .respond_with(accept_all)
        .expect(1)
        .mount(&server)
        .await;
    let report = client
        .hosts()
        .action(HostAction::LiftContainment, &aids(3))
        .send()
        .await
        .unwrap();
    assert!(report.all_ok());
    assert_eq!(hits(&server, ACTIONS).await, 2);
}

#[tokio::test]
async fn no_id_is_refused_before_sending() {
    let (server, client) = setup().await;
    let none: [&str; 0] = [];
    let err = client
        .hosts()
        .action(HostAction::Contain, &none)
        .send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no host id"), "{err}");
    assert_eq!(hits(&server, ACTIONS).await, 0);
}
