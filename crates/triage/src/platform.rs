//! Host platforms the collectors run on.

use serde::{Deserialize, Serialize};

/// The operating system family of a host, as Falcon's `platform_name` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Microsoft Windows (`platform_name` `Windows`).
    Windows,
    /// Linux (`platform_name` `Linux`).
    Linux,
    /// macOS (`platform_name` `Mac`).
    Mac,
}

impl Platform {
    /// All platforms, in display order.
    pub const ALL: [Platform; 3] = [Platform::Windows, Platform::Linux, Platform::Mac];

    /// Maps a Falcon `platform_name` (case-insensitive; `Mac`, `macOS`, `darwin` all mean macOS).
    pub fn from_falcon(name: &str) -> Option<Platform> {
        match name.trim().to_ascii_lowercase().as_str() {
            "windows" | "win" => Some(Platform::Windows),
            "linux" => Some(Platform::Linux),
            "mac" | "macos" | "osx" | "darwin" => Some(Platform::Mac),
            _ => None,
        }
    }

    /// The name used on the command line, in templates and in reports: `windows`, `linux`, `mac`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Windows => "windows",
            Platform::Linux => "linux",
            Platform::Mac => "mac",
        }
    }

    /// Falcon's `platform_name` value (for FQL filters).
    pub fn falcon_name(self) -> &'static str {
        match self {
            Platform::Windows => "Windows",
            Platform::Linux => "Linux",
            Platform::Mac => "Mac",
        }
    }

    /// The per-job work directory of `docs/collector-protocol.md` (no trailing separator).
    pub fn workdir(self, job: &JobId) -> String {
        match self {
            Platform::Windows => format!("C:\\Windows\\Temp\\cado-host-{job}"),
            Platform::Linux | Platform::Mac => format!("/tmp/cado-host-{job}"),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::from_falcon(s)
            .ok_or_else(|| format!("unknown platform `{s}` (expected windows, linux or mac)"))
    }
}

/// A run's job id: 8 lower-case hex digits, part of every work directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// A fresh random job id.
    pub fn random() -> JobId {
        JobId(format!("{:08x}", rand::random::<u32>()))
    }

    /// Parses an existing job id.
    pub fn parse(s: &str) -> Result<JobId, String> {
        if s.len() == 8
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(JobId(s.to_string()))
        } else {
            Err(format!("job id `{s}` is not 8 lower-case hex digits"))
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        JobId::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(j: JobId) -> String {
        j.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_and_workdirs() {
        assert_eq!(Platform::from_falcon("Windows"), Some(Platform::Windows));
        assert_eq!(Platform::from_falcon("Mac"), Some(Platform::Mac));
        assert_eq!(Platform::from_falcon("linux"), Some(Platform::Linux));
        assert_eq!(Platform::from_falcon("Solaris"), None);
        let job = JobId::parse("3f9a1c2e").unwrap();
        assert_eq!(
            Platform::Windows.workdir(&job),
            r"C:\Windows\Temp\cado-host-3f9a1c2e"
        );
        assert_eq!(Platform::Mac.workdir(&job), "/tmp/cado-host-3f9a1c2e");
    }

    #[test]
    fn job_ids_are_eight_hex_digits() {
        for _ in 0..50 {
            assert!(JobId::parse(JobId::random().as_str()).is_ok());
        }
        assert!(JobId::parse("3F9A1C2E").is_err());
        assert!(JobId::parse("3f9a1c2").is_err());
        assert!(JobId::parse("3f9a1c2g").is_err());
    }
}
