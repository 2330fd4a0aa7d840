//! The echo server's certificate: read from PEM files, and read again on `SIGHUP` without
//! dropping a connection (new handshakes get the new certificate; open connections keep the
//! keys they negotiated).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ws_transport::rustls::crypto::ring::default_provider;
use ws_transport::rustls::pki_types::pem::PemObject;
use ws_transport::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ws_transport::rustls::server::{ClientHello, ResolvesServerCert};
use ws_transport::rustls::sign::CertifiedKey;
use ws_transport::rustls::{self, ServerConfig};

/// A certificate chain and its key, from two PEM files, that can be read again.
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads `cert` (the server's certificate first, then any intermediates) and `key` (PKCS#8,
    /// PKCS#1 or SEC1), and checks that they belong together.
    pub fn load(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Arc<Self>> {
        let (cert_path, key_path) = (cert.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        let current = RwLock::new(Arc::new(read(&cert_path, &key_path)?));
        Ok(Arc::new(Self { cert_path, key_path, current }))
    }

    /// Reads the files again. On an error the certificate in use stays.
    pub fn reload(&self) -> io::Result<()> {
        let fresh = Arc::new(read(&self.cert_path, &self.key_path)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Server settings that use these certificates, with ALPN `http/1.1` (the page and
    /// WebSockets over HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> io::Result<Arc<ServerConfig>> {
        let mut config = ws_transport::server_config_builder()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner())))
    }
}

fn read(cert_path: &Path, key_path: &Path) -> io::Result<CertifiedKey> {
    let context = |path: &Path, err: &dyn fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {err}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|err| context(cert_path, &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| context(cert_path, &err))?;
    if chain.is_empty() {
        return Err(context(cert_path, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|err| context(key_path, &err))?;
    CertifiedKey::from_der(chain, key, &default_provider()).map_err(|err| match err {
        rustls::Error::InconsistentKeys(_) => {
            context(key_path, &"the key does not belong to the certificate")
        }
        err => context(key_path, &err),
    })
}
