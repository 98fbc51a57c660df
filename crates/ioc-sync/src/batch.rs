//! From stream events to IOC changes, coalescing per IOC, and the write plan against what Falcon holds.
//!
//! Pure and synchronous: [`changes_for_event`] turns one event into changes, [`Batch`] keeps the last
//! change per IOC and per indicator in stream order, and [`plan`] compares the wanted state with the
//! owned IOCs found in Falcon and yields the creates, updates and deletes to send (nothing for an IOC
//! already as wanted, so replays after a restart cost no writes).
//!
//! **Ownership:** several indicators may carry the same value, and Falcon holds one IOC per type and
//! value. Each IOC records its owning indicators as owner tags (`opencti:<indicator id>`, see
//! [`mapping::owner_tag`]); an upsert adds its indicator, a removal drops it, and the IOC is removed
//! only when no owner remains. The owners live on the IOC itself, so no per-IOC state is kept between
//! batches and the batch's bulk lookup is all the planning needs.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::IocAction;
use crate::mapping::{
    self, DesiredIoc, IocKey, IocType, MappingOptions, Severity, Skip, SkipReason, TAG_TO_DELETE,
};

/// The kind of a stream data event (the SSE `event:` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// `create`
    Create,
    /// `update`
    Update,
    /// `delete`
    Delete,
    /// `merge`
    Merge,
}

impl EventAction {
    /// The SSE event name (the `action` label of `processed_messages_total`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Create => "create",
            EventAction::Update => "update",
            EventAction::Delete => "delete",
            EventAction::Merge => "merge",
        }
    }
}

/// What should become of one IOC.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Exists with these fields.
    Upsert(DesiredIoc),
    /// Withdrawn (soft or permanent delete per configuration). Carries the indicator's labels for the
    /// soft-delete tags.
    Remove {
        /// Labels of the indicator (soft delete writes them plus `TO_DELETE`).
        labels: Vec<String>,
    },
}

/// One IOC change caused by one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The IOC.
    pub key: IocKey,
    /// Upsert or remove.
    pub intent: Intent,
    /// The stream event that caused it.
    pub event_id: String,
    /// The indicator's STIX id.
    pub indicator_id: Option<String>,
}

/// What one event produces.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventOutcome {
    /// The IOC changes, in order.
    pub changes: Vec<Change>,
    /// What was skipped, with reasons.
    pub skipped: Vec<Skip>,
}

