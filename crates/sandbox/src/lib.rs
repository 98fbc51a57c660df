//! Faithful local simulators of the CrowdStrike Falcon API, OpenCTI and the Cado platform API, for
//! demos, end-to-end tests and benchmarks. Each is an axum server on loopback, started in-process
//! (this crate) or standalone (the `cti-sandbox` binary).
//!
//! The sandbox speaks the wire contract written in `shared/reference/` and shares no types with the
//! client crates of this workspace (Architecture Invariant 4), so a field-name mistake in a client
//! cannot hide behind a shared struct. Tests inspect and steer it over HTTP through each server's
//! control API under `/_sandbox/` (see `docs/sandbox.md`).
//!
//! Start all three servers and read where they listen:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sandbox::SandboxError> {
//! let sandbox = sandbox::Sandbox::start(sandbox::SandboxConfig::default()).await?;
//! let info = sandbox.info();
//! println!("Falcon at {} (client id {})", info.falcon_url, info.falcon_client_id);
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Shape the scenario: a larger fleet, some offline hosts that come back, failing collectors, no
//! rate limit, injected faults:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sandbox::SandboxError> {
//! use std::time::Duration;
//! use sandbox::{SandboxConfig, falcon::FalconConfig, faults::FaultConfig};
//! let config = SandboxConfig {
//!     seed: 7,
//!     falcon: FalconConfig {
//!         hosts: 10_000,
//!         offline_share: 0.3,
//!         online_within: Some(Duration::from_secs(30)),
//!         failure_rate: 0.1,
//!         collector_duration: Duration::from_secs(5),
//!         rate_limit_per_minute: None,
//!         faults: FaultConfig { error_rate: 0.01, ..FaultConfig::default() },
//!         ..FalconConfig::default()
//!     },
//!     ..SandboxConfig::default()
//! };
//! let sandbox = sandbox::Sandbox::start(config).await?;
//! # Ok(()) }
//! ```
//!
//! Change knobs at run time and read state back over the control API:
//!
//! ```no_run
//! # async fn demo(sandbox: &sandbox::Sandbox) -> Result<(), Box<dyn std::error::Error>> {
//! use sandbox::faults::FaultPatch;
//! // In-process: inject 5xx on every Falcon request.
//! sandbox.falcon().faults().update(&FaultPatch { error_rate: Some(1.0), ..FaultPatch::default() });
//! // Over HTTP: the same with `POST {falcon_url}/_sandbox/faults {"error_rate": 1.0}`; the IOC
//! // store is `GET {falcon_url}/_sandbox/iocs`, request counts `GET {falcon_url}/_sandbox/requests`.
//! let captures = sandbox.cado().bucket().captures();
//! println!("{} captures uploaded", captures.len());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod cado;
pub mod falcon;
pub mod faults;
pub mod opencti;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;

/// Everything needed to start the three simulators.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Seed for every generated fleet, indicator set and random outcome.
    pub seed: u64,
    /// Address to bind; loopback only.
    pub bind: IpAddr,
    /// Port of the Falcon API simulator (0 = any free port).
    pub falcon_port: u16,
    /// Port of the OpenCTI simulator (0 = any free port).
    pub opencti_port: u16,
    /// Port of the Cado platform simulator (0 = any free port).
    pub cado_port: u16,
    /// Falcon simulator knobs.
    pub falcon: falcon::FalconConfig,
    /// OpenCTI simulator knobs.
    pub opencti: opencti::OpenCtiConfig,
    /// Cado simulator knobs.
    pub cado: cado::CadoConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            falcon_port: 0,
            opencti_port: 0,
            cado_port: 0,
            falcon: falcon::FalconConfig::default(),
            opencti: opencti::OpenCtiConfig::default(),
            cado: cado::CadoConfig::default(),
        }
    }
}

/// Where the simulators listen and the credentials they accept: the JSON line `cti-sandbox` prints.
///
/// The credentials are sandbox credentials, but `Debug` still redacts them.
#[derive(Clone, Serialize)]
pub struct SandboxInfo {
    /// Base URL of the Falcon API simulator (the tenant's home cloud).
    pub falcon_url: String,
    /// Base URLs of the other clouds the Falcon simulator plays, by region name
    /// (`FalconConfig::other_clouds`; empty by default).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub falcon_cloud_urls: std::collections::BTreeMap<String, String>,
    /// Base URL of the OpenCTI simulator (GraphQL at `/graphql`, streams at `/stream/{id}`).
    pub opencti_url: String,
    /// Base URL of the Cado platform simulator.
    pub cado_url: String,
    /// OAuth2 client id accepted by the Falcon simulator.
    pub falcon_client_id: String,
    /// OAuth2 client secret accepted by the Falcon simulator (a sandbox credential, not a real secret).
    pub falcon_client_secret: String,
    /// API token accepted by the OpenCTI simulator.
    pub opencti_token: String,
    /// Id of the live stream that carries the generated indicators.
    pub live_stream_id: String,
    /// API key accepted by the Cado simulator.
    pub cado_api_key: String,
}

