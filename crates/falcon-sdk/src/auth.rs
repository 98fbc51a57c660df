//! OAuth2 client-credentials token cache with single-flight refresh and region discovery.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, RequestTokenError, TokenResponse, TokenUrl};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::client::{FalconClient, Inner, join_path};
use crate::config::{Cloud, Region};
use crate::envelope::Envelope;
use crate::error::{ApiErrorDetail, DecodeDetail, Error, Result};

/// Longest token lifetime we trust (Falcon issues 30-minute tokens); a larger `expires_in` is capped.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A cached bearer token.
pub(crate) struct CachedToken {
    pub(crate) secret: SecretString,
    /// When to start renewing (expiry minus the refresh buffer).
    pub(crate) refresh_at: Instant,
    /// The real expiry: a token whose renewal failed is still used until then.
    pub(crate) expires_at: Instant,
    pub(crate) generation: u64,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("secret", &"[REDACTED]")
            .field("refresh_at", &self.refresh_at)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .finish()
    }
}

/// The last failed token request, shared with the callers that waited for it and with those arriving
/// within [`crate::Settings::token_failure_window`].
struct TokenFailure {
    at: Instant,
    status: Option<StatusCode>,
    message: String,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    current: RwLock<Option<Arc<CachedToken>>>,
    refresh: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    discovered: AtomicBool,
    fetches: AtomicU64,
    attempts: AtomicU64,
    failure: Mutex<Option<TokenFailure>>,
}

impl TokenCache {
    fn fresh(&self) -> Option<Arc<CachedToken>> {
        let cur = self.current.read().expect("lock");
        cur.as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .cloned()
    }

    /// The cached token if it has not really expired yet (used when a renewal fails).
    fn unexpired(&self) -> Option<Arc<CachedToken>> {
        let cur = self.current.read().expect("lock");
        cur.as_ref()
            .filter(|t| Instant::now() < t.expires_at)
            .cloned()
    }

