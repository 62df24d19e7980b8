//! Server-certificate checks for registries with a `caFile`: the WebPKI, plus the one case it
//! refuses that container runtimes accept — the registry presents a certificate of the `caFile`
//! itself.
//!
//! A self-signed registry certificate made the usual way (`openssl req -x509 …`, the
//! distribution registry's own recipe) is its own CA (basicConstraints CA:TRUE), and the WebPKI
//! refuses a CA as the server's certificate (`CaUsedAsEndEntity`). containerd and Docker trust it
//! anyway, because Go's crypto/x509 accepts a leaf that is itself in the root pool; without the
//! same rule every probe of such a registry would be `unreachable`. So a server certificate
//! byte-identical to one in the `caFile` is accepted after the checks that still apply to it:
//! validity period and host name. The handshake signature is verified by the WebPKI verifier as
//! for any certificate.

use crate::tls::x509::cert_info;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// WebPKI verification against the system roots and a `caFile`, also accepting a server
/// certificate that is exactly one of the `caFile`'s certificates (see the module docs).
#[derive(Debug)]
pub struct CaFileVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    ca_file: Vec<CertificateDer<'static>>,
}

impl CaFileVerifier {
    /// A verifier trusting `roots` (which include the `caFile`'s certificates), accepting the
    /// `ca_file` certificates themselves as server certificates.
    pub fn new(
        roots: rustls::RootCertStore,
        ca_file: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<CaFileVerifier, VerifierBuilderError> {
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(CaFileVerifier { webpki, ca_file })
    }
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let webpki = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match webpki {
            Err(_)
                if self
                    .ca_file
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                verify_trusted_as_is(end_entity, server_name, now)
                    .map(|()| ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.webpki.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}

/// What still needs checking on a certificate trusted as is: its validity period (read with
/// x509-parser, as the webhook's own certificates are), then the host name (by webpki).
fn verify_trusted_as_is(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let validity = cert_info(cert).map_err(|_| CertificateError::BadEncoding)?;
    let time = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let at =
        |secs: i64| UnixTime::since_unix_epoch(Duration::from_secs(secs.max(0).unsigned_abs()));
    if time < validity.not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: at(validity.not_before),
        }
        .into());
    }
    if time > validity.not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: at(validity.not_after),
        }
        .into());
    }
    verify_server_name(&ParsedCertificate::try_from(cert)?, server_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;

    /// A certificate made like `openssl req -x509 -newkey … -addext subjectAltName=…`: self-signed,
    /// CA:TRUE, the given SANs, valid from `from` to `until` (seconds from now).
    fn self_signed_ca(sans: &[&str], from: i64, until: i64) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "registry.test");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::seconds(from);
        params.not_after = now + time::Duration::seconds(until);
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), key)
    }

    fn valid_ca() -> (CertificateDer<'static>, KeyPair) {
        self_signed_ca(&["registry.test", "127.0.0.1"], -300, 86_400)
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn verifier(ca_file: &[CertificateDer<'static>]) -> CaFileVerifier {
        let mut roots = rustls::RootCertStore::empty();
        for c in ca_file {
            roots.add(c.clone()).unwrap();
        }
        CaFileVerifier::new(roots, ca_file.to_vec(), provider()).unwrap()
    }

    fn check(
        v: &dyn ServerCertVerifier,
        cert: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        host: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(host.to_owned()).unwrap();
        v.verify_server_cert(cert, chain, &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn the_ca_file_certificate_itself_is_accepted_where_webpki_refuses_it() {
        let (ca, _) = valid_ca();
        let v = verifier(std::slice::from_ref(&ca));
        let refused = check(v.webpki.as_ref(), &ca, &[], "registry.test").unwrap_err();
        assert!(
            format!("{refused}").contains("CaUsedAsEndEntity"),
            "{refused}"
        );
        check(&v, &ca, &[], "registry.test").unwrap();
        check(&v, &ca, &[], "127.0.0.1").unwrap();
        // Sent with a chain, the chain is irrelevant: the certificate itself is trusted.
        check(&v, &ca, std::slice::from_ref(&ca), "registry.test").unwrap();
    }

    #[test]
    fn another_certificate_with_the_same_names_is_refused() {
        let (ca, _) = valid_ca();
        let (impostor, _) = valid_ca();
        assert_ne!(ca, impostor);
        let v = verifier(&[ca]);
        let err = check(&v, &impostor, &[], "registry.test").unwrap_err();
        assert!(format!("{err}").contains("CaUsedAsEndEntity"), "{err}");
    }

    #[test]
    fn the_host_name_is_still_checked() {
        let (ca, _) = valid_ca();
        let v = verifier(std::slice::from_ref(&ca));
        for host in ["other.test", "127.0.0.2", "sub.registry.test"] {
            let err = check(&v, &ca, &[], host).unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{host}: {err}"
            );
        }
    }

    #[test]
    fn the_validity_period_is_still_checked() {
        // The caFile's own certificate, valid from `from` to `to` seconds after now.
        let refusal = |from, to| {
            let (cert, _) = self_signed_ca(&["registry.test"], from, to);
            check(
                &verifier(std::slice::from_ref(&cert)),
                &cert,
                &[],
                "registry.test",
            )
            .unwrap_err()
        };
        let err = refusal(-86_400, -60);
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{err}"
        );
        let err = refusal(3_600, 86_400);
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn a_chain_to_the_ca_file_is_verified_by_webpki_as_before() {
        let g = crate::tls::certs::generate(&["r.test".into()], &[], 1).unwrap();
        let ca = CertificateDer::from_pem_slice(g.ca_cert_pem.as_bytes()).unwrap();
        let leaf = CertificateDer::from_pem_slice(g.tls_cert_pem.as_bytes()).unwrap();
        let v = verifier(&[ca]);
        check(&v, &leaf, &[], "r.test").unwrap();
        let err = check(&v, &leaf, &[], "other.test").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ),
            "{err}"
        );
        // A leaf of another pullgate CA is not trusted: each CA has a name of its own.
        let other = crate::tls::certs::generate(&["r.test".into()], &[], 1).unwrap();
        let stranger = CertificateDer::from_pem_slice(other.tls_cert_pem.as_bytes()).unwrap();
        assert_eq!(
            check(&v, &stranger, &[], "r.test").unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        // Nor a leaf of a CA with the same name as the trusted one: webpki finds the issuer by
        // name and refuses the signature.
        let (ca, _) = named_ca_and_leaf("same name");
        let (_, stranger) = named_ca_and_leaf("same name");
        assert_eq!(
            check(&verifier(&[ca]), &stranger, &[], "r.test").unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::BadSignature)
        );
    }

    /// A CA named `cn` (pullgate's own CAs each have a name of their own) and a leaf for `r.test`.
    fn named_ca_and_leaf(cn: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, cn);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["r.test".to_owned()]).unwrap();
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf
            .signed_by(&leaf_key, &Issuer::from_params(&ca, &ca_key))
            .unwrap();
        (ca_cert.der().clone(), leaf.der().clone())
    }

    /// Serves `cert` but signs the handshake with `key`, whatever the two are.
    #[derive(Debug)]
    struct Presenting(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Presenting {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A TLS handshake over an in-memory pipe: the server presents `cert` signing with `key`.
    async fn handshake(
        ca_file: &CertificateDer<'static>,
        cert: CertificateDer<'static>,
        key: &KeyPair,
    ) -> std::io::Result<()> {
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let signing = provider().key_provider.load_private_key(key).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![cert], signing);
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Presenting(Arc::new(certified))));
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier(std::slice::from_ref(ca_file))))
            .with_no_client_auth();
        let (c, s) = tokio::io::duplex(64 * 1024);
        let accept = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(s);
        let connect = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("registry.test").unwrap(), c);
        let (_, client) = tokio::join!(accept, connect);
        client.map(|_| ())
    }

    #[tokio::test]
    async fn the_handshake_must_be_signed_by_the_certificate_s_key() {
        let (ca, key) = valid_ca();
        handshake(&ca, ca.clone(), &key).await.unwrap();
        let stolen = KeyPair::generate().unwrap();
        let err = handshake(&ca, ca.clone(), &stolen).await.unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("signature"),
            "{err}"
        );
    }
}
