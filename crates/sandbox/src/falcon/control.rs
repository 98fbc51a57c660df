//! The Falcon simulator's control API under `/_sandbox/` (no authentication, never faulted).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Knobs, Shared, rtr};

pub(crate) fn routes(sim: Shared) -> Router {
    Router::new()
        .route("/_sandbox/iocs", get(iocs))
        .route("/_sandbox/requests", get(requests).delete(reset_requests))
        .route("/_sandbox/knobs", get(get_knobs).post(post_knobs))
        .route("/_sandbox/hosts", get(hosts))
        .route("/_sandbox/hosts/online", post(set_online))
        .route("/_sandbox/hosts/reboot", post(reboot))
        .route("/_sandbox/hosts/disk", post(set_disk))
        .route("/_sandbox/hosts/workdir", post(plant_workdir))
        .route("/_sandbox/rtr", get(rtr_dump))
        .route("/_sandbox/tokens/expire", post(expire_tokens))
        .route("/_sandbox/credentials", get(credentials))
        .with_state(sim)
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn iocs(State(sim): State<Shared>, Query(l): Query<Limit>) -> Json<Value> {
    let store = sim.iocs.read().expect("ioc lock");
    let items: Vec<Value> = store
        .all()
        .take(l.limit.unwrap_or(usize::MAX))
        .map(|i| serde_json::to_value(i).expect("ioc"))
        .collect();
    Json(json!({"total": store.len(), "iocs": items}))
}

async fn requests(State(sim): State<Shared>) -> Json<Value> {
    let counts = sim.requests.lock().expect("requests lock").clone();
    let total: u64 = counts.values().sum();
    Json(json!({"total": total, "routes": counts}))
}

async fn reset_requests(State(sim): State<Shared>) -> StatusCode {
    sim.requests.lock().expect("requests lock").clear();
    StatusCode::NO_CONTENT
}

async fn get_knobs(State(sim): State<Shared>) -> Json<Knobs> {
    Json(sim.knobs())
}

/// Partial knobs: missing fields keep their value; `"rate_limit_per_minute": null` turns the limit off.
async fn post_knobs(
    State(sim): State<Shared>,
    Json(patch): Json<serde_json::Map<String, Value>>,
) -> Response {
    let current = serde_json::to_value(sim.knobs()).expect("knobs");
    let mut merged = current.as_object().expect("object").clone();
    for (k, v) in patch {
        if !merged.contains_key(&k) {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("unknown knob '{k}'")})),
            )
                .into_response();
        }
        merged.insert(k, v);
    }
    match serde_json::from_value::<Knobs>(Value::Object(merged)) {
        Ok(k) => {
            *sim.knobs.write().expect("knobs lock") = k.clone();
            Json(k).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn hosts(State(sim): State<Shared>) -> Json<Value> {
    let fleet = sim.fleet.read().expect("fleet lock");
    let hosts: Vec<Value> = fleet
        .hosts
        .iter()
        .map(|h| json!({"device_id": h.device_id, "hostname": h.hostname, "platform_name": h.platform_name,
                        "online": h.online, "groups": h.groups, "local_ip": h.local_ip}))
        .collect();
    let groups: Vec<Value> = fleet
        .groups
        .iter()
        .map(|g| json!({"id": g.id, "name": g.name}))
        .collect();
    Json(json!({"hosts": hosts, "groups": groups}))
}

#[derive(Deserialize)]
struct OnlineBody {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
    online: bool,
}

async fn set_online(State(sim): State<Shared>, Json(b): Json<OnlineBody>) -> Json<Value> {
    let changed = {
        let mut fleet = sim.fleet.write().expect("fleet lock");
        let ids: Vec<String> = if b.all {
            fleet.hosts.iter().map(|h| h.device_id.clone()).collect()
        } else {
            b.ids
        };
        fleet.set_online(&ids, b.online)
    };
    // Queued commands of hosts that came online run now, not at the next tick.
    rtr::tick(&sim);
    Json(json!({"changed": changed}))
}

#[derive(Deserialize)]
struct IdsBody {
    ids: Vec<String>,
}

async fn reboot(State(sim): State<Shared>, Json(b): Json<IdsBody>) -> Json<Value> {
    Json(json!({"jobs_killed": rtr::reboot(&sim, &b.ids)}))
}

#[derive(Deserialize)]
struct DiskBody {
    ids: Vec<String>,
    #[serde(default)]
    free_bytes: Option<u64>,
    #[serde(default)]
    capture_bytes: Option<u64>,
}

/// Free space on the job directories' volume and the size of the next Cado Host archives of those hosts.
async fn set_disk(State(sim): State<Shared>, Json(b): Json<DiskBody>) -> Json<Value> {
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    for id in &b.ids {
        let disk = rtr.jobs.disks.entry(id.clone()).or_default();
        disk.free_bytes = b.free_bytes;
        disk.capture_bytes = b.capture_bytes;
    }
    Json(json!({"changed": b.ids.len()}))
}

#[derive(Deserialize)]
struct WorkdirBody {
    ids: Vec<String>,
    job: String,
}

/// A directory someone else owns, planted at the job directory's path of those hosts.
async fn plant_workdir(State(sim): State<Shared>, Json(b): Json<WorkdirBody>) -> Json<Value> {
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let planted = b
        .ids
        .iter()
        .filter(|id| rtr.jobs.plant_workdir(id, &b.job))
        .count();
    Json(json!({"planted": planted}))
}

async fn rtr_dump(State(sim): State<Shared>) -> Json<Value> {
    rtr::tick(&sim);
    Json(rtr::dump(&sim))
}

async fn expire_tokens(State(sim): State<Shared>) -> Json<Value> {
    let mut tokens = sim.auth.tokens.write().expect("token lock");
    let n = tokens.len();
    let now = std::time::Instant::now();
    for t in tokens.values_mut() {
        t.expires = now;
    }
    Json(json!({"expired": n}))
}

async fn credentials(State(sim): State<Shared>) -> Json<Value> {
    Json(json!({"client_id": sim.client_id, "client_secret": sim.client_secret, "cid": sim.cid}))
}
