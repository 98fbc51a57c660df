//! OpenCTI simulator. (Skeleton: the sandbox-opencti work fills this in.)

use tokio::net::TcpListener;

/// OpenCTI simulator knobs.
#[derive(Debug, Clone, Default)]
pub struct OpenCtiConfig {}

/// A running OpenCTI simulator.
pub struct OpenCtiServer {
    url: String,
}

impl OpenCtiServer {
    /// Starts serving on `listener`.
    pub fn start(listener: TcpListener, _config: OpenCtiConfig, _seed: u64) -> Self {
        let url = format!("http://{}", listener.local_addr().expect("bound listener"));
        OpenCtiServer { url }
    }
    /// Base URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }
    /// Accepted API token.
    pub fn token(&self) -> String {
        String::new()
    }
    /// Id of the live stream carrying the generated indicators.
    pub fn live_stream_id(&self) -> String {
        String::new()
    }
    /// Stops the server.
    pub async fn shutdown(self) {}
}
