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

/// Where the Falcon API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FalconEndpoint {
    /// A base URL (`CROWDSTRIKE_API_BASE_URL`, default `https://api.crowdstrike.com`).
    Url(String),
    /// A cloud (`us-1`, `us-2`, `us-3`, `eu-1`, `us-gov-1`, `us-gov-2`), as `FALCON_CLOUD` accepts.
    Cloud(falcon_sdk::Region),
}

impl FalconEndpoint {
    /// The base URL the SDK should talk to.
    pub fn base_url(&self) -> String {
        match self {
            FalconEndpoint::Url(u) => u.trim_end_matches('/').to_string(),
            FalconEndpoint::Cloud(region) => {
                region.base_url().as_str().trim_end_matches('/').to_string()
            }
        }
    }
}

/// OpenCTI connection (`OPENCTI_*`, `opencti.*`).
#[derive(Clone)]
pub struct OpenCtiSettings {
    /// `OPENCTI_URL` (required).
    pub url: String,
    /// `OPENCTI_TOKEN` (required, secret).
    pub token: SecretString,
    /// `OPENCTI_SSL_VERIFY` (default false, as pycti).
    pub ssl_verify: bool,
    /// `OPENCTI_JSON_LOGGING` (default true).
    pub json_logging: bool,
    /// `OPENCTI_CUSTOM_HEADERS` (`"h1:v1;h2:v2"`, GraphQL only).
    pub custom_headers: Vec<(String, String)>,
}

impl fmt::Debug for OpenCtiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenCtiSettings")
            .field("url", &self.url)
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
    /// `CROWDSTRIKE_API_BASE_URL` (default `https://api.crowdstrike.com`) or `FALCON_CLOUD`.
    pub endpoint: FalconEndpoint,
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

/// Where one setting is looked up: env names (first wins), yaml key, and whether it is a secret.
struct Key {
    env: &'static [&'static str],
    yaml: &'static str,
}

const fn key(env: &'static [&'static str], yaml: &'static str) -> Key {
    Key { env, yaml }
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
}

struct Sources<'a> {
    env: &'a BTreeMap<String, String>,
    yaml: BTreeMap<String, String>,
}

impl Sources<'_> {
    fn get(&self, k: &Key) -> Option<Found> {
        for name in k.env {
            if let Some(v) = self.env.get(*name) {
                return Some(Found {
                    value: v.clone(),
                    origin: format!("environment variable {name}"),
                });
            }
        }
        self.yaml.get(k.yaml).map(|v| Found {
            value: v.clone(),
            origin: format!("config.yml key {}", k.yaml),
        })
    }

    fn string(&self, k: &Key) -> Option<Found> {
        self.get(k).filter(|f| !f.value.trim().is_empty())
    }

    fn required(&self, k: &Key) -> Result<Found, ConfigError> {
        self.string(k).ok_or(ConfigError::Missing {
            env: k.env[0],
            key: k.yaml,
        })
    }

    fn bool(&self, k: &Key, default: bool) -> Result<bool, ConfigError> {
        match self.string(k) {
            None => Ok(default),
            Some(f) => parse_bool(&f.value)
                .ok_or_else(|| invalid(&f, "a boolean (true/false, yes/no, 1/0, on/off)")),
        }
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        k: &Key,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.string(k) {
            None => Ok(default),
            Some(f) => match f.value.trim().parse::<T>() {
                Ok(v) if v >= min && v <= max => Ok(v),
                _ => Err(invalid(&f, &format!("a number from {min} to {max}"))),
            },
        }
    }
}

