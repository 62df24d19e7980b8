//! The verifier: runs the auth [`Flow`] for a key's credentials over the HTTP adapter, with a
//! concurrency limit per registry and a deadline per probe, and with the transport settings
//! (extra CAs, plain HTTP) the policy gives each registry.

use super::flow::{Flow, Next, Origin, Verdict};
use super::http;
use super::tls::CaFileVerifier;
use crate::engine::index::CredentialStatus;
use crate::engine::keyring::{MatchTarget, RegistryKey};
use crate::engine::policy::{RegistryPattern, Verify};
use crate::engine::pullsecret::Credential;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Probes of one registry at once, unless configured otherwise: enough to get through thousands
/// of secrets in minutes, few enough that no registry sees pullgate as a burst.
pub const DEFAULT_PER_REGISTRY: usize = 2;

/// Why the verification settings could not be built (at start, naming the file).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A `caFile` could not be read.
    #[error("verify: reading caFile {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A `caFile` has a malformed PEM section.
    #[error("verify: caFile {path}: malformed PEM: {source}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A `caFile` holds no PEM certificate.
    #[error("verify: caFile {path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of a `caFile` is not a usable trust anchor.
    #[error("verify: caFile {path}: {source}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the client configuration.
    #[error("verify: TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// rustls refused the certificate verifier's configuration.
    #[error("verify: TLS verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// Transport settings of the registries one policy pattern matches.
struct RegistrySettings {
    pattern: RegistryPattern,
    insecure: bool,
    tls: Arc<rustls::ClientConfig>,
}

/// Everything a probe needs from the policy, with TLS configurations built once.
pub struct Settings {
    /// Deadline of one probe (all its requests).
    pub timeout: Duration,
    /// Least time between probes of an unchanged secret.
    pub interval: Duration,
    /// Repository for the token scope and the anonymous-registry fallback.
    pub probe_repository: Option<String>,
    /// Probes of one registry at once.
    pub per_registry: usize,
    registries: Vec<RegistrySettings>,
    default_tls: Arc<rustls::ClientConfig>,
}

impl Settings {
    /// Build from the policy's `verify` section: reads every `caFile` now, so a bad one fails
    /// the start rather than every probe.
    pub fn from_policy(v: &Verify) -> Result<Settings, VerifyError> {
        let default_tls = client_config(&[])?;
        let mut registries = Vec::with_capacity(v.registries.len());
        for r in &v.registries {
            let tls = match &r.ca_file {
                Some(path) => client_config(&read_ca(path)?).map_err(|e| match e {
                    VerifyError::Tls(source) => VerifyError::BadCertificate {
                        path: path.clone(),
                        source,
                    },
                    other => other,
                })?,
                None => default_tls.clone(),
            };
            registries.push(RegistrySettings {
                pattern: r.pattern.clone(),
                insecure: r.insecure,
                tls,
            });
        }
        Ok(Settings {
            timeout: v.timeout.0,
            interval: v.interval.0,
            probe_repository: v.probe_repository.clone(),
            per_registry: DEFAULT_PER_REGISTRY,
            registries,
            default_tls,
        })
    }

    /// The same settings with another per-registry concurrency (at least 1).
    pub fn with_per_registry(mut self, n: usize) -> Settings {
        self.per_registry = n.max(1);
        self
    }

    /// Patterns whose registries may be probed over plain HTTP (to be logged as a warning at start).
    pub fn insecure_patterns(&self) -> Vec<String> {
        self.registries
            .iter()
            .filter(|r| r.insecure)
            .map(|r| match &r.pattern {
                RegistryPattern::All => "*".to_owned(),
                RegistryPattern::Auto => "auto".to_owned(),
                RegistryPattern::Key(k) => k.as_str().to_owned(),
            })
            .collect()
    }

    /// The first `registries` entry whose pattern matches `name` (a key or a host).
    fn entry(&self, name: &str) -> Option<&RegistrySettings> {
        let target = MatchTarget::new(name);
        self.registries.iter().find(|r| r.pattern.matches(&target))
    }

    /// TLS for an origin: its own entry's CAs if it has one (a realm on another private host),
    /// else the registry's (a realm usually shares the registry's CA), else the system roots.
    fn tls_for(
        &self,
        origin: &Origin,
        registry: Option<&RegistrySettings>,
    ) -> Arc<rustls::ClientConfig> {
        self.entry(&origin.authority())
            .or(registry)
            .map_or_else(|| self.default_tls.clone(), |r| r.tls.clone())
    }
}

/// The system's trust anchors, loaded once (reading the system store takes tens of milliseconds).
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        if loaded.certs.is_empty() {
            tracing::warn!(
                errors = loaded.errors.len(),
                "verify: no system CA certificates found; only caFile CAs are trusted"
            );
        }
        loaded.certs
    })
}

fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, VerifyError> {
    let pem = std::fs::read(path).map_err(|source| VerifyError::ReadCa {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| VerifyError::BadPem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(VerifyError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// TLS trusting the system roots and `ca_file`; with a `ca_file`, also its certificates served
/// as is (a self-signed registry, see [`CaFileVerifier`]).
fn client_config(
    ca_file: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, VerifyError> {
    let mut roots = rustls::RootCertStore::empty();
    // A system certificate rustls cannot parse is skipped, as every TLS client does.
    roots.add_parsable_certificates(native_roots().iter().cloned());
    for cert in ca_file {
        roots.add(cert.clone())?;
    }
    // ring explicitly: the process-wide default may not be installed (tests, library use).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if ca_file.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        let verifier = CaFileVerifier::new(roots, ca_file.to_vec(), provider)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `Basic base64(username:password)`, built in buffers that are zeroed when dropped.
fn basic_authorization(c: &Credential) -> Zeroizing<Vec<u8>> {
    let mut plain = Zeroizing::new(Vec::with_capacity(
        c.username().len() + 1 + c.password().len(),
    ));
    plain.extend_from_slice(c.username());
    plain.push(b':');
    plain.extend_from_slice(c.password());
    let engine = &base64::engine::general_purpose::STANDARD;
    let encoded_len = base64::encoded_len(plain.len(), true).unwrap_or(0);
    let mut header = Zeroizing::new(vec![0; 6 + encoded_len]);
    header[..6].copy_from_slice(b"Basic ");
    let written = engine.encode_slice(&plain, &mut header[6..]).unwrap_or(0);
    header.truncate(6 + written);
    header
}

/// Probes credentials, at most [`Settings::per_registry`] at once per registry.
pub struct Verifier {
    settings: Settings,
    hosts: Mutex<HashMap<Origin, Arc<Semaphore>>>,
}

impl Verifier {
    /// A verifier with these settings.
    pub fn new(settings: Settings) -> Verifier {
        Verifier {
            settings,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn host_limit(&self, origin: &Origin) -> Arc<Semaphore> {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(origin.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_registry)))
            .clone()
    }

    /// Verify the credentials a secret holds for `key`. `credentials` is called only once this
    /// registry has a free slot, so secret data is read as late as possible; the credentials
    /// are dropped (zeroed) before this returns. Several credentials for one key (entries that
    /// normalise alike) are tried in order as the kubelet would: valid if any is.
    pub async fn probe<F, Fut, E>(&self, key: &RegistryKey, credentials: F) -> Result<Verdict, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Credential>, E>>,
    {
        let entry = self.settings.entry(key.as_str());
        let insecure = entry.is_some_and(|e| e.insecure);
        let origin = match Origin::for_key(key, insecure) {
            Ok(o) => o,
            Err(why) => return Ok(Verdict::new(CredentialStatus::Unsupported, why)),
        };
        let limit = self.host_limit(&origin);
        // The semaphore is never closed, so acquiring cannot fail; treat it as a free slot anyway.
        let _permit = limit.acquire_owned().await.ok();
        let credentials = credentials().await?;
        let usable: Vec<&Credential> = credentials.iter().filter(|c| !c.is_empty()).collect();
        if usable.is_empty() {
            return Ok(Verdict::new(
                CredentialStatus::Unsupported,
                format!("the secret's entry for {:?} has no username or password: the kubelet pulls anonymously with it", key.as_str()),
            ));
        }
        let mut verdicts = Vec::with_capacity(usable.len());
        for c in usable {
            let v = self.probe_one(&origin, insecure, entry, c).await;
            let valid = v.status == CredentialStatus::Valid;
            verdicts.push(v);
            if valid {
                break;
            }
        }
        Ok(combine(verdicts))
    }

    async fn probe_one(
        &self,
        origin: &Origin,
        insecure: bool,
        entry: Option<&RegistrySettings>,
        credential: &Credential,
    ) -> Verdict {
        let mut flow = Flow::new(
            origin.clone(),
            insecure,
            self.settings.probe_repository.clone(),
        );
        let run = async {
            let mut out = flow.start();
            loop {
                let authorization = if out.credentials {
                    // The flow already guarantees this; checked again where the bytes leave.
                    if !flow.may_send_credentials_to(&out.origin) {
                        return Verdict::new(
                            CredentialStatus::Unsupported,
                            format!("refused to send the credential to {}", out.origin),
                        );
                    }
                    Some(basic_authorization(credential))
                } else {
                    None
                };
                let tls = out
                    .origin
                    .tls
                    .then(|| self.settings.tls_for(&out.origin, entry));
                let result =
                    http::exchange(&out, authorization.as_ref().map(|a| a.as_slice()), tls).await;
                drop(authorization);
                match result {
                    Ok(response) => match flow.on_response(&response) {
                        Next::Send(next) => out = next,
                        Next::Done(v) => return v,
                    },
                    Err(e) => return flow.on_transport_error(&e.to_string()),
                }
            }
        };
        match tokio::time::timeout(self.settings.timeout, run).await {
            Ok(v) => v,
            Err(_) => Verdict::new(
                CredentialStatus::Unreachable,
                format!(
                    "registry {origin}: no complete answer within {:?}",
                    self.settings.timeout
                ),
            ),
        }
    }
}

/// One verdict for a key tried with several credentials: valid if any is; unknown (unreachable,
/// then unsupported) if any is; rejected only if every one was rejected.
fn combine(verdicts: Vec<Verdict>) -> Verdict {
    let rank = |s: CredentialStatus| match s {
        CredentialStatus::Valid => 0,
        CredentialStatus::Unreachable => 1,
        CredentialStatus::Unsupported => 2,
        CredentialStatus::Rejected => 3,
    };
    verdicts
        .into_iter()
        .min_by_key(|v| rank(v.status))
        .unwrap_or_else(|| Verdict::new(CredentialStatus::Unsupported, "no credential to verify"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialStatus::*;

    #[test]
    fn combining_prefers_what_lets_the_pull_succeed() {
        let v = |s| Verdict::new(s, "");
        assert_eq!(combine(vec![v(Rejected), v(Valid)]).status, Valid);
        assert_eq!(
            combine(vec![v(Rejected), v(Unreachable)]).status,
            Unreachable
        );
        assert_eq!(
            combine(vec![v(Rejected), v(Unsupported)]).status,
            Unsupported
        );
        assert_eq!(combine(vec![v(Rejected), v(Rejected)]).status, Rejected);
        assert_eq!(combine(vec![]).status, Unsupported);
    }

    #[test]
    fn settings_read_ca_files_and_fail_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let certs = crate::tls::certs::generate(&["r.test".into()], &[], 1).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, &certs.ca_cert_pem).unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let policy = |file: &Path, insecure: bool| {
            crate::engine::policy::Policy::from_yaml(&format!(
                "verify:\n  registries:\n  - pattern: r.test\n    caFile: {}\n    insecure: {insecure}\n",
                file.display()
            ))
            .unwrap()
            .verify
        };
        let s = Settings::from_policy(&policy(&good, true)).unwrap();
        assert_eq!(s.insecure_patterns(), ["r.test"]);
        assert_eq!(s.per_registry, DEFAULT_PER_REGISTRY);
        assert_eq!(s.with_per_registry(0).per_registry, 1);
        let err = Settings::from_policy(&policy(&empty, false)).err().unwrap();
        assert!(matches!(err, VerifyError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
        // A broken section beside a good certificate fails too, rather than being skipped.
        let truncated = dir.path().join("truncated.pem");
        let half = &certs.tls_cert_pem[..certs.tls_cert_pem.len() / 2];
        std::fs::write(&truncated, format!("{}{half}", certs.ca_cert_pem)).unwrap();
        let err = Settings::from_policy(&policy(&truncated, false))
            .err()
            .unwrap();
        assert!(matches!(err, VerifyError::BadPem { .. }), "{err}");
        assert!(err.to_string().contains("truncated.pem"), "{err}");
        // Well-formed PEM around bytes that are no certificate.
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = Settings::from_policy(&policy(&garbage, false))
            .err()
            .unwrap();
        assert!(matches!(err, VerifyError::BadCertificate { .. }), "{err}");
        assert!(err.to_string().contains("garbage.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = Settings::from_policy(&policy(&missing, false))
            .err()
            .unwrap();
        assert!(matches!(err, VerifyError::ReadCa { .. }), "{err}");
    }

    #[test]
    fn basic_header_is_standard_base64() {
        let mut data = std::collections::BTreeMap::new();
        data.insert(
            ".dockerconfigjson".to_owned(),
            br#"{"auths":{"r.io":{"username":"Aladdin","password":"open sesame"}}}"#.to_vec(),
        );
        let key = RegistryKey::parse("r.io").unwrap();
        let creds = crate::engine::pullsecret::credentials_for(
            crate::engine::pullsecret::DOCKER_CONFIG_JSON_TYPE,
            &data,
            &key,
        )
        .unwrap();
        let header = basic_authorization(&creds[0]);
        assert_eq!(header.as_slice(), b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }
}
