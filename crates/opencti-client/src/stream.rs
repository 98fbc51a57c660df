//! The resumable live-stream consumer: `GET /stream/{id}` under our own reconnect loop.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use eventsource_stream::{EventStream, EventStreamError};
use futures::stream::{BoxStream, Stream, StreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, HeaderValue};
use tokio::time::{Instant, Sleep};

use crate::client::{OpenCtiClient, map_reqwest};
use crate::cursor::CursorHandle;
use crate::error::{Error, chain};
use crate::event::{EventKind, StreamEvent};
use crate::state::StreamState;

/// The platform's default heartbeat period (`app:live_stream:heartbeat_period`).
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
/// Default read timeout = this many heartbeat periods without a byte.
pub const DEFAULT_READ_TIMEOUT_HEARTBEATS: u32 = 6;

/// Builds a live-stream consumer; see [`LiveStream::builder`].
pub struct LiveStream;

/// Options of a live stream.
#[derive(Clone)]
pub struct LiveStreamBuilder {
    client: OpenCtiClient,
    stream_id: String,
    state: StreamState,
    listen_delete: bool,
    no_dependencies: bool,
    with_inferences: bool,
    heartbeat_period: Duration,
    read_timeout_heartbeats: u32,
    read_timeout: Option<Duration>,
    backoff_min: Duration,
    backoff_max: Duration,
    auto_ack_heartbeats: bool,
}

impl fmt::Debug for LiveStreamBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveStreamBuilder")
            .field("client", &self.client)
            .field("stream_id", &self.stream_id)
            .field("state", &self.state)
            .field("listen_delete", &self.listen_delete)
            .field("no_dependencies", &self.no_dependencies)
            .field("with_inferences", &self.with_inferences)
            .field("read_timeout", &self.effective_read_timeout())
            .finish_non_exhaustive()
    }
}

impl LiveStream {
    /// A consumer of `GET {url}/stream/{stream_id}`. Defaults: pycti's first-run state
    /// ([`StreamState::first_run`]), `listen-delete: true`, `no-dependencies: true`,
    /// `with-inferences: false`, read timeout 6 × 5 s, reconnect backoff 1 s doubling to 60 s.
    pub fn builder(client: OpenCtiClient, stream_id: impl Into<String>) -> LiveStreamBuilder {
        LiveStreamBuilder {
            client,
            stream_id: stream_id.into(),
            state: StreamState::first_run(),
            listen_delete: true,
            no_dependencies: true,
            with_inferences: false,
            heartbeat_period: DEFAULT_HEARTBEAT_PERIOD,
            read_timeout_heartbeats: DEFAULT_READ_TIMEOUT_HEARTBEATS,
            read_timeout: None,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            auto_ack_heartbeats: true,
        }
    }
}

impl LiveStreamBuilder {
    /// Where to start (a state read from `registerConnector`, or [`StreamState::first_run`]).
    pub fn state(mut self, state: StreamState) -> Self {
        self.state = state;
        self
    }
    /// Header `listen-delete` (default `true`): `false` asks the platform not to send deletes.
    pub fn listen_delete(mut self, on: bool) -> Self {
        self.listen_delete = on;
        self
    }
    /// Header `no-dependencies` (default `true`).
    pub fn no_dependencies(mut self, on: bool) -> Self {
        self.no_dependencies = on;
        self
    }
    /// Header `with-inferences` (default `false`).
    pub fn with_inferences(mut self, on: bool) -> Self {
        self.with_inferences = on;
        self
    }
    /// The platform's heartbeat period (default 5 s); the read timeout is a multiple of it.
    pub fn heartbeat_period(mut self, period: Duration) -> Self {
        self.heartbeat_period = period;
        self
    }
    /// Read timeout as a number of heartbeat periods without any byte (default 6).
    pub fn read_timeout_heartbeats(mut self, n: u32) -> Self {
        self.read_timeout_heartbeats = n.max(1);
        self
    }
    /// Read timeout as a duration (overrides [`Self::read_timeout_heartbeats`]). Also bounds
    /// the wait for the response headers.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }
    /// Reconnect backoff: first wait `min`, doubling (with jitter) up to `max`. The backoff
    /// restarts after a connection that delivered an event.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }
    /// Whether the stream acknowledges heartbeat ids itself once every delivered data event is
    /// acknowledged (default `true`). With `false` the consumer acknowledges heartbeats too.
    pub fn auto_ack_heartbeats(mut self, on: bool) -> Self {
        self.auto_ack_heartbeats = on;
        self
    }

