//! A context-free, maximal-munch tokenizer that reproduces the reference (ANTLR) lexer's decisions.
//!
//! Token recognisers are nom 8 parsers over `&str`; the [`Lexer`] drives them one token at a time, so
//! lexing allocates nothing.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while, take_while_m_n},
    character::complete::{char, digit0, digit1, one_of, satisfy},
    combinator::{opt, recognize},
    multi::many0_count,
};

/// Keywords (case-sensitive). `EXISTS` is a keyword in STIX 2.1 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    And,
    Or,
    Not,
    FollowedBy,
    Like,
    Matches,
    IsSuperset,
    IsSubset,
    Exists,
    Last,
    In,
    Start,
    Stop,
    Seconds,
    Within,
    Repeats,
    Times,
}

pub(crate) fn keyword(s: &str, v21: bool) -> Option<Kw> {
    Some(match s {
        "AND" => Kw::And,
        "OR" => Kw::Or,
        "NOT" => Kw::Not,
        "FOLLOWEDBY" => Kw::FollowedBy,
        "LIKE" => Kw::Like,
        "MATCHES" => Kw::Matches,
        "ISSUPERSET" => Kw::IsSuperset,
        "ISSUBSET" => Kw::IsSubset,
        "EXISTS" if v21 => Kw::Exists,
        "LAST" => Kw::Last,
        "IN" => Kw::In,
        "START" => Kw::Start,
        "STOP" => Kw::Stop,
        "SECONDS" => Kw::Seconds,
        "WITHIN" => Kw::Within,
        "REPEATS" => Kw::Repeats,
        "TIMES" => Kw::Times,
        _ => return None,
    })
}

/// Whether `s` is a reserved word (any version) or a boolean, so must be quoted as a key.
pub(crate) fn is_keyword(s: &str) -> bool {
    keyword(s, true).is_some() || s == "true" || s == "false"
}

/// Token kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Ident {
        hyphen: bool,
    },
    Kw(Kw),
    Bool(bool),
    Str,
    /// A `'` that does not start a well-formed string; `bad_escape` is the byte offset of a bad `\`.
    BadStr {
        bad_escape: Option<usize>,
    },
    Int,
    Float,
    Hex,
    Bin,
    Ts,
    Eq,
    EqEq,
    Ne,
    LtGt,
    Lt,
    Le,
    Gt,
    Ge,
    Colon,
    Dot,
    Comma,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Star,
    Plus,
    Minus,
    Caret,
    Slash,
    Invalid,
    Eof,
}

/// A token: kind and byte span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub kind: Tok,
    pub start: usize,
    pub end: usize,
}

/// Unicode `WSpace=Y`, the reference grammar's whitespace set.
pub(crate) fn is_ws(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '\r'
            | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

type R<'a> = IResult<&'a str, &'a str>;

fn ident(i: &str) -> R<'_> {
    recognize((
        satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
    ))
    .parse(i)
}

fn int_lit(i: &str) -> R<'_> {
    recognize((
        opt(one_of("+-")),
        alt((recognize((one_of("123456789"), digit0)), tag("0"))),
    ))
    .parse(i)
}

fn float_lit(i: &str) -> R<'_> {
    recognize((opt(one_of("+-")), digit0, char('.'), digit1)).parse(i)
}

fn two_digits_in(lo: u8, hi: u8) -> impl Fn(&str) -> R<'_> {
    move |i: &str| {
        let (rest, d) = take_while_m_n(2, 2, |c: char| c.is_ascii_digit())(i)?;
        let v = (d.as_bytes()[0] - b'0') * 10 + (d.as_bytes()[1] - b'0');
        if v < lo || v > hi {
            return Err(nom::Err::Error(nom::error::Error::new(
                i,
                nom::error::ErrorKind::Verify,
            )));
        }
        Ok((rest, d))
    }
}

/// The body of a timestamp literal: `YYYY-MM-DDTHH:MM:SS(.f+)?Z`.
pub(crate) fn timestamp_body(i: &str) -> R<'_> {
    recognize((
        take_while_m_n(4, 4, |c: char| c.is_ascii_digit()),
        char('-'),
        two_digits_in(1, 12),
        char('-'),
        two_digits_in(1, 31),
        char('T'),
        two_digits_in(0, 23),
        char(':'),
        two_digits_in(0, 59),
        char(':'),
        two_digits_in(0, 60),
        opt((char('.'), digit1)),
        char('Z'),
    ))
    .parse(i)
}

