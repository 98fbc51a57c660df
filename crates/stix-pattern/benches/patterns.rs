//! Criterion benches: validation throughput over typical indicator patterns and over the labelled
//! conformance corpus, plus inspection, printing and matching.
//!
//! `cargo bench -p stix-pattern --bench patterns`

use std::hint::black_box;

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use stix_pattern::{ParseOptions, Pattern};

/// A deterministic mix shaped like what OpenCTI emits: mostly single hash / network comparisons, some
/// ORs of hashes, a few compound and qualified patterns.
pub fn typical() -> Vec<String> {
    let hex = |seed: u64, n: usize| -> String {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from_digit((x % 16) as u32, 16).unwrap()
            })
            .collect()
    };
    let mut out = Vec::new();
    for i in 0..200u64 {
        out.push(match i % 10 {
            0 | 1 => format!("[file:hashes.'SHA-256' = '{}']", hex(i, 64)),
            2 => format!("[file:hashes.MD5 = '{}']", hex(i, 32)),
            3 => format!("[ipv4-addr:value = '198.51.{}.{}']", i % 256, (i * 7) % 256),
            4 => format!("[domain-name:value = 'host{i}.evil-example.com']"),
            5 => format!("[url:value = 'http://evil-example.com/a/{i}?q=1']"),
            6 => format!(
                "[file:hashes.'SHA-256' = '{}' OR file:hashes.MD5 = '{}']",
                hex(i, 64),
                hex(i + 1, 32)
            ),
            7 => format!("[email-addr:value = 'user{i}@example.org']"),
            8 => format!(
                "[network-traffic:dst_ref.value ISSUBSET '10.{}.0.0/16' AND network-traffic:dst_port = 443]",
                i % 256
            ),
            _ => format!(
                "([file:name = 'dropper{i}.exe'] FOLLOWEDBY [process:command_line MATCHES '^cmd\\\\.exe /c']) WITHIN 600 SECONDS"
            ),
        });
    }
    out
}

fn corpus() -> Vec<String> {
    include_str!("../tests/corpus/labelled.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["pattern"].as_str().unwrap().to_string()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let typical = typical();
    let corpus = corpus();
    let opts = ParseOptions::default();

    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(typical.len() as u64));
    g.bench_function("typical_indicators", |b| {
        b.iter(|| {
            typical
                .iter()
                .filter(|p| Pattern::is_valid(black_box(p), &opts))
                .count()
        })
    });
    g.throughput(Throughput::Elements(corpus.len() as u64));
    g.bench_function("conformance_corpus", |b| {
        b.iter(|| {
            corpus
                .iter()
                .filter(|p| Pattern::is_valid(black_box(p), &opts))
                .count()
        })
    });
    let strict = ParseOptions {
        strict: true,
        ..Default::default()
    };
    g.throughput(Throughput::Elements(typical.len() as u64));
    g.bench_function("typical_indicators_strict", |b| {
        b.iter(|| {
            typical
                .iter()
                .filter(|p| Pattern::is_valid(black_box(p), &strict))
                .count()
        })
    });
    g.finish();

    let parsed: Vec<Pattern> = typical.iter().map(|p| Pattern::parse(p).unwrap()).collect();
    let mut g = c.benchmark_group("after_parse");
    g.throughput(Throughput::Elements(parsed.len() as u64));
    g.bench_function("inspect", |b| {
        b.iter(|| {
            parsed
                .iter()
                .map(|p| p.inspect().comparisons.len())
                .sum::<usize>()
        })
    });
    g.bench_function("print", |b| {
        b.iter(|| parsed.iter().map(|p| p.to_string().len()).sum::<usize>())
    });
    g.bench_function("simple_observables", |b| {
        b.iter(|| {
            parsed
                .iter()
                .filter_map(|p| p.simple_observables().ok())
                .count()
        })
    });
    g.finish();

    let data = vec![
        json!({"type": "observed-data", "id": "observed-data--1", "first_observed": "2016-01-01T00:00:00Z",
               "last_observed": "2016-01-01T00:00:00Z", "number_observed": 1, "object_refs": ["file--1"]}),
        json!({"type": "file", "id": "file--1", "name": "dropper7.exe",
               "hashes": {"MD5": "d41d8cd98f00b204e9800998ecf8427e"}}),
    ];
    let p = Pattern::parse(
        "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e' AND file:name LIKE 'dropper%']",
    )
    .unwrap();
    let mut g = c.benchmark_group("match");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_sco_bundle_with_compile", |b| {
        b.iter(|| p.matches(black_box(&data)).unwrap())
    });
    let matcher = p.matcher().unwrap();
    g.bench_function("one_sco_bundle_precompiled", |b| {
        b.iter(|| matcher.matches(black_box(&data)).unwrap())
    });
    g.finish();
}

/// On-CPU time of the benchmarking thread (`/proc/thread-self/schedstat`, Linux), so that figures on a
/// shared, busy machine measure one core's work rather than time spent waiting for a core.
pub struct CpuTime;

fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, i: Duration) -> Duration {
        thread_cpu().saturating_sub(i)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WallTime.formatter()
    }
}

fn bench_cpu(c: &mut Criterion<CpuTime>) {
    let typical = typical();
    let corpus = corpus();
    let opts = ParseOptions::default();
    let mut g = c.benchmark_group("validate_cpu_time");
    g.throughput(Throughput::Elements(typical.len() as u64));
    g.bench_function("typical_indicators", |b| {
        b.iter(|| {
            typical
                .iter()
                .filter(|p| Pattern::is_valid(black_box(p), &opts))
                .count()
        })
    });
    g.throughput(Throughput::Elements(corpus.len() as u64));
    g.bench_function("conformance_corpus", |b| {
        b.iter(|| {
            corpus
                .iter()
                .filter(|p| Pattern::is_valid(black_box(p), &opts))
                .count()
        })
    });
    g.finish();
}

criterion_group! {
    name = cpu_benches;
    config = Criterion::default()
        .with_measurement(CpuTime)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_cpu
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches, cpu_benches);
