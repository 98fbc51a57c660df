//! Flight Control (MSSP): a parent CID with child CIDs, each a full simulated tenant (own fleet, IOC
//! store, alerts, streams and rate-limit window). Reference: `falcon-streams-actions-mssp.md` §3: a token
//! request with `member_cid` (bare 32-hex CID, lower-case, no `-XX` checksum) binds the token to that
//! child; a CID that is not a child (or the parent's own) gets 403; `queryChildren` pages by offset with
//! a default limit of 10; `getChildrenV2` answers 207 with `errors[]` for unknown ids.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{FalconConfig, Shared, auth, derive_hex, wire};
use crate::cado::Bucket;

const POWERED_BY: &str = "mssp-api";

/// One child CID.
pub(crate) struct Child {
    pub cid: String,
    pub name: String,
    pub sim: Shared,
    router: Router,
}

/// The parent's view of its children, and which tokens were minted for which child.
pub(crate) struct MsspState {
    pub children: Vec<Child>,
    tokens: RwLock<HashMap<String, usize>>,
}

impl MsspState {
    pub(crate) fn new(children: Vec<Child>) -> Self {
        MsspState {
            children,
            tokens: RwLock::new(HashMap::new()),
        }
    }

    fn child(&self, cid: &str) -> Option<usize> {
        let norm = normalise(cid);
        self.children.iter().position(|c| c.cid == norm)
    }
}

/// Lower-case, without the `-XX` checksum.
fn normalise(cid: &str) -> String {
    let c = cid.trim().to_lowercase();
    match c.split_once('-') {
        Some((head, _)) => head.to_string(),
        None => c,
    }
}

/// Builds `config.children` child tenants sharing the parent's API client (credentials).
pub(crate) fn children(
    config: &FalconConfig,
    seed: u64,
    bucket: &Bucket,
    url: &str,
    client_id: &str,
    client_secret: &str,
) -> Vec<Child> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x355F_C1D5);
    (0..config.children)
        .map(|i| {
            let cid = derive_hex(&mut rng, 16);
            let child_config = FalconConfig {
                hosts: config.child_hosts,
                alerts: Some(config.child_hosts / 4),
                iocs: 0,
                children: 0,
                cid: Some(cid.clone()),
                ..config.clone()
            };
            let sim = super::Sim::build(
                &child_config,
                seed.wrapping_add(1 + i as u64),
                bucket.clone(),
                url,
                [
                    client_id.to_string(),
                    client_secret.to_string(),
                    cid.clone(),
                ],
                Vec::new(),
            );
            let router = super::router(sim.clone());
            Child {
                cid,
                name: format!("Child tenant {}", i + 1),
                sim,
                router,
            }
        })
        .collect()
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/mssp/queries/children/v1", get(query_children))
        .route("/mssp/entities/children/GET/v2", post(get_children))
        .route("/mssp/queries/cid-groups/v1", get(query_groups))
        .route("/mssp/entities/cid-groups/v2", get(get_groups))
        .route("/mssp/entities/cid-group-members/v2", get(get_members))
}

