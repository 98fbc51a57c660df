//! Hits: Falcon alerts on the connector's IOCs become hit reports per indicator.
//!
//! Differences from upstream (reference §6 and §7.1, §7.3, §7.16), and why:
//!
//! - every value of every indicator is matched (an index value → indicators built from all the
//!   IOCs of each pattern), not only the first value of the pattern;
//! - alerts are read in closed, non-overlapping windows `[since, until)` whose end lies a settle
//!   delay ([`SETTLE`]) in the past, so an alert that becomes visible up to that long after its
//!   creation (ingestion lag) is still counted, instead of being dropped by a time watermark;
//! - within a window, alerts are de-duplicated by `composite_id` (live paging can repeat one);
//! - the window is persisted before its reports are sent and each report id is derived from
//!   (indicator, window), so a re-sent or replayed window (restart, lost answer) sends the same
//!   report ids and the platform counts it once (its replay rule, §6.4).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use opencti_client::HitReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long after its creation an alert may still become visible and be counted.
pub const SETTLE: Duration = Duration::from_secs(15 * 60);
/// First window on a first run: this far back (upstream: max(interval, 1 h)).
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(3600);
/// A saved start older than this is brought forward (upstream: 7 days).
pub const MAX_CATCH_UP: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most alerts one window may hold; beyond, the window is halved and read again.
pub const MAX_ALERTS_PER_WINDOW: usize = 100_000;

const REPORT_NS: uuid::Uuid = uuid::Uuid::from_u128(0x5c1d_7a2e_3b94_4f0a_9d61_0c8e_4b7f_a215);

/// The persisted hit cursor: hits before `since` were reported; `until`, when set, is the end of
/// the window being reported (a restart redoes exactly that window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitCursor {
    /// Start of the next window (inclusive).
    pub since: DateTime<Utc>,
    /// End (exclusive) of the window in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// A window of alert creation times, `[since, until)`, whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub since: DateTime<Utc>,
    /// Exclusive end.
    pub until: DateTime<Utc>,
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Window {
    /// The window to read now: the one in progress if any, else from the saved start (or
    /// [`FIRST_LOOKBACK`] ago, at most [`MAX_CATCH_UP`] ago) to `now − settle`. `None` when it
    /// would be empty.
    pub fn plan(
        cursor: Option<&HitCursor>,
        now: DateTime<Utc>,
        settle: Duration,
    ) -> Option<Window> {
        if let Some(HitCursor {
            since,
            until: Some(until),
        }) = cursor
        {
            return (since < until).then_some(Window {
                since: *since,
                until: *until,
            });
        }
        let floor = (now - dur(MAX_CATCH_UP)).trunc_subsecs(0);
        let since = cursor
            .map(|c| c.since)
            .unwrap_or_else(|| now - dur(FIRST_LOOKBACK))
            .trunc_subsecs(0)
            .max(floor);
        let until = (now - dur(settle)).trunc_subsecs(0);
        (since < until).then_some(Window { since, until })
    }

    /// The cursor to persist before reporting this window.
    pub fn in_progress(&self) -> HitCursor {
        HitCursor {
            since: self.since,
            until: Some(self.until),
        }
    }

    /// The cursor to persist once every report of the window was delivered or refused.
    pub fn done(&self) -> HitCursor {
        HitCursor {
            since: self.until,
            until: None,
        }
    }

    /// The first half (whole seconds), for a window holding too many alerts; `None` when it is
    /// one second long.
    pub fn halve(&self) -> Option<Window> {
        let secs = (self.until - self.since).num_seconds();
        (secs > 1).then(|| Window {
            since: self.since,
            until: self.since + chrono::Duration::seconds(secs / 2),
        })
    }

    /// The Falcon alert filter (FQL) of the window.
    pub fn filter(&self) -> String {
        let f = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!(
            "created_timestamp:>='{}'+created_timestamp:<'{}'",
            f(self.since),
            f(self.until)
        )
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.since <= t && t < self.until
    }
}

/// Normalizes a value for matching: trimmed, lower case (IOC types are hashes, IPs, domains).
pub fn normalize(v: &str) -> String {
    v.trim().to_lowercase()
}

/// Every pushed value → the indicators that want it (an IOC value may be shared).
#[derive(Debug, Default, Clone)]
pub struct ValueIndex {
    map: HashMap<Box<str>, Vec<Arc<str>>>,
}

impl ValueIndex {
    /// Adds one value of one indicator.
    pub fn insert(&mut self, indicator_id: &str, value: &str) {
        self.insert_shared(&Arc::from(indicator_id), value);
    }

