//! IOC Manager (`/iocs/...`): an indexed store with Falcon's validation, and its routes.
//!
//! Indexes: by sequence (creation order, the default order and the `after` cursor), by id, by
//! (type, value) for duplicate checks, and by value for `value:'x'` filters; the total of a full-scan
//! filter is cached per store version, so a page of a large result costs O(limit).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fleet::{decode_token, encode_token, rfc3339, sort_records};
use super::fql::{self, Field, Record};
use super::{Shared, wire};

const POWERED_BY: &str = "ioc-manager";
const TYPES: &[&str] = &["sha256", "md5", "domain", "ipv4", "ipv6"];
const ACTIONS: &[&str] = &["no_action", "allow", "prevent_no_ui", "detect", "prevent"];
const MOBILE_ACTIONS: &[&str] = &["no_action", "allow", "detect", "prevent"];
const SEVERITIES: &[&str] = &["informational", "low", "medium", "high", "critical"];
const PLATFORMS: &[&str] = &["windows", "mac", "linux", "ios", "android"];

/// One stored indicator (`APIIndicatorV1` on the wire).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ioc {
    pub id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_action: Option<String>,
    pub severity: String,
    pub platforms: Vec<String>,
    pub applied_globally: bool,
    pub host_groups: Vec<String>,
    pub tags: Vec<String>,
    pub source: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    pub expired: bool,
    pub deleted: bool,
    pub from_parent: bool,
    pub created_on: String,
    pub created_by: String,
    pub modified_on: String,
    pub modified_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(skip)]
    pub seq: u64,
}

impl Ioc {
    /// A copy with `expired`/`action` reflecting the expiration at `now`.
    fn view(&self, now: &str) -> Ioc {
        let mut v = self.clone();
        if v.expiration.as_deref().is_some_and(|e| e <= now) {
            v.expired = true;
            v.action = "no_action".into();
        }
        v
    }
}

impl Record for Ioc {
    fn field(&self, f: &str) -> Option<Field<'_>> {
        Some(match f {
            "id" => Field::Str(&self.id),
            "type" => Field::Str(&self.type_),
            "value" => Field::Str(&self.value),
            "action" => Field::Str(&self.action),
            "mobile_action" => self
                .mobile_action
                .as_deref()
                .map_or(Field::Null, Field::Str),
            "severity" => Field::Str(&self.severity),
            "severity_number" => Field::Num(
                SEVERITIES
                    .iter()
                    .position(|s| *s == self.severity)
                    .map_or(0.0, |p| p as f64 * 10.0),
            ),
            "platforms" => Field::List(&self.platforms),
            "applied_globally" => Field::Bool(self.applied_globally),
            "host_groups" => Field::List(&self.host_groups),
            "tags" => Field::List(&self.tags),
            "source" => Field::Str(&self.source),
            "description" => Field::Str(&self.description),
            "expiration" => self.expiration.as_deref().map_or(Field::Null, Field::Str),
            "expired" => Field::Bool(self.expired),
            "deleted" => Field::Bool(self.deleted),
            "from_parent" => Field::Bool(self.from_parent),
            "created_on" => Field::Str(&self.created_on),
            "created_by" => Field::Str(&self.created_by),
            "modified_on" => Field::Str(&self.modified_on),
            "modified_by" => Field::Str(&self.modified_by),
            _ => return None,
        })
    }
}

/// The IOC store with its indexes.
#[derive(Debug, Default)]
pub(crate) struct IocStore {
    by_seq: BTreeMap<u64, Ioc>,
    by_id: HashMap<String, u64>,
    by_key: HashMap<(String, String), u64>,
    by_value: HashMap<String, Vec<u64>>,
    next_seq: u64,
    version: u64,
    totals: Mutex<HashMap<String, (u64, usize)>>,
}

