//! Event Streams against the sandbox: a feed cut and resumed, a session that expires mid-stream, the
//! session refreshed before expiry, start at the latest event.

use std::collections::BTreeSet;
use std::time::Duration;

use falcon_sdk::FalconClient;
use falcon_sdk::streams::{EventBody, Start};
use futures::{Stream, StreamExt};
use serde_json::json;

use crate::common;

const APP: &str = "e2e-tests";
const FEED: &str = "GET /sensors/entities/datafeed/v1/{partition}";

fn config() -> sandbox::SandboxConfig {
    let mut c = common::config(10, 1);
    c.falcon.alerts = Some(0);
    c
}

async fn inject(info: &sandbox::SandboxInfo, count: usize) {
    common::post(
        format!("{}/_sandbox/streams/inject", info.falcon_url),
        json!({"count": count}),
    )
    .await;
}

/// Reads `n` events, calling `at(i)` before event `i` is read; returns the offsets seen.
async fn read<S, F, Fut>(stream: &mut S, n: usize, mut at: F) -> Vec<u64>
where
    S: Stream<Item = falcon_sdk::Result<falcon_sdk::streams::StreamEvent>> + Unpin,
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        at(out.len()).await;
        let ev = stream.next().await.expect("stream ended").expect("event");
        assert!(matches!(ev.body, EventBody::Detection(_)));
        out.push(ev.metadata.offset);
    }
    out
}

fn assert_exactly(offsets: &[u64], range: std::ops::RangeInclusive<u64>) {
    let unique: BTreeSet<u64> = offsets.iter().copied().collect();
    assert_eq!(unique.len(), offsets.len(), "an event was delivered twice");
    assert_eq!(
        unique,
        range.collect::<BTreeSet<u64>>(),
        "an event was lost"
    );
}

/// Consumes 60,000 events from the beginning, calling the control `route` before events `at`; checks
/// that every event came exactly once; returns (feed opens, discoveries).
async fn consume_through(route: &str, at: &[usize]) -> (u64, u64) {
    let sb = common::start(config()).await;
    let info = sb.info();
    inject(info, 60_000).await;
    let client = common::falcon(info);
    let mut stream = Box::pin(
        client
            .event_streams(APP)
            .consume(0, Start::Beginning)
            .stream(),
    );
    let url = format!("{}/_sandbox/streams/{route}", info.falcon_url);
    let offsets = read(&mut stream, 60_000, |i| {
        let url = url.clone();
        let now = at.contains(&i);
        async move {
            if now {
                common::post(url, json!({})).await;
            }
        }
    })
    .await;
    assert_exactly(&offsets, 1..=60_000);
    (
        common::falcon_requests(info, FEED).await,
        common::falcon_requests(info, "GET /sensors/entities/datafeed/v2").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_feed_resumes_from_the_last_offset_without_loss_or_duplicate() {
    // The session survives the cuts: one discovery, the feed reopened twice with the same token.
    assert_eq!(consume_through("cut", &[1_500, 30_000]).await, (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expiring_mid_stream_is_rediscovered_and_resumed() {
    // Reopened with the stale token (401), then through a new discovery with the new session's token.
    assert_eq!(consume_through("expire", &[1_000]).await, (3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_latest_and_resume_after_a_persisted_offset() {
    let sb = common::start(config()).await;
    let info = sb.info();
    inject(info, 100).await;
    let client = common::falcon(info);
    {
        let mut tail = Box::pin(
            client
                .event_streams("tail")
                .consume(0, Start::Latest)
                .stream(),
        );
        let first = tail.next();
        // Inject only once the tail's feed request has reached the sandbox, which fixes "latest" there (an
        // event, not a delay: a loaded machine may take any time to connect).
        let injector = async {
            while common::falcon_requests(info, "GET /sensors/entities/datafeed/v1/{partition}")
                .await
                == 0
            {
                tokio::task::yield_now().await;
            }
            inject(info, 1).await;
        };
        let (ev, ()) = tokio::join!(first, injector);
        assert_eq!(ev.unwrap().unwrap().metadata.offset, 101, "only new events");
    }
    // A new consumer resumes after the offset the first one persisted.
    let mut resumed = Box::pin(
        client
            .event_streams("resume")
            .consume(0, Start::After(60))
            .stream(),
    );
    let offsets = read(&mut resumed, 41, |_| async {}).await;
    assert_exactly(&offsets, 61..=101);
}

/// Paused, held clock: the session (3 s here) is refreshed on the consumer's own timer while it waits
/// for events, so no new discovery is needed.
#[tokio::test(start_paused = true)]
async fn the_session_is_refreshed_before_it_expires_while_waiting() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    let mut c = config();
    c.falcon.stream_session_ttl = Duration::from_secs(3);
    let sb = common::start(c).await;
    let info = sb.info().clone();
    inject(&info, 1).await;
    let client: FalconClient = common::falcon(&info);
    let mut stream = Box::pin(
        client
            .event_streams(APP)
            .consume(0, Start::Beginning)
            .stream(),
    );
    assert_eq!(stream.next().await.unwrap().unwrap().metadata.offset, 1);
    let waiter =
        tokio::spawn(async move { stream.next().await.map(|r| r.map(|e| e.metadata.offset)) });
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(2_800)).await;
        for _ in 0..10 {
            let _ =
                tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))).await;
        }
    }
    assert!(
        common::falcon_requests(
            &info,
            "POST /sensors/entities/datafeed-actions/v1/{partition}"
        )
        .await
            >= 2
    );
    inject(&info, 1).await;
    assert_eq!(waiter.await.unwrap().unwrap().unwrap(), 2);
    assert_eq!(
        common::falcon_requests(&info, "GET /sensors/entities/datafeed/v2").await,
        1
    );
    drop(tx);
}
