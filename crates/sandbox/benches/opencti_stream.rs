//! Benchmark of the OpenCTI simulator's live stream: how long a first connection (pycti's
//! `Last-Event-ID: 0-0` + `?recover=<now>`) takes to receive the recovery snapshot of
//! `SANDBOX_BENCH_INDICATORS` indicators (default 100,000). The issue's target: under 2 seconds.
//!
//! `cargo bench -p sandbox --bench opencti_stream` prints the time to first byte, the time to the
//! last snapshot event, the bytes received and the event rate, for `SANDBOX_BENCH_RUNS` runs
//! (default 3). The client only splits the byte stream into SSE events (it does not parse JSON),
//! so the figure is the server's.

use std::time::{Duration, Instant};

use sandbox::opencti::{OpenCtiConfig, OpenCtiServer};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let indicators = env("SANDBOX_BENCH_INDICATORS", 100_000) as usize;
    let runs = env("SANDBOX_BENCH_RUNS", 3);
    let t = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    // Every indicator in the snapshot: no revoked filter, inferred ones included by the header.
    let server = OpenCtiServer::start(
        listener,
        OpenCtiConfig {
            indicators,
            stream_filters: Some(
                r#"{"mode":"and","filters":[{"key":["entity_type"],"operator":"eq","values":["Indicator"],"mode":"or"}],"filterGroups":[]}"#.into(),
            ),
            heartbeat_interval: Duration::from_secs(5),
            ..OpenCtiConfig::default()
        },
        42,
    );
    println!(
        "opencti_stream: generated {indicators} indicators in {:.2?}",
        t.elapsed()
    );
    let client = reqwest::Client::new();
    let recover = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut best = Duration::MAX;
    for run in 1..=runs {
        let start = Instant::now();
        let mut resp = client
            .get(format!(
                "{}/stream/{}?recover={recover}",
                server.url(),
                server.live_stream_id()
            ))
            .bearer_auth(server.token())
            .header("last-event-id", "0-0")
            .header("no-dependencies", "true")
            .header("with-inferences", "true")
            .send()
            .await
            .expect("stream request");
        assert_eq!(resp.status(), 200);
        let (mut first_byte, mut bytes, mut events, mut indicator_events) =
            (None, 0usize, 0usize, 0usize);
        let mut prev_newline = false;
        let mut carry: Vec<u8> = Vec::new();
        while indicator_events < indicators {
            let next = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await;
            let Ok(Some(chunk)) = next.map(|c| c.expect("stream chunk")) else {
                break;
            };
            first_byte.get_or_insert_with(|| start.elapsed());
            bytes += chunk.len();
            for &b in chunk.iter() {
                if b == b'\n' {
                    if prev_newline {
                        events += 1;
                        // The indicator snapshot events are the ones whose origin is init-create.
                        if carry.windows(11).any(|w| w == b"init-create") {
                            indicator_events += 1;
                        }
                        carry.clear();
                    }
                    prev_newline = true;
                } else {
                    prev_newline = false;
                    // Keep only the head of the event: the origin comes before the STIX object.
                    if carry.len() < 512 {
                        carry.push(b);
                    }
                }
            }
        }
        let took = start.elapsed();
        best = best.min(took);
        println!(
            "opencti_stream: run {run}: {indicator_events} indicator events ({events} SSE events, {:.1} MB) in {took:.2?}, first byte after {:.2?}, {:.0} events/s, {:.0} MB/s",
            bytes as f64 / 1e6,
            first_byte.unwrap_or_default(),
            indicator_events as f64 / took.as_secs_f64(),
            bytes as f64 / 1e6 / took.as_secs_f64(),
        );
        assert_eq!(indicator_events, indicators, "the whole snapshot arrived");
    }
    println!("opencti_stream: best {best:.2?} for {indicators} indicators (target: under 2 s)");
    server.shutdown().await;
}
