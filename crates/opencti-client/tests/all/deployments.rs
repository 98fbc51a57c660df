//! Dissemination assurance against wiremock: the wire shapes of reference §3, detection and the
//! no-op on an older platform, strict listing, rate limits, and no redirect following.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use opencti_client::{
    DeploymentReport, DeploymentStatus, DeploymentWriteBack, Error, Feature, HitReport,
    OpenCtiClient, ReportErrorKind, SecretString, Sent,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use crate::support::TOKEN;

struct Op(&'static str);
impl Match for Op {
    fn matches(&self, req: &Request) -> bool {
        serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("query")?.as_str().map(|q| q.contains(self.0)))
            .unwrap_or(false)
    }
}

fn vars(req: &Request) -> Value {
    serde_json::from_slice::<Value>(&req.body).unwrap()["variables"].clone()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(|req: &Request| {
            ResponseTemplate::new(599).set_body_string(format!(
                "unmatched {} {}",
                req.url.path(),
                String::from_utf8_lossy(&req.body)
            ))
        })
        .with_priority(u8::MAX)
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> OpenCtiClient {
    OpenCtiClient::builder(server.uri(), SecretString::from(TOKEN))
        .header("x-proxy-auth", "proxy-secret")
        .max_retries(2)
        .build()
        .unwrap()
}

async fn supported(server: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(Op("query DeploymentWriteBackFeatures { indicators(first: 1) { edges { node { id deployments_count } } } }"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"indicators": {"edges": []}}}),
        ))
        .expect(times)
        .mount(server)
        .await;
}

async fn requests_with(server: &MockServer, op: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(op))
        .collect()
}

#[tokio::test]
async fn batch_reports_are_sent_validated_chunked_and_errors_typed() {
    let server = server().await;
    supported(&server, 1).await;
    Mock::given(Op("mutation IndicatorReportDeployments($platformId: StixRef!, $reports: [IndicatorDeploymentReportInput!]!) { indicatorReportDeployments(platformId: $platformId, reports: $reports) { processed created updated unchanged errors { indicatorId message } } }"))
        .respond_with(|req: &Request| {
            let v = vars(req);
            let n = v["reports"].as_array().unwrap().len() as u64;
            let errors: Vec<Value> = v["reports"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["indicatorId"] == "gone")
                .map(|r| json!({"indicatorId": r["indicatorId"], "message": "Indicator not found or not accessible"}))
                .collect();
            let e = errors.len() as u64;
            ResponseTemplate::new(200).set_body_json(json!({"data": {"indicatorReportDeployments": {
                "processed": n - e, "created": n - e, "updated": 0, "unchanged": 0, "errors": errors}}}))
        })
        .expect(2)
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    let mut reports: Vec<DeploymentReport> = (0..501)
        .map(|i| {
            let mut r = DeploymentReport::new(format!("ind-{i}"), DeploymentStatus::Deployed);
            r.external_id = Some(format!("ioc-{i}"));
            r
        })
        .collect();
    reports.push(DeploymentReport::new("gone", DeploymentStatus::Removed));
    let mut long = DeploymentReport::new("long-ext", DeploymentStatus::Deployed);
    long.external_id = Some("x".repeat(1001));
    reports.push(long);
    let mut failed = DeploymentReport::new("ind-f", DeploymentStatus::Failed);
    failed.error_message = Some("CrowdStrike refused the IOC push: invalid request".into());
    failed.last_sync_at = Some(t("2026-10-03T10:00:00Z"));
    reports.push(failed);

    let Sent::Done(out) = wb.report_deployments("plat-1", &reports).await.unwrap() else {
        panic!("not sent")
    };
    assert_eq!(out.calls, 2);
    assert_eq!(out.processed, 502);
    assert_eq!(out.errors.len(), 2);
    let kinds: Vec<_> = out
        .errors
        .iter()
        .map(|e| (e.indicator_id.as_str(), e.kind))
        .collect();
    assert!(kinds.contains(&("long-ext", ReportErrorKind::ExternalIdTooLong)));
    assert!(kinds.contains(&("gone", ReportErrorKind::IndicatorNotFound)));

    let calls = requests_with(&server, "IndicatorReportDeployments").await;
    let first = vars(&calls[0]);
    assert_eq!(first["platformId"], "plat-1");
    assert_eq!(first["reports"].as_array().unwrap().len(), 500);
    assert_eq!(
        first["reports"][0],
        json!({"indicatorId": "ind-0", "status": "deployed", "externalId": "ioc-0"})
    );
    let second = vars(&calls[1]);
    let tail = second["reports"].as_array().unwrap();
    assert_eq!(tail.len(), 3, "the over-long external id is never sent");
    assert_eq!(
        tail[2],
        json!({"indicatorId": "ind-f", "status": "failed", "metadata": {
            "last_sync_at": "2026-10-03T10:00:00.000Z",
            "error_message": "CrowdStrike refused the IOC push: invalid request"}})
    );
}

