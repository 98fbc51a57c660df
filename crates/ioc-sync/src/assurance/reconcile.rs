//! The reconciliation diff: each deployment OpenCTI lists for the platform is compared with the
//! IOCs the connector owns in Falcon, and becomes a report and possibly an action (reference
//! §5.3, with our differences below).
//!
//! Memory: the Falcon side is an index owner → IOC ids, type and value (about 460 bytes per IOC
//! with the hit collection's value index, measured; `docs/benchmarks.md`); the listing is streamed
//! and decided one deployment at a time, never held.
//!
//! Guards: a truncated Falcon read decides no absence (no `removed`, no re-push); a deployment
//! reported at or after the run's start (by the stream, during the read) is left alone; the
//! listing itself is strict (`opencti-client` errors on a repeated or missing cursor), and the
//! caller abandons the run on a listing error.
//!
//! Differences from upstream: IOCs are matched by their owner tag (`opencti:<indicator id>`),
//! which holds every value of the pattern, not by the first value of the pattern; indicators that
//! own live IOCs but have no listed deployment are reported `active` ([`Reconciler::discovered`]),
//! which fills the Deployments tab for indicators synced before the feature was turned on.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use opencti_client::{Deployment, DeploymentReport, DeploymentStatus};

use super::report::external_id;
use crate::batch::{ExistingIoc, is_withdrawn, owners_of};
use crate::mapping::IocKey;

/// The IOCs of one owning indicator, and whether a listed deployment named it.
#[derive(Debug)]
struct Owned {
    /// (Falcon id, type and value, live).
    iocs: Vec<(Box<str>, IocKey, bool)>,
    visited: bool,
}

/// The owned IOCs, by owning indicator (STIX id). Sized for a million IOCs: each indicator id is
/// stored once (shared with the hit collection's value index) and most indicators own one IOC,
/// so their lists are allocated for one.
#[derive(Debug, Default)]
pub struct FalconIndex {
    by_owner: HashMap<Arc<str>, Owned>,
    iocs: usize,
}

impl FalconIndex {
    /// Adds one owned IOC (live = not withdrawn and not past its expiration at `now`); answers
    /// its owners (the indicator ids, shared).
    pub fn insert(&mut self, ioc: &ExistingIoc, now: DateTime<Utc>) -> Vec<Arc<str>> {
        let live = !is_withdrawn(ioc) && ioc.expiration.is_none_or(|e| e > now);
        self.iocs += 1;
        let mut owners = Vec::new();
        for owner in owners_of(&ioc.tags) {
            let entry = (ioc.id.as_str().into(), ioc.key.clone(), live);
            match self.by_owner.get_key_value(owner.as_str()) {
                Some((k, _)) => {
                    let k = k.clone();
                    self.by_owner
                        .get_mut(&k)
                        .expect("just found")
                        .iocs
                        .push(entry);
                    owners.push(k);
                }
                None => {
                    let k: Arc<str> = owner.into();
                    // `vec![]` allocates for exactly one; a `push` on an empty Vec for four.
                    self.by_owner.insert(
                        k.clone(),
                        Owned {
                            iocs: vec![entry],
                            visited: false,
                        },
                    );
                    owners.push(k);
                }
            }
        }
        owners
    }

    /// IOCs indexed.
    pub fn iocs(&self) -> usize {
        self.iocs
    }

