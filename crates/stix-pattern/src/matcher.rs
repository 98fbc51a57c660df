//! Evaluates a pattern against STIX observed-data (spec §9 semantics; see `docs/stix-pattern.md` for the
//! deliberate differences from the Python stix2-matcher).
//!
//! Every observation expression produces the set of candidate *bindings* (sets of observation instances,
//! an observed-data with `number_observed = n` counting as n instances); AND/FOLLOWEDBY/REPEATS combine
//! disjoint bindings, WITHIN and START/STOP filter them by the instances' `first_observed` /
//! `last_observed`. The pattern matches when the root has at least one binding.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::ast::*;
use crate::error::Error;

/// Observed-data with more than this `number_observed` count as this many instances.
pub const MAX_INSTANCES_PER_OBSERVATION: u64 = 64;
/// Matching gives up with [`Error::Match`] when a sub-expression has more candidate bindings than this.
pub const MAX_BINDINGS: usize = 100_000;

struct Obs<'a> {
    id: Option<&'a str>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    /// Reference key (SCO id, or the key of a 2.0-style `objects` dict) -> object.
    objects: Vec<(&'a str, &'a Value)>,
}

impl<'a> Obs<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.objects
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

type Binding = Vec<u32>;

fn merr(message: impl Into<String>) -> Error {
    Error::Match {
        message: message.into(),
    }
}

fn parse_time(v: Option<&Value>, field: &str, id: Option<&str>) -> Result<DateTime<Utc>, Error> {
    let s = v.and_then(Value::as_str).ok_or_else(|| {
        merr(format!(
            "observed-data {} has no {field}",
            id.unwrap_or("?")
        ))
    })?;
    s.parse::<DateTime<Utc>>().map_err(|e| {
        merr(format!(
            "observed-data {}: bad {field} '{s}': {e}",
            id.unwrap_or("?")
        ))
    })
}

fn collect_observations(data: &[Value]) -> Result<Vec<Obs<'_>>, Error> {
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    let mut ods: Vec<&Value> = Vec::new();
    fn visit<'a>(v: &'a Value, by_id: &mut HashMap<&'a str, &'a Value>, ods: &mut Vec<&'a Value>) {
        match v.get("type").and_then(Value::as_str) {
            Some("bundle") => {
                for o in v
                    .get("objects")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    visit(o, by_id, ods);
                }
            }
            Some("observed-data") => ods.push(v),
            Some(_) => {
                if let Some(id) = v.get("id").and_then(Value::as_str) {
                    by_id.insert(id, v);
                }
            }
            None => {}
        }
    }
    for v in data {
        if let Some(arr) = v.as_array() {
            arr.iter().for_each(|o| visit(o, &mut by_id, &mut ods));
        } else {
            visit(v, &mut by_id, &mut ods);
        }
    }
    let mut out = Vec::with_capacity(ods.len());
    for od in ods {
        let id = od.get("id").and_then(Value::as_str);
        let first = parse_time(od.get("first_observed"), "first_observed", id)?;
        let last = parse_time(od.get("last_observed"), "last_observed", id)?;
        let mut objects = Vec::new();
        if let Some(map) = od.get("objects").and_then(Value::as_object) {
            for (k, v) in map {
                objects.push((k.as_str(), v));
            }
        }
        for r in od
            .get("object_refs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && let Some(obj) = by_id.get(r)
            {
                objects.push((r, *obj));
            }
        }
        let n = od
            .get("number_observed")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if n == 0 {
            return Err(merr(format!(
                "observed-data {} has number_observed 0",
                id.unwrap_or("?")
            )));
        }
        let obs = Obs {
            id,
            first,
            last,
            objects,
        };
        for _ in 0..n.min(MAX_INSTANCES_PER_OBSERVATION) {
            out.push(Obs {
                id: obs.id,
                first: obs.first,
                last: obs.last,
                objects: obs.objects.clone(),
            });
        }
    }
    Ok(out)
}

/// A value reached by an object path.
#[derive(Debug, Clone)]
enum Val<'a> {
    Json(&'a Value),
    /// A dereferenced `_refs` list.
    Objs(Vec<&'a Value>),
    Bytes(Vec<u8>),
}

pub(crate) fn lenient_b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
    .decode(cleaned)
    .ok()
}

fn decode_hex_str(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(decode_hex(s))
}

