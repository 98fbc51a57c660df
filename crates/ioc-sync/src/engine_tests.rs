//! Engine unit tests: a scripted [`EventSource`], an [`IocStore`] that injects failures, a counting
//! [`StatePinger`], paused time.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use serde_json::json;

use super::*;
use crate::state::{Identity, StateFile};

// ---------- fakes ----------

/// Events in order; after the script, either the end of the source or silence forever.
struct Script {
    events: VecDeque<SourceEvent>,
    end: bool,
    acked: Arc<Mutex<Option<String>>>,
    recover_until: Option<String>,
}

impl Script {
    fn new(events: Vec<SourceEvent>, end: bool) -> Script {
        Script {
            events: events.into(),
            end,
            acked: Arc::default(),
            recover_until: None,
        }
    }
}

impl EventSource for Script {
    async fn next_event(&mut self) -> Option<Result<SourceEvent, Error>> {
        match self.events.pop_front() {
            Some(e) => Some(Ok(e)),
            None if self.end => None,
            None => std::future::pending().await,
        }
    }
    fn ack(&mut self, id: &str) {
        *self.acked.lock().unwrap() = Some(id.to_string());
    }
    fn state_json(&self) -> String {
        json!({
            "start_from": self.acked.lock().unwrap().clone().unwrap_or("0-0".into()),
            "recover_until": self.recover_until.clone().map(Value::from).unwrap_or(Value::Bool(false)),
        })
        .to_string()
    }
}

#[derive(Default)]
struct Pinger(AtomicUsize);

impl StatePinger for Pinger {
    async fn ping(&self, _: &str) -> Result<bool, Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(false)
    }
}

/// How the fake answers a create.
enum CreateAnswer {
    /// Refuses the items at these indexes (attributed by index).
    Refuse(Vec<usize>),
    /// Reports the items at `silent` neither written nor refused (stored when `stored`), plus a
    /// failure that names no item.
    Unattributed { silent: Vec<usize>, stored: bool },
}

type Hook = Box<dyn FnMut(usize) + Send>;

#[derive(Default)]
struct Fake {
    iocs: Mutex<HashMap<IocKey, ExistingIoc>>,
    calls: Mutex<Vec<&'static str>>,
    /// Per lookup call: `Some(status)` fails with it, `None` answers.
    lookup_errors: Mutex<VecDeque<Option<u16>>>,
    /// Lookups never answer.
    lookup_hangs: std::sync::atomic::AtomicBool,
    /// Lookups always fail with this status.
    lookup_always: Mutex<Option<u16>>,
    creates: Mutex<VecDeque<CreateAnswer>>,
    /// Called with the number of the create call (1-based).
    on_create: Mutex<Option<Hook>>,
    /// Deletes are applied but not reported.
    delete_silent: std::sync::atomic::AtomicBool,
    /// Deletes are neither applied nor reported.
    delete_ignored: std::sync::atomic::AtomicBool,
}

fn api_error(phase: &'static str, status: u16) -> Error {
    Error::Falcon {
        phase,
        source: falcon_sdk::Error::Api {
            status: falcon_sdk::StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            detail: Box::new(falcon_sdk::ApiErrorDetail {
                endpoint: format!("{phase} endpoint"),
                errors: vec![falcon_sdk::ApiErrorItem {
                    code: Some(status.into()),
                    message: format!("injected {status}"),
                    id: None,
                }],
                ..Default::default()
            }),
        },
    }
}

fn existing(d: &DesiredIoc) -> ExistingIoc {
    ExistingIoc::from_desired(d, format!("id-{}", d.key.value))
}

impl Fake {
    fn calls(&self, op: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == op)
            .count()
    }
    fn has(&self, value: &str) -> bool {
        self.iocs.lock().unwrap().keys().any(|k| k.value == value)
    }
}

