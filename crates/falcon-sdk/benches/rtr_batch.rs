//! Bench binary: the RTR batch path for 10,000 hosts against wiremock on loopback.
//!
//! Per iteration: batch init of 10,000 hosts, one batch admin `runscript` to all of them, one batch
//! refresh. It prints the API calls made per 10,000 hosts and the client CPU time, measured as the
//! CPU time of the thread running the (current-thread) Tokio runtime, read from
//! `/proc/thread-self/schedstat` (the mock server runs on its own threads and is not counted).
//!
//! Run: `cargo bench -p falcon-sdk --bench rtr_batch` (`-- --quick` for 3 iterations).

use std::time::{Duration, Instant};

use falcon_sdk::FalconClient;
use falcon_sdk::rtr::runscript::Runscript;
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOSTS: usize = 10_000;

/// CPU time of the calling thread (ns), if the kernel exposes it.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn per_host(aids: &[String], make: impl Fn(&str) -> serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::Map::with_capacity(aids.len());
    for a in aids {
        m.insert(a.clone(), make(a));
    }
    serde_json::Value::Object(m)
}

async fn server(aids: &[String]) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "access_token": "tok", "expires_in": 1799, "token_type": "bearer"
        })))
        .mount(&server)
        .await;
    // Bodies are built once: the server's work is not what is measured.
    let init = serde_json::to_vec(&json!({
        "meta": {"query_time": 1.0, "trace_id": "t"}, "batch_id": "batch-1", "errors": [],
        "resources": per_host(aids, |a| json!({"aid": a, "session_id": format!("s-{a}"),
            "task_id": format!("t-{a}"), "complete": true, "stdout": "C:\\", "stderr": "",
            "base_command": "pwd", "errors": [], "offline_queued": false, "query_time": 0}))
    }))
    .unwrap();
    let cmd = serde_json::to_vec(&json!({
        "meta": {"trace_id": "t"}, "errors": [],
        "combined": {"resources": per_host(aids, |a| {
            if a.ends_with('7') {
                json!({"aid": a, "session_id": format!("s-{a}"), "complete": false, "stdout": "",
                       "stderr": "", "errors": [{"code": 40401, "message": "Could not establish sensor comms"}]})
            } else {
                json!({"aid": a, "session_id": format!("s-{a}"), "task_id": format!("t-{a}"),
                       "complete": true, "stdout": "The process was successfully started\n",
                       "stderr": "", "base_command": "runscript", "errors": [], "offline_queued": false})
            }
        })}
    }))
    .unwrap();
    let refresh = serde_json::to_vec(&json!({
        "meta": {"trace_id": "t"}, "errors": [],
        "resources": per_host(aids, |a| json!({"aid": a, "session_id": format!("s-{a}"), "errors": []}))
    }))
    .unwrap();
    for (p, body) in [
        ("/real-time-response/combined/batch-init-session/v1", init),
        ("/real-time-response/combined/batch-admin-command/v1", cmd),
        (
            "/real-time-response/combined/batch-refresh-session/v1",
            refresh,
        ),
    ] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(201).set_body_raw(body, "application/json"))
            .mount(&server)
            .await;
    }
    server
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let iterations = if quick { 3 } else { 15 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let aids: Vec<String> = (0..HOSTS).map(|i| format!("{i:032x}")).collect();
        let server = server(&aids).await;
        let client = FalconClient::builder()
            .client_id("bench")
            .client_secret(SecretString::from("bench"))
            .base_url(server.uri())
            .build()
            .unwrap();
        let rtr = client.rtr();
        let script = "Start-Process -FilePath C:\\Windows\\Temp\\collector.exe -ArgumentList '--upload' -WindowStyle Hidden\nWrite-Output 'The process was successfully started'";
        // warm-up: token and connection pool
        rtr.batch_refresh("warm-up").send().await.unwrap();

        let mut cpu_dispatch = Vec::new();
        let mut cpu_refresh = Vec::new();
        let mut wall = Vec::new();
        let before = server.received_requests().await.unwrap().len();
        for _ in 0..iterations {
            let c0 = thread_cpu();
            let w0 = Instant::now();
            // build + dispatch: quote the script, open the batch, send the admin command
            let cmd = Runscript::raw(script)
                .timeout(50)
                .to_command_string()
                .unwrap();
            let init = rtr
                .batch_init(&aids)
                .queue_offline(true)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap();
            assert_eq!(init.batches.len(), 1);
            let batch = &init.batches[0];
            let out = rtr
                .batch_admin_command(&batch.batch_id, "runscript", &cmd)
                .expected_hosts(&batch.hosts)
                .timeout(Duration::from_secs(60))
                .host_timeout(Duration::from_secs(55))
                .send()
                .await
                .unwrap();
            assert_eq!(out.hosts.len(), HOSTS);
            let c1 = thread_cpu();
            wall.push(w0.elapsed());
            let refreshed = rtr.batch_refresh(&batch.batch_id).send().await.unwrap();
            assert_eq!(refreshed.hosts.len(), HOSTS);
            let c2 = thread_cpu();
            if let (Some(c0), Some(c1), Some(c2)) = (c0, c1, c2) {
                cpu_dispatch.push(c1 - c0);
                cpu_refresh.push(c2 - c1);
            }
        }
        let calls = server.received_requests().await.unwrap().len() - before;
        let per_iter = calls as f64 / iterations as f64;
        println!("rtr_batch: {HOSTS} hosts, {iterations} iterations");
        println!(
            "  API calls per iteration: {per_iter:.1} (batch init + batch admin command + batch refresh; the target counts the first two: {} per {HOSTS} hosts)",
            per_iter - 1.0
        );
        report("client CPU, build + dispatch (init + admin command)", &mut cpu_dispatch);
        report("client CPU, batch refresh", &mut cpu_refresh);
        report("wall time, build + dispatch (loopback, mock server included)", &mut wall);
        if cpu_dispatch.is_empty() {
            println!("  (per-thread CPU time unavailable: /proc/thread-self/schedstat not readable)");
        }
    });
}

fn report(what: &str, v: &mut [Duration]) {
    if v.is_empty() {
        return;
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {what}: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}
