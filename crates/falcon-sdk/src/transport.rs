//! The single request path: auth header, retries with backoff, rate-limit handling, decoding.
//!
//! Crate-internal users (handlers, `rtr`) build an [`ApiRequest`] and call one of
//! [`FalconClient::execute`], [`FalconClient::send_json`], [`FalconClient::send_envelope`] or
//! [`FalconClient::send_stream`].

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::client::{FalconClient, join_path};
use crate::envelope::Envelope;
use crate::error::{ApiErrorDetail, DecodeDetail, Error, Result, RetryKind};

/// Builds a fresh multipart form for each attempt (multipart bodies cannot be cloned).
pub(crate) type FormFactory =
    Arc<dyn Fn() -> Result<reqwest::multipart::Form> + Send + Sync + 'static>;

/// Request body.
#[derive(Clone, Default)]
pub(crate) enum Body {
    /// No body (a JSON content type is still sent on POST/PATCH/PUT, as Falcon expects).
    #[default]
    Empty,
    /// A JSON body, serialized once.
    Json(Bytes),
    /// `application/x-www-form-urlencoded` pairs.
    Form(Vec<(String, String)>),
    /// A multipart body rebuilt by the factory for every attempt.
    Multipart(FormFactory),
}

/// One API call, described independently of any attempt so that it can be retried.
///
/// ```text
/// let req = ApiRequest::post("/real-time-response/combined/batch-init-session/v1")
///     .query("timeout", 30)
///     .json(&body)?
///     .idempotent(false);
/// let out: BatchInitWire = client.send_json(req).await?;
/// ```
#[derive(Clone)]
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Body,
    pub(crate) idempotent: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) accept: Vec<StatusCode>,
}

impl fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

#[allow(dead_code)]
impl ApiRequest {
    /// A request with `method` on `path` (e.g. `/devices/queries/devices/v1`, relative to the base URL).
    /// GET, HEAD, PUT and DELETE default to idempotent; POST and PATCH do not.
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        ApiRequest {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Body::Empty,
            idempotent,
            timeout: None,
            accept: Vec::new(),
        }
    }

    /// GET `path`.
    pub(crate) fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// POST `path` (not idempotent unless marked).
    pub(crate) fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    /// PATCH `path` (not idempotent unless marked).
    pub(crate) fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }

    /// DELETE `path`.
    pub(crate) fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// Appends a query parameter (repeat the call for repeated keys such as `ids`). Booleans print as
    /// lowercase `true`/`false`, as Falcon requires.
    pub(crate) fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// Appends a query parameter when `value` is `Some`.
    pub(crate) fn query_opt(self, key: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.query(key, v),
            None => self,
        }
    }

    /// Appends `key=v` for each value (`collectionFormat: multi`).
    pub(crate) fn query_all<I, V>(mut self, key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        for v in values {
            self.query.push((key.to_string(), v.to_string()));
        }
        self
    }

    /// Sets a JSON body (serialized now, reused by every attempt).
    pub(crate) fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::InvalidArgument(format!("cannot serialize request body: {e}")))?;
        self.body = Body::Json(Bytes::from(bytes));
        Ok(self)
    }

    /// Sets a form body.
    pub(crate) fn form(mut self, pairs: Vec<(String, String)>) -> Self {
        self.body = Body::Form(pairs);
        self
    }

    /// Sets a multipart body built afresh by `factory` for each attempt.
    pub(crate) fn multipart<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> Result<reqwest::multipart::Form> + Send + Sync + 'static,
    {
        self.body = Body::Multipart(Arc::new(factory));
        self
    }

    /// Marks the call idempotent (retried on 5xx/timeouts) or not (retried only when provably not sent:
    /// connect failure, 429).
    pub(crate) fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// Per-attempt timeout overriding [`crate::Settings::request_timeout`] (e.g. RTR `timeout` + margin).
    pub(crate) fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Treats `status` as a response to hand back rather than an error (e.g. IOC create's 400 carrying
    /// per-item reports). Accepted statuses are never retried.
    pub(crate) fn accept_status(mut self, status: StatusCode) -> Self {
        self.accept.push(status);
        self
    }

    /// `METHOD /path`, for logs and errors (never the query string).
    pub(crate) fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Rate-limit state shared by all clones of a client.
pub(crate) struct RateState {
    limit: AtomicU64,
    remaining: AtomicU64,
    cooldown_until: Mutex<Option<Instant>>,
    last_retry_after: Mutex<Option<SystemTime>>,
    throttled: AtomicU64,
    retries: AtomicU64,
    slowdowns: AtomicU64,
}

const UNSET: u64 = u64::MAX;

impl Default for RateState {
    fn default() -> Self {
        RateState {
            limit: AtomicU64::new(UNSET),
            remaining: AtomicU64::new(UNSET),
            cooldown_until: Mutex::new(None),
            last_retry_after: Mutex::new(None),
            throttled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            slowdowns: AtomicU64::new(0),
        }
    }
}

impl RateState {
    fn get(a: &AtomicU64) -> Option<u64> {
        match a.load(Ordering::Relaxed) {
            UNSET => None,
            v => Some(v),
        }
    }
}

/// Observable rate-limit state of a client ([`FalconClient::rate_limit`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// Last `X-RateLimit-Limit` seen (requests per minute).
    pub limit: Option<u64>,
    /// Last `X-RateLimit-Remaining` seen.
    pub remaining: Option<u64>,
    /// Last `X-RateLimit-RetryAfter` seen (on a 429).
    pub retry_after: Option<SystemTime>,
    /// True while a shared 429 cooldown is in force.
    pub cooling_down: bool,
    /// 429 responses received.
    pub throttled_responses: u64,
    /// Retries performed (all reasons).
    pub retries: u64,
    /// Calls delayed by the proactive slow-down.
    pub slowdowns: u64,
}

