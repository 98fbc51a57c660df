//! One status report per indicator from the IOC write outcomes of a batch (reference §4.3, with
//! our differences: every value of a pattern counts, an indicator is `deployed` only when all its
//! IOCs are, and the write time is sent as `last_sync_at`, so a late re-send never overrides a
//! newer reconciliation, §7.13).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use opencti_client::{DeploymentReport, DeploymentStatus, MAX_EXTERNAL_ID_CHARS, cut_message};

use crate::batch::{ExistingIoc, Intent, Pending, is_withdrawn, owners_of};
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

/// The reports of a written batch: `pending` its coalesced changes, `after` the owned IOCs as
/// they are once the batch was written (by key), `dead` the keys whose changes were
/// dead-lettered, with Falcon's message, `withdrawn` the keys the batch deleted or soft-deleted.
/// An upsert whose IOC is live and owned by the indicator is deployed; a removal is removed when
/// the batch withdrew the IOC, or the IOC is still there but no longer owned by the indicator (a
/// shared value). A removal of an IOC that was never there reports nothing (an indicator that
/// was never deployed gets no deployment).
pub fn batch_reports(
    pending: &[&Pending],
    after: &std::collections::HashMap<IocKey, ExistingIoc>,
    dead: &std::collections::HashMap<IocKey, String>,
    withdrawn: &std::collections::HashSet<IocKey>,
    at: DateTime<Utc>,
) -> Vec<DeploymentReport> {
    let mut b = ReportBuilder::new(at);
    for p in pending {
        let now_ioc = after.get(&p.key);
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
                    Intent::Remove { .. } => (withdrawn.contains(&p.key)
                        || (now_ioc.is_some() && (!owned || !live)))
                        .then(|| IocResult::Removed {
                            ioc_id: now_ioc.map(|e| e.id.clone()),
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
        let existing = |k: &IocKey, id: &str| ExistingIoc {
            id: id.into(),
            key: k.clone(),
            action: Some("detect".into()),
            mobile_action: None,
            severity: None,
            platforms: vec![],
            tags: vec!["opencti:indicator--a".into()],
            description: None,
            expiration: None,
            applied_globally: Some(true),
        };
        let (k1, k2) = (m.iocs[0].key.clone(), m.iocs[1].key.clone());
        let mut after = std::collections::HashMap::new();
        after.insert(k1.clone(), existing(&k1, "id-1"));
        let pending = batch.pending();
        // The second value was refused: the indicator failed; the withdrawn one is removed.
        let mut dead = std::collections::HashMap::new();
        dead.insert(k2.clone(), "Invalid value".to_string());
        let r = batch_reports(
            &pending,
            &after,
            &dead,
            &std::collections::HashSet::new(),
            at(),
        );
        assert_eq!(
            r.len(),
            1,
            "a removal of an IOC that was never there reports nothing"
        );
        let withdrawn: std::collections::HashSet<IocKey> = [gone.clone()].into();
        let r = batch_reports(&pending, &after, &dead, &withdrawn, at());
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].indicator_id.as_str(), r[0].status),
            ("indicator--a", DeploymentStatus::Failed)
        );
        assert_eq!(
            (r[1].indicator_id.as_str(), r[1].status),
            ("indicator--b", DeploymentStatus::Removed)
        );
        // Both written: deployed with both ids.
        after.insert(k2.clone(), existing(&k2, "id-2"));
        let r = batch_reports(
            &pending,
            &after,
            &std::collections::HashMap::new(),
            &withdrawn,
            at(),
        );
        assert_eq!(r[0].status, DeploymentStatus::Deployed);
        assert_eq!(
            r[0].external_id.as_deref().map(|x| x.split(',').count()),
            Some(2)
        );
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
