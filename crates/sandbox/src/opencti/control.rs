//! Control routes of the OpenCTI simulator (`/_sandbox/...`, no auth, never faulted).

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::filters::FilterGroup;
use super::graphql::connector_json;
use super::model::{self, Indicator};
use super::store::{EventId, StoreError, StreamDef, parse_date};
use super::{App, ChurnConfig};

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/_sandbox/indicators", get(list).post(create))
        .route(
            "/_sandbox/indicators/{id}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/_sandbox/indicators/{id}/merge", post(merge))
        .route("/_sandbox/streams", get(streams).post(create_stream))
        .route(
            "/_sandbox/streams/{id}",
            axum::routing::patch(update_stream),
        )
        .route("/_sandbox/connectors", get(connectors))
        .route("/_sandbox/connectors/{id}/reset", post(reset_connector))
        .route("/_sandbox/churn", get(get_churn).post(post_churn))
        .route("/_sandbox/churn/step", post(churn_step))
        .route("/_sandbox/listing", get(get_listing).post(post_listing))
        .route("/_sandbox/events/raw", post(raw_event))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/requests", get(requests))
        .route("/_sandbox/deployments", get(deployments))
        .route("/_sandbox/deployments/feature", post(deployments_feature))
        .route("/_sandbox/deployments/clock", post(deployments_clock))
        .route("/_sandbox/deployments/manager-tick", post(deployments_tick))
        .route("/_sandbox/deployments/{id}/retry", post(deployment_retry))
        .route("/_sandbox/deployments/{id}/remove", post(deployment_remove))
}

/// Platforms, deployments and hits sightings, with the platform clock.
async fn deployments(State(app): State<App>) -> Response {
    Json(app.deployments.snapshot()).into_response()
}

/// `{"enabled": false}`: the platform answers like a version without dissemination assurance.
/// `{"removal_grace_secs": n}` changes the manager's grace period.
async fn deployments_feature(State(app): State<App>, Json(body): Json<Value>) -> Response {
    if let Some(on) = body.get("enabled").and_then(Value::as_bool) {
        app.deployments.enabled.store(on, Ordering::Relaxed);
    }
    if let Some(g) = body.get("removal_grace_secs").and_then(Value::as_u64) {
        app.deployments.set_grace(std::time::Duration::from_secs(g));
    }
    Json(app.deployments.snapshot()).into_response()
}

/// `{"advance_secs": n}`: moves the platform clock forward (staleness, expiry, hit bounds).
async fn deployments_clock(State(app): State<App>, Json(body): Json<Value>) -> Response {
    let Some(secs) = body.get("advance_secs").and_then(Value::as_i64) else {
        return error(
            StatusCode::BAD_REQUEST,
            "advance_secs (integer) is required",
        );
    };
    app.deployments.advance(chrono::Duration::seconds(secs));
    Json(json!({"now": model::ts(&app.deployments.now())})).into_response()
}

/// One run of the expiry manager.
async fn deployments_tick(State(app): State<App>) -> Response {
    Json(json!({"expired": app.deployments.manager_tick(&app.store)})).into_response()
}

/// The analyst's "Deploy again".
async fn deployment_retry(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.deployments.retry(&id) {
        Ok(v) => Json(v).into_response(),
        Err(m) => error(StatusCode::CONFLICT, m),
    }
}

