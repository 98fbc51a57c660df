//! A small client of the Cado platform API: the Cado Host command per OS and the pipelines that show a
//! capture arrived.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::collector::{CadoOptions, CollectorSet};
use crate::error::{Error, Result};
use crate::platform::Platform;

/// Cado platform API client. The API key is a [`SecretString`]; `Debug` hides it.
#[derive(Clone)]
pub struct CadoClient {
    base: url::Url,
    api_key: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for CadoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CadoClient")
            .field("base", &self.base.as_str())
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// The answer of `POST /api/v3/import/cado-host`.
#[derive(Clone)]
pub struct CadoHostCommand {
    /// The full one-liner (holds the pre-signed data).
    pub command: SecretString,
    /// The pre-signed upload data.
    pub presigned_data: SecretString,
    /// Bucket (or container) the capture lands in.
    pub bucket: Option<String>,
    /// Object path prefix.
    pub path: Option<String>,
}

impl std::fmt::Debug for CadoHostCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CadoHostCommand")
            .field("command", &"<redacted>")
            .field("presigned_data", &"<redacted>")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .finish()
    }
}

/// A Cado pipeline (a capture being imported).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pipeline {
    /// Pipeline id.
    #[serde(default)]
    pub pipeline_id: Option<i64>,
    /// `queued`, `in_progress`, `complete`, `failed`, `cancelled`.
    #[serde(default)]
    pub status: Option<String>,
    /// Host the capture comes from.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Object key of the capture.
    #[serde(default)]
    pub evidence_name: Option<String>,
    /// When the pipeline was created.
    #[serde(default)]
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
struct CommandEnvelope {
    data: CommandData,
}

#[derive(Deserialize)]
struct CommandData {
    command: String,
    #[serde(default)]
    presigned_data: Option<String>,
    #[serde(default)]
    cloud_storage_info: Option<StorageInfo>,
}

