//! RTR batch sessions and batch admin `runscript` against the sandbox host model: the collector
//! launch and status probe of `docs/collector-protocol.md`, written here from that document.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use falcon_sdk::FalconClient;
use falcon_sdk::rtr::HostStatus;
use falcon_sdk::rtr::runscript::Runscript;
use serde_json::{Value, json};

use crate::common::{self, s};

const JOB: &str = "0e2e7a11";

fn launch_script(collector: &str) -> String {
    let quoted = collector.replace('\'', r"'\''");
    format!(
        r#"d=/tmp/cado-host-{JOB}
umask 077
free=$(df -Pk /tmp 2>/dev/null | awk 'NR==2 {{print $4}}')
case "$free" in ''|*[!0-9]*) ;; *) if [ "$free" -lt 1048576 ]; then echo "FALCON-TRIAGE no-space job={JOB} free=$((free * 1024)) required=1073741824"; exit 1; fi;; esac
if ! mkdir "$d" 2>/dev/null; then
if [ ! -L "$d" ] && [ -d "$d" ] && set -- $(ls -ldn "$d" 2>/dev/null) && [ "$3" = 0 ] && [ "${{1%[.@]}}" = drwx------ ]; then echo "FALCON-TRIAGE already-launched job={JOB} pid=$(cat "$d/pid" 2>/dev/null)"; exit 0; fi
echo "FALCON-TRIAGE launch-error job={JOB} reason=workdir-exists"; exit 1
fi
cd "$d" || {{ echo "FALCON-TRIAGE launch-error job={JOB} reason=workdir"; exit 1; }}
printf '%s\n' '{quoted}' > "$d/cmd"
(sh "$d/cmd" > "$d/collector.log" 2>&1; rc=$?; echo $rc > "$d/exit_code") < /dev/null > /dev/null 2>&1 &
p=$!
echo $p > "$d/pid"
echo "FALCON-TRIAGE launched job={JOB} pid=$p""#
    )
}

