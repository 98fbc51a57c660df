//! Evidence checks: what a host reports about the archive its collector left, and the per-collector rules
//! that decide whether that archive is plausible evidence (`too_small`, `too_large`, missing files).
//!
//! The host side (`docs/collector-protocol.md`) measures; this module judges. The judgement is pure so the
//! orchestrator, the report and the tests share one definition.

use serde::{Deserialize, Serialize};

/// One gibibyte.
pub const GIB: u64 = 1024 * 1024 * 1024;
/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// The largest single upload to AWS S3 with a pre-signed POST: 5 GB (`reference/cado-host.md` 2.4,
/// "AWS limits the total upload size to 5GB"). Decimal gigabytes, as AWS counts them.
pub const S3_SINGLE_UPLOAD_LIMIT: u64 = 5_000_000_000;

/// What the status probe reports about the collector's archive once the collector has exited
/// (`FALCON-TRIAGE archive` and `FALCON-TRIAGE missing` lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveFacts {
    /// File name of the archive inside the job directory; empty when no file matched the collector's archive
    /// pattern.
    pub name: String,
    /// Its size in bytes (0 when there is none).
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the archive, when the host could compute it (no `sha256sum`, `shasum` or
    /// `openssl` on a minimal host leaves it unknown).
    pub sha256: Option<String>,
    /// Required files (patterns relative to the job directory) the host did not find.
    pub missing: Vec<String>,
}

/// Why an archive is not accepted as evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceProblem {
    /// Smaller than the collector's minimum: an empty or truncated collection (`too_small`). An absent archive
    /// is this case with `bytes` 0.
    #[error(
        "archive `{name}` is {bytes} bytes, below the minimum of {min_bytes} for this collector"
    )]
    TooSmall {
        /// Archive name (empty when none was found).
        name: String,
        /// Its size.
        bytes: u64,
        /// The minimum.
        min_bytes: u64,
    },
    /// Larger than the upload limit: the upload will fail or has failed (`too_large`).
    #[error("archive `{name}` is {bytes} bytes, above the upload limit of {max_bytes}")]
    TooLarge {
        /// Archive name.
        name: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// Required files are absent (`too_small`: the collection is incomplete).
    #[error("required files not found: {}", .missing.join(", "))]
    MissingFiles {
        /// The patterns not found.
        missing: Vec<String>,
    },
}

impl EvidenceProblem {
    /// The reason word used by the state machine, the journal and the report: `too_small` or `too_large`.
    pub fn reason(&self) -> &'static str {
        match self {
            EvidenceProblem::TooSmall { .. } | EvidenceProblem::MissingFiles { .. } => "too_small",
            EvidenceProblem::TooLarge { .. } => "too_large",
        }
    }
}

/// Per-collector evidence rules: checked on the host before launch (free space) and after exit (archive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRules {
    /// Globs (relative to the job directory) naming the archive the collector writes; the largest match is
    /// measured.
    pub archive_globs: Vec<String>,
    /// Smallest plausible archive; below it the collection is `too_small`.
    pub min_bytes: u64,
    /// Upload limit; above it the collection is `too_large`. `None` when the collector does not upload or
    /// the limit is unknown.
    pub max_bytes: Option<u64>,
    /// Files (globs relative to the job directory) that must exist after the collector exited.
    pub required_files: Vec<String>,
    /// Free space the launch script requires on the job directory's volume; below it the host answers
    /// `no-space` and nothing starts.
    pub min_free_bytes: u64,
    /// Delete the archive once measured (Cado Host: it is uploaded, and a multi-GB file should not stay on
    /// the host). Templates keep theirs.
    #[serde(default)]
    pub remove_after_measure: bool,
}

/// Archive names the common collectors write: Cado Host (`.tar.lz4`, older `.zip`), UAC (`.tar.gz`),
/// KAPE (`.zip`, `.vhdx`), a Velociraptor offline collector (`.zip`).
pub const COMMON_ARCHIVE_GLOBS: &[&str] = &[
    "*.zip",
    "*.tar.lz4",
    "*.tar.gz",
    "*.tgz",
    "*.tar",
    "*.7z",
    "*.vhdx",
    "*.vhd",
];

impl EvidenceRules {
    /// Rules for a user template: any common archive name, at least 1 KiB, no upload limit known, no
    /// required file, 1 GiB free before launch. Adjust with the fields.
    pub fn template_default() -> EvidenceRules {
        EvidenceRules {
            archive_globs: COMMON_ARCHIVE_GLOBS.iter().map(|g| g.to_string()).collect(),
            min_bytes: 1024,
            max_bytes: None,
            required_files: Vec::new(),
            min_free_bytes: GIB,
            remove_after_measure: false,
        }
    }

    /// Judges the archive the probe reported. Missing required files come first (the most specific), then
    /// the size bounds.
    pub fn judge(&self, facts: &ArchiveFacts) -> Result<(), EvidenceProblem> {
        if !facts.missing.is_empty() {
            return Err(EvidenceProblem::MissingFiles {
                missing: facts.missing.clone(),
            });
        }
        if facts.bytes < self.min_bytes {
            return Err(EvidenceProblem::TooSmall {
                name: facts.name.clone(),
                bytes: facts.bytes,
                min_bytes: self.min_bytes,
            });
        }
        if let Some(max) = self.max_bytes.filter(|&m| facts.bytes > m) {
            return Err(EvidenceProblem::TooLarge {
                name: facts.name.clone(),
                bytes: facts.bytes,
                max_bytes: max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EvidenceRules {
        EvidenceRules {
            archive_globs: vec!["*.zip".into()],
            min_bytes: 1024,
            max_bytes: Some(10_000),
            required_files: vec!["out/*.log".into()],
            min_free_bytes: GIB,
            remove_after_measure: false,
        }
    }

    fn facts(bytes: u64, missing: &[&str]) -> ArchiveFacts {
        ArchiveFacts {
            name: "c.zip".into(),
            bytes,
            sha256: None,
            missing: missing.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn judge_bounds_and_missing_files() {
        let r = rules();
        assert_eq!(r.judge(&facts(1024, &[])), Ok(()));
        assert_eq!(r.judge(&facts(10_000, &[])), Ok(()));
        let e = r.judge(&facts(1023, &[])).unwrap_err();
        assert_eq!(e.reason(), "too_small");
        assert_eq!(
            e.to_string(),
            "archive `c.zip` is 1023 bytes, below the minimum of 1024 for this collector"
        );
        let e = r.judge(&facts(10_001, &[])).unwrap_err();
        assert_eq!(e.reason(), "too_large");
        assert!(matches!(
            e,
            EvidenceProblem::TooLarge {
                max_bytes: 10_000,
                ..
            }
        ));
        let e = r.judge(&facts(5000, &["out/*.log"])).unwrap_err();
        assert_eq!(e.reason(), "too_small");
        assert_eq!(e.to_string(), "required files not found: out/*.log");
        // no upload limit: any size above the minimum passes
        let r = EvidenceRules {
            max_bytes: None,
            ..rules()
        };
        assert_eq!(r.judge(&facts(u64::MAX, &[])), Ok(()));
        // an absent archive is too small
        let none = ArchiveFacts {
            name: String::new(),
            bytes: 0,
            sha256: None,
            missing: vec![],
        };
        assert!(matches!(
            r.judge(&none),
            Err(EvidenceProblem::TooSmall { bytes: 0, .. })
        ));
    }
}
