//! Reading and writing certificates: validity, subject and key of a DER certificate (with
//! `x509-parser`), PEM encoding (with `pem`), and verification as a TLS client would do it.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use std::sync::Arc;
use std::time::Duration;
use x509_parser::error::X509Error;
use x509_parser::nom;

/// Why a DER certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CertParseError {
    /// The bytes are not a well-formed X.509 certificate.
    #[error("not a DER X.509 certificate: {0}")]
    Der(#[source] nom::Err<X509Error>),
    /// Bytes follow the certificate.
    #[error("{0} unexpected bytes after the certificate")]
    Trailing(usize),
}

/// Validity and identity of a certificate, read from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// notBefore, in seconds since the epoch.
    pub not_before: i64,
    /// notAfter, in seconds since the epoch.
    pub not_after: i64,
    /// The subject Name, as encoded (tag and length included).
    pub subject: Vec<u8>,
    /// The SubjectPublicKeyInfo, as encoded.
    pub spki: Vec<u8>,
}

impl CertInfo {
    /// Whether the certificate is past its notAfter at `now`.
    pub fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }
}

/// Validity, subject and key of a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, CertParseError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(CertParseError::Der)?;
    if !rest.is_empty() {
        return Err(CertParseError::Trailing(rest.len()));
    }
    let validity = cert.validity();
    Ok(CertInfo {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        subject: cert.subject().as_raw().to_vec(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// notAfter of a DER certificate, in seconds since the epoch.
pub fn not_after(cert: &[u8]) -> Result<i64, CertParseError> {
    cert_info(cert).map(|c| c.not_after)
}

/// A DER certificate as one PEM block, with `\n` line ends (as rcgen writes them).
pub fn pem_certificate(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// How a certificate stands against a CA for a set of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Chains to the CA, valid at the time, and for every name.
    Valid,
    /// Chains to the CA and valid at the time, but not for every name.
    WrongName,
    /// Anything else.
    Invalid,
}

pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Verify `leaf` against the single root `ca` for every name at `now`, as a TLS client (the API
/// server) would.
pub fn verify(
    leaf: &CertificateDer<'_>,
    ca: &CertificateDer<'static>,
    names: &[String],
    now: i64,
) -> Verdict {
    let mut roots = RootCertStore::empty();
    if roots.add(ca.clone()).is_err() {
        return Verdict::Invalid;
    }
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider()).build()
    else {
        return Verdict::Invalid;
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    let mut verdict = Verdict::Valid;
    for name in names {
        let Ok(server) = ServerName::try_from(name.as_str()) else {
            return Verdict::Invalid;
        };
        match verifier.verify_server_cert(leaf, &[], &server, &[], time) {
            Ok(_) => {}
            // rustls checks the chain before the name: this error means the chain is fine.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => verdict = Verdict::WrongName,
            Err(_) => return Verdict::Invalid,
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn cert_at(not_before: i64, not_after: i64) -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn validity_is_read_in_utc_time_and_generalized_time() {
        // Before 2050 rcgen writes UTCTime, from 2050 GeneralizedTime (RFC 5280).
        let der = cert_at(10, 2_524_608_000);
        let info = cert_info(&der).unwrap();
        assert_eq!((info.not_before, info.not_after), (10, 2_524_608_000));
        assert_eq!(not_after(&der).unwrap(), 2_524_608_000);
        let info = cert_info(&cert_at(2_524_607_999, 2_524_608_001)).unwrap();
        assert_eq!(
            (info.not_before, info.not_after),
            (2_524_607_999, 2_524_608_001)
        );
        assert!(info.expired(2_524_608_001) && !info.expired(2_524_608_000));
    }

    #[test]
    fn truncated_padded_and_garbage_der_are_errors_not_panics() {
        let der = cert_at(0, 1_000_000);
        for cut in 0..der.len() {
            assert!(cert_info(&der[..cut]).is_err(), "cut at {cut}");
        }
        let padded = [der.as_slice(), &[0, 0]].concat();
        assert!(matches!(
            cert_info(&padded),
            Err(CertParseError::Trailing(2))
        ));
        let err = cert_info(b"\x30\x82\xff\xff junk").unwrap_err();
        assert!(matches!(err, CertParseError::Der(_)), "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the parser's error is kept"
        );
    }

    #[test]
    fn pem_round_trips_through_the_rustls_reader() {
        use rustls::pki_types::pem::PemObject;
        let der = cert_at(0, 1_000_000);
        let pem = pem_certificate(&der);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n") && !pem.contains('\r'));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }
}
