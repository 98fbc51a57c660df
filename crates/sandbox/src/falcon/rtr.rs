//! Real Time Response: single and batch sessions with expiry, commands (read-only, active responder,
//! admin), chunked status, queued sessions for offline hosts, get-files, and the put-files and
//! scripts libraries. Commands run on the host model of [`super::host`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete as delete_route, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fleet::{Host, Os, rfc3339};
use super::host::{Jobs, Model, Output, runscript_args};
use super::{Shared, Sim, wire};

const POWERED_BY: &str = "empower-api";
const QUEUED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const READ_ONLY: &[&str] = &[
    "cat", "cd", "clear", "env", "eventlog", "filehash", "getsid", "help", "history", "ipconfig",
    "ls", "mount", "netstat", "ps", "reg", "csrutil", "ifconfig", "users", "pwd",
];
const RESPONDER: &[&str] = &[
    "cp",
    "encrypt",
    "get",
    "kill",
    "map",
    "memdump",
    "mkdir",
    "mv",
    "restart",
    "rm",
    "runscript",
    "shutdown",
    "unmap",
    "update",
    "xmemdump",
    "zip",
    "tar",
    "umount",
];
const ADMIN: &[&str] = &["put", "run", "put-and-run", "falconscript", "cswindiag"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    ReadOnly,
    Responder,
    Admin,
}

impl Tier {
    fn allows(self, base: &str) -> bool {
        READ_ONLY.contains(&base)
            || (self != Tier::ReadOnly && RESPONDER.contains(&base))
            || (self == Tier::Admin && ADMIN.contains(&base))
    }
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    aid: String,
    user: String,
    origin: String,
    created_at: String,
    updated_at: String,
    expires: Instant,
    offline_queued: bool,
    deleted: bool,
    commands: Vec<String>,
}

#[derive(Debug, Clone)]
struct Command {
    cloud_request_id: String,
    session_id: String,
    aid: String,
    task_id: String,
    base_command: String,
    command_string: String,
    created_at: String,
    updated_at: String,
    output: Option<Output>,
}

