//! `POST /graphql`: a small GraphQL front end answering the operations pycti and stream connectors
//! send (`opencti.md` §3), with the answer projected onto the requested selection set.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use super::App;
use super::filters::FilterGroup;
use super::store::Connector;

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Punct(char),
    Spread,
    Str(String),
    Num(String),
    Var(String),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '.' if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') => {
                out.push(Tok::Spread);
                i += 3;
            }
            '{' | '}' | '(' | ')' | ':' | '[' | ']' | '!' | '=' | '@' | '|' | '&' => {
                out.push(Tok::Punct(c));
                i += 1;
            }
            '$' => {
                i += 1;
                let s = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Var(chars[s..i].iter().collect()));
            }
            '"' => {
                if chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                    let s = i + 3;
                    let mut j = s;
                    while j + 2 < chars.len()
                        && !(chars[j] == '"' && chars[j + 1] == '"' && chars[j + 2] == '"')
                    {
                        j += 1;
                    }
                    out.push(Tok::Str(chars[s..j].iter().collect()));
                    i = j + 3;
                    continue;
                }
                let mut s = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                        s.push(match chars[i] {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                    } else {
                        s.push(chars[i]);
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("Syntax Error: Unterminated string.".into());
                }
                i += 1;
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let s = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[s..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let s = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Name(chars[s..i].iter().collect()));
            }
            other => return Err(format!("Syntax Error: Unexpected character {other:?}.")),
        }
    }
    Ok(out)
}

/// An argument value before variable substitution.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Var(String),
    Lit(Value),
    List(Vec<Arg>),
    Obj(Vec<(String, Arg)>),
}

/// One selected field.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    alias: Option<String>,
    name: String,
    args: Vec<(String, Arg)>,
    selection: Vec<Sel>,
}