pub(crate) fn record_rate_headers(rate: &RateState, headers: &HeaderMap) {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(l) = num("x-ratelimit-limit") {
        rate.limit.store(l, Ordering::Relaxed);
    }
    if let Some(r) = num("x-ratelimit-remaining") {
        rate.remaining.store(r, Ordering::Relaxed);
    }
}

/// Parses `X-RateLimit-RetryAfter`: an epoch timestamp in seconds (every SDK reads it so). Values too large
/// to be seconds (> 10^11) are read as milliseconds, as the spec text claims.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<SystemTime> {
    let raw = headers.get("x-ratelimit-retryafter")?.to_str().ok()?.trim();
    let v: f64 = raw.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let secs = if v > 1e11 { v / 1000.0 } else { v };
    // A wire value beyond what `Duration`/`SystemTime` hold is ignored, not a panic.
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

/// How long to wait after a 429: until the server's epoch hint (at least 1 s, at most `max`), else the
/// backoff delay (at least 1 s).
pub(crate) fn throttle_wait(
    retry_after: Option<SystemTime>,
    backoff: Duration,
    max: Duration,
) -> Duration {
    let hint = retry_after.map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
    hint.unwrap_or(backoff)
        .clamp(Duration::from_secs(1), max.max(Duration::from_secs(1)))
}

fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let mut out: String = s.chars().take(DecodeDetail::EXCERPT_LEN).collect();
    if s.chars().count() > DecodeDetail::EXCERPT_LEN {
        out.push('…');
    }
    out
}

/// Decodes `body` as `T`, reporting the JSON path and a body excerpt on failure.
pub(crate) fn decode_slice<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        Error::Decode(Box::new(DecodeDetail {
            path: e.path().to_string(),
            message: e.inner().to_string(),
            endpoint: endpoint.to_string(),
            excerpt: Some(excerpt(body)),
        }))
    })
}

/// Largest error body read (the rest is dropped: an error body is only for a message and a trace id).
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// Reads a body chunk by chunk, at most `limit` bytes: `Ok(Err(prefix))` when the body is larger (the
/// first `limit` bytes), so that a hostile or broken server cannot exhaust memory.
pub(crate) async fn read_capped(
    resp: reqwest::Response,
    limit: usize,
) -> Result<std::result::Result<Bytes, Bytes>> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(Err(Bytes::new()));
    }
    let mut buf = bytes::BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Error::from_reqwest)?;
        if buf.len() + chunk.len() > limit {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok(Err(buf.freeze()));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(buf.freeze()))
}

/// Reads a success body through [`crate::Settings::max_response_bytes`].
pub(crate) async fn read_body(
    client: &FalconClient,
    endpoint: &str,
    resp: reqwest::Response,
) -> Result<Bytes> {
    let limit = client.inner.settings.max_response_bytes;
    read_capped(resp, limit)
        .await?
        .map_err(|_| Error::BodyTooLarge {
            endpoint: endpoint.to_string(),
            limit,
        })
}

