//! IOC Management (`/iocs/...`): create, update, delete, get, query, combined.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::client::FalconClient;
use crate::envelope::{Envelope, Page, null_default};
use crate::error::{Error, Result};
use crate::pagination::{check_cursor, lenient_time, paged};
use crate::transport::{ApiRequest, read_body};
use reqwest::StatusCode;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)*
            /// A value this SDK version does not know (kept verbatim).
            Other(String),
        }
        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self { $($name::$var => $s,)* $name::Other(s) => s }
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s { $($s => $name::$var,)* other => $name::Other(other.to_string()) }
            }
        }
        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> { Ok(Self::from(s)) }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from(s.as_str()))
            }
        }
    };
}

string_enum!(
    /// IOC type.
    IocType {
        /// SHA-256 hash (64 hex).
        Sha256 => "sha256",
        /// MD5 hash (32 hex).
        Md5 => "md5",
        /// Domain name (1–200 chars).
        Domain => "domain",
        /// IPv4 address.
        Ipv4 => "ipv4",
        /// IPv6 address.
        Ipv6 => "ipv6",
    }
);

string_enum!(
    /// What Falcon does on a match.
    Action {
        /// Record only.
        NoAction => "no_action",
        /// Allow.
        Allow => "allow",
        /// Block without UI notification.
        PreventNoUi => "prevent_no_ui",
        /// Detect (alert).
        Detect => "detect",
        /// Block (hashes only).
        Prevent => "prevent",
    }
);

string_enum!(
    /// IOC severity.
    Severity {
        /// Informational.
        Informational => "informational",
        /// Low.
        Low => "low",
        /// Medium.
        Medium => "medium",
        /// High.
        High => "high",
        /// Critical.
        Critical => "critical",
    }
);

string_enum!(
    /// Platform an IOC applies to.
    Platform {
        /// Windows.
        Windows => "windows",
        /// macOS.
        Mac => "mac",
        /// Linux.
        Linux => "linux",
        /// iOS (Falcon for Mobile).
        Ios => "ios",
        /// Android (Falcon for Mobile).
        Android => "android",
    }
);

