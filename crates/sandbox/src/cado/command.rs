//! Validation of `POST /api/v3/import/cado-host` requests and the per-OS one-liners.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::CadoConfig;
use super::bucket::{Bucket, Issued};

/// Target OS of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    Windows,
    Linux,
    Macos,
    MacosX86,
    Kubernetes,
}

/// A validated import request.
#[derive(Debug, Clone)]
pub(crate) struct ImportRequest {
    pub(crate) project_id: u64,
    pub(crate) auto: bool,
    pub(crate) os: Os,
    pub(crate) downloadable: bool,
    pub(crate) options: Options,
}

/// `command_options`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    as_super: Option<bool>,
    additional_files: Vec<String>,
    light_mode: bool,
    max_mode: bool,
    enable_memory: bool,
    extended_memory: bool,
    verbose: bool,
    no_clean: bool,
    drive_letter: Option<String>,
    groups: Vec<String>,
    skip_ssl_verification: bool,
    pod_name: Option<String>,
    pod_namespace: Option<String>,
}

const BOOL_OPTIONS: &[&str] = &[
    "as_super",
    "light_mode",
    "max_mode",
    "enable_memory",
    "extended_memory",
    "verbose",
    "no_clean",
    "skip_scan",
    "skip_ssl_verification",
    "custom_container",
    "is_non_root",
];
const STRING_OPTIONS: &[&str] = &[
    "filename",
    "drive_letter",
    "pod_name",
    "pod_namespace",
    "target_container",
];
const LIST_OPTIONS: &[&str] = &["additional_files", "groups"];

impl ImportRequest {
    /// Validates the JSON body; the error names the offending field.
    pub(crate) fn parse(body: &Value) -> Result<ImportRequest, String> {
        let obj = body
            .as_object()
            .ok_or("request body must be a JSON object")?;
        for key in obj.keys() {
            if ![
                "project_id",
                "deployment",
                "os",
                "downloadable",
                "command_options",
            ]
            .contains(&key.as_str())
            {
                return Err(format!("{key}: unknown field"));
            }
        }
        let project_id = match obj.get("project_id") {
            Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0),
            Some(Value::String(s)) => s.parse::<u64>().ok().filter(|n| *n > 0),
            _ => None,
        }
        .ok_or("project_id: a positive integer is required")?;
        let auto = match obj.get("deployment").map(|v| v.as_str()) {
            None | Some(Some("auto")) => true,
            Some(Some("manual")) => false,
            _ => return Err("deployment: must be \"auto\" or \"manual\"".into()),
        };
        let os = match obj.get("os").and_then(Value::as_str) {
            Some("windows") => Os::Windows,
            Some("linux") => Os::Linux,
            Some("macos" | "osx") => Os::Macos,
            Some("osx-x86") => Os::MacosX86,
            Some("kubernetes" | "openshift") => Os::Kubernetes,
            Some(other) => {
                return Err(format!(
                    "os: unsupported value {other:?} (windows, linux, macos, kubernetes, openshift)"
                ));
            }
            None => return Err("os: required".into()),
        };
        let downloadable = match obj.get("downloadable") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("downloadable: must be a boolean".into()),
        };
        let options = match obj.get("command_options") {
            None | Some(Value::Null) => Options::default(),
            Some(Value::Object(map)) => Options::parse(map)?,
            Some(_) => return Err("command_options: must be an object".into()),
        };
        if os == Os::Kubernetes && options.pod_name.is_none() {
            return Err("command_options.pod_name: required for kubernetes and openshift".into());
        }
        Ok(ImportRequest {
            project_id,
            auto,
            os,
            downloadable,
            options,
        })
    }
}

