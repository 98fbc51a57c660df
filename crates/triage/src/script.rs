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

/// The status probe for `platform` (no secret inside).
pub fn probe_script(platform: Platform, job: &JobId) -> String {
    let wd = platform.workdir(job);
    match platform {
        Platform::Linux | Platform::Mac => format!(
            "d={wd}\n\
             if [ -f \"$d/exit_code\" ]; then echo \"{MARKER} exited job={job} code=$(cat \"$d/exit_code\")\"\n\
             elif [ -f \"$d/pid\" ] && kill -0 \"$(cat \"$d/pid\")\" 2>/dev/null; then echo \"{MARKER} running job={job} pid=$(cat \"$d/pid\")\"\n\
             elif [ -f \"$d/pid\" ]; then echo \"{MARKER} vanished job={job}\"\n\
             else echo \"{MARKER} absent job={job}\"; fi\n\
             echo \"{MARKER} log-tail job={job}\"\n\
             tail -n 20 \"$d/collector.log\" 2>/dev/null\n"
        ),
        Platform::Windows => format!(
            "$d = '{wd}'\n\
             if (Test-Path \"$d\\exit_code\") {{ Write-Output \"{MARKER} exited job={job} code=$((Get-Content \"$d\\exit_code\" -TotalCount 1).Trim())\" }}\n\
             elseif ((Test-Path \"$d\\pid\") -and (Get-Process -Id ([int](Get-Content \"$d\\pid\" -TotalCount 1)) -ErrorAction SilentlyContinue)) {{ Write-Output \"{MARKER} running job={job} pid=$((Get-Content \"$d\\pid\" -TotalCount 1).Trim())\" }}\n\
             elseif (Test-Path \"$d\\pid\") {{ Write-Output \"{MARKER} vanished job={job}\" }}\n\
             else {{ Write-Output \"{MARKER} absent job={job}\" }}\n\
             Write-Output \"{MARKER} log-tail job={job}\"\n\
             if (Test-Path \"$d\\collector.log\") {{ Get-Content \"$d\\collector.log\" -Tail 20 }}\n"
        ),
    }
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

    #[test]
    fn probe_scripts() {
        let s = probe_script(Platform::Mac, &job());
        assert!(s.contains("kill -0"));
        assert!(s.contains("echo \"FALCON-TRIAGE log-tail job=3f9a1c2e\"\ntail -n 20 \"$d/collector.log\" 2>/dev/null"));
        let w = probe_script(Platform::Windows, &job());
        assert!(w.contains("Get-Process -Id"));
        assert!(w.contains("Get-Content \"$d\\collector.log\" -Tail 20"));
        for p in Platform::ALL {
            let s = probe_script(p, &job());
            for answer in ["exited", "running", "vanished", "absent", "log-tail"] {
                assert!(
                    s.contains(&format!("FALCON-TRIAGE {answer} job=3f9a1c2e")),
                    "{p} {answer}"
                );
            }
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