#[derive(Debug, Clone, PartialEq)]
enum Sel {
    Field(Field),
    Spread(String),
    Inline(Vec<Sel>),
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "Syntax Error: Expected \"{c}\", found {:?}.",
                self.peek()
            ))
        }
    }
    fn name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Name(n)) => Ok(n),
            other => Err(format!("Syntax Error: Expected Name, found {other:?}.")),
        }
    }

    fn skip_directives(&mut self) -> Result<(), String> {
        while self.eat('@') {
            self.name()?;
            if self.peek() == Some(&Tok::Punct('(')) {
                self.args()?;
            }
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Arg, String> {
        match self.next() {
            Some(Tok::Var(v)) => Ok(Arg::Var(v)),
            Some(Tok::Str(s)) => Ok(Arg::Lit(Value::String(s))),
            Some(Tok::Num(n)) => Ok(Arg::Lit(
                serde_json::from_str(&n).map_err(|_| format!("Syntax Error: bad number {n}"))?,
            )),
            Some(Tok::Name(n)) => Ok(Arg::Lit(match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(n),
            })),
            Some(Tok::Punct('[')) => {
                let mut items = Vec::new();
                while !self.eat(']') {
                    items.push(self.value()?);
                }
                Ok(Arg::List(items))
            }
            Some(Tok::Punct('{')) => {
                let mut fields = Vec::new();
                while !self.eat('}') {
                    let k = self.name()?;
                    self.expect(':')?;
                    fields.push((k, self.value()?));
                }
                Ok(Arg::Obj(fields))
            }
            other => Err(format!("Syntax Error: Unexpected {other:?}.")),
        }
    }

    fn args(&mut self) -> Result<Vec<(String, Arg)>, String> {
        self.expect('(')?;
        let mut out = Vec::new();
        while !self.eat(')') {
            let k = self.name()?;
            self.expect(':')?;
            out.push((k, self.value()?));
        }
        Ok(out)
    }

    fn selection_set(&mut self) -> Result<Vec<Sel>, String> {
        self.expect('{')?;
        let mut out = Vec::new();
        while !self.eat('}') {
            if self.peek().is_none() {
                return Err("Syntax Error: Expected Name, found <EOF>.".into());
            }
            if self.peek() == Some(&Tok::Spread) {
                self.i += 1;
                match self.peek() {
                    Some(Tok::Name(n)) if n == "on" => {
                        self.i += 1;
                        self.name()?;
                        self.skip_directives()?;
                        out.push(Sel::Inline(self.selection_set()?));
                    }
                    Some(Tok::Name(_)) => {
                        let n = self.name()?;
                        self.skip_directives()?;
                        out.push(Sel::Spread(n));
                    }
                    _ => {
                        self.skip_directives()?;
                        out.push(Sel::Inline(self.selection_set()?));
                    }
                }
                continue;
            }
            let first = self.name()?;
            let (alias, name) = if self.eat(':') {
                (Some(first), self.name()?)
            } else {
                (None, first)
            };
            let args = if self.peek() == Some(&Tok::Punct('(')) {
                self.args()?
            } else {
                vec![]
            };
            self.skip_directives()?;
            let selection = if self.peek() == Some(&Tok::Punct('{')) {
                self.selection_set()?
            } else {
                vec![]
            };
            out.push(Sel::Field(Field {
                alias,
                name,
                args,
                selection,
            }));
        }
        Ok(out)
    }

    fn skip_type(&mut self) -> Result<(), String> {
        if self.eat('[') {
            self.skip_type()?;
            self.expect(']')?;
        } else {
            self.name()?;
        }
        self.eat('!');
        Ok(())
    }

    /// Returns (operation kind, selection set) of the chosen operation, and the fragments.
    fn document(&mut self, operation_name: Option<&str>) -> Result<Document, String> {
        let mut ops = Vec::new();
        let mut fragments = HashMap::new();
        while self.peek().is_some() {
            if self.peek() == Some(&Tok::Punct('{')) {
                ops.push(("query".to_owned(), None, self.selection_set()?));
                continue;
            }
            let kw = self.name()?;
            match kw.as_str() {
                "query" | "mutation" | "subscription" => {
                    let name = match self.peek() {
                        Some(Tok::Name(_)) => Some(self.name()?),
                        _ => None,
                    };
                    if self.eat('(') {
                        while !self.eat(')') {
                            match self.next() {
                                Some(Tok::Var(_)) => {}
                                other => {
                                    return Err(format!(
                                        "Syntax Error: Expected variable, found {other:?}."
                                    ));
                                }
                            }
                            self.expect(':')?;
                            self.skip_type()?;
                            if self.eat('=') {
                                self.value()?;
                            }
                            self.skip_directives()?;
                        }
                    }
                    self.skip_directives()?;
                    ops.push((kw, name, self.selection_set()?));
                }
                "fragment" => {
                    let name = self.name()?;
                    let on = self.name()?;
                    if on != "on" {
                        return Err("Syntax Error: Expected \"on\".".into());
                    }
                    self.name()?;
                    self.skip_directives()?;
                    fragments.insert(name, self.selection_set()?);
                }
                other => return Err(format!("Syntax Error: Unexpected Name \"{other}\".")),
            }
        }
        let op = match operation_name {
            Some(n) => ops
                .into_iter()
                .find(|(_, name, _)| name.as_deref() == Some(n)),
            None => ops.into_iter().next(),
        }
        .ok_or("Must provide an operation.")?;
        Ok((op.0, op.2, fragments))
    }
}

/// The chosen operation's kind and selection set, and the document's fragments.
type Document = (String, Vec<Sel>, HashMap<String, Vec<Sel>>);

/// Expands fragment spreads and inline fragments into plain fields.
fn flatten(
    sels: &[Sel],
    fragments: &HashMap<String, Vec<Sel>>,
    depth: usize,
) -> Result<Vec<Field>, String> {
    if depth > 32 {
        return Err("fragment nesting too deep".into());
    }
    let mut out = Vec::new();
    for s in sels {
        match s {
            Sel::Field(f) => out.push(
                Field {
                    selection: vec![],
                    ..f.clone()
                }
                .with(flatten_sel(&f.selection, fragments, depth)?),
            ),
            Sel::Inline(inner) => out.extend(flatten(inner, fragments, depth + 1)?),
            Sel::Spread(n) => {
                let frag = fragments
                    .get(n)
                    .ok_or_else(|| format!("Unknown fragment \"{n}\"."))?;
                out.extend(flatten(frag, fragments, depth + 1)?);
            }
        }
    }
    Ok(out)
}

