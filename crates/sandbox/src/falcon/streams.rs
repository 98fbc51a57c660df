//! Event Streams: discovery, session tokens that expire unless refreshed, refresh, and a JSON-lines feed
//! per partition with offsets. Reference: `falcon-streams-actions-mssp.md` §1 (lifecycle, the
//! per-(appId, partition) state machine of §1.6, inclusive `offset`, `whence=2`, `eventType`, `\r\n`
//! keep-alives, 401 for a stale token, 404 refresh after expiry, 415 without a JSON content type).
//!
//! Other modules publish events with [`publish`] (the event bus): generated alerts at start, host
//! actions as `UserActivityAuditEvent`s, and any test through `POST /_sandbox/streams/inject`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Shared, wire};

const POWERED_BY: &str = "FalconHose";
/// Events kept per partition (older ones are dropped: the retention of the real stream is unknown).
const RETENTION: usize = 500_000;
/// Lines per feed chunk.
const CHUNK_LINES: usize = 2_000;
const FEED_ROUTE: &str = "GET /sensors/entities/datafeed/v1/{partition}";
const KEEPALIVE: Duration = Duration::from_secs(15);

struct Stored {
    offset: u64,
    event_type: String,
    line: Bytes,
}

#[derive(Default)]
struct Part {
    events: VecDeque<Stored>,
    next_offset: u64,
}

#[derive(Clone)]
struct Session {
    token: String,
    deadline: Instant,
}

/// Event Streams state of one simulated tenant.
pub(crate) struct StreamsState {
    base_url: String,
    cid: String,
    ttl: Duration,
    parts: Vec<Mutex<Part>>,
    notify: tokio::sync::Notify,
    sessions: Mutex<HashMap<(String, u32), Session>>,
    cuts: AtomicU64,
}

impl StreamsState {
    pub(crate) fn new(base_url: &str, cid: &str, partitions: usize, ttl: Duration) -> Self {
        StreamsState {
            base_url: base_url.to_string(),
            cid: cid.to_lowercase(),
            ttl,
            parts: (0..partitions.max(1))
                .map(|_| {
                    Mutex::new(Part {
                        next_offset: 1,
                        ..Part::default()
                    })
                })
                .collect(),
            notify: tokio::sync::Notify::new(),
            sessions: Mutex::new(HashMap::new()),
            cuts: AtomicU64::new(0),
        }
    }
}

/// Publishes an event on a partition (chosen by a hash of the type and body when `None`): the event
/// bus the other simulated APIs feed.
pub(crate) fn publish(sim: &Shared, partition: Option<usize>, event_type: &str, event: Value) {
    let st = &sim.streams;
    let p = partition.unwrap_or(0) % st.parts.len();
    {
        let mut part = st.parts[p].lock().expect("stream lock");
        let offset = part.next_offset;
        part.next_offset += 1;
        let line = json!({
            "metadata": {
                "customerIDString": st.cid,
                "offset": offset,
                "eventType": event_type,
                "eventCreationTime": chrono::Utc::now().timestamp_millis(),
                "version": "1.0"
            },
            "event": event
        });
        let mut bytes = serde_json::to_vec(&line).expect("event serializes");
        bytes.push(b'\n');
        part.events.push_back(Stored {
            offset,
            event_type: event_type.to_string(),
            line: Bytes::from(bytes),
        });
        if part.events.len() > RETENTION {
            part.events.pop_front();
        }
    }
    st.notify.notify_waiters();
}

/// One `EppDetectionSummaryEvent` per alert of the store (called at start).
pub(crate) fn publish_alerts(sim: &Shared) {
    let events: Vec<Value> = sim
        .alerts
        .read()
        .expect("alerts lock")
        .alerts
        .iter()
        .map(|a| {
            json!({
                "CompositeId": a.composite_id, "AggregateId": a.aggregate_id, "AgentId": a.agent_id,
                "Hostname": a.hostname, "Severity": a.severity, "SeverityName": a.severity_name,
                "Tactic": a.tactic, "Technique": a.technique, "FileName": a.filename,
                "CommandLine": a.cmdline, "ProcessId": "4242", "Name": a.technique
            })
        })
        .collect();
    for e in events {
        publish(sim, None, "EppDetectionSummaryEvent", e);
    }
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/sensors/entities/datafeed/v2", get(discover))
        .route(
            "/sensors/entities/datafeed-actions/v1/{partition}",
            post(refresh),
        )
}

