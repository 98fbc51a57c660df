//! The per-host model behind RTR commands: a few read-only commands, `runscript` with the collector
//! launch and status-probe scripts of `docs/collector-protocol.md`, background collector jobs that
//! "upload" into the Cado bucket, and realistic errors for anything else.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::fleet::{Host, Os};
use crate::cado::Bucket;

/// A collector started by a launch script.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub job: String,
    pub aid: String,
    pub hostname: String,
    pub os: Os,
    pub pid: u32,
    pub started: Instant,
    pub started_wall: DateTime<Utc>,
    pub duration: Duration,
    /// The collector command the wrapper runs.
    pub command: String,
    /// Chosen at launch: the collector will fail.
    pub fails: bool,
    /// Set when the job finished: exit code written.
    pub exit_code: Option<i32>,
    /// Log lines, each with its offset from the start (shown once elapsed).
    pub log: Vec<(Duration, String)>,
    /// The process was killed without writing an exit code (host reboot).
    pub vanished: bool,
    /// Key of the uploaded capture.
    pub uploaded: Option<String>,
}

/// Output of one command on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Output {
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn out(s: impl Into<String>) -> Output {
        Output {
            stdout: s.into(),
            stderr: String::new(),
        }
    }
    fn err(s: impl Into<String>) -> Output {
        Output {
            stdout: String::new(),
            stderr: s.into(),
        }
    }
}

/// What sits at a job directory's path on a host's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workdir {
    /// Created by a launch script (`mkdir` as root, owner-only).
    Ours,
    /// Left there by someone else (a local user, an earlier run): wrong owner and mode.
    Planted,
}

/// The disk of one host, as far as the launch guard and the evidence checks see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Disk {
    /// Job directories by job id.
    pub workdirs: HashMap<String, Workdir>,
    /// Free bytes on the job directories' volume (`None`: plenty).
    pub free_bytes: Option<u64>,
    /// Size of the archive Cado Host writes (`None`: about 48 MB).
    pub capture_bytes: Option<u64>,
}

/// Collector jobs of every host, keyed by (aid, job id).
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    pub jobs: HashMap<(String, String), Job>,
    /// Disks by device id.
    pub disks: HashMap<String, Disk>,
    next_pid: u32,
    draws: u64,
}

/// Run-time parameters of the host model.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub failure_rate: f64,
    pub collector_duration: Duration,
    pub seed: u64,
}

fn cado_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S,%3f").to_string()
}

/// A deterministic uniform draw in `[0, 1)`.
fn draw(seed: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0xC0FFEE);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Splits `runscript` arguments: `-Raw=```...```, `-CloudFile="x"`, `-HostPath="x"`,
/// `-CommandLine=...`, `-Timeout=N`.
pub(crate) fn runscript_args(command_string: &str) -> HashMap<String, String> {
    let mut args = HashMap::new();
    let s = command_string.trim();
    let s = s.strip_prefix("runscript").unwrap_or(s);
    let mut rest = s;
    while let Some(at) = rest.find(" -") {
        rest = &rest[at + 2..];
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_string();
        if name.contains(' ') {
            continue;
        }
        let after = &rest[eq + 1..];
        let (value, used) = if let Some(body) = after.strip_prefix("```") {
            match body.find("```") {
                Some(end) => (body[..end].to_string(), 3 + end + 3),
                None => (body.to_string(), after.len()),
            }
        } else if let Some(body) = after.strip_prefix('"') {
            match body.find('"') {
                Some(end) => (body[..end].to_string(), end + 2),
                None => (body.to_string(), after.len()),
            }
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), end)
        };
        args.insert(name.to_ascii_lowercase(), value);
        rest = &after[used.min(after.len())..];
        if !rest.starts_with(' ') {
            rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
        }
    }
    args
}

