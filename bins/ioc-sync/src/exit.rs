//! Exit codes of `ioc-sync`, the one place they are defined (documented in `docs/operations.md`).

/// Success (including a clean shutdown on SIGTERM/SIGINT and `--until-caught-up`).
pub const OK: u8 = 0;
/// A runtime failure (OpenCTI refused the token, the live stream is gone, an IO error, the metrics
/// endpoint stopped).
pub const ERROR: u8 = 1;
/// The configuration is invalid (the message names the variable or key), or the state file was
/// written for another OpenCTI, stream or connector.
pub const CONFIG: u8 = 2;
/// `check` found a dependency that does not work.
pub const CHECK_FAILED: u8 = 3;
/// Falcon refused the credentials or the API scope (a token request refused, 401 after the token
/// refresh, 403): retrying cannot help until the API client is fixed.
pub const FALCON_AUTH: u8 = 4;

/// The exit code for an error that ended a command.
pub fn of(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ioc_sync::config::ConfigError>().is_some() {
        return CONFIG;
    }
    match e.downcast_ref::<ioc_sync::Error>() {
        Some(ioc_sync::Error::Config(_) | ioc_sync::Error::StateMismatch { .. }) => CONFIG,
        Some(e) if e.is_falcon_auth() => FALCON_AUTH,
        _ => ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_by_error() {
        let mismatch = ioc_sync::Error::StateMismatch {
            path: "s.json".into(),
            found: "live stream `a`".into(),
            expected: "live stream `b`".into(),
        };
        assert_eq!(of(&anyhow::Error::new(mismatch)), CONFIG);
        let auth = ioc_sync::Error::Falcon {
            phase: "lookup",
            source: falcon_sdk::Error::Auth {
                status: Some(falcon_sdk::StatusCode::FORBIDDEN),
                detail: "access denied".into(),
            },
        };
        assert_eq!(of(&anyhow::Error::new(auth).context("run")), FALCON_AUTH);
        assert_eq!(of(&anyhow::anyhow!("other")), ERROR);
    }
}
