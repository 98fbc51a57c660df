//! Integration tests of the sandbox simulators.

mod cado;
mod falcon;
mod falcon_hosts;
mod falcon_iocs;
mod falcon_rtr;
mod opencti;
