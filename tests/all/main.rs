//! End-to-end tests of our clients against the sandbox (one module per area).

mod actions;
mod alerts;
mod auth;
mod common;
mod hosts;
mod iocs;
mod mssp;
mod opencti;
mod rtr;
mod streams;
