//! Collector commands per platform: Cado Host from the Cado platform API, from pre-signed upload data and a
//! Cado Host version, or from user templates (UAC, KAPE, a Velociraptor offline collector...).
//!
//! A collector command is the text the host's shell runs inside the work directory: `sh -c` on Linux and
//! macOS, `powershell.exe -EncodedCommand` on Windows (see [`crate::script`]). Commands hold secrets, so they
//! are kept as [`SecretString`]s and every printed form goes through the set's [`Redactor`].

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::evidence::{EvidenceRules, GIB, MIB, S3_SINGLE_UPLOAD_LIMIT};
use crate::platform::{JobId, Platform};
use crate::redact::Redactor;

/// Where Cado publishes the Cado Host binaries (`<base>/cado-host/<version>/<os>/<file>`).
pub const DEFAULT_DOWNLOAD_BASE: &str = "https://cado-public.s3-accelerate.amazonaws.com";

/// Cado Host collection mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionMode {
    /// The default ("balanced") artifact set.
    #[default]
    Default,
    /// Only files under 10 MB.
    Light,
    /// The larger artifact set (slow).
    Max,
}

impl std::str::FromStr for CollectionMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "default" | "balanced" => Ok(CollectionMode::Default),
            "light" => Ok(CollectionMode::Light),
            "max" => Ok(CollectionMode::Max),
            _ => Err(format!(
                "unknown collection mode `{s}` (expected default, light or max)"
            )),
        }
    }
}

/// The two command-line forms of Cado Host (`reference/cado-host.md` 1.1-1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CadoCli {
    /// The flat form of v1.x and older builds: `cado-host --presigned_data DATA [-l] [--skip_linux_memory]
    /// [--get_windows_memory] [--include_large_varc] [-a ...] [-o FILE] [--no_cleanup]`, collect and upload in
    /// one process.
    Flat,
    /// The current form (documented since 2025-03, seen with v3.7.0): `cado-host [--verbose] capture
    /// [options] --output_path FILE`, then `cado-host upload --presigned_data DATA --capture_path FILE`.
    Subcommands,
    /// Decided on the host: `cado-host --help` listing `capture` means the subcommand form, else the flat
    /// one. For the 2.x versions, where the reference does not say which form they take.
    Detect,
}

impl CadoCli {
    /// The form a Cado Host version takes: v3 and later the subcommands (v3.7.0 is documented with
    /// `capture`), v1 and earlier the flat form (v1.4.9 is documented with it), v2.x detected on the host (the
    /// release that introduced subcommands is not known; the 2.x to 3.x major change is only a guess).
    pub fn for_version(version: &str) -> CadoCli {
        let major = version
            .trim()
            .trim_start_matches(['v', 'V'])
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(m) if m >= 3 => CadoCli::Subcommands,
            Some(2) | None => CadoCli::Detect,
            Some(_) => CadoCli::Flat,
        }
    }
}

impl std::str::FromStr for CadoCli {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "flat" => Ok(CadoCli::Flat),
            "subcommands" => Ok(CadoCli::Subcommands),
            "detect" => Ok(CadoCli::Detect),
            _ => Err(format!(
                "unknown cado host cli form `{s}` (expected flat, subcommands or detect)"
            )),
        }
    }
}

/// Cado Host collection options (the Script Builder's choices).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CadoOptions {
    /// Collection mode.
    pub mode: CollectionMode,
    /// Collect process memory (opt-in on Windows, on by default on Linux).
    pub memory: bool,
    /// Collect open files and memory over 1 MB.
    pub extended_memory: bool,
    /// Custom collection groups (e.g. `program_execution`, `processes`).
    pub groups: Vec<String>,
    /// Additional files or folders to collect.
    pub additional_files: Vec<String>,
    /// Skip TLS verification of the upload (for TLS-intercepting proxies; insecure).
    pub skip_ssl_verify: bool,
    /// Verbose collector logging.
    pub verbose: bool,
    /// The command-line form to build for pre-signed data; `None`: from the version
    /// ([`CadoCli::for_version`]).
    #[serde(default)]
    pub cli: Option<CadoCli>,
}

impl CadoOptions {
    /// The `command_options` object of `POST /api/v3/import/cado-host`.
    pub fn to_api_options(&self, platform: Platform) -> serde_json::Value {
        serde_json::json!({
            "as_super": platform != Platform::Windows,
            "light_mode": self.mode == CollectionMode::Light,
            "max_mode": self.mode == CollectionMode::Max,
            "enable_memory": self.memory,
            "extended_memory": self.extended_memory,
            "groups": self.groups,
            "additional_files": self.additional_files,
            "skip_ssl_verification": self.skip_ssl_verify,
            "verbose": self.verbose,
        })
    }

    /// Warnings to show before launch: options that can make an archive exceed the 5 GB single-upload limit
    /// of S3 (`reference/cado-host.md` 2.4), where the upload then fails after the whole collection ran.
    pub fn size_warnings(&self, platforms: &[Platform]) -> Vec<String> {
        let limit = "the 5 GB upload limit of S3";
        let mut w = Vec::new();
        if self.mode == CollectionMode::Max {
            w.push(format!(
                "collection mode max has no file size limit: archives can exceed {limit} and fail to upload \
                 (Cado: \"more likely to fail upload because of size\")"
            ));
        }
        if self.extended_memory && platforms.contains(&Platform::Linux) {
            w.push(format!(
                "extended memory takes open files and process memory above 1 MB on Linux: archives can exceed {limit}"
            ));
        }
        if self.memory && platforms.contains(&Platform::Windows) {
            w.push(format!(
                "memory on Windows takes every process regardless of size: archives can exceed {limit}"
            ));
        }
        if !self.additional_files.is_empty() && self.mode != CollectionMode::Light {
            w.push(format!(
                "additional files are collected whole (no 10 MB limit outside light mode): large ones can exceed {limit}"
            ));
        }
        w
    }

