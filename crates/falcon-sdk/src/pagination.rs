//! Lazy pagination helpers shared by the handlers.

use std::future::Future;

use futures::{Stream, StreamExt, TryStreamExt, stream};

use crate::error::Result;

/// A stream of items fetched page by page: `fetch(state)` returns the page's items and the next state
/// (`None` = last page). The first error ends the stream.
pub(crate) fn paged<T, S, F, Fut>(
    init: S,
    fetch: F,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Send + 'static,
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(Vec<T>, Option<S>)>> + Send + 'static,
{
    stream::try_unfold((Some(init), fetch), |(state, fetch)| async move {
        let Some(s) = state else {
            return Ok::<_, crate::error::Error>(None);
        };
        let (items, next) = fetch(s).await?;
        Ok(Some((items, (next, fetch))))
    })
    .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}

/// Deserializes a timestamp leniently: an unparsable or empty string becomes `None` rather than failing
/// the whole page.
pub(crate) fn lenient_time<'de, D>(
    d: D,
) -> std::result::Result<Option<chrono::DateTime<chrono::Utc>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
            .ok()
            .map(|t| t.to_utc()),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
        _ => None,
    })
}

/// The repeated-cursor guard of every cursor-paged stream: `next` equal to the cursor just sent is an
/// error (following it would loop; stopping would truncate the listing silently).
pub(crate) fn check_cursor(
    endpoint: &str,
    sent: Option<&str>,
    next: Option<&str>,
    seen: u64,
) -> Result<()> {
    match (sent, next) {
        (Some(a), Some(b)) if !b.is_empty() && a == b => {
            tracing::warn!(endpoint, seen, "pagination cursor repeated");
            Err(crate::error::Error::Pagination {
                endpoint: endpoint.to_string(),
                seen,
            })
        }
        _ => Ok(()),
    }
}
