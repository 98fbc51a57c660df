//! GraphQL calls against wiremock: exact operations, state round trip, reset, errors, paging.

use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use opencti_client::{
    ConnectorInfo, ConnectorRegistration, Error, OpenCtiClient, SecretString, StreamState,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::TOKEN;

/// Matches a GraphQL request whose `query` contains `needle`.
struct Op(&'static str);
impl Match for Op {
    fn matches(&self, req: &Request) -> bool {
        serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("query")?.as_str().map(|q| q.contains(self.0)))
            .unwrap_or(false)
    }
}

fn body(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

/// A tiny connector registry behaving like `connector-domain.ts`: register returns the stored
/// state, ping stores the sent state unless a UI reset is pending (then it returns the empty
/// stored state and clears the flag).
#[derive(Clone, Default)]
struct Platform {
    state: Arc<Mutex<Option<String>>>,
    reset_pending: Arc<Mutex<bool>>,
}

impl Respond for Platform {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let b = body(req);
        let q = b["query"].as_str().unwrap();
        if q.contains("RegisterConnector") {
            let id = b["variables"]["input"]["id"].clone();
            let st = self.state.lock().unwrap().clone();
            ResponseTemplate::new(200).set_body_json(json!({"data": {"registerConnector": {
                "id": id, "connector_state": st, "jwks": "{}", "connector_user_id": "u-1",
                "config": {"connection": {"host": "h", "vhost": "/", "use_ssl": false, "port": 5672, "user": "u", "pass": "p"},
                           "s3": null, "listen": "l", "listen_routing": "lr", "listen_exchange": "le",
                           "push": "p", "push_routing": "pr", "push_exchange": "pe"}}}}))
        } else if q.contains("PingConnector") {
            let mut reset = self.reset_pending.lock().unwrap();
            if *reset {
                *reset = false;
                *self.state.lock().unwrap() = Some(String::new());
            } else {
                *self.state.lock().unwrap() = b["variables"]["state"].as_str().map(str::to_string);
            }
            let st = self.state.lock().unwrap().clone();
            ResponseTemplate::new(200).set_body_json(json!({"data": {"pingConnector": {
                "id": b["variables"]["id"], "connector_state": st,
                "connector_info": b["variables"]["connectorInfo"]}}}))
        } else {
            ResponseTemplate::new(400)
        }
    }
}

async fn setup() -> (MockServer, OpenCtiClient) {
    let server = MockServer::start().await;
    let client = OpenCtiClient::builder(server.uri(), SecretString::from(TOKEN))
        .header("x-custom", "graphql-only")
        .build()
        .unwrap();
    // Catch-all: an unexpected request fails loudly, naming what it was.
    Mock::given(wiremock::matchers::any())
        .respond_with(|req: &Request| {
            ResponseTemplate::new(599).set_body_string(format!(
                "unmatched {} {} {}",
                req.method,
                req.url.path(),
                String::from_utf8_lossy(&req.body)
            ))
        })
        .with_priority(u8::MAX)
        .mount(&server)
        .await;
    (server, client)
}

#[tokio::test]
async fn health_check_sends_pycti_query_with_auth_and_custom_headers() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("x-custom", "graphql-only"))
        .and(Op("query healthCheck { about { version } }"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"about": {"version": "6.8.13"}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.health_check().await.unwrap(), "6.8.13");
}