impl IocStore for Arc<Fake> {
    async fn lookup(&self, keys: &[IocKey]) -> Result<Vec<ExistingIoc>, Error> {
        self.calls.lock().unwrap().push("lookup");
        if self.lookup_hangs.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if let Some(s) = *self.lookup_always.lock().unwrap() {
            return Err(api_error("lookup", s));
        }
        if let Some(Some(s)) = self.lookup_errors.lock().unwrap().pop_front() {
            return Err(api_error("lookup", s));
        }
        let iocs = self.iocs.lock().unwrap();
        Ok(keys.iter().filter_map(|k| iocs.get(k).cloned()).collect())
    }

    async fn create(&self, items: &[DesiredIoc]) -> Result<WriteOutcome, Error> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            c.push("create");
            c.iter().filter(|x| **x == "create").count()
        };
        if let Some(f) = self.on_create.lock().unwrap().as_mut() {
            f(n);
        }
        let answer = self.creates.lock().unwrap().pop_front();
        let mut out = WriteOutcome::default();
        let mut iocs = self.iocs.lock().unwrap();
        for (i, d) in items.iter().enumerate() {
            match &answer {
                Some(CreateAnswer::Refuse(bad)) if bad.contains(&i) => {
                    out.failed.push(ItemFailure {
                        index: Some(i),
                        key: None,
                        message: "Value is invalid".into(),
                    });
                    continue;
                }
                Some(CreateAnswer::Unattributed { silent, stored }) if silent.contains(&i) => {
                    if *stored {
                        iocs.insert(d.key.clone(), existing(d));
                    }
                    continue;
                }
                _ => {}
            }
            let e = existing(d);
            out.ids.insert(i, e.id.clone());
            iocs.insert(d.key.clone(), e);
            out.written.push(i);
        }
        if matches!(answer, Some(CreateAnswer::Unattributed { .. })) {
            out.failed.push(ItemFailure {
                index: None,
                key: None,
                message: "mystery refusal".into(),
            });
        }
        Ok(out)
    }

    async fn update(&self, items: &[IocUpdate]) -> Result<WriteOutcome, Error> {
        self.calls.lock().unwrap().push("update");
        Ok(WriteOutcome {
            written: (0..items.len()).collect(),
            ..WriteOutcome::default()
        })
    }

    async fn delete(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        self.calls.lock().unwrap().push("delete");
        if self.delete_ignored.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        self.iocs
            .lock()
            .unwrap()
            .retain(|_, e| !ids.contains(&e.id));
        if self.delete_silent.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        Ok(ids.to_vec())
    }
}

// ---------- helpers ----------

fn opts() -> EngineOptions {
    EngineOptions {
        name: "test".into(),
        mapping: MappingOptions::default(),
        permanent_delete: false,
        batch_size: 100,
        batch_window: Duration::from_millis(500),
        write_chunk: 100,
        lookup_chunk: 100,
        concurrency: 2,
        requests_per_minute: 6_000,
        ping_interval: Duration::from_secs(1),
        dry_run: false,
        until_caught_up: false,
        shutdown_grace: Duration::from_secs(20),
    }
}

struct Harness {
    fake: Arc<Fake>,
    engine: Engine<Arc<Fake>>,
    dir: tempfile::TempDir,
    pinger: Pinger,
}

fn harness(o: EngineOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    harness_in(o, dir, "dead.jsonl")
}

fn harness_in(o: EngineOptions, dir: tempfile::TempDir, dead: &str) -> Harness {
    let fake = Arc::new(Fake::default());
    let identity = Identity {
        opencti_url: "http://octi".into(),
        live_stream_id: "s".into(),
        connector_id: "c".into(),
    };
    let engine = Engine::new(
        fake.clone(),
        o,
        Some(StateFile::new(dir.path().join("state.json"), identity)),
        DeadLetterFile::new(dir.path().join(dead)),
    );
    Harness {
        fake,
        engine,
        dir,
        pinger: Pinger::default(),
    }
}