/// The feed (session-token auth, so outside the bearer middleware) and the control routes.
pub(crate) fn open_routes(sim: Shared) -> Router {
    Router::new()
        .route("/sensors/entities/datafeed/v1/{partition}", get(feed))
        .route("/_sandbox/streams/inject", post(inject))
        .route("/_sandbox/streams/expire", post(expire))
        .route("/_sandbox/streams/cut", post(cut))
        .with_state(sim)
}

type Q = Query<Vec<(String, String)>>;

async fn discover(State(sim): State<Shared>, Query(q): Q) -> Response {
    let Some(app) = wire::one(&q, "appId").filter(|a| !a.is_empty()) else {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "appId is required");
    };
    let st = &sim.streams;
    let now = Instant::now();
    let mut sessions = st.sessions.lock().expect("sessions lock");
    sessions.retain(|_, s| s.deadline > now);
    // One active consumer per (CID, appId): a second discovery finds no stream (reference §1.2).
    if sessions.keys().any(|(a, _)| a == app) {
        return wire::ok(StatusCode::OK, POWERED_BY, json!([]));
    }
    let mut out = Vec::new();
    for p in 0..st.parts.len() as u32 {
        let token = uuid::Uuid::new_v4().simple().to_string();
        sessions.insert(
            (app.to_string(), p),
            Session {
                token: token.clone(),
                deadline: now + st.ttl,
            },
        );
        let expiration =
            chrono::Utc::now() + chrono::Duration::from_std(st.ttl).unwrap_or_default();
        out.push(json!({
            "dataFeedURL": format!("{}/sensors/entities/datafeed/v1/{p}?appId={app}", st.base_url),
            "sessionToken": {"token": token, "expiration": expiration.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)},
            "refreshActiveSessionURL": format!("{}/sensors/entities/datafeed-actions/v1/{p}?appId={app}&action_name=refresh_active_stream_session", st.base_url),
            "refreshActiveSessionInterval": st.ttl.as_secs(),
        }));
    }
    wire::ok(StatusCode::OK, POWERED_BY, json!(out))
}

async fn refresh(
    State(sim): State<Shared>,
    Path(partition): Path<u32>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let json_ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return wire::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "crowdstrike-api-gateway",
            "415: Unsupported Media Type",
        );
    }
    if wire::one(&q, "action_name") != Some("refresh_active_stream_session") {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "invalid action_name");
    }
    let app = wire::one(&q, "appId").unwrap_or_default().to_string();
    let st = &sim.streams;
    let now = Instant::now();
    let mut sessions = st.sessions.lock().expect("sessions lock");
    match sessions.get_mut(&(app, partition)) {
        Some(s) if s.deadline > now => {
            s.deadline = now + st.ttl;
            wire::ok(StatusCode::OK, POWERED_BY, json!([]))
        }
        _ => wire::error(StatusCode::NOT_FOUND, POWERED_BY, "session not found"),
    }
}

struct Feed {
    sim: Shared,
    partition: usize,
    key: (String, u32),
    token: String,
    pos: u64,
    types: Vec<String>,
    cuts: u64,
    idle_since: Instant,
}

impl Feed {
    fn alive(&self) -> bool {
        let st = &self.sim.streams;
        if st.cuts.load(Ordering::SeqCst) != self.cuts {
            return false;
        }
        let sessions = st.sessions.lock().expect("sessions lock");
        sessions
            .get(&self.key)
            .is_some_and(|s| s.token == self.token && s.deadline > Instant::now())
    }

    /// Up to [`CHUNK_LINES`] lines from `pos` on (filtered by type), advancing `pos`.
    fn take(&mut self) -> Option<Bytes> {
        let part = self.sim.streams.parts[self.partition]
            .lock()
            .expect("stream lock");
        let first = part.events.front()?.offset;
        let start = self.pos.saturating_sub(first) as usize;
        if start >= part.events.len() {
            return None;
        }
        let mut out = Vec::new();
        for e in part.events.range(start..).take(CHUNK_LINES) {
            self.pos = e.offset + 1;
            if self.types.is_empty() || self.types.contains(&e.event_type) {
                out.extend_from_slice(&e.line);
            }
        }
        Some(Bytes::from(out))
    }
}

