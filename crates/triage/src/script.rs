//! The launch and status-probe scripts of `docs/collector-protocol.md`, and the `runscript -Raw` command
//! string that carries them.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use crate::collector::sh_quote;
use crate::error::{Error, Result};
use crate::platform::{JobId, Platform};

/// Prefix of every line the orchestrator parses.
pub const MARKER: &str = "FALCON-TRIAGE";

/// `powershell.exe -EncodedCommand` argument: base64 of the UTF-16LE text.
pub fn powershell_encode(text: &str) -> String {
    let bytes: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The launch script for `platform`: starts `command` detached in the work directory with the pid, exit code
/// and log markers, and refuses when a `pid` marker already exists. The result holds the collector command,
/// so it is secret.
pub fn launch_script(platform: Platform, job: &JobId, command: &SecretString) -> SecretString {
    let wd = platform.workdir(job);
    let text = match platform {
        Platform::Linux | Platform::Mac => format!(
            "d={wd}\n\
             if [ -f \"$d/pid\" ]; then echo \"{MARKER} already-launched job={job} pid=$(cat \"$d/pid\")\"; exit 0; fi\n\
             mkdir -p \"$d\" && cd \"$d\" || {{ echo \"{MARKER} launch-error job={job} reason=workdir\"; exit 1; }}\n\
             (sh -c {cmd} > \"$d/collector.log\" 2>&1; echo $? > \"$d/exit_code\") < /dev/null > /dev/null 2>&1 &\n\
             echo $! > \"$d/pid\"\n\
             echo \"{MARKER} launched job={job} pid=$!\"\n",
            cmd = sh_quote(command.expose_secret()),
        ),
        Platform::Windows => format!(
            "$d = '{wd}'\n\
             if (Test-Path \"$d\\pid\") {{ Write-Output \"{MARKER} already-launched job={job} pid=$(Get-Content \"$d\\pid\")\"; exit 0 }}\n\
             New-Item -ItemType Directory -Force -Path $d | Out-Null\n\
             $inner = \"& {{ powershell.exe -NoProfile -EncodedCommand {b64} *> '$d\\collector.log'; `$LASTEXITCODE | Out-File -Encoding ascii '$d\\exit_code' }}\"\n\
             $p = Start-Process powershell.exe -ArgumentList '-NoProfile','-Command',$inner -WindowStyle Hidden -PassThru\n\
             $p.Id | Out-File -Encoding ascii \"$d\\pid\"\n\
             Write-Output \"{MARKER} launched job={job} pid=$($p.Id)\"\n",
            b64 = powershell_encode(command.expose_secret()),
        ),
    };
    SecretString::from(text)
}

/// The POSIX `sh` half of the status probe (`docs/collector-protocol.md`), ending with `exit 0`.
fn sh_probe(job: &JobId) -> String {
    let wd = Platform::Linux.workdir(job);
    format!(
        "d={wd}\n\
         if [ -f \"$d/exit_code\" ]; then echo \"{MARKER} exited job={job} code=$(cat \"$d/exit_code\")\"\n\
         elif [ -f \"$d/pid\" ] && kill -0 \"$(cat \"$d/pid\")\" 2>/dev/null; then echo \"{MARKER} running job={job} pid=$(cat \"$d/pid\")\"\n\
         elif [ -f \"$d/pid\" ]; then echo \"{MARKER} vanished job={job}\"\n\
         else echo \"{MARKER} absent job={job}\"; fi\n\
         echo \"{MARKER} log-tail job={job}\"\n\
         tail -n 20 \"$d/collector.log\" 2>/dev/null\n\
         exit 0\n"
    )
}

/// The PowerShell half of the status probe. It holds no single quote: to a POSIX shell that parses the
/// whole script before running it (zsh), this half sits inside one single-quoted word.
fn powershell_probe(job: &JobId) -> String {
    let wd = Platform::Windows.workdir(job);
    format!(
        "$d = \"{wd}\"\n\
         if (Test-Path \"$d\\exit_code\") {{ Write-Output \"{MARKER} exited job={job} code=$((Get-Content \"$d\\exit_code\" -TotalCount 1).Trim())\" }}\n\
         elseif ((Test-Path \"$d\\pid\") -and (Get-Process -Id ([int](Get-Content \"$d\\pid\" -TotalCount 1)) -ErrorAction SilentlyContinue)) {{ Write-Output \"{MARKER} running job={job} pid=$((Get-Content \"$d\\pid\" -TotalCount 1).Trim())\" }}\n\
         elseif (Test-Path \"$d\\pid\") {{ Write-Output \"{MARKER} vanished job={job}\" }}\n\
         else {{ Write-Output \"{MARKER} absent job={job}\" }}\n\
         Write-Output \"{MARKER} log-tail job={job}\"\n\
         if (Test-Path \"$d\\collector.log\") {{ Get-Content \"$d\\collector.log\" -Tail 20 }}\n"
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
    format!(
        "echo @'\n' > /dev/null\n{}'@ > $null\n{}#'\n",
        sh_probe(job),
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
mod tests {
    use super::*;

    fn job() -> JobId {
        JobId::parse("3f9a1c2e").unwrap()
    }

    #[test]
    fn linux_launch_script_matches_the_protocol() {
        let cmd = SecretString::from("echo 'hi' && ./cado-host --presigned_data 'abc'");
        let s = launch_script(Platform::Linux, &job(), &cmd);
        let s = s.expose_secret();
        let expected = r#"d=/tmp/cado-host-3f9a1c2e
if [ -f "$d/pid" ]; then echo "FALCON-TRIAGE already-launched job=3f9a1c2e pid=$(cat "$d/pid")"; exit 0; fi
mkdir -p "$d" && cd "$d" || { echo "FALCON-TRIAGE launch-error job=3f9a1c2e reason=workdir"; exit 1; }
(sh -c 'echo '\''hi'\'' && ./cado-host --presigned_data '\''abc'\''' > "$d/collector.log" 2>&1; echo $? > "$d/exit_code") < /dev/null > /dev/null 2>&1 &
echo $! > "$d/pid"
echo "FALCON-TRIAGE launched job=3f9a1c2e pid=$!"
"#;
        assert_eq!(s, expected);
    }

    #[test]
    fn windows_launch_script_encodes_the_command() {
        let cmd = SecretString::from("Write-Output 'x'; exit 3");
        let s = launch_script(Platform::Windows, &job(), &cmd);
        let s = s.expose_secret();
        assert!(s.starts_with("$d = 'C:\\Windows\\Temp\\cado-host-3f9a1c2e'\n"));
        let b64 = powershell_encode("Write-Output 'x'; exit 3");
        assert!(s.contains(&format!(
            "powershell.exe -NoProfile -EncodedCommand {b64} *> '$d\\collector.log'"
        )));
        assert!(
            !s.contains("Write-Output 'x'"),
            "the command must only appear encoded"
        );
        assert!(s.contains("if (Test-Path \"$d\\pid\") { Write-Output \"FALCON-TRIAGE already-launched job=3f9a1c2e"));
        assert!(s.ends_with("Write-Output \"FALCON-TRIAGE launched job=3f9a1c2e pid=$($p.Id)\"\n"));
    }

    #[test]
    fn powershell_encoding_is_utf16le_base64() {
        // "dir" in UTF-16LE is 64 00 69 00 72 00
        assert_eq!(powershell_encode("dir"), "ZABpAHIA");
    }

    /// The probe's sh half is exactly the protocol's Linux / macOS probe, then `exit 0`.
    #[test]
    fn the_sh_half_is_the_protocol_probe() {
        let expected = r#"d=/tmp/cado-host-3f9a1c2e
if [ -f "$d/exit_code" ]; then echo "FALCON-TRIAGE exited job=3f9a1c2e code=$(cat "$d/exit_code")"
elif [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then echo "FALCON-TRIAGE running job=3f9a1c2e pid=$(cat "$d/pid")"
elif [ -f "$d/pid" ]; then echo "FALCON-TRIAGE vanished job=3f9a1c2e"
else echo "FALCON-TRIAGE absent job=3f9a1c2e"; fi
echo "FALCON-TRIAGE log-tail job=3f9a1c2e"
tail -n 20 "$d/collector.log" 2>/dev/null
exit 0
"#;
        assert_eq!(sh_probe(&job()), expected);
    }

    /// PowerShell's view: line 1 opens a single-quoted here-string (`@'` last on its line) that only a
    /// line starting with `'@` closes; that line is the one right after the sh half, and everything after
    /// it is the PowerShell probe plus a comment.
    #[test]
    fn the_probe_is_one_polyglot_with_the_powershell_half_after_the_here_string() {
        let s = status_probe(&job());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "echo @'");
        let close = lines
            .iter()
            .position(|l| l.starts_with("'@"))
            .expect("here-string end");
        assert_eq!(lines[close], "'@ > $null");
        // between the opener and the closer: the sh side, no line of which ends the here-string early
        assert_eq!(lines[1], "' > /dev/null");
        assert_eq!(
            lines[1..close].join("\n") + "\n",
            format!("' > /dev/null\n{}", sh_probe(&job()))
        );
        let ps = lines[close + 1..].join("\n") + "\n";
        assert_eq!(ps, format!("{}#'\n", powershell_probe(&job())));
        assert!(ps.contains("$d = \"C:\\Windows\\Temp\\cado-host-3f9a1c2e\"\n"));
        assert!(ps.contains("Get-Process -Id"));
        assert!(ps.contains(
            "if (Test-Path \"$d\\collector.log\") { Get-Content \"$d\\collector.log\" -Tail 20 }"
        ));
        // the sh view: the PowerShell half is one single-quoted word, closed by the final `#'`
        assert!(!powershell_probe(&job()).contains('\''));
        assert!(s.ends_with("\n#'\n"));
        for answer in ["exited", "running", "vanished", "absent", "log-tail"] {
            let line = format!("FALCON-TRIAGE {answer} job=3f9a1c2e");
            assert!(sh_probe(&job()).contains(&line), "sh {answer}");
            assert!(
                powershell_probe(&job()).contains(&line),
                "powershell {answer}"
            );
        }
        assert!(runscript_command(&s, 28).is_ok());
    }

    /// Runs the probe through `shell -c` with the work directory moved to `dir`.
    fn run_probe(shell: &str, dir: &std::path::Path) -> String {
        let script = status_probe(&job());
        let moved = script.replacen(
            "d=/tmp/cado-host-3f9a1c2e\n",
            &format!("d={}\n", dir.display()),
            1,
        );
        assert_ne!(moved, script);
        let out = std::process::Command::new(shell)
            .arg("-c")
            .arg(&moved)
            .output()
            .unwrap_or_else(|e| panic!("{shell}: {e}"));
        assert!(out.status.success(), "{shell}: {:?}", out);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{shell} stderr");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The sh side, run by `sh` and `bash` against marker files, prints each of the four answers exactly as
    /// `docs/collector-protocol.md` says, never reaching the PowerShell half.
    #[test]
    fn the_sh_side_prints_the_four_answers() {
        for shell in ["sh", "bash"] {
            let tmp = tempfile::tempdir().unwrap();
            let d = tmp.path().join("cado-host-3f9a1c2e");
            assert_eq!(
                run_probe(shell, &d),
                "FALCON-TRIAGE absent job=3f9a1c2e\nFALCON-TRIAGE log-tail job=3f9a1c2e\n",
                "{shell} absent"
            );
            std::fs::create_dir(&d).unwrap();
            let log: String = (1..=25).map(|i| format!("[INFO] - line {i}\n")).collect();
            std::fs::write(d.join("collector.log"), &log).unwrap();
            let tail: String = (6..=25).map(|i| format!("[INFO] - line {i}\n")).collect();
            // a live process: this test's own
            let me = std::process::id();
            std::fs::write(d.join("pid"), format!("{me}\n")).unwrap();
            assert_eq!(
                run_probe(shell, &d),
                format!(
                    "FALCON-TRIAGE running job=3f9a1c2e pid={me}\nFALCON-TRIAGE log-tail job=3f9a1c2e\n{tail}"
                ),
                "{shell} running"
            );
            // a pid no process has (above every pid_max)
            std::fs::write(d.join("pid"), "2000000000\n").unwrap();
            assert_eq!(
                run_probe(shell, &d),
                format!(
                    "FALCON-TRIAGE vanished job=3f9a1c2e\nFALCON-TRIAGE log-tail job=3f9a1c2e\n{tail}"
                ),
                "{shell} vanished"
            );
            std::fs::write(d.join("exit_code"), "3\n").unwrap();
            assert_eq!(
                run_probe(shell, &d),
                format!(
                    "FALCON-TRIAGE exited job=3f9a1c2e code=3\nFALCON-TRIAGE log-tail job=3f9a1c2e\n{tail}"
                ),
                "{shell} exited"
            );
        }
    }

    /// `sh -n` parses the whole script without running it: the PowerShell half after `exit 0` is valid
    /// shell syntax too (zsh parses a `-c` script whole before running any of it).
    #[test]
    fn the_whole_probe_is_valid_sh_syntax() {
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell)
                .arg("-n")
                .arg("-c")
                .arg(status_probe(&job()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {out:?}");
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
