//! The pure core of `--self-signed-secret`: the Secret's data ([`Material`]), what to do with it
//! at a given time ([`decide`]), and the data that does it ([`apply`]). No I/O and no clock: the
//! caller passes `now`, so every rotation step can be tested at any instant.
//!
//! Rotation starts when the serving certificate (or the CA) has less than a third of its lifetime
//! left, and is a hand-over in two steps, so that the API server trusts every certificate a replica
//! serves at every moment:
//! 1. a new CA goes into the Secret and into the webhook configurations *next to* the old one; the
//!    serving certificate stays the old CA's, which is still trusted;
//! 2. at a later check, once every webhook configuration carried the new bundle when the check began
//!    (so the API servers have had time to load it), a serving certificate signed by the new CA is
//!    written to the Secret.
//!
//! The previous CA stays in the bundle until it expires, so replicas that have not polled yet keep
//! being trusted.

use super::issue::{self, IssueError, SigningCa};
use super::x509::{self, CertInfo, Verdict};
use super::{LoadedCert, TlsError};
use base64::Engine;
use k8s_openapi::ByteString;
use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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
/// Names a serving certificate gets while no webhook configuration names a Service: the leaf is
/// re-issued for the Service names as soon as a configuration appears.
const FALLBACK_NAMES: [&str; 1] = ["localhost"];

/// Why the Secret's new contents could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// A CA or serving certificate could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// The Secret's current CA cannot sign (the decision and the data disagree).
    #[error("the Secret's current CA cannot sign: {0}")]
    NoCa(&'static str),
}

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

