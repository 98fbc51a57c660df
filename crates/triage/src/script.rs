//! The launch and status-probe scripts of `docs/collector-protocol.md`, and the `runscript -Raw` command
//! string that carries them.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use crate::collector::{ps_quote, sh_quote};
use crate::error::{Error, Result};
use crate::evidence::EvidenceRules;
use crate::platform::{JobId, Platform};

/// Prefix of every line the orchestrator parses.
pub const MARKER: &str = "FALCON-TRIAGE";

/// `powershell.exe -EncodedCommand` argument: base64 of the UTF-16LE text.
pub fn powershell_encode(text: &str) -> String {
    let bytes: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The well-known SIDs allowed to own and access a Windows job directory: LocalSystem and the local
/// Administrators group (locale-independent, unlike their names).
const WINDOWS_TRUSTED_SIDS: &str = "@(\"S-1-5-18\", \"S-1-5-32-544\")";

/// Where the POSIX job directories live and which uid must own them. It is fixed when the scripts are
/// generated and never read from the host; only the crate's tests move it (to a temp directory owned by the
/// test's user), so the real scripts can be run by `sh` and `bash` without root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostLayout {
    /// Parent directory of the job directories (`/tmp`).
    pub sh_root: String,
    /// Owner every job directory must have (0: root).
    pub sh_owner_uid: u32,
}

impl HostLayout {
    /// The layout of a real host: `/tmp/cado-host-<job>` owned by root.
    pub fn production() -> HostLayout {
        HostLayout {
            sh_root: "/tmp".into(),
            sh_owner_uid: 0,
        }
    }

    /// A layout under `root` owned by `uid` (tests only).
    #[cfg(test)]
    pub fn for_tests(root: &std::path::Path, uid: u32) -> HostLayout {
        HostLayout {
            sh_root: root.display().to_string(),
            sh_owner_uid: uid,
        }
    }

    fn sh_workdir(&self, job: &JobId) -> String {
        format!("{}/cado-host-{job}", self.sh_root)
    }
}

/// What a launch script starts and checks.
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    /// The collector command (secret).
    pub command: &'a SecretString,
    /// Free space before launch, archive pattern and required files after exit.
    pub rules: &'a EvidenceRules,
    /// Content of the owner-only `secret` file in the job directory (the `{secret_file}` placeholder), if
    /// the collector reads its secret from a file.
    pub secret_file: Option<&'a SecretString>,
}