async fn error_from_response(endpoint: String, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = match read_capped(resp, MAX_ERROR_BODY).await {
        Ok(Ok(b)) | Ok(Err(b)) => b,
        Err(_) => Bytes::new(),
    };
    let env: Option<Envelope<serde_json::Value>> = serde_json::from_slice(&body).ok();
    let trace_id = env
        .as_ref()
        .and_then(|e| e.meta.trace_id.clone())
        .or_else(|| {
            headers
                .get("x-cs-traceid")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    let body_excerpt = match &env {
        Some(e) if !e.errors.is_empty() => None,
        _ if body.is_empty() => None,
        _ => Some(excerpt(&body)),
    };
    Error::Api {
        status,
        retry_after: parse_retry_after(&headers),
        detail: Box::new(ApiErrorDetail {
            errors: env.map(|e| e.errors).unwrap_or_default(),
            trace_id,
            endpoint,
            body_excerpt,
        }),
    }
}

/// Low-cardinality retry reason for metrics.
fn reason_label(e: &Error) -> &'static str {
    match e.retry_kind() {
        RetryKind::Throttled => "throttled",
        _ => match e {
            Error::Api { .. } | Error::Auth { .. } => "server_error",
            Error::Timeout { .. } => "timeout",
            _ => "transport",
        },
    }
}

fn reason(e: &Error) -> String {
    match e {
        Error::Api { status, .. } => format!("http {}", status.as_u16()),
        Error::Auth {
            status: Some(s), ..
        } => format!("token endpoint http {}", s.as_u16()),
        Error::Timeout { .. } => "timeout".into(),
        Error::Transport { not_sent: true, .. } => "connect error".into(),
        Error::Transport { .. } => "transport error".into(),
        other => other.to_string(),
    }
}

impl FalconClient {
    /// Current rate-limit state (last headers seen, cooldown, counters).
    pub fn rate_limit(&self) -> RateLimitSnapshot {
        let r = &self.inner.rate;
        let cooling = r
            .cooldown_until
            .lock()
            .expect("lock")
            .is_some_and(|u| u > Instant::now());
        RateLimitSnapshot {
            limit: RateState::get(&r.limit),
            remaining: RateState::get(&r.remaining),
            retry_after: *r.last_retry_after.lock().expect("lock"),
            cooling_down: cooling,
            throttled_responses: r.throttled.load(Ordering::Relaxed),
            retries: r.retries.load(Ordering::Relaxed),
            slowdowns: r.slowdowns.load(Ordering::Relaxed),
        }
    }

    /// Waits out the shared 429 cooldown, then slows down when the remaining budget is low.
    async fn pace(&self) {
        let r = &self.inner.rate;
        loop {
            let until = *r.cooldown_until.lock().expect("lock");
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => break,
            }
        }
        let s = &self.inner.settings;
        if let Some(rem) = RateState::get(&r.remaining) {
            let delay = if rem <= s.slow_down_remaining / 2 {
                s.slow_down_delay * 2
            } else if rem <= s.slow_down_remaining {
                s.slow_down_delay
            } else {
                return;
            };
            r.slowdowns.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                remaining = rem,
                delay_ms = delay.as_millis() as u64,
                "rate limit budget low: slowing down"
            );
            tokio::time::sleep(delay).await;
        }
    }

    #[cfg(test)]
    async fn pace_owned(self) {
        self.pace().await
    }

    fn start_cooldown(&self, wait: Duration, retry_after: Option<SystemTime>) {
        let r = &self.inner.rate;
        let until = Instant::now() + wait;
        let mut c = r.cooldown_until.lock().expect("lock");
        if c.is_none_or(|u| u < until) {
            *c = Some(until);
        }
        if retry_after.is_some() {
            *r.last_retry_after.lock().expect("lock") = retry_after;
        }
    }

    async fn attempt(&self, req: &ApiRequest) -> (Result<reqwest::Response>, Option<u64>) {
        let token = match self.bearer().await {
            Ok(t) => t,
            Err(e) => return (Err(e), None),
        };
        let generation = Some(token.generation);
        let url = match join_path(&self.inner.base(), &req.path) {
            Ok(mut u) => {
                if !req.query.is_empty() {
                    u.query_pairs_mut().extend_pairs(req.query.iter());
                }
                u
            }
            Err(e) => return (Err(e), generation),
        };
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), url)
            .bearer_auth(token.secret.expose_secret());
        if let Some(t) = req.timeout {
            rb = rb.timeout(t);
        }
        rb = match &req.body {
            Body::Empty => {
                if matches!(req.method, Method::POST | Method::PATCH | Method::PUT) {
                    rb.header(reqwest::header::CONTENT_TYPE, "application/json")
                } else {
                    rb
                }
            }
            Body::Json(b) => rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            Body::Form(pairs) => rb.form(pairs),
            Body::Multipart(factory) => match factory() {
                Ok(form) => rb.multipart(form),
                Err(e) => return (Err(e), generation),
            },
        };
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return (Err(Error::from_reqwest(e)), generation),
        };
        record_rate_headers(&self.inner.rate, resp.headers());
        let status = resp.status();
        if status.is_success() || req.accept.contains(&status) {
            return (Ok(resp), generation);
        }
        (
            Err(error_from_response(req.endpoint(), resp).await),
            generation,
        )
    }

    /// Sends `req` through the auth, retry and rate-limit stack and returns the response (2xx or an
    /// accepted status) with its body unread.
    ///
    /// * The bearer token is taken from the cache (refreshed before expiry, single flight); a 401 drops it
    ///   and retries once with a new token.
    /// * 429 waits until `X-RateLimit-RetryAfter` (epoch seconds) and makes every concurrent call wait too;
    ///   5xx, timeouts and connection errors back off exponentially with jitter.
    /// * Non-idempotent requests are retried only when provably not sent (connect error, 429).
    /// * Retries stop at [`crate::Settings::max_attempts`] or [`crate::Settings::max_retry_time`] with
    ///   [`Error::RetriesExhausted`].
    pub(crate) async fn execute(&self, req: ApiRequest) -> Result<reqwest::Response> {
        let s = &self.inner.settings;
        let start = Instant::now();
        let mut backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(s.initial_backoff)
            .with_max_delay(s.max_backoff)
            .without_max_times()
            .build();
        let mut attempt: u32 = 0;
        let mut refreshed_after_401 = false;
        loop {
            attempt += 1;
            self.pace().await;
            let (result, generation) = self.attempt(&req).await;
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if err.status() == Some(StatusCode::UNAUTHORIZED)
                && matches!(err, Error::Api { .. })
                && !refreshed_after_401
            {
                refreshed_after_401 = true;
                if let Some(g) = generation {
                    self.inner.auth.invalidate(g);
                }
                tracing::info!(
                    endpoint = %req.endpoint(),
                    attempt,
                    "401 from falcon: refreshing the token and retrying once"
                );
                attempt -= 1;
                continue;
            }
            let kind = err.retry_kind();
            if kind == RetryKind::No {
                return Err(err);
            }
            // No generation means the failure happened while getting a token: the call itself was not sent.
            let not_sent = generation.is_none() || err.is_not_sent();
            if !req.idempotent && !not_sent {
                return Err(err);
            }
            let mut wait = backoff.next().unwrap_or(s.max_backoff);
            if generation.is_none() {
                // A failed token request is shared for a short window: retrying sooner would only get
                // the shared error again.
                wait = wait.max(self.inner.auth.failure_remaining(s.token_failure_window));
            }
            if kind == RetryKind::Throttled {
                self.inner.rate.throttled.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("falcon_sdk_throttled_total").increment(1);
                wait = throttle_wait(err.retry_after(), wait, s.max_rate_limit_wait);
                self.start_cooldown(wait, err.retry_after());
            }
            let elapsed = start.elapsed();
            if attempt >= s.max_attempts || elapsed + wait > s.max_retry_time {
                tracing::warn!(
                    endpoint = %req.endpoint(),
                    attempts = attempt,
                    elapsed_ms = elapsed.as_millis() as u64,
                    reason = %reason(&err),
                    "falcon request failed: retry budget exhausted"
                );
                metrics::counter!("falcon_sdk_retry_budget_exhausted_total").increment(1);
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    elapsed,
                    last: Box::new(err),
                });
            }
            self.inner.rate.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("falcon_sdk_retries_total", "reason" => reason_label(&err))
                .increment(1);
            tracing::warn!(
                endpoint = %req.endpoint(),
                attempt,
                wait_ms = wait.as_millis() as u64,
                reason = %reason(&err),
                trace_id = err.trace_id().unwrap_or(""),
                "retrying falcon request"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// [`FalconClient::execute`], then decodes the whole body as `T` (any shape: envelopes, RTR batch
    /// responses with `batch_id`/`combined.resources`, ...). An empty body decodes as JSON `null`.
    pub(crate) async fn send_json<T: DeserializeOwned>(&self, req: ApiRequest) -> Result<T> {
        let endpoint = req.endpoint();
        let resp = self.execute(req).await?;
        let body = read_body(self, &endpoint, resp).await?;
        decode_slice(&endpoint, &body)
    }

    /// [`FalconClient::execute`], then decodes the standard envelope with `resources: R`; `null` or
    /// missing `meta`/`resources`/`errors` become defaults, and an empty body an empty envelope.
    pub(crate) async fn send_envelope<R>(&self, req: ApiRequest) -> Result<Envelope<R>>
    where
        R: DeserializeOwned + Default,
    {
        let endpoint = req.endpoint();
        let resp = self.execute(req).await?;
        let body = read_body(self, &endpoint, resp).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return decode_slice(&endpoint, b"{}");
        }
        let env: Envelope<R> = decode_slice(&endpoint, &body)?;
        if !env.errors.is_empty() {
            tracing::debug!(
                endpoint = %endpoint,
                errors = ?env.errors,
                trace_id = env.meta.trace_id.as_deref().unwrap_or(""),
                "falcon reported errors in a successful response"
            );
        }
        Ok(env)
    }

    /// [`FalconClient::execute`], then streams the body (binary downloads such as RTR `get` 7z archives).
    /// Only the request is retried; a failure mid-stream is returned as an item error.
    pub(crate) async fn send_stream(
        &self,
        req: ApiRequest,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let resp = self.execute(req).await?;
        Ok(resp.bytes_stream().map_err(Error::from_reqwest).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-RateLimit-RetryAfter", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn retry_after_is_epoch_seconds_or_milliseconds() {
        let t = parse_retry_after(&headers("1767225600")).unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_767_225_600
        );
        let t = parse_retry_after(&headers("1767225600500")).unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            1_767_225_600_500
        );
        assert!(parse_retry_after(&headers("soon")).is_none());
    }

    #[test]
    fn absurd_retry_after_is_ignored_not_a_panic() {
        for v in ["1e300", "18446744073709551615000", "9223372036854775807"] {
            let _ = parse_retry_after(&headers(v));
        }
        assert!(parse_retry_after(&headers("1e300")).is_none());
    }

    #[test]
    fn throttle_wait_honours_the_hint_within_bounds() {
        let max = Duration::from_secs(60);
        let in_30s = SystemTime::now() + Duration::from_secs(30);
        let w = throttle_wait(Some(in_30s), Duration::from_millis(10), max);
        assert!(
            w > Duration::from_secs(28) && w <= Duration::from_secs(30),
            "{w:?}"
        );
        let past = SystemTime::now() - Duration::from_secs(5);
        assert_eq!(
            throttle_wait(Some(past), Duration::ZERO, max),
            Duration::from_secs(1)
        );
        let far = SystemTime::now() + Duration::from_secs(10_000);
        assert_eq!(throttle_wait(Some(far), Duration::ZERO, max), max);
        assert_eq!(
            throttle_wait(None, Duration::from_secs(3), max),
            Duration::from_secs(3)
        );
    }

    /// Paused time: a 429 whose epoch hint is 45 s away makes every caller wait 45 s (virtual), not
    /// decades and not zero.
    #[tokio::test(start_paused = true)]
    async fn shared_cooldown_from_an_epoch_hint_under_paused_time() {
        let client = crate::FalconClient::builder()
            .client_id("id")
            .client_secret(secrecy::SecretString::from("s"))
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let hint = parse_retry_after(&headers(
            &(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 45)
                .to_string(),
        ));
        let wait = throttle_wait(hint, Duration::ZERO, Duration::from_secs(60));
        client.start_cooldown(wait, hint);
        assert!(client.rate_limit().cooling_down);
        let start = Instant::now();
        let (a, b) = tokio::join!(client.pace(), client.clone().pace_owned());
        let _ = (a, b);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(43) && waited <= Duration::from_secs(46),
            "{waited:?}"
        );
        assert!(!client.rate_limit().cooling_down);
    }
}