/// The writable fields of a create or update item.
#[derive(Debug, Default, Clone)]
struct Fields {
    action: Option<String>,
    mobile_action: Option<String>,
    severity: Option<String>,
    platforms: Option<Vec<String>>,
    applied_globally: Option<bool>,
    host_groups: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    source: Option<String>,
    description: Option<String>,
    expiration: Option<Option<String>>,
    metadata: Option<Value>,
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(vec![]),
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "expected strings".to_string())
            })
            .collect(),
        _ => Err("expected an array of strings".into()),
    }
}

fn string(item: &Value, key: &str) -> Result<Option<String>, String> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

impl Fields {
    fn from_item(item: &Value) -> Result<Fields, String> {
        let list = |k: &str| {
            item.get(k)
                .map(strings)
                .transpose()
                .map_err(|e| format!("{k}: {e}"))
        };
        Ok(Fields {
            action: string(item, "action")?,
            mobile_action: string(item, "mobile_action")?,
            severity: string(item, "severity")?.map(|s| s.to_lowercase()),
            platforms: list("platforms")?
                .map(|p| p.into_iter().map(|s| s.to_lowercase()).collect()),
            applied_globally: match item.get("applied_globally") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err("applied_globally must be a boolean".into()),
            },
            host_groups: list("host_groups")?,
            tags: list("tags")?,
            source: string(item, "source")?,
            description: string(item, "description")?,
            expiration: match item.get("expiration") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(Value::String(s)) if s.is_empty() => Some(None),
                Some(Value::String(s)) => Some(Some(
                    chrono::DateTime::parse_from_rfc3339(s)
                        .map(|t| rfc3339(t.with_timezone(&chrono::Utc)))
                        .map_err(|_| {
                            format!("Invalid expiration '{s}': expected RFC 3339 date-time")
                        })?,
                )),
                Some(_) => return Err("expiration must be a string".into()),
            },
            metadata: item.get("metadata").filter(|m| !m.is_null()).cloned(),
        })
    }

    fn validate(&self, known_group: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if let Some(a) = &self.action
            && !ACTIONS.contains(&a.as_str())
        {
            return Err(format!(
                "Invalid action '{a}'. Valid values: {}",
                ACTIONS.join(", ")
            ));
        }
        if let Some(a) = &self.mobile_action
            && !MOBILE_ACTIONS.contains(&a.as_str())
        {
            return Err(format!("Invalid mobile_action '{a}'"));
        }
        if let Some(s) = &self.severity
            && !s.is_empty()
            && !SEVERITIES.contains(&s.as_str())
        {
            return Err(format!(
                "Invalid severity '{s}'. Valid values: {}",
                SEVERITIES.join(", ")
            ));
        }
        if let Some(p) = &self.platforms
            && let Some(bad) = p.iter().find(|p| !PLATFORMS.contains(&p.as_str()))
        {
            return Err(format!("Invalid platform '{bad}'"));
        }
        if let Some(s) = &self.source
            && s.chars().count() > 256
        {
            return Err("source must be at most 256 characters".into());
        }
        if let Some(d) = &self.description
            && d.chars().count() > 4096
        {
            return Err("description must be at most 4096 characters".into());
        }
        if let Some(groups) = &self.host_groups
            && let Some(bad) = groups.iter().find(|g| !known_group(g))
        {
            return Err(format!("Host group '{bad}' does not exist"));
        }
        Ok(())
    }
}

/// Normalises and checks a value for its type; the error is Falcon-like text.
fn check_value(type_: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    let hex = |n: usize| v.len() == n && v.bytes().all(|b| b.is_ascii_hexdigit());
    match type_ {
        "sha256" if hex(64) => Ok(v.to_lowercase()),
        "md5" if hex(32) => Ok(v.to_lowercase()),
        "sha256" | "md5" => Err(format!("Invalid {type_} value '{value}'")),
        "domain" => {
            let d = v.trim_end_matches('.').to_lowercase();
            let ok = !d.is_empty()
                && d.len() <= 200
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
                && d.parse::<Ipv4Addr>().is_err();
            if ok {
                Ok(d)
            } else {
                Err(format!("Invalid domain value '{value}'"))
            }
        }
        "ipv4" => v
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("Invalid ipv4 value '{value}'")),
        "ipv6" => v
            .parse::<Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("Invalid ipv6 value '{value}'")),
        other => Err(format!(
            "Invalid type '{other}'. Valid values: {}",
            TYPES.join(", ")
        )),
    }
}

