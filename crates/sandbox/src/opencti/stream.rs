//! The live stream `GET /stream/{id}` (SSE), as `opencti.md` §1 describes the platform's handler.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::App;
use super::model::{Indicator, Stix};
use super::store::{Body as EventBody, EventId, Kind, LogEvent, StreamDef};
use crate::faults::StreamAction;

static INIT_CREATE: LazyLock<Value> = LazyLock::new(|| json!({"referer": "init-create"}));
static INIT_DEPENDENCIES: LazyLock<Value> =
    LazyLock::new(|| json!({"referer": "init-dependencies"}));

/// Flush the buffer to the socket once it holds this much.
const CHUNK: usize = 64 * 1024;
/// Events read from the log per batch.
const BATCH: usize = 512;

/// Connection parameters read from the query string or headers (`opencti.md` §1.2).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub(crate) start: Option<EventId>,
    pub(crate) recover: Option<EventId>,
    pub(crate) listen_delete: bool,
    pub(crate) no_dependencies: bool,
    pub(crate) with_inferences: bool,
    pub(crate) delay: Duration,
}

fn pick<'a>(
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    q: &str,
    hs: &[&str],
) -> Option<&'a str> {
    query.get(q).map(String::as_str).or_else(|| {
        hs.iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
    })
}