/// Less than a third of the lifetime left.
fn rotation_due(c: &CertInfo, now: i64) -> bool {
    let lifetime = i128::from(c.not_after) - i128::from(c.not_before);
    let left = i128::from(c.not_after) - i128::from(now);
    left * 3 < lifetime
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
                x509::cert_info(&der).ok().map(|info| Ca {
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
fn current_ca(m: &Material) -> Result<SigningCa, CaReason> {
    let cert = parse_bundle(&m.ca_bundle)
        .into_iter()
        .next()
        .flatten()
        .ok_or(CaReason::Unreadable)?;
    let key = std::str::from_utf8(&m.ca_key)
        .ok()
        .and_then(|k| KeyPair::from_pem(k).ok())
        .ok_or(CaReason::Unreadable)?;
    SigningCa::adopt(cert.der, cert.info, key).ok_or(CaReason::KeyMismatch)
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
    let Ok(info) = x509::cert_info(leaf) else {
        return LeafStatus::Unusable;
    };
    let mut wrong_names = false;
    for (i, ca) in trusted.iter().enumerate() {
        match x509::verify(leaf, &ca.der, names, now) {
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
    if current.info.expired(now) {
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
            if rotation_due(&current.info, now) || rotation_due(&leaf, now) {
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
) -> Result<Option<Material>, RotationError> {
    let names = effective_names(names);
    let validity = i64::try_from(validity.as_secs())
        .unwrap_or(i64::MAX / 4)
        .max(1);
    let empty = Material::default();
    let m = existing.unwrap_or(&empty);
    let out = match decision {
        Decision::Reuse => return Ok(None),
        Decision::Create => create(&names, now, validity)?,
        Decision::NewCa(_) => new_ca(m, &names, now, validity)?,
        Decision::IssueLeaf(_) => {
            let ca = current_ca(m)
                .map_err(CaReason::as_str)
                .map_err(RotationError::NoCa)?;
            let (tls_crt, tls_key) = leaf(&ca, &names, now, validity)?;
            Material {
                tls_crt,
                tls_key,
                ..m.clone()
            }
        }
        Decision::Prune => prune(m, now)?,
    };
    Ok(Some(out))
}

/// A serving certificate for `names` signed by `ca`: (PEM cert, PEM key).
fn leaf(
    ca: &SigningCa,
    names: &[String],
    now: i64,
    validity: i64,
) -> Result<(Vec<u8>, Vec<u8>), IssueError> {
    let issued = issue::issue_leaf(ca, names, &[], now, validity)?;
    Ok((issued.cert_pem.into_bytes(), issued.key_pem.into_bytes()))
}

fn bundle_pem<'a>(cas: impl IntoIterator<Item = &'a CertificateDer<'static>>) -> Vec<u8> {
    cas.into_iter()
        .map(|der| x509::pem_certificate(der))
        .collect::<String>()
        .into_bytes()
}

/// No Secret: a CA and a serving certificate.
fn create(names: &[String], now: i64, validity: i64) -> Result<Material, IssueError> {
    let ca = issue::new_ca(now, validity)?;
    let (tls_crt, tls_key) = leaf(&ca, names, now, validity)?;
    Ok(Material {
        ca_bundle: bundle_pem([&ca.der]),
        ca_key: ca.key.serialize_pem().into_bytes(),
        tls_crt,
        tls_key,
    })
}

/// Step 1 of a rotation (or a repair): a new CA first in the bundle, the old one kept.
fn new_ca(m: &Material, names: &[String], now: i64, validity: i64) -> Result<Material, IssueError> {
    let ca = issue::new_ca(now, validity)?;
    // Whatever the reason, the old first certificate is what the webhook configurations trust
    // today: keep it (a certificate, never its key) while it is valid.
    let previous = parse_bundle(&m.ca_bundle)
        .into_iter()
        .next()
        .flatten()
        .filter(|c| !c.info.expired(now));
    let current = Ca {
        der: ca.der.clone(),
        info: ca.info.clone(),
    };
    let trusted: Vec<&Ca> = std::iter::once(&current).chain(&previous).collect();
    let (tls_crt, tls_key) = match leaf_status(m, &trusted, names, now) {
        // Still trusted: keep serving it until the hand-over.
        LeafStatus::SignedBy(..) => (m.tls_crt.clone(), m.tls_key.clone()),
        _ => leaf(&ca, names, now, validity)?,
    };
    Ok(Material {
        ca_bundle: bundle_pem(trusted.iter().map(|c| &c.der)),
        ca_key: ca.key.serialize_pem().into_bytes(),
        tls_crt,
        tls_key,
    })
}

/// The current CA and at most one previous, valid CA.
fn prune(m: &Material, now: i64) -> Result<Material, RotationError> {
    let bundle = parse_bundle(&m.ca_bundle);
    let mut kept = bundle.iter().flatten();
    let first = kept
        .next()
        .ok_or(RotationError::NoCa("no CA in the bundle"))?;
    let previous = kept.find(|c| !c.info.expired(now));
    Ok(Material {
        ca_bundle: bundle_pem(std::iter::once(first).chain(previous).map(|c| &c.der)),
        ..m.clone()
    })
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
        x509::verify(&leaf_der(m), ca, &names(), now) == Verdict::Valid
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
        let leaf = x509::cert_info(&leaf_der(&m)).unwrap();
        let ca = x509::cert_info(&cas[0]).unwrap();
        assert!(leaf.not_after <= ca.not_after);
        assert_eq!(ca.not_after - T0, YEAR.as_secs() as i64);
    }

    #[test]
    fn a_current_secret_is_reused_until_a_third_of_the_lifetime_is_left() {
        let m = fresh();
        let info = x509::cert_info(&leaf_der(&m)).unwrap();
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
        let ca0_end = x509::cert_info(&ca0).unwrap().not_after;
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

    /// A CA and serving certificate made by another tool: valid, but named its own way.
    fn foreign(now: i64) -> Material {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let at = |s| time::OffsetDateTime::from_unix_timestamp(s).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name = rcgen::DistinguishedName::new();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "someone else's CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        (ca.not_before, ca.not_after) = (at(now - 60), at(now + 365 * DAY));
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let tls_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(names()).unwrap();
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        (leaf.not_before, leaf.not_after) = (at(now - 60), at(now + 365 * DAY));
        let tls = leaf
            .signed_by(&tls_key, &Issuer::from_params(&ca, &ca_key))
            .unwrap();
        Material {
            ca_bundle: ca_cert.pem().into_bytes(),
            ca_key: ca_key.serialize_pem().into_bytes(),
            tls_crt: tls.pem().into_bytes(),
            tls_key: tls_key.serialize_pem().into_bytes(),
        }
    }

    #[test]
    fn a_ca_this_module_did_not_make_is_replaced() {
        // Signing would not chain to a CA named otherwise, so it is not reused.
        let m = foreign(T0);
        let (d, fixed) = step(&m, T0);
        assert_eq!(d, Decision::NewCa(CaReason::KeyMismatch));
        // Its leaf is still valid and trusted through the kept certificate: served until the
        // hand-over.
        assert_eq!(fixed.tls_crt, m.tls_crt);
        let (d, fixed) = step(&fixed, T0);
        assert_eq!(d, Decision::IssueLeaf(LeafReason::HandOver));
        assert_eq!(decide(Some(&fixed), &names(), T0), Decision::Reuse);
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
        let end = x509::cert_info(&m.ca_certificates()[0]).unwrap().not_after;
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
    fn an_expired_leaf_under_a_valid_ca_is_reissued_by_the_same_ca() {
        // A leaf of one day under a CA of a year: past its end, only the leaf changes.
        let m = fresh();
        let ca = current_ca(&m).unwrap();
        let (tls_crt, tls_key) = leaf(&ca, &names(), T0, DAY).unwrap();
        let short = Material {
            tls_crt,
            tls_key,
            ..m.clone()
        };
        assert_eq!(decide(Some(&short), &names(), T0), Decision::Reuse);
        // webpki takes notAfter itself as valid: one second later the leaf is refused.
        let (d, fixed) = step(&short, T0 + DAY + 1);
        assert_eq!(d, Decision::IssueLeaf(LeafReason::Unusable));
        assert_eq!((&fixed.ca_bundle, &fixed.ca_key), (&m.ca_bundle, &m.ca_key));
        assert!(signed_by(&fixed, &m.ca_certificates()[0], T0 + DAY + 1));
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
}