/// The analyst's "Remove from this platform".
async fn deployment_remove(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.deployments.remove(&id) {
        Ok(v) => Json(v).into_response(),
        Err(m) => error(StatusCode::NOT_FOUND, m),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        StoreError::Invalid(_) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

fn answer(app: &App, ind: &Indicator, event: Option<EventId>) -> Value {
    json!({"indicator": ind.to_value(&app.store.refs), "event_id": event.map(|e| e.to_string())})
}

async fn list(State(app): State<App>) -> Response {
    let store = &app.store;
    let mut out = Vec::with_capacity(store.len() * 1200 + 32);
    out.extend_from_slice(b"{\"indicators\":[");
    for (k, ind) in store.all().iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        store.write_stix(ind, &mut out);
    }
    out.extend_from_slice(b"]}");
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response()
}

async fn get_one(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.store.get(&id) {
        Some(ind) => Json(ind.to_value(&app.store.refs)).into_response(),
        None => store_error(StoreError::NotFound(id)),
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, String> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("{field}: expected a list of strings"))
}

/// Applies the writable fields of `body` to `ind`; `null` clears optional fields.
fn apply(ind: &mut Indicator, body: &Map<String, Value>) -> Result<(), String> {
    for (k, v) in body {
        match k.as_str() {
            "name" => ind.name = v.as_str().ok_or("name: expected a string")?.to_owned(),
            "description" => ind.description = v.as_str().map(str::to_owned),
            "pattern" => {
                let p = v.as_str().ok_or("pattern: expected a string")?;
                ind.pattern = p.to_owned();
                if !body.contains_key("main_observable_type") && ind.pattern_type == "stix" {
                    ind.main_observable_type = model::main_type_of(p).to_owned();
                }
                ind.observable_values = vec![];
            }
            "observable" => {
                let (p, t, o) = model::pattern_for(v)?;
                ind.pattern = p;
                ind.pattern_type = "stix".into();
                ind.main_observable_type = t;
                if !body.contains_key("name") {
                    ind.name = o
                        .first()
                        .and_then(|x| {
                            x.value
                                .clone()
                                .or_else(|| x.hashes.first().map(|h| h.1.clone()))
                        })
                        .unwrap_or_default();
                }
                ind.observable_values = o;
            }
            "pattern_type" => {
                ind.pattern_type = v
                    .as_str()
                    .ok_or("pattern_type: expected a string")?
                    .to_owned()
            }
            "main_observable_type" => {
                ind.main_observable_type = v
                    .as_str()
                    .ok_or("main_observable_type: expected a string")?
                    .to_owned()
            }
            "score" => {
                ind.score = match v {
                    Value::Null => None,
                    v => Some(
                        v.as_u64()
                            .filter(|s| *s <= 100)
                            .ok_or("score: expected an integer 0-100")?
                            as u8,
                    ),
                }
            }
            "detection" => ind.detection = v.as_bool().ok_or("detection: expected a boolean")?,
            "revoked" => ind.revoked = v.as_bool().ok_or("revoked: expected a boolean")?,
            "is_inferred" => {
                ind.is_inferred = v.as_bool().ok_or("is_inferred: expected a boolean")?
            }
            "confidence" => {
                ind.confidence =
                    v.as_u64()
                        .filter(|s| *s <= 100)
                        .ok_or("confidence: expected an integer 0-100")? as u8
            }
            "platforms" => {
                ind.platforms = match v {
                    Value::Null => None,
                    v => Some(strings(v, "platforms")?),
                }
            }
            "labels" => ind.labels = strings(v, "labels")?,
            "indicator_types" => ind.indicator_types = strings(v, "indicator_types")?,
            "valid_from" => {
                ind.valid_from = parse_date(v.as_str().ok_or("valid_from: expected a date")?)?
            }
            "valid_until" => {
                ind.valid_until = parse_date(v.as_str().ok_or("valid_until: expected a date")?)?
            }
            "shape" => {}
            other => return Err(format!("{other}: unknown field")),
        }
    }
    if ind.valid_until <= ind.valid_from {
        ind.valid_until = ind.valid_from + chrono::Duration::seconds(1);
    }
    Ok(())
}

async fn create(State(app): State<App>, body: Option<Json<Map<String, Value>>>) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let now = chrono::Utc::now();
    let mut ind = {
        let mut generator = app.store.generator.lock().expect("generator lock");
        let shape = match body.get("shape") {
            Some(v) => match v.as_u64() {
                Some(k) => k as usize,
                None => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "shape: expected an integer",
                    );
                }
            },
            None => generator.rng.random_range(0..model::SHAPES),
        };
        generator.indicator(shape, now, now)
    };
    // A created indicator is current unless the body says otherwise.
    ind.revoked = false;
    ind.is_inferred = false;
    ind.valid_until = now + chrono::Duration::days(90);
    if let Err(e) = apply(&mut ind, &body) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, e);
    }
    let (ind, id) = app.store.create(ind);
    (StatusCode::CREATED, Json(answer(&app, &ind, Some(id)))).into_response()
}

async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Response {
    match app.store.update(&id, |ind| apply(ind, &body)) {
        Ok((ind, event)) => Json(answer(&app, &ind, event)).into_response(),
        Err(e) => store_error(e),
    }
}

async fn delete(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.store.delete(&id) {
        Ok((ind, event)) => Json(answer(&app, &ind, Some(event))).into_response(),
        Err(e) => store_error(e),
    }
}

