//! Thin adapter from the RTR module to the crate transport ([`crate::transport::ApiRequest`]).

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::FalconClient;
use crate::error::{DecodeDetail, Error, Result};
use crate::transport::{ApiRequest, read_body};

use super::ByteStream;
use super::types::null_default;

/// Margin added to an RTR request `timeout` for the HTTP deadline: the server answers at its own
/// timeout, so the client must wait a little longer.
const HTTP_MARGIN: Duration = Duration::from_secs(30);

/// Per-call transport options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opts {
    idempotent: bool,
    http_timeout: Option<Duration>,
    accept: Option<reqwest::StatusCode>,
}

impl Opts {
    /// Retried on 5xx, timeouts and connection errors.
    pub(crate) fn idempotent() -> Self {
        Opts {
            idempotent: true,
            http_timeout: None,
            accept: None,
        }
    }

    /// Retried only when provably not sent (commands).
    pub(crate) fn not_idempotent() -> Self {
        Opts {
            idempotent: false,
            http_timeout: None,
            accept: None,
        }
    }

    /// Sizes the HTTP deadline for an RTR request `timeout` (default 30 s server-side).
    pub(crate) fn rtr_timeout(mut self, rtr: Option<Duration>) -> Self {
        self.http_timeout =
            Some(rtr.unwrap_or(super::limits::DEFAULT_REQUEST_TIMEOUT) + HTTP_MARGIN);
        self
    }

    /// Hands back a response with this error status for decoding (its body carries per-host results).
    pub(crate) fn accept(mut self, status: reqwest::StatusCode) -> Self {
        self.accept = Some(status);
        self
    }

    fn apply(self, mut req: ApiRequest) -> ApiRequest {
        if let Some(s) = self.accept {
            req = req.accept_status(s);
        }
        req = req.idempotent(self.idempotent);
        if let Some(t) = self.http_timeout {
            req = req.timeout(t);
        }
        req
    }
}

fn with_query(mut req: ApiRequest, query: &[(&str, String)]) -> ApiRequest {
    for (k, v) in query {
        req = req.query(k, v);
    }
    req
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: DeserializeOwned"))]
struct ResourcesWire<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_default")]
    resources: Vec<T>,
    #[serde(default)]
    meta: Option<MetaWire>,
}

#[derive(Deserialize, Default)]
struct MetaWire {
    #[serde(default)]
    pagination: Option<PaginationWire>,
}

#[derive(Deserialize, Default)]
struct PaginationWire {
    #[serde(default)]
    total: Option<u64>,
}

/// The decode error for a response that should have carried one resource and carried none.
pub(crate) fn empty_resources(method: &str, path: &str) -> Error {
    Error::Decode(Box::new(DecodeDetail {
        path: "resources".into(),
        message: "expected at least one resource, got none".into(),
        endpoint: format!("{method} {path}"),
        excerpt: None,
    }))
}

/// POST a JSON body; decode the whole body as `T` (non-envelope shapes of batch endpoints).
pub(crate) async fn post_raw<B: Serialize + ?Sized, T: DeserializeOwned>(
    client: &FalconClient,
    path: &str,
    query: &[(&str, String)],
    body: &B,
    opts: Opts,
) -> Result<T> {
    let req = opts.apply(with_query(ApiRequest::post(path), query).json(body)?);
    send_fast(client, req).await
}

/// Sends and decodes with plain `serde_json` (batch responses for 10,000 hosts are megabytes; path
/// tracking costs too much there); on failure, decodes again through the transport's decoder to
/// report the JSON path and a body excerpt.
async fn send_fast<T: DeserializeOwned>(client: &FalconClient, req: ApiRequest) -> Result<T> {
    let endpoint = req.endpoint();
    let resp = client.execute(req).await?;
    let body = read_body(client, &endpoint, resp).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return crate::transport::decode_slice(&endpoint, b"null");
    }
    match serde_json::from_slice(&body) {
        Ok(v) => Ok(v),
        Err(_) => crate::transport::decode_slice(&endpoint, &body),
    }
}

