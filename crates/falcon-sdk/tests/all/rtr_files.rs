//! RTR libraries (put-files, scripts), get-files, queued sessions, batch refresh/get, session lifecycle.

use std::time::Duration;

use falcon_sdk::Error;
use falcon_sdk::rtr::{
    HostStatus, ListParams, NewScript, Permission, PollPolicy, Role, split_hosts,
};
use futures::TryStreamExt;
use serde_json::json;
use wiremock::matchers::{body_json, body_partial_json, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::rtr::{catch_all, envelope, mount_session, setup};

const SCRIPTS_V1: &str = "/real-time-response/entities/scripts/v1";

fn paged(ids: serde_json::Value, total: u64) -> serde_json::Value {
    json!({"meta": {"trace_id": "t", "pagination": {"offset": 0, "limit": 100, "total": total}},
           "errors": [], "resources": ids})
}

#[tokio::test]
async fn scripts_library_upload_list_get_delete() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(SCRIPTS_V1))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "meta": {"writes": {"resources_affected": 1}}, "errors": []
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/queries/scripts/v1"))
        .and(query_param("filter", "name:'collect'"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(paged(json!(["sc1"]), 1)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/entities/scripts/v2"))
        .and(query_param("ids", "sc1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "id": "sc1", "name": "collect", "content": "echo `date`", "platform": ["linux"],
            "permission_type": "group", "description": null
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(SCRIPTS_V1))
        .and(query_param("ids", "sc1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!(null))))
        .expect(1)
        .mount(&server)
        .await;

    let scripts = client.rtr().scripts();
    let script = NewScript::new("collect", "collects", "echo `date`", Permission::Group)
        .platform("linux")
        .platform("mac");
    scripts.upload(&script).await.unwrap();
    let page = scripts
        .list(&ListParams {
            filter: Some("name:'collect'".into()),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.ids, vec!["sc1"]);
    assert_eq!(page.total, Some(1));
    let got = scripts.get(&page.ids).await.unwrap();
    assert_eq!(got[0].content.as_deref(), Some("echo `date`"));
    assert_eq!(got[0].platform, vec!["linux"]);
    scripts.delete("sc1").await.unwrap();

    let reqs = server.received_requests().await.unwrap();
    let upload = reqs
        .iter()
        .find(|r| r.method == wiremock::http::Method::POST && r.url.path() == SCRIPTS_V1)
        .unwrap();
    let body = String::from_utf8_lossy(&upload.body);
    for part in [
        "name=\"name\"\r\n\r\ncollect",
        "name=\"content\"\r\n\r\necho `date`",
        "name=\"permission_type\"\r\n\r\ngroup",
        "name=\"platform\"\r\n\r\nlinux",
        "name=\"platform\"\r\n\r\nmac",
    ] {
        assert!(body.contains(part), "missing {part:?} in {body}");
    }
    // a script without description is refused before sending
    let err = scripts
        .upload(&NewScript::new("x", " ", "echo", Permission::Private))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
}

#[tokio::test]
async fn put_files_list_get_delete() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/queries/put-files/v1"))
        .and(query_param("offset", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(paged(json!(["pf1", "pf2"]), 102)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/entities/put-files/v2"))
        .and(query_param("ids", "pf2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            {"id": "pf1", "name": "collector.exe", "size": 1024, "platform": null},
            {"id": "pf2", "name": "7za.exe", "sha256": "ab"}
        ]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/real-time-response/entities/put-files/v1"))
        .and(query_param("ids", "pf1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!(null))))
        .expect(1)
        .mount(&server)
        .await;
    let pf = client.rtr().put_files();
    let page = pf
        .list(&ListParams {
            offset: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, Some(102));
    let files = pf.get(&page.ids).await.unwrap();
    assert_eq!(files[0].name, "collector.exe");
    assert_eq!(files[0].size, Some(1024));
    assert!(files[0].platform.is_empty());
    pf.delete("pf1").await.unwrap();
}

#[tokio::test]
async fn extracted_files_are_listed_and_downloaded_as_a_byte_stream() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/entities/file/v2"))
        .and(query_param("session_id", "sess1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "id": "f1", "session_id": "sess1", "name": "C:\\Windows\\notepad.exe",
            "sha256": "abc", "size": 4, "complete": true
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    let archive: Vec<u8> = b"7z\xbc\xaf\x27\x1c"
        .iter()
        .copied()
        .cycle()
        .take(200_000)
        .collect();
    Mock::given(method("GET"))
        .and(path(
            "/real-time-response/entities/extracted-file-contents/v1",
        ))
        .and(query_param("session_id", "sess1"))
        .and(query_param("sha256", "abc"))
        .and(query_param("filename", "notepad.exe"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(archive.clone(), "application/x-7z-compressed"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/real-time-response/entities/file/v2"))
        .and(query_param("ids", "f1"))
        .and(query_param("session_id", "sess1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let rtr = client.rtr();
    let files = rtr.session_files("sess1").await.unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].complete);
    let stream = rtr
        .download_file("sess1", &files[0].sha256, Some("notepad.exe"))
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let got: Vec<u8> = chunks.concat();
    assert_eq!(got, archive);
    rtr.delete_session_file("sess1", "f1").await.unwrap();
    let err = rtr.download_file("sess1", "", None).await.err().unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)));
}

#[tokio::test]
async fn queued_sessions_are_listed_and_a_queued_command_deleted() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/queries/sessions/v1"))
        .and(query_param("filter", "commands_queued:true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(paged(json!(["q1"]), 1)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/entities/sessions/GET/v1"))
        .and(body_json(json!({"ids": ["q1"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "id": "q1", "device_id": "aid9", "offline_queued": true, "commands_queued": true,
            "logs": null, "cloud_request_ids": ["cr9"]
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/entities/queued-sessions/GET/v1"))
        .and(body_json(json!({"ids": ["q1"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "id": "q1", "aid": "aid9", "status": "PENDING",
            "Commands": [{"cloud_request_id": "cr9", "base_command": "runscript", "status": "PENDING"}]
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(
            "/real-time-response/entities/queued-sessions/command/v1",
        ))
        .and(query_param("session_id", "q1"))
        .and(query_param("cloud_request_id", "cr9"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let rtr = client.rtr();
    let ids = rtr
        .list_sessions(&ListParams {
            filter: Some("commands_queued:true".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .ids;
    let sessions = rtr.sessions(&ids).await.unwrap();
    assert!(sessions[0].offline_queued && sessions[0].commands_queued);
    let queued = rtr.queued_sessions(&ids).await.unwrap();
    assert_eq!(queued[0].aid, "aid9");
    let cmd = &queued[0].commands[0];
    assert_eq!(cmd.status.as_deref(), Some("PENDING"));
    rtr.delete_queued_command(&queued[0].id, &cmd.cloud_request_id)
        .await
        .unwrap();
}

#[tokio::test]
async fn batch_refresh_and_batch_get_with_status() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/combined/batch-refresh-session/v1"))
        .and(query_param("timeout", "45"))
        .and(body_json(json!({"batch_id": "b1", "hosts_to_remove": ["gone"]})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "resources": {
                "a1": {"aid": "a1", "session_id": "s1", "errors": []},
                "a2": {"aid": "a2", "session_id": "", "errors": [{"code": 40401, "message": "Could not establish sensor comms"}]}
            }, "errors": []
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/combined/batch-get-command/v1"))
        .and(body_partial_json(json!({"batch_id": "b1", "file_path": "C:\\x.log", "optional_hosts": ["a1"]})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "batch_get_cmd_req_id": "req1",
            "combined": {"resources": {"a1": {"aid": "a1", "session_id": "s1", "task_id": "t1",
                                              "complete": true, "stdout": "C:\\x.log", "errors": []}}},
            "errors": []
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/combined/batch-get-command/v1"))
        .and(query_param("batch_get_cmd_req_id", "req1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resources": {"a1": {"session_id": "s1", "sha256": "h1", "name": "C:\\x.log", "size": 12}},
            "errors": []
        })))
        .expect(1)
        .mount(&server)
        .await;
    let rtr = client.rtr();
    let refreshed = rtr
        .batch_refresh("b1")
        .hosts_to_remove(&["gone"])
        .timeout(Duration::from_secs(45))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.hosts["a1"].session_id.as_deref(), Some("s1"));
    let failed: Vec<&str> = refreshed.failed().map(|(a, _)| a).collect();
    assert_eq!(failed, vec!["a2"]);

    let get = rtr
        .batch_get("b1", "C:\\x.log")
        .optional_hosts(&["a1"])
        .send()
        .await
        .unwrap();
    assert_eq!(get.batch_get_cmd_req_id.as_deref(), Some("req1"));
    assert_eq!(get.hosts["a1"].status, HostStatus::Complete);
    let status = rtr.batch_get_status("req1").send().await.unwrap();
    assert_eq!(status.hosts["a1"][0].sha256, "h1");
    assert_eq!(status.hosts["a1"][0].session_id, "s1");
}

#[tokio::test]
async fn run_and_wait_times_out_with_partial_output_and_resumes() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    mount_session(&server, "aid1", "sess1").await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/entities/command/v1"))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "cloud_request_id": "cr1", "session_id": "sess1"
        }]))))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/entities/command/v1"))
        .and(query_param("sequence_id", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": false, "stdout": "part1 ", "sequence_id": 0
        }]))))
        .mount(&server)
        .await;
    // sequence 1 is not ready during the first wait, then it is
    Mock::given(method("GET"))
        .and(path("/real-time-response/entities/command/v1"))
        .and(query_param("sequence_id", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": false, "stdout": ""
        }]))))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/real-time-response/entities/command/v1"))
        .and(query_param("sequence_id", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": true, "stdout": "part2", "sequence_id": 1
        }]))))
        .with_priority(2)
        .mount(&server)
        .await;
    let session = client
        .rtr()
        .session("aid1")
        .poll_policy(PollPolicy::fixed(Duration::from_millis(20)))
        .open()
        .await
        .unwrap();
    let partial = session
        .command("ls", "ls C:\\")
        .run_and_wait(Duration::from_millis(50))
        .await
        .unwrap();
    assert!(!partial.complete);
    assert_eq!(partial.stdout, "part1 ");
    assert_eq!(partial.next_sequence_id, 1);
    let done = session
        .resume(Role::ReadOnly, partial, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(done.complete);
    assert_eq!(done.stdout, "part1 part2");
    // dropping the handle deletes the session in the background
    drop(session);
    for _ in 0..100 {
        let deleted = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.method == wiremock::http::Method::DELETE);
        if deleted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the dropped session was not deleted");
}

#[tokio::test]
async fn offline_host_command_is_reported_queued() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/entities/sessions/v1"))
        .and(body_partial_json(
            json!({"device_id": "off", "queue_offline": true, "origin": "t"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "session_id": "sq", "offline_queued": true
        }]))))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/entities/admin-command/v1"))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "cloud_request_id": "crq", "session_id": "sq", "queued_command_offline": true
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/real-time-response/entities/sessions/v1"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let session = client
        .rtr()
        .session("off")
        .origin("t")
        .queue_offline(true)
        .open()
        .await
        .unwrap();
    assert!(session.is_offline_queued());
    let out = session
        .admin_command("runscript", "runscript -Raw=```id```")
        .run_and_wait(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(out.queued_offline && !out.complete);
    assert_eq!(out.cloud_request_id, "crq");
    session.close().await.unwrap();
}

#[test]
fn split_hosts_dedups_and_chunks_at_10000() {
    let hosts: Vec<String> = (0..25_000).map(|i| format!("h{}", i % 20_001)).collect();
    let chunks = split_hosts(&hosts).unwrap();
    let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![10_000, 10_000, 1]);
    assert!(split_hosts::<String>(&[]).is_err());
}

#[tokio::test]
async fn existing_batch_id_is_sent_and_refused_for_more_than_one_batch() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/combined/batch-init-session/v1"))
        .and(body_json(json!({"host_ids": ["a", "b"], "queue_offline": false, "existing_batch_id": "b0"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "batch_id": "b0", "resources": {"a": {"session_id": "s", "complete": true}, "b": {"session_id": "s2", "complete": true}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let rtr = client.rtr();
    let init = rtr
        .batch_init(&["a", "b"])
        .existing_batch_id("b0")
        .send()
        .await
        .unwrap();
    assert_eq!(init.batches[0].batch_id, "b0");
    let many: Vec<String> = (0..10_001).map(|i| format!("h{i}")).collect();
    let err = rtr
        .batch_init(&many)
        .existing_batch_id("b0")
        .send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("existing_batch_id"), "{err}");
}

/// The orchestrator spawns RTR work on a multi-threaded runtime: the futures must be `Send`.
#[test]
fn rtr_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let client = falcon_sdk::FalconClient::builder()
        .client_id("id")
        .client_secret(secrecy::SecretString::from("s"))
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    let rtr = client.rtr();
    let hosts = vec!["a".to_string()];
    is_send(&rtr.batch_init(&hosts).send());
    is_send(&rtr.batch_admin_command("b", "ls", "ls").send());
    is_send(&rtr.batch_refresh("b").send());
    is_send(&rtr.batch_command_all(Role::Admin, &[], "ls", "ls", |b| b));
    is_send(&rtr.session("a").open());
    is_send(
        &rtr.put_files()
            .upload(&falcon_sdk::rtr::NewPutFile::new("n", "d", vec![1u8])),
    );
    fn session_futures(s: &falcon_sdk::rtr::Session) {
        fn is_send<T: Send>(_: &T) {}
        let cmd = s.admin_command("runscript", "runscript -Raw=```id```");
        is_send(&cmd.run_and_wait(Duration::from_secs(1)));
        is_send(&s.keep_alive());
    }
    let _ = session_futures;
}

#[tokio::test]
async fn batch_command_all_merges_batches_and_attributes_a_failed_batch() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/combined/batch-init-session/v1"))
        .and(body_partial_json(json!({"host_ids": ["a1", "a2"]})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "batch_id": "b1", "resources": {"a1": {"session_id": "s1", "complete": true},
                                            "a2": {"session_id": "s2", "complete": true}}
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/combined/batch-admin-command/v1"))
        .and(body_partial_json(json!({"batch_id": "b1"})))
        .and(query_param("timeout", "90"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "combined": {"resources": {"a1": {"session_id": "s1", "complete": true, "stdout": "ok"}}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/real-time-response/combined/batch-admin-command/v1"))
        .and(body_partial_json(json!({"batch_id": "b2"})))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "errors": [{"code": 500, "message": "boom"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let rtr = client.rtr();
    let mut batches = rtr.batch_init(&["a1", "a2"]).send().await.unwrap().batches;
    // a second batch, as a split set of more than 10,000 hosts would give
    batches.push(falcon_sdk::rtr::BatchSession::new("b2", vec!["c1".into()]));
    let out = rtr
        .batch_command_all(
            Role::Admin,
            &batches,
            "runscript",
            "runscript -Raw=```id```",
            |b| b.timeout(Duration::from_secs(90)),
        )
        .await
        .unwrap();
    assert_eq!(out.hosts.len(), 3);
    assert_eq!(out.hosts["a1"].status, HostStatus::Complete);
    assert_eq!(out.hosts["a1"].batch_id, "b1");
    assert_eq!(out.hosts["a2"].status, HostStatus::Missing);
    assert_eq!(out.hosts["c1"].status, HostStatus::Failed);
    assert_eq!(out.hosts["c1"].errors[0].message, "boom");
    assert_eq!(out.hosts["c1"].batch_id, "b2");
}
