//! Opens an RTR session on one host, runs one command, prints its output.
//!
//! Configuration: `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_CLOUD` (a cloud name such as `us-2`,
//! `auto`, or a base URL such as `http://127.0.0.1:8080` for the sandbox or wiremock).
//!
//! ```text
//! cargo run -p examples --bin rtr_run -- <device-id> [command line, default `pwd`]
//! cargo run -p examples --bin rtr_run -- 0123456789abcdef0123456789abcdef ls /tmp
//! cargo run -p examples --bin rtr_run -- 0123456789abcdef0123456789abcdef 'runscript -Raw=```uname -a```'
//! cargo run -p examples --bin rtr_run -- aid1,aid2,aid3 ps     # several hosts: one batch session
//! ```
//!
//! The role (read-only, active responder, admin) is chosen from the command, the session is
//! refreshed while the command runs, and closed at the end. Stdout goes to stdout, stderr to
//! stderr; the exit status is 1 on error and 2 when the command did not finish within 10 minutes.
//! With several comma-separated device ids it uses a batch session instead and prints one line per
//! host (`<aid> <status> <first line of stdout or the errors>`); exit status 2 if any host failed.

use std::time::Duration;

use anyhow::Context;
use falcon_sdk::rtr::Role;
use falcon_sdk::{FalconClient, FalconClientBuilder};

fn client() -> anyhow::Result<FalconClient> {
    let only = ["FALCON_CLIENT_ID", "FALCON_CLIENT_SECRET", "FALCON_CLOUD"];
    let builder = FalconClientBuilder::from_env_with(|k| {
        only.contains(&k).then(|| std::env::var(k).ok()).flatten()
    })?;
    Ok(builder.user_agent("falcon-sdk-example/rtr_run").build()?)
}

async fn run() -> anyhow::Result<bool> {
    let mut args = std::env::args().skip(1);
    let device_id = args
        .next()
        .context("usage: rtr_run <device-id> [command line]")?;
    let rest: Vec<String> = args.collect();
    let command_line = if rest.is_empty() {
        "pwd".to_string()
    } else {
        rest.join(" ")
    };
    let base = command_line
        .split_whitespace()
        .next()
        .unwrap_or("pwd")
        .to_string();
    let role = Role::for_command(&command_line);

    let client = client()?;
    if device_id.contains(',') {
        let hosts: Vec<&str> = device_id.split(',').filter(|h| !h.is_empty()).collect();
        return run_batch(&client, &hosts, role, &base, &command_line).await;
    }
    let session = client
        .rtr()
        .session(&device_id)
        .origin("falcon-sdk-example")
        .open()
        .await
        .with_context(|| format!("opening an RTR session on {device_id}"))?;
    eprintln!(
        "session {} on {device_id} ({:?}), running `{command_line}` as {role:?}",
        session.id(),
        session
            .init_response()
            .platform
            .as_deref()
            .unwrap_or("unknown platform"),
    );
    let out = session
        .role_command(role, base, &command_line)
        .run_and_wait(Duration::from_secs(600))
        .await
        .context("running the command")?;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if out.queued_offline {
        eprintln!("host is offline: command queued ({})", out.cloud_request_id);
    } else if !out.complete {
        eprintln!(
            "command still running after 10 minutes ({})",
            out.cloud_request_id
        );
    }
    session.close().await.context("closing the session")?;
    Ok(out.complete)
}

async fn run_batch(
    client: &FalconClient,
    hosts: &[&str],
    role: Role,
    base: &str,
    command_line: &str,
) -> anyhow::Result<bool> {
    let rtr = client.rtr();
    let init = rtr
        .batch_init(hosts)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .context("opening the batch session")?;
    let out = rtr
        .batch_command_all(role, &init.batches, base, command_line, |b| {
            b.timeout(Duration::from_secs(120))
        })
        .await
        .context("running the batch command")?;
    let mut all_ok = true;
    for (aid, host) in &init.hosts {
        let result = if host.is_usable() {
            out.hosts.get(aid).unwrap_or(host)
        } else {
            host
        };
        let detail = if result.errors.is_empty() {
            result.stdout.lines().next().unwrap_or("").to_string()
        } else {
            let errs: Vec<String> = result
                .errors
                .iter()
                .map(|e| format!("[{}] {}", e.code.unwrap_or(0), e.message))
                .collect();
            errs.join("; ")
        };
        all_ok &= result.succeeded();
        println!("{aid} {:?} {detail}", result.status);
    }
    Ok(all_ok)
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