/// POST a JSON body; return `resources[]` of the envelope.
pub(crate) async fn post_resources<B: Serialize + ?Sized, T: DeserializeOwned>(
    client: &FalconClient,
    path: &str,
    query: &[(&str, String)],
    body: &B,
    opts: Opts,
) -> Result<Vec<T>> {
    let w: ResourcesWire<T> = post_raw(client, path, query, body, opts).await?;
    Ok(w.resources)
}

/// GET; decode the whole body as `T`.
pub(crate) async fn get_raw<T: DeserializeOwned>(
    client: &FalconClient,
    path: &str,
    query: &[(&str, String)],
    opts: Opts,
) -> Result<T> {
    let req = opts.apply(with_query(ApiRequest::get(path), query));
    send_fast(client, req).await
}

/// GET; return `resources[]` of the envelope.
pub(crate) async fn get_resources<T: DeserializeOwned>(
    client: &FalconClient,
    path: &str,
    query: &[(&str, String)],
    opts: Opts,
) -> Result<Vec<T>> {
    let w: ResourcesWire<T> = get_raw(client, path, query, opts).await?;
    Ok(w.resources)
}

/// GET a query endpoint; return the ids and `meta.pagination.total`.
pub(crate) async fn get_ids_page(
    client: &FalconClient,
    path: &str,
    query: &[(&str, String)],
    opts: Opts,
) -> Result<(Vec<String>, Option<u64>)> {
    let w: ResourcesWire<String> = get_raw(client, path, query, opts).await?;
    let total = w.meta.and_then(|m| m.pagination).and_then(|p| p.total);
    Ok((w.resources, total))
}

/// DELETE (idempotent); any 2xx body (204 included) is accepted.
pub(crate) async fn delete(
    client: &FalconClient,
    path: &str,
    query: &[(&str, String)],
) -> Result<()> {
    let req = with_query(ApiRequest::delete(path), query).idempotent(true);
    client.execute(req).await?;
    Ok(())
}

/// One multipart field. Kept as owned data so each attempt can rebuild the form.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Text(String, String),
    File(String, String, Bytes),
}

impl Part {
    pub(crate) fn text(name: &str, value: &str) -> Self {
        Part::Text(name.to_owned(), value.to_owned())
    }

    pub(crate) fn file(name: &str, file_name: &str, content: Bytes) -> Self {
        Part::File(name.to_owned(), file_name.to_owned(), content)
    }
}

/// Builds a multipart form from owned parts (called once per attempt).
pub(crate) fn build_form(parts: &[Part]) -> Result<reqwest::multipart::Form> {
    let mut form = reqwest::multipart::Form::new();
    for p in parts {
        form = match p {
            Part::Text(k, v) => form.text(k.clone(), v.clone()),
            Part::File(k, file_name, content) => {
                // `Bytes` clones share the buffer: no copy of the content per attempt.
                let len = content.len() as u64;
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::from(content.clone()),
                    len,
                )
                .file_name(file_name.clone())
                .mime_str("application/octet-stream")
                .map_err(|e| Error::InvalidArgument(format!("multipart part: {e}")))?;
                form.part(k.clone(), part)
            }
        };
    }
    Ok(form)
}

/// POST a multipart body, rebuilt for every attempt. Not idempotent (review m12): an upload that was
/// applied before a 5xx or a timeout would come back from a retry as "already exists", so it is retried
/// only when provably not sent (connect failure, 429), each time with an intact body. The caller sees
/// the 5xx and can check the library before uploading again.
pub(crate) async fn post_multipart(
    client: &FalconClient,
    path: &str,
    parts: Vec<Part>,
) -> Result<()> {
    let req = ApiRequest::post(path)
        .multipart(move || build_form(&parts))
        .idempotent(false);
    client.execute(req).await?;
    Ok(())
}

/// GET a binary body as a byte stream.
pub(crate) async fn get_bytes(
    client: &FalconClient,
    path: &str,
    query: &[(&str, String)],
) -> Result<ByteStream> {
    let req = with_query(ApiRequest::get(path), query).idempotent(true);
    Ok(Box::pin(client.send_stream(req).await?))
}