/// An IOC as returned by Falcon (`APIIndicatorV1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    /// IOC id (64 hex).
    #[serde(default)]
    pub id: String,
    /// Type.
    #[serde(rename = "type")]
    pub type_: IocType,
    /// Value.
    pub value: String,
    /// Action.
    #[serde(default)]
    pub action: Option<Action>,
    /// Mobile action.
    #[serde(default)]
    pub mobile_action: Option<Action>,
    /// Severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Platforms.
    #[serde(default, deserialize_with = "null_default")]
    pub platforms: Vec<Platform>,
    /// Applied to every host.
    #[serde(default)]
    pub applied_globally: Option<bool>,
    /// Host group ids it applies to.
    #[serde(default, deserialize_with = "null_default")]
    pub host_groups: Vec<String>,
    /// Tags.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Source.
    #[serde(default)]
    pub source: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Expiration.
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiration: Option<DateTime<Utc>>,
    /// Expired (action turned to `no_action`).
    #[serde(default, deserialize_with = "null_default")]
    pub expired: bool,
    /// Deleted.
    #[serde(default, deserialize_with = "null_default")]
    pub deleted: bool,
    /// Creator (API client id or user).
    #[serde(default)]
    pub created_by: Option<String>,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_on: Option<DateTime<Utc>>,
    /// Last modifier.
    #[serde(default)]
    pub modified_by: Option<String>,
    /// Last modification time.
    #[serde(default, deserialize_with = "lenient_time")]
    pub modified_on: Option<DateTime<Utc>>,
    /// Inherited from the parent CID.
    #[serde(default)]
    pub from_parent: Option<bool>,
    /// `metadata` object (filename, ...).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An IOC to create (`APIIndicatorCreateReqV1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewIndicator {
    /// Type.
    #[serde(rename = "type")]
    pub type_: IocType,
    /// Value.
    pub value: String,
    /// Action (required by Falcon).
    pub action: Action,
    /// Severity (required unless the action is `no_action`/`allow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Platforms.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub platforms: Vec<Platform>,
    /// Apply to every host. When `None` and no host groups are given, the SDK sends `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_globally: Option<bool>,
    /// Host group ids.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub host_groups: Vec<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tags: Vec<String>,
    /// Source (1–256 chars).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Expiration (RFC 3339 UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<DateTime<Utc>>,
    /// Mobile action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_action: Option<Action>,
    /// Metadata (`{"filename": ...}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl NewIndicator {
    /// A new IOC with the required fields; set the others on the returned value.
    pub fn new(type_: IocType, value: impl Into<String>, action: Action) -> Self {
        NewIndicator {
            type_,
            value: value.into(),
            action,
            severity: None,
            platforms: Vec::new(),
            applied_globally: None,
            host_groups: Vec::new(),
            tags: Vec::new(),
            source: None,
            description: None,
            expiration: None,
            mobile_action: None,
            metadata: None,
        }
    }
    /// Sets the severity.
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = Some(s);
        self
    }
    /// Sets the platforms.
    pub fn platforms(mut self, p: impl IntoIterator<Item = Platform>) -> Self {
        self.platforms = p.into_iter().collect();
        self
    }
    /// Sets the source.
    pub fn source(mut self, s: impl Into<String>) -> Self {
        self.source = Some(s.into());
        self
    }
    /// Sets the description.
    pub fn description(mut self, s: impl Into<String>) -> Self {
        self.description = Some(s.into());
        self
    }
    /// Sets the tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, t: I) -> Self {
        self.tags = t.into_iter().map(Into::into).collect();
        self
    }
    /// Sets the expiration.
    pub fn expiration(mut self, t: DateTime<Utc>) -> Self {
        self.expiration = Some(t);
        self
    }
    /// Restricts the IOC to host groups (clears `applied_globally`).
    pub fn host_groups<I: IntoIterator<Item = S>, S: Into<String>>(mut self, g: I) -> Self {
        self.host_groups = g.into_iter().map(Into::into).collect();
        self.applied_globally = Some(false);
        self
    }

    /// Checks the value against the type (hash length and hex, IP syntax, domain length).
    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_value(&self.type_, &self.value)?;
        if let Some(s) = &self.source
            && (s.is_empty() || s.chars().count() > 256)
        {
            return Err("source must be 1 to 256 characters".into());
        }
        Ok(())
    }
}

fn validate_value(t: &IocType, v: &str) -> std::result::Result<(), String> {
    let hex = |n: usize| v.len() == n && v.chars().all(|c| c.is_ascii_hexdigit());
    match t {
        IocType::Sha256 if !hex(64) => Err(format!("`{v}` is not a SHA-256 (64 hex digits)")),
        IocType::Md5 if !hex(32) => Err(format!("`{v}` is not an MD5 (32 hex digits)")),
        IocType::Ipv4 if v.parse::<std::net::Ipv4Addr>().is_err() => {
            Err(format!("`{v}` is not an IPv4 address"))
        }
        IocType::Ipv6 if v.parse::<std::net::Ipv6Addr>().is_err() => {
            Err(format!("`{v}` is not an IPv6 address"))
        }
        IocType::Domain
            if v.is_empty() || v.chars().count() > 200 || v.contains(char::is_whitespace) =>
        {
            Err(format!(
                "`{v}` is not a domain (1 to 200 characters, no spaces)"
            ))
        }
        _ if v.is_empty() => Err("value is empty".into()),
        _ => Ok(()),
    }
}