#[tokio::test]
async fn register_and_ping_round_trip_with_state() {
    let (server, client) = setup().await;
    let platform = Platform::default();
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(platform.clone())
        .mount(&server)
        .await;
    let reg = ConnectorRegistration {
        id: "c-1".into(),
        name: "CrowdStrike".into(),
        scope: vec!["crowdstrike".into()],
        ..Default::default()
    };
    // First run: nothing stored.
    let r = client.register_connector(&reg).await.unwrap();
    assert_eq!(r.id, "c-1");
    assert_eq!(r.state, None);
    assert_eq!(r.connector_user_id.as_deref(), Some("u-1"));
    // The register input is exactly pycti's.
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        body(&reqs[0])["variables"]["input"],
        json!({"id":"c-1","name":"CrowdStrike","type":"STREAM","scope":["crowdstrike"],"auto":false,
               "auto_update":false,"enrichment_resolution":"none","only_contextual":false,
               "playbook_compatible":false,"listen_callback_uri":null})
    );

    let state = StreamState {
        start_from: Some("1712736061234-0".into()),
        recover_until: Some("2024-04-10T08:00:00Z".into()),
    };
    let ping = client
        .ping_connector("c-1", Some(&state), &ConnectorInfo::default())
        .await
        .unwrap();
    assert!(!ping.reset);
    assert_eq!(ping.state.as_ref(), Some(&state));
    let reqs = server.received_requests().await.unwrap();
    let vars = &body(&reqs[1])["variables"];
    assert_eq!(vars["id"], "c-1");
    assert_eq!(
        vars["state"],
        r#"{"start_from":"1712736061234-0","recover_until":"2024-04-10T08:00:00Z"}"#
    );
    assert_eq!(
        vars["connectorInfo"],
        json!({"run_and_terminate":false,"buffering":false,"queue_threshold":500.0,
               "queue_messages_size":0.0,"next_run_datetime":null,"last_run_datetime":null})
    );

    // A restart registers again and gets the stored state back.
    let r = client.register_connector(&reg).await.unwrap();
    assert_eq!(r.state, Some(state));

    // A state written by the Python connector (legacy and current keys) is resumed.
    *platform.state.lock().unwrap() =
        Some(r#"{"start_from": "1711633413527-0", "recover_until": false}"#.into());
    let r = client.register_connector(&reg).await.unwrap();
    let st = r.state.unwrap();
    assert_eq!(st.start_from.as_deref(), Some("1711633413527-0"));
    assert_eq!(st.recover(), None);
}

#[tokio::test]
async fn state_reset_in_the_ui_is_detected() {
    let (server, client) = setup().await;
    let platform = Platform::default();
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(platform.clone())
        .mount(&server)
        .await;
    let state = StreamState {
        start_from: Some("1712736061234-0".into()),
        recover_until: None,
    };
    let info = ConnectorInfo::default();
    assert!(
        !client
            .ping_connector("c-1", Some(&state), &info)
            .await
            .unwrap()
            .reset
    );
    *platform.reset_pending.lock().unwrap() = true;
    let ping = client
        .ping_connector("c-1", Some(&state), &info)
        .await
        .unwrap();
    assert!(ping.reset, "a reset must be reported");
    assert_eq!(ping.state, None);
    assert_eq!(ping.raw_state.as_deref(), Some(""));
    // Next ping (state adopted: none) is not a reset any more.
    let ping = client.ping_connector("c-1", None, &info).await.unwrap();
    assert!(!ping.reset);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        body(&reqs[2])["variables"]["state"],
        "null",
        "None is sent as pycti's json.dumps(None)"
    );
}

