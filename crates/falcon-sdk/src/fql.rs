//! A builder for FQL (Falcon Query Language) filters with typed values and correct quoting.
//!
//! ```
//! use falcon_sdk::fql::Fql;
//! let f = Fql::eq("platform_name", "Windows")
//!     .and(Fql::any_of("hostname", ["web-1", "o'brien-pc"]))
//!     .and(Fql::gt("last_seen", chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().to_utc()));
//! assert_eq!(
//!     f.to_string(),
//!     r"platform_name:'Windows'+hostname:['web-1','o\'brien-pc']+last_seen:>'2025-01-01T00:00:00Z'"
//! );
//! ```
//!
//! `+` is AND and `,` is OR; an OR nested in an AND (or the reverse) is parenthesised. String values are
//! single-quoted with `\` and `'` escaped by a backslash; integers, booleans and `null` are bare.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{Error, Result};

/// A typed FQL value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A string, quoted and escaped.
    Str(String),
    /// An integer, bare.
    Int(i64),
    /// A float, bare.
    Float(f64),
    /// A boolean, bare `true`/`false`.
    Bool(bool),
    /// A timestamp, printed as a quoted RFC 3339 UTC string.
    Time(DateTime<Utc>),
    /// `null`.
    Null,
    /// Inserted verbatim (relative times such as `now-1d`, pre-quoted values). Caller is responsible.
    Raw(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => {
                f.write_str("'")?;
                for c in s.chars() {
                    match c {
                        '\'' => f.write_str("\\'")?,
                        '\\' => f.write_str("\\\\")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("'")
            }
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Time(t) => write!(f, "'{}'", t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Value::Null => f.write_str("null"),
            Value::Raw(r) => f.write_str(r),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(impl From<$t> for Value { fn from(v: $t) -> Self { Value::Int(v as i64) } })*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Str(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Time(v)
    }
}

/// A comparison operator (written after the colon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `field:value`.
    Eq,
    /// `field:!value`.
    Ne,
    /// `field:>value`.
    Gt,
    /// `field:>=value`.
    Ge,
    /// `field:<value`.
    Lt,
    /// `field:<=value`.
    Le,
    /// `field:~value` (tokenised text match).
    Match,
    /// `field:!~value`.
    NotMatch,
    /// `field:*value` (wildcard match; `*` in the value is the wildcard).
    Wildcard,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "",
            Op::Ne => "!",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Match => "~",
            Op::NotMatch => "!~",
            Op::Wildcard => "*",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Cmp { field: String, op: Op, value: Value },
    AnyOf { field: String, values: Vec<Value> },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Raw(String),
}

/// An FQL filter expression. Build with the constructors, combine with [`Fql::and`] / [`Fql::or`], print
/// with `to_string()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fql(Expr);

impl Fql {
    /// `field` compared with `op` to `value`.
    pub fn cmp(field: impl Into<String>, op: Op, value: impl Into<Value>) -> Fql {
        Fql(Expr::Cmp {
            field: field.into(),
            op,
            value: value.into(),
        })
    }
    /// `field:value`.
    pub fn eq(field: impl Into<String>, value: impl Into<Value>) -> Fql {
        Fql::cmp(field, Op::Eq, value)
    }
    /// `field:!value`.
    pub fn ne(field: impl Into<String>, value: impl Into<Value>) -> Fql {
        Fql::cmp(field, Op::Ne, value)
    }
    /// `field:>value`.
    pub fn gt(field: impl Into<String>, value: impl Into<Value>) -> Fql {
        Fql::cmp(field, Op::Gt, value)
    }
    /// `field:>=value`.
    pub fn ge(field: impl Into<String>, value: impl Into<Value>) -> Fql {
        Fql::cmp(field, Op::Ge, value)
    }
    /// `field:<value`.
    pub fn lt(field: impl Into<String>, value: impl Into<Value>) -> Fql {
        Fql::cmp(field, Op::Lt, value)
    }
    /// `field:<=value`.
    pub fn le(field: impl Into<String>, value: impl Into<Value>) -> Fql {
        Fql::cmp(field, Op::Le, value)
    }
    /// `field:~'text'` (tokenised, case-insensitive text match).
    pub fn text_match(field: impl Into<String>, text: impl Into<String>) -> Fql {
        Fql::cmp(field, Op::Match, Value::Str(text.into()))
    }
    /// `field:*'pattern'` where `*` in `pattern` matches anything.
    pub fn wildcard(field: impl Into<String>, pattern: impl Into<String>) -> Fql {
        Fql::cmp(field, Op::Wildcard, Value::Str(pattern.into()))
    }
    /// `field:null`.
    pub fn is_null(field: impl Into<String>) -> Fql {
        Fql::cmp(field, Op::Eq, Value::Null)
    }
    /// `field:['a','b']` (OR within a property).
    pub fn any_of<I, V>(field: impl Into<String>, values: I) -> Fql
    where
        I: IntoIterator<Item = V>,
        V: Into<Value>,
    {
        Fql(Expr::AnyOf {
            field: field.into(),
            values: values.into_iter().map(Into::into).collect(),
        })
    }
    /// A verbatim FQL fragment (parenthesised when combined).
    pub fn raw(fql: impl Into<String>) -> Fql {
        Fql(Expr::Raw(fql.into()))
    }

    /// `self + other` (AND).
    pub fn and(self, other: Fql) -> Fql {
        let mut v = match self.0 {
            Expr::And(v) => v,
            e => vec![e],
        };
        match other.0 {
            Expr::And(w) => v.extend(w),
            e => v.push(e),
        }
        Fql(Expr::And(v))
    }

    /// `self , other` (OR).
    pub fn or(self, other: Fql) -> Fql {
        let mut v = match self.0 {
            Expr::Or(v) => v,
            e => vec![e],
        };
        match other.0 {
            Expr::Or(w) => v.extend(w),
            e => v.push(e),
        }
        Fql(Expr::Or(v))
    }

    /// AND of all `parts`; `None` when there are none.
    pub fn all(parts: impl IntoIterator<Item = Fql>) -> Option<Fql> {
        parts.into_iter().reduce(Fql::and)
    }

    /// Checks field names (`[A-Za-z0-9_.]`, non-empty), empty `any_of` lists and the 20-property limit.
    pub fn check(&self) -> Result<()> {
        let mut n = 0usize;
        check_expr(&self.0, &mut n)?;
        if n > 20 {
            return Err(Error::InvalidArgument(format!(
                "FQL filter has {n} properties; Falcon accepts at most 20"
            )));
        }
        Ok(())
    }
}

fn check_field(f: &str) -> Result<()> {
    if f.is_empty()
        || !f
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(Error::InvalidArgument(format!(
            "FQL field name `{f}` is invalid (letters, digits, `_` and `.` only)"
        )));
    }
    Ok(())
}

fn check_expr(e: &Expr, n: &mut usize) -> Result<()> {
    match e {
        Expr::Cmp { field, .. } => {
            *n += 1;
            check_field(field)
        }
        Expr::AnyOf { field, values } => {
            *n += 1;
            if values.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "FQL `{field}` any-of list is empty"
                )));
            }
            check_field(field)
        }
        Expr::And(v) | Expr::Or(v) => v.iter().try_for_each(|e| check_expr(e, n)),
        Expr::Raw(_) => Ok(()),
    }
}

