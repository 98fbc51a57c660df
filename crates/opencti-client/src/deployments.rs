//! Dissemination assurance (deployment write-back): feature detection, the security platform,
//! deployment status reports, the platform's deployments and hit reports.
//!
//! Wire contract: `shared/reference/dissemination-assurance.md` §1.1 and §3. Every call goes
//! through a [`DeploymentWriteBack`] handle, which detects once whether the platform has the
//! feature. On a platform without it every call is a no-op answered [`Sent::Unsupported`]
//! (logged once at info); while detection keeps failing transiently, calls answer
//! [`Sent::Deferred`] (the caller keeps its reports queued) and detection is retried after
//! [`DETECTION_RETRY`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, Stream, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::OpenCtiClient;
use crate::error::{Error, chain};

/// Most reports one `indicatorReportDeployments` call may carry (the platform refuses more).
pub const MAX_BATCH_REPORTS: usize = 500;
/// Longest `externalId` the platform accepts (characters).
pub const MAX_EXTERNAL_ID_CHARS: usize = 1000;
/// Error messages longer than this are cut (to this many characters, ending with `...`),
/// as the upstream SDK does; the platform refuses more than 5 000.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 2000;
/// Longest hit `reportId` the platform accepts (characters).
pub const MAX_REPORT_ID_CHARS: usize = 256;
/// Page size of the deployment listing (the upstream SDK's).
pub const DEPLOYMENT_PAGE_SIZE: u32 = 500;
/// Delay before a detection that failed transiently is tried again (upstream: 300 s).
pub const DETECTION_RETRY: Duration = Duration::from_secs(300);
/// Statuses listed by reconciliation (`removed` is not listed, as upstream).
pub const LISTED_STATUSES: [DeploymentStatus; 5] = [
    DeploymentStatus::Pending,
    DeploymentStatus::Deployed,
    DeploymentStatus::Active,
    DeploymentStatus::Failed,
    DeploymentStatus::Expired,
];

pub(crate) const FEATURE_PROBE: &str = "query DeploymentWriteBackFeatures { indicators(first: 1) { edges { node { id deployments_count } } } }";
pub(crate) const PLATFORM_ADD: &str = "mutation DeploymentSecurityPlatformAdd($input: SecurityPlatformAddInput!) { securityPlatformAdd(input: $input) { id standard_id name } }";
pub(crate) const PLATFORM_READ: &str = "query DeploymentSecurityPlatform($id: String!) { securityPlatform(id: $id) { id standard_id name } }";
pub(crate) const REPORT_BATCH: &str = "mutation IndicatorReportDeployments($platformId: StixRef!, $reports: [IndicatorDeploymentReportInput!]!) { indicatorReportDeployments(platformId: $platformId, reports: $reports) { processed created updated unchanged errors { indicatorId message } } }";
pub(crate) const REPORT_ONE: &str = "mutation IndicatorReportDeployment($indicatorId: StixRef!, $platformId: StixRef!, $status: IndicatorDeploymentStatus!, $externalId: String, $metadata: IndicatorDeploymentMetadataInput) { indicatorReportDeployment(indicatorId: $indicatorId, platformId: $platformId, status: $status, externalId: $externalId, metadata: $metadata) { id } }";
pub(crate) const LIST_DEPLOYMENTS: &str = "query IndicatorDeploymentsOfPlatform($relationshipTypes: [String], $toId: [String], $first: Int, $after: ID, $filters: FilterGroup) { stixCoreRelationships(relationship_type: $relationshipTypes, toId: $toId, first: $first, after: $after, filters: $filters) { edges { node { id deployment_status external_id revoked last_sync_at last_hit_at hit_count from { ... on Indicator { id standard_id name pattern pattern_type revoked valid_until x_opencti_main_observable_type } } } } pageInfo { endCursor hasNextPage globalCount } } }";
pub(crate) const REPORT_HITS: &str = "mutation IndicatorReportHits($indicatorId: StixRef!, $platformId: StixRef!, $count: Int!, $lastHit: DateTime, $firstHit: DateTime, $reportId: String) { indicatorReportHits(indicatorId: $indicatorId, platformId: $platformId, count: $count, lastHit: $lastHit, firstHit: $firstHit, reportId: $reportId) { id } }";