impl std::fmt::Debug for SandboxInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxInfo")
            .field("falcon_url", &self.falcon_url)
            .field("falcon_cloud_urls", &self.falcon_cloud_urls)
            .field("opencti_url", &self.opencti_url)
            .field("cado_url", &self.cado_url)
            .field("falcon_client_id", &self.falcon_client_id)
            .field("falcon_client_secret", &"<redacted>")
            .field("opencti_token", &"<redacted>")
            .field("live_stream_id", &self.live_stream_id)
            .field("cado_api_key", &"<redacted>")
            .finish()
    }
}

/// Errors starting the sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A listener could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address that was refused.
        addr: SocketAddr,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },
    /// The bind address is not a loopback address.
    #[error("refusing to bind non-loopback address {0}: the sandbox serves loopback only")]
    NotLoopback(IpAddr),
}

/// A running sandbox: the three servers, until [`Sandbox::shutdown`] or drop.
pub struct Sandbox {
    info: SandboxInfo,
    falcon: falcon::FalconServer,
    opencti: opencti::OpenCtiServer,
    cado: cado::CadoServer,
}

impl Sandbox {
    /// Binds the three servers and starts serving in the current tokio runtime.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if !config.bind.is_loopback() {
            return Err(SandboxError::NotLoopback(config.bind));
        }
        let bind = |port| async move {
            let addr = SocketAddr::new(config.bind, port);
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| SandboxError::Bind { addr, source })
        };
        let falcon_listener = bind(config.falcon_port).await?;
        let opencti_listener = bind(config.opencti_port).await?;
        let cado_listener = bind(config.cado_port).await?;

        let mut clouds = Vec::new();
        for region in &config.falcon.other_clouds {
            clouds.push((region.clone(), bind(0).await?));
        }
        let cado = cado::CadoServer::start(cado_listener, config.cado.clone(), config.seed);
        let falcon = falcon::FalconServer::start_with_clouds(
            falcon_listener,
            clouds,
            config.falcon.clone(),
            config.seed,
            cado.bucket(),
        );
        let opencti =
            opencti::OpenCtiServer::start(opencti_listener, config.opencti.clone(), config.seed);
        let info = SandboxInfo {
            falcon_url: falcon.url(),
            falcon_cloud_urls: falcon.cloud_urls().into_iter().collect(),
            opencti_url: opencti.url(),
            cado_url: cado.url(),
            falcon_client_id: falcon.client_id(),
            falcon_client_secret: falcon.client_secret(),
            opencti_token: opencti.token(),
            live_stream_id: opencti.live_stream_id(),
            cado_api_key: cado.api_key(),
        };
        Ok(Sandbox {
            info,
            falcon,
            opencti,
            cado,
        })
    }

    /// URLs and credentials.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }

    /// The Falcon simulator (for in-process inspection in tests and demos).
    pub fn falcon(&self) -> &falcon::FalconServer {
        &self.falcon
    }

    /// The OpenCTI simulator.
    pub fn opencti(&self) -> &opencti::OpenCtiServer {
        &self.opencti
    }

    /// The Cado simulator.
    pub fn cado(&self) -> &cado::CadoServer {
        &self.cado
    }

    /// Stops all three servers.
    pub async fn shutdown(self) {
        self.falcon.shutdown().await;
        self.opencti.shutdown().await;
        self.cado.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_debug_redacts_credentials() {
        let info = SandboxInfo {
            falcon_url: "http://127.0.0.1:1".into(),
            falcon_cloud_urls: Default::default(),
            opencti_url: "http://127.0.0.1:2".into(),
            cado_url: "http://127.0.0.1:3".into(),
            falcon_client_id: "id".into(),
            falcon_client_secret: "falcon-secret".into(),
            opencti_token: "octi-token".into(),
            live_stream_id: "stream".into(),
            cado_api_key: "cado-key".into(),
        };
        let debug = format!("{info:?}");
        for secret in ["falcon-secret", "octi-token", "cado-key"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("http://127.0.0.1:1") && debug.contains("<redacted>"));
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json["falcon_client_secret"], "falcon-secret",
            "the JSON line carries them"
        );
    }

    #[tokio::test]
    async fn refuses_non_loopback_addresses() {
        let config = SandboxConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ..SandboxConfig::default()
        };
        assert!(matches!(
            Sandbox::start(config).await,
            Err(SandboxError::NotLoopback(_))
        ));
    }
}