fn flatten_sel(
    sels: &[Sel],
    fragments: &HashMap<String, Vec<Sel>>,
    depth: usize,
) -> Result<Vec<Sel>, String> {
    Ok(flatten(sels, fragments, depth + 1)?
        .into_iter()
        .map(Sel::Field)
        .collect())
}

impl Field {
    fn with(mut self, selection: Vec<Sel>) -> Field {
        self.selection = selection;
        self
    }
    fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
    fn fields(&self) -> impl Iterator<Item = &Field> {
        self.selection.iter().filter_map(|s| match s {
            Sel::Field(f) => Some(f),
            _ => None,
        })
    }
}

fn resolve_arg(a: &Arg, vars: &Map<String, Value>) -> Value {
    match a {
        Arg::Var(v) => vars.get(v).cloned().unwrap_or(Value::Null),
        Arg::Lit(v) => v.clone(),
        Arg::List(items) => Value::Array(items.iter().map(|x| resolve_arg(x, vars)).collect()),
        Arg::Obj(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, x)| (k.clone(), resolve_arg(x, vars)))
                .collect(),
        ),
    }
}

/// Projects a full answer onto a selection (missing fields answer `null`).
fn project(value: &Value, field: &Field) -> Value {
    if field.selection.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, field)).collect()),
        Value::Object(obj) => {
            let mut out = Map::new();
            for f in field.fields() {
                let v = if f.name == "__typename" {
                    obj.get("__typename")
                        .cloned()
                        .unwrap_or(Value::String("Object".into()))
                } else {
                    obj.get(&f.name)
                        .map(|v| project(v, f))
                        .unwrap_or(Value::Null)
                };
                out.insert(f.key().to_owned(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

fn gql_error(message: impl Into<String>, name: &str) -> Value {
    json!({"message": message.into(), "name": name, "extensions": {"code": name}})
}

/// `POST /graphql`.
pub(crate) async fn handler(
    State(app): State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !app.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [gql_error("You must be logged in to do this.", "AUTH_REQUIRED")], "data": null})),
        )
            .into_response();
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"errors": [gql_error(format!("POST body is not JSON: {e}"), "BAD_REQUEST")]}))).into_response(),
    };
    let Some(query) = req.get("query").and_then(Value::as_str) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": [gql_error("POST body must contain a query", "BAD_REQUEST")]})),
        )
            .into_response();
    };
    let vars = req
        .get("variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let op_name = req.get("operationName").and_then(Value::as_str);
    let parsed = lex(query)
        .and_then(|toks| Parser { toks, i: 0 }.document(op_name))
        .and_then(|(kind, sels, frags)| Ok((kind, flatten(&sels, &frags, 0)?)));
    let (kind, fields) = match parsed {
        Ok(x) => x,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"errors": [gql_error(e, "GRAPHQL_PARSE_FAILED")]})),
            )
                .into_response();
        }
    };
    let mut data = Map::new();
    let mut errors = Vec::new();
    for f in &fields {
        let args: Map<String, Value> = f
            .args
            .iter()
            .map(|(k, a)| (k.clone(), resolve_arg(a, &vars)))
            .collect();
        if !app.deployments.enabled() {
            let missing = if DA_OPERATIONS.contains(&f.name.as_str()) {
                Some((
                    f.name.clone(),
                    if kind == "mutation" {
                        "Mutation"
                    } else {
                        "Query"
                    },
                ))
            } else if selects(f, "deployments_count") {
                Some(("deployments_count".to_owned(), "Indicator"))
            } else {
                None
            };
            if let Some((field, on)) = missing {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"errors": [gql_error(format!("Cannot query field \"{field}\" on type \"{on}\"."), "GRAPHQL_VALIDATION_FAILED")]})),
                )
                    .into_response();
            }
        }
        match resolve(&app, &kind, &f.name, &args) {
            Ok(v) => {
                data.insert(f.key().to_owned(), project(&v, f));
            }
            Err(Resolve::Unknown) => {
                let type_name = if kind == "mutation" {
                    "Mutation"
                } else {
                    "Query"
                };
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"errors": [gql_error(format!("Cannot query field \"{}\" on type \"{type_name}\".", f.name), "GRAPHQL_VALIDATION_FAILED")]})),
                )
                    .into_response();
            }
            Err(Resolve::Error(message, name)) => {
                data.insert(f.key().to_owned(), Value::Null);
                errors.push(json!({"message": message, "name": name, "data": {}, "path": [f.key()], "extensions": {"code": name, "data": {}}}));
            }
            Err(Resolve::Limited(kind, retry_after_ms)) => {
                // Both places a platform version puts an error's data (top level, as pycti reads
                // it, and Apollo's `extensions`): a client must read either.
                let d = json!({"kind": kind, "retry_after_ms": retry_after_ms});
                data.insert(f.key().to_owned(), Value::Null);
                errors.push(json!({"message": "Too many requests", "name": "FUNCTIONAL_ERROR", "data": d, "path": [f.key()],
                                   "extensions": {"code": "FUNCTIONAL_ERROR", "data": d}}));
            }
        }
    }
    let mut out = json!({"data": data});
    if !errors.is_empty() {
        out["errors"] = Value::Array(errors);
    }
    Json(out).into_response()
}

