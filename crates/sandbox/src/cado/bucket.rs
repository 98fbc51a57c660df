//! The simulated capture bucket and the pipelines the platform creates when a capture lands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One capture object received by the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capture {
    /// Object key, e.g. `cado-collector/project-1/cado-host/2026/11/22/web-01-1795334400.tar.lz4`.
    pub key: String,
    /// Object size in bytes.
    pub size: u64,
    /// Host name of the machine that uploaded it.
    pub hostname: String,
    /// Falcon device id (agent id) of that machine, when known.
    pub device_id: String,
    /// Project parsed from the key prefix `cado-collector/project-<id>/`, if the key has one.
    pub project_id: Option<u64>,
    /// When the object landed (RFC 3339).
    pub uploaded_at: DateTime<Utc>,
    /// The pipeline the platform created for it (none when the key is outside any project prefix).
    pub pipeline_id: Option<u64>,
}

/// A Cado processing pipeline for one capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pipeline {
    pub(crate) pipeline_id: u64,
    pub(crate) project_id: u64,
    pub(crate) hostname: String,
    pub(crate) evidence_name: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) fails: bool,
}

impl Pipeline {
    /// Status at `now`: `queued` for the first tenth of the processing time, then `in_progress`,
    /// then `complete` (or `failed`).
    pub(crate) fn status(&self, now: DateTime<Utc>, processing: Duration) -> &'static str {
        let age = (now - self.created).to_std().unwrap_or_default();
        if age >= processing {
            if self.fails { "failed" } else { "complete" }
        } else if age < processing / 10 {
            "queued"
        } else {
            "in_progress"
        }
    }
}

/// Upload credentials the platform issued (one per `POST /api/v3/import/cado-host`).
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) key_prefix: String,
    pub(crate) expires: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    captures: Vec<Capture>,
    pipelines: Vec<Pipeline>,
    issued: HashMap<String, Issued>,
    next_pipeline: u64,
    failure_rate: f64,
    draws: u64,
    seed: u64,
}

/// Why [`Bucket::upload_with_command`] refused an upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadRejected {
    /// The command carries no `--presigned_data "<base64>"` argument.
    #[error("no presigned data in the collector command")]
    NoPresignedData,
    /// The presigned data is not base64 JSON with `fields.key` and `fields.x-amz-signature`.
    #[error("malformed presigned data")]
    Malformed,
    /// The signature was not issued by this platform.
    #[error("presigned data not issued by this platform")]
    UnknownCredential,
    /// The credential expired (S3 answers 403 AccessDenied "Policy expired").
    #[error("presigned data expired")]
    Expired,
}

/// The simulated bucket (shared state, cheap to clone).
///
/// Simulated hosts of the Falcon simulator record a capture here when their collector succeeds; the
/// Cado simulator creates a pipeline for every capture under a `cado-collector/project-<id>/` key.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    inner: Arc<Mutex<State>>,
    name: Arc<str>,
    secret: Arc<str>,
}

impl Bucket {
    /// An empty bucket. `failure_rate` is the share of pipelines that end `failed` (seeded draws).
    pub fn new(name: &str, seed: u64, failure_rate: f64) -> Bucket {
        Bucket {
            inner: Arc::new(Mutex::new(State {
                next_pipeline: 1,
                failure_rate,
                seed,
                ..State::default()
            })),
            name: name.into(),
            secret: format!("sandbox-signing-{seed}").into(),
        }
    }

