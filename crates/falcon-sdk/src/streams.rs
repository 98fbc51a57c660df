//! Event Streams (the "firehose"): discovery, one consumer per partition, typed events.
//!
//! Wire contract: `shared/reference/falcon-streams-actions-mssp.md` §1. Discovery
//! (`GET /sensors/entities/datafeed/v2?appId=`) returns one entry per partition with a `dataFeedURL` (it
//! already has a query string), a session token used as `Authorization: Token …` on the feed only, and
//! a refresh URL to POST (Bearer, JSON content type) before `refreshActiveSessionInterval` runs out. The
//! feed is a never-ending body of newline-separated JSON events `{"metadata":{…,"offset":N},"event":{…}}`
//! with bare `\r\n` keep-alive lines.
//!
//! [`EventStreams::consume`] returns a [`Stream`] that reads only when polled, holds at most one line
//! (bounded by [`ConsumerBuilder::max_line_bytes`]) plus one network chunk, refreshes the session on
//! its own timer while it waits for data, and reconnects after a cut from the offset after the last
//! event it delivered: first with the same session token, then (401) through a new discovery. A
//! malformed line is an error item; the stream goes on.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use tokio::time::Instant;
use url::Url;

use crate::client::FalconClient;
use crate::envelope::Envelope;
use crate::error::{DecodeDetail, Error, Result};
use crate::transport::ApiRequest;

const DISCOVER: &str = "/sensors/entities/datafeed/v2";
const REFRESH: &str = "/sensors/entities/datafeed-actions/v1";

/// Event Streams handler: `client.event_streams(app_id)`.
#[derive(Debug, Clone)]
pub struct EventStreams {
    client: FalconClient,
    app_id: String,
}

impl FalconClient {
    /// Event Streams for the connection label `app_id` (at most 32 of `A-Z a-z 0-9 _ . -`; one running
    /// consumer per appId and CID: a second discovery while a session is active finds no stream).
    pub fn event_streams(&self, app_id: impl Into<String>) -> EventStreams {
        EventStreams {
            client: self.clone(),
            app_id: app_id.into(),
        }
    }
}

/// One partition of the firehose, as discovery returned it.
#[derive(Clone)]
pub struct StreamInfo {
    /// Partition number (from the feed URL; the index in `resources[]` otherwise).
    pub partition: u32,
    /// The feed URL (absolute, with its `?appId=` query).
    pub data_feed_url: Url,
    /// The session token (`Authorization: Token …` on the feed).
    pub session_token: SecretString,
    /// The refresh URL (absolute, on the API host).
    pub refresh_url: Option<Url>,
    /// Refresh at least this often (seconds; 1800 in every sample).
    pub refresh_interval: Duration,
}

impl std::fmt::Debug for StreamInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamInfo")
            .field("partition", &self.partition)
            .field("data_feed_url", &self.data_feed_url.as_str())
            .field("session_token", &"[REDACTED]")
            .field("refresh_interval", &self.refresh_interval)
            .finish()
    }
}

#[derive(Debug, Deserialize, Default)]
struct SessionTokenWire {
    #[serde(default)]
    token: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AvailableStream {
    #[serde(default, rename = "dataFeedURL")]
    data_feed_url: String,
    #[serde(default)]
    session_token: SessionTokenWire,
    #[serde(default, rename = "refreshActiveSessionURL")]
    refresh_active_session_url: String,
    #[serde(default)]
    refresh_active_session_interval: Option<u64>,
}

/// Where a consumer starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Start {
    /// From the oldest retained event (`offset=0`).
    Beginning,
    /// At this offset, inclusive (Falcon's `offset` is inclusive).
    At(u64),
    /// After this offset: resume after the last event processed (sends `offset + 1`).
    After(u64),
    /// At the newest event (`whence=2`).
    Latest,
}

/// The `metadata` of an event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Customer id.
    #[serde(default, rename = "customerIDString")]
    pub customer_id: String,
    /// Offset in the partition: persist it, resume with [`Start::After`].
    #[serde(default, deserialize_with = "int_or_string")]
    pub offset: u64,
    /// Event type, e.g. `EppDetectionSummaryEvent`.
    #[serde(default)]
    pub event_type: String,
    /// Creation time, epoch milliseconds.
    #[serde(default, deserialize_with = "int_or_string")]
    pub event_creation_time: u64,
    /// Version (`1.0`).
    #[serde(default)]
    pub version: String,
}

