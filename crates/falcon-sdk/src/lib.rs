//! Typed async CrowdStrike Falcon API SDK. (Being written: see ARCHITECTURE.md.)
#![warn(missing_docs)]

pub mod rtr;
