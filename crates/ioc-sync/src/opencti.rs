//! The OpenCTI side: connector registration, the live stream as an [`EventSource`], state pings, and
//! the indicators of a stream for reconciliation.

use futures::StreamExt;
use opencti_client::{
    ConnectorInfo, ConnectorRegistration, ConnectorType, CursorHandle, EventKind, IndicatorNode,
    LiveEvents, LiveStream, OpenCtiClient, StreamState,
};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::batch::EventAction;
use crate::config::Config;
use crate::engine::{EventSource, SourceEvent, StatePinger};
use crate::error::Error;
use crate::state::{StateFile, compare_event_ids};

fn octi(phase: &'static str, source: opencti_client::Error) -> Error {
    Error::OpenCti { phase, source }
}

/// Builds the OpenCTI client from the configuration.
pub(crate) fn client(config: &Config) -> Result<OpenCtiClient, Error> {
    let mut b = OpenCtiClient::builder(config.opencti.url.clone(), config.opencti_token())
        .ssl_verify(config.opencti.ssl_verify);
    for (h, v) in &config.opencti.custom_headers {
        b = b.header(h.clone(), v.clone());
    }
    b.build().map_err(|e| octi("client setup", e))
}

/// Registers the connector (as the Python connector does) and returns the state to resume from.
///
/// Which state wins (`docs/operations.md`, "Where the cursor lives"):
/// - the platform's state is empty (the UI's "reset state"): a full re-sync, the local file removed;
/// - the local file was written for another OpenCTI URL, stream or connector: an error
///   ([`Error::StateMismatch`]), nothing is changed;
/// - both exist: the later of the two (the local file is saved after every batch, the platform
///   only every ping);
/// - only the platform has one: the platform's;
/// - only the local file has one: the platform does not know this connector (deleted in the UI,
///   or a re-created platform), so the cursor in the file points into a stream that is gone: a full
///   re-sync, the local file removed (logged at `error`);
/// - neither: a first-run state built from `CONNECTOR_LIVE_STREAM_START_TIMESTAMP` /
///   `CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE`.
pub(crate) async fn register(
    client: &OpenCtiClient,
    config: &Config,
    state_file: &StateFile,
) -> Result<StreamState, Error> {
    // A file of another stream is refused before anything is registered or changed.
    let local = state_file.load().await?;
    let version = client
        .health_check()
        .await
        .map_err(|e| octi("health check", e))?;
    info!(version = %version, "Health check (platform version)...");
    let reg = ConnectorRegistration {
        id: config.connector.id.clone(),
        name: config.connector.name.clone(),
        connector_type: ConnectorType::default(),
        scope: config.connector.scope.clone(),
        auto: config.connector.auto,
        only_contextual: config.connector.only_contextual,
        ..Default::default()
    };
    let registered = client
        .register_connector(&reg)
        .await
        .map_err(|e| octi("register", e))?;
    info!(connector_id = %registered.id, "Connector registered with ID");
    // An empty stored state (not a missing one) is what the UI's "reset state" leaves: start over
    // with a full re-sync, as the Python connector does, whatever the local file says.
    if registered
        .raw_state
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        warn!("Connector state has been remotely reset");
        state_file.clear().await?;
        return Ok(first_run_state(config));
    }
    match (registered.state, local) {
        (None, Some(l)) => {
            error!(
                file = %state_file.path().display(),
                local_cursor = %l.state.last_event_id(),
                "OpenCTI has no state for this connector (deleted in the platform, or a new platform): \
                 the local state file is ignored and a full sync starts"
            );
            state_file.clear().await?;
            Ok(first_run_state(config))
        }
        (platform, local) => {
            if let Some(l) = local.as_ref().filter(|l| !l.has_identity) {
                info!(file = %state_file.path().display(), local_cursor = %l.state.last_event_id(),
                      "state file without identity (older ioc-sync): adopted, rewritten with identity at the next save");
            }
            Ok(choose_state(platform, local.map(|l| l.state), config))
        }
    }
}

