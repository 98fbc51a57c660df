//! [`FalconClient`] and its builder.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use secrecy::SecretString;
use url::Url;

use crate::auth::TokenCache;
use crate::config::{Cloud, Credentials, Region, Settings};
use crate::error::{Error, Result};
use crate::transport::RateState;

/// The Falcon API client: cheap to clone (an `Arc` inside), `Send + Sync`.
///
/// Every call goes through one transport (token cache, retries, rate-limit handling); see the crate docs.
#[derive(Clone)]
pub struct FalconClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) token_http: reqwest::Client,
    /// Event Streams feeds: no total timeout (the body never ends), a read timeout instead.
    pub(crate) stream_http: reqwest::Client,
    pub(crate) allow_insecure_http: bool,
    pub(crate) creds: Credentials,
    pub(crate) settings: Settings,
    pub(crate) cloud: Cloud,
    pub(crate) base: RwLock<Url>,
    pub(crate) region: RwLock<Option<Region>>,
    pub(crate) region_urls: HashMap<Region, Url>,
    pub(crate) auth: TokenCache,
    pub(crate) rate: RateState,
}

impl fmt::Debug for FalconClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalconClient")
            .field("base_url", &self.base_url().as_str())
            .field("cloud", &self.inner.cloud)
            .field("credentials", &self.inner.creds)
            .finish_non_exhaustive()
    }
}

/// The SDK's User-Agent product token.
pub const USER_AGENT: &str = concat!("falcon-sdk-rs/", env!("CARGO_PKG_VERSION"));

impl FalconClient {
    /// Starts building a client.
    pub fn builder() -> FalconClientBuilder {
        FalconClientBuilder::default()
    }

    /// Builds a client from `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_MEMBER_CID` (optional) and
    /// `FALCON_CLOUD` (optional: `auto` (default), a region id such as `us-2`, or an `http(s)://` base URL).
    pub fn from_env() -> Result<FalconClient> {
        FalconClientBuilder::from_env_with(|k| std::env::var(k).ok())?.build()
    }

    /// The base URL the client currently talks to (after region discovery, if any).
    pub fn base_url(&self) -> Url {
        self.inner.base.read().expect("lock").clone()
    }

    /// The region the client is on, when known (from the configuration or from `X-Cs-Region`).
    pub fn region(&self) -> Option<Region> {
        *self.inner.region.read().expect("lock")
    }

    /// The client's settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The API client id in use (not a secret).
    pub fn client_id(&self) -> &str {
        &self.inner.creds.client_id
    }
}

/// Builder of [`FalconClient`]. Required: client id and secret.
#[derive(Default)]
pub struct FalconClientBuilder {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    member_cid: Option<String>,
    cloud: Option<Cloud>,
    base_url_error: Option<String>,
    settings: Settings,
    region_urls: HashMap<Region, Url>,
    allow_insecure_http: bool,
}

