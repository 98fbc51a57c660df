//! The client: configuration, HTTP transport and the GraphQL call.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, GraphQlError, RetryKind, chain, excerpt};

/// Default timeout of one GraphQL request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default TCP/TLS connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An OpenCTI client: GraphQL calls of a stream connector and the base of [`LiveStream`](crate::LiveStream).
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct OpenCtiClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) token: SecretString,
    pub(crate) custom_headers: HeaderMap,
    pub(crate) request_timeout: Duration,
    pub(crate) custom_headers_on_stream: bool,
    pub(crate) max_retries: usize,
    pub(crate) ssl_verify: bool,
}

impl fmt::Debug for OpenCtiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenCtiClient")
            .field("url", &redact_url(self.inner.base.as_str()))
            .field("token", &"[REDACTED]")
            .field(
                "custom_headers",
                &self.inner.custom_headers.keys().collect::<Vec<_>>(),
            )
            .field("ssl_verify", &self.inner.ssl_verify)
            .field("request_timeout", &self.inner.request_timeout)
            .finish()
    }
}

/// Builder for [`OpenCtiClient`]; see [`OpenCtiClient::builder`].
pub struct ClientBuilder {
    url: String,
    token: SecretString,
    ssl_verify: bool,
    headers: Vec<(String, String)>,
    request_timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    custom_headers_on_stream: bool,
    max_retries: usize,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &redact_url(&self.url))
            .field("token", &"[REDACTED]")
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("ssl_verify", &self.ssl_verify)
            .finish_non_exhaustive()
    }
}

impl OpenCtiClient {
    /// Starts a client for the platform at `url` (e.g. `https://opencti.example:8080`, a base path
    /// is kept) with an API token sent as `Authorization: Bearer <token>`.
    pub fn builder(url: impl Into<String>, token: SecretString) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token,
            ssl_verify: true,
            headers: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("opencti-client-rs/", env!("CARGO_PKG_VERSION")).to_string(),
            custom_headers_on_stream: false,
            max_retries: 2,
        }
    }

    /// The base URL.
    pub fn url(&self) -> &Url {
        &self.inner.base
    }

    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut u = self.inner.base.clone();
        {
            // The base URL was checked to be a base (http/https) in build().
            let mut p = u
                .path_segments_mut()
                .expect("http(s) URLs can have path segments");
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        u
    }

    /// Runs a GraphQL operation and returns its `data`, decoded as `T`.
    ///
    /// This is the raw escape hatch behind every typed call: same auth, headers, timeout and
    /// retries. An HTTP 200 carrying `errors` is [`Error::GraphQl`]. Transient failures
    /// (transport, timeout, 5xx, 429) are retried a few times with backoff; every operation a
    /// stream connector sends is idempotent (reads, upserts, pings).
    pub async fn graphql<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<T, Error> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let mut backoff = backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(self.inner.max_retries)
            .build();
        loop {
            match self.graphql_once(&body).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retry_kind() == RetryKind::Transient => match backoff.next() {
                    Some(wait) => {
                        // A rate-limit hint from the platform is honoured (upstream ignores it).
                        let wait = wait.max(e.retry_after().unwrap_or_default());
                        tracing::warn!(error = %chain(&e), wait_ms = wait.as_millis() as u64, "retrying graphql request");
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    async fn graphql_once<T: DeserializeOwned>(
        &self,
        body: &serde_json::Value,
    ) -> Result<T, Error> {
        let url = self.endpoint(&["graphql"]);
        let resp = self
            .inner
            .http
            .post(url)
            .headers(self.inner.custom_headers.clone())
            .header(reqwest::header::AUTHORIZATION, self.bearer()?)
            .timeout(self.inner.request_timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| map_reqwest(e, self.inner.request_timeout))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| map_reqwest(e, self.inner.request_timeout))?;
        if status != 200 {
            return Err(Error::from_status(status, &bytes));
        }
        decode_graphql(&bytes)
    }

    pub(crate) fn bearer(&self) -> Result<HeaderValue, Error> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.inner.token.expose_secret()))
            .map_err(|_| {
                Error::config("the OpenCTI token contains characters not allowed in a header")
            })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// `url` with a `user:password@` replaced by `[REDACTED]@`: how URLs appear in logs, errors and `Debug`.
