//! The generated fleet: hosts and host groups, and the `/devices/...` routes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use super::fql::{self, Field, Record};
use super::{FalconConfig, Shared, wire};

const POWERED_BY: &str = "device-api";
const HG_POWERED_BY: &str = "hostgroup-api";
const OFFSET_CEILING: i64 = 10_000;

/// Operating system family of a simulated host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    Windows,
    Linux,
    Mac,
}

impl Os {
    pub(crate) fn platform_name(self) -> &'static str {
        match self {
            Os::Windows => "Windows",
            Os::Linux => "Linux",
            Os::Mac => "Mac",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Host {
    pub device_id: String,
    pub cid: String,
    pub hostname: String,
    pub platform_name: &'static str,
    pub platform_id: &'static str,
    pub os_version: String,
    pub os_product_name: String,
    pub kernel_version: String,
    pub product_type_desc: &'static str,
    pub agent_version: String,
    pub status: String,
    pub first_seen: String,
    pub last_seen: String,
    pub modified_timestamp: String,
    pub local_ip: String,
    pub external_ip: String,
    pub mac_address: String,
    pub machine_domain: String,
    pub site_name: String,
    pub serial_number: String,
    pub system_manufacturer: &'static str,
    pub groups: Vec<String>,
    pub tags: Vec<String>,
    pub ou: Vec<String>,
    pub reduced_functionality_mode: &'static str,
    pub provision_status: &'static str,
    pub host_hidden_status: &'static str,
    #[serde(skip)]
    pub os: Os,
    /// Online now (changed by the ticker and the control API).
    #[serde(skip)]
    pub online: bool,
    /// When an offline host comes online by itself.
    #[serde(skip)]
    pub online_at: Option<Instant>,
}

impl Record for Host {
    fn field(&self, f: &str) -> Option<Field<'_>> {
        Some(match f {
            "device_id" | "aid" => Field::Str(&self.device_id),
            "cid" => Field::Str(&self.cid),
            "hostname" => Field::Str(&self.hostname),
            "platform_name" => Field::Str(self.platform_name),
            "platform_id" => Field::Str(self.platform_id),
            "os_version" => Field::Str(&self.os_version),
            "os_product_name" => Field::Str(&self.os_product_name),
            "kernel_version" => Field::Str(&self.kernel_version),
            "product_type_desc" => Field::Str(self.product_type_desc),
            "agent_version" => Field::Str(&self.agent_version),
            "status" => Field::Str(&self.status),
            "first_seen" => Field::Str(&self.first_seen),
            "last_seen" => Field::Str(&self.last_seen),
            "modified_timestamp" => Field::Str(&self.modified_timestamp),
            "local_ip" => Field::Str(&self.local_ip),
            "external_ip" => Field::Str(&self.external_ip),
            "mac_address" => Field::Str(&self.mac_address),
            "machine_domain" => Field::Str(&self.machine_domain),
            "site_name" => Field::Str(&self.site_name),
            "serial_number" => Field::Str(&self.serial_number),
            "groups" => Field::List(&self.groups),
            "tags" => Field::List(&self.tags),
            "ou" => Field::List(&self.ou),
            "reduced_functionality_mode" => Field::Str(self.reduced_functionality_mode),
            "provision_status" => Field::Str(self.provision_status),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
    pub group_type: &'static str,
    pub assignment_rule: String,
    pub created_by: String,
    pub created_timestamp: String,
    pub modified_by: String,
    pub modified_timestamp: String,
}

impl Record for Group {
    fn field(&self, f: &str) -> Option<Field<'_>> {
        Some(match f {
            "id" => Field::Str(&self.id),
            "name" => Field::Str(&self.name),
            "description" => Field::Str(&self.description),
            "group_type" => Field::Str(self.group_type),
            "created_by" => Field::Str(&self.created_by),
            "created_timestamp" => Field::Str(&self.created_timestamp),
            "modified_by" => Field::Str(&self.modified_by),
            "modified_timestamp" => Field::Str(&self.modified_timestamp),
            _ => return None,
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct Fleet {
    pub hosts: Vec<Host>,
    pub by_id: HashMap<String, usize>,
    pub groups: Vec<Group>,
}

const GROUP_NAMES: &[&str] = &[
    "Workstations",
    "Servers",
    "Linux Servers",
    "Mac Fleet",
    "Finance",
    "Engineering",
    "Domain Controllers",
    "DMZ",
    "Executives",
    "Lab",
];
const WORDS: &[&str] = &[
    "web", "db", "app", "mail", "file", "build", "dev", "hr", "fin", "ops", "sales", "lab",
];

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn hex(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl Fleet {
    pub(crate) fn generate(config: &FalconConfig, seed: u64, cid: &str, started: Instant) -> Fleet {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xF1EE7);
        let now = chrono::Utc::now();
        let cid = cid.to_lowercase();
        let groups: Vec<Group> = (0..config.host_groups)
            .map(|i| {
                let name = match GROUP_NAMES.get(i) {
                    Some(n) => n.to_string(),
                    None => format!("Group {i}"),
                };
                Group {
                    id: hex(&mut rng, 16),
                    description: format!("{name} (generated by the sandbox)"),
                    group_type: if i % 3 == 2 { "dynamic" } else { "static" },
                    assignment_rule: String::new(),
                    created_by: "sandbox@example.com".into(),
                    created_timestamp: rfc3339(now - chrono::Duration::days(90)),
                    modified_by: "sandbox@example.com".into(),
                    modified_timestamp: rfc3339(now - chrono::Duration::days(30)),
                    name,
                }
            })
            .collect();
        let mut hosts = Vec::with_capacity(config.hosts);
        for i in 0..config.hosts {
            let os = match rng.random_range(0..100) {
                0..60 => Os::Windows,
                60..85 => Os::Linux,
                _ => Os::Mac,
            };
            let word = WORDS[rng.random_range(0..WORDS.len())];
            let (hostname, os_version, product, kernel, platform_id) = match os {
                Os::Windows => {
                    let server = rng.random_bool(0.3);
                    (
                        format!(
                            "{}-{}-{:04}",
                            if server { "SRV" } else { "WS" },
                            word.to_uppercase(),
                            i
                        ),
                        if server {
                            "Windows Server 2022".to_string()
                        } else {
                            "Windows 11".to_string()
                        },
                        if server {
                            "Windows Server 2022 Datacenter"
                        } else {
                            "Windows 11 Enterprise"
                        },
                        "10.0.22631.4460".to_string(),
                        "0",
                    )
                }
                Os::Linux => (
                    format!("{word}-{i:04}.corp.example"),
                    "Ubuntu 22.04".to_string(),
                    "Ubuntu 22.04.5 LTS",
                    "5.15.0-126-generic".to_string(),
                    "3",
                ),
                Os::Mac => (
                    format!("MBP-{}-{:04}", word.to_uppercase(), i),
                    "Sonoma (14)".to_string(),
                    "macOS Sonoma",
                    "23.6.0".to_string(),
                    "1",
                ),
            };
            let online = !rng.random_bool(config.offline_share.clamp(0.0, 1.0));
            let online_at = match (online, config.online_within) {
                (false, Some(within)) => {
                    let ms = rng.random_range(0..=within.as_millis().max(1) as u64);
                    Some(started + Duration::from_millis(ms))
                }
                _ => None,
            };
            let mut host_groups = Vec::new();
            if !groups.is_empty() {
                host_groups.push(groups[rng.random_range(0..groups.len())].id.clone());
                if rng.random_bool(0.3) {
                    let g = groups[rng.random_range(0..groups.len())].id.clone();
                    if !host_groups.contains(&g) {
                        host_groups.push(g);
                    }
                }
            }
            let last_seen = if online {
                now
            } else {
                now - chrono::Duration::hours(rng.random_range(2..240))
            };
            let first_seen = now - chrono::Duration::days(rng.random_range(30..900));
            hosts.push(Host {
                device_id: hex(&mut rng, 16),
                cid: cid.clone(),
                hostname,
                platform_name: os.platform_name(),
                platform_id,
                os_version,
                os_product_name: product.to_string(),
                kernel_version: kernel,
                product_type_desc: match (os, i % 7) {
                    (Os::Windows, 0) => "Domain Controller",
                    (Os::Windows, 1 | 2) | (Os::Linux, _) => "Server",
                    _ => "Workstation",
                },
                agent_version: format!(
                    "7.{}.{}",
                    rng.random_range(10..20),
                    rng.random_range(10000..19999)
                ),
                status: "normal".into(),
                first_seen: rfc3339(first_seen),
                last_seen: rfc3339(last_seen),
                modified_timestamp: rfc3339(last_seen),
                local_ip: format!(
                    "10.{}.{}.{}",
                    rng.random_range(0..16),
                    rng.random_range(0..255),
                    rng.random_range(1..255)
                ),
                external_ip: format!("198.51.100.{}", rng.random_range(1..255)),
                mac_address: (0..6)
                    .map(|_| format!("{:02x}", rng.random::<u8>()))
                    .collect::<Vec<_>>()
                    .join("-"),
                machine_domain: if os == Os::Windows {
                    "corp.example".into()
                } else {
                    String::new()
                },
                site_name: ["HQ", "Branch-1", "Cloud"][rng.random_range(0..3)].to_string(),
                serial_number: hex(&mut rng, 6).to_uppercase(),
                system_manufacturer: match os {
                    Os::Mac => "Apple Inc.",
                    _ => ["Dell Inc.", "LENOVO", "VMware, Inc."][i % 3],
                },
                groups: host_groups,
                tags: if i % 5 == 0 {
                    vec!["FalconGroupingTags/critical".into()]
                } else {
                    vec![]
                },
                ou: if os == Os::Windows {
                    vec!["Computers".into()]
                } else {
                    vec![]
                },
                reduced_functionality_mode: "no",
                provision_status: "Provisioned",
                host_hidden_status: "visible",
                os,
                online,
                online_at,
            });
        }
        hosts.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        let by_id = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.device_id.clone(), i))
            .collect();
        Fleet {
            hosts,
            by_id,
            groups,
        }
    }

    pub(crate) fn host(&self, id: &str) -> Option<&Host> {
        self.by_id.get(id).map(|i| &self.hosts[*i])
    }

    pub(crate) fn host_mut(&mut self, id: &str) -> Option<&mut Host> {
        self.by_id.get(id).map(|i| &mut self.hosts[*i])
    }

    /// Brings hosts whose `online_at` has passed online; returns their ids.
    pub(crate) fn advance(&mut self, now: Instant) -> Vec<String> {
        let mut came = Vec::new();
        for h in &mut self.hosts {
            if !h.online && h.online_at.is_some_and(|t| t <= now) {
                h.online = true;
                h.online_at = None;
                h.last_seen = rfc3339(chrono::Utc::now());
                came.push(h.device_id.clone());
            }
        }
        came
    }

    /// Sets hosts online or offline; returns the ids that exist.
    pub(crate) fn set_online(&mut self, ids: &[String], online: bool) -> Vec<String> {
        let mut done = Vec::new();
        for id in ids {
            if let Some(h) = self.host_mut(id) {
                h.online = online;
                h.online_at = None;
                if online {
                    h.last_seen = rfc3339(chrono::Utc::now());
                }
                done.push(id.clone());
            }
        }
        done
    }
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/devices/queries/devices/v1", get(query_devices))
        .route(
            "/devices/queries/devices-scroll/v1",
            get(query_devices_scroll),
        )
        .route("/devices/combined/devices/v1", get(combined_devices))
        .route(
            "/devices/entities/devices/v2",
            get(get_devices).post(post_devices),
        )
        .route("/devices/entities/devices/v1", get(get_devices))
        .route("/devices/entities/online-state/v1", get(online_state))
        .route("/devices/queries/host-groups/v1", get(query_groups))
        .route("/devices/combined/host-groups/v1", get(combined_groups))
        .route("/devices/entities/host-groups/v1", get(get_groups))
        .route("/devices/queries/host-group-members/v1", get(query_members))
        .route(
            "/devices/combined/host-group-members/v1",
            get(combined_members),
        )
}

type Q = Query<Vec<(String, String)>>;

/// Parses and checks a filter against a record type.
pub(crate) fn parse_filter<R: Record>(
    q: &[(String, String)],
    sample: Option<&R>,
    powered_by: &str,
) -> Result<Option<fql::Expr>, Response> {
    let text = wire::one(q, "filter").unwrap_or("");
    let expr = fql::parse(text).map_err(|e| {
        wire::error(
            StatusCode::BAD_REQUEST,
            powered_by,
            format!("Invalid filter expression '{text}': {e}"),
        )
    })?;
    if let (Some(e), Some(sample)) = (&expr, sample) {
        fql::check_fields(e, &|f| sample.field(f).is_some())
            .map_err(|e| wire::error(StatusCode::BAD_REQUEST, powered_by, e.message))?;
    }
    Ok(expr)
}

/// Sorts `items` by `sort` (`field.asc`, `field.desc`, `field|asc`, `field|desc`).
pub(crate) fn sort_records<R: Record>(items: &mut [&R], sort: Option<&str>) {
    let Some(sort) = sort.filter(|s| !s.is_empty()) else {
        return;
    };
    let (field, dir) = sort.split_once(['.', '|']).unwrap_or((sort, "asc"));
    let desc = dir.eq_ignore_ascii_case("desc");
    let key = |r: &R| match r.field(field) {
        Some(Field::Str(s)) => s.to_string(),
        Some(Field::Num(n)) => format!("{n:020.4}"),
        Some(Field::Bool(b)) => b.to_string(),
        Some(Field::List(l)) => l.join(","),
        _ => String::new(),
    };
    items.sort_by_cached_key(|r| key(r));
    if desc {
        items.reverse();
    }
}

fn select<'f>(fleet: &'f Fleet, q: &[(String, String)]) -> Result<Vec<&'f Host>, Response> {
    let expr = parse_filter(q, fleet.hosts.first(), POWERED_BY)?;
    let mut hosts: Vec<&Host> = fleet
        .hosts
        .iter()
        .filter(|h| expr.as_ref().is_none_or(|e| fql::matches(e, *h)))
        .collect();
    sort_records(&mut hosts, wire::one(q, "sort"));
    Ok(hosts)
}

fn limit(
    q: &[(String, String)],
    default: i64,
    max: i64,
    powered_by: &str,
) -> Result<i64, Response> {
    let limit = wire::int_param(q, "limit", powered_by)?.unwrap_or(default);
    if limit < 1 || limit > max {
        return Err(wire::error(
            StatusCode::BAD_REQUEST,
            powered_by,
            format!("limit must be between 1 and {max}, got {limit}"),
        ));
    }
    Ok(limit)
}

/// Offset paging with Falcon's 10,000 ceiling: returns `(offset, limit)`.
pub(crate) fn offset_page(
    q: &[(String, String)],
    default_limit: i64,
    max_limit: i64,
    powered_by: &str,
) -> Result<(i64, i64), Response> {
    let limit = limit(q, default_limit, max_limit, powered_by)?;
    let offset = wire::int_param(q, "offset", powered_by)?.unwrap_or(0);
    if offset < 0 {
        return Err(wire::error(
            StatusCode::BAD_REQUEST,
            powered_by,
            "offset must be positive",
        ));
    }
    if offset + limit > OFFSET_CEILING {
        return Err(wire::error(
            StatusCode::BAD_REQUEST,
            powered_by,
            format!(
                "offset {offset} and limit {limit} are invalid; offset + limit must be less than or equal to {OFFSET_CEILING}"
            ),
        ));
    }
    Ok((offset, limit))
}

async fn query_devices(State(sim): State<Shared>, Query(q): Q) -> Response {
    let fleet = sim.fleet.read().expect("fleet lock");
    let hosts = match select(&fleet, &q) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let (offset, limit) = match offset_page(&q, 100, 5_000, POWERED_BY) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ids: Vec<&str> = hosts
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|h| h.device_id.as_str())
        .collect();
    wire::ok_paged(
        POWERED_BY,
        json!(ids),
        json!({"offset": offset, "limit": limit, "total": hosts.len()}),
    )
}

/// Opaque position tokens used by scroll, combined `next` and `after` paging.
pub(crate) fn encode_token(kind: &str, pos: usize) -> String {
    B64.encode(format!(
        "{kind}:{pos}:{}",
        chrono::Utc::now().timestamp() + 120
    ))
}

pub(crate) fn decode_token(kind: &str, token: &str) -> Option<usize> {
    let raw = String::from_utf8(B64.decode(token.trim()).ok()?).ok()?;
    let mut parts = raw.split(':');
    (parts.next()? == kind).then_some(())?;
    parts.next()?.parse().ok()
}

async fn query_devices_scroll(State(sim): State<Shared>, Query(q): Q) -> Response {
    let fleet = sim.fleet.read().expect("fleet lock");
    let hosts = match select(&fleet, &q) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let limit = match limit(&q, 100, 10_000, POWERED_BY) {
        Ok(l) => l as usize,
        Err(r) => return r,
    };
    let start = match wire::one(&q, "offset").filter(|o| !o.is_empty()) {
        None => 0,
        Some(t) => match decode_token("scroll", t) {
            Some(p) => p,
            None => {
                return wire::error(
                    StatusCode::BAD_REQUEST,
                    POWERED_BY,
                    "invalid or expired scroll offset token",
                );
            }
        },
    };
    let ids: Vec<&str> = hosts
        .iter()
        .skip(start)
        .take(limit)
        .map(|h| h.device_id.as_str())
        .collect();
    let end = start + ids.len();
    let token = if end < hosts.len() {
        encode_token("scroll", end)
    } else {
        String::new()
    };
    wire::ok_paged(
        POWERED_BY,
        json!(ids),
        json!({"offset": token, "expires_at": (chrono::Utc::now().timestamp() + 120) * 1_000_000_000, "limit": limit, "total": hosts.len()}),
    )
}

async fn combined_devices(State(sim): State<Shared>, Query(q): Q) -> Response {
    let fleet = sim.fleet.read().expect("fleet lock");
    let hosts = match select(&fleet, &q) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let limit = match limit(&q, 100, 10_000, POWERED_BY) {
        Ok(l) => l as usize,
        Err(r) => return r,
    };
    let start = match wire::one(&q, "offset").filter(|o| !o.is_empty()) {
        None => 0,
        Some(t) => match decode_token("next", t) {
            Some(p) => p,
            None => {
                return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "invalid offset token");
            }
        },
    };
    let fields: Vec<String> = wire::multi(&q, "fields");
    let page: Vec<Value> = hosts
        .iter()
        .skip(start)
        .take(limit)
        .map(|h| {
            let v = device_json(h);
            if fields.is_empty() {
                v
            } else {
                Value::Object(
                    v.as_object()
                        .expect("object")
                        .iter()
                        .filter(|(k, _)| fields.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }
        })
        .collect();
    let end = start + page.len();
    let next = if end < hosts.len() {
        encode_token("next", end)
    } else {
        String::new()
    };
    let previous = if start > 0 {
        encode_token("next", start.saturating_sub(limit))
    } else {
        String::new()
    };
    wire::ok_paged(
        POWERED_BY,
        json!(page),
        json!({"offset": wire::one(&q, "offset").unwrap_or(""), "next": next, "previous": previous,
               "expires_at": (chrono::Utc::now().timestamp() + 120) * 1_000_000_000, "limit": limit, "total": hosts.len()}),
    )
}

pub(crate) fn device_json(h: &Host) -> Value {
    let mut v = serde_json::to_value(h).expect("host serializes");
    let m = v.as_object_mut().expect("object");
    m.insert(
        "rtr_state".into(),
        json!(if h.online { "online" } else { "offline" }),
    );
    m.insert("meta".into(), json!({"version": "1234"}));
    v
}

fn entities(sim: &Shared, ids: &[String], max: usize) -> Response {
    if ids.is_empty() {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "ids is required");
    }
    if ids.len() > max {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!("too many ids: {} (maximum {max})", ids.len()),
        );
    }
    let fleet = sim.fleet.read().expect("fleet lock");
    let found: Vec<Value> = ids
        .iter()
        .filter_map(|id| fleet.host(id))
        .map(device_json)
        .collect();
    let missing: Vec<Value> = ids
        .iter()
        .filter(|id| fleet.host(id).is_none())
        .map(|id| json!({"code": 404, "message": format!("Device {id} not found")}))
        .collect();
    let status = if found.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    wire::json_response(
        status,
        json!({"meta": wire::meta(POWERED_BY), "errors": missing, "resources": found}),
    )
}

async fn get_devices(State(sim): State<Shared>, Query(q): Q) -> Response {
    entities(&sim, &wire::multi(&q, "ids"), 100)
}

async fn post_devices(State(sim): State<Shared>, body: Option<Json<Value>>) -> Response {
    let ids: Vec<String> = body
        .and_then(|Json(b)| b.get("ids").and_then(|v| v.as_array().cloned()))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    entities(&sim, &ids, 5_000)
}

async fn online_state(State(sim): State<Shared>, Query(q): Q) -> Response {
    let ids = wire::multi(&q, "ids");
    if ids.is_empty() {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "ids is required");
    }
    let fleet = sim.fleet.read().expect("fleet lock");
    let states: Vec<Value> = ids
        .iter()
        .map(|id| match fleet.host(id) {
            Some(h) => json!({"id": id, "cid": h.cid, "state": if h.online { "online" } else { "offline" }, "last_seen": h.last_seen}),
            None => json!({"id": id, "state": "unknown"}),
        })
        .collect();
    wire::ok(StatusCode::OK, POWERED_BY, json!(states))
}

