//! The self-signed default of `pullgate serve` and `pullgate certs`: a CA and a serving certificate
//! signed by it, issued through [`super::issue`] like the managed rotation's.

use super::issue::{self, IssueError};
use base64::Engine;
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
    /// The CA or the serving certificate could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
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
    let now = jiff::Timestamp::now().as_second();
    let validity = i64::from(days.max(1)) * 86_400;
    let ca = issue::new_ca(now, validity)?;
    let leaf = issue::issue_leaf(&ca, dns, ips, now, validity)?;
    Ok(GeneratedCerts {
        ca_cert_pem: super::x509::pem_certificate(&ca.der),
        ca_key_pem: ca.key.serialize_pem(),
        tls_cert_pem: leaf.cert_pem,
        tls_key_pem: leaf.key_pem,
    })
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
    fn generated_certificates_verify_and_bad_names_are_refused() {
        let g = generate(&["a.test".to_owned()], &[IpAddr::from([127, 0, 0, 1])], 2).unwrap();
        let ca = rustls::pki_types::pem::PemObject::from_pem_slice(g.ca_cert_pem.as_bytes())
            .map(rustls::pki_types::CertificateDer::into_owned)
            .unwrap();
        let leaf = rustls::pki_types::pem::PemObject::from_pem_slice(g.tls_cert_pem.as_bytes())
            .map(rustls::pki_types::CertificateDer::into_owned)
            .unwrap();
        let now = jiff::Timestamp::now().as_second();
        let names = ["a.test".to_owned(), "127.0.0.1".to_owned()];
        assert_eq!(
            super::super::x509::verify(&leaf, &ca, &names, now),
            super::super::x509::Verdict::Valid
        );
        let days = (super::super::x509::not_after(&leaf).unwrap() - now) / 86_400;
        assert!((1..=2).contains(&days), "{days}");
        assert!(matches!(
            generate(&["a b".to_owned()], &[], 1),
            Err(CertError::Issue(IssueError::DnsName(_)))
        ));
    }
}