fn eval_path<'a>(obs: &Obs<'a>, root: &'a Value, steps: &[PathStep]) -> Vec<Val<'a>> {
    let mut cur: Vec<Val<'a>> = vec![Val::Json(root)];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                PathStep::Key(k) => {
                    let Val::Json(Value::Object(map)) = v else {
                        continue;
                    };
                    let Some(child) = map.get(k.as_str()) else {
                        continue;
                    };
                    if k.ends_with("_ref") {
                        if let Some(r) = child.as_str()
                            && let Some(o) = obs.get(r)
                        {
                            next.push(Val::Json(o));
                        }
                    } else if k.ends_with("_refs") {
                        if let Some(arr) = child.as_array() {
                            let objs: Vec<&Value> = arr
                                .iter()
                                .filter_map(|r| r.as_str().and_then(|r| obs.get(r)))
                                .collect();
                            next.push(Val::Objs(objs));
                        }
                    } else if k.ends_with("_hex") {
                        if let Some(b) = child.as_str().and_then(decode_hex_str) {
                            next.push(Val::Bytes(b));
                        }
                    } else if k.ends_with("_bin") {
                        if let Some(b) = child.as_str().and_then(lenient_b64) {
                            next.push(Val::Bytes(b));
                        }
                    } else {
                        next.push(Val::Json(child));
                    }
                }
                PathStep::Index(i) => {
                    if *i < 0 {
                        continue;
                    }
                    let i = *i as usize;
                    match v {
                        Val::Json(Value::Array(a)) => {
                            if let Some(x) = a.get(i) {
                                next.push(Val::Json(x));
                            }
                        }
                        Val::Objs(o) => {
                            if let Some(x) = o.get(i) {
                                next.push(Val::Json(x));
                            }
                        }
                        _ => {}
                    }
                }
                PathStep::Star => match v {
                    Val::Json(Value::Array(a)) => next.extend(a.iter().map(Val::Json)),
                    Val::Objs(o) => next.extend(o.into_iter().map(Val::Json)),
                    _ => {}
                },
            }
        }
        cur = next;
        if cur.is_empty() {
            break;
        }
    }
    cur
}

pub(crate) fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    if !matches!(crate::lexer::timestamp_body(s), Ok(("", _))) {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.fZ")
        .ok()
        .map(|n| n.and_utc())
}

fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// Equality with the matcher's type table; `None` when the types are incompatible.
fn equal(v: &Val<'_>, lit: &Literal) -> Option<bool> {
    use std::cmp::Ordering::Equal;
    order(v, lit, true).map(|o| o == Equal)
}

fn num_cmp(a: &serde_json::Number, lit: &Literal) -> Option<std::cmp::Ordering> {
    match lit {
        Literal::Int(i) => {
            if let Some(x) = a.as_i64() {
                Some(x.cmp(i))
            } else {
                a.as_f64()?.partial_cmp(&(*i as f64))
            }
        }
        Literal::Float(f) => a.as_f64()?.partial_cmp(f),
        _ => None,
    }
}

/// Ordering with the matcher's type table; `None` when incomparable.
fn order(v: &Val<'_>, lit: &Literal, allow_bool: bool) -> Option<std::cmp::Ordering> {
    match (v, lit) {
        (Val::Json(Value::Number(n)), Literal::Int(_) | Literal::Float(_)) => num_cmp(n, lit),
        (Val::Json(Value::String(s)), Literal::Str(l)) => Some(s.as_str().cmp(l.as_str())),
        (Val::Json(Value::String(s)), Literal::Timestamp(t)) => {
            Some(parse_ts(s)?.cmp(&parse_ts(t)?))
        }
        (Val::Json(Value::String(s)), Literal::Hex(_) | Literal::Binary(_)) => {
            Some(latin1(s)?.cmp(&lit.as_bytes()?))
        }
        (Val::Json(Value::Bool(b)), Literal::Bool(l)) if allow_bool => Some(b.cmp(l)),
        (Val::Bytes(b), Literal::Hex(_) | Literal::Binary(_)) => Some(b.cmp(&lit.as_bytes()?)),
        (Val::Bytes(b), Literal::Str(s)) => Some(b.as_slice().cmp(latin1(s)?.as_slice())),
        _ => None,
    }
}

/// NFC form of `s` (borrowed when already NFC), as the spec requires for LIKE and MATCHES.
fn nfc(s: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.nfc().collect())
    }
}

fn like_regex(p: &str) -> Result<regex::Regex, Error> {
    let mut re = String::from("(?s)^");
    for c in p.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| merr(format!("LIKE pattern '{p}': {e}")))
}

