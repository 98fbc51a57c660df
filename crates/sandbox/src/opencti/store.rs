//! The simulated platform state: indicators, the event log (the Redis stream), stream collections
//! and connectors.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::filters::FilterGroup;
use super::model::{Gen, Indicator, Refs, Stix};

/// A stream event id `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct EventId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl EventId {
    /// Parses a start position the way the platform does (`opencti.md` §1.2): `0`/`0-0` is the
    /// beginning; a value with exactly one `-` is a stream id; anything else is a date.
    pub(crate) fn parse_position(s: &str) -> Result<EventId, String> {
        let s = s.trim();
        if s == "0" || s == "0-0" {
            return Ok(EventId::default());
        }
        if s.matches('-').count() == 1 {
            let (ms, seq) = s.split_once('-').expect("one dash");
            if let (Ok(ms), Ok(seq)) = (ms.parse(), seq.parse()) {
                return Ok(EventId { ms, seq });
            }
        }
        parse_date(s).map(|d| EventId {
            ms: d.timestamp_millis().max(0) as u64,
            seq: 0,
        })
    }

    /// The ISO date of the id's millisecond part.
    pub(crate) fn date(&self) -> String {
        super::model::ts(
            &Utc.timestamp_millis_opt(self.ms as i64)
                .single()
                .unwrap_or_default(),
        )
    }
}

/// Parses an ISO-8601 date (RFC 3339, or a date without offset taken as UTC).
pub(crate) fn parse_date(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Ok(d.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(d.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(format!("invalid date {s:?}"))
}

/// Event types of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Create,
    Update,
    Delete,
    Merge,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Merge => "merge",
        }
    }
}

/// What an event carries.
#[derive(Debug)]
pub(crate) enum Body {
    /// An indicator event. `data` is the state after the event (before it, for deletes).
    Indicator {
        kind: Kind,
        message: String,
        data: Arc<Indicator>,
        prev: Option<Arc<Indicator>>,
        context: Option<Value>,
    },
    /// An event sent verbatim (poison events, other entity types).
    Raw { event: String, data: String },
}

/// One entry of the event log.
#[derive(Debug)]
pub(crate) struct LogEvent {
    pub(crate) id: EventId,
    pub(crate) body: Body,
}

/// A live stream definition.
#[derive(Debug, Clone)]
pub(crate) struct StreamDef {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) filters: Option<String>,
    pub(crate) group: Option<FilterGroup>,
    pub(crate) stream_live: bool,
    pub(crate) stream_public: bool,
}

impl StreamDef {
    pub(crate) fn visible(&self, i: &Indicator, refs: &Refs) -> bool {
        self.group.as_ref().is_none_or(|g| g.matches(i, refs))
    }
}

/// A registered connector.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) connector_type: String,
    pub(crate) scope: Vec<String>,
    pub(crate) auto: bool,
    pub(crate) only_contextual: bool,
    pub(crate) playbook_compatible: bool,
    pub(crate) state: Option<String>,
    pub(crate) state_reset: bool,
    pub(crate) info: Value,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) registrations: u64,
    pub(crate) pings: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// (updated_at ms, internal id) -> indicator: the order of the recovery snapshot.
    ordered: BTreeMap<(i64, String), Arc<Indicator>>,
    /// internal id -> updated_at ms.
    by_id: HashMap<String, i64>,
    /// standard id (and merged stix ids) -> internal id.
    by_stix: HashMap<String, String>,
    log: Vec<Arc<LogEvent>>,
    last_id: EventId,
    heartbeat_mark: EventId,
    streams: BTreeMap<String, StreamDef>,
    connectors: BTreeMap<String, Connector>,
}

/// Shared platform state.
pub(crate) struct Store {
    inner: RwLock<Inner>,
    pub(crate) refs: Refs,
    pub(crate) generator: Mutex<Gen>,
    changed: watch::Sender<usize>,
    origin: Value,
}

