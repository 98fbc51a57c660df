//! Exit codes of `ioc-sync` (documented in `docs/operations.md`).

/// Success (including a clean shutdown on SIGTERM/SIGINT and `--until-caught-up`).
pub const OK: u8 = 0;
/// A runtime failure (OpenCTI or Falcon refused the credentials, the live stream is gone, IO error).
pub const ERROR: u8 = 1;
/// The configuration is invalid (the message names the variable or key).
pub const CONFIG: u8 = 2;
/// `check` found a dependency that does not work.
pub const CHECK_FAILED: u8 = 3;