/// Changes to an existing IOC (`APIIndicatorUpdateReqV1`): `id` plus the fields to set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndicatorUpdate {
    /// IOC id.
    pub id: String,
    /// Action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Platforms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<Platform>>,
    /// Applied globally.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_globally: Option<bool>,
    /// Host groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_groups: Option<Vec<String>>,
    /// Tags (replaces the list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Expiration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<DateTime<Utc>>,
    /// Mobile action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_action: Option<Action>,
    /// Metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl IndicatorUpdate {
    /// An update of IOC `id` that changes nothing yet.
    pub fn new(id: impl Into<String>) -> Self {
        IndicatorUpdate {
            id: id.into(),
            ..Default::default()
        }
    }
}

/// One item Falcon (or local validation) rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    /// Index of the item in the vector given to `create`/`update`/`delete_ids`, when it could be
    /// matched.
    pub index: Option<usize>,
    /// IOC id (updates).
    pub id: Option<String>,
    /// Type of the rejected item.
    pub ioc_type: Option<String>,
    /// Value of the rejected item.
    pub value: Option<String>,
    /// `warning` or `error` (`error` for local validation failures).
    pub message_type: Option<String>,
    /// Message, e.g. `Warning: Duplicate type: 'domain' and value: 'x' combination.`
    pub message: String,
    /// Error code, when given.
    pub code: Option<i64>,
}

impl ItemError {
    /// True for Falcon's duplicate (type, value) warning.
    pub fn is_duplicate(&self) -> bool {
        self.message.to_ascii_lowercase().contains("duplicate")
    }
}

/// Outcome of a create or update: what was written and what was rejected, item by item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    /// IOCs as Falcon stored them.
    pub written: Vec<Indicator>,
    /// Rejected items.
    pub failed: Vec<ItemError>,
    /// HTTP requests made.
    pub requests: usize,
}

/// Outcome of a delete: what Falcon deleted and what it did not, id by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteReport {
    /// Ids Falcon reports deleted (`resources`).
    pub deleted: Vec<String>,
    /// Ids not deleted: named in `errors[]`, or requested and absent from `resources`. For a delete by
    /// ids, `index` is the position in the slice given to [`Iocs::delete_ids`].
    pub failed: Vec<ItemError>,
    /// HTTP requests made.
    pub requests: usize,
}

/// IOC handler: `client.iocs()`.
#[derive(Debug, Clone)]
pub struct Iocs {
    client: FalconClient,
}

impl FalconClient {
    /// IOC Management API (`/iocs/...`).
    pub fn iocs(&self) -> Iocs {
        Iocs {
            client: self.clone(),
        }
    }
}

/// Ids per GET/DELETE query string (keeps URLs well under Falcon's length limit).
const IDS_PER_QUERY: usize = 200;

impl Iocs {
    /// Creates `items` (split into requests of [`crate::Settings::ioc_batch_size`]).
    pub fn create(&self, items: Vec<NewIndicator>) -> CreateIocs {
        CreateIocs {
            client: self.client.clone(),
            items,
            comment: None,
            retrodetects: None,
            ignore_warnings: None,
        }
    }

    /// Updates IOCs by id (split into requests of [`crate::Settings::ioc_batch_size`]).
    pub fn update(&self, items: Vec<IndicatorUpdate>) -> UpdateIocs {
        UpdateIocs {
            client: self.client.clone(),
            items,
            comment: None,
            retrodetects: None,
            ignore_warnings: None,
        }
    }

    /// Deletes IOCs by id.
    pub fn delete_ids<S: AsRef<str>>(&self, ids: &[S]) -> DeleteIocs {
        DeleteIocs {
            client: self.client.clone(),
            target: DeleteTarget::Ids(ids.iter().map(|s| s.as_ref().to_string()).collect()),
            comment: None,
        }
    }

    /// Deletes every IOC matching an FQL filter.
    pub fn delete_filter(&self, fql: impl Into<String>) -> DeleteIocs {
        DeleteIocs {
            client: self.client.clone(),
            target: DeleteTarget::Filter(fql.into()),
            comment: None,
        }
    }

