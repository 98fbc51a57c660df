//! The run journal: JSON lines, one per state transition, replayed by `resume` and `status`. It is created
//! owner-only (`0600`: it holds host names and collector log tails). The orchestrator stages the lines of
//! the transitions an API answer caused and [`Journal::commit`]s them (written and synced to disk) before
//! it sends the next command.
//!
//! Line kinds (`"type"`): `run` (the header: job id and settings, no secret), `host` (a host's full record
//! after a transition, with `from`), `resumed`, `finished`. A truncated or malformed line (a process killed
//! mid-write) is counted and skipped on replay; the last `host` line of a device wins.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::platform::JobId;
use crate::run::RunSettings;
use crate::state::{HostRecord, HostState};

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// The first line of a journal.
    Run {
        /// The run's job id.
        job: JobId,
        /// When the run started.
        started: chrono::DateTime<chrono::Utc>,
        /// Label of the collector (no secret).
        collector: String,
        /// Run settings (no secret).
        settings: RunSettings,
    },
    /// A host's record after a transition.
    Host {
        /// The state it left (`None` for the first record).
        from: Option<HostState>,
        /// The record.
        #[serde(flatten)]
        record: HostRecord,
    },
    /// A `resume` picked the run up.
    Resumed {
        /// When.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// The run ended with every host in a terminal state.
    Finished {
        /// When.
        at: chrono::DateTime<chrono::Utc>,
    },
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    staged: Vec<u8>,
}

impl Journal {
    /// Creates a new journal, readable and writable by its owner only (refuses to overwrite an existing
    /// file), and writes its header.
    pub fn create(path: &Path, header: &Entry) -> Result<Journal> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|e| Error::journal(path, e))?;
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            staged: Vec::new(),
        };
        j.append(header)?;
        Ok(j)
    }

    /// Opens an existing journal for appending. A last line cut short by a crash is terminated first, so the
    /// next entry starts on a line of its own.
    pub fn open_append(path: &Path) -> Result<Journal> {
        let content_ends_clean = last_byte(path)
            .map_err(|e| Error::journal(path, e))?
            .is_none_or(|b| b == b'\n');
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::journal(path, e))?;
        if !content_ends_clean {
            file.write_all(b"\n").map_err(|e| Error::journal(path, e))?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            staged: Vec::new(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and commits it (written and synced).
    pub fn append(&mut self, entry: &Entry) -> Result<()> {
        self.stage(entry)?;
        self.commit()
    }

    /// Appends a host transition and commits it.
    pub fn record(&mut self, from: Option<HostState>, record: &HostRecord) -> Result<()> {
        self.stage_record(from, record)?;
        self.commit()
    }

    /// Stages one line, written by the next [`Journal::commit`].
    pub fn stage(&mut self, entry: &Entry) -> Result<()> {
        serde_json::to_writer(&mut self.staged, entry)
            .map_err(|e| Error::journal(&self.path, e))?;
        self.staged.push(b'\n');
        Ok(())
    }

    /// Stages a host transition.
    pub fn stage_record(&mut self, from: Option<HostState>, record: &HostRecord) -> Result<()> {
        self.stage(&Entry::Host {
            from,
            record: record.clone(),
        })
    }

    /// Whether lines wait for a commit.
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Writes the staged lines and syncs the file's data to disk (blocking I/O: async callers run it on a
    /// blocking thread).
    pub fn commit(&mut self) -> Result<()> {
        if !self.staged.is_empty() {
            self.file
                .write_all(&self.staged)
                .map_err(|e| Error::journal(&self.path, e))?;
            self.staged.clear();
        }
        self.file
            .sync_data()
            .map_err(|e| Error::journal(&self.path, e))
    }
}

fn last_byte(path: &Path) -> std::io::Result<Option<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(None);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(Some(b[0]))
}

/// What a journal says.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The job id.
    pub job: JobId,
    /// When the run started.
    pub started: chrono::DateTime<chrono::Utc>,
    /// The collector label.
    pub collector: String,
    /// The run settings.
    pub settings: RunSettings,
    /// Every host's last record, by device id, in first-seen order of device id (sorted).
    pub hosts: BTreeMap<String, HostRecord>,
    /// Lines that could not be parsed (skipped).
    pub skipped_lines: usize,
    /// Whether a `finished` line was written.
    pub finished: bool,
    /// How many times the run was resumed.
    pub resumes: usize,
}

