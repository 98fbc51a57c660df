//! The raw escape hatch: call any endpoint with the same auth, retry and rate-limit stack.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::FalconClient;
use crate::error::{Error, Result};
use crate::transport::ApiRequest;

fn query_pairs<Q: Serialize + ?Sized>(query: &Q) -> Result<Vec<(String, String)>> {
    let s = serde_urlencoded::to_string(query)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode query: {e}")))?;
    Ok(url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// A raw request on any endpoint, built by [`FalconClient::raw`].
#[derive(Debug)]
pub struct RawRequest {
    client: FalconClient,
    req: Result<ApiRequest>,
}

impl RawRequest {
    /// Adds query parameters: anything `serde_urlencoded` accepts, e.g. `&[("ids", "a"), ("ids", "b")]`
    /// (repeat a key for Falcon's multi-valued parameters).
    pub fn query<Q: Serialize + ?Sized>(mut self, query: &Q) -> Self {
        self.req = self.req.and_then(|mut r| {
            r.query.extend(query_pairs(query)?);
            Ok(r)
        });
        self
    }

    /// Sets a JSON body.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        self.req = self.req.and_then(|r| r.json(body));
        self
    }

    /// Declares whether the call may be repeated safely (default: GET/PUT/DELETE yes, POST/PATCH no).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.req = self.req.map(|r| r.idempotent(yes));
        self
    }

    /// Sends the request and decodes the whole body as `T` (e.g. [`crate::Envelope`] or
    /// `serde_json::Value`).
    pub async fn send<T: DeserializeOwned>(self) -> Result<T> {
        self.client.send_json(self.req?).await
    }
}

impl FalconClient {
    /// Starts a raw request: `client.raw(Method::GET, "/devices/queries/devices/v1").query(..).send::<T>()`.
    pub fn raw(&self, method: Method, path: impl Into<String>) -> RawRequest {
        RawRequest {
            client: self.clone(),
            req: Ok(ApiRequest::new(method, path)),
        }
    }

    /// GET `path` with `query`, decoding the body as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<T> {
        self.raw(Method::GET, path).query(query).send().await
    }

    /// POST `body` as JSON to `path` (not retried unless provably not sent).
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
        body: &B,
    ) -> Result<T> {
        self.raw(Method::POST, path)
            .query(query)
            .json(body)
            .send()
            .await
    }

    /// PATCH `body` as JSON to `path` (not retried unless provably not sent).
    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
        body: &B,
    ) -> Result<T> {
        self.raw(Method::PATCH, path)
            .query(query)
            .json(body)
            .send()
            .await
    }

    /// DELETE `path` with `query`.
    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<T> {
        self.raw(Method::DELETE, path).query(query).send().await
    }
}
