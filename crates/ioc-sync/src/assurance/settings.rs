//! The dissemination-assurance settings: every upstream variable and `config.yml` key with the
//! CrowdStrike connector's defaults (reference §2), as plain data for the settings table.

use std::time::Duration;

/// One setting: environment variable, `config.yml` key, default (as text) and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// Environment variable.
    pub env: &'static str,
    /// `config.yml` key (dotted).
    pub yaml: &'static str,
    /// Default, as the text a user would write (`""` = unset).
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

/// The six settings, in the reference's order.
pub const SETTINGS: [SettingSpec; 6] = [
    SettingSpec {
        env: "DEPLOYMENT_REPORTING_ENABLED",
        yaml: "deployment.reporting_enabled",
        default: "true",
        meaning: "Report deployments to OpenCTI (master switch: false = no write-back call, no reconciliation, no hits)",
    },
    SettingSpec {
        env: "DEPLOYMENT_RECONCILIATION_INTERVAL",
        yaml: "deployment.reconciliation_interval",
        default: "60",
        meaning: "Minutes between reconciliations (and hit collections); 0 disables both",
    },
    SettingSpec {
        env: "HITS_REPORTING_ENABLED",
        yaml: "hits.reporting_enabled",
        default: "true",
        meaning: "Read Falcon alerts and report hits (needs the Alerts: Read scope)",
    },
    SettingSpec {
        env: "SECURITY_PLATFORM_NAME",
        yaml: "security_platform.name",
        default: "CrowdStrike Falcon",
        meaning: "Name of the Security Platform entity, upserted at start (at least 2 characters)",
    },
    SettingSpec {
        env: "SECURITY_PLATFORM_TYPE",
        yaml: "security_platform.type",
        default: "EDR",
        meaning: "security_platform_type of the entity (empty = none)",
    },
    SettingSpec {
        env: "SECURITY_PLATFORM_ID",
        yaml: "security_platform.id",
        default: "",
        meaning: "Id of an existing Security Platform (verified at start; empty = upsert by name)",
    },
];

/// The parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssuranceSettings {
    /// `DEPLOYMENT_REPORTING_ENABLED`.
    pub reporting_enabled: bool,
    /// `DEPLOYMENT_RECONCILIATION_INTERVAL` (minutes; `None` = 0 = disabled).
    pub reconciliation_interval: Option<Duration>,
    /// `HITS_REPORTING_ENABLED`.
    pub hits_enabled: bool,
    /// `SECURITY_PLATFORM_NAME`.
    pub platform_name: String,
    /// `SECURITY_PLATFORM_TYPE`.
    pub platform_type: Option<String>,
    /// `SECURITY_PLATFORM_ID`.
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

fn parse_bool(env: &str, raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "0" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!("{env}: `{raw}` is not a boolean (true or false)")),
    }
}

impl AssuranceSettings {
    /// Applies one raw value, named by its environment variable. The error names the variable
    /// and the value.
    pub fn apply(&mut self, env: &str, raw: &str) -> Result<(), String> {
        let trimmed = raw.trim();
        let opt = || (!trimmed.is_empty()).then(|| trimmed.to_owned());
        match env {
            "DEPLOYMENT_REPORTING_ENABLED" => self.reporting_enabled = parse_bool(env, raw)?,
            "HITS_REPORTING_ENABLED" => self.hits_enabled = parse_bool(env, raw)?,
            "DEPLOYMENT_RECONCILIATION_INTERVAL" => {
                let m: u64 = trimmed.parse().map_err(|_| {
                    format!("{env}: `{raw}` is not a whole number of minutes (0 or more)")
                })?;
                self.reconciliation_interval = (m > 0).then(|| Duration::from_secs(m * 60));
            }
            "SECURITY_PLATFORM_NAME" => {
                if trimmed.chars().count() < 2 {
                    return Err(format!("{env}: `{raw}` must have at least 2 characters"));
                }
                self.platform_name = trimmed.to_owned();
            }
            "SECURITY_PLATFORM_TYPE" => self.platform_type = opt(),
            "SECURITY_PLATFORM_ID" => self.platform_id = opt(),
            other => return Err(format!("{other}: not a dissemination-assurance setting")),
        }
        Ok(())
    }

    /// Builds the settings from a lookup by environment variable name (e.g. the merged layers of
    /// defaults, `config.yml` and the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut s = AssuranceSettings::default();
        for spec in SETTINGS {
            if let Some(v) = get(spec.env) {
                s.apply(spec.env, &v)?;
            }
        }
        Ok(s)
    }

    /// Whether reconciliation runs (reporting on and an interval).
    pub fn reconciliation_on(&self) -> bool {
        self.reporting_enabled && self.reconciliation_interval.is_some()
    }

    /// Whether hits are collected (upstream: only inside reconciliation runs).
    pub fn hits_on(&self) -> bool {
        self.reconciliation_on() && self.hits_enabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_crowdstrike_connectors() {
        let s = AssuranceSettings::from_lookup(|_| None).unwrap();
        assert_eq!(s, AssuranceSettings::default());
        for spec in SETTINGS {
            let mut d = AssuranceSettings::default();
            if !spec.default.is_empty() {
                d.apply(spec.env, spec.default).unwrap();
                assert_eq!(d, AssuranceSettings::default(), "{}", spec.env);
            }
        }
        assert!(s.hits_on());
    }

    #[test]
    fn values_are_validated_naming_the_variable() {
        let e = AssuranceSettings::from_lookup(|k| {
            (k == "DEPLOYMENT_RECONCILIATION_INTERVAL").then(|| "-5".into())
        })
        .unwrap_err();
        assert!(
            e.contains("DEPLOYMENT_RECONCILIATION_INTERVAL") && e.contains("-5"),
            "{e}"
        );
        let s = AssuranceSettings::from_lookup(|k| match k {
            "DEPLOYMENT_RECONCILIATION_INTERVAL" => Some("0".into()),
            "SECURITY_PLATFORM_TYPE" => Some(" ".into()),
            "SECURITY_PLATFORM_ID" => Some("abc".into()),
            _ => None,
        })
        .unwrap();
        assert!(!s.reconciliation_on() && !s.hits_on());
        assert_eq!(s.platform_type, None);
        assert_eq!(s.platform_id.as_deref(), Some("abc"));
        let e =
            AssuranceSettings::from_lookup(|k| (k == "SECURITY_PLATFORM_NAME").then(|| "X".into()))
                .unwrap_err();
        assert!(e.contains("at least 2"), "{e}");
        let e = AssuranceSettings::from_lookup(|k| {
            (k == "HITS_REPORTING_ENABLED").then(|| "maybe".into())
        })
        .unwrap_err();
        assert!(e.contains("HITS_REPORTING_ENABLED"), "{e}");
    }
}