/// A detection (`EppDetectionSummaryEvent`, or the legacy `DetectionSummaryEvent` through aliases).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetectionEvent {
    /// Same value as the Alerts API `composite_id` (legacy `DetectId`).
    #[serde(default, alias = "DetectId")]
    pub composite_id: String,
    /// Agent id (legacy `SensorId`).
    #[serde(default, alias = "SensorId")]
    pub agent_id: String,
    /// Host name (legacy `ComputerName`).
    #[serde(default, alias = "ComputerName")]
    pub hostname: String,
    /// Severity (1–100 for Epp events, 1–5 for the legacy event).
    #[serde(default, deserialize_with = "int_or_string")]
    pub severity: u64,
    /// `Informational` … `Critical`.
    #[serde(default)]
    pub severity_name: String,
    /// Detection name (legacy `DetectName`).
    #[serde(default, alias = "DetectName")]
    pub name: String,
    /// Tactic.
    #[serde(default)]
    pub tactic: String,
    /// Technique.
    #[serde(default)]
    pub technique: String,
    /// IOC type (`hash_sha256`, …).
    #[serde(default, rename = "IOCType")]
    pub ioc_type: String,
    /// IOC value.
    #[serde(default, rename = "IOCValue")]
    pub ioc_value: String,
    /// SHA-256 of the file.
    #[serde(default, rename = "SHA256String")]
    pub sha256: String,
    /// Process id (int or string on the wire).
    #[serde(default, deserialize_with = "int_or_string")]
    pub process_id: u64,
}

/// An incident (`IncidentSummaryEvent`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IncidentEvent {
    /// Incident id (`IncidentID` or `IncidentId`).
    #[serde(default, rename = "IncidentID", alias = "IncidentId")]
    pub incident_id: String,
    /// `open`, …
    #[serde(default)]
    pub state: String,
    /// Score.
    #[serde(default)]
    pub fine_score: f64,
}

/// An audit event (`AuthActivityAuditEvent`, `UserActivityAuditEvent`, `APIActivityAuditEvent`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditEvent {
    /// User id.
    #[serde(default)]
    pub user_id: String,
    /// Operation, e.g. `streamStarted`, `detection_update`.
    #[serde(default)]
    pub operation_name: String,
    /// Service, e.g. `Crowdstrike Streaming API`.
    #[serde(default)]
    pub service_name: String,
    /// Success.
    #[serde(default)]
    pub success: bool,
    /// Time, epoch seconds.
    #[serde(default, rename = "UTCTimestamp", deserialize_with = "int_or_string")]
    pub utc_timestamp: u64,
}

/// An RTR session start or end (`RemoteResponseSessionStartEvent`/`…EndEvent`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RtrSessionEvent {
    /// Session id.
    #[serde(default)]
    pub session_id: String,
    /// Host name (no aid in these events).
    #[serde(default)]
    pub hostname_field: String,
    /// User.
    #[serde(default)]
    pub user_name: String,
}

/// The typed body of an event; unknown types are kept raw.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventBody {
    /// `EppDetectionSummaryEvent` or `DetectionSummaryEvent`.
    Detection(Box<DetectionEvent>),
    /// `IncidentSummaryEvent`.
    Incident(Box<IncidentEvent>),
    /// `*ActivityAuditEvent`.
    Audit(Box<AuditEvent>),
    /// `RemoteResponseSessionStartEvent`.
    RtrSessionStart(Box<RtrSessionEvent>),
    /// `RemoteResponseSessionEndEvent`.
    RtrSessionEnd(Box<RtrSessionEvent>),
    /// Any other type: the `event` object as received.
    Other(serde_json::Value),
}

/// One event of the feed: its partition, metadata, typed body and raw `event` object.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// Partition it came from.
    pub partition: u32,
    /// Metadata (offset, type, creation time).
    pub metadata: Metadata,
    /// The typed body.
    pub body: EventBody,
}

fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or_default(),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or_default(),
        _ => 0,
    })
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    event: serde_json::Value,
}

fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> serde_json::Result<Box<T>> {
    serde_json::from_value(v).map(Box::new)
}

