//! The bridge to `stix-pattern`: pattern text -> every `=` comparison that denotes one IOC.
//!
//! What a pattern denotes, and so what is written:
//! - `[a] OR [b]` (observation expressions joined by OR): the IOCs of each side;
//! - `[x = 'a' OR y = 'b']`, `[x IN ('a', 'b')]`: one IOC per value;
//! - `[file:hashes.'SHA-256' = 'a' AND file:hashes.MD5 = 'b']` (an AND of hashes of one file, each
//!   algorithm once): every hash, since each alone identifies that file.
//!
//! Everything else is skipped with a reason that names the part skipped: an AND of other comparisons or
//! of observation expressions (`and_pattern`), `FOLLOWEDBY` (`followed_by`), a qualifier (`qualifier`),
//! another operator or a negation (`unsupported_operator`). The other branches of an OR are still
//! written.

use std::collections::BTreeSet;

use stix_pattern::{ComparisonExpr, Literal, ObservationExpr, Operator, PathStep, Pattern};

use crate::mapping::{Comparison, Skip, SkipReason};

/// The comparisons a pattern denotes and the parts of it that are skipped.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Parsed {
    /// One per IOC value.
    pub(crate) comparisons: Vec<Comparison>,
    /// Parts of the pattern that are not written, with reasons.
    pub(crate) skipped: Vec<Skip>,
}

impl From<Vec<Comparison>> for Parsed {
    fn from(comparisons: Vec<Comparison>) -> Self {
        Parsed {
            comparisons,
            skipped: Vec::new(),
        }
    }
}

/// Parses `text`; an invalid pattern is one skip for the whole indicator.
pub(crate) fn comparisons(text: &str) -> Result<Parsed, Skip> {
    let pattern =
        Pattern::parse(text).map_err(|e| Skip::new(SkipReason::InvalidPattern, e.to_string()))?;
    let mut out = Parsed::default();
    observation(&pattern.root, &mut out);
    Ok(out)
}

fn observation(e: &ObservationExpr, out: &mut Parsed) {
    match e {
        ObservationExpr::Group(inner) => observation(inner, out),
        ObservationExpr::Or(items) => items.iter().for_each(|i| observation(i, out)),
        ObservationExpr::Observation(c) => comparison_expr(c, out),
        ObservationExpr::And(_) => out.skipped.push(Skip::new(
            SkipReason::AndPattern,
            format!("observation expressions joined by AND: {e}"),
        )),
        ObservationExpr::FollowedBy(_) => out.skipped.push(Skip::new(
            SkipReason::FollowedBy,
            format!("observation expressions joined by FOLLOWEDBY: {e}"),
        )),
        ObservationExpr::Qualified { .. } => out.skipped.push(Skip::new(
            SkipReason::Qualifier,
            format!("qualified observation: {e}"),
        )),
        other => out.skipped.push(Skip::new(
            SkipReason::UnsupportedOperator,
            format!("observation expression: {other}"),
        )),
    }
}

fn comparison_expr(e: &ComparisonExpr, out: &mut Parsed) {
    match e {
        ComparisonExpr::Or(items) => items.iter().for_each(|i| comparison_expr(i, out)),
        ComparisonExpr::Comparison(c) => leaf(c, out),
        ComparisonExpr::And(items) => {
            if hashes_of_one_file(items) {
                for i in items {
                    comparison_expr(i, out);
                }
            } else {
                out.skipped.push(Skip::new(
                    SkipReason::AndPattern,
                    format!("comparisons joined by AND (not hashes of one file): [{e}]"),
                ));
            }
        }
        other => out.skipped.push(Skip::new(
            SkipReason::UnsupportedOperator,
            format!("comparison expression: [{other}]"),
        )),
    }
}

/// `file:hashes.A = 'x' AND file:hashes.B = 'y' ...`: plain `=` comparisons of hashes of the same
/// object type, each algorithm once (two values of one algorithm cannot be one file).
fn hashes_of_one_file(items: &[ComparisonExpr]) -> bool {
    let mut object_type = None;
    let mut algorithms = BTreeSet::new();
    items.iter().all(|i| {
        let ComparisonExpr::Comparison(c) = i else {
            return false;
        };
        let algo = match c.path.steps.as_slice() {
            [PathStep::Key(h), PathStep::Key(a)] if h == "hashes" => a
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .collect::<String>()
                .to_ascii_uppercase(),
            _ => return false,
        };
        let same_object =
            *object_type.get_or_insert(c.path.object_type.as_str()) == c.path.object_type.as_str();
        same_object
            && matches!(c.path.object_type.as_str(), "file" | "artifact")
            && !c.negated
            && c.op == Operator::Eq
            && algorithms.insert(algo)
    })
}

fn leaf(c: &stix_pattern::Comparison, out: &mut Parsed) {
    let path = c.path.segments();
    if c.negated || !matches!(c.op, Operator::Eq | Operator::In) {
        out.skipped.push(Skip::new(
            SkipReason::UnsupportedOperator,
            format!(
                "operator {}{} is not an equality: {c}",
                if c.negated { "NOT " } else { "" },
                c.op
            ),
        ));
        return;
    }
    let values: Vec<&Literal> = match &c.value {
        Some(Literal::Set(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    for v in values {
        out.comparisons.push(Comparison {
            object_type: c.path.object_type.clone(),
            path: path.clone(),
            value: v.as_str().map(str::to_string),
        });
    }
}