fn ioc_id(type_: &str, value: &str, seq: u64) -> String {
    hex::encode(Sha256::digest(format!("{type_}:{value}:{seq}")))
}

impl IocStore {
    fn insert(&mut self, mut ioc: Ioc) -> &Ioc {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.version += 1;
        ioc.seq = seq;
        self.by_id.insert(ioc.id.clone(), seq);
        // Indexes are case-insensitive (values may keep their case, see `Knobs::keep_value_case`).
        let lower = ioc.value.to_lowercase();
        self.by_key.insert((ioc.type_.clone(), lower.clone()), seq);
        self.by_value.entry(lower).or_default().push(seq);
        self.by_seq.entry(seq).or_insert(ioc)
    }

    fn remove(&mut self, id: &str) -> Option<Ioc> {
        let seq = self.by_id.remove(id)?;
        let ioc = self.by_seq.remove(&seq)?;
        let lower = ioc.value.to_lowercase();
        self.by_key.remove(&(ioc.type_.clone(), lower.clone()));
        if let Some(v) = self.by_value.get_mut(&lower) {
            v.retain(|s| *s != seq);
            if v.is_empty() {
                self.by_value.remove(&lower);
            }
        }
        self.version += 1;
        Some(ioc)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Ioc> {
        self.by_id.get(id).and_then(|s| self.by_seq.get(s))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Ioc> {
        self.by_seq.values()
    }

    /// Creates `n` IOCs (domains, IPs and hashes) for benchmarks.
    pub(crate) fn preload(&mut self, n: usize, seed: u64, client_id: &str) {
        let now = rfc3339(chrono::Utc::now());
        for i in 0..n {
            let (type_, value) = match i % 4 {
                0 => ("domain", format!("bench-{seed}-{i}.example.com")),
                1 => (
                    "ipv4",
                    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                ),
                2 => ("sha256", hex::encode(Sha256::digest(format!("{seed}:{i}")))),
                _ => (
                    "md5",
                    hex::encode(&Sha256::digest(format!("{seed}:{i}"))[..16]),
                ),
            };
            if self
                .by_key
                .contains_key(&(type_.to_string(), value.clone()))
            {
                continue;
            }
            let seq = self.next_seq;
            self.insert(Ioc {
                id: ioc_id(type_, &value, seq),
                type_: type_.into(),
                value,
                action: "detect".into(),
                mobile_action: None,
                severity: "medium".into(),
                platforms: vec!["windows".into(), "mac".into(), "linux".into()],
                applied_globally: true,
                host_groups: vec![],
                tags: vec!["preloaded".into()],
                source: "sandbox preload".into(),
                description: String::new(),
                expiration: None,
                expired: false,
                deleted: false,
                from_parent: false,
                created_on: now.clone(),
                created_by: client_id.into(),
                modified_on: now.clone(),
                modified_by: client_id.into(),
                metadata: None,
                seq: 0,
            });
        }
    }

    /// Indexed candidates for a filter, or `None` for a full scan.
    fn candidates(&self, expr: &fql::Expr) -> Option<Vec<u64>> {
        if let Some(values) = fql::required_values(expr, "value") {
            let mut seqs: Vec<u64> = values
                .iter()
                .flat_map(|v| {
                    let lower = v.to_lowercase();
                    self.by_value.get(&lower).cloned().unwrap_or_default()
                })
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            return Some(seqs);
        }
        if let Some(ids) = fql::required_values(expr, "id") {
            let mut seqs: Vec<u64> = ids
                .iter()
                .filter_map(|id| self.by_id.get(&id.to_lowercase()).copied())
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            return Some(seqs);
        }
        None
    }

    fn total(&self, key: &str, expr: &fql::Expr) -> usize {
        if let Some((version, total)) = self.totals.lock().expect("totals lock").get(key)
            && *version == self.version
        {
            return *total;
        }
        let total = self
            .by_seq
            .values()
            .filter(|i| fql::matches(expr, *i))
            .count();
        let mut totals = self.totals.lock().expect("totals lock");
        if totals.len() > 1_000 {
            totals.clear();
        }
        totals.insert(key.to_string(), (self.version, total));
        total
    }
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/iocs/entities/indicators/v1",
            get(get_iocs).post(create).patch(update).delete(delete),
        )
        .route("/iocs/queries/indicators/v1", get(query_ids))
        .route("/iocs/combined/indicator/v1", get(combined))
        .route(
            "/iocs/queries/ioc-types/v1",
            get(|| async { enum_list(TYPES) }),
        )
        .route(
            "/iocs/queries/platforms/v1",
            get(|| async { enum_list(PLATFORMS) }),
        )
        .route(
            "/iocs/queries/severities/v1",
            get(|| async { enum_list(SEVERITIES) }),
        )
        .route(
            "/iocs/queries/actions/v1",
            get(|| async { enum_list(ACTIONS) }),
        )
}

fn enum_list(values: &[&str]) -> Response {
    wire::ok_paged(
        POWERED_BY,
        json!(values),
        json!({"offset": 0, "limit": 100, "total": values.len()}),
    )
}

type Q = Query<Vec<(String, String)>>;

fn flag(q: &[(String, String)], key: &str) -> bool {
    wire::one(q, key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn failed_item(
    item: &Value,
    index: usize,
    message_type: &str,
    message: String,
    code: u16,
) -> Value {
    json!({
        "type": item.get("type").cloned().unwrap_or(Value::Null),
        "value": item.get("value").cloned().unwrap_or(Value::Null),
        "id": item.get("id").cloned().unwrap_or(Value::Null),
        "message_type": message_type,
        "message": message,
        "code": code,
        "index": index,
    })
}

fn write_reply(status_ok: StatusCode, written: Vec<Ioc>, failed: Vec<Value>) -> Response {
    let now = rfc3339(chrono::Utc::now());
    let mut resources: Vec<Value> = written
        .iter()
        .map(|i| serde_json::to_value(i.view(&now)).expect("ioc"))
        .collect();
    if failed.is_empty() {
        let mut meta = wire::meta(POWERED_BY);
        meta.insert(
            "writes".into(),
            json!({"resources_affected": written.len()}),
        );
        return wire::json_response(
            status_ok,
            json!({"meta": meta, "errors": [], "resources": resources}),
        );
    }
    let errors: Vec<Value> = failed
        .iter()
        .map(|f| json!({"code": f["code"], "message": f["message"], "id": f["id"]}))
        .collect();
    resources.extend(failed);
    let mut meta = wire::meta(POWERED_BY);
    meta.insert(
        "writes".into(),
        json!({"resources_affected": written.len()}),
    );
    wire::json_response(
        StatusCode::BAD_REQUEST,
        json!({"meta": meta, "errors": errors, "resources": resources}),
    )
}

fn items_of(body: &Value) -> Result<&Vec<Value>, Response> {
    body.get("indicators")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            wire::error(
                StatusCode::BAD_REQUEST,
                POWERED_BY,
                "request body must have an 'indicators' array",
            )
        })
}

async fn create(State(sim): State<Shared>, Query(q): Q, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "request body must be JSON",
        );
    };
    let items = match items_of(&body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if items.is_empty() {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "at least one indicator is required",
        );
    }
    if items.len() > 2_000 {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "at most 2000 indicators per request",
        );
    }
    let ignore_warnings = flag(&q, "ignore_warnings");
    let keep_case = sim.knobs().keep_value_case;
    let client = wire::client_id();
    let groups: Vec<String> = sim
        .fleet
        .read()
        .expect("fleet lock")
        .groups
        .iter()
        .map(|g| g.id.clone())
        .collect();
    let known_group = |g: &str| groups.iter().any(|k| k == g);
    let now = rfc3339(chrono::Utc::now());
    let mut store = sim.iocs.write().expect("ioc lock");
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let result = (|| {
            let type_ = string(item, "type")?
                .ok_or("type is required")?
                .to_lowercase();
            let raw = string(item, "value")?.ok_or("value is required")?;
            let mut value = check_value(&type_, &raw)?;
            if keep_case && matches!(type_.as_str(), "sha256" | "md5" | "domain") {
                value = raw.trim().trim_end_matches('.').to_string();
            }
            let f = Fields::from_item(item)?;
            f.validate(&known_group)?;
            let action = f.action.clone().ok_or("action is required")?;
            let severity = f.severity.clone().unwrap_or_default();
            if severity.is_empty()
                && matches!(action.as_str(), "detect" | "prevent" | "prevent_no_ui")
            {
                return Err(format!("severity is required for action '{action}'"));
            }
            let platforms = f.platforms.clone().unwrap_or_default();
            if platforms.is_empty() {
                return Err("platforms is required".to_string());
            }
            let host_groups = f.host_groups.clone().unwrap_or_default();
            let applied_globally = f.applied_globally.unwrap_or(false);
            if !applied_globally && host_groups.is_empty() {
                return Err("applied_globally or host_groups is required".to_string());
            }
            if applied_globally && !host_groups.is_empty() {
                return Err("host_groups cannot be set when applied_globally is true".to_string());
            }
            Ok((
                type_,
                value,
                f,
                action,
                severity,
                platforms,
                host_groups,
                applied_globally,
            ))
        })();
        let (type_, value, f, action, severity, platforms, host_groups, applied_globally) =
            match result {
                Ok(v) => v,
                Err(message) => {
                    failed.push(failed_item(item, index, "error", message, 400));
                    continue;
                }
            };
        if store
            .by_key
            .contains_key(&(type_.clone(), value.to_lowercase()))
        {
            if !ignore_warnings {
                failed.push(failed_item(
                    item,
                    index,
                    "warning",
                    format!("Warning: Duplicate type: '{type_}' and value: '{value}' combination."),
                    400,
                ));
            }
            continue;
        }
        let seq = store.next_seq;
        let ioc = Ioc {
            id: ioc_id(&type_, &value, seq),
            type_,
            value,
            action,
            mobile_action: f.mobile_action,
            severity,
            platforms,
            applied_globally,
            host_groups,
            tags: f.tags.unwrap_or_default(),
            source: f.source.unwrap_or_default(),
            description: f.description.unwrap_or_default(),
            expiration: f.expiration.flatten(),
            expired: false,
            deleted: false,
            from_parent: false,
            created_on: now.clone(),
            created_by: client.clone(),
            modified_on: now.clone(),
            modified_by: client.clone(),
            metadata: f.metadata,
            seq: 0,
        };
        written.push(store.insert(ioc).clone());
    }
    write_reply(StatusCode::CREATED, written, failed)
}