/// Lifecycle of a `deployed-on` relationship (reference §4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    /// Wanted on the platform, not confirmed ("Deploy again" sets it). A missing status reads so.
    #[default]
    Pending,
    /// Pushed and accepted by the vendor. Live.
    Deployed,
    /// Confirmed present by read-back, or proven by a hit. Live.
    Active,
    /// The push was refused.
    Failed,
    /// Confirmed absent or withdrawn.
    Removed,
    /// Removal not confirmed in the grace period (set by the platform only).
    Expired,
}

impl DeploymentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::Deployed => "deployed",
            DeploymentStatus::Active => "active",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Removed => "removed",
            DeploymentStatus::Expired => "expired",
        }
    }

    /// `deployed` or `active`.
    pub fn is_live(self) -> bool {
        matches!(self, DeploymentStatus::Deployed | DeploymentStatus::Active)
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call did on a platform that may lack the feature.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Sent<T> {
    /// The call was made; its answer.
    Done(T),
    /// The platform has no dissemination assurance: nothing was sent, and nothing ever will be.
    Unsupported,
    /// Detection has not succeeded yet (transient failure): nothing was sent; keep the reports
    /// and try again later.
    Deferred,
}

/// Whether the platform has the deployment write-back API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// The three write-back mutations are present.
    Supported,
    /// An older platform: every reporting call is a no-op.
    Unsupported,
    /// Not known yet (the last probe failed transiently).
    Unknown,
}

/// One status report (`IndicatorDeploymentReportInput`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentReport {
    /// Indicator internal, standard or STIX id.
    pub indicator_id: String,
    /// Reported status (`expired` is reserved to the platform and refused locally).
    pub status: DeploymentStatus,
    /// Vendor id (Falcon IOC id or ids); omitted when `None`.
    pub external_id: Option<String>,
    /// When the vendor accepted it (metadata `deployed_at`).
    pub deployed_at: Option<DateTime<Utc>>,
    /// When the connector observed this state (metadata `last_sync_at`); the server's reception
    /// time when `None`. A report older than the stored sync time changes nothing.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// When it was withdrawn (metadata `removed_at`).
    pub removed_at: Option<DateTime<Utc>>,
    /// Why it failed; cut to [`MAX_ERROR_MESSAGE_CHARS`].
    pub error_message: Option<String>,
}

impl DeploymentReport {
    /// A report with only the indicator and the status.
    pub fn new(indicator_id: impl Into<String>, status: DeploymentStatus) -> Self {
        DeploymentReport {
            indicator_id: indicator_id.into(),
            status,
            external_id: None,
            deployed_at: None,
            last_sync_at: None,
            removed_at: None,
            error_message: None,
        }
    }

    /// Why the platform would refuse this report, checked before sending (a bad entry would
    /// otherwise fail the whole batch, reference §7.11).
    pub fn invalid_reason(&self) -> Option<ReportErrorKind> {
        if self.indicator_id.trim().is_empty() {
            return Some(ReportErrorKind::IndicatorNotFound);
        }
        if self.status == DeploymentStatus::Expired {
            return Some(ReportErrorKind::InvalidStatus);
        }
        if self
            .external_id
            .as_deref()
            .is_some_and(|x| x.chars().count() > MAX_EXTERNAL_ID_CHARS)
        {
            return Some(ReportErrorKind::ExternalIdTooLong);
        }
        None
    }

    fn to_wire(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(d) = self.deployed_at {
            m.insert("deployed_at".into(), iso(d).into());
        }
        if let Some(d) = self.last_sync_at {
            m.insert("last_sync_at".into(), iso(d).into());
        }
        if let Some(d) = self.removed_at {
            m.insert("removed_at".into(), iso(d).into());
        }
        if let Some(e) = &self.error_message {
            m.insert("error_message".into(), cut_message(e).into());
        }
        let mut r = json!({ "indicatorId": self.indicator_id, "status": self.status.as_str() });
        if let Some(x) = self.external_id.as_deref().filter(|x| !x.is_empty()) {
            r["externalId"] = x.into();
        }
        if !m.is_empty() {
            r["metadata"] = Value::Object(m);
        }
        r
    }
}