fn ts_lit(i: &str) -> R<'_> {
    recognize((tag("t'"), timestamp_body, char('\''))).parse(i)
}

fn hex_lit(i: &str) -> R<'_> {
    let hexd = || satisfy(|c: char| c.is_ascii_hexdigit());
    recognize((tag("h'"), many0_count((hexd(), hexd())), char('\''))).parse(i)
}

fn b64c(i: &str) -> IResult<&str, char> {
    satisfy(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/').parse(i)
}

fn bin_lit(i: &str) -> R<'_> {
    // Quads, the last of which may be padded; at least one quad.
    let quad = || recognize((b64c, b64c, b64c, b64c));
    let mut last = alt((
        recognize((b64c, b64c, b64c, b64c)),
        recognize((b64c, b64c, b64c, char('='))),
        recognize((b64c, b64c, tag("=="))),
    ));
    // `many0(quad)` would swallow the final unpadded quad; the tail is checked by hand instead.
    let (rest, _) = tag("b'")(i)?;
    let mut cur = rest;
    let mut quads = 0usize;
    loop {
        if let Ok((r, _)) = quad().parse(cur) {
            cur = r;
            quads += 1;
            continue;
        }
        break;
    }
    // Either we ended exactly at the quote after >= 1 full quad, or a padded quad follows.
    if let Ok((r, _)) = last.parse(cur)
        && let Ok((r2, _)) = char::<_, nom::error::Error<&str>>('\'')(r)
    {
        let len = i.len() - r2.len();
        return Ok((r2, &i[..len]));
    }
    if quads > 0
        && let Ok((r2, _)) = char::<_, nom::error::Error<&str>>('\'')(cur)
    {
        let len = i.len() - r2.len();
        return Ok((r2, &i[..len]));
    }
    Err(nom::Err::Error(nom::error::Error::new(
        i,
        nom::error::ErrorKind::Verify,
    )))
}

/// Scans a string literal starting at `'`. `Ok(len)` or `Err(bad escape offset)`.
fn string_lit(s: &str) -> Result<usize, Option<usize>> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\'' => return Ok(i + 1),
            b'\\' => match b.get(i + 1) {
                Some(b'\'') | Some(b'\\') => i += 2,
                _ => return Err(Some(i)),
            },
            _ => i += 1,
        }
    }
    Err(None)
}

