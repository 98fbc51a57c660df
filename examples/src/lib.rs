//! Example programs live in `src/bin/`; each runs against a real tenant, wiremock or the sandbox.
