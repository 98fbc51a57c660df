//! Local persistence of the stream state (`{"start_from": ..., "recover_until": ...}`) and of what
//! that state belongs to.
//!
//! The file holds the pycti connector state (the keys OpenCTI stores, so the text can be copied to
//! the platform) plus an `ioc_sync` object naming the OpenCTI URL (without userinfo), the live
//! stream id and the connector id it was written for. A cursor is only meaningful on the stream
//! that produced it: [`StateFile::load`] refuses a file written for anything else
//! ([`Error::StateMismatch`]); `docs/operations.md` says why and what to do.
//!
//! Durability: the state is written after every batch with an atomic replace (write a temporary file
//! in the same directory, `fsync` it, rename it over the old one, `fsync` the directory), so a crash
//! or a power loss leaves either the old or the new state, never a torn or vanished file. The IO runs
//! on tokio's blocking pool, never on the async workers.

use std::io::Write;
use std::path::{Path, PathBuf};

use opencti_client::StreamState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// What a state file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// `OPENCTI_URL` without userinfo, query or trailing slash.
    pub opencti_url: String,
    /// `CONNECTOR_LIVE_STREAM_ID`.
    pub live_stream_id: String,
    /// `CONNECTOR_ID` (the platform keeps its own copy of the state under this id).
    pub connector_id: String,
}

impl Identity {
    /// The identity of a configuration.
    pub fn of(config: &crate::config::Config) -> Identity {
        Identity {
            opencti_url: url_without_userinfo(&config.opencti.url),
            live_stream_id: config.connector.live_stream_id.clone(),
            connector_id: config.connector.id.clone(),
        }
    }

    /// `what (a, b)` for each field that differs (for the error message).
    fn differences(&self, other: &Identity) -> Vec<String> {
        let mut out = Vec::new();
        for (name, a, b) in [
            ("OpenCTI URL", &self.opencti_url, &other.opencti_url),
            ("live stream", &self.live_stream_id, &other.live_stream_id),
            ("connector id", &self.connector_id, &other.connector_id),
        ] {
            if a != b {
                out.push(format!("{name} `{a}`"));
            }
        }
        out
    }
}

/// `scheme://host[:port]/path` of a URL: no user, password, query or fragment; no trailing slash.
pub(crate) fn url_without_userinfo(u: &str) -> String {
    match url::Url::parse(u.trim()) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        // Config validation rejects non-URLs; never echo a string that might hold a secret.
        Err(_) => "<not a URL>".to_string(),
    }
}

/// A state as read from the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Loaded {
    /// The stream state.
    pub state: StreamState,
    /// Whether the file named what it belongs to (files of ioc-sync before 0.2 did not).
    pub has_identity: bool,
}

/// The local state file of one connector.
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    path: PathBuf,
    identity: Identity,
}