fn labels(stix: &Value) -> Vec<String> {
    stix.get("labels")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .filter(|t| !mapping::is_owner_tag(t))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The object before an update: the current STIX with the event's `context.reverse_patch` applied
/// (RFC 6902 `add`/`remove`/`replace`). `None` when there is no reverse patch or it does not apply.
pub fn previous_version(stix: &Value, context: Option<&Value>) -> Option<Value> {
    let ops = context?.get("reverse_patch")?.as_array()?;
    if ops.is_empty() {
        return None;
    }
    let mut prev = stix.clone();
    for op in ops {
        let path = op.get("path")?.as_str()?;
        let tokens: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, parents) = tokens.split_last()?;
        let mut cur = &mut prev;
        for t in parents {
            cur = match cur {
                Value::Object(m) => m
                    .entry(t.clone())
                    .or_insert_with(|| Value::Object(Default::default())),
                Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        let value = op.get("value").cloned();
        match (op.get("op")?.as_str()?, cur) {
            ("remove", Value::Object(m)) => {
                m.remove(last);
            }
            ("remove", Value::Array(a)) => {
                let i = last.parse::<usize>().ok()?;
                if i < a.len() {
                    a.remove(i);
                }
            }
            ("add" | "replace", Value::Object(m)) => {
                m.insert(last.clone(), value?);
            }
            ("add", Value::Array(a)) if last == "-" => a.push(value?),
            ("add", Value::Array(a)) => {
                let i = last.parse::<usize>().ok()?.min(a.len());
                a.insert(i, value?);
            }
            ("replace", Value::Array(a)) => *a.get_mut(last.parse::<usize>().ok()?)? = value?,
            _ => {}
        }
    }
    Some(prev)
}

/// Turns one stream data event into IOC changes.
///
/// `stix` is the event's `data` (the STIX object), `context` its `context` (patches, merge sources).
/// - create / update: upsert the indicator's IOCs (remove them when it is revoked or expired); an update
///   whose reverse patch shows a different previous pattern also removes the previous pattern's IOCs
///   that the new pattern no longer has;
/// - delete: remove the IOCs;
/// - merge: remove the merged-away indicators' (`context.sources`) ownership of their IOCs, then upsert
///   the target's (an IOC both carry stays, owned by the target).
pub fn changes_for_event(
    action: EventAction,
    event_id: &str,
    stix: &Value,
    context: Option<&Value>,
    opts: &MappingOptions,
    now: DateTime<Utc>,
) -> EventOutcome {
    let mut out = EventOutcome::default();
    let m = mapping::map_indicator(stix, opts, now);
    out.skipped.extend(m.skipped.iter().cloned());
    let id = m.indicator_id.clone();
    let change = |key: IocKey, intent: Intent| Change {
        key,
        intent,
        event_id: event_id.to_string(),
        indicator_id: id.clone(),
    };
    let current: BTreeSet<IocKey> = m.iocs.iter().map(|i| i.key.clone()).collect();
    let remove_intent = || Intent::Remove {
        labels: labels(stix),
    };

    match action {
        EventAction::Delete => {
            for i in &m.iocs {
                out.changes.push(change(i.key.clone(), remove_intent()));
            }
            return out;
        }
        EventAction::Update => {
            if let Some(old_stix) = previous_version(stix, context)
                && (old_stix.get("pattern") != stix.get("pattern")
                    || old_stix.get("pattern_type") != stix.get("pattern_type"))
            {
                let old_map = mapping::map_indicator(&old_stix, opts, now);
                for i in old_map.iocs {
                    if !current.contains(&i.key) {
                        out.changes.push(change(i.key, remove_intent()));
                    }
                }
            }
        }
        EventAction::Merge => {
            let sources = context
                .and_then(|c| c.get("sources"))
                .and_then(Value::as_array);
            for src in sources.into_iter().flatten() {
                // The merged-away indicator no longer owns any IOC (the target's upsert below keeps
                // the values they share, owned by the target).
                let sm = mapping::map_indicator(src, opts, now);
                for i in sm.iocs {
                    out.changes.push(Change {
                        key: i.key,
                        intent: Intent::Remove {
                            labels: labels(src),
                        },
                        event_id: event_id.to_string(),
                        indicator_id: sm.indicator_id.clone(),
                    });
                }
            }
        }
        EventAction::Create => {}
    }
    for i in m.iocs {
        let key = i.key.clone();
        let intent = if m.withdrawn.is_some() {
            remove_intent()
        } else {
            Intent::Upsert(i)
        };
        out.changes.push(change(key, intent));
    }
    out
}

/// The owner of a change: the indicator's STIX id when it has an owner tag (`None` = anonymous).
fn owner(c: &Change) -> Option<&str> {
    c.indicator_id
        .as_deref()
        .filter(|id| mapping::owner_tag(id).is_some())
}

/// The changes of one IOC in a batch: the last change of each owning indicator, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The IOC.
    pub key: IocKey,
    /// The last change per indicator (anonymous changes count as one indicator), oldest first.
    pub changes: Vec<Change>,
    seq: u64,
}

impl Pending {
    fn push(&mut self, seq: u64, c: Change) {
        let o = owner(&c).map(str::to_string);
        self.changes.retain(|x| owner(x) != o.as_deref());
        self.changes.push(c);
        self.seq = seq;
    }
}

/// A batch of changes, coalesced per IOC and per owning indicator: the last change of each indicator
/// in stream order wins, and [`plan`] unions the owners (an upsert by B and a removal by A of the same
/// IOC keep it, owned by B).
#[derive(Debug, Default)]
pub struct Batch {
    changes: HashMap<IocKey, Pending>,
    seq: u64,
    /// Stream events in this batch (data events and heartbeats).
    pub events: usize,
    /// Id of the last event in the batch: the cursor position once the batch is written.
    pub last_event_id: Option<String>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a change; replaces an earlier change of the same IOC by the same indicator.
    pub fn push(&mut self, c: Change) {
        self.seq += 1;
        let seq = self.seq;
        self.changes
            .entry(c.key.clone())
            .or_insert_with(|| Pending {
                key: c.key.clone(),
                changes: Vec::new(),
                seq,
            })
            .push(seq, c);
    }

    /// Records an event id (the batch now covers the stream up to it).
    pub fn cover(&mut self, event_id: &str) {
        self.events += 1;
        self.last_event_id = Some(event_id.to_string());
    }

    /// Distinct IOCs touched.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// No change and no event.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.events == 0
    }

    /// The coalesced changes per IOC, in stream order of each IOC's last change.
    pub fn pending(&self) -> Vec<&Pending> {
        let mut v: Vec<_> = self.changes.values().collect();
        v.sort_by_key(|p| p.seq);
        v
    }
}

