//! Alerts over the fleet: query v2, entities v2, combined (with `after`), update v3.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use super::fleet::{Fleet, decode_token, encode_token, offset_page, rfc3339, sort_records};
use super::fql::{self, Field, Record};
use super::{Shared, Sim, wire};

const POWERED_BY: &str = "detectsapi";

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Alert {
    pub composite_id: String,
    pub id: String,
    pub cid: String,
    pub agent_id: String,
    pub aggregate_id: String,
    pub product: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: String,
    pub severity: u32,
    pub severity_name: &'static str,
    pub confidence: u32,
    pub tactic: &'static str,
    pub technique: &'static str,
    pub filename: String,
    pub cmdline: String,
    pub sha256: String,
    pub created_timestamp: String,
    pub updated_timestamp: String,
    pub timestamp: String,
    pub show_in_ui: bool,
    pub tags: Vec<String>,
    pub comments: Vec<String>,
    pub assigned_to_name: Option<String>,
    pub device: Value,
    /// IOC-triggered alerts only (falcon-api.md §7.1): the IOC fields.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub ioc: Option<IocFields>,
    #[serde(skip)]
    pub hostname: String,
    #[serde(skip)]
    pub platform_name: String,
}

/// The IOC fields of an IOC-triggered alert (`ioc_value`, `ioc_values[]`, `ioc_context[]`, …).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IocFields {
    pub ioc_type: String,
    pub ioc_value: String,
    pub ioc_values: Vec<String>,
    pub ioc_source: String,
    pub ioc_description: String,
    pub ioc_context: Vec<Value>,
    pub indicator_id: String,
}