fn select_groups<'f>(fleet: &'f Fleet, q: &[(String, String)]) -> Result<Vec<&'f Group>, Response> {
    let expr = parse_filter(q, fleet.groups.first(), HG_POWERED_BY)?;
    let mut groups: Vec<&Group> = fleet
        .groups
        .iter()
        .filter(|g| expr.as_ref().is_none_or(|e| fql::matches(e, *g)))
        .collect();
    sort_records(&mut groups, wire::one(q, "sort"));
    Ok(groups)
}

async fn query_groups(State(sim): State<Shared>, Query(q): Q) -> Response {
    groups_page(&sim, &q, |g| json!(g.id))
}

async fn combined_groups(State(sim): State<Shared>, Query(q): Q) -> Response {
    groups_page(&sim, &q, |g| json!(g))
}

fn groups_page(sim: &Shared, q: &[(String, String)], f: impl Fn(&Group) -> Value) -> Response {
    let fleet = sim.fleet.read().expect("fleet lock");
    let groups = match select_groups(&fleet, q) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let (offset, limit) = match offset_page(q, 100, 5_000, HG_POWERED_BY) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let page: Vec<Value> = groups
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|g| f(g))
        .collect();
    wire::ok_paged(
        HG_POWERED_BY,
        json!(page),
        json!({"offset": offset, "limit": limit, "total": groups.len()}),
    )
}

