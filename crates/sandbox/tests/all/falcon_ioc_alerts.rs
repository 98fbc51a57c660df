//! Falcon simulator: alerts raised against the IOCs it holds, driven by the simulator clock,
//! with late (ingestion-lagged) alerts.

use reqwest::Method;
use sandbox::falcon::FalconConfig;
use serde_json::{Value, json};

use crate::falcon::Falcon;

async fn setup() -> Falcon {
    let f = Falcon::start(FalconConfig {
        hosts: 4,
        alerts: Some(0),
        ..FalconConfig::default()
    })
    .await;
    let mut items = Vec::new();
    for v in ["evil-one.example.com", "evil-two.example.com"] {
        items.push(json!({"type": "domain", "value": v, "action": "detect", "severity": "high",
            "platforms": ["windows"], "applied_globally": true, "source": "OpenCTI IOC", "description": "t"}));
    }
    let (status, body) = f
        .send(
            Method::POST,
            "/iocs/entities/indicators/v1",
            &[],
            json!({"indicators": items}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    f
}

async fn ioc_alerts(f: &Falcon) -> Vec<Value> {
    let (status, body) = f
        .send(Method::POST, "/alerts/combined/alerts/v1", &[], json!({
            "filter": "created_timestamp:>='2000-01-01T00:00:00Z'", "sort": "created_timestamp|asc", "limit": 1000}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["resources"].as_array().unwrap().clone()
}

#[tokio::test]
async fn hits_per_minute_follow_the_simulator_clock_and_late_alerts_arrive_later() {
    let f = setup().await;
    assert!(ioc_alerts(&f).await.is_empty());
    f.control(
        Method::POST,
        "/_sandbox/alerts/ioc-hits",
        Some(json!({"per_minute": 6, "late_every": 3, "late_delay_secs": 600})),
    )
    .await;
    f.control(
        Method::POST,
        "/_sandbox/alerts/clock",
        Some(json!({"advance_secs": 300})),
    )
    .await;
    let seen = ioc_alerts(&f).await;
    // 30 alerts due in 5 minutes (the wall clock adds at most a fraction), one in three late.
    assert!((20..=21).contains(&seen.len()), "{}", seen.len());
    for a in &seen {
        let v = a["ioc_value"].as_str().unwrap();
        assert!(v.starts_with("evil-"), "{a}");
        assert_eq!(a["ioc_values"], json!([v]));
        assert_eq!(a["ioc_context"][0]["ioc_value"], v);
        assert_eq!(a["ioc_source"], "OpenCTI IOC");
    }
    // Ten minutes later the late ones are visible, with their original (older) creation time.
    f.control(
        Method::POST,
        "/_sandbox/alerts/clock",
        Some(json!({"advance_secs": 600})),
    )
    .await;
    f.control(
        Method::POST,
        "/_sandbox/alerts/ioc-hits",
        Some(json!({"per_minute": 0})),
    )
    .await;
    let all = ioc_alerts(&f).await;
    // 90 due: the 10 late ones of the first window are now visible, the 20 late ones of the
    // second window are not yet.
    assert!((70..=71).contains(&all.len()), "{}", all.len());
    let first_batch_max = seen
        .iter()
        .map(|a| a["created_timestamp"].as_str().unwrap().to_owned())
        .max()
        .unwrap();
    let late_in_window = all
        .iter()
        .filter(|a| {
            !seen.contains(a)
                && a["created_timestamp"].as_str().unwrap() <= first_batch_max.as_str()
        })
        .count();
    assert!(
        late_in_window >= 9,
        "late alerts keep their creation time: {late_in_window}"
    );
}

#[tokio::test]
async fn one_hit_on_demand_carries_every_value() {
    let f = setup().await;
    let v = f.control(Method::POST, "/_sandbox/alerts/ioc-hit", Some(json!({
        "values": ["evil-two.example.com", "10.0.0.9"], "ago_secs": 30, "visible_after_secs": 120}))).await;
    let composite = v["composite_id"].as_str().unwrap().to_owned();
    assert!(ioc_alerts(&f).await.is_empty(), "not visible yet");
    f.control(
        Method::POST,
        "/_sandbox/alerts/clock",
        Some(json!({"advance_secs": 121})),
    )
    .await;
    let all = ioc_alerts(&f).await;
    assert_eq!(all.len(), 1);
    let a = &all[0];
    assert_eq!(a["composite_id"], composite.as_str());
    assert_eq!(a["ioc_value"], "evil-two.example.com");
    assert_eq!(a["ioc_values"], json!(["evil-two.example.com", "10.0.0.9"]));
    assert_eq!(a["ioc_context"][1]["ioc_value"], "10.0.0.9");
    assert_eq!(a["ioc_type"], "domain");
}
