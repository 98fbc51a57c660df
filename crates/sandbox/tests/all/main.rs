//! Integration tests of the sandbox simulators.

mod cado;
mod falcon;
mod falcon_hosts;
mod falcon_ioc_alerts;
mod falcon_iocs;
mod falcon_rtr;
mod opencti;
mod opencti_deployments;
