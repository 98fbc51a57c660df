//! The pure mapping from an OpenCTI STIX indicator to the Falcon IOCs that represent it.
//!
//! No IO, no clock (the caller passes `now`). [`map_indicator`] parses the pattern with `stix-pattern`;
//! every IOC the pattern denotes becomes one [`DesiredIoc`]: each `=` (or `IN`) comparison of an `OR`,
//! each side of an `OR` of observation expressions, each hash of an `AND` of hashes of one file.
//! Everything else is a [`Skip`] with a named [`SkipReason`] and a detail naming the part skipped.
//!
//! Field values follow the Python connector exactly (so IOCs it wrote are adopted): `source`
//! `"OpenCTI IOC"`, `applied_globally` true, `mobile_action` = `action`, severity bands from the score,
//! platforms from `x_mitre_platforms`, `tags` from labels plus the indicator's owner tag
//! (`opencti:<indicator id>`, see [`owner_tag`]), `expiration` = `valid_until`. Unlike the Python
//! connector, values are normalised (lower-case hex and domains, canonical IP text), every hash of a
//! multi-hash pattern is kept, MD5 is recognised in every spelling, and an expired or revoked indicator
//! is withdrawn instead of written.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::IocAction;

/// The `source` of every IOC the connector writes (the Python connector's value).
pub const SOURCE: &str = "OpenCTI IOC";
/// The `comment` sent with creates and updates (the Python connector's value).
pub const COMMENT_IMPORT: &str = "IOC imported from OpenCTI";
/// The `comment` sent with soft and permanent deletes.
pub const COMMENT_WITHDRAW: &str = "IOC withdrawn from OpenCTI";
/// Tag added by a soft delete.
pub const TAG_TO_DELETE: &str = "TO_DELETE";
/// Prefix of an owner tag: `opencti:<indicator STIX id>` records that this indicator wants the IOC.
/// An IOC exists while at least one live indicator owns it (several indicators may share one value).
pub const OWNER_TAG_PREFIX: &str = "opencti:";

/// The owner tag of an indicator (`opencti:indicator--<uuid>`); `None` for an id that is not an
/// indicator STIX id.
pub fn owner_tag(indicator_id: &str) -> Option<String> {
    indicator_id
        .starts_with("indicator--")
        .then(|| format!("{OWNER_TAG_PREFIX}{indicator_id}"))
}

/// The indicator STIX id an owner tag names, if `tag` is one.
pub fn tag_owner(tag: &str) -> Option<&str> {
    tag.strip_prefix(OWNER_TAG_PREFIX)
        .filter(|id| id.starts_with("indicator--"))
}

/// Whether `tag` is an owner tag (rather than a label or `TO_DELETE`).
pub fn is_owner_tag(tag: &str) -> bool {
    tag_owner(tag).is_some()
}

/// OpenCTI's STIX extension holding `score`, `detection`, `main_observable_type`.
pub const OPENCTI_EXTENSION: &str = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba";
/// OpenCTI's MITRE extension holding `platforms` (`x_mitre_platforms`).
pub const MITRE_EXTENSION: &str = "extension-definition--322b8f77-262a-4cb8-a915-1e441e00329b";
/// OpenCTI's observable extension (also consulted for `score`, as pycti does).
pub const SCO_EXTENSION: &str = "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82";

/// A Falcon IOC type the connector writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IocType {
    /// `sha256`
    Sha256,
    /// `md5`
    Md5,
    /// `domain` (from `domain-name` and `hostname`)
    Domain,
    /// `ipv4`
    Ipv4,
    /// `ipv6`
    Ipv6,
}

impl IocType {
    /// The Falcon wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            IocType::Sha256 => "sha256",
            IocType::Md5 => "md5",
            IocType::Domain => "domain",
            IocType::Ipv4 => "ipv4",
            IocType::Ipv6 => "ipv6",
        }
    }

    /// Parses a Falcon wire name.
    pub fn from_wire(s: &str) -> Option<IocType> {
        Some(match s {
            "sha256" => IocType::Sha256,
            "md5" => IocType::Md5,
            "domain" => IocType::Domain,
            "ipv4" => IocType::Ipv4,
            "ipv6" => IocType::Ipv6,
            _ => return None,
        })
    }
}

impl fmt::Display for IocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a Falcon IOC: one per (type, value) per CID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct IocKey {
    /// IOC type.
    #[serde(rename = "type")]
    pub ioc_type: IocType,
    /// Normalised value.
    pub value: String,
}

impl fmt::Display for IocKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ioc_type, self.value)
    }
}

impl IocKey {
    /// The key of an IOC read from Falcon: its value normalised as the mapping normalises it, so an IOC
    /// another writer stored as `Evil.Example` or with upper-case hex (the Python connector writes the
    /// pattern's value verbatim) is the one the connector wants for `evil.example`, and is adopted
    /// rather than duplicated. A value that does not normalise is kept as stored.
    pub fn from_stored(ioc_type: IocType, value: &str) -> IocKey {
        IocKey {
            ioc_type,
            value: normalise(ioc_type, value).unwrap_or_else(|_| value.to_string()),
        }
    }
}