/// The dissemination-assurance operations, absent from a platform without the feature.
const DA_OPERATIONS: &[&str] = &[
    "securityPlatformAdd",
    "securityPlatform",
    "indicatorReportDeployments",
    "indicatorReportDeployment",
    "indicatorReportHits",
    "indicatorDeploymentRetry",
    "indicatorDeploymentRemove",
];

/// Mutation names answered to the `__type(name: "Mutation")` introspection.
const MUTATIONS: &[&str] = &[
    "registerConnector",
    "pingConnector",
    "resetStateConnector",
    "deleteConnector",
];

fn selects(f: &Field, name: &str) -> bool {
    f.fields().any(|c| c.name == name || selects(c, name))
}

enum Resolve {
    Unknown,
    Error(String, &'static str),
    /// `Too many requests` for this kind of write-back call; the wait in ms.
    Limited(&'static str, u64),
}

fn admit(app: &App, kind: &'static str) -> Result<(), Resolve> {
    app.deployments
        .admit(kind)
        .map_err(|ms| Resolve::Limited(kind, ms))
}

fn bad(m: impl Into<String>) -> Resolve {
    Resolve::Error(m.into(), "FUNCTIONAL_ERROR")
}

fn arg_str<'a>(args: &'a Map<String, Value>, k: &str) -> Result<&'a str, Resolve> {
    args.get(k).and_then(Value::as_str).ok_or_else(|| {
        bad(format!(
            "Variable \"${k}\" of required type was not provided."
        ))
    })
}