/// Errors of store operations, mapped to HTTP statuses by the callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreError {
    NotFound(String),
    Invalid(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(id) => write!(f, "no indicator with id {id}"),
            StoreError::Invalid(m) => f.write_str(m),
        }
    }
}

fn now_ms() -> u64 {
    Utc::now().timestamp_millis().max(0) as u64
}

impl Store {
    pub(crate) fn new(
        refs: Refs,
        generator: Gen,
        initial: Vec<Indicator>,
        streams: Vec<StreamDef>,
    ) -> Store {
        let mut inner = Inner::default();
        let origin = json!({"referer": "sandbox", "user_id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f", "socket": "query"});
        for ind in initial {
            let ind = Arc::new(ind);
            let ms = ind.updated_at.timestamp_millis().max(0) as u64;
            let id = if ms == inner.last_id.ms && !inner.log.is_empty() {
                EventId {
                    ms,
                    seq: inner.last_id.seq + 1,
                }
            } else {
                EventId {
                    ms: ms.max(inner.last_id.ms),
                    seq: 0,
                }
            };
            inner.last_id = id;
            inner.log.push(Arc::new(LogEvent {
                id,
                body: Body::Indicator {
                    kind: Kind::Create,
                    message: format!("creates a Indicator `{}`", ind.name),
                    data: ind.clone(),
                    prev: None,
                    context: None,
                },
            }));
            insert(&mut inner, ind);
        }
        for s in streams {
            inner.streams.insert(s.id.clone(), s);
        }
        let (changed, _) = watch::channel(inner.log.len());
        Store {
            inner: RwLock::new(inner),
            refs,
            generator: Mutex::new(generator),
            changed,
            origin,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().expect("store lock")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().expect("store lock")
    }

    /// A receiver woken whenever the log grows.
    pub(crate) fn subscribe(&self) -> watch::Receiver<usize> {
        self.changed.subscribe()
    }

    pub(crate) fn origin(&self) -> &Value {
        &self.origin
    }

    // ---- indicators ----

    pub(crate) fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Every current indicator, in (updated_at, internal id) order.
    pub(crate) fn all(&self) -> Vec<Arc<Indicator>> {
        self.read().ordered.values().cloned().collect()
    }

    /// Indicators with `from_ms <= updated_at <= to_ms`, ascending (the recovery snapshot).
    pub(crate) fn updated_between(&self, from_ms: i64, to_ms: i64) -> Vec<Arc<Indicator>> {
        if from_ms > to_ms {
            return vec![];
        }
        let lo = (from_ms, String::new());
        self.read()
            .ordered
            .range(lo..)
            .take_while(|((ms, _), _)| *ms <= to_ms)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The `k`-th indicator in snapshot order.
    pub(crate) fn nth(&self, k: usize) -> Option<Arc<Indicator>> {
        self.read().ordered.values().nth(k).cloned()
    }

    /// Finds an indicator by internal id, standard id or a merged-away STIX id.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Indicator>> {
        let inner = self.read();
        lookup(&inner, id)
    }

    fn append(&self, inner: &mut Inner, body: Body) -> EventId {
        let mut ms = now_ms().max(inner.last_id.ms);
        let mut seq = if ms == inner.last_id.ms && !inner.log.is_empty() {
            inner.last_id.seq + 1
        } else {
            0
        };
        if (EventId { ms, seq }) <= inner.heartbeat_mark {
            ms = inner.heartbeat_mark.ms;
            seq = inner.heartbeat_mark.seq + 1;
        }
        let id = EventId { ms, seq };
        inner.last_id = id;
        inner.log.push(Arc::new(LogEvent { id, body }));
        let len = inner.log.len();
        self.changed.send_replace(len);
        id
    }

    /// A strictly later timestamp than `prev` for an entity change.
    fn bump(prev: DateTime<Utc>) -> DateTime<Utc> {
        let now = Utc::now();
        if now > prev {
            now
        } else {
            prev + chrono::Duration::milliseconds(1)
        }
    }

    /// Creates an indicator and emits its `create` event.
    pub(crate) fn create(&self, mut ind: Indicator) -> (Arc<Indicator>, EventId) {
        let mut inner = self.write();
        if lookup(&inner, &ind.standard_id).is_some() || inner.by_id.contains_key(&ind.internal_id)
        {
            // Ids come from the seeded generator; a clash only happens on a caller-chosen id.
            ind.internal_id = uuid::Uuid::new_v4().to_string();
            ind.standard_id = format!("indicator--{}", uuid::Uuid::new_v4());
        }
        let now = Utc::now();
        ind.created = now;
        ind.updated_at = now;
        let ind = Arc::new(ind);
        insert(&mut inner, ind.clone());
        let body = Body::Indicator {
            kind: Kind::Create,
            message: format!("creates a Indicator `{}`", ind.name),
            data: ind.clone(),
            prev: None,
            context: None,
        };
        let id = self.append(&mut inner, body);
        (ind, id)
    }

    /// Applies `change` and emits an `update` event with patch and reverse patch. An update whose
    /// only change is `modified` is not emitted (returns `None` for the event id).
    pub(crate) fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Indicator) -> Result<(), String>,
    ) -> Result<(Arc<Indicator>, Option<EventId>), StoreError> {
        let mut inner = self.write();
        let prev = lookup(&inner, id).ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let mut next = (*prev).clone();
        change(&mut next).map_err(StoreError::Invalid)?;
        next.updated_at = Store::bump(prev.updated_at);
        let before = prev.to_value(&self.refs);
        let after = next.to_value(&self.refs);
        let (patch, reverse) = diff_pair(&before, &after);
        if patch.is_empty() {
            return Ok((prev, None));
        }
        let message = update_message(&patch, &after);
        let next = Arc::new(next);
        remove(&mut inner, &prev);
        insert(&mut inner, next.clone());
        let body = Body::Indicator {
            kind: Kind::Update,
            message,
            data: next.clone(),
            prev: Some(prev),
            context: Some(json!({"patch": patch, "reverse_patch": reverse})),
        };
        let id = self.append(&mut inner, body);
        Ok((next, Some(id)))
    }

    /// Deletes an indicator and emits its `delete` event.
    pub(crate) fn delete(&self, id: &str) -> Result<(Arc<Indicator>, EventId), StoreError> {
        let mut inner = self.write();
        let prev = lookup(&inner, id).ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        remove(&mut inner, &prev);
        let body = Body::Indicator {
            kind: Kind::Delete,
            message: format!("deletes a Indicator `{}`", prev.name),
            data: prev.clone(),
            prev: None,
            context: None,
        };
        let eid = self.append(&mut inner, body);
        Ok((prev, eid))
    }

    /// Merges `sources` into `target` (labels united, STIX ids kept) and emits one `merge` event
    /// whose context lists the merged-away objects; the sources disappear without their own event.
    pub(crate) fn merge(
        &self,
        target: &str,
        sources: &[String],
    ) -> Result<(Arc<Indicator>, EventId), StoreError> {
        let mut inner = self.write();
        let prev = lookup(&inner, target).ok_or_else(|| StoreError::NotFound(target.to_owned()))?;
        if sources.is_empty() {
            return Err(StoreError::Invalid(
                "merge: sources must not be empty".into(),
            ));
        }
        let mut srcs = Vec::new();
        for s in sources {
            let src = lookup(&inner, s).ok_or_else(|| StoreError::NotFound(s.clone()))?;
            if src.internal_id == prev.internal_id {
                return Err(StoreError::Invalid(
                    "merge: an indicator cannot be merged into itself".into(),
                ));
            }
            if !srcs
                .iter()
                .any(|x: &Arc<Indicator>| x.internal_id == src.internal_id)
            {
                srcs.push(src);
            }
        }
        let mut next = (*prev).clone();
        for src in &srcs {
            next.merged_stix_ids.push(src.standard_id.clone());
            next.merged_stix_ids
                .extend(src.merged_stix_ids.iter().cloned());
            for l in &src.labels {
                if !next.labels.contains(l) {
                    next.labels.push(l.clone());
                }
            }
        }
        next.updated_at = Store::bump(prev.updated_at);
        let (patch, reverse) = diff_pair(&prev.to_value(&self.refs), &next.to_value(&self.refs));
        let next = Arc::new(next);
        remove(&mut inner, &prev);
        let sources_stix: Vec<Value> = srcs.iter().map(|s| s.to_value(&self.refs)).collect();
        for src in &srcs {
            remove(&mut inner, src);
        }
        insert(&mut inner, next.clone());
        let body = Body::Indicator {
            kind: Kind::Merge,
            message: format!(
                "merges Indicator `{}` with {} other(s)",
                next.name,
                srcs.len()
            ),
            data: next.clone(),
            prev: Some(prev),
            context: Some(
                json!({"patch": patch, "reverse_patch": reverse, "sources": sources_stix}),
            ),
        };
        let eid = self.append(&mut inner, body);
        Ok((next, eid))
    }

    /// Appends an event sent verbatim.
    pub(crate) fn raw(&self, event: String, data: String) -> EventId {
        let mut inner = self.write();
        self.append(&mut inner, Body::Raw { event, data })
    }

    // ---- event log ----

    /// Index of the first log event with an id strictly greater than `after`.
    pub(crate) fn position_after(&self, after: EventId) -> usize {
        self.read().log.partition_point(|e| e.id <= after)
    }

    /// Up to `max` events from index `from`.
    pub(crate) fn events_from(&self, from: usize, max: usize) -> Vec<Arc<LogEvent>> {
        let inner = self.read();
        inner.log.iter().skip(from).take(max).cloned().collect()
    }

    /// `(first id, last id, size)` of the log.
    pub(crate) fn log_info(&self) -> (EventId, EventId, usize) {
        let inner = self.read();
        (
            inner.log.first().map(|e| e.id).unwrap_or_default(),
            inner.last_id,
            inner.log.len(),
        )
    }

    /// The id a heartbeat carries for a connection that has consumed the log up to `pos`: when it
    /// is caught up, `<now>-0` (later than any written event), else `None`. Later events get
    /// strictly greater ids.
    pub(crate) fn idle_heartbeat(&self, pos: usize) -> Option<EventId> {
        let mut inner = self.write();
        if pos < inner.log.len() {
            return None;
        }
        let id = EventId {
            ms: now_ms(),
            seq: 0,
        }
        .max(inner.last_id)
        .max(inner.heartbeat_mark);
        inner.heartbeat_mark = id;
        Some(id)
    }

    // ---- streams ----

    pub(crate) fn stream(&self, id: &str) -> Option<StreamDef> {
        self.read().streams.get(id).cloned()
    }

    pub(crate) fn streams(&self) -> Vec<StreamDef> {
        self.read().streams.values().cloned().collect()
    }

    pub(crate) fn put_stream(&self, s: StreamDef) {
        self.write().streams.insert(s.id.clone(), s);
    }

    // ---- connectors ----

    pub(crate) fn connectors(&self) -> Vec<Connector> {
        self.read().connectors.values().cloned().collect()
    }

    pub(crate) fn connector(&self, id: &str) -> Option<Connector> {
        self.read().connectors.get(id).cloned()
    }

    /// Upserts a connector (`registerConnector`).
    pub(crate) fn register(&self, input: &Map<String, Value>) -> Result<Connector, String> {
        let id = input
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("input.id: required")?;
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or("input.name: required")?;
        if name.chars().count() < 2 {
            return Err("input.name: must be at least 2 characters".into());
        }
        let ctype = input
            .get("type")
            .and_then(Value::as_str)
            .ok_or("input.type: required")?;
        const TYPES: &[&str] = &[
            "EXTERNAL_IMPORT",
            "INTERNAL_IMPORT_FILE",
            "INTERNAL_ENRICHMENT",
            "INTERNAL_ANALYSIS",
            "INTERNAL_EXPORT_FILE",
            "STREAM",
        ];
        if !TYPES.contains(&ctype) {
            return Err(format!("input.type: invalid ConnectorType {ctype:?}"));
        }
        let scope = match input.get("scope") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s.split(',').map(|s| s.trim().to_owned()).collect(),
            _ => vec![],
        };
        let flag = |k: &str| input.get(k).and_then(Value::as_bool).unwrap_or(false);
        let now = Utc::now();
        let mut inner = self.write();
        let c = inner
            .connectors
            .entry(id.to_owned())
            .or_insert_with(|| Connector {
                id: id.to_owned(),
                name: name.to_owned(),
                connector_type: ctype.to_owned(),
                scope: vec![],
                auto: false,
                only_contextual: false,
                playbook_compatible: false,
                state: None,
                state_reset: false,
                info: Value::Null,
                created_at: now,
                updated_at: now,
                registrations: 0,
                pings: 0,
            });
        c.name = name.to_owned();
        c.connector_type = ctype.to_owned();
        c.scope = scope;
        c.auto = flag("auto");
        c.only_contextual = flag("only_contextual");
        c.playbook_compatible = flag("playbook_compatible");
        c.updated_at = now;
        c.registrations += 1;
        Ok(c.clone())
    }

    /// `pingConnector`: with the reset flag set, only clears it and returns the stored (empty)
    /// state; otherwise stores the sent state and info.
    pub(crate) fn ping(
        &self,
        id: &str,
        state: Option<String>,
        info: Option<Value>,
    ) -> Result<Connector, String> {
        let mut inner = self.write();
        let c = inner
            .connectors
            .get_mut(id)
            .ok_or("No connector found with the specified ID")?;
        c.pings += 1;
        if c.state_reset {
            c.state_reset = false;
        } else {
            c.state = state;
            if let Some(info) = info {
                c.info = info;
            }
            c.updated_at = Utc::now();
        }
        Ok(c.clone())
    }

    /// `resetStateConnector` (the UI button): empty state and the reset flag.
    pub(crate) fn reset_state(&self, id: &str) -> Result<Connector, String> {
        let mut inner = self.write();
        let c = inner
            .connectors
            .get_mut(id)
            .ok_or("No connector found with the specified ID")?;
        c.state = Some(String::new());
        c.state_reset = true;
        Ok(c.clone())
    }

    pub(crate) fn delete_connector(&self, id: &str) -> Result<(), String> {
        self.write()
            .connectors
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| "No connector found with the specified ID".into())
    }

    /// Serializes an indicator's STIX into `out`.
    pub(crate) fn write_stix(&self, ind: &Indicator, out: &mut Vec<u8>) {
        serde_json::to_writer(
            out,
            &Stix {
                ind,
                refs: &self.refs,
            },
        )
        .expect("stix serializes");
    }
}

