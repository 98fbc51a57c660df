//! Process-level tests of the `ioc-sync` binary against the sandbox: SIGKILL and restart, SIGTERM,
//! secrets in logs, `check`, `map`.

mod process;
