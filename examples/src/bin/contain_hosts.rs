//! Contains (or, with `--lift`, releases) the hosts matching an FQL filter. Dry run by default: it
//! prints the hosts it would act on; `--yes` acts and prints one line per host: `<device id> <outcome>`.
//!
//! ```text
//! cargo run -p examples --bin contain_hosts -- "hostname:'WS-FIN-*'"          # dry run
//! cargo run -p examples --bin contain_hosts -- --yes "hostname:'WS-FIN-*'"    # contain
//! cargo run -p examples --bin contain_hosts -- --yes --lift "hostname:'WS-FIN-*'"
//! ```
//!
//! Configuration: `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_CLOUD`, `FALCON_MEMBER_CID`.
//! Exit status 1 when any host was not contained (or released).

use anyhow::{Context, bail};
use examples::falcon_from_env;
use falcon_sdk::host_actions::HostAction;
use futures::TryStreamExt;

async fn run() -> anyhow::Result<bool> {
    let mut yes = false;
    let mut lift = false;
    let mut filter = None;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--yes" => yes = true,
            "--lift" => lift = true,
            f if !f.starts_with("--") && filter.is_none() => filter = Some(f.to_string()),
            other => bail!(
                "unexpected argument `{other}` (usage: contain_hosts [--yes] [--lift] <FQL filter>)"
            ),
        }
    }
    let Some(filter) = filter else {
        bail!(
            "an FQL filter is required, e.g. \"hostname:'WS-FIN-*'\" (usage: contain_hosts [--yes] [--lift] <FQL filter>)"
        );
    };
    let client = falcon_from_env("contain_hosts", true)?;
    let ids: Vec<String> = client
        .hosts()
        .query()
        .filter(filter.as_str())
        .ids()
        .try_collect()
        .await
        .context("selecting hosts")?;
    let action = if lift {
        HostAction::LiftContainment
    } else {
        HostAction::Contain
    };
    if !yes {
        for id in &ids {
            println!("{id} would {action}");
        }
        eprintln!(
            "dry run: {} hosts would get `{action}`; add --yes to act",
            ids.len()
        );
        return Ok(true);
    }
    if ids.is_empty() {
        eprintln!("no host matches");
        return Ok(true);
    }
    let report = client
        .hosts()
        .action(action, &ids)
        .note("falcon-sdk example contain_hosts")
        .send()
        .await
        .context("host action")?;
    for (id, outcome) in &report.hosts {
        println!("{id} {outcome:?}");
    }
    let failed = report.failed().count();
    eprintln!(
        "{action}: {} hosts in {} requests, {failed} failed",
        report.hosts.len(),
        report.requests
    );
    Ok(failed == 0)
}

#[tokio::main]
async fn main() {
    examples::exit_with(run().await)
}
