//! A scriptable SSE server on 127.0.0.1 and helpers.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use opencti_client::{OpenCtiClient, SecretString};

pub const TOKEN: &str = "test-token-0123456789";

/// One request the SSE server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// What the server answers to one connection.
pub enum Reply {
    /// A status with an empty body.
    Status(u16),
    /// `200 text/event-stream`: these chunks, then the connection is closed.
    Close(Vec<String>),
    /// `200 text/event-stream`: these chunks, then nothing more, ever (a stalled connection).
    Hang(Vec<String>),
    /// `200 text/event-stream`: an endless body; each chunk produced increments the counter.
    Endless(Arc<std::sync::atomic::AtomicUsize>, String),
}

type Script = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

#[derive(Clone)]
struct AppState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Script>,
}

pub struct SseServer {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl SseServer {
    /// Starts a server answering `GET /stream/{id}` with `script(connection_index, request)`.
    pub async fn start(
        script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> SseServer {
        let state = AppState {
            requests: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(script),
        };
        let requests = state.requests.clone();
        let app = axum::Router::new()
            .route("/stream/{id}", axum::routing::get(handler))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        SseServer {
            url: format!("http://{addr}"),
            requests,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn client(&self) -> OpenCtiClient {
        OpenCtiClient::builder(self.url.clone(), SecretString::from(TOKEN))
            .header("x-custom", "graphql-only")
            .build()
            .unwrap()
    }
}

async fn handler(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let rec = Recorded {
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
    };
    let n = {
        let mut r = st.requests.lock().unwrap();
        r.push(rec.clone());
        r.len() - 1
    };
    let reply = (st.script)(n, &rec);
    let sse = |body: Body| {
        Response::builder()
            .status(200)
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("cache-control", "no-cache, no-transform")
            .body(body)
            .unwrap()
    };
    match reply {
        Reply::Status(s) => Response::builder()
            .status(StatusCode::from_u16(s).unwrap())
            .body(Body::empty())
            .unwrap(),
        Reply::Close(chunks) => sse(Body::from_stream(futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Infallible>(Bytes::from(c))),
        ))),
        Reply::Hang(chunks) => sse(Body::from_stream(
            futures::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok::<_, Infallible>(Bytes::from(c))),
            )
            .chain(futures::stream::pending()),
        )),
        Reply::Endless(counter, chunk) => {
            sse(Body::from_stream(futures::stream::repeat_with(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, Infallible>(Bytes::from(chunk.clone()))
            })))
        }
    }
}

/// An SSE message as the platform writes it.
pub fn msg(id: Option<&str>, event: &str, data: &str) -> String {
    let mut s = String::new();
    if let Some(id) = id {
        s.push_str(&format!("id: {id}\n"));
    }
    s.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    s
}

/// A create/update/delete envelope for an indicator.
pub fn indicator_envelope(kind: &str, stix_id: &str, pattern: &str) -> String {
    serde_json::json!({
        "version": "4",
        "type": kind,
        "scope": "external",
        "message": format!("{kind}s a Indicator"),
        "origin": {"referer": "init-create"},
        "data": {
            "id": stix_id,
            "type": "indicator",
            "spec_version": "2.1",
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_until": "2024-04-29T12:33:20.098Z",
            "labels": ["threat lead"],
            "name": "42.194.210.177",
            "revoked": false,
            "extensions": {
                "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba": {
                    "id": "148b6b59-0000-4000-8000-000000000000",
                    "type": "Indicator",
                    "score": 50,
                    "detection": true,
                    "main_observable_type": "IPv4-Addr"
                },
                "extension-definition--322b8f77-262a-4cb8-a915-1e441e00329b": {
                    "extension_type": "property-extension",
                    "platforms": ["windows", "linux"]
                }
            }
        }
    })
    .to_string()
}

pub fn connected() -> String {
    msg(
        None,
        "connected",
        r#"{"lastEventId":"1712736000123-0","firstEventId":"1709000000000-0","firstEventDate":"2024-02-27T02:13:20.000Z","lastEventDate":"2024-04-10T08:00:00.123Z","streamSize":123456,"connectionId":"c0ffee00"}"#,
    )
}
