//! A certificate chain and its key from PEM (files or bytes), checked to belong together.

use super::x509::{self, CertParseError};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// Largest certificate or key read, so a wrong path or a huge Secret cannot exhaust memory.
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
    #[error("malformed PEM in {name}: {source}")]
    BadPem {
        /// The file.
        name: String,
        /// The error.
        #[source]
        source: pem::Error,
    },
    /// No usable private key in the key file.
    #[error("no PKCS#8, PKCS#1 or SEC1 private key found in {name}: {source}")]
    NoKey {
        /// The file.
        name: String,
        /// The error.
        #[source]
        source: pem::Error,
    },
    /// The key is not usable or does not belong to the certificate.
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(#[source] rustls::Error),
    /// The leaf certificate cannot be read (so neither can its expiry).
    #[error("cannot read the certificate in {name}: {source}")]
    BadCertificate {
        /// The file.
        name: String,
        /// The error.
        #[source]
        source: CertParseError,
    },
}

/// A certificate with its expiry (seconds since the epoch).
pub struct LoadedCert {
    /// The key and chain for rustls.
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf certificate.
    pub not_after: i64,
}

/// Build a certified key from PEM text (chain first, then key).
pub fn load_pem_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<LoadedCert, TlsError> {
    for (bytes, name) in [(cert_pem, cert_name), (key_pem, key_name)] {
        if bytes.len() as u64 > MAX_PEM_BYTES {
            return Err(TlsError::TooLarge(name.to_owned()));
        }
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadPem {
            name: cert_name.to_owned(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(cert_name.to_owned()));
    };
    let not_after = x509::not_after(leaf).map_err(|source| TlsError::BadCertificate {
        name: cert_name.to_owned(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::NoKey {
        name: key_name.to_owned(),
        source,
    })?;
    let ck =
        CertifiedKey::from_der(chain, key, &x509::crypto_provider()).map_err(TlsError::Pair)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs;

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
        let load = |c: &[u8], k: &[u8]| load_pem_pair(c, k, "c", "k");
        assert!(matches!(
            load(a.tls_cert_pem.as_bytes(), b.tls_key_pem.as_bytes()),
            Err(TlsError::Pair(_))
        ));
        assert!(matches!(
            load(b"", a.tls_key_pem.as_bytes()),
            Err(TlsError::NoCertificate(_))
        ));
        let err = load(a.tls_cert_pem.as_bytes(), b"junk").err().unwrap();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        // A PEM block cut in half has no end marker.
        let half = &a.tls_cert_pem[..a.tls_cert_pem.len() / 2];
        let err = load(half.as_bytes(), a.tls_key_pem.as_bytes())
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        // Well-formed PEM around DER that is no certificate (or a truncated one).
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = load(garbage.as_bytes(), a.tls_key_pem.as_bytes())
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::BadCertificate { .. }), "{err}");
        let der = CertificateDer::from_pem_slice(a.tls_cert_pem.as_bytes()).unwrap();
        let truncated = x509::pem_certificate(&der[..der.len() - 10]);
        let err = load(truncated.as_bytes(), a.tls_key_pem.as_bytes())
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::BadCertificate { .. }), "{err}");
        assert!(err.to_string().contains("in c:"), "{err}");
    }

    #[test]
    fn huge_input_is_refused_before_parsing() {
        let a = certs::generate(&["a".into()], &[], 1).unwrap();
        let huge = vec![b'A'; MAX_PEM_BYTES as usize + 1];
        assert!(matches!(
            load_pem_pair(&huge, a.tls_key_pem.as_bytes(), "c", "k"),
            Err(TlsError::TooLarge(n)) if n == "c"
        ));
        assert!(matches!(
            load_pem_pair(a.tls_cert_pem.as_bytes(), &huge, "c", "k"),
            Err(TlsError::TooLarge(n)) if n == "k"
        ));
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &huge).unwrap();
        std::fs::write(&key, &a.tls_key_pem).unwrap();
        assert!(matches!(
            load_pem_files(&cert, &key),
            Err(TlsError::TooLarge(_))
        ));
        let err = load_pem_files(&dir.path().join("missing"), &key)
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
    }

    #[test]
    fn an_expired_pair_loads_with_its_past_expiry() {
        // Serving refuses nothing by date (the expiry metric and the rotation act on it), so an
        // expired certificate must load with the true notAfter rather than fail.
        let ca = crate::tls::issue::new_ca(1_000_000, 3600).unwrap();
        let leaf =
            crate::tls::issue::issue_leaf(&ca, &["a.test".into()], &[], 1_000_000, 3600).unwrap();
        let loaded =
            load_pem_pair(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes(), "c", "k").unwrap();
        assert_eq!(loaded.not_after, 1_003_600);
    }
}
