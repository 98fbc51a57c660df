//! Dissemination assurance on the simulated platform (`dissemination-assurance.md` Appendix A):
//! security platforms, one `deployed-on` record per (indicator, platform) with the server's
//! transition rules (§4.2), hit reports with the replay rules and the hits sighting (§6.4), the
//! analyst actions (§3.8) and the expiry manager (§4.4). Written from the reference, sharing no
//! type with the client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::model::ts;
use super::store::{Store, parse_date};

/// Most reports per `indicatorReportDeployments` call.
pub(crate) const MAX_BATCH: usize = 500;
const STATUSES: [&str; 6] = [
    "pending", "deployed", "active", "failed", "removed", "expired",
];

/// One security platform entity.
#[derive(Debug, Clone)]
pub(crate) struct Platform {
    pub(crate) id: String,
    pub(crate) standard_id: String,
    pub(crate) name: String,
    pub(crate) kind: Option<String>,
}

/// One `deployed-on` relationship.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dep {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) indicator: String,
    pub(crate) platform: String,
    pub(crate) status: String,
    pub(crate) external_id: Option<String>,
    pub(crate) deployed_at: Option<DateTime<Utc>>,
    pub(crate) last_sync_at: Option<DateTime<Utc>>,
    pub(crate) removed_at: Option<DateTime<Utc>>,
    pub(crate) hit_count: i64,
    pub(crate) first_hit_at: Option<DateTime<Utc>>,
    pub(crate) last_hit_at: Option<DateTime<Utc>>,
    pub(crate) last_hit_report_ids: Vec<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) revoked: bool,
    pub(crate) removal_requested_at: Option<DateTime<Utc>>,
    /// Reports applied as meaningful updates (history entries).
    pub(crate) history: u64,
}

/// The hits sighting of a pair.
#[derive(Debug, Clone)]
pub(crate) struct Sighting {
    pub(crate) id: String,
    pub(crate) attribute_count: i64,
    pub(crate) first_seen: DateTime<Utc>,
    pub(crate) last_seen: DateTime<Utc>,
}

#[derive(Default)]
struct Inner {
    platforms: BTreeMap<String, Platform>,
    by_name: HashMap<String, String>,
    /// (indicator internal id, platform internal id) → record.
    deps: HashMap<(String, String), Dep>,
    by_rel: HashMap<String, (String, String)>,
    sightings: HashMap<(String, String), Sighting>,
    next_seq: u64,
}

/// The one-second buckets of the write-back rate limits.
struct Buckets {
    limits: super::DeploymentRateLimits,
    /// Per kind: the second the bucket counts, and the calls admitted in it.
    used: Mutex<HashMap<&'static str, (Instant, u32)>>,
    /// Per kind: calls answered `Too many requests`.
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

/// Dissemination-assurance state and knobs.
pub(crate) struct Deployments {
    inner: Mutex<Inner>,
    buckets: Buckets,
    /// `false`: a platform version without the feature.
    pub(crate) enabled: AtomicBool,
    /// Offset of the platform clock from the wall clock, ms (tests move it forward).
    clock_offset_ms: AtomicI64,
    /// Removal grace period, ms.
    grace_ms: AtomicI64,
}

/// Outcome of one applied report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    Created,
    Updated,
    Unchanged,
}

