//! Parity with the reference validator over the labelled corpus (`tests/corpus/labelled.jsonl`, produced
//! by `tests/corpus/label.py` with stix2-patterns 2.1.2), round-trips and inspection parity.

use serde_json::Value;
use stix_pattern::{ParseOptions, Pattern, SpecVersion};

pub(crate) fn corpus() -> &'static [Value] {
    static CORPUS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        include_str!("../corpus/labelled.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
            .collect()
    })
}

fn opts(v: SpecVersion) -> ParseOptions {
    ParseOptions {
        version: v,
        ..Default::default()
    }
}

/// Patterns where we deliberately differ from the reference (see docs/stix-pattern.md).
fn deliberate(pattern: &str, version: SpecVersion) -> bool {
    // STIX 2.0 START/STOP with quoted timestamps (the 2.0 grammar's form).
    version == SpecVersion::V2_0 && pattern.contains("START '")
}

/// Our documented limits: integers beyond 64 bits and nesting beyond `max_depth`.
fn deliberate_error(e: &stix_pattern::Error) -> bool {
    matches!(e, stix_pattern::Error::TooDeep { .. })
        || e.message().contains("does not fit in 64 bits")
        || e.message().contains("is too large")
}

#[test]
fn validity_agrees_with_reference() {
    let mut disagreements = Vec::new();
    let mut checked = 0;
    for row in corpus() {
        let p = row["pattern"].as_str().unwrap();
        for (key, v) in [("v21", SpecVersion::V2_1), ("v20", SpecVersion::V2_0)] {
            let expected = &row[key]["valid"];
            let Some(expected) = expected.as_bool() else {
                continue;
            }; // reference crashed
            if deliberate(p, v) {
                continue;
            }
            checked += 1;
            let got = Pattern::parse_with(p, &opts(v));
            if let Err(e) = &got
                && deliberate_error(e)
            {
                continue;
            }
            if got.is_ok() != expected {
                disagreements.push(format!("{key} {p:?}: reference {expected}, ours {got:?}"));
            }
        }
    }
    assert!(checked > 1000, "corpus too small: {checked}");
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

#[test]
fn error_columns_agree_with_reference() {
    let mut same = 0;
    let mut total = 0;
    let mut diffs = Vec::new();
    for row in corpus() {
        let p = row["pattern"].as_str().unwrap();
        let Some(col) = row["v21"]["column"].as_u64() else {
            continue;
        };
        if row["v21"]["line"].as_u64() != Some(1) {
            continue;
        }
        let Err(e) = Pattern::parse(p) else { continue };
        total += 1;
        if e.column() == Some(col as usize) {
            same += 1;
        } else {
            diffs.push(format!(
                "{p:?}: reference {col} ({}), ours {:?} ({e})",
                row["v21"]["error"],
                e.column()
            ));
        }
    }
    assert!(total > 150, "too few syntax errors in the corpus: {total}");
    assert!(
        same == total,
        "only {same}/{total} error columns agree:\n{}",
        diffs.join("\n")
    );
}

/// Every valid pattern round-trips: parse, print, re-parse gives an equal tree, and printing is a fixed point.
#[test]
fn valid_patterns_round_trip() {
    let mut n = 0;
    for row in corpus() {
        let p = row["pattern"].as_str().unwrap();
        for v in [SpecVersion::V2_1, SpecVersion::V2_0] {
            let Ok(ast) = Pattern::parse_with(p, &opts(v)) else {
                continue;
            };
            let printed = ast.to_string();
            let again = Pattern::parse_with(&printed, &opts(v))
                .unwrap_or_else(|e| panic!("{p:?} printed as {printed:?} does not parse: {e}"));
            assert_eq!(ast, again, "{p:?} printed as {printed:?}");
            assert_eq!(
                again.to_string(),
                printed,
                "printing is not a fixed point for {p:?}"
            );
            n += 1;
        }
    }
    assert!(n > 1000, "{n}");
}

fn inspection_json(p: &Pattern) -> Value {
    serde_json::to_value(p.inspect()).unwrap()
}

/// Canonical spellings we print where the reference keeps the source text (see docs).
fn canonical_only(p: &str) -> bool {
    p.contains("==")
        || p.contains("<>")
        || p.contains('+')
        || p.contains("00.5")
        || p.contains("-0]")
        || p.contains(".50")
        || p.contains(" .")
        || p.contains("-.")
}

#[test]
fn inspection_agrees_with_reference() {
    let mut n = 0;
    let mut bad = Vec::new();
    for row in corpus() {
        let p = row["pattern"].as_str().unwrap();
        let expected = &row["inspect21"];
        if !expected.is_object() || canonical_only(p) {
            continue;
        }
        let Ok(parsed) = Pattern::parse(p) else {
            continue;
        }; // deliberate limits, checked above
        let ours = inspection_json(&parsed);
        if &ours != expected {
            bad.push(format!("{p:?}\n  ours {ours}\n  ref  {expected}"));
        }
        n += 1;
    }
    assert!(n > 500, "{n}");
    assert!(bad.is_empty(), "{} differ:\n{}", bad.len(), bad.join("\n"));
}

/// The specification's example patterns (stix2-patterns `spec_examples.txt`, 2.1 and 2.0) are valid in
/// both versions and round-trip.
#[test]
fn spec_examples_are_valid() {
    let examples: Vec<String> = corpus()
        .iter()
        .filter(|r| r["source"] == "spec_examples")
        .map(|r| r["pattern"].as_str().unwrap().to_string())
        .collect();
    assert!(examples.len() >= 23, "{}", examples.len());
    for p in &examples {
        let ast = Pattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(Pattern::parse(&ast.to_string()).unwrap(), ast);
    }
}
