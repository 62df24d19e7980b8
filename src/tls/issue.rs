//! Certificate issuance with rcgen, the one path behind both the self-signed default
//! ([`super::certs`]) and the managed rotation ([`super::rotation`]): a CA whose name derives from
//! its key, and serving certificates it signs, each checked to verify before it is handed out.

use super::x509::{self, CertInfo, CertParseError, Verdict};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::IpAddr;

/// Certificates start this much in the past (at most a twentieth of their lifetime), so replicas
/// and API servers with slightly different clocks accept them at once.
const MAX_BACKDATE_SECS: i64 = 300;

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// rcgen refused to generate a key or certificate.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A validity bound is outside what a certificate can hold.
    #[error("time {secs} is out of range for a certificate")]
    Time {
        /// The bound, in seconds since the epoch.
        secs: i64,
        /// The error.
        #[source]
        source: time::error::ComponentRange,
    },
    /// A DNS name is not valid in a certificate.
    #[error("invalid DNS name {0:?}")]
    DnsName(String),
    /// A certificate just made cannot be read back.
    #[error("reading back a certificate just issued: {0}")]
    ReadBack(#[from] CertParseError),
    /// A certificate just issued does not verify against its own CA.
    #[error("a certificate issued by the current CA does not verify against it")]
    NotTrusted,
}

/// A CA that can sign: its certificate, what the certificate says, and its key.
pub struct SigningCa {
    /// The CA certificate.
    pub der: CertificateDer<'static>,
    /// Its validity, subject and key.
    pub info: CertInfo,
    /// Its private key. Never logged: `KeyPair`'s Debug prints no key material.
    pub key: KeyPair,
}

impl SigningCa {
    /// A CA certificate with the key `key`, if the key is the certificate's and the certificate
    /// is one [`new_ca`] could have made. Signing re-creates the issuer name from the key (see
    /// [`ca_params`]); a CA made elsewhere could carry another name, and every certificate signed
    /// with it would then fail to chain.
    pub fn adopt(der: CertificateDer<'static>, info: CertInfo, key: KeyPair) -> Option<Self> {
        if key.subject_public_key_info() != info.spki {
            return None;
        }
        let expected = ca_params(&key, info.not_before, info.not_after)
            .ok()
            .and_then(|p| p.self_signed(&key).ok())
            .and_then(|c| x509::cert_info(c.der()).ok());
        if expected.is_none_or(|e| e.subject != info.subject) {
            return None;
        }
        Some(SigningCa { der, info, key })
    }
}

/// A serving certificate and its key, PEM encoded.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// How far before `now` a certificate of lifetime `validity` starts.
pub fn backdate(validity: i64) -> i64 {
    (validity / 20).min(MAX_BACKDATE_SECS)
}

fn at(secs: i64) -> Result<time::OffsetDateTime, IssueError> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|source| IssueError::Time { secs, source })
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "pullgate");
    dn
}