impl Options {
    fn parse(map: &Map<String, Value>) -> Result<Options, String> {
        let mut o = Options::default();
        for (key, value) in map {
            let k = key.as_str();
            if BOOL_OPTIONS.contains(&k) {
                let b = value
                    .as_bool()
                    .ok_or_else(|| format!("command_options.{k}: must be a boolean"))?;
                match k {
                    "as_super" => o.as_super = Some(b),
                    "light_mode" => o.light_mode = b,
                    "max_mode" => o.max_mode = b,
                    "enable_memory" => o.enable_memory = b,
                    "extended_memory" => o.extended_memory = b,
                    "verbose" => o.verbose = b,
                    "no_clean" => o.no_clean = b,
                    "skip_ssl_verification" => o.skip_ssl_verification = b,
                    _ => {}
                }
            } else if STRING_OPTIONS.contains(&k) {
                if value.is_null() {
                    continue;
                }
                let s = value
                    .as_str()
                    .ok_or_else(|| format!("command_options.{k}: must be a string"))?;
                match k {
                    "drive_letter" => {
                        if !(s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic())) {
                            return Err(format!(
                                "command_options.drive_letter: must be one letter, got {s:?}"
                            ));
                        }
                        o.drive_letter = Some(s.to_ascii_uppercase());
                    }
                    "pod_name" => o.pod_name = Some(s.to_owned()),
                    "pod_namespace" => o.pod_namespace = Some(s.to_owned()),
                    _ => {}
                }
            } else if LIST_OPTIONS.contains(&k) {
                let list = value
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|v| v.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| format!("command_options.{k}: must be a list of strings"))?;
                if k == "groups" {
                    if let Some(bad) = list.iter().find(|g| {
                        g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    }) {
                        return Err(format!(
                            "command_options.groups: invalid group name {bad:?}"
                        ));
                    }
                    o.groups = list;
                } else {
                    if let Some(bad) = list
                        .iter()
                        .find(|p| p.contains('"') || p.ends_with('/') || p.ends_with('\\'))
                    {
                        return Err(format!(
                            "command_options.additional_files: invalid path {bad:?} (no quotes, no trailing slash)"
                        ));
                    }
                    o.additional_files = list;
                }
            } else {
                return Err(format!("command_options.{k}: unknown option"));
            }
        }
        if o.light_mode && o.max_mode {
            return Err("command_options: light_mode and max_mode are exclusive".into());
        }
        Ok(o)
    }
}

/// Path of the binary under `<base>/cado-host/<version>/`.
pub(crate) fn binary_path(os: &str) -> Option<&'static str> {
    match os {
        "linux" => Some("linux/cado-host"),
        "windows" => Some("windows/cado-host.exe"),
        "macos" | "osx" => Some("osx/cado-host"),
        "osx-x86" => Some("osx/cado-host-x86"),
        _ => None,
    }
}

#[derive(serde::Serialize)]
struct Presigned {
    url: String,
    fields: PresignedFields,
    policy: String,
    bucket: String,
    folder: String,
    provider: &'static str,
}

#[derive(serde::Serialize)]
struct PresignedFields {
    key: String,
    #[serde(rename = "x-amz-algorithm")]
    x_amz_algorithm: &'static str,
    #[serde(rename = "x-amz-credential")]
    x_amz_credential: String,
    #[serde(rename = "x-amz-date")]
    x_amz_date: String,
    #[serde(rename = "x-amz-security-token")]
    x_amz_security_token: String,
    policy: String,
    #[serde(rename = "x-amz-signature")]
    x_amz_signature: String,
}

/// Builds `data` of the answer: command, presigned data, storage info.
pub(crate) fn build(
    req: &ImportRequest,
    config: &CadoConfig,
    bucket: &Bucket,
    seed: u64,
    n: u64,
    now: DateTime<Utc>,
) -> Value {
    let folder = format!(
        "cado-collector/project-{}/cado-host/{}/",
        req.project_id,
        now.format("%Y/%m/%d")
    );
    let expires = now
        + chrono::Duration::from_std(config.presigned_ttl).unwrap_or(chrono::Duration::hours(12));
    let date = now.format("%Y%m%d").to_string();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let access = format!("ASIA{:016X}", mix(seed, n));
    let credential = format!("{access}/{date}/{}/s3/aws4_request", config.region);
    let token = B64.encode(format!("sandbox-session-{seed}-{n}-{}", now.timestamp()));
    let policy_doc = json!({
        "expiration": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "conditions": [
            {"bucket": config.bucket_name},
            ["starts-with", "$key", folder],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
            {"x-amz-security-token": token},
            ["content-length-range", 0, 5_368_709_120u64],
        ]
    });
    let policy = B64.encode(policy_doc.to_string());
    let signature = bucket.issue(
        &policy,
        Issued {
            key_prefix: folder.clone(),
            expires,
        },
    );
    // Field order as the platform sends it: the one-liner's base64 starts with `{"url":`.
    let presigned = Presigned {
        url: format!("https://{}.s3.amazonaws.com/", config.bucket_name),
        fields: PresignedFields {
            key: format!("{folder}${{filename}}"),
            x_amz_algorithm: "AWS4-HMAC-SHA256",
            x_amz_credential: credential,
            x_amz_date: amz_date,
            x_amz_security_token: token,
            policy: policy.clone(),
            x_amz_signature: signature,
        },
        policy,
        bucket: config.bucket_name.clone(),
        folder: folder.clone(),
        provider: "aws",
    };
    let presigned_data =
        B64.encode(serde_json::to_string(&presigned).expect("presigned data serializes"));
    let dir_id = format!("{:08x}", mix(seed ^ 0xD1, n) as u32);
    let url = |path: &str| {
        format!(
            "{}/cado-host/{}/{path}",
            config.download_base, config.cado_host_version
        )
    };
    let command = match req.os {
        Os::Windows => windows_command(
            req,
            &url(""),
            &url("windows/cado-host.exe"),
            &dir_id,
            &presigned_data,
        ),
        Os::Linux => unix_command(req, &url("linux/cado-host"), &dir_id, &presigned_data, true),
        Os::Macos => unix_command(req, &url("osx/cado-host"), &dir_id, &presigned_data, false),
        Os::MacosX86 => unix_command(
            req,
            &url("osx/cado-host-x86"),
            &dir_id,
            &presigned_data,
            false,
        ),
        Os::Kubernetes => k8s_command(req, &url("linux/cado-host"), &dir_id, &presigned_data),
    };
    let mut data = json!({
        "command": command,
        "presigned_data": presigned_data,
        "cloud_storage_info": {"bucket": config.bucket_name, "path": folder},
    });
    if req.downloadable {
        data["download_url"] = Value::String(url(
            binary_path(os_name(req.os)).unwrap_or("linux/cado-host")
        ));
    }
    data
}