#[tokio::test]
async fn older_platform_makes_every_call_a_noop_after_one_probe() {
    let server = server().await;
    Mock::given(Op("DeploymentWriteBackFeatures"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"errors": [{
            "message": "Cannot query field \"deployments_count\" on type \"Indicator\".",
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]})))
        .expect(1)
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    assert_eq!(wb.feature().await, Feature::Unsupported);
    let r = DeploymentReport::new("i", DeploymentStatus::Deployed);
    assert_eq!(
        wb.report_deployments("p", std::slice::from_ref(&r))
            .await
            .unwrap(),
        Sent::Unsupported
    );
    assert_eq!(
        wb.report_deployment("p", &r).await.unwrap(),
        Sent::Unsupported
    );
    assert_eq!(
        wb.security_platform_add("CrowdStrike Falcon", Some("EDR"))
            .await
            .unwrap(),
        Sent::Unsupported
    );
    let hit = HitReport {
        indicator_id: "i".into(),
        count: 1,
        first_hit: t("2026-10-03T10:00:00Z"),
        last_hit: t("2026-10-03T10:00:00Z"),
        report_id: "r".into(),
    };
    assert_eq!(wb.report_hits("p", &hit).await.unwrap(), Sent::Unsupported);
    let e = wb.deployments("p").stream().try_next().await.unwrap_err();
    assert!(matches!(e, Error::Incomplete { .. }), "{e:?}");
    // A clone shares the cache: still one probe (checked by `.expect(1)` on drop).
    let wb2: DeploymentWriteBack = wb.clone();
    assert_eq!(wb2.feature().await, Feature::Unsupported);
}