/// The CA's parameters. Its name is derived from its key, so that signing with the key later
/// re-creates exactly the issuer name of the certificate without reading it back, and so that
/// each CA has a name of its own.
fn ca_params(
    key: &KeyPair,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, IssueError> {
    let mut p = CertificateParams::default();
    let id: String = p
        .key_identifier(key)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    p.distinguished_name = name(&format!("pullgate webhook CA {id}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = at(not_before)?;
    p.not_after = at(not_after)?;
    Ok(p)
}

/// A new CA valid from `now` (backdated) for `validity` seconds.
pub fn new_ca(now: i64, validity: i64) -> Result<SigningCa, IssueError> {
    let key = KeyPair::generate()?;
    let not_before = now.saturating_sub(backdate(validity));
    let not_after = now.saturating_add(validity);
    let cert = ca_params(&key, not_before, not_after)?.self_signed(&key)?;
    let der = cert.der().clone();
    let info = x509::cert_info(&der)?;
    Ok(SigningCa { der, info, key })
}

/// RFC 1123 host name, optionally a leading `*.` wildcard: what a serving certificate may name.
pub fn is_dns_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && name.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A serving certificate for `dns` and `ips` signed by `ca`, valid from `now` (backdated) for
/// `validity` seconds but never past the CA.
pub fn issue_leaf(
    ca: &SigningCa,
    dns: &[String],
    ips: &[IpAddr],
    now: i64,
    validity: i64,
) -> Result<Issued, IssueError> {
    let mut sans = Vec::new();
    for d in dns {
        if !is_dns_name(d) {
            return Err(IssueError::DnsName(d.clone()));
        }
        let s = rcgen::string::Ia5String::try_from(d.as_str())
            .map_err(|_| IssueError::DnsName(d.clone()))?;
        sans.push(SanType::DnsName(s));
    }
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    let mut p = CertificateParams::default();
    p.distinguished_name = name(dns.first().map_or("pullgate", String::as_str));
    p.subject_alt_names = sans;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = at(now.saturating_sub(backdate(validity)))?;
    p.not_after = at(now.saturating_add(validity).min(ca.info.not_after))?;
    let issuer = Issuer::new(
        ca_params(&ca.key, ca.info.not_before, ca.info.not_after)?,
        &ca.key,
    );
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    // Never hand out a certificate a client would refuse. A wildcard is no name a client
    // connects to, so the check uses the other names and the addresses.
    let checked: Vec<String> = dns
        .iter()
        .filter(|d| !d.starts_with("*."))
        .cloned()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    if checked
        .iter()
        .any(|n| ServerName::try_from(n.as_str()).is_err())
        || x509::verify(cert.der(), &ca.der, &checked, now) != Verdict::Valid
    {
        return Err(IssueError::NotTrusted);
    }
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_750_000_000;

    #[test]
    fn dns_names_are_validated() {
        for ok in [
            "localhost",
            "pullgate.pullgate.svc",
            "*.example.com",
            "a-b.c1",
        ] {
            assert!(is_dns_name(ok), "{ok}");
        }
        let ca = new_ca(T0, 3600).unwrap();
        for bad in [
            "",
            "a,b",
            "has space",
            "-a.com",
            "a-.com",
            "a..b",
            "*.",
            "x".repeat(64).as_str(),
            "é.com",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
            assert!(matches!(
                issue_leaf(&ca, &[bad.to_owned()], &[], T0, 3600),
                Err(IssueError::DnsName(_))
            ));
        }
    }

    #[test]
    fn a_leaf_never_outlives_its_ca_and_verifies_for_its_names_and_addresses() {
        let ca = new_ca(T0, 3600).unwrap();
        assert_eq!(ca.info.not_before, T0 - 180);
        let ips = [IpAddr::from([127, 0, 0, 1])];
        let names = vec!["a.test".to_owned(), "*.b.test".to_owned()];
        let leaf = issue_leaf(&ca, &names, &ips, T0 + 60, 7200).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(leaf.cert_pem.as_bytes())
            .map(CertificateDer::into_owned)
            .unwrap();
        let info = x509::cert_info(&der).unwrap();
        assert_eq!(info.not_after, ca.info.not_after);
        let wanted = vec![
            "a.test".to_owned(),
            "127.0.0.1".to_owned(),
            "x.b.test".to_owned(),
        ];
        assert_eq!(
            x509::verify(&der, &ca.der, &wanted, T0 + 60),
            Verdict::Valid
        );
        assert_eq!(
            x509::verify(&der, &ca.der, &["c.test".to_owned()], T0 + 60),
            Verdict::WrongName
        );
    }

    #[test]
    fn a_ca_is_adopted_only_with_its_own_key_and_name() {
        let a = new_ca(T0, 3600).unwrap();
        let b = new_ca(T0, 3600).unwrap();
        let again = |ca: &SigningCa| KeyPair::from_pem(&ca.key.serialize_pem()).unwrap();
        assert!(SigningCa::adopt(a.der.clone(), a.info.clone(), again(&a)).is_some());
        assert!(SigningCa::adopt(a.der.clone(), a.info.clone(), again(&b)).is_none());
        // Same key, another name: what a CA made by another tool looks like.
        let mut other = CertificateParams::default();
        other.distinguished_name = name("someone else's CA");
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let foreign = other.self_signed(&a.key).unwrap().der().clone();
        let info = x509::cert_info(&foreign).unwrap();
        assert!(SigningCa::adopt(foreign, info, again(&a)).is_none());
    }
}