impl Params {
    pub(crate) fn read(
        query: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<Params, String> {
        let start = pick(query, headers, "from", &["from", "last-event-id"])
            .filter(|s| !s.is_empty())
            .map(EventId::parse_position)
            .transpose()?;
        let recover = pick(query, headers, "recover", &["recover", "recover-date"])
            .filter(|s| !s.is_empty())
            .map(EventId::parse_position)
            .transpose()?;
        if recover.is_some() && start.is_none() {
            return Err("Recovery mode is only possible with a start date.".into());
        }
        let no_dependencies = pick(query, headers, "no-dependencies", &["no-dependencies"])
            .or_else(|| pick(query, headers, "no-relationships", &["no-relationships"]))
            == Some("true");
        let delay = pick(query, headers, "delay", &["event-delay"])
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        Ok(Params {
            start,
            recover,
            listen_delete: pick(query, headers, "listen-delete", &["listen-delete"])
                != Some("false"),
            no_dependencies,
            with_inferences: pick(query, headers, "with-inferences", &["with-inferences"])
                == Some("true"),
            delay: Duration::from_millis(delay),
        })
    }
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

/// `GET /stream/{id}`.
pub(crate) async fn handler(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let def = if id == "live" {
        None
    } else {
        match app.store.stream(&id) {
            Some(d) => Some(d),
            None => return status(StatusCode::UNAUTHORIZED),
        }
    };
    let public = def.as_ref().is_some_and(|d| d.stream_public);
    if !public && !app.authorized(&headers) {
        return status(StatusCode::UNAUTHORIZED);
    }
    if def.as_ref().is_some_and(|d| !d.stream_live) {
        return status(StatusCode::GONE);
    }
    let params = match Params::read(&query, &headers) {
        Ok(p) => p,
        Err(message) => {
            tracing::debug!(%message, "stream request refused");
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let connection_id = uuid::Uuid::new_v4().to_string();
    tokio::spawn(produce(app.clone(), def, params, connection_id, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

enum Data<'a> {
    Stix(Stix<'a>),
    Object(&'a Value),
}

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Stix(x) => x.serialize(s),
            Data::Object(v) => v.serialize(s),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    version: &'static str,
    #[serde(rename = "type")]
    kind: &'a str,
    scope: &'static str,
    message: &'a str,
    origin: &'a Value,
    data: Data<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Value>,
    event_id: String,
}

/// Why a connection ends.
enum End {
    /// The client went away or the server stops.
    Gone,
}

struct Conn {
    app: App,
    def: Option<StreamDef>,
    params: Params,
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    sent: u64,
    last_id: Option<EventId>,
    deps_sent: HashSet<String>,
    heartbeat_every: Duration,
    next_heartbeat: Instant,
}

impl Conn {
    async fn flush(&mut self) -> Result<(), End> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + 4096),
        ));
        // A client that stops reading must not keep the server from shutting down.
        tokio::select! {
            sent = self.tx.send(chunk) => sent.map_err(|_| End::Gone),
            _ = stopped(self.app.stop.clone()) => Err(End::Gone),
        }
    }

    fn visible(&self, ind: &Indicator) -> bool {
        (self.params.with_inferences || !ind.is_inferred)
            && self
                .def
                .as_ref()
                .is_none_or(|d| d.visible(ind, &self.app.store.refs))
    }

    fn write_raw(&mut self, id: Option<EventId>, event: &str, data: &[u8]) {
        if let Some(id) = id {
            let _ = writeln!(self.buf, "id: {id}");
            self.last_id = Some(id);
        }
        let _ = writeln!(self.buf, "event: {event}");
        for line in data.split(|b| *b == b'\n') {
            self.buf.extend_from_slice(b"data: ");
            self.buf.extend_from_slice(line);
            self.buf.push(b'\n');
        }
        self.buf.push(b'\n');
    }

    fn write_envelope(&mut self, id: EventId, event: &str, env: &Envelope<'_>) {
        let _ = write!(self.buf, "id: {id}\nevent: {event}\ndata: ");
        serde_json::to_writer(&mut self.buf, env).expect("event serializes");
        self.buf.extend_from_slice(b"\n\n");
        self.last_id = Some(id);
    }

    /// Sends the author and marking objects `ind` refers to, once per connection, with `id`.
    fn write_dependencies(&mut self, id: EventId, ind: &Indicator) {
        let store = self.app.store.clone();
        let refs = &store.refs;
        let deps = ind
            .created_by
            .map(|k| (&refs.identities[k], "Organization"))
            .into_iter()
            .chain(
                ind.markings
                    .iter()
                    .map(|k| (&refs.markings[*k], "Marking-Definition")),
            );
        for (obj, label) in deps {
            let sid = obj["id"].as_str().unwrap_or_default();
            if !self.deps_sent.insert(sid.to_owned()) {
                continue;
            }
            let message = format!(
                "creates a {label} `{}`",
                obj["name"].as_str().unwrap_or_default()
            );
            let env = Envelope {
                version: "4",
                kind: "create",
                scope: "external",
                message: &message,
                origin: &INIT_DEPENDENCIES,
                data: Data::Object(obj),
                context: None,
                event_id: id.to_string(),
            };
            self.write_envelope(id, "create", &env);
        }
    }

    /// After each data event: faults, flushing, heartbeats.
    async fn after_event(&mut self, caught_up: Option<usize>) -> Result<(), End> {
        self.sent += 1;
        match self.app.faults.stream_action(self.sent) {
            StreamAction::Continue => {}
            StreamAction::Close => {
                self.flush().await?;
                return Err(End::Gone);
            }
            StreamAction::Stall => return self.stall().await,
        }
        if Instant::now() >= self.next_heartbeat {
            self.heartbeat(caught_up);
        }
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn stall(&mut self) -> Result<(), End> {
        self.flush().await?;
        tokio::select! {
            _ = stopped(self.app.stop.clone()) => {}
            _ = self.tx.closed() => {}
        }
        Err(End::Gone)
    }

    /// Writes a heartbeat: the last written id, or `<now>-0` when caught up with the log at `pos`.
    fn heartbeat(&mut self, caught_up: Option<usize>) {
        self.next_heartbeat = Instant::now() + self.heartbeat_every;
        let idle = caught_up.and_then(|pos| self.app.store.idle_heartbeat(pos));
        let id = match (idle, self.last_id) {
            (Some(i), Some(l)) => i.max(l),
            (Some(i), None) => i,
            (None, Some(l)) => l,
            (None, None) => return,
        };
        let date = format!("\"{}\"", id.date());
        self.write_raw(Some(id), "heartbeat", date.as_bytes());
    }

    async fn snapshot(&mut self, start: EventId, recover: EventId) -> Result<(), End> {
        let store = self.app.store.clone();
        let items = store.updated_between(start.ms as i64, recover.ms as i64);
        for ind in items {
            if !self.visible(&ind) {
                continue;
            }
            let id = EventId {
                ms: ind.updated_at.timestamp_millis().max(0) as u64,
                seq: 0,
            };
            self.write_dependencies(id, &ind);
            let message = format!("creates a Indicator `{}`", ind.name);
            let env = Envelope {
                version: "4",
                kind: "create",
                scope: "external",
                message: &message,
                origin: &INIT_CREATE,
                data: Data::Stix(Stix {
                    ind: &ind,
                    refs: &store.refs,
                }),
                context: None,
                event_id: id.to_string(),
            };
            self.write_envelope(id, "create", &env);
            self.after_event(None).await?;
        }
        Ok(())
    }

    /// Writes one log event as this connection sees it; returns whether something was sent.
    fn live_event(&mut self, ev: &LogEvent) -> bool {
        let store = self.app.store.clone();
        match &ev.body {
            EventBody::Raw { event, data } => {
                self.write_raw(Some(ev.id), event, data.as_bytes());
                true
            }
            EventBody::Indicator {
                kind,
                message,
                data,
                prev,
                context,
            } => {
                let now = self.visible(data);
                let sse = match kind {
                    Kind::Create | Kind::Merge => now.then_some(kind.as_str()),
                    Kind::Delete => (now && self.params.listen_delete).then_some("delete"),
                    Kind::Update => {
                        let before = prev.as_ref().is_some_and(|p| self.visible(p));
                        match (before, now) {
                            (true, true) => Some("update"),
                            (false, true) => Some("create"),
                            (true, false) if self.params.listen_delete => Some("delete"),
                            _ => None,
                        }
                    }
                };
                let Some(sse) = sse else { return false };
                if sse == "create" || sse == "merge" {
                    self.write_dependencies(ev.id, data);
                }
                let env = Envelope {
                    version: "4",
                    kind: kind.as_str(),
                    scope: "external",
                    message,
                    origin: store.origin(),
                    data: Data::Stix(Stix {
                        ind: data,
                        refs: &store.refs,
                    }),
                    context: context.as_ref(),
                    event_id: ev.id.to_string(),
                };
                self.write_envelope(ev.id, sse, &env);
                true
            }
        }
    }

    async fn run(&mut self, connection_id: &str) -> Result<(), End> {
        let store = self.app.store.clone();
        let (first, last, size) = store.log_info();
        let connected = json!({
            "lastEventId": last.to_string(),
            "firstEventId": first.to_string(),
            "firstEventDate": first.date(),
            "lastEventDate": last.date(),
            "streamSize": size,
            "connectionId": connection_id,
        });
        self.write_raw(None, "connected", connected.to_string().as_bytes());
        self.flush().await?;
        if self.app.faults.stream_action(0) == StreamAction::Stall {
            return self.stall().await;
        }
        let mut pos = match (self.params.start, self.params.recover) {
            (Some(start), Some(recover)) if recover > start => {
                self.snapshot(start, recover).await?;
                store.position_after(EventId {
                    ms: recover.ms,
                    seq: 0,
                })
            }
            (Some(start), _) => store.position_after(start),
            (None, _) => size,
        };
        let mut changed = store.subscribe();
        loop {
            changed.borrow_and_update();
            let batch = store.events_from(pos, BATCH);
            if batch.is_empty() {
                self.flush().await?;
                let sleep = tokio::time::sleep_until(self.next_heartbeat);
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = sleep => {
                        self.heartbeat(Some(pos));
                        self.flush().await?;
                    }
                    _ = stopped(self.app.stop.clone()) => return Err(End::Gone),
                    _ = self.tx.closed() => return Err(End::Gone),
                }
                continue;
            }
            let n = batch.len();
            for (k, ev) in batch.iter().enumerate() {
                pos += 1;
                if self.live_event(ev) {
                    let caught_up = (k + 1 == n).then_some(pos);
                    self.after_event(caught_up).await?;
                }
            }
            if !self.params.delay.is_zero() {
                self.flush().await?;
                tokio::time::sleep(self.params.delay).await;
            }
        }
    }
}

/// Resolves once the server stops.
pub(crate) async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn produce(
    app: App,
    def: Option<StreamDef>,
    params: Params,
    connection_id: String,
    tx: mpsc::Sender<Bytes>,
) {
    app.connections.fetch_add(1, Ordering::Relaxed);
    let heartbeat_every = app.heartbeat.max(Duration::from_millis(10));
    let mut conn = Conn {
        app: app.clone(),
        def,
        params,
        tx,
        buf: Vec::with_capacity(CHUNK + 4096),
        sent: 0,
        last_id: None,
        deps_sent: HashSet::new(),
        heartbeat_every,
        next_heartbeat: Instant::now() + heartbeat_every,
    };
    let _ = conn.run(&connection_id).await;
    app.connections.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_wins_over_headers_and_recover_needs_a_start() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("5-1"));
        headers.insert("listen-delete", HeaderValue::from_static("false"));
        headers.insert("no-dependencies", HeaderValue::from_static("true"));
        let mut query = HashMap::new();
        let p = Params::read(&query, &headers).unwrap();
        assert_eq!(p.start, Some(EventId { ms: 5, seq: 1 }));
        assert!(!p.listen_delete && p.no_dependencies && !p.with_inferences);
        query.insert("from".to_owned(), "0".to_owned());
        query.insert("recover".to_owned(), "2024-04-10T08:00:00Z".to_owned());
        let p = Params::read(&query, &headers).unwrap();
        assert_eq!(p.start, Some(EventId::default()));
        assert_eq!(
            p.recover,
            Some(EventId {
                ms: 1712736000000,
                seq: 0
            })
        );
        let only_recover: HashMap<String, String> =
            [("recover".to_owned(), "2024-04-10T08:00:00Z".to_owned())].into();
        assert!(Params::read(&only_recover, &HeaderMap::new()).is_err());
    }
}