#[tokio::test]
async fn transient_detection_failure_defers_and_is_retried_after_the_delay() {
    let server = server().await;
    Mock::given(Op("DeploymentWriteBackFeatures"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&server)
        .await;
    supported(&server, 1).await;
    let c = OpenCtiClient::builder(server.uri(), SecretString::from(TOKEN))
        .max_retries(0)
        .build()
        .unwrap();
    // A long delay: after the failed probe, no new probe, and reports are deferred.
    let wb = c.deployment_write_back();
    let r = DeploymentReport::new("i", DeploymentStatus::Deployed);
    assert_eq!(
        wb.report_deployments("p", std::slice::from_ref(&r))
            .await
            .unwrap(),
        Sent::Deferred
    );
    assert_eq!(wb.feature().await, Feature::Unknown);
    assert_eq!(
        wb.report_deployments("p", std::slice::from_ref(&r))
            .await
            .unwrap(),
        Sent::Deferred
    );
    // No delay: each call probes again; the second probe fails, the third succeeds.
    let wb = c
        .deployment_write_back()
        .detection_retry(std::time::Duration::ZERO);
    assert_eq!(wb.feature().await, Feature::Unknown);
    assert_eq!(wb.feature().await, Feature::Supported);
    let reqs = requests_with(&server, "DeploymentWriteBackFeatures").await;
    assert_eq!(
        reqs.len(),
        3,
        "a deferred call within the delay never probes"
    );
}

#[tokio::test]
async fn security_platform_is_upserted_by_name_with_its_type() {
    let server = server().await;
    supported(&server, 1).await;
    Mock::given(Op("mutation DeploymentSecurityPlatformAdd($input: SecurityPlatformAddInput!) { securityPlatformAdd(input: $input) { id standard_id name } }"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"securityPlatformAdd": {
            "id": "sp-1", "standard_id": "identity--1", "name": "CrowdStrike Falcon"}}})))
        .expect(2)
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    let Sent::Done(p) = wb
        .security_platform_add(" CrowdStrike Falcon ", Some("EDR"))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(p.id, "sp-1");
    let _ = wb
        .security_platform_add("CrowdStrike Falcon", Some(""))
        .await
        .unwrap();
    let calls = requests_with(&server, "DeploymentSecurityPlatformAdd").await;
    assert_eq!(
        vars(&calls[0])["input"],
        json!({"name": "CrowdStrike Falcon", "update": true, "security_platform_type": "EDR"})
    );
    assert_eq!(
        vars(&calls[1])["input"],
        json!({"name": "CrowdStrike Falcon", "update": true})
    );
    let e = wb.security_platform_add("X", None).await.unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
}

fn node(id: &str, status: Value, from: Value) -> Value {
    json!({"node": {"id": id, "deployment_status": status, "external_id": null, "revoked": false,
        "last_sync_at": "2026-10-03T10:00:00.000Z", "last_hit_at": null, "hit_count": 0, "from": from}})
}

fn ind(id: &str) -> Value {
    json!({"id": id, "standard_id": format!("indicator--{id}"), "name": id,
           "pattern": "[ipv4-addr:value = '10.0.0.1']", "pattern_type": "stix", "revoked": false,
           "valid_until": null, "x_opencti_main_observable_type": "IPv4-Addr"})
}

#[tokio::test]
async fn listing_pages_with_the_sdk_variables_and_reads_null_status_as_pending() {
    let server = server().await;
    supported(&server, 1).await;
    Mock::given(Op("query IndicatorDeploymentsOfPlatform($relationshipTypes: [String], $toId: [String], $first: Int, $after: ID, $filters: FilterGroup) { stixCoreRelationships(relationship_type: $relationshipTypes, toId: $toId, first: $first, after: $after, filters: $filters) { edges { node { id deployment_status external_id revoked last_sync_at last_hit_at hit_count from { ... on Indicator { id standard_id name pattern pattern_type revoked valid_until x_opencti_main_observable_type } } } } pageInfo { endCursor hasNextPage"))
        .respond_with(|req: &Request| {
            let v = vars(req);
            let body = if v["after"].is_null() {
                json!({"edges": [node("r1", json!(null), ind("a")), node("r2", json!("active"), json!(null))],
                       "pageInfo": {"endCursor": "c1", "hasNextPage": true, "globalCount": 3}})
            } else {
                json!({"edges": [node("r3", json!("failed"), ind("c"))],
                       "pageInfo": {"endCursor": "c2", "hasNextPage": false, "globalCount": 3}})
            };
            ResponseTemplate::new(200).set_body_json(json!({"data": {"stixCoreRelationships": body}}))
        })
        .expect(2)
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    let all: Vec<_> = wb.deployments("sp-1").stream().try_collect().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].deployment_status, DeploymentStatus::Pending);
    assert!(
        all[1].from.is_none(),
        "an unreadable indicator is kept as None"
    );
    assert_eq!(all[2].deployment_status, DeploymentStatus::Failed);
    let calls = requests_with(&server, "IndicatorDeploymentsOfPlatform").await;
    assert_eq!(
        vars(&calls[0]),
        json!({"relationshipTypes": ["deployed-on"], "toId": ["sp-1"], "first": 500, "after": null,
               "filters": {"mode": "and", "filterGroups": [], "filters": [{"key": "deployment_status",
               "values": ["pending", "deployed", "active", "failed", "expired"]}]}})
    );
    assert_eq!(vars(&calls[1])["after"], "c1");
}