fn resolve(app: &App, kind: &str, name: &str, args: &Map<String, Value>) -> Result<Value, Resolve> {
    let store = &app.store;
    match (kind, name) {
        ("query", "about") => {
            Ok(json!({"version": &*app.version, "dependencies": [], "__typename": "AppInfo"}))
        }
        ("query", "me") => Ok(json!({
            "id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f", "name": "admin", "user_email": "admin@opencti.io",
            "capabilities": [{"name": "BYPASS"}, {"name": "CONNECTORAPI"}, {"name": "TAXIIAPI"}],
            "effective_confidence_level": {"max_confidence": 100}, "__typename": "MeUser",
        })),
        ("query", "settings") => Ok(
            json!({"id": "settings", "platform_title": "OpenCTI sandbox", "platform_version": &*app.version}),
        ),
        ("query", "streamCollection") => {
            let id = arg_str(args, "id")?;
            Ok(store
                .stream(id)
                .map(|s| stream_json(app, &s))
                .unwrap_or(Value::Null))
        }
        ("query", "streamCollections") => {
            let edges: Vec<Value> = store
                .streams()
                .iter()
                .map(|s| json!({"node": stream_json(app, s)}))
                .collect();
            Ok(
                json!({"edges": edges, "pageInfo": {"hasNextPage": false, "globalCount": edges.len()}}),
            )
        }
        ("query", "connector") => Ok(store
            .connector(arg_str(args, "id")?)
            .map(|c| connector_json(&c))
            .unwrap_or(Value::Null)),
        ("query", "connectors") => Ok(Value::Array(
            store.connectors().iter().map(connector_json).collect(),
        )),
        ("query", "indicator") => {
            let id = arg_str(args, "id")?;
            Ok(store
                .get(id)
                .map(|i| i.to_node(&store.refs))
                .unwrap_or(Value::Null))
        }
        ("query", "indicators") => indicators(app, args),
        ("query", "__type") => {
            let mut names: Vec<&str> = MUTATIONS.to_vec();
            if app.deployments.enabled() {
                names.extend(DA_OPERATIONS.iter().filter(|n| **n != "securityPlatform"));
            }
            Ok(match args.get("name").and_then(Value::as_str) {
                Some("Mutation") => {
                    json!({"name": "Mutation", "fields": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()})
                }
                _ => Value::Null,
            })
        }
        ("query", "securityPlatform") => Ok(app.deployments.platform(arg_str(args, "id")?)),
        ("mutation", "securityPlatformAdd") => {
            let input = args
                .get("input")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("Variable \"$input\" is required."))?;
            app.deployments.platform_add(input).map_err(bad)
        }
        ("mutation", "indicatorReportDeployments") => {
            admit(app, "batch")?;
            let reports = args
                .get("reports")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("Variable \"$reports\" is required."))?;
            app.deployments
                .report_batch(store, arg_str(args, "platformId")?, reports)
                .map_err(bad)
        }
        ("mutation", "indicatorReportDeployment") => {
            admit(app, "single")?;
            let d = &app.deployments;
            let platform = {
                let p = d.platform(arg_str(args, "platformId")?);
                p.get("id").and_then(Value::as_str).map(str::to_owned)
            }
            .ok_or_else(|| bad("Security platform not found or not accessible"))?;
            let (_, rel) = d
                .report_one(
                    store,
                    &platform,
                    arg_str(args, "indicatorId")?,
                    arg_str(args, "status")?,
                    args.get("externalId"),
                    args.get("metadata"),
                )
                .map_err(bad)?;
            Ok(d.snapshot()["deployments"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["id"] == rel.as_str()).cloned())
                .unwrap_or(json!({"id": rel})))
        }
        ("mutation", "indicatorReportHits") => {
            admit(app, "hits")?;
            app.deployments.report_hits(store, args).map_err(bad)
        }
        ("mutation", "indicatorDeploymentRetry") => {
            app.deployments.retry(arg_str(args, "id")?).map_err(bad)
        }
        ("mutation", "indicatorDeploymentRemove") => {
            app.deployments.remove(arg_str(args, "id")?).map_err(bad)
        }
        ("query", "stixCoreRelationships") => deployed_on(app, args),
        ("mutation", "registerConnector") => {
            let input = args
                .get("input")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("Variable \"$input\" is required."))?;
            store
                .register(input)
                .map(|c| connector_json(&c))
                .map_err(bad)
        }
        ("mutation", "pingConnector") => {
            let id = arg_str(args, "id")?;
            let state = args.get("state").and_then(Value::as_str).map(str::to_owned);
            let info = args.get("connectorInfo").filter(|v| v.is_object()).cloned();
            store
                .ping(id, state, info)
                .map(|c| connector_json(&c))
                .map_err(bad)
        }
        ("mutation", "resetStateConnector") => store
            .reset_state(arg_str(args, "id")?)
            .map(|c| connector_json(&c))
            .map_err(bad),
        ("mutation", "deleteConnector") => {
            let id = arg_str(args, "id")?;
            store
                .delete_connector(id)
                .map(|_| Value::String(id.to_owned()))
                .map_err(bad)
        }
        _ => Err(Resolve::Unknown),
    }
}

fn stream_json(app: &App, s: &super::store::StreamDef) -> Value {
    json!({
        "__typename": "StreamCollection",
        "id": s.id, "name": s.name, "description": s.description, "filters": s.filters,
        "stream_live": s.stream_live, "stream_public": s.stream_public, "authorized_members": [],
        "consumers": [], "entity_type": "StreamCollection",
        "streamUrl": format!("{}/stream/{}", app.url, s.id),
    })
}