impl Record for Alert {
    fn field(&self, f: &str) -> Option<Field<'_>> {
        if let Some(i) = &self.ioc {
            match f {
                "ioc_value" => return Some(Field::Str(&i.ioc_value)),
                "ioc_type" => return Some(Field::Str(&i.ioc_type)),
                "ioc_source" => return Some(Field::Str(&i.ioc_source)),
                "ioc_values" => return Some(Field::List(&i.ioc_values)),
                "indicator_id" => return Some(Field::Str(&i.indicator_id)),
                _ => {}
            }
        }
        Some(match f {
            "composite_id" => Field::Str(&self.composite_id),
            "id" => Field::Str(&self.id),
            "cid" => Field::Str(&self.cid),
            "agent_id" | "device.device_id" => Field::Str(&self.agent_id),
            "device.hostname" => Field::Str(&self.hostname),
            "device.platform_name" | "platform" => Field::Str(&self.platform_name),
            "product" => Field::Str(self.product),
            "type" => Field::Str(self.type_),
            "status" => Field::Str(&self.status),
            "severity" => Field::Num(f64::from(self.severity)),
            "severity_name" => Field::Str(self.severity_name),
            "confidence" => Field::Num(f64::from(self.confidence)),
            "tactic" => Field::Str(self.tactic),
            "technique" => Field::Str(self.technique),
            "filename" => Field::Str(&self.filename),
            "sha256" => Field::Str(&self.sha256),
            "created_timestamp" => Field::Str(&self.created_timestamp),
            "updated_timestamp" => Field::Str(&self.updated_timestamp),
            "timestamp" => Field::Str(&self.timestamp),
            "show_in_ui" => Field::Bool(self.show_in_ui),
            "tags" => Field::List(&self.tags),
            "assigned_to_name" => self
                .assigned_to_name
                .as_deref()
                .map_or(Field::Null, Field::Str),
            _ => return None,
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct AlertStore {
    pub alerts: Vec<Alert>,
    pub by_id: HashMap<String, usize>,
    pub hits: IocHits,
}

/// Alerts raised against the IOCs the simulator holds, driven by the simulator clock
/// (wall clock + an offset tests move with `/_sandbox/alerts/clock`).
#[derive(Debug, Default)]
pub(crate) struct IocHits {
    /// Alerts per minute of simulator time (0 = off).
    pub per_minute: f64,
    /// Every n-th generated alert is late (0 = none): its `created_timestamp` is in the past
    /// window but it becomes visible only `late_delay_secs` later (ingestion lag, reference
    /// dissemination-assurance.md §7.3).
    pub late_every: u64,
    pub late_delay_secs: i64,
    pub clock_offset_ms: i64,
    /// Simulator time up to which alerts were generated.
    pub generated_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Fractional alert carried between catch-ups.
    pub carry: f64,
    pub generated: u64,
    /// Late alerts waiting for their visibility time.
    pub pending: Vec<(chrono::DateTime<chrono::Utc>, Alert)>,
}

const TACTICS: &[(&str, &str, &str)] = &[
    (
        "Execution",
        "Command and Scripting Interpreter",
        "powershell.exe",
    ),
    ("Credential Access", "OS Credential Dumping", "mimikatz.exe"),
    ("Persistence", "Scheduled Task/Job", "schtasks.exe"),
    ("Defense Evasion", "Masquerading", "svch0st.exe"),
    ("Discovery", "System Information Discovery", "whoami"),
];

impl AlertStore {
    pub(crate) fn generate(fleet: &Fleet, n: usize, seed: u64, cid: &str) -> AlertStore {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xA1E27);
        let cid = cid.to_lowercase();
        let now = chrono::Utc::now();
        let mut alerts = Vec::with_capacity(n);
        if fleet.hosts.is_empty() {
            return AlertStore::default();
        }
        for i in 0..n {
            let h = &fleet.hosts[rng.random_range(0..fleet.hosts.len())];
            let suffix: String = (0..16)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect();
            let (tactic, technique, file) = TACTICS[rng.random_range(0..TACTICS.len())];
            let severity = rng.random_range(10..=100u32);
            let created = now - chrono::Duration::minutes(rng.random_range(1..60 * 24 * 14));
            alerts.push(Alert {
                composite_id: format!("{cid}:ind:{}:{suffix}", h.device_id),
                id: format!("ind:{}:{suffix}", h.device_id),
                cid: cid.clone(),
                agent_id: h.device_id.clone(),
                aggregate_id: format!("aggind:{}:{}", h.device_id, 1000 + i),
                product: "epp",
                type_: "ldt",
                status: "new".into(),
                severity,
                severity_name: match severity {
                    0..20 => "Informational",
                    20..40 => "Low",
                    40..60 => "Medium",
                    60..80 => "High",
                    _ => "Critical",
                },
                confidence: rng.random_range(10..=100),
                tactic,
                technique,
                filename: file.to_string(),
                cmdline: format!("{file} -nop -w hidden"),
                sha256: (0..32).map(|_| format!("{:02x}", rng.random::<u8>())).collect(),
                created_timestamp: rfc3339(created),
                updated_timestamp: rfc3339(created),
                timestamp: rfc3339(created),
                show_in_ui: true,
                tags: vec![],
                comments: vec![],
                assigned_to_name: None,
                device: json!({"device_id": h.device_id, "hostname": h.hostname, "platform_name": h.platform_name,
                               "os_version": h.os_version, "local_ip": h.local_ip, "external_ip": h.external_ip,
                               "mac_address": h.mac_address, "machine_domain": h.machine_domain, "groups": h.groups,
                               "agent_version": h.agent_version, "status": h.status}),
                ioc: None,
                hostname: h.hostname.clone(),
                platform_name: h.platform_name.to_string(),
            });
        }
        alerts.sort_by(|a, b| b.created_timestamp.cmp(&a.created_timestamp));
        let by_id = alerts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.composite_id.clone(), i))
            .collect();
        AlertStore {
            alerts,
            by_id,
            hits: IocHits::default(),
        }
    }

    fn push(&mut self, a: Alert) {
        self.by_id.insert(a.composite_id.clone(), self.alerts.len());
        self.alerts.push(a);
    }
}

fn sim_now(hits: &IocHits) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::milliseconds(hits.clock_offset_ms)
}

