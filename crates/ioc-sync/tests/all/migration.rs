//! Taking over from the Python connector: the IOCs it wrote are adopted, not duplicated.

use serde_json::json;

use crate::common::*;

const SHA256_UPPER: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
const DOMAIN_MIXED: &str = "Evil-Mixed.Example";

/// Falcon IOCs whose value equals `value` ignoring case.
async fn iocs_named(info: &sandbox::SandboxInfo, value: &str) -> Vec<serde_json::Value> {
    falcon_all(info)
        .await
        .into_iter()
        .filter(|i| {
            i["value"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_case_iocs_of_the_python_connector_are_adopted_not_duplicated() {
    let sb = sandbox(50, |_| {}).await;
    let info = sb.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env(&info, dir.path()));
    // Falcon keeps the case the Python connector sent (it writes the pattern's value verbatim).
    post(
        format!("{}/_sandbox/knobs", info.falcon_url),
        json!({"keep_value_case": true}),
    )
    .await;
    use falcon_sdk::iocs::{Action, IocType, NewIndicator, Platform, Severity};
    let python_wrote = |ioc_type, value: &str| {
        let mut n = NewIndicator::new(ioc_type, value, Action::from("detect"));
        n.severity = Some(Severity::from("medium"));
        n.applied_globally = Some(true);
        n.source = Some(ioc_sync::mapping::SOURCE.to_string());
        n.platforms = ["windows", "mac", "linux"]
            .into_iter()
            .map(Platform::from)
            .collect();
        n.mobile_action = Some(Action::from("detect"));
        n
    };
    let refused = crate::common::falcon_client(&info)
        .iocs()
        .create(vec![
            python_wrote(IocType::from("domain"), DOMAIN_MIXED),
            python_wrote(IocType::from("sha256"), SHA256_UPPER),
        ])
        .send()
        .await
        .unwrap()
        .failed;
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        iocs_named(&info, DOMAIN_MIXED).await[0]["value"],
        DOMAIN_MIXED
    );

    let domain_indicator = create_indicator(
        &info,
        json!({"pattern": format!("[domain-name:value = '{DOMAIN_MIXED}']"), "pattern_type": "stix",
               "main_observable_type": "Domain-Name"}),
    )
    .await;
    let hash_indicator = create_indicator(
        &info,
        json!({"pattern": format!("[file:hashes.'SHA-256' = '{SHA256_UPPER}']"), "pattern_type": "stix",
               "main_observable_type": "StixFile"}),
    )
    .await;
    let summary = sync_until_caught_up(&config).await;
    assert_eq!(summary.dead_letters, 0, "{summary:?}");
    for (value, indicator) in [
        (DOMAIN_MIXED, &domain_indicator),
        (SHA256_UPPER, &hash_indicator),
    ] {
        let found = iocs_named(&info, value).await;
        assert_eq!(found.len(), 1, "{value}: one IOC, adopted: {found:?}");
        let stix_id = get(format!(
            "{}/_sandbox/indicators/{indicator}",
            info.opencti_url
        ))
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let owner = format!("opencti:{stix_id}");
        assert!(
            found[0]["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == &json!(owner)),
            "{value}: the adopted IOC records its owner: {found:?}"
        );
    }
    // Reconcile sees them as wanted: nothing to create, nothing to remove.
    let r = ioc_sync::reconcile(&config, &confirmed(), |_| {})
        .await
        .unwrap();
    assert_eq!((r.plan.creates, r.plan.removals), (0, 0), "{r:?}");
    sb.shutdown().await;
}