/// Dates as the SDK sends them: ISO 8601 UTC, milliseconds, `Z`.
pub fn iso(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Cuts a message to [`MAX_ERROR_MESSAGE_CHARS`] characters (`...` included), on a char boundary.
pub fn cut_message(s: &str) -> String {
    if s.chars().count() <= MAX_ERROR_MESSAGE_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_ERROR_MESSAGE_CHARS - 3).collect();
    out.push_str("...");
    out
}

/// Why the platform (or the local check) refused one report, from the platform's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportErrorKind {
    /// `Indicator not found or not accessible` (e.g. deleted since): final.
    IndicatorNotFound,
    /// `Security platform not found or not accessible`: the platform id is wrong.
    PlatformNotFound,
    /// `Deployment status is invalid or reserved to the platform`.
    InvalidStatus,
    /// `External id cannot exceed 1000 characters` (refused locally before sending).
    ExternalIdTooLong,
    /// `Error message cannot exceed 5000 characters`.
    ErrorMessageTooLong,
    /// `Invalid date in deployment report`.
    InvalidDate,
    /// The indicator and platform share no organization with the reporting account.
    OrganizationSegregation,
    /// Any other message.
    Other,
}

impl ReportErrorKind {
    /// Classifies a platform message (reference §3.0, verbatim strings).
    pub fn from_message(msg: &str) -> Self {
        let m = msg.to_ascii_lowercase();
        if m.contains("indicator not found") {
            ReportErrorKind::IndicatorNotFound
        } else if m.contains("security platform not found") {
            ReportErrorKind::PlatformNotFound
        } else if m.contains("status is invalid") {
            ReportErrorKind::InvalidStatus
        } else if m.contains("external id cannot exceed") {
            ReportErrorKind::ExternalIdTooLong
        } else if m.contains("error message cannot exceed") {
            ReportErrorKind::ErrorMessageTooLong
        } else if m.contains("invalid date") {
            ReportErrorKind::InvalidDate
        } else if m.contains("common organization") {
            ReportErrorKind::OrganizationSegregation
        } else {
            ReportErrorKind::Other
        }
    }
}

/// One refused report of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportError {
    /// The indicator id as sent.
    pub indicator_id: String,
    /// The platform's message (or the local reason).
    pub message: String,
    /// Its classification.
    pub kind: ReportErrorKind,
}

/// Answer of `indicatorReportDeployments`, summed over the chunks sent.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// Reports applied (= created + updated + unchanged).
    pub processed: u64,
    /// Relationships created.
    pub created: u64,
    /// Meaningful changes applied.
    pub updated: u64,
    /// Heartbeats, stale or same-state reports.
    pub unchanged: u64,
    /// Reports refused, by the platform or by the local check (never sent). Final.
    pub errors: Vec<ReportError>,
    /// `indicatorReportDeployments` calls made.
    pub calls: u64,
}

/// The security platform entity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SecurityPlatform {
    /// Internal id (the `platformId` of every later call).
    pub id: String,
    /// STIX id.
    #[serde(default)]
    pub standard_id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One hit report (`indicatorReportHits`).
#[derive(Debug, Clone, PartialEq)]
pub struct HitReport {
    /// Indicator id.
    pub indicator_id: String,
    /// Number of hits (≥ 1).
    pub count: u32,
    /// Oldest hit of the report.
    pub first_hit: DateTime<Utc>,
    /// Newest hit: the platform's replay watermark.
    pub last_hit: DateTime<Utc>,
    /// Stable id of this report, unchanged across re-sends (1 to 256 characters).
    pub report_id: String,
}

/// The indicator end of a listed deployment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct DeployedIndicator {
    /// Internal id.
    pub id: String,
    /// STIX id.
    #[serde(default)]
    pub standard_id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Pattern.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `stix`, ….
    #[serde(default)]
    pub pattern_type: Option<String>,
    /// Indicator revoked.
    #[serde(default, deserialize_with = "null_false")]
    pub revoked: bool,
    /// End of validity.
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    /// Main observable type.
    #[serde(default)]
    pub x_opencti_main_observable_type: Option<String>,
}

