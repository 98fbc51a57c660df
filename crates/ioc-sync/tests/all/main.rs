//! End-to-end tests of the sync engine against the sandbox (simulated OpenCTI + Falcon).

mod common;
mod migration;
mod reconcile;
mod sync;