/// Parses an IP address or CIDR block into (network address, prefix length).
pub(crate) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => {
            let p: u8 = p.parse().ok()?;
            if p > max {
                return None;
            }
            p
        }
        None => max,
    };
    Some((ip, prefix))
}

fn masked(ip: IpAddr, prefix: u8) -> u128 {
    match ip {
        IpAddr::V4(a) => {
            let x = u32::from(a) as u128;
            if prefix == 0 {
                0
            } else {
                x >> (32 - prefix as u32) << (32 - prefix as u32)
            }
        }
        IpAddr::V6(a) => {
            let x = u128::from(a);
            if prefix == 0 {
                0
            } else {
                x >> (128 - prefix as u32) << (128 - prefix as u32)
            }
        }
    }
}

fn subset(a: (IpAddr, u8), b: (IpAddr, u8)) -> bool {
    a.0.is_ipv4() == b.0.is_ipv4() && a.1 >= b.1 && masked(a.0, b.1) == masked(b.0, b.1)
}

/// A comparison prepared for repeated evaluation (regexes compiled once).
struct Prepared<'p> {
    c: &'p Comparison,
    re: Option<regex::Regex>,
    bre: Option<regex::bytes::Regex>,
    cidr: Option<(IpAddr, u8)>,
}

fn prepare(c: &Comparison) -> Result<Prepared<'_>, Error> {
    let mut p = Prepared {
        c,
        re: None,
        bre: None,
        cidr: None,
    };
    match (c.op, &c.value) {
        (Operator::Like, Some(Literal::Str(s))) => p.re = Some(like_regex(&nfc(s))?),
        (Operator::Matches, Some(Literal::Str(s))) => {
            p.re = Some(
                regex::RegexBuilder::new(&nfc(s))
                    .dot_matches_new_line(true)
                    .build()
                    .map_err(|e| merr(format!("MATCHES regular expression '{s}': {e}")))?,
            );
            if s.chars().all(|c| (c as u32) < 256) {
                p.bre = regex::bytes::RegexBuilder::new(s)
                    .unicode(false)
                    .dot_matches_new_line(true)
                    .build()
                    .ok();
            }
        }
        (Operator::IsSubset | Operator::IsSuperset, Some(Literal::Str(s))) => {
            p.cidr = Some(
                parse_cidr(s)
                    .ok_or_else(|| merr(format!("'{s}' is not an IP address or CIDR block")))?,
            );
        }
        _ => {}
    }
    Ok(p)
}

fn test_value(p: &Prepared<'_>, v: &Val<'_>) -> bool {
    use std::cmp::Ordering::*;
    let lit = match &p.c.value {
        Some(l) => l,
        None => return true,
    };
    match p.c.op {
        Operator::Eq => equal(v, lit) == Some(true),
        Operator::Ne => equal(v, lit) != Some(true),
        Operator::Lt => order(v, lit, false) == Some(Less),
        Operator::Le => matches!(order(v, lit, false), Some(Less | Equal)),
        Operator::Gt => order(v, lit, false) == Some(Greater),
        Operator::Ge => matches!(order(v, lit, false), Some(Greater | Equal)),
        Operator::In => match lit {
            Literal::Set(items) => items.iter().any(|i| equal(v, i) == Some(true)),
            _ => false,
        },
        Operator::Like | Operator::Matches => match v {
            Val::Json(Value::String(s)) => p.re.as_ref().is_some_and(|r| r.is_match(&nfc(s))),
            Val::Bytes(b) => {
                if p.c.op == Operator::Matches {
                    p.bre.as_ref().is_some_and(|r| r.is_match(b))
                } else {
                    std::str::from_utf8(b)
                        .ok()
                        .is_some_and(|s| p.re.as_ref().is_some_and(|r| r.is_match(&nfc(s))))
                }
            }
            _ => false,
        },
        Operator::IsSubset | Operator::IsSuperset => {
            let (Val::Json(Value::String(s)), Some(c)) = (v, p.cidr) else {
                return false;
            };
            let Some(val) = parse_cidr(s) else {
                return false;
            };
            if p.c.op == Operator::IsSubset {
                subset(val, c)
            } else {
                subset(c, val)
            }
        }
        Operator::Exists => true,
    }
}