#[derive(Debug, Clone)]
struct Batch {
    hosts: Vec<String>,
    sessions: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct GotFile {
    id: u64,
    session_id: String,
    cloud_request_id: String,
    name: String,
    sha256: String,
    content: Arc<Vec<u8>>,
    created_at: String,
}

#[derive(Debug, Clone, serde::Serialize)]
struct LibFile {
    id: String,
    name: String,
    description: String,
    comments_for_audit_log: String,
    sha256: String,
    size: usize,
    file_type: &'static str,
    platform: Vec<String>,
    permission_type: String,
    created_by: String,
    created_timestamp: String,
    modified_by: String,
    modified_timestamp: String,
    #[serde(skip)]
    content: Arc<Vec<u8>>,
}

/// All RTR state of one simulator.
#[derive(Debug, Default)]
pub(crate) struct Rtr {
    sessions: HashMap<String, Session>,
    by_user_host: HashMap<(String, String), String>,
    batches: HashMap<String, Batch>,
    commands: HashMap<String, Command>,
    pending: Vec<String>,
    files: Vec<GotFile>,
    batch_gets: HashMap<String, HashMap<String, u64>>,
    next_file: u64,
    put_files: Vec<LibFile>,
    scripts: Vec<LibFile>,
    /// Commands ever queued for each offline host (what a reconnecting laptop runs), deleted ones included.
    queued_per_host: HashMap<String, u64>,
    /// Queued commands deleted through the API, per host.
    deleted_per_host: HashMap<String, u64>,
    pub(crate) jobs: Jobs,
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn routes() -> Router<Shared> {
    let s = "/real-time-response";
    Router::new()
        .route(
            &format!("{s}/entities/sessions/v1"),
            post(init_session).delete(delete_session),
        )
        .route(
            &format!("{s}/entities/refresh-session/v1"),
            post(pulse_session),
        )
        .route(&format!("{s}/queries/sessions/v1"), get(list_all_sessions))
        .route(
            &format!("{s}/entities/sessions/GET/v1"),
            post(list_sessions),
        )
        .route(
            &format!("{s}/entities/queued-sessions/GET/v1"),
            post(list_queued),
        )
        .route(
            &format!("{s}/entities/queued-sessions/command/v1"),
            delete_route(delete_queued_command),
        )
        .route(
            &format!("{s}/entities/command/v1"),
            post(exec_read).get(status),
        )
        .route(
            &format!("{s}/entities/active-responder-command/v1"),
            post(exec_responder).get(status),
        )
        .route(
            &format!("{s}/entities/admin-command/v1"),
            post(exec_admin).get(status),
        )
        .route(
            &format!("{s}/combined/batch-init-session/v1"),
            post(batch_init),
        )
        .route(
            &format!("{s}/combined/batch-refresh-session/v1"),
            post(batch_refresh),
        )
        .route(&format!("{s}/combined/batch-command/v1"), post(batch_read))
        .route(
            &format!("{s}/combined/batch-active-responder-command/v1"),
            post(batch_responder),
        )
        .route(
            &format!("{s}/combined/batch-admin-command/v1"),
            post(batch_admin),
        )
        .route(
            &format!("{s}/combined/batch-get-command/v1"),
            post(batch_get).get(batch_get_status),
        )
        .route(
            &format!("{s}/entities/file/v2"),
            get(list_files).delete(delete_file),
        )
        .route(
            &format!("{s}/entities/file/v1"),
            get(list_files).delete(delete_file),
        )
        .route(
            &format!("{s}/entities/extracted-file-contents/v1"),
            get(file_contents),
        )
        .route(
            &format!("{s}/entities/put-files/v1"),
            post(create_put_file)
                .get(get_put_files)
                .delete(delete_put_file),
        )
        .route(
            &format!("{s}/entities/put-files/v2"),
            post(create_put_file).get(get_put_files),
        )
        .route(&format!("{s}/queries/put-files/v1"), get(query_put_files))
        .route(
            &format!("{s}/entities/scripts/v1"),
            post(create_script)
                .get(get_scripts)
                .delete(delete_script)
                .patch(update_script),
        )
        .route(
            &format!("{s}/entities/scripts/v2"),
            post(create_script).get(get_scripts).patch(update_script),
        )
        .route(&format!("{s}/queries/scripts/v1"), get(query_scripts))
        .route(
            &format!("{s}/queries/falcon-scripts/v1"),
            get(|| async {
                wire::ok_paged(
                    POWERED_BY,
                    json!([]),
                    json!({"offset": 0, "limit": 100, "total": 0}),
                )
            }),
        )
}

/// Background work: offline hosts coming online, queued commands running, collector jobs finishing.
pub(crate) async fn ticker(sim: Shared) {
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        tick(&sim);
    }
}

pub(crate) fn tick(sim: &Sim) {
    let now = Instant::now();
    sim.fleet.write().expect("fleet lock").advance(now);
    let fleet = sim.fleet.read().expect("fleet lock");
    let model = model(sim);
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    if !rtr.pending.is_empty() {
        let pending = std::mem::take(&mut rtr.pending);
        let mut still = Vec::new();
        for id in pending {
            let Some(cmd) = rtr.commands.get(&id).cloned() else {
                continue;
            };
            match fleet.host(&cmd.aid) {
                Some(h) if h.online => {
                    let out = run(
                        &mut rtr,
                        sim,
                        h,
                        &cmd.base_command,
                        &cmd.command_string,
                        &cmd.session_id,
                        &cmd.cloud_request_id,
                        &model,
                        now,
                    );
                    if let Some(c) = rtr.commands.get_mut(&id) {
                        c.output = Some(out);
                        c.updated_at = rfc3339(chrono::Utc::now());
                    }
                }
                Some(_) => still.push(id),
                None => {}
            }
        }
        rtr.pending = still;
    }
    rtr.jobs.advance(now, &sim.bucket);
}

fn model(sim: &Sim) -> Model {
    let k = sim.knobs();
    Model {
        failure_rate: k.failure_rate,
        collector_duration: Duration::from_millis(k.collector_duration_ms),
        seed: sim.seed,
    }
}

fn ls(host: &Host) -> String {
    match host.os {
        Os::Windows => "Directory listing for C:\\ -\n\nName                                     Type         Size (bytes)    Size (MB)       Last Modified (UTC+0)     Created (UTC+0)\n----                                     ----         ------------    ---------       ---------------------     ---------------\nProgram Files                            <Directory>  --              --              2026-10-01T08:00:00Z      2024-01-10T09:00:00Z\nUsers                                    <Directory>  --              --              2026-10-01T08:00:00Z      2024-01-10T09:00:00Z\nWindows                                  <Directory>  --              --              2026-11-20T08:00:00Z      2024-01-10T09:00:00Z\n".into(),
        _ => "drwxr-xr-x  2 root root 4096 Nov 20 08:00 bin\ndrwxr-xr-x 98 root root 4096 Nov 20 08:00 etc\ndrwxr-xr-x  3 root root 4096 Nov 20 08:00 home\ndrwxrwxrwt 12 root root 4096 Nov 22 08:00 tmp\ndrwxr-xr-x 14 root root 4096 Nov 20 08:00 var\n".into(),
    }
}

fn well_known_file(host: &Host, path: &str) -> Option<String> {
    let p = path.trim_matches(['"', '\'']);
    match host.os {
        Os::Windows if p.eq_ignore_ascii_case("C:\\Windows\\System32\\drivers\\etc\\hosts") => {
            Some("# Copyright (c) 1993-2009 Microsoft Corp.\n127.0.0.1       localhost\n".into())
        }
        Os::Linux | Os::Mac if p == "/etc/hosts" => Some(format!(
            "127.0.0.1 localhost\n{} {}\n",
            host.local_ip, host.hostname
        )),
        Os::Linux if p == "/etc/os-release" => {
            Some("NAME=\"Ubuntu\"\nVERSION=\"22.04.5 LTS (Jammy Jellyfish)\"\n".into())
        }
        _ => None,
    }
}

/// Runs one command on an online host.
#[allow(clippy::too_many_arguments)]
fn run(
    rtr: &mut Rtr,
    sim: &Sim,
    host: &Host,
    base: &str,
    command_string: &str,
    session_id: &str,
    cloud_request_id: &str,
    model: &Model,
    now: Instant,
) -> Output {
    let arg = command_string
        .trim()
        .strip_prefix(base)
        .unwrap_or("")
        .trim()
        .to_string();
    let not_found = |p: &str| Output {
        stdout: String::new(),
        stderr: format!("Cannot find path '{p}' because it does not exist.\n"),
    };
    match base {
        "pwd" => Output {
            stdout: if host.os == Os::Windows {
                "C:\\\n".into()
            } else {
                "/\n".into()
            },
            stderr: String::new(),
        },
        "ls" | "dir" => Output {
            stdout: ls(host),
            stderr: String::new(),
        },
        "ps" => {
            let mut out = String::from("Name                 PID\n");
            out.push_str(if host.os == Os::Windows {
                "System               4\nsvchost.exe          812\nCSFalconService.exe  2240\n"
            } else {
                "systemd              1\nsshd                 812\nfalcon-sensor        2240\n"
            });
            for j in rtr
                .jobs
                .jobs
                .values()
                .filter(|j| j.aid == host.device_id && j.exit_code.is_none() && !j.vanished)
            {
                out.push_str(&format!(
                    "{:<20} {}\n",
                    if host.os == Os::Windows {
                        "cado-host.exe"
                    } else {
                        "cado-host"
                    },
                    j.pid
                ));
            }
            Output {
                stdout: out,
                stderr: String::new(),
            }
        }
        "cat" => match rtr
            .jobs
            .file(host, &arg, now)
            .or_else(|| well_known_file(host, &arg))
        {
            Some(c) => Output {
                stdout: c,
                stderr: String::new(),
            },
            None => not_found(&arg),
        },
        "cd" | "mkdir" | "rm" | "cp" | "mv" | "kill" | "clear" | "history" => Output::default(),
        "env" => Output {
            stdout: format!(
                "HOSTNAME={}\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n",
                host.hostname
            ),
            stderr: String::new(),
        },
        "ipconfig" | "ifconfig" | "netstat" => Output {
            stdout: format!("inet {}\n", host.local_ip),
            stderr: String::new(),
        },
        "get" => {
            let path = arg.trim_matches(['"', '\'']).to_string();
            match rtr
                .jobs
                .file(host, &path, now)
                .or_else(|| well_known_file(host, &path))
            {
                Some(c) => {
                    record_file(rtr, session_id, cloud_request_id, &path, c.into_bytes());
                    Output::default()
                }
                None => not_found(&path),
            }
        }
        "put" => {
            let name = arg.trim_matches(['"', '\'']);
            if rtr.put_files.iter().any(|f| f.name == name) {
                Output::default()
            } else {
                Output {
                    stdout: String::new(),
                    stderr: format!("put-file '{name}' not found in the put-files library\n"),
                }
            }
        }
        "runscript" => {
            let args = runscript_args(command_string);
            if let Some(raw) = args.get("raw") {
                rtr.jobs.run_script(host, raw, model, now)
            } else if let Some(name) = args.get("cloudfile") {
                let script = rtr
                    .scripts
                    .iter()
                    .find(|s| &s.name == name)
                    .map(|s| String::from_utf8_lossy(&s.content).into_owned());
                match script {
                    Some(content) => rtr.jobs.run_script(host, &content, model, now),
                    None => Output {
                        stdout: String::new(),
                        stderr: format!("Could not find cloud file: {name}\n"),
                    },
                }
            } else if let Some(path) = args.get("hostpath") {
                not_found(path)
            } else {
                Output {
                    stdout: String::new(),
                    stderr: "runscript requires one of -CloudFile, -Raw or -HostPath\n".into(),
                }
            }
        }
        other => {
            let _ = sim;
            Output {
                stdout: String::new(),
                stderr: format!("{other}: command not supported on this host by the sandbox\n"),
            }
        }
    }
}

fn record_file(
    rtr: &mut Rtr,
    session_id: &str,
    cloud_request_id: &str,
    name: &str,
    content: Vec<u8>,
) -> u64 {
    rtr.next_file += 1;
    let id = rtr.next_file;
    rtr.files.push(GotFile {
        id,
        session_id: session_id.into(),
        cloud_request_id: cloud_request_id.into(),
        name: name.into(),
        sha256: hex::encode(Sha256::digest(&content)),
        content: Arc::new(content),
        created_at: rfc3339(chrono::Utc::now()),
    });
    id
}

fn live(s: &Session, now: Instant) -> bool {
    !s.deleted && s.expires > now
}

/// Opens (or reuses) the session of `user` on `aid`. `Err` carries a per-host error.
fn open_session(
    rtr: &mut Rtr,
    host: Option<&Host>,
    aid: &str,
    user: &str,
    queue_offline: bool,
    ttl: Duration,
    origin: &str,
) -> Result<Session, (u16, String)> {
    let Some(host) = host else {
        return Err((40401, format!("Could not find device {aid}")));
    };
    if !host.online && !queue_offline {
        return Err((40401, "Could not establish sensor comms".into()));
    }
    let now = Instant::now();
    let expires = if host.online {
        now + ttl
    } else {
        now + QUEUED_TTL
    };
    if let Some(id) = rtr
        .by_user_host
        .get(&(user.to_string(), aid.to_string()))
        .cloned()
        && let Some(s) = rtr.sessions.get_mut(&id)
        && live(s, now)
    {
        s.expires = s.expires.max(expires);
        s.offline_queued = s.offline_queued || !host.online;
        s.updated_at = rfc3339(chrono::Utc::now());
        return Ok(s.clone());
    }
    let t = rfc3339(chrono::Utc::now());
    let s = Session {
        id: uuid(),
        aid: aid.into(),
        user: user.into(),
        origin: origin.into(),
        created_at: t.clone(),
        updated_at: t,
        expires,
        offline_queued: !host.online,
        deleted: false,
        commands: vec![],
    };
    rtr.by_user_host
        .insert((user.to_string(), aid.to_string()), s.id.clone());
    rtr.sessions.insert(s.id.clone(), s.clone());
    Ok(s)
}

fn init_json(s: &Session, host: &Host, existing: usize) -> Value {
    json!({
        "session_id": s.id, "created_at": s.created_at, "existing_aid_sessions": existing,
        "offline_queued": s.offline_queued, "scripts": [], "device_id": s.aid,
        "platform": host.platform_name.to_lowercase(), "pwd": if host.os == Os::Windows { "C:\\" } else { "/" },
        "previous_commands": [],
    })
}

fn body_str<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn body_bool(body: &Value, key: &str) -> bool {
    body.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn body_strings(body: &Value, key: &str) -> Vec<String> {
    body.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

type Q = Query<Vec<(String, String)>>;
type B = Option<Json<Value>>;

fn json_body(body: B) -> Value {
    body.map(|Json(b)| b).unwrap_or(Value::Null)
}

fn check_timeouts(q: &[(String, String)]) -> Result<(), Response> {
    if let Some(t) = wire::int_param(q, "timeout", POWERED_BY)?
        && !(1..=600).contains(&t)
    {
        return Err(wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!("timeout must be between 1 and 600 seconds, got {t}"),
        ));
    }
    Ok(())
}

async fn init_session(State(sim): State<Shared>, Query(q): Q, body: B) -> Response {
    if let Err(r) = check_timeouts(&q) {
        return r;
    }
    let body = json_body(body);
    let Some(aid) = body_str(&body, "device_id") else {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "device_id is required");
    };
    let ttl = Duration::from_secs(sim.knobs().session_ttl_secs);
    let fleet = sim.fleet.read().expect("fleet lock");
    let host = fleet.host(aid);
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let user = wire::client_id();
    match open_session(
        &mut rtr,
        host,
        aid,
        &user,
        body_bool(&body, "queue_offline"),
        ttl,
        body_str(&body, "origin").unwrap_or(""),
    ) {
        Ok(s) => {
            let existing = rtr
                .sessions
                .values()
                .filter(|o| o.aid == aid && live(o, Instant::now()))
                .count();
            wire::ok(
                StatusCode::CREATED,
                POWERED_BY,
                json!([init_json(&s, host.expect("opened"), existing)]),
            )
        }
        Err((code, message)) => wire::json_response(
            StatusCode::NOT_FOUND,
            json!({"meta": wire::meta(POWERED_BY), "errors": [{"code": code, "message": message}], "resources": null}),
        ),
    }
}

async fn delete_session(State(sim): State<Shared>, Query(q): Q) -> Response {
    let id = wire::one(&q, "session_id").unwrap_or("");
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    match rtr.sessions.get_mut(id) {
        Some(s) if !s.deleted => {
            s.deleted = true;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("session {id} not found"),
        ),
    }
}

async fn pulse_session(State(sim): State<Shared>, body: B) -> Response {
    let body = json_body(body);
    let Some(aid) = body_str(&body, "device_id") else {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "device_id is required");
    };
    let ttl = Duration::from_secs(sim.knobs().session_ttl_secs);
    let fleet = sim.fleet.read().expect("fleet lock");
    let Some(host) = fleet.host(aid) else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("Could not find device {aid}"),
        );
    };
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let user = wire::client_id();
    let now = Instant::now();
    let Some(id) = rtr.by_user_host.get(&(user, aid.to_string())).cloned() else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            "no session to refresh for this device",
        );
    };
    match rtr.sessions.get_mut(&id) {
        Some(s) if live(s, now) => {
            s.expires = s.expires.max(now + ttl);
            s.updated_at = rfc3339(chrono::Utc::now());
            let s = s.clone();
            wire::ok(
                StatusCode::CREATED,
                POWERED_BY,
                json!([init_json(&s, host, 1)]),
            )
        }
        _ => wire::error(StatusCode::NOT_FOUND, POWERED_BY, "session expired"),
    }
}