/// Outermost layer: token requests with `member_cid`, and requests bearing a child token (or under
/// `/_sandbox/children/<cid>/…`), go to the child tenant.
pub(crate) async fn dispatch(State(sim): State<Shared>, request: Request, next: Next) -> Response {
    if sim.mssp.children.is_empty() {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/_sandbox/children/") {
        let (cid, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(i) = sim.mssp.child(cid) else {
            return wire::error(StatusCode::NOT_FOUND, POWERED_BY, "no such child");
        };
        let (mut parts, body) = request.into_parts();
        let pq = match parts.uri.query() {
            Some(q) => format!("/{tail}?{q}"),
            None => format!("/{tail}"),
        };
        parts.uri = pq.parse().expect("uri");
        return forward(&sim.mssp.children[i], Request::from_parts(parts, body)).await;
    }
    if path == "/oauth2/token" {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
            return wire::error(StatusCode::BAD_REQUEST, "csam", "body too large");
        };
        let form: HashMap<String, String> =
            serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        if let Some(member) = form.get("member_cid").filter(|m| !m.is_empty()) {
            return member_token(&sim, &form, member);
        }
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if let Some(t) = bearer {
        let child = sim.mssp.tokens.read().expect("mssp lock").get(&t).copied();
        if let Some(i) = child {
            return forward(&sim.mssp.children[i], request).await;
        }
    }
    next.run(request).await
}

async fn forward(child: &Child, request: Request) -> Response {
    match child.router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

fn member_token(sim: &Shared, form: &HashMap<String, String>, member: &str) -> Response {
    let id = form
        .get("client_id")
        .map(String::as_str)
        .unwrap_or_default();
    let secret = form
        .get("client_secret")
        .map(String::as_str)
        .unwrap_or_default();
    let denied = || {
        wire::error(
            StatusCode::FORBIDDEN,
            "csam",
            "access denied, authorization failed",
        )
    };
    if id != sim.client_id || secret != sim.client_secret {
        return denied();
    }
    // Not a child, or the parent itself: 403 (reference §3.3).
    let Some(i) = sim.mssp.child(member) else {
        return denied();
    };
    let child = &sim.mssp.children[i].sim;
    let ttl = Duration::from_secs(child.knobs().token_ttl_secs);
    let token = format!("eyJ{}", uuid::Uuid::new_v4().simple());
    child.auth.tokens.write().expect("token lock").insert(
        token.clone(),
        auth::Token {
            client_id: id.to_string(),
            expires: Instant::now() + ttl,
        },
    );
    sim.mssp
        .tokens
        .write()
        .expect("mssp lock")
        .insert(token.clone(), i);
    wire::json_response(
        StatusCode::CREATED,
        json!({"access_token": token, "expires_in": ttl.as_secs(), "token_type": "bearer"}),
    )
}

type Q = Query<Vec<(String, String)>>;

fn page(q: &[(String, String)], ids: Vec<String>) -> Response {
    let offset = wire::one(q, "offset")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let limit = wire::one(q, "limit")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(10);
    if limit == 0 || limit > 5000 {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "limit must be between 1 and 5000",
        );
    }
    let total = ids.len();
    let items: Vec<String> = ids.into_iter().skip(offset).take(limit).collect();
    wire::ok_paged(
        POWERED_BY,
        json!(items),
        json!({"offset": offset, "limit": limit, "total": total}),
    )
}

async fn query_children(State(sim): State<Shared>, Query(q): Q) -> Response {
    let ids = sim.mssp.children.iter().map(|c| c.cid.clone()).collect();
    page(&q, ids)
}

async fn get_children(State(sim): State<Shared>, body: Option<Json<Value>>) -> Response {
    let ids = super::actions::body_ids(body);
    if ids.is_empty() {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "ids is required");
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for id in &ids {
        match sim.mssp.child(id) {
            Some(i) => {
                let c = &sim.mssp.children[i];
                found.push(json!({
                    "child_cid": c.cid, "child_of": sim.cid.to_lowercase(), "checksum": "A1",
                    "name": c.name, "status": "active", "domains": []
                }));
            }
            None => errors.push(json!({"code": 404, "message": format!("child {id} not found")})),
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    wire::json_response(
        status,
        json!({"meta": wire::meta(POWERED_BY), "errors": errors, "resources": found}),
    )
}

/// Two CID groups: every child, and the first half.
fn groups(sim: &Shared) -> Vec<(String, String, Vec<String>)> {
    let all: Vec<String> = sim.mssp.children.iter().map(|c| c.cid.clone()).collect();
    let half = all[..all.len().div_ceil(2)].to_vec();
    vec![
        ("cidgroup-all".into(), "All children".into(), all),
        ("cidgroup-first".into(), "First half".into(), half),
    ]
}

async fn query_groups(State(sim): State<Shared>, Query(q): Q) -> Response {
    page(&q, groups(&sim).into_iter().map(|g| g.0).collect())
}

async fn get_groups(State(sim): State<Shared>, Query(q): Q) -> Response {
    let ids = wire::multi(&q, "ids");
    let out: Vec<Value> = groups(&sim)
        .into_iter()
        .filter(|g| ids.contains(&g.0))
        .map(|(id, name, _)| json!({"cid_group_id": id, "name": name, "description": "", "cid": sim.cid.to_lowercase(), "is_default": false}))
        .collect();
    wire::ok(StatusCode::OK, POWERED_BY, json!(out))
}

async fn get_members(State(sim): State<Shared>, Query(q): Q) -> Response {
    let ids = wire::multi(&q, "ids");
    let out: Vec<Value> = groups(&sim)
        .into_iter()
        .filter(|g| ids.contains(&g.0))
        .map(|(id, _, cids)| json!({"cid_group_id": id, "cids": cids}))
        .collect();
    wire::ok(StatusCode::OK, POWERED_BY, json!(out))
}
