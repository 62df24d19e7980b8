//! `--self-signed-secret`: pullgate's own CA, generated with rcgen, kept in a Secret the replicas
//! share, published in the `caBundle` of pullgate's webhook configurations, and rotated well before
//! expiry without a single failed admission.
//!
//! The Secret (`kubernetes.io/tls`, in the pod's namespace) holds:
//! - `tls.crt`, `tls.key`: the serving certificate every replica serves;
//! - `ca.crt`: the CA bundle, the current CA first, then the previous CA while it is still valid;
//! - `ca.key`: the current CA's key. It never leaves the Secret and this process, and is never logged.
//!
//! Rotation starts when the serving certificate (or the CA) has less than a third of its lifetime
//! left, and is a hand-over in two steps, so that the API server trusts every certificate a replica
//! serves at every moment:
//! 1. a new CA goes into the Secret and into the webhook configurations *next to* the old one; the
//!    serving certificate stays the old CA's, which is still trusted;
//! 2. at a later check, once every webhook configuration carried the new bundle when the check began
//!    (so the API servers have had time to load it), a serving certificate signed by the new CA is
//!    written to the Secret. Each replica picks it up at its next poll.
//!
//! The previous CA stays in the bundle until it expires, so replicas that have not polled yet keep
//! being trusted. A replica that read the Secret before a rotation never writes its stale bundle over
//! the newer one: Secret writes carry a resourceVersion precondition, webhook patches too, and a
//! configuration that already trusts a newer CA makes the replica re-read the Secret first.
//!
//! [`decide`] and [`apply`] are the pure core, over [`Material`] (the Secret's data) and the time.
//! [`Managed`] is the thin kube adapter around them.

use super::{CertResolver, LoadedCert, TlsError};
use crate::metrics::Metrics;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Secret key of the serving certificate.
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving certificate's private key.
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the CA bundle (current CA first).
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the current CA's private key.
pub const CA_KEY: &str = "ca.key";
/// Type of the Secret.
pub const SECRET_TYPE: &str = "kubernetes.io/tls";
/// Lifetime of a generated CA (and of the serving certificates it signs).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Time between two checks of the Secret and the webhook configurations.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Time the API servers get to load a new caBundle before a certificate signed by the new CA is
/// served.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);
/// Time the first check may take (retrying) before `pullgate serve` gives up.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Names a serving certificate gets while no webhook configuration names a Service: the leaf is
/// re-issued for the Service names as soon as a configuration appears.
const FALLBACK_NAMES: [&str; 1] = ["localhost"];
/// Certificates start this much in the past (at most a twentieth of their lifetime), so replicas
/// and API servers with slightly different clocks accept them at once.
const MAX_BACKDATE_SECS: i64 = 300;
/// Reads and writes of the Secret in one check before giving up on a contended Secret.
const MAX_STEPS: usize = 8;
/// Patch attempts per webhook configuration in one check (a 409 means it changed under us).
const MAX_PATCH_ATTEMPTS: usize = 3;
/// Field manager of pullgate's patches.
const FIELD_MANAGER: &str = "pullgate";

/// Why the Secret could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// rcgen refused to generate a key or certificate.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A validity bound is outside what a certificate can hold.
    #[error("time {0} is out of range for a certificate")]
    Time(i64),
    /// The Secret's current CA cannot sign (the decision and the data disagree).
    #[error("the Secret's current CA cannot sign: {0}")]
    NoCa(&'static str),
    /// A certificate just issued does not verify against its own CA.
    #[error("a certificate issued by the current CA does not verify against it")]
    IssuerMismatch,
    /// A Secret API call failed.
    #[error("{action} Secret {namespace}/{name}: {source}")]
    Secret {
        /// What was being done.
        action: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The error (boxed: kube's error is large, and every Result here carries it).
        #[source]
        source: Box<kube::Error>,
    },
    /// The Secret exists with another type; pullgate leaves it alone.
    #[error("Secret {namespace}/{name} has type {found:?}, not {SECRET_TYPE}; pullgate does not change it")]
    SecretType {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Its type.
        found: String,
    },
    /// The Secret changed under every attempt of one check.
    #[error("Secret {namespace}/{name} kept changing; gave up after {MAX_STEPS} attempts")]
    Contended {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The serving certificate in the Secret cannot be served.
    #[error("serving certificate from the Secret: {0}")]
    Serving(#[from] TlsError),
}

// ---------------------------------------------------------------------------------------------
// The pure core: the Secret's data, the decision, and what to write.
// ---------------------------------------------------------------------------------------------

/// The Secret's data as plain bytes: what the pure core reads and writes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Material {
    /// `ca.crt`: PEM CA certificates, the current CA first.
    pub ca_bundle: Vec<u8>,
    /// `ca.key`: PEM key of the current CA.
    pub ca_key: Vec<u8>,
    /// `tls.crt`: PEM serving certificate.
    pub tls_crt: Vec<u8>,
    /// `tls.key`: PEM key of the serving certificate.
    pub tls_key: Vec<u8>,
}

impl fmt::Debug for Material {
    // Sizes only: a Debug print (in a log line or a panic message) must never carry key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("ca_bundle_bytes", &self.ca_bundle.len())
            .field("ca_key", &"[redacted]")
            .field("tls_crt_bytes", &self.tls_crt.len())
            .field("tls_key", &"[redacted]")
            .finish()
    }
}

impl Material {
    /// The material in a Secret's `data` (missing keys are empty).
    pub fn from_data(data: Option<&BTreeMap<String, ByteString>>) -> Self {
        let get = |k: &str| {
            data.and_then(|d| d.get(k))
                .map(|b| b.0.clone())
                .unwrap_or_default()
        };
        Material {
            ca_bundle: get(CA_CRT),
            ca_key: get(CA_KEY),
            tls_crt: get(TLS_CRT),
            tls_key: get(TLS_KEY),
        }
    }

    /// The Secret `data` holding this material.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (TLS_CRT, &self.tls_crt),
            (TLS_KEY, &self.tls_key),
            (CA_CRT, &self.ca_bundle),
            (CA_KEY, &self.ca_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.clone())))
        .collect()
    }

    /// The `caBundle` value of a webhook configuration: base64 of the PEM bundle.
    pub fn ca_bundle_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_bundle)
    }

    /// The CA certificates of the bundle, in order (unreadable entries left out).
    pub fn ca_certificates(&self) -> Vec<CertificateDer<'static>> {
        parse_bundle(&self.ca_bundle)
            .into_iter()
            .flatten()
            .map(|c| c.der)
            .collect()
    }

    /// The serving certificate and key, ready for the resolver.
    pub fn serving(&self) -> Result<LoadedCert, TlsError> {
        super::load_pem_pair(&self.tls_crt, &self.tls_key, TLS_CRT, TLS_KEY)
    }
}