async fn list_all_sessions(State(sim): State<Shared>, Query(q): Q) -> Response {
    let rtr = sim.rtr.lock().expect("rtr lock");
    let user = wire::client_id();
    let now = Instant::now();
    let ids: Vec<&str> = rtr
        .sessions
        .values()
        .filter(|s| s.user == user && live(s, now))
        .map(|s| s.id.as_str())
        .collect();
    let limit = wire::int_param(&q, "limit", POWERED_BY)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as usize;
    let page: Vec<&str> = ids.iter().take(limit).copied().collect();
    wire::ok_paged(
        POWERED_BY,
        json!(page),
        json!({"offset": 0, "limit": limit, "total": ids.len()}),
    )
}

fn command_json(c: &Command) -> Value {
    let (complete, stdout, stderr) = match &c.output {
        Some(o) => (true, o.stdout.as_str(), o.stderr.as_str()),
        None => (false, "", ""),
    };
    json!({"cloud_request_id": c.cloud_request_id, "base_command": c.base_command, "command_string": c.command_string,
           "status": if complete { "FINISHED" } else { "PENDING" }, "status_text": "", "complete": complete,
           "stdout": stdout, "stderr": stderr, "created_at": c.created_at, "updated_at": c.updated_at, "deleted_at": null})
}

