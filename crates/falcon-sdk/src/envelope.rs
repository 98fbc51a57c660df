//! The Falcon response envelope (`meta`, `resources`, `errors`) and pages.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

use crate::error::ApiErrorItem;

/// Deserializes `null` as the type's default (Falcon sends `null` where the spec says `[]`).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An offset that is either a number (offset pagination) or an opaque token (scroll pagination).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Offset {
    /// Numeric offset.
    Number(u64),
    /// Opaque scroll/next token.
    Token(String),
}

impl Offset {
    /// The value as a query-string value.
    pub fn as_query(&self) -> String {
        match self {
            Offset::Number(n) => n.to_string(),
            Offset::Token(t) => t.clone(),
        }
    }
}

/// `meta.pagination`, covering every pagination style Falcon uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pagination {
    /// Numeric offset or scroll token.
    #[serde(default)]
    pub offset: Option<Offset>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Total number of matching results.
    #[serde(default)]
    pub total: Option<u64>,
    /// `after` cursor (IOCs, alerts combined).
    #[serde(default)]
    pub after: Option<String>,
    /// Next-page token (hosts combined).
    #[serde(default)]
    pub next: Option<String>,
    /// Expiry of the scroll token (unit not documented).
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// `meta.writes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Writes {
    /// Number of resources the call changed.
    #[serde(default)]
    pub resources_affected: Option<u64>,
}

/// `meta` of a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Meta {
    /// Server-side query time in seconds.
    #[serde(default)]
    pub query_time: Option<f64>,
    /// The backend service that answered.
    #[serde(default)]
    pub powered_by: Option<String>,
    /// Trace id to quote to support.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// Pagination state.
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// Write counters.
    #[serde(default)]
    pub writes: Option<Writes>,
}

/// The common Falcon response body. `R` is the shape of `resources` (a `Vec<T>` or a map).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: DeserializeOwned + Default"))]
pub struct Envelope<R> {
    /// Response metadata.
    #[serde(default, deserialize_with = "null_default")]
    pub meta: Meta,
    /// The resources (`null`/missing becomes `R::default()`).
    #[serde(default, deserialize_with = "null_default")]
    pub resources: R,
    /// `errors[]` (`null`/missing becomes empty).
    #[serde(default, deserialize_with = "null_default")]
    pub errors: Vec<ApiErrorItem>,
}

/// One page of a list operation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Response metadata (pagination state, trace id).
    pub meta: Meta,
}

impl<T> Page<T> {
    pub(crate) fn from_envelope(env: Envelope<Vec<T>>) -> Self {
        Page {
            items: env.resources,
            meta: env.meta,
        }
    }

    /// Total matching results reported by the server.
    pub fn total(&self) -> Option<u64> {
        self.meta.pagination.as_ref().and_then(|p| p.total)
    }

    /// The pagination block.
    pub fn pagination(&self) -> Option<&Pagination> {
        self.meta.pagination.as_ref()
    }
}