/// Any text is accepted (an invalid URL too): only the authority part is looked at.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}[REDACTED]@{}", &url[..start], &rest[at + 1..]),
        None => url.to_string(),
    }
}

pub(crate) fn map_reqwest(e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        Error::Timeout(timeout)
    } else if e.is_builder() {
        Error::config(format!("cannot build request: {e}"))
    } else {
        Error::Transport(e)
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<Vec<GraphQlError>>,
}

pub(crate) fn decode_graphql<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let env: Envelope = {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| Error::Decode {
            path: e.path().to_string(),
            body_excerpt: excerpt(bytes),
            source: e.into_inner(),
        })?
    };
    if let Some(errors) = env.errors
        && !errors.is_empty()
    {
        return Err(Error::GraphQl { errors });
    }
    let data = env.data.unwrap_or(serde_json::Value::Null);
    serde_path_to_error::deserialize(data).map_err(|e| Error::Decode {
        path: format!("data.{}", e.path()),
        body_excerpt: excerpt(bytes),
        source: e.into_inner(),
    })
}

impl ClientBuilder {
    /// Verify the server's TLS certificate (default `true`). `false` is what
    /// `OPENCTI_SSL_VERIFY=false` does in pycti: any certificate is accepted.
    pub fn ssl_verify(mut self, verify: bool) -> Self {
        self.ssl_verify = verify;
        self
    }

