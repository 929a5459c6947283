//! TLS for the listeners (rustls, ring): a certificate chain and key from PEM
//! files, or a self-signed CA and leaf generated once into the data directory.
//!
//! A listener's certificate lives behind a [`ReloadingCert`]: each new
//! handshake asks it for the current one, so replacing the files (noticed on
//! SIGHUP or by polling their modification times) changes what the *next*
//! connection gets while open connections carry on untouched.

use anyhow::Context as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// How often certificate files are checked for changes (besides SIGHUP).
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Where a listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM: the leaf first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key of the leaf.
    pub key: PathBuf,
}

impl std::fmt::Display for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} + {}", self.cert.display(), self.key.display())
    }
}

/// What identifies the files' current version: a change of either means reload.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &CertFiles) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(&files.cert), one(&files.key)]
}

/// Read and check a chain and its key.
pub fn load(files: &CertFiles) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read the certificate file {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not valid PEM", files.cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate: expected PEM blocks `-----BEGIN CERTIFICATE-----` (leaf first, then intermediates)",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "cannot read a private key from {} (expected PEM: PKCS#8, RSA or EC)",
            files.key.display()
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .with_context(|| format!("unsupported private key in {}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().with_context(|| {
        format!(
            "the key in {} does not belong to the first certificate of {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(certified)
}

/// SHA-256 of a certificate's DER: what `openssl x509 -fingerprint -sha256` prints.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(sha2::Sha256::digest(cert.as_ref()))
}

/// A listener's certificate, replaced in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: CertFiles,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Stamp>,
}

impl ReloadingCert {
    pub fn open(files: CertFiles) -> anyhow::Result<Arc<Self>> {
        let st = stamp(&files);
        let key = load(&files)?;
        tracing::info!(files = %files, sha256 = %fingerprint(&key.cert[0]), "TLS certificate loaded");
        Ok(Arc::new(ReloadingCert {
            files,
            current: RwLock::new(Arc::new(key)),
            stamp: Mutex::new(st),
        }))
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// Load the files again. A broken replacement (unreadable, key not
    /// matching, half-written) keeps the previous certificate in service.
    pub fn reload(&self) -> anyhow::Result<()> {
        let st = stamp(&self.files);
        *self.stamp.lock().unwrap() = st;
        let key = load(&self.files)?;
        let sha = fingerprint(&key.cert[0]);
        *self.current.write().unwrap() = Arc::new(key);
        tracing::info!(files = %self.files, sha256 = %sha, "TLS certificate reloaded");
        Ok(())
    }

    /// Reload if the files changed since the last (attempted) load.
    fn reload_if_changed(&self) {
        if *self.stamp.lock().unwrap() == stamp(&self.files) {
            return;
        }
        if let Err(e) = self.reload() {
            tracing::error!(
                "TLS certificate not reloaded, the previous one stays in service: {e:#}"
            );
        }
    }

    /// [`Self::reload`], a failure logged; whether it succeeded.
    fn reload_logged(&self) -> bool {
        let result = self.reload();
        if let Err(e) = &result {
            tracing::error!(
                "TLS certificate not reloaded, the previous one stays in service: {e:#}"
            );
        }
        result.is_ok()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap().clone())
    }
}

/// Reload every certificate on SIGHUP, and each one whose files changed
/// every [`WATCH_EVERY`]; runs until the process ends. Without certificates
/// SIGHUP is still taken (and logged): an operator's reload must never stop
/// the server, which is SIGHUP's default action.
pub fn watch(certs: Vec<Arc<ReloadingCert>>) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    crate::notify::reloading("reloading TLS certificates (SIGHUP)");
                    tracing::info!(certificates = certs.len(), "SIGHUP: reloading TLS certificates");
                    let kept = certs.iter().filter(|c| !c.reload_logged()).count();
                    crate::notify::certificates_reloaded(certs.len(), kept);
                }
                _ = tick.tick() => {
                    for c in &certs {
                        c.reload_if_changed();
                    }
                }
            }
        }
    });
    Ok(())
}