/// What to do with the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Everything is current: serve it.
    Reuse,
    /// There is no Secret: generate a CA and a serving certificate.
    Create,
    /// Generate a new CA, keeping the old one in the bundle; the serving certificate stays if the
    /// new bundle still trusts it.
    NewCa(CaReason),
    /// Issue a serving certificate with the current CA.
    IssueLeaf(LeafReason),
    /// Drop expired or unreadable CAs from the bundle.
    Prune,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Reuse => f.write_str("reuse"),
            Decision::Create => f.write_str("create"),
            Decision::NewCa(r) => write!(f, "new CA ({})", r.as_str()),
            Decision::IssueLeaf(r) => write!(f, "new serving certificate ({})", r.as_str()),
            Decision::Prune => f.write_str("prune the CA bundle"),
        }
    }
}

/// Why a new CA is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaReason {
    /// `ca.crt` or `ca.key` is missing or unreadable.
    Unreadable,
    /// `ca.key` is not the key of the first certificate of `ca.crt`.
    KeyMismatch,
    /// The current CA has expired.
    Expired,
    /// The CA or the serving certificate has less than a third of its lifetime left.
    RotationDue,
}

impl CaReason {
    /// A short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CaReason::Unreadable => "CA unreadable",
            CaReason::KeyMismatch => "CA key does not match",
            CaReason::Expired => "CA expired",
            CaReason::RotationDue => "rotation due",
        }
    }
}

/// Why a new serving certificate is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafReason {
    /// Missing, unreadable, key mismatch, expired, or signed by no CA of the bundle.
    Unusable,
    /// Valid, but not for every name the webhook configurations use.
    NamesChanged,
    /// Valid and trusted, but signed by the previous CA: the second step of a rotation.
    HandOver,
}

impl LeafReason {
    /// A short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LeafReason::Unusable => "serving certificate unusable",
            LeafReason::NamesChanged => "service names changed",
            LeafReason::HandOver => "rotation hand-over",
        }
    }

    /// Whether the new certificate must wait until the webhook configurations have carried the
    /// bundle for a while. Only a hand-over replaces a certificate the API server accepts today;
    /// in the other cases the current one does not work anyway, so a new one cannot make it worse.
    pub fn waits_for_publication(self) -> bool {
        matches!(self, LeafReason::HandOver)
    }
}

/// Validity and identity of a certificate, read from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    /// The subject Name, as encoded (tag and length included).
    subject: Vec<u8>,
    /// The SubjectPublicKeyInfo, as encoded.
    spki: Vec<u8>,
}

impl CertInfo {
    fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }

    /// Less than a third of the lifetime left.
    fn rotation_due(&self, now: i64) -> bool {
        let lifetime = i128::from(self.not_after) - i128::from(self.not_before);
        let left = i128::from(self.not_after) - i128::from(now);
        left * 3 < lifetime
    }
}

/// One certificate of the CA bundle.
#[derive(Debug, Clone)]
struct Ca {
    der: CertificateDer<'static>,
    info: CertInfo,
}

/// The bundle's certificates in order; `None` for an entry that does not parse.
fn parse_bundle(pem: &[u8]) -> Vec<Option<Ca>> {
    CertificateDer::pem_slice_iter(pem)
        .map(|r| {
            r.ok().and_then(|der| {
                cert_info(&der).map(|info| Ca {
                    der: der.into_owned(),
                    info,
                })
            })
        })
        .collect()
}

fn effective_names(names: &[String]) -> Vec<String> {
    if names.is_empty() {
        FALLBACK_NAMES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        names.to_vec()
    }
}

/// The current CA: the first certificate of the bundle with `ca.key`, checked to belong together.
struct CurrentCa {
    cert: Ca,
    key: KeyPair,
}

fn current_ca(m: &Material) -> Result<CurrentCa, CaReason> {
    let cert = parse_bundle(&m.ca_bundle)
        .into_iter()
        .next()
        .flatten()
        .ok_or(CaReason::Unreadable)?;
    let key = std::str::from_utf8(&m.ca_key)
        .ok()
        .and_then(|k| KeyPair::from_pem(k).ok())
        .ok_or(CaReason::Unreadable)?;
    if key.subject_public_key_info() != cert.info.spki {
        return Err(CaReason::KeyMismatch);
    }
    // Signing re-creates the issuer name from the key (see `ca_params`); a certificate not made by
    // this module (or by another version of it) could carry another name, and every leaf signed
    // with it would then fail to chain.
    let expected = ca_params(&key, cert.info.not_before, cert.info.not_after)
        .ok()
        .and_then(|p| p.self_signed(&key).ok())
        .and_then(|c| cert_info(c.der()));
    if expected.is_none_or(|e| e.subject != cert.info.subject) {
        return Err(CaReason::KeyMismatch);
    }
    Ok(CurrentCa { cert, key })
}

/// How the serving certificate stands against a list of trusted CAs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeafStatus {
    /// Verified for every name by the CA at this index of the list.
    SignedBy(usize, CertInfo),
    /// Chains to a trusted CA but does not cover every name.
    WrongNames,
    /// Anything else.
    Unusable,
}

fn leaf_status(m: &Material, trusted: &[&Ca], names: &[String], now: i64) -> LeafStatus {
    let Ok(loaded) = m.serving() else {
        return LeafStatus::Unusable;
    };
    let Some(leaf) = loaded.key.cert.first() else {
        return LeafStatus::Unusable;
    };
    let Some(info) = cert_info(leaf) else {
        return LeafStatus::Unusable;
    };
    let mut wrong_names = false;
    for (i, ca) in trusted.iter().enumerate() {
        match verify(leaf, &ca.der, names, now) {
            Verdict::Valid => return LeafStatus::SignedBy(i, info),
            Verdict::WrongName => wrong_names = true,
            Verdict::Invalid => {}
        }
    }
    if wrong_names {
        LeafStatus::WrongNames
    } else {
        LeafStatus::Unusable
    }
}