/// One `deployed-on` relationship of the platform.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Deployment {
    /// Relationship id (the id of the analyst actions).
    pub id: String,
    /// Status (`null` is read as `pending`).
    #[serde(default, deserialize_with = "status_or_pending")]
    pub deployment_status: DeploymentStatus,
    /// Vendor id last reported.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The analyst asked to remove it from this platform.
    #[serde(default, deserialize_with = "null_false")]
    pub revoked: bool,
    /// Last report time.
    #[serde(default)]
    pub last_sync_at: Option<DateTime<Utc>>,
    /// Hit watermark.
    #[serde(default)]
    pub last_hit_at: Option<DateTime<Utc>>,
    /// Hits counted.
    #[serde(default)]
    pub hit_count: Option<i64>,
    /// The indicator; `None` when the account cannot read it (the caller skips the node).
    #[serde(default)]
    pub from: Option<DeployedIndicator>,
}

fn null_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

fn status_or_pending<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DeploymentStatus, D::Error> {
    Ok(Option::<DeploymentStatus>::deserialize(d)?.unwrap_or(DeploymentStatus::Pending))
}

// Strict listing shapes: a missing connection, edges, pageInfo, hasNextPage or node is an error
// (a partial listing would turn live deployments into `removed`).
#[derive(Deserialize)]
struct ListData {
    #[serde(rename = "stixCoreRelationships")]
    conn: ListConn,
}
#[derive(Deserialize)]
struct ListConn {
    edges: Vec<ListEdge>,
    #[serde(rename = "pageInfo")]
    page_info: ListPageInfo,
}
#[derive(Deserialize)]
struct ListEdge {
    node: Deployment,
}
#[derive(Deserialize)]
struct ListPageInfo {
    #[serde(rename = "endCursor", default)]
    end_cursor: Option<String>,
    #[serde(rename = "hasNextPage")]
    has_next_page: bool,
    #[serde(rename = "globalCount", default)]
    global_count: Option<u64>,
}

/// One page of the platform's deployments.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeploymentPage {
    /// The deployments of the page.
    pub nodes: Vec<Deployment>,
    /// `after` of the next page.
    pub end_cursor: Option<String>,
    /// Whether more pages follow.
    pub has_next_page: bool,
    /// Total count, when the platform reports it.
    pub global_count: Option<u64>,
}

#[derive(Debug)]
enum Probe {
    Unknown {
        next_probe: Option<tokio::time::Instant>,
        warned: bool,
    },
    Supported,
    Unsupported,
}

/// Dissemination-assurance calls with the feature detection cached; see
/// [`OpenCtiClient::deployment_write_back`]. Keep one handle (clones share the cache).
#[derive(Clone)]
pub struct DeploymentWriteBack {
    client: OpenCtiClient,
    probe: Arc<Mutex<Probe>>,
    detection_retry: Duration,
}

impl fmt::Debug for DeploymentWriteBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentWriteBack")
            .field("client", &self.client)
            .field("probe", &*self.probe.lock().expect("probe lock"))
            .finish()
    }
}

impl OpenCtiClient {
    /// The dissemination-assurance calls, with feature detection cached in the handle.
    pub fn deployment_write_back(&self) -> DeploymentWriteBack {
        DeploymentWriteBack {
            client: self.clone(),
            probe: Arc::new(Mutex::new(Probe::Unknown {
                next_probe: None,
                warned: false,
            })),
            detection_retry: DETECTION_RETRY,
        }
    }
}

/// `true` when the error says the schema lacks the feature (reference §1.1: the text contains
/// `GRAPHQL_VALIDATION_FAILED` or `Cannot query field`).
fn is_missing_feature(e: &Error) -> bool {
    let text = match e {
        Error::GraphQl { errors } => errors
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.name.as_deref().unwrap_or(""),
                    e.message,
                    e.data.as_ref().map(|d| d.to_string()).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        Error::Http { body_excerpt, .. } => body_excerpt.clone(),
        _ => return false,
    };
    text.contains("GRAPHQL_VALIDATION_FAILED") || text.contains("Cannot query field")
}

impl DeploymentWriteBack {
    /// Delay before a detection that failed transiently is tried again (default
    /// [`DETECTION_RETRY`]).
    pub fn detection_retry(mut self, d: Duration) -> Self {
        self.detection_retry = d;
        self
    }

