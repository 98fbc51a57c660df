//! Connector configuration, compatible with the Python CrowdStrike Endpoint Security connector.
//!
//! Every environment variable and `config.yml` key of the Python connector (and of the pycti helper it
//! runs on) is recognised, with the same defaults. Layering: built-in defaults < `config.yml` < environment
//! < command-line flags (the binary applies the flags on the returned [`Config`]). The library does not
//! read the environment or files itself: the binary hands it the environment map and the YAML text
//! ([`Config::load`]), which keeps this module pure and testable.
//!
//! A bad value is an error that names where it came from (`environment variable CROWDSTRIKE_ACTION_ON_IP`
//! or `config.yml key crowdstrike.action_on_ip`), the value, and what is allowed. Legacy keys of older
//! connector versions are accepted and ignored with a warning ([`Config::load`] returns the warnings).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// What `action` (and `mobile_action`) a Falcon IOC gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IocAction {
    /// `no_action`: stored, never alerts.
    NoAction,
    /// `allow` (hashes only).
    Allow,
    /// `detect`: alerts.
    Detect,
    /// `prevent` (hashes only): blocks execution.
    Prevent,
}

impl IocAction {
    /// The Falcon wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            IocAction::NoAction => "no_action",
            IocAction::Allow => "allow",
            IocAction::Detect => "detect",
            IocAction::Prevent => "prevent",
        }
    }

    /// Every action.
    pub const ALL: [IocAction; 4] = [
        IocAction::NoAction,
        IocAction::Allow,
        IocAction::Detect,
        IocAction::Prevent,
    ];

    fn parse(s: &str, allowed: &[IocAction]) -> Option<IocAction> {
        let s = s.trim();
        allowed
            .iter()
            .copied()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for IocAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Log level (`CONNECTOR_LOG_LEVEL`), parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn` / `warning`
    Warning,
    /// `error` (the Python connector's default)
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Where the Falcon API is, by FalconPy's rule (`shared/reference/falcon-api.md` §1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FalconEndpoint {
    /// Unset, `auto`, or the default US-1 URL `https://api.crowdstrike.com`: log in on US-1 and follow
    /// the token response's `X-Cs-Region`, as FalconPy (and so the Python connector) does.
    Auto,
    /// A cloud name (`us-1`, `us-2`, `us-3`, `eu-1`, `us-gov-1`, `us-gov-2`): that cloud, never moved.
    Cloud(falcon_sdk::Region),
    /// Any other http(s) URL (proxy, private link, simulator), used as given.
    Url(String),
}

impl FalconEndpoint {
    /// The SDK's [`Cloud`](falcon_sdk::Cloud) for this endpoint.
    pub fn cloud(&self) -> falcon_sdk::Cloud {
        match self {
            FalconEndpoint::Auto => falcon_sdk::Cloud::Auto,
            FalconEndpoint::Cloud(region) => falcon_sdk::Cloud::from(*region),
            FalconEndpoint::Url(u) => match url::Url::parse(u) {
                Ok(u) => falcon_sdk::Cloud::Custom(u),
                // `Config::load` only builds valid URLs; a hand-built bad one falls back to discovery.
                Err(_) => falcon_sdk::Cloud::Auto,
            },
        }
    }

    /// The base URL the SDK starts on (US-1 for [`FalconEndpoint::Auto`]).
    pub fn base_url(&self) -> String {
        match self {
            FalconEndpoint::Auto => falcon_sdk::Region::Us1
                .base_url()
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            FalconEndpoint::Url(u) => u.trim_end_matches('/').to_string(),
            FalconEndpoint::Cloud(region) => {
                region.base_url().as_str().trim_end_matches('/').to_string()
            }
        }
    }
}

/// `s` with the `user:password@` of a URL replaced by `[REDACTED]@` (for logs and errors).
pub fn redact_userinfo(s: &str) -> String {
    opencti_client::redact_url(s)
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// OpenCTI connection (`OPENCTI_*`, `opencti.*`).
#[derive(Clone)]
pub struct OpenCtiSettings {
    /// `OPENCTI_URL` (required).
    pub url: String,
    /// `OPENCTI_TOKEN` (required, secret).
    pub token: SecretString,
    /// `OPENCTI_SSL_VERIFY` (default false, as pycti; see [`Config::insecure_settings`]).
    pub ssl_verify: bool,
    /// `OPENCTI_JSON_LOGGING` (default true).
    pub json_logging: bool,
    /// `OPENCTI_CUSTOM_HEADERS` (`"h1:v1;h2:v2"`, GraphQL only).
    pub custom_headers: Vec<(String, String)>,
}

impl fmt::Debug for OpenCtiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenCtiSettings")
            .field("url", &redact_userinfo(&self.url))
            .field("token", &"[REDACTED]")
            .field("ssl_verify", &self.ssl_verify)
            .field("json_logging", &self.json_logging)
            .field(
                "custom_headers",
                &self
                    .custom_headers
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Connector identity and stream options (`CONNECTOR_*`, `connector.*`).
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// `CONNECTOR_ID` (required).
    pub id: String,
    /// `CONNECTOR_NAME` (default `CrowdstrikeEndpointSecurity`): Prometheus `name` label and logger name.
    pub name: String,
    /// `CONNECTOR_SCOPE` (default `crowdstrike-endpoint-security`; comma-separated).
    pub scope: Vec<String>,
    /// `CONNECTOR_LOG_LEVEL` (default `error`; case-insensitive).
    pub log_level: LogLevel,
    /// `CONNECTOR_LIVE_STREAM_ID` (required).
    pub live_stream_id: String,
    /// `CONNECTOR_LIVE_STREAM_LISTEN_DELETE` (default true).
    pub listen_delete: bool,
    /// `CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES` (default true).
    pub no_dependencies: bool,
    /// `CONNECTOR_LIVE_STREAM_WITH_INFERENCES` (default false).
    pub with_inferences: bool,
    /// `CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE`: `None` = now on first run; `Some(None)` = recovery disabled
    /// (`no`/`false`); `Some(Some(date))` = that date.
    pub recover_iso_date: Option<Option<String>>,
    /// `CONNECTOR_LIVE_STREAM_START_TIMESTAMP` (epoch ms; `-0` is appended): first-run start position.
    pub start_timestamp: Option<u64>,
    /// `CONNECTOR_AUTO` (echoed into the registration).
    pub auto: bool,
    /// `CONNECTOR_ONLY_CONTEXTUAL` (echoed into the registration).
    pub only_contextual: bool,
}

/// CrowdStrike Falcon settings (`CROWDSTRIKE_*` or `FALCON_*`, `crowdstrike.*`).
#[derive(Clone)]
pub struct CrowdStrikeSettings {
    /// `CROWDSTRIKE_API_BASE_URL` or `FALCON_CLOUD` (default: [`FalconEndpoint::Auto`]).
    pub endpoint: FalconEndpoint,
    /// `CROWDSTRIKE_ALLOW_INSECURE_HTTP` (default false): accept a plain `http` URL to a host other
    /// than loopback.
    pub allow_insecure_http: bool,
    /// `CROWDSTRIKE_CLIENT_ID` / `FALCON_CLIENT_ID` (required): also the `created_by` of owned IOCs.
    pub client_id: String,
    /// `CROWDSTRIKE_CLIENT_SECRET` / `FALCON_CLIENT_SECRET` (required, secret).
    pub client_secret: SecretString,
    /// `FALCON_MEMBER_CID` / `CROWDSTRIKE_MEMBER_CID` (optional, Flight Control child CID).
    pub member_cid: Option<String>,
    /// `CROWDSTRIKE_PERMANENT_DELETE` (default false: soft delete = tag `TO_DELETE` + `no_action`).
    pub permanent_delete: bool,
    /// `CROWDSTRIKE_FALCON_FOR_MOBILE_ACTIVE` (default false): allows `android` / `ios` platforms.
    pub falcon_for_mobile_active: bool,
    /// `CROWDSTRIKE_ACTION_ON_IP` (default `detect`; `no_action` | `detect`).
    pub action_on_ip: IocAction,
    /// `CROWDSTRIKE_ACTION_ON_DOMAIN` (default `detect`; `no_action` | `detect`).
    pub action_on_domain: IocAction,
    /// `CROWDSTRIKE_ACTION_ON_HASH` (default `detect`; `no_action` | `allow` | `detect` | `prevent`).
    pub action_on_hash: IocAction,
    /// `CROWDSTRIKE_RATE_LIMIT_PER_MINUTE` (default 6000): the tenant's Falcon API limit.
    pub rate_limit_per_minute: u32,
    /// `CROWDSTRIKE_RATE_LIMIT_SHARE` (default 0.8): the share of the limit this connector may use.
    pub rate_limit_share: f64,
    /// Base URL per cloud, replacing the real hosts (library only, never read from the environment:
    /// tests point region discovery at simulators with it). Default empty.
    pub region_urls: Vec<(falcon_sdk::Region, url::Url)>,
}

impl fmt::Debug for CrowdStrikeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrowdStrikeSettings")
            .field("endpoint", &self.endpoint)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("member_cid", &self.member_cid)
            .field("permanent_delete", &self.permanent_delete)
            .field("falcon_for_mobile_active", &self.falcon_for_mobile_active)
            .field("action_on_ip", &self.action_on_ip)
            .field("action_on_domain", &self.action_on_domain)
            .field("action_on_hash", &self.action_on_hash)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("rate_limit_share", &self.rate_limit_share)
            .field("region_urls", &self.region_urls)
            .finish()
    }
}

