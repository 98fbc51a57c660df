//! IOC create / duplicate / update / delete / combined through falcon-sdk against the sandbox IOC
//! store (checked through `GET /_sandbox/iocs`).

use std::collections::BTreeSet;

use falcon_sdk::fql::Fql;
use falcon_sdk::iocs::{Action, IndicatorUpdate, IocType, NewIndicator, Platform, Severity};
use futures::TryStreamExt;
use serde_json::Value;

use crate::common::{self, s};

const SOURCE: &str = "e2e-feed";

fn samples() -> Vec<NewIndicator> {
    let all = [Platform::Windows, Platform::Mac, Platform::Linux];
    vec![
        NewIndicator::new(IocType::Domain, "evil.example.com", Action::Detect)
            .severity(Severity::High)
            .platforms(all.clone())
            .source(SOURCE)
            .tags(["e2e", "domain"])
            .description("a domain"),
        NewIndicator::new(IocType::Ipv4, "198.51.100.7", Action::Detect)
            .severity(Severity::Medium)
            .platforms(all.clone())
            .source(SOURCE),
        NewIndicator::new(IocType::Ipv6, "2001:db8::7", Action::Detect)
            .severity(Severity::Low)
            .platforms(all.clone())
            .source(SOURCE),
        NewIndicator::new(
            IocType::Sha256,
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
            Action::Prevent,
        )
        .severity(Severity::Critical)
        .platforms([Platform::Windows])
        .source(SOURCE),
        NewIndicator::new(
            IocType::Md5,
            "44d88612fea8a8f36de82e1278abb02f",
            Action::Detect,
        )
        .severity(Severity::High)
        .platforms(all)
        .source(SOURCE),
    ]
}

