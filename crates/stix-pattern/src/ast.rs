//! The pattern syntax tree and its canonical printing (`Display`).
//!
//! Printing rules: single spaces around operators, keywords upper case, `==` printed as `=`, `<>` as `!=`,
//! no `+` on numbers, comments dropped, property names quoted only when they must be, observation-level
//! parentheses kept as written (they change qualifier validation), comparison-level parentheses printed
//! only where the tree needs them. Parsing the printed text gives back an equal tree.

use std::fmt::{self, Display, Formatter, Write as _};

use serde::Serialize;

use crate::lexer::is_keyword;

/// A parsed pattern: one observation expression tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pattern {
    /// The root observation expression.
    pub root: ObservationExpr,
}

/// An observation expression: `[...]`, a parenthesised group, a qualified expression or a combination.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum ObservationExpr {
    /// `[ comparison-expression ]`: matches one observation.
    Observation(ComparisonExpr),
    /// Observation-level `AND` (two or more operands, different observations).
    And(Vec<ObservationExpr>),
    /// Observation-level `OR` (two or more operands).
    Or(Vec<ObservationExpr>),
    /// `FOLLOWEDBY` (two or more operands, left to right in time).
    FollowedBy(Vec<ObservationExpr>),
    /// An expression followed by one or more qualifiers, applied left to right.
    Qualified {
        /// The qualified expression (an [`ObservationExpr::Observation`] or [`ObservationExpr::Group`]).
        expr: Box<ObservationExpr>,
        /// Qualifiers in the order written.
        qualifiers: Vec<Qualifier>,
    },
    /// `( ... )` as written.
    Group(Box<ObservationExpr>),
}

/// A qualifier that follows an observation expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Qualifier {
    /// `WITHIN n SECONDS`.
    Within(Number),
    /// `REPEATS n TIMES`.
    Repeats(u64),
    /// `START t'..' STOP t'..'` (in STIX 2.0 mode the operands may also be quoted strings).
    StartStop {
        /// Start (inclusive); a [`Literal::Timestamp`] or, in 2.0 mode, a [`Literal::Str`].
        start: Literal,
        /// Stop (exclusive).
        stop: Literal,
    },
}

impl Qualifier {
    /// The qualifier type as the reference validator names it: `WITHIN`, `REPEATS` or `STARTSTOP`.
    pub fn kind(&self) -> &'static str {
        match self {
            Qualifier::Within(_) => "WITHIN",
            Qualifier::Repeats(_) => "REPEATS",
            Qualifier::StartStop { .. } => "STARTSTOP",
        }
    }
}

/// A number that can be an integer or a float (`WITHIN` accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    /// The value as `f64`.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// A comparison expression inside `[...]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum ComparisonExpr {
    /// Comparison-level `AND` (all rooted at the same object).
    And(Vec<ComparisonExpr>),
    /// Comparison-level `OR`.
    Or(Vec<ComparisonExpr>),
    /// One proposition.
    Comparison(Comparison),
}

/// One proposition: `path [NOT] op value` or `[NOT] EXISTS path`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The object path.
    pub path: ObjectPath,
    /// `NOT` written before the operator (or before `EXISTS`).
    pub negated: bool,
    /// The operator.
    pub op: Operator,
    /// The constant; `None` only for [`Operator::Exists`].
    pub value: Option<Literal>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Operator {
    /// `=` (also written `==`).
    Eq,
    /// `!=` (also written `<>`).
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `IN (...)`.
    In,
    /// `LIKE`.
    Like,
    /// `MATCHES`.
    Matches,
    /// `ISSUBSET`.
    IsSubset,
    /// `ISSUPERSET`.
    IsSuperset,
    /// `EXISTS` (STIX 2.1).
    Exists,
}

impl Operator {
    /// Canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::Ne => "!=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::In => "IN",
            Operator::Like => "LIKE",
            Operator::Matches => "MATCHES",
            Operator::IsSubset => "ISSUBSET",
            Operator::IsSuperset => "ISSUPERSET",
            Operator::Exists => "EXISTS",
        }
    }
}

impl Display for Operator {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object path: `type:step(.step | [i] | [*])*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectPath {
    /// The object type, e.g. `file`.
    pub object_type: String,
    /// The steps; the first is always a [`PathStep::Key`].
    pub steps: Vec<PathStep>,
}

impl ObjectPath {
    /// The property path below the object type as text segments: keys unquoted (e.g.
    /// `["hashes", "SHA-256"]`), indices as `"[0]"`, the any-element index as `"[*]"`.
    pub fn segments(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| match s {
                PathStep::Key(k) => k.clone(),
                PathStep::Index(i) => format!("[{i}]"),
                PathStep::Star => "[*]".to_string(),
            })
            .collect()
    }
}

/// One step of an object path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum PathStep {
    /// A property or dictionary key (quotes removed, escapes resolved).
    Key(String),
    /// A list index `[n]` (may be negative; never matches then).
    Index(i64),
    /// The `[*]` index: any element.
    Star,
}

/// A constant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Literal {
    /// `'text'` (escapes resolved).
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `h'..'`: the hex digits as written.
    Hex(String),
    /// `b'..'`: the base64 text as written.
    Binary(String),
    /// `t'..'`: the timestamp text as written (between the quotes).
    Timestamp(String),
    /// `( a, b, ... )` for `IN`.
    Set(Vec<Literal>),
}

impl Literal {
    /// The string value of a [`Literal::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Literal::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The decoded bytes of a hex or binary literal.
    pub fn as_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Literal::Hex(h) => Some(decode_hex(h)),
            Literal::Binary(b) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()
                    .or_else(|| crate::matcher::lenient_b64(b))
            }
            _ => None,
        }
    }

    /// The literal type name used in messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Literal::Str(_) => "string",
            Literal::Int(_) => "integer",
            Literal::Float(_) => "float",
            Literal::Bool(_) => "boolean",
            Literal::Hex(_) => "hex",
            Literal::Binary(_) => "binary",
            Literal::Timestamp(_) => "timestamp",
            Literal::Set(_) => "set",
        }
    }

    /// The literal's text without spaces inside sets, as the reference inspector reports it.
    pub(crate) fn write_compact(&self, out: &mut String) {
        match self {
            Literal::Set(items) => {
                out.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_compact(out);
                }
                out.push(')');
            }
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
}