fn uuid_of(name: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

fn norm_name(n: &str) -> String {
    n.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `sighting--` + UUIDv5(`<indicator>|<platform>`, UUIDv5(`opencti-indicator-deployment-hits`,
/// `b639ff3b-…`)) (reference §6.4 step 5).
pub(crate) fn sighting_id(indicator: &str, platform: &str) -> String {
    let base = uuid::Uuid::parse_str("b639ff3b-00eb-42ed-aa36-a8dd6f8fb4cf").expect("uuid");
    let ns = uuid::Uuid::new_v5(&base, b"opencti-indicator-deployment-hits");
    format!(
        "sighting--{}",
        uuid::Uuid::new_v5(&ns, format!("{indicator}|{platform}").as_bytes())
    )
}

fn date_arg(v: Option<&Value>) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_date(s)
            .map(Some)
            .map_err(|_| "Invalid date in deployment report".to_string()),
        Some(_) => Err("Invalid date in deployment report".into()),
    }
}

fn is_live(s: &str) -> bool {
    matches!(s, "deployed" | "active")
}

impl Deployments {
    pub(crate) fn new(
        enabled: bool,
        grace: Duration,
        limits: super::DeploymentRateLimits,
    ) -> Deployments {
        Deployments {
            inner: Mutex::new(Inner::default()),
            buckets: Buckets {
                limits,
                used: Mutex::new(HashMap::new()),
                refused: Mutex::new(BTreeMap::new()),
            },
            enabled: AtomicBool::new(enabled),
            clock_offset_ms: AtomicI64::new(0),
            grace_ms: AtomicI64::new(grace.as_millis() as i64),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("deployments lock")
    }

    /// Admits one call of `kind` (`single`, `batch` or `hits`) under the platform's rate limit
    /// (checked first, for the whole call, as the platform does); `Err` carries the wait, in ms,
    /// until the next bucket.
    pub(crate) fn admit(&self, kind: &'static str) -> Result<(), u64> {
        let l = &self.buckets.limits;
        let limit = match kind {
            "single" => l.single,
            "batch" => l.batch,
            _ => l.hits,
        };
        if limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut used = self.buckets.used.lock().expect("buckets lock");
        let (start, n) = used.entry(kind).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            (*start, *n) = (now, 0);
        }
        if *n < limit {
            *n += 1;
            return Ok(());
        }
        let wait = Duration::from_secs(1).saturating_sub(now.duration_since(*start));
        drop(used);
        *self
            .buckets
            .refused
            .lock()
            .expect("buckets lock")
            .entry(kind)
            .or_default() += 1;
        Err(wait.as_millis().max(1) as u64)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The platform clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn advance(&self, d: chrono::Duration) {
        self.clock_offset_ms
            .fetch_add(d.num_milliseconds(), Ordering::Relaxed);
    }

    pub(crate) fn set_grace(&self, d: Duration) {
        self.grace_ms.store(d.as_millis() as i64, Ordering::Relaxed);
    }

    /// `securityPlatformAdd`: upsert by normalized name.
    pub(crate) fn platform_add(&self, input: &Map<String, Value>) -> Result<Value, String> {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("");
        if name.chars().count() < 2 {
            return Err("The name must have at least 2 characters".into());
        }
        let kind = input
            .get("security_platform_type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let key = norm_name(name);
        let mut g = self.lock();
        let id = match g.by_name.get(&key) {
            Some(id) => id.clone(),
            None => {
                let id = uuid_of(&format!("platform|{key}"));
                let p = Platform {
                    standard_id: format!("identity--{}", uuid_of(&format!("identity|{key}"))),
                    id: id.clone(),
                    name: name.to_owned(),
                    kind: None,
                };
                g.platforms.insert(id.clone(), p);
                g.by_name.insert(key, id.clone());
                id
            }
        };
        let p = g.platforms.get_mut(&id).expect("platform");
        if kind.is_some() {
            p.kind = kind;
        }
        Ok(platform_json(p))
    }

    fn platform_key(g: &Inner, id: &str) -> Option<String> {
        if g.platforms.contains_key(id) {
            return Some(id.to_owned());
        }
        g.platforms
            .values()
            .find(|p| p.standard_id == id)
            .map(|p| p.id.clone())
    }

    pub(crate) fn platform(&self, id: &str) -> Value {
        let g = self.lock();
        Self::platform_key(&g, id)
            .and_then(|k| g.platforms.get(&k).map(platform_json))
            .unwrap_or(Value::Null)
    }

    /// `indicatorReportDeployments`.
    pub(crate) fn report_batch(
        &self,
        store: &Store,
        platform_id: &str,
        reports: &[Value],
    ) -> Result<Value, String> {
        if reports.len() > MAX_BATCH {
            return Err("A deployment batch cannot exceed 500 reports".into());
        }
        let platform = {
            let g = self.lock();
            Self::platform_key(&g, platform_id)
                .ok_or("Security platform not found or not accessible")?
        };
        let (mut created, mut updated, mut unchanged) = (0u64, 0u64, 0u64);
        let mut errors = Vec::new();
        for r in reports {
            let ind_arg = r.get("indicatorId").cloned().unwrap_or(Value::Null);
            let res = self.report_one(
                store,
                &platform,
                ind_arg.as_str().unwrap_or(""),
                r.get("status").and_then(Value::as_str).unwrap_or(""),
                r.get("externalId"),
                r.get("metadata"),
            );
            match res {
                Ok((Applied::Created, _)) => created += 1,
                Ok((Applied::Updated, _)) => updated += 1,
                Ok((Applied::Unchanged, _)) => unchanged += 1,
                Err(m) => errors.push(json!({"indicatorId": ind_arg, "message": m})),
            }
        }
        Ok(json!({
            "processed": created + updated + unchanged, "created": created, "updated": updated,
            "unchanged": unchanged, "errors": errors,
        }))
    }

    /// One status report (§4.2); answers the outcome and the relationship id.
    pub(crate) fn report_one(
        &self,
        store: &Store,
        platform: &str,
        indicator_id: &str,
        status: &str,
        external_id: Option<&Value>,
        metadata: Option<&Value>,
    ) -> Result<(Applied, String), String> {
        if !STATUSES.contains(&status) || status == "expired" {
            return Err("Deployment status is invalid or reserved to the platform".into());
        }
        let external_id = external_id
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if external_id
            .as_deref()
            .is_some_and(|x| x.chars().count() > 1000)
        {
            return Err("External id cannot exceed 1000 characters".into());
        }
        let meta = metadata.and_then(Value::as_object);
        let get = |k: &str| meta.and_then(|m| m.get(k));
        let error_message = get("error_message")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if error_message
            .as_deref()
            .is_some_and(|m| m.chars().count() > 5000)
        {
            return Err("Error message cannot exceed 5000 characters".into());
        }
        let deployed_at = date_arg(get("deployed_at"))?;
        let removed_at = date_arg(get("removed_at"))?;
        let now = self.now();
        let synced = date_arg(get("last_sync_at"))?.map_or(now, |d| d.min(now));
        let ind = store
            .get(indicator_id)
            .ok_or("Indicator not found or not accessible")?;
        let key = (ind.internal_id.clone(), platform.to_owned());
        let mut g = self.lock();
        let Some(cur) = g.deps.get(&key).cloned() else {
            // Rule 6: creation.
            let seq = g.next_seq;
            g.next_seq += 1;
            let id = uuid_of(&format!("deployed-on|{}|{}", key.0, key.1));
            let dep = Dep {
                id: id.clone(),
                seq,
                indicator: key.0.clone(),
                platform: key.1.clone(),
                status: status.to_owned(),
                external_id,
                deployed_at: is_live(status).then_some(deployed_at.unwrap_or(now)),
                last_sync_at: Some(synced),
                removed_at: (status == "removed").then_some(removed_at.unwrap_or(now)),
                error_message: if status == "failed" {
                    error_message
                } else {
                    None
                },
                ..Dep::default()
            };
            g.by_rel.insert(id.clone(), key.clone());
            g.deps.insert(key, dep);
            return Ok((Applied::Created, id));
        };
        // Rule 3: a report older than the stored sync time changes nothing.
        if cur.last_sync_at.is_some_and(|l| synced < l) {
            return Ok((Applied::Unchanged, cur.id));
        }
        // Rule 4: anti-downgrade.
        let effective = if status == "deployed" && cur.status == "active" {
            "active"
        } else if status == "pending" && is_live(&cur.status) {
            cur.status.as_str()
        } else {
            status
        }
        .to_owned();
        let mut next = cur.clone();
        next.status = effective.clone();
        if is_live(&effective) && !is_live(&cur.status) {
            next.deployed_at = Some(deployed_at.unwrap_or(now));
            next.removed_at = None;
        } else if is_live(&effective) && next.deployed_at.is_none() {
            next.deployed_at = Some(deployed_at.unwrap_or(now));
        }
        if effective == "removed" && cur.status != "removed" {
            next.removed_at = Some(removed_at.unwrap_or(now));
        }
        if let Some(x) = external_id {
            next.external_id = Some(x);
        }
        next.error_message = if effective == "failed" {
            error_message.or(cur.error_message.clone())
        } else {
            None
        };
        let meaningful = next.status != cur.status
            || next.external_id != cur.external_id
            || next.error_message != cur.error_message
            || next.deployed_at != cur.deployed_at
            || next.removed_at != cur.removed_at;
        next.last_sync_at = Some(synced);
        if meaningful {
            next.history += 1;
        }
        let id = next.id.clone();
        g.deps.insert(key, next);
        Ok((
            if meaningful {
                Applied::Updated
            } else {
                Applied::Unchanged
            },
            id,
        ))
    }

    /// `indicatorReportHits` (§6.4); answers the hits sighting.
    pub(crate) fn report_hits(
        &self,
        store: &Store,
        args: &Map<String, Value>,
    ) -> Result<Value, String> {
        let count = args
            .get("count")
            .and_then(Value::as_i64)
            .filter(|c| *c >= 1)
            .ok_or("Hit count must be a positive integer")?;
        let last = date_arg(args.get("lastHit"))
            .map_err(|_| "Invalid date in deployment report".to_string())?
            .ok_or(
                "The time of the last hit is required: it keeps a retried report from being counted twice",
            )?;
        let first = date_arg(args.get("firstHit"))?.unwrap_or(last);
        let report_id = args
            .get("reportId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if report_id
            .as_deref()
            .is_some_and(|r| r.chars().count() > 256)
        {
            return Err("A report id cannot exceed 256 characters".into());
        }
        if first > last {
            return Err("First hit cannot be after last hit".into());
        }
        let now = self.now();
        if last > now + chrono::Duration::minutes(5) {
            return Err(
                "The time of the last hit cannot be more than 5 minutes ahead of the platform clock"
                    .into(),
            );
        }
        let ind = args
            .get("indicatorId")
            .and_then(Value::as_str)
            .and_then(|i| store.get(i))
            .ok_or("Indicator not found or not accessible")?;
        let mut g = self.lock();
        let platform = args
            .get("platformId")
            .and_then(Value::as_str)
            .and_then(|p| Self::platform_key(&g, p))
            .ok_or("Security platform not found or not accessible")?;
        let key = (ind.internal_id.clone(), platform.clone());
        let existing = g.deps.get(&key).cloned();
        let replay = match existing.as_ref().and_then(|d| d.last_hit_at) {
            None => false,
            Some(wm) if last < wm => true,
            Some(wm) if last > wm => false,
            Some(_) => match &report_id {
                None => true,
                Some(r) => existing
                    .as_ref()
                    .is_some_and(|d| d.last_hit_report_ids.contains(r)),
            },
        };
        let mut added = 0;
        if !replay {
            added = count;
            let dep = match existing {
                None => {
                    let seq = g.next_seq;
                    g.next_seq += 1;
                    let id = uuid_of(&format!("deployed-on|{}|{}", key.0, key.1));
                    g.by_rel.insert(id.clone(), key.clone());
                    Dep {
                        id,
                        seq,
                        indicator: key.0.clone(),
                        platform: key.1.clone(),
                        status: "active".into(),
                        deployed_at: Some(first),
                        last_sync_at: Some(now),
                        hit_count: count,
                        first_hit_at: Some(first),
                        last_hit_at: Some(last),
                        last_hit_report_ids: report_id.iter().cloned().collect(),
                        history: 1,
                        ..Dep::default()
                    }
                }
                Some(mut d) => {
                    if d.last_hit_at == Some(last) {
                        if d.last_hit_report_ids.len() >= 100 {
                            return Err(
                                "At most 100 distinct hit reports can end at the same instant"
                                    .into(),
                            );
                        }
                        d.last_hit_report_ids.extend(report_id.iter().cloned());
                    } else {
                        d.last_hit_report_ids = report_id.iter().cloned().collect();
                    }
                    d.hit_count = d.hit_count.saturating_add(count).min(i64::from(i32::MAX));
                    d.last_hit_at = Some(last);
                    d.last_sync_at = Some(now);
                    d.first_hit_at = Some(d.first_hit_at.map_or(first, |f| f.min(first)));
                    let promote = matches!(d.status.as_str(), "pending" | "deployed" | "failed")
                        || (d.status == "removed" && d.removed_at.is_some_and(|r| r < last));
                    if promote {
                        if d.status == "removed" {
                            d.removed_at = None;
                            d.deployed_at = Some(first);
                        }
                        d.status = "active".into();
                        d.error_message = None;
                        d.deployed_at.get_or_insert(first);
                    }
                    d.history += 1;
                    d
                }
            };
            g.deps.insert(key.clone(), dep);
        }
        let dep = g.deps.get(&key).cloned();
        let hit_count = dep.as_ref().map_or(0, |d| d.hit_count);
        let sid = sighting_id(&key.0, &key.1);
        let s = g.sightings.entry(key).or_insert(Sighting {
            id: sid,
            attribute_count: 0,
            first_seen: first,
            last_seen: last,
        });
        s.attribute_count = (s.attribute_count + added).max(hit_count);
        s.first_seen = s.first_seen.min(first);
        s.last_seen = s.last_seen.max(last);
        Ok(sighting_json(s))
    }

    /// `stixCoreRelationships(relationship_type: ["deployed-on"], toId, filters)`: the number of
    /// matching records and the page `offset..offset + first` of them, in creation order (those
    /// whose indicator was deleted are gone with it). Only the page is rendered, so reading every
    /// page of a large platform costs O(records) per page, not O(records) renderings.
    pub(crate) fn list(
        &self,
        store: &Store,
        to: &[String],
        statuses: Option<&[String]>,
        offset: usize,
        first: usize,
    ) -> (usize, Vec<Value>) {
        let g = self.lock();
        let plats: Vec<String> = to
            .iter()
            .filter_map(|t| Self::platform_key(&g, t))
            .collect();
        let mut deps: Vec<&Dep> = g
            .deps
            .values()
            .filter(|d| to.is_empty() || plats.contains(&d.platform))
            .filter(|d| statuses.is_none_or(|s| s.contains(&d.status)))
            .collect();
        deps.sort_by_key(|d| d.seq);
        let live: Vec<(&Dep, _)> = deps
            .into_iter()
            .filter_map(|d| Some((d, store.get(&d.indicator)?)))
            .collect();
        let page = live
            .iter()
            .skip(offset)
            .take(first)
            .map(|(d, ind)| {
                let mut v = dep_json(d);
                v["from"] = ind.to_node(&store.refs);
                v
            })
            .collect();
        (live.len(), page)
    }

    /// "Deploy again" (§3.8).
    pub(crate) fn retry(&self, rel: &str) -> Result<Value, String> {
        let mut g = self.lock();
        let key = g
            .by_rel
            .get(rel)
            .cloned()
            .ok_or("Deployment not found or not accessible")?;
        let d = g.deps.get_mut(&key).expect("indexed");
        if !matches!(d.status.as_str(), "failed" | "removed" | "expired") {
            return Err("Only a failed, removed or expired deployment can be retried".into());
        }
        d.status = "pending".into();
        d.error_message = None;
        d.revoked = false;
        d.removal_requested_at = None;
        d.history += 1;
        Ok(dep_json(d))
    }

    /// "Remove from this platform" (§3.8): idempotent; the status is not changed.
    pub(crate) fn remove(&self, rel: &str) -> Result<Value, String> {
        let now = self.now();
        let mut g = self.lock();
        let key = g
            .by_rel
            .get(rel)
            .cloned()
            .ok_or("Deployment not found or not accessible")?;
        let d = g.deps.get_mut(&key).expect("indexed");
        if !d.revoked {
            d.revoked = true;
            d.removal_requested_at = Some(now);
            d.history += 1;
        }
        Ok(dep_json(d))
    }

    /// One run of the platform's manager (§4.4): live deployments whose removal is overdue become
    /// `expired`. Answers how many.
    pub(crate) fn manager_tick(&self, store: &Store) -> usize {
        let now = self.now();
        let grace = chrono::Duration::milliseconds(self.grace_ms.load(Ordering::Relaxed));
        let mut g = self.lock();
        let mut n = 0;
        for d in g.deps.values_mut() {
            if !is_live(&d.status) {
                continue;
            }
            let Some(ind) = store.get(&d.indicator) else {
                continue;
            };
            let overdue_validity = ind.valid_until < now - grace;
            let requested = if d.revoked {
                d.removal_requested_at
            } else if ind.revoked {
                Some(ind.updated_at)
            } else {
                None
            };
            if overdue_validity || requested.is_some_and(|r| r < now - grace) {
                d.status = "expired".into();
                d.history += 1;
                n += 1;
            }
        }
        n
    }

    /// Everything, for the control API.
    pub(crate) fn snapshot(&self) -> Value {
        let g = self.lock();
        let mut deps: Vec<&Dep> = g.deps.values().collect();
        deps.sort_by_key(|d| d.seq);
        let sightings: Vec<Value> = g
            .deps
            .keys()
            .filter_map(|k| {
                g.sightings.get(k).map(|s| {
                    let mut v = sighting_json(s);
                    v["indicator"] = k.0.clone().into();
                    v["platform"] = k.1.clone().into();
                    v
                })
            })
            .collect();
        let limited = self.buckets.refused.lock().expect("buckets lock").clone();
        json!({
            "enabled": self.enabled(),
            "now": ts(&self.now()),
            "rate_limited": limited,
            "platforms": g.platforms.values().map(platform_json).collect::<Vec<_>>(),
            "deployments": deps.iter().map(|d| {
                let mut v = dep_json(d);
                v["indicator"] = d.indicator.clone().into();
                v["platform"] = d.platform.clone().into();
                v["history"] = d.history.into();
                v
            }).collect::<Vec<_>>(),
            "sightings": sightings,
        })
    }
}

fn platform_json(p: &Platform) -> Value {
    json!({"__typename": "SecurityPlatform", "id": p.id, "standard_id": p.standard_id, "name": p.name,
           "entity_type": "SecurityPlatform", "security_platform_type": p.kind})
}

fn opt_ts(d: &Option<DateTime<Utc>>) -> Value {
    d.as_ref().map_or(Value::Null, |d| ts(d).into())
}

fn dep_json(d: &Dep) -> Value {
    json!({
        "__typename": "StixCoreRelationship", "id": d.id, "standard_id": format!("relationship--{}", d.id),
        "entity_type": "deployed-on", "relationship_type": "deployed-on", "revoked": d.revoked,
        "deployment_status": d.status, "external_id": d.external_id, "deployed_at": opt_ts(&d.deployed_at),
        "last_sync_at": opt_ts(&d.last_sync_at), "removed_at": opt_ts(&d.removed_at), "hit_count": d.hit_count,
        "first_hit_at": opt_ts(&d.first_hit_at), "last_hit_at": opt_ts(&d.last_hit_at),
        "last_hit_report_ids": d.last_hit_report_ids, "validation_status": "not_requested",
        "error_message": d.error_message,
    })
}

fn sighting_json(s: &Sighting) -> Value {
    json!({"__typename": "StixSightingRelationship", "id": s.id, "standard_id": s.id,
           "attribute_count": s.attribute_count, "first_seen": ts(&s.first_seen),
           "last_seen": ts(&s.last_seen), "x_opencti_negative": false})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sighting_namespace_is_the_references() {
        let base = uuid::Uuid::parse_str("b639ff3b-00eb-42ed-aa36-a8dd6f8fb4cf").unwrap();
        let ns = uuid::Uuid::new_v5(&base, b"opencti-indicator-deployment-hits");
        assert_eq!(ns.to_string(), "46b31f21-81c7-526b-8092-ab0c99054b5e");
        assert!(sighting_id("a", "b").starts_with("sighting--"));
    }
}