/// An owned IOC as found in Falcon.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingIoc {
    /// Falcon id.
    pub id: String,
    /// Type and value.
    pub key: IocKey,
    /// `action`
    pub action: Option<String>,
    /// `mobile_action`
    pub mobile_action: Option<String>,
    /// `severity`
    pub severity: Option<String>,
    /// `platforms`
    pub platforms: Vec<String>,
    /// `tags`
    pub tags: Vec<String>,
    /// `description`
    pub description: Option<String>,
    /// `expiration`
    pub expiration: Option<DateTime<Utc>>,
    /// `applied_globally`
    pub applied_globally: Option<bool>,
}

impl ExistingIoc {
    /// The IOC Falcon holds once `d` is created with id `id` (what a lookup would return).
    pub fn from_desired(d: &DesiredIoc, id: String) -> ExistingIoc {
        ExistingIoc {
            id,
            key: d.key.clone(),
            action: Some(d.action.as_str().to_owned()),
            mobile_action: Some(d.mobile_action.as_str().to_owned()),
            severity: d.severity.map(|s| s.as_str().to_owned()),
            platforms: d.platforms.clone().unwrap_or_default(),
            tags: d.tags.clone().unwrap_or_default(),
            description: d.description.clone(),
            expiration: d.expiration.as_deref().and_then(mapping::parse_time),
            applied_globally: Some(d.applied_globally),
        }
    }

    /// This IOC once `u` (an update of it) is written: the fields the update sets replace the
    /// ones it had.
    pub fn updated(&self, u: &IocUpdate) -> ExistingIoc {
        let mut e = self.clone();
        e.tags = u.tags.clone();
        if let Some(a) = u.action {
            e.action = Some(a.as_str().to_owned());
            e.mobile_action = Some(a.as_str().to_owned());
        }
        if let Some(s) = u.severity {
            e.severity = Some(s.as_str().to_owned());
        }
        if let Some(p) = &u.platforms {
            e.platforms = p.clone();
        }
        if let Some(d) = &u.description {
            e.description = Some(d.clone());
        }
        if let Some(x) = u.expiration.as_deref().and_then(mapping::parse_time) {
            e.expiration = Some(x);
        }
        if u.full {
            e.applied_globally = Some(true);
        }
        e
    }
}

/// An IOC update (PATCH item): the id and every writable field the connector manages.
#[derive(Debug, Clone, PartialEq)]
pub struct IocUpdate {
    /// Falcon id.
    pub id: String,
    /// Type and value (for logs, metrics and dead letters; not sent).
    pub key: IocKey,
    /// `action` and `mobile_action` (`None` = leave as is: an owner-tags-only update).
    pub action: Option<IocAction>,
    /// `severity` (`None` = leave as is).
    pub severity: Option<Severity>,
    /// `platforms` (`None` = leave as is).
    pub platforms: Option<Vec<String>>,
    /// `tags` (always sent; empty clears them).
    pub tags: Vec<String>,
    /// `description` (`None` = leave as is).
    pub description: Option<String>,
    /// `expiration` (`None` = leave as is).
    pub expiration: Option<String>,
    /// `source` and `applied_globally` are re-asserted on full updates.
    pub full: bool,
    /// Whether this update is a soft delete.
    pub soft_delete: bool,
}

/// The writes one batch needs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// New IOCs, with the change that wants them.
    pub creates: Vec<(DesiredIoc, ChangeRef)>,
    /// Updates of owned IOCs (including soft deletes).
    pub updates: Vec<(IocUpdate, ChangeRef)>,
    /// Permanent deletes of owned IOCs: (id, key).
    pub deletes: Vec<(String, IocKey, ChangeRef)>,
    /// Changes that need no write (already as wanted, or removal of an IOC that is not there).
    pub unchanged: usize,
}

/// Where a planned write came from (for dead letters).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRef {
    /// Event id.
    pub event_id: String,
    /// Indicator STIX id.
    pub indicator_id: Option<String>,
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// Whether an owned IOC already has every field the connector would write.
pub fn is_up_to_date(want: &DesiredIoc, have: &ExistingIoc) -> bool {
    have.action.as_deref() == Some(want.action.as_str())
        && have.mobile_action.as_deref().is_none_or(|m| m == want.mobile_action.as_str())
        && have.severity.as_deref().map(str::to_ascii_lowercase) == want.severity.map(|s| s.as_str().to_string())
        && want.platforms.as_ref().is_none_or(|p| same_set(p, &have.platforms))
        && same_set(want.tags.as_deref().unwrap_or(&[]), &have.tags)
        && want.description.as_ref().is_none_or(|d| have.description.as_ref() == Some(d))
        // Falcon keeps expirations to the second.
        && want.expiration_time().is_none_or(|e| have.expiration.map(|h| h.timestamp()) == Some(e.timestamp()))
        && have.applied_globally != Some(false)
}