    /// Whether the platform has the feature: probes it (query `DeploymentWriteBackFeatures`,
    /// selecting `Indicator.deployments_count`) unless known. A missing field is cached for the
    /// life of the handle and logged once at info; any other failure leaves it unknown, logged
    /// at warn once then debug, and the probe is retried after the detection retry delay.
    pub async fn feature(&self) -> Feature {
        {
            let p = self.probe.lock().expect("probe lock");
            match &*p {
                Probe::Supported => return Feature::Supported,
                Probe::Unsupported => return Feature::Unsupported,
                Probe::Unknown {
                    next_probe: Some(at),
                    ..
                } if tokio::time::Instant::now() < *at => return Feature::Unknown,
                Probe::Unknown { .. } => {}
            }
        }
        let r: Result<Value, Error> = self.client.graphql(FEATURE_PROBE, json!({})).await;
        let mut p = self.probe.lock().expect("probe lock");
        match r {
            Ok(_) => {
                *p = Probe::Supported;
                Feature::Supported
            }
            Err(e) if is_missing_feature(&e) => {
                if !matches!(*p, Probe::Unsupported) {
                    tracing::info!(
                        "the OpenCTI platform has no dissemination assurance (deployment write-back): reporting is off"
                    );
                }
                *p = Probe::Unsupported;
                Feature::Unsupported
            }
            Err(e) => {
                let warned = matches!(*p, Probe::Unknown { warned: true, .. });
                if warned {
                    tracing::debug!(error = %chain(&e), "deployment write-back detection failed again");
                } else {
                    tracing::warn!(error = %chain(&e), retry_s = self.detection_retry.as_secs(), "deployment write-back detection failed; reports are kept until it succeeds");
                }
                *p = Probe::Unknown {
                    next_probe: Some(tokio::time::Instant::now() + self.detection_retry),
                    warned: true,
                };
                Feature::Unknown
            }
        }
    }

    async fn gate(&self) -> Option<Sent<std::convert::Infallible>> {
        match self.feature().await {
            Feature::Supported => None,
            Feature::Unsupported => Some(Sent::Unsupported),
            Feature::Unknown => Some(Sent::Deferred),
        }
    }

    /// Upserts the security platform by name (`securityPlatformAdd`, `update: true`); `kind`
    /// is `security_platform_type` (e.g. `EDR`), omitted when empty.
    pub async fn security_platform_add(
        &self,
        name: &str,
        kind: Option<&str>,
    ) -> Result<Sent<SecurityPlatform>, Error> {
        let name = name.trim();
        if name.chars().count() < 2 {
            return Err(Error::config(
                "the security platform name must have at least 2 characters",
            ));
        }
        if let Some(g) = self.gate().await {
            return Ok(cast(g));
        }
        let mut input = json!({ "name": name, "update": true });
        if let Some(k) = kind.map(str::trim).filter(|k| !k.is_empty()) {
            input["security_platform_type"] = k.into();
        }
        #[derive(Deserialize)]
        struct D {
            #[serde(rename = "securityPlatformAdd")]
            add: Option<SecurityPlatform>,
        }
        let d: D = self
            .client
            .graphql(PLATFORM_ADD, json!({ "input": input }))
            .await?;
        match d.add {
            Some(p) if !p.id.is_empty() => Ok(Sent::Done(p)),
            _ => Err(Error::Decode {
                path: "data.securityPlatformAdd.id".into(),
                body_excerpt: String::new(),
                source: serde::de::Error::custom("securityPlatformAdd returned no id"),
            }),
        }
    }

    /// Reads a security platform by id (to verify a configured `SECURITY_PLATFORM_ID`);
    /// `Done(None)` when it does not exist or is not readable.
    pub async fn security_platform(
        &self,
        id: &str,
    ) -> Result<Sent<Option<SecurityPlatform>>, Error> {
        if let Some(g) = self.gate().await {
            return Ok(cast(g));
        }
        #[derive(Deserialize)]
        struct D {
            #[serde(rename = "securityPlatform")]
            p: Option<SecurityPlatform>,
        }
        let d: D = self
            .client
            .graphql(PLATFORM_READ, json!({ "id": id }))
            .await?;
        Ok(Sent::Done(d.p))
    }

