//! Local persistence of the stream state (`{"start_from": ..., "recover_until": ...}`).
//!
//! The state is written after every batch with an atomic replace (write a temporary file in the same
//! directory, `fsync`, rename), so a crash leaves either the old or the new state, never a torn file.
//! The JSON text is the pycti connector state, exactly what is pinged to OpenCTI.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The local state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// A state file at `path` (not created until the first [`StateFile::save`]).
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state text, if the file exists and holds a non-empty JSON object.
    pub fn load(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(m)) if !m.is_empty() => Ok(Some(text)),
                _ => Ok(None),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the file atomically with `state` (a JSON object text).
    pub fn save(&self, state: &str) -> std::io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("state.json");
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(state.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    /// Removes the file (after a remote state reset).
    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Compares two stream event ids `<ms>-<seq>` numerically (`None` if either does not parse).
pub fn compare_event_ids(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(parse_event_id(a)?.cmp(&parse_event_id(b)?))
}

/// Parses `<ms>-<seq>` (a bare `<ms>` is `<ms>-0`).
pub fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.trim().split_once('-').unwrap_or((id.trim(), "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_replace_clear() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("sub/state.json"));
        assert_eq!(f.load().unwrap(), None);
        f.save(r#"{"start_from":"1-0","recover_until":"2024-01-01T00:00:00Z"}"#)
            .unwrap();
        f.save(r#"{"start_from":"2-0","recover_until":"2024-01-01T00:00:00Z"}"#)
            .unwrap();
        assert!(f.load().unwrap().unwrap().contains("\"2-0\""));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        f.clear().unwrap();
        assert_eq!(f.load().unwrap(), None);
        f.clear().unwrap();
    }

    #[test]
    fn garbage_or_empty_state_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("s.json"));
        std::fs::write(f.path(), "{}").unwrap();
        assert_eq!(f.load().unwrap(), None);
        std::fs::write(f.path(), "not json").unwrap();
        assert_eq!(f.load().unwrap(), None);
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