fn find<'a>(store: &'a [Value], type_: &str, value: &str) -> &'a Value {
    store
        .iter()
        .find(|i| i["type"] == type_ && i["value"] == value)
        .unwrap_or_else(|| panic!("{type_} {value} not in the store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioc_lifecycle_against_the_store() {
    let sb = common::start(common::config(10, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);

    // Create: every item written, with the fields we sent.
    let report = client
        .iocs()
        .create(samples())
        .comment("e2e create")
        .send()
        .await
        .expect("create");
    assert_eq!(report.written.len(), 5, "failed: {:?}", report.failed);
    assert!(report.failed.is_empty());
    assert!(report.written.iter().all(|i| i.id.len() == 64));
    let store = common::ioc_store(info).await;
    assert_eq!(store.len(), 5);
    let d = find(&store, "domain", "evil.example.com");
    assert_eq!(d["action"], "detect");
    assert_eq!(d["severity"], "high");
    assert_eq!(d["source"], SOURCE);
    assert_eq!(d["description"], "a domain");
    assert_eq!(d["applied_globally"], true);
    assert_eq!(d["created_by"], info.falcon_client_id.as_str());
    let tags: BTreeSet<&str> = d["tags"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(tags, BTreeSet::from(["e2e", "domain"]));
    let plat: BTreeSet<&str> = d["platforms"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(plat, BTreeSet::from(["windows", "mac", "linux"]));
    let sha = find(
        &store,
        "sha256",
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
    );
    assert_eq!(sha["action"], "prevent");
    assert_eq!(sha["platforms"], serde_json::json!(["windows"]));

    // Duplicates: reported per item with the caller's index; the new item of the batch is written
    // once (not twice: the valid items of a 400 batch are already in the store).
    let batch = vec![
        NewIndicator::new(IocType::Domain, "new.example.org", Action::Detect)
            .severity(Severity::Low)
            .platforms([Platform::Linux])
            .source(SOURCE),
        samples()[0].clone(),
        samples()[1].clone(),
        // Invalid locally: never sent.
        NewIndicator::new(IocType::Ipv4, "999.1.1.1", Action::Detect)
            .severity(Severity::Low)
            .platforms([Platform::Linux])
            .source(SOURCE),
    ];
    let report = client
        .iocs()
        .create(batch)
        .send()
        .await
        .expect("create dups");
    let written: Vec<&str> = report.written.iter().map(|i| i.value.as_str()).collect();
    assert_eq!(written, ["new.example.org"]);
    let mut dup_idx: Vec<usize> = report
        .failed
        .iter()
        .filter(|f| f.is_duplicate())
        .map(|f| f.index.expect("duplicate matched to its item"))
        .collect();
    dup_idx.sort();
    assert_eq!(dup_idx, [1, 2], "{:?}", report.failed);
    let invalid: Vec<_> = report.failed.iter().filter(|f| !f.is_duplicate()).collect();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].index, Some(3));
    let store = common::ioc_store(info).await;
    assert_eq!(
        store.len(),
        6,
        "duplicates or a resent item reached the store"
    );

    // Update: only the fields set change.
    let id = s(&find(&store, "domain", "evil.example.com")["id"]).to_owned();
    let mut u = IndicatorUpdate::new(&id);
    u.severity = Some(Severity::Low);
    u.description = Some("downgraded".into());
    let report = client.iocs().update(vec![u]).send().await.expect("update");
    assert_eq!(report.written.len(), 1, "{:?}", report.failed);
    assert_eq!(report.written[0].severity, Some(Severity::Low));
    let store = common::ioc_store(info).await;
    let d = find(&store, "domain", "evil.example.com");
    assert_eq!(d["severity"], "low");
    assert_eq!(d["description"], "downgraded");
    assert_eq!(d["action"], "detect", "an unset field changed");
    assert_eq!(d["source"], SOURCE);

    // get by id.
    let got = client.iocs().get(&[id.as_str()]).await.expect("get");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, "evil.example.com");
    assert_eq!(got[0].type_, IocType::Domain);
    assert_eq!(got[0].description.as_deref(), Some("downgraded"));

    // Combined with filters (server-side FQL).
    let high: Vec<_> = client
        .iocs()
        .combined()
        .filter(
            Fql::eq("source", SOURCE)
                .and(Fql::eq("severity", "high"))
                .to_string(),
        )
        .stream()
        .try_collect()
        .await
        .expect("combined");
    let values: BTreeSet<&str> = high.iter().map(|i| i.value.as_str()).collect();
    assert_eq!(values, BTreeSet::from(["44d88612fea8a8f36de82e1278abb02f"]));
    let by_value = client
        .iocs()
        .query()
        .filter(Fql::any_of("value", ["198.51.100.7", "new.example.org"]).to_string())
        .send()
        .await
        .expect("query");
    assert_eq!(by_value.items.len(), 2);

    // Delete by id, then by filter.
    let deleted = client
        .iocs()
        .delete_ids(&[id.as_str()])
        .comment("e2e delete")
        .send()
        .await
        .expect("delete ids");
    assert_eq!(deleted.deleted, std::slice::from_ref(&id));
    assert!(deleted.failed.is_empty(), "{:?}", deleted.failed);
    assert_eq!(common::ioc_store(info).await.len(), 5);
    client
        .iocs()
        .delete_filter(Fql::eq("type", "ipv6"))
        .send()
        .await
        .expect("delete filter");
    let store = common::ioc_store(info).await;
    assert_eq!(store.len(), 4);
    assert!(
        store
            .iter()
            .all(|i| i["type"] != "ipv6" && i["id"] != id.as_str())
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioc_batches_and_after_paging() {
    let sb = common::start(common::config(10, 10)).await;
    let info = sb.info();
    let client = common::falcon_with(info, |s| {
        s.ioc_batch_size = 200;
        s.ioc_page_size = 100;
    });
    let items: Vec<NewIndicator> = (0..450)
        .map(|n| {
            NewIndicator::new(
                IocType::Ipv4,
                format!("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256),
                Action::Detect,
            )
            .severity(Severity::Medium)
            .platforms([Platform::Windows])
            .source("bulk")
        })
        .collect();
    let report = client
        .iocs()
        .create(items)
        .send()
        .await
        .expect("bulk create");
    assert_eq!(report.written.len(), 450);
    assert_eq!(report.requests, 3);
    assert_eq!(
        common::falcon_requests(info, "POST /iocs/entities/indicators/v1").await,
        3,
        "450 items in batches of 200"
    );
    assert_eq!(common::ioc_store(info).await.len(), 450);

    // `after` paging: 5 pages of 100, every IOC once.
    let all: Vec<_> = client
        .iocs()
        .combined()
        .filter(Fql::eq("source", "bulk").to_string())
        .stream()
        .try_collect()
        .await
        .expect("combined stream");
    assert_eq!(all.len(), 450);
    let ids: BTreeSet<&str> = all.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), 450);
    let pages = common::falcon_requests(info, "GET /iocs/combined/indicator/v1").await;
    assert!((5..=6).contains(&pages), "{pages} pages");
    let query_ids: Vec<String> = client
        .iocs()
        .query()
        .ids()
        .try_collect()
        .await
        .expect("ids");
    assert_eq!(query_ids.len(), 450);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioc_host_groups_and_expiration() {
    let sb = common::start(common::config(30, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    let group = s(&fleet["groups"][0]["id"]).to_owned();
    let future = chrono::Utc::now() + chrono::Duration::days(30);
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let items = vec![
        // Scoped to one host group instead of applied globally.
        NewIndicator::new(IocType::Domain, "scoped.example.net", Action::Detect)
            .severity(Severity::Medium)
            .platforms([Platform::Windows])
            .source(SOURCE)
            .host_groups([group.clone()])
            .expiration(future),
        // Already expired: Falcon turns its action into no_action.
        NewIndicator::new(IocType::Domain, "stale.example.net", Action::Detect)
            .severity(Severity::Medium)
            .platforms([Platform::Windows])
            .source(SOURCE)
            .expiration(past),
    ];
    let report = client.iocs().create(items).send().await.expect("create");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.written.len(), 2);
    let store = common::ioc_store(info).await;
    let scoped = find(&store, "domain", "scoped.example.net");
    assert_eq!(scoped["host_groups"], serde_json::json!([group]));
    assert_ne!(scoped["applied_globally"], true);
    let exp: chrono::DateTime<chrono::Utc> = s(&scoped["expiration"]).parse().expect("rfc 3339");
    assert!((exp - future).num_seconds().abs() <= 1, "{exp} vs {future}");

    let got = client
        .iocs()
        .combined()
        .filter(Fql::eq("value", "stale.example.net").to_string())
        .send()
        .await
        .expect("combined");
    assert_eq!(got.items.len(), 1);
    assert!(got.items[0].expired);
    assert_eq!(got.items[0].action, Some(Action::NoAction));
    let scoped = client
        .iocs()
        .combined()
        .filter(Fql::eq("host_groups", group.as_str()).to_string())
        .send()
        .await
        .expect("by group");
    assert_eq!(scoped.items.len(), 1);
    assert_eq!(scoped.items[0].value, "scoped.example.net");
    assert_eq!(scoped.items[0].host_groups, [group]);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioc_update_of_an_unknown_id_is_an_item_error() {
    let sb = common::start(common::config(10, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);
    let report = client
        .iocs()
        .create(samples())
        .send()
        .await
        .expect("create");
    let id = report.written[0].id.clone();
    let unknown = "0".repeat(64);
    let mut a = IndicatorUpdate::new(&id);
    a.tags = Some(vec!["kept".into()]);
    let mut b = IndicatorUpdate::new(&unknown);
    b.tags = Some(vec!["lost".into()]);
    let report = client
        .iocs()
        .update(vec![a, b])
        .send()
        .await
        .expect("update");
    assert_eq!(report.written.len(), 1, "{report:?}");
    assert_eq!(report.written[0].id, id);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].id.as_deref(), Some(unknown.as_str()));
    let store = common::ioc_store(info).await;
    let updated = store.iter().find(|i| i["id"] == id.as_str()).unwrap();
    assert_eq!(updated["tags"], serde_json::json!(["kept"]));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_of_a_differently_cased_value_is_matched_to_its_item() {
    let sb = common::start(common::config(10, 10)).await;
    let info = sb.info();
    let client = common::falcon(info);
    client
        .iocs()
        .create(samples())
        .send()
        .await
        .expect("create");
    // Falcon stores domains and hashes lower-case; a feed may send them in another case.
    let again = vec![
        NewIndicator::new(IocType::Domain, "EVIL.Example.COM", Action::Detect)
            .severity(Severity::High)
            .platforms([Platform::Windows])
            .source(SOURCE),
        NewIndicator::new(
            IocType::Sha256,
            "275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F",
            Action::Prevent,
        )
        .severity(Severity::Critical)
        .platforms([Platform::Windows])
        .source(SOURCE),
        // The same IPv6 address written another way.
        NewIndicator::new(IocType::Ipv6, "2001:DB8:0:0:0:0:0:7", Action::Detect)
            .severity(Severity::Low)
            .platforms([Platform::Windows])
            .source(SOURCE),
    ];
    let report = client
        .iocs()
        .create(again)
        .send()
        .await
        .expect("create again");
    assert!(report.written.is_empty(), "{report:?}");
    let mut idx: Vec<Option<usize>> = report.failed.iter().map(|f| f.index).collect();
    idx.sort();
    assert_eq!(idx, [Some(0), Some(1), Some(2)], "{:?}", report.failed);
    assert_eq!(report.requests, 1, "an item was resent");
    assert!(report.failed.iter().all(|f| f.is_duplicate()));
    assert_eq!(common::ioc_store(info).await.len(), 5);
    sb.shutdown().await;
}
