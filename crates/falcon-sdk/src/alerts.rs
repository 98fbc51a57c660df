//! Alerts: query v2, entities v2, combined (with `after`), update v3.

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::client::FalconClient;
use crate::envelope::{Envelope, Page, null_default};
use crate::error::{Error, Result};
use crate::host_groups::OFFSET_CEILING;
use crate::pagination::{check_cursor, lenient_time, paged};
use crate::transport::ApiRequest;

/// The host an alert concerns (`device` of `DetectsAlert`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertDevice {
    /// Agent id.
    #[serde(default)]
    pub device_id: String,
    /// Host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `Windows`, `Mac`, `Linux`.
    #[serde(default)]
    pub platform_name: Option<String>,
    /// OS version.
    #[serde(default)]
    pub os_version: Option<String>,
    /// Local IP.
    #[serde(default)]
    pub local_ip: Option<String>,
    /// External IP.
    #[serde(default)]
    pub external_ip: Option<String>,
    /// Host group ids.
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An alert (`DetectsAlert`). Fields not listed are in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Primary key, e.g. `<cid>:ind:<aid>:<suffix>`.
    pub composite_id: String,
    /// Short id (`ind:<aid>:<suffix>`).
    #[serde(default)]
    pub id: Option<String>,
    /// Agent id of the host (endpoint alerts).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Customer id.
    #[serde(default)]
    pub cid: Option<String>,
    /// The host.
    #[serde(default)]
    pub device: Option<AlertDevice>,
    /// `epp`, `idp`, `mobile`, ...
    #[serde(default)]
    pub product: Option<String>,
    /// Alert type, e.g. `ldt`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// `new`, `in_progress`, `reopened`, `closed`.
    #[serde(default)]
    pub status: Option<String>,
    /// Severity 1–100.
    #[serde(default)]
    pub severity: Option<u32>,
    /// Severity name.
    #[serde(default)]
    pub severity_name: Option<String>,
    /// Confidence 1–100.
    #[serde(default)]
    pub confidence: Option<u32>,
    /// MITRE tactic.
    #[serde(default)]
    pub tactic: Option<String>,
    /// MITRE technique.
    #[serde(default)]
    pub technique: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_timestamp: Option<DateTime<Utc>>,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_timestamp: Option<DateTime<Utc>>,
    /// Tags.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Assignee name.
    #[serde(default)]
    pub assigned_to_name: Option<String>,
    /// File name.
    #[serde(default)]
    pub filename: Option<String>,
    /// File path.
    #[serde(default)]
    pub filepath: Option<String>,
    /// Command line.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// SHA-256 of the file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// IOC type (IOC-triggered alerts).
    #[serde(default)]
    pub ioc_type: Option<String>,
    /// IOC value (IOC-triggered alerts).
    #[serde(default)]
    pub ioc_value: Option<String>,
    /// Link to the Falcon console.
    #[serde(default)]
    pub falcon_host_link: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Alert status values of `update_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertStatus {
    /// `new`.
    New,
    /// `in_progress`.
    InProgress,
    /// `reopened`.
    Reopened,
    /// `closed`.
    Closed,
}

impl AlertStatus {
    fn as_str(self) -> &'static str {
        match self {
            AlertStatus::New => "new",
            AlertStatus::InProgress => "in_progress",
            AlertStatus::Reopened => "reopened",
            AlertStatus::Closed => "closed",
        }
    }
}

/// One `action_parameters` entry of an alert update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertAction {
    /// `update_status`.
    Status(AlertStatus),
    /// `add_tag`.
    AddTag(String),
    /// `remove_tag`.
    RemoveTag(String),
    /// `remove_tags_by_prefix`.
    RemoveTagsByPrefix(String),
    /// `append_comment`.
    Comment(String),
    /// `assign_to_name`.
    AssignToName(String),
    /// `assign_to_uuid`.
    AssignToUuid(String),
    /// `assign_to_user_id`.
    AssignToUserId(String),
    /// `unassign`.
    Unassign,
    /// `show_in_ui`.
    ShowInUi(bool),
    /// Any other action name and value.
    Other {
        /// Action name.
        name: String,
        /// Value.
        value: String,
    },
}

impl AlertAction {
    /// True when applying the action twice leaves the alert as applying it once: states, tag sets and
    /// assignees are set, while `append_comment` adds one more comment each time. Unknown actions are
    /// treated as not idempotent.
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, AlertAction::Comment(_) | AlertAction::Other { .. })
    }

    fn to_param(&self) -> serde_json::Value {
        let (n, v): (&str, String) = match self {
            AlertAction::Status(s) => ("update_status", s.as_str().into()),
            AlertAction::AddTag(t) => ("add_tag", t.clone()),
            AlertAction::RemoveTag(t) => ("remove_tag", t.clone()),
            AlertAction::RemoveTagsByPrefix(t) => ("remove_tags_by_prefix", t.clone()),
            AlertAction::Comment(c) => ("append_comment", c.clone()),
            AlertAction::AssignToName(x) => ("assign_to_name", x.clone()),
            AlertAction::AssignToUuid(x) => ("assign_to_uuid", x.clone()),
            AlertAction::AssignToUserId(x) => ("assign_to_user_id", x.clone()),
            AlertAction::Unassign => ("unassign", String::new()),
            AlertAction::ShowInUi(b) => ("show_in_ui", b.to_string()),
            AlertAction::Other { name, value } => (name.as_str(), value.clone()),
        };
        serde_json::json!({ "name": n, "value": v })
    }
}

/// Alerts handler: `client.alerts()`.
#[derive(Debug, Clone)]
pub struct Alerts {
    client: FalconClient,
}

impl FalconClient {
    /// Alerts API (the legacy Detects API is decommissioned; use [`FalconClient::raw`] if you must).
    pub fn alerts(&self) -> Alerts {
        Alerts {
            client: self.clone(),
        }
    }
}

impl Alerts {
    /// `GET /alerts/queries/alerts/v2`: composite ids.
    pub fn query(&self) -> AlertQuery {
        AlertQuery {
            client: self.client.clone(),
            filter: None,
            sort: None,
            limit: None,
            offset: None,
            q: None,
            include_hidden: None,
        }
    }

    /// `POST /alerts/entities/alerts/v2`: alerts by composite id (requests of
    /// [`crate::Settings::alert_batch_size`]).
    pub async fn get<S: AsRef<str>>(&self, composite_ids: &[S]) -> Result<Vec<Alert>> {
        let batch = self.client.settings().alert_batch_size;
        let mut out = Vec::new();
        for chunk in composite_ids.chunks(batch) {
            let ids: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
            let req = ApiRequest::post("/alerts/entities/alerts/v2")
                .json(&serde_json::json!({ "composite_ids": ids }))?
                .idempotent(true);
            let env: Envelope<Vec<Alert>> = self.client.send_envelope(req).await?;
            out.extend(env.resources);
        }
        Ok(out)
    }

    /// `POST /alerts/combined/alerts/v1`: full alerts with `after` pagination.
    pub fn combined(&self) -> AlertCombined {
        AlertCombined {
            client: self.client.clone(),
            filter: None,
            sort: None,
            limit: None,
            after: None,
        }
    }

    /// `PATCH /alerts/entities/alerts/v3`: applies `action` (and any added with
    /// [`AlertUpdate::and`]) to the alerts.
    pub fn update<S: AsRef<str>>(&self, composite_ids: &[S], action: AlertAction) -> AlertUpdate {
        AlertUpdate {
            client: self.client.clone(),
            ids: composite_ids
                .iter()
                .map(|s| s.as_ref().to_string())
                .collect(),
            actions: vec![action],
            include_hidden: None,
        }
    }
}

/// Builder of `GET /alerts/queries/alerts/v2`.
#[derive(Debug, Clone)]
pub struct AlertQuery {
    client: FalconClient,
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
    q: Option<String>,
    include_hidden: Option<bool>,
}

impl AlertQuery {
    /// FQL filter.
    pub fn filter(mut self, fql: impl Into<String>) -> Self {
        self.filter = Some(fql.into());
        self
    }
    /// Sort, e.g. `created_timestamp|desc`.
    pub fn sort(mut self, sort: impl Into<String>) -> Self {
        self.sort = Some(sort.into());
        self
    }
    /// Page size (0–10,000).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Offset (offset + limit ≤ 10,000).
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = Some(offset);
        self
    }
    /// Free-text search.
    pub fn q(mut self, q: impl Into<String>) -> Self {
        self.q = Some(q.into());
        self
    }
    /// Include hidden alerts (server default true).
    pub fn include_hidden(mut self, yes: bool) -> Self {
        self.include_hidden = Some(yes);
        self
    }

    fn request(&self, offset: Option<u32>, limit: Option<u32>) -> ApiRequest {
        ApiRequest::get("/alerts/queries/alerts/v2")
            .query_opt("filter", self.filter.as_ref())
            .query_opt("sort", self.sort.as_ref())
            .query_opt("limit", limit)
            .query_opt("offset", offset)
            .query_opt("q", self.q.as_ref())
            .query_opt("include_hidden", self.include_hidden)
    }

    /// One page of composite ids.
    pub async fn send(self) -> Result<Page<String>> {
        let req = self.request(self.offset, self.limit);
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }

    /// Every matching composite id. Up to 10,000 results page by offset on query v2; beyond, the ids come
    /// from the combined endpoint's `after` cursor (same filter and sort), which has no ceiling. `q` is
    /// not supported by the combined endpoint and is rejected in that case.
    pub fn ids(self) -> impl Stream<Item = Result<String>> + Send + 'static {
        let this = self;
        futures::stream::once(async move {
            let limit = this.limit.unwrap_or(1000).max(1);
            let first: Envelope<Vec<String>> = this
                .client
                .send_envelope(this.request(this.offset, Some(limit)))
                .await?;
            let total = first
                .meta
                .pagination
                .as_ref()
                .and_then(|p| p.total)
                .unwrap_or(0);
            let start = this.offset.unwrap_or(0) as u64;
            let s: futures::stream::BoxStream<'static, Result<String>> = if total > OFFSET_CEILING {
                if this.q.is_some() {
                    return Err(Error::InvalidArgument(
                        "alert query with `q` matches more than 10,000 alerts: narrow the filter"
                            .into(),
                    ));
                }
                let mut c = AlertCombined {
                    client: this.client.clone(),
                    filter: this.filter.clone(),
                    sort: this.sort.clone(),
                    limit: None,
                    after: None,
                };
                if let Some(s) = &this.sort {
                    c.sort = Some(s.clone());
                }
                c.stream().map_ok(|a| a.composite_id).boxed()
            } else {
                let first_items = first.resources;
                let next = start + first_items.len() as u64;
                let more = !first_items.is_empty() && next < total;
                let head = futures::stream::iter(first_items.into_iter().map(Ok));
                if !more {
                    head.boxed()
                } else {
                    let rest = paged(next, move |offset: u64| {
                        let req = this.request(Some(offset as u32), Some(limit));
                        let client = this.client.clone();
                        async move {
                            let env: Envelope<Vec<String>> = client.send_envelope(req).await?;
                            let page = Page::from_envelope(env);
                            let next = offset + page.items.len() as u64;
                            let done = page.items.is_empty()
                                || page.total().is_none_or(|t| next >= t)
                                || next >= OFFSET_CEILING;
                            Ok((page.items, (!done).then_some(next)))
                        }
                    });
                    head.chain(rest).boxed()
                }
            };
            Ok(s)
        })
        .try_flatten()
    }

    /// Every matching alert as a full record (ids, then entities in batches).
    pub fn stream(self) -> impl Stream<Item = Result<Alert>> + Send + 'static {
        let client = self.client.clone();
        let batch = client.settings().alert_batch_size;
        self.ids()
            .try_chunks(batch)
            .map_err(|e| e.1)
            .and_then(move |ids| {
                let client = client.clone();
                async move { client.alerts().get(&ids).await }
            })
            .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
            .try_flatten()
    }
}

/// Builder of `POST /alerts/combined/alerts/v1`.
#[derive(Debug, Clone)]
pub struct AlertCombined {
    client: FalconClient,
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

impl AlertCombined {
    /// FQL filter.
    pub fn filter(mut self, fql: impl Into<String>) -> Self {
        self.filter = Some(fql.into());
        self
    }
    /// Sort (default `created_timestamp|desc`; page on immutable fields for live data).
    pub fn sort(mut self, sort: impl Into<String>) -> Self {
        self.sort = Some(sort.into());
        self
    }
    /// Page size (max 1,000; default [`crate::Settings::alert_page_size`]).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// `after` cursor of the previous page.
    pub fn after(mut self, after: impl Into<String>) -> Self {
        self.after = Some(after.into());
        self
    }

    fn request(&self, after: Option<&str>) -> Result<ApiRequest> {
        let mut body = serde_json::Map::new();
        if let Some(f) = &self.filter {
            body.insert("filter".into(), f.clone().into());
        }
        if let Some(s) = &self.sort {
            body.insert("sort".into(), s.clone().into());
        }
        body.insert(
            "limit".into(),
            self.limit
                .unwrap_or(self.client.settings().alert_page_size)
                .into(),
        );
        if let Some(a) = after {
            body.insert("after".into(), a.into());
        }
        Ok(ApiRequest::post("/alerts/combined/alerts/v1")
            .json(&body)?
            .idempotent(true))
    }

    /// One page; the next cursor is `page.pagination().after`.
    pub async fn send(self) -> Result<Page<Alert>> {
        let req = self.request(self.after.as_deref())?;
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }

    /// Every alert, following `after`.
    pub fn stream(self) -> impl Stream<Item = Result<Alert>> + Send + 'static {
        let first = self.after.clone();
        paged(
            (first, 0u64),
            move |(after, seen): (Option<String>, u64)| {
                let req = self.request(after.as_deref());
                let client = self.client.clone();
                async move {
                    let req = req?;
                    let endpoint = req.endpoint();
                    let env: Envelope<Vec<Alert>> = client.send_envelope(req).await?;
                    let page = Page::from_envelope(env);
                    let seen = seen + page.items.len() as u64;
                    let next = page.pagination().and_then(|p| p.after.clone());
                    let done = page.items.is_empty()
                        || next.as_deref().is_none_or(str::is_empty)
                        || page.total().is_some_and(|t| seen >= t);
                    if !done {
                        check_cursor(&endpoint, after.as_deref(), next.as_deref(), seen)?;
                    }
                    Ok((page.items, (!done).then_some((next, seen))))
                }
            },
        )
    }
}

/// Builder of `PATCH /alerts/entities/alerts/v3`.
#[derive(Debug, Clone)]
pub struct AlertUpdate {
    client: FalconClient,
    ids: Vec<String>,
    actions: Vec<AlertAction>,
    include_hidden: Option<bool>,
}

impl AlertUpdate {
    /// Adds another action to the same update.
    pub fn and(mut self, action: AlertAction) -> Self {
        self.actions.push(action);
        self
    }
    /// Include hidden alerts.
    pub fn include_hidden(mut self, yes: bool) -> Self {
        self.include_hidden = Some(yes);
        self
    }
    /// Sends the update in batches of [`crate::Settings::alert_batch_size`] ids. An update that only sets
    /// state is retried after a 5xx or a timeout; one with a comment (or an unknown action) only when the
    /// request provably was not sent, so that a comment is never duplicated.
    pub async fn send(self) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let params: Vec<serde_json::Value> =
            self.actions.iter().map(AlertAction::to_param).collect();
        let idempotent = self.actions.iter().all(AlertAction::is_idempotent);
        let batch = self.client.settings().alert_batch_size;
        let total = self.ids.len().div_ceil(batch);
        for (n, chunk) in self.ids.chunks(batch).enumerate() {
            let req = ApiRequest::patch("/alerts/entities/alerts/v3")
                .query_opt("include_hidden", self.include_hidden)
                .json(&serde_json::json!({ "composite_ids": chunk, "action_parameters": params }))?
                .idempotent(idempotent);
            if let Err(e) = self.client.send_envelope::<serde_json::Value>(req).await {
                return Err(if n == 0 {
                    e
                } else {
                    Error::Partial {
                        completed: n,
                        total,
                        source: Box::new(e),
                    }
                });
            }
        }
        Ok(())
    }
}
