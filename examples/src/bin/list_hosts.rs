//! Prints every host, one line each: `<device id> <hostname>`.
//!
//! Configuration: `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_CLOUD` (a cloud name such as `us-2`,
//! `auto`, or a base URL such as `http://127.0.0.1:8080` for the sandbox or wiremock).
//!
//! ```text
//! cargo run -p examples --bin list_hosts
//! ```

use anyhow::Context;
use falcon_sdk::{FalconClient, FalconClientBuilder};
use futures::TryStreamExt;

fn client() -> anyhow::Result<FalconClient> {
    let only = ["FALCON_CLIENT_ID", "FALCON_CLIENT_SECRET", "FALCON_CLOUD"];
    let builder = FalconClientBuilder::from_env_with(|k| {
        only.contains(&k).then(|| std::env::var(k).ok()).flatten()
    })?;
    Ok(builder
        .user_agent("falcon-sdk-example/list_hosts")
        .build()?)
}

async fn run() -> anyhow::Result<()> {
    let client = client()?;
    let mut hosts = std::pin::pin!(client.hosts().scroll().devices());
    let mut n = 0usize;
    while let Some(d) = hosts.try_next().await.context("listing hosts")? {
        println!("{} {}", d.device_id, d.hostname.as_deref().unwrap_or("-"));
        n += 1;
    }
    eprintln!("{n} hosts");
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