/// Prometheus endpoint (`METRICS_*`, `metrics.*`).
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// `METRICS_ENABLE` (default false).
    pub enable: bool,
    /// `METRICS_PORT` (default 9113).
    pub port: u16,
    /// `METRICS_ADDR` (default `0.0.0.0`; must be an IP address).
    pub addr: IpAddr,
}

/// Engine knobs that the Python connector does not have (`IOC_SYNC_*`, `ioc_sync.*`).
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// `IOC_SYNC_BATCH_SIZE` (default 1000): most stream events per batch.
    pub batch_size: usize,
    /// `IOC_SYNC_BATCH_WINDOW_MS` (default 500): longest wait for a batch to fill.
    pub batch_window: Duration,
    /// `IOC_SYNC_STATE_FILE` (default `ioc-sync-state.json`): local copy of the stream state.
    pub state_file: String,
    /// `IOC_SYNC_DEAD_LETTER_FILE` (default `ioc-sync-dead-letter.jsonl`).
    pub dead_letter_file: String,
    /// `IOC_SYNC_PING_INTERVAL_SECS` (default 40, at most 40): state ping to OpenCTI.
    pub ping_interval: Duration,
    /// `IOC_SYNC_WRITE_CHUNK` (default 200, 1..=500): IOCs per Falcon create/update request.
    pub write_chunk: usize,
    /// `IOC_SYNC_LOOKUP_CHUNK` (default 200, 1..=500): values per Falcon lookup request.
    pub lookup_chunk: usize,
    /// `IOC_SYNC_CONCURRENCY` (default 4, 1..=32): Falcon requests in flight.
    pub concurrency: usize,
    /// `IOC_SYNC_SHUTDOWN_GRACE_SECS` (default 20, 1..=600): time the batch in flight gets to be
    /// written after SIGTERM.
    pub shutdown_grace: Duration,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// OpenCTI connection.
    pub opencti: OpenCtiSettings,
    /// Connector identity and stream options.
    pub connector: ConnectorSettings,
    /// Falcon settings.
    pub crowdstrike: CrowdStrikeSettings,
    /// Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// Engine knobs.
    pub sync: SyncSettings,
    /// Dissemination assurance (`DEPLOYMENT_*`, `HITS_*`, `SECURITY_PLATFORM_*`).
    pub assurance: crate::assurance::settings::AssuranceSettings,
}

/// A configuration error: names the variable or key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("missing required setting: set environment variable {env} or config.yml key {key}")]
    Missing {
        /// Environment variable name.
        env: &'static str,
        /// config.yml key.
        key: &'static str,
    },
    /// A setting has a value that is not allowed.
    #[error("invalid value {value:?} for {origin}: expected {allowed}")]
    Invalid {
        /// Where the value came from, e.g. `environment variable CROWDSTRIKE_ACTION_ON_IP`.
        origin: String,
        /// The offending value (never a secret).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The config file is not valid YAML.
    #[error("config file is not valid YAML: {0}")]
    Yaml(String),
}

/// How a setting's text is read; also the "expected ..." part of its errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Free text (trimmed).
    Text,
    /// A secret: never quoted in an error, never logged.
    Secret,
    /// pydantic's boolean forms, case-insensitive.
    Bool,
    /// An integer within bounds.
    Int {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A number within bounds.
    Float {
        /// Smallest allowed.
        min: f64,
        /// Largest allowed.
        max: f64,
    },
    /// An `http(s)` URL.
    Url,
    /// `auto`, a Falcon cloud name or an `http(s)` URL ([`FalconEndpoint`]).
    Endpoint,
    /// One of these words, case-insensitive.
    Choice(&'static [&'static str]),
    /// Comma-separated (or a YAML list).
    List,
    /// `"header:value;header:value"` (values may be credentials: never quoted).
    Headers,
    /// An ISO-8601 date, or `no`/`false`/`none`.
    Date,
    /// An IP address.
    Ip,
}

impl Kind {
    /// What a valid value looks like.
    pub fn allowed(&self) -> String {
        match self {
            Kind::Text | Kind::Secret => "a non-empty value".into(),
            Kind::Bool => "a boolean (true/false, yes/no, 1/0, on/off)".into(),
            Kind::Int { min, max } => format!("a number from {min} to {max}"),
            Kind::Float { min, max } => format!("a number from {min} to {max}"),
            Kind::Url => "an http(s) URL".into(),
            Kind::Endpoint => "auto, an http(s) URL such as https://api.crowdstrike.com, or one of us-1, us-2, us-3, eu-1, us-gov-1, us-gov-2".into(),
            Kind::Choice(c) => format!("{} (any case)", c.join(" | ")),
            Kind::List => "a comma-separated list".into(),
            Kind::Headers => "\"header:value;header:value\"".into(),
            Kind::Date => "an ISO-8601 date (e.g. 2024-04-10T08:00:00Z) or no/false".into(),
            Kind::Ip => "an IP address such as 0.0.0.0".into(),
        }
    }

    fn is_secret(&self) -> bool {
        matches!(self, Kind::Secret | Kind::Headers)
    }
}

/// A setting's default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    /// No default: the setting must be set.
    Required,
    /// Unset means "absent"; the text says what that does (documentation only).
    Unset(&'static str),
    /// This value, read by the setting's [`Kind`] like any other.
    Value(&'static str),
}

/// One setting: where it is read from, its default, how it is parsed, and what it means. [`SETTINGS`]
/// is the one list from which loading, the recognised `config.yml` keys and the tables of
/// `docs/configuration.md` ([`settings_table`]) derive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// Environment variable names; the first set wins.
    pub env: &'static [&'static str],
    /// `config.yml` key (`section.key`).
    pub yaml: &'static str,
    /// The default.
    pub default: DefaultValue,
    /// How the value is read (and whether it is a secret).
    pub kind: Kind,
    /// The documentation line.
    pub meaning: &'static str,
}

impl Setting {
    /// Whether the value is a secret (never quoted in errors or logs).
    pub fn secret(&self) -> bool {
        self.kind.is_secret()
    }

    /// The `config.yml` section (`opencti`, `connector`, `crowdstrike`, `metrics`, `ioc_sync`).
    pub fn section(&self) -> &'static str {
        self.yaml.split_once('.').map_or(self.yaml, |(s, _)| s)
    }
}

const fn setting(
    env: &'static [&'static str],
    yaml: &'static str,
    default: DefaultValue,
    kind: Kind,
    meaning: &'static str,
) -> Setting {
    Setting {
        env,
        yaml,
        default,
        kind,
        meaning,
    }
}

const ACTIONS_IP_DOMAIN: &[&str] = &["no_action", "detect"];
const ACTIONS_HASH: &[&str] = &["no_action", "allow", "detect", "prevent"];
const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "warning", "error"];
const BOOL: Kind = Kind::Bool;
const fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}
use DefaultValue::{Required, Unset, Value};

/// The settings, by name.
#[allow(missing_docs)]
pub mod settings {
    use super::*;

    pub const OPENCTI_URL: Setting = setting(
        &["OPENCTI_URL"],
        "opencti.url",
        Required,
        Kind::Url,
        "OpenCTI base URL (http or https); a `user:password@` in it is never logged",
    );
    pub const OPENCTI_TOKEN: Setting = setting(
        &["OPENCTI_TOKEN"],
        "opencti.token",
        Required,
        Kind::Secret,
        "API token of the connector's user (`ChangeMe` is rejected)",
    );
    pub const OPENCTI_SSL_VERIFY: Setting = setting(
        &["OPENCTI_SSL_VERIFY"],
        "opencti.ssl_verify",
        Value("false"),
        BOOL,
        "verify TLS certificates (GraphQL and stream), as pycti; `false` with an `https` URL to a host other than loopback logs an ERROR at start-up",
    );
    pub const OPENCTI_JSON_LOGGING: Setting = setting(
        &["OPENCTI_JSON_LOGGING"],
        "opencti.json_logging",
        Value("true"),
        BOOL,
        "JSON logs in pycti's format; `false` = human-readable",
    );
    pub const OPENCTI_CUSTOM_HEADERS: Setting = setting(
        &["OPENCTI_CUSTOM_HEADERS"],
        "opencti.custom_headers",
        Unset("none"),
        Kind::Headers,
        "`\"h1:v1;h2:v2\"`, sent on GraphQL requests (not on the stream, as pycti); values are treated as secrets",
    );

