//! Falcon API simulator. (Skeleton: the sandbox-falcon work fills this in.)

use tokio::net::TcpListener;

/// Falcon simulator knobs.
#[derive(Debug, Clone, Default)]
pub struct FalconConfig {}

/// A running Falcon API simulator.
pub struct FalconServer {
    url: String,
}

impl FalconServer {
    /// Starts serving on `listener`.
    pub fn start(listener: TcpListener, _config: FalconConfig, _seed: u64, _bucket: crate::cado::Bucket) -> Self {
        let url = format!("http://{}", listener.local_addr().expect("bound listener"));
        FalconServer { url }
    }
    /// Base URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }
    /// Accepted client id.
    pub fn client_id(&self) -> String {
        String::new()
    }
    /// Accepted client secret.
    pub fn client_secret(&self) -> String {
        String::new()
    }
    /// Stops the server.
    pub async fn shutdown(self) {}
}
