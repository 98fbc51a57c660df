//! End-to-end tests of the triage orchestrator against the in-process sandbox.

mod common;
mod fleet;
mod hostile;
mod queue;
mod resume;
mod selection;
mod templates;
