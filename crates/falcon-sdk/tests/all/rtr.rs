//! RTR against wiremock: sessions, commands, batches, files.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use falcon_sdk::rtr::runscript::Runscript;
use falcon_sdk::rtr::{HostStatus, NewPutFile, PollPolicy, Role};
use falcon_sdk::{Error, FalconClient};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SESSIONS: &str = "/real-time-response/entities/sessions/v1";
const PULSE: &str = "/real-time-response/entities/refresh-session/v1";
const ADMIN: &str = "/real-time-response/entities/admin-command/v1";
const BATCH_INIT: &str = "/real-time-response/combined/batch-init-session/v1";
const BATCH_ADMIN: &str = "/real-time-response/combined/batch-admin-command/v1";
const PUT_FILES: &str = "/real-time-response/entities/put-files/v1";

/// A mock server with a token endpoint, and a client on it with fast retries.
pub(crate) async fn setup() -> (MockServer, FalconClient) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "access_token": "tok", "expires_in": 1799, "token_type": "bearer"
        })))
        .mount(&server)
        .await;
    let client = FalconClient::builder()
        .client_id("id")
        .client_secret(SecretString::from("secret"))
        .base_url(server.uri())
        .configure(|s| {
            s.initial_backoff = Duration::from_millis(10);
            s.max_backoff = Duration::from_millis(50);
        })
        .build()
        .expect("client");
    (server, client)
}

/// Catch-all that names the unmatched route, so a wrong path fails loudly.
pub(crate) async fn catch_all(server: &MockServer) {
    Mock::given(wiremock::matchers::any())
        .respond_with(|req: &Request| {
            ResponseTemplate::new(418).set_body_string(format!(
                "unmatched route: {} {}",
                req.method,
                req.url.path()
            ))
        })
        .with_priority(u8::MAX)
        .mount(server)
        .await;
}

pub(crate) fn envelope(resources: Value) -> Value {
    json!({"meta": {"query_time": 0.01, "powered_by": "empower-api", "trace_id": "tr"},
           "errors": [], "resources": resources})
}

pub(crate) fn body_json(req: &Request) -> Value {
    serde_json::from_slice(&req.body).expect("json body")
}

pub(crate) async fn mount_session(server: &MockServer, aid: &str, sid: &str) {
    Mock::given(method("POST"))
        .and(path(SESSIONS))
        .and(body_partial_json(json!({"device_id": aid})))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "session_id": sid, "device_id": aid, "offline_queued": false, "pwd": "C:\\", "scripts": null
        }]))))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(SESSIONS))
        .and(query_param("session_id", sid))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
}

#[tokio::test]
async fn admin_runscript_output_is_reassembled_across_two_sequences() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    mount_session(&server, "aid1", "sess1").await;
    let cmd = Runscript::raw("Write-Output \"a\"\nWrite-Output 'b'")
        .timeout(60)
        .to_command_string()
        .unwrap();
    Mock::given(method("POST"))
        .and(path(ADMIN))
        .and(body_partial_json(json!({
            "base_command": "runscript", "command_string": cmd, "session_id": "sess1"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "cloud_request_id": "cr1", "session_id": "sess1", "queued_command_offline": false
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    // sequence 0: still running once, then the first chunk; sequence 1: the last chunk.
    Mock::given(method("GET"))
        .and(path(ADMIN))
        .and(query_param("cloud_request_id", "cr1"))
        .and(query_param("sequence_id", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": false, "stdout": "", "stderr": "", "sequence_id": 0
        }]))))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ADMIN))
        .and(query_param("cloud_request_id", "cr1"))
        .and(query_param("sequence_id", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": false, "stdout": "a\n", "stderr": "warn1 ", "sequence_id": 0,
            "base_command": "runscript", "task_id": "t1"
        }]))))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ADMIN))
        .and(query_param("cloud_request_id", "cr1"))
        .and(query_param("sequence_id", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": true, "stdout": "b\n", "stderr": "warn2", "sequence_id": 1
        }]))))
        .expect(1)
        .mount(&server)
        .await;

    let session = client
        .rtr()
        .session("aid1")
        .origin("test")
        .poll_policy(PollPolicy::fixed(Duration::from_millis(5)))
        .open()
        .await
        .unwrap();
    assert_eq!(session.id(), "sess1");
    let out = session
        .admin_command("runscript", &cmd)
        .run_and_wait(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(out.complete);
    assert_eq!(out.stdout, "a\nb\n");
    assert_eq!(out.stderr, "warn1 warn2");
    assert_eq!(out.next_sequence_id, 2);
    assert_eq!(out.task_id.as_deref(), Some("t1"));
    session.close().await.unwrap();
    let deletes = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method == wiremock::http::Method::DELETE)
        .count();
    assert_eq!(deletes, 1);
}

