//! Certificate generation with rcgen: a CA and a serving certificate signed by it.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::Path;

/// Default DNS names: the in-cluster Service names of a `pullgate` Service in namespace `pullgate`, and localhost.
pub const DEFAULT_DNS: [&str; 4] = [
    "pullgate.pullgate.svc",
    "pullgate.pullgate.svc.cluster.local",
    "pullgate",
    "localhost",
];

/// Why certificates could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A DNS name is not valid in a certificate.
    #[error("invalid DNS name {0:?}")]
    DnsName(String),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A generated CA and serving certificate, PEM encoded.
pub struct GeneratedCerts {
    /// CA certificate.
    pub ca_cert_pem: String,
    /// CA private key.
    pub ca_key_pem: String,
    /// Serving certificate.
    pub tls_cert_pem: String,
    /// Serving private key.
    pub tls_key_pem: String,
}

impl GeneratedCerts {
    /// The base64 `caBundle` for a webhook configuration.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_cert_pem)
    }
}

/// Generate a CA and a serving certificate for the given names, valid for `days` days.
pub fn generate(dns: &[String], ips: &[IpAddr], days: u32) -> Result<GeneratedCerts, CertError> {
    let now = time_now();
    let until = now + time::Duration::days(i64::from(days.max(1)));

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name = name("pullgate webhook CA");
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = until;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut sans = Vec::new();
    for d in dns {
        if !is_dns_name(d) {
            return Err(CertError::DnsName(d.clone()));
        }
        let s = rcgen::string::Ia5String::try_from(d.as_str())
            .map_err(|_| CertError::DnsName(d.clone()))?;
        sans.push(SanType::DnsName(s));
    }
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    let tls_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.subject_alt_names = sans;
    leaf.distinguished_name = name(dns.first().map_or("pullgate", String::as_str));
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - time::Duration::minutes(5);
    leaf.not_after = until;
    let issuer = Issuer::from_params(&ca, &ca_key);
    let tls_cert = leaf.signed_by(&tls_key, &issuer)?;

    Ok(GeneratedCerts {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        tls_cert_pem: tls_cert.pem(),
        tls_key_pem: tls_key.serialize_pem(),
    })
}

/// RFC 1123 host name, optionally a leading `*.` wildcard: what a serving certificate may name.
fn is_dns_name(name: &str) -> bool {
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

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "pullgate");
    dn
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// `pullgate certs`: write ca.crt, ca.key, tls.crt, tls.key into `out`; returns the caBundle.
pub fn write_dev_certs(
    out: &Path,
    dns: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<String, CertError> {
    let dns: Vec<String> = if dns.is_empty() {
        DEFAULT_DNS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        dns.to_vec()
    };
    let ips: Vec<IpAddr> = if ips.is_empty() {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        ips.to_vec()
    };
    let certs = generate(&dns, &ips, days)?;
    let write = |file: &str, text: &str, private: bool| -> Result<(), CertError> {
        let path = out.join(file);
        let err = |source| CertError::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(out).map_err(err)?;
        std::fs::write(&path, text).map_err(err)?;
        if private {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
        Ok(())
    };
    write("ca.crt", &certs.ca_cert_pem, false)?;
    write("ca.key", &certs.ca_key_pem, true)?;
    write("tls.crt", &certs.tls_cert_pem, false)?;
    write("tls.key", &certs.tls_key_pem, true)?;
    Ok(certs.ca_bundle())
}

#[cfg(test)]
mod tests {
    use super::*;

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
                generate(&[bad.to_owned()], &[], 1),
                Err(CertError::DnsName(_))
            ));
        }
    }
}
