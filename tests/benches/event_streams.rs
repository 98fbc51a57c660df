//! Bench binary: 100,000 Event Streams events consumed from the in-process sandbox.
//!
//! Prints the time to consume them (target < 2 s) and the process's peak RSS (`VmHWM`) before and after
//! the consumption: the sandbox holds the 100,000 events itself; the difference is what the consumer
//! added (it keeps one network chunk and one line at a time). The feed uses the SDK's consumer with
//! `Start::Beginning`, exactly as an integration would.
//!
//! Run: `cargo bench -p e2e-tests --bench event_streams`.

use std::time::Instant;

use falcon_sdk::FalconClient;
use falcon_sdk::streams::Start;
use futures::TryStreamExt;
use secrecy::SecretString;

const EVENTS: usize = 100_000;

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut config = sandbox::SandboxConfig::default();
        config.falcon.hosts = 10;
        config.falcon.alerts = Some(0);
        config.falcon.rate_limit_per_minute = None;
        config.opencti.indicators = 1;
        let sb = sandbox::Sandbox::start(config).await.expect("sandbox");
        let info = sb.info();
        reqwest::Client::new()
            .post(format!("{}/_sandbox/streams/inject", info.falcon_url))
            .json(&serde_json::json!({"count": EVENTS}))
            .send()
            .await
            .expect("inject")
            .error_for_status()
            .expect("inject");
        let client = FalconClient::builder()
            .client_id(&info.falcon_client_id)
            .client_secret(SecretString::from(info.falcon_client_secret.clone()))
            .base_url(&info.falcon_url)
            .build()
            .expect("client");
        let before = status_kb("VmHWM:");
        let t0 = Instant::now();
        let mut n = 0usize;
        let mut last = 0u64;
        let mut events = std::pin::pin!(
            client
                .event_streams("bench")
                .consume(0, Start::Beginning)
                .stream()
        );
        while n < EVENTS {
            let ev = events.try_next().await.expect("event").expect("open");
            assert!(ev.metadata.offset > last, "offsets in order");
            last = ev.metadata.offset;
            n += 1;
        }
        let took = t0.elapsed();
        let after = status_kb("VmHWM:");
        println!("event_streams: {n} events consumed in {:.2} s ({:.0} events/s; target < 2 s)",
            took.as_secs_f64(), n as f64 / took.as_secs_f64());
        if let (Some(b), Some(a)) = (before, after) {
            println!(
                "  peak RSS (VmHWM): {:.1} MiB before consuming (sandbox holding {EVENTS} events), {:.1} MiB after (+{:.1} MiB)",
                b as f64 / 1024.0,
                a as f64 / 1024.0,
                a.saturating_sub(b) as f64 / 1024.0
            );
        }
        sb.shutdown().await;
    });
}