/// Parses one feed line (without its newline). `Ok(None)` for keep-alives and non-objects.
pub fn parse_line(partition: u32, line: &[u8]) -> Result<Option<StreamEvent>> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() || trimmed[0] != b'{' {
        return Ok(None);
    }
    let decode_err = |e: serde_json::Error| {
        Error::Decode(Box::new(DecodeDetail {
            path: String::new(),
            message: e.to_string(),
            endpoint: format!("event stream partition {partition}"),
            excerpt: Some(String::from_utf8_lossy(&trimmed[..trimmed.len().min(200)]).into()),
        }))
    };
    let l: Line = serde_json::from_slice(trimmed).map_err(decode_err)?;
    let ev = l.event;
    let body = match l.metadata.event_type.as_str() {
        "EppDetectionSummaryEvent" | "DetectionSummaryEvent" => {
            EventBody::Detection(typed(ev).map_err(decode_err)?)
        }
        "IncidentSummaryEvent" => EventBody::Incident(typed(ev).map_err(decode_err)?),
        t if t.ends_with("ActivityAuditEvent") => EventBody::Audit(typed(ev).map_err(decode_err)?),
        "RemoteResponseSessionStartEvent" => {
            EventBody::RtrSessionStart(typed(ev).map_err(decode_err)?)
        }
        "RemoteResponseSessionEndEvent" => EventBody::RtrSessionEnd(typed(ev).map_err(decode_err)?),
        _ => EventBody::Other(ev),
    };
    Ok(Some(StreamEvent {
        partition,
        metadata: l.metadata,
        body,
    }))
}

impl EventStreams {
    /// `GET /sensors/entities/datafeed/v2?appId=…&format=json`: one entry per partition. An empty list
    /// means the appId is already streaming (or its dead session has not timed out yet).
    pub async fn discover(&self) -> Result<Vec<StreamInfo>> {
        check_app_id(&self.app_id)?;
        let req = ApiRequest::get(DISCOVER)
            .query("appId", &self.app_id)
            .query("format", "json");
        let env: Envelope<Vec<AvailableStream>> = self.client.send_envelope(req).await?;
        env.resources
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let url = Url::parse(&s.data_feed_url).map_err(|e| {
                    Error::Decode(Box::new(DecodeDetail {
                        path: format!("resources[{i}].dataFeedURL"),
                        message: e.to_string(),
                        endpoint: format!("GET {DISCOVER}"),
                        excerpt: None,
                    }))
                })?;
                let partition = url
                    .path_segments()
                    .and_then(|mut p| p.next_back())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(i as u32);
                Ok(StreamInfo {
                    partition,
                    data_feed_url: url,
                    session_token: SecretString::from(s.session_token.token),
                    refresh_url: Url::parse(&s.refresh_active_session_url).ok(),
                    refresh_interval: Duration::from_secs(
                        s.refresh_active_session_interval.unwrap_or(1800).max(1),
                    ),
                })
            })
            .collect()
    }

    /// `POST /sensors/entities/datafeed-actions/v1/{partition}?action_name=refresh_active_stream_session`
    /// (Bearer, `Content-Type: application/json`, body `{}`: the gateway answers 415 without it).
    pub async fn refresh(&self, partition: u32) -> Result<()> {
        let req = ApiRequest::post(format!("{REFRESH}/{partition}"))
            .query("action_name", "refresh_active_stream_session")
            .query("appId", &self.app_id)
            .json(&serde_json::json!({}))?
            // Refreshing twice only extends the session twice.
            .idempotent(true);
        self.client.send_envelope::<serde_json::Value>(req).await?;
        Ok(())
    }

    /// A consumer of `partition`, starting at `start`. Call `.stream()` on it.
    pub fn consume(&self, partition: u32, start: Start) -> ConsumerBuilder {
        ConsumerBuilder {
            streams: self.clone(),
            partition,
            start,
            event_types: Vec::new(),
            max_line_bytes: 8 * 1024 * 1024,
            max_reconnects: 10,
        }
    }
}

fn check_app_id(app_id: &str) -> Result<()> {
    let ok = !app_id.is_empty()
        && app_id.len() <= 32
        && app_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "appId `{app_id}`: 1 to 32 characters of A-Z, a-z, 0-9, `_`, `.`, `-`"
        )))
    }
}

/// Builder of a partition consumer, from [`EventStreams::consume`].
#[derive(Debug, Clone)]
#[must_use = "call .stream()"]
pub struct ConsumerBuilder {
    streams: EventStreams,
    partition: u32,
    start: Start,
    event_types: Vec<String>,
    max_line_bytes: usize,
    max_reconnects: u32,
}

