//! Strict mode: specification rules the reference validator does not check.

use stix_pattern::{Error, ParseOptions, Pattern, SpecVersion};

fn strict() -> ParseOptions {
    ParseOptions {
        strict: true,
        ..Default::default()
    }
}

#[track_caller]
fn rejected_only_in_strict(p: &str, needle: &str) {
    assert!(Pattern::parse(p).is_ok(), "reference parity accepts {p}");
    match Pattern::parse_with(p, &strict()) {
        Err(e @ Error::Strict { .. }) => assert!(e.to_string().contains(needle), "{p}: {e}"),
        other => panic!("{p}: expected a strict error, got {other:?}"),
    }
}

#[test]
fn strict_rules() {
    rejected_only_in_strict(
        "[abc:b = 1] START t'2016-07-01T00:00:00Z' STOP t'2016-06-01T00:00:00Z'",
        "STOP time must be later",
    );
    rejected_only_in_strict(
        "[abc:b = 1] START t'2016-07-01T00:00:00Z' STOP t'2016-07-01T00:00:00.000Z'",
        "STOP time must be later",
    );
    rejected_only_in_strict("[abc:b = 1] WITHIN 0 SECONDS", "WITHIN must be a positive");
    rejected_only_in_strict("[abc:b = 1] REPEATS 0 TIMES", "REPEATS must be a positive");
    rejected_only_in_strict(
        "([abc:b = 1]) WITHIN 5 SECONDS WITHIN 6 SECONDS",
        "two WITHIN",
    );
    rejected_only_in_strict("[abc:b IN (1, 'a')]", "same type");
    rejected_only_in_strict("[abc:b ISSUBSET '10.0.0.0/33']", "not an IP address");
    rejected_only_in_strict("[abc:b = t'2024-02-30T00:00:00Z']", "calendar");
    rejected_only_in_strict("[abc:b = h'AB']", "lower-case");
    rejected_only_in_strict("[A:b = 1]", "object type");
    rejected_only_in_strict("[abc:b = 1 AND xyz:c = 2]", "same object type");
    rejected_only_in_strict("[abc:b == 1]", "'=='");
    rejected_only_in_strict("[abc:b <> 1]", "'<>'");
    rejected_only_in_strict("[abc:b = +1]", "'+'");
    rejected_only_in_strict("[abc:b = 1] // note", "comments");
}

#[test]
fn strict_accepts_good_patterns() {
    for p in [
        "[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
        "[abc:b IN (1, 2.5)]",
        "[ipv4-addr:value ISSUBSET '198.51.100.0/24'] REPEATS 2 TIMES WITHIN 5 SECONDS",
        "[abc:x = 1 AND (abc:y = 2 OR def:z = 3)]",
        "[abc:b = 1] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
    ] {
        Pattern::parse_with(p, &strict()).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}

#[test]
fn version_differences() {
    let v20 = ParseOptions {
        version: SpecVersion::V2_0,
        ..Default::default()
    };
    // EXISTS is 2.1 only.
    assert!(Pattern::parse("[EXISTS abc:b]").is_ok());
    assert!(Pattern::parse_with("[EXISTS abc:b]", &v20).is_err());
    // 2.0 has no duplicate-qualifier check.
    let dup = "[a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS";
    assert!(Pattern::parse(dup).is_err());
    assert!(Pattern::parse_with(dup, &v20).is_ok());
    // 2.0 START/STOP with quoted timestamps (the 2.0 grammar); 2.1 requires t'...'.
    let ss = "[a:b = 1] START '2016-06-01T00:00:00Z' STOP '2016-07-01T00:00:00Z'";
    assert!(Pattern::parse(ss).is_err());
    let p = Pattern::parse_with(ss, &v20).unwrap();
    assert_eq!(p.to_string(), ss);
    assert!(Pattern::parse_with("[a:b = 1] START 'x' STOP 'y'", &v20).is_err());
}