/// The state [`register`] would resume from, read without writing anything anywhere (no registration,
/// no ping, the local file left as it is): what `run --dry-run` uses.
pub async fn peek_state(
    client: &OpenCtiClient,
    config: &Config,
    state_file: &StateFile,
) -> Result<StreamState, Error> {
    client
        .health_check()
        .await
        .map_err(|e| octi("health check", e))?;
    let raw = client
        .connector_state(&config.connector.id)
        .await
        .map_err(|e| octi("connector state", e))?;
    if raw.as_deref().is_some_and(|s| s.trim().is_empty()) {
        warn!("Connector state has been remotely reset (dry run: the local state file is kept)");
        return Ok(first_run_state(config));
    }
    let platform = raw.as_deref().and_then(StreamState::from_connector_state);
    let local = state_file.load().await?.map(|l| l.state);
    Ok(choose_state(platform, local, config))
}

/// The later of two states (by `start_from`), or a first-run state.
pub(crate) fn choose_state(
    platform: Option<StreamState>,
    local: Option<StreamState>,
    config: &Config,
) -> StreamState {
    match (platform, local) {
        (Some(p), Some(l)) => {
            let later = compare_event_ids(l.last_event_id(), p.last_event_id())
                == Some(std::cmp::Ordering::Greater);
            if later { l } else { p }
        }
        (Some(p), None) => p,
        (None, Some(l)) => l,
        (None, None) => first_run_state(config),
    }
}

/// pycti's first-run state with the connector's overrides.
pub(crate) fn first_run_state(config: &Config) -> StreamState {
    let mut s = StreamState::first_run();
    if let Some(ts) = config.connector.start_timestamp {
        s.start_from = Some(format!("{ts}-0"));
    }
    match &config.connector.recover_iso_date {
        Some(None) => s.recover_until = None,
        Some(Some(d)) => s.recover_until = Some(d.clone()),
        None => {}
    }
    s
}

/// The live stream as the engine's [`EventSource`].
pub(crate) struct OpenCtiSource {
    events: LiveEvents,
    cursor: CursorHandle,
}

impl OpenCtiSource {
    /// Opens the connector's live stream from `state`.
    pub(crate) fn open(
        client: &OpenCtiClient,
        config: &Config,
        state: StreamState,
    ) -> OpenCtiSource {
        let (events, cursor) =
            LiveStream::builder(client.clone(), config.connector.live_stream_id.clone())
                .state(state)
                .listen_delete(config.connector.listen_delete)
                .no_dependencies(config.connector.no_dependencies)
                .with_inferences(config.connector.with_inferences)
                .build();
        info!(
            live_stream_id = %config.connector.live_stream_id,
            listen_delete = config.connector.listen_delete,
            no_dependencies = config.connector.no_dependencies,
            with_inferences = config.connector.with_inferences,
            "Starting to listen stream events"
        );
        OpenCtiSource { events, cursor }
    }
}

impl EventSource for OpenCtiSource {
    async fn next_event(&mut self) -> Option<Result<SourceEvent, Error>> {
        let item = self.events.next().await?;
        Some(match item {
            Ok(ev) => Ok(convert(ev)),
            Err(opencti_client::Error::Malformed {
                id, event, source, ..
            }) => Ok(SourceEvent::Malformed {
                id: Some(id).filter(|i| !i.is_empty()),
                detail: format!("{event}: {source}"),
            }),
            Err(e) if e.is_terminal() => Err(Error::StreamEnded(e)),
            Err(e) => Err(octi("live stream", e)),
        })
    }

    fn ack(&mut self, id: &str) {
        self.cursor.ack(id);
    }

    fn state_json(&self) -> String {
        self.cursor.state().to_connector_state()
    }
}

fn convert(ev: opencti_client::StreamEvent) -> SourceEvent {
    let action = match ev.kind {
        EventKind::Connected => {
            return SourceEvent::Connected {
                last_event_id: ev.connected_info().and_then(|c| c.last_event_id),
            };
        }
        EventKind::Heartbeat | EventKind::ConsumerMetrics => {
            return SourceEvent::Heartbeat { id: ev.id };
        }
        EventKind::Create => EventAction::Create,
        EventKind::Update => EventAction::Update,
        EventKind::Delete => EventAction::Delete,
        EventKind::Merge => EventAction::Merge,
        other => {
            return SourceEvent::Other {
                id: ev.id,
                name: other.as_str().to_string(),
            };
        }
    };
    match ev.data {
        Some(d) => {
            let context = d.context.as_ref().map(|c| {
                json!({
                    "patch": c.patch.clone().unwrap_or(Value::Null),
                    "reverse_patch": c.reverse_patch.clone().unwrap_or(Value::Null),
                    "sources": c.sources.clone().unwrap_or_default(),
                })
            });
            SourceEvent::Data {
                id: ev.id,
                action,
                stix: d.stix,
                context,
            }
        }
        None => SourceEvent::Malformed {
            id: Some(ev.id),
            detail: "data event without data".into(),
        },
    }
}