impl StateFile {
    /// A state file at `path` for `identity` (not created until the first [`StateFile::save`]).
    pub fn new(path: impl Into<PathBuf>, identity: Identity) -> StateFile {
        StateFile {
            path: path.into(),
            identity,
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::StateFile {
            path: self.path.clone(),
            source,
        }
    }

    /// The saved state, if the file exists and holds a state. A file written for another OpenCTI,
    /// stream or connector is an error naming the file and each difference; a file without identity
    /// (older versions) is returned with `has_identity = false`; an empty or unreadable JSON text is no
    /// state (logged).
    pub async fn load(&self) -> Result<Option<Loaded>, Error> {
        let path = self.path.clone();
        let text = match blocking(move || std::fs::read_to_string(path)).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        self.parse(&text)
    }

    fn parse(&self, text: &str) -> Result<Option<Loaded>, Error> {
        let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(text) else {
            tracing::warn!(file = %self.path.display(), "the state file is not a JSON object; ignored");
            return Ok(None);
        };
        let identity = obj.remove("ioc_sync");
        let has_identity = identity.is_some();
        if let Some(id) = identity {
            let found: Identity = serde_json::from_value(id).map_err(|_| Error::StateMismatch {
                path: self.path.clone(),
                found: "an unreadable `ioc_sync` identity".into(),
                expected: self.describe(&self.identity),
            })?;
            let diff = found.differences(&self.identity);
            if !diff.is_empty() {
                return Err(Error::StateMismatch {
                    path: self.path.clone(),
                    found: diff.join(", "),
                    expected: self.describe(&self.identity),
                });
            }
        }
        if obj.is_empty() {
            return Ok(None);
        }
        Ok(
            StreamState::from_connector_state(&Value::Object(obj).to_string()).map(|state| {
                Loaded {
                    state,
                    has_identity,
                }
            }),
        )
    }

    fn describe(&self, i: &Identity) -> String {
        format!(
            "OpenCTI URL `{}`, live stream `{}`, connector id `{}`",
            i.opencti_url, i.live_stream_id, i.connector_id
        )
    }

    /// The file's text for `state` (a pycti state JSON object text).
    fn render(&self, state: &str) -> String {
        let mut obj = match serde_json::from_str::<Value>(state) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        obj.insert(
            "ioc_sync".into(),
            serde_json::to_value(&self.identity).expect("strings serialize"),
        );
        Value::Object(obj).to_string()
    }

    /// Replaces the file atomically with `state` (a JSON object text) and this file's identity.
    pub async fn save(&self, state: &str) -> Result<(), Error> {
        let text = self.render(state);
        let path = self.path.clone();
        blocking(move || replace(&path, text.as_bytes()))
            .await
            .map_err(|e| self.io(e))
    }

    /// Removes the file (after a remote state reset).
    pub async fn clear(&self) -> Result<(), Error> {
        let path = self.path.clone();
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .map_err(|e| self.io(e))
    }
}

/// Runs file IO on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to a temporary file next to `path`, fsyncs it, renames it over `path`, fsyncs the
/// directory (so the rename itself survives a power loss).
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("state.json");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// `fsync` of a directory (a no-op where directories cannot be opened, e.g. Windows).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Compares two stream event ids `<ms>-<seq>` numerically (`None` if either does not parse).
pub(crate) fn compare_event_ids(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(parse_event_id(a)?.cmp(&parse_event_id(b)?))
}

/// Parses `<ms>-<seq>` (a bare `<ms>` is `<ms>-0`).
pub(crate) fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.trim().split_once('-').unwrap_or((id.trim(), "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn identity(stream: &str) -> Identity {
        Identity {
            opencti_url: "http://octi:8080".into(),
            live_stream_id: stream.into(),
            connector_id: "c-1".into(),
        }
    }

    #[tokio::test]
    async fn save_load_replace_clear() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("sub/state.json"), identity("s1"));
        assert_eq!(f.load().await.unwrap(), None);
        f.save(r#"{"start_from":"1-0","recover_until":"2024-01-01T00:00:00Z"}"#)
            .await
            .unwrap();
        f.save(r#"{"start_from":"2-0","recover_until":"2024-01-01T00:00:00Z"}"#)
            .await
            .unwrap();
        let l = f.load().await.unwrap().unwrap();
        assert_eq!(l.state.last_event_id(), "2-0");
        assert!(l.has_identity);
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(text.contains(r#""live_stream_id":"s1""#), "{text}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        f.clear().await.unwrap();
        assert_eq!(f.load().await.unwrap(), None);
        f.clear().await.unwrap();
    }

    #[tokio::test]
    async fn a_file_of_another_stream_is_refused_with_file_and_difference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        StateFile::new(&path, identity("stream-a"))
            .save(r#"{"start_from":"9-0","recover_until":false}"#)
            .await
            .unwrap();
        let e = StateFile::new(&path, identity("stream-b"))
            .load()
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::StateMismatch { .. }), "{e:?}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("live stream `stream-a`") && msg.contains("live stream `stream-b`"),
            "{msg}"
        );
        assert!(
            msg.contains("written for live stream `stream-a`, not"),
            "names only what differs: {msg}"
        );
    }

    #[tokio::test]
    async fn an_old_file_without_identity_is_read_and_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("s.json"), identity("s"));
        std::fs::write(f.path(), r#"{"start_from":"5-0","recover_until":false}"#).unwrap();
        let l = f.load().await.unwrap().unwrap();
        assert_eq!(l.state.last_event_id(), "5-0");
        assert!(!l.has_identity);
    }

    #[tokio::test]
    async fn garbage_or_empty_state_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("s.json"), identity("s"));
        std::fs::write(f.path(), "{}").unwrap();
        assert_eq!(f.load().await.unwrap(), None);
        std::fs::write(f.path(), "not json").unwrap();
        assert_eq!(f.load().await.unwrap(), None);
    }

    #[test]
    fn userinfo_never_reaches_the_identity() {
        assert_eq!(
            url_without_userinfo("https://user:pa55@octi.example:8443/base/?token=x#f"),
            "https://octi.example:8443/base"
        );
        assert_eq!(url_without_userinfo("nope"), "<not a URL>");
    }

    #[test]
    fn event_ids_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(
            compare_event_ids("1711633413527-0", "1711633413527-1"),
            Some(Less)
        );
        assert_eq!(compare_event_ids("999-5", "1000-0"), Some(Less));
        assert_eq!(compare_event_ids("1000", "1000-0"), Some(Equal));
        assert_eq!(compare_event_ids("x", "1-0"), None);
    }
}
