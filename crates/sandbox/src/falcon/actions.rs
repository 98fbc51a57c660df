//! Host actions (`PerformActionV2`): containment with its pending states, hide/unhide, the detection
//! suppress pair. Reference: `falcon-streams-actions-mssp.md` §2 (six action names, 202 with
//! `resources[{id,path}]`, per-id 409 for a no-op, 100/500 caps, pending statuses until the sensor
//! acknowledges).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::fleet::rfc3339;
use super::{Shared, wire};

const POWERED_BY: &str = "device-api";

/// A containment change waiting for the sensor: `(target status, due)`.
#[derive(Debug, Default)]
pub(crate) struct ActionState {
    pending: Mutex<HashMap<String, (&'static str, Instant)>>,
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/devices/entities/devices-actions/v2", post(perform))
}

/// Applies the containment changes that are due, for hosts that are online (an offline sensor
/// cannot acknowledge: its host stays pending until it checks in). Called by the ticker.
pub(crate) fn settle(sim: &Shared, now: Instant) {
    let mut pending = sim.actions.pending.lock().expect("actions lock");
    if pending.is_empty() {
        return;
    }
    let mut fleet = sim.fleet.write().expect("fleet lock");
    pending.retain(|id, (target, due)| {
        if *due > now {
            return true;
        }
        match fleet.host_mut(id) {
            Some(h) if h.online => {
                h.status = (*target).to_string();
                h.modified_timestamp = rfc3339(chrono::Utc::now());
                false
            }
            Some(_) => true,
            None => false,
        }
    });
}

/// Background task settling containment changes every 50 ms.
pub(crate) async fn ticker(sim: Shared) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        settle(&sim, Instant::now());
    }
}

enum Outcome {
    Done,
    NoOp(String),
}

async fn perform(
    State(sim): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
    body: Option<Json<Value>>,
) -> Response {
    let action = wire::one(&q, "action_name").unwrap_or_default().to_string();
    let caps = sim.action_caps;
    let max = match action.as_str() {
        "hide_host" | "unhide_host" => caps.hide,
        "contain" | "lift_containment" | "detection_suppress" | "detection_unsuppress" => {
            caps.contain
        }
        other => {
            return wire::error(
                StatusCode::BAD_REQUEST,
                POWERED_BY,
                format!("invalid action_name '{other}'"),
            );
        }
    };
    let ids = body_ids(body);
    if ids.is_empty() || ids.len() > max {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!("request must contain between 1 and {max} ids"),
        );
    }
    let delay = sim.containment_delay;
    let now = Instant::now();
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    let mut audits = Vec::new();
    {
        let mut fleet = sim.fleet.write().expect("fleet lock");
        let mut pending = sim.actions.pending.lock().expect("actions lock");
        for id in &ids {
            let Some(h) = fleet.host_mut(id) else {
                errors.push(json!({"code": 404, "message": format!("Device {id} not found")}));
                continue;
            };
            let outcome = match action.as_str() {
                "contain" => match h.status.as_str() {
                    "contained" | "containment_pending" => {
                        Outcome::NoOp(format!("Host {id} is already contained"))
                    }
                    _ => {
                        h.status = "containment_pending".into();
                        pending.insert(id.clone(), ("contained", now + delay));
                        Outcome::Done
                    }
                },
                "lift_containment" => match h.status.as_str() {
                    "contained" | "containment_pending" => {
                        h.status = "lift_containment_pending".into();
                        pending.insert(id.clone(), ("normal", now + delay));
                        Outcome::Done
                    }
                    _ => Outcome::NoOp(format!("Host {id} is not contained")),
                },
                "hide_host" if h.host_hidden_status == "hidden" => {
                    Outcome::NoOp(format!("Host {id} is already hidden"))
                }
                "hide_host" => {
                    h.host_hidden_status = "hidden";
                    Outcome::Done
                }
                "unhide_host" if h.host_hidden_status != "hidden" => {
                    Outcome::NoOp(format!("Host {id} is not hidden"))
                }
                "unhide_host" => {
                    h.host_hidden_status = "visible";
                    Outcome::Done
                }
                _ => Outcome::Done,
            };
            match outcome {
                Outcome::Done => {
                    h.modified_timestamp = rfc3339(chrono::Utc::now());
                    resources.push(json!({"id": id, "path": ""}));
                    audits.push(json!({
                        "UserId": wire::client_id(), "OperationName": operation(&action),
                        "ServiceName": "devices", "Success": true,
                        "UTCTimestamp": chrono::Utc::now().timestamp(),
                        "AuditKeyValues": [{"Key": "device_id", "ValueString": id}]
                    }));
                }
                Outcome::NoOp(m) => errors.push(json!({"code": 409, "message": m})),
            }
        }
    }
    for a in audits {
        super::streams::publish(&sim, None, "UserActivityAuditEvent", a);
    }
    let status = if !resources.is_empty() {
        StatusCode::ACCEPTED
    } else if errors.iter().all(|e| e["code"] == 409) {
        StatusCode::CONFLICT
    } else {
        StatusCode::NOT_FOUND
    };
    let mut meta = wire::meta(POWERED_BY);
    meta.insert(
        "writes".into(),
        json!({"resources_affected": resources.len()}),
    );
    wire::json_response(
        status,
        json!({"meta": meta, "errors": errors, "resources": resources}),
    )
}

/// Audit operation names third-party hunting content keys containment on (reference §1.9, [T]).
fn operation(action: &str) -> &str {
    match action {
        "contain" => "containment_requested",
        "lift_containment" => "containment_lifted",
        other => other,
    }
}

/// The string ids of a `{"ids": [...]}` body (anything else: none).
pub(crate) fn body_ids(body: Option<Json<Value>>) -> Vec<String> {
    body.and_then(|Json(b)| b.get("ids").and_then(|v| v.as_array().cloned()))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}