/// One alert on `values` (the first is `ioc_value`) raised on a host of the fleet.
fn ioc_alert(
    sim: &Sim,
    k: u64,
    values: &[String],
    ioc_id: &str,
    ioc_type: &str,
    source: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<Alert> {
    let fleet = sim.fleet.read().expect("fleet lock");
    if fleet.hosts.is_empty() || values.is_empty() {
        return None;
    }
    let h = &fleet.hosts[(k as usize) % fleet.hosts.len()];
    let cid = sim.cid.to_lowercase();
    let suffix = format!(
        "{:032x}",
        (sim.seed as u128) << 64 | u128::from(k) | 0x10c0_0000_0000
    );
    let ts = rfc3339(at);
    Some(Alert {
        composite_id: format!("{cid}:ind:{}:{suffix}", h.device_id),
        id: format!("ind:{}:{suffix}", h.device_id),
        cid,
        agent_id: h.device_id.clone(),
        aggregate_id: format!("aggind:{}:ioc{k}", h.device_id),
        product: "epp",
        type_: "ldt",
        status: "new".into(),
        severity: 70,
        severity_name: "High",
        confidence: 80,
        tactic: "Command and Control",
        technique: "Application Layer Protocol",
        filename: "chrome.exe".into(),
        cmdline: "chrome.exe".into(),
        sha256: String::new(),
        created_timestamp: ts.clone(),
        updated_timestamp: ts.clone(),
        timestamp: ts,
        show_in_ui: true,
        tags: vec![],
        comments: vec![],
        assigned_to_name: None,
        device: json!({"device_id": h.device_id, "hostname": h.hostname, "platform_name": h.platform_name}),
        ioc: Some(IocFields {
            ioc_type: ioc_type.to_owned(),
            ioc_value: values[0].clone(),
            ioc_values: values.to_vec(),
            ioc_source: source.to_owned(),
            ioc_description: "custom IOC".into(),
            ioc_context: values
                .iter()
                .map(|v| json!({"ioc_value": v, "ioc_type": ioc_type, "ioc_source": source, "indicator_id": ioc_id}))
                .collect(),
            indicator_id: ioc_id.to_owned(),
        }),
        hostname: h.hostname.clone(),
        platform_name: h.platform_name.to_string(),
    })
}

/// Generates the IOC alerts due up to the simulator's now and releases late alerts whose time
/// has come. Deterministic for a given sequence of clock moves.
pub(crate) fn catch_up(sim: &Sim) {
    let mut store = sim.alerts.write().expect("alerts lock");
    let now = sim_now(&store.hits);
    let from = *store.hits.generated_until.get_or_insert(now);
    if now > from && store.hits.per_minute > 0.0 {
        let minutes = (now - from).num_milliseconds() as f64 / 60_000.0;
        let due = store.hits.per_minute * minutes + store.hits.carry;
        let n = due.floor() as u64;
        store.hits.carry = due - n as f64;
        let live: Vec<(String, String, String, String)> = sim
            .iocs
            .read()
            .expect("iocs lock")
            .all()
            .filter(|i| !i.deleted && !i.expired && i.action != "no_action")
            .map(|i| {
                (
                    i.id.clone(),
                    i.value.clone(),
                    i.type_.clone(),
                    i.source.clone(),
                )
            })
            .collect();
        if !live.is_empty() {
            let span = (now - from).num_milliseconds().max(1);
            for j in 0..n {
                let k = store.hits.generated;
                store.hits.generated += 1;
                let (id, value, t, src) = &live[(k as usize).wrapping_mul(7919) % live.len()];
                let at =
                    from + chrono::Duration::milliseconds(span * (j as i64 + 1) / (n as i64 + 1));
                let Some(a) = ioc_alert(sim, k, std::slice::from_ref(value), id, t, src, at) else {
                    break;
                };
                if store.hits.late_every > 0 && (k + 1).is_multiple_of(store.hits.late_every) {
                    let visible = at + chrono::Duration::seconds(store.hits.late_delay_secs);
                    store.hits.pending.push((visible, a));
                } else {
                    store.push(a);
                }
            }
        }
    }
    store.hits.generated_until = Some(now.max(from));
    let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut store.hits.pending)
        .into_iter()
        .partition(|(t, _)| *t <= now);
    store.hits.pending = wait;
    for (_, a) in ready {
        store.push(a);
    }
}

/// Control routes (no auth): the IOC-hit knobs, the simulator clock, one hit on demand.
pub(crate) fn control_routes(sim: Shared) -> Router {
    Router::new()
        .route("/_sandbox/alerts/ioc-hits", post(set_hits))
        .route("/_sandbox/alerts/clock", post(advance_clock))
        .route("/_sandbox/alerts/ioc-hit", post(one_hit))
        .with_state(sim)
}

/// `{"per_minute": f, "late_every": n, "late_delay_secs": s}`.
async fn set_hits(State(sim): State<Shared>, Json(b): Json<Value>) -> Response {
    catch_up(&sim);
    let mut store = sim.alerts.write().expect("alerts lock");
    let h = &mut store.hits;
    if let Some(v) = b.get("per_minute").and_then(Value::as_f64) {
        h.per_minute = v.max(0.0);
    }
    if let Some(v) = b.get("late_every").and_then(Value::as_u64) {
        h.late_every = v;
    }
    if let Some(v) = b.get("late_delay_secs").and_then(Value::as_i64) {
        h.late_delay_secs = v.max(0);
    }
    wire::json_response(
        StatusCode::OK,
        json!({"per_minute": h.per_minute, "late_every": h.late_every,
        "late_delay_secs": h.late_delay_secs, "now": rfc3339(sim_now(h)), "generated": h.generated,
        "pending_late": h.pending.len()}),
    )
}

