//! Follows detections on Event Streams, printing `<offset> <composite id> <hostname>` per detection, and
//! persists the offset of the last event after each one, so that a restart resumes without loss or
//! duplicate.
//!
//! ```text
//! TAIL_OFFSET_FILE=/var/lib/tail/offset cargo run -p examples --bin tail_detections
//! ```
//!
//! Configuration: `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_CLOUD`, `FALCON_MEMBER_CID`,
//! `FALCON_APP_ID` (default `tail-detections`; one running consumer per appId), `TAIL_OFFSET_FILE`
//! (default `tail_detections.offset`). Without an offset file it starts at the newest event, or at the
//! oldest retained one with `--from-beginning`. `--max N` stops after N detections.

use anyhow::{Context, bail};
use examples::falcon_from_env;
use falcon_sdk::streams::{EventBody, Start};
use futures::TryStreamExt;

fn save(path: &std::path::Path, offset: u64) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, offset.to_string())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let mut max = u64::MAX;
    let mut from_beginning = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max" => {
                max = args
                    .next()
                    .context("--max needs a number")?
                    .parse()
                    .context("--max needs a number")?
            }
            "--from-beginning" => from_beginning = true,
            other => bail!(
                "unexpected argument `{other}` (usage: tail_detections [--from-beginning] [--max N])"
            ),
        }
    }
    let path = std::path::PathBuf::from(
        std::env::var("TAIL_OFFSET_FILE").unwrap_or_else(|_| "tail_detections.offset".into()),
    );
    let start = match std::fs::read_to_string(&path) {
        Ok(s) => Start::After(
            s.trim()
                .parse()
                .with_context(|| format!("{}: not an offset", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if from_beginning {
                Start::Beginning
            } else {
                Start::Latest
            }
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let app_id = std::env::var("FALCON_APP_ID").unwrap_or_else(|_| "tail-detections".into());
    let client = falcon_from_env("tail_detections", true)?;
    let mut events = std::pin::pin!(
        client
            .event_streams(app_id)
            .consume(0, start)
            .event_types(["EppDetectionSummaryEvent"])
            .stream()
    );
    let mut seen = 0u64;
    while seen < max {
        let ev = match events.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            // A malformed line: report it and go on; anything else ends the stream with that error.
            Err(e @ falcon_sdk::Error::Decode(_)) => {
                eprintln!("skipping an event: {e:#}");
                continue;
            }
            Err(e) => return Err(e).context("reading the event stream"),
        };
        if let EventBody::Detection(d) = &ev.body {
            println!("{} {} {}", ev.metadata.offset, d.composite_id, d.hostname);
            seen += 1;
        }
        save(&path, ev.metadata.offset)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