fn apply(ioc: &mut Ioc, f: Fields, client: &str, now: &str) -> Result<(), String> {
    let mut next = ioc.clone();
    if let Some(v) = f.action {
        next.action = v;
    }
    if let Some(v) = f.mobile_action {
        next.mobile_action = Some(v);
    }
    if let Some(v) = f.severity {
        next.severity = v;
    }
    if let Some(v) = f.platforms {
        if v.is_empty() {
            return Err("platforms cannot be empty".into());
        }
        next.platforms = v;
    }
    if let Some(v) = f.host_groups {
        next.host_groups = v;
        if !next.host_groups.is_empty() {
            next.applied_globally = false;
        }
    }
    if let Some(v) = f.applied_globally {
        next.applied_globally = v;
        if v {
            next.host_groups.clear();
        }
    }
    if let Some(v) = f.tags {
        next.tags = v;
    }
    if let Some(v) = f.source {
        next.source = v;
    }
    if let Some(v) = f.description {
        next.description = v;
    }
    if let Some(v) = f.expiration {
        next.expiration = v;
        next.expired = false;
    }
    if let Some(v) = f.metadata {
        next.metadata = Some(v);
    }
    if !next.applied_globally && next.host_groups.is_empty() {
        return Err("applied_globally or host_groups is required".into());
    }
    if next.severity.is_empty()
        && matches!(next.action.as_str(), "detect" | "prevent" | "prevent_no_ui")
    {
        return Err(format!("severity is required for action '{}'", next.action));
    }
    next.modified_on = now.to_string();
    next.modified_by = client.to_string();
    *ioc = next;
    Ok(())
}