    fn live(&self, owner: &str) -> Vec<(&str, &IocKey)> {
        self.by_owner
            .get(owner)
            .map(|o| {
                o.iocs
                    .iter()
                    .filter(|(_, _, l)| *l)
                    .map(|(id, k, _)| (id.as_ref(), k))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A listed deployment named `owner`.
    fn visit(&mut self, owner: &str) {
        if let Some(o) = self.by_owner.get_mut(owner) {
            o.visited = true;
        }
    }
}

/// What to do in Falcon before sending the decision's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Withdraw these IOCs (delete or deactivate, per `CROWDSTRIKE_PERMANENT_DELETE`), then report
    /// `removed`; on failure report nothing (the next run retries; the platform may expire it).
    Withdraw {
        /// Indicator STIX id (the owner tag to drop).
        indicator: String,
        /// The live IOCs it owns.
        iocs: Vec<IocKey>,
    },
    /// Read the indicator and push it again ("Deploy again"), then report `deployed` or `failed`.
    Repush {
        /// Indicator internal id.
        indicator: String,
        /// Indicator STIX id.
        standard_id: String,
    },
}

/// The decision for one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The report to send (after the action, if any, succeeded).
    pub report: Option<DeploymentReport>,
    /// The Falcon action to take first.
    pub action: Option<Action>,
}

/// Counters of a run (reference §5.5 names).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileCounts {
    /// Deployments listed.
    pub deployments: u64,
    /// Reported `active` (present in Falcon).
    pub confirmed_active: u64,
    /// Indicators with live IOCs and no listed deployment, reported `active`.
    pub discovered: u64,
    /// Reported `removed` (absent, or withdrawn as asked).
    pub marked_removed: u64,
    /// Left alone: reported by the stream during the run.
    pub deferred: u64,
    /// Re-pushes asked ("Deploy again").
    pub repush: u64,
    /// Withdrawals asked ("Remove from this platform", revoked, expired).
    pub withdraw: u64,
    /// No absence decided because the Falcon read was truncated.
    pub absence_unconfirmed: u64,
    /// Deployments whose indicator is unreadable (`from: null`) or has no STIX id: skipped.
    pub unreadable: u64,
    /// Nothing to report (e.g. `failed` and absent: waits for an analyst).
    pub untouched: u64,
}

/// Decides deployment by deployment; see the module docs.
#[derive(Debug)]
pub struct Reconciler {
    index: FalconIndex,
    run_start: DateTime<Utc>,
    falcon_complete: bool,
    counts: ReconcileCounts,
}