impl std::fmt::Debug for Launch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("rules", self.rules)
            .field("secret_file", &self.secret_file.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// The launch script for `platform` (`docs/collector-protocol.md`, "Launch"): checks free space, takes the
/// job directory as an atomic lock (created fresh, owner-only), stores the command in an owner-only file,
/// starts it detached, records pid and process start time, and after the collector exits measures the
/// archive and writes the exit code. The result holds the collector command, so it is secret.
pub fn launch_script(platform: Platform, job: &JobId, launch: Launch<'_>) -> SecretString {
    launch_script_in(&HostLayout::production(), platform, job, launch)
}

pub(crate) fn launch_script_in(
    layout: &HostLayout,
    platform: Platform,
    job: &JobId,
    launch: Launch<'_>,
) -> SecretString {
    let text = match platform {
        Platform::Linux | Platform::Mac => sh_launch(layout, job, launch),
        Platform::Windows => powershell_launch(job, launch),
    };
    SecretString::from(text)
}

/// `ceil(bytes / 1024)`: `df -Pk` counts kibibytes.
fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

/// Space-separated sh-quoted words.
fn sh_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `@('a', 'b')` of PowerShell-quoted words.
fn ps_array(words: &[String]) -> String {
    format!(
        "@({})",
        words
            .iter()
            .map(|w| ps_quote(w))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The sh test that the job directory `$d` is ours: a real directory (not a link), owned by `uid`, mode
/// `drwx------` (a trailing `.` is an SELinux context, `@` macOS extended attributes; `+`, an ACL, fails).
fn sh_trusted(uid: u32) -> String {
    format!(
        "[ ! -L \"$d\" ] && [ -d \"$d\" ] && set -- $(ls -ldn \"$d\" 2>/dev/null) && [ \"$3\" = {uid} ] && [ \"${{1%[.@]}}\" = drwx------ ]"
    )
}

fn sh_launch(layout: &HostLayout, job: &JobId, launch: Launch<'_>) -> String {
    let wd = layout.sh_workdir(job);
    let root = &layout.sh_root;
    let rules = launch.rules;
    let required = rules.min_free_bytes;
    let trusted = sh_trusted(layout.sh_owner_uid);
    let secret_file = match launch.secret_file {
        Some(s) => format!(
            "printf '%s' {} > \"$d/secret\"\n",
            sh_quote(s.expose_secret())
        ),
        None => String::new(),
    };
    let globs = sh_words(&rules.archive_globs);
    let required_files = if rules.required_files.is_empty() {
        String::new()
    } else {
        format!(
            " for r in {}; do set -- \"$d\"/$r; [ -e \"$1\" ] || printf '%s\\n' \"$r\" >> \"$d/missing\"; done;",
            sh_words(&rules.required_files)
        )
    };
    format!(
        "d={wd}\n\
         umask 077\n\
         free=$(df -Pk {root} 2>/dev/null | awk 'NR==2 {{print $4}}')\n\
         case \"$free\" in ''|*[!0-9]*) ;; *) if [ \"$free\" -lt {req_kib} ]; then echo \"{MARKER} no-space job={job} free=$((free * 1024)) required={required}\"; exit 1; fi;; esac\n\
         if ! mkdir \"$d\" 2>/dev/null; then\n\
         if [ ! -e \"$d\" ] && [ ! -L \"$d\" ]; then echo \"{MARKER} launch-error job={job} reason=workdir\"; exit 1; fi\n\
         if {trusted}; then echo \"{MARKER} already-launched job={job} pid=$(cat \"$d/pid\" 2>/dev/null)\"; exit 0; fi\n\
         echo \"{MARKER} launch-error job={job} reason=workdir-exists\"; exit 1\n\
         fi\n\
         cd \"$d\" || {{ echo \"{MARKER} launch-error job={job} reason=workdir\"; exit 1; }}\n\
         printf '%s\\n' {cmd} > \"$d/cmd\"\n\
         {secret_file}\
         (sh \"$d/cmd\" > \"$d/collector.log\" 2>&1; rc=$?; IFS='\n\
         '; best=; size=-1;\
          for g in {globs}; do for f in \"$d\"/$g; do if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then s=$(wc -c < \"$f\" | tr -d ' '); if [ \"$s\" -gt \"$size\" ]; then size=$s; best=$f; fi; fi; done; done;\
          if [ -n \"$best\" ]; then h=$({{ sha256sum \"$best\" || shasum -a 256 \"$best\" || openssl dgst -sha256 -r \"$best\"; }} 2>/dev/null | awk 'NR==1 {{print $1}}'); n=$(printf '%s' \"${{best##*/}}\" | tr '\\r\\n' '__'); echo \"bytes=$size sha256=$h name=$n\" > \"$d/archive\";{rm} else echo 'bytes=0 name=' > \"$d/archive\"; fi;\
          : > \"$d/missing\";{required_files}\
          echo $rc > \"$d/exit_code.new\" && mv -f \"$d/exit_code.new\" \"$d/exit_code\") < /dev/null > /dev/null 2>&1 &\n\
         p=$!\n\
         LC_ALL=C TZ=UTC0 ps -o lstart= -p $p > \"$d/pid_start\" 2>/dev/null\n\
         echo $p > \"$d/pid\"\n\
         echo \"{MARKER} launched job={job} pid=$p\"\n",
        req_kib = kib(required),
        cmd = sh_quote(launch.command.expose_secret()),
        rm = if rules.remove_after_measure {
            " rm -f \"$best\";"
        } else {
            ""
        },
    )
}

/// PowerShell function `Test-Trusted $path`: `""` when the directory is a real directory owned by SYSTEM or
/// Administrators whose protected ACL grants nobody else anything, else the reason (`link`, `owner`,
/// `mode`). No single quote inside (it is shared with the polyglot probe).
fn powershell_trusted() -> String {
    format!(
        "function Test-Trusted($p) {{ $sids = {WINDOWS_TRUSTED_SIDS}; $i = Get-Item -LiteralPath $p -Force; \
         if (($i.Attributes -band [System.IO.FileAttributes]::ReparsePoint) -or (-not $i.PSIsContainer)) {{ return \"link\" }}; \
         $a = Get-Acl -LiteralPath $p; \
         if ($sids -notcontains $a.GetOwner([System.Security.Principal.SecurityIdentifier]).Value) {{ return \"owner\" }}; \
         $others = @($a.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier]) | Where-Object {{ $sids -notcontains $_.IdentityReference.Value }}); \
         if ((-not $a.AreAccessRulesProtected) -or ($others.Count -gt 0)) {{ return \"mode\" }}; \
         return \"\" }}\n"
    )
}

/// The detached wrapper PowerShell runs (passed encoded): the collector as a child `powershell.exe` reading
/// its command from the owner-only `cmd.ps1` (so no secret is on a command line it controls), then the
/// archive facts, then the exit code.
fn powershell_wrapper(wd: &str, rules: &EvidenceRules) -> String {
    format!(
        "$d = {wdq}\n\
         powershell.exe -NoProfile -NonInteractive -Command \"& ([ScriptBlock]::Create([System.IO.File]::ReadAllText('$d\\cmd.ps1')))\" *> \"$d\\collector.log\"\n\
         $rc = $LASTEXITCODE\n\
         $best = $null\n\
         foreach ($g in {globs}) {{ foreach ($f in @(Get-ChildItem -Path (Join-Path $d $g) -File -Force -ErrorAction SilentlyContinue)) {{ if (-not ($f.Attributes -band [System.IO.FileAttributes]::ReparsePoint) -and (($null -eq $best) -or ($f.Length -gt $best.Length))) {{ $best = $f }} }} }}\n\
         if ($null -ne $best) {{ $h = (Get-FileHash -Algorithm SHA256 -LiteralPath $best.FullName).Hash.ToLower(); \"bytes=$($best.Length) sha256=$h name=$($best.Name)\" | Out-File -Encoding utf8 \"$d\\archive\"{rm} }} else {{ \"bytes=0 name=\" | Out-File -Encoding utf8 \"$d\\archive\" }}\n\
         @(foreach ($r in {required}) {{ if (-not (Test-Path -Path (Join-Path $d $r))) {{ $r }} }}) | Out-File -Encoding utf8 \"$d\\missing\"\n\
         $rc | Out-File -Encoding ascii \"$d\\exit_code.new\"\n\
         Move-Item -Force -LiteralPath \"$d\\exit_code.new\" -Destination \"$d\\exit_code\"\n",
        wdq = ps_quote(wd),
        globs = ps_array(&rules.archive_globs),
        required = ps_array(&rules.required_files),
        rm = if rules.remove_after_measure {
            "; Remove-Item -Force -LiteralPath $best.FullName"
        } else {
            ""
        },
    )
}

fn powershell_launch(job: &JobId, launch: Launch<'_>) -> String {
    let wd = Platform::Windows.workdir(job);
    let rules = launch.rules;
    let required = rules.min_free_bytes;
    let secret_file = match launch.secret_file {
        Some(s) => format!(
            "[System.IO.File]::WriteAllText(\"$d\\secret\", {})\n",
            ps_quote(s.expose_secret())
        ),
        None => String::new(),
    };
    format!(
        "$ErrorActionPreference = \"Stop\"\n\
         $d = {wdq}\n\
         {trusted}\
         $free = (New-Object System.IO.DriveInfo ([System.IO.Path]::GetPathRoot($d))).AvailableFreeSpace\n\
         if ($free -lt {required}) {{ Write-Output \"{MARKER} no-space job={job} free=$free required={required}\"; exit 1 }}\n\
         if (Test-Path -LiteralPath $d) {{\n\
         if ((Test-Trusted $d) -eq \"\") {{ Write-Output \"{MARKER} already-launched job={job} pid=$(Get-Content -LiteralPath \"$d\\pid\" -TotalCount 1 -ErrorAction SilentlyContinue)\"; exit 0 }}\n\
         Write-Output \"{MARKER} launch-error job={job} reason=workdir-exists\"; exit 1\n\
         }}\n\
         try {{ $lock = [System.IO.File]::Open(\"$d.lock\", [System.IO.FileMode]::CreateNew); $lock.Close() }} catch {{ Write-Output \"{MARKER} already-launched job={job} pid=\"; exit 0 }}\n\
         try {{\n\
         $acl = New-Object System.Security.AccessControl.DirectorySecurity\n\
         $acl.SetAccessRuleProtection($true, $false)\n\
         foreach ($s in {WINDOWS_TRUSTED_SIDS}) {{ $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule((New-Object System.Security.Principal.SecurityIdentifier $s), \"FullControl\", \"ContainerInherit,ObjectInherit\", \"None\", \"Allow\"))) }}\n\
         New-Item -ItemType Directory -Path $d | Out-Null\n\
         Set-Acl -LiteralPath $d -AclObject $acl\n\
         }} catch {{ Write-Output \"{MARKER} launch-error job={job} reason=workdir\"; exit 1 }}\n\
         if ((Test-Trusted $d) -ne \"\") {{ Write-Output \"{MARKER} launch-error job={job} reason=workdir-exists\"; exit 1 }}\n\
         [System.IO.File]::WriteAllText(\"$d\\cmd.ps1\", {cmd})\n\
         {secret_file}\
         $p = Start-Process powershell.exe -ArgumentList \"-NoProfile\",\"-NonInteractive\",\"-EncodedCommand\",\"{wrapper}\" -WindowStyle Hidden -PassThru\n\
         $p.Id | Out-File -Encoding ascii \"$d\\pid\"\n\
         $p.StartTime.ToUniversalTime().ToString(\"o\") | Out-File -Encoding ascii \"$d\\pid_start\"\n\
         Write-Output \"{MARKER} launched job={job} pid=$($p.Id)\"\n",
        wdq = ps_quote(&wd),
        trusted = powershell_trusted(),
        cmd = ps_quote(launch.command.expose_secret()),
        wrapper = powershell_encode(&powershell_wrapper(&wd, rules)),
    )
}

/// The POSIX `sh` half of the status probe (`docs/collector-protocol.md`), ending with `exit 0`.
fn sh_probe(layout: &HostLayout, job: &JobId) -> String {
    let wd = layout.sh_workdir(job);
    let trusted = sh_trusted(layout.sh_owner_uid);
    format!(
        "d={wd}\n\
         ok=\n\
         if [ -L \"$d\" ]; then echo \"{MARKER} untrusted job={job} reason=link\"\n\
         elif [ ! -e \"$d\" ]; then echo \"{MARKER} absent job={job}\"\n\
         elif ! {{ {trusted}; }}; then\n\
         if [ ! -d \"$d\" ]; then echo \"{MARKER} untrusted job={job} reason=link\"\n\
         elif [ \"$3\" != {uid} ]; then echo \"{MARKER} untrusted job={job} reason=owner\"\n\
         else echo \"{MARKER} untrusted job={job} reason=mode\"; fi\n\
         elif [ -f \"$d/exit_code\" ]; then ok=1; echo \"{MARKER} exited job={job} code=$(cat \"$d/exit_code\")\"\n\
         if [ -f \"$d/archive\" ]; then echo \"{MARKER} archive job={job} $(cat \"$d/archive\")\"; fi\n\
         if [ -f \"$d/missing\" ]; then while IFS= read -r m; do echo \"{MARKER} missing job={job} file=$m\"; done < \"$d/missing\"; fi\n\
         elif [ -f \"$d/pid\" ] && kill -0 \"$(cat \"$d/pid\")\" 2>/dev/null && [ \"$(LC_ALL=C TZ=UTC0 ps -o lstart= -p \"$(cat \"$d/pid\")\" 2>/dev/null)\" = \"$(cat \"$d/pid_start\" 2>/dev/null)\" ]; then ok=1; echo \"{MARKER} running job={job} pid=$(cat \"$d/pid\")\"\n\
         elif [ -f \"$d/pid\" ]; then ok=1; echo \"{MARKER} vanished job={job}\"\n\
         else ok=1; echo \"{MARKER} absent job={job}\"; fi\n\
         echo \"{MARKER} log-tail job={job}\"\n\
         if [ -n \"$ok\" ]; then tail -n 20 \"$d/collector.log\" 2>/dev/null; fi\n\
         exit 0\n",
        uid = layout.sh_owner_uid,
    )
}

/// The PowerShell half of the status probe. It holds no single quote: to a POSIX shell that parses the
/// whole script before running it (zsh), this half sits inside one single-quoted word.
fn powershell_probe(job: &JobId) -> String {
    let wd = Platform::Windows.workdir(job);
    format!(
        "$d = \"{wd}\"\n\
         $ok = $false\n\
         {trusted}\
         if (-not (Test-Path -LiteralPath $d)) {{ Write-Output \"{MARKER} absent job={job}\" }}\n\
         elseif (($why = Test-Trusted $d) -ne \"\") {{ Write-Output \"{MARKER} untrusted job={job} reason=$why\" }}\n\
         elseif (Test-Path -LiteralPath \"$d\\exit_code\") {{\n\
         $ok = $true\n\
         Write-Output \"{MARKER} exited job={job} code=$(([string](Get-Content -LiteralPath \"$d\\exit_code\" -TotalCount 1)).Trim())\"\n\
         if (Test-Path -LiteralPath \"$d\\archive\") {{ Write-Output \"{MARKER} archive job={job} $(([string](Get-Content -LiteralPath \"$d\\archive\" -TotalCount 1)).Trim())\" }}\n\
         if (Test-Path -LiteralPath \"$d\\missing\") {{ foreach ($m in @(Get-Content -LiteralPath \"$d\\missing\")) {{ if ($m) {{ Write-Output \"{MARKER} missing job={job} file=$m\" }} }} }}\n\
         }}\n\
         elseif ((Test-Path -LiteralPath \"$d\\pid\") -and ($p = Get-Process -Id ([int](Get-Content -LiteralPath \"$d\\pid\" -TotalCount 1)) -ErrorAction SilentlyContinue) -and ($p.StartTime.ToUniversalTime().ToString(\"o\") -eq ([string](Get-Content -LiteralPath \"$d\\pid_start\" -TotalCount 1 -ErrorAction SilentlyContinue)).Trim())) {{ $ok = $true; Write-Output \"{MARKER} running job={job} pid=$($p.Id)\" }}\n\
         elseif (Test-Path -LiteralPath \"$d\\pid\") {{ $ok = $true; Write-Output \"{MARKER} vanished job={job}\" }}\n\
         else {{ $ok = $true; Write-Output \"{MARKER} absent job={job}\" }}\n\
         Write-Output \"{MARKER} log-tail job={job}\"\n\
         if ($ok -and (Test-Path -LiteralPath \"$d\\collector.log\")) {{ Get-Content -LiteralPath \"$d\\collector.log\" -Tail 20 }}\n",
        trusted = powershell_trusted(),
    )
}

/// The status probe: one script for every platform (no secret inside), so one batch `runscript` probes a
/// whole batch whatever the OS of its hosts.
///
/// It is a polyglot, valid both for POSIX shells (sh, dash, bash, zsh) and for PowerShell:
///
/// ```text
/// echo @'
/// ' > /dev/null
/// <sh probe>
/// exit 0
/// '@ > $null
/// <PowerShell probe>
/// #'
/// ```
///
/// - PowerShell reads `echo @'` as the start of a single-quoted here-string that ends at the line starting
///   with `'@`: the whole sh half is inert text sent to `$null`; then the PowerShell probe runs, and the
///   last line is a comment.
/// - A POSIX shell reads `@'<newline>'` as one quoted argument of an `echo` sent to `/dev/null`, runs the
///   sh probe, and `exit 0` stops it before the PowerShell half. That half, from `'@` to the final `'`, is
///   a single-quoted word (the PowerShell lines hold no single quote), so a shell that parses the whole
///   script first (zsh) finds valid syntax.
pub fn status_probe(job: &JobId) -> String {
    status_probe_in(&HostLayout::production(), job)
}

pub(crate) fn status_probe_in(layout: &HostLayout, job: &JobId) -> String {
    format!(
        "echo @'\n' > /dev/null\n{}'@ > $null\n{}#'\n",
        sh_probe(layout, job),
        powershell_probe(job)
    )
}

/// `runscript -Raw=```<script>``` -Timeout=<s>`: the `command_string` of a batch admin `runscript`.
///
/// Refuses a script containing the triple backtick that would end the raw block early.
pub fn runscript_command(script: &str, timeout_secs: u64) -> Result<String> {
    if script.contains("```") {
        return Err(Error::invalid(
            "runscript body",
            "it contains ``` which cannot be quoted in -Raw",
        ));
    }
    Ok(format!(
        "runscript -Raw=```{script}``` -Timeout={timeout_secs}"
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::evidence::ArchiveFacts;
    use crate::probe::{LaunchAnswer, Status, parse_launch, parse_status};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    fn job() -> JobId {
        JobId::parse("3f9a1c2e").unwrap()
    }

    /// Asserts that tree-sitter's PowerShell grammar parses `text` with no ERROR or MISSING node.
    pub(crate) fn assert_powershell_parses(what: &str, text: &str) {
        let mut parser = tree_sitter::Parser::new();
        parser
            .set_language(&tree_sitter_powershell::LANGUAGE.into())
            .unwrap();
        let tree = parser.parse(text, None).unwrap();
        let root = tree.root_node();
        if root.has_error() {
            let mut bad = Vec::new();
            let mut stack = vec![root];
            while let Some(n) = stack.pop() {
                if n.is_error() || n.is_missing() {
                    let at = n.start_position();
                    let snippet: String = text[n.start_byte()..].chars().take(80).collect();
                    bad.push(format!(
                        "{} at {}:{}: {snippet}",
                        n.kind(),
                        at.row + 1,
                        at.column + 1
                    ));
                }
                let mut c = n.walk();
                stack.extend(n.children(&mut c));
            }
            panic!(
                "{what} does not parse as PowerShell:\n{}\n---\n{text}",
                bad.join("\n")
            );
        }
    }

    fn rules() -> EvidenceRules {
        EvidenceRules {
            archive_globs: vec!["*.zip".into(), "*.tar.gz".into()],
            min_bytes: 1,
            max_bytes: None,
            required_files: vec!["result/*.log".into()],
            min_free_bytes: 1024,
            remove_after_measure: false,
        }
    }

    /// The launch script for `platform` under `layout`.
    fn launch_text(
        layout: &HostLayout,
        platform: Platform,
        job: &JobId,
        command: &str,
        rules: &EvidenceRules,
        secret_file: Option<&SecretString>,
    ) -> String {
        let command = SecretString::from(command.to_string());
        let launch = Launch {
            command: &command,
            rules,
            secret_file,
        };
        launch_script_in(layout, platform, job, launch)
            .expose_secret()
            .to_string()
    }

    /// A temp root for job directories, with a layout owned by the test's own user.
    struct Root {
        dir: tempfile::TempDir,
        layout: HostLayout,
    }

    impl Root {
        fn new() -> Root {
            let dir = tempfile::tempdir().unwrap();
            let uid = std::fs::metadata(dir.path()).unwrap().uid();
            let layout = HostLayout::for_tests(dir.path(), uid);
            Root { dir, layout }
        }
        fn wd(&self, job: &JobId) -> PathBuf {
            PathBuf::from(self.layout.sh_workdir(job))
        }
        fn launch(&self, job: &JobId, command: &str, rules: &EvidenceRules) -> String {
            launch_text(&self.layout, Platform::Linux, job, command, rules, None)
        }
        fn probe(&self, shell: &str, job: &JobId) -> String {
            run(shell, &status_probe_in(&self.layout, job))
        }
    }

    fn run(shell: &str, script: &str) -> String {
        let out = std::process::Command::new(shell)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap_or_else(|e| panic!("{shell}: {e}"));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{shell} stderr");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits for the detached wrapper to write `exit_code` (an event, not a time: the bound only stops a
    /// broken test from hanging).
    fn wait_exit(wd: &Path) {
        for _ in 0..6000 {
            if wd.join("exit_code").exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no exit_code in {}", wd.display());
    }

    #[test]
    fn two_launches_at_once_start_exactly_one_collector() {
        for shell in ["sh", "bash"] {
            let root = Root::new();
            let runs = root.dir.path().join("runs");
            for n in 0..10u32 {
                let j = JobId::parse(&format!("0000{n:04x}")).unwrap();
                let script = root.launch(&j, &format!("echo {n} >> {}", runs.display()), &rules());
                let a = std::process::Command::new(shell)
                    .arg("-c")
                    .arg(&script)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let b = std::process::Command::new(shell)
                    .arg("-c")
                    .arg(&script)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let answers = [a, b].map(|c| {
                    let out = c.wait_with_output().unwrap();
                    parse_launch(&String::from_utf8_lossy(&out.stdout), &j)
                });
                let launched = answers
                    .iter()
                    .filter(|a| matches!(a, LaunchAnswer::Launched { pid: Some(_) }))
                    .count();
                let refused = answers
                    .iter()
                    .filter(|a| matches!(a, LaunchAnswer::AlreadyLaunched { .. }))
                    .count();
                assert_eq!(
                    (launched, refused),
                    (1, 1),
                    "{shell} round {n}: {answers:?}"
                );
                wait_exit(&root.wd(&j));
                // a resent launch after the end is refused as well
                assert!(matches!(
                    parse_launch(&run(shell, &script), &j),
                    LaunchAnswer::AlreadyLaunched { pid: Some(_) }
                ));
            }
            let ran = std::fs::read_to_string(&runs).unwrap();
            let expected: String = (0..10).map(|n| format!("{n}\n")).collect();
            assert_eq!(ran, expected, "{shell}: one collector per job");
        }
    }

    #[test]
    fn the_job_directory_is_fresh_and_owner_only() {
        for shell in ["sh", "bash"] {
            let root = Root::new();
            let j = job();
            let wd = root.wd(&j);
            // a directory someone else prepared is refused, whatever its content
            std::fs::create_dir(&wd).unwrap();
            std::fs::write(wd.join("exit_code"), "0\n").unwrap();
            std::fs::set_permissions(&wd, std::fs::Permissions::from_mode(0o755)).unwrap();
            let launched = run(shell, &root.launch(&j, "true", &rules()));
            assert_eq!(
                parse_launch(&launched, &j),
                LaunchAnswer::Error {
                    reason: "workdir-exists".into()
                },
                "{shell}"
            );
            // and the probe does not believe its forged exit code
            assert_eq!(
                parse_status(&root.probe(shell, &j), &j).status,
                Status::Untrusted {
                    reason: "mode".into()
                }
            );
            std::fs::remove_dir_all(&wd).unwrap();
            // a link in its place is refused too, and the probe says so
            let elsewhere = root.dir.path().join("elsewhere");
            std::fs::create_dir(&elsewhere).unwrap();
            std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &wd).unwrap();
            assert_eq!(
                parse_launch(&run(shell, &root.launch(&j, "true", &rules())), &j),
                LaunchAnswer::Error {
                    reason: "workdir-exists".into()
                }
            );
            assert_eq!(
                parse_status(&root.probe(shell, &j), &j).status,
                Status::Untrusted {
                    reason: "link".into()
                }
            );
            std::fs::remove_file(&wd).unwrap();
            // a fresh launch creates it 0700 with the command in an owner-only file
            let out = run(shell, &root.launch(&j, "printf abc > out.zip", &rules()));
            assert!(matches!(
                parse_launch(&out, &j),
                LaunchAnswer::Launched { pid: Some(_) }
            ));
            wait_exit(&wd);
            let meta = std::fs::symlink_metadata(&wd).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.mode() & 0o777, 0o700, "{shell}");
            assert_eq!(
                std::fs::metadata(wd.join("cmd")).unwrap().mode() & 0o777,
                0o600
            );
            // another owner: the uid the layout expects is not the directory's
            let strict = HostLayout {
                sh_owner_uid: meta.uid() + 1,
                ..root.layout.clone()
            };
            assert_eq!(
                parse_status(&run(shell, &status_probe_in(&strict, &j)), &j).status,
                Status::Untrusted {
                    reason: "owner".into()
                }
            );
        }
    }

    #[test]
    fn the_probe_follows_a_real_collector_to_its_archive() {
        for shell in ["sh", "bash"] {
            let root = Root::new();
            let j = job();
            let wd = root.wd(&j);
            let gate = root.dir.path().join("gate");
            assert!(
                std::process::Command::new("mkfifo")
                    .arg(&gate)
                    .status()
                    .unwrap()
                    .success()
            );
            assert_eq!(
                parse_status(&root.probe(shell, &j), &j).status,
                Status::Absent
            );
            // the collector waits on the gate, then writes a 3-byte archive and a small one
            let cmd = format!(
                "echo collecting; cat {} > /dev/null; printf abc > 'c 1.zip'; printf x > small.tar.gz; echo done",
                gate.display()
            );
            let out = run(shell, &root.launch(&j, &cmd, &rules()));
            let LaunchAnswer::Launched { pid: Some(pid) } = parse_launch(&out, &j) else {
                panic!("{out}")
            };
            let a = parse_status(&root.probe(shell, &j), &j);
            assert_eq!(a.status, Status::Running { pid: Some(pid) }, "{shell}");
            assert_eq!(a.archive, None);
            std::fs::write(&gate, "go\n").unwrap();
            wait_exit(&wd);
            let a = parse_status(&root.probe(shell, &j), &j);
            assert_eq!(a.status, Status::Exited { code: Some(0) }, "{shell}");
            assert_eq!(a.log_tail, vec!["collecting", "done"]);
            assert_eq!(
                a.archive,
                Some(ArchiveFacts {
                    name: "c 1.zip".into(),
                    bytes: 3,
                    // SHA-256 of "abc" (FIPS 180-2 test vector)
                    sha256: Some(
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
                    ),
                    missing: vec!["result/*.log".into()],
                })
            );
            // a pid marker whose process started at another time (a pid reused after a reboot) is not
            // a running collector
            std::fs::remove_file(wd.join("exit_code")).unwrap();
            std::fs::write(wd.join("pid"), format!("{}\n", std::process::id())).unwrap();
            std::fs::write(wd.join("pid_start"), "Mon Jan  1 00:00:00 2001\n").unwrap();
            assert_eq!(
                parse_status(&root.probe(shell, &j), &j).status,
                Status::Vanished,
                "{shell}"
            );
        }
    }

    #[test]
    fn a_full_volume_refuses_the_launch_and_leaves_nothing() {
        for shell in ["sh", "bash"] {
            let root = Root::new();
            let j = job();
            let huge = EvidenceRules {
                min_free_bytes: 1 << 60,
                ..rules()
            };
            let out = run(shell, &root.launch(&j, "true", &huge));
            let LaunchAnswer::NoSpace {
                free_bytes,
                required_bytes,
            } = parse_launch(&out, &j)
            else {
                panic!("{shell}: {out}")
            };
            assert_eq!(required_bytes, 1 << 60);
            assert!(free_bytes > 0 && free_bytes < 1 << 60);
            assert!(!root.wd(&j).exists(), "no directory left behind");
        }
    }

    #[test]
    fn the_secret_file_is_owner_only_and_exact() {
        let root = Root::new();
        let j = job();
        let secret = SecretString::from("https://b.s3.amazonaws.com/k?a=1&b='x'%20y");
        let script = launch_text(
            &root.layout,
            Platform::Linux,
            &j,
            "cat secret > got",
            &rules(),
            Some(&secret),
        );
        run("sh", &script);
        let wd = root.wd(&j);
        wait_exit(&wd);
        assert_eq!(
            std::fs::read_to_string(wd.join("got")).unwrap(),
            secret.expose_secret()
        );
        assert_eq!(
            std::fs::metadata(wd.join("secret")).unwrap().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn windows_scripts_parse_as_powershell() {
        let cmd = "& 'C:\\tools\\kape.exe' --tsource C: --s3url 'https://x/y?a=1&b=2'; exit $LASTEXITCODE";
        let secret = SecretString::from("it's a secret");
        for secret_file in [None, Some(&secret)] {
            let s = launch_text(
                &HostLayout::production(),
                Platform::Windows,
                &job(),
                cmd,
                &rules(),
                secret_file,
            );
            assert_powershell_parses("windows launch script", &s);
        }
        assert_powershell_parses(
            "windows wrapper",
            &powershell_wrapper(&Platform::Windows.workdir(&job()), &rules()),
        );
        assert_powershell_parses("probe, PowerShell half", &powershell_probe(&job()));
        // the whole polyglot, as PowerShell reads it
        assert_powershell_parses("polyglot probe", &status_probe(&job()));
        // the check can fail
        let mut parser = tree_sitter::Parser::new();
        parser
            .set_language(&tree_sitter_powershell::LANGUAGE.into())
            .unwrap();
        let broken = powershell_probe(&job()).replacen("{ Write-Output", "{ Write-Output (", 1);
        assert!(parser.parse(&broken, None).unwrap().root_node().has_error());
    }

    #[test]
    fn windows_launch_script_shape() {
        let s = &launch_text(
            &HostLayout::production(),
            Platform::Windows,
            &job(),
            "Write-Output 'x'; exit 3",
            &rules(),
            None,
        );
        assert!(s.contains("$d = 'C:\\Windows\\Temp\\cado-host-3f9a1c2e'\n"));
        // the command goes into an owner-only file, never onto a command line
        assert!(s.contains(
            "[System.IO.File]::WriteAllText(\"$d\\cmd.ps1\", 'Write-Output ''x''; exit 3')"
        ));
        assert!(!s.contains(&powershell_encode("Write-Output 'x'; exit 3")));
        // atomic lock, then a fresh directory with a protected ACL for SYSTEM and Administrators only
        assert!(s.contains("[System.IO.FileMode]::CreateNew"));
        assert!(s.contains("SetAccessRuleProtection($true, $false)"));
        assert!(s.contains("New-Item -ItemType Directory -Path $d |"));
        assert!(!s.contains("-Force -Path $d"));
        assert!(s.contains("no-space job=3f9a1c2e free=$free required=1024"));
        assert!(s.ends_with("Write-Output \"FALCON-TRIAGE launched job=3f9a1c2e pid=$($p.Id)\"\n"));
        let wrapper = powershell_wrapper(&Platform::Windows.workdir(&job()), &rules());
        assert!(s.contains(&powershell_encode(&wrapper)));
        assert!(wrapper.contains("Get-FileHash -Algorithm SHA256"));
    }

    #[test]
    fn powershell_encoding_is_utf16le_base64() {
        // "dir" in UTF-16LE is 64 00 69 00 72 00
        assert_eq!(powershell_encode("dir"), "ZABpAHIA");
    }

    /// PowerShell's view: line 1 opens a single-quoted here-string (`@'` last on its line) that only a
    /// line starting with `'@` closes; that line is the one right after the sh half, and everything after
    /// it is the PowerShell probe plus a comment.
    #[test]
    fn the_probe_is_one_polyglot_with_the_powershell_half_after_the_here_string() {
        let s = status_probe(&job());
        let sh = sh_probe(&HostLayout::production(), &job());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "echo @'");
        let close = lines
            .iter()
            .position(|l| l.starts_with("'@"))
            .expect("here-string end");
        assert_eq!(lines[close], "'@ > $null");
        assert_eq!(lines[1], "' > /dev/null");
        assert_eq!(
            lines[1..close].join("\n") + "\n",
            format!("' > /dev/null\n{sh}")
        );
        assert!(sh.starts_with("d=/tmp/cado-host-3f9a1c2e\n"));
        assert!(sh.contains("[ \"$3\" = 0 ]"), "owned by root");
        let ps = lines[close + 1..].join("\n") + "\n";
        assert_eq!(ps, format!("{}#'\n", powershell_probe(&job())));
        // the sh view: the PowerShell half is one single-quoted word, closed by the final `#'`
        assert!(!powershell_probe(&job()).contains('\''));
        assert!(s.ends_with("\n#'\n"));
        for answer in [
            "exited",
            "running",
            "vanished",
            "absent",
            "log-tail",
            "untrusted",
            "archive",
            "missing",
        ] {
            let line = format!("FALCON-TRIAGE {answer} job=3f9a1c2e");
            assert!(sh.contains(&line), "sh {answer}");
            assert!(
                powershell_probe(&job()).contains(&line),
                "powershell {answer}"
            );
        }
        assert!(runscript_command(&s, 28).is_ok());
    }

    /// The sh side, run by `sh` and `bash` against marker files, prints each answer exactly as
    /// `docs/collector-protocol.md` says, never reaching the PowerShell half.
    #[test]
    fn the_sh_side_prints_the_answers() {
        for shell in ["sh", "bash"] {
            let root = Root::new();
            let j = job();
            let d = root.wd(&j);
            assert_eq!(
                root.probe(shell, &j),
                "FALCON-TRIAGE absent job=3f9a1c2e\nFALCON-TRIAGE log-tail job=3f9a1c2e\n",
                "{shell} absent"
            );
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
            let log: String = (1..=25).map(|i| format!("[INFO] - line {i}\n")).collect();
            std::fs::write(d.join("collector.log"), &log).unwrap();
            let tail: String = (6..=25).map(|i| format!("[INFO] - line {i}\n")).collect();
            // a live process (this test's own) whose start time matches
            let me = std::process::id();
            std::fs::write(d.join("pid"), format!("{me}\n")).unwrap();
            let start = run("sh", &format!("LC_ALL=C TZ=UTC0 ps -o lstart= -p {me}"));
            std::fs::write(d.join("pid_start"), &start).unwrap();
            assert_eq!(
                root.probe(shell, &j),
                format!(
                    "FALCON-TRIAGE running job=3f9a1c2e pid={me}\nFALCON-TRIAGE log-tail job=3f9a1c2e\n{tail}"
                ),
                "{shell} running"
            );
            // a pid no process has (above every pid_max)
            std::fs::write(d.join("pid"), "2000000000\n").unwrap();
            assert_eq!(
                root.probe(shell, &j),
                format!(
                    "FALCON-TRIAGE vanished job=3f9a1c2e\nFALCON-TRIAGE log-tail job=3f9a1c2e\n{tail}"
                ),
                "{shell} vanished"
            );
            std::fs::write(d.join("exit_code"), "3\n").unwrap();
            std::fs::write(d.join("archive"), "bytes=0 name=\n").unwrap();
            std::fs::write(d.join("missing"), "a b/*.log\n").unwrap();
            assert_eq!(
                root.probe(shell, &j),
                format!(
                    "FALCON-TRIAGE exited job=3f9a1c2e code=3\n\
                     FALCON-TRIAGE archive job=3f9a1c2e bytes=0 name=\n\
                     FALCON-TRIAGE missing job=3f9a1c2e file=a b/*.log\n\
                     FALCON-TRIAGE log-tail job=3f9a1c2e\n{tail}"
                ),
                "{shell} exited"
            );
        }
    }

    /// `sh -n` parses the whole script without running it: the PowerShell half after `exit 0` is valid
    /// shell syntax too (zsh parses a `-c` script whole before running any of it). The launch script too.
    #[test]
    fn the_whole_probe_and_the_launch_script_are_valid_sh_syntax() {
        let cmd = "./uac -p ir_triage . 'a b'";
        let launch = launch_text(
            &HostLayout::production(),
            Platform::Linux,
            &job(),
            cmd,
            &rules(),
            Some(&SecretString::from(cmd)),
        );
        for shell in ["sh", "bash"] {
            for script in [status_probe(&job()), launch.clone()] {
                let out = std::process::Command::new(shell)
                    .arg("-n")
                    .arg("-c")
                    .arg(&script)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{shell}: {out:?}");
            }
            // the brief's shape without the final `#'` is not
            let bad = status_probe(&job()).replace("$d = \"C:", "$d = 'C:");
            let out = std::process::Command::new(shell)
                .arg("-n")
                .arg("-c")
                .arg(&bad)
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "{shell} accepted an unbalanced quote"
            );
        }
    }

    #[test]
    fn runscript_wrapping() {
        assert_eq!(
            runscript_command("echo hi", 60).unwrap(),
            "runscript -Raw=```echo hi``` -Timeout=60"
        );
        assert!(runscript_command("echo ```", 60).is_err());
    }
}
