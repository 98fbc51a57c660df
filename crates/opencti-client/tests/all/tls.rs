//! TLS verification: on by default, off only when asked (`OPENCTI_SSL_VERIFY=false` in pycti).

use std::sync::Arc;

use opencti_client::{Error, OpenCtiClient, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An HTTPS server with a self-signed certificate answering every request with an `about` body.
async fn https_server() -> String {
    let cert =
        CertificateDer::from_pem_slice(include_bytes!("fixtures/self-signed.cert.pem")).unwrap();
    let key =
        PrivateKeyDer::from_pem_slice(include_bytes!("fixtures/self-signed.key.pem")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the headers, then the body announced by content-length.
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let body = r#"{"data":{"about":{"version":"6.8.13"}}}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

#[tokio::test]
async fn tls_certificates_are_verified_by_default_and_not_when_turned_off() {
    let url = https_server().await;
    let verified = OpenCtiClient::builder(url.clone(), SecretString::from("t"))
        .max_retries(0)
        .build()
        .unwrap();
    let err = verified.health_check().await.unwrap_err();
    assert!(
        matches!(err, Error::Transport(_)),
        "a self-signed certificate must be refused: {err:?}"
    );

    let unverified = OpenCtiClient::builder(url, SecretString::from("t"))
        .ssl_verify(false)
        .build()
        .unwrap();
    assert_eq!(unverified.health_check().await.unwrap(), "6.8.13");
}
