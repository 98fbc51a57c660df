//! Recursive-descent parser with precedence climbing over the [`Lexer`]'s tokens.
//!
//! Observation level, loosest first: `FOLLOWEDBY` < `OR` < `AND` < postfix qualifiers < `[...]` / `(...)`.
//! Comparison level: `OR` < `AND` < proposition / `(...)`. All binary operators are left-associative and
//! chains are collected into n-ary nodes, so recursion depth grows only with bracket nesting, which is
//! bounded by [`ParseOptions::max_depth`].

use crate::ast::*;
use crate::error::Error;
use crate::lexer::{Kw, Lexer, Tok, Token, keyword, timestamp_body};
use crate::{ParseOptions, SpecVersion};

pub(crate) struct Parser<'a> {
    src: &'a str,
    lx: Lexer<'a>,
    tok: Token,
    opts: ParseOptions,
    depth: usize,
    prev_end: usize,
    pending_dup: Option<Error>,
    pending_hash: Option<Error>,
    pending_strict: Option<Error>,
}

type PResult<T> = Result<T, Error>;

/// The reference validator's "missing square brackets" heuristic: after any `(` and whitespace, the first
/// character must be `[`.
fn brackets_ok(s: &str) -> bool {
    // Python's str.isspace() also accepts \x1c-\x1f.
    s.chars()
        .find(|&c| c != '(' && !(c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)))
        == Some('[')
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str, opts: &ParseOptions) -> Self {
        let mut lx = Lexer::new(src, opts.version == SpecVersion::V2_1);
        let tok = lx.next_token();
        Parser {
            src,
            lx,
            tok,
            opts: opts.clone(),
            depth: 0,
            prev_end: 0,
            pending_dup: None,
            pending_hash: None,
            pending_strict: None,
        }
    }

    fn v21(&self) -> bool {
        self.opts.version == SpecVersion::V2_1
    }

    fn col(&self, byte: usize) -> usize {
        self.src[..byte.min(self.src.len())].chars().count()
    }

    fn text(&self, t: Token) -> &'a str {
        &self.src[t.start..t.end]
    }

    fn bump(&mut self) -> Token {
        let t = self.tok;
        self.prev_end = t.end;
        self.tok = self.lx.next_token();
        t
    }

    fn describe(&self, t: Token) -> String {
        if t.kind == Tok::Eof {
            return "the end of the pattern".to_string();
        }
        let text = self.text(t);
        let mut short: String = text.chars().take(24).collect();
        if short.len() < text.len() {
            short.push_str("...");
        }
        format!("'{short}'")
    }

    fn syntax_at(&self, byte: usize, message: impl Into<String>) -> Error {
        Error::Syntax {
            column: self.col(byte),
            message: message.into(),
        }
    }

    /// An error at the current token, with hints for common mistakes.
    fn unexpected(&self, expected: &str) -> Error {
        let t = self.tok;
        let found = self.describe(t);
        let mut msg = format!("expected {expected}, found {found}");
        match t.kind {
            Tok::Ident { .. } => {
                let text = self.text(t);
                let upper = text.to_ascii_uppercase();
                if keyword(&upper, self.v21()).is_some() || upper == "TRUE" || upper == "FALSE" {
                    msg.push_str(&format!(
                        " (keywords are case-sensitive: write '{}')",
                        if upper == "TRUE" || upper == "FALSE" {
                            text.to_ascii_lowercase()
                        } else {
                            upper
                        }
                    ));
                }
            }
            Tok::BadStr { bad_escape } => {
                return match bad_escape {
                    Some(at) => {
                        let esc: String = self.src[at..].chars().take(2).collect();
                        self.syntax_at(
                            t.start,
                            format!(
                                "invalid escape '{esc}' at column {} in the string starting here: only \\' and \\\\ are escapes",
                                self.col(at)
                            ),
                        )
                    }
                    None => {
                        self.syntax_at(t.start, "unterminated string: missing the closing quote")
                    }
                };
            }
            Tok::Kw(Kw::Last) => msg.push_str(" ('LAST' is reserved and unused)"),
            Tok::Kw(Kw::Exists) if !self.v21() => {}
            _ => {}
        }
        Error::Syntax {
            column: self.col(t.start),
            message: msg,
        }
    }

    fn strict(&mut self, byte: usize, message: impl Into<String>) {
        if self.opts.strict && self.pending_strict.is_none() {
            self.pending_strict = Some(Error::Strict {
                column: self.col(byte),
                message: message.into(),
            });
        }
    }

    fn enter(&mut self, at: usize) -> PResult<()> {
        self.depth += 1;
        if self.depth > self.opts.max_depth {
            return Err(Error::TooDeep {
                column: self.col(at),
                limit: self.opts.max_depth,
            });
        }
        Ok(())
    }

    pub fn parse(mut self) -> PResult<Pattern> {
        if !brackets_ok(self.src) {
            return Err(Error::Invalid {
                column: 0,
                message:
                    "input is missing square brackets: a pattern starts with '[' (after any '(')"
                        .to_string(),
            });
        }
        let root = self.obs_followedby()?;
        match self.tok.kind {
            Tok::Eof => {}
            Tok::RBrack => return Err(self.unexpected("the end of the pattern (unbalanced ']')")),
            Tok::RParen => return Err(self.unexpected("the end of the pattern (unbalanced ')')")),
            _ => {
                return Err(
                    self.unexpected("AND, OR, FOLLOWEDBY, a qualifier or the end of the pattern")
                );
            }
        }
        if let Some(e) = self.pending_dup.take() {
            return Err(e);
        }
        if let Some(e) = self.pending_hash.take() {
            return Err(e);
        }
        if let Some(at) = self.lx.comment_at {
            self.strict(at, "comments are not part of the specification");
        }
        if let Some(e) = self.pending_strict.take() {
            return Err(e);
        }
        Ok(Pattern { root })
    }

    fn obs_followedby(&mut self) -> PResult<ObservationExpr> {
        let first = self.obs_or()?;
        if self.tok.kind != Tok::Kw(Kw::FollowedBy) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::Kw(Kw::FollowedBy) {
            self.bump();
            items.push(self.obs_or()?);
        }
        Ok(ObservationExpr::FollowedBy(items))
    }

    fn obs_or(&mut self) -> PResult<ObservationExpr> {
        let first = self.obs_and()?;
        if self.tok.kind != Tok::Kw(Kw::Or) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::Kw(Kw::Or) {
            self.bump();
            items.push(self.obs_and()?);
        }
        Ok(ObservationExpr::Or(items))
    }

    fn obs_and(&mut self) -> PResult<ObservationExpr> {
        let first = self.obs_qualified()?;
        if self.tok.kind != Tok::Kw(Kw::And) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::Kw(Kw::And) {
            self.bump();
            items.push(self.obs_qualified()?);
        }
        Ok(ObservationExpr::And(items))
    }

    fn obs_qualified(&mut self) -> PResult<ObservationExpr> {
        let expr = self.obs_primary()?;
        let direct = matches!(expr, ObservationExpr::Observation(_));
        let mut qualifiers: Vec<Qualifier> = Vec::new();
        loop {
            let at = self.tok.start;
            let q = match self.tok.kind {
                Tok::Kw(Kw::Within) => self.within()?,
                Tok::Kw(Kw::Repeats) => self.repeats()?,
                Tok::Kw(Kw::Start) => self.start_stop()?,
                _ => break,
            };
            if qualifiers.iter().any(|p| p.kind() == q.kind()) {
                if direct && self.v21() && self.pending_dup.is_none() {
                    self.pending_dup = Some(Error::Invalid {
                        column: self.col(at),
                        message: format!(
                            "duplicate qualifier type encountered: {} (an observation expression takes each qualifier type once)",
                            q.kind()
                        ),
                    });
                }
                self.strict(
                    at,
                    format!(
                        "an observation expression must not have two {} qualifiers",
                        q.kind()
                    ),
                );
            }
            qualifiers.push(q);
        }
        if qualifiers.is_empty() {
            Ok(expr)
        } else {
            Ok(ObservationExpr::Qualified {
                expr: Box::new(expr),
                qualifiers,
            })
        }
    }

    fn positive_number(&mut self, what: &str) -> PResult<(Token, &'a str)> {
        let t = self.tok;
        let text = self.text(t);
        match t.kind {
            Tok::Int | Tok::Float if !text.starts_with('-') => {
                if text.starts_with('+') {
                    self.strict(t.start, "numbers must not carry a '+' sign");
                }
                self.bump();
                Ok((t, text))
            }
            Tok::Int | Tok::Float => Err(self.syntax_at(
                t.start,
                format!("{what} needs a positive number, found {}", self.describe(t)),
            )),
            _ => Err(self.unexpected(&format!("a number after {what}"))),
        }
    }

    fn within(&mut self) -> PResult<Qualifier> {
        self.bump();
        let (t, text) = self.positive_number("WITHIN")?;
        let n = if t.kind == Tok::Int {
            Number::Int(self.int_value(t, text)?)
        } else {
            Number::Float(text.parse::<f64>().unwrap_or(f64::INFINITY))
        };
        if n.as_f64() <= 0.0 {
            self.strict(t.start, "WITHIN must be a positive number of seconds");
        }
        if self.tok.kind != Tok::Kw(Kw::Seconds) {
            return Err(self.unexpected(&format!("SECONDS after 'WITHIN {text}'")));
        }
        self.bump();
        Ok(Qualifier::Within(n))
    }

    fn repeats(&mut self) -> PResult<Qualifier> {
        self.bump();
        if self.tok.kind == Tok::Float {
            return Err(self.unexpected("a whole number after REPEATS"));
        }
        let (t, text) = self.positive_number("REPEATS")?;
        let n = text
            .trim_start_matches('+')
            .parse::<u64>()
            .map_err(|_| self.syntax_at(t.start, format!("REPEATS count {text} is too large")))?;
        if n == 0 {
            self.strict(t.start, "REPEATS must be a positive number of times");
        }
        if self.tok.kind != Tok::Kw(Kw::Times) {
            return Err(self.unexpected(&format!("TIMES after 'REPEATS {text}'")));
        }
        self.bump();
        Ok(Qualifier::Repeats(n))
    }

    fn qual_timestamp(&mut self, after: &str) -> PResult<(Literal, usize)> {
        let t = self.tok;
        let text = self.text(t);
        match t.kind {
            Tok::Ts => {
                self.bump();
                let body = &text[2..text.len() - 1];
                self.check_calendar(t.start, body);
                Ok((Literal::Timestamp(body.to_string()), t.start))
            }
            Tok::Str if !self.v21() => {
                let body = unescape(&text[1..text.len() - 1]);
                match timestamp_body(&body) {
                    Ok(("", _)) => {
                        self.bump();
                        self.check_calendar(t.start, &body);
                        Ok((Literal::Str(body), t.start))
                    }
                    _ => Err(self.syntax_at(
                        t.start,
                        format!("expected a timestamp like '2016-06-01T00:00:00Z' after {after}, found {}", self.describe(t)),
                    )),
                }
            }
            Tok::Ident { .. } if text == "t" => Err(self.syntax_at(
                t.start,
                "malformed timestamp: write t'YYYY-MM-DDTHH:MM:SS[.fraction]Z' (UTC, upper-case T and Z)",
            )),
            _ => Err(self.unexpected(&format!("a timestamp t'YYYY-MM-DDTHH:MM:SSZ' after {after}"))),
        }
    }

    fn start_stop(&mut self) -> PResult<Qualifier> {
        self.bump();
        let (start, _) = self.qual_timestamp("START")?;
        if self.tok.kind != Tok::Kw(Kw::Stop) {
            return Err(self.unexpected("STOP after the START timestamp"));
        }
        self.bump();
        let (stop, stop_at) = self.qual_timestamp("STOP")?;
        if let (Some(a), Some(b)) = (ts_text(&start), ts_text(&stop))
            && ts_key(a) >= ts_key(b)
        {
            self.strict(stop_at, "the STOP time must be later than the START time");
        }
        Ok(Qualifier::StartStop { start, stop })
    }

    fn check_calendar(&mut self, at: usize, body: &str) {
        if !self.opts.strict {
            return;
        }
        let ok = (|| {
            let y: i32 = body.get(0..4)?.parse().ok()?;
            let m: u32 = body.get(5..7)?.parse().ok()?;
            let d: u32 = body.get(8..10)?.parse().ok()?;
            chrono::NaiveDate::from_ymd_opt(y, m, d)
        })();
        if ok.is_none() {
            self.strict(at, format!("{body} is not a calendar date"));
        }
    }

    fn obs_primary(&mut self) -> PResult<ObservationExpr> {
        let open = self.tok;
        match open.kind {
            Tok::LBrack => {
                self.enter(open.start)?;
                self.bump();
                let cmp = self.cmp_or()?;
                if self.tok.kind != Tok::RBrack {
                    return Err(self.unexpected(&format!(
                        "']' to close the observation started at column {}",
                        self.col(open.start)
                    )));
                }
                self.bump();
                self.depth -= 1;
                Ok(ObservationExpr::Observation(cmp))
            }
            Tok::LParen => {
                self.enter(open.start)?;
                self.bump();
                let inner = self.obs_followedby()?;
                if self.tok.kind != Tok::RParen {
                    return Err(self.unexpected(&format!(
                        "')' to close the group started at column {}",
                        self.col(open.start)
                    )));
                }
                self.bump();
                self.depth -= 1;
                Ok(ObservationExpr::Group(Box::new(inner)))
            }
            _ => Err(self.unexpected("'[' to start an observation expression (or '(' to group)")),
        }
    }

    fn cmp_or(&mut self) -> PResult<ComparisonExpr> {
        let first = self.cmp_and()?;
        if self.tok.kind != Tok::Kw(Kw::Or) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::Kw(Kw::Or) {
            self.bump();
            items.push(self.cmp_and()?);
        }
        Ok(ComparisonExpr::Or(items))
    }

    fn cmp_and(&mut self) -> PResult<ComparisonExpr> {
        let start = self.tok.start;
        let first = self.cmp_primary()?;
        if self.tok.kind != Tok::Kw(Kw::And) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::Kw(Kw::And) {
            self.bump();
            items.push(self.cmp_primary()?);
        }
        let e = ComparisonExpr::And(items);
        if self.opts.strict && root_types(&e).is_empty() {
            self.strict(
                start,
                "comparisons joined by AND inside one observation must apply to the same object type (this can never match)",
            );
        }
        Ok(e)
    }

    fn cmp_primary(&mut self) -> PResult<ComparisonExpr> {
        let t = self.tok;
        match t.kind {
            Tok::LParen => {
                self.enter(t.start)?;
                self.bump();
                let inner = self.cmp_or()?;
                if self.tok.kind != Tok::RParen {
                    return Err(self.unexpected(&format!(
                        "')' to close the parenthesis opened at column {}",
                        self.col(t.start)
                    )));
                }
                self.bump();
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Kw(Kw::Not) => {
                self.bump();
                if self.tok.kind != Tok::Kw(Kw::Exists) {
                    // The reference reports the token after NOT ("missing 'EXISTS' at ...").
                    let at = if self.v21() { self.tok.start } else { t.start };
                    return Err(self.syntax_at(
                        at,
                        if self.v21() {
                            "NOT goes after the object path (file:size NOT > 5) or before EXISTS"
                        } else {
                            "NOT goes after the object path (file:size NOT > 5)"
                        },
                    ));
                }
                self.bump();
                let path = self.path()?;
                Ok(ComparisonExpr::Comparison(Comparison {
                    path,
                    negated: true,
                    op: Operator::Exists,
                    value: None,
                }))
            }
            Tok::Kw(Kw::Exists) => {
                self.bump();
                let path = self.path()?;
                Ok(ComparisonExpr::Comparison(Comparison {
                    path,
                    negated: false,
                    op: Operator::Exists,
                    value: None,
                }))
            }
            _ => self.prop_test(),
        }
    }

    fn path(&mut self) -> PResult<ObjectPath> {
        let t = self.tok;
        let object_type = match t.kind {
            Tok::Ident { .. } => self.text(t),
            _ => return Err(self.unexpected("an object path such as file:name")),
        };
        if self.opts.strict {
            let b = object_type.as_bytes();
            let ok = (3..=250).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
            if !ok {
                self.strict(
                    t.start,
                    format!("object type '{object_type}' must be 3-250 characters of a-z, 0-9 and '-', starting with a letter"),
                );
            }
        }
        self.bump();
        if self.tok.kind != Tok::Colon {
            return Err(self.unexpected(&format!("':' after the object type '{object_type}'")));
        }
        self.bump();
        let mut steps = Vec::with_capacity(2);
        steps.push(self.key("a property name after ':'")?);
        loop {
            match self.tok.kind {
                Tok::Dot => {
                    self.bump();
                    steps.push(self.key("a property name after '.'")?);
                }
                Tok::LBrack => {
                    let open = self.bump();
                    let t = self.tok;
                    let step = match t.kind {
                        Tok::Star => PathStep::Star,
                        Tok::Int => PathStep::Index(self.int_value(t, self.text(t))?),
                        _ => {
                            return Err(
                                self.unexpected("a list index (a whole number or '*') after '['")
                            );
                        }
                    };
                    self.bump();
                    if self.tok.kind != Tok::RBrack {
                        return Err(self.unexpected(&format!(
                            "']' to close the list index opened at column {}",
                            self.col(open.start)
                        )));
                    }
                    self.bump();
                    steps.push(step);
                }
                Tok::Float if self.text(self.tok).starts_with('.') => {
                    return Err(self.syntax_at(
                        self.tok.start,
                        format!(
                            "property names cannot start with a digit: quote it, as in .'{}'",
                            &self.text(self.tok)[1..]
                        ),
                    ));
                }
                _ => break,
            }
        }
        Ok(ObjectPath {
            object_type: object_type.to_string(),
            steps,
        })
    }

    fn key(&mut self, expected: &str) -> PResult<PathStep> {
        let t = self.tok;
        let text = self.text(t);
        match t.kind {
            Tok::Ident { hyphen: false } => {
                self.bump();
                Ok(PathStep::Key(text.to_string()))
            }
            Tok::Ident { hyphen: true } => Err(self.syntax_at(
                t.start,
                format!("property names containing '-' must be quoted: write '{text}'"),
            )),
            Tok::Str => {
                self.bump();
                Ok(PathStep::Key(unescape(&text[1..text.len() - 1])))
            }
            Tok::Kw(_) | Tok::Bool(_) => Err(self.syntax_at(
                t.start,
                format!(
                    "'{text}' is a reserved word: quote it to use it as a property name ('{text}')"
                ),
            )),
            _ => Err(self.unexpected(expected)),
        }
    }

    fn int_value(&self, t: Token, text: &str) -> PResult<i64> {
        text.trim_start_matches('+')
            .parse::<i64>()
            .map_err(|_| self.syntax_at(t.start, format!("integer {text} does not fit in 64 bits")))
    }

    fn prop_test(&mut self) -> PResult<ComparisonExpr> {
        let path = self.path()?;
        let mut negated = false;
        if self.tok.kind == Tok::Kw(Kw::Not) {
            self.bump();
            negated = true;
        }
        let opt = self.tok;
        let op = match opt.kind {
            Tok::Eq => Operator::Eq,
            Tok::EqEq => {
                self.strict(opt.start, "'==' is not in the specification: write '='");
                Operator::Eq
            }
            Tok::Ne => Operator::Ne,
            Tok::LtGt => {
                self.strict(opt.start, "'<>' is not in the specification: write '!='");
                Operator::Ne
            }
            Tok::Lt => Operator::Lt,
            Tok::Le => Operator::Le,
            Tok::Gt => Operator::Gt,
            Tok::Ge => Operator::Ge,
            Tok::Kw(Kw::In) => Operator::In,
            Tok::Kw(Kw::Like) => Operator::Like,
            Tok::Kw(Kw::Matches) => Operator::Matches,
            Tok::Kw(Kw::IsSubset) => Operator::IsSubset,
            Tok::Kw(Kw::IsSuperset) => Operator::IsSuperset,
            Tok::Kw(Kw::Exists) => {
                return Err(self.syntax_at(
                    opt.start,
                    "EXISTS goes before the object path: write EXISTS type:property",
                ));
            }
            Tok::Kw(Kw::Not) => {
                return Err(self.syntax_at(opt.start, "NOT may be written only once"));
            }
            _ => {
                return Err(self.unexpected(
                    "a comparison operator (=, !=, <, <=, >, >=, IN, LIKE, MATCHES, ISSUBSET, ISSUPERSET) after the object path",
                ));
            }
        };
        self.bump();
        let op_text = self.text(opt);
        let lit_start = self.tok.start;
        let value = match op {
            Operator::Eq | Operator::Ne => self.literal(op_text, true)?,
            Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge => {
                self.literal(op_text, false)?
            }
            Operator::In => self.set()?,
            _ => {
                let t = self.tok;
                if t.kind != Tok::Str {
                    if let Tok::BadStr { .. } = t.kind {
                        return Err(self.unexpected("a quoted string"));
                    }
                    return Err(self.syntax_at(
                        t.start,
                        format!(
                            "{op_text} needs a quoted string, found {}",
                            self.describe(t)
                        ),
                    ));
                }
                self.literal(op_text, false)?
            }
        };
        let lit_end = self.prev_end;
        if matches!(op, Operator::IsSubset | Operator::IsSuperset)
            && self.opts.strict
            && let Some(s) = value.as_str()
            && crate::matcher::parse_cidr(s).is_none()
        {
            self.strict(
                lit_start,
                format!("'{s}' is not an IP address or CIDR block"),
            );
        }
        if self.pending_hash.is_none() {
            self.hash_check(&path, &value, lit_start, lit_end);
        }
        Ok(ComparisonExpr::Comparison(Comparison {
            path,
            negated,
            op,
            value: Some(value),
        }))
    }

    /// The reference validator's hash check (stix2patterns `object_validator.verify_object`), applied to
    /// the literal's raw text.
    fn hash_check(&mut self, path: &ObjectPath, value: &Literal, start: usize, end: usize) {
        if !path
            .steps
            .iter()
            .any(|s| matches!(s, PathStep::Key(k) if k == "hashes"))
        {
            return;
        }
        let Some(PathStep::Key(selector)) = path.steps.last() else {
            return;
        };
        // Normalise like the reference: upper-case, drop '-' and '\''. Fast path for short ASCII names.
        let mut buf = [0u8; 16];
        let mut len = 0;
        let mut ascii_short = selector.is_ascii();
        if ascii_short {
            for b in selector.bytes().filter(|b| *b != b'-' && *b != b'\'') {
                if len == buf.len() {
                    ascii_short = false;
                    break;
                }
                buf[len] = b.to_ascii_uppercase();
                len += 1;
            }
        }
        let owned_name;
        let name: &str = if ascii_short {
            std::str::from_utf8(&buf[..len]).unwrap_or("")
        } else {
            owned_name = selector
                .chars()
                .filter(|c| *c != '-' && *c != '\'')
                .flat_map(char::to_uppercase)
                .collect::<String>();
            &owned_name
        };
        let raw_text = &self.src[start..end.max(start)];
        let raw: std::borrow::Cow<'_, str> = if matches!(value, Literal::Set(_)) {
            // Sets start with '(' which no hash rule accepts.
            let mut s = String::new();
            value.write_compact(&mut s);
            s.replace('\'', "").into()
        } else if raw_text.len() >= 2
            && raw_text.starts_with('\'')
            && raw_text.ends_with('\'')
            && !raw_text[1..raw_text.len() - 1].contains('\'')
        {
            raw_text[1..raw_text.len() - 1].into()
        } else {
            raw_text.replace('\'', "").into()
        };
        let ok = match name {
            "MD5" => hex_exact(&raw, 32),
            "RIPEMD160" | "SHA1" => hex_exact(&raw, 40),
            "SHA224" | "SHA3224" => hex_exact(&raw, 56),
            "SHA256" | "SHA3256" => hex_exact(&raw, 64),
            "SHA384" | "SHA3384" => hex_exact(&raw, 96),
            "SHA512" | "SHA3512" | "WHIRLPOOL" => hex_exact(&raw, 128),
            "SSDEEP" => {
                let s = raw.strip_suffix('\n').unwrap_or(&raw);
                (1..=128).contains(&s.len())
                    && s.bytes().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'/' | b'+' | b':' | b'.')
                    })
            }
            "MD6" => raw.len() >= 32 && raw.as_bytes()[..32].iter().all(u8::is_ascii_hexdigit),
            _ => true,
        };
        if !ok {
            self.pending_hash = Some(Error::Invalid {
                column: self.col(start),
                message: format!("'{raw}' is not a valid {selector} hash"),
            });
        }
    }

    fn set(&mut self) -> PResult<Literal> {
        let open = self.tok;
        if open.kind != Tok::LParen {
            return Err(self.unexpected("a parenthesised set such as ('a', 'b') after IN"));
        }
        self.bump();
        let mut items = Vec::new();
        if self.tok.kind == Tok::RParen {
            self.bump();
            return Ok(Literal::Set(items));
        }
        loop {
            items.push(self.literal("IN", true)?);
            match self.tok.kind {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {
                    self.bump();
                    break;
                }
                _ => {
                    return Err(self.unexpected(&format!(
                        "',' or ')' to close the set opened at column {}",
                        self.col(open.start)
                    )));
                }
            }
        }
        if self.opts.strict {
            let numeric = |l: &Literal| matches!(l, Literal::Int(_) | Literal::Float(_));
            let first = &items[0];
            let homogeneous = items.iter().all(|l| {
                std::mem::discriminant(l) == std::mem::discriminant(first)
                    || (numeric(l) && numeric(first))
            });
            if !homogeneous {
                self.strict(
                    open.start,
                    "the values of an IN set must all have the same type",
                );
            }
        }
        Ok(Literal::Set(items))
    }

    fn literal(&mut self, after: &str, allow_bool: bool) -> PResult<Literal> {
        let t = self.tok;
        let text = self.text(t);
        let lit = match t.kind {
            Tok::Str => Literal::Str(unescape(&text[1..text.len() - 1])),
            Tok::Int => {
                if text.starts_with('+') {
                    self.strict(t.start, "numbers must not carry a '+' sign");
                }
                Literal::Int(self.int_value(t, text)?)
            }
            Tok::Float => {
                if text.starts_with('+') {
                    self.strict(t.start, "numbers must not carry a '+' sign");
                }
                Literal::Float(text.parse::<f64>().unwrap_or(f64::INFINITY))
            }
            Tok::Bool(b) if allow_bool => Literal::Bool(b),
            Tok::Bool(_) => {
                return Err(self.syntax_at(
                    t.start,
                    format!(
                        "'{text}' cannot be compared with '{after}': use = or != with booleans"
                    ),
                ));
            }
            Tok::Hex => {
                let digits = &text[2..text.len() - 1];
                if digits.bytes().any(|c| c.is_ascii_uppercase()) {
                    self.strict(t.start, "hex literals use lower-case digits a-f");
                }
                Literal::Hex(digits.to_string())
            }
            Tok::Bin => Literal::Binary(text[2..text.len() - 1].to_string()),
            Tok::Ts => {
                let body = &text[2..text.len() - 1];
                self.check_calendar(t.start, body);
                Literal::Timestamp(body.to_string())
            }
            Tok::Ident { .. }
                if matches!(text, "t" | "h" | "b") && self.src[t.end..].starts_with('\'') =>
            {
                let hint = match text {
                    "t" => {
                        "malformed timestamp: write t'YYYY-MM-DDTHH:MM:SS[.fraction]Z' (UTC, upper-case T and Z)"
                    }
                    "h" => "malformed hex literal: write h'' with an even number of hex digits",
                    _ => {
                        "malformed binary literal: write b'' with padded base64 (length a multiple of 4)"
                    }
                };
                return Err(self.syntax_at(t.start, hint));
            }
            _ => return Err(self.unexpected(&format!("a value after '{after}'"))),
        };
        self.bump();
        Ok(lit)
    }
}