/// Whether an IOC is soft deleted (`TO_DELETE` and `no_action`): it has no owners any more.
pub fn is_withdrawn(have: &ExistingIoc) -> bool {
    have.action.as_deref() == Some("no_action") && have.tags.iter().any(|t| t == TAG_TO_DELETE)
}

/// The owning indicators' STIX ids recorded on an IOC (its owner tags).
pub fn owners_of(tags: &[String]) -> BTreeSet<String> {
    tags.iter()
        .filter_map(|t| mapping::tag_owner(t))
        .map(str::to_string)
        .collect()
}

/// The tags of an IOC that are labels (neither owner tags nor `TO_DELETE`).
pub fn labels_of(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter(|t| !mapping::is_owner_tag(t) && *t != TAG_TO_DELETE)
        .cloned()
        .collect()
}

/// Labels then owner tags, as written.
fn with_owners(labels: Vec<String>, owners: &BTreeSet<String>) -> Vec<String> {
    let mut tags = labels;
    tags.extend(owners.iter().filter_map(|o| mapping::owner_tag(o)));
    tags
}

/// The expiration of an IOC several indicators may own: the latest of the known owners' (the live
/// upserts of the batch, and the IOC's own for owners only Falcon knows of); none when one of them has
/// none. So a shared IOC does not expire while an owner still wants it (as far as the SDK allows: an
/// expiration, once set, is never cleared, only moved later).
fn shared_expiration(
    pend: &Pending,
    owners: &BTreeSet<String>,
    anonymous: bool,
    have: Option<&ExistingIoc>,
) -> Option<String> {
    let mut upserted = BTreeSet::new();
    let mut candidates: Vec<Option<DateTime<Utc>>> = Vec::new();
    let mut raw: Option<&str> = None;
    for c in &pend.changes {
        if let Intent::Upsert(d) = &c.intent
            && owner(c).map_or(anonymous, |o| owners.contains(o))
        {
            if let Some(o) = owner(c) {
                upserted.insert(o.to_string());
            }
            let t = d.expiration_time();
            if t.is_some() && t == candidates.iter().flatten().copied().max().max(t) {
                raw = d.expiration.as_deref();
            }
            candidates.push(t);
        }
    }
    if let Some(h) = have.filter(|h| !is_withdrawn(h))
        && owners.iter().any(|o| !upserted.contains(o))
    {
        candidates.push(h.expiration);
    }
    if candidates.iter().any(Option::is_none) {
        return None;
    }
    let latest = candidates.into_iter().flatten().max()?;
    match raw.and_then(mapping::parse_time) {
        Some(t) if t == latest => raw.map(str::to_string),
        _ => Some(latest.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    }
}

/// Compares the batch's wanted state with the owned IOCs found (`existing`, keyed by type and value).
///
/// Owners: the IOC's owner tags (none when it is absent or soft deleted) plus the indicators that upsert
/// it in the batch, minus those that remove it. While an owner remains the IOC is written with the
/// fields of the latest upsert by a remaining owner (or, with no such upsert, only its owner tags are
/// updated); once none remains it is removed. An IOC with no owner tags (written by the Python
/// connector) is adopted by the next indicator that writes it; a removal with no other owner removes it.
/// An anonymous removal (an indicator without an id, or `reconcile`'s removal of an IOC no indicator
/// wants) drops every owner.
pub fn plan(
    pending: &[&Pending],
    existing: &HashMap<IocKey, ExistingIoc>,
    permanent_delete: bool,
) -> Plan {
    let mut p = Plan::default();
    for pend in pending {
        let have = existing.get(&pend.key);
        let mut owners = match have {
            Some(h) if !is_withdrawn(h) => owners_of(&h.tags),
            _ => BTreeSet::new(),
        };
        let mut anonymous = false;
        for c in &pend.changes {
            match (&c.intent, owner(c)) {
                (Intent::Upsert(_), Some(o)) => {
                    owners.insert(o.to_string());
                }
                (Intent::Remove { .. }, Some(o)) => {
                    owners.remove(o);
                }
                (Intent::Upsert(_), None) => anonymous = true,
                (Intent::Remove { .. }, None) => {
                    owners.clear();
                    anonymous = false;
                }
            }
        }
        let upsert = pend.changes.iter().rev().find_map(|c| match &c.intent {
            Intent::Upsert(d) if owner(c).map_or(anonymous, |o| owners.contains(o)) => Some((d, c)),
            _ => None,
        });
        let cref = |c: &Change| ChangeRef {
            event_id: c.event_id.clone(),
            indicator_id: c.indicator_id.clone(),
        };
        let last = pend.changes.last().expect("a pending IOC has a change");
        if !owners.is_empty() || anonymous {
            match (upsert, have) {
                (Some((d, c)), have) => {
                    let mut want = d.clone();
                    let tags = with_owners(labels_of(d.tags.as_deref().unwrap_or(&[])), &owners);
                    want.tags = Some(tags).filter(|t| !t.is_empty());
                    want.expiration = shared_expiration(pend, &owners, anonymous, have);
                    match have {
                        None => p.creates.push((want, cref(c))),
                        Some(h) if is_up_to_date(&want, h) => p.unchanged += 1,
                        Some(h) => p.updates.push((
                            IocUpdate {
                                id: h.id.clone(),
                                key: pend.key.clone(),
                                action: Some(want.action),
                                severity: want.severity,
                                platforms: want.platforms.clone(),
                                tags: want.tags.clone().unwrap_or_default(),
                                description: want.description.clone(),
                                expiration: want.expiration.clone(),
                                full: true,
                                soft_delete: false,
                            },
                            cref(c),
                        )),
                    }
                }
                (None, Some(h)) => {
                    // Another owner remains: only the owner tags change.
                    let tags = with_owners(labels_of(&h.tags), &owners);
                    if same_set(&tags, &h.tags) {
                        p.unchanged += 1;
                    } else {
                        p.updates.push((
                            IocUpdate {
                                id: h.id.clone(),
                                key: pend.key.clone(),
                                action: None,
                                severity: None,
                                platforms: None,
                                tags,
                                description: None,
                                expiration: None,
                                full: false,
                                soft_delete: false,
                            },
                            cref(last),
                        ));
                    }
                }
                (None, None) => p.unchanged += 1,
            }
            continue;
        }
        let labels = pend
            .changes
            .iter()
            .rev()
            .find_map(|c| match &c.intent {
                Intent::Remove { labels } => Some(labels.clone()),
                Intent::Upsert(_) => None,
            })
            .unwrap_or_default();
        match have {
            None => p.unchanged += 1,
            Some(h) if permanent_delete => {
                p.deletes.push((h.id.clone(), pend.key.clone(), cref(last)))
            }
            Some(h) if is_withdrawn(h) => p.unchanged += 1,
            Some(h) => {
                let mut tags: Vec<String> = labels
                    .into_iter()
                    .filter(|t| !mapping::is_owner_tag(t))
                    .collect();
                if !tags.iter().any(|t| t == TAG_TO_DELETE) {
                    tags.push(TAG_TO_DELETE.to_string());
                }
                p.updates.push((
                    IocUpdate {
                        id: h.id.clone(),
                        key: pend.key.clone(),
                        action: Some(IocAction::NoAction),
                        severity: None,
                        platforms: None,
                        tags,
                        description: None,
                        expiration: None,
                        full: false,
                        soft_delete: true,
                    },
                    cref(last),
                ));
            }
        }
    }
    p
}

/// Counts skips per reason (for metrics and summaries).
pub fn count_skips(skips: &[Skip]) -> Vec<(SkipReason, usize)> {
    let mut m: std::collections::BTreeMap<SkipReason, usize> = Default::default();
    for s in skips {
        *m.entry(s.reason).or_default() += 1;
    }
    m.into_iter().collect()
}

/// Every IOC type the connector manages (for reconcile filters).
pub const MANAGED_TYPES: [IocType; 5] = [
    IocType::Sha256,
    IocType::Md5,
    IocType::Domain,
    IocType::Ipv4,
    IocType::Ipv6,
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        crate::mapping::parse_time("2026-01-01T00:00:00Z").unwrap()
    }

    fn ind(id: &str, pattern: &str) -> Value {
        json!({"id": id, "type": "indicator", "pattern_type": "stix", "pattern": pattern, "labels": ["l1"]})
    }

    fn run(action: EventAction, stix: &Value, ctx: Option<Value>) -> EventOutcome {
        changes_for_event(
            action,
            "1-0",
            stix,
            ctx.as_ref(),
            &MappingOptions::default(),
            now(),
        )
    }

    fn key(t: IocType, v: &str) -> IocKey {
        IocKey {
            ioc_type: t,
            value: v.into(),
        }
    }

    #[test]
    fn update_with_a_changed_pattern_removes_the_old_iocs() {
        let stix = ind("indicator--a", "[domain-name:value = 'new.example']");
        let ctx = json!({"reverse_patch": [{"op": "replace", "path": "/pattern", "value": "[domain-name:value = 'old.example']"}]});
        let out = run(EventAction::Update, &stix, Some(ctx));
        assert_eq!(out.changes.len(), 2);
        assert_eq!(out.changes[0].key, key(IocType::Domain, "old.example"));
        assert!(matches!(out.changes[0].intent, Intent::Remove { .. }));
        assert_eq!(out.changes[1].key, key(IocType::Domain, "new.example"));
        assert!(matches!(out.changes[1].intent, Intent::Upsert(_)));
    }

    #[test]
    fn pattern_type_change_removes_the_old_iocs() {
        let mut stix = ind("indicator--a", "rule x { condition: true }");
        stix["pattern_type"] = json!("yara");
        let ctx = json!({"reverse_patch": [
            {"op": "replace", "path": "/pattern", "value": "[ipv4-addr:value = '1.2.3.4']"},
            {"op": "replace", "path": "/pattern_type", "value": "stix"}]});
        let out = run(EventAction::Update, &stix, Some(ctx));
        assert_eq!(out.changes.len(), 1);
        assert_eq!(out.changes[0].key, key(IocType::Ipv4, "1.2.3.4"));
        assert!(matches!(out.changes[0].intent, Intent::Remove { .. }));
    }

    #[test]
    fn reverse_patch_applies_nested_paths() {
        let stix = json!({"a": {"b~c": 1, "d": [1, 2]}, "x": 1});
        let ctx = json!({"reverse_patch": [
            {"op": "replace", "path": "/a/b~0c", "value": 2},
            {"op": "add", "path": "/a/d/-", "value": 3},
            {"op": "remove", "path": "/x"}]});
        assert_eq!(
            previous_version(&stix, Some(&ctx)),
            Some(json!({"a": {"b~c": 2, "d": [1, 2, 3]}}))
        );
    }

    #[test]
    fn delete_and_revocation_remove() {
        let stix = ind("indicator--a", "[ipv4-addr:value = '1.2.3.4']");
        let out = run(EventAction::Delete, &stix, None);
        assert!(
            matches!(&out.changes[0].intent, Intent::Remove { labels } if labels == &vec!["l1".to_string()])
        );
        let mut revoked = stix.clone();
        revoked["revoked"] = json!(true);
        let out = run(EventAction::Update, &revoked, None);
        assert!(matches!(out.changes[0].intent, Intent::Remove { .. }));
    }

    #[test]
    fn merge_moves_ownership_to_the_target() {
        let target = ind("indicator--t", "[domain-name:value = 'keep.example']");
        let ctx = json!({"sources": [ind("indicator--s1", "[domain-name:value = 'gone.example']"),
                                      ind("indicator--s2", "[domain-name:value = 'keep.example']")]});
        let out = run(EventAction::Merge, &target, Some(ctx));
        let got: Vec<_> = out
            .changes
            .iter()
            .map(|c| (c.key.value.clone(), matches!(c.intent, Intent::Upsert(_))))
            .collect();
        assert_eq!(
            got,
            vec![
                ("gone.example".to_string(), false),
                ("keep.example".to_string(), false),
                ("keep.example".to_string(), true)
            ]
        );
        let mut b = Batch::new();
        out.changes.into_iter().for_each(|c| b.push(c));
        let p = plan(&b.pending(), &HashMap::new(), true);
        let created: Vec<_> = p
            .creates
            .iter()
            .map(|(d, _)| (d.key.value.as_str(), d.tags.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            created,
            vec![(
                "keep.example",
                vec!["l1".to_string(), "opencti:indicator--t".to_string()]
            )]
        );
    }

    #[test]
    fn last_write_per_indicator_wins_in_stream_order() {
        let mut b = Batch::new();
        let a = ind("indicator--a", "[domain-name:value = 'x.example']");
        for (i, action) in [
            EventAction::Create,
            EventAction::Delete,
            EventAction::Create,
            EventAction::Delete,
        ]
        .iter()
        .enumerate()
        {
            for c in changes_for_event(
                *action,
                &format!("{i}-0"),
                &a,
                None,
                &MappingOptions::default(),
                now(),
            )
            .changes
            {
                b.push(c);
            }
            b.cover(&format!("{i}-0"));
        }
        let y = ind("indicator--b", "[domain-name:value = 'y.example']");
        for c in run(EventAction::Create, &y, None).changes {
            b.push(c);
        }
        let ps = b.pending();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].key.value, "x.example");
        assert_eq!(ps[0].changes.len(), 1, "one change per indicator");
        assert!(matches!(ps[0].changes[0].intent, Intent::Remove { .. }));
        assert_eq!(ps[0].changes[0].event_id, "3-0");
        assert_eq!(b.last_event_id.as_deref(), Some("3-0"));
        assert_eq!(b.events, 4);
    }

    fn existing(k: &IocKey, want: &DesiredIoc) -> ExistingIoc {
        ExistingIoc {
            id: "id1".into(),
            key: k.clone(),
            action: Some(want.action.as_str().into()),
            mobile_action: Some(want.mobile_action.as_str().into()),
            severity: want.severity.map(|s| s.as_str().into()),
            platforms: want.platforms.clone().unwrap_or_default(),
            tags: want.tags.clone().unwrap_or_default(),
            description: want.description.clone(),
            expiration: want.expiration_time(),
            applied_globally: Some(true),
        }
    }

    /// A batch of the given events (each `(action, indicator id)` on the same domain `v`).
    fn batch_of(v: &str, events: &[(EventAction, &str)]) -> Batch {
        let mut b = Batch::new();
        for (i, (action, id)) in events.iter().enumerate() {
            let stix = ind(id, &format!("[domain-name:value = '{v}']"));
            for c in changes_for_event(
                *action,
                &format!("{i}-0"),
                &stix,
                None,
                &MappingOptions::default(),
                now(),
            )
            .changes
            {
                b.push(c);
            }
            b.cover(&format!("{i}-0"));
        }
        b
    }

    fn want(v: &str, id: &str) -> (IocKey, DesiredIoc) {
        let out = run(
            EventAction::Create,
            &ind(id, &format!("[domain-name:value = '{v}']")),
            None,
        );
        let Intent::Upsert(w) = &out.changes[0].intent else {
            panic!("upsert expected")
        };
        (out.changes[0].key.clone(), w.clone())
    }

    #[test]
    fn plan_creates_updates_and_skips_up_to_date() {
        let b = batch_of("a.example", &[(EventAction::Create, "indicator--a")]);
        let (k, w) = want("a.example", "indicator--a");
        let p = plan(&b.pending(), &HashMap::new(), false);
        assert_eq!(p.creates.len(), 1);
        assert_eq!(
            p.creates[0].0.tags,
            Some(vec!["l1".to_string(), "opencti:indicator--a".to_string()]),
            "labels then the owner tag"
        );
        let mut have = HashMap::new();
        have.insert(k.clone(), existing(&k, &w));
        let p = plan(&b.pending(), &have, false);
        assert_eq!((p.creates.len(), p.updates.len(), p.unchanged), (0, 0, 1));
        have.get_mut(&k).unwrap().tags = vec!["l1".into(), "TO_DELETE".into()];
        have.get_mut(&k).unwrap().action = Some("no_action".into());
        let p = plan(&b.pending(), &have, false);
        assert_eq!(p.updates.len(), 1);
        assert_eq!(
            p.updates[0].0.tags,
            vec!["l1".to_string(), "opencti:indicator--a".to_string()],
            "re-creating drops TO_DELETE"
        );
        assert_eq!(p.updates[0].0.action, Some(IocAction::Detect));
    }

    #[test]
    fn plan_removals_soft_and_permanent() {
        let b = batch_of("a.example", &[(EventAction::Delete, "indicator--a")]);
        let (k, w) = want("a.example", "indicator--a");
        let mut have = HashMap::new();
        have.insert(k.clone(), existing(&k, &w));
        let p = plan(&b.pending(), &have, true);
        assert_eq!(p.deletes.len(), 1);
        let p = plan(&b.pending(), &have, false);
        let u = &p.updates[0].0;
        assert!(u.soft_delete);
        assert_eq!(u.action, Some(IocAction::NoAction));
        assert_eq!(
            u.tags,
            vec!["l1".to_string(), "TO_DELETE".to_string()],
            "a soft-deleted IOC has no owner left"
        );
        let p = plan(&b.pending(), &HashMap::new(), false);
        assert_eq!(p.unchanged, 1, "removing an absent IOC is a no-op");
    }

    #[test]
    fn removal_by_one_owner_keeps_the_ioc_of_another() {
        // The IOC is owned by A and B; A is deleted.
        let (k, w) = want("shared.example", "indicator--a");
        let mut have = HashMap::new();
        let mut both = existing(&k, &w);
        both.tags = vec![
            "l1".into(),
            "opencti:indicator--a".into(),
            "opencti:indicator--b".into(),
        ];
        have.insert(k.clone(), both);
        let b = batch_of("shared.example", &[(EventAction::Delete, "indicator--a")]);
        for permanent in [false, true] {
            let p = plan(&b.pending(), &have, permanent);
            assert!(p.deletes.is_empty() && p.creates.is_empty());
            assert_eq!(p.updates.len(), 1);
            let u = &p.updates[0].0;
            assert!(!u.soft_delete && !u.full);
            assert_eq!(u.action, None, "the action is left as is");
            assert_eq!(
                u.tags,
                vec!["l1".to_string(), "opencti:indicator--b".to_string()]
            );
        }
        // Then B is deleted: no owner remains.
        have.get_mut(&k).unwrap().tags = vec!["l1".into(), "opencti:indicator--b".into()];
        let b = batch_of("shared.example", &[(EventAction::Delete, "indicator--b")]);
        let p = plan(&b.pending(), &have, true);
        assert_eq!(p.deletes.len(), 1);
        let p = plan(&b.pending(), &have, false);
        assert!(p.updates[0].0.soft_delete);
    }

    #[test]
    fn upsert_by_b_and_removal_by_a_in_one_batch_keep_the_ioc_owned_by_b() {
        let (k, w) = want("shared.example", "indicator--a");
        for order in [
            [
                (EventAction::Create, "indicator--b"),
                (EventAction::Delete, "indicator--a"),
            ],
            [
                (EventAction::Delete, "indicator--a"),
                (EventAction::Create, "indicator--b"),
            ],
        ] {
            let b = batch_of("shared.example", &order);
            // Falcon holds the IOC owned by A.
            let mut have = HashMap::new();
            have.insert(k.clone(), existing(&k, &w));
            let p = plan(&b.pending(), &have, true);
            assert!(p.deletes.is_empty(), "{order:?}");
            assert_eq!(
                p.updates[0].0.tags,
                vec!["l1".to_string(), "opencti:indicator--b".to_string()],
                "{order:?}"
            );
            // Nothing in Falcon yet: created, owned by B.
            let p = plan(&b.pending(), &HashMap::new(), true);
            assert_eq!(
                p.creates[0].0.tags,
                Some(vec!["l1".to_string(), "opencti:indicator--b".to_string()])
            );
        }
    }

    #[test]
    fn a_second_owner_is_added_and_legacy_iocs_are_adopted() {
        let (k, w) = want("shared.example", "indicator--a");
        let mut have = HashMap::new();
        have.insert(k.clone(), existing(&k, &w));
        let b = batch_of("shared.example", &[(EventAction::Create, "indicator--b")]);
        let p = plan(&b.pending(), &have, false);
        let tags: BTreeSet<_> = p.updates[0].0.tags.iter().cloned().collect();
        assert_eq!(
            tags,
            ["l1", "opencti:indicator--a", "opencti:indicator--b"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        // The Python connector's IOC has no owner tags: the next writer owns it ...
        have.get_mut(&k).unwrap().tags = vec!["l1".into()];
        let p = plan(&b.pending(), &have, false);
        assert_eq!(
            p.updates[0].0.tags,
            vec!["l1".to_string(), "opencti:indicator--b".to_string()]
        );
        // ... and a removal with no owner recorded removes it.
        let d = batch_of("shared.example", &[(EventAction::Delete, "indicator--a")]);
        assert_eq!(plan(&d.pending(), &have, true).deletes.len(), 1);
    }

    #[test]
    fn a_shared_ioc_keeps_the_latest_expiration() {
        let stix = |id: &str, until: Option<&str>| {
            let mut v = ind(id, "[domain-name:value = 'shared.example']");
            if let Some(u) = until {
                v["valid_until"] = json!(u);
            }
            v
        };
        let batch = |items: &[Value]| {
            let mut b = Batch::new();
            for s in items {
                run(EventAction::Create, s, None)
                    .changes
                    .into_iter()
                    .for_each(|c| b.push(c));
            }
            b
        };
        // One batch, A expiring and B not: the IOC does not expire.
        let b = batch(&[
            stix("indicator--a", Some("2027-01-01T00:00:00.000Z")),
            stix("indicator--b", None),
        ]);
        let p = plan(&b.pending(), &HashMap::new(), false);
        assert_eq!(p.creates[0].0.expiration, None);
        // One batch, both expiring: the later one.
        let b = batch(&[
            stix("indicator--a", Some("2027-01-01T00:00:00.000Z")),
            stix("indicator--b", Some("2026-06-01T00:00:00.000Z")),
        ]);
        let p = plan(&b.pending(), &HashMap::new(), false);
        assert_eq!(
            p.creates[0].0.expiration.as_deref(),
            Some("2027-01-01T00:00:00.000Z")
        );
        // Falcon holds A's IOC expiring in 2027; B, expiring earlier, joins: 2027 stays.
        let a = batch(&[stix("indicator--a", Some("2027-01-01T00:00:00.000Z"))]);
        let Intent::Upsert(w) = &a.pending()[0].changes[0].intent else {
            panic!("upsert expected")
        };
        let k = a.pending()[0].key.clone();
        let mut have = HashMap::new();
        let mut h = existing(&k, w);
        h.tags = vec!["l1".into(), "opencti:indicator--a".into()];
        have.insert(k.clone(), h);
        let b = batch(&[stix("indicator--b", Some("2026-06-01T00:00:00.000Z"))]);
        let p = plan(&b.pending(), &have, false);
        assert_eq!(
            p.updates[0]
                .0
                .expiration
                .as_deref()
                .and_then(mapping::parse_time),
            mapping::parse_time("2027-01-01T00:00:00Z")
        );
    }
}
