//! Cado platform API simulator and the simulated capture bucket. (Skeleton: the sandbox-opencti work
//! fills this in.)

use tokio::net::TcpListener;

/// Cado simulator knobs.
#[derive(Debug, Clone, Default)]
pub struct CadoConfig {}

/// The simulated bucket that receives captures uploaded by simulated hosts. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Bucket {}

/// A running Cado platform simulator.
pub struct CadoServer {
    url: String,
    bucket: Bucket,
}

impl CadoServer {
    /// Starts serving on `listener`.
    pub fn start(listener: TcpListener, _config: CadoConfig, _seed: u64) -> Self {
        let url = format!("http://{}", listener.local_addr().expect("bound listener"));
        CadoServer { url, bucket: Bucket::default() }
    }
    /// Base URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }
    /// Accepted API key.
    pub fn api_key(&self) -> String {
        String::new()
    }
    /// The bucket simulated hosts upload into.
    pub fn bucket(&self) -> Bucket {
        self.bucket.clone()
    }
    /// Stops the server.
    pub async fn shutdown(self) {}
}