fn invalid(f: &Found, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: f.origin.clone(),
        value: f.value.clone(),
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
    let mut out = BTreeMap::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    let serde_yaml::Value::Mapping(sections) = doc else {
        return Err(ConfigError::Yaml(
            "the top level must be a mapping of sections".into(),
        ));
    };
    for (section, body) in sections {
        let Some(section) = section.as_str() else {
            continue;
        };
        let serde_yaml::Value::Mapping(entries) = body else {
            continue;
        };
        for (k, v) in entries {
            let Some(k) = k.as_str() else { continue };
            let v = match v {
                serde_yaml::Value::Null => continue,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Sequence(items) => items
                    .iter()
                    .filter_map(|i| match i {
                        serde_yaml::Value::String(s) => Some(s.clone()),
                        serde_yaml::Value::Number(n) => Some(n.to_string()),
                        serde_yaml::Value::Bool(b) => Some(b.to_string()),
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

const RECOGNISED: &[&str] = &[
    "opencti.url",
    "opencti.token",
    "opencti.ssl_verify",
    "opencti.json_logging",
    "opencti.custom_headers",
    "connector.id",
    "connector.name",
    "connector.type",
    "connector.scope",
    "connector.log_level",
    "connector.live_stream_id",
    "connector.live_stream_listen_delete",
    "connector.live_stream_no_dependencies",
    "connector.live_stream_with_inferences",
    "connector.live_stream_recover_iso_date",
    "connector.live_stream_start_timestamp",
    "connector.auto",
    "connector.only_contextual",
    "crowdstrike.api_base_url",
    "crowdstrike.cloud",
    "crowdstrike.client_id",
    "crowdstrike.client_secret",
    "crowdstrike.member_cid",
    "crowdstrike.permanent_delete",
    "crowdstrike.falcon_for_mobile_active",
    "crowdstrike.action_on_ip",
    "crowdstrike.action_on_domain",
    "crowdstrike.action_on_hash",
    "crowdstrike.rate_limit_per_minute",
    "crowdstrike.rate_limit_share",
    "metrics.enable",
    "metrics.port",
    "metrics.addr",
    "ioc_sync.batch_size",
    "ioc_sync.batch_window_ms",
    "ioc_sync.state_file",
    "ioc_sync.dead_letter_file",
    "ioc_sync.ping_interval_secs",
    "ioc_sync.write_chunk",
    "ioc_sync.lookup_chunk",
    "ioc_sync.concurrency",
];

impl Config {
    /// Builds the configuration from the environment map and the text of `config.yml` (if any).
    ///
    /// Returns the configuration and the warnings to log (ignored legacy keys, unknown keys).
    pub fn load(
        env: &BTreeMap<String, String>,
        yaml: Option<&str>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
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
            if !RECOGNISED.contains(&k.as_str()) && !IGNORED_KEYS.iter().any(|(_, y)| y == k) {
                warnings.push(format!("config.yml key {k} is unknown; ignored"));
            }
        }
        let s = Sources { env, yaml };

        // opencti
        let url = s.required(&key(&["OPENCTI_URL"], "opencti.url"))?;
        let parsed =
            url::Url::parse(url.value.trim()).map_err(|_| invalid(&url, "an http(s) URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(&url, "an http(s) URL"));
        }
        let token = s.required(&key(&["OPENCTI_TOKEN"], "opencti.token"))?;
        if token.value.trim() == "ChangeMe" {
            return Err(ConfigError::Invalid {
                origin: token.origin,
                value: "ChangeMe".into(),
                allowed: "the API token of the connector's OpenCTI user".into(),
            });
        }
        let custom_headers =
            match s.string(&key(&["OPENCTI_CUSTOM_HEADERS"], "opencti.custom_headers")) {
                None => Vec::new(),
                Some(f) => {
                    let mut out = Vec::new();
                    for part in f.value.split(';').filter(|p| !p.trim().is_empty()) {
                        // Header values may be credentials: the error does not quote them.
                        let (h, v) = part.split_once(':').ok_or_else(|| ConfigError::Invalid {
                            origin: f.origin.clone(),
                            value: "[REDACTED]".into(),
                            allowed: "\"header:value;header:value\"".into(),
                        })?;
                        out.push((h.trim().to_string(), v.trim().to_string()));
                    }
                    out
                }
            };
        let opencti = OpenCtiSettings {
            url: url.value.trim().trim_end_matches('/').to_string(),
            token: SecretString::from(token.value.trim().to_string()),
            ssl_verify: s.bool(&key(&["OPENCTI_SSL_VERIFY"], "opencti.ssl_verify"), false)?,
            json_logging: s.bool(
                &key(&["OPENCTI_JSON_LOGGING"], "opencti.json_logging"),
                true,
            )?,
            custom_headers,
        };

        // connector
        if let Some(t) = s.string(&key(&["CONNECTOR_TYPE"], "connector.type"))
            && !t.value.trim().eq_ignore_ascii_case("STREAM")
        {
            return Err(invalid(&t, "STREAM"));
        }
        let log_level = match s.string(&key(&["CONNECTOR_LOG_LEVEL"], "connector.log_level")) {
            None => LogLevel::Error,
            Some(f) => match f.value.trim().to_ascii_lowercase().as_str() {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" | "warning" => LogLevel::Warning,
                "error" => LogLevel::Error,
                _ => {
                    return Err(invalid(
                        &f,
                        "one of debug, info, warn, warning, error (any case)",
                    ));
                }
            },
        };
        let recover_iso_date = match s.get(&key(
            &["CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE"],
            "connector.live_stream_recover_iso_date",
        )) {
            None => None,
            Some(f) if f.value.trim().is_empty() => None,
            Some(f) => {
                let v = f.value.trim();
                if ["no", "none", "false"].contains(&v.to_ascii_lowercase().as_str()) {
                    Some(None)
                } else if chrono::DateTime::parse_from_rfc3339(v).is_ok()
                    || chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
                {
                    Some(Some(v.to_string()))
                } else {
                    return Err(invalid(
                        &f,
                        "an ISO-8601 date (e.g. 2024-04-10T08:00:00Z) or no/false",
                    ));
                }
            }
        };
        let start_timestamp = match s.string(&key(
            &["CONNECTOR_LIVE_STREAM_START_TIMESTAMP"],
            "connector.live_stream_start_timestamp",
        )) {
            None => None,
            Some(f) => Some(
                f.value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| invalid(&f, "an epoch timestamp in milliseconds"))?,
            ),
        };
        let connector = ConnectorSettings {
            id: s
                .required(&key(&["CONNECTOR_ID"], "connector.id"))?
                .value
                .trim()
                .to_string(),
            name: s
                .string(&key(&["CONNECTOR_NAME"], "connector.name"))
                .map(|f| f.value.trim().to_string())
                .unwrap_or_else(|| "CrowdstrikeEndpointSecurity".into()),
            scope: s
                .string(&key(&["CONNECTOR_SCOPE"], "connector.scope"))
                .map(|f| {
                    f.value
                        .split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_else(|| vec!["crowdstrike-endpoint-security".into()]),
            log_level,
            live_stream_id: s
                .required(&key(
                    &["CONNECTOR_LIVE_STREAM_ID"],
                    "connector.live_stream_id",
                ))?
                .value
                .trim()
                .to_string(),
            listen_delete: s.bool(
                &key(
                    &["CONNECTOR_LIVE_STREAM_LISTEN_DELETE"],
                    "connector.live_stream_listen_delete",
                ),
                true,
            )?,
            no_dependencies: s.bool(
                &key(
                    &["CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES"],
                    "connector.live_stream_no_dependencies",
                ),
                true,
            )?,
            with_inferences: s.bool(
                &key(
                    &["CONNECTOR_LIVE_STREAM_WITH_INFERENCES"],
                    "connector.live_stream_with_inferences",
                ),
                false,
            )?,
            recover_iso_date,
            start_timestamp,
            auto: s.bool(&key(&["CONNECTOR_AUTO"], "connector.auto"), false)?,
            only_contextual: s.bool(
                &key(&["CONNECTOR_ONLY_CONTEXTUAL"], "connector.only_contextual"),
                false,
            )?,
        };

        // crowdstrike
        let endpoint = match (
            s.string(&key(
                &["CROWDSTRIKE_API_BASE_URL"],
                "crowdstrike.api_base_url",
            )),
            s.string(&key(
                &["FALCON_CLOUD", "CROWDSTRIKE_CLOUD"],
                "crowdstrike.cloud",
            )),
        ) {
            (Some(f), _) => parse_endpoint(&f)?,
            (None, Some(f)) => parse_endpoint(&f)?,
            (None, None) => FalconEndpoint::Url("https://api.crowdstrike.com".into()),
        };
        let action =
            |envs: &'static [&'static str], yaml: &'static str, allowed: &[IocAction]| match s
                .string(&key(envs, yaml))
            {
                None => Ok(IocAction::Detect),
                Some(f) => IocAction::parse(&f.value, allowed).ok_or_else(|| {
                    invalid(
                        &f,
                        &allowed
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(" | "),
                    )
                }),
            };
        let ip_domain = [IocAction::NoAction, IocAction::Detect];
        let hash = [
            IocAction::NoAction,
            IocAction::Allow,
            IocAction::Detect,
            IocAction::Prevent,
        ];
        let client_secret = s.required(&key(
            &["CROWDSTRIKE_CLIENT_SECRET", "FALCON_CLIENT_SECRET"],
            "crowdstrike.client_secret",
        ))?;
        let crowdstrike = CrowdStrikeSettings {
            endpoint,
            client_id: s
                .required(&key(
                    &["CROWDSTRIKE_CLIENT_ID", "FALCON_CLIENT_ID"],
                    "crowdstrike.client_id",
                ))?
                .value
                .trim()
                .to_string(),
            client_secret: SecretString::from(client_secret.value.trim().to_string()),
            member_cid: s
                .string(&key(
                    &["FALCON_MEMBER_CID", "CROWDSTRIKE_MEMBER_CID"],
                    "crowdstrike.member_cid",
                ))
                .map(|f| f.value.trim().to_string()),
            permanent_delete: s.bool(
                &key(
                    &["CROWDSTRIKE_PERMANENT_DELETE"],
                    "crowdstrike.permanent_delete",
                ),
                false,
            )?,
            falcon_for_mobile_active: s.bool(
                &key(
                    &["CROWDSTRIKE_FALCON_FOR_MOBILE_ACTIVE"],
                    "crowdstrike.falcon_for_mobile_active",
                ),
                false,
            )?,
            action_on_ip: action(
                &["CROWDSTRIKE_ACTION_ON_IP"],
                "crowdstrike.action_on_ip",
                &ip_domain,
            )?,
            action_on_domain: action(
                &["CROWDSTRIKE_ACTION_ON_DOMAIN"],
                "crowdstrike.action_on_domain",
                &ip_domain,
            )?,
            action_on_hash: action(
                &["CROWDSTRIKE_ACTION_ON_HASH"],
                "crowdstrike.action_on_hash",
                &hash,
            )?,
            rate_limit_per_minute: s.number(
                &key(
                    &["CROWDSTRIKE_RATE_LIMIT_PER_MINUTE"],
                    "crowdstrike.rate_limit_per_minute",
                ),
                6000u32,
                1,
                1_000_000,
            )?,
            rate_limit_share: s.number(
                &key(
                    &["CROWDSTRIKE_RATE_LIMIT_SHARE"],
                    "crowdstrike.rate_limit_share",
                ),
                0.8f64,
                0.01,
                1.0,
            )?,
            region_urls: Vec::new(),
        };

        // metrics
        let enable = s.bool(&key(&["METRICS_ENABLE"], "metrics.enable"), false)?;
        let addr = match s.string(&key(&["METRICS_ADDR"], "metrics.addr")) {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(f) => f
                .value
                .trim()
                .parse()
                .map_err(|_| invalid(&f, "an IP address such as 0.0.0.0"))?,
        };
        let metrics = MetricsSettings {
            enable,
            port: s.number(
                &key(&["METRICS_PORT"], "metrics.port"),
                9113u16,
                0,
                u16::MAX,
            )?,
            addr,
        };

        let sync = SyncSettings {
            batch_size: s.number(
                &key(&["IOC_SYNC_BATCH_SIZE"], "ioc_sync.batch_size"),
                1000usize,
                1,
                100_000,
            )?,
            batch_window: Duration::from_millis(s.number(
                &key(&["IOC_SYNC_BATCH_WINDOW_MS"], "ioc_sync.batch_window_ms"),
                500u64,
                1,
                60_000,
            )?),
            state_file: s
                .string(&key(&["IOC_SYNC_STATE_FILE"], "ioc_sync.state_file"))
                .map(|f| f.value.trim().to_string())
                .unwrap_or_else(|| "ioc-sync-state.json".into()),
            dead_letter_file: s
                .string(&key(
                    &["IOC_SYNC_DEAD_LETTER_FILE"],
                    "ioc_sync.dead_letter_file",
                ))
                .map(|f| f.value.trim().to_string())
                .unwrap_or_else(|| "ioc-sync-dead-letter.jsonl".into()),
            ping_interval: Duration::from_secs(s.number(
                &key(
                    &["IOC_SYNC_PING_INTERVAL_SECS"],
                    "ioc_sync.ping_interval_secs",
                ),
                40u64,
                1,
                40,
            )?),
            write_chunk: s.number(
                &key(&["IOC_SYNC_WRITE_CHUNK"], "ioc_sync.write_chunk"),
                200usize,
                1,
                500,
            )?,
            lookup_chunk: s.number(
                &key(&["IOC_SYNC_LOOKUP_CHUNK"], "ioc_sync.lookup_chunk"),
                200usize,
                1,
                500,
            )?,
            concurrency: s.number(
                &key(&["IOC_SYNC_CONCURRENCY"], "ioc_sync.concurrency"),
                4usize,
                1,
                32,
            )?,
        };

        Ok((
            Config {
                opencti,
                connector,
                crowdstrike,
                metrics,
                sync,
            },
            warnings,
        ))
    }

    /// The OpenCTI token (for building the client).
    pub fn opencti_token(&self) -> SecretString {
        SecretString::from(self.opencti.token.expose_secret().to_string())
    }
}

fn parse_endpoint(f: &Found) -> Result<FalconEndpoint, ConfigError> {
    let v = f.value.trim();
    if let Some(region) = falcon_sdk::Region::parse(v) {
        return Ok(FalconEndpoint::Cloud(region));
    }
    match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(FalconEndpoint::Url(v.to_string()))
        }
        _ => Err(invalid(
            f,
            "an http(s) URL such as https://api.crowdstrike.com, or one of us-1, us-2, us-3, eu-1, us-gov-1, us-gov-2",
        )),
    }
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
        assert_eq!(
            c.crowdstrike.endpoint.base_url(),
            "https://api.crowdstrike.com"
        );
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
            err.contains("CONNECTOR_LOG_LEVEL") && err.contains("debug, info"),
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
            "invalid value \"prevent\" for environment variable CROWDSTRIKE_ACTION_ON_IP: expected no_action | detect"
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
}
