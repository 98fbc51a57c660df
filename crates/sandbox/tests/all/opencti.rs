//! OpenCTI simulator: GraphQL operations, live stream, control API, faults.

use std::time::Duration;

use sandbox::opencti::{OpenCtiConfig, OpenCtiServer};
use serde_json::{Value, json};

const OCTI_EXT: &str = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba";

async fn start(config: OpenCtiConfig) -> OpenCtiServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    OpenCtiServer::start(listener, config, 7)
}

fn small() -> OpenCtiConfig {
    // Heartbeats rarer than the 500 ms idle windows the tests use to see that a stream went quiet.
    OpenCtiConfig {
        indicators: 300,
        heartbeat_interval: Duration::from_secs(2),
        ..OpenCtiConfig::default()
    }
}

async fn gql(s: &OpenCtiServer, query: &str, variables: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", s.url()))
        .bearer_auth(s.token())
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn control(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One SSE message.
#[derive(Debug, Clone)]
struct Msg {
    id: Option<String>,
    event: String,
    data: String,
}

impl Msg {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A minimal SSE reader over a streaming response.
struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    async fn open(
        s: &OpenCtiServer,
        stream_id: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Sse {
        let mut req = reqwest::Client::new()
            .get(format!("{}/stream/{stream_id}{query}", s.url()))
            .bearer_auth(s.token());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Sse {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next message, or `None` when the server closed the stream or nothing came in `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Msg> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), Vec::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    }
                }
                return Some(Msg {
                    id,
                    event,
                    data: data.join("\n"),
                });
            }
            match tokio::time::timeout(wait, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    async fn next(&mut self) -> Msg {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("an event within 5 s")
    }

    /// The next indicator (or verbatim) event: heartbeats and dependency events are skipped.
    async fn next_indicator(&mut self) -> Msg {
        loop {
            let m = self.next_data().await;
            let kind = serde_json::from_str::<Value>(&m.data)
                .ok()
                .and_then(|v| v["data"]["type"].as_str().map(str::to_owned));
            if !matches!(kind.as_deref(), Some("identity" | "marking-definition")) {
                return m;
            }
        }
    }

    /// The next message that is not a heartbeat.
    async fn next_data(&mut self) -> Msg {
        loop {
            let m = self.next().await;
            if m.event != "heartbeat" {
                return m;
            }
        }
    }
}

async fn stats(s: &OpenCtiServer) -> Value {
    control(
        reqwest::Method::GET,
        format!("{}/_sandbox/stats", s.url()),
        None,
    )
    .await
    .1
}

async fn snapshot_size(s: &OpenCtiServer) -> u64 {
    let (_, v) = control(
        reqwest::Method::GET,
        format!("{}/_sandbox/streams", s.url()),
        None,
    )
    .await;
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == s.live_stream_id())
        .unwrap()["snapshot_size"]
        .as_u64()
        .unwrap()
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn graphql_needs_the_bearer_token_and_answers_the_health_check() {
    let s = start(small()).await;
    let client = reqwest::Client::new();
    let body = json!({"query": "query healthCheck { about { version } }"});
    let r = client
        .post(format!("{}/graphql", s.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{}/graphql", s.url()))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v = gql(&s, "query healthCheck { about { version } }", Value::Null).await;
    assert_eq!(v, json!({"data": {"about": {"version": "6.8.13"}}}));
    let r = client
        .post(format!("{}/graphql", s.url()))
        .bearer_auth(s.token())
        .json(&json!({"query": "query { nosuchfield { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown fields are validation errors");
    s.shutdown().await;
}

const REGISTER: &str = "mutation RegisterConnector($input: RegisterConnectorInput) { registerConnector(input: $input) { id connector_state config { connection { host vhost use_ssl port user pass } s3 { endpoint port use_ssl bucket_name bucket_region access_key secret_key } listen listen_routing listen_exchange push push_routing push_exchange } connector_user_id } }";
const PING: &str = "mutation PingConnector($id: ID!, $state: String, $connectorInfo: ConnectorInfoInput) { pingConnector(id: $id, state: $state, connectorInfo: $connectorInfo) { id connector_state connector_info { run_and_terminate buffering queue_threshold queue_messages_size next_run_datetime last_run_datetime } } }";

#[tokio::test]
async fn connectors_register_ping_and_honour_a_state_reset() {
    let s = start(small()).await;
    let input = json!({"input": {"id": "c-1", "name": "CrowdStrike", "type": "STREAM", "scope": ["crowdstrike"], "auto": false, "only_contextual": false, "playbook_compatible": false, "listen_callback_uri": null}});
    let v = gql(&s, REGISTER, input.clone()).await;
    let reg = &v["data"]["registerConnector"];
    assert_eq!(reg["id"], "c-1");
    assert_eq!(reg["connector_state"], Value::Null);
    assert!(reg["config"]["s3"].is_object(), "pycti needs the s3 object");
    assert!(
        reg.get("name").is_none(),
        "answers are projected onto the selection"
    );

    let info = json!({"run_and_terminate": false, "buffering": false, "queue_threshold": 500.0, "queue_messages_size": 0.0, "next_run_datetime": null, "last_run_datetime": null});
    let state = r#"{"start_from": "5-0", "recover_until": "2026-01-01T00:00:00Z"}"#;
    let v = gql(
        &s,
        PING,
        json!({"id": "c-1", "state": state, "connectorInfo": info}),
    )
    .await;
    assert_eq!(v["data"]["pingConnector"]["connector_state"], state);
    let v = gql(&s, REGISTER, input).await;
    assert_eq!(
        v["data"]["registerConnector"]["connector_state"], state,
        "re-registration returns the stored state"
    );

    let v = gql(
        &s,
        "mutation { resetStateConnector(id: \"c-1\") { id } }",
        Value::Null,
    )
    .await;
    assert_eq!(v["data"]["resetStateConnector"]["id"], "c-1");
    // The next ping only clears the flag and returns the empty state, ignoring what was sent.
    let v = gql(
        &s,
        PING,
        json!({"id": "c-1", "state": state, "connectorInfo": info}),
    )
    .await;
    assert_eq!(v["data"]["pingConnector"]["connector_state"], "");
    let v = gql(
        &s,
        PING,
        json!({"id": "c-1", "state": "{\"start_from\": \"0-0\"}", "connectorInfo": info}),
    )
    .await;
    assert_eq!(
        v["data"]["pingConnector"]["connector_state"],
        "{\"start_from\": \"0-0\"}"
    );

    let (_, list) = control(
        reqwest::Method::GET,
        format!("{}/_sandbox/connectors", s.url()),
        None,
    )
    .await;
    assert_eq!(list["connectors"][0]["pings"], 3);
    assert_eq!(list["connectors"][0]["registrations"], 2);

    let v = gql(
        &s,
        PING,
        json!({"id": "nope", "state": "x", "connectorInfo": info}),
    )
    .await;
    assert_eq!(
        v["errors"][0]["message"],
        "No connector found with the specified ID"
    );
    let v = gql(
        &s,
        "mutation ConnectorDeletionMutation($id: ID!) { deleteConnector(id: $id) }",
        json!({"id": "c-1"}),
    )
    .await;
    assert_eq!(v["data"]["deleteConnector"], "c-1");
    s.shutdown().await;
}

#[tokio::test]
async fn stream_collection_query_and_stream_errors() {
    let s = start(small()).await;
    let v = gql(
        &s,
        "query StreamCollection($id: String!) { streamCollection(id: $id) { id name description stream_live stream_public filters } }",
        json!({"id": s.live_stream_id()}),
    )
    .await;
    let c = &v["data"]["streamCollection"];
    assert_eq!(c["id"], s.live_stream_id());
    assert_eq!(c["stream_live"], true);
    assert!(c["filters"].as_str().unwrap().contains("revoked"));

    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/stream/{}", s.url(), s.live_stream_id()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = client
        .get(format!("{}/stream/unknown", s.url()))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "unknown collection");
    let r = client
        .get(format!(
            "{}/stream/{}?recover={}",
            s.url(),
            s.live_stream_id(),
            now_iso()
        ))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "recover without a start position");
    let (code, _) = control(
        reqwest::Method::PATCH,
        format!("{}/_sandbox/streams/{}", s.url(), s.live_stream_id()),
        Some(json!({"stream_live": false})),
    )
    .await;
    assert_eq!(code, 200);
    let r = client
        .get(format!("{}/stream/{}", s.url(), s.live_stream_id()))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410, "stopped stream");
    s.shutdown().await;
}

#[tokio::test]
async fn first_connection_receives_the_recovery_snapshot_with_dependencies() {
    let s = start(small()).await;
    let expected = snapshot_size(&s).await;
    assert!(
        expected > 250 && expected < 300,
        "revoked and inferred indicators are outside the snapshot: {expected}"
    );
    let headers = [
        ("last-event-id", "0-0"),
        ("listen-delete", "true"),
        ("no-dependencies", "true"),
        ("with-inferences", "false"),
    ];
    let mut sse = Sse::open(
        &s,
        &s.live_stream_id(),
        &format!("?recover={}", now_iso()),
        &headers,
    )
    .await;
    let connected = sse.next().await;
    assert_eq!(connected.event, "connected");
    assert!(connected.id.is_none(), "connected has no id");
    assert!(connected.json()["connectionId"].is_string());

    let (mut indicators, mut deps, mut last_id) =
        (0u64, std::collections::HashSet::new(), (0u64, 0u64));
    let mut seen_refs = std::collections::HashSet::new();
    while indicators < expected {
        let m = sse.next_data().await;
        assert_eq!(m.event, "create");
        let id = m.id.clone().unwrap();
        let (ms, seq) = id.split_once('-').unwrap();
        let id = (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap());
        assert!(id >= last_id, "recovery ids are non-decreasing");
        last_id = id;
        let env = m.json();
        assert_eq!(env["version"], "4");
        let data = &env["data"];
        match data["type"].as_str().unwrap() {
            "indicator" => {
                assert_eq!(env["origin"]["referer"], "init-create");
                assert_eq!(data["revoked"], false);
                assert_eq!(data["extensions"][OCTI_EXT]["is_inferred"], false);
                let author = data["created_by_ref"].as_str().unwrap();
                assert!(
                    seen_refs.contains(author),
                    "the author is sent before the indicator"
                );
                indicators += 1;
            }
            "identity" | "marking-definition" => {
                assert_eq!(env["origin"]["referer"], "init-dependencies");
                assert!(
                    deps.insert(data["id"].as_str().unwrap().to_owned()),
                    "dependencies are sent once"
                );
                seen_refs.insert(data["id"].as_str().unwrap().to_owned());
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!deps.is_empty());
    // Then live: nothing but heartbeats.
    let m = sse.next().await;
    assert_eq!(m.event, "heartbeat");
    s.shutdown().await;
}

#[tokio::test]
async fn inferred_indicators_need_with_inferences() {
    let s = start(OpenCtiConfig {
        indicators: 600,
        ..small()
    })
    .await;
    let count = |with: &'static str| {
        let s = &s;
        async move {
            let mut sse = Sse::open(
                s,
                "live",
                &format!("?from=0&recover={}", now_iso()),
                &[("with-inferences", with)],
            )
            .await;
            let mut n = 0;
            while let Some(m) = sse.next_within(Duration::from_millis(500)).await {
                if m.event == "create" && m.json()["data"]["type"] == "indicator" {
                    n += 1;
                }
            }
            n
        }
    };
    let without = count("false").await;
    let with = count("true").await;
    assert_eq!(with, 600, "the `live` stream has no filter");
    assert!(without < with, "{without} < {with}");
    s.shutdown().await;
}

#[tokio::test]
async fn live_events_are_relabelled_by_the_stream_filter() {
    let s = start(small()).await;
    let last = stats(&s).await["last_event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut sse = Sse::open(&s, &s.live_stream_id(), "", &[("last-event-id", &last)]).await;
    assert_eq!(sse.next().await.event, "connected");
    let base = format!("{}/_sandbox/indicators", s.url());

    let (code, created) = control(
        reqwest::Method::POST,
        base.clone(),
        Some(json!({"observable": {"type": "IPv4-Addr", "value": "10.0.0.0/8"}, "score": 50, "labels": ["c2"]})),
    )
    .await;
    assert_eq!(code, 201);
    let id = created["indicator"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["indicator"]["pattern"],
        "[ipv4-addr:value = '10.0.0.0/8']"
    );
    // Dependencies first (same id), then the indicator.
    let mut m = sse.next_data().await;
    while m.json()["data"]["type"] != "indicator" {
        assert_eq!(m.id.as_deref(), created["event_id"].as_str());
        m = sse.next_data().await;
    }
    assert_eq!(m.event, "create");
    assert_eq!(m.id.as_deref(), created["event_id"].as_str());

    control(
        reqwest::Method::PATCH,
        format!("{base}/{id}"),
        Some(json!({"score": 80})),
    )
    .await;
    let m = sse.next_indicator().await;
    assert_eq!(m.event, "update");
    let env = m.json();
    let score_path = format!("/extensions/{OCTI_EXT}/score");
    assert!(
        env["context"]["patch"]
            .as_array()
            .unwrap()
            .contains(&json!({"op": "replace", "path": score_path, "value": 80}))
    );
    assert!(
        env["context"]["reverse_patch"]
            .as_array()
            .unwrap()
            .contains(&json!({"op": "replace", "path": score_path, "value": 50}))
    );

    control(
        reqwest::Method::PATCH,
        format!("{base}/{id}"),
        Some(json!({"revoked": true})),
    )
    .await;
    let m = sse.next_indicator().await;
    assert_eq!(
        m.event, "delete",
        "a revocation leaves the Revoked = No stream"
    );
    assert_eq!(m.json()["type"], "update", "the envelope keeps its type");

    control(
        reqwest::Method::PATCH,
        format!("{base}/{id}"),
        Some(json!({"revoked": false})),
    )
    .await;
    let m = sse.next_indicator().await;
    assert_eq!(
        m.event, "create",
        "an update making it match again is a create"
    );
    assert_eq!(m.json()["type"], "update");

    let (_, other) = control(
        reqwest::Method::POST,
        base.clone(),
        Some(json!({"observable": {"type": "Domain-Name", "value": "Evil.example"}})),
    )
    .await;
    let other_id = other["indicator"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        other["indicator"]["pattern"],
        "[domain-name:value = 'evil.example']"
    );
    assert_eq!(sse.next_indicator().await.event, "create");
    let (code, merged) = control(
        reqwest::Method::POST,
        format!("{base}/{id}/merge"),
        Some(json!({"sources": [other_id]})),
    )
    .await;
    assert_eq!(code, 200);
    let m = sse.next_indicator().await;
    assert_eq!(m.event, "merge");
    assert_eq!(
        m.json()["context"]["sources"][0]["id"],
        other["indicator"]["id"]
    );
    assert_eq!(m.id.as_deref(), merged["event_id"].as_str());

    control(reqwest::Method::DELETE, format!("{base}/{id}"), None).await;
    let m = sse.next_indicator().await;
    assert_eq!(m.event, "delete");
    assert_eq!(m.json()["data"]["id"], created["indicator"]["id"]);
    let (code, _) = control(reqwest::Method::GET, format!("{base}/{id}"), None).await;
    assert_eq!(code, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn listen_delete_false_suppresses_deletes_and_resumption_skips_seen_events() {
    let s = start(small()).await;
    let last = stats(&s).await["last_event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("{}/_sandbox/indicators", s.url());
    let mut ids = Vec::new();
    for k in 0..3 {
        let (_, c) = control(
            reqwest::Method::POST,
            base.clone(),
            Some(json!({"shape": k})),
        )
        .await;
        ids.push(c["event_id"].as_str().unwrap().to_owned());
    }
    let victim = s.url(); // keep borrowck simple below
    let (_, list) = control(
        reqwest::Method::GET,
        format!("{victim}/_sandbox/indicators"),
        None,
    )
    .await;
    let some = list["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["revoked"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, d) = control(reqwest::Method::DELETE, format!("{base}/{some}"), None).await;
    let delete_id = d["event_id"].as_str().unwrap().to_owned();
    let (_, c) = control(
        reqwest::Method::POST,
        base.clone(),
        Some(json!({"shape": 3})),
    )
    .await;
    let after_delete = c["event_id"].as_str().unwrap().to_owned();

    // Resume after the first creation: the next two creations come, the delete is suppressed.
    let mut sse = Sse::open(
        &s,
        &s.live_stream_id(),
        "",
        &[("last-event-id", &ids[0]), ("listen-delete", "false")],
    )
    .await;
    assert_eq!(sse.next().await.event, "connected");
    let mut got = Vec::new();
    while let Some(m) = sse.next_within(Duration::from_millis(400)).await {
        if m.event != "heartbeat" && m.json()["data"]["type"] == "indicator" {
            got.push((m.event.clone(), m.id.clone().unwrap()));
        }
    }
    let got_ids: Vec<&str> = got.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(
        got_ids,
        [ids[1].as_str(), ids[2].as_str(), after_delete.as_str()]
    );
    assert!(!got_ids.contains(&delete_id.as_str()));
    assert!(got.iter().all(|(e, _)| e == "create"));
    // `from` in the query wins over Last-Event-ID.
    let mut sse = Sse::open(
        &s,
        &s.live_stream_id(),
        &format!("?from={}", ids[2]),
        &[("last-event-id", &last)],
    )
    .await;
    assert_eq!(sse.next().await.event, "connected");
    let m = sse.next_data().await;
    assert_eq!(
        m.id.as_deref(),
        Some(delete_id.as_str()),
        "deletes are sent by default"
    );
    assert_eq!(m.event, "delete");
    s.shutdown().await;
}

#[tokio::test]
async fn idle_heartbeats_carry_a_moving_id_and_the_date() {
    let s = start(OpenCtiConfig {
        heartbeat_interval: Duration::from_millis(200),
        ..small()
    })
    .await;
    let mut sse = Sse::open(&s, &s.live_stream_id(), "", &[]).await;
    assert_eq!(sse.next().await.event, "connected");
    let a = sse.next().await;
    let b = sse.next().await;
    assert_eq!(
        (a.event.as_str(), b.event.as_str()),
        ("heartbeat", "heartbeat")
    );
    let ms = |m: &Msg| {
        m.id.as_ref()
            .unwrap()
            .split_once('-')
            .unwrap()
            .0
            .parse::<u64>()
            .unwrap()
    };
    assert!(ms(&b) > ms(&a), "idle heartbeat ids advance");
    let date: String = serde_json::from_str(&b.data).unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&date)
            .unwrap()
            .timestamp_millis() as u64,
        ms(&b)
    );
    // An event created right after a heartbeat gets a strictly greater id.
    let (_, c) = control(
        reqwest::Method::POST,
        format!("{}/_sandbox/indicators", s.url()),
        Some(json!({"shape": 0})),
    )
    .await;
    let (ems, eseq) = c["event_id"]
        .as_str()
        .unwrap()
        .split_once('-')
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap();
    assert!((ems, eseq) > (ms(&b), 0));
    s.shutdown().await;
}

#[tokio::test]
async fn faults_close_and_stall_streams() {
    let s = start(small()).await;
    let faults = format!("{}/_sandbox/faults", s.url());
    control(
        reqwest::Method::POST,
        faults.clone(),
        Some(json!({"close_stream_every": 5})),
    )
    .await;
    let mut sse = Sse::open(&s, "live", "?from=0", &[]).await;
    assert_eq!(sse.next().await.event, "connected");
    let mut n = 0;
    while let Some(m) = sse.next_within(Duration::from_secs(2)).await {
        if m.event != "heartbeat" && m.json()["data"]["type"] == "indicator" {
            n += 1;
        }
    }
    assert_eq!(n, 5, "the server closed the stream after 5 events");

    control(
        reqwest::Method::POST,
        faults.clone(),
        Some(json!({"close_stream_every": null, "stall_stream_after": 2})),
    )
    .await;
    let mut sse = Sse::open(&s, "live", "?from=0", &[]).await;
    assert_eq!(sse.next().await.event, "connected");
    let mut n = 0;
    while let Some(m) = sse.next_within(Duration::from_millis(800)).await {
        assert_ne!(m.event, "heartbeat", "a stalled stream sends no heartbeat");
        if m.json()["data"]["type"] == "indicator" {
            n += 1;
        }
    }
    assert_eq!(n, 2);
    let (_, doc) = control(reqwest::Method::GET, faults.clone(), None).await;
    assert_eq!(doc["injected"]["streams_closed"], 1);
    assert!(doc["injected"]["streams_stalled"].as_u64().unwrap() >= 1);

    control(
        reqwest::Method::POST,
        faults.clone(),
        Some(json!({"stall_stream_after": null, "error_rate": 1.0})),
    )
    .await;
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", s.url()))
        .bearer_auth(s.token())
        .json(&json!({"query": "{ about { version } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    control(reqwest::Method::DELETE, faults, None).await;
    s.shutdown().await;
}

#[tokio::test]
async fn indicators_query_pages_with_filters() {
    let s = start(small()).await;
    let query = "query Indicators($filters: FilterGroup, $first: Int, $after: ID) { indicators(filters: $filters, first: $first, after: $after) { edges { node { id standard_id pattern pattern_type x_opencti_score revoked objectLabel { value } } } pageInfo { endCursor hasNextPage globalCount } } }";
    let filters = json!({"mode": "and", "filters": [{"key": "revoked", "values": ["false"]}], "filterGroups": []});
    let (mut after, mut seen) = (Value::Null, std::collections::HashSet::new());
    let mut total;
    loop {
        let v = gql(
            &s,
            query,
            json!({"filters": filters, "first": 40, "after": after}),
        )
        .await;
        let conn = &v["data"]["indicators"];
        total = conn["pageInfo"]["globalCount"].as_u64().unwrap();
        for e in conn["edges"].as_array().unwrap() {
            assert_eq!(e["node"]["revoked"], false);
            assert!(
                seen.insert(e["node"]["id"].as_str().unwrap().to_owned()),
                "no duplicates across pages"
            );
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len() as u64, total);
    assert!(total > 250 && total < 300);
    let v = gql(&s, "query { indicators(filters: {mode: and, filters: [{key: \"colour\", values: [\"x\"]}], filterGroups: []}) { edges { node { id } } } }", Value::Null).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn generated_indicators_cover_every_shape_opencti_produces() {
    let s = start(small()).await;
    let (_, list) = control(
        reqwest::Method::GET,
        format!("{}/_sandbox/indicators", s.url()),
        None,
    )
    .await;
    let list = list["indicators"].as_array().unwrap();
    assert_eq!(list.len(), 300);
    let patterns: Vec<&str> = list
        .iter()
        .map(|i| i["pattern"].as_str().unwrap())
        .collect();
    let has = |p: &dyn Fn(&str) -> bool| patterns.iter().any(|x| p(x));
    assert!(
        has(&|p| p.starts_with("[file:hashes.MD5 = '")),
        "unquoted MD5"
    );
    assert!(
        has(&|p| p.starts_with("[file:hashes.'MD5' = '")),
        "quoted MD5"
    );
    assert!(
        has(&|p| p.starts_with("[file:hashes.'SHA-256' = '")
            && p.contains(" OR file:hashes.MD5 = '")),
        "multi-hash OR"
    );
    assert!(
        has(&|p| p.starts_with("[ipv4-addr:value = '") && p.contains('/')),
        "CIDR"
    );
    for prefix in [
        "[ipv6-addr:value",
        "[domain-name:value",
        "[hostname:value",
        "[url:value",
        "[email-addr:value",
        "[file:name",
    ] {
        assert!(has(&|p| p.starts_with(prefix)), "{prefix}");
    }
    assert!(has(&|p| p.contains("\\'")), "escaped quote");
    let now = chrono::Utc::now();
    let until = |i: &Value| {
        chrono::DateTime::parse_from_rfc3339(i["valid_until"].as_str().unwrap()).unwrap()
    };
    assert!(list.iter().any(|i| until(i) < now), "some expired");
    assert!(list.iter().any(|i| i["revoked"] == true), "some revoked");
    assert!(list.iter().any(|i| i["x_mitre_platforms"].is_array()));
    assert!(list.iter().any(|i| i["labels"].is_array()));
    assert!(list.iter().any(|i| i["pattern_type"] != "stix"));
    // The same seed generates the same set.
    let t = start(small()).await;
    let (_, again) = control(
        reqwest::Method::GET,
        format!("{}/_sandbox/indicators", t.url()),
        None,
    )
    .await;
    let first = |l: &[Value]| l.iter().map(|i| i["pattern"].clone()).collect::<Vec<_>>();
    assert_eq!(first(list), first(again["indicators"].as_array().unwrap()));
    s.shutdown().await;
    t.shutdown().await;
}

#[tokio::test]
async fn churn_emits_stream_events_and_raw_events_pass_verbatim() {
    let s = start(small()).await;
    let before = stats(&s).await["events"].as_u64().unwrap();
    let last = stats(&s).await["last_event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut sse = Sse::open(&s, "live", "", &[("last-event-id", &last)]).await;
    assert_eq!(sse.next().await.event, "connected");
    let (_, ops) = control(
        reqwest::Method::POST,
        format!("{}/_sandbox/churn/step", s.url()),
        Some(json!({"count": 60})),
    )
    .await;
    let ops = ops["operations"].as_object().unwrap();
    assert!(ops.len() >= 4, "several kinds of operations: {ops:?}");
    let after = stats(&s).await["events"].as_u64().unwrap();
    assert!(after > before + 40, "{before} -> {after}");

    // Timed churn.
    let (code, c) = control(
        reqwest::Method::POST,
        format!("{}/_sandbox/churn", s.url()),
        Some(json!({"events_per_second": 200.0})),
    )
    .await;
    assert_eq!((code, c["events_per_second"].as_f64()), (200, Some(200.0)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    control(
        reqwest::Method::POST,
        format!("{}/_sandbox/churn", s.url()),
        Some(json!({"events_per_second": 0.0})),
    )
    .await;
    assert!(stats(&s).await["events"].as_u64().unwrap() > after + 10);
    let (code, _) = control(
        reqwest::Method::POST,
        format!("{}/_sandbox/churn", s.url()),
        Some(json!({"rate": 1})),
    )
    .await;
    assert_eq!(code, 422, "unknown knobs are refused");

    let (_, raw) = control(
        reqwest::Method::POST,
        format!("{}/_sandbox/events/raw", s.url()),
        Some(json!({"event": "create", "data": "not json"})),
    )
    .await;
    let mut kinds = std::collections::BTreeSet::new();
    loop {
        let m = sse.next_data().await;
        if m.data == "not json" {
            assert_eq!(m.id.as_deref(), raw["event_id"].as_str());
            break;
        }
        kinds.insert(m.event.clone());
    }
    assert!(
        kinds.contains("update") && kinds.contains("create"),
        "{kinds:?}"
    );
    let (_, counts) = control(
        reqwest::Method::GET,
        format!("{}/_sandbox/requests", s.url()),
        None,
    )
    .await;
    assert_eq!(counts["requests"]["GET /stream/{id}"], 1);
    assert!(counts["requests"]["POST /_sandbox/churn"].as_u64().unwrap() >= 3);
    s.shutdown().await;
}
