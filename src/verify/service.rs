//! The verification loop: every few seconds, plan over the store which secrets are due, probe
//! them (reading each secret's data from its [`SecretSource`] only when its registry has a free
//! slot), record results in the [`Verifications`] table the decisions read, publish metrics,
//! and report status changes as Events.

use super::flow::Verdict;
use super::prober::Verifier;
use super::schedule::{Change, Schedule};
use super::table::Verifications;
use super::targets;
use crate::engine::index::{CredentialStatus, SecretRef, SecretVerification};
use crate::engine::keyring::RegistryKey;
use crate::engine::policy::Policy;
use crate::engine::pullsecret::credentials_for;
use crate::metrics::{CredentialKeyLabels, CredentialLabels, Metrics};
use crate::store::Store;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// A secret's type, resourceVersion and decoded data, read for one probe.
pub struct FetchedSecret {
    /// resourceVersion as read.
    pub resource_version: Option<String>,
    /// `type`.
    pub secret_type: String,
    /// The data, zeroed when dropped.
    pub data: SecretData,
}

/// Decoded secret data, zeroed before it is freed; deliberately without `Debug` or `Clone`.
pub struct SecretData(pub BTreeMap<String, Vec<u8>>);

impl Drop for SecretData {
    fn drop(&mut self) {
        self.0.values_mut().for_each(zeroize::Zeroize::zeroize);
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading secret {namespace}/{name}: {source}")]
pub struct SourceError {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What failed (never secret data).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where secret data is read at probe time (the API server in cluster mode).
pub trait SecretSource: Send + Sync + 'static {
    /// The secret now, or `None` when it no longer exists.
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FetchedSecret>, SourceError>>;
}

/// A status change of one secret's registry key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    /// Namespace of the secret.
    pub namespace: String,
    /// The secret.
    pub secret: String,
    /// The registry key.
    pub registry: String,
    /// The status before, if known.
    pub before: Option<CredentialStatus>,
    /// The status now.
    pub after: CredentialStatus,
    /// The verdict's explanation.
    pub detail: String,
}

/// Where status changes are reported (Events on the Secret in cluster mode).
pub trait EventSink: Send + Sync + 'static {
    /// Report one change; failures are the sink's to log.
    fn status_changed(&self, event: StatusEvent) -> BoxFuture<'static, ()>;
}

/// Pace of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// How often the store is scanned for due secrets (a rotation is probed within this).
    pub scan_every: Duration,
    /// Secret reads in flight at once (the API server's share).
    pub reads_at_once: usize,
    /// Wait before retrying a secret that could not be read.
    pub retry_after: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            scan_every: Duration::from_secs(5),
            reads_at_once: 4,
            retry_after: Duration::from_secs(60),
        }
    }
}

/// Everything the loop works with.
pub struct VerifyLoop {
    /// The index to plan over.
    pub store: Arc<dyn Store>,
    /// Where results are recorded, for the decisions that read them.
    pub verifications: Arc<Verifications>,
    /// The policy (which keys, which namespaces).
    pub policy: Arc<Policy>,
    /// The prober.
    pub verifier: Arc<Verifier>,
    /// Where secret data is read.
    pub source: Arc<dyn SecretSource>,
    /// Where status changes go, if anywhere.
    pub events: Option<Arc<dyn EventSink>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Pace.
    pub config: LoopConfig,
}

/// One secret to probe.
struct Job {
    secret: SecretRef,
    resource_version: Option<String>,
    keys: Vec<RegistryKey>,
}

/// How a job ended.
enum Outcome {
    /// Probed: a verdict per key.
    Done(BTreeMap<String, Verdict>),
    /// The secret changed (new resourceVersion) since it was planned.
    Superseded,
    /// The secret is gone.
    Gone,
    /// It could not be read.
    Failed(SourceError),
}

/// Why a probe stopped before reaching the registry.
enum Abort {
    Superseded,
    Gone,
    Failed(SourceError),
}