    /// `capture` options of the subcommand form for `platform`.
    fn capture_flags(&self, platform: Platform, quote: fn(&str) -> String) -> Result<Vec<String>> {
        self.cli_flags(&SUBCOMMAND_FLAGS, platform, quote)
    }

    /// Options of the flat (v1.x) form for `platform`; an option that form does not have is an error.
    fn flat_flags(&self, platform: Platform, quote: fn(&str) -> String) -> Result<Vec<String>> {
        let mut f = self.cli_flags(&FLAT_FLAGS, platform, quote)?;
        if self.skip_ssl_verify {
            return Err(unsupported_in_flat("skip ssl verification"));
        }
        if self.verbose {
            f.push("--verbose".into());
        }
        Ok(f)
    }

    fn cli_flags(
        &self,
        names: &CliFlags,
        platform: Platform,
        quote: fn(&str) -> String,
    ) -> Result<Vec<String>> {
        let mut f = Vec::new();
        match self.mode {
            CollectionMode::Default => {}
            CollectionMode::Light => f.push(names.light.to_string()),
            CollectionMode::Max => f.push(
                names
                    .max
                    .ok_or_else(|| unsupported_in_flat("collection mode max"))?
                    .to_string(),
            ),
        }
        match platform {
            Platform::Windows if self.memory => f.push(names.windows_memory.into()),
            Platform::Linux if !self.memory => f.push(names.skip_linux_memory.into()),
            _ => {}
        }
        if self.extended_memory && platform == Platform::Linux {
            f.push(names.large_memory.into());
        }
        if !self.groups.is_empty() {
            let flag = names
                .groups
                .ok_or_else(|| unsupported_in_flat("--groups"))?;
            f.push(format!("{flag} {}", quoted_list(&self.groups, quote)));
        }
        if !self.additional_files.is_empty() {
            f.push(format!(
                "{} {}",
                names.additional_files,
                quoted_list(&self.additional_files, quote)
            ));
        }
        Ok(f)
    }
}

/// The flag names of one Cado Host command-line form (`reference/cado-host.md` 1.1 and 1.2).
struct CliFlags {
    light: &'static str,
    max: Option<&'static str>,
    windows_memory: &'static str,
    skip_linux_memory: &'static str,
    large_memory: &'static str,
    groups: Option<&'static str>,
    additional_files: &'static str,
}

const SUBCOMMAND_FLAGS: CliFlags = CliFlags {
    light: "--collection_mode light",
    max: Some("--collection_mode max"),
    windows_memory: "--include_memory",
    skip_linux_memory: "--skip_memory",
    large_memory: "--include_large_memory",
    groups: Some("--groups"),
    additional_files: "--additional_files",
};

const FLAT_FLAGS: CliFlags = CliFlags {
    light: "--light_mode",
    max: None,
    windows_memory: "--get_windows_memory",
    skip_linux_memory: "--skip_linux_memory",
    large_memory: "--include_large_varc",
    groups: None,
    additional_files: "-a",
};

fn unsupported_in_flat(what: &str) -> Error {
    Error::invalid(
        "cado host options",
        format!(
            "{what} is not available in the flat command line of Cado Host before the `capture` subcommand; use a v3 version or --cado-cli subcommands"
        ),
    )
}

fn quoted_list(items: &[String], quote: fn(&str) -> String) -> String {
    items.iter().map(|g| quote(g)).collect::<Vec<_>>().join(" ")
}

/// The shell-specific words of a Cado Host command.
struct Dialect {
    quote: fn(&str) -> String,
    /// How the binary is called (`./cado-host`, `& '<path>\cado-host.exe'`).
    exe: String,
    /// The archive path variable as an argument (`"$f"`, `$f`).
    archive: &'static str,
    /// `capture`, then `upload` when the capture succeeded.
    and_then: fn(&str, &str) -> String,
    /// Asks the binary on the host whether it knows `capture`: `(exe, subcommand form, flat form)`.
    detect: fn(&str, &str, &str) -> String,
}

/// The capture-and-upload part of a Cado Host command in the form `cli` asks for.
fn cado_run(o: &CadoOptions, cli: CadoCli, p: Platform, d: &Dialect, data: &str) -> Result<String> {
    let (exe, f, dataq) = (&d.exe, d.archive, (d.quote)(data));
    let words = |v: Vec<String>| v.iter().map(|w| format!("{w} ")).collect::<String>();
    let verbose = if o.verbose { "--verbose " } else { "" };
    let ssl = if o.skip_ssl_verify {
        " --skip_ssl_verify"
    } else {
        ""
    };
    let subcommands = (d.and_then)(
        &format!(
            "{exe} {verbose}capture {}--output_path {f}",
            words(o.capture_flags(p, d.quote)?)
        ),
        &format!("{exe} upload --presigned_data {dataq} --capture_path {f} --no_cleanup{ssl}"),
    );
    let flat = || -> Result<String> {
        Ok(format!(
            "{exe} --presigned_data {dataq} {}-o {f} --no_cleanup",
            words(o.flat_flags(p, d.quote)?)
        ))
    };
    Ok(match cli {
        CadoCli::Subcommands => subcommands,
        CadoCli::Flat => flat()?,
        CadoCli::Detect => (d.detect)(exe, &subcommands, &flat()?),
    })
}

