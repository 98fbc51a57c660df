//! Flight Control against the sandbox: children and CID groups of a parent, a client per child with
//! its own token and data, and one operation across three children with one failing.

use std::collections::BTreeSet;

use falcon_sdk::flight_control::TenantSet;
use futures::TryStreamExt;
use serde_json::json;

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_across_three_children_with_one_failing() {
    let mut config = common::config(30, 1);
    config.falcon.children = 3;
    config.falcon.child_hosts = 15;
    let sb = common::start(config).await;
    let info = sb.info();
    let parent = common::falcon_with(info, |s| s.max_attempts = 2);

    let fc = parent.flight_control();
    let children = fc.children().await.expect("children");
    assert_eq!(children.len(), 3);
    assert!(
        children
            .iter()
            .all(|c| c.status.as_deref() == Some("active"))
    );
    let cids: Vec<String> = children.iter().map(|c| c.child_cid.clone()).collect();
    let groups = fc.cid_groups().await.expect("groups");
    let all = groups
        .iter()
        .find(|g| g.name == "All children")
        .expect("group");
    assert_eq!(
        all.cids.iter().collect::<BTreeSet<_>>(),
        cids.iter().collect::<BTreeSet<_>>()
    );

    // The second child fails every request (injected 500s on that tenant only).
    common::post(
        format!(
            "{}/_sandbox/children/{}/_sandbox/faults",
            info.falcon_url, cids[1]
        ),
        json!({"error_rate": 1.0}),
    )
    .await;

    let results = TenantSet::new(&parent, cids.clone())
        .concurrency(2)
        .run(|client, cid| async move {
            let hosts: Vec<_> = client.hosts().scroll().devices().try_collect().await?;
            // Every host listed belongs to that child: its own fleet.
            assert!(hosts.iter().all(|h| h.cid.as_deref() == Some(cid.as_str())));
            Ok((hosts.len(), client.token_fetches()))
        })
        .await;
    assert_eq!(results.len(), 3);
    for (i, cid) in cids.iter().enumerate() {
        let r = &results[cid];
        if i == 1 {
            let e = r.as_ref().unwrap_err();
            assert!(e.status().is_some_and(|s| s.is_server_error()), "{e:?}");
        } else {
            assert_eq!(r.as_ref().unwrap(), &(15, 1), "{cid}");
        }
    }
    // The parent's own fleet is untouched and its client minted no child token.
    let parent_hosts: Vec<String> = parent.hosts().scroll().ids().try_collect().await.unwrap();
    assert_eq!(parent_hosts.len(), 30);
    assert_eq!(parent.token_fetches(), 1);

    // A CID that is not a child: the token request is refused (403), reported for that child only.
    let bogus = "0".repeat(32);
    let r = TenantSet::new(&parent, [bogus.clone()])
        .run(|client, _| async move { client.hosts().query().send().await.map(|p| p.items.len()) })
        .await;
    let e = r[&bogus].as_ref().unwrap_err();
    assert_eq!(e.status(), Some(falcon_sdk::StatusCode::FORBIDDEN), "{e:?}");
}
