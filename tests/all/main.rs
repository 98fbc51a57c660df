//! End-to-end tests against the sandbox.