/// Counts status polls and answers `complete` only after `done_after` polls.
struct SlowCommand {
    polls: Arc<AtomicUsize>,
    done_after: usize,
}

impl Respond for SlowCommand {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        let done = n >= self.done_after;
        ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": done, "stdout": if done { "finished" } else { "" }, "stderr": ""
        }])))
    }
}

/// Drives a paused clock by hand. Auto-advance is inhibited for the whole test (a parked blocking
/// task), because auto-advance would jump to the HTTP client's timeouts while a loopback response
/// is in flight; instead simulated time moves `step` per millisecond of real time.
struct ManualClock {
    stop: Option<std::sync::mpsc::Sender<()>>,
    driver: tokio::task::JoinHandle<()>,
}

impl ManualClock {
    fn start(step: Duration) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        });
        let driver = tokio::spawn(async move {
            loop {
                let _ =
                    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
                        .await;
                tokio::time::advance(step).await;
            }
        });
        ManualClock {
            stop: Some(tx),
            driver,
        }
    }
}

impl Drop for ManualClock {
    fn drop(&mut self) {
        self.driver.abort();
        drop(self.stop.take());
    }
}

#[tokio::test(start_paused = true)]
async fn session_is_refreshed_before_expiry_during_a_long_wait() {
    let _clock = ManualClock::start(Duration::from_millis(500));
    let (server, client) = setup().await;
    catch_all(&server).await;
    mount_session(&server, "aid1", "sess1").await;
    Mock::given(method("POST"))
        .and(path(ADMIN))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "cloud_request_id": "cr1", "session_id": "sess1"
        }]))))
        .mount(&server)
        .await;
    let polls = Arc::new(AtomicUsize::new(0));
    // one poll every 60 s, complete at the 25th poll: about 24 minutes of waiting
    Mock::given(method("GET"))
        .and(path(ADMIN))
        .respond_with(SlowCommand {
            polls: polls.clone(),
            done_after: 25,
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(PULSE))
        .and(body_partial_json(json!({"device_id": "aid1"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "session_id": "sess1", "device_id": "aid1"
        }]))))
        .mount(&server)
        .await;

    let session = client
        .rtr()
        .session("aid1")
        .poll_policy(PollPolicy::fixed(Duration::from_secs(60)))
        .open()
        .await
        .unwrap();
    let opened = tokio::time::Instant::now();
    let first_expiry = session.expires_at();
    assert_eq!(first_expiry - opened, Duration::from_secs(600));
    let out = session
        .admin_command("runscript", "runscript -Raw=```sleep 1400```")
        .run_and_wait(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(out.complete);
    assert_eq!(out.stdout, "finished");
    assert_eq!(polls.load(Ordering::SeqCst), 25);
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_secs(24 * 60), "{waited:?}");
    let pulses = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == PULSE)
        .count();
    // Refreshed when less than 180 s of the 600 s remain, i.e. every 7 minutes of use: 3 pulses
    // in 24 minutes, so the session never came within 3 minutes of expiring.
    assert_eq!(pulses, 3, "waited {waited:?}");
    assert!(session.expires_at() > tokio::time::Instant::now() + Duration::from_secs(180));
    session.close().await.unwrap();
}

