//! Dissemination-assurance parts against the simulated OpenCTI: the report queue's delivery,
//! its bound, an older platform, and hit reports replayed after a restart.

use std::time::Duration;

use ioc_sync::assurance::hits::{HitAggregator, ValueIndex, Window};
use ioc_sync::assurance::queue::{Delivery, ReportQueue};
use opencti_client::{DeploymentReport, DeploymentStatus, OpenCtiClient, SecretString, Sent};
use sandbox::faults::FaultConfig;
use sandbox::opencti::{OpenCtiConfig, OpenCtiServer};
use serde_json::{Value, json};

async fn start(feature: bool) -> OpenCtiServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    OpenCtiServer::start(
        listener,
        OpenCtiConfig {
            indicators: 30,
            dissemination_assurance: feature,
            ..OpenCtiConfig::default()
        },
        3,
    )
}

fn client(s: &OpenCtiServer) -> OpenCtiClient {
    OpenCtiClient::builder(s.url(), SecretString::from(s.token()))
        .max_retries(0)
        .build()
        .unwrap()
}

async fn snapshot(s: &OpenCtiServer) -> Value {
    reqwest::get(format!("{}/_sandbox/deployments", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stix_ids(s: &OpenCtiServer) -> Vec<String> {
    let v: Value = reqwest::get(format!("{}/_sandbox/indicators", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn graphql_posts(s: &OpenCtiServer) -> u64 {
    let v: Value = reqwest::get(format!("{}/_sandbox/requests", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["requests"]["POST /graphql"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn queued_reports_reach_the_platform_coalesced_per_indicator() {
    let s = start(true).await;
    let wb = client(&s).deployment_write_back();
    let Sent::Done(p) = wb
        .security_platform_add("CrowdStrike Falcon", Some("EDR"))
        .await
        .unwrap()
    else {
        panic!()
    };
    let ids = stix_ids(&s).await;
    let mut q = ReportQueue::default();
    q.push(
        ids.iter()
            .take(20)
            .map(|i| DeploymentReport::new(i.clone(), DeploymentStatus::Deployed)),
    );
    // A later outcome of the same indicator replaces the queued one.
    let mut failed = DeploymentReport::new(ids[0].clone(), DeploymentStatus::Failed);
    failed.error_message = Some("Falcon refused".into());
    q.push([failed]);
    assert_eq!(q.len(), 20);
    assert_eq!(
        q.deliver(&wb, &p.id, Duration::from_secs(30)).await,
        Delivery::Done
    );
    assert!(q.is_empty());
    assert_eq!(q.stats().calls, 1, "one batched call for 20 indicators");
    let snap = snapshot(&s).await;
    let deps = snap["deployments"].as_array().unwrap();
    assert_eq!(deps.len(), 20);
    assert_eq!(
        deps.iter()
            .filter(|d| d["deployment_status"] == "failed")
            .count(),
        1
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_slow_platform_never_holds_the_writes_longer_than_the_bound() {
    let s = start(true).await;
    let wb = client(&s).deployment_write_back();
    let Sent::Done(p) = wb
        .security_platform_add("CrowdStrike Falcon", None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let ids = stix_ids(&s).await;
    s.faults().set(FaultConfig {
        latency_ms: 120_000,
        ..FaultConfig::default()
    });
    let mut q = ReportQueue::default();
    q.push([DeploymentReport::new(
        ids[0].clone(),
        DeploymentStatus::Deployed,
    )]);
    // The platform answers in 2 minutes; the bound ends the delivery, the report stays queued.
    assert_eq!(
        q.deliver(&wb, &p.id, Duration::from_millis(300)).await,
        Delivery::Partial
    );
    assert_eq!(q.len(), 1);
    assert_eq!(q.stats().failed_deliveries, 1);
    // Within the backoff nothing is tried.
    assert_eq!(
        q.deliver(&wb, &p.id, Duration::from_secs(30)).await,
        Delivery::NotDue
    );
    s.faults().set(FaultConfig::default());
    s.shutdown().await;
}

#[tokio::test]
async fn an_older_platform_gets_no_report_and_one_probe() {
    let s = start(false).await;
    let wb = client(&s).deployment_write_back();
    assert_eq!(
        wb.security_platform_add("CrowdStrike Falcon", None)
            .await
            .unwrap(),
        Sent::Unsupported
    );
    let before = graphql_posts(&s).await;
    let mut q = ReportQueue::default();
    q.push([DeploymentReport::new(
        "indicator--x",
        DeploymentStatus::Deployed,
    )]);
    assert_eq!(
        q.deliver(&wb, "p", Duration::from_secs(5)).await,
        Delivery::Unsupported
    );
    assert!(q.is_empty());
    q.push([DeploymentReport::new(
        "indicator--y",
        DeploymentStatus::Deployed,
    )]);
    assert!(q.is_empty(), "nothing is queued any more");
    assert_eq!(
        graphql_posts(&s).await,
        before,
        "no GraphQL call after the detection"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_replayed_hit_window_is_counted_once() {
    let s = start(true).await;
    let wb = client(&s).deployment_write_back();
    let Sent::Done(p) = wb
        .security_platform_add("CrowdStrike Falcon", None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let ids = stix_ids(&s).await;
    let mut ix = ValueIndex::default();
    ix.insert(&ids[0], "first.example.com");
    ix.insert(&ids[0], "second.example.com");
    let now = chrono::Utc::now();
    let w = Window {
        since: now - chrono::Duration::hours(2),
        until: now - chrono::Duration::hours(1),
    };
    let at = |m: i64| (w.since + chrono::Duration::minutes(m)).to_rfc3339();
    let alerts = [
        json!({"composite_id": "c1", "created_timestamp": at(1), "ioc_value": "second.example.com"}),
        json!({"composite_id": "c2", "created_timestamp": at(2), "ioc_values": ["x", "SECOND.example.com"]}),
    ];
    for _restart in 0..2 {
        let mut agg = HitAggregator::new(w, &ix);
        for a in &alerts {
            agg.push(a);
        }
        for r in agg.reports() {
            assert!(matches!(
                wb.report_hits(&p.id, &r).await.unwrap(),
                Sent::Done(_)
            ));
        }
    }
    let snap = snapshot(&s).await;
    assert_eq!(snap["deployments"][0]["hit_count"], 2, "{snap}");
    assert_eq!(snap["sightings"][0]["attribute_count"], 2);
    s.shutdown().await;
}

async fn post(url: String, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

#[tokio::test]
async fn hits_on_every_value_late_alerts_and_restarts_count_once() {
    use ioc_sync::assurance::runtime::Assurance;
    use ioc_sync::assurance::settings::AssuranceSettings;
    let sb = crate::common::sandbox(10, |c| c.falcon.alerts = Some(0)).await;
    let info = sb.info().clone();
    let falcon = crate::common::falcon_client(&info);
    let octi = OpenCtiClient::builder(
        info.opencti_url.clone(),
        SecretString::from(info.opencti_token.clone()),
    )
    .build()
    .unwrap();
    let mut a = Assurance::new(&octi, AssuranceSettings::default()).unwrap();
    let v: Value = reqwest::get(format!("{}/_sandbox/indicators", info.opencti_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ind = v["indicators"][0]["id"].as_str().unwrap().to_owned();
    // An indicator whose pattern has two values; alerts only ever name the second one.
    let mut ix = ValueIndex::default();
    ix.insert(&ind, "first.example.com");
    ix.insert(&ind, "second.example.com");
    let hit = |ago: i64, visible_after: i64| {
        post(
            format!("{}/_sandbox/alerts/ioc-hit", info.falcon_url),
            json!({"values": ["other.example.net", "second.example.com"], "ago_secs": ago, "visible_after_secs": visible_after}),
        )
    };
    hit(30 * 60, 0).await; // inside the first closed window
    hit(10 * 60, 8 * 60).await; // created 10 min ago, visible only in 8 min (ingestion lag)
    let t0 = chrono::Utc::now();
    let mut saved: Option<ioc_sync::assurance::hits::HitCursor> = None;
    let run = a
        .collect_hits(&falcon, &ix, None, t0, |c| saved = Some(c.clone()))
        .await
        .unwrap();
    assert!(run.complete);
    assert_eq!(run.stats.hits, 1, "{run:?}");
    // 20 minutes later (Falcon's clock too): the late alert is visible and inside the next window.
    post(
        format!("{}/_sandbox/alerts/clock", info.falcon_url),
        json!({"advance_secs": 20 * 60}),
    )
    .await;
    let t1 = t0 + chrono::Duration::minutes(20);
    let cursor = saved.clone().unwrap();
    let mut in_progress = None;
    let run = a
        .collect_hits(&falcon, &ix, Some(&cursor), t1, |c| {
            if c.until.is_some() {
                in_progress = Some(c.clone());
            }
        })
        .await
        .unwrap();
    assert_eq!(run.stats.hits, 1, "the late alert is counted: {run:?}");
    // A restart that lost the end of that run redoes the same window: nothing counted twice.
    let run = a
        .collect_hits(
            &falcon,
            &ix,
            in_progress.as_ref(),
            t1 + chrono::Duration::minutes(3),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(run.reported, 1);
    let snap: Value = reqwest::get(format!("{}/_sandbox/deployments", info.opencti_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snap["deployments"][0]["hit_count"], 2, "{snap}");
    assert_eq!(snap["deployments"][0]["deployment_status"], "active");
    sb.shutdown().await;
}