pub(crate) fn decode_hex(h: &str) -> Vec<u8> {
    fn v(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c.wrapping_sub(b'A').wrapping_add(10),
        }
    }
    h.as_bytes()
        .chunks_exact(2)
        .map(|c| (v(c[0]) << 4) | v(c[1]))
        .collect()
}

pub(crate) fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('\'')?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('\'')
}

pub(crate) fn write_float(f: &mut impl fmt::Write, x: f64) -> fmt::Result {
    let s = format!("{x}");
    f.write_str(&s)?;
    if !s.contains('.') {
        f.write_str(".0")?;
    }
    Ok(())
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => write_quoted(f, s),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write_float(f, *x),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Hex(h) => write!(f, "h'{h}'"),
            Literal::Binary(b) => write!(f, "b'{b}'"),
            Literal::Timestamp(t) => write!(f, "t'{t}'"),
            Literal::Set(items) => {
                f.write_char('(')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(')')
            }
        }
    }
}

impl Display for Number {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write_float(f, *x),
        }
    }
}

/// Whether a key can be written without quotes.
fn is_bare_key(s: &str) -> bool {
    let mut chars = s.bytes();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == b'_') && !is_keyword(s)
}

fn write_key(f: &mut Formatter<'_>, key: &str) -> fmt::Result {
    if is_bare_key(key) {
        f.write_str(key)
    } else {
        write_quoted(f, key)
    }
}

impl Display for ObjectPath {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.object_type)?;
        f.write_char(':')?;
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                PathStep::Key(k) => {
                    if i > 0 {
                        f.write_char('.')?;
                    }
                    write_key(f, k)?;
                }
                PathStep::Index(n) => write!(f, "[{n}]")?,
                PathStep::Star => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

impl Display for Comparison {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.op == Operator::Exists {
            if self.negated {
                f.write_str("NOT ")?;
            }
            return write!(f, "EXISTS {}", self.path);
        }
        write!(f, "{} ", self.path)?;
        if self.negated {
            f.write_str("NOT ")?;
        }
        f.write_str(self.op.as_str())?;
        if let Some(v) = &self.value {
            write!(f, " {v}")?;
        }
        Ok(())
    }
}

impl Display for ComparisonExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            ComparisonExpr::Comparison(c) => write!(f, "{c}"),
            ComparisonExpr::And(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" AND ")?;
                    }
                    match item {
                        ComparisonExpr::Comparison(_) => write!(f, "{item}")?,
                        _ => write!(f, "({item})")?,
                    }
                }
                Ok(())
            }
            ComparisonExpr::Or(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    match item {
                        ComparisonExpr::Or(_) => write!(f, "({item})")?,
                        _ => write!(f, "{item}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl Display for Qualifier {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::Within(n) => write!(f, "WITHIN {n} SECONDS"),
            Qualifier::Repeats(n) => write!(f, "REPEATS {n} TIMES"),
            Qualifier::StartStop { start, stop } => write!(f, "START {start} STOP {stop}"),
        }
    }
}

/// Binding strength at observation level: higher binds tighter.
fn obs_level(e: &ObservationExpr) -> u8 {
    match e {
        ObservationExpr::FollowedBy(_) => 1,
        ObservationExpr::Or(_) => 2,
        ObservationExpr::And(_) => 3,
        ObservationExpr::Qualified { .. } => 4,
        ObservationExpr::Observation(_) | ObservationExpr::Group(_) => 5,
    }
}

fn write_joined(
    f: &mut Formatter<'_>,
    items: &[ObservationExpr],
    sep: &str,
    level: u8,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        // A child of the same level would be flattened on re-parse: parenthesise it.
        if obs_level(item) <= level {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

impl Display for ObservationExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            ObservationExpr::Observation(c) => write!(f, "[{c}]"),
            ObservationExpr::Group(inner) => write!(f, "({inner})"),
            ObservationExpr::And(items) => write_joined(f, items, " AND ", 3),
            ObservationExpr::Or(items) => write_joined(f, items, " OR ", 2),
            ObservationExpr::FollowedBy(items) => write_joined(f, items, " FOLLOWEDBY ", 1),
            ObservationExpr::Qualified { expr, qualifiers } => {
                if obs_level(expr) <= 4 {
                    write!(f, "({expr})")?;
                } else {
                    write!(f, "{expr}")?;
                }
                for q in qualifiers {
                    write!(f, " {q}")?;
                }
                Ok(())
            }
        }
    }
}

impl Display for Pattern {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)
    }
}
