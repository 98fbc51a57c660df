//! The live stream against a scripted SSE server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use opencti_client::{Error, EventKind, LiveEvents, LiveStream, StreamEvent, StreamState};

use crate::support::{Reply, SseServer, TOKEN, connected, indicator_envelope, msg};

const RECOVER: &str = "2024-04-10T08:00:00Z";

fn state(from: &str) -> StreamState {
    StreamState {
        start_from: Some(from.into()),
        recover_until: Some(RECOVER.into()),
    }
}

fn create(id: &str, stix: &str) -> String {
    msg(
        Some(id),
        "create",
        &indicator_envelope("create", stix, "[ipv4-addr:value = '1.2.3.4']"),
    )
}

async fn next_ok(events: &mut LiveEvents) -> StreamEvent {
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("no event within 20 s")
        .expect("stream ended")
        .expect("error item")
}

/// Splits a text into small chunks so that events and lines straddle chunk boundaries.
fn chunked(text: &str, size: usize) -> Vec<String> {
    text.as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn parses_every_event_type_including_multiline_data_and_comments() {
    let dep = serde_json::json!({"version":"4","type":"create","scope":"external","message":"creates a Organization",
        "origin":{"referer":"init-dependencies"},"data":{"id":"identity--1","type":"identity","name":"ACME"}})
    .to_string();
    // An update whose JSON is split over two `data:` lines (joined with "\n": still valid JSON).
    let update = serde_json::json!({"version":"4","type":"update","scope":"external","message":"replaces `80` in `Score`",
        "origin":{"user_id":"u"},"data":{"id":"indicator--a","type":"indicator","pattern":"[ipv4-addr:value = '1.2.3.4']",
        "x_opencti_score": 80},
        "context":{"patch":[{"op":"replace","path":"/x_opencti_score","value":80}],
                   "reverse_patch":[{"op":"replace","path":"/x_opencti_score","value":50}]}})
    .to_string();
    let (head, tail) = update.split_at(update.find(",\"data\"").unwrap() + 1);
    let multiline = format!("id: 1712736061234-0\nevent: update\ndata: {head}\ndata: {tail}\n\n");
    // A revocation re-labelled as delete by the stream filters: envelope type stays "update".
    let delete = serde_json::json!({"version":"4","type":"update","scope":"external","message":"m","origin":{},
        "data":{"id":"indicator--a","type":"indicator","revoked":true},
        "context":{"patch":[{"op":"replace","path":"/revoked","value":true}]}})
    .to_string();
    let merge = serde_json::json!({"version":"4","type":"merge","scope":"external","message":"merges","origin":{},
        "data":{"id":"indicator--b","type":"indicator"},
        "context":{"patch":[],"reverse_patch":[],"sources":[{"id":"indicator--c","type":"indicator"}]}})
    .to_string();
    let mut text = String::new();
    text.push_str(": a comment line, ignored\n");
    text.push_str(&connected());
    text.push_str(&msg(Some("1712649520678-0"), "create", &dep));
    text.push_str(&create("1712649520678-0", "indicator--a"));
    text.push_str(":keep-alive\n");
    text.push_str(&msg(
        Some("1712736005000-0"),
        "heartbeat",
        "\"2024-04-10T08:00:05.000Z\"",
    ));
    text.push_str(&multiline);
    text.push_str(&msg(Some("1712736099999-0"), "delete", &delete));
    text.push_str(&msg(Some("1712736100000-0"), "merge", &merge));
    text.push_str(&msg(
        Some("1712736100001-0"),
        "no-recover",
        "{\"lastEventId\":\"1712736100001-0\"}",
    ));
    text.push_str(&msg(
        Some("1712736100002-0"),
        "consumer_metrics",
        "{\"connectionId\":\"c\",\"timeLag\":0}",
    ));
    text.push_str("id: 1712736100003-0\r\nevent: something-new\r\ndata: plain text\r\n\r\n");
    let server = SseServer::start(move |_, _| Reply::Hang(chunked(&text, 7))).await;
    let (mut events, cursor) = LiveStream::builder(server.client(), "s-1")
        .state(state("0-0"))
        .build();

    let ev = next_ok(&mut events).await;
    assert_eq!(ev.kind, EventKind::Connected);
    assert_eq!(ev.id, "");
    let info = ev.connected_info().unwrap();
    assert_eq!(info.stream_size, Some(123456));
    assert_eq!(info.connection_id.as_deref(), Some("c0ffee00"));

    let ev = next_ok(&mut events).await;
    assert_eq!(
        (ev.id.as_str(), &ev.kind),
        ("1712649520678-0", &EventKind::Create)
    );
    let d = ev.data.as_ref().unwrap();
    assert_eq!(d.stix_type(), Some("identity"));
    assert_eq!(d.origin_referer(), Some("init-dependencies"));
    cursor.ack(&ev.id);

    let ev = next_ok(&mut events).await;
    assert_eq!(
        ev.id, "1712649520678-0",
        "dependency and indicator share one id"
    );
    assert_eq!(ev.stix_id(), Some("indicator--a"));
    let d = ev.data.as_ref().unwrap();
    assert_eq!(d.pattern(), Some("[ipv4-addr:value = '1.2.3.4']"));
    assert_eq!(d.pattern_type(), Some("stix"));
    assert_eq!(d.score(), Some(50));
    assert_eq!(d.detection(), Some(true));
    assert_eq!(d.main_observable_type(), Some("IPv4-Addr"));
    assert_eq!(d.platforms(), vec!["windows", "linux"]);
    assert_eq!(d.valid_until(), Some("2024-04-29T12:33:20.098Z"));
    assert_eq!(d.labels(), vec!["threat lead"]);
    assert_eq!(d.entity_type(), Some("Indicator"));
    assert_eq!(d.name(), Some("42.194.210.177"));
    assert!(!d.revoked());
    assert_eq!(d.origin_referer(), Some("init-create"));
    cursor.ack(&ev.id);

    let ev = next_ok(&mut events).await;
    assert_eq!(ev.kind, EventKind::Heartbeat);
    assert_eq!(
        ev.heartbeat_date().as_deref(),
        Some("2024-04-10T08:00:05.000Z")
    );
    assert_eq!(
        cursor.state().start_from.as_deref(),
        Some("1712736005000-0"),
        "a heartbeat after acknowledged events moves the cursor"
    );

    let ev = next_ok(&mut events).await;
    assert_eq!(ev.kind, EventKind::Update);
    let d = ev.data.as_ref().unwrap();
    assert_eq!(
        d.score(),
        Some(80),
        "top-level x_opencti_score when no extension"
    );
    assert_eq!(d.patch().unwrap()[0]["value"], 80);
    assert_eq!(d.reverse_patch().unwrap()[0]["value"], 50);
    assert_eq!(d.message.as_deref(), Some("replaces `80` in `Score`"));

    let ev = next_ok(&mut events).await;
    assert_eq!(
        ev.kind,
        EventKind::Delete,
        "the SSE name wins over data.type"
    );
    let d = ev.data.as_ref().unwrap();
    assert_eq!(d.envelope_type.as_deref(), Some("update"));
    assert!(d.revoked());

    let ev = next_ok(&mut events).await;
    assert_eq!(ev.kind, EventKind::Merge);
    assert_eq!(
        ev.data.as_ref().unwrap().merge_sources()[0]["id"],
        "indicator--c"
    );

    let ev = next_ok(&mut events).await;
    assert_eq!(ev.kind, EventKind::NoRecover);
    assert_eq!(
        cursor.state().recover_until,
        None,
        "no-recover clears recover_until, as pycti does"
    );

    let ev = next_ok(&mut events).await;
    assert_eq!(ev.kind, EventKind::ConsumerMetrics);

    let ev = next_ok(&mut events).await;
    assert_eq!(ev.kind, EventKind::Other("something-new".into()));
    assert_eq!(ev.kind.as_str(), "something-new");
    assert_eq!(ev.raw.as_deref(), Some("plain text"));
    assert_eq!(ev.id, "1712736100003-0");
    assert_eq!(cursor.stats().events, 10);
}

#[tokio::test]
async fn headers_and_query_are_sent_exactly_as_pycti_sends_them() {
    let server = SseServer::start(|_, _| Reply::Hang(vec![connected()])).await;
    let (mut events, _cursor) = LiveStream::builder(server.client(), "9d3f0e52-6c1b")
        .state(state("1712736061234-0"))
        .build();
    assert_eq!(next_ok(&mut events).await.kind, EventKind::Connected);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/stream/9d3f0e52-6c1b");
    assert_eq!(req.query.as_deref(), Some("recover=2024-04-10T08:00:00Z"));
    assert_eq!(req.header("authorization"), Some(format!("Bearer {TOKEN}")));
    assert_eq!(req.header("listen-delete").as_deref(), Some("true"));
    assert_eq!(req.header("no-dependencies").as_deref(), Some("true"));
    assert_eq!(req.header("with-inferences").as_deref(), Some("false"));
    assert_eq!(req.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(req.header("accept").as_deref(), Some("text/event-stream"));
    assert_eq!(
        req.header("last-event-id").as_deref(),
        Some("1712736061234-0")
    );
    assert_eq!(
        req.header("x-custom"),
        None,
        "custom headers are GraphQL-only, as in pycti"
    );
    let mut names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "accept",
            "authorization",
            "cache-control",
            "host",
            "last-event-id",
            "listen-delete",
            "no-dependencies",
            "user-agent",
            "with-inferences"
        ]
    );

    // First run with the options flipped and recovery off: no `recover` parameter, `0-0`.
    let server = SseServer::start(|_, _| Reply::Hang(vec![connected()])).await;
    let (mut events, _cursor) = LiveStream::builder(server.client(), "s")
        .state(StreamState::default())
        .listen_delete(false)
        .no_dependencies(false)
        .with_inferences(true)
        .build();
    next_ok(&mut events).await;
    let req = &server.requests()[0];
    assert_eq!(req.query, None);
    assert_eq!(req.header("last-event-id").as_deref(), Some("0-0"));
    assert_eq!(req.header("listen-delete").as_deref(), Some("false"));
    assert_eq!(req.header("no-dependencies").as_deref(), Some("false"));
    assert_eq!(req.header("with-inferences").as_deref(), Some("true"));
}

