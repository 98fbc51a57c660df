//! Typed live-stream events.

use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;

/// The OpenCTI extension of STIX objects (score, detection, main observable type, ...).
pub const OPENCTI_EXTENSION: &str = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba";
/// The OpenCTI extension of STIX cyber observables.
pub const OPENCTI_SCO_EXTENSION: &str =
    "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82";
/// The MITRE extension (platforms, ...).
pub const MITRE_EXTENSION: &str = "extension-definition--322b8f77-262a-4cb8-a915-1e441e00329b";

/// The SSE event name. Consumers switch on this, never on the envelope's `type`: the platform
/// re-labels updates as `create`/`delete` when they make an object enter or leave the stream's
/// filters and leaves `data.type` as `update`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// `connected`: first message of a connection, no id; see [`StreamEvent::connected_info`].
    Connected,
    /// `heartbeat`: carries the connection's last event id; moves the cursor.
    Heartbeat,
    /// `create`
    Create,
    /// `update`
    Update,
    /// `delete`
    Delete,
    /// `merge`
    Merge,
    /// `no-recover` (newer platforms): the platform skipped the recovery snapshot. The stream
    /// clears `recover_until` in the cursor, as pycti does.
    NoRecover,
    /// `consumer_metrics` (newer platforms): treated like a heartbeat.
    ConsumerMetrics,
    /// Any other event name, kept as sent.
    Other(String),
}

impl EventKind {
    /// Maps an SSE event name (`message` when the server sent none).
    pub fn from_name(name: &str) -> EventKind {
        match name {
            "connected" => EventKind::Connected,
            "heartbeat" => EventKind::Heartbeat,
            "create" => EventKind::Create,
            "update" => EventKind::Update,
            "delete" => EventKind::Delete,
            "merge" => EventKind::Merge,
            "no-recover" => EventKind::NoRecover,
            "consumer_metrics" => EventKind::ConsumerMetrics,
            other => EventKind::Other(other.to_string()),
        }
    }

    /// The SSE event name.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Connected => "connected",
            EventKind::Heartbeat => "heartbeat",
            EventKind::Create => "create",
            EventKind::Update => "update",
            EventKind::Delete => "delete",
            EventKind::Merge => "merge",
            EventKind::NoRecover => "no-recover",
            EventKind::ConsumerMetrics => "consumer_metrics",
            EventKind::Other(s) => s,
        }
    }

    /// `create`, `update`, `delete` or `merge`: an event carrying a STIX object.
    pub fn is_data(&self) -> bool {
        matches!(
            self,
            EventKind::Create | EventKind::Update | EventKind::Delete | EventKind::Merge
        )
    }

    /// `heartbeat` or `consumer_metrics`: a cursor-moving event without data.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, EventKind::Heartbeat | EventKind::ConsumerMetrics)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One live-stream message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamEvent {
    /// The SSE id (`""` for `connected`, which has none). Ids are not unique: dependency events
    /// share the id of the event that triggered them, recovery ids can repeat.
    pub id: String,
    /// The SSE event name.
    pub kind: EventKind,
    /// The envelope of `create` / `update` / `delete` / `merge` (and of unknown events whose
    /// data has that shape).
    pub data: Option<EventData>,
    /// The raw `data:` text of events without an envelope (`connected`, `heartbeat`,
    /// `no-recover`, `consumer_metrics`, unknown names).
    pub raw: Option<String>,
}

impl StreamEvent {
    /// Builds a typed event from an SSE message. A data event (`create`, `update`, `delete`,
    /// `merge`) whose data is not a JSON envelope with a `data` object is [`Error::Malformed`].
    pub fn parse(id: &str, name: &str, data: &str) -> Result<StreamEvent, Error> {
        let kind = EventKind::from_name(name);
        let malformed = |source| Error::Malformed {
            id: id.to_string(),
            event: name.to_string(),
            raw: data.to_string(),
            source,
        };
        let (data, raw) = if kind.is_data() {
            (Some(EventData::parse(data).map_err(malformed)?), None)
        } else if matches!(kind, EventKind::Other(_)) {
            match EventData::parse(data) {
                Ok(d) => (Some(d), None),
                Err(_) => (None, Some(data.to_string())),
            }
        } else {
            (None, Some(data.to_string()))
        };
        Ok(StreamEvent {
            id: id.to_string(),
            kind,
            data,
            raw,
        })
    }