async fn update(State(sim): State<Shared>, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "request body must be JSON",
        );
    };
    let client = wire::client_id();
    let now = rfc3339(chrono::Utc::now());
    let groups: Vec<String> = sim
        .fleet
        .read()
        .expect("fleet lock")
        .groups
        .iter()
        .map(|g| g.id.clone())
        .collect();
    let known_group = |g: &str| groups.iter().any(|k| k == g);
    let mut store = sim.iocs.write().expect("ioc lock");
    let mut written = Vec::new();
    let mut failed = Vec::new();
    if let Some(bulk) = body.get("bulk_update").filter(|b| !b.is_null()) {
        let filter = bulk.get("filter").and_then(Value::as_str).unwrap_or("");
        let expr = match fql::parse(filter) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return wire::error(
                    StatusCode::BAD_REQUEST,
                    POWERED_BY,
                    "bulk_update.filter is required",
                );
            }
            Err(e) => {
                return wire::error(
                    StatusCode::BAD_REQUEST,
                    POWERED_BY,
                    format!("Invalid filter: {e}"),
                );
            }
        };
        let f = match Fields::from_item(bulk).and_then(|f| f.validate(&known_group).map(|_| f)) {
            Ok(f) => f,
            Err(e) => return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, e),
        };
        let seqs: Vec<u64> = store
            .by_seq
            .iter()
            .filter(|(_, i)| fql::matches(&expr, *i))
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            let ioc = store.by_seq.get_mut(&seq).expect("indexed");
            match apply(ioc, f.clone(), &client, &now) {
                Ok(()) => written.push(ioc.clone()),
                Err(m) => failed.push(json!({"id": ioc.id, "type": ioc.type_, "value": ioc.value, "message_type": "error", "message": m, "code": 400})),
            }
        }
        store.version += 1;
        return write_reply(StatusCode::OK, written, failed);
    }
    let items = match items_of(&body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    for (index, item) in items.iter().enumerate() {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            failed.push(failed_item(
                item,
                index,
                "error",
                "id is required".into(),
                400,
            ));
            continue;
        };
        let f = match Fields::from_item(item).and_then(|f| f.validate(&known_group).map(|_| f)) {
            Ok(f) => f,
            Err(m) => {
                failed.push(failed_item(item, index, "error", m, 400));
                continue;
            }
        };
        let Some(seq) = store.by_id.get(id).copied() else {
            failed.push(failed_item(
                item,
                index,
                "error",
                format!("Indicator {id} not found"),
                404,
            ));
            continue;
        };
        let ioc = store.by_seq.get_mut(&seq).expect("indexed");
        match apply(ioc, f, &client, &now) {
            Ok(()) => written.push(ioc.clone()),
            Err(m) => failed.push(failed_item(item, index, "error", m, 400)),
        }
    }
    store.version += 1;
    write_reply(StatusCode::OK, written, failed)
}