enum PCmp<'p> {
    And(Vec<PCmp<'p>>),
    Or(Vec<PCmp<'p>>),
    Leaf(Prepared<'p>),
}

fn prepare_cmp(e: &ComparisonExpr) -> Result<PCmp<'_>, Error> {
    Ok(match e {
        ComparisonExpr::And(items) => {
            PCmp::And(items.iter().map(prepare_cmp).collect::<Result<_, _>>()?)
        }
        ComparisonExpr::Or(items) => {
            PCmp::Or(items.iter().map(prepare_cmp).collect::<Result<_, _>>()?)
        }
        ComparisonExpr::Comparison(c) => PCmp::Leaf(prepare(c)?),
    })
}

/// The root objects of `obs` that satisfy `e`.
fn eval_cmp<'a>(e: &PCmp<'_>, obs: &Obs<'a>) -> BTreeSet<&'a str> {
    match e {
        PCmp::Leaf(p) => {
            let mut out = BTreeSet::new();
            for (key, obj) in &obs.objects {
                if obj.get("type").and_then(Value::as_str) != Some(p.c.path.object_type.as_str()) {
                    continue;
                }
                let vals = eval_path(obs, obj, &p.c.path.steps);
                let pass = if p.c.op == Operator::Exists {
                    vals.is_empty() == p.c.negated
                } else {
                    // Missing path: false whatever the operator; NOT applies per value.
                    vals.iter().any(|v| test_value(p, v) != p.c.negated)
                };
                if pass {
                    out.insert(*key);
                }
            }
            out
        }
        PCmp::Or(items) => items.iter().flat_map(|i| eval_cmp(i, obs)).collect(),
        PCmp::And(items) => {
            let mut it = items.iter();
            let mut acc = it.next().map(|i| eval_cmp(i, obs)).unwrap_or_default();
            for i in it {
                if acc.is_empty() {
                    break;
                }
                let other = eval_cmp(i, obs);
                acc.retain(|k| other.contains(k));
            }
            acc
        }
    }
}

struct Ctx<'a, 'p> {
    obs: Vec<Obs<'a>>,
    /// Prepared comparison expressions of the `[...]` leaves, in evaluation (depth-first) order.
    leaves: &'p [PCmp<'p>],
    next: std::cell::Cell<usize>,
}

fn disjoint(a: &[u32], b: &[u32]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return false,
        }
    }
    true
}

fn merge(a: &[u32], b: &[u32]) -> Binding {
    let mut v: Binding = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v
}

fn finish(mut v: Vec<Binding>) -> Result<Vec<Binding>, Error> {
    v.sort();
    v.dedup();
    if v.len() > MAX_BINDINGS {
        return Err(merr(format!(
            "more than {MAX_BINDINGS} candidate bindings; narrow the pattern or the data"
        )));
    }
    Ok(v)
}

impl Ctx<'_, '_> {
    fn first(&self, b: &[u32]) -> DateTime<Utc> {
        b.iter()
            .map(|&i| self.obs[i as usize].first)
            .max()
            .unwrap_or_default()
    }
    fn last_min(&self, b: &[u32]) -> DateTime<Utc> {
        b.iter()
            .map(|&i| self.obs[i as usize].last)
            .min()
            .unwrap_or_default()
    }