    pub const CONNECTOR_ID: Setting = setting(
        &["CONNECTOR_ID"],
        "connector.id",
        Required,
        Kind::Text,
        "connector id (UUID) registered in OpenCTI; keep the Python connector's to resume its state",
    );
    pub const CONNECTOR_NAME: Setting = setting(
        &["CONNECTOR_NAME"],
        "connector.name",
        Value("CrowdstrikeEndpointSecurity"),
        Kind::Text,
        "display name, logger `name`, metric label `name`",
    );
    pub const CONNECTOR_TYPE: Setting = setting(
        &["CONNECTOR_TYPE"],
        "connector.type",
        Value("STREAM"),
        Kind::Choice(&["STREAM"]),
        "must be `STREAM` (any case)",
    );
    pub const CONNECTOR_SCOPE: Setting = setting(
        &["CONNECTOR_SCOPE"],
        "connector.scope",
        Value("crowdstrike-endpoint-security"),
        Kind::List,
        "comma-separated (or a YAML list)",
    );
    pub const CONNECTOR_LOG_LEVEL: Setting = setting(
        &["CONNECTOR_LOG_LEVEL"],
        "connector.log_level",
        Value("error"),
        Kind::Choice(LOG_LEVELS),
        "`debug`, `info`, `warn`, `warning`, `error`, **any case** (the Python connector rejects `INFO`)",
    );
    pub const CONNECTOR_LIVE_STREAM_ID: Setting = setting(
        &["CONNECTOR_LIVE_STREAM_ID"],
        "connector.live_stream_id",
        Required,
        Kind::Text,
        "live stream (stream collection) id, or `live`",
    );
    pub const CONNECTOR_LIVE_STREAM_LISTEN_DELETE: Setting = setting(
        &["CONNECTOR_LIVE_STREAM_LISTEN_DELETE"],
        "connector.live_stream_listen_delete",
        Value("true"),
        BOOL,
        "receive delete events",
    );
    pub const CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES: Setting = setting(
        &["CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES"],
        "connector.live_stream_no_dependencies",
        Value("true"),
        BOOL,
        "do not receive relationships/dependencies",
    );
    pub const CONNECTOR_LIVE_STREAM_WITH_INFERENCES: Setting = setting(
        &["CONNECTOR_LIVE_STREAM_WITH_INFERENCES"],
        "connector.live_stream_with_inferences",
        Value("false"),
        BOOL,
        "receive inferred entities (and have `reconcile` include inferred indicators)",
    );
    pub const CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE: Setting = setting(
        &["CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE"],
        "connector.live_stream_recover_iso_date",
        Unset("now, on the first run"),
        Kind::Date,
        "first-run recovery date (ISO 8601); `no`/`false`/`none` disables the initial snapshot",
    );
    pub const CONNECTOR_LIVE_STREAM_START_TIMESTAMP: Setting = setting(
        &["CONNECTOR_LIVE_STREAM_START_TIMESTAMP"],
        "connector.live_stream_start_timestamp",
        Unset("`0`"),
        int(0, u64::MAX),
        "first-run start position, epoch milliseconds (`-0` is appended)",
    );
    pub const CONNECTOR_AUTO: Setting = setting(
        &["CONNECTOR_AUTO"],
        "connector.auto",
        Value("false"),
        BOOL,
        "echoed into the registration",
    );
    pub const CONNECTOR_ONLY_CONTEXTUAL: Setting = setting(
        &["CONNECTOR_ONLY_CONTEXTUAL"],
        "connector.only_contextual",
        Value("false"),
        BOOL,
        "echoed into the registration",
    );

    pub const CROWDSTRIKE_API_BASE_URL: Setting = setting(
        &["CROWDSTRIKE_API_BASE_URL"],
        "crowdstrike.api_base_url",
        Value("https://api.crowdstrike.com"),
        Kind::Endpoint,
        "unset, `auto` or `https://api.crowdstrike.com`: log in on US-1 and follow `X-Cs-Region` (FalconPy's rule, below); a cloud name (`us-1`, `us-2`, `us-3`, `eu-1`, `us-gov-1`, `us-gov-2`; case, `-` and `_` do not matter) pins that cloud; any other http(s) URL is used as given",
    );
    pub const CROWDSTRIKE_CLOUD: Setting = setting(
        &["FALCON_CLOUD", "CROWDSTRIKE_CLOUD"],
        "crowdstrike.cloud",
        Unset("—"),
        Kind::Endpoint,
        "`auto`, cloud name or URL, read the same way (used when `CROWDSTRIKE_API_BASE_URL` is not set)",
    );
    pub const CROWDSTRIKE_ALLOW_INSECURE_HTTP: Setting = setting(
        &["CROWDSTRIKE_ALLOW_INSECURE_HTTP"],
        "crowdstrike.allow_insecure_http",
        Value("false"),
        BOOL,
        "accept a plain `http` Falcon URL to a host other than loopback (the client secret then travels in clear); new",
    );
    pub const CROWDSTRIKE_CLIENT_ID: Setting = setting(
        &["CROWDSTRIKE_CLIENT_ID", "FALCON_CLIENT_ID"],
        "crowdstrike.client_id",
        Required,
        Kind::Text,
        "API client id; also the `created_by` of the IOCs the connector owns",
    );
    pub const CROWDSTRIKE_CLIENT_SECRET: Setting = setting(
        &["CROWDSTRIKE_CLIENT_SECRET", "FALCON_CLIENT_SECRET"],
        "crowdstrike.client_secret",
        Required,
        Kind::Secret,
        "API client secret (scopes: IOC Manager read + write)",
    );
    pub const CROWDSTRIKE_MEMBER_CID: Setting = setting(
        &["FALCON_MEMBER_CID", "CROWDSTRIKE_MEMBER_CID"],
        "crowdstrike.member_cid",
        Unset("none"),
        Kind::Text,
        "Flight Control child CID",
    );
    pub const CROWDSTRIKE_PERMANENT_DELETE: Setting = setting(
        &["CROWDSTRIKE_PERMANENT_DELETE"],
        "crowdstrike.permanent_delete",
        Value("false"),
        BOOL,
        "`true`: delete IOCs; `false`: soft delete (tag `TO_DELETE`, action `no_action`)",
    );
    pub const CROWDSTRIKE_FALCON_FOR_MOBILE_ACTIVE: Setting = setting(
        &["CROWDSTRIKE_FALCON_FOR_MOBILE_ACTIVE"],
        "crowdstrike.falcon_for_mobile_active",
        Value("false"),
        BOOL,
        "allow the `android` and `ios` platforms",
    );
    pub const CROWDSTRIKE_ACTION_ON_IP: Setting = setting(
        &["CROWDSTRIKE_ACTION_ON_IP"],
        "crowdstrike.action_on_ip",
        Value("detect"),
        Kind::Choice(ACTIONS_IP_DOMAIN),
        "`no_action` \\| `detect` (ipv4, ipv6)",
    );
    pub const CROWDSTRIKE_ACTION_ON_DOMAIN: Setting = setting(
        &["CROWDSTRIKE_ACTION_ON_DOMAIN"],
        "crowdstrike.action_on_domain",
        Value("detect"),
        Kind::Choice(ACTIONS_IP_DOMAIN),
        "`no_action` \\| `detect`",
    );
    pub const CROWDSTRIKE_ACTION_ON_HASH: Setting = setting(
        &["CROWDSTRIKE_ACTION_ON_HASH"],
        "crowdstrike.action_on_hash",
        Value("detect"),
        Kind::Choice(ACTIONS_HASH),
        "`no_action` \\| `allow` \\| `detect` \\| `prevent` (sha256, md5)",
    );
    pub const CROWDSTRIKE_RATE_LIMIT_PER_MINUTE: Setting = setting(
        &["CROWDSTRIKE_RATE_LIMIT_PER_MINUTE"],
        "crowdstrike.rate_limit_per_minute",
        Value("6000"),
        int(1, 1_000_000),
        "the tenant's Falcon API limit (new)",
    );
    pub const CROWDSTRIKE_RATE_LIMIT_SHARE: Setting = setting(
        &["CROWDSTRIKE_RATE_LIMIT_SHARE"],
        "crowdstrike.rate_limit_share",
        Value("0.8"),
        Kind::Float {
            min: 0.01,
            max: 1.0,
        },
        "share of that limit the connector may use, 0.01–1 (new)",
    );

    pub const METRICS_ENABLE: Setting = setting(
        &["METRICS_ENABLE"],
        "metrics.enable",
        Value("false"),
        BOOL,
        "serve `/metrics` and `/healthz`",
    );
    pub const METRICS_PORT: Setting = setting(
        &["METRICS_PORT"],
        "metrics.port",
        Value("9113"),
        int(0, 65_535),
        "port",
    );
    pub const METRICS_ADDR: Setting = setting(
        &["METRICS_ADDR"],
        "metrics.addr",
        Value("0.0.0.0"),
        Kind::Ip,
        "bind address; must be an IP address",
    );