/// The Cado Host command for Linux and macOS (`sh`): download, capture, upload.
fn cado_sh(
    url_base: &str,
    data: &str,
    o: &CadoOptions,
    cli: CadoCli,
    p: Platform,
    job: &JobId,
) -> Result<String> {
    let os = if p == Platform::Linux {
        "linux/cado-host"
    } else {
        "osx/cado-host"
    };
    let url = sh_quote(&format!("{url_base}/{os}"));
    let download = format!(
        "cd {wdq} && {{ if command -v curl >/dev/null 2>&1; then curl -sSf -o ./cado-host {url}; \
         elif command -v wget >/dev/null 2>&1; then wget -q -O ./cado-host {url}; \
         else echo 'Cado Host has failed: requires curl or wget'; exit 1; fi; }} && chmod +x ./cado-host && \
         f=\"$PWD/cado-host-capture-$(date +%s)-$(hostname 2>/dev/null | tr -cd 'A-Za-z0-9.-').tar.lz4\" && ",
        wdq = sh_quote(&p.workdir(job)),
    );
    let dialect = Dialect {
        quote: sh_quote,
        exe: "./cado-host".into(),
        archive: "\"$f\"",
        and_then: |a, b| format!("{a} && {b}"),
        detect: |exe, a, b| {
            format!("if {exe} --help 2>&1 | grep -q capture; then {a}; else {b}; fi")
        },
    };
    let run = cado_run(o, cli, p, &dialect, data)?;
    Ok(format!(
        "{download}{{ {run}; }} || {{ echo 'Cado Host has failed'; exit 1; }}"
    ))
}

/// The Cado Host command for Windows (PowerShell): download, capture, upload.
fn cado_windows(
    url_base: &str,
    data: &str,
    o: &CadoOptions,
    cli: CadoCli,
    job: &JobId,
) -> Result<String> {
    let wd = Platform::Windows.workdir(job);
    let exe = ps_quote(&format!("{wd}\\cado-host.exe"));
    let head = format!(
        "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'; \
         Set-Location -LiteralPath {wdq}; \
         Invoke-WebRequest -UseBasicParsing -Uri {urlq} -OutFile {exe}; \
         $ErrorActionPreference = 'Continue'; \
         $f = Join-Path {wdq} ('cado-host-capture-' + [DateTimeOffset]::UtcNow.ToUnixTimeSeconds() + '-' + $env:COMPUTERNAME + '.tar.lz4'); ",
        wdq = ps_quote(&wd),
        urlq = ps_quote(&format!("{url_base}/windows/cado-host.exe")),
    );
    let dialect = Dialect {
        quote: ps_quote,
        exe: format!("& {exe}"),
        archive: "$f",
        and_then: |a, b| format!("{a}; if ($LASTEXITCODE -eq 0) {{ {b} }}"),
        detect: |exe, a, b| {
            format!(
                "if (({exe} --help 2>&1 | Out-String) -match 'capture') {{ {a} }} else {{ {b} }}"
            )
        },
    };
    let run = cado_run(o, cli, Platform::Windows, &dialect, data)?;
    Ok(format!("{head}{run}; exit $LASTEXITCODE"))
}

/// Evidence rules for Cado Host in `mode`: the archive `cado-host-capture-*.tar.lz4` (older builds: a
/// `.zip`), at least 1 MiB (one default Windows capture was 139 MB, `reference/cado-host.md` 2.7), at most the
/// 5 GB single-upload limit of S3 (2.4), and free space for the capture before launch.
pub fn cado_rules(mode: CollectionMode) -> EvidenceRules {
    EvidenceRules {
        archive_globs: vec!["cado-host-capture-*.tar.lz4".into(), "*.zip".into()],
        min_bytes: MIB,
        max_bytes: Some(S3_SINGLE_UPLOAD_LIMIT),
        required_files: Vec::new(),
        remove_after_measure: true,
        min_free_bytes: match mode {
            CollectionMode::Light => GIB,
            CollectionMode::Default => 2 * GIB,
            // max has no size limit: room for an archive at the upload limit
            CollectionMode::Max => 6 * GIB,
        },
    }
}

/// Single-quotes a word for POSIX `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Single-quotes a word for PowerShell.
pub fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The collector commands of a run, one per platform, with the redactor that hides their secrets.
#[derive(Clone)]
pub struct CollectorSet {
    label: String,
    commands: BTreeMap<Platform, SecretString>,
    rules: BTreeMap<Platform, EvidenceRules>,
    secret_file: Option<SecretString>,
    redactor: Redactor,
}