impl ConsumerBuilder {
    /// Server-side filter on event types (exact case, e.g. `EppDetectionSummaryEvent`).
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Longest line kept in memory (default 8 MiB); a longer one is an error item and is skipped.
    pub fn max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n.max(1024);
        self
    }

    /// Consecutive reconnections without an event before the stream ends with an error (default 10).
    pub fn max_reconnects(mut self, n: u32) -> Self {
        self.max_reconnects = n;
        self
    }

    /// The events, in offset order. Items are errors for malformed lines (the stream goes on) and, last,
    /// for a failure that reconnecting did not cure.
    pub fn stream(self) -> impl Stream<Item = Result<StreamEvent>> + Send + 'static {
        let state = Consumer {
            next: match self.start {
                Start::Beginning => Some(0),
                Start::At(n) => Some(n),
                Start::After(n) => Some(n.saturating_add(1)),
                Start::Latest => None,
            },
            cfg: self,
            session: None,
            body: None,
            buf: BytesMut::new(),
            skipping: false,
            failures: 0,
            done: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let item = st.next_item().await;
            if item.is_err() && st.failures > st.cfg.max_reconnects {
                st.done = true;
            }
            Some((item, st))
        })
    }
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

struct Session {
    info: StreamInfo,
    refresh_due: Instant,
}

struct Consumer {
    cfg: ConsumerBuilder,
    /// The offset to request on (re)connection: after the last delivered event.
    next: Option<u64>,
    session: Option<Session>,
    body: Option<Body>,
    buf: BytesMut,
    /// Discarding the rest of an over-long line.
    skipping: bool,
    failures: u32,
    done: bool,
}

impl Consumer {
    async fn next_item(&mut self) -> Result<StreamEvent> {
        loop {
            if let Some(item) = self.take_line() {
                match item {
                    Ok(Some(ev)) => {
                        self.next = Some(ev.metadata.offset.saturating_add(1));
                        self.failures = 0;
                        return Ok(ev);
                    }
                    Ok(None) => continue,
                    Err(e) => return Err(e),
                }
            }
            if self.body.is_none()
                && let Err(e) = self.connect().await
            {
                self.failures += 1;
                if self.failures > self.cfg.max_reconnects {
                    return Err(e);
                }
                tracing::warn!(error = %e, partition = self.cfg.partition, "event stream: reconnecting");
                tokio::time::sleep(backoff(self.failures)).await;
                continue;
            }
            let due = self.session.as_ref().map(|s| s.refresh_due);
            let body = self.body.as_mut().expect("connected");
            let chunk = match due {
                Some(due) => match tokio::time::timeout_at(due, body.next()).await {
                    Ok(c) => c,
                    Err(_) => {
                        self.refresh().await;
                        continue;
                    }
                },
                None => body.next().await,
            };
            match chunk {
                Some(Ok(bytes)) => self.push(&bytes)?,
                Some(Err(e)) => {
                    tracing::info!(error = %e, partition = self.cfg.partition, "event stream cut: reconnecting");
                    self.cut();
                }
                None => {
                    tracing::info!(
                        partition = self.cfg.partition,
                        "event stream closed: reconnecting"
                    );
                    self.cut();
                }
            }
        }
    }

    fn cut(&mut self) {
        self.body = None;
        self.buf.clear();
        self.skipping = false;
    }

    /// Appends a chunk, enforcing the line cap.
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let mut bytes = bytes;
        if self.skipping {
            match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.skipping = false;
                    bytes = &bytes[i + 1..];
                }
                None => return Ok(()),
            }
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cfg.max_line_bytes && !self.buf.contains(&b'\n') {
            self.buf.clear();
            self.skipping = true;
            return Err(Error::BodyTooLarge {
                endpoint: format!("event stream partition {} (one line)", self.cfg.partition),
                limit: self.cfg.max_line_bytes,
            });
        }
        Ok(())
    }

    fn take_line(&mut self) -> Option<Result<Option<StreamEvent>>> {
        let i = self.buf.iter().position(|b| *b == b'\n')?;
        let line = self.buf.split_to(i + 1);
        Some(parse_line(self.cfg.partition, &line))
    }

    async fn refresh(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let interval = s.info.refresh_interval;
        match self.cfg.streams.refresh(s.info.partition).await {
            Ok(()) => s.refresh_due = Instant::now() + interval.mul_f64(0.9),
            Err(e) => {
                // The session may be gone: the feed will close, and reconnecting re-discovers.
                tracing::warn!(error = %e, "event stream session refresh failed");
                s.refresh_due = Instant::now() + Duration::from_secs(30).min(interval / 4);
            }
        }
    }

    async fn connect(&mut self) -> Result<()> {
        // First reopen with the current session (a cut connection leaves it active), then re-discover.
        if let Some(s) = &self.session {
            let info = s.info.clone();
            match open(&self.cfg, self.next, &info).await {
                Ok(body) => {
                    self.body = Some(body);
                    return Ok(());
                }
                Err(e) if e.status() == Some(reqwest::StatusCode::UNAUTHORIZED) => {
                    self.session = None;
                }
                Err(e) => return Err(e),
            }
        }
        let found = self.cfg.streams.discover().await?;
        let info = found
            .into_iter()
            .find(|s| s.partition == self.cfg.partition)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "event streams: no partition {} for appId `{}` (none, or the appId is in use by another consumer)",
                    self.cfg.partition, self.cfg.streams.app_id
                ))
            })?;
        let body = open(&self.cfg, self.next, &info).await?;
        self.session = Some(Session {
            refresh_due: Instant::now() + info.refresh_interval.mul_f64(0.9),
            info,
        });
        self.body = Some(body);
        Ok(())
    }
}

