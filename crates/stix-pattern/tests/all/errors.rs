//! Error columns and messages an analyst reads.

use stix_pattern::{Error, ParseOptions, Pattern};

fn err(p: &str) -> Error {
    Pattern::parse(p).expect_err(p)
}

#[test]
fn unclosed_observation_names_where_it_started() {
    let e = err("[file:name = 'a'");
    assert_eq!(e.column(), Some(16));
    assert!(
        e.to_string()
            .contains("expected ']' to close the observation started at column 0"),
        "{e}"
    );
    let e = err("[a:b = 1] AND ([c:d = 2]");
    assert!(
        e.to_string()
            .contains("')' to close the group started at column 14"),
        "{e}"
    );
}

#[test]
fn columns_count_code_points_not_bytes() {
    let e = err("[a:b = 'é中' AND c:d = ]");
    assert_eq!(e.column(), Some(22));
}

#[test]
fn lower_case_keywords_get_a_hint() {
    let e = err("[a:b = 1] and [c:d = 2]");
    assert_eq!(e.column(), Some(10));
    assert!(e.to_string().contains("write 'AND'"), "{e}");
    assert!(err("[a:b = TRUE]").to_string().contains("write 'true'"));
}

#[test]
fn string_errors_are_explained() {
    let e = err(r"[a:b = 'x\ny']");
    assert_eq!(e.column(), Some(7));
    assert!(e.to_string().contains("invalid escape"), "{e}");
    let e = err("[a:b = 'open]");
    assert!(e.to_string().contains("unterminated string"), "{e}");
}

#[test]
fn bad_prefixed_literals_are_explained() {
    assert!(
        err("[a:b = t'2020-13-01T00:00:00Z']")
            .to_string()
            .contains("malformed timestamp")
    );
    assert!(err("[a:b = h'abc']").to_string().contains("malformed hex"));
    assert!(
        err("[a:b = b'YQ']")
            .to_string()
            .contains("malformed binary")
    );
}

#[test]
fn hyphenated_property_must_be_quoted() {
    let e = err("[file:hashes.SHA-256 = 'x']");
    assert_eq!(e.column(), Some(13));
    assert!(e.to_string().contains("must be quoted"), "{e}");
}

#[test]
fn hash_errors_match_the_reference_wording() {
    let e = err("[file:hashes.MD5 = 'abc']");
    assert!(matches!(e, Error::Invalid { .. }));
    assert_eq!(e.column(), Some(19));
    assert!(
        e.to_string().contains("'abc' is not a valid MD5 hash"),
        "{e}"
    );
}

#[test]
fn missing_brackets_is_column_zero() {
    for p in ["file:name = 'a'", "", "   ", "/* c */ [a:b = 1]"] {
        let e = err(p);
        assert_eq!(e.column(), Some(0), "{p:?}");
        assert!(e.to_string().contains("missing square brackets"), "{e}");
    }
}

#[test]
fn duplicate_qualifier_points_at_the_second_one() {
    let e = err("[a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS");
    assert_eq!(e.column(), Some(27));
    assert!(e.to_string().contains("WITHIN"), "{e}");
}

#[test]
fn trailing_garbage_is_reported() {
    let e = err("[a:b = 1] ;");
    assert_eq!(e.column(), Some(10));
    let e = err("[a:b = 1]]");
    assert!(e.to_string().contains("unbalanced ']'"), "{e}");
}

#[test]
fn nesting_limit_is_an_error_not_a_stack_overflow() {
    for p in [
        format!("{}[", "(".repeat(100_000)),
        "[".repeat(100_000),
        format!("[{}a:b = 1{}]", "(".repeat(50_000), ")".repeat(50_000)),
        format!("{}[a:b = 1]{}", "(".repeat(50_000), ")".repeat(50_000)),
    ] {
        let e = Pattern::parse(&p).expect_err("deep");
        assert!(
            matches!(e, Error::TooDeep { limit: 100, .. } | Error::Syntax { .. }),
            "{e}"
        );
    }
    let e = Pattern::parse(&format!("{}[", "(".repeat(1000))).unwrap_err();
    assert!(e.to_string().contains("deeper than 100"), "{e}");
    // The limit is configurable and legitimate nesting below it parses.
    let p = format!("{}[a:b = 1]{}", "(".repeat(20), ")".repeat(20));
    assert!(Pattern::parse(&p).is_ok());
    let tight = ParseOptions {
        max_depth: 5,
        ..Default::default()
    };
    assert!(matches!(
        Pattern::parse_with(&p, &tight),
        Err(Error::TooDeep { limit: 5, .. })
    ));
}

#[test]
fn long_flat_chains_are_fine() {
    // 10,000 ORs nest nothing: n-ary nodes keep recursion (and Drop) shallow.
    let p = format!("[a:b = 0{}]", " OR a:b = 1".repeat(10_000));
    let ast = Pattern::parse(&p).unwrap();
    assert_eq!(ast.simple_observables().unwrap().len(), 10_001);
    let p = format!("[a:b = 0]{}", " AND [a:b = 1]".repeat(10_000));
    assert!(Pattern::parse(&p).is_ok());
}

#[test]
fn errors_are_not_retryable() {
    assert!(!err("[").is_retryable());
}