/// Resolves `\'` and `\\` (the only escapes the lexer lets through).
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn hex_exact(s: &str, n: usize) -> bool {
    // Python's `$` also matches before one trailing newline.
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit())
}

fn ts_text(l: &Literal) -> Option<&str> {
    match l {
        Literal::Timestamp(s) | Literal::Str(s) => Some(s),
        _ => None,
    }
}

/// An ordering key for timestamp text: the fixed-width date-time, then the fraction without trailing zeros.
pub(crate) fn ts_key(s: &str) -> (&str, &str) {
    let head = s.get(..19).unwrap_or(s);
    let frac = s
        .get(19..)
        .unwrap_or("")
        .trim_start_matches('.')
        .trim_end_matches('Z')
        .trim_end_matches('0');
    (head, frac)
}

/// The object types a comparison expression can be rooted at (used by the strict AND check).
fn root_types(e: &ComparisonExpr) -> std::collections::BTreeSet<&str> {
    match e {
        ComparisonExpr::Comparison(c) => [c.path.object_type.as_str()].into_iter().collect(),
        ComparisonExpr::Or(items) => items.iter().flat_map(root_types).collect(),
        ComparisonExpr::And(items) => {
            let mut it = items.iter();
            let mut acc = it.next().map(root_types).unwrap_or_default();
            for i in it {
                let other = root_types(i);
                acc.retain(|t| other.contains(t));
            }
            acc
        }
    }
}