fn lookup(inner: &Inner, id: &str) -> Option<Arc<Indicator>> {
    let internal = if inner.by_id.contains_key(id) {
        id
    } else {
        inner.by_stix.get(id)?.as_str()
    };
    let ms = *inner.by_id.get(internal)?;
    inner.ordered.get(&(ms, internal.to_owned())).cloned()
}

fn insert(inner: &mut Inner, ind: Arc<Indicator>) {
    let ms = ind.updated_at.timestamp_millis();
    inner.by_id.insert(ind.internal_id.clone(), ms);
    inner
        .by_stix
        .insert(ind.standard_id.clone(), ind.internal_id.clone());
    for s in &ind.merged_stix_ids {
        inner.by_stix.insert(s.clone(), ind.internal_id.clone());
    }
    inner.ordered.insert((ms, ind.internal_id.clone()), ind);
}

fn remove(inner: &mut Inner, ind: &Indicator) {
    if let Some(ms) = inner.by_id.remove(&ind.internal_id) {
        inner.ordered.remove(&(ms, ind.internal_id.clone()));
    }
    inner.by_stix.remove(&ind.standard_id);
    for s in &ind.merged_stix_ids {
        inner.by_stix.remove(s);
    }
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// RFC 6902 patch from `a` to `b` (objects recursively, other values replaced whole).
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<Value>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}/{}", pointer_escape(k));
                match y.get(k) {
                    None => out.push(json!({"op": "remove", "path": p})),
                    Some(vb) => diff(va, vb, &p, out),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(json!({"op": "add", "path": format!("{path}/{}", pointer_escape(k)), "value": vb}));
                }
            }
        }
        _ if a != b => out.push(json!({"op": "replace", "path": path, "value": b})),
        _ => {}
    }
}