impl fmt::Debug for FalconClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalconClientBuilder")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("member_cid", &self.member_cid)
            .field("cloud", &self.cloud)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl FalconClientBuilder {
    /// Reads the `FALCON_*` variables through `lookup` (use `|k| std::env::var(k).ok()` for the process
    /// environment). An empty value counts as unset.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<FalconClientBuilder> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let id = get("FALCON_CLIENT_ID").ok_or_else(|| {
            Error::Config("environment variable FALCON_CLIENT_ID is not set".into())
        })?;
        let secret = get("FALCON_CLIENT_SECRET").ok_or_else(|| {
            Error::Config("environment variable FALCON_CLIENT_SECRET is not set".into())
        })?;
        let mut b = FalconClientBuilder::default()
            .client_id(id.trim())
            .client_secret(SecretString::from(secret));
        if let Some(cid) = get("FALCON_MEMBER_CID") {
            b = b.member_cid(cid.trim());
        }
        if let Some(cloud) = get("FALCON_CLOUD") {
            let c: Cloud = cloud.parse().map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("FALCON_CLOUD: {m}")),
                other => other,
            })?;
            b = b.cloud(c);
        }
        Ok(b)
    }

    /// The API client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The API client secret.
    pub fn client_secret(mut self, secret: SecretString) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// Sets id, secret and member CID at once.
    pub fn credentials(mut self, creds: Credentials) -> Self {
        self.client_id = Some(creds.client_id);
        self.client_secret = Some(creds.client_secret);
        self.member_cid = creds.member_cid;
        self
    }

    /// Child CID to act as (MSSP / Flight Control).
    pub fn member_cid(mut self, cid: impl Into<String>) -> Self {
        self.member_cid = Some(cid.into());
        self
    }

    /// The cloud (default [`Cloud::Auto`]).
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// A fixed base URL (simulator, proxy, wiremock): same as `cloud(Cloud::Custom(url))`. The client stays
    /// on it whatever `X-Cs-Region` says. An invalid URL is reported by [`FalconClientBuilder::build`].
    pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
        match Url::parse(url.as_ref()) {
            Ok(u) => self.cloud = Some(Cloud::Custom(u)),
            Err(e) => self.base_url_error = Some(format!("base URL `{}`: {e}", url.as_ref())),
        }
        self
    }

    /// Overrides the base URL used for a region (region autodiscovery included): for private links,
    /// proxies and tests.
    pub fn region_url(mut self, region: Region, url: Url) -> Self {
        self.region_urls.insert(region, url);
        self
    }

    /// Accepts `http://` base URLs on hosts other than loopback (default false: the client secret and
    /// every token would cross the network in clear text). Loopback (`127.0.0.0/8`, `[::1]`,
    /// `localhost`) is always accepted, for simulators and mocks.
    pub fn allow_insecure_http(mut self, yes: bool) -> Self {
        self.allow_insecure_http = yes;
        self
    }

    /// Replaces all settings.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Edits the settings in place.
    pub fn configure(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// Maximum indicators per IOC create/update request (default 200).
    pub fn ioc_batch_size(mut self, n: usize) -> Self {
        self.settings.ioc_batch_size = n;
        self
    }

    /// Product token prepended to the User-Agent, e.g. `acme-soar/1.2`.
    pub fn user_agent(mut self, product: impl Into<String>) -> Self {
        self.settings.user_agent_prefix = Some(product.into());
        self
    }

    /// Builds the client. Fails when the id or secret is missing or a setting is out of range.
    pub fn build(self) -> Result<FalconClient> {
        if let Some(e) = self.base_url_error {
            return Err(Error::Config(e));
        }
        let client_id = self
            .client_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Config("client id is required".into()))?;
        let client_secret = self
            .client_secret
            .ok_or_else(|| Error::Config("client secret is required".into()))?;
        let s = self.settings;
        if s.max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        if s.ioc_batch_size == 0 || s.device_details_batch == 0 || s.alert_batch_size == 0 {
            return Err(Error::Config("batch sizes must be at least 1".into()));
        }
        if s.device_details_batch > 5000 {
            return Err(Error::Config(
                "device_details_batch must be at most 5000 (API maximum)".into(),
            ));
        }
        if s.host_page_size == 0 || s.ioc_page_size == 0 || s.alert_page_size == 0 {
            return Err(Error::Config("page sizes must be at least 1".into()));
        }
        let cloud = self.cloud.unwrap_or_default();
        let region_urls = self.region_urls;
        if !self.allow_insecure_http {
            let custom = match &cloud {
                Cloud::Custom(u) => Some(u),
                _ => None,
            };
            if let Some(u) = custom
                .into_iter()
                .chain(region_urls.values())
                .find(|u| is_insecure(u))
            {
                return Err(Error::Config(format!(
                    "base URL {}://{}: plain http is refused for a host that is not loopback (the \
                     secret would travel in clear text); use https, or allow_insecure_http(true)",
                    u.scheme(),
                    u.host_str().unwrap_or("")
                )));
            }
        }
        let url_of = |r: Region| region_urls.get(&r).cloned().unwrap_or_else(|| r.base_url());
        let (base, region) = match &cloud {
            Cloud::Auto => (url_of(Region::Us1), Some(Region::Us1)),
            Cloud::Custom(u) => (u.clone(), None),
            other => {
                let r = other.region().expect("region cloud");
                (url_of(r), Some(r))
            }
        };
        let ua = match &s.user_agent_prefix {
            Some(p) => format!("{p} {USER_AGENT}"),
            None => USER_AGENT.to_string(),
        };
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "CrowdStrike-SDK",
            reqwest::header::HeaderValue::from_static(USER_AGENT),
        );
        let http = reqwest::Client::builder()
            .user_agent(ua.clone())
            .default_headers(headers.clone())
            .connect_timeout(s.connect_timeout)
            .timeout(s.request_timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        // The token request never follows redirects: a redirect must not carry the secret elsewhere.
        let token_http = reqwest::Client::builder()
            .user_agent(ua)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(s.connect_timeout)
            .timeout(s.request_timeout.min(std::time::Duration::from_secs(60)))
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        let stream_http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(s.connect_timeout)
            .read_timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(FalconClient {
            inner: Arc::new(Inner {
                http,
                token_http,
                stream_http,
                allow_insecure_http: self.allow_insecure_http,
                creds: Credentials {
                    client_id,
                    client_secret,
                    member_cid: self.member_cid,
                },
                settings: s,
                cloud,
                base: RwLock::new(base),
                region: RwLock::new(region),
                region_urls,
                auth: TokenCache::default(),
                rate: RateState::default(),
            }),
        })
    }
}

impl Inner {
    pub(crate) fn region_url(&self, r: Region) -> Url {
        self.region_urls
            .get(&r)
            .cloned()
            .unwrap_or_else(|| r.base_url())
    }

    pub(crate) fn base(&self) -> Url {
        self.base.read().expect("lock").clone()
    }
}

/// True for a URL that is not https and not on loopback.
pub(crate) fn is_insecure(u: &Url) -> bool {
    if u.scheme() == "https" {
        return false;
    }
    match u.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        Some(url::Host::Domain(d)) => !d.eq_ignore_ascii_case("localhost"),
        None => true,
    }
}

/// Joins an API path (`/devices/...`) to a base URL, keeping any path prefix of the base.
pub(crate) fn join_path(base: &Url, path: &str) -> Result<Url> {
    let b = base.as_str().trim_end_matches('/');
    let p = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Url::parse(&format!("{b}{p}"))
        .map_err(|e| Error::InvalidArgument(format!("path `{path}` does not form a URL: {e}")))
}
