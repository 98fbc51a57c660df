//! Host groups: query, get, combined, members, find by name.

use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::client::FalconClient;
use crate::envelope::{Envelope, Page};
use crate::error::Result;
use crate::fql::Fql;
use crate::hosts::{Device, device_details};
use crate::pagination::paged;
use crate::transport::ApiRequest;

/// Offset pagination ceiling of the query endpoints (offset + limit ≤ 10,000).
pub const OFFSET_CEILING: u64 = 10_000;

/// A host group (`HostGroupsHostGroupV1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostGroup {
    /// Group id (32 hex).
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// `static`, `dynamic` or `staticByID`.
    #[serde(default)]
    pub group_type: Option<String>,
    /// FQL assignment rule (dynamic groups).
    #[serde(default)]
    pub assignment_rule: Option<String>,
    /// Creator.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Creation time (RFC 3339 string as sent).
    #[serde(default)]
    pub created_timestamp: Option<String>,
    /// Last modifier.
    #[serde(default)]
    pub modified_by: Option<String>,
    /// Last modification time.
    #[serde(default)]
    pub modified_timestamp: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Host groups handler: `client.host_groups()`.
#[derive(Debug, Clone)]
pub struct HostGroups {
    client: FalconClient,
}

impl FalconClient {
    /// Host groups API.
    pub fn host_groups(&self) -> HostGroups {
        HostGroups {
            client: self.clone(),
        }
    }
}

/// Common list parameters (filter, sort, limit, offset).
#[derive(Debug, Clone, Default)]
struct ListParams {
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

impl ListParams {
    fn apply(&self, req: ApiRequest) -> ApiRequest {
        req.query_opt("filter", self.filter.as_ref())
            .query_opt("sort", self.sort.as_ref())
            .query_opt("limit", self.limit)
            .query_opt("offset", self.offset)
    }
}

/// Offset-paged stream of an endpoint returning `Vec<T>`, stopping at `total`, an empty page or the
/// 10,000 ceiling.
fn offset_stream<T>(
    client: FalconClient,
    template: ApiRequest,
    params: ListParams,
    page_size: u32,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    let start = params.offset.unwrap_or(0) as u64;
    paged(start, move |offset: u64| {
        let client = client.clone();
        let mut p = params.clone();
        let limit = p.limit.unwrap_or(page_size);
        p.limit = Some(limit);
        p.offset = Some(offset as u32);
        let req = p.apply(template.clone());
        async move {
            let env: Envelope<Vec<T>> = client.send_envelope(req).await?;
            let page = Page::from_envelope(env);
            let next = offset + page.items.len() as u64;
            let done = page.items.is_empty()
                || page.total().is_some_and(|t| next >= t)
                || next + limit as u64 > OFFSET_CEILING;
            Ok((page.items, (!done).then_some(next)))
        }
    })
}

macro_rules! list_builder_methods {
    () => {
        /// FQL filter.
        pub fn filter(mut self, fql: impl Into<String>) -> Self {
            self.params.filter = Some(fql.into());
            self
        }
        /// Sort, e.g. `name.asc`.
        pub fn sort(mut self, sort: impl Into<String>) -> Self {
            self.params.sort = Some(sort.into());
            self
        }
        /// Page size (1–5,000).
        pub fn limit(mut self, limit: u32) -> Self {
            self.params.limit = Some(limit);
            self
        }
        /// Offset.
        pub fn offset(mut self, offset: u32) -> Self {
            self.params.offset = Some(offset);
            self
        }
    };
}

impl HostGroups {
    /// `GET /devices/queries/host-groups/v1`: group ids.
    pub fn query(&self) -> HostGroupQuery {
        HostGroupQuery {
            client: self.client.clone(),
            params: ListParams::default(),
        }
    }

    /// `GET /devices/combined/host-groups/v1`: full groups.
    pub fn combined(&self) -> HostGroupCombined {
        HostGroupCombined {
            client: self.client.clone(),
            params: ListParams::default(),
        }
    }

    /// `GET /devices/entities/host-groups/v1`: groups by id (requests of at most 200 ids).
    pub async fn get<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<HostGroup>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(200) {
            let req = ApiRequest::get("/devices/entities/host-groups/v1")
                .query_all("ids", chunk.iter().map(|s| s.as_ref()));
            let env: Envelope<Vec<HostGroup>> = self.client.send_envelope(req).await?;
            out.extend(env.resources);
        }
        Ok(out)
    }

