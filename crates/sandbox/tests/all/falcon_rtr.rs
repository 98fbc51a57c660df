//! Falcon simulator: RTR sessions, commands, queued sessions, libraries, and the collector host model.

use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use sandbox::falcon::FalconConfig;
use serde_json::{Value, json};

use crate::falcon::Falcon;

const RTR: &str = "/real-time-response";

/// The Linux launch script of `docs/collector-protocol.md`: free space, `mkdir` as the lock, the command
/// in an owner-only file.
fn linux_launch(job: &str, collector: &str) -> String {
    let quoted = collector.replace('\'', "'\\''");
    format!(
        "d=/tmp/cado-host-{job}\n\
         umask 077\n\
         free=$(df -Pk /tmp 2>/dev/null | awk 'NR==2 {{print $4}}')\n\
         case \"$free\" in ''|*[!0-9]*) ;; *) if [ \"$free\" -lt 2097152 ]; then echo \"FALCON-TRIAGE no-space job={job} free=$((free * 1024)) required=2147483648\"; exit 1; fi;; esac\n\
         if ! mkdir \"$d\" 2>/dev/null; then\n\
         if [ ! -L \"$d\" ] && [ -d \"$d\" ] && set -- $(ls -ldn \"$d\" 2>/dev/null) && [ \"$3\" = 0 ] && [ \"${{1%[.@]}}\" = drwx------ ]; then echo \"FALCON-TRIAGE already-launched job={job} pid=$(cat \"$d/pid\" 2>/dev/null)\"; exit 0; fi\n\
         echo \"FALCON-TRIAGE launch-error job={job} reason=workdir-exists\"; exit 1\n\
         fi\n\
         cd \"$d\" || {{ echo \"FALCON-TRIAGE launch-error job={job} reason=workdir\"; exit 1; }}\n\
         printf '%s\\n' '{quoted}' > \"$d/cmd\"\n\
         (sh \"$d/cmd\" > \"$d/collector.log\" 2>&1; rc=$?; echo $rc > \"$d/exit_code\") < /dev/null > /dev/null 2>&1 &\n\
         p=$!\n\
         echo $p > \"$d/pid\"\n\
         echo \"FALCON-TRIAGE launched job={job} pid=$p\""
    )
}

/// The Windows launch script: the `CreateNew` lock, then the command written to the owner-only `cmd.ps1`.
fn windows_launch(job: &str, collector: &str) -> String {
    let quoted = collector.replace('\'', "''");
    format!(
        "$ErrorActionPreference = \"Stop\"\n\
         $d = 'C:\\Windows\\Temp\\cado-host-{job}'\n\
         $free = (New-Object System.IO.DriveInfo ([System.IO.Path]::GetPathRoot($d))).AvailableFreeSpace\n\
         if ($free -lt 2147483648) {{ Write-Output \"FALCON-TRIAGE no-space job={job} free=$free required=2147483648\"; exit 1 }}\n\
         try {{ $lock = [System.IO.File]::Open(\"$d.lock\", [System.IO.FileMode]::CreateNew); $lock.Close() }} catch {{ Write-Output \"FALCON-TRIAGE already-launched job={job} pid=\"; exit 0 }}\n\
         New-Item -ItemType Directory -Path $d | Out-Null\n\
         [System.IO.File]::WriteAllText(\"$d\\cmd.ps1\", '{quoted}')\n\
         $p = Start-Process powershell.exe -ArgumentList \"-NoProfile\",\"-NonInteractive\",\"-EncodedCommand\",\"<wrapper>\" -WindowStyle Hidden -PassThru\n\
         $p.Id | Out-File -Encoding ascii \"$d\\pid\"\n\
         Write-Output \"FALCON-TRIAGE launched job={job} pid=$($p.Id)\""
    )
}

fn linux_probe(job: &str) -> String {
    format!(
        "d=/tmp/cado-host-{job}\n\
         if [ -f \"$d/exit_code\" ]; then echo \"FALCON-TRIAGE exited job={job} code=$(cat \"$d/exit_code\")\"\n\
         elif [ -f \"$d/pid\" ] && kill -0 \"$(cat \"$d/pid\")\" 2>/dev/null; then echo \"FALCON-TRIAGE running job={job} pid=$(cat \"$d/pid\")\"\n\
         elif [ -f \"$d/pid\" ]; then echo \"FALCON-TRIAGE vanished job={job}\"\n\
         else echo \"FALCON-TRIAGE absent job={job}\"; fi\n\
         echo \"FALCON-TRIAGE log-tail job={job}\"\n\
         tail -n 20 \"$d/collector.log\" 2>/dev/null"
    )
}

