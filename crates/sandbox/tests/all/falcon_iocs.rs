//! Falcon simulator: IOC Manager validation, queries, updates, deletes and paging.

use reqwest::Method;
use sandbox::falcon::FalconConfig;
use serde_json::{Value, json};

use crate::falcon::{Falcon, ids};

const IOCS: &str = "/iocs/entities/indicators/v1";

fn ioc(type_: &str, value: &str) -> Value {
    json!({"type": type_, "value": value, "action": "detect", "severity": "high", "platforms": ["windows", "linux"],
           "applied_globally": true, "source": "OpenCTI IOC", "tags": ["opencti"], "description": "test"})
}

#[tokio::test]
async fn create_validates_each_item_and_rejects_duplicates() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        ..FalconConfig::default()
    })
    .await;
    let body = json!({"comment": "sync", "indicators": [
        ioc("domain", "Evil.Example.com"),
        ioc("sha256", &"a".repeat(64)),
        ioc("md5", "zz"),
        ioc("ipv4", "300.1.1.1"),
        ioc("ipv6", "2001:db8::1"),
        ioc("url", "http://x"),
        ioc("domain", "evil.example.com"),
        json!({"type": "domain", "value": "nogroups.example", "action": "detect", "severity": "high", "platforms": ["windows"]}),
        json!({"type": "domain", "value": "badsev.example", "action": "detect", "severity": "urgent", "platforms": ["windows"], "applied_globally": true}),
    ]});
    let (status, body) = f.send(Method::POST, IOCS, &[], body).await;
    assert_eq!(status, 400, "{body}");
    let resources = body["resources"].as_array().unwrap();
    let written: Vec<&Value> = resources
        .iter()
        .filter(|r| r.get("message_type").is_none())
        .collect();
    let failed: Vec<&Value> = resources
        .iter()
        .filter(|r| r.get("message_type").is_some())
        .collect();
    assert_eq!(written.len(), 3);
    assert_eq!(
        written[0]["value"], "evil.example.com",
        "domains are normalised"
    );
    assert_eq!(
        written[0]["created_by"],
        f.sb.info().falcon_client_id.as_str()
    );
    assert_eq!(written[0]["id"].as_str().unwrap().len(), 64);
    assert_eq!(failed.len(), 6);
    let dup = failed
        .iter()
        .find(|r| r["message_type"] == "warning")
        .unwrap();
    assert_eq!(
        dup["message"],
        "Warning: Duplicate type: 'domain' and value: 'evil.example.com' combination."
    );
    assert_eq!(dup["index"], 6);
    assert!(failed.iter().any(|r| {
        r["message"]
            .as_str()
            .unwrap()
            .contains("applied_globally or host_groups")
    }));
    assert!(
        failed
            .iter()
            .any(|r| r["message"].as_str().unwrap().contains("Invalid severity"))
    );
    assert!(failed.iter().any(|r| {
        r["message"]
            .as_str()
            .unwrap()
            .contains("Invalid type 'url'")
    }));
    assert_eq!(body["errors"].as_array().unwrap().len(), 6);

    // Duplicates of stored IOCs are also rejected, and ignore_warnings skips them silently.
    let (status, body) = f
        .send(
            Method::POST,
            IOCS,
            &[],
            json!({"indicators": [ioc("ipv6", "2001:db8::1")]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["resources"][0]["message_type"], "warning");
    let (status, _) = f
        .send(
            Method::POST,
            IOCS,
            &[("ignore_warnings", "true")],
            json!({"indicators": [ioc("ipv6", "2001:db8::1")]}),
        )
        .await;
    assert_eq!(status, 201);
    let dump = f.control(Method::GET, "/_sandbox/iocs", None).await;
    assert_eq!(dump["total"], 3);

    // Host groups must exist.
    let groups = f.control(Method::GET, "/_sandbox/hosts", None).await;
    let gid = groups["groups"][0]["id"].as_str().unwrap();
    let mut scoped = ioc("domain", "scoped.example");
    scoped["applied_globally"] = json!(false);
    scoped["host_groups"] = json!([gid]);
    let (status, body) = f
        .send(Method::POST, IOCS, &[], json!({"indicators": [scoped]}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["resources"][0]["host_groups"][0], gid);
    let mut bad = ioc("domain", "badgroup.example");
    bad["applied_globally"] = json!(false);
    bad["host_groups"] = json!(["ffffffffffffffffffffffffffffffff"]);
    let (status, _) = f
        .send(Method::POST, IOCS, &[], json!({"indicators": [bad]}))
        .await;
    assert_eq!(status, 400);
}

async fn query(f: &Falcon, filter: String) -> Vec<String> {
    let (status, body) = f
        .get(
            "/iocs/queries/indicators/v1",
            &[("filter", filter.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{filter}: {body}");
    ids(&body)
}

#[tokio::test]
async fn query_update_get_and_delete() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        ..FalconConfig::default()
    })
    .await;
    let mut other = ioc("ipv4", "10.0.0.1");
    other["source"] = json!("manual");
    other["tags"] = json!(["keep"]);
    let (status, _) = f
        .send(
            Method::POST,
            IOCS,
            &[],
            json!({"indicators": [ioc("domain", "a.example"), ioc("domain", "b.example"), other]}),
        )
        .await;
    assert_eq!(status, 201);
    let me = f.sb.info().falcon_client_id.clone();
    assert_eq!(
        query(&f, format!("created_by:'{me}'+source:'OpenCTI IOC'"))
            .await
            .len(),
        2
    );
    assert_eq!(
        query(
            &f,
            "type:'domain'+value:['a.example','b.example','c.example']".into()
        )
        .await
        .len(),
        2
    );
    assert_eq!(query(&f, "value:'A.EXAMPLE'".into()).await.len(), 1);
    assert_eq!(query(&f, "tags:'keep'".into()).await.len(), 1);
    assert_eq!(query(&f, "source:!'manual'".into()).await.len(), 2);
    assert_eq!(query(&f, "value:*'*.example'".into()).await.len(), 2);
    let id = query(&f, "value:'a.example'".into()).await.pop().unwrap();

    let (status, body) = f
        .send(Method::PATCH, IOCS, &[], json!({"comment": "withdrawn", "indicators": [{"id": id, "action": "no_action", "tags": ["TO_DELETE"]}, {"id": "nope", "action": "detect"}]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["resources"][0]["action"], "no_action");
    assert!(
        body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["message"] == "Indicator nope not found")
    );
    let (_, body) = f.get(IOCS, &[("ids", id.as_str())]).await;
    assert_eq!(body["resources"][0]["tags"], json!(["TO_DELETE"]));
    assert_eq!(body["resources"][0]["modified_by"], me.as_str());
    assert_eq!(
        query(&f, "tags:'TO_DELETE'+action:'no_action'".into()).await,
        vec![id.clone()]
    );
    let (status, _) = f
        .send(
            Method::PATCH,
            IOCS,
            &[],
            json!({"indicators": [{"id": id, "severity": "extreme"}]}),
        )
        .await;
    assert_eq!(status, 400);

    // Bulk update by filter.
    let (status, body) = f
        .send(
            Method::PATCH,
            IOCS,
            &[],
            json!({"bulk_update": {"filter": "source:'manual'", "description": "bulk"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resources"][0]["description"], "bulk");

    // Delete by id, then by filter (the filter wins over ids).
    let r = f
        .req(Method::DELETE, IOCS)
        .query(&[("ids", id.as_str()), ("comment", "bye")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = f.get(IOCS, &[("ids", id.as_str())]).await;
    assert_eq!(status, 404);
    let r = f
        .req(Method::DELETE, IOCS)
        .query(&[("filter", "source:'OpenCTI IOC'"), ("ids", "ignored")])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resources"].as_array().unwrap().len(), 1);
    let dump = f.control(Method::GET, "/_sandbox/iocs", None).await;
    assert_eq!(dump["total"], 1);
    assert_eq!(dump["iocs"][0]["source"], "manual");
}

#[tokio::test]
async fn after_paging_walks_everything_and_offset_has_a_ceiling() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        iocs: 12_000,
        ..FalconConfig::default()
    })
    .await;
    let mut seen = 0;
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let mut q = vec![("limit", "2000"), ("filter", "source:'sandbox preload'")];
        if !after.is_empty() {
            q.push(("after", after.as_str()));
        }
        let (status, body) = f.get("/iocs/combined/indicator/v1", &q).await;
        assert_eq!(status, 200);
        assert_eq!(body["meta"]["pagination"]["total"], 12_000);
        seen += body["resources"].as_array().unwrap().len();
        pages += 1;
        after = body["meta"]["pagination"]["after"]
            .as_str()
            .unwrap()
            .to_string();
        if after.is_empty() {
            break;
        }
    }
    assert_eq!((seen, pages), (12_000, 6));
    let (status, body) = f
        .get(
            "/iocs/queries/indicators/v1",
            &[("offset", "9500"), ("limit", "500")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body).len(), 500);
    let (status, body) = f
        .get(
            "/iocs/queries/indicators/v1",
            &[("offset", "9501"), ("limit", "500")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("use after")
    );
    let (status, _) = f
        .get(
            "/iocs/queries/indicators/v1",
            &[("offset", "0"), ("after", "x")],
        )
        .await;
    assert_eq!(status, 400);

    // Sorted queries page with `after` too.
    let (_, body) = f
        .get(
            "/iocs/queries/indicators/v1",
            &[
                ("sort", "value.desc"),
                ("limit", "3"),
                ("filter", "type:'domain'"),
            ],
        )
        .await;
    let first = ids(&body);
    let after = body["meta"]["pagination"]["after"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = f
        .get(
            "/iocs/queries/indicators/v1",
            &[
                ("sort", "value.desc"),
                ("limit", "3"),
                ("filter", "type:'domain'"),
                ("after", &after),
            ],
        )
        .await;
    let second = ids(&body);
    assert_eq!(second.len(), 3);
    assert!(first.iter().all(|i| !second.contains(i)));
}

#[tokio::test]
async fn expired_iocs_read_as_no_action() {
    let f = Falcon::start(FalconConfig {
        hosts: 5,
        ..FalconConfig::default()
    })
    .await;
    let mut old = ioc("domain", "old.example");
    old["expiration"] = json!("2020-01-01T00:00:00Z");
    let (status, body) = f
        .send(Method::POST, IOCS, &[], json!({"indicators": [old]}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["resources"][0]["expired"], true);
    assert_eq!(body["resources"][0]["action"], "no_action");
    let (_, body) = f
        .get("/iocs/queries/indicators/v1", &[("filter", "expired:true")])
        .await;
    assert_eq!(ids(&body).len(), 1);
    let mut bad = ioc("domain", "bad.example");
    bad["expiration"] = json!("tomorrow");
    let (status, _) = f
        .send(Method::POST, IOCS, &[], json!({"indicators": [bad]}))
        .await;
    assert_eq!(status, 400);
}
