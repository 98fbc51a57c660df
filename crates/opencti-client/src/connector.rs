//! GraphQL operations of a stream connector: health check, register, ping, stream collection,
//! delete. Query texts are pycti's (reference §3), so the platform sees the same operations.

use serde::{Deserialize, Serialize};

use crate::client::OpenCtiClient;
use crate::error::Error;
use crate::state::StreamState;

pub(crate) const HEALTH_CHECK: &str = "query healthCheck { about { version } }";

pub(crate) const REGISTER_CONNECTOR: &str = "mutation RegisterConnector($input: RegisterConnectorInput) { registerConnector(input: $input) { id connector_state jwks config { connection { host vhost use_ssl port user pass } s3 { endpoint port use_ssl bucket_name bucket_region access_key secret_key } listen listen_routing listen_exchange push push_routing push_exchange } connector_user_id } }";

pub(crate) const PING_CONNECTOR: &str = "mutation PingConnector($id: ID!, $state: String, $connectorInfo: ConnectorInfoInput) { pingConnector(id: $id, state: $state, connectorInfo: $connectorInfo) { id connector_state connector_info { run_and_terminate buffering queue_threshold queue_messages_size next_run_datetime last_run_datetime } } }";

pub(crate) const STREAM_COLLECTION: &str = "query StreamCollection($id: String!) { streamCollection(id: $id) { id name description filters stream_live stream_public } }";

pub(crate) const CONNECTOR_STATE: &str =
    "query Connector($id: String!) { connector(id: $id) { id connector_state } }";

pub(crate) const DELETE_CONNECTOR: &str =
    "mutation ConnectorDeletionMutation($id: ID!) { deleteConnector(id: $id) }";

/// OpenCTI connector types (`ConnectorType` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ConnectorType {
    /// A live-stream consumer (the default here).
    #[default]
    Stream,
    /// External import.
    ExternalImport,
    /// Internal file import.
    InternalImportFile,
    /// Internal enrichment.
    InternalEnrichment,
    /// Internal analysis.
    InternalAnalysis,
    /// Internal file export.
    InternalExportFile,
}

/// Input of `registerConnector`, serialized exactly as pycti sends it:
/// `{"id","name","type","scope","auto","auto_update","enrichment_resolution","only_contextual","playbook_compatible","listen_callback_uri"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorRegistration {
    /// Stable connector id (UUID), `CONNECTOR_ID`.
    pub id: String,
    /// Display name, `CONNECTOR_NAME` (at least 2 characters).
    pub name: String,
    /// Connector type (`STREAM` for a stream connector).
    #[serde(rename = "type")]
    pub connector_type: ConnectorType,
    /// `CONNECTOR_SCOPE` items.
    pub scope: Vec<String>,
    /// `CONNECTOR_AUTO`.
    pub auto: bool,
    /// `CONNECTOR_AUTO_UPDATE`.
    pub auto_update: bool,
    /// `CONNECTOR_ENRICHMENT_RESOLUTION` (pycti default `"none"`).
    pub enrichment_resolution: String,
    /// `CONNECTOR_ONLY_CONTEXTUAL`.
    pub only_contextual: bool,
    /// Playbook compatibility flag.
    pub playbook_compatible: bool,
    /// Always `null` for stream connectors.
    pub listen_callback_uri: Option<String>,
}

impl Default for ConnectorRegistration {
    fn default() -> Self {
        ConnectorRegistration {
            id: String::new(),
            name: String::new(),
            connector_type: ConnectorType::Stream,
            scope: Vec::new(),
            auto: false,
            auto_update: false,
            enrichment_resolution: "none".into(),
            only_contextual: false,
            playbook_compatible: false,
            listen_callback_uri: None,
        }
    }
}

/// What `registerConnector` returned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RegisteredConnector {
    /// The connector id.
    pub id: String,
    /// The stored state parsed as a stream state (pycti's `get_state()` rules, see
    /// [`StreamState::from_connector_state`]); `None` on first run or after a reset.
    pub state: Option<StreamState>,
    /// The stored state string exactly as returned (`connector_state`).
    pub raw_state: Option<String>,
    /// The user the connector runs as.
    pub connector_user_id: Option<String>,
    /// The `config` object (RabbitMQ / S3 settings; unused by stream connectors).
    pub config: Option<serde_json::Value>,
}