fn write_expr(e: &Expr, f: &mut fmt::Formatter<'_>, parent_is_group: bool) -> fmt::Result {
    match e {
        Expr::Cmp { field, op, value } => write!(f, "{field}:{}{value}", op.symbol()),
        Expr::AnyOf { field, values } => {
            write!(f, "{field}:[")?;
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{v}")?;
            }
            f.write_str("]")
        }
        Expr::Raw(r) => {
            if parent_is_group {
                write!(f, "({r})")
            } else {
                f.write_str(r)
            }
        }
        Expr::And(v) | Expr::Or(v) => {
            let sep = if matches!(e, Expr::And(_)) { "+" } else { "," };
            if parent_is_group {
                f.write_str("(")?;
            }
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write_expr(x, f, true)?;
            }
            if parent_is_group {
                f.write_str(")")?;
            }
            Ok(())
        }
    }
}

impl fmt::Display for Fql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(&self.0, f, false)
    }
}

impl From<Fql> for String {
    fn from(f: Fql) -> String {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_fql_is_accepted_where_a_filter_string_is() {
        fn takes(f: impl Into<String>) -> String {
            f.into()
        }
        let f = Fql::eq("platform_name", "Linux");
        assert_eq!(takes(f.clone()), f.to_string());
        assert_eq!(takes("status:'new'"), "status:'new'");
    }

    use super::*;

    #[test]
    fn quoting_and_escaping() {
        assert_eq!(
            Fql::eq("hostname", r"a'b\c").to_string(),
            r"hostname:'a\'b\\c'"
        );
        assert_eq!(Fql::eq("count", 5).to_string(), "count:5");
        assert_eq!(Fql::eq("expired", false).to_string(), "expired:false");
        assert_eq!(Fql::is_null("deleted_at").to_string(), "deleted_at:null");
        assert_eq!(
            Fql::wildcard("hostname", "*web*").to_string(),
            "hostname:*'*web*'"
        );
        assert_eq!(Fql::ne("status", "normal").to_string(), "status:!'normal'");
    }

    #[test]
    fn grouping() {
        let f = Fql::eq("a", "1").or(Fql::eq("b", "2")).and(Fql::eq("c", 3));
        assert_eq!(f.to_string(), "(a:'1',b:'2')+c:3");
        let g = Fql::eq("a", 1).and(Fql::eq("b", 2)).or(Fql::raw("x:1,y:2"));
        assert_eq!(g.to_string(), "(a:1+b:2),(x:1,y:2)");
    }

    #[test]
    fn check_rejects_bad_fields_and_too_many_properties() {
        assert!(Fql::eq("bad field", 1).check().is_err());
        assert!(Fql::any_of("ids", Vec::<String>::new()).check().is_err());
        let many = Fql::all((0..21).map(|i| Fql::eq(format!("f{i}"), i))).unwrap();
        assert!(many.check().is_err());
        assert!(Fql::eq("device.hostname", "x").check().is_ok());
    }
}