impl std::fmt::Debug for CollectorSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorSet")
            .field("label", &self.label)
            .field("platforms", &self.commands.keys().collect::<Vec<_>>())
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl CollectorSet {
    /// A set from ready commands (e.g. answered by the Cado API). Every command and every extra secret is
    /// registered with the redactor. Evidence rules start as [`EvidenceRules::template_default`]; set them
    /// with [`CollectorSet::with_rules`].
    pub fn from_commands(
        label: impl Into<String>,
        commands: BTreeMap<Platform, SecretString>,
        extra_secrets: &[SecretString],
    ) -> CollectorSet {
        let mut redactor = Redactor::new();
        for s in extra_secrets {
            redactor.add_with_decoded(s);
        }
        let rules = commands
            .keys()
            .map(|&p| (p, EvidenceRules::template_default()))
            .collect();
        CollectorSet {
            label: label.into(),
            commands,
            rules,
            secret_file: None,
            redactor,
        }
    }

    /// Cado Host downloaded from `download_base` at `version`, collecting into the job directory and uploading
    /// with the pre-signed data.
    ///
    /// The command-line form follows the version ([`CadoCli::for_version`]) unless `options.cli` says
    /// otherwise. The archive is written to `cado-host-capture-<epoch>-<host>.tar.lz4` in the job directory
    /// (the name Cado imports automatically, made unique per host) and kept for the host-side size and hash
    /// check, which then removes it. Cado Host takes the pre-signed data only as an argument
    /// (`--presigned_data`; no file or standard-input form is documented), so it is on the collector's
    /// command line for the upload step.
    pub fn cado_presigned(
        presigned_data: &SecretString,
        version: &str,
        download_base: &str,
        options: &CadoOptions,
        platforms: &[Platform],
        job: &JobId,
    ) -> Result<CollectorSet> {
        let data = presigned_data.expose_secret();
        if data.trim().is_empty() {
            return Err(Error::invalid("pre-signed data", "it is empty"));
        }
        let version = version.trim();
        let version_ok = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !version_ok {
            return Err(Error::invalid(
                "cado host version",
                format!("`{version}` is not a version like v3.7.0"),
            ));
        }
        let version = if version.starts_with('v') {
            version.to_string()
        } else {
            format!("v{version}")
        };
        let base = download_base.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::invalid(
                "download base url",
                format!("`{base}` is not an http(s) url"),
            ));
        }
        let cli = options
            .cli
            .unwrap_or_else(|| CadoCli::for_version(&version));
        let mut commands = BTreeMap::new();
        for &p in platforms {
            let cmd = match p {
                Platform::Windows => cado_windows(
                    &format!("{base}/cado-host/{version}"),
                    data,
                    options,
                    cli,
                    job,
                )?,
                Platform::Linux | Platform::Mac => cado_sh(
                    &format!("{base}/cado-host/{version}"),
                    data,
                    options,
                    cli,
                    p,
                    job,
                )?,
            };
            commands.insert(p, SecretString::from(cmd));
        }
        let mut set = CollectorSet::from_commands(
            format!("cado-host {version} (pre-signed)"),
            commands,
            std::slice::from_ref(presigned_data),
        );
        for &p in platforms {
            set = set.with_rules(p, cado_rules(options.mode));
        }
        Ok(set)
    }

    /// Commands from user templates, one per platform. Placeholders:
    ///
    /// - `{job}`: the job id; `{workdir}`: the per-job work directory;
    /// - `{secret}`: the template secret (e.g. a pre-signed URL) as one word quoted for the platform's shell
    ///   (`'...'` for sh, `'...'` with doubled quotes for PowerShell): do not quote it again;
    /// - `{secret_raw}`: the secret pasted as is, for the rare collector that needs it inside its own quoting;
    /// - `{secret_file}`: the path of an owner-only file in the work directory holding the secret, for
    ///   collectors that can read it from a file (or `< {secret_file}` for standard input), so it stays off
    ///   every command line;
    /// - `{{` and `}}` for literal braces.
    ///
    /// The secret is redacted in every printed form. Unknown placeholders are an error.
    pub fn from_templates(
        label: impl Into<String>,
        templates: &BTreeMap<Platform, String>,
        secret: Option<&SecretString>,
        job: &JobId,
    ) -> Result<CollectorSet> {
        if templates.is_empty() {
            return Err(Error::invalid("collector templates", "no template given"));
        }
        let mut commands = BTreeMap::new();
        let mut uses_file = false;
        for (&p, t) in templates {
            let expanded = expand_template(t, p, secret, job)
                .map_err(|e| Error::invalid(format!("collector template for {p}"), e))?;
            uses_file |= expanded.uses_secret_file;
            commands.insert(p, SecretString::from(expanded.text));
        }
        let mut extra: Vec<SecretString> = Vec::new();
        if let Some(s) = secret {
            // the quoted forms differ from the raw value when the secret holds a quote
            extra.push(SecretString::from(sh_quote(s.expose_secret())));
            extra.push(SecretString::from(ps_quote(s.expose_secret())));
            extra.push(s.clone());
        }
        let mut set = CollectorSet::from_commands(label, commands, &extra);
        if uses_file {
            set.secret_file = secret.cloned();
        }
        Ok(set)
    }

    /// The launch script for `platform` (`docs/collector-protocol.md`), secret: it holds the command.
    pub fn launch_script(&self, platform: Platform, job: &JobId) -> Option<SecretString> {
        let command = self.commands.get(&platform)?;
        let rules = self.rules.get(&platform)?;
        Some(crate::script::launch_script(
            platform,
            job,
            crate::script::Launch {
                command,
                rules,
                secret_file: self.secret_file.as_ref(),
            },
        ))
    }

    /// The launch script for `platform` with the command and the secret file replaced by their redacted
    /// forms, for display (dry run).
    pub fn launch_script_redacted(&self, platform: Platform, job: &JobId) -> Option<String> {
        let command = SecretString::from(self.display(platform)?);
        let rules = self.rules.get(&platform)?;
        let hidden = SecretString::from(crate::redact::REDACTED);
        let script = crate::script::launch_script(
            platform,
            job,
            crate::script::Launch {
                command: &command,
                rules,
                secret_file: self.secret_file.as_ref().map(|_| &hidden),
            },
        );
        Some(self.redactor.redact_known(script.expose_secret()))
    }

    /// Replaces the evidence rules of `platform` (ignored for a platform the set has no command for).
    pub fn with_rules(mut self, platform: Platform, rules: EvidenceRules) -> CollectorSet {
        if self.commands.contains_key(&platform) {
            self.rules.insert(platform, rules);
        }
        self
    }

    /// The evidence rules for `platform`: free space before launch, archive size bounds and required files
    /// after exit.
    pub fn rules(&self, platform: Platform) -> Option<&EvidenceRules> {
        self.rules.get(&platform)
    }

    /// A label for reports and the journal (no secret).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The platforms this set has a command for.
    pub fn platforms(&self) -> Vec<Platform> {
        self.commands.keys().copied().collect()
    }

    /// The raw command for `platform` (secret: only for building launch scripts).
    pub fn command(&self, platform: Platform) -> Option<&SecretString> {
        self.commands.get(&platform)
    }

    /// The command for `platform` with secrets redacted, for display.
    pub fn display(&self, platform: Platform) -> Option<String> {
        self.commands
            .get(&platform)
            .map(|c| self.redactor.redact(c.expose_secret()))
    }

    /// The redactor that hides this set's secrets.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Mutable access to the redactor, to register derived secrets (encoded commands).
    pub fn redactor_mut(&mut self) -> &mut Redactor {
        &mut self.redactor
    }
}

