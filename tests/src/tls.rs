//! A test PKI made at test time (nothing private is committed): a CA, and certificates it
//! signs, written as PEM files to a fresh directory that is removed on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use ws_transport::rustls::pki_types::CertificateDer;
use ws_transport::rustls::{ClientConfig, RootCertStore, ServerConfig};

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday to a year from now.
    Current,
    /// It expired yesterday.
    Expired,
}

/// A CA and the directory its files go to.
pub struct TestPki {
    /// The directory of PEM files.
    pub dir: PathBuf,
    /// The CA's certificate, PEM.
    pub ca_pem: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate issued by a [`TestPki`].
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8).
    pub key: PathBuf,
    /// base64 of the SHA-256 of its SubjectPublicKeyInfo, as Chromium's
    /// `--ignore-certificate-errors-spki-list` takes it.
    pub spki_sha256: String,
}

impl TestPki {
    /// A new CA, "ws-tests CA {pid}-{n}", in a new directory under the system's temporary directory.
    pub fn new() -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ws-tests-pki-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: a client that trusts another test CA must not take this one's
        // certificates for that one's (it would report a bad signature, not an unknown issuer).
        let name = format!("ws-tests CA {}-{n}", std::process::id());
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.pem())?;
        Ok(Self { dir, ca_pem, ca })
    }

    /// A certificate for `names` (host names or addresses), written as `{file}.pem` and
    /// `{file}-key.pem`.
    pub fn issue(&self, file: &str, names: &[&str], validity: Validity) -> Result<Issued> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        let (from, to) = match validity {
            Validity::Current => (now - day, now + 365 * day),
            Validity::Expired => (now - 30 * day, now - day),
        };
        params.not_before = from.into();
        params.not_after = to.into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let (cert_path, key_path) =
            (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}-key.pem")));
        // The chain as a server sends it: its own certificate, then the CA's.
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.ca.pem()))?;
        std::fs::write(&key_path, key.serialize_pem())?;
        let spki = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
        let spki_sha256 = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
        Ok(Issued { cert: cert_path, key: key_path, spki_sha256 })
    }

    /// A certificate for `localhost` and `127.0.0.1`, valid now.
    pub fn localhost(&self) -> Result<Issued> {
        self.issue("localhost", &["localhost", "127.0.0.1"], Validity::Current)
    }

    /// Server settings for `issued`, loaded as ws-echo loads them.
    pub fn server_config(issued: &Issued) -> Result<Arc<ServerConfig>> {
        let certificates = ws_echo::Certificates::load(&issued.cert, &issued.key)?;
        Ok(certificates.server_config()?)
    }

    /// Client settings that trust this CA only.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der().to_vec()))?;
        Ok(ws_transport::client_config(roots)?)
    }

    /// Client settings that trust this CA only and speak TLS 1.2 only.
    pub fn client_config_tls12(&self) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der().to_vec()))?;
        let provider = Arc::new(ws_transport::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&ws_transport::rustls::version::TLS12])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The directory of PEM files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP CONNECT proxy on `127.0.0.1:0`, for tests: it tunnels every request (or refuses
/// every one with `refuse`) and keeps the request heads it was sent.
pub struct ConnectProxy {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The request heads received, in order.
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConnectProxy {
    /// Starts the proxy on a thread of its own (it ends with the test process).
    pub fn start(refuse: Option<u16>) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || tunnel(client, &seen, refuse));
            }
        });
        Ok(Self { addr, requests })
    }

    /// The request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn tunnel(
    mut client: std::net::TcpStream,
    seen: &std::sync::Mutex<Vec<String>>,
    refuse: Option<u16>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(head.clone());
    let target = head.split(' ').nth(1).unwrap_or("").to_string();
    if let Some(status) = refuse {
        return client.write_all(format!("HTTP/1.1 {status} Refused\r\n\r\n").as_bytes());
    }
    let server = std::net::TcpStream::connect(&target)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut up_from, mut up_to) = (client.try_clone()?, server.try_clone()?);
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_from, &mut up_to);
        let _ = up_to.shutdown(std::net::Shutdown::Write);
    });
    let (mut down_from, mut down_to) = (server, client);
    let _ = std::io::copy(&mut down_from, &mut down_to);
    let _ = down_to.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}