impl Reconciler {
    /// A run started at `run_start` over the owned IOCs read from Falcon (`falcon_complete` =
    /// the read was not truncated).
    pub fn new(index: FalconIndex, run_start: DateTime<Utc>, falcon_complete: bool) -> Self {
        Reconciler {
            index,
            run_start,
            falcon_complete,
            counts: ReconcileCounts::default(),
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> ReconcileCounts {
        self.counts
    }

    fn report(
        &self,
        indicator: &str,
        status: DeploymentStatus,
        iocs: &[(&str, &IocKey)],
    ) -> DeploymentReport {
        let mut r = DeploymentReport::new(indicator, status);
        r.last_sync_at = Some(self.run_start);
        r.external_id = external_id(iocs.iter().map(|(id, _)| *id));
        if status == DeploymentStatus::Removed {
            r.removed_at = Some(self.run_start);
        }
        r
    }

    /// The decision for one listed deployment.
    pub fn decide(&mut self, d: &Deployment) -> Decision {
        self.counts.deployments += 1;
        let none = Decision {
            report: None,
            action: None,
        };
        let Some(ind) = d.from.as_ref() else {
            self.counts.unreadable += 1;
            return none;
        };
        let Some(stix) = ind
            .standard_id
            .as_deref()
            .filter(|s| s.starts_with("indicator--"))
        else {
            self.counts.unreadable += 1;
            return none;
        };
        self.index.visit(stix);
        let live = self.index.live(stix);
        let status = d.deployment_status;
        let must_remove = d.revoked
            || ind.revoked
            || ind.valid_until.is_some_and(|v| v <= self.run_start)
            || status == DeploymentStatus::Expired;
        if must_remove {
            if live.is_empty() {
                if status == DeploymentStatus::Removed {
                    self.counts.untouched += 1;
                    return none;
                }
                self.counts.marked_removed += 1;
                return Decision {
                    report: Some(self.report(stix, DeploymentStatus::Removed, &[])),
                    action: None,
                };
            }
            self.counts.withdraw += 1;
            return Decision {
                report: Some(self.report(stix, DeploymentStatus::Removed, &live)),
                action: Some(Action::Withdraw {
                    indicator: stix.to_owned(),
                    iocs: live.iter().map(|(_, k)| (*k).clone()).collect(),
                }),
            };
        }
        if !live.is_empty() {
            self.counts.confirmed_active += 1;
            return Decision {
                report: Some(self.report(stix, DeploymentStatus::Active, &live)),
                action: None,
            };
        }
        // Absent from Falcon.
        if !self.falcon_complete {
            self.counts.absence_unconfirmed += 1;
            return none;
        }
        if d.last_sync_at.is_some_and(|t| t >= self.run_start) {
            self.counts.deferred += 1;
            return none;
        }
        match status {
            DeploymentStatus::Pending => {
                self.counts.repush += 1;
                Decision {
                    report: None,
                    action: Some(Action::Repush {
                        indicator: ind.id.clone(),
                        standard_id: stix.to_owned(),
                    }),
                }
            }
            DeploymentStatus::Deployed | DeploymentStatus::Active => {
                self.counts.marked_removed += 1;
                Decision {
                    report: Some(self.report(stix, DeploymentStatus::Removed, &[])),
                    action: None,
                }
            }
            _ => {
                self.counts.untouched += 1;
                none
            }
        }
    }

    /// After a complete listing: `active` for every indicator owning live IOCs that no listed
    /// deployment named. Call only when the listing ended without error.
    pub fn discovered(&mut self) -> Vec<DeploymentReport> {
        let mut owners: Vec<&Arc<str>> = self
            .index
            .by_owner
            .iter()
            .filter(|(_, o)| !o.visited)
            .map(|(k, _)| k)
            .collect();
        owners.sort();
        let mut out = Vec::new();
        for o in owners {
            let live = self.index.live(o);
            if !live.is_empty() {
                out.push(self.report(o, DeploymentStatus::Active, &live));
            }
        }
        self.counts.discovered += out.len() as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{IocType, owner_tag};
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ioc(id: &str, owner: &str, soft_deleted: bool) -> ExistingIoc {
        let mut tags = vec![owner_tag(owner).unwrap()];
        if soft_deleted {
            tags.push("TO_DELETE".into());
        }
        ExistingIoc {
            id: id.into(),
            key: IocKey {
                ioc_type: IocType::Domain,
                value: format!("{id}.com"),
            },
            action: Some(if soft_deleted { "no_action" } else { "detect" }.into()),
            mobile_action: None,
            severity: None,
            platforms: vec![],
            tags,
            description: None,
            expiration: None,
            applied_globally: Some(true),
        }
    }

    fn dep(ind: &str, status: &str, revoked: bool, synced: &str) -> Deployment {
        serde_json::from_value(json!({"id": format!("rel-{ind}"), "deployment_status": status, "revoked": revoked,
            "last_sync_at": synced, "from": {"id": format!("int-{ind}"), "standard_id": format!("indicator--{ind}"),
            "revoked": false, "valid_until": null}}))
        .unwrap()
    }

    fn setup(complete: bool) -> Reconciler {
        let start = t("2026-10-03T10:00:00Z");
        let mut ix = FalconIndex::default();
        ix.insert(&ioc("i1", "indicator--live", false), start);
        ix.insert(&ioc("i2", "indicator--live", false), start);
        ix.insert(&ioc("i3", "indicator--removeme", false), start);
        ix.insert(&ioc("i4", "indicator--soft", true), start);
        ix.insert(&ioc("i5", "indicator--unlisted", false), start);
        Reconciler::new(ix, start, complete)
    }

    #[test]
    fn an_indicator_id_is_stored_once_for_all_its_iocs() {
        let start = t("2026-10-03T10:00:00Z");
        let mut ix = FalconIndex::default();
        let a = ix.insert(&ioc("i1", "indicator--shared", false), start);
        assert_eq!(
            ix.by_owner["indicator--shared"].iocs.capacity(),
            1,
            "most indicators own one IOC: room for one, not four"
        );
        let b = ix.insert(&ioc("i2", "indicator--shared", false), start);
        assert_eq!(a.len(), 1);
        assert!(Arc::ptr_eq(&a[0], &b[0]), "one allocation per indicator id");
        assert_eq!(ix.by_owner["indicator--shared"].iocs.len(), 2);
        assert_eq!(ix.iocs(), 2);
    }

    #[test]
    fn decisions_follow_the_table() {
        let mut r = setup(true);
        let old = "2026-10-03T09:00:00.000Z";
        let d = r.decide(&dep("live", "deployed", false, old));
        let rep = d.report.unwrap();
        assert_eq!(rep.status, DeploymentStatus::Active);
        assert_eq!(rep.external_id.as_deref(), Some("i1,i2"));
        assert_eq!(rep.last_sync_at, Some(t("2026-10-03T10:00:00Z")));
        // "Remove from this platform": withdraw first, then removed.
        let d = r.decide(&dep("removeme", "active", true, old));
        assert_eq!(
            d.action,
            Some(Action::Withdraw {
                indicator: "indicator--removeme".into(),
                iocs: vec![IocKey {
                    ioc_type: IocType::Domain,
                    value: "i3.com".into()
                }]
            })
        );
        assert_eq!(d.report.unwrap().status, DeploymentStatus::Removed);
        // Soft-deleted IOC only: absent; a live deployment becomes removed.
        let d = r.decide(&dep("soft", "deployed", false, old));
        assert_eq!(d.report.unwrap().status, DeploymentStatus::Removed);
        // "Deploy again" on an absent indicator: re-push.
        let d = r.decide(&dep("gone", "pending", false, old));
        assert_eq!(
            d.action,
            Some(Action::Repush {
                indicator: "int-gone".into(),
                standard_id: "indicator--gone".into()
            })
        );
        // Reported by the stream during the run: left alone.
        let d = r.decide(&dep("racy", "deployed", false, "2026-10-03T10:00:01.000Z"));
        assert_eq!(
            d,
            Decision {
                report: None,
                action: None
            }
        );
        // Failed and absent: waits for an analyst.
        assert_eq!(r.decide(&dep("bad", "failed", false, old)).report, None);
        // Unlisted but live in Falcon: discovered.
        let disc = r.discovered();
        assert_eq!(disc.len(), 1);
        assert_eq!(disc[0].indicator_id, "indicator--unlisted");
        let c = r.counts();
        assert_eq!(
            (
                c.confirmed_active,
                c.withdraw,
                c.marked_removed,
                c.repush,
                c.deferred,
                c.discovered
            ),
            (1, 1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn a_truncated_falcon_read_never_withdraws_nor_removes() {
        let mut r = setup(false);
        let old = "2026-10-03T09:00:00.000Z";
        assert_eq!(
            r.decide(&dep("soft", "deployed", false, old)),
            Decision {
                report: None,
                action: None
            }
        );
        assert_eq!(
            r.decide(&dep("gone", "pending", false, old)),
            Decision {
                report: None,
                action: None
            }
        );
        assert_eq!(r.counts().absence_unconfirmed, 2);
        // What is present is still confirmed.
        assert_eq!(
            r.decide(&dep("live", "deployed", false, old))
                .report
                .unwrap()
                .status,
            DeploymentStatus::Active
        );
    }

    #[test]
    fn an_unreadable_indicator_is_counted_and_skipped() {
        let mut r = setup(true);
        let d: Deployment = serde_json::from_value(
            json!({"id": "rel", "deployment_status": "active", "from": null}),
        )
        .unwrap();
        assert_eq!(
            r.decide(&d),
            Decision {
                report: None,
                action: None
            }
        );
        assert_eq!(r.counts().unreadable, 1);
    }
}