#[derive(Deserialize)]
struct StorageInfo {
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
struct PipelinesEnvelope {
    #[serde(default)]
    pipelines: Vec<Pipeline>,
}

/// Decodes the answer of `POST /api/v3/import/cado-host`. The answer holds the pre-signed data: a shape
/// error names the place, never the value (serde quotes offending strings, e.g. a `data` string).
fn parse_command_answer(text: &str) -> Result<CommandEnvelope> {
    serde_json::from_str(text).map_err(|e| {
        let detail = match e.classify() {
            serde_json::error::Category::Data if !e.to_string().starts_with("missing field") => {
                format!(
                    "unexpected answer: a value of the wrong type at line {} column {}",
                    e.line(),
                    e.column()
                )
            }
            _ => format!("unexpected answer: {e}"),
        };
        Error::Cado {
            operation: "import cado-host",
            retryable: false,
            source: detail.into(),
        }
    })
}

fn http_error(operation: &'static str, e: reqwest::Error) -> Error {
    let retryable = e.is_timeout()
        || e.is_connect()
        || e.status()
            .is_some_and(|s| s.is_server_error() || s.as_u16() == 429);
    // reqwest errors carry the URL, never the Authorization header
    Error::Cado {
        operation,
        retryable,
        source: Box::new(e.without_url()),
    }
}

impl CadoClient {
    /// A client for the platform at `base_url`.
    pub fn new(base_url: &str, api_key: SecretString) -> Result<CadoClient> {
        let base =
            url::Url::parse(base_url).map_err(|e| Error::invalid("cado url", e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::invalid(
                "cado url",
                format!("`{base_url}` is not an http(s) url"),
            ));
        }
        if api_key.expose_secret().trim().is_empty() {
            return Err(Error::invalid("cado api key", "it is empty"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::invalid("cado http client", e.to_string()))?;
        Ok(CadoClient {
            base,
            api_key,
            http,
        })
    }

    /// The API key (to register with a redactor).
    pub fn api_key(&self) -> &SecretString {
        &self.api_key
    }

    fn url(&self, path: &str) -> Result<url::Url> {
        self.base
            .join(path)
            .map_err(|e| Error::invalid("cado url", e.to_string()))
    }

    /// `POST /api/v3/import/cado-host` for one OS.
    pub async fn cado_host_command(
        &self,
        project_id: u64,
        platform: Platform,
        options: &CadoOptions,
    ) -> Result<CadoHostCommand> {
        let os = match platform {
            Platform::Windows => "windows",
            Platform::Linux => "linux",
            Platform::Mac => "macos",
        };
        let body = serde_json::json!({
            "project_id": project_id,
            "deployment": "auto",
            "os": os,
            "downloadable": false,
            "command_options": options.to_api_options(platform),
        });
        let resp = self
            .http
            .post(self.url("api/v3/import/cado-host")?)
            .bearer_auth(self.api_key.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| http_error("import cado-host", e))?
            .error_for_status()
            .map_err(|e| http_error("import cado-host", e))?;
        let text = resp
            .text()
            .await
            .map_err(|e| http_error("import cado-host", e))?;
        let env = parse_command_answer(&text)?;
        let storage = env.data.cloud_storage_info;
        Ok(CadoHostCommand {
            command: SecretString::from(env.data.command),
            presigned_data: SecretString::from(env.data.presigned_data.unwrap_or_default()),
            bucket: storage
                .as_ref()
                .and_then(|s| s.bucket.clone().or_else(|| s.container.clone())),
            path: storage.and_then(|s| s.path),
        })
    }

    /// Builds a collector set with one platform-issued command per platform.
    pub async fn collector_set(
        &self,
        project_id: u64,
        options: &CadoOptions,
        platforms: &[Platform],
    ) -> Result<CollectorSet> {
        let mut commands = BTreeMap::new();
        let mut secrets = vec![self.api_key.clone()];
        for &p in platforms {
            let c = self.cado_host_command(project_id, p, options).await?;
            // the pre-signed data is the secret inside the command; with none reported, the whole command is
            if c.presigned_data.expose_secret().trim().is_empty() {
                secrets.push(c.command.clone());
            } else {
                secrets.push(c.presigned_data.clone());
            }
            commands.insert(p, c.command);
        }
        let mut set = CollectorSet::from_commands(
            format!("cado-host (cado api, project {project_id})"),
            commands,
            &secrets,
        );
        for &p in platforms {
            // the platform's command is opaque and deletes its archive after the upload: no minimum size
            // can be asked of what is left; the capture is verified through the Cado pipelines instead
            let rules = crate::evidence::EvidenceRules {
                min_bytes: 0,
                ..crate::collector::cado_rules(options.mode)
            };
            set = set.with_rules(p, rules);
        }
        Ok(set)
    }

    /// `GET /api/v3/pipelines?project_id=N` (tolerant: unknown fields ignored, a missing list is empty).
    pub async fn pipelines(&self, project_id: u64) -> Result<Vec<Pipeline>> {
        let mut url = self.url("api/v3/pipelines")?;
        url.query_pairs_mut()
            .append_pair("project_id", &project_id.to_string());
        let resp = self
            .http
            .get(url)
            .bearer_auth(self.api_key.expose_secret())
            .send()
            .await
            .map_err(|e| http_error("list pipelines", e))?
            .error_for_status()
            .map_err(|e| http_error("list pipelines", e))?;
        let text = resp
            .text()
            .await
            .map_err(|e| http_error("list pipelines", e))?;
        let env: PipelinesEnvelope = serde_json::from_str(&text).map_err(|e| Error::Cado {
            operation: "list pipelines",
            retryable: false,
            source: format!("unexpected answer: {e}").into(),
        })?;
        Ok(env.pipelines)
    }
}

/// Whether a pipeline shows a capture of `hostname` created at or after `since` (minus a minute of clock
/// skew).
pub fn capture_arrived(
    pipelines: &[Pipeline],
    hostname: &str,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<i64> {
    let since = since.map(|s| s - chrono::Duration::seconds(60));
    pipelines
        .iter()
        .filter(|p| {
            p.hostname
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(hostname))
        })
        .filter(|p| !matches!(p.status.as_deref(), Some("cancelled")))
        .find(|p| match (since, p.created) {
            (Some(s), Some(c)) => c >= s,
            _ => true,
        })
        .map(|p| p.pipeline_id.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let c =
            CadoClient::new("http://127.0.0.1:1", SecretString::from("cado-key-123456")).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("cado-key-123456"));
        assert!(d.contains("<redacted>"));
        let cmd = CadoHostCommand {
            command: SecretString::from("run --presigned_data xyz"),
            presigned_data: SecretString::from("xyz"),
            bucket: Some("b".into()),
            path: None,
        };
        assert!(!format!("{cmd:?}").contains("xyz"));
    }

    #[test]
    fn a_misshapen_command_answer_does_not_quote_the_secret() {
        fn chain(e: &Error) -> String {
            let mut s = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(c) = cur {
                s = format!("{s}: {c}");
                cur = c.source();
            }
            s
        }
        // `data` as the bare one-liner instead of an object
        let e = parse_command_answer(r#"{"data":"./cado-host --presigned_data eyJzZWNyZXQi"}"#)
            .err()
            .unwrap();
        let msg = chain(&e);
        assert!(!msg.contains("eyJzZWNyZXQi"), "{msg}");
        assert!(msg.contains("line 1 column"), "{msg}");
        // a missing field is still named
        let e = parse_command_answer(r#"{"data":{"presigned_data":"eyJzZWNyZXQi"}}"#)
            .err()
            .unwrap();
        let msg = chain(&e);
        assert!(msg.contains("missing field `command`"), "{msg}");
        assert!(!msg.contains("eyJzZWNyZXQi"), "{msg}");
        assert!(parse_command_answer(r#"{"data":{"command":"c","presigned_data":"p"}}"#).is_ok());
    }

    #[test]
    fn bad_configuration_is_rejected() {
        assert!(CadoClient::new("ftp://x", SecretString::from("k")).is_err());
        assert!(CadoClient::new("http://127.0.0.1:1", SecretString::from(" ")).is_err());
    }

    #[test]
    fn pipelines_match_by_host_and_time() {
        let json = r#"{"pipelines": [
            {"pipeline_id": 1, "status": "complete", "hostname": "WEB-1", "evidence_name": "k", "created": "2026-11-22T08:00:00Z", "extra": 1},
            {"pipeline_id": 2, "status": "in_progress", "hostname": "db-1", "created": "2026-11-22T07:00:00Z"}
        ]}"#;
        let p: PipelinesEnvelope = serde_json::from_str(json).unwrap();
        let t = |s: &str| Some(s.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
        assert_eq!(
            capture_arrived(&p.pipelines, "web-1", t("2026-11-22T07:59:30Z")),
            Some(1)
        );
        assert_eq!(
            capture_arrived(&p.pipelines, "db-1", t("2026-11-22T07:30:00Z")),
            None
        );
        assert_eq!(capture_arrived(&p.pipelines, "db-1", None), Some(2));
        let empty: PipelinesEnvelope = serde_json::from_str("{}").unwrap();
        assert!(empty.pipelines.is_empty());
    }
}
