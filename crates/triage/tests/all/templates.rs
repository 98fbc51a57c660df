//! A collector template for another tool runs through the same launch, probe and journal machinery.

use std::collections::BTreeMap;

use secrecy::SecretString;
use triage::{CollectorSet, HostState, JobId, Platform, Run, Selection};

use crate::common::{fast_settings, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uac_template_is_launched_and_followed_with_its_secret_hidden() {
    let env = sandbox(30, 0.0, 0.0, 9).await;
    let resolved = Selection {
        all: true,
        platforms: vec![Platform::Linux],
        ..Default::default()
    }
    .resolve(&env.api)
    .await
    .unwrap();
    assert!(!resolved.hosts.is_empty());
    let job = JobId::random();
    let mut t = BTreeMap::new();
    t.insert(
        Platform::Linux,
        "./uac -p ir_triage --aws-s3-presigned-url {secret} -o uac-{job}".to_string(),
    );
    // a pre-signed URL as S3 issues them: several `&`, `%`, `=`
    let url = "https://bucket.example/upload?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261202%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261202T000000Z&X-Amz-Expires=7200&X-Amz-SignedHeaders=host&X-Amz-Signature=deadbeefcafe";
    let secret = SecretString::from(url.to_string());
    let set = CollectorSet::from_templates("uac", &t, Some(&secret), &job).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("uac.jsonl");
    let n = resolved.hosts.len();
    let outcome = Run::new(&env.api, job.clone(), fast_settings(20))
        .collector(set)
        .start(resolved.hosts, &journal)
        .await
        .unwrap();
    // the simulated hosts have no `uac` binary: the template ran, and its exit code and output were followed
    for h in &outcome.report.hosts {
        assert_eq!(h.state, HostState::Failed, "{}", h.hostname);
        let r = h.reason.as_deref().unwrap();
        assert!(
            r.starts_with("exit_code: 127:") && r.contains("not found"),
            "{r}"
        );
    }
    let jobs = env.jobs().await;
    assert_eq!(jobs.len(), n);
    for j in jobs.values().flatten() {
        let cmd = j["command"].as_str().unwrap();
        // one quoted word: the host's shell hands the whole URL to uac
        assert_eq!(
            cmd,
            format!("./uac -p ir_triage --aws-s3-presigned-url '{url}' -o uac-{job}")
        );
    }
    let text = std::fs::read_to_string(&journal).unwrap()
        + &serde_json::to_string(&outcome.report).unwrap();
    assert!(!text.contains("deadbeefcafe"));
    assert!(!text.contains("AKIAEXAMPLE"));
    assert_eq!(
        outcome.report.summary.exit_code,
        triage::exit_codes::NOTHING_RAN
    );
}
