//! Creates a few sample IOCs, and updates the ones that already exist (Falcon reports them as duplicates).
//!
//! Configuration: `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_CLOUD` (cloud name or base URL).
//!
//! ```text
//! cargo run -p examples --bin upsert_iocs
//! ```

use anyhow::Context;
use falcon_sdk::fql::Fql;
use falcon_sdk::iocs::{Action, IndicatorUpdate, IocType, NewIndicator, Platform, Severity};
use falcon_sdk::{FalconClient, FalconClientBuilder};

const SOURCE: &str = "falcon-sdk-example";

fn client() -> anyhow::Result<FalconClient> {
    let only = ["FALCON_CLIENT_ID", "FALCON_CLIENT_SECRET", "FALCON_CLOUD"];
    let builder = FalconClientBuilder::from_env_with(|k| {
        only.contains(&k).then(|| std::env::var(k).ok()).flatten()
    })?;
    Ok(builder
        .user_agent("falcon-sdk-example/upsert_iocs")
        .build()?)
}

fn samples() -> Vec<NewIndicator> {
    let all = [Platform::Windows, Platform::Mac, Platform::Linux];
    vec![
        NewIndicator::new(IocType::Domain, "malware.example.com", Action::Detect)
            .severity(Severity::High)
            .platforms(all.clone())
            .source(SOURCE)
            .description("sample domain from the falcon-sdk examples"),
        NewIndicator::new(IocType::Ipv4, "198.51.100.23", Action::Detect)
            .severity(Severity::Medium)
            .platforms(all.clone())
            .source(SOURCE),
        NewIndicator::new(
            IocType::Sha256,
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
            Action::Prevent,
        )
        .severity(Severity::Critical)
        .platforms(all)
        .source(SOURCE)
        .tags(["eicar"]),
    ]
}

async fn run() -> anyhow::Result<()> {
    let client = client()?;
    let items = samples();
    let report = client
        .iocs()
        .create(items.clone())
        .comment("falcon-sdk upsert_iocs example")
        .send()
        .await
        .context("creating IOCs")?;
    for i in &report.written {
        println!("created {} {} {}", i.id, i.type_, i.value);
    }
    let mut updates = Vec::new();
    for f in &report.failed {
        let Some(item) = f.index.and_then(|i| items.get(i)) else {
            println!("rejected: {}", f.message);
            continue;
        };
        if !f.is_duplicate() {
            println!("rejected {} {}: {}", item.type_, item.value, f.message);
            continue;
        }
        // Already there: find its id and bring it up to date.
        let filter =
            Fql::eq("type", item.type_.as_str()).and(Fql::eq("value", item.value.as_str()));
        let page = client
            .iocs()
            .query()
            .filter(filter.to_string())
            .limit(1)
            .send()
            .await
            .context("looking up an existing IOC")?;
        if let Some(id) = page.items.into_iter().next() {
            let mut u = IndicatorUpdate::new(id);
            u.action = Some(item.action.clone());
            u.severity = item.severity.clone();
            u.platforms = Some(item.platforms.clone());
            u.source = item.source.clone();
            u.description = item.description.clone();
            u.tags = Some(item.tags.clone());
            updates.push(u);
        }
    }
    if !updates.is_empty() {
        let report = client
            .iocs()
            .update(updates)
            .comment("falcon-sdk upsert_iocs example")
            .send()
            .await
            .context("updating existing IOCs")?;
        for i in &report.written {
            println!("updated {} {} {}", i.id, i.type_, i.value);
        }
        for f in &report.failed {
            println!("update rejected: {}", f.message);
        }
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
