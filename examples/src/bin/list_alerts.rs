//! Prints the 100 most recent alerts: composite id, severity, status, host.
//!
//! Configuration: `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_CLOUD` (cloud name or base URL).
//!
//! ```text
//! cargo run -p examples --bin list_alerts
//! ```

use anyhow::Context;
use falcon_sdk::{FalconClient, FalconClientBuilder};

fn client() -> anyhow::Result<FalconClient> {
    let only = ["FALCON_CLIENT_ID", "FALCON_CLIENT_SECRET", "FALCON_CLOUD"];
    let builder = FalconClientBuilder::from_env_with(|k| {
        only.contains(&k).then(|| std::env::var(k).ok()).flatten()
    })?;
    Ok(builder
        .user_agent("falcon-sdk-example/list_alerts")
        .build()?)
}

async fn run() -> anyhow::Result<()> {
    let client = client()?;
    let page = client
        .alerts()
        .combined()
        .sort("created_timestamp|desc")
        .limit(100)
        .send()
        .await
        .context("listing alerts")?;
    for a in &page.items {
        let host = a
            .device
            .as_ref()
            .map(|d| d.hostname.clone().unwrap_or_else(|| d.device_id.clone()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{} severity={} status={} host={}",
            a.composite_id,
            a.severity
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            a.status.as_deref().unwrap_or("-"),
            host
        );
    }
    eprintln!(
        "{} alerts shown (total {})",
        page.items.len(),
        page.total()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