fn aids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:032x}")).collect()
}

/// Batch init responder: every host connected, batch id from the request size.
struct InitEcho {
    calls: Arc<AtomicUsize>,
}

impl Respond for InitEcho {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let body = body_json(req);
        let hosts = body["host_ids"].as_array().unwrap();
        let mut res = serde_json::Map::new();
        for h in hosts {
            let h = h.as_str().unwrap();
            res.insert(
                h.to_owned(),
                json!({"aid": h, "session_id": format!("s-{h}"), "complete": true, "stdout": "C:\\",
                       "stderr": "", "errors": [], "offline_queued": false}),
            );
        }
        ResponseTemplate::new(201).set_body_json(json!({
            "meta": {"trace_id": "t"}, "batch_id": format!("batch-{n}-{}", hosts.len()),
            "resources": res, "errors": []
        }))
    }
}

#[tokio::test]
async fn batch_init_over_23456_hosts_makes_three_batch_calls() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    let calls = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path(BATCH_INIT))
        .and(query_param("timeout", "120"))
        .and(query_param("host_timeout_duration", "110s"))
        .respond_with(InitEcho {
            calls: calls.clone(),
        })
        .expect(3)
        .mount(&server)
        .await;
    let mut hosts = aids(23_456);
    hosts.push(hosts[5].clone()); // a duplicate is sent once
    let init = client
        .rtr()
        .batch_init(&hosts)
        .timeout(Duration::from_secs(120))
        .host_timeout(Duration::from_secs(110))
        .send()
        .await
        .unwrap();
    assert_eq!(init.batches.len(), 3);
    let sizes: Vec<usize> = init.batches.iter().map(|b| b.hosts.len()).collect();
    assert_eq!(sizes, vec![10_000, 10_000, 3_456]);
    assert_eq!(init.hosts.len(), 23_456);
    assert_eq!(init.connected().count(), 23_456);
    assert_eq!(init.failed().count(), 0);
    // every host is attributed to the batch that holds it
    for b in &init.batches {
        for h in &b.hosts {
            assert_eq!(init.batch_of(h), Some(b.batch_id.as_str()));
        }
    }
    let reqs = server.received_requests().await.unwrap();
    let mut sent: Vec<usize> = reqs
        .iter()
        .filter(|r| r.url.path() == BATCH_INIT)
        .map(|r| body_json(r)["host_ids"].as_array().unwrap().len())
        .collect();
    sent.sort();
    assert_eq!(sent, vec![3_456, 10_000, 10_000]);
}

