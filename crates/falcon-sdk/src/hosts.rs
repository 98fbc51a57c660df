//! Hosts: queries, scrolling, combined listing and device details.

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::client::FalconClient;
use crate::envelope::{Envelope, Offset, Page, null_default};
use crate::error::Result;
use crate::pagination::{check_cursor, lenient_time, paged};
use crate::transport::ApiRequest;

/// Maximum ids per device-details POST (API limit).
pub const DEVICE_DETAILS_MAX: usize = 5000;

/// A host (`DeviceapiDeviceSwagger`). Fields not listed are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Agent id (aid).
    pub device_id: String,
    /// Customer id.
    #[serde(default)]
    pub cid: Option<String>,
    /// Host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `Windows`, `Mac`, `Linux`.
    #[serde(default)]
    pub platform_name: Option<String>,
    /// OS version string.
    #[serde(default)]
    pub os_version: Option<String>,
    /// OS product name.
    #[serde(default)]
    pub os_product_name: Option<String>,
    /// `Workstation`, `Server`, `Domain Controller`.
    #[serde(default)]
    pub product_type_desc: Option<String>,
    /// Sensor version.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Containment status: `normal`, `contained`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// Last time the host checked in.
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// First time the host was seen.
    #[serde(default, deserialize_with = "lenient_time")]
    pub first_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// Local IP address.
    #[serde(default)]
    pub local_ip: Option<String>,
    /// External IP address.
    #[serde(default)]
    pub external_ip: Option<String>,
    /// MAC address.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// AD domain.
    #[serde(default)]
    pub machine_domain: Option<String>,
    /// Host group ids.
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
    /// Tags (`FalconGroupingTags/...`, `SensorGroupingTags/...`).
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Every other field of the record.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Hosts handler: `client.hosts()`.
#[derive(Debug, Clone)]
pub struct Hosts {
    client: FalconClient,
}

impl FalconClient {
    /// Hosts (devices) API.
    pub fn hosts(&self) -> Hosts {
        Hosts {
            client: self.clone(),
        }
    }
}

impl Hosts {
    pub(crate) fn client(&self) -> &FalconClient {
        &self.client
    }

    /// `GET /devices/queries/devices/v1`: one page of host ids by offset (offset + limit ≤ 10,000).
    /// For every id without the ceiling use [`HostQuery::ids`] or [`HostScroll::ids`].
    pub fn query(&self) -> HostQuery {
        HostQuery {
            client: self.client.clone(),
            filter: None,
            sort: None,
            limit: None,
            offset: None,
        }
    }

    /// `GET /devices/queries/devices-scroll/v1`: host ids with a scroll token, without the 10,000
    /// ceiling. `.ids()` streams every id, `.devices()` every host as a full record.
    pub fn scroll(&self) -> HostScroll {
        HostScroll {
            client: self.client.clone(),
            filter: None,
            sort: None,
            limit: None,
            offset: None,
        }
    }

    /// `POST /devices/entities/devices/v2`: details of `ids`, split into requests of at most 5,000 ids.
    /// Unknown ids are simply absent from the result.
    pub async fn details<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Device>> {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        device_details(&self.client, &ids).await
    }

    /// `GET /devices/combined/devices/v1`: full records, paged with the `next` token.
    pub fn combined(&self) -> HostCombined {
        HostCombined {
            client: self.client.clone(),
            filter: None,
            sort: None,
            limit: None,
            offset: None,
            fields: None,
        }
    }
}

pub(crate) async fn device_details(client: &FalconClient, ids: &[&str]) -> Result<Vec<Device>> {
    let batch = client
        .settings()
        .device_details_batch
        .min(DEVICE_DETAILS_MAX);
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(batch) {
        let req = ApiRequest::post("/devices/entities/devices/v2")
            .json(&serde_json::json!({ "ids": chunk }))?
            .idempotent(true);
        let env: Envelope<Vec<Device>> = client.send_envelope(req).await?;
        out.extend(env.resources);
    }
    Ok(out)
}