async fn feed(
    State(sim): State<Shared>,
    Path(partition): Path<u32>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Token "))
        .unwrap_or_default()
        .trim()
        .to_string();
    // The feed is outside the counting middleware (session-token auth): count it here.
    *sim.requests
        .lock()
        .expect("requests lock")
        .entry(FEED_ROUTE.to_string())
        .or_default() += 1;
    let app = wire::one(&q, "appId").unwrap_or_default().to_string();
    let key = (app, partition);
    let valid = sim
        .streams
        .sessions
        .lock()
        .expect("sessions lock")
        .get(&key)
        .is_some_and(|s| s.token == token && s.deadline > Instant::now());
    if !valid || partition as usize >= sim.streams.parts.len() {
        return wire::error(StatusCode::UNAUTHORIZED, POWERED_BY, "access denied");
    }
    let next_offset = sim.streams.parts[partition as usize]
        .lock()
        .expect("stream lock")
        .next_offset;
    let pos = if wire::one(&q, "whence") == Some("2") {
        next_offset
    } else {
        wire::one(&q, "offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0)
    };
    let types: Vec<String> = wire::multi(&q, "eventType");
    let state = Feed {
        cuts: sim.streams.cuts.load(Ordering::SeqCst),
        sim,
        partition: partition as usize,
        key,
        token,
        pos,
        types,
        idle_since: Instant::now(),
    };
    let body = futures::stream::unfold(state, |mut f| async move {
        loop {
            if !f.alive() {
                return None;
            }
            let sim = f.sim.clone();
            let notified = sim.streams.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(chunk) = f.take() {
                f.idle_since = Instant::now();
                if chunk.is_empty() {
                    continue;
                }
                return Some((Ok::<_, std::io::Error>(chunk), f));
            }
            if f.idle_since.elapsed() >= KEEPALIVE {
                f.idle_since = Instant::now();
                return Some((Ok(Bytes::from_static(b"\r\n")), f));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .expect("response")
}

#[derive(Deserialize)]
struct InjectBody {
    count: usize,
    #[serde(default)]
    partition: Option<usize>,
    #[serde(default)]
    event_type: Option<String>,
}

async fn inject(State(sim): State<Shared>, Json(b): Json<InjectBody>) -> Json<Value> {
    let event_type = b
        .event_type
        .unwrap_or_else(|| "EppDetectionSummaryEvent".to_string());
    for i in 0..b.count {
        publish(
            &sim,
            b.partition,
            &event_type,
            json!({
                "CompositeId": format!("{}:ind:{:032x}:{i}", sim.streams.cid, i),
                "AgentId": format!("{:032x}", i), "Hostname": format!("INJECTED-{i:06}"),
                "Severity": 50, "SeverityName": "Medium", "ProcessId": i
            }),
        );
    }
    let next: Vec<u64> = sim
        .streams
        .parts
        .iter()
        .map(|p| p.lock().expect("stream lock").next_offset)
        .collect();
    Json(json!({"injected": b.count, "next_offsets": next}))
}

/// Ends every session now (as the cloud does when a session is not refreshed): open feeds close, the
/// old tokens get 401, refresh gets 404, discovery issues new sessions.
async fn expire(State(sim): State<Shared>) -> Json<Value> {
    let n = {
        let mut s = sim.streams.sessions.lock().expect("sessions lock");
        let n = s.len();
        s.clear();
        n
    };
    sim.streams.notify.notify_waiters();
    Json(json!({"expired": n}))
}

/// Cuts every open feed connection (the sessions stay active: a client may reopen with its token).
async fn cut(State(sim): State<Shared>) -> Json<Value> {
    sim.streams.cuts.fetch_add(1, Ordering::SeqCst);
    sim.streams.notify.notify_waiters();
    Json(json!({"cut": true}))
}
