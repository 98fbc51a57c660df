//! A small FQL (Falcon Query Language) parser and evaluator.
//!
//! Grammar (what the simulator accepts):
//!
//! ```text
//! expr   := term (',' term)*            -- ',' is OR
//! term   := factor ('+' factor)*        -- '+' is AND (a space-encoded '+' also works)
//! factor := '!'? '(' expr ')' | cmp
//! cmp    := field ':' op? value
//! op     := '!' | '>' | '>=' | '<' | '<=' | '~' | '!~' | '*'
//! value  := 'quoted' | "quoted" | bare | '[' value (',' value)* ']'
//! ```
//!
//! Equality is case-insensitive; `*` inside a value of an equality or `*` comparison is a wildcard;
//! `~` is a case-insensitive substring match; range operators compare numbers when both sides are
//! numbers and strings otherwise (ISO-8601 timestamps compare correctly as strings). A multi-valued
//! field matches when any of its values matches. Unknown fields are an error, as in Falcon.

use std::fmt;

/// A parsed FQL filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All must match.
    And(Vec<Expr>),
    /// Any must match.
    Or(Vec<Expr>),
    /// Negation of a group.
    Not(Box<Expr>),
    /// One comparison.
    Cmp(Cmp),
}

/// One `field:op value` comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Cmp {
    /// Lower-cased property name.
    pub field: String,
    /// Operator.
    pub op: Op,
    /// Values (more than one for `field:['a','b']`, which is an OR).
    pub values: Vec<Value>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Default: equality (with wildcards).
    Eq,
    /// `!`: not equal.
    Ne,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `~`: text match.
    Text,
    /// `!~`: negated text match.
    NotText,
    /// `*`: wildcard match.
    Wild,
}

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (quoted or bare).
    Str(String),
    /// `null`.
    Null,
}

impl Value {
    /// The text of the literal (`null` for null).
    pub fn as_str(&self) -> &str {
        match self {
            Value::Str(s) => s,
            Value::Null => "null",
        }
    }
}

/// A field value of a record, as seen by the evaluator.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    /// A string.
    Str(&'a str),
    /// Several strings (tags, groups, platforms...).
    List(&'a [String]),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// Absent.
    Null,
}

/// A record that can be filtered.
pub trait Record {
    /// The value of `field`, or `None` when the field is unknown for this record type.
    fn field(&self, field: &str) -> Option<Field<'_>>;
}

/// A filter that could not be parsed or names an unknown field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FqlError {
    /// What went wrong.
    pub message: String,
    /// Byte offset in the filter.
    pub position: usize,
}

impl fmt::Display for FqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

/// Parses a filter. An empty (or blank) filter is `None`: everything matches.
pub fn parse(input: &str) -> Result<Option<Expr>, FqlError> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        s: input.as_bytes(),
        i: 0,
        depth: 0,
    };
    let e = p.expr()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("unexpected character"));
    }
    Ok(Some(e))
}

