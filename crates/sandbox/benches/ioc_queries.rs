//! Load benchmark of the Falcon simulator's IOC queries on loopback (rate limit off).
//!
//! `cargo bench -p sandbox --bench ioc_queries` prints requests per second for three query shapes
//! against a store of `SANDBOX_BENCH_IOCS` IOCs (default 1,000,000), with `SANDBOX_BENCH_CONCURRENCY`
//! connections (default 32) for `SANDBOX_BENCH_SECS` seconds per shape (default 5).
//!
//! The server runs on its own runtime (`SANDBOX_BENCH_SERVER_THREADS` worker threads, default 1,
//! named `sb-server`) and the load generator on another, so the bench also reports the server's CPU
//! time per request (from `/proc/self/task/*/stat` on Linux) and the capacity that implies per core,
//! which does not depend on how busy the machine is with the client or with other work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sandbox::falcon::FalconConfig;
use sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

/// Builds the request path of the i-th query of a shape.
type PathFor = Box<dyn Fn(u64) -> String + Send + Sync>;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds used so far by the threads named `sb-server` (Linux; 0 elsewhere).
fn server_cpu_secs() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with("sb-server") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
        ticks += fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks as f64 / 100.0
}

fn main() {
    let iocs = env("SANDBOX_BENCH_IOCS", 1_000_000) as usize;
    let server_threads = env("SANDBOX_BENCH_SERVER_THREADS", 1) as usize;
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(server_threads)
            .thread_name("sb-server")
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let t = Instant::now();
            let sb = Sandbox::start(SandboxConfig {
                falcon: FalconConfig {
                    hosts: 10_000,
                    iocs,
                    rate_limit_per_minute: None,
                    ..FalconConfig::default()
                },
                ..SandboxConfig::default()
            })
            .await
            .expect("sandbox starts");
            tx.send((sb.info().clone(), t.elapsed())).unwrap();
            let _ = stop_rx.await;
            sb.shutdown().await;
        });
    });
    let (info, started) = rx.recv().unwrap();
    let client = tokio::runtime::Builder::new_multi_thread()
        .thread_name("sb-client")
        .enable_all()
        .build()
        .unwrap();
    client.block_on(load(info, started, iocs, server_threads));
    let _ = stop_tx.send(());
    server.join().unwrap();
}

async fn load(info: sandbox::SandboxInfo, started: Duration, iocs: usize, server_threads: usize) {
    let concurrency = env("SANDBOX_BENCH_CONCURRENCY", 32) as usize;
    let secs = env("SANDBOX_BENCH_SECS", 5);
    let t = started;
    println!(
        "started with {iocs} IOCs and 10,000 hosts in {:.2} s; server on {server_threads} worker thread(s)",
        t.as_secs_f64()
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let token: Value = http
        .post(format!("{}/oauth2/token", info.falcon_url))
        .form(&[
            ("client_id", info.falcon_client_id.as_str()),
            ("client_secret", info.falcon_client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    // Values the preload generated: bench-<seed>-<i>.example.com for i % 4 == 0.
    let seed = SandboxConfig::default().seed;
    let shapes: Vec<(&str, PathFor)> = vec![
        (
            "query ids by value (indexed)",
            Box::new(move |i| {
                format!(
                    "/iocs/queries/indicators/v1?filter=value:'bench-{seed}-{}.example.com'",
                    (i * 4) % iocs as u64
                )
            }),
        ),
        (
            "query ids by type+value (indexed)",
            Box::new(move |i| {
                format!(
                    "/iocs/queries/indicators/v1?filter=type:'domain'%2Bvalue:'bench-{seed}-{}.example.com'",
                    (i * 4) % iocs as u64
                )
            }),
        ),
        (
            "combined page of 100 full objects, source filter over the whole store (cached total)",
            Box::new(|_| {
                "/iocs/combined/indicator/v1?limit=100&filter=source:'sandbox preload'".to_string()
            }),
        ),
    ];
    for (name, make) in shapes {
        let make = Arc::new(make);
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let cpu_before = server_cpu_secs();
        let mut tasks = Vec::new();
        for worker in 0..concurrency {
            let (http, token, base, make, done, failed, stop) = (
                http.clone(),
                token.clone(),
                info.falcon_url.clone(),
                make.clone(),
                done.clone(),
                failed.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = worker as u64 * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let r = http
                        .get(format!("{base}{}", make(i)))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = server_cpu_secs() - cpu_before;
        let n = done.load(Ordering::Relaxed);
        let per_request_us = if n > 0 { cpu * 1e6 / n as f64 } else { 0.0 };
        println!(
            "{name}: {:.0} requests/s on loopback ({n} ok, {} failed, {concurrency} connections, {elapsed:.1} s); \
             server CPU {per_request_us:.1} us/request = {:.0} requests/s per server core",
            n as f64 / elapsed,
            failed.load(Ordering::Relaxed),
            if per_request_us > 0.0 {
                1e6 / per_request_us
            } else {
                0.0
            },
        );
    }
}