impl VerifyLoop {
    /// Run until aborted.
    pub async fn run(self) {
        let mut schedule = Schedule::new(self.verifier.settings().interval);
        let reads = Arc::new(Semaphore::new(self.config.reads_at_once.max(1)));
        let mut jobs: JoinSet<(SecretRef, Option<String>, Outcome)> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, SecretRef> = HashMap::new();
        let mut tick = tokio::time::interval(self.config.scan_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !self.store.ready() {
                        continue;
                    }
                    for job in self.plan(&mut schedule) {
                        schedule.begin(&job.secret);
                        let secret = job.secret.clone();
                        let handle = jobs.spawn(probe_secret(
                            job,
                            self.verifier.clone(),
                            self.source.clone(),
                            reads.clone(),
                        ));
                        running.insert(handle.id(), secret);
                    }
                }
                Some(joined) = jobs.join_next_with_id(), if !jobs.is_empty() => {
                    match joined {
                        Ok((id, (secret, rv, outcome))) => {
                            running.remove(&id);
                            self.finish(&mut schedule, secret, rv, outcome);
                        }
                        Err(e) => {
                            // A probe panicked: its secret is retried later rather than lost.
                            warn!(error = %e, "verification task failed");
                            if let Some(secret) = running.remove(&e.id()) {
                                schedule.retry_at(&secret, Instant::now() + self.config.retry_after);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Due jobs; also forgets secrets no longer verified and re-records unpublished results.
    fn plan(&self, schedule: &mut Schedule) -> Vec<Job> {
        let now = Instant::now();
        // A scan of 50,000 secrets takes 82-107 ms: a view per batch of namespaces.
        let namespaces = crate::store::namespace_names(&*self.store);
        let mut live = HashSet::new();
        let mut jobs = Vec::new();
        for batch in namespaces.chunks(crate::store::WALK_BATCH) {
            let view = self.store.view();
            for (info, keys) in targets(&view, batch, &self.policy) {
                let secret = (info.namespace.to_string(), info.name.to_string());
                if let Some(reason) = schedule.due(&secret, &info.resource_version, now) {
                    debug!(namespace = %secret.0, secret = %secret.1, reason = ?reason, "credential verification due");
                    jobs.push(Job {
                        secret: secret.clone(),
                        resource_version: info.resource_version.clone(),
                        keys: keys.into_iter().cloned().collect(),
                    });
                }
                live.insert(secret);
            }
        }
        let view = self.store.view();
        for (secret, slot) in schedule.unpublished() {
            let v = SecretVerification {
                resource_version: slot.resource_version.clone(),
                verified_at: jiff::Timestamp::now().as_second(),
                keys: slot.statuses.clone(),
            };
            if self.verifications.record(&view, &secret.0, &secret.1, v) {
                schedule.mark_published(&secret);
            }
        }
        // Results of deleted or replaced secrets are never read again.
        self.verifications.retain_current(&view);
        drop(view);
        for (secret, slot) in schedule.retain(|r| live.contains(r)) {
            self.forget_metrics(&secret, slot.statuses.keys());
        }
        jobs
    }

    fn finish(
        &self,
        schedule: &mut Schedule,
        secret: SecretRef,
        resource_version: Option<String>,
        outcome: Outcome,
    ) {
        let verdicts = match outcome {
            Outcome::Done(v) => v,
            Outcome::Superseded => {
                debug!(namespace = %secret.0, secret = %secret.1, "secret changed during verification; probing the new version");
                schedule.supersede(&secret);
                return;
            }
            Outcome::Gone => {
                schedule.supersede(&secret);
                return;
            }
            Outcome::Failed(e) => {
                warn!(error = %e, "cannot read the secret to verify it; retrying later");
                schedule.retry_at(&secret, Instant::now() + self.config.retry_after);
                return;
            }
        };
        let statuses: BTreeMap<String, CredentialStatus> = verdicts
            .iter()
            .map(|(k, v)| (k.clone(), v.status))
            .collect();
        let before: Vec<String> = schedule
            .slot(&secret)
            .map(|s| s.statuses.keys().cloned().collect())
            .unwrap_or_default();
        let changes = schedule.complete(
            &secret,
            resource_version.clone(),
            statuses.clone(),
            Instant::now(),
        );
        let verified_at = jiff::Timestamp::now().as_second();
        let recorded = self.verifications.record(
            &self.store.view(),
            &secret.0,
            &secret.1,
            SecretVerification {
                resource_version,
                verified_at,
                keys: statuses,
            },
        );
        if recorded {
            schedule.mark_published(&secret);
        }
        // Keys the secret no longer has lose their series.
        let gone: Vec<&String> = before
            .iter()
            .filter(|k| !verdicts.contains_key(*k))
            .collect();
        self.forget_metrics(&secret, gone.into_iter());
        for (key, verdict) in &verdicts {
            self.publish_metrics(&secret, key, verdict.status, verified_at);
        }
        for change in changes {
            self.report(&secret, &change, &verdicts);
        }
    }

    fn report(&self, secret: &SecretRef, change: &Change, verdicts: &BTreeMap<String, Verdict>) {
        let detail = verdicts
            .get(&change.key)
            .map(|v| v.detail.clone())
            .unwrap_or_default();
        let (namespace, name) = secret;
        let status = change.after.as_str();
        if change.after == CredentialStatus::Rejected
            && change.before != Some(CredentialStatus::Rejected)
        {
            warn!(%namespace, secret = %name, registry = %change.key, status, detail = %detail, "registry rejects the secret's credentials");
        } else if change.before.is_some_and(|b| b != change.after) {
            info!(%namespace, secret = %name, registry = %change.key, status, before = change.before.map(CredentialStatus::as_str), detail = %detail, "credential status changed");
        } else {
            debug!(%namespace, secret = %name, registry = %change.key, status, detail = %detail, "credential verified");
        }
        if !change.is_notable() {
            return;
        }
        if let Some(events) = &self.events {
            tokio::spawn(events.status_changed(StatusEvent {
                namespace: namespace.clone(),
                secret: name.clone(),
                registry: change.key.clone(),
                before: change.before,
                after: change.after,
                detail,
            }));
        }
    }

    fn publish_metrics(&self, secret: &SecretRef, key: &str, status: CredentialStatus, at: i64) {
        // Gauges beyond the family's cap are not exported (their values do not add up into one series).
        for s in CredentialStatus::ALL {
            if let Some(g) = self.metrics.credential_status.series(&CredentialLabels {
                namespace: secret.0.clone(),
                secret: secret.1.clone(),
                registry: key.to_owned(),
                status: s.as_str(),
            }) {
                g.set(i64::from(s == status));
            }
        }
        if let Some(g) = self
            .metrics
            .credential_last_verified
            .series(&CredentialKeyLabels {
                namespace: secret.0.clone(),
                secret: secret.1.clone(),
                registry: key.to_owned(),
            })
        {
            g.set(at as f64);
        }
    }

    fn forget_metrics<'k>(&self, secret: &SecretRef, keys: impl Iterator<Item = &'k String>) {
        for key in keys {
            for s in CredentialStatus::ALL {
                self.metrics.credential_status.remove(&CredentialLabels {
                    namespace: secret.0.clone(),
                    secret: secret.1.clone(),
                    registry: key.clone(),
                    status: s.as_str(),
                });
            }
            self.metrics
                .credential_last_verified
                .remove(&CredentialKeyLabels {
                    namespace: secret.0.clone(),
                    secret: secret.1.clone(),
                    registry: key.clone(),
                });
        }
    }
}

/// Probe every key of one secret. For each key the secret is read again once the registry has
/// a free slot, so its data is held only for the probe; a resourceVersion other than the
/// planned one means the secret changed and the job is re-planned.
async fn probe_secret(
    job: Job,
    verifier: Arc<Verifier>,
    source: Arc<dyn SecretSource>,
    reads: Arc<Semaphore>,
) -> (SecretRef, Option<String>, Outcome) {
    let Job {
        secret,
        resource_version,
        keys,
    } = job;
    let mut verdicts = BTreeMap::new();
    for key in &keys {
        let read = || async {
            let fetched = {
                let _slot = reads.acquire().await.ok();
                source.fetch(&secret.0, &secret.1).await
            };
            match fetched {
                Err(e) => Err(Abort::Failed(e)),
                Ok(None) => Err(Abort::Gone),
                Ok(Some(f)) if f.resource_version != resource_version => Err(Abort::Superseded),
                // A payload error here would contradict the index, which planned only usable
                // secrets; it becomes an empty list (reported unsupported), never a panic.
                Ok(Some(f)) => {
                    Ok(credentials_for(&f.secret_type, &f.data.0, key).unwrap_or_default())
                }
            }
        };
        match verifier.probe(key, read).await {
            Ok(v) => {
                verdicts.insert(key.as_str().to_owned(), v);
            }
            Err(Abort::Superseded) => return (secret, resource_version, Outcome::Superseded),
            Err(Abort::Gone) => return (secret, resource_version, Outcome::Gone),
            Err(Abort::Failed(e)) => return (secret, resource_version, Outcome::Failed(e)),
        }
    }
    (secret, resource_version, Outcome::Done(verdicts))
}