#[tokio::test]
async fn batch_command_attributes_mixed_outcomes_per_host() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(BATCH_ADMIN))
        .and(body_partial_json(
            json!({"batch_id": "b1", "base_command": "runscript"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "meta": {"trace_id": "tr-b"}, "errors": [],
            "combined": {"resources": {
                "ok": {"aid": "ok", "session_id": "s1", "task_id": "t1", "complete": true,
                       "stdout": "done", "stderr": "", "errors": [], "offline_queued": false},
                "stderr": {"aid": "stderr", "session_id": "s2", "complete": true,
                       "stdout": "", "stderr": "Access denied", "errors": null},
                "offline": {"aid": "offline", "session_id": "s3", "complete": false,
                       "errors": [{"code": 40401, "message": "Could not establish sensor comms"}]},
                "slow": {"aid": "slow", "session_id": "s4", "complete": false,
                       "errors": [{"code": 50401, "message": "Exceeded maximum timeout"}]},
                "running": {"aid": "running", "session_id": "s5", "complete": false, "errors": []}
            }}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let expected = ["ok", "stderr", "offline", "slow", "running", "lost"];
    let out = client
        .rtr()
        .batch_admin_command("b1", "runscript", "runscript -Raw=```hostname```")
        .expected_hosts(&expected)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(out.hosts.len(), 6);
    assert_eq!(out.trace_id.as_deref(), Some("tr-b"));
    assert_eq!(out.hosts["ok"].status, HostStatus::Complete);
    assert_eq!(out.hosts["ok"].stdout, "done");
    assert!(out.hosts["ok"].succeeded());
    assert_eq!(out.hosts["stderr"].status, HostStatus::Complete);
    assert!(!out.hosts["stderr"].succeeded());
    assert_eq!(out.hosts["offline"].status, HostStatus::Failed);
    assert!(out.hosts["offline"].has_error_code(40401));
    assert_eq!(
        out.hosts["offline"].errors[0].message,
        "Could not establish sensor comms"
    );
    assert_eq!(out.hosts["slow"].status, HostStatus::Failed);
    assert!(out.hosts["slow"].has_error_code(50401));
    assert_eq!(out.hosts["running"].status, HostStatus::Pending);
    assert_eq!(out.hosts["lost"].status, HostStatus::Missing);
    let succeeded: Vec<&str> = out.succeeded().map(|(a, _)| a).collect();
    assert_eq!(succeeded, vec!["ok"]);
    assert_eq!(out.counts()[&HostStatus::Failed], 2);
    // the request carried the timeout as a query parameter, not in the body
    let reqs = server.received_requests().await.unwrap();
    let req = reqs.iter().find(|r| r.url.path() == BATCH_ADMIN).unwrap();
    assert!(req.url.query().unwrap().contains("timeout=60"));
    assert!(body_json(req).get("timeout").is_none());
}

#[tokio::test]
async fn queue_offline_is_reported_per_host() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(BATCH_INIT))
        .and(body_partial_json(json!({"queue_offline": true})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "batch_id": "b1", "errors": null,
            "resources": {
                "on": {"aid": "on", "session_id": "s1", "complete": true, "offline_queued": false, "errors": []},
                "off": {"aid": "off", "session_id": "s2", "complete": false, "offline_queued": true, "errors": []},
                "bad": {"aid": "bad", "session_id": "", "complete": false, "offline_queued": false,
                        "errors": [{"code": 404, "message": "device not found"}]}
            }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let init = client
        .rtr()
        .batch_init(&["on", "off", "bad"])
        .queue_offline(true)
        .send()
        .await
        .unwrap();
    assert_eq!(init.hosts["off"].status, HostStatus::QueuedOffline);
    assert!(init.hosts["off"].offline_queued);
    assert!(init.hosts["off"].is_usable());
    assert_eq!(init.queued_offline().collect::<Vec<_>>(), vec!["off"]);
    assert_eq!(init.connected().collect::<Vec<_>>(), vec!["on"]);
    let failed: Vec<&str> = init.failed().map(|(a, _)| a).collect();
    assert_eq!(failed, vec!["bad"]);
    assert_eq!(init.hosts["bad"].session_id, None);
    assert!(!init.hosts["bad"].is_usable());
}

#[tokio::test]
async fn out_of_bounds_timeouts_are_refused_before_sending() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    let rtr = client.rtr();
    let cases = [
        rtr.batch_init(&["a"])
            .timeout(Duration::from_secs(301))
            .send()
            .await
            .unwrap_err(),
        rtr.batch_init(&["a"])
            .timeout(Duration::ZERO)
            .send()
            .await
            .unwrap_err(),
        rtr.batch_init(&["a"])
            .host_timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_err(),
        rtr.batch_admin_command("b", "ls", "ls")
            .timeout(Duration::from_secs(60))
            .host_timeout(Duration::from_secs(61))
            .send()
            .await
            .unwrap_err(),
        rtr.batch_refresh("b")
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap_err(),
        rtr.batch_get_status("r")
            .timeout(Duration::from_millis(2500))
            .send()
            .await
            .unwrap_err(),
    ];
    for e in &cases {
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(!e.is_retryable());
    }
    assert!(
        cases[0]
            .to_string()
            .contains("timeout of 301s is out of bounds")
    );
    assert!(cases[2].to_string().contains("host_timeout_duration"));
    let err = rtr
        .session("aid")
        .timeout(Duration::from_secs(900))
        .open()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
    // a command string that does not start with its base command is refused too
    let err = rtr
        .batch_admin_command("b", "runscript", "-Raw=```id```")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("must start with the base command"),
        "{err}"
    );
    // nothing reached the server, not even the token request
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn runscript_body_with_backticks_quotes_and_newlines_reaches_the_api_intact() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(BATCH_ADMIN))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"combined": {"resources": {}}})),
        )
        .mount(&server)
        .await;
    let body = "$m = \"it's `\"here`\"\"\r\nWrite-Host $m ``n\n'single' \"double\"";
    let cmd = Runscript::raw(body)
        .command_line("-Path \"C:\\a b\"")
        .timeout(30)
        .to_command_string()
        .unwrap();
    client
        .rtr()
        .batch_admin_command("b1", "runscript", &cmd)
        .send()
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    let sent = body_json(reqs.iter().find(|r| r.url.path() == BATCH_ADMIN).unwrap());
    assert_eq!(
        sent["command_string"].as_str().unwrap(),
        format!("runscript -Raw=```{body}``` -CommandLine=```-Path \"C:\\a b\"``` -Timeout=30")
    );
    // a body that would close the ``` block early is refused with a clear error
    let err = Runscript::raw("echo ```x```")
        .to_command_string()
        .unwrap_err();
    let err: Error = err.into();
    assert!(matches!(err, Error::InvalidArgument(_)));
    assert!(err.to_string().contains("contains ``` at byte 5"), "{err}");
}