    /// Sends status reports with `indicatorReportDeployments`, in calls of at most
    /// [`MAX_BATCH_REPORTS`]. Reports the platform would refuse (see
    /// [`DeploymentReport::invalid_reason`]) are not sent and come back in `errors`, so one bad
    /// entry never fails a whole batch. An `Err` means a call failed as a whole (the reports of
    /// that call and the later ones were not applied; re-sending them is harmless: the same
    /// report twice is a heartbeat).
    pub async fn report_deployments(
        &self,
        platform_id: &str,
        reports: &[DeploymentReport],
    ) -> Result<Sent<BatchOutcome>, Error> {
        if reports.is_empty() {
            return Ok(Sent::Done(BatchOutcome::default()));
        }
        if let Some(g) = self.gate().await {
            return Ok(cast(g));
        }
        let mut out = BatchOutcome::default();
        let mut wire = Vec::with_capacity(reports.len().min(MAX_BATCH_REPORTS));
        for r in reports {
            match r.invalid_reason() {
                Some(kind) => out.errors.push(ReportError {
                    indicator_id: r.indicator_id.clone(),
                    message: local_message(kind).into(),
                    kind,
                }),
                None => wire.push(r.to_wire()),
            }
        }
        for chunk in wire.chunks(MAX_BATCH_REPORTS) {
            let d: BatchData = self
                .client
                .graphql(
                    REPORT_BATCH,
                    json!({ "platformId": platform_id, "reports": chunk }),
                )
                .await?;
            let b = d.batch;
            out.calls += 1;
            out.processed += b.processed;
            out.created += b.created;
            out.updated += b.updated;
            out.unchanged += b.unchanged;
            out.errors.extend(b.errors.into_iter().map(|e| ReportError {
                kind: ReportErrorKind::from_message(&e.message),
                indicator_id: e.indicator_id,
                message: e.message,
            }));
        }
        Ok(Sent::Done(out))
    }

    /// Sends one status report with `indicatorReportDeployment`; answers the relationship id.
    /// A refusal comes back as [`Error::GraphQl`] (classify it with
    /// [`ReportErrorKind::from_message`]).
    pub async fn report_deployment(
        &self,
        platform_id: &str,
        report: &DeploymentReport,
    ) -> Result<Sent<String>, Error> {
        if let Some(kind) = report.invalid_reason() {
            return Err(Error::config(format!(
                "deployment report of `{}`: {}",
                report.indicator_id,
                local_message(kind)
            )));
        }
        if let Some(g) = self.gate().await {
            return Ok(cast(g));
        }
        let w = report.to_wire();
        let vars = json!({
            "indicatorId": w["indicatorId"],
            "platformId": platform_id,
            "status": w["status"],
            "externalId": w.get("externalId"),
            "metadata": w.get("metadata"),
        });
        #[derive(Deserialize)]
        struct D {
            #[serde(rename = "indicatorReportDeployment")]
            rel: IdOnly,
        }
        let d: D = self.client.graphql(REPORT_ONE, vars).await?;
        Ok(Sent::Done(d.rel.id))
    }

    /// Sends one hit report (`indicatorReportHits`); answers the hits sighting id. Checked
    /// locally first (count ≥ 1, first ≤ last hit, report id 1–256 characters): a bad report is
    /// [`Error::Config`] and nothing is sent. Re-sending the same report (same `report_id` and
    /// `last_hit`) is not counted twice by the platform.
    pub async fn report_hits(
        &self,
        platform_id: &str,
        hit: &HitReport,
    ) -> Result<Sent<String>, Error> {
        let bad = if hit.indicator_id.trim().is_empty() {
            Some("the indicator id is empty")
        } else if hit.count == 0 {
            Some("the hit count must be at least 1")
        } else if hit.first_hit > hit.last_hit {
            Some("the first hit is after the last hit")
        } else if hit.report_id.is_empty() || hit.report_id.chars().count() > MAX_REPORT_ID_CHARS {
            Some("the report id must have 1 to 256 characters")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(Error::config(format!(
                "hit report of `{}`: {why}",
                hit.indicator_id
            )));
        }
        if let Some(g) = self.gate().await {
            return Ok(cast(g));
        }
        let vars = json!({
            "indicatorId": hit.indicator_id,
            "platformId": platform_id,
            "count": hit.count,
            "firstHit": iso(hit.first_hit),
            "lastHit": iso(hit.last_hit),
            "reportId": hit.report_id,
        });
        #[derive(Deserialize)]
        struct D {
            #[serde(rename = "indicatorReportHits")]
            s: IdOnly,
        }
        let d: D = self.client.graphql(REPORT_HITS, vars).await?;
        Ok(Sent::Done(d.s.id))
    }

