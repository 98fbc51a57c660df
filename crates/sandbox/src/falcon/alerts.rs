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
use super::{Shared, wire};

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
    #[serde(skip)]
    pub hostname: String,
    #[serde(skip)]
    pub platform_name: String,
}

impl Record for Alert {
    fn field(&self, f: &str) -> Option<Field<'_>> {
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
        AlertStore { alerts, by_id }
    }
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
