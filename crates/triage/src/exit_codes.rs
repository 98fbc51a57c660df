//! Process exit codes of `falcon-triage`, documented in `docs/triage.md`.
//!
//! One module so the binary, the docs and the tests agree (the nextest `exit_codes` pattern).

/// Every selected host succeeded (or, for `hosts`, `status`, `preflight`, `--dry-run`: the command did
/// what was asked).
pub const SUCCESS: i32 = 0;
/// The run or the command failed before any host was touched: bad arguments, configuration, API or
/// journal errors.
pub const ERROR: i32 = 1;
/// Some hosts succeeded, others failed, timed out or were cancelled.
pub const SOME_FAILED: i32 = 2;
/// No host succeeded: every host failed, timed out or was cancelled, or the selection was empty.
pub const NOTHING_RAN: i32 = 3;
/// `preflight` found a missing scope, or the user declined the confirmation.
pub const PREFLIGHT_FAILED: i32 = 4;
/// The run was left on a second Ctrl-C with hosts still being followed; resume it with
/// `falcon-triage resume --journal <file>`.
pub const INTERRUPTED: i32 = 130;