/// Falcon IOC severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// score 0-19
    Informational,
    /// score 20-39
    Low,
    /// score 40-59
    Medium,
    /// score 60-79
    High,
    /// score 80-100
    Critical,
}

impl Severity {
    /// Half-open bands over 0..=100; anything else (or no score) has no severity.
    pub fn from_score(score: f64) -> Option<Severity> {
        if !(0.0..=100.0).contains(&score) {
            return None;
        }
        Some(if score < 20.0 {
            Severity::Informational
        } else if score < 40.0 {
            Severity::Low
        } else if score < 60.0 {
            Severity::Medium
        } else if score < 80.0 {
            Severity::High
        } else {
            Severity::Critical
        })
    }

    /// The Falcon wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The IOC the connector wants in Falcon for one comparison of one indicator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredIoc {
    /// `action`
    pub action: IocAction,
    /// `mobile_action` (always equal to `action`, as the Python connector)
    pub mobile_action: IocAction,
    /// `type` and `value`
    #[serde(flatten)]
    pub key: IocKey,
    /// `severity` (from the score; `medium`, the band of OpenCTI's default score 50, when the indicator
    /// has no score in 0..=100, because Falcon refuses a `detect`/`prevent` IOC without severity)
    pub severity: Option<Severity>,
    /// `applied_globally` (always true)
    pub applied_globally: bool,
    /// `source` (always [`SOURCE`])
    pub source: &'static str,
    /// `description` (the indicator's)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `expiration` (the indicator's `valid_until`, verbatim)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// `tags` (the indicator's labels)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `platforms` (`windows`, `mac`, `linux` when the indicator names none; an indicator naming only
    /// platforms Falcon does not accept is skipped with [`SkipReason::NoPlatform`])
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
}

impl DesiredIoc {
    /// `expiration` parsed, if it parses.
    pub fn expiration_time(&self) -> Option<DateTime<Utc>> {
        self.expiration.as_deref().and_then(parse_time)
    }
}

/// Why a comparison or an indicator is not written to Falcon. The `Display` form is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The STIX object is not an indicator.
    NotIndicator,
    /// `pattern_type` is not `stix`.
    PatternTypeNotStix,
    /// The indicator has no pattern.
    MissingPattern,
    /// The pattern does not parse.
    InvalidPattern,
    /// An `AND` of observation expressions, or of comparisons that are not hashes of one file.
    AndPattern,
    /// Observation expressions joined by `FOLLOWEDBY` (a sequence in time, not an IOC).
    FollowedBy,
    /// A comparison operator other than `=` (or a negation).
    UnsupportedOperator,
    /// A `WITHIN`/`REPEATS`/`START STOP` qualifier.
    Qualifier,
    /// An object path Falcon has no IOC type for (URL, e-mail, file name, ...).
    UnsupportedType,
    /// A file hash other than SHA-256 and MD5 (SHA-1, SHA-512, ...).
    UnsupportedHash,
    /// An IP network (CIDR) other than a single address: Falcon IOCs are single addresses.
    Cidr,
    /// A value that is not valid for its type (bad hash length, invalid IP, empty domain, ...).
    InvalidValue,
    /// The indicator names platforms, none of which Falcon (or this tenant) accepts (e.g. only
    /// `android` without Falcon for Mobile): Falcon requires at least one platform.
    NoPlatform,
    /// The stream event could not be decoded.
    MalformedEvent,
}

impl SkipReason {
    /// Stable snake_case name (metric label, dead-letter and `map` output).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotIndicator => "not_indicator",
            SkipReason::PatternTypeNotStix => "pattern_type_not_stix",
            SkipReason::MissingPattern => "missing_pattern",
            SkipReason::InvalidPattern => "invalid_pattern",
            SkipReason::AndPattern => "and_pattern",
            SkipReason::FollowedBy => "followed_by",
            SkipReason::UnsupportedOperator => "unsupported_operator",
            SkipReason::Qualifier => "qualifier",
            SkipReason::UnsupportedType => "unsupported_type",
            SkipReason::UnsupportedHash => "unsupported_hash",
            SkipReason::Cidr => "cidr",
            SkipReason::InvalidValue => "invalid_value",
            SkipReason::NoPlatform => "no_platform",
            SkipReason::MalformedEvent => "malformed_event",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One skipped comparison (or indicator), with a human detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// The named reason.
    pub reason: SkipReason,
    /// What exactly (the object path, the value, the parser message).
    pub detail: String,
}

impl Skip {
    /// Builds a skip.
    pub fn new(reason: SkipReason, detail: impl Into<String>) -> Skip {
        Skip {
            reason,
            detail: detail.into(),
        }
    }
}

/// Why an indicator's IOCs are removed rather than written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Withdrawal {
    /// `revoked: true`.
    Revoked,
    /// `valid_until` is in the past.
    Expired,
}