async fn list_sessions(State(sim): State<Shared>, body: B) -> Response {
    let ids = body_strings(&json_body(body), "ids");
    let fleet = sim.fleet.read().expect("fleet lock");
    let rtr = sim.rtr.lock().expect("rtr lock");
    let user = wire::client_id();
    let found: Vec<Value> = ids
        .iter()
        .filter_map(|id| rtr.sessions.get(id))
        .filter(|s| s.user == user)
        .map(|s| {
            let host = fleet.host(&s.aid);
            json!({"id": s.id, "cid": sim.cid.to_lowercase(), "device_id": s.aid, "hostname": host.map(|h| h.hostname.as_str()),
                   "user_id": s.user, "origin": s.origin, "created_at": s.created_at, "updated_at": s.updated_at,
                   "deleted_at": if s.deleted { Some(s.updated_at.clone()) } else { None },
                   "offline_queued": s.offline_queued,
                   "commands_queued": s.commands.iter().any(|c| rtr.commands.get(c).is_some_and(|c| c.output.is_none())),
                   "cloud_request_ids": s.commands, "platform_name": host.map(|h| h.platform_name),
                   "logs": s.commands.iter().filter_map(|c| rtr.commands.get(c)).map(|c| json!({"session_id": s.id, "cloud_request_id": c.cloud_request_id, "base_command": c.base_command, "command_string": c.command_string, "created_at": c.created_at, "updated_at": c.updated_at})).collect::<Vec<_>>()})
        })
        .collect();
    wire::ok(StatusCode::OK, POWERED_BY, json!(found))
}

async fn list_queued(State(sim): State<Shared>, body: B) -> Response {
    let ids = body_strings(&json_body(body), "ids");
    let rtr = sim.rtr.lock().expect("rtr lock");
    let found: Vec<Value> = ids
        .iter()
        .filter_map(|id| rtr.sessions.get(id))
        .filter(|s| s.offline_queued)
        .map(|s| {
            let cmds: Vec<Value> = s.commands.iter().filter_map(|c| rtr.commands.get(c)).map(command_json).collect();
            let pending = cmds.iter().any(|c| c["complete"] == json!(false));
            json!({"id": s.id, "aid": s.aid, "user_id": s.user, "status": if pending { "PENDING" } else { "FINISHED" },
                   "created_at": s.created_at, "updated_at": s.updated_at, "deleted_at": null, "Commands": cmds})
        })
        .collect();
    wire::ok(StatusCode::OK, POWERED_BY, json!(found))
}

async fn delete_queued_command(State(sim): State<Shared>, Query(q): Q) -> Response {
    let session = wire::one(&q, "session_id").unwrap_or("").to_string();
    let req = wire::one(&q, "cloud_request_id").unwrap_or("").to_string();
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let before = rtr.pending.len();
    rtr.pending.retain(|p| p != &req);
    if rtr.pending.len() == before {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            "queued command not found",
        );
    }
    if let Some(s) = rtr.sessions.get_mut(&session) {
        s.commands.retain(|c| c != &req);
    }
    if let Some(c) = rtr.commands.remove(&req) {
        *rtr.deleted_per_host.entry(c.aid).or_default() += 1;
    }
    wire::ok(StatusCode::OK, POWERED_BY, json!([]))
}

/// Executes (or queues) a command in a session; `Ok((command, queued))` or a per-host error.
fn execute(
    sim: &Sim,
    rtr: &mut Rtr,
    host: &Host,
    session_id: &str,
    base: &str,
    command_string: &str,
) -> Result<(Command, bool), (u16, String)> {
    let now = Instant::now();
    let session = rtr
        .sessions
        .get(session_id)
        .filter(|s| live(s, now))
        .cloned()
        .ok_or((40407, "Session not found or expired".to_string()))?;
    let t = rfc3339(chrono::Utc::now());
    let mut cmd = Command {
        cloud_request_id: uuid(),
        session_id: session.id.clone(),
        aid: host.device_id.clone(),
        task_id: uuid(),
        base_command: base.into(),
        command_string: command_string.into(),
        created_at: t.clone(),
        updated_at: t,
        output: None,
    };
    let queued = if host.online {
        let model = model(sim);
        cmd.output = Some(run(
            rtr,
            sim,
            host,
            base,
            command_string,
            &session.id,
            &cmd.cloud_request_id,
            &model,
            now,
        ));
        false
    } else if session.offline_queued {
        rtr.pending.push(cmd.cloud_request_id.clone());
        *rtr.queued_per_host
            .entry(host.device_id.clone())
            .or_default() += 1;
        // adding a command extends the queued session's life (rtr-triage.md 2.2, "Offline hosts")
        if let Some(s) = rtr.sessions.get_mut(&session.id) {
            s.expires = s.expires.max(now + QUEUED_TTL);
        }
        true
    } else {
        return Err((40401, "Could not establish sensor comms".into()));
    };
    if let Some(s) = rtr.sessions.get_mut(&session.id) {
        s.commands.push(cmd.cloud_request_id.clone());
    }
    rtr.commands
        .insert(cmd.cloud_request_id.clone(), cmd.clone());
    Ok((cmd, queued))
}

