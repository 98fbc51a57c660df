//! The Falcon side: [`FalconStore`] implements [`IocStore`] over `falcon-sdk`'s IOC API, scoped to
//! the IOCs the connector owns (`created_by` = its API client id and `source` = `OpenCTI IOC`).
//!
//! The cloud follows FalconPy's rule, as the Python connector does: the default US-1 URL (or no
//! URL) logs in on US-1 and follows the token response's `X-Cs-Region`; a cloud name pins that
//! cloud; any other URL is used as given (proxy, simulator).

use std::collections::HashMap;

use falcon_sdk::fql::Fql;
use falcon_sdk::iocs::{Action, Indicator, IndicatorUpdate, NewIndicator, Platform};
use falcon_sdk::{FalconClient, iocs};
use futures::{Stream, TryStreamExt};
use secrecy::ExposeSecret;

use crate::batch::{ExistingIoc, IocUpdate};
use crate::config::{Config, IocAction};
use crate::engine::{IocStore, ItemFailure, WriteOutcome};
use crate::error::Error;
use crate::mapping::{
    COMMENT_IMPORT, COMMENT_WITHDRAW, DesiredIoc, IocKey, IocType, SOURCE, Severity, parse_time,
};

/// Builds the Falcon client from the configuration.
pub(crate) fn client(config: &Config) -> Result<FalconClient, Error> {
    let cs = &config.crowdstrike;
    let mut b = FalconClient::builder()
        .client_id(cs.client_id.clone())
        .client_secret(secrecy::SecretString::from(
            cs.client_secret.expose_secret().to_string(),
        ))
        .cloud(cs.endpoint.cloud())
        .ioc_batch_size(config.sync.write_chunk)
        .user_agent(concat!("ioc-sync/", env!("CARGO_PKG_VERSION")));
    for (region, url) in &cs.region_urls {
        b = b.region_url(*region, url.clone());
    }
    if let Some(cid) = &cs.member_cid {
        b = b.member_cid(cid.clone());
    }
    b.build().map_err(|e| sdk("client setup", e))
}

/// Longest lookup URL the store sends. Falcon's practical limit is about 18,500 characters
/// (`shared/reference/falcon-api.md` §1.5); the margin covers a base URL that changes with the region.
pub(crate) const MAX_URL_LEN: usize = 16_000;
const LOOKUP_PATH: &str = "/iocs/combined/indicator/v1";
const LOOKUP_LIMIT: u32 = 500;

/// Owned-IOC lookups and writes through `falcon-sdk`.
#[derive(Clone)]
pub(crate) struct FalconStore {
    client: FalconClient,
    owner: String,
}

impl std::fmt::Debug for FalconStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FalconStore")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn sdk(phase: &'static str, source: falcon_sdk::Error) -> Error {
    Error::Falcon { phase, source }
}

fn encoded_len(s: &str) -> usize {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .map(str::len)
        .sum()
}

impl FalconStore {
    /// A store whose IOCs are those created by `client`'s API client id with source `OpenCTI IOC`.
    pub(crate) fn new(client: FalconClient) -> FalconStore {
        let owner = client.client_id().to_string();
        FalconStore { client, owner }
    }

    /// The filter of one lookup.
    fn lookup_filter(&self, keys: &[IocKey]) -> String {
        let values: Vec<&str> = keys.iter().map(|k| k.value.as_str()).collect();
        self.owned_filter()
            .and(Fql::any_of("value", values))
            .to_string()
    }

    /// Length of the lookup URL for `keys` before any value: base, path, owner filter, limit.
    fn lookup_overhead(&self) -> usize {
        self.client.base_url().as_str().trim_end_matches('/').len()
            + LOOKUP_PATH.len()
            + "?filter=".len()
            + encoded_len(&self.lookup_filter(&[]))
            + format!("&limit={LOOKUP_LIMIT}").len()
    }

    /// The FQL that selects the connector's IOCs.
    pub(crate) fn owned_filter(&self) -> Fql {
        Fql::eq("created_by", self.owner.as_str()).and(Fql::eq("source", SOURCE))
    }

    /// The SDK client (alerts for dissemination assurance).
    pub(crate) fn sdk_client(&self) -> &FalconClient {
        &self.client
    }

    /// Every IOC the connector owns (for reconcile), skipping deleted ones.
    pub(crate) fn list_owned(
        &self,
    ) -> impl Stream<Item = Result<ExistingIoc, Error>> + Send + 'static {
        self.client
            .iocs()
            .combined()
            .filter(self.owned_filter().to_string())
            .limit(500)
            .stream()
            .map_err(|e| sdk("list", e))
            .try_filter_map(|i| async move { Ok(if i.deleted { None } else { existing(i) }) })
    }
}

fn existing(i: Indicator) -> Option<ExistingIoc> {
    let t = IocType::from_wire(i.type_.as_str())?;
    Some(ExistingIoc {
        id: i.id,
        key: IocKey::from_stored(t, &i.value),
        action: i.action.map(|a| a.as_str().to_string()),
        mobile_action: i.mobile_action.map(|a| a.as_str().to_string()),
        severity: i.severity.map(|s| s.as_str().to_string()),
        platforms: i.platforms.iter().map(|p| p.as_str().to_string()).collect(),
        tags: i.tags,
        description: i.description,
        expiration: i.expiration,
        applied_globally: i.applied_globally,
    })
}

fn action(a: IocAction) -> Action {
    Action::from(a.as_str())
}

fn severity(s: Severity) -> iocs::Severity {
    iocs::Severity::from(s.as_str())
}