    /// IOCs by id (`GET /iocs/entities/indicators/v1`, requests of 200 ids).
    pub async fn get<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Indicator>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let req = ApiRequest::get("/iocs/entities/indicators/v1")
                .query_all("ids", chunk.iter().map(|s| s.as_ref()));
            let env: Envelope<Vec<Indicator>> = self.client.send_envelope(req).await?;
            out.extend(env.resources);
        }
        Ok(out)
    }

    /// IOC ids (`GET /iocs/queries/indicators/v1`).
    pub fn query(&self) -> IocList<String> {
        IocList::new(self.client.clone(), "/iocs/queries/indicators/v1")
    }

    /// Full IOCs (`GET /iocs/combined/indicator/v1`).
    pub fn combined(&self) -> IocList<Indicator> {
        IocList::new(self.client.clone(), "/iocs/combined/indicator/v1")
    }
}

fn write_query(
    req: ApiRequest,
    retrodetects: Option<bool>,
    ignore_warnings: Option<bool>,
) -> ApiRequest {
    req.query_opt("retrodetects", retrodetects)
        .query_opt("ignore_warnings", ignore_warnings)
}

/// Parses a create/update response into written items and item errors.
fn split_resources(
    resources: Vec<serde_json::Value>,
    endpoint: &str,
) -> Result<(Vec<Indicator>, Vec<ItemError>)> {
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for (i, r) in resources.into_iter().enumerate() {
        let has_message = r.get("message_type").is_some()
            || (r.get("message").is_some()
                && r.get("id")
                    .and_then(|v| v.as_str())
                    .is_none_or(str::is_empty));
        if has_message {
            let s = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
            failed.push(ItemError {
                index: None,
                id: s("id").filter(|x| !x.is_empty()),
                ioc_type: s("type"),
                value: s("value"),
                message_type: s("message_type"),
                message: s("message").unwrap_or_default(),
                code: r.get("code").and_then(|v| v.as_i64()),
            });
        } else {
            let bytes = serde_json::to_vec(&r).unwrap_or_default();
            let ind: Indicator =
                crate::transport::decode_slice(endpoint, &bytes).map_err(|e| match e {
                    Error::Decode(mut d) => {
                        d.path = format!("resources[{i}].{}", d.path);
                        Error::Decode(d)
                    }
                    other => other,
                })?;
            written.push(ind);
        }
    }
    Ok((written, failed))
}

/// Builder of an IOC create.
#[derive(Debug)]
pub struct CreateIocs {
    client: FalconClient,
    items: Vec<NewIndicator>,
    comment: Option<String>,
    retrodetects: Option<bool>,
    ignore_warnings: Option<bool>,
}

impl CreateIocs {
    /// Audit comment.
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }
    /// Run retrodetection.
    pub fn retrodetects(mut self, yes: bool) -> Self {
        self.retrodetects = Some(yes);
        self
    }
    /// Accept items that only raise warnings.
    pub fn ignore_warnings(mut self, yes: bool) -> Self {
        self.ignore_warnings = Some(yes);
        self
    }

    /// Sends the batches. Items failing local validation are reported without being sent. When Falcon
    /// rejects a request with per-item errors (HTTP 400 with `resources[]` carrying `message_type`), the
    /// rejected items are reported and the rest of that batch is sent once more without them (whether
    /// Falcon wrote part of a rejected batch is not documented, so the SDK does not assume it did).
    ///
    /// A request failure other than per-item rejection stops the operation: [`Error::Partial`] when
    /// earlier batches were written, else the error itself.
    pub async fn send(self) -> Result<WriteReport> {
        let batch = self.client.settings().ioc_batch_size;
        let mut report = WriteReport::default();
        let mut valid: Vec<(usize, NewIndicator)> = Vec::new();
        for (i, mut item) in self.items.into_iter().enumerate() {
            match item.validate() {
                Ok(()) => {
                    if item.applied_globally.is_none() && item.host_groups.is_empty() {
                        item.applied_globally = Some(true);
                    }
                    valid.push((i, item))
                }
                Err(msg) => report.failed.push(ItemError {
                    index: Some(i),
                    id: None,
                    ioc_type: Some(item.type_.to_string()),
                    value: Some(item.value.clone()),
                    message_type: Some("error".into()),
                    message: msg,
                    code: None,
                }),
            }
        }
        let chunks: Vec<Vec<(usize, NewIndicator)>> =
            valid.chunks(batch).map(<[_]>::to_vec).collect();
        let total = chunks.len();
        for (n, chunk) in chunks.into_iter().enumerate() {
            let r = create_batch(
                &self.client,
                chunk,
                self.comment.as_deref(),
                self.retrodetects,
                self.ignore_warnings,
                &mut report,
            )
            .await;
            if let Err(e) = r {
                return Err(if n == 0 {
                    e
                } else {
                    Error::Partial {
                        completed: n,
                        total,
                        source: Box::new(e),
                    }
                });
            }
        }
        report.failed.sort_by_key(|e| e.index);
        Ok(report)
    }
}