    /// How long the last token failure is still shared (zero when none is).
    pub(crate) fn failure_remaining(&self, window: Duration) -> Duration {
        let f = self.failure.lock().expect("lock");
        f.as_ref()
            .map(|f| (f.at + window).saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// The shared error of a recent failure: `waited_since` is the attempt counter the caller saw before
    /// queueing; a failure that happened while it waited is shared whatever the window.
    fn shared_failure(&self, window: Duration, waited_since: u64) -> Option<Error> {
        let f = self.failure.lock().expect("lock");
        let f = f.as_ref()?;
        let while_waiting = self.attempts.load(Ordering::SeqCst) != waited_since;
        if !while_waiting && Instant::now() >= f.at + window {
            return None;
        }
        Some(Error::Auth {
            status: f.status,
            detail: Box::new(ApiErrorDetail {
                endpoint: "POST /oauth2/token".into(),
                body_excerpt: Some(format!(
                    "shared failure of a recent token request: {}",
                    f.message
                )),
                ..Default::default()
            }),
        })
    }

    /// Drops the cached token if it is still the one of `generation` (after a 401), so that concurrent
    /// 401s cause one refresh only.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut cur = self.current.write().expect("lock");
        if cur.as_ref().map(|t| t.generation) == Some(generation) {
            *cur = None;
        }
    }

    fn take(&self) -> Option<Arc<CachedToken>> {
        self.current.write().expect("lock").take()
    }
}

/// What the token endpoint answered, captured by the HTTP adapter (the body holds the token: it never
/// leaves this module except through `oauth2`'s parsing).
struct Captured {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
enum AdapterError {
    #[error("transport")]
    Transport(#[source] reqwest::Error),
    #[error("token endpoint answered {0}")]
    Status(StatusCode),
    #[error("bad request: {0}")]
    Build(String),
}

impl FalconClient {
    /// Returns a valid bearer token, fetching one if needed (single flight: concurrent callers wait for
    /// one refresh).
    ///
    /// A failed refresh is shared: the callers that waited for it, and those arriving within
    /// [`crate::Settings::token_failure_window`], get the same error without a new token request. While
    /// the previous token has not really expired, it stays in use (the refresh buffer only starts the
    /// renewal early).
    pub(crate) async fn bearer(&self) -> Result<Arc<CachedToken>> {
        let inner = &*self.inner;
        if let Some(t) = inner.auth.fresh() {
            return Ok(t);
        }
        let seen = inner.auth.attempts.load(Ordering::SeqCst);
        let _guard = inner.auth.refresh.lock().await;
        if let Some(t) = inner.auth.fresh() {
            return Ok(t);
        }
        let window = inner.settings.token_failure_window;
        if let Some(e) = inner.auth.shared_failure(window, seen) {
            return match inner.auth.unexpired() {
                Some(old) => Ok(old),
                None => Err(e),
            };
        }
        inner.auth.attempts.fetch_add(1, Ordering::SeqCst);
        match self.fetch_token_discovering().await {
            Ok(token) => {
                *inner.auth.failure.lock().expect("lock") = None;
                *inner.auth.current.write().expect("lock") = Some(token.clone());
                Ok(token)
            }
            Err(e) => {
                *inner.auth.failure.lock().expect("lock") = Some(TokenFailure {
                    at: Instant::now(),
                    status: e.status(),
                    message: e.to_string(),
                });
                match inner.auth.unexpired() {
                    Some(old) => {
                        tracing::warn!(error = %e, "token renewal failed: using the current token until it expires");
                        Ok(old)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Number of successful token requests since the client was built (observability, tests).
    pub fn token_fetches(&self) -> u64 {
        self.inner.auth.fetches.load(Ordering::Relaxed)
    }

    async fn fetch_token_discovering(&self) -> Result<Arc<CachedToken>> {
        let inner = &*self.inner;
        let (token, headers) = fetch_token(inner).await?;
        let header_region = headers
            .get("x-cs-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if inner.cloud != Cloud::Auto || inner.auth.discovered.swap(true, Ordering::SeqCst) {
            if let Some(r) = &header_region {
                tracing::trace!(region = %r, "token response region (no discovery)");
            }
            return Ok(token);
        }
        let Some(region) = header_region.as_deref().and_then(Region::parse) else {
            if let Some(r) = header_region {
                tracing::warn!(region = %r, "unknown X-Cs-Region in token response; staying on us-1");
            }
            return Ok(token);
        };
        let current = *inner.region.read().expect("lock");
        if current == Some(region) {
            tracing::debug!(%region, "region autodiscovery: already on the right cloud");
            return Ok(token);
        }
        let new_base = inner.region_url(region);
        tracing::info!(%region, base_url = %new_base, "region autodiscovery: switching cloud");
        // Revoke the token of the wrong cloud (best effort), then log in again in the right one.
        if let Err(e) = revoke_token(inner, &token.secret).await {
            tracing::debug!(error = %e, "could not revoke the discovery token");
        }
        *inner.base.write().expect("lock") = new_base;
        *inner.region.write().expect("lock") = Some(region);
        let (token, _) = fetch_token(inner).await?;
        Ok(token)
    }

    /// Revokes the cached token (if any) at `/oauth2/revoke` and forgets it. The next call logs in again.
    pub async fn revoke(&self) -> Result<()> {
        let _guard = self.inner.auth.refresh.lock().await;
        let Some(token) = self.inner.auth.take() else {
            return Ok(());
        };
        revoke_token(&self.inner, &token.secret).await
    }
}

async fn revoke_token(inner: &Inner, token: &SecretString) -> Result<()> {
    let url = join_path(&inner.base(), "/oauth2/revoke")?;
    let resp = inner
        .token_http
        .post(url)
        .basic_auth(
            &inner.creds.client_id,
            Some(inner.creds.client_secret.expose_secret()),
        )
        .form(&[
            ("token", token.expose_secret()),
            ("client_id", inner.creds.client_id.as_str()),
        ])
        .send()
        .await
        .map_err(Error::from_reqwest)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = match crate::transport::read_capped(resp, crate::transport::MAX_ERROR_BODY).await {
        Ok(Ok(b)) | Ok(Err(b)) => b,
        Err(_) => bytes::Bytes::new(),
    };
    Err(Error::Auth {
        status: Some(status),
        detail: Box::new(error_detail("POST /oauth2/revoke", &body, None)),
    })
}

fn error_detail(endpoint: &str, body: &[u8], headers: Option<&HeaderMap>) -> ApiErrorDetail {
    let env: Option<Envelope<serde_json::Value>> = serde_json::from_slice(body).ok();
    let trace = env
        .as_ref()
        .and_then(|e| e.meta.trace_id.clone())
        .or_else(|| {
            headers
                .and_then(|h| h.get("x-cs-traceid"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    ApiErrorDetail {
        errors: env.map(|e| e.errors).unwrap_or_default(),
        trace_id: trace,
        endpoint: endpoint.to_string(),
        body_excerpt: None,
    }
}

/// Performs one token request through `oauth2` over our reqwest client (no redirects).
async fn fetch_token(inner: &Inner) -> Result<(Arc<CachedToken>, HeaderMap)> {
    let base = inner.base();
    let token_url = join_path(&base, "/oauth2/token")?;
    let oauth = BasicClient::new(ClientId::new(inner.creds.client_id.clone()))
        .set_client_secret(ClientSecret::new(
            inner.creds.client_secret.expose_secret().to_string(),
        ))
        .set_token_uri(TokenUrl::from_url(token_url))
        .set_auth_type(AuthType::RequestBody);
    let captured: Arc<Mutex<Option<Captured>>> = Arc::new(Mutex::new(None));
    let token_http = inner.token_http.clone();
    let slot = captured.clone();
    let http = move |req: oauth2::HttpRequest| {
        let client = token_http.clone();
        let captured = slot.clone();
        async move {
            let (parts, body) = req.into_parts();
            let url = parts.uri.to_string();
            let resp = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(AdapterError::Transport)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(AdapterError::Transport)?
                .to_vec();
            *captured.lock().expect("lock") = Some(Captured {
                status,
                headers: headers.clone(),
                body: body.clone(),
            });
            if !status.is_success() {
                return Err(AdapterError::Status(status));
            }
            // Falcon answers 201; oauth2 expects 200.
            let mut out = http::Response::builder().status(StatusCode::OK);
            for (k, v) in headers.iter() {
                out = out.header(k, v);
            }
            out.body(body)
                .map_err(|e| AdapterError::Build(e.to_string()))
        }
    };
    let mut req = oauth.exchange_client_credentials();
    if let Some(cid) = &inner.creds.member_cid {
        req = req.add_extra_param("member_cid", cid.clone());
    }
    let result = req.request_async(&http).await;
    let captured = captured.lock().expect("lock").take();
    let endpoint = "POST /oauth2/token";
    match result {
        Ok(tok) => {
            let headers = captured.map(|c| c.headers).unwrap_or_default();
            // `expires_in` comes from the wire: cap it so that `now + lifetime` cannot overflow.
            let lifetime = tok
                .expires_in()
                .unwrap_or(Duration::from_secs(1799))
                .min(MAX_TOKEN_LIFETIME);
            let buffer = inner.settings.token_refresh_buffer.min(lifetime / 2);
            let generation = inner.auth.generation.fetch_add(1, Ordering::SeqCst) + 1;
            inner.auth.fetches.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("falcon_sdk_token_requests_total").increment(1);
            tracing::debug!(
                expires_in_s = lifetime.as_secs(),
                generation,
                "obtained falcon access token"
            );
            Ok((
                Arc::new(CachedToken {
                    secret: SecretString::from(tok.access_token().secret().clone()),
                    refresh_at: Instant::now() + lifetime - buffer,
                    expires_at: Instant::now() + lifetime,
                    generation,
                }),
                headers,
            ))
        }
        Err(RequestTokenError::Request(AdapterError::Transport(e))) => Err(Error::from_reqwest(e)),
        Err(RequestTokenError::Request(AdapterError::Status(status))) => {
            let c = captured.expect("captured response");
            let mut detail = error_detail(endpoint, &c.body, Some(&c.headers));
            if status == StatusCode::FORBIDDEN
                && detail
                    .errors
                    .iter()
                    .any(|e| e.message.contains("access denied, authorization failed"))
            {
                detail.body_excerpt = Some("the source IP may not be allow-listed".into());
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let ra = crate::transport::parse_retry_after(&c.headers);
                return Err(Error::Api {
                    status,
                    retry_after: ra,
                    detail: Box::new(detail),
                });
            }
            Err(Error::Auth {
                status: Some(status),
                detail: Box::new(detail),
            })
        }
        Err(RequestTokenError::Parse(e, _body)) => Err(Error::Auth {
            status: captured.map(|c| c.status),
            // The body holds the token: no excerpt, no serde message (it may quote values).
            detail: Box::new(DecodeDetail {
                path: e.path().to_string(),
                message: "malformed token response".into(),
                endpoint: endpoint.into(),
                excerpt: None,
            }),
        }),
        Err(other) => Err(Error::Auth {
            status: captured.map(|c| c.status),
            detail: Box::new(ApiErrorDetail {
                endpoint: endpoint.into(),
                body_excerpt: Some(match other {
                    RequestTokenError::Other(m) => m,
                    RequestTokenError::Request(AdapterError::Build(m)) => m,
                    _ => "unexpected token response".into(),
                }),
                ..Default::default()
            }),
        }),
    }
}
