//! The Falcon response envelope (`meta`, `errors`, `resources`) and the per-request context.

use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Per-request context set by the middleware (trace id, start time, authenticated client).
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub trace_id: String,
    pub start: Instant,
    pub client_id: String,
}

tokio::task_local! {
    pub(crate) static CTX: Ctx;
}

pub(crate) fn trace_id() -> String {
    CTX.try_with(|c| c.trace_id.clone()).unwrap_or_default()
}

/// The authenticated client id of the current request (empty outside a request).
pub(crate) fn client_id() -> String {
    CTX.try_with(|c| c.client_id.clone()).unwrap_or_default()
}

fn query_time() -> f64 {
    CTX.try_with(|c| c.start.elapsed().as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn meta(powered_by: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("query_time".into(), json!(query_time()));
    m.insert("powered_by".into(), json!(powered_by));
    m.insert("trace_id".into(), json!(trace_id()));
    m
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Success: `{"meta", "errors": [], "resources": resources}`.
pub(crate) fn ok(status: StatusCode, powered_by: &str, resources: Value) -> Response {
    json_response(
        status,
        json!({"meta": meta(powered_by), "errors": [], "resources": resources}),
    )
}

/// Success serialized straight from typed resources (no intermediate `Value`): the hot query path.
pub(crate) fn ok_typed<T: serde::Serialize>(
    meta: serde_json::Map<String, Value>,
    resources: &T,
) -> Response {
    #[derive(serde::Serialize)]
    struct Reply<'a, T> {
        meta: serde_json::Map<String, Value>,
        errors: [(); 0],
        resources: &'a T,
    }
    (
        StatusCode::OK,
        axum::Json(Reply {
            meta,
            errors: [],
            resources,
        }),
    )
        .into_response()
}

/// Success with `meta.pagination`.
pub(crate) fn ok_paged(powered_by: &str, resources: Value, pagination: Value) -> Response {
    let mut m = meta(powered_by);
    m.insert("pagination".into(), pagination);
    json_response(
        StatusCode::OK,
        json!({"meta": m, "errors": [], "resources": resources}),
    )
}

/// Error: `{"meta", "errors": [{"code", "message"}], "resources": null}`.
pub(crate) fn error(status: StatusCode, powered_by: &str, message: impl Into<String>) -> Response {
    json_response(
        status,
        json!({"meta": meta(powered_by), "errors": [{"code": status.as_u16(), "message": message.into()}], "resources": null}),
    )
}

/// Parses a repeated or comma-separated query parameter (`ids=a&ids=b` or `ids=a,b`).
pub(crate) fn multi(query: &[(String, String)], key: &str) -> Vec<String> {
    query
        .iter()
        .filter(|(k, _)| k == key || k == &format!("{key}[]"))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .collect()
}

/// The last value of a query parameter.
pub(crate) fn one<'q>(query: &'q [(String, String)], key: &str) -> Option<&'q str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parses `limit`/`offset`-style integers with Falcon's 400 on garbage.
pub(crate) fn int_param(
    query: &[(String, String)],
    key: &str,
    powered_by: &str,
) -> Result<Option<i64>, Response> {
    match one(query, key) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                powered_by,
                format!("invalid value '{v}' for query parameter '{key}'"),
            )
        }),
    }
}
