//! Bench binary: containing 10,000 hosts against wiremock on loopback.
//!
//! Prints the requests made (expected ceil(10,000 / 500) = 20) and the client CPU time per run, measured
//! as the CPU time of the thread running the current-thread Tokio runtime (`/proc/thread-self/schedstat`;
//! the mock server runs on its own threads and is not counted). Target: under 50 ms.
//!
//! Run: `cargo bench -p falcon-sdk --bench host_actions` (`-- --quick` for 3 iterations).

use std::time::{Duration, Instant};

use falcon_sdk::FalconClient;
use falcon_sdk::host_actions::HostAction;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const HOSTS: usize = 10_000;

fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn accept_all(req: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let res: Vec<Value> = body["ids"]
        .as_array()
        .map(|a| a.iter().map(|id| json!({"id": id, "path": ""})).collect())
        .unwrap_or_default();
    ResponseTemplate::new(202).set_body_json(json!({"meta": {}, "errors": [], "resources": res}))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let iterations = if quick { 3 } else { 10 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth2/token"))
            .respond_with(ResponseTemplate::new(201).set_body_json(
                json!({"access_token": "t", "expires_in": 1799, "token_type": "bearer"}),
            ))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/devices/entities/devices-actions/v2"))
            .respond_with(accept_all)
            .mount(&server)
            .await;
        let client = FalconClient::builder()
            .client_id("bench")
            .client_secret(SecretString::from("bench"))
            .base_url(server.uri())
            .build()
            .expect("client");
        let aids: Vec<String> = (0..HOSTS).map(|i| format!("{i:032x}")).collect();
        // Warm-up: token and connections.
        client
            .hosts()
            .action(HostAction::Contain, &aids[..1])
            .send()
            .await
            .expect("warm-up");
        let mut cpu = Vec::new();
        let mut wall = Vec::new();
        let mut requests = 0;
        for _ in 0..iterations {
            let (c0, t0) = (thread_cpu(), Instant::now());
            let report = client
                .hosts()
                .action(HostAction::Contain, &aids)
                .send()
                .await
                .expect("contain");
            wall.push(t0.elapsed());
            if let (Some(a), Some(b)) = (c0, thread_cpu()) {
                cpu.push(b - a);
            }
            assert_eq!(report.hosts.len(), HOSTS);
            assert!(report.all_ok());
            requests = report.requests;
        }
        cpu.sort();
        wall.sort();
        println!("host_actions: contain {HOSTS} hosts, {iterations} iterations");
        println!(
            "  requests per run: {requests} (expected {})",
            HOSTS.div_ceil(HostAction::Contain.max_ids())
        );
        if cpu.is_empty() {
            println!("  (per-thread CPU time unavailable)");
        } else {
            println!(
                "  client CPU per run: median {:.1} ms, max {:.1} ms (target < 50 ms)",
                cpu[cpu.len() / 2].as_secs_f64() * 1e3,
                cpu[cpu.len() - 1].as_secs_f64() * 1e3
            );
        }
        println!(
            "  wall per run: median {:.1} ms",
            wall[wall.len() / 2].as_secs_f64() * 1e3
        );
    });
}
