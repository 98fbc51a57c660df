//! opencti-client against the sandbox OpenCTI: connector registration, ping and reset, the stream
//! collection, indicator paging, and the live stream's recovery snapshot and resumption.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use opencti_client::{ConnectorInfo, ConnectorRegistration, EventKind, LiveStream, StreamState};
use serde_json::{Value, json};

use crate::common::{self, s};

const CONNECTOR: &str = "5c0d4f0e-0000-4000-8000-0000000000e2";

async fn snapshot_size(info: &sandbox::SandboxInfo) -> usize {
    let streams = common::get(format!("{}/_sandbox/streams", info.opencti_url)).await;
    let doc = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == info.live_stream_id.as_str())
        .expect("live stream")
        .clone();
    doc["snapshot_size"].as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_lifecycle_collection_and_indicator_paging() {
    let sb = common::start(common::config(5, 230)).await;
    let info = sb.info();
    let client = common::opencti(info);
    assert_eq!(client.health_check().await.expect("health"), "6.8.13");

    let reg = client
        .register_connector(&ConnectorRegistration {
            id: CONNECTOR.into(),
            name: "CrowdStrike e2e".into(),
            scope: vec!["crowdstrike".into()],
            ..Default::default()
        })
        .await
        .expect("register");
    assert_eq!(reg.id, CONNECTOR);
    assert_eq!(reg.state, None, "a new connector has no state");

    // Ping stores the state; registering again returns it (a restart resumes there).
    let state = StreamState {
        start_from: Some("1712736000123-0".into()),
        recover_until: Some("2024-04-10T08:00:00Z".into()),
    };
    let ping = client
        .ping_connector(CONNECTOR, Some(&state), &ConnectorInfo::default())
        .await
        .expect("ping");
    assert!(!ping.reset);
    assert_eq!(ping.state.as_ref(), Some(&state));
    let again = client
        .register_connector(&ConnectorRegistration {
            id: CONNECTOR.into(),
            name: "CrowdStrike e2e".into(),
            scope: vec!["crowdstrike".into()],
            ..Default::default()
        })
        .await
        .expect("register again");
    assert_eq!(again.state.as_ref(), Some(&state));
    let listed = common::get(format!("{}/_sandbox/connectors", info.opencti_url)).await;
    let me = listed["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == CONNECTOR)
        .expect("connector listed");
    assert_eq!(me["registrations"], 2);
    assert!(me["pings"].as_u64().unwrap() >= 1);

    // A reset in the UI: the next ping reports it and does not store the client's state.
    common::post(
        format!("{}/_sandbox/connectors/{CONNECTOR}/reset", info.opencti_url),
        json!({}),
    )
    .await;
    let ping = client
        .ping_connector(CONNECTOR, Some(&state), &ConnectorInfo::default())
        .await
        .expect("ping after reset");
    assert!(ping.reset, "{ping:?}");
    assert_eq!(ping.state, None);
    let fresh = StreamState {
        start_from: Some("0-0".into()),
        recover_until: None,
    };
    let ping = client
        .ping_connector(CONNECTOR, Some(&fresh), &ConnectorInfo::default())
        .await
        .expect("ping after the reset ping");
    assert!(!ping.reset);
    assert_eq!(ping.state.as_ref(), Some(&fresh));

    // The stream collection and its filters.
    let coll = client
        .stream_collection(&info.live_stream_id)
        .await
        .expect("collection");
    assert_eq!(coll.id, info.live_stream_id);
    assert!(coll.stream_live);
    let filters = coll.filters_json().expect("JSON filters").expect("filters");
    let expected: Value = serde_json::from_str(sandbox::opencti::DEFAULT_STREAM_FILTERS).unwrap();
    assert_eq!(filters, expected);

    // Paged indicators matching the collection's filters: each one once, as many as the snapshot.
    let nodes: Vec<_> = client
        .indicators()
        .filters(filters)
        .first(40)
        .stream()
        .try_collect()
        .await
        .expect("indicators");
    // The GraphQL list also returns inferred indicators, which the live stream (without
    // `with-inferences`) leaves out of its snapshot: count from the store.
    let store = common::get(format!("{}/_sandbox/indicators", info.opencti_url)).await;
    let want = store["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["revoked"] == false)
        .count();
    assert!(want > 40, "one page would prove nothing");
    assert!(want >= snapshot_size(info).await);
    assert_eq!(nodes.len(), want);
    let ids: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.standard_id.as_deref())
        .collect();
    assert_eq!(
        ids.len(),
        want,
        "an indicator twice, or without standard id"
    );
    assert!(
        nodes
            .iter()
            .all(|n| n.entity_type.as_deref() == Some("Indicator"))
    );
    sb.shutdown().await;
}

/// Deliveries of one indicator: the event ids it came with, and how many times it came.
#[derive(Debug, Default)]
struct Seen {
    ids: BTreeSet<String>,
    deliveries: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_snapshot_then_live_events_across_forced_closes() {
    const K: u64 = 25;
    const LIVE: usize = 12;
    let mut config = common::config(5, 150);
    config.opencti.heartbeat_interval = Duration::from_millis(200);
    config.opencti.faults.close_stream_every = Some(K);
    let sb = common::start(config).await;
    let info = sb.info().clone();
    let client = common::opencti(&info);
    let want = snapshot_size(&info).await;
    assert!(
        want as u64 > 3 * K,
        "the snapshot must span several connections"
    );

    let (mut events, cursor) = LiveStream::builder(client, info.live_stream_id.clone())
        .state(StreamState::first_run())
        .heartbeat_period(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build();

    let mut snapshot: BTreeMap<String, Seen> = BTreeMap::new();
    let mut live: BTreeMap<String, Seen> = BTreeMap::new();
    let mut heartbeats_after_live = 0usize;
    let mut created: BTreeSet<String> = BTreeSet::new();
    let run = async {
        while let Some(item) = events.next().await {
            let ev = item.expect("stream item");
            match ev.kind {
                EventKind::Heartbeat if !created.is_empty() => heartbeats_after_live += 1,
                EventKind::Create => {
                    let d = ev.data.as_ref().expect("envelope");
                    let id = d.stix_id().expect("stix id").to_owned();
                    if id.starts_with("indicator--") {
                        let map = if d.origin_referer() == Some("init-create") {
                            &mut snapshot
                        } else {
                            &mut live
                        };
                        let seen = map.entry(id).or_default();
                        seen.ids.insert(ev.id.clone());
                        seen.deliveries += 1;
                    }
                }
                _ => {}
            }
            cursor.ack(&ev.id);
            if snapshot.len() == want && created.is_empty() {
                // Snapshot complete: create indicators; they must arrive as live events.
                for _ in 0..LIVE {
                    let r = common::post(
                        format!("{}/_sandbox/indicators", info.opencti_url),
                        json!({}),
                    )
                    .await;
                    created.insert(s(&r["indicator"]["id"]).to_owned());
                }
            }
            // Done once every created indicator arrived and a few heartbeats followed (time
            // for a late duplicate to show up).
            if !created.is_empty()
                && created.iter().all(|c| live.contains_key(c))
                && heartbeats_after_live >= 3
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("snapshot and live events within 40 s");

    // Every matching indicator came in the snapshot, and each under one event id only: a
    // repeated delivery is the same event re-delivered after a reconnect, never a second event.
    assert_eq!(snapshot.len(), want, "every indicator of the snapshot");
    for (stix, seen) in snapshot.iter().chain(live.iter()) {
        assert_eq!(
            seen.ids.len(),
            1,
            "{stix} came under several event ids: {seen:?}"
        );
    }
    assert_eq!(
        live.keys().cloned().collect::<BTreeSet<_>>(),
        created,
        "live creates"
    );
    let faults = common::get(format!("{}/_sandbox/faults", info.opencti_url)).await;
    let closed = faults["injected"]["streams_closed"].as_u64().unwrap();
    assert!(closed >= 3, "the sandbox closed the stream {closed} times");
    let stats = cursor.stats();
    assert!(stats.reconnects >= 3, "{stats:?}");
    // Recovery pages `updated_at >= start` (reference opencti.md 1.7, 2.2: the boundary item is
    // re-sent on resume) and the client commits an id only once a later one arrived: a reconnect
    // re-delivers at most the last two events of the closed connection, never the whole history.
    let redelivered: usize = snapshot
        .values()
        .chain(live.values())
        .map(|s| s.deliveries - 1)
        .sum();
    assert!(
        redelivered as u64 <= 2 * stats.reconnects,
        "{redelivered} re-deliveries over {} reconnects",
        stats.reconnects
    );
    // The committed position has moved past the snapshot and the live events, except perhaps the
    // last id group (the client commits an id once a later one arrived, because dependency events
    // share the id of the event they precede): a restart would not replay the history.
    let state = cursor.state();
    let committed = state.start_from.clone().expect("committed id");
    let mut live_ids: Vec<&String> = live.values().flat_map(|s| s.ids.iter()).collect();
    live_ids.sort_by(|a, b| opencti_client::compare_event_ids(a, b).unwrap());
    let floor = live_ids[live_ids.len() - 2];
    assert_ne!(
        opencti_client::compare_event_ids(&committed, floor),
        Some(std::cmp::Ordering::Less),
        "committed {committed} is behind live event {floor}"
    );
    sb.shutdown().await;
}

/// Next event that is not a heartbeat (acknowledged), within 10 s.
async fn next_data(
    events: &mut opencti_client::LiveEvents,
    cursor: &opencti_client::CursorHandle,
) -> Result<opencti_client::StreamEvent, opencti_client::Error> {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open");
        match item {
            Ok(ev) if ev.kind == EventKind::Heartbeat || ev.kind == EventKind::Connected => {
                cursor.ack(&ev.id)
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_relabels_malformed_and_terminal_statuses() {
    let mut config = common::config(5, 20);
    config.opencti.heartbeat_interval = Duration::from_millis(300);
    let sb = common::start(config).await;
    let info = sb.info().clone();
    let client = common::opencti(&info);
    let base = &info.opencti_url;

    // Start after everything that exists: no snapshot, live events only.
    let stats = common::get(format!("{base}/_sandbox/stats")).await;
    let state = StreamState {
        start_from: Some(s(&stats["last_event_id"]).to_owned()),
        recover_until: None,
    };
    let (mut events, cursor) = LiveStream::builder(client.clone(), info.live_stream_id.clone())
        .state(state)
        .heartbeat_period(Duration::from_millis(300))
        .build();

    // A malformed data event is an error item; the stream goes on.
    common::post(
        format!("{base}/_sandbox/events/raw"),
        json!({"event": "create", "data": "{not json"}),
    )
    .await;
    match next_data(&mut events, &cursor).await {
        Err(opencti_client::Error::Malformed { id, event, .. }) => {
            assert_eq!(event, "create");
            assert!(!id.is_empty());
            cursor.ack(&id);
        }
        other => panic!("expected a malformed event, got {other:?}"),
    }

    // A score change: `update` with the patch.
    let created = common::post(format!("{base}/_sandbox/indicators"), json!({"score": 40})).await;
    let stix = s(&created["indicator"]["id"]).to_owned();
    // Dependencies (author, markings) come first as `create`, with the indicator's event id.
    let mut deps = Vec::new();
    let ev = loop {
        let ev = next_data(&mut events, &cursor).await.expect("create");
        assert_eq!(ev.kind, EventKind::Create);
        if ev.stix_id().is_some_and(|i| i.starts_with("indicator--")) {
            break ev;
        }
        deps.push(ev);
    };
    assert_eq!(ev.stix_id(), Some(stix.as_str()));
    assert!(
        deps.iter().all(|d| d.id == ev.id),
        "dependency ids differ: {deps:?}"
    );
    cursor.ack(&ev.id);
    let r = reqwest::Client::new()
        .patch(format!("{base}/_sandbox/indicators/{stix}"))
        .json(&json!({"score": 90}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let ev = next_data(&mut events, &cursor).await.expect("update");
    assert_eq!(ev.kind, EventKind::Update);
    let d = ev.data.as_ref().unwrap();
    assert_eq!(d.score(), Some(90));
    assert!(d.patch().is_some(), "update without context.patch");
    cursor.ack(&ev.id);

    // Revocation under the "Revoked = No" filter: SSE `delete` (the envelope still says update).
    let r = reqwest::Client::new()
        .patch(format!("{base}/_sandbox/indicators/{stix}"))
        .json(&json!({"revoked": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let ev = next_data(&mut events, &cursor).await.expect("revocation");
    assert_eq!(ev.kind, EventKind::Delete, "{ev:?}");
    assert_eq!(ev.stix_id(), Some(stix.as_str()));
    assert!(ev.data.as_ref().unwrap().revoked());
    cursor.ack(&ev.id);
    drop(events);

    // Terminal statuses: a bad token, an unknown collection, a stopped stream.
    let bad = opencti_client::OpenCtiClient::builder(
        base,
        secrecy::SecretString::from("wrong".to_owned()),
    )
    .build()
    .unwrap();
    let (mut ev, _) = LiveStream::builder(bad, info.live_stream_id.clone()).build();
    let e = ev.next().await.expect("an item").expect_err("bad token");
    assert!(e.is_terminal() && e.status() == Some(401), "{e:?}");
    assert!(ev.next().await.is_none(), "the stream goes on after a 401");
    let (mut ev, _) = LiveStream::builder(client.clone(), "no-such-stream").build();
    let e = ev
        .next()
        .await
        .expect("an item")
        .expect_err("unknown stream");
    assert!(e.is_terminal(), "{e:?}");
    let r = reqwest::Client::new()
        .patch(format!("{base}/_sandbox/streams/{}", info.live_stream_id))
        .json(&json!({"stream_live": false}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (mut ev, _) = LiveStream::builder(client, info.live_stream_id.clone()).build();
    let e = ev
        .next()
        .await
        .expect("an item")
        .expect_err("stopped stream");
    assert_eq!(e.status(), Some(410), "{e:?}");
    assert!(e.is_terminal());
    sb.shutdown().await;
}