fn os_name(os: Os) -> &'static str {
    match os {
        Os::Windows => "windows",
        Os::Linux | Os::Kubernetes => "linux",
        Os::Macos => "macos",
        Os::MacosX86 => "osx-x86",
    }
}

fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x1234_5678);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Capture flags for the Linux/macOS binary.
fn unix_flags(o: &Options, linux: bool) -> String {
    let mut flags = String::new();
    if o.light_mode {
        flags.push_str(" -c light");
    } else if o.max_mode {
        flags.push_str(" -c max");
    }
    if linux {
        if !o.enable_memory {
            flags.push_str(" --skip_memory");
        } else if o.extended_memory {
            flags.push_str(" --include_large_memory");
        }
    }
    if !o.groups.is_empty() {
        flags.push_str(" --groups ");
        flags.push_str(&o.groups.join(" "));
    }
    if !o.additional_files.is_empty() {
        flags.push_str(" -a");
        for f in &o.additional_files {
            flags.push_str(&format!(" \"{f}\""));
        }
    }
    if o.no_clean {
        flags.push_str(" --no_cleanup");
    }
    if o.skip_ssl_verification {
        flags.push_str(" --skip_ssl_verify");
    }
    flags
}

fn unix_command(
    req: &ImportRequest,
    bin_url: &str,
    dir_id: &str,
    presigned: &str,
    linux: bool,
) -> String {
    let o = &req.options;
    let sudo = if o.as_super.unwrap_or(true) {
        "sudo "
    } else {
        ""
    };
    let dir = format!("/tmp/cado-host-{dir_id}");
    let verbose = if o.verbose { " --verbose" } else { "" };
    let run = format!(
        "{sudo}./cado-host{verbose} capture --presigned_data \"{presigned}\"{flags} || echo \"Cado Host has failed. For troubleshooting, run again with --verbose and --no_cleanup and send cado-host.log to support\"",
        flags = unix_flags(o, linux)
    );
    let cleanup = if o.no_clean {
        String::new()
    } else {
        format!("cd /tmp; {sudo}rm -r {dir}; ")
    };
    if !req.auto {
        // Manual deployment: the binary is already in the current directory.
        return format!("{run}; exit 0");
    }
    format!(
        "mkdir -p {dir}; if command -v curl >/dev/null 2>&1; then {sudo}curl -s {bin_url} --output {dir}/cado-host; \
elif command -v wget >/dev/null 2>&1; then {sudo}wget -q --output-document {dir}/cado-host {bin_url}; \
else echo \"Cado Host requires curl or wget\"; exit 1; fi; \
if [ ! -f {dir}/cado-host ]; then echo \"Failed to download Cado Host, check that this host can reach {bin_url}\"; exit 1; fi; \
cd {dir}; {sudo}chmod +x ./cado-host; {run}; {cleanup}exit 0"
    )
}