    /// The STIX id of the object (`data.id`), when the event carries one.
    pub fn stix_id(&self) -> Option<&str> {
        self.data.as_ref().and_then(|d| d.stix_id())
    }

    /// For `connected`: the stream information.
    pub fn connected_info(&self) -> Option<ConnectedInfo> {
        if self.kind != EventKind::Connected {
            return None;
        }
        serde_json::from_str(self.raw.as_deref()?).ok()
    }

    /// For `heartbeat`: the date of the heartbeat id (the JSON string the platform sends).
    pub fn heartbeat_date(&self) -> Option<String> {
        if self.kind != EventKind::Heartbeat {
            return None;
        }
        match serde_json::from_str::<Value>(self.raw.as_deref()?).ok()? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Payload of the `connected` event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConnectedInfo {
    /// Last id of the platform stream.
    #[serde(default)]
    pub last_event_id: Option<String>,
    /// First retained id (older start positions silently resume here).
    #[serde(default)]
    pub first_event_id: Option<String>,
    /// Date of the first retained event.
    #[serde(default)]
    pub first_event_date: Option<String>,
    /// Date of the last event.
    #[serde(default)]
    pub last_event_date: Option<String>,
    /// Number of retained events.
    #[serde(default)]
    pub stream_size: Option<u64>,
    /// This connection's id.
    #[serde(default)]
    pub connection_id: Option<String>,
}

/// The envelope of a data event: the STIX object plus what the platform says about the change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct EventData {
    /// The STIX 2.1 object (`data`): for `delete`, the object as it was just before.
    #[serde(rename = "data")]
    pub stix: Value,
    /// Envelope version (`"4"`).
    #[serde(default)]
    pub version: Option<String>,
    /// The envelope's original type; informational only (see [`EventKind`]).
    #[serde(default, rename = "type")]
    pub envelope_type: Option<String>,
    /// `external`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Human text, e.g. "creates a Indicator `1.2.3.4`".
    #[serde(default)]
    pub message: Option<String>,
    /// Who caused the event (`referer` is `init-create` for recovery, `init-dependencies` for
    /// dependency events).
    #[serde(default)]
    pub origin: Option<Value>,
    /// Patch, reverse patch, merge sources.
    #[serde(default)]
    pub context: Option<EventContext>,
    /// The commit message of an update, when there was one.
    #[serde(default)]
    pub commit: Option<Value>,
    /// `event_id` as added by the live stream handler.
    #[serde(default)]
    pub event_id: Option<String>,
}

/// `context` of update and merge events.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[non_exhaustive]
pub struct EventContext {
    /// RFC 6902 patch from the previous to the current object.
    #[serde(default)]
    pub patch: Option<Value>,
    /// RFC 6902 patch from the current back to the previous object.
    #[serde(default)]
    pub reverse_patch: Option<Value>,
    /// For `merge`: the STIX objects merged away into this one.
    #[serde(default)]
    pub sources: Option<Vec<Value>>,
}

impl EventData {
    fn parse(text: &str) -> Result<EventData, serde_json::Error> {
        let d: EventData = serde_json::from_str(text)?;
        if !d.stix.is_object() {
            return Err(serde::de::Error::custom(
                "envelope field `data` is not a STIX object",
            ));
        }
        Ok(d)
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.stix.get(key)?.as_str()
    }

    /// Looks an attribute up as pycti's `get_attribute_in_extension` does: the OpenCTI
    /// extension, then the OpenCTI observable extension, then the top-level key.
    pub fn extension_attribute(&self, key: &str) -> Option<&Value> {
        let ext = self.stix.get("extensions");
        ext.and_then(|e| e.get(OPENCTI_EXTENSION))
            .and_then(|e| e.get(key))
            .or_else(|| {
                ext.and_then(|e| e.get(OPENCTI_SCO_EXTENSION))
                    .and_then(|e| e.get(key))
            })
            .or_else(|| {
                if key == "type" {
                    None
                } else {
                    self.stix.get(key)
                }
            })
            .filter(|v| !v.is_null())
    }