async fn merge(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let sources = match body.get("sources").map(|s| strings(s, "sources")) {
        Some(Ok(s)) => s,
        Some(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
        None => return error(StatusCode::UNPROCESSABLE_ENTITY, "sources: required"),
    };
    match app.store.merge(&id, &sources) {
        Ok((ind, event)) => Json(answer(&app, &ind, Some(event))).into_response(),
        Err(e) => store_error(e),
    }
}

fn stream_doc(app: &App, s: &StreamDef) -> Value {
    let store = &app.store;
    let snapshot_size = store
        .all()
        .iter()
        .filter(|i| !i.is_inferred && s.visible(i, &store.refs))
        .count();
    json!({
        "id": s.id, "name": s.name, "description": s.description, "filters": s.filters,
        "stream_live": s.stream_live, "stream_public": s.stream_public, "snapshot_size": snapshot_size,
    })
}

async fn streams(State(app): State<App>) -> Json<Value> {
    let list: Vec<Value> = app
        .store
        .streams()
        .iter()
        .map(|s| stream_doc(&app, s))
        .collect();
    Json(json!({"streams": list}))
}

fn filters_of(v: Option<&Value>) -> Result<(Option<String>, Option<FilterGroup>), String> {
    match v {
        None | Some(Value::Null) => Ok((None, None)),
        Some(v) => {
            let group = FilterGroup::parse(v)?;
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok((Some(text), Some(group)))
        }
    }
}

async fn create_stream(State(app): State<App>, Json(body): Json<Map<String, Value>>) -> Response {
    let (filters, group) = match filters_of(body.get("filters")) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let def = StreamDef {
        id,
        name: body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("sandbox stream")
            .to_owned(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        filters,
        group,
        stream_live: body
            .get("stream_live")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        stream_public: body
            .get("stream_public")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    app.store.put_stream(def.clone());
    (StatusCode::CREATED, Json(stream_doc(&app, &def))).into_response()
}

async fn update_stream(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Response {
    let Some(mut def) = app.store.stream(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no stream collection with id {id}"),
        );
    };
    if body.contains_key("filters") {
        match filters_of(body.get("filters")) {
            Ok((f, g)) => {
                def.filters = f;
                def.group = g;
            }
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
        }
    }
    if let Some(b) = body.get("stream_live").and_then(Value::as_bool) {
        def.stream_live = b;
    }
    if let Some(b) = body.get("stream_public").and_then(Value::as_bool) {
        def.stream_public = b;
    }
    app.store.put_stream(def.clone());
    Json(stream_doc(&app, &def)).into_response()
}

async fn connectors(State(app): State<App>) -> Json<Value> {
    let list: Vec<Value> = app
        .store
        .connectors()
        .iter()
        .map(|c| {
            let mut v = connector_json(c);
            v["pings"] = json!(c.pings);
            v["registrations"] = json!(c.registrations);
            v.as_object_mut().map(|o| o.remove("config"));
            v
        })
        .collect();
    Json(json!({"connectors": list}))
}

async fn reset_connector(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.store.reset_state(&id) {
        Ok(c) => Json(connector_json(&c)).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn get_churn(State(app): State<App>) -> Json<ChurnConfig> {
    Json(app.churn.lock().expect("churn lock").clone())
}

/// `current` with the fields of a partial JSON object replaced (unknown fields are an error).
fn patched<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: Map<String, Value>,
) -> Result<T, serde_json::Error> {
    let mut merged = match serde_json::to_value(current)? {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    merged.extend(patch);
    serde_json::from_value(Value::Object(merged))
}

async fn post_churn(State(app): State<App>, Json(patch): Json<Map<String, Value>>) -> Response {
    let current = app.churn.lock().expect("churn lock").clone();
    match patched(&current, patch) {
        Ok(c) => {
            *app.churn.lock().expect("churn lock") = c.clone();
            app.churn_changed.notify_one();
            Json(c).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("churn: {e}")),
    }
}

async fn get_listing(State(app): State<App>) -> Json<super::ListingFaults> {
    Json(app.listing.lock().expect("listing lock").clone())
}

async fn post_listing(State(app): State<App>, Json(patch): Json<Map<String, Value>>) -> Response {
    let current = app.listing.lock().expect("listing lock").clone();
    match patched(&current, patch) {
        Ok(l) => {
            *app.listing.lock().expect("listing lock") = l.clone();
            Json(l).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("listing: {e}")),
    }
}

async fn churn_step(State(app): State<App>, body: Option<Json<Value>>) -> Json<Value> {
    let n = body
        .and_then(|Json(b)| b.get("count").and_then(Value::as_u64))
        .unwrap_or(1)
        .min(100_000);
    let mut ops: std::collections::BTreeMap<&'static str, u64> = Default::default();
    for _ in 0..n {
        *ops.entry(super::churn::step(&app)).or_default() += 1;
    }
    Json(json!({"operations": ops}))
}

async fn raw_event(State(app): State<App>, Json(body): Json<Value>) -> Response {
    let Some(event) = body.get("event").and_then(Value::as_str) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "event: required");
    };
    let data = match body.get("data") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return error(StatusCode::UNPROCESSABLE_ENTITY, "data: required"),
    };
    let id = app.store.raw(event.to_owned(), data);
    (
        StatusCode::CREATED,
        Json(json!({"event_id": id.to_string()})),
    )
        .into_response()
}

async fn stats(State(app): State<App>) -> Json<Value> {
    let (first, last, size) = app.store.log_info();
    Json(json!({
        "indicators": app.store.len(),
        "events": size,
        "first_event_id": first.to_string(),
        "last_event_id": last.to_string(),
        "open_streams": app.connections.load(Ordering::Relaxed),
        "seed": app.seed,
    }))
}

async fn requests(State(app): State<App>) -> Json<Value> {
    Json(json!({"requests": app.counts.snapshot()}))
}
