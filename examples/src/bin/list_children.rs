//! Lists the child CIDs of a Flight Control (MSSP) parent, one line each: `<cid> <hosts> <name>`, counting
//! each child's hosts through a client acting in that child. A child that fails prints `<cid> error …`.
//!
//! ```text
//! cargo run -p examples --bin list_children
//! ```
//!
//! Configuration: `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET` (a parent API client with Flight Control
//! read), `FALCON_CLOUD`.

use std::collections::BTreeMap;

use anyhow::Context;
use examples::falcon_from_env;
use falcon_sdk::flight_control::TenantSet;
use futures::TryStreamExt;

async fn run() -> anyhow::Result<bool> {
    let parent = falcon_from_env("list_children", false)?;
    let children = parent
        .flight_control()
        .children()
        .await
        .context("listing children")?;
    let names: BTreeMap<String, String> = children
        .iter()
        .map(|c| (c.child_cid.clone(), c.name.clone().unwrap_or_default()))
        .collect();
    let counts = TenantSet::new(&parent, names.keys().cloned())
        .concurrency(4)
        .run(|client, _| async move {
            let ids: Vec<String> = client.hosts().scroll().ids().try_collect().await?;
            Ok(ids.len())
        })
        .await;
    let mut ok = true;
    for (cid, r) in counts {
        match r {
            Ok(n) => println!("{cid} {n} {}", names[&cid]),
            Err(e) => {
                ok = false;
                println!("{cid} error {e}");
            }
        }
    }
    Ok(ok)
}

#[tokio::main]
async fn main() {
    examples::exit_with(run().await)
}
