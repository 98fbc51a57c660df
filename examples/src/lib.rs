//! Example programs live in `src/bin/`; each runs against a real tenant, wiremock or the sandbox.

use falcon_sdk::{FalconClient, FalconClientBuilder};

/// A Falcon client from `FALCON_CLIENT_ID`, `FALCON_CLIENT_SECRET`, `FALCON_CLOUD` (and
/// `FALCON_MEMBER_CID` when `member` is true), with `falcon-sdk-example/<name>` in the User-Agent.
pub fn falcon_from_env(name: &str, member: bool) -> anyhow::Result<FalconClient> {
    let only = ["FALCON_CLIENT_ID", "FALCON_CLIENT_SECRET", "FALCON_CLOUD"];
    let builder = FalconClientBuilder::from_env_with(|k| {
        (only.contains(&k) || (member && k == "FALCON_MEMBER_CID"))
            .then(|| std::env::var(k).ok())
            .flatten()
    })?;
    Ok(builder
        .user_agent(format!("falcon-sdk-example/{name}"))
        .build()?)
}

/// Ends the process: status 0 for `Ok(true)`, 1 for `Ok(false)` (the operation reported failures), 2
/// with the error chain on stderr for `Err`.
pub fn exit_with(result: anyhow::Result<bool>) -> ! {
    match result {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