    /// The group named `name` (FQL `name:'<name>'`); exact match preferred, else case-insensitive.
    pub async fn find_by_name(&self, name: &str) -> Result<Option<HostGroup>> {
        let page = self
            .combined()
            .filter(Fql::eq("name", name).to_string())
            .limit(100)
            .send()
            .await?;
        let mut items = page.items;
        if let Some(i) = items.iter().position(|g| g.name == name) {
            return Ok(Some(items.swap_remove(i)));
        }
        Ok(items
            .into_iter()
            .find(|g| g.name.eq_ignore_ascii_case(name)))
    }

    /// Members of a group: `GET /devices/queries/host-group-members/v1?id=<group_id>`.
    pub fn members(&self, group_id: impl Into<String>) -> GroupMembers {
        GroupMembers {
            client: self.client.clone(),
            group_id: group_id.into(),
            params: ListParams::default(),
        }
    }
}

/// Builder of `GET /devices/queries/host-groups/v1`.
#[derive(Debug, Clone)]
pub struct HostGroupQuery {
    client: FalconClient,
    params: ListParams,
}

impl HostGroupQuery {
    list_builder_methods!();

    /// One page of ids.
    pub async fn send(self) -> Result<Page<String>> {
        let req = self
            .params
            .apply(ApiRequest::get("/devices/queries/host-groups/v1"));
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }

    /// Every id (offset paging, up to the 10,000 ceiling).
    pub fn ids(self) -> impl Stream<Item = Result<String>> + Send + 'static {
        offset_stream(
            self.client,
            ApiRequest::get("/devices/queries/host-groups/v1"),
            self.params,
            5000,
        )
    }
}

/// Builder of `GET /devices/combined/host-groups/v1`.
#[derive(Debug, Clone)]
pub struct HostGroupCombined {
    client: FalconClient,
    params: ListParams,
}

impl HostGroupCombined {
    list_builder_methods!();

    /// One page of groups.
    pub async fn send(self) -> Result<Page<HostGroup>> {
        let req = self
            .params
            .apply(ApiRequest::get("/devices/combined/host-groups/v1"));
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }

    /// Every group (offset paging, up to the 10,000 ceiling).
    pub fn stream(self) -> impl Stream<Item = Result<HostGroup>> + Send + 'static {
        offset_stream(
            self.client,
            ApiRequest::get("/devices/combined/host-groups/v1"),
            self.params,
            5000,
        )
    }
}

/// Builder of a group's members.
#[derive(Debug, Clone)]
pub struct GroupMembers {
    client: FalconClient,
    group_id: String,
    params: ListParams,
}

impl GroupMembers {
    list_builder_methods!();

    fn template(&self) -> ApiRequest {
        ApiRequest::get("/devices/queries/host-group-members/v1").query("id", &self.group_id)
    }

    /// One page of member host ids.
    pub async fn send(self) -> Result<Page<String>> {
        let req = self.params.apply(self.template());
        Ok(Page::from_envelope(self.client.send_envelope(req).await?))
    }

    /// Every member host id. Groups of up to 10,000 members page by offset on the members endpoint;
    /// larger groups are scrolled on `/devices/queries/devices-scroll/v1` with the filter
    /// `groups:'<group_id>'` (plus the caller's filter), which has no ceiling.
    pub fn ids(self) -> impl Stream<Item = Result<String>> + Send + 'static {
        let this = self;
        futures::stream::once(async move {
            let mut probe = this.params.clone();
            probe.limit = Some(1);
            probe.offset = Some(0);
            let env: Envelope<Vec<String>> = this
                .client
                .send_envelope(probe.apply(this.template()))
                .await?;
            let total = env.meta.pagination.and_then(|p| p.total).unwrap_or(0);
            let s: futures::stream::BoxStream<'static, Result<String>> = if total > OFFSET_CEILING {
                let mut f = Fql::eq("groups", this.group_id.as_str());
                if let Some(user) = &this.params.filter {
                    f = f.and(Fql::raw(user.clone()));
                }
                let mut scroll = this.client.hosts().scroll().filter(f);
                if let Some(s) = &this.params.sort {
                    scroll = scroll.sort(s.clone());
                }
                scroll.ids().boxed()
            } else {
                let template = this.template();
                offset_stream(this.client, template, this.params, 5000).boxed()
            };
            Ok::<_, crate::Error>(s)
        })
        .try_flatten()
    }

    /// Every member host as a full record (ids, then details in requests of up to 5,000).
    pub fn devices(self) -> impl Stream<Item = Result<Device>> + Send + 'static {
        let client = self.client.clone();
        let batch = client.settings().device_details_batch;
        self.ids()
            .try_chunks(batch)
            .map_err(|e| e.1)
            .and_then(move |ids| {
                let client = client.clone();
                async move {
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    device_details(&client, &refs).await
                }
            })
            .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
            .try_flatten()
    }
}