fn job_of(script: &str) -> Option<String> {
    let at = script.find("cado-host-")?;
    let id: String = script[at + 10..].chars().take(8).collect();
    (id.len() == 8 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

/// Undoes POSIX single quoting: `'it'\\''s'` is `it's`.
fn sh_unquote(word: &str) -> String {
    word.strip_prefix('\'')
        .and_then(|w| w.strip_suffix('\''))
        .unwrap_or(word)
        .replace("'\\''", "'")
}

/// The collector command inside a Linux launch script: `printf '%s\n' '<cmd>' > "$d/cmd"`.
fn linux_collector(script: &str) -> Option<String> {
    let start = script.find("printf '%s\\n' ")? + "printf '%s\\n' ".len();
    let end = script.find(" > \"$d/cmd\"")?;
    (end > start).then(|| sh_unquote(&script[start..end]))
}

/// The collector command inside a Windows launch script: `WriteAllText("$d\cmd.ps1", '<cmd>')`, with
/// PowerShell's doubled single quotes.
fn windows_collector(script: &str) -> Option<String> {
    let marker = "WriteAllText(\"$d\\cmd.ps1\", '";
    let start = script.find(marker)? + marker.len();
    let end = start + script[start..].find("')\n")?;
    Some(script[start..end].replace("''", "'"))
}

/// The free space a launch script requires (`required=<bytes>` of its `no-space` answer).
fn required_free(script: &str) -> Option<u64> {
    let at = script.find("required=")? + "required=".len();
    script[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// A deterministic SHA-256 standing for the archive's content.
fn archive_sha256(aid: &str, job: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(format!("{aid}/{job}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Splits the sh / PowerShell polyglot of `docs/collector-protocol.md` into the half each shell runs:
///
/// ```text
/// echo @'
/// ' > /dev/null
/// <sh half, ending with `exit 0`>
/// '@ > $null
/// <PowerShell half>
/// ```
///
/// PowerShell reads the sh half as a here-string closed by the first line starting with `'@`; sh runs it
/// and leaves at its `exit 0`. `None` when the script is not such a polyglot, or when sh would run on into
/// the PowerShell half (no closing `exit 0`).
fn polyglot_halves(script: &str) -> Option<(&str, &str)> {
    let body = script.strip_prefix("echo @'\n' > /dev/null\n")?;
    let close = if body.starts_with("'@") {
        0
    } else {
        body.find("\n'@")? + 1
    };
    let sh_half = &body[..close];
    let after = &body[close..];
    let powershell_half = after.strip_prefix("'@ > $null\n")?;
    let exits = sh_half.lines().last().map(str::trim) == Some("exit 0");
    exits.then_some((sh_half, powershell_half))
}

fn not_found_error(os: Os, word: &str) -> String {
    match os {
        Os::Windows => format!(
            "{word} : The term '{word}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.\n    + CategoryInfo          : ObjectNotFound: ({word}:String) [], CommandNotFoundException\n    + FullyQualifiedErrorId : CommandNotFoundException\n"
        ),
        Os::Linux | Os::Mac => format!("sh: 1: {word}: not found\n"),
    }
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

/// True when a collector command runs the Cado Host binary (not just its `cado-host-<job>` work directory).
pub(crate) fn is_cado(command: &str) -> bool {
    command
        .match_indices("cado-host")
        .any(|(at, m)| !command[at + m.len()..].starts_with('-'))
}

/// The program a shell would fail to find: the first word of the last `&&`/`;` segment.
fn program(command: &str) -> &str {
    let last = command.rsplit("&&").next().unwrap_or(command);
    let last = last
        .rsplit(';')
        .find(|s| !s.trim().is_empty())
        .unwrap_or(last);
    first_word(last.trim()).trim_matches(['\'', '"'])
}

impl Jobs {
    /// Runs a script (`runscript -Raw`, or a library script's content) on `host`.
    pub(crate) fn run_script(
        &mut self,
        host: &Host,
        script: &str,
        model: &Model,
        now: Instant,
    ) -> Output {
        // The status probe is one sh / PowerShell polyglot: each host runs the half of its own shell.
        if let Some((sh_half, powershell_half)) = polyglot_halves(script) {
            let own = if host.os == Os::Windows {
                powershell_half
            } else {
                sh_half
            };
            return self.run_script(host, own, model, now);
        }
        let windows_template = script.contains("$d = 'C:\\Windows\\Temp\\cado-host-")
            || script.contains("$d = \"C:\\Windows\\Temp\\cado-host-");
        let unix_template = script.contains("d=/tmp/cado-host-");
        if windows_template && host.os != Os::Windows {
            return Output::err("sh: 1: $d: not found\nsh: 2: Syntax error: \"(\" unexpected\n");
        }
        if unix_template && host.os == Os::Windows {
            return Output::err(not_found_error(Os::Windows, "d=/tmp/cado-host"));
        }
        if (windows_template || unix_template) && script.contains("FALCON-TRIAGE launched") {
            return self.launch(host, script, windows_template, model, now);
        }
        if (windows_template || unix_template) && script.contains("FALCON-TRIAGE log-tail") {
            return self.probe(host, script, now);
        }
        // Plain echo scripts (handy for smoke tests); anything else is unknown to the host.
        let mut out = String::new();
        for line in script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let text = line
                .strip_prefix("echo ")
                .or_else(|| line.strip_prefix("Write-Output "))
                .or_else(|| line.strip_prefix("Write-Host "));
            match text {
                Some(t) => {
                    out.push_str(t.trim_matches(['\'', '"']));
                    out.push('\n');
                }
                None => {
                    return Output {
                        stdout: out,
                        stderr: not_found_error(host.os, first_word(line)),
                    };
                }
            }
        }
        Output::out(out)
    }

    fn launch(
        &mut self,
        host: &Host,
        script: &str,
        windows: bool,
        model: &Model,
        now: Instant,
    ) -> Output {
        let Some(job) = job_of(script) else {
            return Output::out("FALCON-TRIAGE launch-error job=unknown reason=workdir\n");
        };
        let disk = self.disks.entry(host.device_id.clone()).or_default();
        // the free-space check comes first and leaves nothing behind
        if let (Some(free), Some(required)) = (disk.free_bytes, required_free(script))
            && free < required
        {
            return Output::out(format!(
                "FALCON-TRIAGE no-space job={job} free={free} required={required}\n"
            ));
        }
        let command = if windows {
            windows_collector(script)
        } else {
            linux_collector(script)
        };
        let Some(command) = command else {
            return Output::out(format!(
                "FALCON-TRIAGE launch-error job={job} reason=command\n"
            ));
        };
        // `mkdir "$d"` (no -p) is the lock: one atomic create-or-fail, as the script does it
        match disk.workdirs.get(&job).copied() {
            None => {
                disk.workdirs.insert(job.clone(), Workdir::Ours);
            }
            Some(Workdir::Ours) => {
                let pid = self
                    .jobs
                    .get(&(host.device_id.clone(), job.clone()))
                    .map(|j| j.pid.to_string())
                    .unwrap_or_default();
                return Output::out(format!(
                    "FALCON-TRIAGE already-launched job={job} pid={pid}\n"
                ));
            }
            Some(Workdir::Planted) => {
                return Output::out(format!(
                    "FALCON-TRIAGE launch-error job={job} reason=workdir-exists\n"
                ));
            }
        }
        let key = (host.device_id.clone(), job.clone());
        self.next_pid = self.next_pid.wrapping_add(7919) % 60_000;
        let pid = 1_000 + self.next_pid;
        self.draws += 1;
        let is_cado = is_cado(&command);
        let fails = is_cado && draw(model.seed ^ 0xCAD0, self.draws) < model.failure_rate;
        let duration = if is_cado {
            model.collector_duration
        } else {
            Duration::from_millis(50)
        };
        let started_wall = Utc::now();
        let log = if is_cado {
            cado_log(started_wall, duration, fails, host.os)
        } else {
            vec![(
                Duration::ZERO,
                not_found_error(host.os, program(&command))
                    .trim_end()
                    .to_string(),
            )]
        };
        self.jobs.insert(
            key,
            Job {
                job: job.clone(),
                aid: host.device_id.clone(),
                hostname: host.hostname.clone(),
                os: host.os,
                pid,
                started: now,
                started_wall,
                duration,
                command,
                fails,
                exit_code: None,
                log,
                vanished: false,
                uploaded: None,
            },
        );
        Output::out(format!("FALCON-TRIAGE launched job={job} pid={pid}\n"))
    }

    fn probe(&mut self, host: &Host, script: &str, now: Instant) -> Output {
        let Some(job) = job_of(script) else {
            return Output::err(
                "tail: cannot open 'collector.log' for reading: No such file or directory\n",
            );
        };
        let disk = self.disks.get(&host.device_id);
        if disk.and_then(|d| d.workdirs.get(&job)) == Some(&Workdir::Planted) {
            return Output::out(format!(
                "FALCON-TRIAGE untrusted job={job} reason=owner\nFALCON-TRIAGE log-tail job={job}\n"
            ));
        }
        let Some(j) = self.jobs.get(&(host.device_id.clone(), job.clone())) else {
            return Output::out(format!(
                "FALCON-TRIAGE absent job={job}\nFALCON-TRIAGE log-tail job={job}\n"
            ));
        };
        let state = match (j.exit_code, j.vanished) {
            (Some(code), _) if is_cado(&j.command) => {
                let bytes = disk
                    .and_then(|d| d.capture_bytes)
                    .unwrap_or(48_000_000 + u64::from(j.pid) * 1_000);
                format!(
                    "FALCON-TRIAGE exited job={job} code={code}\n\
                     FALCON-TRIAGE archive job={job} bytes={bytes} sha256={} name=cado-host-capture-{}.tar.lz4",
                    archive_sha256(&j.aid, &job),
                    j.started_wall.timestamp()
                )
            }
            (Some(code), _) => format!(
                "FALCON-TRIAGE exited job={job} code={code}\nFALCON-TRIAGE archive job={job} bytes=0 name="
            ),
            (None, true) => format!("FALCON-TRIAGE vanished job={job}"),
            (None, false) => format!("FALCON-TRIAGE running job={job} pid={}", j.pid),
        };
        let elapsed = now.saturating_duration_since(j.started);
        let shown: Vec<&str> = j
            .log
            .iter()
            .filter(|(at, _)| *at <= elapsed || j.exit_code.is_some())
            .map(|(_, l)| l.as_str())
            .collect();
        let tail = &shown[shown.len().saturating_sub(20)..];
        let mut out = format!("{state}\nFALCON-TRIAGE log-tail job={job}\n");
        for l in tail {
            out.push_str(l);
            out.push('\n');
        }
        Output::out(out)
    }

    /// Finishes jobs whose time has come; successful Cado runs upload into `bucket`.
    pub(crate) fn advance(&mut self, now: Instant, bucket: &Bucket) -> usize {
        let mut finished = 0;
        let disks = &self.disks;
        for j in self.jobs.values_mut() {
            if j.exit_code.is_some()
                || j.vanished
                || now.saturating_duration_since(j.started) < j.duration
            {
                continue;
            }
            finished += 1;
            if !is_cado(&j.command) {
                j.exit_code = Some(if j.os == Os::Windows { 1 } else { 127 });
                continue;
            }
            let size = disks
                .get(&j.aid)
                .and_then(|d| d.capture_bytes)
                .unwrap_or(48_000_000 + u64::from(j.pid) * 1_000);
            if !j.fails && j.command.contains("--presigned_data") {
                // one S3 upload takes at most 5 GB (reference/cado-host.md 2.4)
                let upload = if size > S3_UPLOAD_LIMIT {
                    Err(format!(
                        "EntityTooLarge: Your proposed upload of {size} bytes exceeds the maximum allowed size"
                    ))
                } else {
                    bucket
                        .upload_with_command(&j.command, &j.hostname, &j.aid, size)
                        .map_err(|e| e.to_string())
                };
                match upload {
                    Ok(capture) => j.uploaded = Some(capture.key),
                    Err(e) => {
                        // The upload itself failed: the collector reports it and fails.
                        j.fails = true;
                        let at = j.duration;
                        j.log.retain(|(_, l)| {
                            !l.contains("Upload complete") && !l.contains("finished")
                        });
                        j.log.push((
                            at,
                            format!("[{}][ERROR] - Upload failed: {e}", cado_ts(Utc::now())),
                        ));
                        j.log
                            .push((at, "[ERROR] - An error occurred. Exiting.".to_string()));
                        if j.os != Os::Windows {
                            j.log.push((at, CADO_FAILED.to_string()));
                        }
                    }
                }
            }
            // The Linux/macOS wrapper echoes the failure and still exits 0; Windows exits 1.
            j.exit_code = Some(if j.fails && j.os == Os::Windows { 1 } else { 0 });
        }
        finished
    }

    /// Plants a directory someone else owns at the job directory's path of each host (a local user, an
    /// earlier run): launches there are refused with `workdir-exists` and probes answer `untrusted`.
    pub(crate) fn plant_workdir(&mut self, aid: &str, job: &str) -> bool {
        let disk = self.disks.entry(aid.to_string()).or_default();
        match disk.workdirs.get(job) {
            Some(Workdir::Ours) => false,
            _ => {
                disk.workdirs.insert(job.to_string(), Workdir::Planted);
                true
            }
        }
    }

    /// Kills running jobs of a host (a reboot): they become `vanished`.
    pub(crate) fn reboot(&mut self, aid: &str) -> usize {
        let mut n = 0;
        for j in self
            .jobs
            .values_mut()
            .filter(|j| j.aid == aid && j.exit_code.is_none())
        {
            j.vanished = true;
            n += 1;
        }
        n
    }

    /// Files a job left in its work directory, for `cat`/`get`.
    pub(crate) fn file(&self, host: &Host, path: &str, now: Instant) -> Option<String> {
        let job = job_of(path)?;
        let j = self.jobs.get(&(host.device_id.clone(), job))?;
        let name = path.rsplit(['/', '\\']).next().unwrap_or("");
        match name {
            "pid" => Some(format!("{}\n", j.pid)),
            "exit_code" => j.exit_code.map(|c| format!("{c}\n")),
            "collector.log" => {
                let elapsed = now.saturating_duration_since(j.started);
                Some(
                    j.log
                        .iter()
                        .filter(|(at, _)| *at <= elapsed || j.exit_code.is_some())
                        .map(|(_, l)| format!("{l}\n"))
                        .collect(),
                )
            }
            _ => None,
        }
    }
}

/// The largest single S3 upload (`reference/cado-host.md` 2.4: "AWS limits the total upload size to 5GB").
const S3_UPLOAD_LIMIT: u64 = 5_000_000_000;

const CADO_FAILED: &str = "Cado Host has failed. For troubleshooting, please re-run with --verbose and --no_cleanup and send the log file to support";

fn cado_log(
    start: DateTime<Utc>,
    duration: Duration,
    fails: bool,
    os: Os,
) -> Vec<(Duration, String)> {
    let steps: Vec<(f64, &str, String)> = vec![
        (0.0, "INFO", "Cado Host v2.6.0 starting".to_string()),
        (
            0.02,
            "INFO",
            "Checking permissions and free disk space".to_string(),
        ),
        (0.05, "INFO", "Collection mode: balanced".to_string()),
        (
            0.15,
            "INFO",
            "Collecting system artifacts (1/4)".to_string(),
        ),
        (0.35, "INFO", "Collecting user artifacts (2/4)".to_string()),
        (0.55, "INFO", "Collecting logs (3/4)".to_string()),
        (
            0.7,
            "INFO",
            "Collecting process information (4/4)".to_string(),
        ),
        (
            0.8,
            "INFO",
            format!(
                "Creating archive cado-host-capture-{}.tar.lz4",
                start.timestamp()
            ),
        ),
        (0.9, "INFO", "Uploading capture".to_string()),
    ];
    let mut lines: Vec<(Duration, String)> = steps
        .into_iter()
        .map(|(f, level, msg)| {
            let at = duration.mul_f64(f);
            (
                at,
                format!(
                    "[{}][{level}] - {msg}",
                    cado_ts(start + chrono::Duration::from_std(at).unwrap_or_default())
                ),
            )
        })
        .collect();
    let end = start + chrono::Duration::from_std(duration).unwrap_or_default();
    if fails {
        lines.push((
            duration,
            format!(
                "[{}][ERROR] - Failed to upload capture: connection reset by peer",
                cado_ts(end)
            ),
        ));
        lines.push((
            duration,
            format!("[{}][ERROR] - An error occurred. Exiting.", cado_ts(end)),
        ));
        if os != Os::Windows {
            lines.push((duration, CADO_FAILED.to_string()));
        }
    } else {
        lines.push((
            duration,
            format!("[{}][INFO] - Upload complete", cado_ts(end)),
        ));
        lines.push((
            duration,
            format!("[{}][INFO] - Cado Host finished successfully", cado_ts(end)),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runscript_arguments_are_split() {
        let a = runscript_args("runscript -Raw=```echo a -b=c``` -Timeout=60");
        assert_eq!(a["raw"], "echo a -b=c");
        assert_eq!(a["timeout"], "60");
        let a = runscript_args("runscript -CloudFile=\"My Script\" -CommandLine=\"\"");
        assert_eq!(a["cloudfile"], "My Script");
        assert_eq!(a["commandline"], "");
    }

    #[test]
    fn cado_commands_are_told_from_other_collectors() {
        assert!(is_cado(
            "cd '/tmp/cado-host-3f9a1c2e' && sudo ./cado-host --presigned_data 'x'"
        ));
        assert!(is_cado(
            "& 'C:\\Windows\\Temp\\cado-host-3f9a1c2e\\cado-host.exe' --presigned_data 'x'"
        ));
        assert!(!is_cado(
            "cd /tmp/cado-host-3f9a1c2e && ./uac -p ir_triage out"
        ));
        assert_eq!(
            program("cd /tmp/cado-host-3f9a1c2e && ./uac -p ir_triage out"),
            "./uac"
        );
        assert_eq!(program("nosuchtool --x"), "nosuchtool");
    }

    /// The parts of `docs/collector-protocol.md`'s launch scripts the model reads.
    fn linux_launch(job: &str, cmd: &str) -> String {
        format!(
            "d=/tmp/cado-host-{job}\numask 077\n\
             case \"$free\" in ''|*[!0-9]*) ;; *) if [ \"$free\" -lt 2097152 ]; then echo \"FALCON-TRIAGE no-space job={job} free=$((free * 1024)) required=2147483648\"; exit 1; fi;; esac\n\
             if ! mkdir \"$d\" 2>/dev/null; then\nfi\n\
             printf '%s\\n' '{}' > \"$d/cmd\"\n\
             echo \"FALCON-TRIAGE launched job={job} pid=$p\"\n",
            cmd.replace('\'', "'\\''")
        )
    }

    fn windows_launch(job: &str, cmd: &str) -> String {
        format!(
            "$ErrorActionPreference = \"Stop\"\n$d = 'C:\\Windows\\Temp\\cado-host-{job}'\n\
             if ($free -lt 2147483648) {{ Write-Output \"FALCON-TRIAGE no-space job={job} free=$free required=2147483648\"; exit 1 }}\n\
             [System.IO.File]::WriteAllText(\"$d\\cmd.ps1\", '{}')\n\
             Write-Output \"FALCON-TRIAGE launched job={job} pid=$($p.Id)\"\n",
            cmd.replace('\'', "''")
        )
    }

    #[test]
    fn collector_commands_are_extracted() {
        let linux = linux_launch("3f9a1c2e", "sudo ./cado-host --presigned_data 'abc'");
        assert_eq!(
            linux_collector(&linux).unwrap(),
            "sudo ./cado-host --presigned_data 'abc'"
        );
        assert_eq!(job_of(&linux).unwrap(), "3f9a1c2e");
        assert_eq!(required_free(&linux), Some(2_147_483_648));
        let win = windows_launch("3f9a1c2e", "& .\\cado-host.exe --presigned_data 'x'");
        assert_eq!(
            windows_collector(&win).unwrap(),
            "& .\\cado-host.exe --presigned_data 'x'"
        );
        assert_eq!(required_free(&win), Some(2_147_483_648));
    }

    fn fleet_and_model() -> (super::super::fleet::Fleet, Model) {
        let fleet = super::super::fleet::Fleet::generate(
            &super::super::FalconConfig::default(),
            7,
            "cid",
            Instant::now(),
        );
        let model = Model {
            failure_rate: 0.0,
            collector_duration: Duration::from_secs(60),
            seed: 7,
        };
        (fleet, model)
    }

    /// The launch guard is the script's `mkdir`: a second launch is refused, a directory someone else left
    /// there refuses the launch and makes the probe answer `untrusted`, a full disk answers `no-space` and
    /// leaves nothing behind.
    #[test]
    fn the_guard_and_the_disk_are_modelled_as_the_script_sees_them() {
        let (fleet, model) = fleet_and_model();
        let host = fleet.hosts.iter().find(|h| h.os == Os::Linux).unwrap();
        let mut jobs = Jobs::default();
        let now = Instant::now();
        let launch = linux_launch("3f9a1c2e", "./cado-host --presigned_data x");
        let first = jobs.run_script(host, &launch, &model, now).stdout;
        assert!(
            first.starts_with("FALCON-TRIAGE launched job=3f9a1c2e pid="),
            "{first}"
        );
        let pid = first.trim().rsplit('=').next().unwrap().to_string();
        assert_eq!(
            jobs.run_script(host, &launch, &model, now).stdout,
            format!("FALCON-TRIAGE already-launched job=3f9a1c2e pid={pid}\n")
        );
        assert_eq!(jobs.jobs.len(), 1);

        assert!(jobs.plant_workdir(&host.device_id, "0badf00d"));
        assert_eq!(
            jobs.run_script(
                host,
                &linux_launch("0badf00d", "./cado-host --presigned_data x"),
                &model,
                now
            )
            .stdout,
            "FALCON-TRIAGE launch-error job=0badf00d reason=workdir-exists\n"
        );
        assert!(
            jobs.run_script(host, &polyglot_probe("0badf00d"), &model, now)
                .stdout
                .starts_with("FALCON-TRIAGE untrusted job=0badf00d reason=owner\n")
        );
        // our own directory cannot be planted over
        assert!(!jobs.plant_workdir(&host.device_id, "3f9a1c2e"));

        jobs.disks.get_mut(&host.device_id).unwrap().free_bytes = Some(1_000);
        assert_eq!(
            jobs.run_script(
                host,
                &linux_launch("00000001", "./cado-host --presigned_data x"),
                &model,
                now
            )
            .stdout,
            "FALCON-TRIAGE no-space job=00000001 free=1000 required=2147483648\n"
        );
        assert!(
            !jobs.disks[&host.device_id]
                .workdirs
                .contains_key("00000001")
        );
    }

    /// After the collector exits, the probe reports the archive's size and hash; an archive above the
    /// S3 limit fails its upload.
    #[test]
    fn the_probe_reports_the_archive_and_big_uploads_fail() {
        let (fleet, model) = fleet_and_model();
        let host = fleet.hosts.iter().find(|h| h.os == Os::Windows).unwrap();
        let mut jobs = Jobs::default();
        let start = Instant::now();
        jobs.disks
            .entry(host.device_id.clone())
            .or_default()
            .capture_bytes = Some(6_000_000_000);
        let out = jobs.run_script(
            host,
            &windows_launch("3f9a1c2e", "& .\\cado-host.exe --presigned_data 'eyJ4Ijoi'"),
            &model,
            start,
        );
        assert!(out.stdout.starts_with("FALCON-TRIAGE launched"), "{out:?}");
        let bucket = Bucket::new("evidence", 7, 0.0);
        assert_eq!(jobs.advance(start + Duration::from_secs(61), &bucket), 1);
        let out = jobs
            .run_script(
                host,
                &polyglot_probe("3f9a1c2e"),
                &model,
                start + Duration::from_secs(61),
            )
            .stdout;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "FALCON-TRIAGE exited job=3f9a1c2e code=1");
        assert!(
            lines[1].starts_with(&format!(
                "FALCON-TRIAGE archive job=3f9a1c2e bytes=6000000000 sha256={} name=cado-host-capture-",
                archive_sha256(&host.device_id, "3f9a1c2e")
            )),
            "{out}"
        );
        assert!(out.contains("EntityTooLarge"), "{out}");
    }

    /// The sh / PowerShell polyglot status probe of `docs/collector-protocol.md`.
    fn polyglot_probe(job: &str) -> String {
        format!(
            "echo @'\n' > /dev/null\n\
             d=/tmp/cado-host-{job}\n\
             if [ -f \"$d/exit_code\" ]; then echo \"FALCON-TRIAGE exited job={job} code=$(cat \"$d/exit_code\")\"\n\
             elif [ -f \"$d/pid\" ] && kill -0 \"$(cat \"$d/pid\")\" 2>/dev/null; then echo \"FALCON-TRIAGE running job={job} pid=$(cat \"$d/pid\")\"\n\
             elif [ -f \"$d/pid\" ]; then echo \"FALCON-TRIAGE vanished job={job}\"\n\
             else echo \"FALCON-TRIAGE absent job={job}\"; fi\n\
             echo \"FALCON-TRIAGE log-tail job={job}\"\n\
             tail -n 20 \"$d/collector.log\" 2>/dev/null\n\
             exit 0\n\
             '@ > $null\n\
             $d = \"C:\\Windows\\Temp\\cado-host-{job}\"\n\
             if (Test-Path \"$d\\exit_code\") {{ Write-Output \"FALCON-TRIAGE exited job={job} code=$((Get-Content \"$d\\exit_code\" -TotalCount 1).Trim())\" }}\n\
             else {{ Write-Output \"FALCON-TRIAGE absent job={job}\" }}\n\
             Write-Output \"FALCON-TRIAGE log-tail job={job}\"\n\
             #'\n"
        )
    }

    #[test]
    fn the_polyglot_probe_is_split_into_the_half_of_each_shell() {
        let p = polyglot_probe("3f9a1c2e");
        let (sh, ps) = polyglot_halves(&p).expect("a polyglot");
        assert!(sh.starts_with("d=/tmp/cado-host-3f9a1c2e\n"));
        assert!(sh.ends_with("exit 0\n"));
        assert!(ps.starts_with("$d = \"C:\\Windows\\Temp\\cado-host-3f9a1c2e\"\n"));
        // without its `exit 0`, sh would run on into the PowerShell half: not a polyglot
        assert!(polyglot_halves(&p.replace("exit 0\n", "")).is_none());
        assert!(polyglot_halves("d=/tmp/cado-host-3f9a1c2e\necho hi\n").is_none());
    }

    #[test]
    fn every_os_answers_the_polyglot_probe_for_itself() {
        let (fleet, model) = fleet_and_model();
        let mut jobs = Jobs::default();
        let probe = polyglot_probe("3f9a1c2e");
        for os in [Os::Windows, Os::Linux, Os::Mac] {
            let host = fleet
                .hosts
                .iter()
                .find(|h| h.os == os)
                .expect("a host per OS");
            let out = jobs.run_script(host, &probe, &model, Instant::now());
            assert_eq!(
                out,
                Output::out(
                    "FALCON-TRIAGE absent job=3f9a1c2e\nFALCON-TRIAGE log-tail job=3f9a1c2e\n"
                ),
                "{os:?}"
            );
            let launch = if os == Os::Windows {
                windows_launch("3f9a1c2e", "& .\\cado-host.exe --presigned_data 'x'")
            } else {
                linux_launch("3f9a1c2e", "./cado-host --presigned_data x")
            };
            let out = jobs.run_script(host, &launch, &model, Instant::now());
            assert!(
                out.stdout
                    .starts_with("FALCON-TRIAGE launched job=3f9a1c2e pid="),
                "{os:?}: {out:?}"
            );
            let out = jobs.run_script(host, &probe, &model, Instant::now());
            assert!(
                out.stdout
                    .starts_with("FALCON-TRIAGE running job=3f9a1c2e pid="),
                "{os:?}: {out:?}"
            );
        }
    }
}
