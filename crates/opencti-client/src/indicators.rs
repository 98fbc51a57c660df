//! Paged indicator query (for reconciliation): `indicators(filters, first, after, ...)`.

use futures::stream::{self, Stream, TryStreamExt};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::client::OpenCtiClient;
use crate::error::Error;

/// Default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

pub(crate) const INDICATORS_QUERY: &str = "query Indicators($filters: FilterGroup, $search: String, $first: Int, $after: ID, $orderBy: IndicatorsOrdering, $orderMode: OrderingMode) { indicators(filters: $filters, search: $search, first: $first, after: $after, orderBy: $orderBy, orderMode: $orderMode) { edges { node { id standard_id entity_type name description indicator_types pattern pattern_type pattern_version valid_from valid_until x_opencti_score x_opencti_detection x_opencti_main_observable_type x_mitre_platforms revoked confidence created modified created_at updated_at objectLabel { id value color } } } pageInfo { startCursor endCursor hasNextPage hasPreviousPage globalCount } } }";

/// Handler for indicator queries; see [`OpenCtiClient::indicators`].
#[derive(Debug, Clone)]
pub struct IndicatorsHandler {
    client: OpenCtiClient,
}

/// A paged indicator query.
#[derive(Debug, Clone)]
pub struct IndicatorQuery {
    client: OpenCtiClient,
    filters: Option<Value>,
    search: Option<String>,
    first: u32,
    after: Option<String>,
    order_by: Option<String>,
    order_asc: bool,
}

/// One indicator with the fields a sync needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct IndicatorNode {
    /// OpenCTI internal id.
    pub id: String,
    /// STIX id (`indicator--…`), the key to match stream events.
    #[serde(default)]
    pub standard_id: Option<String>,
    /// `Indicator`.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Indicator types.
    #[serde(default, deserialize_with = "null_vec")]
    pub indicator_types: Vec<String>,
    /// The pattern.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `stix`, `yara`, ….
    #[serde(default)]
    pub pattern_type: Option<String>,
    /// Pattern version.
    #[serde(default)]
    pub pattern_version: Option<String>,
    /// Valid from (ISO date).
    #[serde(default)]
    pub valid_from: Option<String>,
    /// Valid until (ISO date).
    #[serde(default)]
    pub valid_until: Option<String>,
    /// Score 0–100.
    #[serde(default)]
    pub x_opencti_score: Option<i64>,
    /// Detection flag.
    #[serde(default)]
    pub x_opencti_detection: Option<bool>,
    /// `IPv4-Addr`, `StixFile`, ….
    #[serde(default)]
    pub x_opencti_main_observable_type: Option<String>,
    /// Platforms (open vocabulary, usually lower case).
    #[serde(default, deserialize_with = "null_vec")]
    pub x_mitre_platforms: Vec<String>,
    /// Revoked.
    #[serde(default, deserialize_with = "null_false")]
    pub revoked: bool,
    /// Confidence.
    #[serde(default)]
    pub confidence: Option<i64>,
    /// STIX `created`.
    #[serde(default)]
    pub created: Option<String>,
    /// STIX `modified`.
    #[serde(default)]
    pub modified: Option<String>,
    /// Platform creation date.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Platform update date.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Label values (from `objectLabel`, list or edges form).
    #[serde(default, rename = "objectLabel", deserialize_with = "labels")]
    pub labels: Vec<String>,
}

/// One page of indicators.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IndicatorPage {
    /// The indicators of this page.
    pub nodes: Vec<IndicatorNode>,
    /// Cursor of the last node (`after` of the next page).
    pub end_cursor: Option<String>,
    /// Whether more pages follow.
    pub has_next_page: bool,
    /// Total matching count, when the platform reports it.
    pub global_count: Option<u64>,
}

fn null_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn null_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

fn labels<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?.unwrap_or(Value::Null);
    let items: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => o
            .get("edges")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(|x| x.get("node")).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(items
        .into_iter()
        .filter_map(|x| x.get("value").and_then(Value::as_str).map(str::to_string))
        .collect())
}

#[derive(Deserialize)]
struct Data {
    indicators: Conn,
}
#[derive(Deserialize)]
struct Conn {
    #[serde(default)]
    edges: Vec<Edge>,
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
}
#[derive(Deserialize)]
struct Edge {
    node: IndicatorNode,
}
#[derive(Deserialize)]
struct PageInfo {
    #[serde(rename = "endCursor", default)]
    end_cursor: Option<String>,
    #[serde(rename = "hasNextPage", default)]
    has_next_page: bool,
    #[serde(rename = "globalCount", default)]
    global_count: Option<u64>,
}