    /// The bucket name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().expect("bucket lock")
    }

    /// Records a capture object landing in the bucket, and creates its pipeline when the key lies
    /// under `cado-collector/project-<id>/`. Returns the stored capture.
    pub fn put_capture(&self, key: &str, size: u64, hostname: &str, device_id: &str) -> Capture {
        let project_id = project_of_key(key);
        let now = Utc::now();
        let mut state = self.lock();
        let pipeline_id = project_id.map(|project_id| {
            let pipeline_id = state.next_pipeline;
            state.next_pipeline += 1;
            state.draws += 1;
            let fails = unit_draw(state.seed, state.draws) < state.failure_rate;
            state.pipelines.push(Pipeline {
                pipeline_id,
                project_id,
                hostname: hostname.to_owned(),
                evidence_name: key.to_owned(),
                created: now,
                fails,
            });
            pipeline_id
        });
        let capture = Capture {
            key: key.to_owned(),
            size,
            hostname: hostname.to_owned(),
            device_id: device_id.to_owned(),
            project_id,
            uploaded_at: now,
            pipeline_id,
        };
        state.captures.push(capture.clone());
        tracing::debug!(key, hostname, "capture landed in the bucket");
        capture
    }

    /// Simulates a collector started with `command` (the `data.command` the platform returned)
    /// uploading its capture: reads the `--presigned_data` argument, checks the credential was
    /// issued here and has not expired, fills the key template with
    /// `<hostname>-<epoch>.tar.lz4` and stores the capture.
    pub fn upload_with_command(
        &self,
        command: &str,
        hostname: &str,
        device_id: &str,
        size: u64,
    ) -> Result<Capture, UploadRejected> {
        let key = self.key_for_command(command, hostname, Utc::now())?;
        Ok(self.put_capture(&key, size, hostname, device_id))
    }

    /// The object key a collector started with `command` on `hostname` would upload to at `at`.
    pub fn key_for_command(
        &self,
        command: &str,
        hostname: &str,
        at: DateTime<Utc>,
    ) -> Result<String, UploadRejected> {
        let b64 = presigned_argument(command).ok_or(UploadRejected::NoPresignedData)?;
        let raw = B64
            .decode(b64.as_bytes())
            .map_err(|_| UploadRejected::Malformed)?;
        let doc: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|_| UploadRejected::Malformed)?;
        let template = doc["fields"]["key"]
            .as_str()
            .ok_or(UploadRejected::Malformed)?;
        let signature = doc["fields"]["x-amz-signature"]
            .as_str()
            .ok_or(UploadRejected::Malformed)?;
        let issued = self
            .lock()
            .issued
            .get(signature)
            .cloned()
            .ok_or(UploadRejected::UnknownCredential)?;
        if at > issued.expires {
            return Err(UploadRejected::Expired);
        }
        if !template.starts_with(&issued.key_prefix) {
            return Err(UploadRejected::UnknownCredential);
        }
        let filename = format!("{}-{}.tar.lz4", sanitize(hostname), at.timestamp());
        Ok(template.replace("${filename}", &filename))
    }

    /// Every capture received so far, oldest first.
    pub fn captures(&self) -> Vec<Capture> {
        self.lock().captures.clone()
    }

    pub(crate) fn pipelines(&self, project_id: u64) -> Vec<Pipeline> {
        self.lock()
            .pipelines
            .iter()
            .filter(|p| p.project_id == project_id)
            .cloned()
            .collect()
    }

    /// Signs a policy document and remembers the credential; returns the signature.
    pub(crate) fn issue(&self, policy_b64: &str, issued: Issued) -> String {
        let signature = hex::encode(Sha256::digest(format!("{}{}", self.secret, policy_b64)));
        self.lock().issued.insert(signature.clone(), issued);
        signature
    }
}

/// `cado-collector/project-<id>/...` -> `id`.
fn project_of_key(key: &str) -> Option<u64> {
    let rest = key.strip_prefix("cado-collector/project-")?;
    rest.split('/').next()?.parse().ok()
}

/// The value following `--presigned_data` in a command, with its quotes removed.
fn presigned_argument(command: &str) -> Option<String> {
    let at = command.find("--presigned_data")?;
    let rest = command[at + "--presigned_data".len()..].trim_start_matches([' ', '=']);
    let value: String = rest
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    (!value.is_empty()).then_some(value)
}

fn sanitize(hostname: &str) -> String {
    hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A deterministic uniform draw in `[0, 1)` from a seed and a counter (splitmix64).
fn unit_draw(seed: u64, n: u64) -> f64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Formats a time the way the simulators answer it (RFC 3339, seconds, `Z`).
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_is_parsed_from_the_key() {
        assert_eq!(
            project_of_key("cado-collector/project-12/cado-host/2026/11/22/h-1.tar.lz4"),
            Some(12)
        );
        assert_eq!(project_of_key("elsewhere/x.tar.lz4"), None);
    }

    #[test]
    fn presigned_argument_is_found_in_both_shells() {
        assert_eq!(
            presigned_argument(r#"sudo ./cado-host capture --presigned_data "eyJ1cmwi" -c light"#)
                .as_deref(),
            Some("eyJ1cmwi")
        );
        assert_eq!(
            presigned_argument("& $exe capture --presigned_data 'eyJ1=' ").as_deref(),
            Some("eyJ1=")
        );
        assert_eq!(presigned_argument("./cado-host capture"), None);
    }

    #[test]
    fn captures_outside_a_project_get_no_pipeline() {
        let bucket = Bucket::new("b", 1, 0.0);
        let c = bucket.put_capture("manual/x.tar.lz4", 10, "h", "d");
        assert_eq!(c.pipeline_id, None);
        let c = bucket.put_capture(
            "cado-collector/project-3/cado-host/2026/11/22/h-1.tar.lz4",
            10,
            "h",
            "d",
        );
        assert_eq!(c.pipeline_id, Some(1));
        assert_eq!(bucket.pipelines(3).len(), 1);
        assert_eq!(bucket.captures().len(), 2);
    }

    #[test]
    fn pipeline_status_moves_with_time() {
        let created = Utc::now();
        let p = Pipeline {
            pipeline_id: 1,
            project_id: 1,
            hostname: "h".into(),
            evidence_name: "k".into(),
            created,
            fails: false,
        };
        let d = Duration::from_secs(10);
        assert_eq!(p.status(created, d), "queued");
        assert_eq!(
            p.status(created + chrono::Duration::seconds(5), d),
            "in_progress"
        );
        assert_eq!(
            p.status(created + chrono::Duration::seconds(10), d),
            "complete"
        );
        assert_eq!(
            Pipeline { fails: true, ..p }.status(created + chrono::Duration::seconds(11), d),
            "failed"
        );
    }
}
