//! `reconcile` removes only what it saw: incomplete listings, the removal limit.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::common::*;

/// Owned IOC ids in Falcon with their `TO_DELETE` state: what a reconcile must not touch when it fails.
async fn falcon_snapshot(info: &sandbox::SandboxInfo) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = falcon_all(info)
        .await
        .iter()
        .map(|i| (key(i), withdrawn(i)))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_indicator_listing_is_an_error_and_writes_nothing() {
    // 1,200 indicators: the listing takes three pages of 500.
    let sb = sandbox(1_200, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    sync_until_caught_up(&config).await;
    let before = falcon_snapshot(&info).await;
    let listing = format!("{}/_sandbox/listing", info.opencti_url);
    for knob in [
        json!({"repeat_cursor_from_page": 1, "stop_after": null}),
        json!({"repeat_cursor_from_page": null, "stop_after": 700}),
    ] {
        post(listing.clone(), knob.clone()).await;
        let planned = Arc::new(Mutex::new(false));
        let seen = planned.clone();
        let err = ioc_sync::reconcile(&config, &confirmed(), move |_| *seen.lock().unwrap() = true)
            .await
            .expect_err("an incomplete listing must fail");
        let text = format!("{err:?}");
        assert!(text.contains("Incomplete"), "{knob}: {text}");
        assert!(
            !*planned.lock().unwrap(),
            "{knob}: no plan from a partial list"
        );
        assert_eq!(
            falcon_snapshot(&info).await,
            before,
            "{knob}: nothing written"
        );
    }
    post(
        listing,
        json!({"repeat_cursor_from_page": null, "stop_after": null}),
    )
    .await;
    let ok = ioc_sync::reconcile(&config, &confirmed(), |_| {})
        .await
        .unwrap();
    assert_eq!(ok.plan.removals, 0, "{ok:?}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_above_the_limit_need_confirmation_and_the_plan_comes_first() {
    let sb = sandbox(300, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    sync_until_caught_up(&config).await;
    // Indicators deleted in OpenCTI while the connector was not running: their IOCs are unwanted.
    let all = indicators(&info).await;
    for ind in all.iter().take(150) {
        let id = ind["id"].as_str().unwrap();
        let r = http()
            .delete(format!("{}/_sandbox/indicators/{id}", info.opencti_url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let before = falcon_snapshot(&info).await;
    let plans = Arc::new(Mutex::new(Vec::new()));
    let seen = plans.clone();
    let err = ioc_sync::reconcile(&config, &Default::default(), move |p| {
        seen.lock().unwrap().push(*p)
    })
    .await
    .expect_err("more removals than the default limit");
    let plan = plans.lock().unwrap()[0];
    assert!(plan.removals > ioc_sync::DEFAULT_MAX_REMOVALS, "{plan:?}");
    match err {
        ioc_sync::Error::RemovalLimit { removals, limit } => {
            assert_eq!(
                (removals, limit),
                (plan.removals, ioc_sync::DEFAULT_MAX_REMOVALS)
            );
        }
        other => panic!("expected RemovalLimit, got {other:?}"),
    }
    assert_eq!(falcon_snapshot(&info).await, before, "nothing written");

    // A raised limit or a confirmation lets it through; the summary carries the plan it printed.
    let opts = ioc_sync::ReconcileOptions {
        max_removals: plan.removals,
        ..Default::default()
    };
    let done = ioc_sync::reconcile(&config, &opts, |_| {}).await.unwrap();
    assert_eq!(done.plan, plan);
    assert_eq!(done.writes.soft_deleted as usize, plan.removals, "{done:?}");
    assert_converged(&info).await;
    sb.shutdown().await;
}