fn windows_probe(job: &str) -> String {
    format!(
        "$d = 'C:\\Windows\\Temp\\cado-host-{job}'\nif (Test-Path \"$d\\exit_code\") {{ }}\nWrite-Output \"FALCON-TRIAGE log-tail job={job}\""
    )
}

fn raw(script: &str) -> String {
    format!("runscript -Raw=```{script}``` -Timeout=60")
}

/// Asks the Cado simulator for a collector command for `os`.
async fn cado_command(f: &Falcon, os: &str) -> String {
    let info = f.sb.info();
    let r = f
        .http
        .post(format!("{}/api/v3/import/cado-host", info.cado_url))
        .bearer_auth(&info.cado_api_key)
        .json(&json!({"project_id": 1, "deployment": "auto", "os": os, "downloadable": false, "command_options": {}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let body: Value = r.json().await.unwrap();
    body["data"]["command"].as_str().unwrap().to_string()
}

async fn batch(f: &Falcon, hosts: &[String], queue_offline: bool) -> (u16, Value) {
    f.send(
        Method::POST,
        &format!("{RTR}/combined/batch-init-session/v1"),
        &[("timeout", "30")],
        json!({"host_ids": hosts, "queue_offline": queue_offline}),
    )
    .await
}

async fn admin(f: &Falcon, batch_id: &str, command: &str, hosts: &[String]) -> Value {
    let base = command.split_whitespace().next().unwrap();
    let (status, body) = f
        .send(
            Method::POST,
            &format!("{RTR}/combined/batch-admin-command/v1"),
            &[("timeout", "30"), ("host_timeout_duration", "27s")],
            json!({"batch_id": batch_id, "base_command": base, "command_string": command, "optional_hosts": hosts}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn stdout(body: &Value, aid: &str) -> String {
    body["combined"]["resources"][aid]["stdout"]
        .as_str()
        .unwrap()
        .to_string()
}

fn pick(hosts: &[(String, String, bool)], platform: &str, online: bool) -> String {
    hosts
        .iter()
        .find(|h| h.1 == platform && h.2 == online)
        .map(|h| h.0.clone())
        .expect("a matching host")
}

#[tokio::test]
async fn collector_launch_probe_and_upload_on_linux_and_windows() {
    let f = Falcon::start(FalconConfig {
        hosts: 40,
        offline_share: 0.0,
        collector_duration: Duration::from_millis(300),
        ..FalconConfig::default()
    })
    .await;
    let hosts = f.hosts().await;
    let linux = pick(&hosts, "Linux", true);
    let windows = pick(&hosts, "Windows", true);
    let (status, body) = batch(&f, &[linux.clone(), windows.clone()], false).await;
    assert_eq!(status, 201, "{body}");
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    assert_eq!(body["resources"][&linux]["errors"], json!([]));

    let job = "3f9a1c2e";
    let lc = cado_command(&f, "linux").await;
    let wc = cado_command(&f, "windows").await;
    let out = admin(
        &f,
        &batch_id,
        &raw(&linux_launch(job, &lc)),
        std::slice::from_ref(&linux),
    )
    .await;
    let line = stdout(&out, &linux);
    assert!(
        line.starts_with(&format!("FALCON-TRIAGE launched job={job} pid=")),
        "{line}"
    );
    assert_eq!(out["combined"]["resources"][&linux]["complete"], true);
    let out = admin(
        &f,
        &batch_id,
        &raw(&windows_launch(job, &wc)),
        std::slice::from_ref(&windows),
    )
    .await;
    assert!(
        stdout(&out, &windows).starts_with("FALCON-TRIAGE launched"),
        "{out}"
    );

    // Relaunch is refused; the probe reports running, then exited with the log tail.
    let out = admin(
        &f,
        &batch_id,
        &raw(&linux_launch(job, &lc)),
        std::slice::from_ref(&linux),
    )
    .await;
    assert!(stdout(&out, &linux).starts_with(&format!("FALCON-TRIAGE already-launched job={job}")));
    let out = admin(
        &f,
        &batch_id,
        &raw(&linux_probe(job)),
        std::slice::from_ref(&linux),
    )
    .await;
    assert!(
        stdout(&out, &linux).starts_with(&format!("FALCON-TRIAGE running job={job} pid=")),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = admin(&f, &batch_id, &raw(&linux_probe(job)), &[]).await;
    let text = stdout(&out, &linux);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("FALCON-TRIAGE exited job={job} code=0").as_str())
    );
    // the archive as the wrapper measured it: Cado's auto-import name, a size, a SHA-256
    let archive = lines.next().unwrap();
    let facts = archive
        .strip_prefix(&format!("FALCON-TRIAGE archive job={job} bytes="))
        .expect(archive);
    let (bytes, rest) = facts.split_once(" sha256=").unwrap();
    assert!(bytes.parse::<u64>().unwrap() > 1_000_000, "{archive}");
    let (hash, name) = rest.split_once(" name=").unwrap();
    assert_eq!(hash.len(), 64, "{archive}");
    assert!(
        name.starts_with("cado-host-capture-") && name.ends_with(".tar.lz4"),
        "{archive}"
    );
    assert_eq!(
        lines.next(),
        Some(format!("FALCON-TRIAGE log-tail job={job}").as_str())
    );
    let log: Vec<&str> = lines.collect();
    assert!(log.iter().all(|l| l.starts_with('[')), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("][INFO] - Uploading capture"))
    );
    assert!(!text.contains("Cado Host has failed"));
    assert!(
        !out["combined"]["resources"][&windows]["stderr"]
            .as_str()
            .unwrap()
            .is_empty(),
        "a shell script fails on Windows"
    );
    let out = admin(
        &f,
        &batch_id,
        &raw(&windows_probe(job)),
        std::slice::from_ref(&windows),
    )
    .await;
    let win = stdout(&out, &windows);
    assert!(
        win.starts_with(&format!("FALCON-TRIAGE exited job={job} code=0")),
        "{win}"
    );

    // Both captures landed in the bucket under the pre-signed key template.
    let captures = f.sb.cado().bucket().captures();
    assert_eq!(captures.len(), 2, "{captures:?}");
    let c = captures.iter().find(|c| c.device_id == linux).unwrap();
    assert!(
        c.key.starts_with("cado-collector/project-1/cado-host/"),
        "{}",
        c.key
    );
    assert!(c.key.ends_with(".tar.lz4"));
    let dump = f.control(Method::GET, "/_sandbox/rtr", None).await;
    assert_eq!(dump["jobs"].as_array().unwrap().len(), 2);

    // A probe for a job that never ran; a platform mismatch; an unknown script.
    let out = admin(
        &f,
        &batch_id,
        &raw(&linux_probe("00000000")),
        std::slice::from_ref(&linux),
    )
    .await;
    assert!(stdout(&out, &linux).starts_with("FALCON-TRIAGE absent job=00000000"));
    let out = admin(
        &f,
        &batch_id,
        &raw(&windows_probe(job)),
        std::slice::from_ref(&linux),
    )
    .await;
    assert!(
        !out["combined"]["resources"][&linux]["stderr"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let out = admin(
        &f,
        &batch_id,
        &raw("frobnicate --now"),
        &[windows.clone(), linux.clone()],
    )
    .await;
    assert!(
        out["combined"]["resources"][&windows]["stderr"]
            .as_str()
            .unwrap()
            .contains("The term 'frobnicate' is not recognized")
    );
    assert_eq!(
        out["combined"]["resources"][&linux]["stderr"],
        "sh: 1: frobnicate: not found\n"
    );
}

#[tokio::test]
async fn failed_linux_collector_exits_zero_with_the_cado_failure_line() {
    let f = Falcon::start(FalconConfig {
        hosts: 40,
        offline_share: 0.0,
        failure_rate: 1.0,
        collector_duration: Duration::from_millis(100),
        ..FalconConfig::default()
    })
    .await;
    let hosts = f.hosts().await;
    let linux = pick(&hosts, "Linux", true);
    let windows = pick(&hosts, "Windows", true);
    let (_, body) = batch(&f, &[linux.clone(), windows.clone()], false).await;
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    let job = "0badc0de";
    admin(
        &f,
        &batch_id,
        &raw(&linux_launch(job, &cado_command(&f, "linux").await)),
        std::slice::from_ref(&linux),
    )
    .await;
    admin(
        &f,
        &batch_id,
        &raw(&windows_launch(job, &cado_command(&f, "windows").await)),
        std::slice::from_ref(&windows),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = admin(&f, &batch_id, &raw(&linux_probe(job)), &[]).await;
    let text = stdout(&out, &linux);
    assert!(
        text.starts_with(&format!("FALCON-TRIAGE exited job={job} code=0")),
        "{text}"
    );
    assert!(text.contains("Cado Host has failed"));
    let out = admin(
        &f,
        &batch_id,
        &raw(&windows_probe(job)),
        std::slice::from_ref(&windows),
    )
    .await;
    let win = stdout(&out, &windows);
    assert!(
        win.starts_with(&format!("FALCON-TRIAGE exited job={job} code=1")),
        "{win}"
    );
    assert!(
        !win.contains("Cado Host has failed"),
        "only the Linux wrapper prints it"
    );
    assert!(f.sb.cado().bucket().captures().is_empty());

    // A collector that is not Cado Host fails like a missing program.
    let out = admin(
        &f,
        &batch_id,
        &raw(&linux_launch("11111111", "nosuchtool --x")),
        std::slice::from_ref(&linux),
    )
    .await;
    assert!(stdout(&out, &linux).starts_with("FALCON-TRIAGE launched"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = admin(
        &f,
        &batch_id,
        &raw(&linux_probe("11111111")),
        std::slice::from_ref(&linux),
    )
    .await;
    let text = stdout(&out, &linux);
    assert!(
        text.starts_with("FALCON-TRIAGE exited job=11111111 code=127"),
        "{text}"
    );
    assert!(text.contains("nosuchtool: not found"));
}

#[tokio::test]
async fn reboot_makes_a_running_job_vanish() {
    let f = Falcon::start(FalconConfig {
        hosts: 40,
        offline_share: 0.0,
        collector_duration: Duration::from_secs(60),
        ..FalconConfig::default()
    })
    .await;
    let linux = pick(&f.hosts().await, "Linux", true);
    let (_, body) = batch(&f, std::slice::from_ref(&linux), false).await;
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    admin(
        &f,
        &batch_id,
        &raw(&linux_launch("22222222", &cado_command(&f, "linux").await)),
        &[],
    )
    .await;
    let r = f
        .control(
            Method::POST,
            "/_sandbox/hosts/reboot",
            Some(json!({"ids": [linux]})),
        )
        .await;
    assert_eq!(r["jobs_killed"], 1);
    let out = admin(&f, &batch_id, &raw(&linux_probe("22222222")), &[]).await;
    assert!(stdout(&out, &linux).starts_with("FALCON-TRIAGE vanished job=22222222"));
}

async fn queued(f: &Falcon, session: &str) -> Value {
    let (status, body) = f
        .send(
            Method::POST,
            &format!("{RTR}/entities/queued-sessions/GET/v1"),
            &[],
            json!({"ids": [session]}),
        )
        .await;
    assert_eq!(status, 200);
    body["resources"][0]["Commands"][0].clone()
}

#[tokio::test]
async fn offline_hosts_error_or_queue_until_they_come_online() {
    let f = Falcon::start(FalconConfig {
        hosts: 30,
        offline_share: 0.5,
        ..FalconConfig::default()
    })
    .await;
    let hosts = f.hosts().await;
    let online = hosts.iter().find(|h| h.2).unwrap().0.clone();
    let offline = hosts.iter().find(|h| !h.2).unwrap().0.clone();

    let (status, body) = batch(&f, std::slice::from_ref(&offline), false).await;
    assert_eq!(status, 404);
    assert_eq!(body["resources"][&offline]["errors"][0]["code"], 40401);
    assert_eq!(
        body["resources"][&offline]["errors"][0]["message"],
        "Could not establish sensor comms"
    );

    let (status, body) = batch(&f, &[online.clone(), offline.clone()], true).await;
    assert_eq!(status, 201);
    assert_eq!(body["resources"][&offline]["offline_queued"], true);
    assert_eq!(body["resources"][&online]["offline_queued"], false);
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    let session = body["resources"][&offline]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = admin(&f, &batch_id, &raw("echo hello"), &[]).await;
    assert_eq!(stdout(&out, &online), "hello\n");
    assert_eq!(out["combined"]["resources"][&offline]["complete"], false);
    assert_eq!(
        out["combined"]["resources"][&offline]["offline_queued"],
        true
    );

    let cmd = queued(&f, &session).await;
    assert_eq!(cmd["complete"], false);
    assert_eq!(cmd["command_string"], raw("echo hello"));
    f.control(
        Method::POST,
        "/_sandbox/hosts/online",
        Some(json!({"ids": [offline], "online": true})),
    )
    .await;
    let cmd = queued(&f, &session).await;
    assert_eq!(cmd["complete"], true);
    assert_eq!(cmd["stdout"], "hello\n");
}

#[tokio::test]
async fn hosts_come_online_over_time_when_configured() {
    let f = Falcon::start(FalconConfig {
        hosts: 20,
        offline_share: 1.0,
        online_within: Some(Duration::from_millis(600)),
        ..FalconConfig::default()
    })
    .await;
    assert!(f.hosts().await.iter().filter(|h| h.2).count() < 20);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(f.hosts().await.iter().all(|h| h.2));
}

#[tokio::test]
async fn single_session_commands_chunk_stdout_by_sequence_and_expire() {
    let f = Falcon::start(FalconConfig {
        hosts: 20,
        offline_share: 0.0,
        stdout_chunk_bytes: 16,
        ..FalconConfig::default()
    })
    .await;
    let aid = f.hosts().await[0].0.clone();
    let (status, body) = f
        .send(
            Method::POST,
            &format!("{RTR}/entities/sessions/v1"),
            &[],
            json!({"device_id": aid, "queue_offline": false, "origin": "test"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let session = body["resources"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();

    let script = "echo 0123456789\necho abcdefghij\necho ABCDEFGHIJ";
    let (status, body) = f
        .send(Method::POST, &format!("{RTR}/entities/admin-command/v1"), &[], json!({"base_command": "runscript", "command_string": raw(script), "session_id": session}))
        .await;
    assert_eq!(status, 201, "{body}");
    let req = body["resources"][0]["cloud_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut out = String::new();
    let mut seq = 0;
    loop {
        let (status, body) = f
            .get(
                &format!("{RTR}/entities/admin-command/v1"),
                &[
                    ("cloud_request_id", req.as_str()),
                    ("sequence_id", &seq.to_string()),
                ],
            )
            .await;
        assert_eq!(status, 200);
        let r = &body["resources"][0];
        assert_eq!(r["sequence_id"], seq);
        out.push_str(r["stdout"].as_str().unwrap());
        if r["complete"] == true {
            break;
        }
        seq += 1;
    }
    assert_eq!(out, "0123456789\nabcdefghij\nABCDEFGHIJ\n");
    assert_eq!(seq, 2, "33 bytes in 16-byte chunks");

    // Role gating, command/base mismatch.
    let (status, _) = f
        .send(Method::POST, &format!("{RTR}/entities/command/v1"), &[], json!({"base_command": "runscript", "command_string": raw("echo x"), "session_id": session}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = f
        .send(
            Method::POST,
            &format!("{RTR}/entities/command/v1"),
            &[],
            json!({"base_command": "ls", "command_string": "pwd", "session_id": session}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = f
        .send(
            Method::POST,
            &format!("{RTR}/entities/command/v1"),
            &[],
            json!({"base_command": "pwd", "command_string": "pwd", "session_id": session}),
        )
        .await;
    assert_eq!(status, 201);
    let req = body["resources"][0]["cloud_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = f
        .get(
            &format!("{RTR}/entities/command/v1"),
            &[("cloud_request_id", req.as_str()), ("sequence_id", "0")],
        )
        .await;
    assert_eq!(body["resources"][0]["complete"], true);
    assert!(!body["resources"][0]["stdout"].as_str().unwrap().is_empty());

    // Sessions expire unless refreshed.
    f.control(
        Method::POST,
        "/_sandbox/knobs",
        Some(json!({"session_ttl_secs": 1})),
    )
    .await;
    let other = f.hosts().await[1].0.clone();
    let (_, body) = f
        .send(
            Method::POST,
            &format!("{RTR}/entities/sessions/v1"),
            &[],
            json!({"device_id": other}),
        )
        .await;
    let short = body["resources"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = f
        .send(
            Method::POST,
            &format!("{RTR}/entities/refresh-session/v1"),
            &[],
            json!({"device_id": other}),
        )
        .await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = f
        .send(
            Method::POST,
            &format!("{RTR}/entities/command/v1"),
            &[],
            json!({"base_command": "pwd", "command_string": "pwd", "session_id": short}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["errors"][0]["message"], "Session not found or expired");
    let r = f
        .req(Method::DELETE, &format!("{RTR}/entities/sessions/v1"))
        .query(&[("session_id", session.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn libraries_put_files_scripts_and_get_files() {
    let f = Falcon::start(FalconConfig {
        hosts: 40,
        offline_share: 0.0,
        ..FalconConfig::default()
    })
    .await;
    let hosts = f.hosts().await;
    let linux = pick(&hosts, "Linux", true);
    let form = Form::new()
        .part(
            "file",
            Part::bytes(b"binary".to_vec()).file_name("tool.bin"),
        )
        .text("description", "a tool")
        .text("name", "tool.bin");
    let r = f
        .req(Method::POST, &format!("{RTR}/entities/put-files/v1"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["meta"]["writes"]["resources_affected"], 1);
    let form = Form::new()
        .part("file", Part::bytes(b"x".to_vec()).file_name("tool.bin"))
        .text("description", "again")
        .text("name", "tool.bin");
    let r = f
        .req(Method::POST, &format!("{RTR}/entities/put-files/v1"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let (_, body) = f.get(&format!("{RTR}/queries/put-files/v1"), &[]).await;
    let id = body["resources"][0].as_str().unwrap().to_string();
    let (_, body) = f
        .get(
            &format!("{RTR}/entities/put-files/v2"),
            &[("ids", id.as_str())],
        )
        .await;
    assert_eq!(body["resources"][0]["name"], "tool.bin");
    assert_eq!(body["resources"][0]["size"], 6);

    let form = Form::new()
        .text("content", "echo from the library")
        .text("description", "smoke")
        .text("name", "smoke.sh")
        .text("permission_type", "private")
        .text("platform", "linux");
    let r = f
        .req(Method::POST, &format!("{RTR}/entities/scripts/v1"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (_, body) = batch(&f, std::slice::from_ref(&linux), false).await;
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    let out = admin(
        &f,
        &batch_id,
        "runscript -CloudFile=\"smoke.sh\" -CommandLine=\"\"",
        &[],
    )
    .await;
    assert_eq!(stdout(&out, &linux), "from the library\n");
    let out = admin(&f, &batch_id, "runscript -CloudFile=\"missing.sh\"", &[]).await;
    assert!(
        out["combined"]["resources"][&linux]["stderr"]
            .as_str()
            .unwrap()
            .contains("missing.sh")
    );
    let out = admin(&f, &batch_id, "put tool.bin", &[]).await;
    assert_eq!(out["combined"]["resources"][&linux]["stderr"], "");
    let out = admin(&f, &batch_id, "put nothing.bin", &[]).await;
    assert!(
        !out["combined"]["resources"][&linux]["stderr"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // Batch get, its status, the session's file list and the contents.
    let (status, body) = f
        .send(
            Method::POST,
            &format!("{RTR}/combined/batch-get-command/v1"),
            &[],
            json!({"batch_id": batch_id, "file_path": "/etc/hosts"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let req = body["batch_get_cmd_req_id"].as_str().unwrap().to_string();
    let (_, body) = f
        .get(
            &format!("{RTR}/combined/batch-get-command/v1"),
            &[("batch_get_cmd_req_id", req.as_str())],
        )
        .await;
    let file = &body["resources"][&linux];
    assert_eq!(file["name"], "/etc/hosts");
    let session = file["session_id"].as_str().unwrap().to_string();
    let sha = file["sha256"].as_str().unwrap().to_string();
    let (_, body) = f
        .get(
            &format!("{RTR}/entities/file/v2"),
            &[("session_id", session.as_str())],
        )
        .await;
    assert_eq!(body["resources"][0]["sha256"], sha.as_str());
    let r = f
        .req(
            Method::GET,
            &format!("{RTR}/entities/extracted-file-contents/v1"),
        )
        .query(&[("session_id", session.as_str()), ("sha256", sha.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        String::from_utf8(r.bytes().await.unwrap().to_vec())
            .unwrap()
            .contains("localhost")
    );

    let r = f
        .req(Method::DELETE, &format!("{RTR}/entities/put-files/v1"))
        .query(&[("ids", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
