//! Request counts per route, served by `GET /_sandbox/requests` on the OpenCTI and Cado simulators.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Counts of requests per `"<METHOD> <route>"` (route = the matched route template). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestCounts {
    inner: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounts {
    pub(crate) fn add(&self, key: String) {
        *self
            .inner
            .lock()
            .expect("counts lock")
            .entry(key)
            .or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.inner.lock().expect("counts lock").clone()
    }
}

/// Route-layer middleware counting every matched request (control routes included).
pub(crate) async fn count(
    State(counts): State<RequestCounts>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    counts.add(format!("{} {}", request.method(), route));
    next.run(request).await
}
