//! Inspection (what the reference `Pattern.inspect()` reports) and the connector convenience
//! [`Pattern::simple_observables`].

use std::collections::BTreeSet;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::ast::*;

/// One component of an inspected path: a key, an index, or `[*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathComponent {
    /// A property or dictionary key, quotes removed.
    Key(String),
    /// A list index.
    Index(i64),
    /// `[*]` (serialized as the string `"*"`).
    Star,
}

impl Serialize for PathComponent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PathComponent::Key(k) => s.serialize_str(k),
            PathComponent::Index(i) => s.serialize_i64(*i),
            PathComponent::Star => s.serialize_str("*"),
        }
    }
}

/// One recorded comparison: `(path, op, value)`, serialized as a three-element array like the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectedComparison {
    /// The path below the object type.
    pub path: Vec<PathComponent>,
    /// `"NOT "` when negated, then the operator (`=`, `!=`, `<`, ..., `IN`, `LIKE`, ...).
    pub op: String,
    /// The literal as canonical text (sets without spaces, as the reference prints them).
    pub value: String,
}

impl Serialize for InspectedComparison {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(3))?;
        seq.serialize_element(&self.path)?;
        seq.serialize_element(&self.op)?;
        seq.serialize_element(&self.value)?;
        seq.end()
    }
}

/// What a pattern contains: comparisons per object type (first-seen order), observation operators and
/// qualifiers. `EXISTS` tests are not recorded, as in the reference inspector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inspection {
    /// Object type -> comparisons in parse order; types in first-seen order.
    pub comparisons: Vec<(String, Vec<InspectedComparison>)>,
    /// Observation-level operators used: `AND`, `OR`, `FOLLOWEDBY`.
    pub observation_ops: BTreeSet<String>,
    /// Qualifiers as text: `WITHIN 5 SECONDS`, `REPEATS 2 TIMES`, `START t'..' STOP t'..'`.
    pub qualifiers: BTreeSet<String>,
}

struct Ordered<'a>(&'a [(String, Vec<InspectedComparison>)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Inspection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("comparisons", &Ordered(&self.comparisons))?;
        m.serialize_entry("observation_ops", &self.observation_ops)?;
        m.serialize_entry("qualifiers", &self.qualifiers)?;
        m.end()
    }
}

impl Inspection {
    /// The comparisons recorded for one object type.
    pub fn comparisons_for(&self, object_type: &str) -> &[InspectedComparison] {
        self.comparisons
            .iter()
            .find(|(t, _)| t == object_type)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    fn add(&mut self, c: &Comparison) {
        let Some(value) = &c.value else { return };
        let path = c
            .path
            .steps
            .iter()
            .map(|s| match s {
                PathStep::Key(k) => PathComponent::Key(k.clone()),
                PathStep::Index(i) => PathComponent::Index(*i),
                PathStep::Star => PathComponent::Star,
            })
            .collect();
        let mut op = String::new();
        if c.negated {
            op.push_str("NOT ");
        }
        op.push_str(c.op.as_str());
        let mut v = String::new();
        value.write_compact(&mut v);
        let entry = InspectedComparison { path, op, value: v };
        match self
            .comparisons
            .iter_mut()
            .find(|(t, _)| *t == c.path.object_type)
        {
            Some((_, list)) => list.push(entry),
            None => self
                .comparisons
                .push((c.path.object_type.clone(), vec![entry])),
        }
    }

    fn walk_cmp(&mut self, e: &ComparisonExpr) {
        match e {
            ComparisonExpr::Comparison(c) => self.add(c),
            ComparisonExpr::And(items) | ComparisonExpr::Or(items) => {
                items.iter().for_each(|i| self.walk_cmp(i))
            }
        }
    }

    pub(crate) fn walk(&mut self, e: &ObservationExpr) {
        match e {
            ObservationExpr::Observation(c) => self.walk_cmp(c),
            ObservationExpr::And(items) => {
                self.observation_ops.insert("AND".into());
                items.iter().for_each(|i| self.walk(i));
            }
            ObservationExpr::Or(items) => {
                self.observation_ops.insert("OR".into());
                items.iter().for_each(|i| self.walk(i));
            }
            ObservationExpr::FollowedBy(items) => {
                self.observation_ops.insert("FOLLOWEDBY".into());
                items.iter().for_each(|i| self.walk(i));
            }
            ObservationExpr::Qualified { expr, qualifiers } => {
                self.walk(expr);
                for q in qualifiers {
                    self.qualifiers.insert(q.to_string());
                }
            }
            ObservationExpr::Group(inner) => self.walk(inner),
        }
    }
}

/// A comparison a connector can turn into one indicator value: `type:path = 'value'`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleObservable {
    /// The object type, e.g. `file`.
    pub object_type: String,
    /// The property path with quotes removed, e.g. `["hashes", "SHA-256"]`; indices appear as `"[0]"`
    /// and `[*]` as `"[*]"`.
    pub path: Vec<String>,
    /// The constant.
    pub value: Literal,
}

