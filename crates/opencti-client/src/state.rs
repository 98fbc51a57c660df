//! The live-stream cursor as persisted: pycti-compatible state JSON.

use std::cmp::Ordering;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Where a live stream resumes: the connector state of a pycti stream connector.
///
/// JSON form (what [`Self::to_connector_state`] writes and `pingConnector` stores):
/// `{"start_from": "<event id>", "recover_until": "<ISO date>" | false}`: the same keys and
/// value types pycti writes, so a connector id moved between the Python connector and this
/// client resumes where it was. Reading also accepts pycti's legacy keys
/// `connectorLastEventId` / `connectorStartTime`, and treats `recover_until` values
/// `false`, `null`, `"no"`, `"none"`, `"false"` (any case) as "no recovery".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamState {
    /// Last acknowledged event id (`Last-Event-ID` on the next connection). `None` means from
    /// the beginning of the stream (sent as `0-0`, as pycti does on a first run).
    pub start_from: Option<String>,
    /// Recovery date (`?recover=`): while `start_from` is older than it, the platform replays a
    /// snapshot of the matching objects first. `None` = no recovery (pycti's `false`).
    pub recover_until: Option<String>,
}

impl StreamState {
    /// The state of a first run, as pycti builds it: from `0-0`, recovering until now
    /// (`YYYY-MM-DDTHH:MM:SSZ`): a full snapshot of what matches the stream, then live events.
    pub fn first_run() -> StreamState {
        Self::first_run_at(chrono::Utc::now())
    }

    /// [`Self::first_run`] with an explicit "now".
    pub fn first_run_at(now: chrono::DateTime<chrono::Utc>) -> StreamState {
        StreamState {
            start_from: Some("0-0".into()),
            recover_until: Some(now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        }
    }

    /// pycti's first-run state from the connector settings
    /// `CONNECTOR_LIVE_STREAM_START_TIMESTAMP` (epoch ms; `-0` is appended; unset = `0-0`) and
    /// `CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE` (unset = now; `no`/`false`/`none` = no recovery).
    pub fn first_run_from_config(
        start_timestamp: Option<&str>,
        recover_iso_date: Option<&str>,
    ) -> StreamState {
        let mut s = Self::first_run();
        if let Some(ts) = start_timestamp.map(str::trim).filter(|t| !t.is_empty()) {
            s.start_from = Some(format!("{ts}-0"));
        }
        if let Some(r) = recover_iso_date.map(str::trim).filter(|r| !r.is_empty()) {
            s.recover_until = (!is_falsy(r)).then(|| r.to_string());
        }
        s
    }

    /// Parses a stored connector state with pycti's `get_state()` rules: `None` unless it is a
    /// non-empty JSON object (an empty string, `"null"`, `{}` or garbage mean "no state").
    pub fn from_connector_state(text: &str) -> Option<StreamState> {
        let obj = parse_state_object(text)?;
        serde_json::from_value(serde_json::Value::Object(obj)).ok()
    }

    /// The JSON string to persist (`pingConnector`'s `state`).
    pub fn to_connector_state(&self) -> String {
        serde_json::to_string(self).expect("a map of strings always serializes")
    }

    /// The start position as sent in `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        self.start_from.as_deref().unwrap_or("0-0")
    }

    /// The `recover` query value, when recovery applies.
    pub fn recover(&self) -> Option<&str> {
        self.recover_until
            .as_deref()
            .filter(|v| !is_falsy(v) && !v.trim().is_empty())
    }
}

fn is_falsy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "no" | "none" | "false" | "null"
    )
}

/// Parses a state string into a non-empty JSON object (pycti's `get_state()`).
pub(crate) fn parse_state_object(text: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) if !m.is_empty() => Some(m),
        _ => None,
    }
}