/// Decide what to do with the Secret's contents (`None`: no Secret) for the service `names` at
/// `now` (seconds since the epoch). Deterministic: no I/O, no randomness.
pub fn decide(existing: Option<&Material>, names: &[String], now: i64) -> Decision {
    let Some(m) = existing else {
        return Decision::Create;
    };
    let names = effective_names(names);
    let current = match current_ca(m) {
        Ok(c) => c,
        Err(reason) => return Decision::NewCa(reason),
    };
    if current.cert.info.expired(now) {
        return Decision::NewCa(CaReason::Expired);
    }
    let bundle = parse_bundle(&m.ca_bundle);
    // Index 0 is the current CA; expired CAs are not trusted (the API server's verifier checks
    // the validity of the roots too).
    let trusted: Vec<&Ca> = bundle
        .iter()
        .flatten()
        .enumerate()
        .filter(|(i, c)| *i == 0 || !c.info.expired(now))
        .map(|(_, c)| c)
        .collect();
    match leaf_status(m, &trusted, &names, now) {
        LeafStatus::Unusable => Decision::IssueLeaf(LeafReason::Unusable),
        LeafStatus::WrongNames => Decision::IssueLeaf(LeafReason::NamesChanged),
        // Checked before the rotation deadline: a second new CA now would push out the CA the
        // served certificate depends on.
        LeafStatus::SignedBy(i, _) if i > 0 => Decision::IssueLeaf(LeafReason::HandOver),
        LeafStatus::SignedBy(_, leaf) => {
            if current.cert.info.rotation_due(now) || leaf.rotation_due(now) {
                Decision::NewCa(CaReason::RotationDue)
            } else if untidy(&bundle, now) {
                Decision::Prune
            } else {
                Decision::Reuse
            }
        }
    }
}

/// More than the current and one previous CA, or an unreadable or expired previous CA.
fn untidy(bundle: &[Option<Ca>], now: i64) -> bool {
    bundle.len() > 2
        || bundle
            .iter()
            .skip(1)
            .any(|c| c.as_ref().is_none_or(|c| c.info.expired(now)))
}

/// The Secret contents that carry out `decision` (`None` for [`Decision::Reuse`]). Generates keys,
/// so the result is random, but it does no I/O.
pub fn apply(
    existing: Option<&Material>,
    decision: Decision,
    names: &[String],
    now: i64,
    validity: Duration,
) -> Result<Option<Material>, ManagedError> {
    let names = effective_names(names);
    let validity = i64::try_from(validity.as_secs())
        .unwrap_or(i64::MAX / 4)
        .max(1);
    let empty = Material::default();
    let m = existing.unwrap_or(&empty);
    let out = match decision {
        Decision::Reuse => return Ok(None),
        Decision::Create => {
            let ca = new_ca(now, validity)?;
            let (tls_crt, tls_key) = issue_leaf(&ca, &names, now, validity)?;
            Material {
                ca_bundle: pem_encode(&ca.cert.der).into_bytes(),
                ca_key: ca.key.serialize_pem().into_bytes(),
                tls_crt,
                tls_key,
            }
        }
        Decision::NewCa(_) => {
            let ca = new_ca(now, validity)?;
            // Whatever the reason, the old first certificate is what the webhook configurations
            // trust today: keep it (a certificate, never its key) while it is valid.
            let previous = parse_bundle(&m.ca_bundle)
                .into_iter()
                .next()
                .flatten()
                .filter(|c| !c.info.expired(now));
            let trusted: Vec<&Ca> = std::iter::once(&ca.cert).chain(&previous).collect();
            let (tls_crt, tls_key) = match leaf_status(m, &trusted, &names, now) {
                // Still trusted: keep serving it until the hand-over.
                LeafStatus::SignedBy(..) => (m.tls_crt.clone(), m.tls_key.clone()),
                _ => issue_leaf(&ca, &names, now, validity)?,
            };
            Material {
                ca_bundle: trusted
                    .iter()
                    .map(|c| pem_encode(&c.der))
                    .collect::<String>()
                    .into_bytes(),
                ca_key: ca.key.serialize_pem().into_bytes(),
                tls_crt,
                tls_key,
            }
        }
        Decision::IssueLeaf(_) => {
            let ca = current_ca(m)
                .map_err(CaReason::as_str)
                .map_err(ManagedError::NoCa)?;
            let (tls_crt, tls_key) = issue_leaf(&ca, &names, now, validity)?;
            Material {
                tls_crt,
                tls_key,
                ..m.clone()
            }
        }
        Decision::Prune => {
            let bundle = parse_bundle(&m.ca_bundle);
            let mut kept = bundle.iter().flatten();
            let first = kept
                .next()
                .ok_or(ManagedError::NoCa("no CA in the bundle"))?;
            let previous = kept.find(|c| !c.info.expired(now));
            Material {
                ca_bundle: std::iter::once(first)
                    .chain(previous)
                    .map(|c| pem_encode(&c.der))
                    .collect::<String>()
                    .into_bytes(),
                ..m.clone()
            }
        }
    };
    Ok(Some(out))
}

fn at(secs: i64) -> Result<time::OffsetDateTime, ManagedError> {
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| ManagedError::Time(secs))
}

fn backdate(validity: i64) -> i64 {
    (validity / 20).min(MAX_BACKDATE_SECS)
}

/// The CA's parameters. Its name is derived from its key, so that signing with `ca.key` later
/// re-creates exactly the issuer name of `ca.crt` (rcgen cannot read a certificate back without
/// x509-parser), and so that each CA has a name of its own.
fn ca_params(
    key: &KeyPair,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, ManagedError> {
    let mut p = CertificateParams::default();
    let id: String = p
        .key_identifier(key)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("pullgate webhook CA {id}"));
    dn.push(DnType::OrganizationName, "pullgate");
    p.distinguished_name = dn;
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

fn new_ca(now: i64, validity: i64) -> Result<CurrentCa, ManagedError> {
    let key = KeyPair::generate()?;
    let not_before = now.saturating_sub(backdate(validity));
    let not_after = now.saturating_add(validity);
    let cert = ca_params(&key, not_before, not_after)?.self_signed(&key)?;
    let der = cert.der().clone();
    let info = cert_info(&der).ok_or(ManagedError::IssuerMismatch)?;
    Ok(CurrentCa {
        cert: Ca { der, info },
        key,
    })
}

/// A serving certificate for `names` signed by `ca`, never outliving it; (PEM cert, PEM key).
fn issue_leaf(
    ca: &CurrentCa,
    names: &[String],
    now: i64,
    validity: i64,
) -> Result<(Vec<u8>, Vec<u8>), ManagedError> {
    let issuer = Issuer::new(
        ca_params(&ca.key, ca.cert.info.not_before, ca.cert.info.not_after)?,
        &ca.key,
    );
    let mut sans = Vec::new();
    for n in names {
        let s = rcgen::string::Ia5String::try_from(n.as_str())?;
        sans.push(SanType::DnsName(s));
    }
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("pullgate", String::as_str),
    );
    dn.push(DnType::OrganizationName, "pullgate");
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = at(now.saturating_sub(backdate(validity)))?;
    p.not_after = at(now.saturating_add(validity).min(ca.cert.info.not_after))?;
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    // Never publish a certificate the API server would refuse.
    if verify(cert.der(), &ca.cert.der, names, now) != Verdict::Valid {
        return Err(ManagedError::IssuerMismatch);
    }
    Ok((cert.pem().into_bytes(), key.serialize_pem().into_bytes()))
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    WrongName,
    Invalid,
}

fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Verify `leaf` against the single root `ca` for every name at `now`, as a TLS client (the API
/// server) would.
fn verify(
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

// --- A minimal, bounds-checked DER walk: validity, subject and key of a certificate. ---

/// One DER TLV and what follows it.
struct Tlv<'a> {
    tag: u8,
    /// Tag, length and value.
    whole: &'a [u8],
    value: &'a [u8],
    rest: &'a [u8],
}

fn tlv(b: &[u8]) -> Option<Tlv<'_>> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some(Tlv {
        tag,
        whole: b.get(..end)?,
        value: b.get(hdr..end)?,
        rest: b.get(end..)?,
    })
}

/// A SEQUENCE.
fn seq(b: &[u8]) -> Option<Tlv<'_>> {
    tlv(b).filter(|t| t.tag == 0x30)
}

/// Validity, subject and key of a DER certificate (a minimal, bounds-checked walk).
pub(crate) fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let cert = seq(der)?.value;
    let tbs = seq(cert)?.value;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.rest; // [0] version
    }
    rest = tlv(rest)?.rest; // serialNumber
    rest = tlv(rest)?.rest; // signature algorithm
    rest = tlv(rest)?.rest; // issuer
    let validity = seq(rest)?;
    let not_before = tlv(validity.value)?;
    let not_after = tlv(not_before.rest)?;
    let subject = seq(validity.rest)?;
    let spki = seq(subject.rest)?;
    Some(CertInfo {
        not_before: asn1_time(not_before.tag, not_before.value)?,
        not_after: asn1_time(not_after.tag, not_after.value)?,
        subject: subject.whole.to_vec(),
        spki: spki.whole.to_vec(),
    })
}

