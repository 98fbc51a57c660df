//! Validates STIX patterns read from standard input, one per line, and writes one JSON object per line:
//! `{"valid":true}` or `{"valid":false,"error":"...","column":N}`.
//!
//! ```text
//! stix_check [--spec 2.0|2.1] [--strict] [--inspect] < patterns.txt > results.jsonl
//! ```
//!
//! `--inspect` adds `"inspection": {...}` (comparisons per object type, observation operators,
//! qualifiers) to valid lines. Input and output are buffered and locked; memory stays constant whatever
//! the number of lines. Exit status: 0 when every line was read and written, 2 on bad arguments, 1 on an
//! I/O error.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use stix_pattern::{ParseOptions, Pattern, SpecVersion};

const USAGE: &str = "usage: stix_check [--spec 2.0|2.1] [--strict] [--inspect] < patterns.txt";

fn main() -> ExitCode {
    let mut opts = ParseOptions::default();
    let mut inspect = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--inspect" => inspect = true,
            "--strict" => opts.strict = true,
            "--spec" => match args.next().map(|v| v.parse::<SpecVersion>()) {
                Some(Ok(v)) => opts.version = v,
                Some(Err(e)) => {
                    eprintln!("stix_check: {e}\n{USAGE}");
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!("stix_check: --spec needs a value\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("stix_check: unknown argument '{other}'\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match run(&opts, inspect) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stix_check: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &ParseOptions, inspect: bool) -> io::Result<()> {
    let stdin = io::stdin();
    let mut input = io::BufReader::with_capacity(1 << 16, stdin.lock());
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line: Vec<u8> = Vec::with_capacity(256);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t,
            Err(e) => {
                let col = String::from_utf8_lossy(&line[..e.valid_up_to()])
                    .chars()
                    .count();
                writeln!(
                    out,
                    "{{\"valid\":false,\"error\":\"line is not valid UTF-8\",\"column\":{col}}}"
                )?;
                continue;
            }
        };
        match Pattern::parse_with(text, opts) {
            Ok(p) if inspect => {
                out.write_all(b"{\"valid\":true,\"inspection\":")?;
                serde_json::to_writer(&mut out, &p.inspect())?;
                out.write_all(b"}\n")?;
            }
            Ok(_) => out.write_all(b"{\"valid\":true}\n")?,
            Err(e) => {
                out.write_all(b"{\"valid\":false,\"error\":")?;
                serde_json::to_writer(&mut out, &e.to_string())?;
                writeln!(out, ",\"column\":{}}}", e.column().unwrap_or(0))?;
            }
        }
    }
    out.flush()
}