/// Reads a journal.
pub fn replay(path: &Path) -> Result<Replay> {
    let file = File::open(path).map_err(|e| Error::journal(path, e))?;
    let mut header = None;
    let mut hosts = BTreeMap::new();
    let mut skipped = 0;
    let mut finished = false;
    let mut resumes = 0;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::journal(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(&line) {
            Ok(Entry::Run {
                job,
                started,
                collector,
                settings,
            }) => {
                if header.is_none() {
                    header = Some((job, started, collector, settings));
                }
            }
            Ok(Entry::Host { record, .. }) => {
                finished = false;
                hosts.insert(record.device_id.clone(), record);
            }
            Ok(Entry::Resumed { .. }) => {
                resumes += 1;
                finished = false;
            }
            Ok(Entry::Finished { .. }) => finished = true,
            Err(e) => {
                tracing::warn!(line = n + 1, error = %e, "skipping malformed journal line");
                skipped += 1;
            }
        }
    }
    let Some((job, started, collector, settings)) = header else {
        return Err(Error::journal(
            path,
            "no `run` header line: not a falcon-triage journal",
        ));
    };
    Ok(Replay {
        job,
        started,
        collector,
        settings,
        hosts,
        skipped_lines: skipped,
        finished,
        resumes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    fn header() -> Entry {
        Entry::Run {
            job: JobId::parse("3f9a1c2e").unwrap(),
            started: chrono::Utc::now(),
            collector: "cado-host v3.7.0 (pre-signed)".into(),
            settings: RunSettings::default(),
        }
    }

    #[test]
    fn append_and_replay_last_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let mut j = Journal::create(&path, &header()).unwrap();
        let mut a = HostRecord::new("aid1", "web-1", Some(Platform::Linux));
        j.record(None, &a).unwrap();
        a.state = HostState::Session;
        j.record(Some(HostState::Pending), &a).unwrap();
        let b = HostRecord::new("aid2", "dc-1", Some(Platform::Windows));
        j.record(None, &b).unwrap();
        a.state = HostState::Launched;
        a.pid = Some(7);
        j.record(Some(HostState::Session), &a).unwrap();
        // the file is complete on disk after each call, without closing the journal
        let r = replay(&path).unwrap();
        assert_eq!(r.job.as_str(), "3f9a1c2e");
        assert_eq!(r.hosts.len(), 2);
        assert_eq!(r.hosts["aid1"].state, HostState::Launched);
        assert_eq!(r.hosts["aid1"].pid, Some(7));
        assert_eq!(r.hosts["aid2"].state, HostState::Pending);
        assert!(!r.finished);
        j.append(&Entry::Finished {
            at: chrono::Utc::now(),
        })
        .unwrap();
        assert!(replay(&path).unwrap().finished);
    }

    #[test]
    fn truncated_lines_are_skipped_and_create_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let mut j = Journal::create(&path, &header()).unwrap();
        j.record(
            None,
            &HostRecord::new("aid1", "web-1", Some(Platform::Linux)),
        )
        .unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"type\":\"host\",\"from\":nu")
            .unwrap();
        let r = replay(&path).unwrap();
        assert_eq!(r.skipped_lines, 1);
        assert_eq!(r.hosts.len(), 1);
        assert!(Journal::create(&path, &header()).is_err());
        let mut j = Journal::open_append(&path).unwrap();
        j.append(&Entry::Resumed {
            at: chrono::Utc::now(),
        })
        .unwrap();
        assert_eq!(replay(&path).unwrap().resumes, 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_journal_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        Journal::create(&path, &header()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "journal mode {mode:o}");
    }

    #[test]
    fn staged_lines_reach_the_file_only_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let mut j = Journal::create(&path, &header()).unwrap();
        j.stage_record(
            None,
            &HostRecord::new("aid1", "web-1", Some(Platform::Linux)),
        )
        .unwrap();
        assert!(j.has_staged());
        assert!(replay(&path).unwrap().hosts.is_empty());
        j.commit().unwrap();
        assert!(!j.has_staged());
        assert_eq!(replay(&path).unwrap().hosts.len(), 1);
    }

    #[test]
    fn a_file_without_header_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "hello\n").unwrap();
        let err = replay(&path).unwrap_err();
        assert!(err.to_string().starts_with("journal error at"));
    }
}