    /// Adds a header to every GraphQL request (pycti's `OPENCTI_CUSTOM_HEADERS`). Like pycti,
    /// custom headers are not sent on the live stream unless [`Self::custom_headers_on_stream`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds the headers of a pycti-style `OPENCTI_CUSTOM_HEADERS` value: `"h1:v1;h2:v2"`
    /// (empty items are ignored; an item without `:` fails in [`Self::build`]).
    pub fn custom_headers(mut self, spec: &str) -> Self {
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once(':') {
                Some((k, v)) => self.headers.push((k.trim().into(), v.trim().into())),
                None => self.headers.push((item.into(), String::from("\u{0}"))),
            }
        }
        self
    }

    /// Also send the custom headers on `GET /stream/{id}` (default `false`, as pycti). Useful
    /// behind a proxy that requires them.
    pub fn custom_headers_on_stream(mut self, on: bool) -> Self {
        self.custom_headers_on_stream = on;
        self
    }

    /// Timeout of one GraphQL request (default 60 s). The live stream uses its own read timeout.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// TCP + TLS connect timeout (default 10 s), GraphQL and live stream alike.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// `User-Agent` header (default `opencti-client-rs/<version>`).
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// How many times a transient GraphQL failure is retried (default 2).
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// Builds the client; fails on a bad URL, token or header.
    pub fn build(self) -> Result<OpenCtiClient, Error> {
        let base = Url::parse(self.url.trim()).map_err(|e| {
            Error::config(format!(
                "OpenCTI URL `{}` is invalid: {e}",
                redact_url(&self.url)
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::config(format!(
                "OpenCTI URL `{}` must be an http or https URL",
                redact_url(&self.url)
            )));
        }
        if self.token.expose_secret().trim().is_empty() {
            return Err(Error::config("the OpenCTI token is empty"));
        }
        let mut custom = HeaderMap::new();
        for (i, (k, v)) in self.headers.iter().enumerate() {
            // An invalid name is not echoed: a mistyped item (`key=value`, no `:`) holds the value.
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                Error::config(format!(
                    "custom header #{} has an invalid name (not shown: it may hold a secret)",
                    i + 1
                ))
            })?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| Error::config(format!("custom header `{k}` has an invalid value")))?;
            // Custom headers often carry proxy credentials: keep them out of HPACK tables and `Debug`.
            value.set_sensitive(true);
            custom.append(name, value);
        }
        let http = reqwest::Client::builder()
            .user_agent(self.user_agent)
            .connect_timeout(self.connect_timeout)
            .tls_danger_accept_invalid_certs(!self.ssl_verify)
            // Custom headers often carry proxy credentials and reqwest does not strip them on a
            // cross-host redirect: a redirect is never followed (review finding s3).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OpenCtiClient {
            inner: Arc::new(Inner {
                http,
                base,
                token: self.token,
                custom_headers: custom,
                request_timeout: self.request_timeout,
                custom_headers_on_stream: self.custom_headers_on_stream,
                max_retries: self.max_retries,
                ssl_verify: self.ssl_verify,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_token() {
        let b = OpenCtiClient::builder("http://127.0.0.1:1", SecretString::from("s3cr3t-token"))
            .header("x-proxy-auth", "hidden-value");
        let d = format!("{b:?}");
        assert!(!d.contains("s3cr3t-token"), "{d}");
        assert!(!d.contains("hidden-value"), "{d}");
        assert!(d.contains("[REDACTED]"));
        let c = b.build().unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t-token"), "{d}");
        assert!(!d.contains("hidden-value"), "{d}");
        assert!(d.contains("[REDACTED]"));
        assert!(d.contains("127.0.0.1"));
    }

    #[test]
    fn userinfo_in_the_url_never_reaches_debug_or_errors() {
        let tok = || SecretString::from("t");
        let b = OpenCtiClient::builder("https://svc:hunter2@opencti.example", tok());
        let builder_debug = format!("{b:?}");
        let d = format!("{builder_debug} {:?}", b.build().unwrap());
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("[REDACTED]@opencti.example"), "{d}");
        let e = OpenCtiClient::builder("ftp://svc:hunter2@opencti.example", tok())
            .build()
            .unwrap_err();
        let d = format!("{e} {e:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert_eq!(redact_url("http://h:1/a@b"), "http://h:1/a@b");
    }

    #[test]
    fn tls_verification_is_on_unless_turned_off() {
        let tok = || SecretString::from("t");
        let c = OpenCtiClient::builder("https://h", tok()).build().unwrap();
        assert!(c.inner.ssl_verify);
        let c = OpenCtiClient::builder("https://h", tok())
            .ssl_verify(false)
            .build()
            .unwrap();
        assert!(!c.inner.ssl_verify);
    }

    #[test]
    fn build_rejects_bad_input() {
        let tok = || SecretString::from("t");
        assert!(matches!(
            OpenCtiClient::builder("not a url", tok()).build(),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            OpenCtiClient::builder("ftp://x", tok()).build(),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            OpenCtiClient::builder("http://x", SecretString::from(" ")).build(),
            Err(Error::Config { .. })
        ));
        let e = OpenCtiClient::builder("http://x", tok())
            .custom_headers("good:1;bad")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("`bad`"), "{e}");
    }

    #[test]
    fn custom_header_values_are_sensitive_and_never_echoed() {
        let c = OpenCtiClient::builder("http://x", SecretString::from("t"))
            .custom_headers("x-proxy-auth: hunter2-value")
            .build()
            .unwrap();
        let v = &c.inner.custom_headers["x-proxy-auth"];
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("hunter2"));
        // `=` instead of `:`: the whole item, secret included, would be the header name.
        let e = OpenCtiClient::builder("http://x", SecretString::from("t"))
            .custom_headers("x-proxy-auth=hunter2-value")
            .build()
            .unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("#1"), "{msg}");
    }

    #[test]
    fn endpoints_keep_base_path() {
        let c = OpenCtiClient::builder("http://h:8080/octi/", SecretString::from("t"))
            .build()
            .unwrap();
        assert_eq!(
            c.endpoint(&["graphql"]).as_str(),
            "http://h:8080/octi/graphql"
        );
        assert_eq!(
            c.endpoint(&["stream", "abc"]).as_str(),
            "http://h:8080/octi/stream/abc"
        );
        let c = OpenCtiClient::builder("http://h:8080", SecretString::from("t"))
            .build()
            .unwrap();
        assert_eq!(c.endpoint(&["graphql"]).as_str(), "http://h:8080/graphql");
    }

    #[test]
    fn graphql_errors_in_200_are_typed() {
        let e = decode_graphql::<serde_json::Value>(
            br#"{"errors":[{"message":"boom","name":"FUNCTIONAL_ERROR","data":{"x":1}}],"data":null}"#,
        )
        .unwrap_err();
        match e {
            Error::GraphQl { errors } => {
                assert_eq!(errors[0].message, "boom");
                assert_eq!(errors[0].name.as_deref(), Some("FUNCTIONAL_ERROR"));
            }
            other => panic!("unexpected {other:?}"),
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct D {
            about: A,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct A {
            version: String,
        }
        let e = decode_graphql::<D>(br#"{"data":{"about":{"version":5}}}"#).unwrap_err();
        match e {
            Error::Decode { path, .. } => assert_eq!(path, "data.about.version"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
