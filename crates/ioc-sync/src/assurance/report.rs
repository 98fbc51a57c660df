//! One status report per indicator from the IOC write outcomes of a batch (reference §4.3, with
//! our differences: every value of a pattern counts, an indicator is `deployed` only when all its
//! IOCs are, and the write time is sent as `last_sync_at`, so a late re-send never overrides a
//! newer reconciliation, §7.13).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use opencti_client::{DeploymentReport, DeploymentStatus, MAX_EXTERNAL_ID_CHARS, cut_message};

use crate::batch::{ExistingIoc, Intent, IocUpdate, Pending, Plan, is_withdrawn, owners_of};
use crate::mapping::IocKey;

/// What became of one IOC of an indicator in Falcon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IocResult {
    /// Created, updated, or already as wanted: the IOC is in Falcon.
    Deployed {
        /// Falcon IOC id.
        ioc_id: String,
    },
    /// Falcon refused the write; the change was dead-lettered.
    Failed {
        /// Falcon's message.
        message: String,
        /// The IOC id, when it exists.
        ioc_id: Option<String>,
    },
    /// Withdrawn (permanent or soft delete), or already absent.
    Removed {
        /// The IOC id, when there was one.
        ioc_id: Option<String>,
    },
}

#[derive(Debug, Default)]
struct Entry {
    expected: BTreeSet<IocKey>,
    results: BTreeMap<IocKey, IocResult>,
}

/// Collects a batch's outcomes and builds one report per indicator touched.
#[derive(Debug)]
pub struct ReportBuilder {
    at: DateTime<Utc>,
    per: BTreeMap<String, Entry>,
}

/// Joins IOC ids into an external id of at most 1 000 characters (ids that do not fit are left
/// out; the first always fits, Falcon ids are 64 characters).
pub fn external_id<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut out = String::new();
    for id in ids {
        let extra = id.len() + usize::from(!out.is_empty());
        if out.len() + extra > MAX_EXTERNAL_ID_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(id);
    }
    (!out.is_empty()).then_some(out)
}