    pub const IOC_SYNC_BATCH_SIZE: Setting = setting(
        &["IOC_SYNC_BATCH_SIZE"],
        "ioc_sync.batch_size",
        Value("1000"),
        int(1, 100_000),
        "most stream events per batch (bounds memory)",
    );
    pub const IOC_SYNC_BATCH_WINDOW_MS: Setting = setting(
        &["IOC_SYNC_BATCH_WINDOW_MS"],
        "ioc_sync.batch_window_ms",
        Value("500"),
        int(1, 60_000),
        "longest wait for a batch to fill",
    );
    pub const IOC_SYNC_STATE_FILE: Setting = setting(
        &["IOC_SYNC_STATE_FILE"],
        "ioc_sync.state_file",
        Value("ioc-sync-state.json"),
        Kind::Text,
        "local copy of the stream state, written atomically after each batch",
    );
    pub const IOC_SYNC_DEAD_LETTER_FILE: Setting = setting(
        &["IOC_SYNC_DEAD_LETTER_FILE"],
        "ioc_sync.dead_letter_file",
        Value("ioc-sync-dead-letter.jsonl"),
        Kind::Text,
        "IOC writes Falcon refused for good (JSON lines)",
    );
    pub const IOC_SYNC_PING_INTERVAL_SECS: Setting = setting(
        &["IOC_SYNC_PING_INTERVAL_SECS"],
        "ioc_sync.ping_interval_secs",
        Value("40"),
        int(1, 40),
        "state ping to OpenCTI, 1–40 s",
    );
    pub const IOC_SYNC_WRITE_CHUNK: Setting = setting(
        &["IOC_SYNC_WRITE_CHUNK"],
        "ioc_sync.write_chunk",
        Value("200"),
        int(1, 500),
        "IOCs per create/update request, 1–500",
    );
    pub const IOC_SYNC_LOOKUP_CHUNK: Setting = setting(
        &["IOC_SYNC_LOOKUP_CHUNK"],
        "ioc_sync.lookup_chunk",
        Value("200"),
        int(1, 500),
        "values per lookup request, 1–500",
    );
    pub const IOC_SYNC_CONCURRENCY: Setting = setting(
        &["IOC_SYNC_CONCURRENCY"],
        "ioc_sync.concurrency",
        Value("4"),
        int(1, 32),
        "Falcon requests in flight, 1–32",
    );
    pub const IOC_SYNC_SHUTDOWN_GRACE_SECS: Setting = setting(
        &["IOC_SYNC_SHUTDOWN_GRACE_SECS"],
        "ioc_sync.shutdown_grace_secs",
        Value("20"),
        int(1, 600),
        "after SIGTERM, time the batch in flight gets to be written (keep it under the orchestrator's stop timeout)",
    );

    pub const DEPLOYMENT_REPORTING_ENABLED: Setting = setting(
        &["DEPLOYMENT_REPORTING_ENABLED"],
        "deployment.reporting_enabled",
        Value("true"),
        BOOL,
        "report deployments to OpenCTI (dissemination assurance); `false`: no write-back call at all, no reconciliation, no hits",
    );
    pub const DEPLOYMENT_RECONCILIATION_INTERVAL: Setting = setting(
        &["DEPLOYMENT_RECONCILIATION_INTERVAL"],
        "deployment.reconciliation_interval",
        Value("60"),
        int(0, 525_600),
        "minutes between deployment reconciliations (and hit collections); `0` disables both",
    );
    pub const HITS_REPORTING_ENABLED: Setting = setting(
        &["HITS_REPORTING_ENABLED"],
        "hits.reporting_enabled",
        Value("true"),
        BOOL,
        "read Falcon alerts and report hits (needs the Alerts: Read scope)",
    );
    pub const SECURITY_PLATFORM_NAME: Setting = setting(
        &["SECURITY_PLATFORM_NAME"],
        "security_platform.name",
        Value("CrowdStrike Falcon"),
        Kind::Text,
        "name of the Security Platform entity, upserted at start (at least 2 characters)",
    );
    pub const SECURITY_PLATFORM_TYPE: Setting = setting(
        &["SECURITY_PLATFORM_TYPE"],
        "security_platform.type",
        Value("EDR"),
        Kind::Text,
        "its `security_platform_type` (open vocabulary: `EDR`, `XDR`, `SIEM`, …); set but empty: none is sent, as upstream",
    );
    pub const SECURITY_PLATFORM_ID: Setting = setting(
        &["SECURITY_PLATFORM_ID"],
        "security_platform.id",
        Unset("none"),
        Kind::Text,
        "id of an existing Security Platform, verified at start, instead of the upsert by name",
    );
}

/// Every setting, in documentation order.
pub const SETTINGS: &[Setting] = {
    use settings::*;
    &[
        OPENCTI_URL,
        OPENCTI_TOKEN,
        OPENCTI_SSL_VERIFY,
        OPENCTI_JSON_LOGGING,
        OPENCTI_CUSTOM_HEADERS,
        CONNECTOR_ID,
        CONNECTOR_NAME,
        CONNECTOR_TYPE,
        CONNECTOR_SCOPE,
        CONNECTOR_LOG_LEVEL,
        CONNECTOR_LIVE_STREAM_ID,
        CONNECTOR_LIVE_STREAM_LISTEN_DELETE,
        CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES,
        CONNECTOR_LIVE_STREAM_WITH_INFERENCES,
        CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE,
        CONNECTOR_LIVE_STREAM_START_TIMESTAMP,
        CONNECTOR_AUTO,
        CONNECTOR_ONLY_CONTEXTUAL,
        CROWDSTRIKE_API_BASE_URL,
        CROWDSTRIKE_CLOUD,
        CROWDSTRIKE_ALLOW_INSECURE_HTTP,
        CROWDSTRIKE_CLIENT_ID,
        CROWDSTRIKE_CLIENT_SECRET,
        CROWDSTRIKE_MEMBER_CID,
        CROWDSTRIKE_PERMANENT_DELETE,
        CROWDSTRIKE_FALCON_FOR_MOBILE_ACTIVE,
        CROWDSTRIKE_ACTION_ON_IP,
        CROWDSTRIKE_ACTION_ON_DOMAIN,
        CROWDSTRIKE_ACTION_ON_HASH,
        CROWDSTRIKE_RATE_LIMIT_PER_MINUTE,
        CROWDSTRIKE_RATE_LIMIT_SHARE,
        METRICS_ENABLE,
        METRICS_PORT,
        METRICS_ADDR,
        IOC_SYNC_BATCH_SIZE,
        IOC_SYNC_BATCH_WINDOW_MS,
        IOC_SYNC_STATE_FILE,
        IOC_SYNC_DEAD_LETTER_FILE,
        IOC_SYNC_PING_INTERVAL_SECS,
        IOC_SYNC_WRITE_CHUNK,
        IOC_SYNC_LOOKUP_CHUNK,
        IOC_SYNC_CONCURRENCY,
        IOC_SYNC_SHUTDOWN_GRACE_SECS,
        DEPLOYMENT_REPORTING_ENABLED,
        DEPLOYMENT_RECONCILIATION_INTERVAL,
        HITS_REPORTING_ENABLED,
        SECURITY_PLATFORM_NAME,
        SECURITY_PLATFORM_TYPE,
        SECURITY_PLATFORM_ID,
    ]
};

/// The Markdown table of one `config.yml` section's settings, as `docs/configuration.md` shows it.
pub fn settings_table(section: &str) -> String {
    let mut out =
        String::from("| Environment | config.yml | Default | Meaning |\n|---|---|---|---|\n");
    for s in SETTINGS.iter().filter(|s| s.section() == section) {
        let env = s
            .env
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(" or ");
        let default = match s.default {
            Required => "**required**".to_string(),
            Unset(t) => t.to_string(),
            Value(v) => format!("`{v}`"),
        };
        out.push_str(&format!(
            "| {env} | `{}` | {default} | {} |\n",
            s.yaml, s.meaning
        ));
    }
    out
}

/// Settings of older connector versions, of pycti's own metrics and other helper options that this
/// connector accepts and ignores (with a warning).
pub const IGNORED_KEYS: &[(&str, &str)] = &[
    ("CONNECTOR_CONSUMER_COUNT", "connector.consumer_count"),
    ("CONNECTOR_IGNORE_TYPES", "connector.ignore_types"),
    ("CONNECTOR_CONFIDENCE_LEVEL", "connector.confidence_level"),
    ("CONNECTOR_AUTO_UPDATE", "connector.auto_update"),
    (
        "CONNECTOR_ENRICHMENT_RESOLUTION",
        "connector.enrichment_resolution",
    ),
    ("CONNECTOR_EXPOSE_METRICS", "connector.expose_metrics"),
    ("CONNECTOR_METRICS_PORT", "connector.metrics_port"),
    ("CONNECTOR_METRICS_NAMESPACE", "connector.metrics_namespace"),
    ("CONNECTOR_METRICS_SUBSYSTEM", "connector.metrics_subsystem"),
    (
        "CONNECTOR_AUTO_CREATE_SERVICE_ACCOUNT",
        "connector.auto_create_service_account",
    ),
    (
        "CONNECTOR_AUTO_CREATE_SERVICE_ACCOUNT_CONFIDENCE_LEVEL",
        "connector.auto_create_service_account_confidence_level",
    ),
];

/// A value and where it came from.
struct Found {
    value: String,
    origin: String,
    /// Quoted in errors as `[REDACTED]`.
    secret: bool,
}

impl Found {
    fn trimmed(&self) -> &str {
        self.value.trim()
    }
}

struct Sources<'a> {
    env: &'a BTreeMap<String, String>,
    yaml: BTreeMap<String, String>,
}