    /// Lists the deployments of a platform (reconciliation), statuses [`LISTED_STATUSES`].
    pub fn deployments(&self, platform_id: impl Into<String>) -> DeploymentQuery {
        DeploymentQuery {
            wb: self.clone(),
            platform_id: platform_id.into(),
            statuses: LISTED_STATUSES.to_vec(),
            first: DEPLOYMENT_PAGE_SIZE,
            after: None,
        }
    }
}

fn cast<T>(g: Sent<std::convert::Infallible>) -> Sent<T> {
    match g {
        Sent::Unsupported => Sent::Unsupported,
        Sent::Deferred => Sent::Deferred,
    }
}

fn local_message(kind: ReportErrorKind) -> &'static str {
    match kind {
        ReportErrorKind::IndicatorNotFound => "the indicator id is empty",
        ReportErrorKind::InvalidStatus => "the status expired is reserved to the platform",
        ReportErrorKind::ExternalIdTooLong => "the external id exceeds 1000 characters",
        _ => "refused locally",
    }
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct BatchData {
    #[serde(rename = "indicatorReportDeployments")]
    batch: BatchWire,
}
#[derive(Deserialize)]
struct BatchWire {
    processed: u64,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    updated: u64,
    #[serde(default)]
    unchanged: u64,
    #[serde(default)]
    errors: Vec<BatchErrorWire>,
}
#[derive(Deserialize)]
struct BatchErrorWire {
    #[serde(rename = "indicatorId")]
    indicator_id: String,
    message: String,
}

/// A paged listing of a platform's deployments; see [`DeploymentWriteBack::deployments`].
#[derive(Debug, Clone)]
pub struct DeploymentQuery {
    wb: DeploymentWriteBack,
    platform_id: String,
    statuses: Vec<DeploymentStatus>,
    first: u32,
    after: Option<String>,
}

impl DeploymentQuery {
    /// Statuses to list (default [`LISTED_STATUSES`]).
    pub fn statuses(mut self, s: &[DeploymentStatus]) -> Self {
        self.statuses = s.to_vec();
        self
    }
    /// Page size (default 500).
    pub fn first(mut self, n: u32) -> Self {
        self.first = n.max(1);
        self
    }
    /// Start after this cursor.
    pub fn after(mut self, c: impl Into<String>) -> Self {
        self.after = Some(c.into());
        self
    }

    /// Fetches one page. A page without the connection, `edges`, `pageInfo`, `hasNextPage` or
    /// an edge without `node` is [`Error::Decode`].
    pub async fn send(&self) -> Result<Sent<DeploymentPage>, Error> {
        if let Some(g) = self.wb.gate().await {
            return Ok(cast(g));
        }
        let vars = json!({
            "relationshipTypes": ["deployed-on"],
            "toId": [self.platform_id],
            "first": self.first,
            "after": self.after,
            "filters": {
                "mode": "and",
                "filterGroups": [],
                "filters": [{
                    "key": "deployment_status",
                    "values": self.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                }],
            },
        });
        let d: ListData = self.wb.client.graphql(LIST_DEPLOYMENTS, vars).await?;
        Ok(Sent::Done(DeploymentPage {
            nodes: d.conn.edges.into_iter().map(|e| e.node).collect(),
            end_cursor: d.conn.page_info.end_cursor,
            has_next_page: d.conn.page_info.has_next_page,
            global_count: d.conn.page_info.global_count,
        }))
    }

