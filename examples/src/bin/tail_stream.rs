//! Follows an OpenCTI live stream and prints one line per event:
//! `<event id>\t<event name>\t<STIX id of the object, or ->`.
//!
//! ```text
//! OPENCTI_URL=http://127.0.0.1:4000 OPENCTI_TOKEN=... cargo run -p examples --bin tail_stream -- <stream id>
//! ```
//!
//! Environment (pycti's names):
//! - `OPENCTI_URL`, `OPENCTI_TOKEN` (required); `OPENCTI_SSL_VERIFY` (`false`/`no` turns TLS
//!   verification off; default on);
//! - the stream id as first argument, else `CONNECTOR_LIVE_STREAM_ID`;
//! - `CONNECTOR_LIVE_STREAM_START_TIMESTAMP` (epoch ms) and `CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE`
//!   (`false` = no recovery), as a pycti connector's first run: by default the snapshot of every
//!   matching object, then live events; `START_TIMESTAMP=<now ms>` + `RECOVER_ISO_DATE=false` is a
//!   plain tail;
//! - `TAIL_MAX_EVENTS`: stop after that many events (default: until Ctrl-C).
//!
//! Reconnects (server restarts, silences, 5xx) are handled by the client; 401/404/410 stop the
//! program with an error; a malformed event is reported on stderr and skipped.

use anyhow::{Context, bail};
use futures::StreamExt;
use opencti_client::{Error, LiveStream, OpenCtiClient, StreamState};
use secrecy::SecretString;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn run() -> anyhow::Result<()> {
    let url = env("OPENCTI_URL").context("OPENCTI_URL is not set")?;
    let token = env("OPENCTI_TOKEN").context("OPENCTI_TOKEN is not set")?;
    let stream_id = std::env::args()
        .nth(1)
        .or_else(|| env("CONNECTOR_LIVE_STREAM_ID"))
        .context("give the live stream id as first argument or in CONNECTOR_LIVE_STREAM_ID")?;
    let ssl_verify = !matches!(
        env("OPENCTI_SSL_VERIFY").as_deref(),
        Some("false" | "False" | "no" | "No")
    );
    let max_events = match env("TAIL_MAX_EVENTS") {
        Some(v) => Some(
            v.parse::<u64>()
                .with_context(|| format!("TAIL_MAX_EVENTS `{v}` is not a number"))?,
        ),
        None => None,
    };
    let start = env("CONNECTOR_LIVE_STREAM_START_TIMESTAMP");
    if let Some(ts) = &start
        && ts.parse::<u64>().is_err()
    {
        bail!("CONNECTOR_LIVE_STREAM_START_TIMESTAMP `{ts}` is not an epoch in milliseconds");
    }
    let recover = env("CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE");
    let state = StreamState::first_run_from_config(start.as_deref(), recover.as_deref());

    let client = OpenCtiClient::builder(url, SecretString::from(token))
        .ssl_verify(ssl_verify)
        .build()
        .context("cannot configure the OpenCTI client")?;
    let (mut events, cursor) = LiveStream::builder(client, stream_id.clone())
        .state(state)
        .build();

    let mut printed = 0u64;
    loop {
        let item = tokio::select! {
            item = events.next() => item,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(item) = item else { break };
        match item {
            Ok(ev) => {
                println!(
                    "{}\t{}\t{}",
                    if ev.id.is_empty() { "-" } else { &ev.id },
                    ev.kind,
                    ev.stix_id().unwrap_or("-")
                );
                cursor.ack(&ev.id);
            }
            Err(Error::Malformed { id, event, .. }) => {
                eprintln!("skipping malformed {event} event {id}");
                cursor.ack(&id);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("live stream `{stream_id}` failed"));
            }
        }
        printed += 1;
        if max_events.is_some_and(|m| printed >= m) {
            break;
        }
    }
    let state = cursor.state();
    eprintln!("stopped; resume state: {}", state.to_connector_state());
    Ok(())
}