impl ReportBuilder {
    /// A builder for a batch written at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        ReportBuilder {
            at,
            per: BTreeMap::new(),
        }
    }

    /// The IOCs the indicator wants (its mapping's keys; none for a withdrawal).
    pub fn expect(&mut self, indicator_id: &str, keys: impl IntoIterator<Item = IocKey>) {
        self.per
            .entry(indicator_id.to_owned())
            .or_default()
            .expected
            .extend(keys);
    }

    /// The outcome of one IOC of the indicator (the latest one wins).
    pub fn record(&mut self, indicator_id: &str, key: IocKey, result: IocResult) {
        self.per
            .entry(indicator_id.to_owned())
            .or_default()
            .results
            .insert(key, result);
    }

    /// Number of indicators touched.
    pub fn len(&self) -> usize {
        self.per.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.per.is_empty()
    }

    /// One report per indicator: `failed` (with Falcon's messages) when any of its IOCs failed;
    /// `deployed` (the IOC ids as external id) when every IOC it wants is in Falcon; `removed`
    /// when it wants none and its IOCs were withdrawn. An indicator with a wanted IOC without
    /// outcome gets no report (nothing is claimed that was not observed).
    pub fn build(self) -> Vec<DeploymentReport> {
        let at = self.at;
        let mut out = Vec::with_capacity(self.per.len());
        for (indicator, e) in self.per {
            let failures: Vec<(&IocKey, &str)> = e
                .results
                .iter()
                .filter_map(|(k, r)| match r {
                    IocResult::Failed { message, .. } => Some((k, message.as_str())),
                    _ => None,
                })
                .collect();
            let deployed_ids = |keys: &mut dyn Iterator<Item = &IocKey>| -> Vec<String> {
                keys.filter_map(|k| match e.results.get(k) {
                    Some(IocResult::Deployed { ioc_id }) => Some(ioc_id.clone()),
                    _ => None,
                })
                .collect()
            };
            let mut r = DeploymentReport::new(indicator, DeploymentStatus::Deployed);
            r.last_sync_at = Some(at);
            if !failures.is_empty() {
                r.status = DeploymentStatus::Failed;
                let msg = if failures.len() == 1 {
                    failures[0].1.to_owned()
                } else {
                    failures
                        .iter()
                        .map(|(k, m)| format!("{k}: {m}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                r.error_message = Some(cut_message(&msg));
                let ids = deployed_ids(&mut e.results.keys());
                r.external_id = external_id(ids.iter().map(String::as_str));
            } else if !e.expected.is_empty() {
                let ids = deployed_ids(&mut e.expected.iter());
                if ids.len() != e.expected.len() {
                    continue;
                }
                r.external_id = external_id(ids.iter().map(String::as_str));
                r.deployed_at = Some(at);
            } else if e
                .results
                .values()
                .any(|r| matches!(r, IocResult::Removed { .. }))
            {
                r.status = DeploymentStatus::Removed;
                r.removed_at = Some(at);
                r.external_id = external_id(e.results.values().filter_map(|r| match r {
                    IocResult::Removed { ioc_id } => ioc_id.as_deref(),
                    _ => None,
                }));
            } else {
                continue;
            }
            out.push(r);
        }
        out
    }
}

/// What a write left in Falcon for one IOC, from Falcon's answer to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    /// There, as written (a create Falcon answered with its id, or a re-checked create).
    Present(ExistingIoc),
    /// Updated as this update says (applied to what was there).
    Updated(IocUpdate),
    /// Gone (a delete Falcon confirmed).
    Absent,
    /// Written, but the answer does not say as what: read back before reporting.
    Unknown,
}

/// What Falcon holds for the IOCs of a batch: before its first write (the engine's lookup) and
/// after its writes (the lookup with Falcon's answers applied). Reports are built from it without
/// reading the written IOCs back; only what the answers leave unknown is looked up again.
#[derive(Debug, Default, Clone)]
pub struct Holdings {
    /// At the first lookup of each key (`None`: not there).
    before: HashMap<IocKey, Option<ExistingIoc>>,
    /// Now (`None`: not there); a key missing is unknown.
    after: HashMap<IocKey, Option<ExistingIoc>>,
    /// The keys the batch deletes or soft-deletes.
    withdrawn: HashSet<IocKey>,
}

impl Holdings {
    /// Holdings read from Falcon after the writes (the lookup of `keys` found `found`).
    pub fn observed(keys: &[IocKey], found: &HashMap<IocKey, ExistingIoc>) -> Holdings {
        let mut h = Holdings::default();
        h.settle(keys, found);
        h
    }

    /// A lookup before writing found `found` among `keys` (a retried batch looks up again: the
    /// first lookup stays the "before").
    pub fn looked_up(&mut self, keys: &[IocKey], found: &HashMap<IocKey, ExistingIoc>) {
        for k in keys {
            let e = found.get(k).cloned();
            self.before.entry(k.clone()).or_insert_with(|| e.clone());
            self.after.insert(k.clone(), e);
        }
    }

    /// The batch withdraws (deletes or soft-deletes) the IOC `k`.
    pub fn withdrawing(&mut self, k: IocKey) {
        self.withdrawn.insert(k);
    }

    /// Records the withdrawals a plan makes.
    pub fn planned(&mut self, plan: &Plan) {
        for (_, k, _) in &plan.deletes {
            self.withdrawing(k.clone());
        }
        for (u, _) in plan.updates.iter().filter(|(u, _)| u.soft_delete) {
            self.withdrawing(u.key.clone());
        }
    }

    /// Applies what Falcon answered to the writes.
    pub fn apply(&mut self, written: Vec<(IocKey, Held)>) {
        for (k, h) in written {
            match h {
                Held::Present(e) => {
                    self.after.insert(k, Some(e));
                }
                Held::Absent => {
                    self.after.insert(k, None);
                }
                Held::Updated(u) => match self.after.get(&k) {
                    Some(Some(e)) => {
                        let e = e.updated(&u);
                        self.after.insert(k, Some(e));
                    }
                    _ => {
                        self.after.remove(&k);
                    }
                },
                Held::Unknown => {
                    self.after.remove(&k);
                }
            }
        }
    }

    /// The keys among `keys` whose state after the writes is not known.
    pub fn unknown(&self, keys: &[IocKey]) -> Vec<IocKey> {
        keys.iter()
            .filter(|k| !self.after.contains_key(*k))
            .cloned()
            .collect()
    }

    /// A read-back of `keys` found `found`.
    pub fn settle(&mut self, keys: &[IocKey], found: &HashMap<IocKey, ExistingIoc>) {
        for k in keys {
            self.after.insert(k.clone(), found.get(k).cloned());
        }
    }

    fn before(&self, k: &IocKey) -> Option<&ExistingIoc> {
        self.before.get(k).and_then(Option::as_ref)
    }

    fn after(&self, k: &IocKey) -> Option<&ExistingIoc> {
        self.after.get(k).and_then(Option::as_ref)
    }
}

/// Whether `ioc` is deployed for `indicator`: it carries the indicator's owner tag, or no owner
/// tag at all (an IOC the Python connector wrote) and is not withdrawn.
fn held_for(ioc: &ExistingIoc, indicator: &str) -> bool {
    let owners = owners_of(&ioc.tags);
    owners.contains(indicator) || (owners.is_empty() && !is_withdrawn(ioc))
}

/// The reports of a written batch: `pending` its coalesced changes, `held` what Falcon held before
/// and after the writes (and what the batch withdrew), `dead` the keys whose changes were
/// dead-lettered, with Falcon's message.
/// An upsert whose IOC is live and owned by the indicator is deployed. A removal is removed when
/// the IOC was deployed for the indicator before the batch and the batch withdrew it, or it is no
/// longer the indicator's (a shared value another indicator keeps). A removal of an IOC that was
/// never the indicator's reports nothing: an indicator never deployed gets no deployment (an
/// expired indicator sharing its value with a live one is not `removed`).
pub fn batch_reports(
    pending: &[&Pending],
    held: &Holdings,
    dead: &HashMap<IocKey, String>,
    at: DateTime<Utc>,
) -> Vec<DeploymentReport> {
    let mut b = ReportBuilder::new(at);
    for p in pending {
        let now_ioc = held.after(&p.key);
        let was_ioc = held.before(&p.key);
        for c in &p.changes {
            let Some(ind) = c.indicator_id.as_deref() else {
                continue;
            };
            let owned = now_ioc.is_some_and(|e| owners_of(&e.tags).contains(ind));
            let live = now_ioc.is_some_and(|e| !is_withdrawn(e));
            let result = if let Some(msg) = dead.get(&p.key) {
                Some(IocResult::Failed {
                    message: msg.clone(),
                    ioc_id: now_ioc.map(|e| e.id.clone()),
                })
            } else {
                match &c.intent {
                    Intent::Upsert(_) => (owned && live).then(|| IocResult::Deployed {
                        ioc_id: now_ioc.map(|e| e.id.clone()).unwrap_or_default(),
                    }),
                    Intent::Remove { .. } => was_ioc
                        .filter(|e| held_for(e, ind))
                        .filter(|_| held.withdrawn.contains(&p.key) || !(owned && live))
                        .map(|e| IocResult::Removed {
                            ioc_id: Some(e.id.clone()),
                        }),
                }
            };
            match &c.intent {
                Intent::Upsert(_) => b.expect(ind, [p.key.clone()]),
                Intent::Remove { .. } => b.expect(ind, []),
            }
            if let Some(r) = result {
                b.record(ind, p.key.clone(), r);
            }
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::IocType;

    fn key(t: IocType, v: &str) -> IocKey {
        IocKey {
            ioc_type: t,
            value: v.into(),
        }
    }

    fn at() -> DateTime<Utc> {
        "2026-10-03T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn deployed_only_when_every_ioc_is() {
        let (a, b) = (key(IocType::Sha256, "aa"), key(IocType::Md5, "bb"));
        let mut rb = ReportBuilder::new(at());
        rb.expect("indicator--1", [a.clone(), b.clone()]);
        rb.record(
            "indicator--1",
            a.clone(),
            IocResult::Deployed {
                ioc_id: "id-a".into(),
            },
        );
        // b has no outcome yet: no report.
        assert!(rb.build().is_empty());

        let mut rb = ReportBuilder::new(at());
        rb.expect("indicator--1", [a.clone(), b.clone()]);
        rb.record(
            "indicator--1",
            a.clone(),
            IocResult::Deployed {
                ioc_id: "id-a".into(),
            },
        );
        rb.record(
            "indicator--1",
            b.clone(),
            IocResult::Deployed {
                ioc_id: "id-b".into(),
            },
        );
        let r = rb.build();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, DeploymentStatus::Deployed);
        // In IOC key order (type, then value).
        assert_eq!(r[0].external_id.as_deref(), Some("id-a,id-b"));
        assert_eq!(r[0].last_sync_at, Some(at()));
        assert_eq!(r[0].deployed_at, Some(at()));
    }

    #[test]
    fn one_failure_fails_the_indicator_with_falcons_message() {
        let (a, b) = (key(IocType::Domain, "x.com"), key(IocType::Ipv4, "1.2.3.4"));
        let mut rb = ReportBuilder::new(at());
        rb.expect("indicator--1", [a.clone(), b.clone()]);
        rb.record(
            "indicator--1",
            a.clone(),
            IocResult::Deployed {
                ioc_id: "id-a".into(),
            },
        );
        rb.record(
            "indicator--1",
            b.clone(),
            IocResult::Failed {
                message: "Invalid value for ipv4".into(),
                ioc_id: None,
            },
        );
        let r = rb.build();
        assert_eq!(r[0].status, DeploymentStatus::Failed);
        assert_eq!(
            r[0].error_message.as_deref(),
            Some("Invalid value for ipv4")
        );
        assert_eq!(r[0].external_id.as_deref(), Some("id-a"));
    }

    #[test]
    fn withdrawal_reports_removed_and_a_value_change_reports_deployed() {
        let old = key(IocType::Domain, "old.com");
        let new = key(IocType::Domain, "new.com");
        let mut rb = ReportBuilder::new(at());
        rb.expect("indicator--gone", []);
        rb.record(
            "indicator--gone",
            old.clone(),
            IocResult::Removed {
                ioc_id: Some("id-old".into()),
            },
        );
        rb.expect("indicator--moved", [new.clone()]);
        rb.record(
            "indicator--moved",
            old,
            IocResult::Removed {
                ioc_id: Some("id-o".into()),
            },
        );
        rb.record(
            "indicator--moved",
            new,
            IocResult::Deployed {
                ioc_id: "id-n".into(),
            },
        );
        let r = rb.build();
        assert_eq!(r[0].indicator_id, "indicator--gone");
        assert_eq!(r[0].status, DeploymentStatus::Removed);
        assert_eq!(r[0].removed_at, Some(at()));
        assert_eq!(r[0].external_id.as_deref(), Some("id-old"));
        assert_eq!(r[1].status, DeploymentStatus::Deployed);
        assert_eq!(r[1].external_id.as_deref(), Some("id-n"));
    }

    #[test]
    fn a_written_batch_reports_per_indicator() {
        use crate::batch::{Batch, Change};
        use crate::mapping::{MappingOptions, map_indicator};
        let stix = serde_json::json!({"type": "indicator", "id": "indicator--a", "pattern_type": "stix",
            "pattern": "[domain-name:value = 'one.com' OR domain-name:value = 'two.com']"});
        let m = map_indicator(&stix, &MappingOptions::default(), at());
        assert_eq!(m.iocs.len(), 2);
        let mut batch = Batch::new();
        for i in &m.iocs {
            batch.push(Change {
                key: i.key.clone(),
                intent: Intent::Upsert(i.clone()),
                event_id: "1-0".into(),
                indicator_id: Some("indicator--a".into()),
            });
        }
        let gone = key(IocType::Domain, "gone.com");
        batch.push(Change {
            key: gone.clone(),
            intent: Intent::Remove { labels: vec![] },
            event_id: "2-0".into(),
            indicator_id: Some("indicator--b".into()),
        });
        let existing = |k: &IocKey, id: &str, owner: &str| ExistingIoc {
            id: id.into(),
            key: k.clone(),
            action: Some("detect".into()),
            mobile_action: None,
            severity: None,
            platforms: vec![],
            tags: vec![format!("opencti:{owner}")],
            description: None,
            expiration: None,
            applied_globally: Some(true),
        };
        let (k1, k2) = (m.iocs[0].key.clone(), m.iocs[1].key.clone());
        let keys = [k1.clone(), k2.clone(), gone.clone()];
        // Before: only `gone` was there, deployed for indicator b.
        let mut held = Holdings::default();
        let before: HashMap<IocKey, ExistingIoc> =
            [(gone.clone(), existing(&gone, "id-g", "indicator--b"))].into();
        held.looked_up(&keys, &before);
        // Falcon created the first value and deleted `gone`; it refused the second value.
        held.apply(vec![
            (
                k1.clone(),
                Held::Present(existing(&k1, "id-1", "indicator--a")),
            ),
            (gone.clone(), Held::Absent),
        ]);
        let pending = batch.pending();
        let dead: HashMap<IocKey, String> = [(k2.clone(), "Invalid value".to_string())].into();
        held.withdrawing(gone.clone());
        let r = batch_reports(&pending, &held, &dead, at());
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].indicator_id.as_str(), r[0].status),
            ("indicator--a", DeploymentStatus::Failed)
        );
        assert_eq!(
            (r[1].indicator_id.as_str(), r[1].status),
            ("indicator--b", DeploymentStatus::Removed)
        );
        assert_eq!(r[1].external_id.as_deref(), Some("id-g"));
        // Both written: deployed with both ids.
        held.apply(vec![(
            k2.clone(),
            Held::Present(existing(&k2, "id-2", "indicator--a")),
        )]);
        let r = batch_reports(&pending, &held, &HashMap::new(), at());
        assert_eq!(r[0].status, DeploymentStatus::Deployed);
        assert_eq!(
            r[0].external_id.as_deref().map(|x| x.split(',').count()),
            Some(2)
        );
    }

    #[test]
    fn a_removal_of_an_ioc_never_deployed_for_the_indicator_reports_nothing() {
        use crate::batch::{Batch, Change};
        // An expired indicator shares its value with a live one, which keeps the IOC.
        let k = key(IocType::Domain, "shared.example.org");
        let mut batch = Batch::new();
        batch.push(Change {
            key: k.clone(),
            intent: Intent::Remove { labels: vec![] },
            event_id: "1-0".into(),
            indicator_id: Some("indicator--expired".into()),
        });
        let live = ExistingIoc {
            id: "id-s".into(),
            key: k.clone(),
            action: Some("detect".into()),
            mobile_action: Some("detect".into()),
            severity: None,
            platforms: vec![],
            tags: vec!["opencti:indicator--live".into()],
            description: None,
            expiration: None,
            applied_globally: Some(true),
        };
        let mut held = Holdings::default();
        held.looked_up(
            std::slice::from_ref(&k),
            &[(k.clone(), live.clone())].into(),
        );
        let pending = batch.pending();
        let none = HashMap::new();
        let r = batch_reports(&pending, &held, &none, at());
        assert!(r.is_empty(), "never deployed, never removed: {r:?}");

        // The same removal by an indicator that did own the IOC (with the live one): removed.
        let mut shared = live.clone();
        shared.tags.push("opencti:indicator--expired".into());
        let mut held = Holdings::default();
        held.looked_up(std::slice::from_ref(&k), &[(k.clone(), shared)].into());
        held.apply(vec![(
            k.clone(),
            Held::Updated(IocUpdate {
                id: "id-s".into(),
                key: k.clone(),
                action: None,
                severity: None,
                platforms: None,
                tags: live.tags.clone(),
                description: None,
                expiration: None,
                full: false,
                soft_delete: false,
            }),
        )]);
        let r = batch_reports(&pending, &held, &none, at());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, DeploymentStatus::Removed);
        assert_eq!(r[0].external_id.as_deref(), Some("id-s"));
    }

    #[test]
    fn external_id_never_exceeds_the_platform_limit() {
        let ids: Vec<String> = (0..40).map(|i| format!("{i:064}")).collect();
        let x = external_id(ids.iter().map(String::as_str)).unwrap();
        assert!(x.len() <= MAX_EXTERNAL_ID_CHARS);
        assert_eq!(x.split(',').count(), 15);
        assert_eq!(external_id([]), None);
    }
}
