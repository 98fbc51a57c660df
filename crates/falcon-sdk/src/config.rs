//! Credentials, clouds and client settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::Error;

/// A Falcon cloud region with a known API host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Region {
    /// `us-1`: `api.crowdstrike.com`.
    Us1,
    /// `us-2`: `api.us-2.crowdstrike.com`.
    Us2,
    /// `us-3`: `api.us-3.crowdstrike.com`.
    Us3,
    /// `eu-1`: `api.eu-1.crowdstrike.com`.
    Eu1,
    /// `us-gov-1`: `api.laggar.gcw.crowdstrike.com` (never autodiscovered).
    UsGov1,
    /// `us-gov-2`: `api.us-gov-2.crowdstrike.mil` (never autodiscovered).
    UsGov2,
}

impl Region {
    /// Every known region.
    pub const ALL: [Region; 6] = [
        Region::Us1,
        Region::Us2,
        Region::Us3,
        Region::Eu1,
        Region::UsGov1,
        Region::UsGov2,
    ];

    /// The region id as Falcon writes it (`us-1`, `us-gov-1`, ...).
    pub fn id(self) -> &'static str {
        match self {
            Region::Us1 => "us-1",
            Region::Us2 => "us-2",
            Region::Us3 => "us-3",
            Region::Eu1 => "eu-1",
            Region::UsGov1 => "us-gov-1",
            Region::UsGov2 => "us-gov-2",
        }
    }

    /// The API base URL of the region.
    pub fn base_url(self) -> Url {
        let host = match self {
            Region::Us1 => "https://api.crowdstrike.com",
            Region::Us2 => "https://api.us-2.crowdstrike.com",
            Region::Us3 => "https://api.us-3.crowdstrike.com",
            Region::Eu1 => "https://api.eu-1.crowdstrike.com",
            Region::UsGov1 => "https://api.laggar.gcw.crowdstrike.com",
            Region::UsGov2 => "https://api.us-gov-2.crowdstrike.mil",
        };
        Url::parse(host).expect("static URL")
    }

    /// True for the GovCloud regions, which autodiscovery never switches to.
    pub fn is_gov(self) -> bool {
        matches!(self, Region::UsGov1 | Region::UsGov2)
    }

    /// Parses a region id leniently: case-insensitive, dashes/underscores optional, `gov1`/`gov2` aliases.
    pub fn parse(s: &str) -> Option<Region> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match norm.as_str() {
            "us1" => Region::Us1,
            "us2" => Region::Us2,
            "us3" => Region::Us3,
            "eu1" => Region::Eu1,
            "usgov1" | "gov1" => Region::UsGov1,
            "usgov2" | "gov2" => Region::UsGov2,
            _ => return None,
        })
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Which API endpoint the client talks to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Cloud {
    /// Log in on `us-1` and follow the `X-Cs-Region` header of the token response (commercial clouds only).
    #[default]
    Auto,
    /// `us-1`.
    Us1,
    /// `us-2`.
    Us2,
    /// `us-3`.
    Us3,
    /// `eu-1`.
    Eu1,
    /// `us-gov-1`.
    UsGov1,
    /// `us-gov-2`.
    UsGov2,
    /// A fixed base URL (proxy, simulator, wiremock). The client stays on it whatever `X-Cs-Region` says.
    Custom(Url),
}

impl Cloud {
    /// The fixed region of this cloud, if it names one.
    pub fn region(&self) -> Option<Region> {
        Some(match self {
            Cloud::Us1 => Region::Us1,
            Cloud::Us2 => Region::Us2,
            Cloud::Us3 => Region::Us3,
            Cloud::Eu1 => Region::Eu1,
            Cloud::UsGov1 => Region::UsGov1,
            Cloud::UsGov2 => Region::UsGov2,
            Cloud::Auto | Cloud::Custom(_) => return None,
        })
    }
}

impl From<Region> for Cloud {
    fn from(r: Region) -> Self {
        match r {
            Region::Us1 => Cloud::Us1,
            Region::Us2 => Cloud::Us2,
            Region::Us3 => Cloud::Us3,
            Region::Eu1 => Cloud::Eu1,
            Region::UsGov1 => Cloud::UsGov1,
            Region::UsGov2 => Cloud::UsGov2,
        }
    }
}

