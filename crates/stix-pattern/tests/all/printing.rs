//! Canonical printing and inspection output shape.

use serde_json::json;
use stix_pattern::{ObservationExpr, ParseOptions, Pattern, SpecVersion};

#[track_caller]
fn canon(input: &str, expected: &str) {
    let p = Pattern::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(p.to_string(), expected, "{input}");
    assert_eq!(Pattern::parse(expected).unwrap(), p);
}

#[test]
fn canonical_text() {
    canon("[file:name='a']", "[file:name = 'a']");
    canon("[ a : b . c == +5 ]", "[a:b.c = 5]");
    canon("[a:b <> .5]", "[a:b != 0.5]");
    canon("[a:b = 1.50] // note", "[a:b = 1.5]");
    canon(
        "[a:'b'.'c-d'.'AND'.'x y' = 1]",
        "[a:b.'c-d'.'AND'.'x y' = 1]",
    );
    canon(r"[a:b = 'it\'s \\ here']", r"[a:b = 'it\'s \\ here']");
    canon("[a:b IN(1,'x' , true)]", "[a:b IN (1, 'x', true)]");
    canon(
        "[a:b[*].c[+1] NOT LIKE 'x%']",
        "[a:b[*].c[1] NOT LIKE 'x%']",
    );
    canon("[NOT EXISTS a:b]", "[NOT EXISTS a:b]");
    // Comparison-level parentheses only where the tree needs them.
    canon(
        "[(a:b = 1 AND a:c = 2) OR a:d = 3]",
        "[a:b = 1 AND a:c = 2 OR a:d = 3]",
    );
    canon(
        "[a:b = 1 AND (a:c = 2 OR a:d = 3)]",
        "[a:b = 1 AND (a:c = 2 OR a:d = 3)]",
    );
    canon(
        "[a:b = 1 OR (a:c = 2 OR a:d = 3)]",
        "[a:b = 1 OR (a:c = 2 OR a:d = 3)]",
    );
    // Observation-level parentheses are kept as written; qualifiers bind to the preceding expression.
    canon(
        "(([a:b=1]) AND [c:d=2])WITHIN 5 SECONDS",
        "(([a:b = 1]) AND [c:d = 2]) WITHIN 5 SECONDS",
    );
    canon(
        "[a:b = 1] FOLLOWEDBY [c:d = 2] REPEATS 2 TIMES",
        "[a:b = 1] FOLLOWEDBY [c:d = 2] REPEATS 2 TIMES",
    );
}

#[test]
fn precedence_shapes_the_tree() {
    let p = Pattern::parse("[a:b = 1] AND [a:b = 2] OR [a:b = 3] FOLLOWEDBY [a:b = 4]").unwrap();
    let ObservationExpr::FollowedBy(items) = &p.root else {
        panic!("{:?}", p.root)
    };
    assert_eq!(items.len(), 2);
    let ObservationExpr::Or(or_items) = &items[0] else {
        panic!()
    };
    assert!(matches!(or_items[0], ObservationExpr::And(_)));
    let p = Pattern::parse("[a:b = 1] AND [a:b = 2] WITHIN 5 SECONDS").unwrap();
    let ObservationExpr::And(items) = &p.root else {
        panic!()
    };
    assert!(matches!(items[1], ObservationExpr::Qualified { .. }));
}

#[test]
fn inspection_json_shape() {
    let p = Pattern::parse(
        "([file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f' AND file:tags[*] NOT IN ('a', 'b')] \
         FOLLOWEDBY [process:pid > 5 AND EXISTS process:name]) WITHIN 300 SECONDS",
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(p.inspect()).unwrap(),
        json!({
            "comparisons": {
                "file": [
                    [["hashes", "SHA-256"], "=", "'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f'"],
                    [["tags", "*"], "NOT IN", "('a','b')"]
                ],
                "process": [[["pid"], ">", "5"]]
            },
            "observation_ops": ["FOLLOWEDBY"],
            "qualifiers": ["WITHIN 300 SECONDS"]
        })
    );
    let v20 = ParseOptions {
        version: SpecVersion::V2_0,
        ..Default::default()
    };
    let p = Pattern::parse_with(
        "[a:b = 1] START '2016-06-01T00:00:00Z' STOP '2016-07-01T00:00:00Z'",
        &v20,
    )
    .unwrap();
    assert_eq!(
        p.inspect().qualifiers.into_iter().collect::<Vec<_>>(),
        vec!["START '2016-06-01T00:00:00Z' STOP '2016-07-01T00:00:00Z'".to_string()]
    );
}
