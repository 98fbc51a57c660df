//! Flight Control: children paging and details (207), a child client with its own token.

use falcon_sdk::flight_control::TenantSet;
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::*;

const CHILD: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn children_are_paged_and_read_with_partial_details() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/mssp/queries/children/v1"))
        .respond_with(|r: &Request| {
            let offset: usize = query_value(r, "offset").unwrap().parse().unwrap();
            let ids: Vec<String> = (offset..(offset + 2).min(3))
                .map(|i| format!("c{i}"))
                .collect();
            ResponseTemplate::new(200).set_body_json(paged(
                json!(ids),
                json!({"offset": offset, "limit": 500, "total": 3}),
            ))
        })
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mssp/entities/children/GET/v2"))
        .respond_with(ResponseTemplate::new(207).set_body_json(json!({
            "meta": {}, "errors": [{"code": 404, "message": "child c2 not found"}],
            "resources": [{"child_cid": "c0", "child_of": "p", "checksum": "AB", "name": "zero", "status": "active"},
                          {"child_cid": "c1", "child_of": "p", "checksum": "CD", "name": "one", "status": "active"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let children = client.flight_control().children().await.unwrap();
    let names: Vec<_> = children
        .iter()
        .map(|c| (c.child_cid.as_str(), c.name.as_deref()))
        .collect();
    assert_eq!(
        names,
        [("c0", Some("zero")), ("c1", Some("one")), ("c2", None)]
    );
}

#[tokio::test]
async fn a_child_client_has_its_own_member_cid_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains(format!("member_cid={CHILD}").as_str()))
        .respond_with(token_response(1799))
        .expect(1)
        .mount(&server)
        .await;
    mount_token(&server, 1799, Some(1)).await;
    Mock::given(method("GET"))
        .and(path("/devices/queries/devices/v1"))
        .and(query_param("limit", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!(["a"]))))
        .expect(2)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let parent = builder(&server).build().unwrap();
    parent.hosts().query().limit(1).send().await.unwrap();
    // Upper-case with the checksum suffix, as the console shows it.
    let upper = format!("{}-7F", CHILD.to_uppercase());
    let r = TenantSet::new(&parent, [upper.clone()])
        .run(|c, _| async move {
            c.hosts().query().limit(1).send().await?;
            Ok(c.token_fetches())
        })
        .await;
    assert_eq!(*r[&upper].as_ref().unwrap(), 1);
    assert_eq!(parent.token_fetches(), 1, "the parent's token is untouched");
    assert!(parent.for_member("not-a-cid").is_err());
}