fn check_command(tier: Tier, base: &str, command_string: &str) -> Result<(), Response> {
    if base.is_empty() || command_string.trim().is_empty() {
        return Err(wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "base_command and command_string are required",
        ));
    }
    if command_string.split_whitespace().next() != Some(base) {
        return Err(wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!("base_command '{base}' does not match command_string"),
        ));
    }
    if !tier.allows(base) {
        return Err(wire::error(
            StatusCode::FORBIDDEN,
            POWERED_BY,
            format!("command '{base}' is not allowed for this endpoint's role"),
        ));
    }
    Ok(())
}

async fn exec(sim: Shared, tier: Tier, body: Value) -> Response {
    let base = body_str(&body, "base_command").unwrap_or("").to_string();
    let command_string = body_str(&body, "command_string").unwrap_or("").to_string();
    if let Err(r) = check_command(tier, &base, &command_string) {
        return r;
    }
    let Some(session_id) = body_str(&body, "session_id") else {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "session_id is required",
        );
    };
    let fleet = sim.fleet.read().expect("fleet lock");
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let Some(aid) = rtr.sessions.get(session_id).map(|s| s.aid.clone()) else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("session {session_id} not found"),
        );
    };
    let Some(host) = fleet.host(&aid) else {
        return wire::error(StatusCode::NOT_FOUND, POWERED_BY, "device not found");
    };
    match execute(&sim, &mut rtr, host, session_id, &base, &command_string) {
        Ok((cmd, queued)) => wire::ok(
            StatusCode::CREATED,
            POWERED_BY,
            json!([{"cloud_request_id": cmd.cloud_request_id, "session_id": cmd.session_id, "queued_command_offline": queued}]),
        ),
        Err((code, message)) => wire::json_response(
            StatusCode::NOT_FOUND,
            json!({"meta": wire::meta(POWERED_BY), "errors": [{"code": code, "message": message}], "resources": null}),
        ),
    }
}

async fn exec_read(State(sim): State<Shared>, body: B) -> Response {
    exec(sim, Tier::ReadOnly, json_body(body)).await
}
async fn exec_responder(State(sim): State<Shared>, body: B) -> Response {
    exec(sim, Tier::Responder, json_body(body)).await
}
async fn exec_admin(State(sim): State<Shared>, body: B) -> Response {
    exec(sim, Tier::Admin, json_body(body)).await
}

/// Command status with stdout chunked by `sequence_id`.
async fn status(State(sim): State<Shared>, Query(q): Q) -> Response {
    let id = wire::one(&q, "cloud_request_id").unwrap_or("");
    let seq = match wire::int_param(&q, "sequence_id", POWERED_BY) {
        Ok(s) => s.unwrap_or(0).max(0) as usize,
        Err(r) => return r,
    };
    let chunk = sim.knobs().stdout_chunk_bytes.max(16);
    let rtr = sim.rtr.lock().expect("rtr lock");
    let Some(c) = rtr.commands.get(id) else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("cloud_request_id {id} not found"),
        );
    };
    let (complete, stdout, stderr) = match &c.output {
        None => (false, String::new(), String::new()),
        Some(o) => {
            let bytes = o.stdout.as_bytes();
            let chunks = bytes.len().div_ceil(chunk).max(1);
            let start = (seq * chunk).min(bytes.len());
            let end = ((seq + 1) * chunk).min(bytes.len());
            let last = seq + 1 >= chunks;
            (
                last,
                String::from_utf8_lossy(&bytes[start..end]).into_owned(),
                if last {
                    o.stderr.clone()
                } else {
                    String::new()
                },
            )
        }
    };
    wire::ok(
        StatusCode::OK,
        POWERED_BY,
        json!([{"session_id": c.session_id, "task_id": c.task_id, "complete": complete, "stdout": stdout, "stderr": stderr,
                "base_command": c.base_command, "sequence_id": seq}]),
    )
}

#[allow(clippy::too_many_arguments)]
fn host_result(
    aid: &str,
    session_id: &str,
    task_id: &str,
    complete: bool,
    out: Option<&Output>,
    base: &str,
    queued: bool,
    errors: Value,
) -> Value {
    json!({"aid": aid, "session_id": session_id, "task_id": task_id, "complete": complete,
           "stdout": out.map(|o| o.stdout.as_str()).unwrap_or(""), "stderr": out.map(|o| o.stderr.as_str()).unwrap_or(""),
           "base_command": base, "errors": errors, "query_time": 0.0, "offline_queued": queued, "sequence_id": 0})
}

async fn batch_init(State(sim): State<Shared>, Query(q): Q, body: B) -> Response {
    if let Err(r) = check_timeouts(&q) {
        return r;
    }
    let body = json_body(body);
    let ids = body_strings(&body, "host_ids");
    if ids.is_empty() {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "host_ids is required");
    }
    if ids.len() > 10_000 {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            format!("at most 10000 hosts per batch session, got {}", ids.len()),
        );
    }
    let queue_offline = body_bool(&body, "queue_offline");
    let ttl = Duration::from_secs(sim.knobs().session_ttl_secs);
    let fleet = sim.fleet.read().expect("fleet lock");
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let user = wire::client_id();
    let existing = body_str(&body, "existing_batch_id")
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    let batch_id = match &existing {
        Some(b) if rtr.batches.contains_key(b) => b.clone(),
        Some(b) => {
            return wire::error(
                StatusCode::NOT_FOUND,
                POWERED_BY,
                format!("batch {b} not found"),
            );
        }
        None => uuid(),
    };
    let mut resources = serde_json::Map::new();
    let mut opened = HashMap::new();
    for aid in &ids {
        match open_session(
            &mut rtr,
            fleet.host(aid),
            aid,
            &user,
            queue_offline,
            ttl,
            "batch",
        ) {
            Ok(s) => {
                resources.insert(
                    aid.clone(),
                    host_result(
                        aid,
                        &s.id,
                        &uuid(),
                        true,
                        None,
                        "",
                        s.offline_queued,
                        json!([]),
                    ),
                );
                opened.insert(aid.clone(), s.id);
            }
            Err((code, message)) => {
                resources.insert(
                    aid.clone(),
                    host_result(
                        aid,
                        "",
                        "",
                        false,
                        None,
                        "",
                        false,
                        json!([{"code": code, "message": message}]),
                    ),
                );
            }
        }
    }
    if opened.is_empty() {
        return wire::json_response(
            StatusCode::NOT_FOUND,
            json!({"meta": wire::meta(POWERED_BY), "errors": [{"code": 404, "message": "no successful hosts initialized on RTR"}], "resources": resources, "batch_id": ""}),
        );
    }
    let batch = rtr.batches.entry(batch_id.clone()).or_insert(Batch {
        hosts: vec![],
        sessions: HashMap::new(),
    });
    for (aid, sid) in opened {
        if !batch.hosts.contains(&aid) {
            batch.hosts.push(aid.clone());
        }
        batch.sessions.insert(aid, sid);
    }
    wire::json_response(
        StatusCode::CREATED,
        json!({"meta": wire::meta(POWERED_BY), "batch_id": batch_id, "resources": resources, "errors": []}),
    )
}

