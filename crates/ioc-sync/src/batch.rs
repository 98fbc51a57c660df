//! From stream events to IOC changes, coalescing per IOC, and the write plan against what Falcon holds.
//!
//! Pure and synchronous: [`changes_for_event`] turns one event into changes, [`Batch`] keeps the last
//! change per IOC in stream order (last write wins), and [`plan`] compares the wanted state with the
//! owned IOCs found in Falcon and yields the creates, updates and deletes to send (nothing for an IOC
//! already as wanted, so replays after a restart cost no writes).

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
/// - merge: remove the IOCs of the merged-away indicators (`context.sources`) that the target does not
///   have, then upsert the target's.
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
                let sm = mapping::map_indicator(src, opts, now);
                for i in sm.iocs {
                    if !current.contains(&i.key) {
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

/// A batch of changes, coalesced per IOC: the last change in stream order wins.
#[derive(Debug, Default)]
pub struct Batch {
    changes: HashMap<IocKey, (u64, Change)>,
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

    /// Adds a change; replaces an earlier change of the same IOC.
    pub fn push(&mut self, c: Change) {
        self.seq += 1;
        self.changes.insert(c.key.clone(), (self.seq, c));
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

    /// The coalesced changes, in stream order of their last write.
    pub fn changes(&self) -> Vec<&Change> {
        let mut v: Vec<_> = self.changes.values().collect();
        v.sort_by_key(|(s, _)| *s);
        v.into_iter().map(|(_, c)| c).collect()
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

/// An IOC update (PATCH item): the id and every writable field the connector manages.
#[derive(Debug, Clone, PartialEq)]
pub struct IocUpdate {
    /// Falcon id.
    pub id: String,
    /// Type and value (for logs, metrics and dead letters; not sent).
    pub key: IocKey,
    /// `action` and `mobile_action`.
    pub action: IocAction,
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

/// Compares the batch's wanted state with the owned IOCs found (`existing`, keyed by type and value).
pub fn plan(
    changes: &[&Change],
    existing: &HashMap<IocKey, ExistingIoc>,
    permanent_delete: bool,
) -> Plan {
    let mut p = Plan::default();
    for c in changes {
        let r = ChangeRef {
            event_id: c.event_id.clone(),
            indicator_id: c.indicator_id.clone(),
        };
        match (&c.intent, existing.get(&c.key)) {
            (Intent::Upsert(want), None) => p.creates.push((want.clone(), r)),
            (Intent::Upsert(want), Some(have)) => {
                if is_up_to_date(want, have) {
                    p.unchanged += 1;
                } else {
                    p.updates.push((
                        IocUpdate {
                            id: have.id.clone(),
                            key: c.key.clone(),
                            action: want.action,
                            severity: want.severity,
                            platforms: want.platforms.clone(),
                            tags: want.tags.clone().unwrap_or_default(),
                            description: want.description.clone(),
                            expiration: want.expiration.clone(),
                            full: true,
                            soft_delete: false,
                        },
                        r,
                    ));
                }
            }
            (Intent::Remove { .. }, None) => p.unchanged += 1,
            (Intent::Remove { labels }, Some(have)) => {
                if permanent_delete {
                    p.deletes.push((have.id.clone(), c.key.clone(), r));
                } else {
                    let mut tags = labels.clone();
                    if !tags.iter().any(|t| t == TAG_TO_DELETE) {
                        tags.push(TAG_TO_DELETE.to_string());
                    }
                    let done = have.action.as_deref() == Some("no_action")
                        && have.tags.iter().any(|t| t == TAG_TO_DELETE);
                    if done {
                        p.unchanged += 1;
                    } else {
                        p.updates.push((
                            IocUpdate {
                                id: have.id.clone(),
                                key: c.key.clone(),
                                action: IocAction::NoAction,
                                severity: None,
                                platforms: None,
                                tags,
                                description: None,
                                expiration: None,
                                full: false,
                                soft_delete: true,
                            },
                            r,
                        ));
                    }
                }
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
    fn merge_removes_the_merged_away_iocs_only() {
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
                ("keep.example".to_string(), true)
            ]
        );
    }

    #[test]
    fn last_write_wins_in_stream_order() {
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
        let cs = b.changes();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].key.value, "x.example");
        assert!(matches!(cs[0].intent, Intent::Remove { .. }));
        assert_eq!(cs[0].event_id, "3-0");
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

    #[test]
    fn plan_creates_updates_and_skips_up_to_date() {
        let out = run(
            EventAction::Create,
            &ind("indicator--a", "[domain-name:value = 'a.example']"),
            None,
        );
        let c = &out.changes[0];
        let Intent::Upsert(want) = &c.intent else {
            panic!("upsert expected")
        };
        let none = HashMap::new();
        let p = plan(&[c], &none, false);
        assert_eq!(p.creates.len(), 1);
        let mut have = HashMap::new();
        have.insert(c.key.clone(), existing(&c.key, want));
        let p = plan(&[c], &have, false);
        assert_eq!((p.creates.len(), p.updates.len(), p.unchanged), (0, 0, 1));
        have.get_mut(&c.key).unwrap().tags = vec!["l1".into(), "TO_DELETE".into()];
        have.get_mut(&c.key).unwrap().action = Some("no_action".into());
        let p = plan(&[c], &have, false);
        assert_eq!(p.updates.len(), 1);
        assert_eq!(
            p.updates[0].0.tags,
            vec!["l1".to_string()],
            "re-creating drops TO_DELETE"
        );
        assert_eq!(p.updates[0].0.action, IocAction::Detect);
    }

    #[test]
    fn plan_removals_soft_and_permanent() {
        let out = run(
            EventAction::Delete,
            &ind("indicator--a", "[domain-name:value = 'a.example']"),
            None,
        );
        let c = &out.changes[0];
        let mut have = HashMap::new();
        let want = run(
            EventAction::Create,
            &ind("indicator--a", "[domain-name:value = 'a.example']"),
            None,
        );
        let Intent::Upsert(w) = &want.changes[0].intent else {
            panic!("upsert expected")
        };
        have.insert(c.key.clone(), existing(&c.key, w));
        let p = plan(&[c], &have, true);
        assert_eq!(p.deletes.len(), 1);
        let p = plan(&[c], &have, false);
        let u = &p.updates[0].0;
        assert!(u.soft_delete);
        assert_eq!(u.action, IocAction::NoAction);
        assert_eq!(u.tags, vec!["l1".to_string(), "TO_DELETE".to_string()]);
        let p = plan(&[c], &HashMap::new(), false);
        assert_eq!(p.unchanged, 1, "removing an absent IOC is a no-op");
    }
}
