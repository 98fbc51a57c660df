//! The dissemination-assurance settings (reference §2): the Python connector's variables and
//! `config.yml` keys with its defaults. They are rows of the settings table
//! ([`crate::config::SETTINGS`]: `DEPLOYMENT_*`, `HITS_*`, `SECURITY_PLATFORM_*`), parsed by
//! [`crate::config::Config::load`] into this struct.

use std::time::Duration;

/// The parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssuranceSettings {
    /// `DEPLOYMENT_REPORTING_ENABLED` (default true).
    pub reporting_enabled: bool,
    /// `DEPLOYMENT_RECONCILIATION_INTERVAL` (default 60 minutes; `None` = 0 = disabled).
    pub reconciliation_interval: Option<Duration>,
    /// `HITS_REPORTING_ENABLED` (default true).
    pub hits_enabled: bool,
    /// `SECURITY_PLATFORM_NAME` (default `CrowdStrike Falcon`).
    pub platform_name: String,
    /// `SECURITY_PLATFORM_TYPE` (default `EDR`).
    pub platform_type: Option<String>,
    /// `SECURITY_PLATFORM_ID` (default none).
    pub platform_id: Option<String>,
}

impl Default for AssuranceSettings {
    fn default() -> Self {
        AssuranceSettings {
            reporting_enabled: true,
            reconciliation_interval: Some(Duration::from_secs(3600)),
            hits_enabled: true,
            platform_name: "CrowdStrike Falcon".into(),
            platform_type: Some("EDR".into()),
            platform_id: None,
        }
    }
}

impl AssuranceSettings {
    /// Whether reconciliation runs (reporting on and an interval).
    pub fn reconciliation_on(&self) -> bool {
        self.reporting_enabled && self.reconciliation_interval.is_some()
    }

    /// Whether hits are collected (upstream: only inside reconciliation runs).
    pub fn hits_on(&self) -> bool {
        self.reconciliation_on() && self.hits_enabled
    }
}
