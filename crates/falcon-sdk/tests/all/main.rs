//! Integration tests of falcon-sdk (one binary, one module per area).

mod alerts;
mod auth;
mod common;
mod flight_control;
mod host_actions;
mod hosts;
mod iocs;
mod rtr;
mod rtr_files;
mod secrets;
mod transport;