#[tokio::test]
async fn custom_headers_reach_the_stream_only_when_asked() {
    let server = SseServer::start(|_, _| Reply::Hang(vec![connected()])).await;
    let client = opencti_client::OpenCtiClient::builder(
        server.url.clone(),
        opencti_client::SecretString::from(TOKEN),
    )
    .custom_headers("x-proxy-auth: abc; x-tenant:t1")
    .custom_headers_on_stream(true)
    .build()
    .unwrap();
    let (mut events, _cursor) = LiveStream::builder(client, "s").build();
    next_ok(&mut events).await;
    let req = &server.requests()[0];
    assert_eq!(req.header("x-proxy-auth").as_deref(), Some("abc"));
    assert_eq!(req.header("x-tenant").as_deref(), Some("t1"));
    assert_eq!(req.header("authorization"), Some(format!("Bearer {TOKEN}")));
}

#[tokio::test]
async fn reconnects_after_the_server_closes_mid_event_with_the_last_acknowledged_id() {
    let server = SseServer::start(|n, _| match n {
        0 => Reply::Close(vec![
            connected(),
            create("1-0", "indicator--1"),
            create("2-0", "indicator--2"),
            msg(Some("3-0"), "heartbeat", "\"1970-01-01T00:00:00.003Z\""),
            // The connection dies in the middle of this event.
            "id: 4-0\nevent: create\ndata: {\"version\":\"4\",\"ty".to_string(),
        ]),
        _ => Reply::Hang(vec![connected(), create("4-0", "indicator--4")]),
    })
    .await;
    let (mut events, cursor) = LiveStream::builder(server.client(), "s-1")
        .state(state("0-0"))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = next_ok(&mut events).await;
        if !ev.id.is_empty() {
            seen.push(ev.id.clone());
        }
        cursor.ack(&ev.id);
    }
    assert_eq!(
        seen,
        ["1-0", "2-0", "3-0", "4-0"],
        "the partial event is dropped, then re-sent"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("last-event-id").as_deref(), Some("3-0"));
    assert_eq!(
        reqs[1].query.as_deref(),
        Some("recover=2024-04-10T08:00:00Z")
    );
    assert_eq!(cursor.stats().reconnects, 1);
}

