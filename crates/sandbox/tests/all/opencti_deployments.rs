//! OpenCTI simulator, dissemination assurance: the server's transition rules (reference §4.2),
//! listing, hits replay rules (§6.4), analyst actions, the expiry manager, feature detection.

use sandbox::opencti::{OpenCtiConfig, OpenCtiServer};
use serde_json::{Value, json};

async fn start(config: OpenCtiConfig) -> OpenCtiServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    OpenCtiServer::start(listener, config, 11)
}

fn small() -> OpenCtiConfig {
    OpenCtiConfig {
        indicators: 20,
        ..OpenCtiConfig::default()
    }
}

async fn post_gql(s: &OpenCtiServer, query: &str, variables: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", s.url()))
        .bearer_auth(s.token())
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn gql(s: &OpenCtiServer, query: &str, variables: Value) -> Value {
    let (status, v) = post_gql(s, query, variables).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn control(s: &OpenCtiServer, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", s.url());
    let r = match body {
        Some(b) => c.post(url).json(&b).send().await.unwrap(),
        None => c.get(url).send().await.unwrap(),
    };
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn indicator_ids(s: &OpenCtiServer, n: usize) -> Vec<String> {
    let v = gql(
        s,
        "query { indicators(first: 50) { edges { node { id standard_id revoked } } } }",
        json!({}),
    )
    .await;
    v["data"]["indicators"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["revoked"] == false)
        .map(|e| e["node"]["standard_id"].as_str().unwrap().to_owned())
        .take(n)
        .collect()
}

const ADD: &str = "mutation A($input: SecurityPlatformAddInput!) { securityPlatformAdd(input: $input) { id standard_id name } }";
const BATCH: &str = "mutation B($platformId: StixRef!, $reports: [IndicatorDeploymentReportInput!]!) { indicatorReportDeployments(platformId: $platformId, reports: $reports) { processed created updated unchanged errors { indicatorId message } } }";
const HITS: &str = "mutation H($indicatorId: StixRef!, $platformId: StixRef!, $count: Int!, $lastHit: DateTime, $firstHit: DateTime, $reportId: String) { indicatorReportHits(indicatorId: $indicatorId, platformId: $platformId, count: $count, lastHit: $lastHit, firstHit: $firstHit, reportId: $reportId) { id attribute_count first_seen last_seen } }";
const LIST: &str = "query L($relationshipTypes: [String], $toId: [String], $first: Int, $after: ID, $filters: FilterGroup) { stixCoreRelationships(relationship_type: $relationshipTypes, toId: $toId, first: $first, after: $after, filters: $filters) { edges { node { id deployment_status external_id revoked last_sync_at last_hit_at hit_count from { ... on Indicator { id standard_id pattern revoked valid_until } } } } pageInfo { endCursor hasNextPage globalCount } } }";

async fn platform(s: &OpenCtiServer) -> String {
    let v = gql(s, ADD, json!({"input": {"name": "CrowdStrike Falcon", "security_platform_type": "EDR", "update": true}})).await;
    v["data"]["securityPlatformAdd"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn batch(s: &OpenCtiServer, p: &str, reports: Value) -> Value {
    let v = gql(s, BATCH, json!({"platformId": p, "reports": reports})).await;
    v["data"]["indicatorReportDeployments"].clone()
}

async fn dep_of(s: &OpenCtiServer, standard_id: &str) -> Value {
    let (_, snap) = control(s, "/_sandbox/deployments", None).await;
    let ind = gql(
        s,
        "query Q($id: String!) { indicator(id: $id) { id } }",
        json!({"id": standard_id}),
    )
    .await;
    let internal = ind["data"]["indicator"]["id"].clone();
    snap["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["indicator"] == internal)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn platform_upsert_is_by_normalized_name() {
    let s = start(small()).await;
    let a = platform(&s).await;
    let v = gql(
        &s,
        ADD,
        json!({"input": {"name": "  crowdstrike   FALCON ", "update": true}}),
    )
    .await;
    assert_eq!(v["data"]["securityPlatformAdd"]["id"], a.as_str());
    let v = gql(&s, ADD, json!({"input": {"name": "X", "update": true}})).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at least 2"),
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn status_reports_follow_the_servers_transition_rules() {
    let s = start(small()).await;
    let p = platform(&s).await;
    let ids = indicator_ids(&s, 3).await;
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);

    let out = batch(&s, &p, json!([
        {"indicatorId": a, "status": "deployed", "externalId": "ioc-a"},
        {"indicatorId": b, "status": "failed", "metadata": {"error_message": "CrowdStrike refused the IOC push: invalid request"}},
        {"indicatorId": "indicator--00000000-0000-4000-8000-000000000000", "status": "deployed"},
        {"indicatorId": c, "status": "expired"},
    ])).await;
    assert_eq!(out["processed"], 2);
    assert_eq!(out["created"], 2);
    let msgs: Vec<&str> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        [
            "Indicator not found or not accessible",
            "Deployment status is invalid or reserved to the platform"
        ]
    );
    let da = dep_of(&s, a).await;
    assert_eq!(da["deployment_status"], "deployed");
    assert_eq!(da["external_id"], "ioc-a");
    assert!(da["deployed_at"].is_string());
    assert_eq!(
        dep_of(&s, b).await["error_message"],
        "CrowdStrike refused the IOC push: invalid request"
    );

    // Confirmed active; a later `deployed` never downgrades it, `pending` neither.
    batch(&s, &p, json!([{"indicatorId": a, "status": "active"}])).await;
    let out = batch(
        &s,
        &p,
        json!([{"indicatorId": a, "status": "deployed"}, {"indicatorId": a, "status": "pending"}]),
    )
    .await;
    assert_eq!(out["unchanged"], 2, "{out}");
    assert_eq!(dep_of(&s, a).await["deployment_status"], "active");

    // A report older than the stored sync time changes nothing, even a removal.
    let out = batch(&s, &p, json!([{"indicatorId": a, "status": "removed", "metadata": {"last_sync_at": "2020-01-01T00:00:00.000Z"}}])).await;
    assert_eq!(out["unchanged"], 1);
    assert_eq!(dep_of(&s, a).await["deployment_status"], "active");

    // A current removal takes effect and sets removed_at; failed -> deployed clears the error.
    batch(&s, &p, json!([{"indicatorId": a, "status": "removed"}, {"indicatorId": b, "status": "deployed", "externalId": "ioc-b"}])).await;
    let da = dep_of(&s, a).await;
    assert_eq!(da["deployment_status"], "removed");
    assert!(da["removed_at"].is_string());
    let db = dep_of(&s, b).await;
    assert_eq!(db["deployment_status"], "deployed");
    assert!(db["error_message"].is_null());

    // The same report twice is a heartbeat.
    let out = batch(
        &s,
        &p,
        json!([{"indicatorId": b, "status": "deployed", "externalId": "ioc-b"}]),
    )
    .await;
    assert_eq!(out["unchanged"], 1);

    // More than 500 reports: the whole call is refused; a long external id is refused per report.
    let many: Vec<Value> = (0..501)
        .map(|_| json!({"indicatorId": a, "status": "deployed"}))
        .collect();
    let v = gql(&s, BATCH, json!({"platformId": p, "reports": many})).await;
    assert_eq!(
        v["errors"][0]["message"],
        "A deployment batch cannot exceed 500 reports"
    );
    let out = batch(
        &s,
        &p,
        json!([{"indicatorId": a, "status": "deployed", "externalId": "x".repeat(1001)}]),
    )
    .await;
    assert_eq!(
        out["errors"][0]["message"],
        "External id cannot exceed 1000 characters"
    );
    let v = gql(&s, BATCH, json!({"platformId": "nope", "reports": []})).await;
    assert_eq!(
        v["errors"][0]["message"],
        "Security platform not found or not accessible"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn listing_pages_filters_on_status_and_skips_removed() {
    let s = start(small()).await;
    let p = platform(&s).await;
    let ids = indicator_ids(&s, 5).await;
    let reports: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| json!({"indicatorId": id, "status": if k == 4 { "removed" } else { "deployed" }}))
        .collect();
    batch(&s, &p, Value::Array(reports)).await;
    let vars = |after: Value| {
        json!({"relationshipTypes": ["deployed-on"], "toId": [p], "first": 2, "after": after,
        "filters": {"mode": "and", "filterGroups": [], "filters": [{"key": "deployment_status",
        "values": ["pending", "deployed", "active", "failed", "expired"]}]}})
    };
    let mut after = Value::Null;
    let mut seen = Vec::new();
    loop {
        let v = gql(&s, LIST, vars(after.clone())).await;
        let conn = &v["data"]["stixCoreRelationships"];
        assert_eq!(conn["pageInfo"]["globalCount"], 4);
        for e in conn["edges"].as_array().unwrap() {
            assert_eq!(e["node"]["deployment_status"], "deployed");
            seen.push(
                e["node"]["from"]["standard_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ids[..4].to_vec());
    s.shutdown().await;
}

#[tokio::test]
async fn hits_are_counted_once_and_the_sighting_is_stable() {
    let s = start(small()).await;
    let p = platform(&s).await;
    let ids = indicator_ids(&s, 2).await;
    let a = &ids[0];
    let hit = |count: i64, last: &str, rid: &str| {
        json!({"indicatorId": a, "platformId": p, "count": count,
        "firstHit": "2020-10-01T09:00:00.000Z", "lastHit": last, "reportId": rid})
    };
    let v = gql(&s, HITS, hit(3, "2020-10-01T10:00:00.000Z", "r1")).await;
    let sighting = v["data"]["indicatorReportHits"].clone();
    assert_eq!(sighting["attribute_count"], 3);
    assert!(sighting["id"].as_str().unwrap().starts_with("sighting--"));
    // No deployment existed: created active.
    assert_eq!(dep_of(&s, a).await["deployment_status"], "active");
    // The same report again (re-send after a lost answer): not counted twice.
    let v = gql(&s, HITS, hit(3, "2020-10-01T10:00:00.000Z", "r1")).await;
    assert_eq!(v["data"]["indicatorReportHits"]["attribute_count"], 3);
    assert_eq!(v["data"]["indicatorReportHits"]["id"], sighting["id"]);
    // Another report ending at the same instant is counted; an older one is a replay.
    let v = gql(&s, HITS, hit(1, "2020-10-01T10:00:00.000Z", "r2")).await;
    assert_eq!(v["data"]["indicatorReportHits"]["attribute_count"], 4);
    let v = gql(&s, HITS, hit(5, "2020-10-01T09:30:00.000Z", "r3")).await;
    assert_eq!(
        v["data"]["indicatorReportHits"]["attribute_count"], 4,
        "a late report is dropped by the watermark"
    );
    let v = gql(&s, HITS, hit(2, "2020-10-02T10:00:00.000Z", "r4")).await;
    assert_eq!(v["data"]["indicatorReportHits"]["attribute_count"], 6);
    let d = dep_of(&s, a).await;
    assert_eq!(d["hit_count"], 6);
    assert_eq!(d["last_hit_at"], "2020-10-02T10:00:00.000Z");
    // Validation.
    let v = gql(&s, HITS, hit(0, "2020-10-03T10:00:00.000Z", "r5")).await;
    assert_eq!(
        v["errors"][0]["message"],
        "Hit count must be a positive integer"
    );
    let v = gql(&s, HITS, hit(1, "2999-01-01T00:00:00.000Z", "r6")).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("5 minutes ahead")
    );
    let v = gql(
        &s,
        HITS,
        json!({"indicatorId": a, "platformId": p, "count": 1}),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("The time of the last hit is required")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn analyst_buttons_and_the_expiry_manager() {
    let s = start(small()).await;
    let p = platform(&s).await;
    let ids = indicator_ids(&s, 2).await;
    let (a, b) = (&ids[0], &ids[1]);
    batch(&s, &p, json!([{"indicatorId": a, "status": "failed", "metadata": {"error_message": "boom"}}, {"indicatorId": b, "status": "deployed"}])).await;
    let ra = dep_of(&s, a).await["id"].as_str().unwrap().to_owned();
    let rb = dep_of(&s, b).await["id"].as_str().unwrap().to_owned();
    // Deploy again: only from failed/removed/expired.
    let (st, v) = control(
        &s,
        &format!("/_sandbox/deployments/{rb}/retry"),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 409);
    assert_eq!(
        v["error"],
        "Only a failed, removed or expired deployment can be retried"
    );
    let (st, v) = control(
        &s,
        &format!("/_sandbox/deployments/{ra}/retry"),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["deployment_status"], "pending");
    assert!(v["error_message"].is_null());
    // Remove from this platform: revoked, status unchanged; the GraphQL mutation is idempotent.
    let v = gql(&s, "mutation R($id: ID!) { indicatorDeploymentRemove(id: $id) { id revoked deployment_status } }", json!({"id": rb})).await;
    assert_eq!(v["data"]["indicatorDeploymentRemove"]["revoked"], true);
    assert_eq!(
        v["data"]["indicatorDeploymentRemove"]["deployment_status"],
        "deployed"
    );
    // Not overdue yet.
    let (_, t) = control(&s, "/_sandbox/deployments/manager-tick", Some(json!({}))).await;
    assert_eq!(t["expired"], 0);
    control(
        &s,
        "/_sandbox/deployments/clock",
        Some(json!({"advance_secs": 86_401})),
    )
    .await;
    let (_, t) = control(&s, "/_sandbox/deployments/manager-tick", Some(json!({}))).await;
    assert_eq!(t["expired"], 1);
    assert_eq!(dep_of(&s, b).await["deployment_status"], "expired");
    // An expired deployment is still listed, and a confirmed removal ends it.
    batch(&s, &p, json!([{"indicatorId": b, "status": "removed"}])).await;
    assert_eq!(dep_of(&s, b).await["deployment_status"], "removed");
    s.shutdown().await;
}

#[tokio::test]
async fn a_platform_without_the_feature_fails_detection_like_an_older_version() {
    let s = start(OpenCtiConfig {
        dissemination_assurance: false,
        ..small()
    })
    .await;
    let (st, v) = post_gql(&s, "query DeploymentWriteBackFeatures { indicators(first: 1) { edges { node { id deployments_count } } } }", json!({})).await;
    assert_eq!(st, 400);
    assert_eq!(
        v["errors"][0]["message"],
        "Cannot query field \"deployments_count\" on type \"Indicator\"."
    );
    assert_eq!(
        v["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    let v = gql(
        &s,
        "query { __type(name: \"Mutation\") { fields { name } } }",
        json!({}),
    )
    .await;
    let names = v["data"]["__type"]["fields"].to_string();
    assert!(!names.contains("indicatorReportDeployment"), "{names}");
    let (st, _) = post_gql(&s, BATCH, json!({"platformId": "p", "reports": []})).await;
    assert_eq!(st, 400);
    // Turned on at run time (an upgrade): the probe succeeds and introspection lists the mutations.
    control(
        &s,
        "/_sandbox/deployments/feature",
        Some(json!({"enabled": true})),
    )
    .await;
    let (st, _) = post_gql(&s, "query DeploymentWriteBackFeatures { indicators(first: 1) { edges { node { id deployments_count } } } }", json!({})).await;
    assert_eq!(st, 200);
    let v = gql(
        &s,
        "query { __type(name: \"Mutation\") { fields { name } } }",
        json!({}),
    )
    .await;
    assert!(
        v["data"]["__type"]["fields"]
            .to_string()
            .contains("indicatorReportDeployments")
    );
    s.shutdown().await;
}
