//! `simple_observables()`: what a connector pushes.

use stix_pattern::{Literal, NotSimple, Pattern};

fn obs(p: &str) -> Result<Vec<(String, Vec<String>, Literal)>, NotSimple> {
    Pattern::parse(p).unwrap().simple_observables().map(|v| {
        v.into_iter()
            .map(|o| (o.object_type, o.path, o.value))
            .collect()
    })
}

#[test]
fn single_and_or_equalities() {
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    let sha = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f";
    let got = obs(&format!(
        "[file:hashes.'SHA-256' = '{sha}' OR file:hashes.MD5 = '{md5}']"
    ))
    .unwrap();
    assert_eq!(
        got,
        vec![
            (
                "file".into(),
                vec!["hashes".into(), "SHA-256".into()],
                Literal::Str(sha.into())
            ),
            (
                "file".into(),
                vec!["hashes".into(), "MD5".into()],
                Literal::Str(md5.into())
            ),
        ]
    );
    // The quoting-free form OpenCTI generates, no spaces, and a parenthesised observation.
    let got = obs(&format!("([file:hashes.MD5='{md5}'])")).unwrap();
    assert_eq!(got[0].2.as_str(), Some(md5));
    let got = obs("[ipv4-addr:value IN ('1.2.3.4', '5.6.7.8')]").unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].2.as_str(), Some("5.6.7.8"));
    let got = obs("[a:'b'[0].c = 1]").unwrap();
    assert_eq!(got[0].1, vec!["b".to_string(), "[0]".into(), "c".into()]);
}

#[test]
fn not_simple_reasons() {
    assert_eq!(obs("[a:b = 1 AND a:c = 2]"), Err(NotSimple::AndComparison));
    assert_eq!(obs("[a:b != 1]"), Err(NotSimple::Operator("!=".into())));
    assert_eq!(
        obs("[a:b NOT = 1]"),
        Err(NotSimple::Operator("NOT =".into()))
    );
    assert_eq!(
        obs("[a:b LIKE 'x%']"),
        Err(NotSimple::Operator("LIKE".into()))
    );
    assert_eq!(obs("[EXISTS a:b]"), Err(NotSimple::Exists));
    assert_eq!(
        obs("[a:b = 1] OR [a:b = 2]"),
        Err(NotSimple::MultipleObservations)
    );
    assert_eq!(obs("[a:b = 1] WITHIN 5 SECONDS"), Err(NotSimple::Qualifier));
    assert_eq!(
        NotSimple::AndComparison.to_string(),
        "comparisons are joined by AND"
    );
}
