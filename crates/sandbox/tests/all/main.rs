//! Integration tests of the sandbox simulators.