async fn batch_refresh(State(sim): State<Shared>, Query(q): Q, body: B) -> Response {
    if let Err(r) = check_timeouts(&q) {
        return r;
    }
    let body = json_body(body);
    let batch_id = body_str(&body, "batch_id").unwrap_or("").to_string();
    let remove = body_strings(&body, "hosts_to_remove");
    let ttl = Duration::from_secs(sim.knobs().session_ttl_secs);
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let Some(batch) = rtr.batches.get_mut(&batch_id) else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("batch {batch_id} not found"),
        );
    };
    batch.hosts.retain(|h| !remove.contains(h));
    for h in &remove {
        batch.sessions.remove(h);
    }
    let sessions: Vec<(String, String)> = batch
        .sessions
        .iter()
        .map(|(a, s)| (a.clone(), s.clone()))
        .collect();
    let now = Instant::now();
    let mut resources = serde_json::Map::new();
    for (aid, sid) in sessions {
        let errors = match rtr.sessions.get_mut(&sid) {
            Some(s) if live(s, now) => {
                s.expires = s.expires.max(now + ttl);
                json!([])
            }
            _ => json!([{"code": 40407, "message": "Session not found or expired"}]),
        };
        resources.insert(
            aid.clone(),
            json!({"aid": aid, "session_id": sid, "errors": errors}),
        );
    }
    wire::json_response(
        StatusCode::CREATED,
        json!({"meta": wire::meta(POWERED_BY), "resources": resources, "errors": []}),
    )
}

async fn batch_exec(sim: Shared, tier: Tier, q: Vec<(String, String)>, body: Value) -> Response {
    if let Err(r) = check_timeouts(&q) {
        return r;
    }
    let base = body_str(&body, "base_command").unwrap_or("").to_string();
    let command_string = body_str(&body, "command_string").unwrap_or("").to_string();
    if let Err(r) = check_command(tier, &base, &command_string) {
        return r;
    }
    let batch_id = body_str(&body, "batch_id").unwrap_or("").to_string();
    let optional = body_strings(&body, "optional_hosts");
    let fleet = sim.fleet.read().expect("fleet lock");
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let Some(batch) = rtr.batches.get(&batch_id).cloned() else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("batch {batch_id} not found"),
        );
    };
    let targets: Vec<String> = if optional.is_empty() {
        batch.hosts.clone()
    } else {
        optional
    };
    let mut resources = serde_json::Map::new();
    for aid in targets {
        let (Some(sid), Some(host)) = (batch.sessions.get(&aid), fleet.host(&aid)) else {
            resources.insert(
                aid.clone(),
                host_result(
                    &aid,
                    "",
                    "",
                    false,
                    None,
                    &base,
                    false,
                    json!([{"code": 40401, "message": "Host is not part of this batch session"}]),
                ),
            );
            continue;
        };
        let value = match execute(&sim, &mut rtr, host, sid, &base, &command_string) {
            Ok((cmd, queued)) => host_result(
                &aid,
                sid,
                &cmd.task_id,
                cmd.output.is_some(),
                cmd.output.as_ref(),
                &base,
                queued,
                json!([]),
            ),
            Err((code, message)) => host_result(
                &aid,
                sid,
                "",
                false,
                None,
                &base,
                false,
                json!([{"code": code, "message": message}]),
            ),
        };
        resources.insert(aid, value);
    }
    wire::json_response(
        StatusCode::CREATED,
        json!({"meta": wire::meta(POWERED_BY), "combined": {"resources": resources}, "errors": []}),
    )
}

async fn batch_read(State(sim): State<Shared>, Query(q): Q, body: B) -> Response {
    batch_exec(sim, Tier::ReadOnly, q, json_body(body)).await
}
async fn batch_responder(State(sim): State<Shared>, Query(q): Q, body: B) -> Response {
    batch_exec(sim, Tier::Responder, q, json_body(body)).await
}
async fn batch_admin(State(sim): State<Shared>, Query(q): Q, body: B) -> Response {
    batch_exec(sim, Tier::Admin, q, json_body(body)).await
}

async fn batch_get(State(sim): State<Shared>, Query(q): Q, body: B) -> Response {
    let body = json_body(body);
    let Some(path) = body_str(&body, "file_path").map(str::to_string) else {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "file_path is required");
    };
    let mut body = body.clone();
    body["base_command"] = json!("get");
    body["command_string"] = json!(format!("get {path}"));
    let response = batch_exec(sim.clone(), Tier::Responder, q, body).await;
    // Re-read the files recorded by that command to build the request id.
    let (parts, bytes) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(bytes, usize::MAX).await else {
        return wire::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            POWERED_BY,
            "internal error",
        );
    };
    let mut doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if parts.status != StatusCode::CREATED {
        return wire::json_response(parts.status, doc);
    }
    let req_id = uuid();
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let mut files = HashMap::new();
    if let Some(res) = doc["combined"]["resources"].as_object() {
        for (aid, r) in res {
            let sid = r["session_id"].as_str().unwrap_or("");
            if let Some(f) = rtr
                .files
                .iter()
                .rev()
                .find(|f| f.session_id == sid && f.name == path)
            {
                files.insert(aid.clone(), f.id);
            }
        }
    }
    rtr.batch_gets.insert(req_id.clone(), files);
    doc["batch_get_cmd_req_id"] = json!(req_id);
    wire::json_response(StatusCode::CREATED, doc)
}

