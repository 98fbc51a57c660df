//! Fuzz target: no input panics or overflows the stack; every accepted pattern round-trips.
//!
//! `cargo +nightly fuzz run parse -- -max_total_time=600` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stix_pattern::{ParseOptions, Pattern, SpecVersion};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for version in [SpecVersion::V2_1, SpecVersion::V2_0] {
        for strict in [false, true] {
            let opts = ParseOptions {
                version,
                strict,
                ..Default::default()
            };
            match Pattern::parse_with(text, &opts) {
                Ok(p) => {
                    let printed = p.to_string();
                    let again =
                        Pattern::parse_with(&printed, &opts).expect("printed pattern parses");
                    assert_eq!(again, p, "round trip of {text:?} via {printed:?}");
                    let _ = p.inspect();
                    let _ = p.simple_observables();
                    let _ = p.matches(&[serde_json::json!({
                        "type": "observed-data", "id": "observed-data--1",
                        "first_observed": "2020-01-01T00:00:00Z", "last_observed": "2020-01-01T00:00:00Z",
                        "number_observed": 2, "object_refs": ["file--1"]
                    }), serde_json::json!({"type": "file", "id": "file--1", "name": "a", "size": 1})]);
                }
                Err(e) => {
                    assert!(e.column().unwrap() <= text.chars().count());
                }
            }
        }
    }
});