/// Builder of `GET /devices/queries/devices/v1`.
#[derive(Debug, Clone)]
pub struct HostQuery {
    client: FalconClient,
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

impl HostQuery {
    /// FQL filter (see [`crate::fql::Fql`]).
    pub fn filter(mut self, fql: impl Into<String>) -> Self {
        self.filter = Some(fql.into());
        self
    }
    /// Sort, e.g. `hostname.asc`.
    pub fn sort(mut self, sort: impl Into<String>) -> Self {
        self.sort = Some(sort.into());
        self
    }
    /// Page size (1–5,000).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Offset (offset + limit ≤ 10,000).
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = Some(offset);
        self
    }
    /// Fetches one page.
    pub async fn send(self) -> Result<Page<String>> {
        let req = ApiRequest::get("/devices/queries/devices/v1")
            .query_opt("filter", self.filter)
            .query_opt("sort", self.sort)
            .query_opt("limit", self.limit)
            .query_opt("offset", self.offset);
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }
    /// Every matching id, through the scroll endpoint (same filter and sort, no 10,000 ceiling).
    pub fn ids(self) -> impl Stream<Item = Result<String>> + Send + 'static {
        HostScroll {
            client: self.client,
            filter: self.filter,
            sort: self.sort,
            limit: None,
            offset: None,
        }
        .ids()
    }
}

/// Builder of `GET /devices/queries/devices-scroll/v1`.
#[derive(Debug, Clone)]
pub struct HostScroll {
    client: FalconClient,
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    offset: Option<String>,
}

#[derive(Debug, Clone)]
struct ScrollState {
    filter: Option<String>,
    sort: Option<String>,
    limit: u32,
    token: Option<String>,
    seen: u64,
}

async fn scroll_page(
    client: &FalconClient,
    st: ScrollState,
) -> Result<(Vec<String>, Option<ScrollState>)> {
    let req = ApiRequest::get("/devices/queries/devices-scroll/v1")
        .query_opt("filter", st.filter.as_ref())
        .query_opt("sort", st.sort.as_ref())
        .query("limit", st.limit)
        .query_opt("offset", st.token.as_ref());
    let endpoint = req.endpoint();
    let env: Envelope<Vec<String>> = client.send_envelope(req).await?;
    let page = Page::from_envelope(env);
    let seen = st.seen + page.items.len() as u64;
    let token = page
        .pagination()
        .and_then(|p| p.offset.clone())
        .map(|o| o.as_query());
    let done = page.items.is_empty()
        || token.as_deref().is_none_or(str::is_empty)
        || page.total().is_some_and(|t| seen >= t);
    if !done {
        check_cursor(&endpoint, st.token.as_deref(), token.as_deref(), seen)?;
    }
    let next = (!done).then_some(ScrollState { token, seen, ..st });
    Ok((page.items, next))
}

