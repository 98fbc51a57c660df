//! Load benchmark of the Falcon simulator's IOC queries on loopback (rate limit off).
//!
//! `cargo bench -p sandbox --bench ioc_queries` prints requests per second for three query shapes
//! against a store of `SANDBOX_BENCH_IOCS` IOCs (default 1,000,000), with `SANDBOX_BENCH_CONCURRENCY`
//! connections (default 32) for `SANDBOX_BENCH_SECS` seconds per shape (default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sandbox::falcon::FalconConfig;
use sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let iocs = env("SANDBOX_BENCH_IOCS", 1_000_000) as usize;
    let concurrency = env("SANDBOX_BENCH_CONCURRENCY", 32) as usize;
    let secs = env("SANDBOX_BENCH_SECS", 5);

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
    println!(
        "started with {iocs} IOCs and 10,000 hosts in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let info = sb.info().clone();
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
    let shapes: Vec<(&str, Box<dyn Fn(u64) -> String + Send + Sync>)> = vec![
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
        let n = done.load(Ordering::Relaxed);
        println!(
            "{name}: {:.0} requests/s ({n} ok, {} failed, {concurrency} connections, {elapsed:.1} s)",
            n as f64 / elapsed,
            failed.load(Ordering::Relaxed)
        );
    }
    sb.shutdown().await;
}