impl Serialize for StreamState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("start_from", self.last_event_id())?;
        match self.recover() {
            Some(r) => m.serialize_entry("recover_until", r)?,
            None => m.serialize_entry("recover_until", &false)?,
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for StreamState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let obj = v
            .as_object()
            .ok_or_else(|| de::Error::custom("stream state must be a JSON object"))?;
        let text = |key: &str| -> Option<String> {
            match obj.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let start_from = text("connectorLastEventId")
            .or_else(|| text("start_from"))
            .filter(|s| !s.is_empty());
        let recover_until = if obj.contains_key("connectorStartTime") {
            text("connectorStartTime")
        } else {
            text("recover_until")
        }
        .filter(|s| !is_falsy(s) && !s.trim().is_empty());
        Ok(StreamState {
            start_from,
            recover_until,
        })
    }
}

/// Orders two OpenCTI event ids (`<epoch_ms>-<seq>`); `None` when either is not of that form.
pub fn compare_event_ids(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_id(a)?.cmp(&parse_id(b)?))
}

fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pycti_json_round_trip() {
        let s = StreamState {
            start_from: Some("1711633413527-0".into()),
            recover_until: Some("2024-04-10T08:00:00Z".into()),
        };
        let j = s.to_connector_state();
        assert_eq!(
            j,
            r#"{"start_from":"1711633413527-0","recover_until":"2024-04-10T08:00:00Z"}"#
        );
        assert_eq!(StreamState::from_connector_state(&j), Some(s));
        let none = StreamState {
            start_from: None,
            recover_until: None,
        };
        assert_eq!(
            none.to_connector_state(),
            r#"{"start_from":"0-0","recover_until":false}"#
        );
    }

    #[test]
    fn reads_what_pycti_writes() {
        for empty in ["", "null", "{}", "[]", "garbage", "\"x\""] {
            assert_eq!(StreamState::from_connector_state(empty), None, "{empty}");
        }
        let s = StreamState::from_connector_state(
            r#"{"start_from": "1712736061234-0", "recover_until": false}"#,
        )
        .unwrap();
        assert_eq!(s.start_from.as_deref(), Some("1712736061234-0"));
        assert_eq!(s.recover(), None);
        let s = StreamState::from_connector_state(
            r#"{"connectorLastEventId": "5-1", "connectorStartTime": "2024-01-01T00:00:00Z", "start_from": "1-0"}"#,
        )
        .unwrap();
        assert_eq!(s.last_event_id(), "5-1");
        assert_eq!(s.recover(), Some("2024-01-01T00:00:00Z"));
        let s = StreamState::from_connector_state(
            r#"{"start_from": "0-0", "recover_until": "False", "other": 1}"#,
        )
        .unwrap();
        assert_eq!(s.recover(), None);
    }

    #[test]
    fn first_run_matches_pycti() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-04-10T08:00:00.123Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let s = StreamState::first_run_at(now);
        assert_eq!(
            s.to_connector_state(),
            r#"{"start_from":"0-0","recover_until":"2024-04-10T08:00:00Z"}"#
        );
    }

    #[test]
    fn first_run_from_pycti_settings() {
        let s =
            StreamState::first_run_from_config(Some("1711633413527"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(s.last_event_id(), "1711633413527-0");
        assert_eq!(s.recover(), Some("2024-01-01T00:00:00Z"));
        let s = StreamState::first_run_from_config(None, Some("false"));
        assert_eq!(s.last_event_id(), "0-0");
        assert_eq!(s.recover(), None);
        let s = StreamState::first_run_from_config(None, None);
        assert!(s.recover().unwrap().ends_with('Z'));
    }

    #[test]
    fn event_id_order() {
        assert_eq!(
            compare_event_ids("1711633413527-0", "1711633413527-1"),
            Some(Ordering::Less)
        );
        assert_eq!(compare_event_ids("999-0", "1000-0"), Some(Ordering::Less));
        assert_eq!(compare_event_ids("0-0", "0-0"), Some(Ordering::Equal));
        assert_eq!(compare_event_ids("abc", "1-0"), None);
    }
}