async fn create_batch(
    client: &FalconClient,
    mut chunk: Vec<(usize, NewIndicator)>,
    comment: Option<&str>,
    retrodetects: Option<bool>,
    ignore_warnings: Option<bool>,
    report: &mut WriteReport,
) -> Result<()> {
    const PATH: &str = "/iocs/entities/indicators/v1";
    for round in 0..2 {
        if chunk.is_empty() {
            return Ok(());
        }
        let indicators: Vec<&NewIndicator> = chunk.iter().map(|(_, i)| i).collect();
        let mut body = serde_json::json!({ "indicators": indicators });
        if let Some(c) = comment {
            body["comment"] = c.into();
        }
        let req = write_query(ApiRequest::post(PATH), retrodetects, ignore_warnings)
            .json(&body)?
            .accept_status(StatusCode::BAD_REQUEST);
        let endpoint = req.endpoint();
        let resp = client.execute(req).await?;
        let status = resp.status();
        report.requests += 1;
        let bytes = read_body(client, &endpoint, resp).await?;
        let env: Envelope<Vec<serde_json::Value>> =
            crate::transport::decode_slice(&endpoint, &bytes)?;
        let (written, mut failed) = split_resources(env.resources, &endpoint)?;
        if status == StatusCode::BAD_REQUEST && failed.is_empty() {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                env.errors,
                env.meta.trace_id,
                endpoint,
            ));
        }
        // Match reports back to the caller's items by (type, value).
        let key = |t: &str, v: &str| (t.to_ascii_lowercase(), v.to_ascii_lowercase());
        let index: HashMap<(String, String), usize> = chunk
            .iter()
            .map(|(i, it)| (key(it.type_.as_str(), &it.value), *i))
            .collect();
        let mut done: std::collections::HashSet<usize> = Default::default();
        for f in &mut failed {
            if let (Some(t), Some(v)) = (&f.ioc_type, &f.value) {
                f.index = index.get(&key(t, v)).copied();
                if let Some(i) = f.index {
                    done.insert(i);
                }
            }
        }
        for w in &written {
            if let Some(i) = index.get(&key(w.type_.as_str(), &w.value)) {
                done.insert(*i);
            }
        }
        let rejected_any = !failed.is_empty();
        report.written.extend(written);
        report.failed.extend(failed);
        if status.is_success() || !rejected_any {
            return Ok(());
        }
        // 400 with per-item errors: resend the items that were neither written nor rejected, once.
        chunk.retain(|(i, _)| !done.contains(i));
        if round == 1 && !chunk.is_empty() {
            for (i, it) in chunk.drain(..) {
                report.failed.push(ItemError {
                    index: Some(i),
                    id: None,
                    ioc_type: Some(it.type_.to_string()),
                    value: Some(it.value),
                    message_type: Some("error".into()),
                    message: "batch rejected twice; item not written".into(),
                    code: Some(400),
                });
            }
        }
    }
    Ok(())
}