async fn listing_error(pages: Vec<Value>) -> Error {
    let server = server().await;
    supported(&server, 1).await;
    let pages = std::sync::Arc::new(pages);
    Mock::given(Op("IndicatorDeploymentsOfPlatform"))
        .respond_with(move |req: &Request| {
            let after = vars(req)["after"].as_str().map(str::to_string);
            let i = match after.as_deref() {
                None => 0,
                Some(c) => c.trim_start_matches('c').parse::<usize>().unwrap(),
            };
            let i = i.min(pages.len() - 1);
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"stixCoreRelationships": pages[i].clone()}}))
        })
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    let r: Result<Vec<_>, _> = wb.deployments("sp-1").stream().try_collect().await;
    r.unwrap_err()
}

#[tokio::test]
async fn a_truncated_listing_is_an_error_never_a_short_success() {
    // A repeated cursor.
    let e = listing_error(vec![
        json!({"edges": [node("r1", json!("active"), ind("a"))], "pageInfo": {"endCursor": "c1", "hasNextPage": true}}),
        json!({"edges": [node("r2", json!("active"), ind("b"))], "pageInfo": {"endCursor": "c1", "hasNextPage": true}}),
    ])
    .await;
    assert!(
        matches!(e, Error::Incomplete { .. }) && e.to_string().contains("repeated"),
        "{e}"
    );
    // hasNextPage without a cursor.
    let e = listing_error(vec![
        json!({"edges": [], "pageInfo": {"endCursor": null, "hasNextPage": true}}),
    ])
    .await;
    assert!(e.to_string().contains("without endCursor"), "{e}");
    // Fewer than announced.
    let e = listing_error(vec![
        json!({"edges": [node("r1", json!("active"), ind("a"))],
        "pageInfo": {"endCursor": "c1", "hasNextPage": false, "globalCount": 2}}),
    ])
    .await;
    assert!(
        e.to_string().contains("1 deployments read, 2 announced"),
        "{e}"
    );
    // A page without pageInfo, or an edge without node.
    let e = listing_error(vec![json!({"edges": []})]).await;
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
    let e = listing_error(vec![
        json!({"edges": [{}], "pageInfo": {"hasNextPage": false}}),
    ])
    .await;
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
}

#[tokio::test]
async fn hits_are_sent_with_stable_report_id_and_checked_locally() {
    let server = server().await;
    supported(&server, 1).await;
    Mock::given(Op("mutation IndicatorReportHits($indicatorId: StixRef!, $platformId: StixRef!, $count: Int!, $lastHit: DateTime, $firstHit: DateTime, $reportId: String) { indicatorReportHits(indicatorId: $indicatorId, platformId: $platformId, count: $count, lastHit: $lastHit, firstHit: $firstHit, reportId: $reportId) { id } }"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"indicatorReportHits": {"id": "sighting--x"}}})))
        .expect(1)
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    let mut hit = HitReport {
        indicator_id: "ind-1".into(),
        count: 3,
        first_hit: t("2026-10-01T09:00:00Z"),
        last_hit: t("2026-10-01T10:00:00Z"),
        report_id: "rep-1".into(),
    };
    assert_eq!(
        wb.report_hits("sp-1", &hit).await.unwrap(),
        Sent::Done("sighting--x".into())
    );
    let calls = requests_with(&server, "IndicatorReportHits").await;
    assert_eq!(
        vars(&calls[0]),
        json!({"indicatorId": "ind-1", "platformId": "sp-1", "count": 3,
               "firstHit": "2026-10-01T09:00:00.000Z", "lastHit": "2026-10-01T10:00:00.000Z", "reportId": "rep-1"})
    );
    hit.count = 0;
    assert!(
        wb.report_hits("sp-1", &hit)
            .await
            .unwrap_err()
            .to_string()
            .contains("at least 1")
    );
    hit.count = 1;
    hit.report_id = "r".repeat(257);
    assert!(matches!(
        wb.report_hits("sp-1", &hit).await,
        Err(Error::Config { .. })
    ));
    hit.report_id = "r".into();
    hit.first_hit = t("2026-10-02T00:00:00Z");
    assert!(
        wb.report_hits("sp-1", &hit)
            .await
            .unwrap_err()
            .to_string()
            .contains("first hit")
    );
}