async fn delete(State(sim): State<Shared>, Query(q): Q) -> Response {
    let filter = wire::one(&q, "filter").filter(|f| !f.trim().is_empty());
    let mut store = sim.iocs.write().expect("ioc lock");
    let ids: Vec<String> = if let Some(filter) = filter {
        let expr = match fql::parse(filter) {
            Ok(Some(e)) => e,
            Ok(None) => unreachable!("non-blank filter"),
            Err(e) => {
                return wire::error(
                    StatusCode::BAD_REQUEST,
                    POWERED_BY,
                    format!("Invalid filter: {e}"),
                );
            }
        };
        store
            .by_seq
            .values()
            .filter(|i| fql::matches(&expr, *i))
            .map(|i| i.id.clone())
            .collect()
    } else {
        let ids = wire::multi(&q, "ids");
        if ids.is_empty() {
            return wire::error(
                StatusCode::BAD_REQUEST,
                POWERED_BY,
                "ids or filter is required",
            );
        }
        ids
    };
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for id in ids {
        if store.remove(&id).is_some() {
            deleted.push(id);
        } else {
            errors.push(
                json!({"code": 404, "message": format!("Indicator {id} not found"), "id": id}),
            );
        }
    }
    if let Some(comment) = wire::one(&q, "comment") {
        tracing::debug!(comment, deleted = deleted.len(), "iocs deleted");
    }
    let mut meta = wire::meta(POWERED_BY);
    meta.insert(
        "writes".into(),
        json!({"resources_affected": deleted.len()}),
    );
    let status = if deleted.is_empty() && !errors.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    wire::json_response(
        status,
        json!({"meta": meta, "errors": errors, "resources": deleted}),
    )
}

