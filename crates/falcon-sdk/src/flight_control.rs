//! Flight Control (MSSP): child CIDs, CID groups, a client per child, and [`TenantSet`] to run one
//! operation across children.
//!
//! Wire contract: `shared/reference/falcon-streams-actions-mssp.md` §3. A child client is a new
//! [`FalconClient`] with the parent's credentials and `member_cid`: it has its own token (minted with
//! `member_cid`), its own rate-limit state and cooldown, and shares nothing mutable with the parent.

use std::collections::BTreeMap;
use std::future::Future;

use futures::{StreamExt, stream};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::client::FalconClient;
use crate::envelope::{Envelope, Page};
use crate::error::{Error, Result};
use crate::transport::ApiRequest;

const PAGE: u32 = 500;
const DETAILS_BATCH: usize = 500;

/// A child CID (`domain.ChildLink`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Child {
    /// Child CID.
    pub child_cid: String,
    /// Parent CID.
    #[serde(default)]
    pub child_of: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Status (`active`, …).
    #[serde(default)]
    pub status: Option<String>,
    /// The 2-character CID checksum.
    #[serde(default)]
    pub checksum: Option<String>,
}

/// A CID group and its member CIDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidGroup {
    /// Group id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Member CIDs.
    pub cids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct GroupWire {
    #[serde(default)]
    cid_group_id: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct MembersWire {
    #[serde(default)]
    cid_group_id: String,
    #[serde(default)]
    cids: Vec<String>,
}

/// Flight Control handler: `client.flight_control()` (needs `mssp:read`).
#[derive(Debug, Clone)]
pub struct FlightControl {
    client: FalconClient,
}

impl FalconClient {
    /// Flight Control (MSSP) API of a parent CID.
    pub fn flight_control(&self) -> FlightControl {
        FlightControl {
            client: self.clone(),
        }
    }

    /// A client acting in child CID `cid` (sent as `member_cid`: lower-case, without a `-XX` checksum).
    /// Same credentials, settings and cloud as this client; its own token, rate-limit state and
    /// cooldown. This client is not changed.
    pub fn for_member(&self, cid: &str) -> Result<FalconClient> {
        let cid = normalise_cid(cid)?;
        let i = &self.inner;
        let cloud = match (&i.cloud, self.region()) {
            (crate::Cloud::Auto, Some(r)) => crate::Cloud::from(r),
            (c, _) => c.clone(),
        };
        let mut b = FalconClient::builder()
            .client_id(i.creds.client_id.clone())
            .client_secret(i.creds.client_secret.clone())
            .member_cid(cid)
            .cloud(cloud)
            .settings(i.settings.clone())
            .allow_insecure_http(i.allow_insecure_http);
        for (r, u) in &i.region_urls {
            b = b.region_url(*r, u.clone());
        }
        b.build()
    }
}

/// `0123…ef-AB` → `0123…ef`; refuses anything that is not 32 hex digits.
fn normalise_cid(cid: &str) -> Result<String> {
    let c = cid.trim();
    let c = c.split_once('-').map_or(c, |(h, _)| h).to_ascii_lowercase();
    if c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(c)
    } else {
        Err(Error::InvalidArgument(format!(
            "member CID `{cid}`: expected 32 hex digits (an optional -XX checksum is dropped)"
        )))
    }
}

impl FlightControl {
    /// Every child CID id (`GET /mssp/queries/children/v1`, paged by offset until `total`).
    pub async fn child_ids(&self) -> Result<Vec<String>> {
        self.all_ids("/mssp/queries/children/v1").await
    }

