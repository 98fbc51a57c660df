//! Builder for `runscript` command strings, with the quoting rules of the RTR command parser.
//!
//! ```
//! use falcon_sdk::rtr::runscript::Runscript;
//! let cmd = Runscript::raw("Write-Output \"hello `n world\"").timeout(60).to_command_string()?;
//! assert_eq!(cmd, "runscript -Raw=```Write-Output \"hello `n world\"``` -Timeout=60");
//! let cmd = Runscript::cloud_file("collect").to_command_string()?;
//! assert_eq!(cmd, "runscript -CloudFile=\"collect\" -CommandLine=\"\"");
//! # Ok::<(), falcon_sdk::rtr::runscript::RunscriptError>(())
//! ```
//!
//! # Quoting rules
//!
//! * `-Raw=` and `-CommandLine=` values are wrapped in triple backticks (```` ```...``` ````) and sent
//!   verbatim: quotes (`"` and `'`), newlines, `$`, `\` and single or double backticks need no escaping
//!   there. A value is **refused** (never sent broken) when it contains three backticks in a row (that
//!   would close the block early), starts or ends with a backtick (the parser cannot tell it from the
//!   delimiter), contains a NUL character, or (for `-Raw=`) is empty or only whitespace.
//! * `-CloudFile=` and `-HostPath=` values are wrapped in double quotes. They are refused when empty or
//!   when they contain `"`, a line break or NUL, since the parser offers no escape inside quotes.
//! * `-CloudFile=` without arguments gets `-CommandLine=""`: older sensors otherwise fail with
//!   `40012: Max args is 0` (`falcon-api.md` §5.4).
//! * `-Timeout=` is a whole number of seconds, at least 1. The sensor-side maximum is not documented.
//!
//! A body that cannot be quoted this way (e.g. a script that itself contains ```` ``` ````) can be
//! uploaded to the scripts library and run with [`Runscript::cloud_file`], or base64-encoded by the
//! caller and decoded by a small wrapper script.

use std::fmt::Write as _;

/// Why a `runscript` command string could not be built. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunscriptError {
    /// The `-Raw=` script body is empty or only whitespace.
    #[error("runscript {field} is empty")]
    Empty {
        /// Which argument (`-Raw`, `-CloudFile`, `-HostPath`).
        field: &'static str,
    },
    /// The value contains three backticks in a row, which would close the ```` ``` ```` block early.
    #[error("runscript {field} contains ``` at byte {offset}; it cannot be quoted")]
    TripleBacktick {
        /// Which argument.
        field: &'static str,
        /// Byte offset of the first backtick of the run.
        offset: usize,
    },
    /// The value starts or ends with a backtick, which would merge with the ```` ``` ```` delimiter.
    #[error("runscript {field} starts or ends with a backtick; it cannot be quoted")]
    EdgeBacktick {
        /// Which argument.
        field: &'static str,
    },
    /// The value contains a character that cannot appear in it (`"`, a line break, or NUL).
    #[error("runscript {field} contains {what} at byte {offset}; it cannot be quoted")]
    ForbiddenChar {
        /// Which argument.
        field: &'static str,
        /// Description of the character.
        what: &'static str,
        /// Byte offset of the character.
        offset: usize,
    },
    /// `-Timeout=0` was requested.
    #[error("runscript -Timeout must be at least 1 second")]
    ZeroTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Raw(String),
    CloudFile(String),
    HostPath(String),
}

/// A `runscript` invocation: one of `-Raw=`, `-CloudFile=` or `-HostPath=`, with optional
/// `-CommandLine=` and `-Timeout=`.
///
/// `-Raw=` and `-HostPath=` need the admin role (`admin-command`); `-CloudFile=` also works for
/// active responders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runscript {
    source: Source,
    command_line: Option<String>,
    timeout: Option<u64>,
}

impl Runscript {
    /// The base command to send with the command string: `runscript`.
    pub const BASE_COMMAND: &'static str = "runscript";

    /// An inline script: `-Raw=```body```` (PowerShell on Windows, shell on Linux and macOS).
    pub fn raw(body: impl Into<String>) -> Self {
        Self::new(Source::Raw(body.into()))
    }

    /// A script of the custom scripts library: `-CloudFile="name"`.
    pub fn cloud_file(name: impl Into<String>) -> Self {
        Self::new(Source::CloudFile(name.into()))
    }

    /// A script already on the host: `-HostPath="path"`.
    pub fn host_path(path: impl Into<String>) -> Self {
        Self::new(Source::HostPath(path.into()))
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            command_line: None,
            timeout: None,
        }
    }

    /// Arguments passed to the script: `-CommandLine=```args````.
    pub fn command_line(mut self, args: impl Into<String>) -> Self {
        self.command_line = Some(args.into());
        self
    }

    /// Script-side timeout in seconds: `-Timeout=N`. Keep it below the request timeout of a batch
    /// command, or the API reports `50401 Exceeded maximum timeout` first.
    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// Builds the full command string (`runscript ...`), or refuses a value that cannot be quoted.
    pub fn to_command_string(&self) -> Result<String, RunscriptError> {
        let mut out = String::from(Self::BASE_COMMAND);
        match &self.source {
            Source::Raw(body) => {
                if body.trim().is_empty() {
                    return Err(RunscriptError::Empty { field: "-Raw" });
                }
                check_backticked("-Raw", body)?;
                let _ = write!(out, " -Raw=```{body}```");
            }
            Source::CloudFile(name) => {
                check_quoted("-CloudFile", name)?;
                let _ = write!(out, " -CloudFile=\"{name}\"");
            }
            Source::HostPath(path) => {
                check_quoted("-HostPath", path)?;
                let _ = write!(out, " -HostPath=\"{path}\"");
            }
        }
        match (&self.command_line, &self.source) {
            (Some(args), _) if !args.is_empty() => {
                check_backticked("-CommandLine", args)?;
                let _ = write!(out, " -CommandLine=```{args}```");
            }
            (Some(_), _) | (None, Source::CloudFile(_)) => out.push_str(" -CommandLine=\"\""),
            (None, _) => {}
        }
        if let Some(t) = self.timeout {
            if t == 0 {
                return Err(RunscriptError::ZeroTimeout);
            }
            let _ = write!(out, " -Timeout={t}");
        }
        Ok(out)
    }
}

