//! `preflight`: checks the API client's scopes by calling one read-only endpoint per scope, and lists the
//! Falcon exclusions Cado Host needs (`rtr-triage.md` 1.6 and 4.2).
//!
//! A scope counts as granted only from an answer that proves it: a `2xx`. A `403` proves it missing
//! (`falcon-api.md` 8), a `401` proves the credentials wrong. Any other answer proves nothing: a `404` on a
//! route that should exist may be a wrong cloud or a changed API as well as an unknown id, and a `5xx` or a
//! network error is no answer at all. Those read `unproven`.

use falcon_sdk::{FalconClient, StatusCode};

/// What a check's answer proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScopeStatus {
    /// The endpoint answered `2xx`: the scope is granted.
    Granted,
    /// The endpoint answered `403` (or `401`: the credentials are wrong): the scope is missing.
    Missing,
    /// Any other answer: it does not tell (see the module documentation).
    Unproven,
}

/// One scope check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScopeCheck {
    /// Falcon API scope name.
    pub scope: &'static str,
    /// What the orchestrator needs it for.
    pub needed_for: &'static str,
    /// The endpoint called.
    pub endpoint: &'static str,
    /// What the answer proves.
    pub status: ScopeStatus,
    /// Whether the scope was proven granted (`status == granted`).
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
        "active-responder commands (no read-only call needs this scope: a status read of a made-up request \
         answers 403 without it, and an unproven 404 with it)",
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

/// Calls one endpoint per scope; see the module documentation for what each answer proves.
pub async fn check_scopes(client: &FalconClient) -> Vec<ScopeCheck> {
    let mut out = Vec::new();
    for &(scope, needed_for, endpoint, optional) in CHECKS {
        let (path, query) = endpoint.split_once('?').unwrap_or((endpoint, ""));
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let res = client.get::<serde_json::Value>(path, &pairs).await;
        let (status, detail) = match res {
            Ok(_) => (ScopeStatus::Granted, "2xx: granted".to_string()),
            Err(e) => judge(e.status(), &e),
        };
        out.push(ScopeCheck {
            scope,
            needed_for,
            endpoint: path_only(endpoint),
            status,
            granted: status == ScopeStatus::Granted,
            optional,
            detail,
        });
    }
    out
}

/// What an error answer proves.
fn judge(status: Option<StatusCode>, e: &falcon_sdk::Error) -> (ScopeStatus, String) {
    match status {
        Some(StatusCode::FORBIDDEN) => (
            ScopeStatus::Missing,
            "403 forbidden: scope missing".to_string(),
        ),
        Some(StatusCode::UNAUTHORIZED) => (
            ScopeStatus::Missing,
            "401 unauthorized: check the client id and secret".to_string(),
        ),
        Some(StatusCode::NOT_FOUND) => (
            ScopeStatus::Unproven,
            "404: does not prove the scope (an unknown id, or a wrong cloud or changed route)"
                .to_string(),
        ),
        Some(s) => (
            ScopeStatus::Unproven,
            format!("{}: does not prove the scope", s.as_u16()),
        ),
        None => (ScopeStatus::Unproven, format!("no answer: {e:#}")),
    }
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

    #[tokio::test]
    async fn only_a_2xx_proves_a_scope_and_a_404_proves_nothing() {
        use wiremock::matchers::path;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(path("/oauth2/token"))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "access_token": "t", "token_type": "bearer", "expires_in": 1799})))
            .mount(&server)
            .await;
        let ok = serde_json::json!({"meta": {}, "resources": [], "errors": []});
        Mock::given(path("/devices/queries/devices/v1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&ok))
            .mount(&server)
            .await;
        Mock::given(path("/devices/queries/host-groups/v1"))
            .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({
                "meta": {}, "errors": [{"code": 403, "message": "access denied, authorization failed"}]})))
            .mount(&server)
            .await;
        // everything else: 404, as for a route that does not exist
        let client = FalconClient::builder()
            .client_id("id")
            .client_secret(secrecy::SecretString::from("secret"))
            .base_url(server.uri())
            .build()
            .unwrap();
        let checks = check_scopes(&client).await;
        let by: std::collections::BTreeMap<&str, &ScopeCheck> =
            checks.iter().map(|c| (c.scope, c)).collect();
        assert_eq!(by["Hosts: Read"].status, ScopeStatus::Granted);
        assert!(by["Hosts: Read"].granted);
        assert_eq!(by["Host Groups: Read"].status, ScopeStatus::Missing);
        for s in [
            "Real Time Response: Read",
            "Real Time Response: Write",
            "Alerts: Read",
        ] {
            assert_eq!(by[s].status, ScopeStatus::Unproven, "{s}");
            assert!(!by[s].granted, "{s}: a 404 counted as granted");
            assert!(
                by[s].detail.starts_with("404: does not prove"),
                "{}",
                by[s].detail
            );
        }
    }

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
