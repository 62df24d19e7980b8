//! `pullgate audit --verify`: prove the audited namespaces' pull-secret credentials against
//! their registries before the workloads are evaluated, so a rejected credential gives
//! `CredentialsRejected` as it does at admission. The store keeps no credential data: each
//! secret is read (GET) only once its registry has a free probe slot, and dropped (zeroed)
//! right after that probe.

use crate::engine::index::{CredentialStatus, SecretVerification};
use crate::engine::keyring::RegistryKey;
use crate::engine::policy::Policy;
use crate::engine::pullsecret::credentials_for;
use crate::engine::verification::VerificationTable;
use crate::store::Store;
use crate::verify::service::{SecretSource, SourceError};
use crate::verify::{targets, Verdict, Verifier};
use futures::StreamExt;
use std::collections::BTreeMap;

/// Secrets probed at once (each is read only when its registry has a slot, so this bounds the
/// probes waiting, not the data held).
const CONCURRENT_SECRETS: usize = 16;

/// What the registries made of one secret's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretOutcome {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The verdict per registry key, or why the secret could not be probed.
    pub result: Result<BTreeMap<String, Verdict>, String>,
}

/// A secret to probe: its identity, the resourceVersion the index holds, and the keys.
struct Job {
    namespace: String,
    name: String,
    resource_version: Option<String>,
    keys: Vec<RegistryKey>,
}

/// Why a probe stopped before the registry judged it.
enum Abort {
    Failed(SourceError),
    Gone,
    Changed,
}

/// Probe the pull secrets of `namespaces` that the policy wants verified, reading each from
/// `source`; the outcomes, and the results as the table the decisions read.
pub async fn verify_secrets(
    store: &dyn Store,
    source: &dyn SecretSource,
    verifier: &Verifier,
    policy: &Policy,
    namespaces: &[String],
) -> (Vec<SecretOutcome>, VerificationTable) {
    let jobs: Vec<Job> = {
        let index = store.view();
        targets(&index, namespaces, policy)
            .map(|(s, keys)| Job {
                namespace: s.namespace.to_string(),
                name: s.name.to_string(),
                resource_version: s.resource_version.clone(),
                keys: keys.into_iter().cloned().collect(),
            })
            .collect()
    };
    let outcomes: Vec<(SecretOutcome, Option<Option<String>>)> = futures::stream::iter(jobs)
        .map(|job| probe(job, source, verifier))
        .buffer_unordered(CONCURRENT_SECRETS)
        .collect()
        .await;
    let mut table = VerificationTable::new();
    let index = store.view();
    for (o, rv) in outcomes
        .iter()
        .filter_map(|(o, rv)| Some((o, rv.as_ref()?)))
    {
        if let Ok(verdicts) = &o.result {
            table.record(
                &index,
                &o.namespace,
                &o.name,
                SecretVerification {
                    resource_version: rv.clone(),
                    verified_at: jiff::Timestamp::now().as_second(),
                    keys: verdicts
                        .iter()
                        .map(|(k, v)| (k.clone(), v.status))
                        .collect(),
                },
            );
        }
    }
    (outcomes.into_iter().map(|(o, _)| o).collect(), table)
}

/// Probe every key of one secret, reading it afresh for each (only while its slot is held).
/// Returns the outcome and, when the registry judged it, the resourceVersion it judged.
async fn probe(
    job: Job,
    source: &dyn SecretSource,
    verifier: &Verifier,
) -> (SecretOutcome, Option<Option<String>>) {
    let mut verdicts = BTreeMap::new();
    let mut failure = None;
    for key in &job.keys {
        let read = || async {
            match source.fetch(&job.namespace, &job.name).await {
                Err(e) => Err(Abort::Failed(e)),
                Ok(None) => Err(Abort::Gone),
                Ok(Some(f)) if f.resource_version != job.resource_version => Err(Abort::Changed),
                // The index planned only usable secrets; a payload error here is an empty list
                // (reported unsupported), never a panic.
                Ok(Some(f)) => {
                    Ok(credentials_for(&f.secret_type, &f.data.0, key).unwrap_or_default())
                }
            }
        };
        match verifier.probe(key, read).await {
            Ok(v) => {
                verdicts.insert(key.as_str().to_owned(), v);
            }
            Err(Abort::Failed(e)) => {
                failure = Some(format!("not verified: {e}"));
                break;
            }
            Err(Abort::Gone) => {
                failure = Some("not verified: deleted during the audit".to_owned());
                break;
            }
            Err(Abort::Changed) => {
                failure = Some("not verified: changed during the audit".to_owned());
                break;
            }
        }
    }
    let judged = failure.is_none().then(|| job.resource_version.clone());
    let outcome = SecretOutcome {
        namespace: job.namespace,
        name: job.name,
        result: failure.map_or(Ok(verdicts), Err),
    };
    (outcome, judged)
}

/// One line per secret whose credentials were not proven valid, for the report's notes;
/// verdict details name registries and statuses, never credential material.
pub fn notes(outcomes: &[SecretOutcome]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut valid = 0;
    for o in outcomes {
        match &o.result {
            Err(why) => notes.push(format!("secret {}/{}: {why}", o.namespace, o.name)),
            Ok(verdicts) => {
                let mut all_valid = true;
                for (key, v) in verdicts {
                    if v.status != CredentialStatus::Valid {
                        all_valid = false;
                        notes.push(format!(
                            "secret {}/{}: registry {key}: credentials {}: {}",
                            o.namespace,
                            o.name,
                            v.status.as_str(),
                            v.detail
                        ));
                    }
                }
                valid += usize::from(all_valid);
            }
        }
    }
    notes.insert(
        0,
        format!(
            "--verify: {} pull secrets probed, {valid} with every credential valid",
            outcomes.len()
        ),
    );
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_every_secret_not_proven_valid() {
        let ok = |status, detail: &str| Verdict::new(status, detail.to_owned());
        let outcomes = vec![
            SecretOutcome {
                namespace: "shop".into(),
                name: "good".into(),
                result: Ok(BTreeMap::from([(
                    "r.io".to_owned(),
                    ok(CredentialStatus::Valid, "200"),
                )])),
            },
            SecretOutcome {
                namespace: "shop".into(),
                name: "bad".into(),
                result: Ok(BTreeMap::from([(
                    "r.io".to_owned(),
                    ok(CredentialStatus::Rejected, "401 from /v2/"),
                )])),
            },
            SecretOutcome {
                namespace: "shop".into(),
                name: "gone".into(),
                result: Err("not verified: deleted during the audit".into()),
            },
        ];
        let n = notes(&outcomes);
        assert_eq!(
            n[0],
            "--verify: 3 pull secrets probed, 1 with every credential valid"
        );
        assert!(n[1].starts_with("secret shop/bad: registry r.io: credentials rejected"));
        assert_eq!(
            n[2],
            "secret shop/gone: not verified: deleted during the audit"
        );
        assert_eq!(n.len(), 3);
    }
}
