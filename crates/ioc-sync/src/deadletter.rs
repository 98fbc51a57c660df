//! The dead-letter file: one JSON object per line for every IOC write that failed permanently.
//!
//! Fields: `time` (RFC 3339), `event_id`, `indicator_id`, `operation` (`create`/`update`/`delete`),
//! `type`, `value`, `reason` (Falcon's message), `body` (the IOC that was being written, if any).
//! The file is append-only; an operator fixes the cause and replays the lines (or runs `reconcile`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    lock: Mutex<()>,
}

impl DeadLetterFile {
    /// A dead-letter file at `path` (created on the first letter).
    pub fn new(path: impl Into<PathBuf>) -> DeadLetterFile {
        DeadLetterFile {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends letters (one line each) and flushes them to disk.
    pub fn append(&self, letters: &[DeadLetter]) -> std::io::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut buf = Vec::new();
        for l in letters {
            serde_json::to_writer(&mut buf, l).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_json_lines() {
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
        f.append(std::slice::from_ref(&l)).unwrap();
        f.append(&[l.clone(), l]).unwrap();
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