impl Harness {
    /// Runs the engine over `events` to the end of the source; returns how it ended and the source.
    async fn run_to_end(&self, events: Vec<SourceEvent>) -> (RunEnd, Script) {
        let mut src = Script::new(events, true);
        let end = self
            .engine
            .run(&mut src, &self.pinger, &CancellationToken::new())
            .await
            .unwrap();
        (end, src)
    }

    fn letters(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.dir.path().join("dead.jsonl")) {
            Ok(t) => t
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    fn saved_cursor(&self) -> Option<String> {
        let t = std::fs::read_to_string(self.dir.path().join("state.json")).ok()?;
        let v: Value = serde_json::from_str(&t).unwrap();
        v["start_from"].as_str().map(str::to_string)
    }
}

/// A token cancelled after `after` (paused time).
fn cancel_after(after: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        t.cancel();
    });
    token
}

fn connected(last: Option<&str>) -> SourceEvent {
    SourceEvent::Connected {
        last_event_id: last.map(str::to_string),
    }
}

fn domain_event(id: &str, action: EventAction, domain: &str) -> SourceEvent {
    SourceEvent::Data {
        id: id.into(),
        action,
        stix: json!({
            "type": "indicator",
            "id": format!("indicator--{:0>8}-0000-4000-8000-000000000000", domain.len()),
            "pattern_type": "stix",
            "pattern": format!("[domain-name:value = '{domain}']"),
            "x_mitre_platforms": ["windows"],
            "x_opencti_score": 80,
        }),
        context: None,
    }
}

fn create(id: &str, domain: &str) -> SourceEvent {
    domain_event(id, EventAction::Create, domain)
}

fn heartbeat(id: &str) -> SourceEvent {
    SourceEvent::Heartbeat { id: id.into() }
}

// ---------- tests ----------

#[test]
fn the_test_indicator_maps_to_one_domain_ioc() {
    let SourceEvent::Data { stix, .. } = create("1-0", "a.example") else {
        unreachable!()
    };
    let m = crate::mapping::map_indicator(&stix, &MappingOptions::default(), chrono::Utc::now());
    assert_eq!(m.iocs.len(), 1, "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_backoff_writes_within_grace_and_saves_state() {
    let h = harness(opts());
    // Three 503s, then Falcon recovers.
    *h.fake.lookup_errors.lock().unwrap() = vec![Some(503), Some(503), Some(503)].into();
    let mut src = Script::new(vec![connected(None), create("5-0", "a.example")], false);
    let token = cancel_after(Duration::from_millis(800));
    let end = h.engine.run(&mut src, &h.pinger, &token).await.unwrap();
    assert_eq!(end, RunEnd::Shutdown);
    assert!(h.fake.has("a.example"), "written within the grace period");
    assert_eq!(src.acked.lock().unwrap().as_deref(), Some("5-0"));
    assert_eq!(h.saved_cursor().as_deref(), Some("5-0"), "state saved");
    assert_eq!(h.engine.stats().summary("").retries, 3);
}

#[tokio::test(start_paused = true)]
async fn shutdown_under_permanent_5xx_gives_up_after_grace_without_ack() {
    let h = harness(opts());
    *h.fake.lookup_always.lock().unwrap() = Some(503);
    let mut src = Script::new(vec![connected(None), create("5-0", "a.example")], false);
    let token = cancel_after(Duration::from_secs(3));
    let start = Instant::now();
    let end = h.engine.run(&mut src, &h.pinger, &token).await.unwrap();
    assert_eq!(end, RunEnd::Shutdown);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(3 + 20) && took <= Duration::from_secs(3 + 20 + 1),
        "bounded by the grace period: {took:?}"
    );
    assert_eq!(*src.acked.lock().unwrap(), None, "replayed on restart");
    assert!(
        h.letters().is_empty(),
        "a transient failure is no dead letter"
    );
    // The state was pinged all along, also while the batch was retried.
    assert!(
        h.pinger.0.load(Ordering::Relaxed) >= 20,
        "pings while retrying"
    );
}