impl OpenCtiClient {
    /// Indicator queries (paged; `.stream()` walks every page lazily).
    pub fn indicators(&self) -> IndicatorsHandler {
        IndicatorsHandler {
            client: self.clone(),
        }
    }
}

impl IndicatorsHandler {
    /// Starts a query with a FilterGroup (`{"mode":"and","filters":[…],"filterGroups":[]}`), e.g.
    /// the live stream's own filters from [`StreamCollection::filters_json`](crate::StreamCollection::filters_json).
    pub fn filters(&self, filters: Value) -> IndicatorQuery {
        self.query().filters(filters)
    }

    /// Starts a query without filters.
    pub fn query(&self) -> IndicatorQuery {
        IndicatorQuery {
            client: self.client.clone(),
            filters: None,
            search: None,
            first: DEFAULT_PAGE_SIZE,
            after: None,
            order_by: None,
            order_asc: true,
        }
    }
}

impl IndicatorQuery {
    /// FilterGroup JSON (`null` = none).
    pub fn filters(mut self, filters: Value) -> Self {
        self.filters = (!filters.is_null()).then_some(filters);
        self
    }
    /// Full-text search.
    pub fn search(mut self, s: impl Into<String>) -> Self {
        self.search = Some(s.into());
        self
    }
    /// Page size (default 500).
    pub fn first(mut self, n: u32) -> Self {
        self.first = n.max(1);
        self
    }
    /// Start after this cursor.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }
    /// Sort field (`created_at`, `updated_at`, …) and direction.
    pub fn order_by(mut self, field: impl Into<String>, ascending: bool) -> Self {
        self.order_by = Some(field.into());
        self.order_asc = ascending;
        self
    }

    /// Fetches one page.
    pub async fn send(&self) -> Result<IndicatorPage, Error> {
        let vars = serde_json::json!({
            "filters": self.filters,
            "search": self.search,
            "first": self.first,
            "after": self.after,
            "orderBy": self.order_by,
            "orderMode": self.order_by.as_ref().map(|_| if self.order_asc { "asc" } else { "desc" }),
        });
        let d: Data = self.client.graphql(INDICATORS_QUERY, vars).await?;
        Ok(IndicatorPage {
            nodes: d.indicators.edges.into_iter().map(|e| e.node).collect(),
            end_cursor: d.indicators.page_info.end_cursor,
            has_next_page: d.indicators.page_info.has_next_page,
            global_count: d.indicators.page_info.global_count,
        })
    }

    /// Every matching indicator, fetching pages lazily as the stream is polled.
    ///
    /// The listing is complete or it is an error: a page announcing more pages without a new
    /// `endCursor` (a repeated or missing cursor), or a last page reached with fewer indicators than the
    /// first page's `globalCount`, yields [`Error::Incomplete`] and ends the stream. More indicators than
    /// `globalCount` (created while listing) are fine.
    pub fn stream(
        self,
    ) -> impl Stream<Item = Result<IndicatorNode, Error>> + Send + Unpin + 'static {
        struct Walk {
            query: IndicatorQuery,
            received: u64,
            expected: Option<u64>,
            page: u64,
        }
        let start = Walk {
            query: self,
            received: 0,
            expected: None,
            page: 0,
        };
        let pages = stream::try_unfold(Some(start), |walk| async move {
            let Some(mut w) = walk else { return Ok(None) };
            let page = w.query.send().await?;
            w.received += page.nodes.len() as u64;
            w.page += 1;
            if w.expected.is_none() {
                w.expected = page.global_count;
            }
            let next = match (&page.end_cursor, page.has_next_page) {
                (Some(c), true)
                    if !c.is_empty() && w.query.after.as_deref() != Some(c.as_str()) =>
                {
                    w.query = w.query.clone().after(c.clone());
                    Some(w)
                }
                (_, true) => {
                    return Err(Error::Incomplete {
                        reason: format!(
                            "page {} announces more indicators without a new endCursor (after {} of {})",
                            w.page,
                            w.received,
                            w.expected.map_or("?".to_string(), |n| n.to_string()),
                        ),
                    });
                }
                (_, false) => {
                    if let Some(expected) = w.expected
                        && w.received < expected
                    {
                        return Err(Error::Incomplete {
                            reason: format!(
                                "the listing ended after {} indicators but globalCount is {expected}",
                                w.received
                            ),
                        });
                    }
                    None
                }
            };
            Ok(Some((page.nodes, next)))
        });
        Box::pin(
            pages
                .map_ok(|nodes| stream::iter(nodes.into_iter().map(Ok)))
                .try_flatten(),
        )
    }
}