impl FromStr for Cloud {
    type Err = Error;

    /// Accepts `auto`, a region id (`us-1`, `US2`, `eu-1`, `us-gov-1`, `gov2`, ...) or an `http(s)://` URL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") || t.eq_ignore_ascii_case("autodiscover") {
            return Ok(Cloud::Auto);
        }
        if t.starts_with("http://") || t.starts_with("https://") {
            let url = Url::parse(t)
                .map_err(|e| Error::Config(format!("cloud URL `{t}` is not a valid URL: {e}")))?;
            return Ok(Cloud::Custom(url));
        }
        Region::parse(t).map(Cloud::from).ok_or_else(|| {
            Error::Config(format!(
                "unknown cloud `{t}`: expected auto, us-1, us-2, us-3, eu-1, us-gov-1, us-gov-2 or an http(s) URL"
            ))
        })
    }
}

/// OAuth2 client credentials of a Falcon API client.
#[derive(Clone)]
pub struct Credentials {
    /// API client id (not secret, but still not logged by the SDK).
    pub client_id: String,
    /// API client secret.
    pub client_secret: SecretString,
    /// Optional child CID (MSSP / Flight Control).
    pub member_cid: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("member_cid", &self.member_cid)
            .finish()
    }
}

/// Tunables of the client. Every field has a sensible default (see [`Settings::default`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Maximum attempts per call, first included (default 6).
    pub max_attempts: u32,
    /// Bound on the total time spent retrying one call, waits included (default 2 min).
    pub max_retry_time: Duration,
    /// First backoff delay (default 500 ms); doubles each retry, with jitter.
    pub initial_backoff: Duration,
    /// Largest backoff delay (default 30 s).
    pub max_backoff: Duration,
    /// Largest wait honoured from `X-RateLimit-RetryAfter` (default 60 s).
    pub max_rate_limit_wait: Duration,
    /// Per-request timeout (default 5 min, as gofalcon).
    pub request_timeout: Duration,
    /// Connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Renew the token this long before it expires (default 120 s; capped at half the token lifetime).
    pub token_refresh_buffer: Duration,
    /// How long a failed token request is shared with other callers before a new one is tried
    /// (default 1 s). Callers that were waiting for the failing request always share its error.
    pub token_failure_window: Duration,
    /// When `X-RateLimit-Remaining` is at or below this, wait [`Settings::slow_down_delay`] before each call
    /// (default 10).
    pub slow_down_remaining: u64,
    /// Proactive wait when the remaining budget is low (default 200 ms; doubled at half the threshold).
    pub slow_down_delay: Duration,
    /// Maximum indicators per IOC create/update request (default 200).
    pub ioc_batch_size: usize,
    /// Page size of IOC query/combined pagination (default 500).
    pub ioc_page_size: u32,
    /// Page size of host id scrolling (default 5,000).
    pub host_page_size: u32,
    /// Ids per device-details POST (default and maximum 5,000).
    pub device_details_batch: usize,
    /// Page size of alert pagination (default 1,000 for combined, the maximum).
    pub alert_page_size: u32,
    /// Composite ids per alert entities/update request (default 1,000).
    pub alert_batch_size: usize,
    /// Product token prepended to the User-Agent (e.g. `acme-soar/1.2`).
    pub user_agent_prefix: Option<String>,
    /// Largest response body read into memory (default 64 MiB); a larger one is
    /// [`crate::Error::BodyTooLarge`]. Error bodies are read up to 64 KiB whatever this says.
    pub max_response_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_attempts: 6,
            max_retry_time: Duration::from_secs(120),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            token_refresh_buffer: Duration::from_secs(120),
            token_failure_window: Duration::from_secs(1),
            slow_down_remaining: 10,
            slow_down_delay: Duration::from_millis(200),
            ioc_batch_size: 200,
            ioc_page_size: 500,
            host_page_size: 5000,
            device_details_batch: 5000,
            alert_page_size: 1000,
            alert_batch_size: 1000,
            user_agent_prefix: None,
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}