#[tokio::test(start_paused = true)]
async fn an_in_flight_request_cannot_outlive_the_grace_period() {
    let h = harness(opts());
    h.fake.lookup_hangs.store(true, Ordering::Relaxed);
    let mut src = Script::new(vec![connected(None), create("5-0", "a.example")], false);
    let token = cancel_after(Duration::from_secs(2));
    let start = Instant::now();
    let end = h.engine.run(&mut src, &h.pinger, &token).await.unwrap();
    assert_eq!(end, RunEnd::Shutdown);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(22) && took < Duration::from_secs(23),
        "{took:?}"
    );
    assert_eq!(*src.acked.lock().unwrap(), None);
    assert!(
        h.pinger.0.load(Ordering::Relaxed) >= 20,
        "pings while a request hangs"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_lookup_dead_letters_its_changes_and_moves_on() {
    let mut o = opts();
    o.batch_size = 2;
    let h = harness(o);
    // 414 URI Too Long on the first lookup, then fine.
    *h.fake.lookup_errors.lock().unwrap() = vec![Some(414)].into();
    let (end, _) = h
        .run_to_end(vec![
            connected(None),
            create("5-0", "a.example"),
            heartbeat("6-0"),
        ])
        .await;
    assert_eq!(end, RunEnd::SourceEnded);
    let letters = h.letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["operation"], "lookup");
    assert_eq!(letters[0]["value"], "a.example");
    assert_eq!(letters[0]["event_id"], "5-0");
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("414"),
        "{letters:?}"
    );
    assert!(
        letters[0]["body"]["value"] == "a.example",
        "the IOC to replay"
    );
    assert_eq!(h.saved_cursor().as_deref(), Some("6-0"), "acknowledged");
    assert!(!h.fake.has("a.example"));
    assert_eq!(
        h.fake.calls("create"),
        0,
        "nothing written without a lookup"
    );
}