#[tokio::test]
async fn single_report_and_its_refusal() {
    let server = server().await;
    supported(&server, 1).await;
    Mock::given(Op("mutation IndicatorReportDeployment($indicatorId: StixRef!, $platformId: StixRef!, $status: IndicatorDeploymentStatus!, $externalId: String, $metadata: IndicatorDeploymentMetadataInput) { indicatorReportDeployment("))
        .respond_with(|req: &Request| {
            if vars(req)["indicatorId"] == "gone" {
                ResponseTemplate::new(200).set_body_json(json!({"errors": [{"name": "FUNCTIONAL_ERROR",
                    "message": "Indicator not found or not accessible"}], "data": null}))
            } else {
                ResponseTemplate::new(200).set_body_json(json!({"data": {"indicatorReportDeployment": {"id": "rel-1"}}}))
            }
        })
        .expect(2)
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    let mut r = DeploymentReport::new("ind-1", DeploymentStatus::Removed);
    r.external_id = Some("ioc-1".into());
    r.removed_at = Some(t("2026-10-03T10:00:00Z"));
    assert_eq!(
        wb.report_deployment("sp-1", &r).await.unwrap(),
        Sent::Done("rel-1".into())
    );
    let v = vars(&requests_with(&server, "IndicatorReportDeployment(").await[0]);
    assert_eq!(
        v,
        json!({"indicatorId": "ind-1", "platformId": "sp-1", "status": "removed", "externalId": "ioc-1",
               "metadata": {"removed_at": "2026-10-03T10:00:00.000Z"}})
    );
    let e = wb
        .report_deployment(
            "sp-1",
            &DeploymentReport::new("gone", DeploymentStatus::Deployed),
        )
        .await
        .unwrap_err();
    assert!(e.is_rejection());
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn rate_limit_is_retried_not_dropped() {
    let server = server().await;
    supported(&server, 1).await;
    Mock::given(Op("IndicatorReportDeployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"errors": [{"name": "FUNCTIONAL_ERROR",
            "message": "Too many requests", "data": {"kind": "batch", "retry_after_ms": 20}}], "data": null})))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(Op("IndicatorReportDeployments"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"indicatorReportDeployments": {
            "processed": 1, "created": 1, "updated": 0, "unchanged": 0, "errors": []}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let wb = client(&server).deployment_write_back();
    let _ = wb.feature().await;
    let out = wb
        .report_deployments(
            "sp-1",
            &[DeploymentReport::new("i", DeploymentStatus::Deployed)],
        )
        .await
        .unwrap();
    assert!(
        matches!(out, Sent::Done(ref o) if o.processed == 1),
        "{out:?}"
    );
}

#[tokio::test]
async fn graphql_never_follows_a_redirect_with_custom_headers() {
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"about": {"version": "x"}}})),
        )
        .expect(0)
        .mount(&elsewhere)
        .await;
    let server = server().await;
    Mock::given(path("/graphql"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/graphql", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let e = client(&server).health_check().await.unwrap_err();
    assert_eq!(e.status(), Some(307), "{e:?}");
}