#[tokio::test]
async fn put_file_upload_is_not_retried_after_a_5xx() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(PUT_FILES))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let file = NewPutFile::new("collector.exe", "triage collector", vec![1, 2, 3]);
    let err = client.rtr().put_files().upload(&file).await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(falcon_sdk::StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn put_file_upload_is_retried_after_429_with_the_body_intact() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(PUT_FILES))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "meta": {"trace_id": "t429"}, "errors": [{"code": 429, "message": "rate limited"}]
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(PUT_FILES))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "meta": {"trace_id": "t200", "writes": {"resources_affected": 1}}, "errors": []
        })))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let file = NewPutFile::new("collector.exe", "triage collector", content.clone())
        .comment("upload for case 42");
    client.rtr().put_files().upload(&file).await.unwrap();

    let uploads: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == PUT_FILES)
        .collect();
    assert_eq!(uploads.len(), 2);
    for r in &uploads {
        let ct = r.headers.get("content-type").unwrap().to_str().unwrap();
        assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
        let raw = &r.body;
        assert!(find(raw, &content).is_some(), "file content intact");
        for field in [
            &b"name=\"description\"\r\n\r\ntriage collector"[..],
            b"name=\"name\"\r\n\r\ncollector.exe",
            b"name=\"comments_for_audit_log\"\r\n\r\nupload for case 42",
            b"filename=\"collector.exe\"",
        ] {
            assert!(
                find(raw, field).is_some(),
                "{}",
                String::from_utf8_lossy(field)
            );
        }
    }
    // both attempts carried the same parts (boundaries aside)
    assert_eq!(uploads[0].body.len(), uploads[1].body.len());
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn commands_are_not_retried_after_a_5xx() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(BATCH_ADMIN))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    let err = client
        .rtr()
        .batch_role_command(Role::Admin, "b1", "ls", "ls")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(502));
}