    /// Every deployment, pages fetched lazily. Strict: `hasNextPage` without an `endCursor`, a
    /// cursor already followed, or fewer nodes than the `globalCount` announced is
    /// [`Error::Incomplete`] (the caller must not conclude anything is absent). On a platform
    /// without the feature (or not detected yet) the first item is [`Error::Incomplete`] too.
    pub fn stream(self) -> impl Stream<Item = Result<Deployment, Error>> + Send + Unpin + 'static {
        struct St {
            q: DeploymentQuery,
            seen: std::collections::HashSet<String>,
            read: u64,
            announced: Option<u64>,
            done: bool,
        }
        let start = St {
            seen: self.after.iter().cloned().collect(),
            q: self,
            read: 0,
            announced: None,
            done: false,
        };
        let pages = stream::try_unfold(start, |mut st| async move {
            if st.done {
                return Ok(None);
            }
            let page = match st.q.send().await? {
                Sent::Done(p) => p,
                Sent::Unsupported | Sent::Deferred => {
                    return Err(Error::Incomplete {
                        reason: "deployment listing: dissemination assurance is not available on the platform".into(),
                    });
                }
            };
            st.read += page.nodes.len() as u64;
            if let Some(g) = page.global_count {
                st.announced = Some(st.announced.map_or(g, |a| a.max(g)));
            }
            if page.has_next_page {
                let Some(c) = page.end_cursor.clone() else {
                    return Err(Error::Incomplete {
                        reason: format!(
                            "deployment listing: hasNextPage without endCursor after {} deployments",
                            st.read
                        ),
                    });
                };
                if !st.seen.insert(c.clone()) {
                    return Err(Error::Incomplete {
                        reason: format!(
                            "deployment listing: cursor `{c}` repeated after {} deployments",
                            st.read
                        ),
                    });
                }
                st.q.after = Some(c);
            } else {
                if let Some(a) = st.announced
                    && st.read < a
                {
                    return Err(Error::Incomplete {
                        reason: format!(
                            "deployment listing: {} deployments read, {a} announced",
                            st.read
                        ),
                    });
                }
                st.done = true;
            }
            Ok(Some((page.nodes, st)))
        });
        Box::pin(
            pages
                .map_ok(|nodes| stream::iter(nodes.into_iter().map(Ok)))
                .try_flatten(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_serialize_like_the_sdk() {
        let mut r = DeploymentReport::new("indicator--1", DeploymentStatus::Failed);
        r.error_message = Some("é".repeat(3000));
        r.last_sync_at = Some("2026-10-03T10:00:00Z".parse().unwrap());
        let w = r.to_wire();
        assert_eq!(w["status"], "failed");
        assert!(w.get("externalId").is_none());
        assert_eq!(w["metadata"]["last_sync_at"], "2026-10-03T10:00:00.000Z");
        let m = w["metadata"]["error_message"].as_str().unwrap();
        assert_eq!(m.chars().count(), MAX_ERROR_MESSAGE_CHARS);
        assert!(m.ends_with("..."));
        assert!(w["metadata"].get("deployed_at").is_none());
        let plain = DeploymentReport::new("x", DeploymentStatus::Deployed).to_wire();
        assert_eq!(plain, json!({"indicatorId": "x", "status": "deployed"}));
    }

    #[test]
    fn invalid_reports_are_named() {
        let mut r = DeploymentReport::new("x", DeploymentStatus::Expired);
        assert_eq!(r.invalid_reason(), Some(ReportErrorKind::InvalidStatus));
        r.status = DeploymentStatus::Deployed;
        r.external_id = Some("a".repeat(1001));
        assert_eq!(r.invalid_reason(), Some(ReportErrorKind::ExternalIdTooLong));
        r.external_id = Some("a".repeat(1000));
        assert_eq!(r.invalid_reason(), None);
    }

    #[test]
    fn platform_messages_are_classified() {
        for (m, k) in [
            (
                "Indicator not found or not accessible",
                ReportErrorKind::IndicatorNotFound,
            ),
            (
                "Security platform not found or not accessible",
                ReportErrorKind::PlatformNotFound,
            ),
            (
                "Deployment status is invalid or reserved to the platform",
                ReportErrorKind::InvalidStatus,
            ),
            (
                "Invalid date in deployment report",
                ReportErrorKind::InvalidDate,
            ),
            (
                "The indicator and the security platform are not shared with a common organization of the reporting account",
                ReportErrorKind::OrganizationSegregation,
            ),
            ("boom", ReportErrorKind::Other),
        ] {
            assert_eq!(ReportErrorKind::from_message(m), k, "{m}");
        }
    }
}