/// A rustls server configuration serving `cert`, HTTP/1.1 only (what
/// registry clients speak; hyper's HTTP/1 path is the one measured).
pub fn server_config(cert: Arc<ReloadingCert>) -> Arc<rustls::ServerConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM first, and the server's order wins: as safe as AES-256 for
    // this use, and cheaper for both ends on multi-GB blob transfers (clients
    // such as OpenSSL's prefer AES-256 when asked).
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 1,
        _ => 2,
    });
    let provider = Arc::new(provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Arc::new(config)
}

/// The self-signed set kept in `<data-dir>/tls/`.
pub struct SelfSigned {
    pub ca_cert: PathBuf,
    pub files: CertFiles,
}

/// Use the self-signed CA and leaf of `dir`, generating them on first use.
/// `names` are the leaf's subject alternative names (DNS names or IPs).
pub fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<SelfSigned> {
    let set = SelfSigned {
        ca_cert: dir.join("ca.crt"),
        files: CertFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        },
    };
    if set.files.cert.exists() && set.files.key.exists() && set.ca_cert.exists() {
        wharf_core::private_files::tighten(&set.files.key, wharf_core::private_files::FILE_MODE)?;
        tracing::info!(
            ca = %set.ca_cert.display(),
            "using the self-signed certificate of an earlier start (delete {} to make a new one)",
            dir.display()
        );
        return Ok(set);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let generated = generate(names).context("cannot generate a self-signed certificate")?;
    // The CA key is not kept: nothing else is ever signed with it, and a
    // stolen data directory then cannot mint certificates clients trust.
    write_private(&set.files.key, &generated.leaf_key)?;
    std::fs::write(&set.files.cert, &generated.chain)
        .with_context(|| format!("cannot write {}", set.files.cert.display()))?;
    std::fs::write(&set.ca_cert, &generated.ca)
        .with_context(|| format!("cannot write {}", set.ca_cert.display()))?;
    // Printed (not only logged) so an operator can copy it at once.
    eprintln!(
        "wharf: generated a self-signed TLS certificate for {}.\n\
         Clients must trust this CA (also in {}), e.g. for Docker copy it to\n\
         /etc/docker/certs.d/<host:port>/ca.crt:\n{}",
        names.join(", "),
        set.ca_cert.display(),
        generated.ca
    );
    Ok(set)
}

struct Generated {
    ca: String,
    chain: String,
    leaf_key: String,
}

fn generate(names: &[String]) -> Result<Generated, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "Wharf self-signed CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let cert = leaf.signed_by(&leaf_key, &ca)?;
    Ok(Generated {
        ca: ca.pem(),
        chain: format!("{}{}", cert.pem(), ca.pem()),
        leaf_key: leaf_key.serialize_pem(),
    })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_set_loads_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let set = self_signed(&dir.path().join("tls"), &names).unwrap();
        let cert = ReloadingCert::open(set.files.clone()).unwrap();
        let first = fingerprint(&cert.current.read().unwrap().cert[0]);
        // The chain carries the CA after the leaf.
        assert_eq!(cert.current.read().unwrap().cert.len(), 2);
        // A key that does not match keeps the old certificate.
        let other = generate(&names).unwrap();
        std::fs::write(&set.files.key, &other.leaf_key).unwrap();
        assert!(cert.reload().is_err());
        assert_eq!(fingerprint(&cert.current.read().unwrap().cert[0]), first);
        std::fs::write(&set.files.cert, &other.chain).unwrap();
        cert.reload().unwrap();
        assert_ne!(fingerprint(&cert.current.read().unwrap().cert[0]), first);
        // A second start reuses the files.
        let again = self_signed(&dir.path().join("tls"), &names).unwrap();
        assert_eq!(again.files, set.files);
    }
}