async fn get_iocs(State(sim): State<Shared>, Query(q): Q) -> Response {
    let ids = wire::multi(&q, "ids");
    if ids.is_empty() {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "ids is required");
    }
    let now = rfc3339(chrono::Utc::now());
    let store = sim.iocs.read().expect("ioc lock");
    let found: Vec<Ioc> = ids
        .iter()
        .filter_map(|id| store.get(id))
        .map(|i| i.view(&now))
        .collect();
    let errors: Vec<Value> = ids
        .iter()
        .filter(|id| store.get(id).is_none())
        .map(|id| json!({"code": 404, "message": format!("Indicator {id} not found"), "id": id}))
        .collect();
    let status = if found.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    wire::json_response(
        status,
        json!({"meta": wire::meta(POWERED_BY), "errors": errors, "resources": found}),
    )
}

async fn query_ids(State(sim): State<Shared>, Query(q): Q) -> Response {
    search(&sim, &q, false)
}

async fn combined(State(sim): State<Shared>, Query(q): Q) -> Response {
    search(&sim, &q, true)
}

/// Query and combined: filter, sort, `offset` or `after` paging.
fn search(sim: &Shared, q: &[(String, String)], full: bool) -> Response {
    let limit = match wire::int_param(q, "limit", POWERED_BY) {
        Ok(l) => l.unwrap_or(100),
        Err(r) => return r,
    };
    if !(1..=2_000).contains(&limit) {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!("limit must be between 1 and 2000, got {limit}"),
        );
    }
    let offset = match wire::int_param(q, "offset", POWERED_BY) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let after = wire::one(q, "after").filter(|a| !a.is_empty());
    if offset.is_some() && after.is_some() {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "offset and after are mutually exclusive",
        );
    }
    if let Some(o) = offset
        && (o < 0 || o + limit > 10_000)
    {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!(
                "offset {o} and limit {limit} are invalid; offset + limit must be less than or equal to 10000, use after"
            ),
        );
    }
    let filter_text = wire::one(q, "filter").unwrap_or("");
    let expr = match fql::parse(filter_text) {
        Ok(e) => e,
        Err(e) => {
            return wire::error(
                StatusCode::BAD_REQUEST,
                POWERED_BY,
                format!("Invalid filter expression: {e}"),
            );
        }
    };
    let store = sim.iocs.read().expect("ioc lock");
    if let Some(e) = &expr {
        let sample = Ioc {
            id: String::new(),
            type_: String::new(),
            value: String::new(),
            action: String::new(),
            mobile_action: None,
            severity: String::new(),
            platforms: vec![],
            applied_globally: false,
            host_groups: vec![],
            tags: vec![],
            source: String::new(),
            description: String::new(),
            expiration: None,
            expired: false,
            deleted: false,
            from_parent: false,
            created_on: String::new(),
            created_by: String::new(),
            modified_on: String::new(),
            modified_by: String::new(),
            metadata: None,
            seq: 0,
        };
        if let Err(err) = fql::check_fields(e, &|f| sample.field(f).is_some()) {
            return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, err.message);
        }
    }
    let now = rfc3339(chrono::Utc::now());
    // Expiry is evaluated on the view, so filters on `expired`/`action` see it.
    let sees_expiry = filter_text.contains("expired") || filter_text.contains("action");
    let matcher = |i: &Ioc| match &expr {
        None => true,
        Some(e) if sees_expiry => fql::matches(e, &i.view(&now)),
        Some(e) => fql::matches(e, i),
    };
    let sort = wire::one(q, "sort").filter(|s| !s.is_empty());
    let limit = limit as usize;
    let candidates = expr.as_ref().and_then(|e| store.candidates(e));

    let (page, total, next): (Vec<&Ioc>, usize, Option<usize>) = if sort.is_some()
        || candidates.is_some()
    {
        let mut all: Vec<&Ioc> = match &candidates {
            Some(seqs) => seqs
                .iter()
                .filter_map(|s| store.by_seq.get(s))
                .filter(|i| matcher(i))
                .collect(),
            None => store.by_seq.values().filter(|i| matcher(i)).collect(),
        };
        sort_records(&mut all, sort);
        let start = match (offset, after) {
            (Some(o), _) => o as usize,
            (None, Some(a)) => match decode_token("pos", a) {
                Some(p) => p,
                None => {
                    return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "invalid after token");
                }
            },
            _ => 0,
        };
        let total = all.len();
        let page: Vec<&Ioc> = all.into_iter().skip(start).take(limit).collect();
        let end = start + page.len();
        (page, total, (end < total).then_some(end))
    } else {
        // Full scan in creation order, resuming from the `after` cursor (a sequence number).
        let key = filter_text.to_string();
        let total = match &expr {
            Some(e) if !sees_expiry => store.total(&key, e),
            Some(_) => store.by_seq.values().filter(|i| matcher(i)).count(),
            None => store.len(),
        };
        let (from, skip) = match (offset, after) {
            (Some(o), _) => (0u64, o as usize),
            (None, Some(a)) => match decode_token("seq", a) {
                Some(s) => (s as u64, 0),
                None => {
                    return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "invalid after token");
                }
            },
            _ => (0, 0),
        };
        let mut it = store
            .by_seq
            .range(from..)
            .map(|(_, i)| i)
            .filter(|i| matcher(i))
            .skip(skip);
        let page: Vec<&Ioc> = it.by_ref().take(limit).collect();
        let more = it.next().map(|i| i.seq as usize);
        (page, total, more)
    };
    let after_token = match next {
        Some(pos) if sort.is_some() || candidates.is_some() => encode_token("pos", pos),
        Some(seq) => encode_token("seq", seq),
        None => String::new(),
    };
    let pagination = match offset {
        Some(o) => json!({"offset": o, "limit": limit, "total": total, "after": after_token}),
        None => json!({"limit": limit, "total": total, "after": after_token}),
    };
    let mut meta = wire::meta(POWERED_BY);
    meta.insert("pagination".into(), pagination);
    if full {
        let views: Vec<Ioc> = page.iter().map(|i| i.view(&now)).collect();
        wire::ok_typed(meta, &views)
    } else {
        let ids: Vec<&str> = page.iter().map(|i| i.id.as_str()).collect();
        wire::ok_typed(meta, &ids)
    }
}