    fn effective_read_timeout(&self) -> Duration {
        self.read_timeout
            .unwrap_or(self.heartbeat_period * self.read_timeout_heartbeats)
    }

    /// The event stream and the handle on its cursor. Nothing is sent until the stream is
    /// polled; the stream reads from the network only when polled (a slow consumer slows
    /// reading, memory stays bounded).
    pub fn build(self) -> (LiveEvents, CursorHandle) {
        let cursor = CursorHandle::new(self.state.clone());
        let read_timeout = self.effective_read_timeout();
        let runner = Runner {
            backoff: new_backoff(self.backoff_min, self.backoff_max),
            opts: self,
            cursor: cursor.clone(),
            conn: None,
            epoch: 0,
            wait_before_connect: false,
            done: false,
            read_timeout,
        };
        let s = futures::stream::unfold(runner, |mut r| async move {
            let item = r.next().await?;
            Some((item, r))
        });
        (LiveEvents { inner: Box::pin(s) }, cursor)
    }
}

/// The live stream: `Stream<Item = Result<StreamEvent, StreamError>>`, `Unpin + Send`.
///
/// Items: every SSE message as a [`StreamEvent`]; [`Error::Malformed`] for a data event whose
/// JSON is broken (the stream goes on); [`Error::Unauthorized`], [`Error::NotFound`],
/// [`Error::Gone`] (or a bad configuration) once, after which the stream ends. Disconnects, read
/// timeouts and other HTTP errors are retried with backoff from the cursor's committed id and
/// are not yielded (they are logged with `tracing` and counted in
/// [`CursorHandle::stats`]).
///
/// [`StreamError`]: crate::StreamError
pub struct LiveEvents {
    inner: Pin<Box<dyn Stream<Item = Result<StreamEvent, Error>> + Send>>,
}

impl fmt::Debug for LiveEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveEvents")
    }
}

impl Stream for LiveEvents {
    type Item = Result<StreamEvent, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

fn new_backoff(min: Duration, max: Duration) -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .build()
}

enum ReadError {
    Transport(reqwest::Error),
    Idle(Duration),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Transport(e) => write!(f, "transport error: {e}"),
            ReadError::Idle(d) => write!(f, "no data for {d:?}"),
        }
    }
}

/// Byte stream that fails when no byte arrives for `timeout` while it is being waited on.
/// Time spent by the consumer between polls does not count.
struct IdleTimeout {
    inner: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    waiting: bool,
}