impl Sources<'_> {
    /// The value set for `k` (environment first, then `config.yml`), empty values counting as unset.
    /// The value set for `k` (blank ones included).
    fn given(&self, k: &Setting) -> Option<Found> {
        let secret = k.secret();
        k.env
            .iter()
            .find_map(|name| {
                self.env.get(*name).map(|v| Found {
                    value: v.clone(),
                    origin: format!("environment variable {name}"),
                    secret,
                })
            })
            .or_else(|| {
                self.yaml.get(k.yaml).map(|v| Found {
                    value: v.clone(),
                    origin: format!("config.yml key {}", k.yaml),
                    secret,
                })
            })
    }

    /// The value set for `k`; a blank one counts as unset.
    fn found(&self, k: &Setting) -> Option<Found> {
        self.given(k).filter(|f| !f.value.trim().is_empty())
    }

    /// The value set for `k`, else its default value.
    fn value(&self, k: &Setting) -> Option<Found> {
        self.found(k).or(match k.default {
            Value(v) => Some(Found {
                value: v.to_string(),
                origin: format!("the default of {}", k.env[0]),
                secret: false,
            }),
            Required | Unset(_) => None,
        })
    }

    fn required(&self, k: &Setting) -> Result<Found, ConfigError> {
        self.found(k).ok_or(ConfigError::Missing {
            env: k.env[0],
            key: k.yaml,
        })
    }

    fn text(&self, k: &Setting) -> Option<String> {
        self.value(k).map(|f| f.trimmed().to_string())
    }

    /// Like [`Self::text`], except that a setting given but empty is none (not its default), as
    /// the Python connector reads `SECURITY_PLATFORM_TYPE`.
    fn text_or_blank(&self, k: &Setting) -> Option<String> {
        match self.given(k) {
            Some(f) if f.value.trim().is_empty() => None,
            _ => self.text(k),
        }
    }

    fn bool(&self, k: &Setting) -> Result<bool, ConfigError> {
        match self.value(k) {
            None => Ok(false),
            Some(f) => parse_bool(&f.value).ok_or_else(|| invalid(&f, &k.kind)),
        }
    }

    fn int<T: TryFrom<u64>>(&self, k: &Setting) -> Result<Option<T>, ConfigError> {
        let Kind::Int { min, max } = k.kind else {
            unreachable!("{} is not an integer setting", k.yaml)
        };
        let Some(f) = self.value(k) else {
            return Ok(None);
        };
        match f.trimmed().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => {
                T::try_from(v).map(Some).map_err(|_| invalid(&f, &k.kind))
            }
            _ => Err(invalid(&f, &k.kind)),
        }
    }

    fn float(&self, k: &Setting) -> Result<Option<f64>, ConfigError> {
        let Kind::Float { min, max } = k.kind else {
            unreachable!("{} is not a float setting", k.yaml)
        };
        let Some(f) = self.value(k) else {
            return Ok(None);
        };
        match f.trimmed().parse::<f64>() {
            Ok(v) if v >= min && v <= max => Ok(Some(v)),
            _ => Err(invalid(&f, &k.kind)),
        }
    }

    /// The choice (as listed in the table) the value names, case-insensitively.
    fn choice(&self, k: &Setting) -> Result<Option<&'static str>, ConfigError> {
        let Kind::Choice(choices) = k.kind else {
            unreachable!("{} is not a choice setting", k.yaml)
        };
        let Some(f) = self.value(k) else {
            return Ok(None);
        };
        choices
            .iter()
            .copied()
            .find(|c| c.eq_ignore_ascii_case(f.trimmed()))
            .map(Some)
            .ok_or_else(|| invalid(&f, &k.kind))
    }
}

fn invalid(f: &Found, kind: &Kind) -> ConfigError {
    invalid_with(f, &kind.allowed())
}

fn invalid_with(f: &Found, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: f.origin.clone(),
        value: if f.secret {
            "[REDACTED]".into()
        } else {
            redact_userinfo(f.trimmed())
        },
        allowed: allowed.to_string(),
    }
}

/// pydantic's boolean forms, case-insensitive.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "y" | "t" => Some(true),
        "false" | "0" | "no" | "off" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// Flattens `section: {key: value}` YAML into `section.key -> value` strings.