    /// Adds one value of one indicator whose id is shared with another index (stored once).
    pub fn insert_shared(&mut self, indicator_id: &Arc<str>, value: &str) {
        let v = self
            .map
            .entry(normalize(value).into_boxed_str())
            .or_insert_with(|| Vec::with_capacity(1));
        if !v.iter().any(|i| i == indicator_id) {
            v.push(indicator_id.clone());
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn get(&self, v: &str) -> &[Arc<str>] {
        self.map.get(v).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[derive(Debug, Clone, Copy)]
struct Agg {
    count: u32,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// Counters of one window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HitStats {
    /// Alerts read.
    pub alerts: u64,
    /// Alerts read twice (same `composite_id`), counted once.
    pub duplicates: u64,
    /// Alerts outside the window (ignored).
    pub outside: u64,
    /// Alerts matching no indicator.
    pub unmatched: u64,
    /// Alerts without a readable time or id, or with malformed IOC fields (counted and skipped).
    pub malformed: u64,
    /// Hits counted (one per alert per indicator).
    pub hits: u64,
}

/// Aggregates the alerts of one window into hit reports.
#[derive(Debug)]
pub struct HitAggregator<'a> {
    window: Window,
    index: &'a ValueIndex,
    per: HashMap<String, Agg>,
    seen: HashSet<String>,
    stats: HitStats,
}

fn alert_time(a: &Value) -> Option<DateTime<Utc>> {
    ["created_timestamp", "timestamp"]
        .iter()
        .find_map(|k| a.get(*k).and_then(Value::as_str))
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// The IOC values an alert carries: `ioc_value`, `ioc_values[]`, `ioc_context[].ioc_value`.
pub fn alert_values(a: &Value) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    if let Some(v) = a.get("ioc_value").and_then(Value::as_str) {
        out.push(normalize(v));
    }
    match a.get("ioc_values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(vs)) => out.extend(vs.iter().filter_map(Value::as_str).map(normalize)),
        Some(_) => return Err("ioc_values is not a list"),
    }
    match a.get("ioc_context") {
        None | Some(Value::Null) => {}
        Some(Value::Array(cs)) => {
            for c in cs {
                let c = c
                    .as_object()
                    .ok_or("an ioc_context entry is not an object")?;
                if let Some(v) = c.get("ioc_value").and_then(Value::as_str) {
                    out.push(normalize(v));
                }
            }
        }
        Some(_) => return Err("ioc_context is not a list"),
    }
    out.retain(|v| !v.is_empty());
    out.sort();
    out.dedup();
    Ok(out)
}

impl<'a> HitAggregator<'a> {
    /// An aggregator for `window` matching against `index`.
    pub fn new(window: Window, index: &'a ValueIndex) -> Self {
        HitAggregator {
            window,
            index,
            per: HashMap::new(),
            seen: HashSet::new(),
            stats: HitStats::default(),
        }
    }

    /// Alerts held so far (bounded by the caller with [`MAX_ALERTS_PER_WINDOW`]).
    pub fn alerts_held(&self) -> usize {
        self.seen.len()
    }

    /// The counters.
    pub fn stats(&self) -> HitStats {
        self.stats
    }

    /// Counts one alert: one hit for every indicator owning one of its values.
    pub fn push(&mut self, alert: &Value) {
        self.stats.alerts += 1;
        let id = alert
            .get("composite_id")
            .or_else(|| alert.get("id"))
            .and_then(Value::as_str);
        let (Some(id), Some(t)) = (id, alert_time(alert)) else {
            self.stats.malformed += 1;
            tracing::warn!("alert without composite_id or creation time skipped");
            return;
        };
        if !self.window.contains(t) {
            self.stats.outside += 1;
            return;
        }
        if !self.seen.insert(id.to_owned()) {
            self.stats.duplicates += 1;
            return;
        }
        let values = match alert_values(alert) {
            Ok(v) => v,
            Err(why) => {
                self.stats.malformed += 1;
                tracing::warn!(alert = id, why, "alert with malformed IOC fields skipped");
                return;
            }
        };
        let mut indicators: Vec<&Arc<str>> =
            values.iter().flat_map(|v| self.index.get(v)).collect();
        indicators.sort();
        indicators.dedup();
        if indicators.is_empty() {
            self.stats.unmatched += 1;
            return;
        }
        for ind in indicators {
            self.stats.hits += 1;
            let e = self.per.entry(ind.to_string()).or_insert(Agg {
                count: 0,
                first: t,
                last: t,
            });
            e.count = e.count.saturating_add(1);
            e.first = e.first.min(t);
            e.last = e.last.max(t);
        }
    }

    /// One report per indicator hit, with a report id derived from (indicator, window): the same
    /// window always yields the same reports.
    pub fn reports(&self) -> Vec<HitReport> {
        let mut out: Vec<HitReport> = self
            .per
            .iter()
            .map(|(ind, a)| HitReport {
                indicator_id: ind.clone(),
                count: a.count,
                first_hit: a.first,
                last_hit: a.last,
                report_id: report_id(ind, &self.window),
            })
            .collect();
        out.sort_by(|a, b| a.indicator_id.cmp(&b.indicator_id));
        out
    }
}

/// The report id of an indicator's hits in a window (UUIDv5, 36 characters).
pub fn report_id(indicator: &str, w: &Window) -> String {
    let name = format!(
        "{indicator}|{}|{}",
        w.since.timestamp(),
        w.until.timestamp()
    );
    uuid::Uuid::new_v5(&REPORT_NS, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn alert(id: &str, at: &str, value: &str, values: &[&str]) -> Value {
        json!({"composite_id": id, "created_timestamp": at, "ioc_value": value, "ioc_values": values,
               "ioc_context": values.iter().map(|v| json!({"ioc_value": v})).collect::<Vec<_>>()})
    }

    fn index() -> ValueIndex {
        let mut ix = ValueIndex::default();
        // One indicator with two values (a composite pattern), one shared value.
        ix.insert("indicator--a", "d41d8cd98f00b204e9800998ecf8427e");
        ix.insert("indicator--a", "Evil.example.com");
        ix.insert("indicator--b", "evil.example.com");
        ix
    }

    #[test]
    fn the_second_value_of_a_pattern_counts_and_shared_values_hit_every_owner() {
        let ix = index();
        let w = Window {
            since: t("2026-10-03T09:00:00Z"),
            until: t("2026-10-03T10:00:00Z"),
        };
        let mut agg = HitAggregator::new(w, &ix);
        agg.push(&alert(
            "c1",
            "2026-10-03T09:10:00Z",
            "EVIL.example.com",
            &[],
        ));
        agg.push(&alert(
            "c2",
            "2026-10-03T09:20:00Z",
            "x",
            &["d41d8cd98f00b204e9800998ecf8427e"],
        ));
        agg.push(&alert("c2", "2026-10-03T09:20:00Z", "x", &[])); // paging duplicate
        agg.push(&alert(
            "c3",
            "2026-10-03T10:00:00Z",
            "evil.example.com",
            &[],
        )); // next window
        agg.push(&json!({"composite_id": "c4"})); // no time
        let r = agg.reports();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].indicator_id.as_str(), r[0].count),
            ("indicator--a", 2)
        );
        assert_eq!(r[0].first_hit, t("2026-10-03T09:10:00Z"));
        assert_eq!(r[0].last_hit, t("2026-10-03T09:20:00Z"));
        assert_eq!(
            (r[1].indicator_id.as_str(), r[1].count),
            ("indicator--b", 1)
        );
        let s = agg.stats();
        assert_eq!((s.duplicates, s.outside, s.malformed, s.hits), (1, 1, 1, 3));
    }

    #[test]
    fn windows_are_closed_after_the_settle_delay_and_replays_reuse_report_ids() {
        let now = t("2026-10-03T10:30:00.700Z");
        let w = Window::plan(None, now, SETTLE).unwrap();
        assert_eq!(w.since, t("2026-10-03T09:30:00Z"));
        assert_eq!(w.until, t("2026-10-03T10:15:00Z"));
        assert_eq!(
            w.filter(),
            "created_timestamp:>='2026-10-03T09:30:00Z'+created_timestamp:<'2026-10-03T10:15:00Z'"
        );
        // A restart while the window was being reported redoes exactly it.
        let later = now + chrono::Duration::minutes(7);
        assert_eq!(Window::plan(Some(&w.in_progress()), later, SETTLE), Some(w));
        let ix = index();
        let mk = || {
            let mut a = HitAggregator::new(w, &ix);
            a.push(&alert(
                "c1",
                "2026-10-03T09:40:00Z",
                "evil.example.com",
                &[],
            ));
            a.reports()
        };
        assert_eq!(mk(), mk(), "same window, same reports and report ids");
        // The next window starts where this one ended: a late alert created at 10:14 and visible
        // at 10:29 was inside this window when it was read (10:30).
        let next = Window::plan(Some(&w.done()), later, SETTLE).unwrap();
        assert_eq!(next.since, w.until);
        // A saved start older than 7 days is brought forward.
        let old = HitCursor {
            since: t("2026-01-01T00:00:00Z"),
            until: None,
        };
        assert_eq!(
            Window::plan(Some(&old), now, SETTLE).unwrap().since,
            t("2026-09-26T10:30:00Z")
        );
        assert_eq!(w.halve().unwrap().until, t("2026-10-03T09:52:30Z"));
    }

    #[test]
    fn malformed_ioc_fields_are_named() {
        assert_eq!(
            alert_values(&json!({"ioc_values": "x"})),
            Err("ioc_values is not a list")
        );
        assert_eq!(
            alert_values(&json!({"ioc_context": [1]})),
            Err("an ioc_context entry is not an object")
        );
        assert_eq!(
            alert_values(&json!({"ioc_value": " A ", "ioc_values": ["a", "b"]})).unwrap(),
            vec!["a", "b"]
        );
    }
}