fn api_error(
    status: StatusCode,
    errors: Vec<crate::ApiErrorItem>,
    trace_id: Option<String>,
    endpoint: String,
) -> Error {
    Error::Api {
        status,
        retry_after: None,
        detail: Box::new(crate::ApiErrorDetail {
            errors,
            trace_id,
            endpoint,
            body_excerpt: None,
        }),
    }
}

/// Builder of an IOC update.
#[derive(Debug)]
pub struct UpdateIocs {
    client: FalconClient,
    items: Vec<IndicatorUpdate>,
    comment: Option<String>,
    retrodetects: Option<bool>,
    ignore_warnings: Option<bool>,
}

impl UpdateIocs {
    /// Audit comment.
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }
    /// Run retrodetection.
    pub fn retrodetects(mut self, yes: bool) -> Self {
        self.retrodetects = Some(yes);
        self
    }
    /// Accept items that only raise warnings.
    pub fn ignore_warnings(mut self, yes: bool) -> Self {
        self.ignore_warnings = Some(yes);
        self
    }

    /// Sends the batches (`PATCH`, retried like an idempotent call: it sets fields). Per-item errors of
    /// a 400 are reported in [`WriteReport::failed`] (matched to the input by id).
    pub async fn send(self) -> Result<WriteReport> {
        const PATH: &str = "/iocs/entities/indicators/v1";
        let batch = self.client.settings().ioc_batch_size;
        let mut report = WriteReport::default();
        let total = self.items.len().div_ceil(batch);
        for (n, (chunk_no, chunk)) in self.items.chunks(batch).enumerate().enumerate() {
            if let Some(bad) = chunk.iter().position(|u| u.id.is_empty()) {
                return Err(Error::InvalidArgument(format!(
                    "IOC update item {} has an empty id",
                    chunk_no * batch + bad
                )));
            }
            let mut body = serde_json::json!({ "indicators": chunk });
            if let Some(c) = &self.comment {
                body["comment"] = c.clone().into();
            }
            let req = write_query(
                ApiRequest::patch(PATH),
                self.retrodetects,
                self.ignore_warnings,
            )
            .json(&body)?
            .idempotent(true)
            .accept_status(StatusCode::BAD_REQUEST);
            let endpoint = req.endpoint();
            let res = async {
                let resp = self.client.execute(req).await?;
                let status = resp.status();
                let bytes = read_body(&self.client, &endpoint, resp).await?;
                let env: Envelope<Vec<serde_json::Value>> =
                    crate::transport::decode_slice(&endpoint, &bytes)?;
                let (written, mut failed) = split_resources(env.resources, &endpoint)?;
                if status == StatusCode::BAD_REQUEST && failed.is_empty() {
                    return Err(api_error(
                        StatusCode::BAD_REQUEST,
                        env.errors,
                        env.meta.trace_id,
                        endpoint.clone(),
                    ));
                }
                for f in &mut failed {
                    if let Some(id) = &f.id {
                        f.index = chunk
                            .iter()
                            .position(|u| &u.id == id)
                            .map(|p| chunk_no * batch + p);
                    }
                }
                Ok((written, failed))
            }
            .await;
            match res {
                Ok((w, f)) => {
                    report.requests += 1;
                    report.written.extend(w);
                    report.failed.extend(f);
                }
                Err(e) if n == 0 => return Err(e),
                Err(e) => {
                    return Err(Error::Partial {
                        completed: n,
                        total,
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(report)
    }
}

#[derive(Debug)]
enum DeleteTarget {
    Ids(Vec<String>),
    Filter(String),
}

/// Builder of an IOC delete.
#[derive(Debug)]
pub struct DeleteIocs {
    client: FalconClient,
    target: DeleteTarget,
    comment: Option<String>,
}

impl DeleteIocs {
    /// Audit comment.
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }

    /// Sends the delete(s) (requests of 200 ids) and reports, id by id, what Falcon deleted and what
    /// it did not. An id Falcon neither lists in `resources` nor names in `errors[]` is reported failed
    /// ("not reported deleted"): it may still exist, so the caller must not count it as gone.
    ///
    /// A request that fails after earlier ones succeeded returns [`Error::Partial`], as
    /// [`CreateIocs::send`] and [`UpdateIocs::send`] do.
    pub async fn send(self) -> Result<DeleteReport> {
        const PATH: &str = "/iocs/entities/indicators/v1";
        let mut report = DeleteReport::default();
        match self.target {
            DeleteTarget::Filter(f) => {
                if f.trim().is_empty() {
                    return Err(Error::InvalidArgument(
                        "refusing to delete IOCs with an empty filter".into(),
                    ));
                }
                let req = ApiRequest::delete(PATH)
                    .query("filter", f)
                    .query_opt("comment", self.comment.as_ref());
                let env = send_delete(&self.client, req).await?;
                report.requests += 1;
                report.deleted.extend(env.resources);
                report
                    .failed
                    .extend(env.errors.into_iter().map(|e| ItemError {
                        index: None,
                        id: e.id,
                        ioc_type: None,
                        value: None,
                        message_type: Some("error".into()),
                        message: e.message,
                        code: e.code,
                    }));
            }
            DeleteTarget::Ids(ids) => {
                let total = ids.len().div_ceil(IDS_PER_QUERY);
                for (n, chunk) in ids.chunks(IDS_PER_QUERY).enumerate() {
                    let req = ApiRequest::delete(PATH)
                        .query_all("ids", chunk)
                        .query_opt("comment", self.comment.as_ref());
                    let env = match send_delete(&self.client, req).await {
                        Ok(env) => env,
                        Err(e) if n == 0 => return Err(e),
                        Err(e) => {
                            return Err(Error::Partial {
                                completed: n,
                                total,
                                source: Box::new(e),
                            });
                        }
                    };
                    report.requests += 1;
                    delete_outcome(&mut report, n * IDS_PER_QUERY, chunk, env);
                }
            }
        }
        Ok(report)
    }
}

/// Sends one delete. A 404 whose `errors[]` name ids (every id unknown) is an answer, not a failure:
/// its ids become items of the report.
async fn send_delete(client: &FalconClient, req: ApiRequest) -> Result<Envelope<Vec<String>>> {
    let req = req.accept_status(StatusCode::NOT_FOUND);
    let endpoint = req.endpoint();
    let resp = client.execute(req).await?;
    let status = resp.status();
    let bytes = read_body(client, &endpoint, resp).await?;
    let env: Envelope<Vec<String>> = crate::transport::decode_slice(&endpoint, &bytes)?;
    if status == StatusCode::NOT_FOUND && !env.errors.iter().any(|e| e.id.is_some()) {
        return Err(api_error(status, env.errors, env.meta.trace_id, endpoint));
    }
    Ok(env)
}

/// Sorts the ids of one delete request into deleted and failed; `base` is the index of `chunk[0]`.
fn delete_outcome(
    report: &mut DeleteReport,
    base: usize,
    chunk: &[String],
    env: Envelope<Vec<String>>,
) {
    let deleted: std::collections::HashSet<&str> =
        env.resources.iter().map(String::as_str).collect();
    let mut errors: HashMap<&str, &crate::ApiErrorItem> = HashMap::new();
    for e in &env.errors {
        if let Some(id) = e.id.as_deref() {
            errors.entry(id).or_insert(e);
        }
    }
    for (i, id) in chunk.iter().enumerate() {
        if deleted.contains(id.as_str()) {
            continue;
        }
        let (message, code) = match errors.get(id.as_str()) {
            Some(e) => (e.message.clone(), e.code),
            None => ("not reported deleted by Falcon".to_string(), None),
        };
        report.failed.push(ItemError {
            index: Some(base + i),
            id: Some(id.clone()),
            ioc_type: None,
            value: None,
            message_type: Some("error".into()),
            message,
            code,
        });
    }
    report.deleted.extend(env.resources);
}

/// Builder of an IOC query (`T = String`) or combined listing (`T = Indicator`).
#[derive(Debug, Clone)]
pub struct IocList<T> {
    client: FalconClient,
    path: &'static str,
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
    after: Option<String>,
    from_parent: Option<bool>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> IocList<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    fn new(client: FalconClient, path: &'static str) -> Self {
        IocList {
            client,
            path,
            filter: None,
            sort: None,
            limit: None,
            offset: None,
            after: None,
            from_parent: None,
            _t: std::marker::PhantomData,
        }
    }
    /// FQL filter, e.g. `source:'OpenCTI IOC'+created_by:'<client id>'`.
    pub fn filter(mut self, fql: impl Into<String>) -> Self {
        self.filter = Some(fql.into());
        self
    }
    /// Sort, e.g. `modified_on.desc`.
    pub fn sort(mut self, sort: impl Into<String>) -> Self {
        self.sort = Some(sort.into());
        self
    }
    /// Page size (default [`crate::Settings::ioc_page_size`], 500).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Numeric offset (one page only; exclusive with `after`).
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = Some(offset);
        self
    }
    /// `after` cursor of the previous page.
    pub fn after(mut self, after: impl Into<String>) -> Self {
        self.after = Some(after.into());
        self
    }
    /// Include IOCs inherited from the parent CID.
    pub fn from_parent(mut self, yes: bool) -> Self {
        self.from_parent = Some(yes);
        self
    }

    fn request(&self, after: Option<&str>) -> ApiRequest {
        ApiRequest::get(self.path)
            .query_opt("filter", self.filter.as_ref())
            .query_opt("sort", self.sort.as_ref())
            .query(
                "limit",
                self.limit.unwrap_or(self.client.settings().ioc_page_size),
            )
            .query_opt("offset", if after.is_none() { self.offset } else { None })
            .query_opt("after", after)
            .query_opt("from_parent", self.from_parent)
    }

    /// One page; the next cursor is `page.pagination().after`.
    pub async fn send(self) -> Result<Page<T>> {
        let req = self.request(self.after.as_deref());
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }

    /// Every result, following `after` (no 10,000 ceiling). Ends on an empty page, a missing or repeated
    /// cursor, or when `total` is reached.
    fn all(self) -> impl Stream<Item = Result<T>> + Send + 'static {
        let first = self.after.clone();
        paged(
            (first, 0u64),
            move |(after, seen): (Option<String>, u64)| {
                let req = self.request(after.as_deref());
                let endpoint = req.endpoint();
                let client = self.client.clone();
                async move {
                    let env: Envelope<Vec<T>> = client.send_envelope(req).await?;
                    let page = Page::from_envelope(env);
                    let seen = seen + page.items.len() as u64;
                    let next = page.pagination().and_then(|p| p.after.clone());
                    let done = page.items.is_empty()
                        || next.as_deref().is_none_or(str::is_empty)
                        || page.total().is_some_and(|t| seen >= t);
                    if !done {
                        check_cursor(&endpoint, after.as_deref(), next.as_deref(), seen)?;
                    }
                    Ok((page.items, (!done).then_some((next, seen))))
                }
            },
        )
    }
}

impl IocList<String> {
    /// Every matching IOC id, following `after` (no 10,000 ceiling). Ends on an empty page, a missing
    /// or repeated cursor, or when `total` is reached.
    pub fn ids(self) -> impl Stream<Item = Result<String>> + Send + 'static {
        self.all()
    }
}

impl IocList<Indicator> {
    /// Every matching IOC, following `after` (no 10,000 ceiling). Ends on an empty page, a missing or
    /// repeated cursor, or when `total` is reached.
    pub fn stream(self) -> impl Stream<Item = Result<Indicator>> + Send + 'static {
        self.all()
    }
}