/// `{"advance_secs": n}`: moves the simulator clock; the alerts due are generated.
async fn advance_clock(State(sim): State<Shared>, Json(b): Json<Value>) -> Response {
    let Some(secs) = b.get("advance_secs").and_then(Value::as_i64) else {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "advance_secs (integer) is required",
        );
    };
    catch_up(&sim);
    sim.alerts
        .write()
        .expect("alerts lock")
        .hits
        .clock_offset_ms += secs * 1000;
    catch_up(&sim);
    let store = sim.alerts.read().expect("alerts lock");
    wire::json_response(
        StatusCode::OK,
        json!({"now": rfc3339(sim_now(&store.hits)),
        "generated": store.hits.generated, "pending_late": store.hits.pending.len()}),
    )
}

/// `{"values": [..], "ago_secs": n, "visible_after_secs": m}`: one IOC alert carrying these values,
/// created `ago_secs` before the simulator's now, visible after `visible_after_secs` more.
async fn one_hit(State(sim): State<Shared>, Json(b): Json<Value>) -> Response {
    let values: Vec<String> = b
        .get("values")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if values.is_empty() {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "values (non-empty list) is required",
        );
    }
    catch_up(&sim);
    let (ioc_id, ioc_type, source) = sim
        .iocs
        .read()
        .expect("iocs lock")
        .all()
        .find(|i| values.iter().any(|v| v.eq_ignore_ascii_case(&i.value)))
        .map(|i| (i.id.clone(), i.type_.clone(), i.source.clone()))
        .unwrap_or_default();
    let mut store = sim.alerts.write().expect("alerts lock");
    let now = sim_now(&store.hits);
    let at =
        now - chrono::Duration::seconds(b.get("ago_secs").and_then(Value::as_i64).unwrap_or(0));
    let k = store.hits.generated;
    store.hits.generated += 1;
    let Some(a) = ioc_alert(&sim, k, &values, &ioc_id, &ioc_type, &source, at) else {
        return wire::error(StatusCode::CONFLICT, POWERED_BY, "the fleet has no host");
    };
    let composite = a.composite_id.clone();
    match b
        .get("visible_after_secs")
        .and_then(Value::as_i64)
        .filter(|s| *s > 0)
    {
        Some(s) => store
            .hits
            .pending
            .push((now + chrono::Duration::seconds(s), a)),
        None => store.push(a),
    }
    wire::json_response(
        StatusCode::OK,
        json!({"composite_id": composite, "created_timestamp": rfc3339(at)}),
    )
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/alerts/queries/alerts/v2", get(query))
        .route("/alerts/entities/alerts/v2", post(entities))
        .route("/alerts/combined/alerts/v1", post(combined))
        .route("/alerts/entities/alerts/v3", patch(update))
}

fn select<'a>(
    store: &'a AlertStore,
    filter: &str,
    sort: Option<&str>,
) -> Result<Vec<&'a Alert>, Response> {
    let expr = fql::parse(filter).map_err(|e| {
        wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!("Invalid filter: {e}"),
        )
    })?;
    if let (Some(e), Some(sample)) = (&expr, store.alerts.first()) {
        fql::check_fields(e, &|f| sample.field(f).is_some())
            .map_err(|e| wire::error(StatusCode::BAD_REQUEST, POWERED_BY, e.message))?;
    }
    let mut out: Vec<&Alert> = store
        .alerts
        .iter()
        .filter(|a| expr.as_ref().is_none_or(|e| fql::matches(e, *a)))
        .collect();
    sort_records(&mut out, sort);
    Ok(out)
}

async fn query(State(sim): State<Shared>, Query(q): Query<Vec<(String, String)>>) -> Response {
    catch_up(&sim);
    let store = sim.alerts.read().expect("alerts lock");
    let all = match select(
        &store,
        wire::one(&q, "filter").unwrap_or(""),
        wire::one(&q, "sort"),
    ) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (offset, limit) = match offset_page(&q, 100, 10_000, POWERED_BY) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ids: Vec<&str> = all
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|a| a.composite_id.as_str())
        .collect();
    wire::ok_paged(
        POWERED_BY,
        json!(ids),
        json!({"offset": offset, "limit": limit, "total": all.len()}),
    )
}