#[tokio::test]
async fn unacknowledged_and_shared_id_events_are_replayed_not_lost() {
    let server = SseServer::start(|n, _| match n {
        // The server dies between a dependency event and the indicator sharing its id.
        0 => Reply::Close(vec![
            connected(),
            create("1-0", "indicator--1"),
            create("2-0", "identity--dep"),
        ]),
        _ => Reply::Hang(vec![
            connected(),
            create("2-0", "identity--dep"),
            create("2-0", "indicator--2"),
        ]),
    })
    .await;
    let (mut events, cursor) = LiveStream::builder(server.client(), "s-1")
        .state(state("0-0"))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build();
    let mut stix = Vec::new();
    while stix.len() < 4 {
        let ev = next_ok(&mut events).await;
        if let Some(s) = ev.stix_id() {
            stix.push(s.to_string());
        }
        cursor.ack(&ev.id);
    }
    assert_eq!(
        stix,
        [
            "indicator--1",
            "identity--dep",
            "identity--dep",
            "indicator--2"
        ]
    );
    // Resuming from 2-0 would have skipped indicator--2: the stream resumed from 1-0.
    assert_eq!(
        server.requests()[1].header("last-event-id").as_deref(),
        Some("1-0")
    );
}

#[tokio::test(start_paused = true)]
async fn read_timeout_reconnects_from_the_cursor() {
    let server = SseServer::start(|n, _| match n {
        0 => Reply::Hang(vec![
            connected(),
            create("1-0", "indicator--1"),
            msg(Some("1-5"), "heartbeat", "\"1970-01-01T00:00:00.001Z\""),
        ]),
        _ => Reply::Hang(vec![connected(), create("2-0", "indicator--2")]),
    })
    .await;
    let (mut events, cursor) = LiveStream::builder(server.client(), "s-1")
        .state(state("0-0"))
        .heartbeat_period(Duration::from_secs(5))
        .read_timeout_heartbeats(3)
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .build();
    let start = tokio::time::Instant::now();
    let mut last = None;
    while last.as_deref() != Some("2-0") {
        let ev = events.next().await.unwrap().unwrap();
        cursor.ack(&ev.id);
        if !ev.id.is_empty() {
            last = Some(ev.id);
        }
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(15),
        "reconnected after {waited:?}, before the 15 s read timeout"
    );
    assert!(
        waited < Duration::from_secs(30),
        "reconnected only after {waited:?}"
    );
    assert_eq!(
        server.requests()[1].header("last-event-id").as_deref(),
        Some("1-5")
    );
    assert_eq!(cursor.stats().read_timeouts, 1);
}