pub(crate) fn connector_json(c: &Connector) -> Value {
    let ts = super::model::ts;
    json!({
        "__typename": "Connector",
        "id": c.id,
        "name": c.name,
        "active": true,
        "auto": c.auto,
        "only_contextual": c.only_contextual,
        "playbook_compatible": c.playbook_compatible,
        "connector_type": c.connector_type,
        "connector_scope": c.scope,
        "connector_state": c.state,
        "connector_state_reset": c.state_reset,
        "connector_user_id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f",
        "connector_info": if c.info.is_null() { Value::Null } else { c.info.clone() },
        "created_at": ts(&c.created_at),
        "updated_at": ts(&c.updated_at),
        "jwks": "{\"keys\":[]}",
        "config": {
            "connection": {"host": "127.0.0.1", "vhost": "/", "use_ssl": false, "port": 5672, "user": "guest", "pass": "guest"},
            "s3": {"endpoint": "127.0.0.1", "port": 9000, "use_ssl": false, "bucket_name": "opencti-bucket", "bucket_region": "us-east-1", "access_key": "sandbox", "secret_key": "sandbox"},
            "listen": format!("listen_{}", c.id),
            "listen_routing": format!("listen_routing_{}", c.id),
            "listen_exchange": "amqp.connector.exchange",
            "push": format!("push_{}", c.id),
            "push_routing": format!("push_routing_{}", c.id),
            "push_exchange": "amqp.worker.exchange",
        },
    })
}

/// `indicators(filters, search, first, after, orderBy, orderMode)`: a cursor-paginated connection.
fn indicators(app: &App, args: &Map<String, Value>) -> Result<Value, Resolve> {
    let store = &app.store;
    let filter = match args.get("filters") {
        None | Some(Value::Null) => None,
        Some(v) => Some(FilterGroup::parse(v).map_err(bad)?),
    };
    let search = args
        .get("search")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
        .filter(|s| !s.is_empty());
    let (first, offset) = page_args(args)?;
    let mut all: Vec<_> = store
        .all()
        .into_iter()
        .filter(|i| filter.as_ref().is_none_or(|f| f.matches(i, &store.refs)))
        .filter(|i| {
            search.as_ref().is_none_or(|s| {
                i.name.to_lowercase().contains(s) || i.pattern.to_lowercase().contains(s)
            })
        })
        .collect();
    let order_by = args
        .get("orderBy")
        .and_then(Value::as_str)
        .unwrap_or("created_at");
    match order_by {
        "name" => all.sort_by(|a, b| a.name.cmp(&b.name).then(a.internal_id.cmp(&b.internal_id))),
        "updated_at" | "modified" => {} // already in (updated_at, internal id) order
        "x_opencti_score" => all.sort_by(|a, b| {
            a.score
                .cmp(&b.score)
                .then(a.internal_id.cmp(&b.internal_id))
        }),
        _ => all.sort_by(|a, b| (a.created, &a.internal_id).cmp(&(b.created, &b.internal_id))),
    }
    if args.get("orderMode").and_then(Value::as_str) == Some("desc") {
        all.reverse();
    }
    let total = all.len();
    let listing = app.listing.lock().expect("listing lock").clone();
    // `stop_after`: the listing pretends to end early; `globalCount` keeps the real total.
    let served = listing.stop_after.map_or(total, |n| n.min(total));
    let page: Vec<Value> = all
        .iter()
        .enumerate()
        .take(served)
        .skip(offset)
        .take(first)
        .map(|(k, i)| json!({"cursor": encode_cursor(k + 1), "node": i.to_node(&store.refs)}))
        .collect();
    let end = offset + page.len();
    let mut end_cursor = if offset < end {
        encode_cursor(end)
    } else {
        String::new()
    };
    let mut has_next = end < served;
    if listing
        .repeat_cursor_from_page
        .is_some_and(|p| offset >= p * first)
    {
        // A repeated cursor: the page answers the cursor it was asked for.
        end_cursor = args
            .get("after")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        has_next = true;
    }
    Ok(json!({
        "__typename": "IndicatorConnection",
        "edges": page,
        "pageInfo": {
            "startCursor": if offset < end { encode_cursor(offset + 1) } else { String::new() },
            "endCursor": end_cursor,
            "hasNextPage": has_next,
            "hasPreviousPage": offset > 0,
            "globalCount": total,
        }
    }))
}