impl Stream for IdleTimeout {
    type Item = Result<Bytes, ReadError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.timeout;
            this.sleep.as_mut().reset(deadline);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => {
                this.waiting = false;
                Poll::Ready(item.map(|r| r.map_err(ReadError::Transport)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.waiting = false;
                    Poll::Ready(Some(Err(ReadError::Idle(this.timeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

type Conn = EventStream<IdleTimeout>;

struct Runner {
    opts: LiveStreamBuilder,
    cursor: CursorHandle,
    conn: Option<Pin<Box<Conn>>>,
    backoff: backon::ExponentialBackoff,
    epoch: u64,
    wait_before_connect: bool,
    done: bool,
    read_timeout: Duration,
}

impl Runner {
    async fn next(&mut self) -> Option<Result<StreamEvent, Error>> {
        loop {
            if self.done {
                return None;
            }
            let epoch = self.cursor.lock().epoch;
            if epoch != self.epoch {
                tracing::info!("live stream cursor reset, reconnecting");
                self.epoch = epoch;
                self.conn = None;
                self.wait_before_connect = false;
                self.backoff = new_backoff(self.opts.backoff_min, self.opts.backoff_max);
            }
            let Some(conn) = self.conn.as_mut() else {
                if self.wait_before_connect {
                    let wait = self.backoff.next().unwrap_or(self.opts.backoff_max);
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "live stream reconnect backoff"
                    );
                    tokio::time::sleep(wait).await;
                    self.cursor.lock().stats.reconnects += 1;
                }
                match self.connect().await {
                    Ok(c) => {
                        self.cursor.lock().stats.connections += 1;
                        self.conn = Some(Box::pin(c));
                    }
                    Err(e) if e.is_terminal() => {
                        tracing::error!(error = %chain(&e), "live stream refused");
                        self.done = true;
                        return Some(Err(e));
                    }
                    Err(e) => {
                        tracing::warn!(error = %chain(&e), status = ?e.status(), "live stream connection failed");
                        self.wait_before_connect = true;
                    }
                }
                continue;
            };
            match conn.next().await {
                None => {
                    tracing::warn!("live stream closed by the server, reconnecting");
                    self.conn = None;
                    self.wait_before_connect = true;
                }
                Some(Err(e)) => {
                    if let EventStreamError::Transport(ReadError::Idle(_)) = &e {
                        self.cursor.lock().stats.read_timeouts += 1;
                    }
                    tracing::warn!(error = %e, "live stream read failed, reconnecting");
                    self.conn = None;
                    self.wait_before_connect = true;
                }
                Some(Ok(ev)) => {
                    // A connection that delivers is healthy: the next failure starts the backoff over.
                    self.backoff = new_backoff(self.opts.backoff_min, self.opts.backoff_max);
                    // An epoch change while we were reading: drop this event, reconnect from the new state.
                    if self.cursor.lock().epoch != self.epoch {
                        continue;
                    }
                    return Some(self.deliver(&ev.id, &ev.event, &ev.data));
                }
            }
        }
    }

    fn deliver(&mut self, id: &str, name: &str, data: &str) -> Result<StreamEvent, Error> {
        let parsed = StreamEvent::parse(id, name, data);
        let mut c = self.cursor.lock();
        c.stats.events += 1;
        match &parsed {
            Ok(ev) => match ev.kind {
                EventKind::Connected => {}
                EventKind::Heartbeat | EventKind::ConsumerMetrics => {
                    c.delivered(id, true);
                    if self.opts.auto_ack_heartbeats {
                        c.heartbeat(id);
                    }
                }
                EventKind::NoRecover => {
                    tracing::warn!(
                        "live stream recovery skipped by the platform; switching to live-only mode"
                    );
                    c.no_recover();
                }
                _ => c.delivered(id, false),
            },
            Err(e) => {
                tracing::warn!(error = %chain(e), id, event = name, "malformed live stream event");
                c.stats.malformed += 1;
                c.delivered(id, false);
            }
        }
        parsed
    }

    async fn connect(&mut self) -> Result<Conn, Error> {
        let client = &self.opts.client;
        let mut url = client.endpoint(&["stream", &self.opts.stream_id]);
        let state = self.cursor.state();
        if let Some(recover) = state.recover() {
            // pycti appends `?recover=<value>` verbatim; only escape what would change its meaning.
            let v = recover
                .replace('%', "%25")
                .replace('+', "%2B")
                .replace('&', "%26");
            url.set_query(Some(&format!("recover={v}")));
        }
        let bool_str = |b: bool| if b { "true" } else { "false" };
        let mut req = client.inner.http.get(url.clone());
        if client.inner.custom_headers_on_stream {
            req = req.headers(client.inner.custom_headers.clone());
        }
        let last_event_id = HeaderValue::from_str(state.last_event_id()).map_err(|_| {
            Error::config("the stream state's start_from is not a valid header value")
        })?;
        let req = req
            .header(AUTHORIZATION, client.bearer()?)
            .header("listen-delete", bool_str(self.opts.listen_delete))
            .header("no-dependencies", bool_str(self.opts.no_dependencies))
            .header("with-inferences", bool_str(self.opts.with_inferences))
            .header(CACHE_CONTROL, "no-cache")
            .header(ACCEPT, "text/event-stream")
            .header("Last-Event-ID", last_event_id);
        tracing::info!(
            live_stream_url = %crate::client::redact_url(url.as_str()),
            last_event_id = state.last_event_id(),
            listen_delete = self.opts.listen_delete,
            no_dependencies = self.opts.no_dependencies,
            with_inferences = self.opts.with_inferences,
            "starting to listen stream events"
        );
        let resp = match tokio::time::timeout(self.read_timeout, req.send()).await {
            Err(_) => return Err(Error::Timeout(self.read_timeout)),
            Ok(r) => r.map_err(|e| map_reqwest(e, self.read_timeout))?,
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let body = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(Error::from_status(status, &body));
        }
        let bytes = IdleTimeout {
            inner: resp.bytes_stream().boxed(),
            sleep: Box::pin(tokio::time::sleep(self.read_timeout)),
            timeout: self.read_timeout,
            waiting: false,
        };
        Ok(EventStream::new(bytes))
    }
}