/// UTCTime (years 50-99 are 19xx, RFC 5280) or GeneralizedTime, in seconds since the epoch.
fn asn1_time(tag: u8, value: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let full = match tag {
        0x17 if s.len() == 12 => {
            let yy: u8 = s.get(0..2)?.parse().ok()?;
            format!("{}{s}", if yy >= 50 { "19" } else { "20" })
        }
        0x18 if s.len() == 14 => s.to_owned(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i16> { full.get(r)?.parse().ok() };
    let small = |r| n(r).and_then(|v| i8::try_from(v).ok());
    let dt = jiff::civil::DateTime::new(
        n(0..4)?,
        small(4..6)?,
        small(6..8)?,
        small(8..10)?,
        small(10..12)?,
        small(12..14)?,
        0,
    )
    .ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second())
}

// --- Webhook configurations as JSON: names to serve, the bundle to publish. ---

/// The DNS names the API server uses for the Services of a configuration's webhooks
/// (`webhooks[*].clientConfig.service`): `name.namespace.svc` and `name.namespace.svc.cluster.local`.
fn service_names(data: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for wh in data["webhooks"].as_array().into_iter().flatten() {
        let svc = &wh["clientConfig"]["service"];
        if let (Some(name), Some(ns)) = (svc["name"].as_str(), svc["namespace"].as_str()) {
            for n in [
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}.svc.cluster.local"),
            ] {
                // A name that cannot be in a certificate cannot be served either.
                if ServerName::try_from(n.as_str()).is_ok() {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// The configuration's `webhooks` with every `clientConfig.caBundle` set to `want`, or `None` when
/// they all are already.
fn webhooks_with_bundle(data: &Value, want: &str) -> Option<Value> {
    let webhooks = data["webhooks"].as_array()?;
    if webhooks
        .iter()
        .all(|wh| wh["clientConfig"]["caBundle"].as_str() == Some(want))
    {
        return None;
    }
    let patched = webhooks
        .iter()
        .map(|wh| {
            let mut wh = wh.clone();
            if let Some(cc) = wh.get_mut("clientConfig").and_then(Value::as_object_mut) {
                cc.insert("caBundle".to_owned(), json!(want));
            }
            wh
        })
        .collect();
    Some(Value::Array(patched))
}

/// Whether the configuration trusts a CA that is newer than every CA of `ours` and not one of
/// them: then `ours` comes from a Secret read before someone else's rotation.
fn trusts_newer_ca(data: &Value, ours: &[CertificateDer<'_>]) -> bool {
    let newest = |certs: &mut dyn Iterator<Item = CertInfo>| certs.map(|c| c.not_before).max();
    let Some(our_newest) = newest(&mut ours.iter().filter_map(|d| cert_info(d))) else {
        return false;
    };
    let theirs: Vec<CertificateDer<'static>> = data["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|wh| wh["clientConfig"]["caBundle"].as_str())
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .flat_map(|pem| {
            CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect::<Vec<_>>()
        })
        .filter(|c| !ours.contains(c))
        .collect();
    newest(&mut theirs.iter().filter_map(|d| cert_info(d))).is_some_and(|t| t > our_newest)
}

// ---------------------------------------------------------------------------------------------
// The kube adapter.
// ---------------------------------------------------------------------------------------------

/// Where the Secret and the webhook configurations are, and how often they are checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Secret (the pod's).
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Names of the Mutating- and/or ValidatingWebhookConfigurations whose caBundle is kept current.
    pub webhook_configurations: Vec<String>,
    /// Lifetime of a new CA and of its serving certificates.
    pub validity: Duration,
    /// Time between checks when all is current.
    pub check_interval: Duration,
    /// Time between publishing a new CA and serving a certificate it signed.
    pub settle: Duration,
    /// First delay between retries after an error (doubling up to `check_interval`).
    pub retry: Duration,
    /// How long the first check may keep retrying.
    pub startup_timeout: Duration,
}

impl Settings {
    /// Settings with the default lifetimes and intervals.
    pub fn new(namespace: String, secret: String, webhook_configurations: Vec<String>) -> Self {
        Settings {
            namespace,
            secret,
            webhook_configurations,
            validity: DEFAULT_VALIDITY,
            check_interval: DEFAULT_CHECK_INTERVAL,
            settle: DEFAULT_SETTLE,
            retry: Duration::from_secs(1),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

/// The namespace of the Secret: the pod's (`--pod-namespace`, `$POD_NAMESPACE`), else the
/// client's default (the in-cluster namespace file, or the kubeconfig context's namespace).
pub fn pod_namespace(configured: Option<&str>, client: &kube::Client) -> String {
    configured.map_or_else(|| client.default_namespace().to_owned(), str::to_owned)
}

#[derive(Debug, Clone, Copy)]
enum ConfigKind {
    Mutating,
    Validating,
}

impl ConfigKind {
    const ALL: [ConfigKind; 2] = [ConfigKind::Mutating, ConfigKind::Validating];

    fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Mutating => "MutatingWebhookConfiguration",
            ConfigKind::Validating => "ValidatingWebhookConfiguration",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            ConfigKind::Mutating => ApiResource::erase::<MutatingWebhookConfiguration>(&()),
            ConfigKind::Validating => ApiResource::erase::<ValidatingWebhookConfiguration>(&()),
        }
    }
}

/// A webhook configuration as last read. Dynamic, so that a patch sends back every field of the
/// `webhooks` list, including fields newer than this client's API types.
struct FoundConfig {
    kind: ConfigKind,
    name: String,
    api: Api<DynamicObject>,
    obj: DynamicObject,
}

/// The webhook configurations read at the start of a check.
struct Configs {
    found: Vec<FoundConfig>,
    /// Every named configuration was found and read.
    complete: bool,
}

impl Configs {
    fn names(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .found
            .iter()
            .flat_map(|c| service_names(&c.obj.data))
            .collect();
        set.into_iter().collect()
    }
}

/// What publishing the bundle found.
struct Publication {
    /// Every found configuration carried the bundle already when this check read it.
    was_current: bool,
    /// Every found configuration carries the bundle now, and none is missing or unreadable.
    complete: bool,
    /// A configuration trusts a newer CA than the Secret we read: re-read the Secret.
    stale: bool,
}

/// When to check next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// All is current: after the check interval.
    Done,
    /// A hand-over is waiting for the API servers: after the settle time.
    Settle,
    /// Something is missing or failed: soon, backing off.
    Retry,
}

/// The result of one check.
struct Checked {
    material: Material,
    next: Next,
}

/// Reads and writes the Secret and the webhook configurations.
struct Reconciler {
    client: kube::Client,
    secrets: Api<Secret>,
    settings: Settings,
}

impl Reconciler {
    fn secret_error(&self, action: &'static str, source: kube::Error) -> ManagedError {
        ManagedError::Secret {
            action,
            namespace: self.settings.namespace.clone(),
            name: self.settings.secret.clone(),
            source: Box::new(source),
        }
    }

    async fn read_configs(&self) -> Configs {
        let mut found = Vec::new();
        let mut complete = true;
        for name in &self.settings.webhook_configurations {
            let mut seen = false;
            for kind in ConfigKind::ALL {
                let api = Api::<DynamicObject>::all_with(self.client.clone(), &kind.resource());
                match api.get_opt(name).await {
                    Ok(Some(obj)) => {
                        seen = true;
                        found.push(FoundConfig {
                            kind,
                            name: name.clone(),
                            api,
                            obj,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        seen = true;
                        complete = false;
                        warn!(kind = kind.as_str(), configuration = %name, error = %e, "cannot read the webhook configuration");
                    }
                }
            }
            if !seen {
                complete = false;
                warn!(configuration = %name, "webhook configuration not found (neither mutating nor validating); its caBundle is set once it exists");
            }
        }
        Configs { found, complete }
    }

    /// Make every found configuration carry `material`'s bundle. `force` skips the stale-Secret
    /// guard (the Secret was re-read and did not change: the newer CA is not pullgate's).
    async fn publish(
        &self,
        configs: &mut Configs,
        material: &Material,
        force: bool,
    ) -> Publication {
        let want = material.ca_bundle_base64();
        let ours = material.ca_certificates();
        let mut p = Publication {
            was_current: true,
            complete: configs.complete,
            stale: false,
        };
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        for c in &mut configs.found {
            let mut attempts = 0;
            while let Some(webhooks) = webhooks_with_bundle(&c.obj.data, &want) {
                p.was_current = false;
                if !force && trusts_newer_ca(&c.obj.data, &ours) {
                    p.stale = true;
                    return p;
                }
                attempts += 1;
                if attempts > MAX_PATCH_ATTEMPTS {
                    p.complete = false;
                    break;
                }
                // The resourceVersion makes the patch conditional: the list is sent whole, so it
                // must be the list as we read it.
                let patch = json!({
                    "metadata": { "resourceVersion": c.obj.metadata.resource_version },
                    "webhooks": webhooks,
                });
                match c.api.patch(&c.name, &params, &Patch::Merge(&patch)).await {
                    Ok(obj) => {
                        info!(kind = c.kind.as_str(), configuration = %c.name, "caBundle updated");
                        c.obj = obj;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        debug!(kind = c.kind.as_str(), configuration = %c.name, "webhook configuration changed while patching; re-reading");
                        match c.api.get_opt(&c.name).await {
                            Ok(Some(obj)) => c.obj = obj,
                            Ok(None) => break,
                            Err(e) => {
                                warn!(kind = c.kind.as_str(), configuration = %c.name, error = %e, "cannot re-read the webhook configuration");
                                p.complete = false;
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        warn!(kind = c.kind.as_str(), configuration = %c.name, error = %e, "cannot update the caBundle");
                        p.complete = false;
                        break;
                    }
                }
            }
        }
        p
    }

    /// The Secret and its material; a Secret of another type is an error.
    async fn read_secret(&self) -> Result<Option<(Secret, Material)>, ManagedError> {
        let Some(secret) = self
            .secrets
            .get_opt(&self.settings.secret)
            .await
            .map_err(|e| self.secret_error("reading", e))?
        else {
            return Ok(None);
        };
        let ty = secret.type_.as_deref().unwrap_or("Opaque");
        if ty != SECRET_TYPE {
            return Err(ManagedError::SecretType {
                namespace: self.settings.namespace.clone(),
                name: self.settings.secret.clone(),
                found: ty.to_owned(),
            });
        }
        let material = Material::from_data(secret.data.as_ref());
        Ok(Some((secret, material)))
    }

    /// Write `material`: create the Secret when `existing` is `None`, else replace it with its
    /// resourceVersion as precondition. `Ok(false)` when another replica won (409): re-read.
    async fn write(
        &self,
        existing: Option<Secret>,
        material: &Material,
    ) -> Result<bool, ManagedError> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let result = match existing {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.settings.secret.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "pullgate".to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    type_: Some(SECRET_TYPE.to_owned()),
                    data: Some(material.to_data()),
                    ..Secret::default()
                };
                self.secrets
                    .create(&pp, &secret)
                    .await
                    .map_err(|e| ("creating", e))
            }
            Some(mut secret) => {
                secret.data = Some(material.to_data());
                secret.string_data = None;
                self.secrets
                    .replace(&self.settings.secret, &pp, &secret)
                    .await
                    .map_err(|e| ("updating", e))
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err((action, kube::Error::Api(s))) if s.code == 409 => {
                debug!(secret = %self.settings.secret, action, "another replica wrote the Secret first; re-reading");
                Ok(false)
            }
            Err((action, e)) => Err(self.secret_error(action, e)),
        }
    }

    /// One check: bring the Secret up to date, publish its bundle, and advance a hand-over.
    async fn check(&self) -> Result<Checked, ManagedError> {
        let now = jiff::Timestamp::now().as_second();
        let mut configs = self.read_configs().await;
        let names = configs.names();
        let validity = self.settings.validity;
        let log = |decision: Decision| {
            info!(namespace = %self.settings.namespace, secret = %self.settings.secret, decision = %decision, "updating the self-signed certificate Secret");
        };
        let mut stale_at: Option<String> = None;
        let mut force = false;
        for _ in 0..MAX_STEPS {
            let read = self.read_secret().await?;
            let decision = decide(read.as_ref().map(|(_, m)| m), &names, now);
            let (secret, material) = match (decision, read) {
                (Decision::Reuse | Decision::IssueLeaf(_), Some(read)) => read,
                (decision, read) => {
                    let (secret, material) = read.unzip();
                    let Some(new) = apply(material.as_ref(), decision, &names, now, validity)?
                    else {
                        continue;
                    };
                    log(decision);
                    self.write(secret, &new).await?;
                    continue;
                }
            };
            let publication = self.publish(&mut configs, &material, force).await;
            if publication.stale {
                let rv = secret.metadata.resource_version.clone().unwrap_or_default();
                // Seen stale twice at the same Secret version: the newer CA is not from the
                // Secret, so the Secret wins.
                force = stale_at.as_deref() == Some(rv.as_str());
                stale_at = Some(rv);
                debug!(
                    "a webhook configuration trusts a newer CA than the Secret read; re-reading"
                );
                continue;
            }
            if let Decision::IssueLeaf(reason) = decision {
                if reason.waits_for_publication() && !publication.was_current {
                    info!(namespace = %self.settings.namespace, secret = %self.settings.secret, "new CA published; the serving certificate changes after the API servers had time to load it");
                    return Ok(Checked {
                        material,
                        next: Next::Settle,
                    });
                }
                if let Some(new) = apply(Some(&material), decision, &names, now, validity)? {
                    log(decision);
                    self.write(Some(secret), &new).await?;
                }
                continue;
            }
            let next = if publication.complete {
                Next::Done
            } else {
                Next::Retry
            };
            return Ok(Checked { material, next });
        }
        Err(ManagedError::Contended {
            namespace: self.settings.namespace.clone(),
            name: self.settings.secret.clone(),
        })
    }
}

/// The self-signed certificate of a running `pullgate serve`: the resolver serving it, and the
/// background check that keeps the Secret, the webhook configurations and the resolver current.
pub struct Managed {
    reconciler: Reconciler,
    resolver: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    /// DER of the served certificate, to swap only on change.
    served: Vec<u8>,
    next: Next,
}

impl Managed {
    /// Run the first check (retrying for up to `settings.startup_timeout`): create or adopt the
    /// Secret, publish its CA, and load its serving certificate.
    pub async fn start(
        client: kube::Client,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ManagedError> {
        let reconciler = Reconciler {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            client,
            settings,
        };
        let deadline = Instant::now() + reconciler.settings.startup_timeout;
        let mut delay = reconciler.settings.retry.min(Duration::from_millis(500));
        let (checked, loaded) = loop {
            let attempt = match reconciler.check().await {
                Ok(c) => c
                    .material
                    .serving()
                    .map(|l| (c, l))
                    .map_err(ManagedError::from),
                Err(e) => Err(e),
            };
            match attempt {
                Ok(ok) => break ok,
                Err(e) if Instant::now() + delay < deadline => {
                    warn!(error = %e, retry_in = ?delay, "self-signed certificate not ready; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        };
        metrics.cert_expiry.set(loaded.not_after as f64);
        let served = loaded
            .key
            .cert
            .first()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        info!(namespace = %reconciler.settings.namespace, secret = %reconciler.settings.secret, not_after = loaded.not_after, "serving the self-signed certificate from the Secret");
        Ok(Managed {
            reconciler,
            resolver: Arc::new(CertResolver::new(loaded.key)),
            metrics,
            served,
            next: checked.next,
        })
    }

    /// The resolver to build the TLS server with.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    fn serve(&mut self, material: &Material) {
        match material.serving() {
            Ok(loaded) => {
                let Some(der) = loaded.key.cert.first() else {
                    return;
                };
                if der.as_ref() != self.served.as_slice() {
                    self.served = der.to_vec();
                    self.resolver.set(loaded.key.clone());
                    self.metrics.cert_expiry.set(loaded.not_after as f64);
                    info!(
                        not_after = loaded.not_after,
                        "serving a new certificate from the Secret"
                    );
                }
            }
            Err(e) => {
                warn!(error = %e, "the Secret's serving certificate is unusable; keeping the served one")
            }
        }
    }

    fn delay(&self, failures: u32) -> Duration {
        let s = &self.reconciler.settings;
        match self.next {
            Next::Done => s.check_interval,
            Next::Settle => s.settle.min(s.check_interval),
            Next::Retry => s
                .retry
                .saturating_mul(1 << failures.min(16))
                .min(s.check_interval),
        }
    }

    /// Check periodically, forever: every `check_interval` when all is current, after `settle`
    /// during a hand-over, sooner (backing off) after an error or while a configuration is missing.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(self.delay(failures)).await;
            match self.reconciler.check().await {
                Ok(checked) => {
                    self.serve(&checked.material);
                    self.next = checked.next;
                    failures = if checked.next == Next::Retry {
                        failures.saturating_add(1)
                    } else {
                        0
                    };
                }
                Err(e) => {
                    warn!(error = %e, "self-signed certificate check failed; retrying");
                    self.next = Next::Retry;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const T0: i64 = 1_750_000_000;
    const YEAR: Duration = Duration::from_secs(365 * DAY as u64);

    fn names() -> Vec<String> {
        vec![
            "pullgate.pullgate.svc".to_owned(),
            "pullgate.pullgate.svc.cluster.local".to_owned(),
        ]
    }

    fn fresh() -> Material {
        apply(None, Decision::Create, &names(), T0, YEAR)
            .unwrap()
            .unwrap()
    }

    fn step(m: &Material, now: i64) -> (Decision, Material) {
        let d = decide(Some(m), &names(), now);
        let next = apply(Some(m), d, &names(), now, YEAR).unwrap();
        (d, next.unwrap_or_else(|| m.clone()))
    }

    fn leaf_der(m: &Material) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(&m.tls_crt).unwrap()
    }

    fn signed_by(m: &Material, ca: &CertificateDer<'static>, now: i64) -> bool {
        verify(&leaf_der(m), ca, &names(), now) == Verdict::Valid
    }

    #[test]
    fn no_secret_creates_a_ca_and_a_leaf_for_the_service_names() {
        assert_eq!(decide(None, &names(), T0), Decision::Create);
        let m = fresh();
        let cas = m.ca_certificates();
        assert_eq!(cas.len(), 1);
        assert!(signed_by(&m, &cas[0], T0));
        assert_eq!(decide(Some(&m), &names(), T0), Decision::Reuse);
        assert!(m.serving().is_ok());
        let leaf = cert_info(&leaf_der(&m)).unwrap();
        let ca = cert_info(&cas[0]).unwrap();
        assert!(leaf.not_after <= ca.not_after);
        assert_eq!(ca.not_after - T0, YEAR.as_secs() as i64);
    }

    #[test]
    fn a_current_secret_is_reused_until_a_third_of_the_lifetime_is_left() {
        let m = fresh();
        let info = cert_info(&leaf_der(&m)).unwrap();
        let lifetime = info.not_after - info.not_before;
        // The last second with at least a third left, then the first without.
        let edge = info.not_after - (lifetime + 2) / 3;
        for now in [T0 + 1, T0 + 100 * DAY, edge] {
            assert_eq!(decide(Some(&m), &names(), now), Decision::Reuse, "{now}");
        }
        assert_eq!(
            decide(Some(&m), &names(), edge + 1),
            Decision::NewCa(CaReason::RotationDue)
        );
        assert_eq!(
            decide(Some(&m), &names(), info.not_after + 1),
            Decision::NewCa(CaReason::Expired)
        );
    }

    #[test]
    fn rotation_publishes_both_cas_before_the_new_leaf_and_keeps_the_old_ca_until_it_expires() {
        let m0 = fresh();
        let ca0 = m0.ca_certificates()[0].clone();
        let due = T0 + 250 * DAY;

        let (d, m1) = step(&m0, due);
        assert_eq!(d, Decision::NewCa(CaReason::RotationDue));
        let bundle = m1.ca_certificates();
        assert_eq!(bundle.len(), 2);
        assert_ne!(bundle[0], ca0, "the new CA comes first");
        assert_eq!(bundle[1], ca0, "the old CA stays, second");
        assert_ne!(m1.ca_key, m0.ca_key);
        // Step 1 changes no served certificate.
        assert_eq!((&m1.tls_crt, &m1.tls_key), (&m0.tls_crt, &m0.tls_key));
        assert!(current_ca(&m1).is_ok(), "ca.key is the new CA's");

        let (d, m2) = step(&m1, due + 60);
        assert_eq!(d, Decision::IssueLeaf(LeafReason::HandOver));
        assert!(d != Decision::Reuse && LeafReason::HandOver.waits_for_publication());
        assert_eq!(
            m2.ca_bundle, m1.ca_bundle,
            "the bundle is unchanged by the hand-over"
        );
        assert!(signed_by(&m2, &bundle[0], due + 60));
        assert!(!signed_by(&m2, &ca0, due + 60));

        let (d, _) = step(&m2, due + 120);
        assert_eq!(d, Decision::Reuse);
        // The old CA stays while valid, then goes.
        let ca0_end = cert_info(&ca0).unwrap().not_after;
        assert_eq!(decide(Some(&m2), &names(), ca0_end - 1), Decision::Reuse);
        let (d, m3) = step(&m2, ca0_end);
        assert_eq!(d, Decision::Prune);
        assert_eq!(m3.ca_certificates(), vec![bundle[0].clone()]);
        assert_eq!((&m3.tls_crt, &m3.ca_key), (&m2.tls_crt, &m2.ca_key));
        assert_eq!(decide(Some(&m3), &names(), ca0_end), Decision::Reuse);
    }

    #[test]
    fn a_pending_hand_over_wins_over_a_second_rotation() {
        let m0 = fresh();
        let (_, m1) = step(&m0, T0 + 250 * DAY);
        // Even past the new CA's own deadline, the leaf is moved to the current CA first.
        assert_eq!(
            decide(Some(&m1), &names(), T0 + 364 * DAY),
            Decision::IssueLeaf(LeafReason::HandOver)
        );
    }

    #[test]
    fn corrupted_parts_are_regenerated() {
        let m = fresh();
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();

        let bad_ca = Material {
            ca_bundle: garbage.clone(),
            ..m.clone()
        };
        let (d, fixed) = step(&bad_ca, T0);
        assert_eq!(d, Decision::NewCa(CaReason::Unreadable));
        assert_eq!(
            fixed.ca_certificates().len(),
            1,
            "nothing unreadable is kept"
        );
        assert!(
            signed_by(&fixed, &fixed.ca_certificates()[0], T0),
            "a leaf the bundle trusts"
        );
        assert_eq!(decide(Some(&fixed), &names(), T0), Decision::Reuse);

        for broken in [
            Material {
                ca_key: b"junk".to_vec(),
                ..m.clone()
            },
            Material {
                ca_key: Vec::new(),
                ..m.clone()
            },
        ] {
            assert_eq!(
                decide(Some(&broken), &names(), T0),
                Decision::NewCa(CaReason::Unreadable)
            );
        }

        for broken in [
            Material {
                tls_crt: garbage.clone(),
                ..m.clone()
            },
            Material {
                tls_key: b"junk".to_vec(),
                ..m.clone()
            },
            Material {
                tls_crt: Vec::new(),
                tls_key: Vec::new(),
                ..m.clone()
            },
        ] {
            let (d, fixed) = step(&broken, T0);
            assert_eq!(d, Decision::IssueLeaf(LeafReason::Unusable));
            assert_eq!(fixed.ca_bundle, m.ca_bundle, "the CA is kept");
            assert_eq!(decide(Some(&fixed), &names(), T0), Decision::Reuse);
        }

        let (d, m2) = step(
            &Material {
                ca_bundle: [m.ca_bundle.clone(), garbage].concat(),
                ..m.clone()
            },
            T0,
        );
        assert_eq!(d, Decision::Prune);
        assert_eq!(m2.ca_bundle, m.ca_bundle);
    }

    #[test]
    fn mismatched_keys_are_regenerated() {
        let a = fresh();
        let b = fresh();
        let wrong_ca_key = Material {
            ca_key: b.ca_key.clone(),
            ..a.clone()
        };
        let (d, fixed) = step(&wrong_ca_key, T0);
        assert_eq!(d, Decision::NewCa(CaReason::KeyMismatch));
        // The old CA certificate (what the configurations trust) stays second, and the leaf it
        // signed is still served until the hand-over.
        assert_eq!(fixed.ca_certificates()[1], a.ca_certificates()[0]);
        assert_eq!(fixed.tls_crt, a.tls_crt);
        assert_eq!(
            decide(Some(&fixed), &names(), T0),
            Decision::IssueLeaf(LeafReason::HandOver)
        );

        let wrong_tls_key = Material {
            tls_key: b.tls_key.clone(),
            ..a.clone()
        };
        assert_eq!(
            decide(Some(&wrong_tls_key), &names(), T0),
            Decision::IssueLeaf(LeafReason::Unusable)
        );

        // A leaf from another CA is not trusted by this bundle.
        let foreign_leaf = Material {
            tls_crt: b.tls_crt.clone(),
            tls_key: b.tls_key.clone(),
            ..a.clone()
        };
        assert_eq!(
            decide(Some(&foreign_leaf), &names(), T0),
            Decision::IssueLeaf(LeafReason::Unusable)
        );
    }

    #[test]
    fn a_ca_this_module_did_not_make_is_replaced() {
        // certs::generate names its CA differently: signing would not chain, so it is not reused.
        let g = super::super::certs::generate(&names(), &[], 365).unwrap();
        let m = Material {
            ca_bundle: g.ca_cert_pem.into_bytes(),
            ca_key: g.ca_key_pem.into_bytes(),
            tls_crt: g.tls_cert_pem.into_bytes(),
            tls_key: g.tls_key_pem.into_bytes(),
        };
        let now = jiff::Timestamp::now().as_second();
        let (d, fixed) = step(&m, now);
        assert_eq!(d, Decision::NewCa(CaReason::KeyMismatch));
        // Its leaf is still valid and trusted through the kept certificate: served until the hand-over.
        assert_eq!(fixed.tls_crt, m.tls_crt);
        let (d, fixed) = step(&fixed, now);
        assert_eq!(d, Decision::IssueLeaf(LeafReason::HandOver));
        assert_eq!(decide(Some(&fixed), &names(), now), Decision::Reuse);
    }

    #[test]
    fn changed_service_names_reissue_the_leaf_with_the_same_ca() {
        let m = fresh();
        let other = vec!["other.ns.svc".to_owned()];
        assert_eq!(
            decide(Some(&m), &other, T0),
            Decision::IssueLeaf(LeafReason::NamesChanged)
        );
        let fixed = apply(Some(&m), decide(Some(&m), &other, T0), &other, T0, YEAR)
            .unwrap()
            .unwrap();
        assert_eq!(fixed.ca_bundle, m.ca_bundle);
        assert_eq!(decide(Some(&fixed), &other, T0), Decision::Reuse);
        // No configuration found yet: the fallback names.
        let bare = apply(None, Decision::Create, &[], T0, YEAR)
            .unwrap()
            .unwrap();
        assert_eq!(decide(Some(&bare), &[], T0), Decision::Reuse);
        assert_eq!(
            decide(Some(&bare), &names(), T0),
            Decision::IssueLeaf(LeafReason::NamesChanged)
        );
    }

    #[test]
    fn an_expired_ca_is_not_kept() {
        let m = fresh();
        let end = cert_info(&m.ca_certificates()[0]).unwrap().not_after;
        let (d, fixed) = step(&m, end + 1);
        assert_eq!(d, Decision::NewCa(CaReason::Expired));
        assert_eq!(fixed.ca_certificates().len(), 1);
        assert_ne!(
            fixed.tls_crt, m.tls_crt,
            "the expired leaf is replaced at once"
        );
        assert_eq!(decide(Some(&fixed), &names(), end + 1), Decision::Reuse);
    }

    #[test]
    fn short_lifetimes_rotate_by_the_same_rule() {
        let m = apply(None, Decision::Create, &names(), T0, Duration::from_secs(9))
            .unwrap()
            .unwrap();
        assert_eq!(decide(Some(&m), &names(), T0 + 5), Decision::Reuse);
        assert_eq!(
            decide(Some(&m), &names(), T0 + 7),
            Decision::NewCa(CaReason::RotationDue)
        );
    }

    #[test]
    fn secret_data_round_trips_and_debug_hides_keys() {
        let m = fresh();
        let data = m.to_data();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            vec![CA_CRT, CA_KEY, TLS_CRT, TLS_KEY]
        );
        assert_eq!(Material::from_data(Some(&data)), m);
        assert_eq!(Material::from_data(None), Material::default());
        let debug = format!("{m:?}");
        assert!(
            !debug.contains("PRIVATE KEY") && !debug.contains("CERTIFICATE"),
            "{debug}"
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(m.ca_bundle_base64())
            .unwrap();
        assert_eq!(decoded, m.ca_bundle);
    }

    #[test]
    fn der_walk_reads_generated_certificates_and_never_panics() {
        let m = fresh();
        let der = leaf_der(&m);
        let info = cert_info(&der).unwrap();
        assert!(info.not_before < T0 && info.not_after > T0);
        for cut in 0..der.len() {
            let _ = cert_info(&der[..cut]);
        }
        assert_eq!(asn1_time(0x17, b"700101000010Z"), Some(10));
        assert_eq!(asn1_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        for bad in [
            &b"9912"[..],
            b"20501301000000Z",
            b"+0501010000000Z",
            b"\xff",
        ] {
            assert_eq!(asn1_time(0x18, bad), None);
        }
    }

    fn config(bundles: &[Option<&str>]) -> Value {
        let webhooks: Vec<Value> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut cc = json!({"service": {"name": "pullgate", "namespace": "pullgate", "path": format!("/p{i}")}});
                if let Some(b) = b {
                    cc["caBundle"] = json!(b);
                }
                json!({"name": format!("w{i}.pullgate.io"), "clientConfig": cc, "sideEffects": "None", "futureField": i})
            })
            .collect();
        json!({ "webhooks": webhooks })
    }

    #[test]
    fn webhook_bundles_are_set_on_every_webhook_and_unknown_fields_survive() {
        let cfg = config(&[None, Some("old")]);
        let patched = webhooks_with_bundle(&cfg, "new").unwrap();
        for (i, wh) in patched.as_array().unwrap().iter().enumerate() {
            assert_eq!(wh["clientConfig"]["caBundle"], "new");
            assert_eq!(wh["futureField"], i);
            assert_eq!(wh["clientConfig"]["service"]["path"], format!("/p{i}"));
        }
        assert_eq!(
            webhooks_with_bundle(&config(&[Some("new"), Some("new")]), "new"),
            None
        );
        assert_eq!(
            service_names(&cfg),
            vec![
                "pullgate.pullgate.svc",
                "pullgate.pullgate.svc.cluster.local",
                "pullgate.pullgate.svc",
                "pullgate.pullgate.svc.cluster.local"
            ]
        );
        assert!(
            service_names(&json!({"webhooks": [{"clientConfig": {"url": "https://x"}}]}))
                .is_empty()
        );
    }

    #[test]
    fn a_configuration_trusting_a_newer_ca_marks_the_secret_read_as_stale() {
        let m0 = fresh();
        let (_, m1) = step(&m0, T0 + 250 * DAY);
        let newer = config(&[Some(&m1.ca_bundle_base64())]);
        assert!(trusts_newer_ca(&newer, &m0.ca_certificates()));
        assert!(!trusts_newer_ca(&newer, &m1.ca_certificates()));
        let older = config(&[Some(&m0.ca_bundle_base64())]);
        assert!(!trusts_newer_ca(&older, &m1.ca_certificates()));
        assert!(!trusts_newer_ca(
            &config(&[Some("!!"), None]),
            &m0.ca_certificates()
        ));
    }
}
