//! End-to-end tests of the sync engine against the sandbox (simulated OpenCTI + Falcon).

mod assurance;
mod assurance_e2e;
mod common;
mod migration;
mod reconcile;
mod sync;
mod tenant;