fn check_backticked(field: &'static str, value: &str) -> Result<(), RunscriptError> {
    if let Some(offset) = value.find('\0') {
        return Err(RunscriptError::ForbiddenChar {
            field,
            what: "a NUL character",
            offset,
        });
    }
    if let Some(offset) = value.find("```") {
        return Err(RunscriptError::TripleBacktick { field, offset });
    }
    if value.starts_with('`') || value.ends_with('`') {
        return Err(RunscriptError::EdgeBacktick { field });
    }
    Ok(())
}

fn check_quoted(field: &'static str, value: &str) -> Result<(), RunscriptError> {
    if value.trim().is_empty() {
        return Err(RunscriptError::Empty { field });
    }
    for (offset, c) in value.char_indices() {
        let what = match c {
            '"' => "a double quote",
            '\n' | '\r' => "a line break",
            '\0' => "a NUL character",
            _ => continue,
        };
        return Err(RunscriptError::ForbiddenChar {
            field,
            what,
            offset,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_body_with_backticks_quotes_and_newlines_is_sent_verbatim() {
        let body = "$a = \"it's `\"quoted`\"\"\nWrite-Output 'x' ``n\r\necho \"$a\"";
        let cmd = Runscript::raw(body).to_command_string().unwrap();
        assert_eq!(cmd, format!("runscript -Raw=```{body}```"));
        // the body is recoverable exactly between the delimiters
        let inner = cmd
            .strip_prefix("runscript -Raw=```")
            .unwrap()
            .strip_suffix("```")
            .unwrap();
        assert_eq!(inner, body);
    }

    #[test]
    fn raw_body_with_triple_backtick_is_refused_with_offset() {
        let err = Runscript::raw("echo a\necho ```b```")
            .to_command_string()
            .unwrap_err();
        assert_eq!(
            err,
            RunscriptError::TripleBacktick {
                field: "-Raw",
                offset: 12
            }
        );
        assert_eq!(
            err.to_string(),
            "runscript -Raw contains ``` at byte 12; it cannot be quoted"
        );
    }

    #[test]
    fn raw_body_starting_or_ending_with_backtick_is_refused() {
        for body in ["`echo", "echo `", "echo ``"] {
            assert_eq!(
                Runscript::raw(body).to_command_string(),
                Err(RunscriptError::EdgeBacktick { field: "-Raw" }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn empty_and_nul_bodies_are_refused() {
        assert_eq!(
            Runscript::raw(" \n").to_command_string(),
            Err(RunscriptError::Empty { field: "-Raw" })
        );
        assert!(matches!(
            Runscript::raw("a\0b").to_command_string(),
            Err(RunscriptError::ForbiddenChar { offset: 1, .. })
        ));
    }

    #[test]
    fn cloud_file_gets_empty_command_line_and_timeout() {
        assert_eq!(
            Runscript::cloud_file("collect")
                .timeout(120)
                .to_command_string()
                .unwrap(),
            "runscript -CloudFile=\"collect\" -CommandLine=\"\" -Timeout=120"
        );
        assert_eq!(
            Runscript::cloud_file("collect")
                .command_line("-Out \"C:\\x y\"")
                .to_command_string()
                .unwrap(),
            "runscript -CloudFile=\"collect\" -CommandLine=```-Out \"C:\\x y\"```"
        );
    }

    #[test]
    fn quoted_names_refuse_quotes_and_line_breaks() {
        assert!(matches!(
            Runscript::cloud_file("a\"b").to_command_string(),
            Err(RunscriptError::ForbiddenChar {
                field: "-CloudFile",
                what: "a double quote",
                offset: 1
            })
        ));
        assert!(matches!(
            Runscript::host_path("C:\\a\nb").to_command_string(),
            Err(RunscriptError::ForbiddenChar {
                field: "-HostPath",
                what: "a line break",
                ..
            })
        ));
        assert_eq!(
            Runscript::host_path("").to_command_string(),
            Err(RunscriptError::Empty { field: "-HostPath" })
        );
    }

    #[test]
    fn command_line_with_triple_backtick_is_refused() {
        assert!(matches!(
            Runscript::raw("echo")
                .command_line("a```b")
                .to_command_string(),
            Err(RunscriptError::TripleBacktick {
                field: "-CommandLine",
                offset: 1
            })
        ));
    }

    #[test]
    fn zero_timeout_is_refused() {
        assert_eq!(
            Runscript::raw("echo").timeout(0).to_command_string(),
            Err(RunscriptError::ZeroTimeout)
        );
    }

    #[test]
    fn host_path_with_args() {
        assert_eq!(
            Runscript::host_path("C:\\s.ps1")
                .command_line("-x 1")
                .timeout(30)
                .to_command_string()
                .unwrap(),
            "runscript -HostPath=\"C:\\s.ps1\" -CommandLine=```-x 1``` -Timeout=30"
        );
    }
}
