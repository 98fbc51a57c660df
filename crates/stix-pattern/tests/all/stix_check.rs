//! The `stix_check` example, run as a user runs it: patterns on stdin, JSON lines on stdout.
//! `cargo test` builds examples before it runs tests, so the binary sits in `target/<profile>/examples/`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn stix_check() -> PathBuf {
    // target/<profile>/deps/all-<hash> -> target/<profile>/examples/stix_check
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = profile_dir
        .join("examples")
        .join(format!("stix_check{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (which builds examples), not `--test all` alone",
        path.display()
    );
    path
}

fn run(args: &[&str], input: &str) -> (String, bool) {
    let mut child = Command::new(stix_check())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stix_check starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("stix_check ends");
    (
        String::from_utf8(out.stdout).expect("utf-8"),
        out.status.success(),
    )
}

#[test]
fn one_json_line_per_pattern_with_error_columns() {
    let input = "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']\n\
                 [ipv4-addr:value = '198.51.100.1'\n\
                 [domain-name:value = 'evil.example'] OR [url:value = 'http://x']\r\n";
    let (stdout, ok) = run(&[], input);
    assert!(ok);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], serde_json::json!({"valid": true}));
    assert_eq!(lines[1]["valid"], false);
    assert!(
        lines[1]["error"].as_str().unwrap().contains(']'),
        "{}",
        lines[1]
    );
    assert!(lines[1]["column"].as_u64().is_some());
    assert_eq!(lines[2], serde_json::json!({"valid": true}));
}

#[test]
fn inspect_and_spec_flags() {
    let (stdout, ok) = run(&["--inspect"], "[file:hashes.'SHA-256' = 'aa']\n");
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    // Too short for a SHA-256: the reference validator rejects it, and so do we.
    assert_eq!(v["valid"], false, "{v}");

    let (stdout, ok) = run(
        &["--inspect", "--spec", "2.0"],
        "[domain-name:value = 'evil.example']\n",
    );
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["valid"], true);
    assert!(
        v["inspection"].to_string().contains("domain-name"),
        "inspection names the object type: {v}"
    );

    let (_, ok) = run(&["--spec", "3.0"], "");
    assert!(!ok, "an unknown spec version is refused");
}
