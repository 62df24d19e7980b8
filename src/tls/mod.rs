//! TLS for the webhook: a certificate resolver whose key can be swapped at any time, PEM loading
//! with key/certificate consistency checks, and certificate expiry for metrics.

pub mod certs;
pub mod managed;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// Largest certificate or key file read, so a wrong path cannot exhaust memory.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why a certificate pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_PEM_BYTES`].
    #[error("{0} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge(String),
    /// No certificate in the chain file.
    #[error("no PEM certificate found in {0}")]
    NoCertificate(String),
    /// The chain file has a malformed PEM block.
    #[error("malformed PEM in {0}")]
    BadPem(String),
    /// No usable private key in the key file.
    #[error("no PKCS#8, PKCS#1 or SEC1 private key found in {0}")]
    NoKey(String),
    /// The key is not usable or does not belong to the certificate.
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(rustls::Error),
    /// The certificate's validity could not be read.
    #[error("cannot read the certificate's expiry time")]
    Expiry,
}

/// A certificate with its expiry (seconds since the epoch).
pub struct LoadedCert {
    /// The key and chain for rustls.
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf certificate.
    pub not_after: i64,
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Build a certified key from PEM text (chain first, then key).
pub fn load_pem_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<LoadedCert, TlsError> {
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(cert_pem) {
        chain.push(c.map_err(|_| TlsError::BadPem(cert_name.to_owned()))?);
    }
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(cert_name.to_owned()));
    };
    let not_after = not_after(leaf).ok_or(TlsError::Expiry)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey(key_name.to_owned()))?;
    let ck = CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Pair)?;
    // from_der accepts "unknown" consistency; a webhook must never serve a mismatched pair.
    ck.keys_match().map_err(TlsError::Pair)?;
    Ok(LoadedCert {
        key: Arc::new(ck),
        not_after,
    })
}

/// Read and load a certificate chain and key from files.
pub fn load_pem_files(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let c = read_limited(cert)?;
    let k = read_limited(key)?;
    load_pem_pair(
        &c,
        &k,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

fn read_limited(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let name = path.display().to_string();
    let err = |source| TlsError::Read {
        path: name.clone(),
        source,
    };
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(err)?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge(name));
    }
    Ok(buf)
}

/// Serves whatever certificate was stored last: every new handshake sees a rotation at once.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        CertResolver {
            current: ArcSwap::new(key),
        }
    }

    /// Replace the served certificate.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server config (TLS 1.2 and 1.3, ALPN h2 and http/1.1) over the resolver.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// notAfter of a DER certificate, in seconds since the epoch.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    managed::cert_info(cert).map(|c| c.not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_expiry_is_read() {
        let g = certs::generate(&["localhost".into()], &[], 30).unwrap();
        let loaded = load_pem_pair(
            g.tls_cert_pem.as_bytes(),
            g.tls_key_pem.as_bytes(),
            "c",
            "k",
        )
        .unwrap();
        let now = jiff::Timestamp::now().as_second();
        let days = (loaded.not_after - now) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
    }

    #[test]
    fn mismatched_and_malformed_pairs_are_refused() {
        let a = certs::generate(&["a".into()], &[], 1).unwrap();
        let b = certs::generate(&["b".into()], &[], 1).unwrap();
        assert!(matches!(
            load_pem_pair(
                a.tls_cert_pem.as_bytes(),
                b.tls_key_pem.as_bytes(),
                "c",
                "k"
            ),
            Err(TlsError::Pair(_))
        ));
        assert!(matches!(
            load_pem_pair(b"", a.tls_key_pem.as_bytes(), "c", "k"),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(
            load_pem_pair(a.tls_cert_pem.as_bytes(), b"junk", "c", "k"),
            Err(TlsError::NoKey(_))
        ));
        let half = &a.tls_cert_pem[..a.tls_cert_pem.len() / 2];
        assert!(load_pem_pair(half.as_bytes(), a.tls_key_pem.as_bytes(), "c", "k").is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(load_pem_pair(garbage.as_bytes(), a.tls_key_pem.as_bytes(), "c", "k").is_err());
    }
}
