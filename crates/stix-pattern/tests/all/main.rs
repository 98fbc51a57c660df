//! Integration tests for `stix-pattern` (one test binary; a module per area).

mod corpus;
mod errors;
mod matcher;
mod no_panic;
mod observables;
mod printing;
mod stix_check;
mod strict;