/// Checks that every field of `expr` is known to `known`.
pub fn check_fields(expr: &Expr, known: &dyn Fn(&str) -> bool) -> Result<(), FqlError> {
    match expr {
        Expr::And(v) | Expr::Or(v) => v.iter().try_for_each(|e| check_fields(e, known)),
        Expr::Not(e) => check_fields(e, known),
        Expr::Cmp(c) if known(&c.field) => Ok(()),
        Expr::Cmp(c) => Err(FqlError {
            message: format!("invalid filter field '{}'", c.field),
            position: 0,
        }),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, m: &str) -> FqlError {
        FqlError {
            message: m.to_string(),
            position: self.i,
        }
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i] == b' ' {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Result<Expr, FqlError> {
        self.depth += 1;
        if self.depth > 32 {
            return Err(self.err("filter nested too deeply"));
        }
        let mut terms = vec![self.term()?];
        loop {
            self.ws();
            if self.peek() == Some(b',') {
                self.i += 1;
                terms.push(self.term()?);
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }
    fn term(&mut self) -> Result<Expr, FqlError> {
        let mut factors = vec![self.factor()?];
        loop {
            self.ws();
            match self.peek() {
                Some(b'+') => {
                    self.i += 1;
                    factors.push(self.factor()?);
                }
                // A '+' that went through form decoding arrives as a space between two factors.
                Some(c) if c == b'(' || c == b'!' || c.is_ascii_alphanumeric() || c == b'_' => {
                    factors.push(self.factor()?);
                }
                _ => break,
            }
        }
        Ok(if factors.len() == 1 {
            factors.pop().expect("one factor")
        } else {
            Expr::And(factors)
        })
    }
    fn factor(&mut self) -> Result<Expr, FqlError> {
        self.ws();
        match self.peek() {
            Some(b'!') if self.s.get(self.i + 1) == Some(&b'(') => {
                self.i += 1;
                let e = self.factor()?;
                Ok(Expr::Not(Box::new(e)))
            }
            Some(b'(') => {
                self.i += 1;
                let e = self.expr()?;
                self.ws();
                if self.peek() != Some(b')') {
                    return Err(self.err("expected ')'"));
                }
                self.i += 1;
                Ok(e)
            }
            Some(_) => self.cmp().map(Expr::Cmp),
            None => Err(self.err("expected a comparison")),
        }
    }
    fn cmp(&mut self) -> Result<Cmp, FqlError> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || matches!(self.s[self.i], b'_' | b'.' | b'-'))
        {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("expected a property name"));
        }
        let field = String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_lowercase();
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.err("expected ':' after the property name"));
        }
        self.i += 1;
        let op = match (self.peek(), self.s.get(self.i + 1).copied()) {
            (Some(b'!'), Some(b'~')) => (Op::NotText, 2),
            (Some(b'!'), _) => (Op::Ne, 1),
            (Some(b'>'), Some(b'=')) => (Op::Ge, 2),
            (Some(b'>'), _) => (Op::Gt, 1),
            (Some(b'<'), Some(b'=')) => (Op::Le, 2),
            (Some(b'<'), _) => (Op::Lt, 1),
            (Some(b'~'), _) => (Op::Text, 1),
            (Some(b'*'), Some(b'\'' | b'"' | b'[')) => (Op::Wild, 1),
            _ => (Op::Eq, 0),
        };
        self.i += op.1;
        let values = if self.peek() == Some(b'[') {
            self.i += 1;
            let mut values = Vec::new();
            loop {
                self.ws();
                if self.peek() == Some(b']') && values.is_empty() {
                    self.i += 1;
                    break;
                }
                values.push(self.value()?);
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or ']' in a value list")),
                }
            }
            values
        } else {
            vec![self.value()?]
        };
        Ok(Cmp {
            field,
            op: op.0,
            values,
        })
    }
    fn value(&mut self) -> Result<Value, FqlError> {
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated string")),
                        Some(b'\\') if self.s.get(self.i + 1).is_some() => {
                            out.push(self.s[self.i + 1]);
                            self.i += 2;
                        }
                        Some(c) if c == q => {
                            self.i += 1;
                            break;
                        }
                        Some(c) => {
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
                Ok(Value::Str(String::from_utf8_lossy(&out).into_owned()))
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && !matches!(self.s[self.i], b'+' | b',' | b')' | b']' | b' ')
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(self.err("expected a value"));
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                Ok(if text == "null" {
                    Value::Null
                } else {
                    Value::Str(text)
                })
            }
        }
    }
}

/// Case-insensitive glob match with `*`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn cmp_one(op: Op, field: &str, value: &Value) -> bool {
    let v = value.as_str();
    match op {
        Op::Eq | Op::Wild => {
            if v.contains('*') {
                glob(v, field)
            } else {
                field.eq_ignore_ascii_case(v)
            }
        }
        Op::Ne => !field.eq_ignore_ascii_case(v),
        Op::Text => field.to_lowercase().contains(&v.to_lowercase()),
        Op::NotText => !field.to_lowercase().contains(&v.to_lowercase()),
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            let ord = match (field.parse::<f64>(), v.parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(field.cmp(v)),
            };
            let Some(ord) = ord else { return false };
            match op {
                Op::Gt => ord.is_gt(),
                Op::Ge => ord.is_ge(),
                Op::Lt => ord.is_lt(),
                _ => ord.is_le(),
            }
        }
    }
}

fn eval_cmp(c: &Cmp, f: Field<'_>) -> bool {
    let negative = matches!(c.op, Op::Ne | Op::NotText);
    let any_value = |text: &str| {
        if negative {
            c.values.iter().all(|v| cmp_one(c.op, text, v))
        } else {
            c.values.iter().any(|v| cmp_one(c.op, text, v))
        }
    };
    match f {
        Field::Str(s) => any_value(s),
        Field::Num(n) => any_value(&format_num(n)),
        Field::Bool(b) => any_value(if b { "true" } else { "false" }),
        Field::List(items) => {
            if negative {
                items.iter().all(|s| any_value(s))
            } else {
                items.iter().any(|s| any_value(s))
            }
        }
        Field::Null => {
            let is_null = c.values.contains(&Value::Null);
            if negative { !is_null } else { is_null }
        }
    }
}