fn file_json(f: &GotFile, rtr_aid: Option<&str>) -> Value {
    json!({"id": f.id, "session_id": f.session_id, "cloud_request_id": f.cloud_request_id, "name": f.name,
           "sha256": f.sha256, "size": f.content.len(), "created_at": f.created_at, "updated_at": f.created_at,
           "deleted_at": null, "progress": 100, "stage": "done", "status": "complete", "complete": true,
           "error_message": "", "aid": rtr_aid})
}

async fn batch_get_status(State(sim): State<Shared>, Query(q): Q) -> Response {
    let id = wire::one(&q, "batch_get_cmd_req_id").unwrap_or("");
    let rtr = sim.rtr.lock().expect("rtr lock");
    let Some(files) = rtr.batch_gets.get(id) else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("batch get request {id} not found"),
        );
    };
    let mut resources = serde_json::Map::new();
    for (aid, fid) in files {
        if let Some(f) = rtr.files.iter().find(|f| f.id == *fid) {
            resources.insert(aid.clone(), file_json(f, None));
        }
    }
    wire::json_response(
        StatusCode::OK,
        json!({"meta": wire::meta(POWERED_BY), "resources": resources, "errors": []}),
    )
}

async fn list_files(State(sim): State<Shared>, Query(q): Q) -> Response {
    let sid = wire::one(&q, "session_id").unwrap_or("");
    let rtr = sim.rtr.lock().expect("rtr lock");
    let files: Vec<Value> = rtr
        .files
        .iter()
        .filter(|f| f.session_id == sid)
        .map(|f| file_json(f, None))
        .collect();
    wire::ok(StatusCode::OK, POWERED_BY, json!(files))
}

async fn delete_file(State(sim): State<Shared>, Query(q): Q) -> Response {
    let ids = wire::multi(&q, "ids");
    let sid = wire::one(&q, "session_id").unwrap_or("").to_string();
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let before = rtr.files.len();
    rtr.files.retain(|f| {
        !(f.session_id == sid && (ids.contains(&f.id.to_string()) || ids.contains(&f.sha256)))
    });
    if rtr.files.len() == before {
        return wire::error(StatusCode::NOT_FOUND, POWERED_BY, "file not found");
    }
    wire::ok(StatusCode::OK, POWERED_BY, json!([]))
}

async fn file_contents(State(sim): State<Shared>, Query(q): Q) -> Response {
    let sid = wire::one(&q, "session_id").unwrap_or("");
    let sha = wire::one(&q, "sha256").unwrap_or("");
    let rtr = sim.rtr.lock().expect("rtr lock");
    match rtr
        .files
        .iter()
        .find(|f| f.session_id == sid && f.sha256 == sha)
    {
        // Not a real 7-Zip archive: the simulator serves the file's bytes as they are.
        Some(f) => (
            [(header::CONTENT_TYPE, "application/x-7z-compressed")],
            Bytes::from(f.content.as_ref().clone()),
        )
            .into_response(),
        None => wire::error(StatusCode::NOT_FOUND, POWERED_BY, "file not found"),
    }
}

/// Fields of a multipart library upload.
async fn read_multipart(
    mut mp: Multipart,
) -> Result<HashMap<String, (Vec<u8>, Option<String>)>, Response> {
    let mut fields = HashMap::new();
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let file_name = field.file_name().map(str::to_string);
                let data = field.bytes().await.map_err(|e| {
                    wire::error(
                        StatusCode::BAD_REQUEST,
                        POWERED_BY,
                        format!("bad multipart body: {e}"),
                    )
                })?;
                fields
                    .entry(name)
                    .or_insert_with(|| (Vec::new(), file_name))
                    .0
                    .extend_from_slice(&data);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(wire::error(
                    StatusCode::BAD_REQUEST,
                    POWERED_BY,
                    format!("bad multipart body: {e}"),
                ));
            }
        }
    }
    Ok(fields)
}

fn text(fields: &HashMap<String, (Vec<u8>, Option<String>)>, key: &str) -> Option<String> {
    fields
        .get(key)
        .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
}

fn lib_entry(
    fields: &HashMap<String, (Vec<u8>, Option<String>)>,
    script: bool,
) -> Result<LibFile, String> {
    let content = match (fields.get("file"), fields.get("content")) {
        (Some((b, _)), _) => b.clone(),
        (None, Some((b, _))) if script => b.clone(),
        _ => return Err("file is required".into()),
    };
    let description = text(fields, "description")
        .filter(|d| !d.is_empty())
        .ok_or("description is required")?;
    let name = text(fields, "name")
        .filter(|n| !n.is_empty())
        .or_else(|| fields.get("file").and_then(|(_, f)| f.clone()))
        .ok_or("name is required")?;
    if name.chars().count() > 32_766 {
        return Err("name must be at most 32766 characters".into());
    }
    let comments = text(fields, "comments_for_audit_log").unwrap_or_default();
    if comments.chars().count() > 4_096 {
        return Err("comments_for_audit_log must be at most 4096 characters".into());
    }
    let t = rfc3339(chrono::Utc::now());
    let user = wire::client_id();
    Ok(LibFile {
        id: hex::encode(&Sha256::digest(format!("{name}:{}", uuid()))[..16]),
        sha256: hex::encode(Sha256::digest(&content)),
        size: content.len(),
        file_type: if script { "script" } else { "binary" },
        platform: text(fields, "platform")
            .map(|p| p.split(',').map(str::to_string).collect())
            .unwrap_or_else(|| vec!["windows".into()]),
        permission_type: text(fields, "permission_type").unwrap_or_else(|| "private".into()),
        name,
        description,
        comments_for_audit_log: comments,
        created_by: user.clone(),
        created_timestamp: t.clone(),
        modified_by: user,
        modified_timestamp: t,
        content: Arc::new(content),
    })
}

fn written(n: usize) -> Response {
    let mut meta = wire::meta(POWERED_BY);
    meta.insert("writes".into(), json!({"resources_affected": n}));
    wire::json_response(
        StatusCode::OK,
        json!({"meta": meta, "errors": [], "resources": null}),
    )
}

async fn create_put_file(State(sim): State<Shared>, mp: Multipart) -> Response {
    create_lib(sim, mp, false).await
}
async fn create_script(State(sim): State<Shared>, mp: Multipart) -> Response {
    create_lib(sim, mp, true).await
}