/// Runtime information sent with every ping (`ConnectorInfoInput`); the default is pycti's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// Always `false` for a stream connector.
    pub run_and_terminate: bool,
    /// Whether the connector is buffering.
    pub buffering: bool,
    /// Queue threshold in MB (pycti default 500.0).
    pub queue_threshold: f64,
    /// Current queue size in MB.
    pub queue_messages_size: f64,
    /// Next scheduled run (unused by stream connectors).
    pub next_run_datetime: Option<String>,
    /// Last run (unused by stream connectors).
    pub last_run_datetime: Option<String>,
}

impl Default for ConnectorInfo {
    fn default() -> Self {
        ConnectorInfo {
            run_and_terminate: false,
            buffering: false,
            queue_threshold: 500.0,
            queue_messages_size: 0.0,
            next_run_datetime: None,
            last_run_datetime: None,
        }
    }
}

/// What `pingConnector` returned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PingOutcome {
    /// The state the platform holds now, parsed with pycti's rules.
    pub state: Option<StreamState>,
    /// The state string exactly as returned.
    pub raw_state: Option<String>,
    /// `true` when the platform's state differs from the one sent: the state was reset in the
    /// UI (the platform then returns the empty stored state instead of saving ours). The caller
    /// should adopt [`PingOutcome::state`] (`None` = start over, as pycti does) and
    /// [`CursorHandle::reset`](crate::CursorHandle::reset) the stream.
    pub reset: bool,
}

/// A live stream definition (`StreamCollection`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct StreamCollection {
    /// Collection id (used in `/stream/{id}`).
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Filters: the JSON text of a FilterGroup, as the platform stores it.
    #[serde(default)]
    pub filters: Option<String>,
    /// `false` when the stream is stopped (the SSE endpoint then answers 410).
    #[serde(default)]
    pub stream_live: bool,
    /// Whether the stream is readable without a token.
    #[serde(default)]
    pub stream_public: bool,
}

impl StreamCollection {
    /// The filters parsed as JSON: `None` when absent or empty (the stream carries everything), an
    /// [`Error::Decode`] when they are not JSON, since reading "no filters" instead would list
    /// indicators the stream never carries.
    pub fn filters_json(&self) -> Result<Option<serde_json::Value>, Error> {
        let Some(text) = self.filters.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| Error::Decode {
                path: format!("streamCollection({}).filters", self.id),
                body_excerpt: crate::error::excerpt(text.as_bytes()),
                source: e,
            })
    }
}

#[derive(Deserialize)]
struct AboutData {
    about: About,
}
#[derive(Deserialize)]
struct About {
    version: String,
}

#[derive(Deserialize)]
struct RegisterData {
    #[serde(rename = "registerConnector")]
    register: RegisterNode,
}
#[derive(Deserialize)]
struct RegisterNode {
    id: String,
    #[serde(default)]
    connector_state: Option<String>,
    #[serde(default)]
    connector_user_id: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PingData {
    #[serde(rename = "pingConnector")]
    ping: Option<PingNode>,
}
#[derive(Deserialize)]
struct PingNode {
    #[serde(default)]
    connector_state: Option<String>,
}

#[derive(Deserialize)]
struct StreamCollectionData {
    #[serde(rename = "streamCollection")]
    collection: Option<StreamCollection>,
}

impl OpenCtiClient {
    /// `query healthCheck { about { version } }`: returns the platform version.
    pub async fn health_check(&self) -> Result<String, Error> {
        let d: AboutData = self.graphql(HEALTH_CHECK, serde_json::json!({})).await?;
        Ok(d.about.version)
    }

    /// `registerConnector` (an upsert by id); returns the stored state so the connector resumes.
    pub async fn register_connector(
        &self,
        reg: &ConnectorRegistration,
    ) -> Result<RegisteredConnector, Error> {
        if reg.id.trim().is_empty() {
            return Err(Error::config("connector id is empty"));
        }
        let d: RegisterData = self
            .graphql(REGISTER_CONNECTOR, serde_json::json!({ "input": reg }))
            .await?;
        let r = d.register;
        Ok(RegisteredConnector {
            id: r.id,
            state: r
                .connector_state
                .as_deref()
                .and_then(StreamState::from_connector_state),
            raw_state: r.connector_state,
            connector_user_id: r.connector_user_id,
            config: r.config,
        })
    }

    /// `pingConnector` with the state to persist (`None` sends `"null"`, as pycti's
    /// `json.dumps(None)`), and detects a reset done in the UI.
    pub async fn ping_connector(
        &self,
        id: &str,
        state: Option<&StreamState>,
        info: &ConnectorInfo,
    ) -> Result<PingOutcome, Error> {
        let sent = match state {
            Some(s) => s.to_connector_state(),
            None => "null".to_string(),
        };
        self.ping_connector_raw(id, &sent, info).await
    }