/// Patch and reverse patch, without the bookkeeping fields (`modified`, `updated_at`); empty
/// when nothing else changed.
fn diff_pair(before: &Value, after: &Value) -> (Vec<Value>, Vec<Value>) {
    let keep = |p: &Value| {
        let path = p["path"].as_str().unwrap_or_default();
        path != "/modified" && !path.ends_with("/updated_at")
    };
    let mut patch = Vec::new();
    diff(before, after, "", &mut patch);
    if !patch.iter().any(keep) {
        return (vec![], vec![]);
    }
    let mut reverse = Vec::new();
    diff(after, before, "", &mut reverse);
    (patch, reverse)
}

fn update_message(patch: &[Value], after: &Value) -> String {
    let parts: Vec<String> = patch
        .iter()
        .filter_map(|p| {
            let path = p["path"].as_str()?;
            if path == "/modified" || path.ends_with("/updated_at") {
                return None;
            }
            let field = path.rsplit('/').next().unwrap_or(path);
            Some(match &p["value"] {
                Value::Null => format!("removes `{field}`"),
                v => format!(
                    "replaces `{}` in `{field}`",
                    v.to_string().trim_matches('"')
                ),
            })
        })
        .collect();
    format!(
        "{} on Indicator `{}`",
        parts.join(" - "),
        after["name"].as_str().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_like_the_platform() {
        assert_eq!(EventId::parse_position("0").unwrap(), EventId::default());
        assert_eq!(EventId::parse_position("0-0").unwrap(), EventId::default());
        assert_eq!(
            EventId::parse_position("1711633413527-3").unwrap(),
            EventId {
                ms: 1711633413527,
                seq: 3
            }
        );
        assert_eq!(
            EventId::parse_position("2024-03-28T13:43:33.527Z").unwrap(),
            EventId {
                ms: 1711633413527,
                seq: 0
            }
        );
        assert!(EventId::parse_position("yesterday").is_err());
    }

    #[test]
    fn diff_produces_patch_and_reverse() {
        let a = json!({"modified": "1", "x": {"score": 50}, "labels": ["a"]});
        let b = json!({"modified": "2", "x": {"score": 80}, "labels": ["a"], "revoked": true});
        let (p, r) = diff_pair(&a, &b);
        assert!(p.contains(&json!({"op": "replace", "path": "/x/score", "value": 80})));
        assert!(p.contains(&json!({"op": "add", "path": "/revoked", "value": true})));
        assert!(r.contains(&json!({"op": "replace", "path": "/x/score", "value": 50})));
        assert!(r.contains(&json!({"op": "remove", "path": "/revoked"})));
        let (p, _) = diff_pair(
            &a,
            &json!({"modified": "3", "x": {"score": 50}, "labels": ["a"]}),
        );
        assert!(
            p.is_empty(),
            "a change of `modified` alone is not an update"
        );
    }
}
