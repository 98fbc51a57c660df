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

    /// Cado Host command-line flags for `platform` (current CLI names; see `docs/triage.md`).
    fn flags(&self, platform: Platform, quote: fn(&str) -> String) -> String {
        let mut f = Vec::new();
        match self.mode {
            CollectionMode::Default => {}
            CollectionMode::Light => f.push("--collection_mode light".to_string()),
            CollectionMode::Max => f.push("--collection_mode max".to_string()),
        }
        match platform {
            Platform::Windows if self.memory => f.push("--include_memory".into()),
            Platform::Linux | Platform::Mac if !self.memory => f.push("--skip_memory".into()),
            _ => {}
        }
        if self.extended_memory && platform != Platform::Windows {
            f.push("--include_large_memory".into());
        }
        if !self.groups.is_empty() {
            f.push(format!(
                "--groups {}",
                self.groups
                    .iter()
                    .map(|g| quote(g))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if !self.additional_files.is_empty() {
            f.push(format!(
                "--additional_files {}",
                self.additional_files
                    .iter()
                    .map(|g| quote(g))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if self.skip_ssl_verify {
            f.push("--skip_ssl_verify".into());
        }
        if self.verbose {
            f.push("--verbose".into());
        }
        f.join(" ")
    }
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

    /// Cado Host downloaded from `download_base` at `version`, uploading with the pre-signed data given on the
    /// command line.
    ///
    /// The flag layout is the one `docs/triage.md` documents (`--presigned_data` on the binary); it is not
    /// verified against every Cado Host version, so prefer the Cado API source or a template when in doubt.
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
        let mut commands = BTreeMap::new();
        for &p in platforms {
            let wd = p.workdir(job);
            let cmd = match p {
                Platform::Windows => {
                    let url = format!("{base}/cado-host/{version}/windows/cado-host.exe");
                    let exe = format!("{wd}\\cado-host.exe");
                    format!(
                        "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'; \
                         Set-Location -LiteralPath {wdq}; \
                         Invoke-WebRequest -UseBasicParsing -Uri {urlq} -OutFile {exeq}; \
                         & {exeq} --presigned_data {dataq} {flags}; exit $LASTEXITCODE",
                        wdq = ps_quote(&wd),
                        urlq = ps_quote(&url),
                        exeq = ps_quote(&exe),
                        dataq = ps_quote(data),
                        flags = options.flags(p, ps_quote),
                    )
                }
                Platform::Linux | Platform::Mac => {
                    let os = if p == Platform::Linux {
                        "linux/cado-host"
                    } else {
                        "osx/cado-host"
                    };
                    let url = sh_quote(&format!("{base}/cado-host/{version}/{os}"));
                    format!(
                        "cd {wdq} && {{ if command -v curl >/dev/null 2>&1; then curl -sSf -o ./cado-host {url}; \
                         elif command -v wget >/dev/null 2>&1; then wget -q -O ./cado-host {url}; \
                         else echo 'Cado Host has failed: requires curl or wget'; exit 1; fi; }} && \
                         chmod +x ./cado-host && ./cado-host --presigned_data {dataq} {flags} \
                         || {{ echo 'Cado Host has failed'; exit 1; }}",
                        wdq = sh_quote(&wd),
                        dataq = sh_quote(data),
                        flags = options.flags(p, sh_quote),
                    )
                }
            };
            commands.insert(
                p,
                SecretString::from(cmd.split_whitespace().collect::<Vec<_>>().join(" ")),
            );
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
        Some(self.redactor.redact(script.expose_secret()))
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

    #[test]
    fn presigned_commands_per_platform() {
        let data = SecretString::from("eyJ1cmwiOiJodHRwczovL2J1Y2tldC5leGFtcGxlIn0=");
        let opts = CadoOptions {
            mode: CollectionMode::Light,
            memory: true,
            groups: vec!["processes".into()],
            ..Default::default()
        };
        let set = CollectorSet::cado_presigned(
            &data,
            "3.7.0",
            DEFAULT_DOWNLOAD_BASE,
            &opts,
            &Platform::ALL,
            &job(),
        )
        .unwrap();
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
        assert!(win.contains(
            r"& 'C:\Windows\Temp\cado-host-3f9a1c2e\cado-host.exe' --presigned_data 'eyJ1"
        ));
        assert!(
            win.contains("--collection_mode light --include_memory --groups 'processes'"),
            "{win}"
        );
        let lin = set
            .command(Platform::Linux)
            .unwrap()
            .expose_secret()
            .to_string();
        assert!(lin.starts_with("cd '/tmp/cado-host-3f9a1c2e' && "));
        assert!(lin.contains("/cado-host/v3.7.0/linux/cado-host"));
        assert!(!lin.contains("--skip_memory"));
        assert!(lin.ends_with("|| { echo 'Cado Host has failed'; exit 1; }"));
        let mac = set
            .command(Platform::Mac)
            .unwrap()
            .expose_secret()
            .to_string();
        assert!(mac.contains("/cado-host/v3.7.0/osx/cado-host"));
        for p in Platform::ALL {
            let shown = set.display(p).unwrap();
            assert!(!shown.contains("eyJ1cmwi"), "{shown}");
            assert!(shown.contains("--presigned_data '<redacted>'"), "{shown}");
        }
        assert!(!format!("{set:?}").contains("eyJ1"));
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