/// The result of mapping one indicator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndicatorMapping {
    /// The indicator's STIX id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indicator_id: Option<String>,
    /// The IOCs for its comparisons (also filled when withdrawn: those are the IOCs to remove).
    pub iocs: Vec<DesiredIoc>,
    /// Comparisons (or the whole indicator) that are not written, with reasons.
    pub skipped: Vec<Skip>,
    /// Set when the IOCs must be removed rather than written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<Withdrawal>,
}

/// The parts of the configuration the mapping needs.
#[derive(Debug, Clone, Copy)]
pub struct MappingOptions {
    /// `CROWDSTRIKE_ACTION_ON_IP`
    pub action_on_ip: IocAction,
    /// `CROWDSTRIKE_ACTION_ON_DOMAIN`
    pub action_on_domain: IocAction,
    /// `CROWDSTRIKE_ACTION_ON_HASH`
    pub action_on_hash: IocAction,
    /// `CROWDSTRIKE_FALCON_FOR_MOBILE_ACTIVE`
    pub falcon_for_mobile_active: bool,
}

impl Default for MappingOptions {
    fn default() -> Self {
        MappingOptions {
            action_on_ip: IocAction::Detect,
            action_on_domain: IocAction::Detect,
            action_on_hash: IocAction::Detect,
            falcon_for_mobile_active: false,
        }
    }
}

impl MappingOptions {
    /// From the connector configuration.
    pub fn from_config(c: &crate::config::Config) -> MappingOptions {
        MappingOptions {
            action_on_ip: c.crowdstrike.action_on_ip,
            action_on_domain: c.crowdstrike.action_on_domain,
            action_on_hash: c.crowdstrike.action_on_hash,
            falcon_for_mobile_active: c.crowdstrike.falcon_for_mobile_active,
        }
    }

    fn action_for(&self, t: IocType) -> IocAction {
        match t {
            IocType::Ipv4 | IocType::Ipv6 => self.action_on_ip,
            IocType::Domain => self.action_on_domain,
            IocType::Sha256 | IocType::Md5 => self.action_on_hash,
        }
    }
}

/// One `=` comparison of a simple pattern, as the pattern parser hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// SCO type, e.g. `file`.
    pub object_type: String,
    /// Property path with quotes removed, e.g. `["hashes", "SHA-256"]`.
    pub path: Vec<String>,
    /// The literal, when it is a string.
    pub value: Option<String>,
}

/// Maps one STIX indicator object (as found in the `data` of a stream event).
pub fn map_indicator(stix: &Value, opts: &MappingOptions, now: DateTime<Utc>) -> IndicatorMapping {
    map_indicator_with(stix, opts, now, crate::pattern::comparisons)
}

/// [`map_indicator`] with the pattern parser passed in.
pub(crate) fn map_indicator_with<P: Into<crate::pattern::Parsed>>(
    stix: &Value,
    opts: &MappingOptions,
    now: DateTime<Utc>,
    parse: impl Fn(&str) -> Result<P, Skip>,
) -> IndicatorMapping {
    let indicator_id = stix.get("id").and_then(Value::as_str).map(str::to_string);
    let mut out = IndicatorMapping {
        indicator_id,
        iocs: Vec::new(),
        skipped: Vec::new(),
        withdrawn: None,
    };
    let ty = stix.get("type").and_then(Value::as_str).unwrap_or("");
    if ty != "indicator" {
        out.skipped.push(Skip::new(
            SkipReason::NotIndicator,
            format!("STIX type {ty:?}"),
        ));
        return out;
    }
    let pattern_type = stix
        .get("pattern_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !pattern_type.eq_ignore_ascii_case("stix") {
        out.skipped.push(Skip::new(
            SkipReason::PatternTypeNotStix,
            format!("pattern_type {pattern_type:?}"),
        ));
        return out;
    }
    let Some(pattern) = stix.get("pattern").and_then(Value::as_str) else {
        out.skipped
            .push(Skip::new(SkipReason::MissingPattern, "no pattern"));
        return out;
    };
    let comparisons = match parse(pattern) {
        Ok(p) => {
            let p = p.into();
            out.skipped.extend(p.skipped);
            p.comparisons
        }
        Err(skip) => {
            out.skipped.push(skip);
            return out;
        }
    };

    let severity = Some(
        score(stix)
            .and_then(Severity::from_score)
            .unwrap_or(Severity::Medium),
    );
    let platforms = platforms(stix, opts.falcon_for_mobile_active);
    let description = stix
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let expiration = stix
        .get("valid_until")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Labels become tags, then the indicator's owner tag. A label that looks like an owner tag is
    // dropped so that labels and owners never mix.
    let mut tags: Vec<String> = stix
        .get("labels")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .filter(|t| !is_owner_tag(t))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some(t) = out.indicator_id.as_deref().and_then(owner_tag) {
        tags.push(t);
    }
    let tags = Some(tags).filter(|l| !l.is_empty());

    let mut seen = BTreeSet::new();
    for c in comparisons {
        match comparison_key(&c) {
            Ok(key) if platforms.is_none() => {
                out.skipped.push(Skip::new(
                    SkipReason::NoPlatform,
                    format!("{key}: no platform Falcon accepts"),
                ));
            }
            Ok(key) => {
                if !seen.insert(key.clone()) {
                    continue;
                }
                let action = opts.action_for(key.ioc_type);
                out.iocs.push(DesiredIoc {
                    action,
                    mobile_action: action,
                    key,
                    severity,
                    applied_globally: true,
                    source: SOURCE,
                    description: description.clone(),
                    expiration: expiration.clone(),
                    tags: tags.clone(),
                    platforms: platforms.clone(),
                });
            }
            Err(skip) => out.skipped.push(skip),
        }
    }

    if stix.get("revoked").and_then(Value::as_bool) == Some(true) {
        out.withdrawn = Some(Withdrawal::Revoked);
    } else if let Some(t) = expiration.as_deref().and_then(parse_time)
        && t <= now
    {
        out.withdrawn = Some(Withdrawal::Expired);
    }
    out
}