async fn get_groups(State(sim): State<Shared>, Query(q): Q) -> Response {
    let ids = wire::multi(&q, "ids");
    if ids.is_empty() {
        return wire::error(StatusCode::BAD_REQUEST, HG_POWERED_BY, "ids is required");
    }
    let fleet = sim.fleet.read().expect("fleet lock");
    let found: Vec<&Group> = ids
        .iter()
        .filter_map(|id| fleet.groups.iter().find(|g| &g.id == id))
        .collect();
    let errors: Vec<Value> = ids
        .iter()
        .filter(|id| !fleet.groups.iter().any(|g| &g.id == *id))
        .map(|id| json!({"code": 404, "message": format!("Host group {id} not found")}))
        .collect();
    let status = if found.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    wire::json_response(
        status,
        json!({"meta": wire::meta(HG_POWERED_BY), "errors": errors, "resources": found}),
    )
}

async fn query_members(State(sim): State<Shared>, Query(q): Q) -> Response {
    members(&sim, &q, |h| json!(h.device_id))
}

async fn combined_members(State(sim): State<Shared>, Query(q): Q) -> Response {
    members(&sim, &q, device_json)
}

fn members(sim: &Shared, q: &[(String, String)], f: impl Fn(&Host) -> Value) -> Response {
    let fleet = sim.fleet.read().expect("fleet lock");
    let group = wire::one(q, "id").unwrap_or("");
    if !fleet.groups.iter().any(|g| g.id == group) {
        return wire::error(
            StatusCode::NOT_FOUND,
            HG_POWERED_BY,
            format!("Host group '{group}' not found"),
        );
    }
    let hosts = match select(&fleet, q) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let members: Vec<&&Host> = hosts
        .iter()
        .filter(|h| h.groups.iter().any(|g| g == group))
        .collect();
    let (offset, limit) = match offset_page(q, 100, 5_000, HG_POWERED_BY) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let page: Vec<Value> = members
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|h| f(h))
        .collect();
    wire::ok_paged(
        HG_POWERED_BY,
        json!(page),
        json!({"offset": offset, "limit": limit, "total": members.len()}),
    )
}