fn composite_ids(body: &Option<Json<Value>>) -> Vec<String> {
    body.as_ref()
        .and_then(|Json(b)| b.get("composite_ids").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

async fn entities(State(sim): State<Shared>, body: Option<Json<Value>>) -> Response {
    let ids = composite_ids(&body);
    if ids.is_empty() {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "composite_ids is required",
        );
    }
    if ids.len() > 1_000 {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "at most 1000 composite_ids per request",
        );
    }
    let store = sim.alerts.read().expect("alerts lock");
    let found: Vec<&Alert> = ids
        .iter()
        .filter_map(|id| store.by_id.get(id).map(|i| &store.alerts[*i]))
        .collect();
    let errors: Vec<Value> = ids
        .iter()
        .filter(|id| !store.by_id.contains_key(*id))
        .map(|id| json!({"code": 404, "message": format!("alert {id} not found")}))
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

async fn combined(State(sim): State<Shared>, body: Option<Json<Value>>) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(json!({}));
    let filter = body.get("filter").and_then(Value::as_str).unwrap_or("");
    let sort = body
        .get("sort")
        .and_then(Value::as_str)
        .or(Some("created_timestamp|desc"));
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    if !(1..=1_000).contains(&limit) {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "limit must be between 1 and 1000",
        );
    }
    catch_up(&sim);
    let store = sim.alerts.read().expect("alerts lock");
    let all = match select(&store, filter, sort) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let start = match body
        .get("after")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        None => 0,
        Some(a) => match decode_token("alerts", a) {
            Some(p) => p,
            None => return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "invalid after token"),
        },
    };
    let page: Vec<&&Alert> = all.iter().skip(start).take(limit).collect();
    let end = start + page.len();
    let after = if end < all.len() {
        encode_token("alerts", end)
    } else {
        String::new()
    };
    wire::ok_paged(
        POWERED_BY,
        json!(page),
        json!({"after": after, "limit": limit, "total": all.len()}),
    )
}

async fn update(State(sim): State<Shared>, body: Option<Json<Value>>) -> Response {
    let ids = composite_ids(&body);
    if ids.is_empty() {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "composite_ids is required",
        );
    }
    let params: Vec<(String, String)> = body
        .as_ref()
        .and_then(|Json(b)| {
            b.get("action_parameters")
                .and_then(Value::as_array)
                .cloned()
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some((
                p.get("name")?.as_str()?.to_string(),
                p.get("value")?.as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    if params.is_empty() {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "action_parameters is required",
        );
    }
    for (name, value) in &params {
        let ok = match name.as_str() {
            "update_status" => matches!(
                value.as_str(),
                "new" | "in_progress" | "reopened" | "closed"
            ),
            "show_in_ui" => matches!(value.as_str(), "true" | "false"),
            "add_tag"
            | "remove_tag"
            | "remove_tags_by_prefix"
            | "append_comment"
            | "assign_to_name"
            | "assign_to_user_id"
            | "assign_to_uuid"
            | "unassign" => true,
            _ => false,
        };
        if !ok {
            return wire::error(
                StatusCode::BAD_REQUEST,
                POWERED_BY,
                format!("invalid action parameter {name}={value}"),
            );
        }
    }
    let mut store = sim.alerts.write().expect("alerts lock");
    let now = rfc3339(chrono::Utc::now());
    let mut errors = Vec::new();
    let mut affected = 0;
    // Removals before additions, as Falcon does.
    let mut ordered = params.clone();
    ordered.sort_by_key(|(n, _)| if n.starts_with("remove") { 0 } else { 1 });
    for id in &ids {
        let Some(i) = store.by_id.get(id).copied() else {
            errors.push(json!({"code": 404, "message": format!("alert {id} not found")}));
            continue;
        };
        let a = &mut store.alerts[i];
        for (name, value) in &ordered {
            match name.as_str() {
                "update_status" => a.status = value.clone(),
                "show_in_ui" => a.show_in_ui = value == "true",
                "add_tag" => {
                    if !a.tags.contains(value) {
                        a.tags.push(value.clone())
                    }
                }
                "remove_tag" => a.tags.retain(|t| t != value),
                "remove_tags_by_prefix" => a.tags.retain(|t| !t.starts_with(value.as_str())),
                "append_comment" => a.comments.push(value.clone()),
                "assign_to_name" | "assign_to_user_id" | "assign_to_uuid" => {
                    a.assigned_to_name = Some(value.clone())
                }
                _ => a.assigned_to_name = None,
            }
        }
        a.updated_timestamp = now.clone();
        affected += 1;
    }
    let mut meta = wire::meta(POWERED_BY);
    meta.insert("writes".into(), json!({"resources_affected": affected}));
    let status = if affected == 0 {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    wire::json_response(status, json!({"meta": meta, "errors": errors}))
}