async fn open(cfg: &ConsumerBuilder, next: Option<u64>, info: &StreamInfo) -> Result<Body> {
    let mut url = info.data_feed_url.clone();
    {
        let mut q = url.query_pairs_mut();
        match next {
            Some(n) => {
                q.append_pair("offset", &n.to_string());
            }
            None => {
                q.append_pair("whence", "2");
            }
        }
        if !cfg.event_types.is_empty() {
            q.append_pair("eventType", &cfg.event_types.join(","));
        }
    }
    let client = &cfg.streams.client;
    if crate::client::is_insecure(&url) && !client.inner.allow_insecure_http {
        return Err(Error::Config(format!(
            "event stream URL on {}: plain http is refused for a host that is not loopback",
            url.host_str().unwrap_or("")
        )));
    }
    let resp = client
        .inner
        .stream_http
        .get(url)
        .header(
            "authorization",
            format!("Token {}", info.session_token.expose_secret()),
        )
        .header("accept", "application/json")
        .send()
        .await
        .map_err(Error::from_reqwest)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Error::Api {
            status,
            retry_after: None,
            detail: Box::new(crate::error::ApiErrorDetail {
                endpoint: format!("GET event stream partition {}", info.partition),
                ..Default::default()
            }),
        });
    }
    Ok(Box::pin(resp.bytes_stream().map_err(Error::from_reqwest)))
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(200 * 2u64.pow(failures.min(7)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_typed_and_unknown_types_kept_raw() {
        let d = br#"{"metadata":{"customerIDString":"c","offset":7,"eventType":"EppDetectionSummaryEvent","eventCreationTime":1742584202000,"version":"1.0"},"event":{"AgentId":"a","Hostname":"WS-01","Severity":70,"CompositeId":"x:ind:a:1","ProcessId":"123"}}"#;
        let ev = parse_line(0, d).unwrap().unwrap();
        assert_eq!(ev.metadata.offset, 7);
        match ev.body {
            EventBody::Detection(d) => {
                assert_eq!(d.composite_id, "x:ind:a:1");
                assert_eq!(d.process_id, 123);
                assert_eq!(d.severity, 70);
            }
            other => panic!("{other:?}"),
        }
        let legacy = br#"{"metadata":{"offset":"8","eventType":"DetectionSummaryEvent"},"event":{"SensorId":"s","ComputerName":"h","DetectId":"ldt:s:1"}}"#;
        match parse_line(0, legacy).unwrap().unwrap().body {
            EventBody::Detection(d) => {
                assert_eq!((d.agent_id.as_str(), d.hostname.as_str()), ("s", "h"))
            }
            other => panic!("{other:?}"),
        }
        let other = br#"{"metadata":{"offset":9,"eventType":"CustomerIOCEvent"},"event":{"DomainName":"evil.example"}}"#;
        assert!(matches!(
            parse_line(0, other).unwrap().unwrap().body,
            EventBody::Other(_)
        ));
        assert!(parse_line(0, b"\r").unwrap().is_none());
        assert!(parse_line(0, b"400").unwrap().is_none());
        assert!(parse_line(0, b"{not json").is_err());
    }

    #[test]
    fn app_ids_are_checked() {
        assert!(check_app_id("triage-01_a.b").is_ok());
        assert!(check_app_id("").is_err());
        assert!(check_app_id(&"a".repeat(33)).is_err());
        assert!(check_app_id("a b").is_err());
    }
}