    async fn all_ids(&self, path: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let req = ApiRequest::get(path)
                .query("limit", PAGE)
                .query("offset", out.len());
            let page = Page::from_envelope(self.client.send_envelope::<Vec<String>>(req).await?);
            let n = page.items.len();
            out.extend(page.items.iter().cloned());
            let done = n == 0 || page.total().is_none_or(|t| out.len() as u64 >= t);
            if done {
                return Ok(out);
            }
        }
    }

    /// Every child with its details (`POST /mssp/entities/children/GET/v2` by 500). Ids that the
    /// details call reports as errors (207) are returned with only `child_cid` set.
    pub async fn children(&self) -> Result<Vec<Child>> {
        let ids = self.child_ids().await?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(DETAILS_BATCH) {
            let req = ApiRequest::post("/mssp/entities/children/GET/v2")
                .json(&serde_json::json!({ "ids": chunk }))?
                .idempotent(true)
                .accept_status(StatusCode::MULTI_STATUS);
            let env: Envelope<Vec<Child>> = self.client.send_envelope(req).await?;
            let mut got: BTreeMap<String, Child> = env
                .resources
                .into_iter()
                .map(|c| (c.child_cid.to_ascii_lowercase(), c))
                .collect();
            for id in chunk {
                out.push(
                    got.remove(&id.to_ascii_lowercase())
                        .unwrap_or_else(|| Child {
                            child_cid: id.clone(),
                            ..Child::default()
                        }),
                );
            }
        }
        Ok(out)
    }

    /// Every CID group with its members (`/mssp/queries/cid-groups/v1`, `…/entities/cid-groups/v2`,
    /// `…/entities/cid-group-members/v2`).
    pub async fn cid_groups(&self) -> Result<Vec<CidGroup>> {
        let ids = self.all_ids("/mssp/queries/cid-groups/v1").await?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let req = ApiRequest::get("/mssp/entities/cid-groups/v2").query_all("ids", chunk);
            let groups: Envelope<Vec<GroupWire>> = self.client.send_envelope(req).await?;
            let req = ApiRequest::get("/mssp/entities/cid-group-members/v2")
                .query_all("ids", chunk)
                .accept_status(StatusCode::MULTI_STATUS);
            let members: Envelope<Vec<MembersWire>> = self.client.send_envelope(req).await?;
            let mut by_id: BTreeMap<String, Vec<String>> = members
                .resources
                .into_iter()
                .map(|m| (m.cid_group_id, m.cids))
                .collect();
            out.extend(groups.resources.into_iter().map(|g| CidGroup {
                cids: by_id.remove(&g.cid_group_id).unwrap_or_default(),
                id: g.cid_group_id,
                name: g.name,
            }));
        }
        Ok(out)
    }
}

/// Runs one operation across child CIDs with bounded concurrency, one client per child.
///
/// ```no_run
/// # async fn f(parent: falcon_sdk::FalconClient) -> Result<(), falcon_sdk::Error> {
/// use falcon_sdk::flight_control::TenantSet;
/// let cids = parent.flight_control().child_ids().await?;
/// let counts = TenantSet::new(&parent, cids)
///     .concurrency(4)
///     .run(|client, _cid| async move { client.hosts().query().limit(1).send().await.map(|p| p.total()) })
///     .await;
/// for (cid, r) in counts {
///     println!("{cid}: {r:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantSet {
    parent: FalconClient,
    cids: Vec<String>,
    concurrency: usize,
}

impl TenantSet {
    /// The children `cids` of `parent` (duplicates removed).
    pub fn new<I, S>(parent: &FalconClient, cids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = cids.into_iter().map(Into::into).collect();
        v.sort();
        v.dedup();
        TenantSet {
            parent: parent.clone(),
            cids: v,
            concurrency: 4,
        }
    }

    /// Children processed at once (default 4, at least 1). Each child has its own 6,000/min budget,
    /// but token minting for all of them shares the token endpoint's 300/min per source IP.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Runs `op(child_client, cid)` for every child; one result per child, failures included (a child
    /// whose client cannot be built or whose token is refused reports that error).
    pub async fn run<T, F, Fut>(self, op: F) -> BTreeMap<String, Result<T>>
    where
        F: Fn(FalconClient, String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let parent = &self.parent;
        let op = &op;
        stream::iter(self.cids)
            .map(|cid| async move {
                let r = match parent.for_member(&cid) {
                    Ok(client) => op(client, cid.clone()).await,
                    Err(e) => Err(e),
                };
                (cid, r)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_cids_are_normalised() {
        let c = "0123456789ABCDEF0123456789abcdef";
        assert_eq!(normalise_cid(&format!("{c}-7F")).unwrap(), c.to_lowercase());
        assert!(normalise_cid("nothex").is_err());
    }
}