fn flatten_yaml(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    use serde_yaml_ng::Value as Y;
    let mut out = BTreeMap::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let doc: Y = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    let Y::Mapping(sections) = doc else {
        return Err(ConfigError::Yaml(
            "the top level must be a mapping of sections".into(),
        ));
    };
    for (section, body) in sections {
        let Some(section) = section.as_str() else {
            continue;
        };
        let Y::Mapping(entries) = body else {
            continue;
        };
        for (k, v) in entries {
            let Some(k) = k.as_str() else { continue };
            let v = match v {
                Y::Null => continue,
                Y::Bool(b) => b.to_string(),
                Y::Number(n) => n.to_string(),
                Y::String(s) => s,
                Y::Sequence(items) => items
                    .iter()
                    .filter_map(|i| match i {
                        Y::String(s) => Some(s.clone()),
                        Y::Number(n) => Some(n.to_string()),
                        Y::Bool(b) => Some(b.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                _ => continue,
            };
            out.insert(format!("{section}.{k}"), v);
        }
    }
    Ok(out)
}

impl Config {
    /// Builds the configuration from the environment map and the text of `config.yml` (if any).
    ///
    /// Returns the configuration and the warnings to log (ignored legacy keys, unknown keys).
    pub fn load(
        env: &BTreeMap<String, String>,
        yaml: Option<&str>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        use settings::*;
        let yaml = match yaml {
            Some(t) => flatten_yaml(t)?,
            None => BTreeMap::new(),
        };
        let mut warnings = Vec::new();
        for (env_name, yaml_key) in IGNORED_KEYS {
            if env.contains_key(*env_name) {
                warnings.push(format!(
                    "environment variable {env_name} is not used by this connector; ignored"
                ));
            }
            if yaml.contains_key(*yaml_key) {
                warnings.push(format!(
                    "config.yml key {yaml_key} is not used by this connector; ignored"
                ));
            }
        }
        for k in yaml.keys() {
            if !SETTINGS.iter().any(|s| s.yaml == k) && !IGNORED_KEYS.iter().any(|(_, y)| y == k) {
                warnings.push(format!("config.yml key {k} is unknown; ignored"));
            }
        }
        let s = Sources { env, yaml };

        // opencti
        let url = s.required(&OPENCTI_URL)?;
        match url::Url::parse(url.trimmed()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(invalid(&url, &OPENCTI_URL.kind)),
        }
        let token = s.required(&OPENCTI_TOKEN)?;
        if token.trimmed() == "ChangeMe" {
            return Err(ConfigError::Invalid {
                origin: token.origin,
                value: "ChangeMe".into(),
                allowed: "the API token of the connector's OpenCTI user".into(),
            });
        }
        let custom_headers = match s.found(&OPENCTI_CUSTOM_HEADERS) {
            None => Vec::new(),
            Some(f) => {
                let mut out = Vec::new();
                for part in f.value.split(';').filter(|p| !p.trim().is_empty()) {
                    let (h, v) = part
                        .split_once(':')
                        .ok_or_else(|| invalid(&f, &OPENCTI_CUSTOM_HEADERS.kind))?;
                    out.push((h.trim().to_string(), v.trim().to_string()));
                }
                out
            }
        };
        let opencti = OpenCtiSettings {
            url: url.trimmed().trim_end_matches('/').to_string(),
            token: SecretString::from(token.trimmed().to_string()),
            ssl_verify: s.bool(&OPENCTI_SSL_VERIFY)?,
            json_logging: s.bool(&OPENCTI_JSON_LOGGING)?,
            custom_headers,
        };

        // connector
        s.choice(&CONNECTOR_TYPE)?;
        let log_level = match s.choice(&CONNECTOR_LOG_LEVEL)? {
            Some("debug") => LogLevel::Debug,
            Some("info") => LogLevel::Info,
            Some("warn" | "warning") => LogLevel::Warning,
            _ => LogLevel::Error,
        };
        let recover_iso_date = match s.found(&CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE) {
            None => None,
            Some(f) => {
                let v = f.trimmed();
                if ["no", "none", "false"].contains(&v.to_ascii_lowercase().as_str()) {
                    Some(None)
                } else if chrono::DateTime::parse_from_rfc3339(v).is_ok()
                    || chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
                {
                    Some(Some(v.to_string()))
                } else {
                    return Err(invalid(&f, &CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE.kind));
                }
            }
        };
        let connector = ConnectorSettings {
            id: s.required(&CONNECTOR_ID)?.trimmed().to_string(),
            name: s.text(&CONNECTOR_NAME).unwrap_or_default(),
            scope: s
                .text(&CONNECTOR_SCOPE)
                .unwrap_or_default()
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            log_level,
            live_stream_id: s.required(&CONNECTOR_LIVE_STREAM_ID)?.trimmed().to_string(),
            listen_delete: s.bool(&CONNECTOR_LIVE_STREAM_LISTEN_DELETE)?,
            no_dependencies: s.bool(&CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES)?,
            with_inferences: s.bool(&CONNECTOR_LIVE_STREAM_WITH_INFERENCES)?,
            recover_iso_date,
            start_timestamp: s.int(&CONNECTOR_LIVE_STREAM_START_TIMESTAMP)?,
            auto: s.bool(&CONNECTOR_AUTO)?,
            only_contextual: s.bool(&CONNECTOR_ONLY_CONTEXTUAL)?,
        };

        // crowdstrike
        let allow_insecure_http = s.bool(&CROWDSTRIKE_ALLOW_INSECURE_HTTP)?;
        let endpoint = match s
            .found(&CROWDSTRIKE_API_BASE_URL)
            .or_else(|| s.found(&CROWDSTRIKE_CLOUD))
        {
            Some(f) => parse_endpoint(&f, allow_insecure_http)?,
            None => FalconEndpoint::Auto,
        };
        let action = |k: &Setting| -> Result<IocAction, ConfigError> {
            Ok(s.choice(k)?
                .and_then(|c| IocAction::parse(c, &IocAction::ALL))
                .unwrap_or(IocAction::Detect))
        };
        let client_secret = s.required(&CROWDSTRIKE_CLIENT_SECRET)?;
        let crowdstrike = CrowdStrikeSettings {
            endpoint,
            allow_insecure_http,
            client_id: s.required(&CROWDSTRIKE_CLIENT_ID)?.trimmed().to_string(),
            client_secret: SecretString::from(client_secret.trimmed().to_string()),
            member_cid: s.text(&CROWDSTRIKE_MEMBER_CID),
            permanent_delete: s.bool(&CROWDSTRIKE_PERMANENT_DELETE)?,
            falcon_for_mobile_active: s.bool(&CROWDSTRIKE_FALCON_FOR_MOBILE_ACTIVE)?,
            action_on_ip: action(&CROWDSTRIKE_ACTION_ON_IP)?,
            action_on_domain: action(&CROWDSTRIKE_ACTION_ON_DOMAIN)?,
            action_on_hash: action(&CROWDSTRIKE_ACTION_ON_HASH)?,
            rate_limit_per_minute: s.int(&CROWDSTRIKE_RATE_LIMIT_PER_MINUTE)?.unwrap_or(6000),
            rate_limit_share: s.float(&CROWDSTRIKE_RATE_LIMIT_SHARE)?.unwrap_or(0.8),
            region_urls: Vec::new(),
        };

        // metrics
        let addr = match s.value(&METRICS_ADDR) {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(f) => f
                .trimmed()
                .parse()
                .map_err(|_| invalid(&f, &METRICS_ADDR.kind))?,
        };
        let metrics = MetricsSettings {
            enable: s.bool(&METRICS_ENABLE)?,
            port: s.int(&METRICS_PORT)?.unwrap_or(9113),
            addr,
        };

        let sync = SyncSettings {
            batch_size: s.int(&IOC_SYNC_BATCH_SIZE)?.unwrap_or(1000),
            batch_window: Duration::from_millis(s.int(&IOC_SYNC_BATCH_WINDOW_MS)?.unwrap_or(500)),
            state_file: s.text(&IOC_SYNC_STATE_FILE).unwrap_or_default(),
            dead_letter_file: s.text(&IOC_SYNC_DEAD_LETTER_FILE).unwrap_or_default(),
            ping_interval: Duration::from_secs(s.int(&IOC_SYNC_PING_INTERVAL_SECS)?.unwrap_or(40)),
            write_chunk: s.int(&IOC_SYNC_WRITE_CHUNK)?.unwrap_or(200),
            lookup_chunk: s.int(&IOC_SYNC_LOOKUP_CHUNK)?.unwrap_or(200),
            concurrency: s.int(&IOC_SYNC_CONCURRENCY)?.unwrap_or(4),
            shutdown_grace: Duration::from_secs(
                s.int(&IOC_SYNC_SHUTDOWN_GRACE_SECS)?.unwrap_or(20),
            ),
        };

        // dissemination assurance
        let platform_name = s
            .value(&SECURITY_PLATFORM_NAME)
            .map(|f| f.trimmed().to_string())
            .unwrap_or_default();
        if platform_name.chars().count() < 2 {
            let f = s.value(&SECURITY_PLATFORM_NAME).expect("has a default");
            return Err(invalid(&f, &Kind::Text));
        }
        let minutes: u64 = s.int(&DEPLOYMENT_RECONCILIATION_INTERVAL)?.unwrap_or(60);
        let assurance = crate::assurance::settings::AssuranceSettings {
            reporting_enabled: s.bool(&DEPLOYMENT_REPORTING_ENABLED)?,
            reconciliation_interval: (minutes > 0).then(|| Duration::from_secs(minutes * 60)),
            hits_enabled: s.bool(&HITS_REPORTING_ENABLED)?,
            platform_name,
            platform_type: s.text_or_blank(&SECURITY_PLATFORM_TYPE),
            platform_id: s.text(&SECURITY_PLATFORM_ID),
        };

        Ok((
            Config {
                opencti,
                connector,
                crowdstrike,
                metrics,
                sync,
                assurance,
            },
            warnings,
        ))
    }

    /// The OpenCTI token (for building the client).
    pub fn opencti_token(&self) -> SecretString {
        SecretString::from(self.opencti.token.expose_secret().to_string())
    }

    /// Settings that weaken security and deserve an `error`-level line at start-up: TLS verification
    /// off (`OPENCTI_SSL_VERIFY=false`, pycti's default) for an `https` OpenCTI URL to a host other
    /// than loopback, and a plain-http Falcon URL allowed by `CROWDSTRIKE_ALLOW_INSECURE_HTTP`.
    pub fn insecure_settings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.opencti.ssl_verify
            && let Ok(u) = url::Url::parse(&self.opencti.url)
            && u.scheme() == "https"
            && !is_loopback(&u)
        {
            out.push(format!(
                "OPENCTI_SSL_VERIFY is false: the certificate of {} is not verified, so anyone on the \
                 network path can read the OpenCTI token and inject or withdraw indicators; set \
                 OPENCTI_SSL_VERIFY=true",
                redact_userinfo(&self.opencti.url)
            ));
        }
        if let FalconEndpoint::Url(raw) = &self.crowdstrike.endpoint
            && let Ok(u) = url::Url::parse(raw)
            && u.scheme() == "http"
            && !is_loopback(&u)
        {
            out.push(format!(
                "CROWDSTRIKE_ALLOW_INSECURE_HTTP is true: the Falcon client secret and tokens travel \
                 in clear text to {}",
                redact_userinfo(raw)
            ));
        }
        out
    }
}

/// FalconPy's rule (`shared/reference/falcon-api.md` §1.3-1.4): `auto` or the default US-1 URL
/// autodiscovers, a cloud name pins, any other URL is used as given.
fn parse_endpoint(f: &Found, allow_insecure_http: bool) -> Result<FalconEndpoint, ConfigError> {
    let v = f.trimmed();
    if v.eq_ignore_ascii_case("auto") || v.eq_ignore_ascii_case("autodiscover") {
        return Ok(FalconEndpoint::Auto);
    }
    if let Some(region) = falcon_sdk::Region::parse(v) {
        return Ok(FalconEndpoint::Cloud(region));
    }
    let u = match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => return Err(invalid(f, &Kind::Endpoint)),
    };
    let default_us1 = u.scheme() == "https"
        && u.host_str() == Some("api.crowdstrike.com")
        && u.port().is_none()
        && matches!(u.path(), "" | "/")
        && u.query().is_none()
        && u.username().is_empty()
        && u.password().is_none();
    if default_us1 {
        return Ok(FalconEndpoint::Auto);
    }
    if u.scheme() == "http" && !is_loopback(&u) && !allow_insecure_http {
        return Err(invalid_with(
            f,
            "an https URL (plain http is refused for a host other than loopback unless \
             CROWDSTRIKE_ALLOW_INSECURE_HTTP is true)",
        ));
    }
    Ok(FalconEndpoint::Url(v.trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn minimal() -> BTreeMap<String, String> {
        env(&[
            ("OPENCTI_URL", "http://localhost:8080"),
            ("OPENCTI_TOKEN", "tok-123"),
            ("CONNECTOR_ID", "c0ffee"),
            ("CONNECTOR_LIVE_STREAM_ID", "live"),
            ("CROWDSTRIKE_CLIENT_ID", "cid"),
            ("CROWDSTRIKE_CLIENT_SECRET", "s3cr3t-value"),
        ])
    }

    #[test]
    fn malformed_custom_headers_are_not_quoted_in_the_error() {
        let mut e = minimal();
        e.insert(
            "OPENCTI_CUSTOM_HEADERS".into(),
            "x-proxy-auth:hunter2-value;x-other=hunter3-value".into(),
        );
        let err = Config::load(&e, None).unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(
            !msg.contains("hunter2") && !msg.contains("hunter3"),
            "{msg}"
        );
        assert!(msg.contains("OPENCTI_CUSTOM_HEADERS"), "{msg}");
    }

    #[test]
    fn defaults_match_the_python_connector() {
        let (c, w) = Config::load(&minimal(), None).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.connector.name, "CrowdstrikeEndpointSecurity");
        assert_eq!(c.connector.scope, vec!["crowdstrike-endpoint-security"]);
        assert_eq!(c.connector.log_level, LogLevel::Error);
        assert!(
            c.connector.listen_delete
                && c.connector.no_dependencies
                && !c.connector.with_inferences
        );
        assert_eq!(c.crowdstrike.endpoint, FalconEndpoint::Auto);
        assert_eq!(c.crowdstrike.endpoint.cloud(), falcon_sdk::Cloud::Auto);
        assert!(!c.crowdstrike.permanent_delete && !c.crowdstrike.falcon_for_mobile_active);
        assert_eq!(c.crowdstrike.action_on_ip, IocAction::Detect);
        assert_eq!(c.crowdstrike.action_on_hash, IocAction::Detect);
        assert!(!c.metrics.enable);
        assert_eq!(c.metrics.port, 9113);
        assert_eq!(c.metrics.addr.to_string(), "0.0.0.0");
        assert!(!c.opencti.ssl_verify);
        assert_eq!(c.sync.ping_interval, Duration::from_secs(40));
    }

    #[test]
    fn env_wins_over_yaml_and_yaml_over_defaults() {
        let yaml = "opencti:\n  url: http://yaml:8080\ncrowdstrike:\n  permanent_delete: true\n  action_on_hash: prevent\nconnector:\n  name: FromYaml\n";
        let mut e = minimal();
        e.remove("OPENCTI_URL");
        e.insert("CONNECTOR_NAME".into(), "FromEnv".into());
        let (c, _) = Config::load(&e, Some(yaml)).unwrap();
        assert_eq!(c.opencti.url, "http://yaml:8080");
        assert_eq!(c.connector.name, "FromEnv");
        assert!(c.crowdstrike.permanent_delete);
        assert_eq!(c.crowdstrike.action_on_hash, IocAction::Prevent);
    }

    #[test]
    fn log_level_is_case_insensitive() {
        for (v, want) in [
            ("INFO", LogLevel::Info),
            ("Warning", LogLevel::Warning),
            ("warn", LogLevel::Warning),
            ("DEBUG", LogLevel::Debug),
        ] {
            let mut e = minimal();
            e.insert("CONNECTOR_LOG_LEVEL".into(), v.into());
            assert_eq!(Config::load(&e, None).unwrap().0.connector.log_level, want);
        }
        let mut e = minimal();
        e.insert("CONNECTOR_LOG_LEVEL".into(), "verbose".into());
        let err = Config::load(&e, None).unwrap_err().to_string();
        assert!(
            err.contains("CONNECTOR_LOG_LEVEL") && err.contains("debug | info"),
            "{err}"
        );
    }

    #[test]
    fn bad_action_names_the_variable_and_allowed_values() {
        let mut e = minimal();
        e.insert("CROWDSTRIKE_ACTION_ON_IP".into(), "prevent".into());
        let err = Config::load(&e, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid value \"prevent\" for environment variable CROWDSTRIKE_ACTION_ON_IP: expected no_action | detect (any case)"
        );
        let yaml = "crowdstrike:\n  action_on_domain: block\n";
        let err = Config::load(&minimal(), Some(yaml))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.yml key crowdstrike.action_on_domain"),
            "{err}"
        );
    }

    #[test]
    fn missing_required_names_env_and_key() {
        let mut e = minimal();
        e.remove("CONNECTOR_ID");
        let err = Config::load(&e, None).unwrap_err().to_string();
        assert!(
            err.contains("CONNECTOR_ID") && err.contains("connector.id"),
            "{err}"
        );
    }

    #[test]
    fn falcon_names_are_accepted() {
        let mut e = minimal();
        e.remove("CROWDSTRIKE_CLIENT_ID");
        e.remove("CROWDSTRIKE_CLIENT_SECRET");
        e.insert("FALCON_CLIENT_ID".into(), "fid".into());
        e.insert("FALCON_CLIENT_SECRET".into(), "fsecret".into());
        e.insert("FALCON_CLOUD".into(), "EU-1".into());
        e.insert("FALCON_MEMBER_CID".into(), "child".into());
        let (c, _) = Config::load(&e, None).unwrap();
        assert_eq!(c.crowdstrike.client_id, "fid");
        assert_eq!(
            c.crowdstrike.endpoint.base_url(),
            "https://api.eu-1.crowdstrike.com"
        );
        assert_eq!(c.crowdstrike.member_cid.as_deref(), Some("child"));
    }

    #[test]
    fn every_falcon_cloud_name_is_accepted() {
        for (name, url) in [
            ("us-1", "https://api.crowdstrike.com"),
            ("us-2", "https://api.us-2.crowdstrike.com"),
            ("US-3", "https://api.us-3.crowdstrike.com"),
            ("eu_1", "https://api.eu-1.crowdstrike.com"),
            ("us-gov-1", "https://api.laggar.gcw.crowdstrike.com"),
            ("us-gov-2", "https://api.us-gov-2.crowdstrike.mil"),
        ] {
            let mut e = minimal();
            e.insert("FALCON_CLOUD".into(), name.into());
            let (c, _) = Config::load(&e, None).unwrap();
            assert_eq!(c.crowdstrike.endpoint.base_url(), url, "{name}");
        }
        let mut e = minimal();
        e.insert("FALCON_CLOUD".into(), "mars-1".into());
        let err = Config::load(&e, None).unwrap_err().to_string();
        assert!(
            err.contains("FALCON_CLOUD") && err.contains("us-3"),
            "{err}"
        );
    }

    #[test]
    fn legacy_keys_are_ignored_with_a_warning() {
        let mut e = minimal();
        e.insert("CONNECTOR_CONSUMER_COUNT".into(), "10".into());
        e.insert("CONNECTOR_CONFIDENCE_LEVEL".into(), "80".into());
        let yaml = "connector:\n  ignore_types: label,identity\n";
        let (_, w) = Config::load(&e, Some(yaml)).unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w.iter().any(|m| m.contains("CONNECTOR_CONSUMER_COUNT")));
        assert!(w.iter().any(|m| m.contains("connector.ignore_types")));
    }

    #[test]
    fn booleans_scope_and_recovery() {
        let mut e = minimal();
        e.insert("CROWDSTRIKE_PERMANENT_DELETE".into(), "True".into());
        e.insert("CONNECTOR_SCOPE".into(), "a, b".into());
        e.insert("CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE".into(), "no".into());
        e.insert("CONNECTOR_TYPE".into(), "stream".into());
        let (c, _) = Config::load(&e, None).unwrap();
        assert!(c.crowdstrike.permanent_delete);
        assert_eq!(c.connector.scope, vec!["a", "b"]);
        assert_eq!(c.connector.recover_iso_date, Some(None));
        e.insert("CROWDSTRIKE_PERMANENT_DELETE".into(), "maybe".into());
        assert!(
            Config::load(&e, None)
                .unwrap_err()
                .to_string()
                .contains("CROWDSTRIKE_PERMANENT_DELETE")
        );
        e.insert("CROWDSTRIKE_PERMANENT_DELETE".into(), "false".into());
        e.insert("CONNECTOR_TYPE".into(), "EXTERNAL_IMPORT".into());
        assert!(
            Config::load(&e, None)
                .unwrap_err()
                .to_string()
                .contains("expected STREAM")
        );
    }

    #[test]
    fn metrics_addr_must_be_an_ip() {
        let mut e = minimal();
        e.insert("METRICS_ADDR".into(), "localhost".into());
        assert!(
            Config::load(&e, None)
                .unwrap_err()
                .to_string()
                .contains("METRICS_ADDR")
        );
        e.insert("METRICS_ADDR".into(), "127.0.0.1".into());
        e.insert("METRICS_PORT".into(), "70000".into());
        assert!(
            Config::load(&e, None)
                .unwrap_err()
                .to_string()
                .contains("METRICS_PORT")
        );
    }

    #[test]
    fn placeholder_token_is_rejected() {
        let mut e = minimal();
        e.insert("OPENCTI_TOKEN".into(), "ChangeMe".into());
        assert!(
            Config::load(&e, None)
                .unwrap_err()
                .to_string()
                .contains("OPENCTI_TOKEN")
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let (c, _) = Config::load(&minimal(), None).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t-value") && !d.contains("tok-123"), "{d}");
        assert!(d.contains("[REDACTED]"));
    }

    fn endpoint(name: &str, value: &str) -> Result<FalconEndpoint, ConfigError> {
        let mut e = minimal();
        e.insert(name.into(), value.into());
        Config::load(&e, None).map(|(c, _)| c.crowdstrike.endpoint)
    }

    #[test]
    fn the_default_url_and_auto_follow_x_cs_region_as_falconpy() {
        for v in [
            "https://api.crowdstrike.com",
            "https://api.crowdstrike.com/",
            "HTTPS://API.CrowdStrike.com/",
            "auto",
            "AUTO",
        ] {
            let e = endpoint("CROWDSTRIKE_API_BASE_URL", v).unwrap();
            assert_eq!(e, FalconEndpoint::Auto, "{v}");
            assert_eq!(e.cloud(), falcon_sdk::Cloud::Auto, "{v}");
        }
        assert_eq!(
            endpoint("FALCON_CLOUD", "auto").unwrap(),
            FalconEndpoint::Auto
        );
        let yaml = "crowdstrike:\n  api_base_url: https://api.crowdstrike.com\n";
        let (c, _) = Config::load(&minimal(), Some(yaml)).unwrap();
        assert_eq!(c.crowdstrike.endpoint.cloud(), falcon_sdk::Cloud::Auto);
    }

    #[test]
    fn a_cloud_name_pins_and_another_url_is_used_as_given() {
        assert_eq!(
            endpoint("CROWDSTRIKE_API_BASE_URL", "eu-1")
                .unwrap()
                .cloud(),
            falcon_sdk::Cloud::Eu1
        );
        assert_eq!(
            endpoint("CROWDSTRIKE_API_BASE_URL", "us-1")
                .unwrap()
                .cloud(),
            falcon_sdk::Cloud::Us1
        );
        assert_eq!(
            endpoint("FALCON_CLOUD", "usgov2").unwrap().cloud(),
            falcon_sdk::Cloud::UsGov2
        );
        for v in [
            "https://api.eu-1.crowdstrike.com",
            "https://api.crowdstrike.com:8443",
            "https://api.crowdstrike.com/proxy",
            "http://127.0.0.1:9000/",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            let e = endpoint("CROWDSTRIKE_API_BASE_URL", v).unwrap();
            assert!(
                matches!(e.cloud(), falcon_sdk::Cloud::Custom(_)),
                "{v}: {e:?}"
            );
        }
    }

    #[test]
    fn plain_http_falcon_urls_to_other_hosts_need_the_explicit_setting() {
        let err = endpoint("CROWDSTRIKE_API_BASE_URL", "http://falcon-proxy.corp:8080")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CROWDSTRIKE_API_BASE_URL")
                && err.contains("CROWDSTRIKE_ALLOW_INSECURE_HTTP"),
            "{err}"
        );
        let mut e = minimal();
        e.insert(
            "CROWDSTRIKE_API_BASE_URL".into(),
            "http://falcon-proxy.corp:8080".into(),
        );
        e.insert("CROWDSTRIKE_ALLOW_INSECURE_HTTP".into(), "true".into());
        let (c, _) = Config::load(&e, None).unwrap();
        assert!(matches!(
            c.crowdstrike.endpoint.cloud(),
            falcon_sdk::Cloud::Custom(_)
        ));
        let w = c.insecure_settings();
        assert!(
            w.iter()
                .any(|m| m.contains("CROWDSTRIKE_ALLOW_INSECURE_HTTP")),
            "{w:?}"
        );
    }

    #[test]
    fn unverified_tls_to_a_remote_https_opencti_is_reported() {
        let load = |url: &str, verify: &str| {
            let mut e = minimal();
            e.insert("OPENCTI_URL".into(), url.into());
            e.insert("OPENCTI_SSL_VERIFY".into(), verify.into());
            Config::load(&e, None).unwrap().0.insecure_settings()
        };
        let w = load("https://opencti.example.com", "false");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("OPENCTI_SSL_VERIFY"), "{w:?}");
        assert!(load("https://opencti.example.com", "true").is_empty());
        assert!(load("https://127.0.0.1:8443", "false").is_empty());
        assert!(load("http://opencti.example.com", "false").is_empty());
        assert!(
            Config::load(&minimal(), None)
                .unwrap()
                .0
                .insecure_settings()
                .is_empty()
        );
    }

    #[test]
    fn userinfo_never_reaches_an_error_a_warning_or_debug() {
        let mut e = minimal();
        e.insert(
            "OPENCTI_URL".into(),
            "https://svc:hunter2@opencti.example.com".into(),
        );
        let (c, _) = Config::load(&e, None).unwrap();
        let text = format!("{c:?} {:?}", c.insecure_settings());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[REDACTED]@opencti.example.com"), "{text}");

        let mut e = minimal();
        e.insert("OPENCTI_URL".into(), "ftp://svc:hunter2@opencti".into());
        let err = Config::load(&e, None).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("hunter2") && text.contains("OPENCTI_URL"),
            "{text}"
        );

        let err = endpoint("CROWDSTRIKE_API_BASE_URL", "http://u:hunter2@falcon.corp").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");

        assert_eq!(
            redact_userinfo("https://a:b@h/p@q"),
            "https://[REDACTED]@h/p@q"
        );
        assert_eq!(redact_userinfo("https://h/p"), "https://h/p");
        assert_eq!(redact_userinfo("not a url"), "not a url");
    }

    #[test]
    fn secrets_are_never_quoted_in_errors() {
        let secret_settings: Vec<_> = SETTINGS.iter().filter(|s| s.secret()).collect();
        assert!(secret_settings.len() >= 3);
        assert!(settings::OPENCTI_TOKEN.secret() && settings::CROWDSTRIKE_CLIENT_SECRET.secret());
    }

    #[test]
    fn every_setting_is_a_recognised_config_yml_key() {
        let mut sections: BTreeMap<&str, Vec<&Setting>> = BTreeMap::new();
        for s in SETTINGS {
            sections.entry(s.section()).or_default().push(s);
        }
        let mut yaml = String::new();
        for (section, items) in &sections {
            yaml.push_str(&format!("{section}:\n"));
            for s in items {
                let key = s.yaml.split_once('.').unwrap().1;
                yaml.push_str(&format!("  {key}: null\n"));
            }
        }
        yaml.push_str("opencti:\n  not_a_key: 1\n");
        // A repeated section is a YAML error; so write the extra key on its own.
        let (_, w) = Config::load(
            &minimal(),
            Some(&yaml.replace("opencti:\n  not_a_key: 1\n", "")),
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        let (_, w) = Config::load(&minimal(), Some("ioc_sync:\n  not_a_key: 1\n")).unwrap();
        assert_eq!(
            w,
            vec!["config.yml key ioc_sync.not_a_key is unknown; ignored"]
        );
    }

    #[test]
    fn the_shutdown_grace_follows_its_setting() {
        let (c, _) = Config::load(&minimal(), None).unwrap();
        assert_eq!(c.sync.shutdown_grace, Duration::from_secs(20));
        let mut env = minimal();
        env.insert("IOC_SYNC_SHUTDOWN_GRACE_SECS".into(), "8".into());
        let (c, _) = Config::load(&env, None).unwrap();
        assert_eq!(
            crate::engine::EngineOptions::from_config(&c).shutdown_grace,
            Duration::from_secs(8)
        );
        env.insert("IOC_SYNC_SHUTDOWN_GRACE_SECS".into(), "0".into());
        let e = Config::load(&env, None).unwrap_err().to_string();
        assert!(e.contains("IOC_SYNC_SHUTDOWN_GRACE_SECS"), "{e}");
    }

    #[test]
    fn dissemination_assurance_settings_have_the_upstream_defaults() {
        let (c, _) = Config::load(&minimal(), None).unwrap();
        assert_eq!(
            c.assurance,
            crate::assurance::settings::AssuranceSettings::default()
        );
        assert!(c.assurance.hits_on());
        let mut env = minimal();
        env.insert("DEPLOYMENT_RECONCILIATION_INTERVAL".into(), "0".into());
        env.insert("SECURITY_PLATFORM_ID".into(), "sp-1".into());
        let (c, _) = Config::load(&env, None).unwrap();
        assert!(!c.assurance.reconciliation_on() && !c.assurance.hits_on());
        assert_eq!(c.assurance.platform_id.as_deref(), Some("sp-1"));
        let (c, _) = Config::load(
            &minimal(),
            Some(
                "deployment:\n  reporting_enabled: false\nsecurity_platform:\n  name: Falcon EU\n",
            ),
        )
        .unwrap();
        assert!(!c.assurance.reporting_enabled);
        assert_eq!(c.assurance.platform_name, "Falcon EU");
        let mut env = minimal();
        env.insert("SECURITY_PLATFORM_NAME".into(), "X".into());
        let e = Config::load(&env, None).unwrap_err().to_string();
        assert!(e.contains("SECURITY_PLATFORM_NAME"), "{e}");
        let mut env = minimal();
        env.insert("DEPLOYMENT_RECONCILIATION_INTERVAL".into(), "-1".into());
        let e = Config::load(&env, None).unwrap_err().to_string();
        assert!(e.contains("DEPLOYMENT_RECONCILIATION_INTERVAL"), "{e}");
        // An empty platform type sends none (upstream: empty -> null), unset keeps `EDR`.
        let mut env = minimal();
        env.insert("SECURITY_PLATFORM_TYPE".into(), " ".into());
        let (c, _) = Config::load(&env, None).unwrap();
        assert_eq!(c.assurance.platform_type, None);
        let (c, _) = Config::load(&minimal(), Some("security_platform:\n  type: ''\n")).unwrap();
        assert_eq!(c.assurance.platform_type, None);
        let mut env = minimal();
        env.insert("SECURITY_PLATFORM_TYPE".into(), "XDR".into());
        let (c, _) = Config::load(&env, None).unwrap();
        assert_eq!(c.assurance.platform_type.as_deref(), Some("XDR"));
    }

    #[test]
    fn the_documented_tables_are_the_generated_ones() {
        let doc = include_str!("../../../docs/configuration.md");
        for section in [
            "opencti",
            "connector",
            "crowdstrike",
            "metrics",
            "ioc_sync",
            "deployment",
            "hits",
            "security_platform",
        ] {
            let table = settings_table(section);
            assert!(
                doc.contains(&table),
                "docs/configuration.md must contain the `{section}` table exactly as generated:\n{table}"
            );
        }
        for s in SETTINGS {
            if let DefaultValue::Value(v) = s.default {
                let f = Found {
                    value: v.into(),
                    origin: String::new(),
                    secret: false,
                };
                let ok = match s.kind {
                    Kind::Bool => parse_bool(v).is_some(),
                    Kind::Int { min, max } => {
                        v.parse::<u64>().is_ok_and(|n| (min..=max).contains(&n))
                    }
                    Kind::Float { min, max } => {
                        v.parse::<f64>().is_ok_and(|n| n >= min && n <= max)
                    }
                    Kind::Choice(c) => c.contains(&v),
                    Kind::Endpoint => parse_endpoint(&f, false).is_ok(),
                    Kind::Ip => v.parse::<IpAddr>().is_ok(),
                    _ => true,
                };
                assert!(ok, "the default of {} does not parse", s.yaml);
            }
        }
    }
}