fn platforms(p: &[String]) -> Vec<Platform> {
    p.iter().map(|s| Platform::from(s.as_str())).collect()
}

/// The SDK create item for a desired IOC (the Python connector's fields).
pub(crate) fn new_indicator(d: &DesiredIoc) -> NewIndicator {
    let mut n = NewIndicator::new(
        iocs::IocType::from(d.key.ioc_type.as_str()),
        d.key.value.clone(),
        action(d.action),
    );
    n.mobile_action = Some(action(d.mobile_action));
    n.severity = d.severity.map(severity);
    n.applied_globally = Some(true);
    n.source = Some(SOURCE.to_string());
    n.description = d.description.clone();
    n.expiration = d.expiration.as_deref().and_then(parse_time);
    n.tags = d.tags.clone().unwrap_or_default();
    n.platforms = d.platforms.as_deref().map(platforms).unwrap_or_default();
    n
}

fn update_item(u: &IocUpdate) -> IndicatorUpdate {
    let mut x = IndicatorUpdate::new(u.id.clone());
    x.action = u.action.map(action);
    x.mobile_action = u.action.map(action);
    x.tags = Some(u.tags.clone());
    if u.full {
        x.severity = u.severity.map(severity);
        x.platforms = u.platforms.as_deref().map(platforms);
        x.description = u.description.clone();
        x.expiration = u.expiration.as_deref().and_then(parse_time);
        x.applied_globally = Some(true);
        x.source = Some(SOURCE.to_string());
    }
    x
}

/// Falcon's per-item report, by position in the request. `written_at` says where a stored IOC was
/// in the request (`None`: not one of ours).
fn outcome(
    report: iocs::WriteReport,
    written_at: impl Fn(&Indicator) -> Option<usize>,
) -> WriteOutcome {
    let mut written = Vec::new();
    let mut ids = HashMap::new();
    for w in &report.written {
        if let Some(i) = written_at(w) {
            written.push(i);
            if !w.id.is_empty() {
                ids.insert(i, w.id.clone());
            }
        }
    }
    WriteOutcome {
        written,
        ids,
        failed: report
            .failed
            .into_iter()
            .map(|f| ItemFailure {
                index: f.index,
                key: match (f.ioc_type.as_deref().and_then(IocType::from_wire), f.value) {
                    (Some(t), Some(v)) => Some(IocKey {
                        ioc_type: t,
                        value: v,
                    }),
                    _ => None,
                },
                message: f.message,
            })
            .collect(),
    }
}

impl IocStore for FalconStore {
    async fn lookup(&self, keys: &[IocKey]) -> Result<Vec<ExistingIoc>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<Indicator> = self
            .client
            .iocs()
            .combined()
            .filter(self.lookup_filter(keys))
            .limit(LOOKUP_LIMIT)
            .stream()
            .try_collect()
            .await
            .map_err(|e| sdk("lookup", e))?;
        Ok(found
            .into_iter()
            .filter(|i| !i.deleted)
            .filter_map(existing)
            .collect())
    }

    /// Splits by count and by the encoded length of the lookup URL ([`MAX_URL_LEN`]).
    fn split_lookup<'k>(&self, keys: &'k [IocKey], max: usize) -> Vec<&'k [IocKey]> {
        let overhead = self.lookup_overhead();
        // `value:['a']` -> `'a'` and a separator (`,` encodes to 3 characters).
        let bare = encoded_len(&Fql::any_of("value", Vec::<String>::new()).to_string());
        let cost = |k: &IocKey| {
            encoded_len(&Fql::any_of("value", [k.value.as_str()]).to_string()) - bare + 3
        };
        let mut out = Vec::new();
        let (mut start, mut len) = (0, overhead);
        for (i, k) in keys.iter().enumerate() {
            let c = cost(k);
            if i > start && (i - start >= max.max(1) || len + c > MAX_URL_LEN) {
                out.push(&keys[start..i]);
                (start, len) = (i, overhead);
            }
            len += c;
        }
        if start < keys.len() {
            out.push(&keys[start..]);
        }
        out
    }

    async fn create(&self, items: &[DesiredIoc]) -> Result<WriteOutcome, Error> {
        let report = self
            .client
            .iocs()
            .create(items.iter().map(new_indicator).collect())
            .comment(COMMENT_IMPORT)
            .send()
            .await
            .map_err(|e| sdk("create", e))?;
        // Falcon stores values as sent, but compare as it does: case-insensitively.
        Ok(outcome(report, |w| {
            items.iter().position(|d| {
                d.key.ioc_type.as_str() == w.type_.as_str()
                    && d.key.value.eq_ignore_ascii_case(&w.value)
            })
        }))
    }

    async fn update(&self, items: &[IocUpdate]) -> Result<WriteOutcome, Error> {
        let comment = if items.iter().all(|u| u.soft_delete) {
            COMMENT_WITHDRAW
        } else {
            COMMENT_IMPORT
        };
        let report = self
            .client
            .iocs()
            .update(items.iter().map(update_item).collect())
            .comment(comment)
            .send()
            .await
            .map_err(|e| sdk("update", e))?;
        Ok(outcome(report, |w| items.iter().position(|u| u.id == w.id)))
    }

    async fn delete(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        self.client
            .iocs()
            .delete_ids(ids)
            .comment(COMMENT_WITHDRAW)
            .send()
            .await
            .map(|report| report.deleted)
            .map_err(|e| sdk("delete", e))
    }

    fn rate_limit_remaining(&self) -> Option<u64> {
        self.client.rate_limit().remaining
    }
}