#[tokio::test]
async fn unauthorized_not_found_and_gone_are_typed_errors_that_end_the_stream() {
    for (status, check) in [
        (
            401u16,
            (|e: &Error| matches!(e, Error::Unauthorized)) as fn(&Error) -> bool,
        ),
        (404, |e: &Error| matches!(e, Error::NotFound)),
        (410, |e: &Error| matches!(e, Error::Gone)),
    ] {
        let server = SseServer::start(move |_, _| Reply::Status(status)).await;
        let (mut events, _cursor) = LiveStream::builder(server.client(), "s-1")
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(10))
            .build();
        let err = events.next().await.unwrap().unwrap_err();
        assert!(check(&err), "{status}: {err:?}");
        assert!(err.is_terminal());
        assert_eq!(err.status(), Some(status));
        assert!(
            events.next().await.is_none(),
            "{status} must end the stream"
        );
        assert_eq!(server.requests().len(), 1, "{status} must not be retried");
    }
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let server = SseServer::start(|n, _| match n {
        0 => Reply::Status(500),
        1 => Reply::Status(503),
        _ => Reply::Hang(vec![connected(), create("1-0", "indicator--1")]),
    })
    .await;
    let (mut events, cursor) = LiveStream::builder(server.client(), "s-1")
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build();
    assert_eq!(next_ok(&mut events).await.kind, EventKind::Connected);
    assert_eq!(next_ok(&mut events).await.id, "1-0");
    assert_eq!(server.requests().len(), 3);
    assert_eq!(cursor.stats().reconnects, 2);
}