/// Why a pattern is not a list of simple observables.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotSimple {
    /// Comparisons joined by `AND` inside the observation.
    AndComparison,
    /// An operator other than `=` (the text, e.g. `!=`, `NOT =`, `LIKE`).
    Operator(String),
    /// An `EXISTS` test.
    Exists,
    /// More than one observation expression (observation-level AND / OR / FOLLOWEDBY).
    MultipleObservations,
    /// A qualifier (WITHIN, REPEATS, START/STOP).
    Qualifier,
}

impl fmt::Display for NotSimple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSimple::AndComparison => f.write_str("comparisons are joined by AND"),
            NotSimple::Operator(op) => write!(f, "operator {op} is not an equality"),
            NotSimple::Exists => f.write_str("EXISTS tests carry no value"),
            NotSimple::MultipleObservations => {
                f.write_str("pattern has several observation expressions")
            }
            NotSimple::Qualifier => f.write_str("pattern has a qualifier"),
        }
    }
}

impl std::error::Error for NotSimple {}

pub(crate) fn simple(root: &ObservationExpr) -> Result<Vec<SimpleObservable>, NotSimple> {
    let mut e = root;
    while let ObservationExpr::Group(inner) = e {
        e = inner;
    }
    let cmp = match e {
        ObservationExpr::Observation(c) => c,
        ObservationExpr::Qualified { .. } => return Err(NotSimple::Qualifier),
        _ => return Err(NotSimple::MultipleObservations),
    };
    let mut out = Vec::new();
    collect(cmp, &mut out)?;
    Ok(out)
}

fn collect(e: &ComparisonExpr, out: &mut Vec<SimpleObservable>) -> Result<(), NotSimple> {
    match e {
        ComparisonExpr::And(_) => Err(NotSimple::AndComparison),
        ComparisonExpr::Or(items) => items.iter().try_for_each(|i| collect(i, out)),
        ComparisonExpr::Comparison(c) => {
            if c.op == Operator::Exists {
                return Err(NotSimple::Exists);
            }
            if c.negated || !matches!(c.op, Operator::Eq | Operator::In) {
                let mut op = String::new();
                if c.negated {
                    op.push_str("NOT ");
                }
                op.push_str(c.op.as_str());
                return Err(NotSimple::Operator(op));
            }
            let path = c.path.segments();
            match &c.value {
                Some(Literal::Set(items)) => {
                    for v in items {
                        out.push(SimpleObservable {
                            object_type: c.path.object_type.clone(),
                            path: path.clone(),
                            value: v.clone(),
                        });
                    }
                }
                Some(v) => out.push(SimpleObservable {
                    object_type: c.path.object_type.clone(),
                    path,
                    value: v.clone(),
                }),
                None => return Err(NotSimple::Exists),
            }
            Ok(())
        }
    }
}
