//! The dead-letter file: one JSON object per line for every IOC write that failed permanently.
//!
//! Fields: `time` (RFC 3339), `event_id`, `indicator_id`, `operation` (`create`/`update`/`delete`),
//! `type`, `value`, `reason` (Falcon's message), `body` (the IOC that was being written, if any).
//! The file is append-only; an operator fixes the cause and replays the lines (or runs `reconcile`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// One dead letter.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    /// When it was written.
    pub time: String,
    /// The stream event whose change failed.
    pub event_id: String,
    /// The indicator's STIX id, if known.
    pub indicator_id: Option<String>,
    /// `create`, `update`, `soft_delete` or `delete`.
    pub operation: String,
    /// IOC type.
    #[serde(rename = "type")]
    pub ioc_type: String,
    /// IOC value.
    pub value: String,
    /// Why Falcon refused it.
    pub reason: String,
    /// The IOC body that was sent.
    pub body: Option<serde_json::Value>,
}

/// Append-only JSON-lines writer.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterFile {
    path: PathBuf,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl DeadLetterFile {
    /// A dead-letter file at `path` (created on the first letter).
    pub fn new(path: impl Into<PathBuf>) -> DeadLetterFile {
        DeadLetterFile {
            path: path.into(),
            lock: Arc::default(),
        }
    }

    /// Where it is.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends letters (one line each) and flushes them to disk (`fsync` of the file, and of its
    /// directory when the file was created), on the blocking pool.
    pub async fn append(&self, letters: &[DeadLetter]) -> Result<(), crate::Error> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for l in letters {
            serde_json::to_writer(&mut buf, l).expect("strings and JSON values serialize");
            buf.push(b'\n');
        }
        let _guard = self.lock.lock().await;
        let path = self.path.clone();
        crate::state::blocking(move || write_lines(&path, &buf))
            .await
            .map_err(|source| crate::Error::DeadLetterFile {
                path: self.path.clone(),
                source,
            })
    }
}

fn write_lines(path: &Path, buf: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let created = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(buf)?;
    f.sync_data()?;
    if created {
        crate::state::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = DeadLetterFile::new(dir.path().join("dl.jsonl"));
        let l = DeadLetter {
            time: "2026-01-01T00:00:00Z".into(),
            event_id: "1-0".into(),
            indicator_id: Some("indicator--x".into()),
            operation: "create".into(),
            ioc_type: "domain".into(),
            value: "a.b".into(),
            reason: "Duplicate type".into(),
            body: None,
        };
        f.append(std::slice::from_ref(&l)).await.unwrap();
        f.append(&[l.clone(), l]).await.unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|x| serde_json::from_str(x).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["type"], "domain");
        assert_eq!(lines[2]["reason"], "Duplicate type");
    }
}