async fn create_lib(sim: Shared, mp: Multipart, script: bool) -> Response {
    let fields = match read_multipart(mp).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let entry = match lib_entry(&fields, script) {
        Ok(e) => e,
        Err(m) => return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, m),
    };
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let lib = if script {
        &mut rtr.scripts
    } else {
        &mut rtr.put_files
    };
    if lib.iter().any(|f| f.name == entry.name) {
        return wire::error(
            StatusCode::CONFLICT,
            POWERED_BY,
            format!("file with given name '{}' already exists", entry.name),
        );
    }
    lib.push(entry);
    written(1)
}

async fn update_script(State(sim): State<Shared>, mp: Multipart) -> Response {
    let fields = match read_multipart(mp).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(id) = text(&fields, "id") else {
        return wire::error(StatusCode::BAD_REQUEST, POWERED_BY, "id is required");
    };
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    let Some(s) = rtr.scripts.iter_mut().find(|s| s.id == id) else {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("script {id} not found"),
        );
    };
    if let Some((b, _)) = fields.get("file").or_else(|| fields.get("content")) {
        s.content = Arc::new(b.clone());
        s.sha256 = hex::encode(Sha256::digest(b));
        s.size = b.len();
    }
    if let Some(d) = text(&fields, "description") {
        s.description = d;
    }
    if let Some(n) = text(&fields, "name") {
        s.name = n;
    }
    if let Some(p) = text(&fields, "permission_type") {
        s.permission_type = p;
    }
    s.modified_timestamp = rfc3339(chrono::Utc::now());
    written(1)
}

fn lib_get(lib: &[LibFile], ids: &[String], with_content: bool) -> Response {
    let found: Vec<Value> = ids
        .iter()
        .filter_map(|id| lib.iter().find(|f| &f.id == id))
        .map(|f| {
            let mut v = serde_json::to_value(f).expect("lib file");
            if with_content {
                v["content"] = json!(String::from_utf8_lossy(&f.content));
            }
            v
        })
        .collect();
    let status = if found.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    wire::json_response(
        status,
        json!({"meta": wire::meta(POWERED_BY), "errors": [], "resources": found}),
    )
}

fn lib_query(lib: &[LibFile], q: &[(String, String)]) -> Response {
    let expr = match fql::parse(wire::one(q, "filter").unwrap_or("")) {
        Ok(e) => e,
        Err(e) => {
            return wire::error(
                StatusCode::BAD_REQUEST,
                POWERED_BY,
                format!("Invalid filter: {e}"),
            );
        }
    };
    let ids: Vec<&str> = lib
        .iter()
        .filter(|f| expr.as_ref().is_none_or(|e| fql::matches(e, *f)))
        .map(|f| f.id.as_str())
        .collect();
    wire::ok_paged(
        POWERED_BY,
        json!(ids),
        json!({"offset": 0, "limit": ids.len().max(1), "total": ids.len()}),
    )
}

use super::fql::{self, Field, Record};

impl Record for LibFile {
    fn field(&self, f: &str) -> Option<Field<'_>> {
        Some(match f {
            "id" => Field::Str(&self.id),
            "name" => Field::Str(&self.name),
            "description" => Field::Str(&self.description),
            "sha256" => Field::Str(&self.sha256),
            "created_by" => Field::Str(&self.created_by),
            "permission_type" => Field::Str(&self.permission_type),
            "platform" => Field::List(&self.platform),
            _ => return None,
        })
    }
}

async fn get_put_files(State(sim): State<Shared>, Query(q): Q) -> Response {
    let rtr = sim.rtr.lock().expect("rtr lock");
    lib_get(&rtr.put_files, &wire::multi(&q, "ids"), false)
}
async fn get_scripts(State(sim): State<Shared>, Query(q): Q) -> Response {
    let rtr = sim.rtr.lock().expect("rtr lock");
    lib_get(&rtr.scripts, &wire::multi(&q, "ids"), true)
}
async fn query_put_files(State(sim): State<Shared>, Query(q): Q) -> Response {
    let rtr = sim.rtr.lock().expect("rtr lock");
    lib_query(&rtr.put_files, &q)
}
async fn query_scripts(State(sim): State<Shared>, Query(q): Q) -> Response {
    let rtr = sim.rtr.lock().expect("rtr lock");
    lib_query(&rtr.scripts, &q)
}
async fn delete_put_file(State(sim): State<Shared>, Query(q): Q) -> Response {
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    lib_delete(&mut rtr.put_files, &wire::multi(&q, "ids"))
}
async fn delete_script(State(sim): State<Shared>, Query(q): Q) -> Response {
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    lib_delete(&mut rtr.scripts, &wire::multi(&q, "ids"))
}

fn lib_delete(lib: &mut Vec<LibFile>, ids: &[String]) -> Response {
    if ids.len() != 1 {
        return wire::error(
            StatusCode::BAD_REQUEST,
            POWERED_BY,
            "exactly one id must be given",
        );
    }
    let before = lib.len();
    lib.retain(|f| f.id != ids[0]);
    if lib.len() == before {
        return wire::error(
            StatusCode::NOT_FOUND,
            POWERED_BY,
            format!("{} not found", ids[0]),
        );
    }
    wire::ok(StatusCode::OK, POWERED_BY, json!([]))
}

/// Control-API view of jobs and sessions.
pub(crate) fn dump(sim: &Sim) -> Value {
    let rtr = sim.rtr.lock().expect("rtr lock");
    let now = Instant::now();
    let jobs: Vec<Value> = rtr
        .jobs
        .jobs
        .values()
        .map(|j| json!({"aid": j.aid, "hostname": j.hostname, "job": j.job, "pid": j.pid, "exit_code": j.exit_code,
                        "vanished": j.vanished, "fails": j.fails, "uploaded": j.uploaded, "started_at": rfc3339(j.started_wall),
                        "command": j.command}))
        .collect();
    let sessions = rtr.sessions.values().filter(|s| live(s, now)).count();
    json!({"jobs": jobs, "live_sessions": sessions, "batches": rtr.batches.len(), "pending_commands": rtr.pending.len(),
           "commands": rtr.commands.len(), "queued_per_host": rtr.queued_per_host, "deleted_per_host": rtr.deleted_per_host})
}

/// Control: kill running jobs of hosts (they become `vanished`).
pub(crate) fn reboot(sim: &Sim, ids: &[String]) -> usize {
    let mut rtr = sim.rtr.lock().expect("rtr lock");
    ids.iter().map(|id| rtr.jobs.reboot(id)).sum()
}
