//! Cross-crate end-to-end tests: our clients (`falcon-sdk`, `opencti-client`) against the
//! independent simulators of the `sandbox` crate. The tests live in `tests/all/` (one module per
//! area); they talk to the sandbox only through the clients and the sandbox's control API over
//! HTTP on loopback, so a disagreement between a client and the wire contract shows up as a
//! failing test. This library is empty on purpose.