#[tokio::test(start_paused = true)]
async fn an_auth_failure_stops_the_engine_without_ack_or_dead_letter() {
    for status in [401, 403] {
        let h = harness(opts());
        *h.fake.lookup_always.lock().unwrap() = Some(status);
        let mut src = Script::new(vec![connected(None), create("5-0", "a.example")], false);
        let e = h
            .engine
            .run(&mut src, &h.pinger, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(e.is_falcon_auth(), "{e:?}");
        assert_eq!(h.fake.calls("lookup"), 1, "not retried");
        assert_eq!(*src.acked.lock().unwrap(), None);
        assert!(h.letters().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn refused_items_are_dead_lettered_before_their_keys_are_skipped() {
    // The dead-letter file cannot be written at first: its directory is a regular file.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("dl");
    std::fs::write(&blocker, "not a directory").unwrap();
    let h = harness_in(opts(), dir, "dl/dead.jsonl");
    // Falcon refuses the first of two items on every create.
    *h.fake.creates.lock().unwrap() = (0..10).map(|_| CreateAnswer::Refuse(vec![0])).collect();
    // The volume is fixed while the engine retries (at the third create).
    let b = blocker.clone();
    *h.fake.on_create.lock().unwrap() = Some(Box::new(move |n| {
        if n == 3 {
            std::fs::remove_file(&b).unwrap();
        }
    }));
    let (end, src) = h
        .run_to_end(vec![
            connected(None),
            create("5-0", "bad.example"),
            create("6-0", "good.example"),
        ])
        .await;
    assert_eq!(end, RunEnd::SourceEnded);
    let text = std::fs::read_to_string(h.dir.path().join("dl/dead.jsonl")).unwrap();
    let letters: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["value"], "bad.example");
    assert_eq!(letters[0]["reason"], "Value is invalid");
    assert_eq!(
        h.fake.calls("create"),
        3,
        "retried until the letter was on disk"
    );
    assert!(h.fake.has("good.example"));
    assert_eq!(src.acked.lock().unwrap().as_deref(), Some("6-0"));
}

#[tokio::test(start_paused = true)]
async fn items_neither_written_nor_refused_are_reverified_or_dead_lettered() {
    // Of two items, #1 is neither reported written nor refused (stored or not), and a failure names
    // no item.
    let run = |stored: bool| async move {
        let h = harness(opts());
        *h.fake.creates.lock().unwrap() = vec![CreateAnswer::Unattributed {
            silent: vec![1],
            stored,
        }]
        .into();
        let (_, src) = h
            .run_to_end(vec![
                connected(None),
                create("5-0", "one.example"),
                create("6-0", "two.example"),
            ])
            .await;
        assert_eq!(src.acked.lock().unwrap().as_deref(), Some("6-0"));
        (h.engine.stats().summary("").created, h.letters())
    };
    let (created, letters) = run(true).await;
    assert!(letters.is_empty(), "a stored item is verified by a lookup");
    assert_eq!(created, 2);
    let (created, letters) = run(false).await;
    assert_eq!(created, 1);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["value"], "two.example");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("neither written nor refused") && reason.contains("mystery refusal"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn delete_answers_are_checked_against_the_requested_ids() {
    let run = |silent: bool, ignored: bool| async move {
        let mut o = opts();
        o.permanent_delete = true;
        o.batch_size = 1;
        let h = harness(o);
        h.fake.delete_silent.store(silent, Ordering::Relaxed);
        h.fake.delete_ignored.store(ignored, Ordering::Relaxed);
        let mut src = Script::new(
            vec![
                connected(None),
                create("5-0", "a.example"),
                domain_event("6-0", EventAction::Delete, "a.example"),
            ],
            true,
        );
        h.engine
            .run(&mut src, &h.pinger, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(h.fake.calls("delete"), 1);
        (h.engine.stats().summary("").deleted, h.letters())
    };
    let (deleted, letters) = run(false, false).await;
    assert_eq!((deleted, letters.len()), (1, 0));
    // Applied but not reported: a lookup confirms it is gone.
    let (deleted, letters) = run(true, false).await;
    assert_eq!((deleted, letters.len()), (1, 0));
    // Not applied and not reported: dead-lettered.
    let (deleted, letters) = run(false, true).await;
    assert_eq!((deleted, letters.len()), (0, 1), "{letters:?}");
    assert_eq!(letters[0]["operation"], "delete");
    assert_eq!(letters[0]["value"], "a.example");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_only_stream_moves_the_cursor_without_falcon_requests() {
    let h = harness(opts());
    let (end, _) = h
        .run_to_end(vec![
            connected(Some("1-0")),
            heartbeat("2-0"),
            heartbeat("3-0"),
            heartbeat("4-0"),
        ])
        .await;
    assert_eq!(end, RunEnd::SourceEnded);
    assert!(h.fake.calls.lock().unwrap().is_empty(), "no Falcon request");
    assert_eq!(h.saved_cursor().as_deref(), Some("4-0"));
    let s = h.engine.stats().summary("");
    assert_eq!((s.events, s.data_events, s.falcon_requests), (4, 0, 0));
}

#[test]
fn caught_up_target_arithmetic() {
    let batch = |last: Option<&str>| {
        let mut b = Batch::new();
        b.last_event_id = last.map(str::to_string);
        b.events = 0;
        b
    };
    let src = Script::new(Vec::new(), true);
    // No recovery: the target is the stream's last event at connect.
    let mut c = CatchUp::new(None);
    assert!(
        !c.done(&src, &batch(Some("99-0")), true),
        "not connected yet"
    );
    c.connected(Some("100-5"));
    assert_eq!(c.target, Some(Some((100, 5))));
    assert!(!c.done(&src, &batch(Some("100-4")), false));
    assert!(c.done(&src, &batch(Some("100-5")), false));
    assert!(c.done(&src, &batch(Some("101-0")), false));
    // Quiet before the live events reached the target: not done.
    c.seen("100-4");
    assert!(!c.done(&src, &batch(Some("100-4")), true));
    // An empty stream: nothing to wait for.
    let mut c = CatchUp::new(None);
    c.connected(None);
    assert!(c.done(&src, &batch(None), false));
    // Recovery: the target is max(L, R); the snapshot (ids `<updated_at>-0`, ascending) has
    // delivered everything up to L once it reaches `<L_ms>-0` and the stream goes quiet.
    let mut c = CatchUp::new(Some(5_000));
    c.connected(Some("1000-3"));
    assert_eq!(c.target, Some(Some((5_000, 0))));
    assert_eq!(c.early, Some((1_000, 0)));
    assert!(
        !c.done(&src, &batch(None), true),
        "quiet before any event: wait"
    );
    c.seen("900-0");
    assert!(
        !c.done(&src, &batch(Some("900-0")), true),
        "snapshot not past L yet"
    );
    c.seen("1000-0");
    assert!(!c.done(&src, &batch(Some("1000-0")), false), "not quiet");
    assert!(c.done(&src, &batch(Some("1000-0")), true));
    assert!(
        c.done(&src, &batch(Some("5000-0")), false),
        "a heartbeat past R"
    );
    // No event at connect: only a heartbeat past R ends it.
    let mut c = CatchUp::new(Some(5_000));
    c.connected(None);
    c.seen("4000-0");
    assert!(!c.done(&src, &batch(Some("4000-0")), true));
    // Recovery with live events after R at connect: those must arrive first.
    let mut c = CatchUp::new(Some(5_000));
    c.connected(Some("6000-2"));
    assert_eq!(c.target, Some(Some((6_000, 2))));
    c.seen("4000-0");
    assert!(!c.done(&src, &batch(Some("4000-0")), true));
    c.seen("6000-2");
    assert!(c.done(&src, &batch(Some("6000-2")), false));
    // The acknowledged cursor counts when the batch has none.
    let mut acked = Script::new(Vec::new(), true);
    acked.ack("7000-0");
    let mut c = CatchUp::new(None);
    c.connected(Some("7000-0"));
    assert!(c.done(&acked, &batch(None), false));
}

#[tokio::test(start_paused = true)]
async fn until_caught_up_ends_when_quiet_without_waiting_for_a_heartbeat() {
    let mut o = opts();
    o.until_caught_up = true;
    let h = harness(o);
    // First run: recover until now, the stream's last event is older; the snapshot then silence.
    let mut src = Script::new(
        vec![
            connected(Some("1000-0")),
            create("2000-0", "a.example"),
            create("3000-0", "b.example"),
        ],
        false,
    );
    src.recover_until = Some("2030-01-01T00:00:00Z".into());
    let start = Instant::now();
    let end = h
        .engine
        .run(&mut src, &h.pinger, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(end, RunEnd::CaughtUp);
    assert!(h.fake.has("a.example") && h.fake.has("b.example"));
    assert!(
        start.elapsed() <= Duration::from_millis(500),
        "one batch window after the last event: {:?}",
        start.elapsed()
    );
    assert_eq!(h.saved_cursor().as_deref(), Some("3000-0"));
}

#[tokio::test(start_paused = true)]
async fn until_caught_up_waits_when_nothing_arrived_yet() {
    let mut o = opts();
    o.until_caught_up = true;
    let h = harness(o);
    let mut src = Script::new(vec![connected(Some("1000-0"))], false);
    src.recover_until = Some("2030-01-01T00:00:00Z".into());
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        h.engine.run(&mut src, &h.pinger, &CancellationToken::new()),
    )
    .await;
    assert!(r.is_err(), "a snapshot that has not started is not the end");
}

#[tokio::test(start_paused = true)]
async fn reports_come_from_the_write_answers_without_reading_the_iocs_back() {
    use crate::assurance::report::batch_reports;
    use crate::batch::Change;
    use opencti_client::DeploymentStatus;
    let h = harness(opts());
    // Indicator b owned an IOC, which it now withdraws; indicator a wants two new domains.
    let gone = IocKey {
        ioc_type: crate::mapping::IocType::Domain,
        value: "gone.example".into(),
    };
    let b = "indicator--bbbbbbbb-0000-4000-8000-000000000000";
    let mut owned = existing(
        &crate::mapping::map_indicator(
            &json!({"type": "indicator", "id": b, "pattern_type": "stix",
                "pattern": "[domain-name:value = 'gone.example']"}),
            &MappingOptions::default(),
            chrono::Utc::now(),
        )
        .iocs[0],
    );
    owned.tags = vec![crate::mapping::owner_tag(b).unwrap()];
    h.fake.iocs.lock().unwrap().insert(gone.clone(), owned);
    let a = "indicator--aaaaaaaa-0000-4000-8000-000000000000";
    let m = crate::mapping::map_indicator(
        &json!({"type": "indicator", "id": a, "pattern_type": "stix",
                "pattern": "[domain-name:value = 'one.example'] OR [domain-name:value = 'two.example']"}),
        &MappingOptions::default(),
        chrono::Utc::now(),
    );
    let upserts = || {
        let mut batch = Batch::new();
        for i in &m.iocs {
            batch.push(Change {
                key: i.key.clone(),
                intent: Intent::Upsert(i.clone()),
                event_id: "1-0".into(),
                indicator_id: Some(a.into()),
            });
        }
        batch
    };
    let write = |h: Harness, batch: Batch| async move {
        let keys: Vec<IocKey> = batch.pending().iter().map(|p| p.key.clone()).collect();
        let (mut dead, mut held) = (Dead::new(), Holdings::default());
        h.engine
            .write_batch(&batch, &mut dead, Some(&mut held))
            .await
            .unwrap();
        (h, batch, keys, dead, held)
    };
    let mut batch = upserts();
    batch.push(Change {
        key: gone.clone(),
        intent: Intent::Remove { labels: vec![] },
        event_id: "2-0".into(),
        indicator_id: Some(b.into()),
    });
    let (h, batch, keys, dead, mut held) = write(h, batch).await;
    assert_eq!(h.fake.calls("lookup"), 1, "only the lookup before writing");
    assert!(
        held.unknown(&keys).is_empty(),
        "the answers describe every IOC"
    );
    h.engine.read_back(&mut held, &keys).await.unwrap();
    assert_eq!(h.fake.calls("lookup"), 1, "nothing is read back");
    let r = batch_reports(&batch.pending(), &held, &dead, chrono::Utc::now());
    let by: HashMap<&str, _> = r.iter().map(|r| (r.indicator_id.as_str(), r)).collect();
    assert_eq!(by[a].status, DeploymentStatus::Deployed);
    assert_eq!(
        by[a].external_id.as_deref(),
        Some("id-one.example,id-two.example")
    );
    assert_eq!(by[b].status, DeploymentStatus::Removed);
    assert_eq!(by[b].external_id.as_deref(), Some("id-gone.example"));

    // A create answered without its id is read back (once, for that IOC only).
    let h = harness(opts());
    *h.fake.creates.lock().unwrap() = vec![CreateAnswer::Unattributed {
        silent: vec![1],
        stored: true,
    }]
    .into();
    let (h, batch, keys, dead, mut held) = write(h, upserts()).await;
    // The lookup before writing, and the re-check of the item Falcon did not report.
    assert_eq!(h.fake.calls("lookup"), 2);
    h.engine.read_back(&mut held, &keys).await.unwrap();
    assert_eq!(h.fake.calls("lookup"), 2, "the re-check told what is there");
    let r = batch_reports(&batch.pending(), &held, &dead, chrono::Utc::now());
    assert_eq!(r[0].status, DeploymentStatus::Deployed);
}