struct Expanded {
    text: String,
    uses_secret_file: bool,
}

fn expand_template(
    t: &str,
    p: Platform,
    secret: Option<&SecretString>,
    job: &JobId,
) -> std::result::Result<Expanded, String> {
    let mut out = String::with_capacity(t.len() + 64);
    let mut uses_secret_file = false;
    let mut chars = t.char_indices().peekable();
    let quote = |s: &str| match p {
        Platform::Windows => ps_quote(s),
        Platform::Linux | Platform::Mac => sh_quote(s),
    };
    let sep = if p == Platform::Windows { '\\' } else { '/' };
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if matches!(chars.peek(), Some((_, '{'))) => {
                chars.next();
                out.push('{');
            }
            '}' if matches!(chars.peek(), Some((_, '}'))) => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let end = t[i..]
                    .find('}')
                    .ok_or_else(|| format!("unclosed `{{` at byte {i}"))?;
                let name = &t[i + 1..i + end];
                let needs_secret = || {
                    secret
                        .ok_or_else(|| format!("uses {{{name}}} but no template secret was given"))
                };
                match name {
                    "job" => out.push_str(job.as_str()),
                    "workdir" => out.push_str(&p.workdir(job)),
                    "secret" => out.push_str(&quote(needs_secret()?.expose_secret())),
                    "secret_raw" => out.push_str(needs_secret()?.expose_secret()),
                    "secret_file" => {
                        needs_secret()?;
                        uses_secret_file = true;
                        out.push_str(&quote(&format!("{}{sep}secret", p.workdir(job))));
                    }
                    other => {
                        return Err(format!(
                            "unknown placeholder `{{{other}}}` (known: job, workdir, secret, secret_raw, secret_file)"
                        ));
                    }
                }
                for _ in 0..end {
                    chars.next();
                }
            }
            '}' => return Err(format!("unmatched `}}` at byte {i}")),
            c => out.push(c),
        }
    }
    if out.trim().is_empty() {
        return Err("the template is empty".into());
    }
    Ok(Expanded {
        text: out,
        uses_secret_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobId {
        JobId::parse("3f9a1c2e").unwrap()
    }

    fn presigned(
        version: &str,
        opts: &CadoOptions,
        platforms: &[Platform],
    ) -> Result<CollectorSet> {
        CollectorSet::cado_presigned(
            &SecretString::from("eyJ1cmwiOiJodHRwczovL2J1Y2tldC5leGFtcGxlIn0="),
            version,
            DEFAULT_DOWNLOAD_BASE,
            opts,
            platforms,
            &job(),
        )
    }

    #[test]
    fn presigned_commands_per_platform() {
        let opts = CadoOptions {
            mode: CollectionMode::Light,
            memory: true,
            groups: vec!["processes".into()],
            ..Default::default()
        };
        let set = presigned("3.7.0", &opts, &Platform::ALL).unwrap();
        let win = set
            .command(Platform::Windows)
            .unwrap()
            .expose_secret()
            .to_string();
        assert!(
            win.contains(r"Set-Location -LiteralPath 'C:\Windows\Temp\cado-host-3f9a1c2e'"),
            "{win}"
        );
        assert!(win.contains("/cado-host/v3.7.0/windows/cado-host.exe"));
        let exe = r"& 'C:\Windows\Temp\cado-host-3f9a1c2e\cado-host.exe'";
        assert!(
            win.contains(&format!(
                "{exe} capture --collection_mode light --include_memory --groups 'processes' --output_path $f; \
                 if ($LASTEXITCODE -eq 0) {{ {exe} upload --presigned_data 'eyJ1"
            )),
            "{win}"
        );
        assert!(win.ends_with("--capture_path $f --no_cleanup }; exit $LASTEXITCODE"));
        crate::script::tests::assert_powershell_parses("cado host (windows)", &win);
        let lin = set
            .command(Platform::Linux)
            .unwrap()
            .expose_secret()
            .to_string();
        assert!(lin.starts_with("cd '/tmp/cado-host-3f9a1c2e' && "));
        assert!(lin.contains("/cado-host/v3.7.0/linux/cado-host"));
        assert!(lin.contains(
            "./cado-host capture --collection_mode light --groups 'processes' --output_path \"$f\" && \
             ./cado-host upload --presigned_data 'eyJ1"
        ));
        assert!(lin.ends_with("|| { echo 'Cado Host has failed'; exit 1; }"));
        let mac = set
            .command(Platform::Mac)
            .unwrap()
            .expose_secret()
            .to_string();
        assert!(mac.contains("/cado-host/v3.7.0/osx/cado-host"));
        assert!(!mac.contains("memory"), "no memory option on macOS: {mac}");
        for p in Platform::ALL {
            let shown = set.display(p).unwrap();
            assert!(!shown.contains("eyJ1cmwi"), "{shown}");
            assert!(shown.contains("--presigned_data '<redacted>'"), "{shown}");
        }
        assert!(!format!("{set:?}").contains("eyJ1"));
    }

    #[test]
    fn the_cli_form_follows_the_version() {
        assert_eq!(CadoCli::for_version("v1.4.9"), CadoCli::Flat);
        assert_eq!(CadoCli::for_version("2.6.0"), CadoCli::Detect);
        assert_eq!(CadoCli::for_version("v3.7.0"), CadoCli::Subcommands);
        assert_eq!(CadoCli::for_version("v10.1"), CadoCli::Subcommands);
        assert_eq!(CadoCli::for_version("latest"), CadoCli::Detect);
        let light = CadoOptions {
            mode: CollectionMode::Light,
            ..Default::default()
        };
        let flat = presigned("v1.4.9", &light, &[Platform::Linux, Platform::Windows]).unwrap();
        let lin = flat.command(Platform::Linux).unwrap().expose_secret();
        assert!(
            lin.contains(
                "./cado-host --presigned_data 'eyJ1cmwiOiJodHRwczovL2J1Y2tldC5leGFtcGxlIn0=' --light_mode --skip_linux_memory -o \"$f\" --no_cleanup"
            ),
            "{lin}"
        );
        assert!(!lin.contains(" capture "));
        let win = flat.command(Platform::Windows).unwrap().expose_secret();
        crate::script::tests::assert_powershell_parses("flat cado host (windows)", win);
        // the flat form has no max mode and no groups: said before anything runs
        let max = CadoOptions {
            mode: CollectionMode::Max,
            ..Default::default()
        };
        let err = presigned("v1.4.9", &max, &[Platform::Linux]).unwrap_err();
        assert!(
            std::error::Error::source(&err)
                .unwrap()
                .to_string()
                .contains("collection mode max is not available"),
            "{err}"
        );
        // forced form
        let forced = CadoOptions {
            cli: Some(CadoCli::Subcommands),
            ..Default::default()
        };
        let set = presigned("v2.6.0", &forced, &[Platform::Linux]).unwrap();
        assert!(
            set.command(Platform::Linux)
                .unwrap()
                .expose_secret()
                .contains(" capture ")
        );
        // detected on the host
        let set = presigned("v2.6.0", &CadoOptions::default(), &Platform::ALL).unwrap();
        let lin = set.command(Platform::Linux).unwrap().expose_secret();
        assert!(
            lin.contains("if ./cado-host --help 2>&1 | grep -q capture; then ./cado-host capture")
        );
        crate::script::tests::assert_powershell_parses(
            "detecting cado host (windows)",
            set.command(Platform::Windows).unwrap().expose_secret(),
        );
    }

    /// The Linux command run by `sh` and `bash` against a fake `curl` that installs a fake Cado Host
    /// recording its arguments: each form calls the binary as documented, and the archive lands in the job
    /// directory under the name Cado imports.
    #[test]
    fn the_cado_commands_run_as_documented() {
        // the fake binary: `--help` lists the subcommands when SUB is set; `capture`/`-o` write the archive
        let fake_cado = r#"#!/bin/sh
echo "$*" >> "$LOG"
if [ "$1" = --help ]; then [ -n "$SUB" ] && echo "{version,capture,upload}"; exit 0; fi
prev=
for a in "$@"; do
  if [ "$prev" = --output_path ] || [ "$prev" = -o ]; then printf 'archive' > "$a"; fi
  prev=$a
done
"#;
        for (version, sub, first, second) in [
            (
                "v3.7.0",
                "",
                "capture --skip_memory --output_path ",
                "upload --presigned_data",
            ),
            ("v1.4.9", "", "--presigned_data", ""),
            (
                "v2.6.0",
                "1",
                "--help",
                "capture --skip_memory --output_path ",
            ),
            ("v2.6.0", "", "--help", "--presigned_data"),
        ] {
            for shell in ["sh", "bash"] {
                let tmp = tempfile::tempdir().unwrap();
                let bin = tmp.path().join("bin");
                std::fs::create_dir(&bin).unwrap();
                std::fs::write(tmp.path().join("cado-host.sh"), fake_cado).unwrap();
                std::fs::write(
                    bin.join("curl"),
                    format!(
                        "#!/bin/sh\ncp {} ./cado-host\n",
                        tmp.path().join("cado-host.sh").display()
                    ),
                )
                .unwrap();
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(bin.join("curl"), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
                let set = presigned(version, &CadoOptions::default(), &[Platform::Linux]).unwrap();
                let wd = tmp.path().join("wd");
                std::fs::create_dir(&wd).unwrap();
                let cmd = set
                    .command(Platform::Linux)
                    .unwrap()
                    .expose_secret()
                    .replace(
                        "cd '/tmp/cado-host-3f9a1c2e'",
                        &format!("cd '{}'", wd.display()),
                    );
                let log = tmp.path().join("log");
                let out = std::process::Command::new(shell)
                    .arg("-c")
                    .arg(&cmd)
                    .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                    .env("LOG", &log)
                    .env("SUB", sub)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{shell} {version}: {out:?}");
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    "",
                    "{shell} {version}"
                );
                let calls = std::fs::read_to_string(&log).unwrap();
                let calls: Vec<&str> = calls.lines().collect();
                assert!(calls[0].starts_with(first), "{shell} {version}: {calls:?}");
                if !second.is_empty() {
                    assert!(calls[1].starts_with(second), "{shell} {version}: {calls:?}");
                }
                let archives: Vec<String> = std::fs::read_dir(&wd)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("cado-host-capture-") && n.ends_with(".tar.lz4"))
                    .collect();
                assert_eq!(archives.len(), 1, "{shell} {version}: {archives:?}");
                // the archive path given to upload is the one capture wrote
                if version == "v3.7.0" {
                    assert!(calls[1].contains(&format!(
                        "--capture_path {}/{}",
                        wd.display(),
                        archives[0]
                    )));
                }
            }
        }
    }

    #[test]
    fn size_warnings_before_launch() {
        assert!(
            CadoOptions::default()
                .size_warnings(&Platform::ALL)
                .is_empty()
        );
        let max = CadoOptions {
            mode: CollectionMode::Max,
            memory: true,
            extended_memory: true,
            ..Default::default()
        };
        let w = max.size_warnings(&Platform::ALL);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("collection mode max has no file size limit"));
        assert!(w.iter().all(|w| w.contains("5 GB upload limit")));
        // windows memory does not concern a linux-only run
        assert_eq!(max.size_warnings(&[Platform::Linux]).len(), 2);
    }

    #[test]
    fn presigned_rejects_bad_input() {
        let data = SecretString::from("eyJ1cmwiOi");
        let opts = CadoOptions::default();
        assert!(
            CollectorSet::cado_presigned(
                &SecretString::from(" "),
                "3.7.0",
                DEFAULT_DOWNLOAD_BASE,
                &opts,
                &[Platform::Linux],
                &job()
            )
            .is_err()
        );
        assert!(
            CollectorSet::cado_presigned(
                &data,
                "3.7.0; rm -rf /",
                DEFAULT_DOWNLOAD_BASE,
                &opts,
                &[Platform::Linux],
                &job()
            )
            .is_err()
        );
        assert!(
            CollectorSet::cado_presigned(
                &data,
                "3.7.0",
                "ftp://x",
                &opts,
                &[Platform::Linux],
                &job()
            )
            .is_err()
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(ps_quote("it's"), "'it''s'");
        let opts = CadoOptions {
            additional_files: vec!["/home/o'neil/.bash_history".into()],
            ..Default::default()
        };
        let set = CollectorSet::cado_presigned(
            &SecretString::from("abcd1234"),
            "v3.7.0",
            DEFAULT_DOWNLOAD_BASE,
            &opts,
            &[Platform::Linux],
            &job(),
        )
        .unwrap();
        assert!(
            set.command(Platform::Linux)
                .unwrap()
                .expose_secret()
                .contains(r"--additional_files '/home/o'\''neil/.bash_history'")
        );
    }

    /// A pre-signed S3 URL as AWS issues them: many parameters, `&`, `%`, `=`, `/` in the credential.
    const PRESIGNED: &str = "https://evidence-bucket.s3.eu-west-1.amazonaws.com/uac/host-1.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261202%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261202T043000Z&X-Amz-Expires=7200&X-Amz-SignedHeaders=host&X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    #[test]
    fn templates_expand_placeholders_and_hide_the_secret() {
        let mut t = BTreeMap::new();
        t.insert(
            Platform::Linux,
            "cd {workdir} && ./uac -p ir_triage --aws-s3-presigned-url {secret} out-{job} {{x}}"
                .to_string(),
        );
        let secret = SecretString::from("https://bucket.example/k?X-Amz-Signature=abcdef");
        let set = CollectorSet::from_templates("uac", &t, Some(&secret), &job()).unwrap();
        assert_eq!(
            set.command(Platform::Linux).unwrap().expose_secret(),
            "cd /tmp/cado-host-3f9a1c2e && ./uac -p ir_triage --aws-s3-presigned-url 'https://bucket.example/k?X-Amz-Signature=abcdef' out-3f9a1c2e {x}"
        );
        assert_eq!(
            set.display(Platform::Linux).unwrap(),
            "cd /tmp/cado-host-3f9a1c2e && ./uac -p ir_triage --aws-s3-presigned-url <redacted> out-3f9a1c2e {x}"
        );
        assert_eq!(set.platforms(), vec![Platform::Linux]);
    }

    /// Runs `command` through a real shell, in a directory holding a script `uac` that prints its arguments
    /// one per line.
    fn argv_through(shell: &str, command: &str) -> Vec<String> {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("uac"),
            "for a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n",
        )
        .unwrap();
        let out = std::process::Command::new(shell)
            .arg("-c")
            .arg(command)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{shell}");
        assert!(out.status.success(), "{shell}: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `{secret}` arrives as one intact argument, through `sh` and `bash`, for a real pre-signed URL and for
    /// a secret holding quotes; `{secret_raw}` is pasted as is.
    #[test]
    fn the_secret_reaches_the_collector_intact() {
        let mut t = BTreeMap::new();
        t.insert(
            Platform::Linux,
            "sh uac -p ir_triage --aws-s3-presigned-url {secret} out-{job}".to_string(),
        );
        for secret in [PRESIGNED, "it's \"quoted\" $HOME `id` & done", "a'b"] {
            let s = SecretString::from(secret);
            let set = CollectorSet::from_templates("uac", &t, Some(&s), &job()).unwrap();
            let cmd = set.command(Platform::Linux).unwrap().expose_secret();
            for shell in ["sh", "bash"] {
                assert_eq!(
                    argv_through(shell, cmd),
                    vec![
                        "[-p]".to_string(),
                        "[ir_triage]".into(),
                        "[--aws-s3-presigned-url]".into(),
                        format!("[{secret}]"),
                        "[out-3f9a1c2e]".into(),
                    ],
                    "{shell}"
                );
            }
            // nothing of it is shown
            let shown = set.display(Platform::Linux).unwrap();
            assert!(!shown.contains("X-Amz-Signature=5d67"), "{shown}");
            assert!(!shown.contains("quoted"), "{shown}");
            assert!(
                !shown.contains("a'b") && !shown.contains(r"a'\''b"),
                "{shown}"
            );
        }
        // `{secret_raw}` pastes it as is
        let mut raw = BTreeMap::new();
        raw.insert(
            Platform::Linux,
            "sh uac --aws-s3-presigned-url \"{secret_raw}\"".to_string(),
        );
        let s = SecretString::from(PRESIGNED);
        let set = CollectorSet::from_templates("uac", &raw, Some(&s), &job()).unwrap();
        assert_eq!(
            set.command(Platform::Linux).unwrap().expose_secret(),
            format!("sh uac --aws-s3-presigned-url \"{PRESIGNED}\"")
        );
        // PowerShell quoting doubles single quotes
        let mut win = BTreeMap::new();
        win.insert(Platform::Windows, "& kape.exe --s3url {secret}".to_string());
        let s = SecretString::from("https://x/y?a=1&b='2'");
        let set = CollectorSet::from_templates("kape", &win, Some(&s), &job()).unwrap();
        let cmd = set
            .command(Platform::Windows)
            .unwrap()
            .expose_secret()
            .to_string();
        assert_eq!(cmd, "& kape.exe --s3url 'https://x/y?a=1&b=''2'''");
        crate::script::tests::assert_powershell_parses("kape template", &cmd);
    }

    /// The template examples of `docs/triage.md`, expanded with a real-shaped URL: the Windows one parses as
    /// PowerShell, the Linux one as sh and bash.
    #[test]
    fn the_documented_template_examples_are_valid_scripts() {
        let doc = include_str!("../../../docs/triage.md");
        let example = |prefix: &str| {
            let at = doc.find(prefix).expect(prefix) + prefix.len();
            doc[at..].lines().next().unwrap().to_string()
        };
        let mut t = BTreeMap::new();
        t.insert(Platform::Linux, example("# linux=uac.txt\n"));
        t.insert(Platform::Windows, example("# windows=kape.txt\n"));
        let s = SecretString::from(PRESIGNED);
        let set = CollectorSet::from_templates("docs", &t, Some(&s), &job()).unwrap();
        crate::script::tests::assert_powershell_parses(
            "kape example",
            set.command(Platform::Windows).unwrap().expose_secret(),
        );
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell)
                .arg("-n")
                .arg("-c")
                .arg(set.command(Platform::Linux).unwrap().expose_secret())
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {out:?}");
        }
    }

    #[test]
    fn the_secret_file_placeholder() {
        let mut t = BTreeMap::new();
        t.insert(
            Platform::Linux,
            "./collector --creds {secret_file}".to_string(),
        );
        t.insert(
            Platform::Windows,
            "& .\\collector.exe --creds {secret_file}".to_string(),
        );
        let s = SecretString::from("k=v&x=y");
        let set = CollectorSet::from_templates("c", &t, Some(&s), &job()).unwrap();
        assert_eq!(
            set.command(Platform::Linux).unwrap().expose_secret(),
            "./collector --creds '/tmp/cado-host-3f9a1c2e/secret'"
        );
        assert_eq!(
            set.command(Platform::Windows).unwrap().expose_secret(),
            "& .\\collector.exe --creds 'C:\\Windows\\Temp\\cado-host-3f9a1c2e\\secret'"
        );
        // the launch script writes the file; its display hides the content
        let launch = set.launch_script(Platform::Linux, &job()).unwrap();
        assert!(
            launch
                .expose_secret()
                .contains("printf '%s' 'k=v&x=y' > \"$d/secret\"")
        );
        let shown = set.launch_script_redacted(Platform::Linux, &job()).unwrap();
        assert!(!shown.contains("k=v&x=y"), "{shown}");
        let win = set
            .launch_script_redacted(Platform::Windows, &job())
            .unwrap();
        crate::script::tests::assert_powershell_parses("windows launch (redacted)", &win);
        assert!(CollectorSet::from_templates("c", &t, None, &job()).is_err());
    }

    #[test]
    fn template_errors_name_the_problem() {
        let mut t = BTreeMap::new();
        t.insert(Platform::Windows, "kape.exe {tdest}".to_string());
        let err = CollectorSet::from_templates("kape", &t, None, &job()).unwrap_err();
        assert_eq!(err.to_string(), "invalid collector template for windows");
        assert!(
            std::error::Error::source(&err)
                .unwrap()
                .to_string()
                .contains("unknown placeholder `{tdest}`")
        );
        t.insert(Platform::Windows, "kape.exe {secret}".to_string());
        assert!(CollectorSet::from_templates("kape", &t, None, &job()).is_err());
        t.insert(Platform::Windows, "kape.exe {job".to_string());
        assert!(CollectorSet::from_templates("kape", &t, None, &job()).is_err());
    }

    #[test]
    fn api_options_follow_the_cado_schema() {
        let o = CadoOptions {
            mode: CollectionMode::Max,
            groups: vec!["processes".into()],
            ..Default::default()
        };
        let v = o.to_api_options(Platform::Linux);
        assert_eq!(v["max_mode"], true);
        assert_eq!(v["as_super"], true);
        assert_eq!(v["groups"][0], "processes");
        assert_eq!(o.to_api_options(Platform::Windows)["as_super"], false);
    }

    #[test]
    fn evidence_rules_per_collector_and_platform() {
        let set = CollectorSet::cado_presigned(
            &SecretString::from("abcd1234"),
            "v3.7.0",
            DEFAULT_DOWNLOAD_BASE,
            &CadoOptions {
                mode: CollectionMode::Max,
                ..Default::default()
            },
            &[Platform::Linux, Platform::Windows],
            &job(),
        )
        .unwrap();
        let r = set.rules(Platform::Linux).unwrap();
        assert_eq!(r.max_bytes, Some(5_000_000_000));
        assert_eq!(r.min_bytes, MIB);
        assert_eq!(r.min_free_bytes, 6 * GIB);
        assert_eq!(set.rules(Platform::Windows), Some(r));
        assert_eq!(set.rules(Platform::Mac), None);

        let mut t = BTreeMap::new();
        t.insert(Platform::Linux, "./uac -p ir_triage .".to_string());
        let custom = EvidenceRules {
            required_files: vec!["uac-*.log".into()],
            ..EvidenceRules::template_default()
        };
        let set = CollectorSet::from_templates("uac", &t, None, &job())
            .unwrap()
            .with_rules(Platform::Linux, custom.clone())
            .with_rules(Platform::Windows, EvidenceRules::template_default());
        assert_eq!(set.rules(Platform::Linux), Some(&custom));
        assert_eq!(set.rules(Platform::Windows), None, "no windows command");
    }
}