/// Strings of a `[String]` argument given as a list or (GraphQL input coercion) a single value.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// `stixCoreRelationships(relationship_type: ["deployed-on"], toId, first, after, filters)`: the
/// deployments of a platform, with a `deployment_status` filter (key as a string or a list).
fn deployed_on(app: &App, args: &Map<String, Value>) -> Result<Value, Resolve> {
    let types = strings(args.get("relationship_type"));
    if !types.iter().all(|t| t == "deployed-on") || types.is_empty() {
        return Err(bad("the sandbox lists only deployed-on relationships"));
    }
    let to = strings(args.get("toId"));
    let mut statuses: Option<Vec<String>> = None;
    if let Some(f) = args.get("filters").filter(|f| !f.is_null()) {
        for item in f
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let keys = strings(item.get("key"));
            if keys.iter().any(|k| k == "deployment_status") {
                statuses = Some(strings(item.get("values")));
            } else {
                return Err(bad(format!("unsupported filter key {keys:?}")));
            }
        }
    }
    let (first, offset) = page_args(args)?;
    let (total, page) = app
        .deployments
        .list(&app.store, &to, statuses.as_deref(), offset, first);
    let edges: Vec<Value> = page
        .into_iter()
        .enumerate()
        .map(|(k, node)| json!({"cursor": encode_cursor(offset + k + 1), "node": node}))
        .collect();
    let end = offset + edges.len();
    Ok(json!({
        "__typename": "StixCoreRelationshipConnection",
        "edges": edges,
        "pageInfo": {
            "endCursor": if offset < end { encode_cursor(end) } else { String::new() },
            "hasNextPage": end < total,
            "globalCount": total,
        }
    }))
}

/// `first` (default 500, 1–5,000) and the offset `after` names, of a paged root field.
fn page_args(args: &Map<String, Value>) -> Result<(usize, usize), Resolve> {
    let first = args
        .get("first")
        .and_then(Value::as_u64)
        .unwrap_or(500)
        .clamp(1, 5000) as usize;
    let offset = match args
        .get("after")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        None => 0,
        Some(c) => decode_cursor(c).ok_or_else(|| bad(format!("invalid cursor {c:?}")))?,
    };
    Ok((first, offset))
}

fn encode_cursor(n: usize) -> String {
    B64.encode(format!("sandbox:{n}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    let raw = B64.decode(c).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("sandbox:")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Vec<Field> {
        let (_, sels, frags) = Parser {
            toks: lex(q).unwrap(),
            i: 0,
        }
        .document(None)
        .unwrap();
        flatten(&sels, &frags, 0).unwrap()
    }

    #[test]
    fn parses_the_pycti_ping_mutation() {
        let f = parse(
            "mutation PingConnector($id: ID!, $state: String, $connectorInfo: ConnectorInfoInput) {
               pingConnector(id: $id, state: $state, connectorInfo: $connectorInfo) {
                 id connector_state connector_info { run_and_terminate buffering } } }",
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "pingConnector");
        assert_eq!(f[0].args.len(), 3);
        let projected = project(
            &json!({"id": "x", "connector_state": "s", "connector_info": {"buffering": false, "extra": 1}, "name": "n"}),
            &f[0],
        );
        assert_eq!(
            projected,
            json!({"id": "x", "connector_state": "s", "connector_info": {"run_and_terminate": null, "buffering": false}})
        );
    }

    #[test]
    fn fragments_aliases_and_literals() {
        let f = parse(
            r#"query { a: streamCollection(id: "s1") { ...F } } fragment F on StreamCollection { id name }"#,
        );
        assert_eq!(f[0].key(), "a");
        assert_eq!(f[0].args[0].1, Arg::Lit(json!("s1")));
        assert_eq!(
            f[0].fields().map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["id", "name"]
        );
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("nonsense"), None);
    }
}