/// The tokenizer.
pub(crate) struct Lexer<'a> {
    pub src: &'a str,
    pub pos: usize,
    pub v21: bool,
    /// Byte offset of the first comment seen, if any.
    pub comment_at: Option<usize>,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, v21: bool) -> Self {
        Lexer {
            src,
            pos: 0,
            v21,
            comment_at: None,
        }
    }

    fn skip_trivia(&mut self) {
        let b = self.src.as_bytes();
        loop {
            let Some(&c) = b.get(self.pos) else { return };
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | 0x0B | 0x0C => self.pos += 1,
                b'/' if b.get(self.pos + 1) == Some(&b'*') => {
                    match self.src[self.pos + 2..].find("*/") {
                        Some(end) => {
                            self.comment_at.get_or_insert(self.pos);
                            self.pos += 2 + end + 2;
                        }
                        None => return,
                    }
                }
                b'/' if b.get(self.pos + 1) == Some(&b'/') => {
                    self.comment_at.get_or_insert(self.pos);
                    let rest = &self.src[self.pos..];
                    let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
                    self.pos += end;
                }
                c if c >= 0x80 => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or('\0');
                    if is_ws(ch) {
                        self.pos += ch.len_utf8();
                    } else {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// The next token.
    pub fn next_token(&mut self) -> Token {
        self.skip_trivia();
        let start = self.pos;
        let rest = &self.src[start..];
        let b = rest.as_bytes();
        let Some(&c) = b.first() else {
            return Token {
                kind: Tok::Eof,
                start,
                end: start,
            };
        };
        let (kind, len) = match c {
            b'[' => (Tok::LBrack, 1),
            b']' => (Tok::RBrack, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b':' => (Tok::Colon, 1),
            b',' => (Tok::Comma, 1),
            b'*' => (Tok::Star, 1),
            b'^' => (Tok::Caret, 1),
            b'/' => (Tok::Slash, 1),
            b'=' => {
                if b.get(1) == Some(&b'=') {
                    (Tok::EqEq, 2)
                } else {
                    (Tok::Eq, 1)
                }
            }
            b'!' => {
                if b.get(1) == Some(&b'=') {
                    (Tok::Ne, 2)
                } else {
                    (Tok::Invalid, 1)
                }
            }
            b'<' => match b.get(1) {
                Some(b'=') => (Tok::Le, 2),
                Some(b'>') => (Tok::LtGt, 2),
                _ => (Tok::Lt, 1),
            },
            b'>' => {
                if b.get(1) == Some(&b'=') {
                    (Tok::Ge, 2)
                } else {
                    (Tok::Gt, 1)
                }
            }
            b'\'' => match string_lit(rest) {
                Ok(n) => (Tok::Str, n),
                Err(bad) => (
                    Tok::BadStr {
                        bad_escape: bad.map(|o| start + o),
                    },
                    1,
                ),
            },
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                let fl = float_lit(rest).map(|(_, m)| m.len()).unwrap_or(0);
                let il = int_lit(rest).map(|(_, m)| m.len()).unwrap_or(0);
                if fl > il {
                    (Tok::Float, fl)
                } else if il > 0 {
                    (Tok::Int, il)
                } else {
                    match c {
                        b'+' => (Tok::Plus, 1),
                        b'-' => (Tok::Minus, 1),
                        _ => (Tok::Dot, 1),
                    }
                }
            }
            b't' | b'h' | b'b' if b.get(1) == Some(&b'\'') => {
                let lit = match c {
                    b't' => ts_lit(rest).map(|(_, m)| (Tok::Ts, m.len())),
                    b'h' => hex_lit(rest).map(|(_, m)| (Tok::Hex, m.len())),
                    _ => bin_lit(rest).map(|(_, m)| (Tok::Bin, m.len())),
                };
                lit.unwrap_or((Tok::Ident { hyphen: false }, 1))
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = ident(rest).map(|(_, m)| m.len()).unwrap_or(1);
                let text = &rest[..len];
                let kind = if let Some(kw) = keyword(text, self.v21) {
                    Tok::Kw(kw)
                } else if text == "true" {
                    Tok::Bool(true)
                } else if text == "false" {
                    Tok::Bool(false)
                } else {
                    Tok::Ident {
                        hyphen: text.contains('-'),
                    }
                };
                (kind, len)
            }
            _ => {
                let ch = rest.chars().next().map(char::len_utf8).unwrap_or(1);
                (Tok::Invalid, ch)
            }
        };
        self.pos = start + len;
        Token {
            kind,
            start,
            end: start + len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        let mut l = Lexer::new(s, true);
        let mut out = vec![];
        loop {
            let t = l.next_token();
            out.push(t.kind);
            if t.kind == Tok::Eof {
                return out;
            }
        }
    }

    #[test]
    fn maximal_munch_numbers() {
        assert_eq!(kinds("01"), vec![Tok::Int, Tok::Int, Tok::Eof]);
        assert_eq!(kinds("00.5"), vec![Tok::Float, Tok::Eof]);
        assert_eq!(kinds("1."), vec![Tok::Int, Tok::Dot, Tok::Eof]);
        assert_eq!(kinds("-5"), vec![Tok::Int, Tok::Eof]);
        assert_eq!(kinds("- 5"), vec![Tok::Minus, Tok::Int, Tok::Eof]);
    }

    #[test]
    fn prefixed_literals_commit_only_when_complete() {
        assert_eq!(kinds("t'2020-01-01T00:00:00Z'"), vec![Tok::Ts, Tok::Eof]);
        assert_eq!(
            kinds("t'2020-13-01T00:00:00Z'"),
            vec![Tok::Ident { hyphen: false }, Tok::Str, Tok::Eof]
        );
        assert_eq!(kinds("h''"), vec![Tok::Hex, Tok::Eof]);
        assert_eq!(kinds("b'YQ=='"), vec![Tok::Bin, Tok::Eof]);
        assert_eq!(kinds("b'YWJj'"), vec![Tok::Bin, Tok::Eof]);
        assert_eq!(
            kinds("b'YQ'"),
            vec![Tok::Ident { hyphen: false }, Tok::Str, Tok::Eof]
        );
    }

    #[test]
    fn keywords_are_case_sensitive_and_whole_lexemes() {
        assert_eq!(kinds("AND"), vec![Tok::Kw(Kw::And), Tok::Eof]);
        assert_eq!(kinds("and"), vec![Tok::Ident { hyphen: false }, Tok::Eof]);
        assert_eq!(
            kinds("ANDROID"),
            vec![Tok::Ident { hyphen: false }, Tok::Eof]
        );
        assert_eq!(kinds("AND-x"), vec![Tok::Ident { hyphen: true }, Tok::Eof]);
    }
}