    fn eval(&self, e: &ObservationExpr) -> Result<Vec<Binding>, Error> {
        match e {
            ObservationExpr::Observation(_) => {
                let p = &self.leaves[self.next.get()];
                self.next.set(self.next.get() + 1);
                Ok((0..self.obs.len())
                    .filter(|&i| !eval_cmp(p, &self.obs[i]).is_empty())
                    .map(|i| vec![i as u32])
                    .collect())
            }
            ObservationExpr::Group(inner) => self.eval(inner),
            ObservationExpr::Or(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(self.eval(i)?);
                    if out.len() > MAX_BINDINGS * 2 {
                        return finish(out);
                    }
                }
                finish(out)
            }
            ObservationExpr::And(items) | ObservationExpr::FollowedBy(items) => {
                let followed = matches!(e, ObservationExpr::FollowedBy(_));
                let mut acc = self.eval(&items[0])?;
                for i in &items[1..] {
                    let rhs = self.eval(i)?;
                    let mut next = Vec::new();
                    for a in &acc {
                        for b in &rhs {
                            if !disjoint(a, b) {
                                continue;
                            }
                            if followed && self.first(a) > self.last_min(b) {
                                continue;
                            }
                            next.push(merge(a, b));
                            if next.len() > MAX_BINDINGS * 2 {
                                return finish(next);
                            }
                        }
                    }
                    acc = finish(next)?;
                }
                Ok(acc)
            }
            ObservationExpr::Qualified { expr, qualifiers } => {
                let mut acc = self.eval(expr)?;
                for q in qualifiers {
                    acc = self.qualify(acc, q)?;
                }
                Ok(acc)
            }
        }
    }

    fn qualify(&self, acc: Vec<Binding>, q: &Qualifier) -> Result<Vec<Binding>, Error> {
        match q {
            Qualifier::Within(d) => {
                let d = d.as_f64();
                if d <= 0.0 {
                    return Ok(Vec::new());
                }
                Ok(acc
                    .into_iter()
                    .filter(|b| {
                        let span = self.first(b) - self.last_min(b);
                        let secs = span
                            .num_nanoseconds()
                            .map(|n| n as f64 / 1e9)
                            .unwrap_or(f64::MAX);
                        secs <= d
                    })
                    .collect())
            }
            Qualifier::StartStop { start, stop } => {
                let (Some(s), Some(e)) = (
                    start_text(start).and_then(parse_ts),
                    start_text(stop).and_then(parse_ts),
                ) else {
                    return Ok(Vec::new());
                };
                if s >= e {
                    return Ok(Vec::new());
                }
                Ok(acc
                    .into_iter()
                    .filter(|b| {
                        b.iter().all(|&i| {
                            let o = &self.obs[i as usize];
                            o.first < e && o.last >= s
                        })
                    })
                    .collect())
            }
            Qualifier::Repeats(n) => {
                let n = *n as usize;
                if n == 0 {
                    return Ok(Vec::new());
                }
                let mut out = Vec::new();
                let mut stack: Vec<(usize, Binding, usize)> = vec![(0, Vec::new(), 0)];
                while let Some((start, cur, k)) = stack.pop() {
                    if k == n {
                        out.push(cur);
                        if out.len() > MAX_BINDINGS * 2 {
                            return finish(out);
                        }
                        continue;
                    }
                    if acc.len() - start < n - k {
                        continue;
                    }
                    for (i, b) in acc.iter().enumerate().skip(start) {
                        if disjoint(&cur, b) {
                            stack.push((i + 1, merge(&cur, b), k + 1));
                        }
                    }
                    if stack.len() > MAX_BINDINGS * 4 {
                        return Err(merr(format!(
                            "more than {MAX_BINDINGS} candidate bindings; narrow the pattern or the data"
                        )));
                    }
                }
                finish(out)
            }
        }
    }
}

fn start_text(l: &Literal) -> Option<&str> {
    match l {
        Literal::Timestamp(s) | Literal::Str(s) => Some(s),
        _ => None,
    }
}

fn collect_leaves<'p>(e: &'p ObservationExpr, out: &mut Vec<PCmp<'p>>) -> Result<(), Error> {
    match e {
        ObservationExpr::Observation(c) => out.push(prepare_cmp(c)?),
        ObservationExpr::And(items)
        | ObservationExpr::Or(items)
        | ObservationExpr::FollowedBy(items) => {
            for i in items {
                collect_leaves(i, out)?;
            }
        }
        ObservationExpr::Qualified { expr, .. } => collect_leaves(expr, out)?,
        ObservationExpr::Group(inner) => collect_leaves(inner, out)?,
    }
    Ok(())
}

/// A pattern prepared for matching: regular expressions, LIKE patterns and CIDR blocks are compiled once.
/// Build it with [`Pattern::matcher`] and reuse it across many inputs.
pub struct Matcher<'p> {
    pattern: &'p Pattern,
    leaves: Vec<PCmp<'p>>,
}

impl std::fmt::Debug for Matcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("pattern", &self.pattern.to_string())
            .finish()
    }
}

impl<'p> Matcher<'p> {
    pub(crate) fn new(pattern: &'p Pattern) -> Result<Self, Error> {
        let mut leaves = Vec::new();
        collect_leaves(&pattern.root, &mut leaves)?;
        Ok(Matcher { pattern, leaves })
    }

    /// Whether the pattern matches the content (see [`Pattern::matches`]).
    pub fn matches(&self, data: &[Value]) -> Result<bool, Error> {
        Ok(self.first_match(data)?.is_some())
    }

    /// The observed-data ids of one matching binding (see [`Pattern::first_match`]).
    pub fn first_match(&self, data: &[Value]) -> Result<Option<Vec<String>>, Error> {
        let ctx = Ctx {
            obs: collect_observations(data)?,
            leaves: &self.leaves,
            next: std::cell::Cell::new(0),
        };
        let bindings = ctx.eval(&self.pattern.root)?;
        Ok(bindings.into_iter().next().map(|b| {
            let mut ids: Vec<String> = Vec::new();
            for i in b {
                let id = ctx.obs[i as usize].id.unwrap_or("").to_string();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }))
    }
}