fn format_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Evaluates `expr` against `record`. Unknown fields never match.
pub fn matches<R: Record + ?Sized>(expr: &Expr, record: &R) -> bool {
    match expr {
        Expr::And(v) => v.iter().all(|e| matches(e, record)),
        Expr::Or(v) => v.iter().any(|e| matches(e, record)),
        Expr::Not(e) => !matches(e, record),
        Expr::Cmp(c) => record.field(&c.field).is_some_and(|f| eval_cmp(c, f)),
    }
}

/// For index lookups: the values `field` must equal (case-insensitively) for `expr` to match, when
/// the filter forces one (a top-level AND member `field:'x'` or `field:['x','y']` without wildcards).
pub fn required_values<'e>(expr: &'e Expr, field: &str) -> Option<Vec<&'e str>> {
    let from_cmp = |c: &'e Cmp| {
        (c.field == field
            && c.op == Op::Eq
            && c.values
                .iter()
                .all(|v| matches!(v, Value::Str(s) if !s.contains('*'))))
        .then(|| c.values.iter().map(Value::as_str).collect())
    };
    match expr {
        Expr::Cmp(c) => from_cmp(c),
        Expr::And(v) => v.iter().find_map(|e| match e {
            Expr::Cmp(c) => from_cmp(c),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R {
        hostname: String,
        platform: String,
        tags: Vec<String>,
        seen: String,
        score: f64,
    }
    impl Record for R {
        fn field(&self, f: &str) -> Option<Field<'_>> {
            Some(match f {
                "hostname" => Field::Str(&self.hostname),
                "platform_name" => Field::Str(&self.platform),
                "tags" => Field::List(&self.tags),
                "last_seen" => Field::Str(&self.seen),
                "score" => Field::Num(self.score),
                "missing" => Field::Null,
                _ => return None,
            })
        }
    }

    fn r() -> R {
        R {
            hostname: "WEB-01.corp".into(),
            platform: "Windows".into(),
            tags: vec!["a".into(), "FalconGroupingTags/x".into()],
            seen: "2026-11-20T10:00:00Z".into(),
            score: 80.0,
        }
    }

    fn m(filter: &str) -> bool {
        matches(&parse(filter).unwrap().unwrap(), &r())
    }

    #[test]
    fn operators() {
        assert!(m("platform_name:'windows'"));
        assert!(m("platform_name:['Linux','Windows']"));
        assert!(!m("platform_name:!'Windows'"));
        assert!(m("platform_name:!['Linux','Mac']"));
        assert!(m("hostname:*'web*'"));
        assert!(m("hostname:'*corp'"));
        assert!(m("hostname:~'eb-0'"));
        assert!(m("last_seen:>'2026-11-01'"));
        assert!(!m("last_seen:<='2026-11-01T00:00:00Z'"));
        assert!(m("score:>=80+score:<81"));
        assert!(m("tags:'FalconGroupingTags/x'"));
        assert!(m("missing:null"));
        assert!(!m("missing:!null"));
    }

    #[test]
    fn boolean_structure() {
        assert!(m("platform_name:'Linux',hostname:'web-01.corp'"));
        assert!(!m("platform_name:'Linux'+hostname:'web-01.corp'"));
        assert!(m(
            "(platform_name:'Linux',platform_name:'Windows')+hostname:*'WEB*'"
        ));
        assert!(!m("!(platform_name:'Windows')"));
        assert!(
            m("platform_name:'Windows' hostname:'web-01.corp'"),
            "space-decoded plus"
        );
        assert!(!m("unknown:'x'"));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("hostname:'x").unwrap_err();
        assert!(e.message.contains("unterminated"));
        let e = parse("hostname 'x'").unwrap_err();
        assert_eq!(e.position, 9);
        assert!(parse("(a:'1'").is_err());
        assert!(parse("a:['1' '2']").is_err());
        assert_eq!(parse("  ").unwrap(), None);
        let deep = "(".repeat(40) + "a:1" + &")".repeat(40);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn index_hints() {
        let e = parse("type:'domain'+value:['a.com','b.com']")
            .unwrap()
            .unwrap();
        assert_eq!(required_values(&e, "value"), Some(vec!["a.com", "b.com"]));
        let e = parse("value:'a*'").unwrap().unwrap();
        assert_eq!(required_values(&e, "value"), None);
        let e = parse("value:'a',value:'b'").unwrap().unwrap();
        assert_eq!(required_values(&e, "value"), None);
    }

    #[test]
    fn glob_matching() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(!glob("a*c", "abbb"));
        assert!(glob("*evil*", "very.EVIL.com"));
    }
}
