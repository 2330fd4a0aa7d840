//! Echo server on fastwebsockets over TLS: tokio-rustls (ring, as ws-echo uses) accepts, then
//! hyper and fastwebsockets as in `fastwebsockets-echo`.
//!
//! Usage: fastwebsockets-tls-echo ADDR CERT.pem KEY.pem

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use ws_bench_peers::fastwebsockets_echo::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (cert, key) = (&args[2], &args[3]);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(std::io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(ws_bench_peers::bind_addr()).await?;
    ws_bench_peers::announce(listener.local_addr()?);
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                let acceptor = acceptor.clone();
                tokio::task::spawn_local(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let io = TokioIo::new(tls);
                    let _ = http1::Builder::new()
                        .serve_connection(io, service_fn(serve))
                        .with_upgrades()
                        .await;
                });
            }
        })
        .await
}