/// Batch init responder: the batch holding `ok-*` hosts succeeds, `nf-*` gets a 404 with per-host
/// errors, `down-*` gets a 500 every time.
struct SplitOutcomes;

impl Respond for SplitOutcomes {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = body_json(req);
        let hosts: Vec<&str> = body["host_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        if hosts[0].starts_with("down") {
            return ResponseTemplate::new(500).set_body_json(json!({
                "meta": {"trace_id": "t500"},
                "errors": [{"code": 500, "message": "Internal Server Error: Please provide trace-id='t500' to support"}]
            }));
        }
        let not_found = hosts[0].starts_with("nf");
        let mut res = serde_json::Map::new();
        for h in &hosts {
            let v = if not_found {
                json!({"aid": h, "session_id": "", "errors": [{"code": 40401, "message": "Could not establish sensor comms"}]})
            } else {
                json!({"aid": h, "session_id": format!("s-{h}"), "complete": true, "errors": []})
            };
            res.insert(h.to_string(), v);
        }
        if not_found {
            ResponseTemplate::new(404).set_body_json(json!({
                "batch_id": "", "resources": res,
                "errors": [{"code": 404, "message": "no successful hosts initialized on RTR"}]
            }))
        } else {
            ResponseTemplate::new(201)
                .set_body_json(json!({"batch_id": "b-ok", "resources": res, "errors": []}))
        }
    }
}

#[tokio::test]
async fn a_failed_batch_of_a_split_init_is_attributed_to_its_hosts() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    Mock::given(method("POST"))
        .and(path(BATCH_INIT))
        .respond_with(SplitOutcomes)
        .mount(&server)
        .await;
    let mut hosts: Vec<String> = (0..10_000).map(|i| format!("ok-{i}")).collect();
    hosts.extend((0..10_000).map(|i| format!("nf-{i}")));
    hosts.push("down-0".into());
    let init = client.rtr().batch_init(&hosts).send().await.unwrap();
    assert_eq!(init.hosts.len(), 20_001);
    assert_eq!(init.batches.len(), 1, "only the successful batch is usable");
    assert_eq!(init.batches[0].batch_id, "b-ok");
    assert_eq!(init.connected().count(), 10_000);
    assert_eq!(init.hosts["nf-7"].status, HostStatus::Failed);
    assert!(init.hosts["nf-7"].has_error_code(40401));
    let down = &init.hosts["down-0"];
    assert_eq!(down.status, HostStatus::Failed);
    assert!(
        down.errors[0].message.contains("trace-id='t500'"),
        "{:?}",
        down.errors
    );
    assert_eq!(init.failed().count(), 10_001);
    // the 500 was retried (batch init is idempotent), the 404 was not
    let reqs = server.received_requests().await.unwrap();
    let inits = reqs.iter().filter(|r| r.url.path() == BATCH_INIT).count();
    assert!(inits > 3, "{inits}");
}

/// Review m3: a sequence id of u64::MAX from the wire must not overflow (a panic in debug builds, a
/// wrap to 0 that re-reads output in release).
#[tokio::test]
async fn a_maximal_sequence_id_from_the_wire_does_not_overflow() {
    let (server, client) = setup().await;
    catch_all(&server).await;
    mount_session(&server, "aid1", "sess1").await;
    Mock::given(method("POST"))
        .and(path(ADMIN))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!([{
            "cloud_request_id": "cr1", "session_id": "sess1"
        }]))))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ADMIN))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([{
            "complete": true, "stdout": "done", "stderr": "", "sequence_id": u64::MAX
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    let session = client
        .rtr()
        .session("aid1")
        .poll_policy(PollPolicy::fixed(Duration::from_millis(5)))
        .open()
        .await
        .unwrap();
    let out = session
        .admin_command("runscript", "runscript -Raw=```echo done```")
        .run_and_wait(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.stdout, "done");
    assert_eq!(out.next_sequence_id, u64::MAX);
    session.close().await.unwrap();
}