/// Pings OpenCTI with the state (`pingConnector`).
pub(crate) struct OpenCtiPinger {
    client: OpenCtiClient,
    connector_id: String,
    cursor: Option<CursorHandle>,
}

impl OpenCtiPinger {
    /// A pinger for `connector_id`; with `cursor`, a remote reset also resets the stream's cursor.
    pub(crate) fn new(
        client: OpenCtiClient,
        connector_id: String,
        cursor: Option<CursorHandle>,
    ) -> OpenCtiPinger {
        OpenCtiPinger {
            client,
            connector_id,
            cursor,
        }
    }
}

impl StatePinger for OpenCtiPinger {
    async fn ping(&self, state_json: &str) -> Result<bool, Error> {
        let out = self
            .client
            .ping_connector_raw(&self.connector_id, state_json, &ConnectorInfo::default())
            .await
            .map_err(|e| octi("ping", e))?;
        if out.reset {
            if let Some(c) = &self.cursor {
                c.reset(out.state.clone().unwrap_or_else(StreamState::first_run));
            }
            warn!(state = ?out.raw_state, "Connector state has been remotely reset");
        }
        Ok(out.reset)
    }
}

/// An indicator from the GraphQL API as the STIX object the mapping reads.
pub fn indicator_to_stix(n: &IndicatorNode) -> Value {
    let mut v = json!({
        "type": "indicator",
        "id": n.standard_id.clone().unwrap_or_else(|| n.id.clone()),
        "pattern": n.pattern,
        "pattern_type": n.pattern_type,
        "revoked": n.revoked,
    });
    let o = v.as_object_mut().expect("object");
    if let Some(d) = &n.description {
        o.insert("description".into(), json!(d));
    }
    if let Some(d) = &n.valid_until {
        o.insert("valid_until".into(), json!(d));
    }
    if let Some(s) = n.x_opencti_score {
        o.insert("x_opencti_score".into(), json!(s));
    }
    if !n.x_mitre_platforms.is_empty() {
        o.insert("x_mitre_platforms".into(), json!(n.x_mitre_platforms));
    }
    if !n.labels.is_empty() {
        o.insert("labels".into(), json!(n.labels));
    }
    v
}

/// The filter that leaves out inferred indicators, wrapping the stream's own filters.
pub fn without_inferred(stream_filters: Option<Value>) -> Value {
    json!({
        "mode": "and",
        "filters": [{"key": ["is_inferred"], "values": ["false"], "operator": "eq", "mode": "or"}],
        "filterGroups": stream_filters.into_iter().collect::<Vec<_>>(),
    })
}

/// Every indicator matching the live stream's filters, as STIX objects.
///
/// The GraphQL list also returns indicators the rule engine inferred, which the live stream carries
/// only with `with-inferences`: without it they are filtered out (`is_inferred = false`). Should the
/// platform refuse that filter key, the list is read without it (logged): inferred indicators are then
/// reconciled too.
pub async fn stream_indicators(
    client: &OpenCtiClient,
    stream_id: &str,
    with_inferences: bool,
) -> Result<Vec<Value>, Error> {
    let filters = if stream_id == "live" || stream_id == "raw" {
        None
    } else {
        client
            .stream_collection(stream_id)
            .await
            .map_err(|e| octi("stream collection", e))?
            .filters_json()
            .map_err(|e| octi("stream filters", e))?
    };
    if !with_inferences {
        match list_indicators(client, Some(without_inferred(filters.clone()))).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => warn!(
                reason = %format!("{e:#}"),
                "the platform refused the is_inferred filter; inferred indicators are included"
            ),
        }
    }
    list_indicators(client, filters).await
}

async fn list_indicators(
    client: &OpenCtiClient,
    filters: Option<Value>,
) -> Result<Vec<Value>, Error> {
    let query = match filters {
        Some(f) => client.indicators().filters(f),
        None => client.indicators().query(),
    };
    let mut s = query.stream();
    let mut out = Vec::new();
    while let Some(n) = s.next().await {
        let n = n.map_err(|e| octi("indicators", e))?;
        out.push(indicator_to_stix(&n));
    }
    Ok(out)
}