/// Maps one comparison to the IOC identity, or says why not.
pub fn comparison_key(c: &Comparison) -> Result<IocKey, Skip> {
    let path = format!("{}:{}", c.object_type, c.path.join("."));
    let ioc_type = match (c.object_type.as_str(), c.path.as_slice()) {
        ("domain-name" | "hostname" | "x-opencti-hostname", [p]) if p == "value" => IocType::Domain,
        ("ipv4-addr", [p]) if p == "value" => IocType::Ipv4,
        ("ipv6-addr", [p]) if p == "value" => IocType::Ipv6,
        ("file" | "artifact", [h, algo]) if h == "hashes" => {
            let norm: String = algo
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .collect::<String>()
                .to_ascii_uppercase();
            match norm.as_str() {
                "SHA256" => IocType::Sha256,
                "MD5" => IocType::Md5,
                _ => return Err(Skip::new(SkipReason::UnsupportedHash, path)),
            }
        }
        _ => return Err(Skip::new(SkipReason::UnsupportedType, path)),
    };
    let Some(raw) = c.value.as_deref() else {
        return Err(Skip::new(
            SkipReason::InvalidValue,
            format!("{path}: not a string literal"),
        ));
    };
    let value = normalise(ioc_type, raw)
        .map_err(|reason| Skip::new(reason, format!("{path} = {raw:?}")))?;
    Ok(IocKey { ioc_type, value })
}

/// Normalises a value as Falcon stores it; errors say why it cannot be an IOC.
pub fn normalise(t: IocType, raw: &str) -> Result<String, SkipReason> {
    let v = raw.trim();
    match t {
        IocType::Sha256 | IocType::Md5 => {
            let len = if t == IocType::Sha256 { 64 } else { 32 };
            if v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(SkipReason::InvalidValue)
            }
        }
        IocType::Domain => {
            let d = v.trim_end_matches('.').to_lowercase();
            if d.is_empty()
                || d.len() > 200
                || d.chars()
                    .any(|c| c.is_whitespace() || "/\\:@'\"".contains(c))
            {
                Err(SkipReason::InvalidValue)
            } else {
                Ok(d)
            }
        }
        IocType::Ipv4 | IocType::Ipv6 => {
            let (addr, prefix) = match v.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (v, None),
            };
            let ip: IpAddr = match t {
                IocType::Ipv4 => addr.parse::<Ipv4Addr>().map(IpAddr::V4),
                _ => addr.parse::<Ipv6Addr>().map(IpAddr::V6),
            }
            .map_err(|_| SkipReason::InvalidValue)?;
            if let Some(p) = prefix {
                let full = if t == IocType::Ipv4 { 32 } else { 128 };
                match p.parse::<u8>() {
                    Ok(n) if n == full => {}
                    Ok(n) if n < full => return Err(SkipReason::Cidr),
                    _ => return Err(SkipReason::InvalidValue),
                }
            }
            Ok(ip.to_string())
        }
    }
}

fn extension<'a>(stix: &'a Value, ext: &str, key: &str) -> Option<&'a Value> {
    stix.get("extensions")
        .and_then(|e| e.get(ext))
        .and_then(|e| e.get(key))
        .filter(|v| !v.is_null())
}