fn probe_script() -> String {
    format!(
        r#"d=/tmp/cado-host-{JOB}
if [ -f "$d/exit_code" ]; then echo "FALCON-TRIAGE exited job={JOB} code=$(cat "$d/exit_code")"
elif [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then echo "FALCON-TRIAGE running job={JOB} pid=$(cat "$d/pid")"
elif [ -f "$d/pid" ]; then echo "FALCON-TRIAGE vanished job={JOB}"
else echo "FALCON-TRIAGE absent job={JOB}"; fi
echo "FALCON-TRIAGE log-tail job={JOB}"
tail -n 20 "$d/collector.log" 2>/dev/null"#
    )
}

/// Runs `script` with `runscript -Raw` on `hosts` of the batch; returns each host's stdout, after
/// asserting that every host completed without error.
async fn run_on(
    client: &FalconClient,
    batch_id: &str,
    hosts: &[&str],
    script: &str,
) -> BTreeMap<String, String> {
    let cmd = Runscript::raw(script)
        .timeout(30)
        .to_command_string()
        .expect("quotable script");
    let out = client
        .rtr()
        .batch_admin_command(batch_id, Runscript::BASE_COMMAND, cmd)
        .optional_hosts(hosts)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("batch admin command");
    hosts
        .iter()
        .map(|aid| {
            let h = out
                .hosts
                .get(*aid)
                .unwrap_or_else(|| panic!("{aid} missing"));
            assert_eq!(h.status, HostStatus::Complete, "{aid}: {h:?}");
            assert!(h.errors.is_empty() && h.stderr.is_empty(), "{aid}: {h:?}");
            (aid.to_string(), h.stdout.clone())
        })
        .collect()
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_launch_and_probe_follow_the_collector_protocol() {
    let mut config = common::config(60, 10);
    config.falcon.collector_duration = Duration::from_secs(2);
    let sb = common::start(config).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    let by_platform = |p: &str| -> Vec<String> {
        fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["platform_name"] == p)
            .map(|h| s(&h["device_id"]).to_owned())
            .collect()
    };
    let linux = by_platform("Linux");
    let mac = by_platform("Mac");
    let windows = by_platform("Windows");
    assert!(linux.len() >= 4 && !mac.is_empty() && !windows.is_empty());
    let unix: Vec<&str> = linux
        .iter()
        .take(3)
        .chain(mac.iter().take(1))
        .map(String::as_str)
        .collect();
    let offline = linux[3].as_str();
    let win = windows[0].as_str();
    common::post(
        format!("{}/_sandbox/hosts/online", info.falcon_url),
        json!({"ids": [offline], "online": false}),
    )
    .await;

    // Batch init: online hosts get a session, the offline one fails with 40401 (no queueing).
    let mut all: Vec<&str> = unix.clone();
    all.extend([offline, win]);
    let init = client
        .rtr()
        .batch_init(&all)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("batch init");
    assert_eq!(init.batches.len(), 1);
    let batch_id = init.batches[0].batch_id.clone();
    let mut connected: Vec<&str> = init.connected().collect();
    connected.sort();
    let mut want: Vec<&str> = unix.iter().copied().chain([win]).collect();
    want.sort();
    assert_eq!(connected, want);
    let off = &init.hosts[offline];
    assert_eq!(off.status, HostStatus::Failed, "{off:?}");
    assert!(off.has_error_code(40401), "{off:?}");

    // Before launching: absent.
    for (aid, out) in run_on(&client, &batch_id, &unix, &probe_script()).await {
        assert_eq!(
            out.lines().next(),
            Some(format!("FALCON-TRIAGE absent job={JOB}").as_str()),
            "{aid}"
        );
    }

    // Launch: one pid per host.
    let launched = run_on(
        &client,
        &batch_id,
        &unix,
        &launch_script("collect-everything --fast"),
    )
    .await;
    let mut pids = BTreeMap::new();
    for (aid, out) in &launched {
        let line = out.lines().next().unwrap_or_default();
        assert!(line.starts_with("FALCON-TRIAGE launched "), "{aid}: {out}");
        assert_eq!(field(line, "job"), Some(JOB));
        let pid = field(line, "pid").expect("pid").to_owned();
        assert!(pid.parse::<u32>().is_ok(), "{aid}: pid {pid}");
        pids.insert(aid.clone(), pid);
    }

    // Right after the launch the collectors run (they last 2 s).
    for (aid, out) in run_on(&client, &batch_id, &unix, &probe_script()).await {
        assert_eq!(
            out.lines().next(),
            Some(format!("FALCON-TRIAGE running job={JOB} pid={}", pids[&aid]).as_str()),
        );
    }

    // A second launch starts nothing and names the same pid.
    for (aid, out) in run_on(
        &client,
        &batch_id,
        &unix,
        &launch_script("collect-everything --fast"),
    )
    .await
    {
        assert_eq!(
            out.lines().next(),
            Some(
                format!(
                    "FALCON-TRIAGE already-launched job={JOB} pid={}",
                    pids[&aid]
                )
                .as_str()
            ),
        );
    }

    // A shell script on a Windows host fails like PowerShell would, on stderr.
    let cmd = Runscript::raw(launch_script("collect"))
        .to_command_string()
        .unwrap();
    let out = client
        .rtr()
        .batch_admin_command(&batch_id, "runscript", cmd)
        .optional_hosts(&[win])
        .send()
        .await
        .expect("windows");
    let w = &out.hosts[win];
    assert!(
        !w.stderr.is_empty() && !w.stdout.contains("launched"),
        "{w:?}"
    );
    assert!(!w.succeeded());

    // Probe until every collector exited; they are not Cado Host,
    // so `sh` reports them missing: exit code 127 and the shell's message in the log tail.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let probes = run_on(&client, &batch_id, &unix, &probe_script()).await;
        let mut done = 0;
        for (aid, out) in &probes {
            let first = out.lines().next().unwrap_or_default();
            if first.starts_with("FALCON-TRIAGE running ") {
                assert_eq!(field(first, "pid"), Some(pids[aid].as_str()));
            } else {
                assert_eq!(
                    first,
                    format!("FALCON-TRIAGE exited job={JOB} code=127"),
                    "{aid}: {out}"
                );
                // the archive the wrapper measured (none: the collector did not run), then the log
                let tail: Vec<&str> = out.lines().skip(1).collect();
                assert_eq!(
                    tail.first().copied(),
                    Some(format!("FALCON-TRIAGE archive job={JOB} bytes=0 name=").as_str())
                );
                assert_eq!(
                    tail.get(1).copied(),
                    Some(format!("FALCON-TRIAGE log-tail job={JOB}").as_str())
                );
                assert!(tail.iter().any(|l| l.contains("not found")), "{aid}: {out}");
                done += 1;
            }
        }
        if done == unix.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "collectors still running: {probes:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // The sandbox's own record agrees.
    let dump: Value = common::get(format!("{}/_sandbox/rtr", info.falcon_url)).await;
    let jobs: Vec<&Value> = dump["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["job"] == JOB)
        .collect();
    assert_eq!(jobs.len(), unix.len(), "one job per launched host: {dump}");
    for j in jobs {
        assert_eq!(j["exit_code"], 127);
        assert_eq!(j["pid"].to_string(), pids[s(&j["aid"])]);
    }

    // Refresh keeps the batch usable.
    let refreshed = client
        .rtr()
        .batch_refresh(&batch_id)
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.failed().count(), 0, "{refreshed:?}");
    for aid in unix.iter().chain([&win]) {
        assert!(refreshed.hosts.contains_key(*aid), "{aid} not refreshed");
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_offline_command_runs_when_the_host_returns() {
    let mut config = common::config(30, 10);
    config.falcon.collector_duration = Duration::from_millis(200);
    let sb = common::start(config).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    let host = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["platform_name"] == "Linux")
        .expect("a linux host");
    let aid = s(&host["device_id"]).to_owned();
    common::post(
        format!("{}/_sandbox/hosts/online", info.falcon_url),
        json!({"ids": [aid], "online": false}),
    )
    .await;
    let init = client
        .rtr()
        .batch_init(&[aid.as_str()])
        .queue_offline(true)
        .send()
        .await
        .expect("batch init");
    assert_eq!(
        init.hosts[&aid].status,
        HostStatus::QueuedOffline,
        "{init:?}"
    );
    let cmd = Runscript::raw(launch_script("collect-later"))
        .to_command_string()
        .unwrap();
    let out = client
        .rtr()
        .batch_admin_command(&init.batches[0].batch_id, "runscript", cmd)
        .send()
        .await
        .expect("queued command");
    let h = &out.hosts[&aid];
    assert!(h.offline_queued && !h.complete, "{h:?}");
    assert_eq!(h.status, HostStatus::QueuedOffline);
    let jobs = |v: &Value| {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["job"] == JOB)
            .count()
    };
    assert_eq!(
        jobs(&common::get(format!("{}/_sandbox/rtr", info.falcon_url)).await),
        0
    );
    common::post(
        format!("{}/_sandbox/hosts/online", info.falcon_url),
        json!({"ids": [aid], "online": true}),
    )
    .await;
    assert_eq!(
        jobs(&common::get(format!("{}/_sandbox/rtr", info.falcon_url)).await),
        1,
        "the queued launch did not run when the host came online"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_session_reassembles_chunked_output() {
    let mut config = common::config(10, 10);
    // The status endpoint hands stdout out in chunks of 64 bytes (one per `sequence_id`).
    config.falcon.stdout_chunk_bytes = 64;
    let sb = common::start(config).await;
    let info = sb.info();
    let client = common::falcon(info);
    let fleet = common::fleet(info).await;
    let aid = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["platform_name"] == "Linux")
        .map(|h| s(&h["device_id"]).to_owned())
        .expect("a linux host");
    let session = client
        .rtr()
        .session(&aid)
        .poll_policy(falcon_sdk::rtr::PollPolicy::fixed(Duration::from_millis(
            20,
        )))
        .open()
        .await
        .expect("session");
    let lines: Vec<String> = (0..40)
        .map(|n| format!("line {n:03} of the output"))
        .collect();
    let script: String = lines.iter().map(|l| format!("echo {l}\n")).collect();
    let cmd = Runscript::raw(script).to_command_string().unwrap();
    let out = session
        .admin_command("runscript", cmd)
        .run_and_wait(Duration::from_secs(20))
        .await
        .expect("runscript");
    assert!(out.complete);
    assert_eq!(out.stderr, "");
    let want: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert!(want.len() > 64 * 10, "the output must span many chunks");
    assert_eq!(out.stdout, want);
    let rtr_status =
        common::falcon_requests(info, "GET /real-time-response/entities/admin-command/v1").await;
    assert!(
        rtr_status as usize > want.len() / 64,
        "{rtr_status} status requests"
    );
    session.close().await.expect("close");
    let dump = common::get(format!("{}/_sandbox/rtr", info.falcon_url)).await;
    assert_eq!(dump["live_sessions"], 0, "session not closed: {dump}");
    sb.shutdown().await;
}