#[tokio::test]
async fn a_malformed_event_is_an_error_item_and_the_stream_goes_on() {
    let server = SseServer::start(|_, _| {
        Reply::Hang(vec![
            connected(),
            msg(Some("1-0"), "create", "{not json"),
            create("2-0", "indicator--2"),
            msg(
                Some("3-0"),
                "update",
                "{\"version\":\"4\",\"type\":\"update\"}",
            ),
            create("4-0", "indicator--4"),
        ])
    })
    .await;
    let (mut events, cursor) = LiveStream::builder(server.client(), "s-1").build();
    assert_eq!(next_ok(&mut events).await.kind, EventKind::Connected);
    match events.next().await.unwrap() {
        Err(Error::Malformed { id, event, raw, .. }) => {
            assert_eq!(
                (id.as_str(), event.as_str(), raw.as_str()),
                ("1-0", "create", "{not json")
            );
            cursor.ack(&id);
        }
        other => panic!("expected a malformed item, got {other:?}"),
    }
    assert_eq!(next_ok(&mut events).await.stix_id(), Some("indicator--2"));
    let err = events.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Malformed { id, .. } if id == "3-0"),
        "{err:?}"
    );
    assert!(!err.is_terminal() && !err.is_retryable());
    assert_eq!(next_ok(&mut events).await.stix_id(), Some("indicator--4"));
    assert_eq!(cursor.stats().malformed, 2);
    assert_eq!(server.requests().len(), 1, "no reconnect for a bad event");
}

#[tokio::test]
async fn cursor_reset_reconnects_from_the_new_state() {
    let server = SseServer::start(|n, _| match n {
        0 => Reply::Hang(vec![connected(), create("5-0", "indicator--5")]),
        _ => Reply::Hang(vec![connected(), create("1-0", "indicator--1")]),
    })
    .await;
    let (mut events, cursor) = LiveStream::builder(server.client(), "s-1")
        .state(state("4-0"))
        .build();
    next_ok(&mut events).await;
    assert_eq!(next_ok(&mut events).await.id, "5-0");
    cursor.reset(state("0-0"));
    assert_eq!(next_ok(&mut events).await.kind, EventKind::Connected);
    assert_eq!(next_ok(&mut events).await.id, "1-0");
    let reqs = server.requests();
    assert_eq!(reqs[1].header("last-event-id").as_deref(), Some("0-0"));
}

#[tokio::test]
async fn a_slow_consumer_slows_reading_and_memory_stays_bounded() {
    let produced = Arc::new(AtomicUsize::new(0));
    let p = produced.clone();
    // 64 KiB events, produced as fast as the connection takes them, forever.
    let big = create("7-0", &format!("indicator--{}", "x".repeat(64 * 1024)));
    let server = SseServer::start(move |_, _| Reply::Endless(p.clone(), big.clone())).await;
    let (mut events, _cursor) = LiveStream::builder(server.client(), "s-1").build();
    for _ in 0..5 {
        next_ok(&mut events).await;
    }
    // The consumer stops polling: the server can only fill the socket buffers.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let a = produced.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let b = produced.load(Ordering::SeqCst);
    assert!(
        a < 1_000,
        "{a} events (64 MiB) produced for a consumer that read 5"
    );
    assert!(
        b - a < 20,
        "reading went on without the consumer: {a} -> {b}"
    );
    // Reading resumes when the consumer does.
    for _ in 0..(a + 50) {
        next_ok(&mut events).await;
    }
    assert!(produced.load(Ordering::SeqCst) > a + 50);
}