    /// STIX id (`indicator--…`).
    pub fn stix_id(&self) -> Option<&str> {
        self.str_field("id")
    }
    /// STIX type (`indicator`, `identity`, …).
    pub fn stix_type(&self) -> Option<&str> {
        self.str_field("type")
    }
    /// OpenCTI entity type (`Indicator`, …) from the OpenCTI extension.
    pub fn entity_type(&self) -> Option<&str> {
        self.stix
            .get("extensions")?
            .get(OPENCTI_EXTENSION)?
            .get("type")?
            .as_str()
    }
    /// OpenCTI internal id from the OpenCTI extension.
    pub fn internal_id(&self) -> Option<&str> {
        self.stix
            .get("extensions")?
            .get(OPENCTI_EXTENSION)?
            .get("id")?
            .as_str()
    }
    /// `pattern`.
    pub fn pattern(&self) -> Option<&str> {
        self.str_field("pattern")
    }
    /// `pattern_type` (`stix`, `yara`, …).
    pub fn pattern_type(&self) -> Option<&str> {
        self.str_field("pattern_type")
    }
    /// `x_opencti_score` (extension `score`, else top-level `x_opencti_score`).
    pub fn score(&self) -> Option<i64> {
        self.extension_attribute("score")
            .or_else(|| self.stix.get("x_opencti_score"))
            .and_then(as_i64)
    }
    /// `x_opencti_detection`.
    pub fn detection(&self) -> Option<bool> {
        self.extension_attribute("detection")
            .or_else(|| self.stix.get("x_opencti_detection"))
            .and_then(Value::as_bool)
    }
    /// `x_opencti_main_observable_type` (`IPv4-Addr`, `StixFile`, …).
    pub fn main_observable_type(&self) -> Option<&str> {
        self.extension_attribute("main_observable_type")
            .or_else(|| self.stix.get("x_opencti_main_observable_type"))
            .and_then(Value::as_str)
    }
    /// `x_mitre_platforms` (MITRE extension `platforms`, else top-level); empty when absent.
    pub fn platforms(&self) -> Vec<String> {
        self.stix
            .get("extensions")
            .and_then(|e| e.get(MITRE_EXTENSION))
            .and_then(|e| e.get("platforms"))
            .or_else(|| self.stix.get("x_mitre_platforms"))
            .map(strings)
            .unwrap_or_default()
    }
    /// `valid_from`.
    pub fn valid_from(&self) -> Option<&str> {
        self.str_field("valid_from")
    }
    /// `valid_until`.
    pub fn valid_until(&self) -> Option<&str> {
        self.str_field("valid_until")
    }
    /// `revoked` (absent = `false`).
    pub fn revoked(&self) -> bool {
        self.stix
            .get("revoked")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    /// `labels`; empty when absent.
    pub fn labels(&self) -> Vec<String> {
        self.stix.get("labels").map(strings).unwrap_or_default()
    }
    /// `name`.
    pub fn name(&self) -> Option<&str> {
        self.str_field("name")
    }
    /// `description`.
    pub fn description(&self) -> Option<&str> {
        self.str_field("description")
    }
    /// `created`.
    pub fn created(&self) -> Option<&str> {
        self.str_field("created")
    }
    /// `modified`.
    pub fn modified(&self) -> Option<&str> {
        self.str_field("modified")
    }
    /// `origin.referer` (`init-create`, `init-dependencies`, …).
    pub fn origin_referer(&self) -> Option<&str> {
        self.origin.as_ref()?.get("referer")?.as_str()
    }
    /// `context.patch`.
    pub fn patch(&self) -> Option<&Value> {
        self.context.as_ref()?.patch.as_ref()
    }
    /// `context.reverse_patch`.
    pub fn reverse_patch(&self) -> Option<&Value> {
        self.context.as_ref()?.reverse_patch.as_ref()
    }
    /// `context.sources` of a merge; empty otherwise.
    pub fn merge_sources(&self) -> &[Value] {
        self.context
            .as_ref()
            .and_then(|c| c.sources.as_deref())
            .unwrap_or(&[])
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}