#[tokio::test]
async fn graphql_errors_inside_200_are_typed() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(Op("PingConnector"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "errors": [{"message": "No connector found with the specified ID", "name": "FUNCTIONAL_ERROR",
                        "data": {"http_status": 200}}],
            "data": {"pingConnector": null}})))
        .mount(&server)
        .await;
    let err = client
        .ping_connector("nope", None, &ConnectorInfo::default())
        .await
        .unwrap_err();
    match &err {
        Error::GraphQl { errors } => {
            assert_eq!(
                errors[0].message,
                "No connector found with the specified ID"
            );
            assert_eq!(errors[0].name.as_deref(), Some("FUNCTIONAL_ERROR"));
        }
        other => panic!("expected a GraphQL error, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn http_errors_are_typed_and_5xx_is_retried() {
    let (server, client) = setup().await;
    Mock::given(Op("healthCheck"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(Op("healthCheck"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"about": {"version": "7"}}})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    assert_eq!(client.health_check().await.unwrap(), "7");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    let (server, client) = setup().await;
    Mock::given(Op("healthCheck"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    assert!(matches!(
        client.health_check().await,
        Err(Error::Unauthorized)
    ));
}

#[tokio::test]
async fn stream_collection_and_delete() {
    let (server, client) = setup().await;
    let filters = r#"{"mode":"and","filters":[{"key":["entity_type"],"operator":"eq","values":["Indicator"],"mode":"or"}],"filterGroups":[]}"#;
    Mock::given(Op("streamCollection(id: $id)"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"streamCollection": {
            "id": "s-1", "name": "Indicators", "description": null, "filters": filters,
            "stream_live": true, "stream_public": false}}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(Op("deleteConnector(id: $id)"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"deleteConnector": "c-1"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client.stream_collection("s-1").await.unwrap();
    assert_eq!(c.name, "Indicators");
    assert!(c.stream_live);
    assert_eq!(
        c.filters_json().unwrap().unwrap()["filters"][0]["values"][0],
        "Indicator"
    );
    // `live` is answered locally, like pycti.
    let live = client.stream_collection("live").await.unwrap();
    assert!(live.stream_live);
    assert_eq!(client.delete_connector("c-1").await.unwrap(), "c-1");
}

#[tokio::test]
async fn indicators_are_paged_lazily_with_the_sync_fields() {
    let (server, client) = setup().await;
    let node = |n: u32, labels: Value| {
        json!({"node": {"id": format!("i-{n}"), "standard_id": format!("indicator--{n}"), "entity_type": "Indicator",
            "name": format!("n{n}"), "description": null, "indicator_types": null,
            "pattern": "[ipv4-addr:value = '1.2.3.4']", "pattern_type": "stix", "pattern_version": "2.1",
            "valid_from": "2024-01-01T00:00:00.000Z", "valid_until": "2024-04-01T00:00:00.000Z",
            "x_opencti_score": 80, "x_opencti_detection": true, "x_opencti_main_observable_type": "IPv4-Addr",
            "x_mitre_platforms": ["windows"], "revoked": false, "confidence": 50,
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-02T00:00:00.000Z",
            "created_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-02T00:00:00.000Z",
            "objectLabel": labels}})
    };
    Mock::given(Op("query Indicators("))
        .respond_with(move |req: &Request| {
            let after = body(req)["variables"]["after"].clone();
            if after.is_null() {
                ResponseTemplate::new(200).set_body_json(json!({"data": {"indicators": {
                    "edges": [node(1, json!([{"id": "l1", "value": "apt", "color": "#fff"}])), node(2, Value::Null)],
                    "pageInfo": {"startCursor": "a", "endCursor": "c2", "hasNextPage": true, "hasPreviousPage": false, "globalCount": 3}}}}))
            } else {
                assert_eq!(after, "c2");
                ResponseTemplate::new(200).set_body_json(json!({"data": {"indicators": {
                    "edges": [node(3, json!({"edges": [{"node": {"value": "old-form"}}]}))],
                    "pageInfo": {"startCursor": "c3", "endCursor": "c3", "hasNextPage": false, "hasPreviousPage": true, "globalCount": 3}}}}))
            }
        })
        .expect(2)
        .mount(&server)
        .await;
    let filters = json!({"mode": "and", "filters": [], "filterGroups": []});
    let all: Vec<_> = client
        .indicators()
        .filters(filters.clone())
        .first(2)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].standard_id.as_deref(), Some("indicator--1"));
    assert_eq!(all[0].labels, vec!["apt"]);
    assert!(all[1].labels.is_empty());
    assert_eq!(all[2].labels, vec!["old-form"]);
    assert_eq!(all[0].x_opencti_score, Some(80));
    assert_eq!(all[0].x_mitre_platforms, vec!["windows"]);
    assert_eq!(
        all[0].x_opencti_main_observable_type.as_deref(),
        Some("IPv4-Addr")
    );
    assert!(all[0].indicator_types.is_empty());
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(body(&reqs[0])["variables"]["filters"], filters);
    assert_eq!(body(&reqs[0])["variables"]["first"], 2);
}