/// The indicator's score: OpenCTI extension, observable extension, then top-level keys.
pub fn score(stix: &Value) -> Option<f64> {
    extension(stix, OPENCTI_EXTENSION, "score")
        .or_else(|| extension(stix, SCO_EXTENSION, "score"))
        .or_else(|| stix.get("x_opencti_score"))
        .or_else(|| stix.get("score"))
        .and_then(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
}

/// Falcon platforms from `x_mitre_platforms`, case-insensitively, in the Python connector's order.
/// `None` = the attribute names platforms but none maps (Falcon requires one: the comparison is skipped).
fn platforms(stix: &Value, mobile: bool) -> Option<Vec<String>> {
    let attr =
        extension(stix, MITRE_EXTENSION, "platforms").or_else(|| stix.get("x_mitre_platforms"));
    let list = match attr.and_then(Value::as_array) {
        Some(l) if !l.is_empty() => l,
        _ => return Some(vec!["windows".into(), "mac".into(), "linux".into()]),
    };
    let given: BTreeSet<String> = list
        .iter()
        .filter_map(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase().replace([' ', '_'], ""))
        .collect();
    let mut out = Vec::new();
    for (names, falcon, is_mobile) in [
        (&["windows"][..], "windows", false),
        (&["macos", "mac", "osx"][..], "mac", false),
        (&["linux"][..], "linux", false),
        (&["android"][..], "android", true),
        (&["ios"][..], "ios", true),
    ] {
        if names.iter().any(|n| given.contains(*n)) && (!is_mobile || mobile) {
            out.push(falcon.to_string());
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Parses an RFC 3339 timestamp (OpenCTI's `…Z` with milliseconds, and offsets).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn now() -> DateTime<Utc> {
        parse_time("2026-01-01T00:00:00Z").unwrap()
    }

    fn cmp(o: &str, path: &[&str], v: &str) -> Comparison {
        Comparison {
            object_type: o.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            value: Some(v.into()),
        }
    }

    #[test]
    fn severity_bands_are_half_open() {
        let cases = [
            (0.0, Some(Severity::Informational)),
            (19.0, Some(Severity::Informational)),
            (19.5, Some(Severity::Informational)),
            (20.0, Some(Severity::Low)),
            (39.0, Some(Severity::Low)),
            (40.0, Some(Severity::Medium)),
            (59.0, Some(Severity::Medium)),
            (60.0, Some(Severity::High)),
            (79.0, Some(Severity::High)),
            (80.0, Some(Severity::Critical)),
            (100.0, Some(Severity::Critical)),
            (101.0, None),
            (-1.0, None),
        ];
        for (s, want) in cases {
            assert_eq!(Severity::from_score(s), want, "score {s}");
        }
    }

    #[test]
    fn hash_spellings() {
        let md5 = "D41D8CD98F00B204E9800998ECF8427E";
        for algo in ["MD5", "md5", "Md5"] {
            let k = comparison_key(&cmp("file", &["hashes", algo], md5)).unwrap();
            assert_eq!(
                k,
                IocKey {
                    ioc_type: IocType::Md5,
                    value: md5.to_ascii_lowercase()
                }
            );
        }
        let sha = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        for algo in ["SHA-256", "sha-256", "SHA256", "sha256"] {
            let k = comparison_key(&cmp("file", &["hashes", algo], sha)).unwrap();
            assert_eq!(k.ioc_type, IocType::Sha256);
            assert_eq!(k.value, sha.to_ascii_lowercase());
        }
        assert_eq!(
            comparison_key(&cmp("file", &["hashes", "SHA-1"], "a"))
                .unwrap_err()
                .reason,
            SkipReason::UnsupportedHash
        );
        assert_eq!(
            comparison_key(&cmp("file", &["hashes", "MD5"], "abc"))
                .unwrap_err()
                .reason,
            SkipReason::InvalidValue
        );
    }

    #[test]
    fn ip_values() {
        assert_eq!(
            normalise(IocType::Ipv4, "10.0.0.1/32"),
            Ok("10.0.0.1".into())
        );
        assert_eq!(
            normalise(IocType::Ipv4, "10.0.0.0/8"),
            Err(SkipReason::Cidr)
        );
        assert_eq!(
            normalise(IocType::Ipv4, "300.1.1.1"),
            Err(SkipReason::InvalidValue)
        );
        assert_eq!(
            normalise(IocType::Ipv6, "2A02:2F01:7504:5000:0:0:7429:4782"),
            Ok("2a02:2f01:7504:5000::7429:4782".into())
        );
        assert_eq!(
            normalise(IocType::Ipv6, "2001:db8::/32"),
            Err(SkipReason::Cidr)
        );
        assert_eq!(
            normalise(IocType::Domain, "Example.COM."),
            Ok("example.com".into())
        );
    }

    #[test]
    fn unsupported_paths() {
        for (o, p) in [
            ("url", &["value"][..]),
            ("email-addr", &["value"]),
            ("file", &["name"]),
        ] {
            assert_eq!(
                comparison_key(&cmp(o, p, "x")).unwrap_err().reason,
                SkipReason::UnsupportedType
            );
        }
    }

    fn one(parse_result: Vec<Comparison>, stix: Value) -> IndicatorMapping {
        map_indicator_with(&stix, &MappingOptions::default(), now(), move |_| {
            Ok(parse_result.clone())
        })
    }

    #[test]
    fn fields_match_the_python_connector() {
        let stix = json!({
            "id": "indicator--1", "type": "indicator", "pattern_type": "stix",
            "pattern": "[ipv4-addr:value = '1.2.3.4']",
            "description": "bad", "labels": ["threat lead"], "valid_until": "2027-04-29T12:33:20.098Z",
            "extensions": {OPENCTI_EXTENSION: {"score": 50}, MITRE_EXTENSION: {"platforms": ["Windows", "Linux", "android"]}}
        });
        let m = one(vec![cmp("ipv4-addr", &["value"], "1.2.3.4")], stix);
        assert_eq!(m.withdrawn, None);
        let body = serde_json::to_value(&m.iocs[0]).unwrap();
        assert_eq!(
            body,
            json!({"action": "detect", "mobile_action": "detect", "type": "ipv4", "value": "1.2.3.4",
                   "severity": "medium", "applied_globally": true, "source": "OpenCTI IOC", "description": "bad",
                   "expiration": "2027-04-29T12:33:20.098Z", "tags": ["threat lead", "opencti:indicator--1"], "platforms": ["windows", "linux"]})
        );
    }

    #[test]
    fn owner_tag_follows_the_labels_and_labels_never_pose_as_owners() {
        let stix = json!({
            "id": "indicator--9", "type": "indicator", "pattern_type": "stix", "pattern": "x",
            "labels": ["c2", "opencti:indicator--forged", "opencti:note"]
        });
        let m = one(vec![cmp("domain-name", &["value"], "a.b")], stix);
        assert_eq!(
            m.iocs[0].tags,
            Some(vec![
                "c2".to_string(),
                "opencti:note".to_string(),
                "opencti:indicator--9".to_string()
            ])
        );
        assert_eq!(tag_owner("opencti:indicator--9"), Some("indicator--9"));
        assert_eq!(tag_owner("opencti:note"), None);
        assert_eq!(owner_tag("identity--1"), None);
        let anonymous = json!({"type": "indicator", "pattern_type": "stix", "pattern": "x"});
        let m = one(vec![cmp("domain-name", &["value"], "a.b")], anonymous);
        assert_eq!(m.iocs[0].tags, None, "no id, no owner tag");
    }

    #[test]
    fn platforms_default_and_mobile() {
        let base = json!({"type": "indicator", "pattern_type": "stix", "pattern": "x"});
        let m = one(vec![cmp("domain-name", &["value"], "a.b")], base.clone());
        assert_eq!(
            m.iocs[0].platforms,
            Some(vec!["windows".into(), "mac".into(), "linux".into()])
        );
        assert_eq!(
            m.iocs[0].severity,
            Some(Severity::Medium),
            "no score: OpenCTI's default band"
        );
        let mut only_mobile = base.clone();
        only_mobile["x_mitre_platforms"] = json!(["android", "iOS"]);
        let m = one(
            vec![cmp("domain-name", &["value"], "a.b")],
            only_mobile.clone(),
        );
        assert!(m.iocs.is_empty());
        assert_eq!(m.skipped[0].reason, SkipReason::NoPlatform);
        let mut empty = base.clone();
        empty["x_mitre_platforms"] = json!([]);
        let m = one(vec![cmp("domain-name", &["value"], "a.b")], empty);
        assert_eq!(m.iocs[0].platforms.as_ref().map(Vec::len), Some(3));
        let opts = MappingOptions {
            falcon_for_mobile_active: true,
            ..Default::default()
        };
        let m = map_indicator_with(&only_mobile, &opts, now(), |_| {
            Ok(vec![cmp("domain-name", &["value"], "a.b")])
        });
        assert_eq!(
            m.iocs[0].platforms,
            Some(vec!["android".into(), "ios".into()])
        );
        let mut macos = base;
        macos["x_mitre_platforms"] = json!(["MacOS"]);
        let m = one(vec![cmp("domain-name", &["value"], "a.b")], macos);
        assert_eq!(m.iocs[0].platforms, Some(vec!["mac".into()]));
    }

    #[test]
    fn actions_per_type() {
        let opts = MappingOptions {
            action_on_ip: IocAction::NoAction,
            action_on_domain: IocAction::Detect,
            action_on_hash: IocAction::Prevent,
            falcon_for_mobile_active: false,
        };
        let stix = json!({"type": "indicator", "pattern_type": "stix", "pattern": "x"});
        let m = map_indicator_with(&stix, &opts, now(), |_| {
            Ok(vec![
                cmp("ipv6-addr", &["value"], "::1"),
                cmp("hostname", &["value"], "h.example"),
                cmp(
                    "file",
                    &["hashes", "MD5"],
                    "d41d8cd98f00b204e9800998ecf8427e",
                ),
            ])
        });
        let got: Vec<_> = m
            .iocs
            .iter()
            .map(|i| (i.key.ioc_type, i.action, i.mobile_action))
            .collect();
        assert_eq!(
            got,
            vec![
                (IocType::Ipv6, IocAction::NoAction, IocAction::NoAction),
                (IocType::Domain, IocAction::Detect, IocAction::Detect),
                (IocType::Md5, IocAction::Prevent, IocAction::Prevent),
            ]
        );
    }

    #[test]
    fn withdrawn_when_revoked_or_expired() {
        let mut stix = json!({"type": "indicator", "pattern_type": "stix", "pattern": "x", "valid_until": "2025-01-01T00:00:00.000Z"});
        let c = vec![cmp("domain-name", &["value"], "a.b")];
        assert_eq!(
            one(c.clone(), stix.clone()).withdrawn,
            Some(Withdrawal::Expired)
        );
        stix["valid_until"] = json!("2030-01-01T00:00:00.000Z");
        assert_eq!(one(c.clone(), stix.clone()).withdrawn, None);
        stix["revoked"] = json!(true);
        let m = one(c, stix);
        assert_eq!(m.withdrawn, Some(Withdrawal::Revoked));
        assert_eq!(
            m.iocs.len(),
            1,
            "withdrawn mappings still name the IOCs to remove"
        );
    }

    #[test]
    fn non_indicators_and_other_pattern_types_are_skipped() {
        let m = one(vec![], json!({"type": "identity"}));
        assert_eq!(m.skipped[0].reason, SkipReason::NotIndicator);
        let m = one(
            vec![],
            json!({"type": "indicator", "pattern_type": "yara", "pattern": "rule x {}"}),
        );
        assert_eq!(m.skipped[0].reason, SkipReason::PatternTypeNotStix);
        let m = one(vec![], json!({"type": "indicator", "pattern_type": "stix"}));
        assert_eq!(m.skipped[0].reason, SkipReason::MissingPattern);
    }
}

/// The pattern shapes OpenCTI generates (opencti.md section 7) and the ones third-party connectors
/// write, through the real STIX pattern parser.
#[cfg(test)]
mod shapes {
    use super::*;
    use serde_json::json;

    const SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
    const SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
    const SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    fn map(pattern: &str) -> IndicatorMapping {
        let stix = json!({"id": "indicator--1", "type": "indicator", "pattern_type": "stix", "pattern": pattern});
        map_indicator(&stix, &MappingOptions::default(), super::tests::now())
    }

    fn keys(m: &IndicatorMapping) -> Vec<(IocType, String)> {
        m.iocs
            .iter()
            .map(|i| (i.key.ioc_type, i.key.value.clone()))
            .collect()
    }

    fn reasons(m: &IndicatorMapping) -> Vec<SkipReason> {
        m.skipped.iter().map(|s| s.reason).collect()
    }

    #[test]
    fn ipv4_and_cidr() {
        assert_eq!(
            keys(&map("[ipv4-addr:value = '1.2.3.4']")),
            vec![(IocType::Ipv4, "1.2.3.4".into())]
        );
        let m = map("[ipv4-addr:value = '10.0.0.0/8']");
        assert!(m.iocs.is_empty());
        assert_eq!(reasons(&m), vec![SkipReason::Cidr]);
        assert_eq!(
            keys(&map("[ipv4-addr:value = '10.0.0.1/32']")),
            vec![(IocType::Ipv4, "10.0.0.1".into())]
        );
    }

    #[test]
    fn ipv6() {
        assert_eq!(
            keys(&map("[ipv6-addr:value = '2a02:2f01:7504:5000::7429:4782']")),
            vec![(IocType::Ipv6, "2a02:2f01:7504:5000::7429:4782".into())]
        );
    }

    #[test]
    fn domain_and_hostname() {
        assert_eq!(
            keys(&map("[domain-name:value = 'Example.com']")),
            vec![(IocType::Domain, "example.com".into())]
        );
        assert_eq!(
            keys(&map("[hostname:value = 'host.example']")),
            vec![(IocType::Domain, "host.example".into())]
        );
    }

    #[test]
    fn url_and_email_are_unsupported() {
        assert_eq!(
            reasons(&map("[url:value = 'http://a.b/c']")),
            vec![SkipReason::UnsupportedType]
        );
        assert_eq!(
            reasons(&map("[email-addr:value = 'a@b.c']")),
            vec![SkipReason::UnsupportedType]
        );
        assert_eq!(
            reasons(&map("[file:name = 'x.exe']")),
            vec![SkipReason::UnsupportedType]
        );
    }

    #[test]
    fn single_hashes_in_every_spelling() {
        assert_eq!(
            keys(&map(&format!("[file:hashes.'SHA-256' = '{SHA256}']"))),
            vec![(IocType::Sha256, SHA256.into())]
        );
        for p in [
            format!("[file:hashes.MD5 = '{MD5}']"),
            format!("[file:hashes.'MD5' = '{MD5}']"),
            format!("[file:hashes.md5 = '{}']", MD5.to_uppercase()),
        ] {
            assert_eq!(keys(&map(&p)), vec![(IocType::Md5, MD5.into())], "{p}");
        }
        assert_eq!(
            reasons(&map(&format!("[file:hashes.'SHA-1' = '{SHA1}']"))),
            vec![SkipReason::UnsupportedHash]
        );
    }

    #[test]
    fn multi_hash_keeps_every_supported_hash() {
        let p = format!(
            "[file:hashes.'SHA-256' = '{SHA256}' OR file:hashes.'SHA-512' = '{SHA512}' OR file:hashes.'SHA-1' = '{SHA1}' OR file:hashes.MD5 = '{MD5}']"
        );
        let m = map(&p);
        assert_eq!(
            keys(&m),
            vec![(IocType::Sha256, SHA256.into()), (IocType::Md5, MD5.into())]
        );
        assert_eq!(
            reasons(&m),
            vec![SkipReason::UnsupportedHash, SkipReason::UnsupportedHash]
        );
    }

    #[test]
    fn value_with_a_quote() {
        let m = map(r"[domain-name:value = 'o\'brien.com']");
        assert_eq!(
            reasons(&m),
            vec![SkipReason::InvalidValue],
            "a quote cannot be in a Falcon domain"
        );
    }

    #[test]
    fn pattern_without_spaces_is_parsed() {
        assert_eq!(
            keys(&map("[ipv4-addr:value='1.2.3.4']")),
            vec![(IocType::Ipv4, "1.2.3.4".into())]
        );
    }

    #[test]
    fn or_of_equalities_across_types() {
        let m = map("[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '5.6.7.8']");
        assert_eq!(m.iocs.len(), 2);
    }

    const SHA256_UPPER: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    const MD5_UPPER: &str = "D41D8CD98F00B204E9800998ECF8427E";

    #[test]
    fn an_and_of_hashes_of_one_file_writes_every_hash() {
        let m = map(&format!(
            "[file:hashes.'SHA-256' = '{SHA256_UPPER}' AND file:hashes.MD5 = '{MD5_UPPER}']"
        ));
        assert_eq!(
            keys(&m),
            vec![
                (IocType::Sha256, SHA256_UPPER.to_ascii_lowercase()),
                (IocType::Md5, MD5_UPPER.to_ascii_lowercase())
            ]
        );
        assert!(m.skipped.is_empty(), "{:?}", m.skipped);
        // An unsupported algorithm beside it is skipped by name; the supported hash is still written.
        let m = map(&format!(
            "[file:hashes.'SHA-256' = '{SHA256_UPPER}' AND file:hashes.'SHA-1' = 'a94a8fe5ccb19ba61c4c0873d391e987982fbbd3']"
        ));
        assert_eq!(keys(&m).len(), 1);
        assert_eq!(reasons(&m), vec![SkipReason::UnsupportedHash]);
        assert!(m.skipped[0].detail.contains("SHA-1"), "{:?}", m.skipped);
        // A hash AND another property narrows the file: writing the hash alone would over-detect.
        let m = map(&format!(
            "[file:hashes.MD5 = '{MD5_UPPER}' AND file:name = 'evil.exe']"
        ));
        assert!(m.iocs.is_empty());
        assert_eq!(reasons(&m), vec![SkipReason::AndPattern]);
        assert!(m.skipped[0].detail.contains("file:name"), "{:?}", m.skipped);
    }

    #[test]
    fn an_or_of_observation_expressions_writes_every_side() {
        let m = map("[ipv4-addr:value = '1.2.3.4'] OR [domain-name:value = 'Evil.Example']");
        assert_eq!(
            keys(&m),
            vec![
                (IocType::Ipv4, "1.2.3.4".into()),
                (IocType::Domain, "evil.example".into())
            ]
        );
        assert!(m.skipped.is_empty(), "{:?}", m.skipped);
        // A side that is not an IOC is skipped by name; the other sides are written.
        let m = map(
            "([ipv4-addr:value = '1.2.3.4'] OR [domain-name:value = 'a.example'] WITHIN 10 SECONDS) OR [url:value = 'http://x/']",
        );
        assert_eq!(keys(&m), vec![(IocType::Ipv4, "1.2.3.4".into())]);
        assert_eq!(
            reasons(&m),
            vec![SkipReason::Qualifier, SkipReason::UnsupportedType]
        );
        assert!(m.skipped[0].detail.contains("WITHIN"), "{:?}", m.skipped);
    }

    #[test]
    fn skip_reasons_name_what_was_skipped() {
        let m = map("[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'a.b']");
        assert_eq!(reasons(&m), vec![SkipReason::AndPattern]);
        assert!(
            m.skipped[0]
                .detail
                .contains("observation expressions joined by AND"),
            "{:?}",
            m.skipped
        );
        let m = map("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [domain-name:value = 'a.b']");
        assert_eq!(reasons(&m), vec![SkipReason::FollowedBy]);
        assert!(
            m.skipped[0].detail.contains("FOLLOWEDBY"),
            "{:?}",
            m.skipped
        );
        let m = map("[ipv4-addr:value != '1.2.3.4']");
        assert!(m.skipped[0].detail.contains("!="), "{:?}", m.skipped);
    }

    #[test]
    fn non_simple_patterns_are_skipped_with_reasons() {
        assert_eq!(
            reasons(&map(
                "[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '5.6.7.8']"
            )),
            vec![SkipReason::AndPattern]
        );
        assert_eq!(
            reasons(&map(
                "[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'a.b']"
            )),
            vec![SkipReason::AndPattern]
        );
        assert_eq!(
            reasons(&map("[ipv4-addr:value != '1.2.3.4']")),
            vec![SkipReason::UnsupportedOperator]
        );
        assert_eq!(
            reasons(&map("[domain-name:value LIKE '%.b']")),
            vec![SkipReason::UnsupportedOperator]
        );
        assert_eq!(
            reasons(&map("[ipv4-addr:value = '1.2.3.4'] WITHIN 10 SECONDS")),
            vec![SkipReason::Qualifier]
        );
        assert_eq!(
            reasons(&map("ipv4-addr:value = '1.2.3.4'")),
            vec![SkipReason::InvalidPattern]
        );
        assert_eq!(
            reasons(&map("[ipv4-addr:value = ")),
            vec![SkipReason::InvalidPattern]
        );
    }
}
