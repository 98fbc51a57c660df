//! No input panics: random strings, random token soups and mutations of valid patterns.

use proptest::prelude::*;
use stix_pattern::{ParseOptions, Pattern, SpecVersion};

const TOKENS: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    "a",
    "file",
    ":",
    "name",
    ".",
    "'x'",
    "'",
    "\\",
    "=",
    "==",
    "!=",
    "<>",
    "<",
    ">=",
    "AND",
    "OR",
    "NOT",
    "FOLLOWEDBY",
    "IN",
    "LIKE",
    "MATCHES",
    "ISSUBSET",
    "ISSUPERSET",
    "EXISTS",
    "WITHIN",
    "SECONDS",
    "REPEATS",
    "TIMES",
    "START",
    "STOP",
    "LAST",
    "1",
    "-1",
    "+1",
    "0.5",
    ".5",
    "true",
    "h'ab'",
    "b'YQ=='",
    "t'2020-01-01T00:00:00Z'",
    "t'",
    "[*]",
    "[0]",
    ",",
    "*",
    "/*",
    "*/",
    "//",
    "\n",
    " ",
    "é",
    "\u{2028}",
    "hashes",
    "MD5",
    "'SHA-256'",
];

fn check(s: &str) {
    for version in [SpecVersion::V2_1, SpecVersion::V2_0] {
        for strict in [false, true] {
            let opts = ParseOptions {
                version,
                strict,
                ..Default::default()
            };
            match Pattern::parse_with(s, &opts) {
                Ok(p) => {
                    let printed = p.to_string();
                    let again = Pattern::parse_with(&printed, &opts);
                    assert_eq!(
                        again.as_ref().ok(),
                        Some(&p),
                        "{s:?} -> {printed:?} -> {again:?}"
                    );
                    let _ = p.inspect();
                    let _ = p.simple_observables();
                    let _ = p.matches(&[]);
                }
                Err(e) => {
                    let col = e.column().unwrap();
                    assert!(col <= s.chars().count(), "{s:?}: column {col} beyond input");
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,80}") {
        check(&s);
    }

    #[test]
    fn token_soups_never_panic(toks in prop::collection::vec(prop::sample::select(TOKENS), 0..40)) {
        check(&toks.join(" "));
        check(&toks.concat());
    }

    #[test]
    fn mutated_valid_patterns_never_panic(idx in 0usize..1000, pos in any::<prop::sample::Index>(), del in 0usize..4, ins in "\\PC{0,3}") {
        let corpus = crate::corpus::corpus();
        let p = corpus[idx % corpus.len()]["pattern"].as_str().unwrap().to_string();
        let chars: Vec<char> = p.chars().collect();
        let at = if chars.is_empty() { 0 } else { pos.index(chars.len()) };
        let end = (at + del).min(chars.len());
        let mutated: String = chars[..at].iter().chain(ins.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
        check(&mutated);
    }
}