impl HostScroll {
    /// FQL filter.
    pub fn filter(mut self, fql: impl Into<String>) -> Self {
        self.filter = Some(fql.into());
        self
    }
    /// Sort, e.g. `hostname.asc`.
    pub fn sort(mut self, sort: impl Into<String>) -> Self {
        self.sort = Some(sort.into());
        self
    }
    /// Page size (1–10,000; default [`crate::Settings::host_page_size`]).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Scroll token of the previous page (`meta.pagination.offset`).
    pub fn offset(mut self, token: impl Into<String>) -> Self {
        self.offset = Some(token.into());
        self
    }
    /// Fetches one page; the next token is `page.pagination().offset`.
    pub async fn send(self) -> Result<Page<String>> {
        let req = ApiRequest::get("/devices/queries/devices-scroll/v1")
            .query_opt("filter", self.filter)
            .query_opt("sort", self.sort)
            .query_opt("limit", self.limit)
            .query_opt("offset", self.offset);
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }
    fn state(&self) -> ScrollState {
        ScrollState {
            limit: self.limit.unwrap_or(self.client.settings().host_page_size),
            filter: self.filter.clone(),
            sort: self.sort.clone(),
            token: self.offset.clone(),
            seen: 0,
        }
    }
    /// Every matching host id from this point on, page by page.
    pub fn ids(self) -> impl Stream<Item = Result<String>> + Send + 'static {
        let state = self.state();
        let client = self.client;
        paged(state, move |st| {
            let client = client.clone();
            async move { scroll_page(&client, st).await }
        })
    }
    /// Every matching host as a full record: scrolls ids and fetches the details of each page.
    pub fn devices(self) -> impl Stream<Item = Result<Device>> + Send + 'static {
        let state = self.state();
        let client = self.client;
        paged(state, move |st: ScrollState| {
            let client = client.clone();
            async move {
                let (ids, next) = scroll_page(&client, st).await?;
                let devices =
                    device_details(&client, &ids.iter().map(String::as_str).collect::<Vec<_>>())
                        .await?;
                Ok((devices, next))
            }
        })
    }
}

/// Builder of `GET /devices/combined/devices/v1`.
#[derive(Debug, Clone)]
pub struct HostCombined {
    client: FalconClient,
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    offset: Option<String>,
    fields: Option<String>,
}

impl HostCombined {
    /// FQL filter.
    pub fn filter(mut self, fql: impl Into<String>) -> Self {
        self.filter = Some(fql.into());
        self
    }
    /// Sort, e.g. `hostname.asc`.
    pub fn sort(mut self, sort: impl Into<String>) -> Self {
        self.sort = Some(sort.into());
        self
    }
    /// Page size (1–10,000, default 100).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// The `next` token of the previous page.
    pub fn offset(mut self, next: impl Into<String>) -> Self {
        self.offset = Some(next.into());
        self
    }
    /// Restrict returned fields, e.g. `["device_id", "hostname"]`.
    pub fn fields<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, fields: I) -> Self {
        let v: Vec<String> = fields.into_iter().map(|s| s.as_ref().to_string()).collect();
        self.fields = Some(v.join(","));
        self
    }

    fn request(&self, offset: Option<&str>) -> ApiRequest {
        ApiRequest::get("/devices/combined/devices/v1")
            .query_opt("filter", self.filter.as_ref())
            .query_opt("sort", self.sort.as_ref())
            .query_opt("limit", self.limit)
            .query_opt("offset", offset)
            .query_opt("fields", self.fields.as_ref())
    }

    /// Fetches one page; the next token is `page.pagination().next`.
    pub async fn send(self) -> Result<Page<Device>> {
        let req = self.request(self.offset.as_deref());
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }

    /// Every matching host, following `next` until it is empty.
    pub fn stream(self) -> impl Stream<Item = Result<Device>> + Send + 'static {
        let first = self.offset.clone();
        paged(
            (first, 0u64),
            move |(offset, seen): (Option<String>, u64)| {
                let this = self.clone();
                async move {
                    let req = this.request(offset.as_deref());
                    let endpoint = req.endpoint();
                    let env: Envelope<Vec<Device>> = this.client.send_envelope(req).await?;
                    let page = Page::from_envelope(env);
                    let seen = seen + page.items.len() as u64;
                    let next = page.pagination().and_then(|p| {
                        p.next.clone().or_else(|| match &p.offset {
                            Some(Offset::Token(t)) if Some(t) != offset.as_ref() => Some(t.clone()),
                            _ => None,
                        })
                    });
                    let done = page.items.is_empty()
                        || next.as_deref().is_none_or(str::is_empty)
                        || page.total().is_some_and(|t| seen >= t);
                    if !done {
                        check_cursor(&endpoint, offset.as_deref(), next.as_deref(), seen)?;
                    }
                    Ok((page.items, (!done).then_some((next, seen))))
                }
            },
        )
    }
}