    /// [`Self::ping_connector`] with a state string of the caller's own (any JSON text).
    /// `reset` compares the returned state with `state` as pycti does (both parsed; an empty,
    /// non-object or empty-object state counts as none).
    pub async fn ping_connector_raw(
        &self,
        id: &str,
        state: &str,
        info: &ConnectorInfo,
    ) -> Result<PingOutcome, Error> {
        let d: PingData = self
            .graphql(
                PING_CONNECTOR,
                serde_json::json!({ "id": id, "state": state, "connectorInfo": info }),
            )
            .await?;
        let returned = d.ping.and_then(|p| p.connector_state);
        let before = crate::state::parse_state_object(state);
        let after = returned
            .as_deref()
            .and_then(crate::state::parse_state_object);
        let reset = before != after;
        if reset {
            tracing::warn!("connector state has been remotely reset");
        }
        Ok(PingOutcome {
            state: returned
                .as_deref()
                .and_then(StreamState::from_connector_state),
            raw_state: returned,
            reset,
        })
    }

    /// The live stream definition. `live` and `raw` are answered locally, like pycti.
    /// An unknown id is [`Error::NotFound`].
    pub async fn stream_collection(&self, id: &str) -> Result<StreamCollection, Error> {
        if id == "live" || id == "raw" {
            return Ok(StreamCollection {
                id: id.into(),
                name: id.into(),
                description: Some(id.into()),
                filters: None,
                stream_live: true,
                stream_public: false,
            });
        }
        let d: StreamCollectionData = self
            .graphql(STREAM_COLLECTION, serde_json::json!({ "id": id }))
            .await?;
        d.collection.ok_or(Error::NotFound)
    }

    /// The state stored for connector `id`, read without registering or pinging it (nothing is
    /// written): `None` when the connector is unknown or has no state, `Some("")` after a reset.
    pub async fn connector_state(&self, id: &str) -> Result<Option<String>, Error> {
        #[derive(Deserialize)]
        struct D {
            connector: Option<C>,
        }
        #[derive(Deserialize)]
        struct C {
            #[serde(default)]
            connector_state: Option<String>,
        }
        let d: D = self
            .graphql(CONNECTOR_STATE, serde_json::json!({ "id": id }))
            .await?;
        Ok(d.connector.and_then(|c| c.connector_state))
    }

    /// `deleteConnector` (pycti's `helper.stop()`); returns the deleted id.
    pub async fn delete_connector(&self, id: &str) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct D {
            #[serde(rename = "deleteConnector")]
            deleted: Option<String>,
        }
        let d: D = self
            .graphql(DELETE_CONNECTOR, serde_json::json!({ "id": id }))
            .await?;
        Ok(d.deleted.unwrap_or_else(|| id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_stream_filters_are_an_error_not_no_filters() {
        let c = |filters: Option<&str>| StreamCollection {
            id: "s-1".into(),
            name: "s".into(),
            description: None,
            filters: filters.map(str::to_string),
            stream_live: true,
            stream_public: false,
        };
        assert_eq!(c(None).filters_json().unwrap(), None);
        assert_eq!(c(Some("  ")).filters_json().unwrap(), None);
        assert!(
            c(Some(r#"{"mode":"and"}"#))
                .filters_json()
                .unwrap()
                .is_some()
        );
        let e = c(Some("{mode: and")).filters_json().unwrap_err();
        assert!(
            e.to_string().contains("streamCollection(s-1).filters"),
            "{e}"
        );
    }

    #[test]
    fn registration_serializes_like_pycti() {
        let r = ConnectorRegistration {
            id: "c1".into(),
            name: "CrowdStrike".into(),
            scope: vec!["crowdstrike-endpoint-security".into()],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"id":"c1","name":"CrowdStrike","type":"STREAM","scope":["crowdstrike-endpoint-security"],"auto":false,"auto_update":false,"enrichment_resolution":"none","only_contextual":false,"playbook_compatible":false,"listen_callback_uri":null}"#
        );
        assert_eq!(
            serde_json::to_value(ConnectorInfo::default()).unwrap(),
            serde_json::json!({"run_and_terminate":false,"buffering":false,"queue_threshold":500.0,
                "queue_messages_size":0.0,"next_run_datetime":null,"last_run_datetime":null})
        );
    }
}