fn windows_command(
    req: &ImportRequest,
    _base: &str,
    bin_url: &str,
    dir_id: &str,
    presigned: &str,
) -> String {
    let o = &req.options;
    let dir = format!("C:\\Windows\\Temp\\cado-host-{dir_id}");
    let mut flags = String::new();
    if o.light_mode {
        flags.push_str(" -c light");
    } else if o.max_mode {
        flags.push_str(" -c max");
    }
    if o.enable_memory {
        flags.push_str(" --include_memory");
    }
    if let Some(d) = &o.drive_letter {
        flags.push_str(&format!(" --dd {d}"));
    }
    if !o.groups.is_empty() {
        flags.push_str(" --groups ");
        flags.push_str(&o.groups.join(" "));
    }
    if !o.additional_files.is_empty() {
        flags.push_str(" -a");
        for f in &o.additional_files {
            flags.push_str(&format!(" '{}'", f.replace('\'', "''")));
        }
    }
    if o.no_clean {
        flags.push_str(" --no_cleanup");
    }
    if o.skip_ssl_verification {
        flags.push_str(" --skip_ssl_verify");
    }
    let verbose = if o.verbose { " --verbose" } else { "" };
    let run = format!(
        "& \"$d\\cado-host.exe\"{verbose} capture --presigned_data '{presigned}'{flags}; if ($LASTEXITCODE -ne 0) {{ Write-Output 'Cado Host has failed. For troubleshooting, run again with --verbose and --no_cleanup' }}"
    );
    let cleanup = if o.no_clean {
        ""
    } else {
        "Set-Location C:\\Windows\\Temp; Remove-Item -Recurse -Force $d; "
    };
    if !req.auto {
        return format!("$d = (Get-Location).Path; {run}; exit 0");
    }
    format!(
        "$ProgressPreference = 'SilentlyContinue'; $d = '{dir}'; New-Item -ItemType Directory -Force -Path $d | Out-Null; \
try {{ Invoke-WebRequest -UseBasicParsing -Uri '{bin_url}' -OutFile \"$d\\cado-host.exe\" }} catch {{ Write-Output \"Failed to download Cado Host: $_\"; exit 1 }}; \
Set-Location $d; {run}; {cleanup}exit 0"
    )
}

fn k8s_command(req: &ImportRequest, bin_url: &str, dir_id: &str, presigned: &str) -> String {
    let o = &req.options;
    let ns = o.pod_namespace.as_deref().unwrap_or("default");
    let pod = o.pod_name.as_deref().unwrap_or_default();
    let inner = unix_command(
        &ImportRequest {
            options: Options {
                as_super: Some(false),
                ..o.clone()
            },
            ..req.clone()
        },
        bin_url,
        dir_id,
        presigned,
        true,
    );
    format!(
        "kubectl exec -n {ns} {pod} -- sh -c '{}'",
        inner.replace('\'', "'\\''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ImportRequest, String> {
        ImportRequest::parse(&v)
    }

    #[test]
    fn rejects_bad_fields_by_name() {
        assert!(
            parse(json!({"os": "linux"}))
                .unwrap_err()
                .starts_with("project_id")
        );
        assert!(
            parse(json!({"project_id": 1, "os": "solaris"}))
                .unwrap_err()
                .starts_with("os")
        );
        assert!(
            parse(json!({"project_id": 1, "os": "linux", "deployment": "push"}))
                .unwrap_err()
                .starts_with("deployment")
        );
        assert!(
            parse(json!({"project_id": 1, "os": "linux", "command_options": {"light": true}}))
                .unwrap_err()
                .contains("light")
        );
        assert!(
            parse(json!({"project_id": 1, "os": "linux", "command_options": {"verbose": "yes"}}))
                .unwrap_err()
                .contains("verbose")
        );
        assert!(parse(json!({"project_id": 1, "os": "linux", "command_options": {"light_mode": true, "max_mode": true}})).is_err());
        assert!(
            parse(json!({"project_id": 1, "os": "kubernetes"}))
                .unwrap_err()
                .contains("pod_name")
        );
        assert!(
            parse(json!({"project_id": 1, "os": "linux", "extra": 1}))
                .unwrap_err()
                .starts_with("extra")
        );
    }

    #[test]
    fn accepts_the_documented_shape() {
        let r = parse(json!({"project_id": 3, "deployment": "auto", "os": "windows", "downloadable": false,
            "command_options": {"groups": ["program_execution", "processes"], "enable_memory": true, "drive_letter": "c"}}))
        .unwrap();
        assert_eq!(r.project_id, 3);
        assert_eq!(r.os, Os::Windows);
        assert_eq!(r.options.drive_letter.as_deref(), Some("C"));
    }
}
