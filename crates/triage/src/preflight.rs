//! `preflight`: checks the API client's scopes by calling one read-only endpoint per scope, and lists the
//! Falcon exclusions Cado Host needs (`rtr-triage.md` 1.6 and 4.2).

use falcon_sdk::{FalconClient, StatusCode};

/// One scope check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScopeCheck {
    /// Falcon API scope name.
    pub scope: &'static str,
    /// What the orchestrator needs it for.
    pub needed_for: &'static str,
    /// The endpoint called.
    pub endpoint: &'static str,
    /// Whether the call was allowed.
    pub granted: bool,
    /// Whether the scope is needed only for some selections (host groups, alerts).
    pub optional: bool,
    /// What the call answered.
    pub detail: String,
}

const CHECKS: &[(&str, &str, &str, bool)] = &[
    (
        "Hosts: Read",
        "selecting hosts, platform and host names",
        "/devices/queries/devices/v1?limit=1",
        false,
    ),
    (
        "Host Groups: Read",
        "--host-group selection",
        "/devices/queries/host-groups/v1?limit=1",
        true,
    ),
    (
        "Alerts: Read",
        "--alert selection",
        "/alerts/queries/alerts/v2?limit=1",
        true,
    ),
    (
        "Real Time Response: Read",
        "batch sessions",
        "/real-time-response/queries/sessions/v1?limit=1",
        false,
    ),
    (
        "Real Time Response: Write",
        "active-responder commands, session management",
        "/real-time-response/entities/active-responder-command/v1?cloud_request_id=falcon-triage-preflight&sequence_id=0",
        false,
    ),
    (
        "Real Time Response (Admin): Write",
        "runscript -Raw (launch and status probes)",
        "/real-time-response/queries/scripts/v1?limit=1",
        false,
    ),
];

/// Calls one endpoint per scope. A `403` means the scope is missing; `401` means the credentials are wrong;
/// any other answer (including `404` for the made-up request id) means the call was authorised.
pub async fn check_scopes(client: &FalconClient) -> Vec<ScopeCheck> {
    let mut out = Vec::new();
    for &(scope, needed_for, endpoint, optional) in CHECKS {
        let (path, query) = endpoint.split_once('?').unwrap_or((endpoint, ""));
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let res = client.get::<serde_json::Value>(path, &pairs).await;
        let (granted, detail) = match res {
            Ok(_) => (true, "ok".to_string()),
            Err(e) => match e.status() {
                Some(StatusCode::FORBIDDEN) => (false, "403 forbidden: scope missing".to_string()),
                Some(StatusCode::UNAUTHORIZED) => (
                    false,
                    "401 unauthorized: check the client id and secret".to_string(),
                ),
                Some(s) if s.is_client_error() => (true, format!("{} (authorised)", s.as_u16())),
                _ => (false, format!("{e:#}")),
            },
        };
        out.push(ScopeCheck {
            scope,
            needed_for,
            endpoint: path_only(endpoint),
            granted,
            optional,
            detail,
        });
    }
    out
}

fn path_only(e: &'static str) -> &'static str {
    e.split_once('?').map(|(p, _)| p).unwrap_or(e)
}

/// The prevention-policy exclusions and response-policy settings Cado Host needs on Falcon.
pub const EXCLUSIONS: &str = "\
Falcon settings Cado Host needs (docs/triage.md, Setup):

Windows - Machine Learning exclusions (Endpoint Security > Exclusions > ML, \"Detections and Preventions\"):
  Windows\\Temp\\_MEI*\\**\\CadoHostRawGrabber.exe
  Windows\\Temp\\cado-host-*\\cado-host.exe

Windows - Indicator of Attack exclusion (optional; avoids HiveCredTheft, RawReadOnSAMHive,
RawReadOnSecurityHive detections against CadoHostRawGrabber.exe):
  image filename:  .*\\\\Windows\\\\Temp\\\\_MEI.*\\\\.*\\\\CadoHostRawGrabber\\.exe
  command line:    .*\\\\Windows\\\\TEMP\\\\_MEI.*\\\\binaries\\\\CadoHostRawGrabber\\.exe\\s+--inputPath\\s+.*\\s+--outputPath\\s+.*\\\\Windows\\\\TEMP\\\\.*

Linux and macOS: no Falcon exclusion needed (work directory /tmp/cado-host-<job>/).

Response policy (per platform, on the hosts' groups): enable Real Time Response, Custom Scripts
(runscript -Raw), and the high-risk commands put, run, put-and-run and get.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_name_the_cado_paths() {
        assert!(EXCLUSIONS.contains(r"Windows\Temp\_MEI*\**\CadoHostRawGrabber.exe"));
        assert!(EXCLUSIONS.contains(r"Windows\Temp\cado-host-*\cado-host.exe"));
        assert!(EXCLUSIONS.contains(r".*\\Windows\\Temp\\_MEI.*\\.*\\CadoHostRawGrabber\.exe"));
    }

    #[test]
    fn every_required_scope_is_checked() {
        let scopes: Vec<&str> = CHECKS.iter().map(|c| c.0).collect();
        for s in [
            "Hosts: Read",
            "Real Time Response: Read",
            "Real Time Response: Write",
            "Real Time Response (Admin): Write",
            "Alerts: Read",
        ] {
            assert!(scopes.contains(&s), "{s}");
        }
    }
}
