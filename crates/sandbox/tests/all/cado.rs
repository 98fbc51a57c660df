//! Cado platform simulator: import command, presigned data, bucket and pipelines.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sandbox::cado::{CadoConfig, CadoServer, UploadRejected};
use serde_json::{Value, json};

async fn start(config: CadoConfig) -> CadoServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    CadoServer::start(listener, config, 11)
}

async fn import(s: &CadoServer, key: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v3/import/cado-host", s.url()))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn linux(project: u64) -> Value {
    json!({"project_id": project, "deployment": "auto", "os": "linux", "downloadable": false, "command_options": {}})
}

#[tokio::test]
async fn import_requires_the_api_key_and_validates_fields() {
    let s = start(CadoConfig::default()).await;
    assert_eq!(import(&s, "wrong", linux(1)).await.0, 401);
    let (code, body) = import(&s, &s.api_key(), json!({"project_id": 1, "os": "beos"})).await;
    assert_eq!(code, 422);
    assert!(
        body["message"].as_str().unwrap().starts_with("os:"),
        "{body}"
    );
    let (code, body) = import(
        &s,
        &s.api_key(),
        json!({"project_id": 1, "os": "linux", "command_options": {"memory": true}}),
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("command_options.memory"),
        "{body}"
    );
    assert_eq!(
        import(&s, &s.api_key(), linux(99)).await.0,
        404,
        "unknown project"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn linux_command_follows_the_platform_one_liner_and_carries_presigned_data() {
    let s = start(CadoConfig::default()).await;
    let (code, body) = import(&s, &s.api_key(), linux(1)).await;
    assert_eq!(code, 200);
    let data = &body["data"];
    let command = data["command"].as_str().unwrap();
    let today = chrono::Utc::now().format("%Y/%m/%d").to_string();
    let prefix = format!("cado-collector/project-1/cado-host/{today}/");
    for part in [
        "mkdir -p /tmp/cado-host-",
        "sudo curl -s https://cado-public.s3-accelerate.amazonaws.com/cado-host/v3.7.0/linux/cado-host --output /tmp/cado-host-",
        "wget -q --output-document",
        "requires curl or wget\"; exit 1",
        "sudo chmod +x ./cado-host",
        "|| echo \"Cado Host has failed.",
        "--skip_memory",
        "exit 0",
    ] {
        assert!(command.contains(part), "{part:?} missing from {command}");
    }
    let presigned = data["presigned_data"].as_str().unwrap();
    assert!(command.contains(&format!("--presigned_data \"{presigned}\"")));
    let doc: Value = serde_json::from_slice(&B64.decode(presigned).unwrap()).unwrap();
    assert!(
        presigned.starts_with("eyJ1cmwiOi"),
        "the base64 starts with {{\"url\":"
    );
    assert_eq!(doc["provider"], "aws");
    assert_eq!(doc["fields"]["key"], format!("{prefix}${{filename}}"));
    for f in [
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-security-token",
    ] {
        assert!(doc["fields"][f].is_string(), "{f}");
    }
    let policy: Value =
        serde_json::from_slice(&B64.decode(doc["policy"].as_str().unwrap()).unwrap()).unwrap();
    assert!(policy["conditions"].as_array().unwrap().contains(&json!([
        "starts-with",
        "$key",
        prefix
    ])));
    assert!(policy["expiration"].is_string());
    assert_eq!(
        data["cloud_storage_info"],
        json!({"bucket": "cado-sandbox-evidence", "path": prefix})
    );
    s.shutdown().await;
}

#[tokio::test]
async fn windows_and_macos_commands() {
    let s = start(CadoConfig::default()).await;
    let (_, body) = import(
        &s,
        &s.api_key(),
        json!({"project_id": 1, "deployment": "auto", "os": "windows", "command_options": {"enable_memory": true, "drive_letter": "d", "groups": ["program_execution", "processes"]}}),
    )
    .await;
    let command = body["data"]["command"].as_str().unwrap();
    for part in [
        "C:\\Windows\\Temp\\cado-host-",
        "Invoke-WebRequest",
        "windows/cado-host.exe",
        "--include_memory",
        "--dd D",
        "--groups program_execution processes",
        "Cado Host has failed",
    ] {
        assert!(command.contains(part), "{part:?} missing from {command}");
    }
    let (_, body) = import(&s, &s.api_key(), json!({"project_id": 1, "os": "macos", "command_options": {"as_super": false, "light_mode": true}})).await;
    let command = body["data"]["command"].as_str().unwrap();
    assert!(
        command.contains("osx/cado-host")
            && command.contains("-c light")
            && !command.contains("sudo"),
        "{command}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_capture_landing_in_the_bucket_creates_a_pipeline() {
    // Processing takes an hour here, so the pipeline is certainly not complete yet however loaded the
    // machine is; the end of processing is shown below by a server whose processing takes no time (the
    // time arithmetic itself is unit-tested in `bucket.rs`).
    let s = start(CadoConfig {
        pipeline_processing: Duration::from_secs(3600),
        ..CadoConfig::default()
    })
    .await;
    let (_, body) = import(&s, &s.api_key(), linux(1)).await;
    let command = body["data"]["command"].as_str().unwrap();
    let bucket = s.bucket();
    let capture = bucket
        .upload_with_command(command, "web-01", "aid-1", 1234)
        .unwrap();
    let prefix = body["data"]["cloud_storage_info"]["path"].as_str().unwrap();
    assert!(
        capture.key.starts_with(prefix)
            && capture.key.ends_with(".tar.lz4")
            && capture.key.contains("web-01-")
    );

    let forged = command.replace("--presigned_data \"", "--presigned_data \"eyJ1cmwiOiJ4In0=");
    assert!(bucket.upload_with_command(&forged, "h", "a", 1).is_err());
    assert_eq!(
        bucket.upload_with_command("./cado-host capture", "h", "a", 1),
        Err(UploadRejected::NoPresignedData)
    );

    let (_, listed) = reqwest::get(format!("{}/_sandbox/bucket", s.url()))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .map(|v| (0, v))
        .unwrap();
    assert_eq!(listed["captures"][0]["hostname"], "web-01");
    assert_eq!(listed["captures"][0]["device_id"], "aid-1");

    let pipelines = |s: &CadoServer| {
        let url = format!("{}/api/v3/pipelines?project_id=1", s.url());
        let key = s.api_key();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let p = pipelines(&s).await;
    let first = &p["pipelines"][0];
    assert_eq!(first["hostname"], "web-01");
    assert_eq!(first["evidence_name"], capture.key);
    assert!(["queued", "in_progress"].contains(&first["status"].as_str().unwrap()));

    let done = start(CadoConfig {
        pipeline_processing: Duration::ZERO,
        ..CadoConfig::default()
    })
    .await;
    let (_, body) = import(&done, &done.api_key(), linux(1)).await;
    done.bucket()
        .upload_with_command(
            body["data"]["command"].as_str().unwrap(),
            "web-02",
            "aid-2",
            99,
        )
        .unwrap();
    assert_eq!(pipelines(&done).await["pipelines"][0]["status"], "complete");
    done.shutdown().await;

    let r = reqwest::Client::new()
        .get(format!("{}/api/v3/pipelines", s.url()))
        .bearer_auth(s.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "project_id is required");
    let r = reqwest::get(format!("{}/api/v3/pipelines?project_id=1", s.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.shutdown().await;
}

#[tokio::test]
async fn captures_can_be_recorded_through_the_control_api() {
    let s = start(CadoConfig::default()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/bucket", s.url()))
        .json(&json!({"key": "cado-collector/project-1/cado-host/2026/11/22/db-1-1.tar.lz4", "size": 9, "hostname": "db-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["pipeline_id"], 1);
    assert_eq!(c["project_id"], 1);
    assert_eq!(s.bucket().captures().len(), 1);
    let counts: Value = reqwest::get(format!("{}/_sandbox/requests", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["requests"]["POST /_sandbox/bucket"], 1);
    s.shutdown().await;
}
