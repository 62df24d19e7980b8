//! The ServiceAccount rotation reconciler (cluster mode, `reconcile.serviceAccounts`): the guide's
//! rotation runbook automated. New pull secrets are added to ServiceAccounts; references pullgate
//! added are dropped once their secret is gone. A pure `plan` over the index; a thin adapter patches
//! with resourceVersion preconditions, records Events, and only runs on the Lease holder.

use crate::engine::evaluate_service_account;
use crate::engine::index::{ClusterIndex, NamespaceInfo, ServiceAccountInfo, MANAGED_ANNOTATION};
use crate::engine::policy::Policy;
use crate::leader::{self, Elector};
use crate::store::Store;
use k8s_openapi::api::core::v1::{Event, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// One ServiceAccount whose imagePullSecrets should change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Namespace.
    pub namespace: String,
    /// ServiceAccount name.
    pub service_account: String,
    /// Secrets to add (newest first).
    pub added: Vec<String>,
    /// Secrets pullgate added earlier whose secret no longer exists.
    pub removed: Vec<String>,
    /// The resulting imagePullSecrets.
    pub image_pull_secrets: Vec<String>,
    /// The resulting managed annotation value.
    pub managed: Vec<String>,
}

/// What one ServiceAccount needs, given its namespace; `None` when it is in step.
pub fn plan_one(
    namespace: &str,
    ns: &NamespaceInfo,
    sa: &ServiceAccountInfo,
    index: &ClusterIndex,
    policy: &Policy,
) -> Option<Change> {
    if sa.inject_opt_out
        || !policy
            .reconcile
            .selector
            .iter()
            .all(|(k, v)| sa.labels.get(k) == Some(v))
    {
        return None;
    }
    let exists = |n: &str| ns.secrets.get(n).is_some_and(|s| s.is_pull_type());
    // Only what pullgate added may be removed, and only once its secret is gone: a rotation
    // (new secret created, then old deleted) is never left without a usable credential.
    let removed: Vec<String> = sa
        .managed
        .iter()
        .filter(|m| sa.image_pull_secrets.contains(m) && !exists(m))
        .cloned()
        .collect();
    let refs: Vec<&str> = sa.image_pull_secrets.iter().map(String::as_str).collect();
    let d = evaluate_service_account(&sa.name, &refs, sa.inject_opt_out, namespace, policy, index);
    let added: Vec<String> = d.injected.iter().map(|s| (*s).to_owned()).collect();
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    let mut image_pull_secrets: Vec<String> = sa
        .image_pull_secrets
        .iter()
        .filter(|n| !removed.contains(n))
        .cloned()
        .collect();
    image_pull_secrets.extend(added.iter().cloned());
    let mut managed: Vec<String> = sa
        .managed
        .iter()
        .filter(|m| !removed.contains(m) && image_pull_secrets.contains(m))
        .cloned()
        .collect();
    for a in &added {
        if !managed.contains(a) {
            managed.push(a.clone());
        }
    }
    Some(Change {
        namespace: namespace.to_owned(),
        service_account: sa.name.clone(),
        added,
        removed,
        image_pull_secrets,
        managed,
    })
}

/// Every change the cluster needs, in a stable order.
pub fn plan(index: &ClusterIndex, policy: &Policy) -> Vec<Change> {
    let mut names: Vec<&str> = index.namespace_names().collect();
    names.sort_unstable();
    names
        .into_iter()
        .flat_map(|n| plan_namespace(index, n, policy))
        .collect()
}

/// The changes one namespace's ServiceAccounts need (none when the reconciler is off or the
/// namespace is excluded).
pub fn plan_namespace(index: &ClusterIndex, namespace: &str, policy: &Policy) -> Vec<Change> {
    if !policy.reconcile.service_accounts || policy.excludes(namespace) {
        return Vec::new();
    }
    let ns = index.namespace(namespace);
    if !policy.for_namespace(&ns.overrides).inject {
        return Vec::new();
    }
    ns.service_accounts
        .values()
        .filter_map(|sa| plan_one(namespace, ns, sa, index, policy))
        .collect()
}

/// Apply one change: re-read the ServiceAccount, re-plan against it, patch with its resourceVersion.
/// Returns whether the ServiceAccount was changed.
async fn apply(
    client: &Client,
    change: &Change,
    index: &ClusterIndex,
    policy: &Policy,
) -> Result<Option<Change>, kube::Error> {
    let index_ns = index.namespace(&change.namespace);
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &change.namespace);
    for _ in 0..3 {
        let Some(sa) = api.get_opt(&change.service_account).await? else {
            return Ok(None);
        };
        let annotations = sa.metadata.annotations.clone().unwrap_or_default();
        let labels = sa.metadata.labels.clone().unwrap_or_default();
        let refs = sa
            .image_pull_secrets
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name);
        let fresh =
            ServiceAccountInfo::new(change.service_account.clone(), refs, &annotations, labels);
        let Some(c) = plan_one(&change.namespace, index_ns, &fresh, index, policy) else {
            return Ok(None);
        };
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": sa.metadata.resource_version,
                "annotations": { MANAGED_ANNOTATION: c.managed.join(",") },
            },
            "imagePullSecrets": c.image_pull_secrets.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>(),
        });
        match api
            .patch(
                &change.service_account,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(Some(c)),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

async fn record_event(client: &Client, c: &Change) {
    let now = jiff::Timestamp::now();
    let mut parts = Vec::new();
    if !c.added.is_empty() {
        parts.push(format!("added imagePullSecrets {}", c.added.join(", ")));
    }
    if !c.removed.is_empty() {
        parts.push(format!("removed {} (secret deleted)", c.removed.join(", ")));
    }
    let event = crate::events::event(
        crate::events::EventSpec {
            kind: "ServiceAccount",
            namespace: &c.namespace,
            name: &c.service_account,
            uid: None,
            reason: "PullSecretsReconciled",
            type_: "Normal",
            message: parts.join("; "),
        },
        now,
    );
    let api: Api<Event> = Api::namespaced(client.clone(), &c.namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        warn!(error = %e, namespace = %c.namespace, service_account = %c.service_account, "could not record event");
    }
}

/// Settings of the reconcile loop.
pub struct LoopConfig {
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// This instance's identity (pod name).
    pub identity: String,
    /// How often to reconcile (and renew the lease).
    pub every: Duration,
    /// Pause between two patches (rate limit).
    pub patch_interval: Duration,
}

/// Reconcile until `shutdown` turns true: lead through the Lease (released on shutdown), plan
/// over the store, apply changes one by one.
pub async fn run(
    client: Client,
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    cfg: LoopConfig,
    shutdown: watch::Receiver<bool>,
) {
    let elector = Elector::new(
        client.clone(),
        &cfg.lease_namespace,
        "pullgate-reconciler",
        &cfg.identity,
        cfg.every * 3,
    );
    let (leading, lead) = watch::channel(false);
    tokio::select! {
        () = leader::keep(elector, cfg.every, &leading, shutdown) => {}
        () = reconcile_while_leading(&client, &*store, &policy, &cfg, lead) => {}
    }
}

async fn reconcile_while_leading(
    client: &Client,
    store: &dyn Store,
    policy: &Policy,
    cfg: &LoopConfig,
    leading: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(cfg.every);
    loop {
        tick.tick().await;
        if !*leading.borrow() || !store.ready() {
            continue;
        }
        for (change, idx) in planned(store, policy).await {
            match apply(client, &change, &idx, policy).await {
                Ok(Some(done)) => {
                    info!(namespace = %done.namespace, service_account = %done.service_account, added = ?done.added, removed = ?done.removed, "ServiceAccount reconciled");
                    record_event(client, &done).await;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, namespace = %change.namespace, service_account = %change.service_account, "reconcile failed")
                }
            }
            tokio::time::sleep(cfg.patch_interval).await;
        }
    }
}

/// Plan on the store, a view per batch of namespaces (yielding between batches, since a pass
/// takes 70-90 ms at 10,000 namespaces), each change with a copy of its namespace so that no lock
/// is held across API calls. Sorted outside the lock: the order only makes passes reproducible.
async fn planned(store: &dyn Store, policy: &Policy) -> Vec<(Change, ClusterIndex)> {
    let mut names = crate::store::namespace_names(store);
    names.sort_unstable();
    let mut work = Vec::new();
    for batch in names.chunks(crate::store::WALK_BATCH) {
        {
            let view = store.view();
            for n in batch {
                for c in plan_namespace(&view, n, policy) {
                    let idx = namespace_index(view.namespace(n), n);
                    work.push((c, idx));
                }
            }
        }
        tokio::task::yield_now().await;
    }
    work
}

/// A one-namespace index, so re-planning during apply needs no lock on the shared store.
fn namespace_index(ns: &NamespaceInfo, name: &str) -> ClusterIndex {
    let mut idx = ClusterIndex::new();
    for s in ns.secrets.values() {
        idx.upsert_secret(s.clone());
    }
    for o in ns.other_secrets.values() {
        idx.upsert_other_secret(name, o.clone());
    }
    for sa in ns.service_accounts.values() {
        idx.upsert_service_account(name, sa.clone());
    }
    idx.upsert_namespace(name, ns.overrides);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use std::collections::BTreeMap;

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.reconcile.service_accounts = true;
        p
    }

    fn sa(name: &str, refs: &[&str], managed: &[&str]) -> ServiceAccountInfo {
        ServiceAccountInfo {
            name: name.to_owned(),
            image_pull_secrets: refs.iter().map(|s| (*s).to_owned()).collect(),
            managed: managed.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn adds_new_secret_and_is_idempotent() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("a", "regcred", &["r.io"], 1));
        idx.upsert_service_account("a", sa("default", &["mine"], &[]));
        let changes = plan(&idx, &policy());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].added, ["regcred"]);
        assert_eq!(changes[0].image_pull_secrets, ["mine", "regcred"]);
        assert_eq!(changes[0].managed, ["regcred"]);
        // Applying the change yields a ServiceAccount the plan leaves alone.
        idx.upsert_service_account("a", sa("default", &["mine", "regcred"], &["regcred"]));
        assert!(plan(&idx, &policy()).is_empty());
    }

    #[test]
    fn rotation_adds_new_before_dropping_old() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("a", "old", &["r.io"], 1));
        idx.upsert_service_account("a", sa("default", &["old"], &["old"]));
        assert!(plan(&idx, &policy()).is_empty());
        // New credential created: added next to the old one.
        idx.upsert_secret(pull_secret("a", "new", &["r.io"], 2));
        let c = plan(&idx, &policy());
        assert_eq!(
            (c[0].added.clone(), c[0].removed.clone()),
            (vec!["new".to_owned()], vec![])
        );
        idx.upsert_service_account("a", sa("default", &["old", "new"], &["old", "new"]));
        // Old one deleted: only now is its reference dropped.
        idx.remove_secret("a", "old");
        let c = plan(&idx, &policy());
        assert_eq!(c[0].removed, ["old"]);
        assert_eq!(c[0].image_pull_secrets, ["new"]);
        assert_eq!(c[0].managed, ["new"]);
    }

    #[test]
    fn never_removes_what_a_user_wrote() {
        let mut idx = ClusterIndex::new();
        idx.upsert_service_account("a", sa("default", &["users-own-missing"], &[]));
        assert!(plan(&idx, &policy()).is_empty());
    }

    #[test]
    fn selector_opt_out_exclusion_and_switch() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("a", "regcred", &["r.io"], 1));
        let mut labelled = sa("builder", &[], &[]);
        labelled.labels = BTreeMap::from([("team".to_owned(), "x".to_owned())]);
        idx.upsert_service_account("a", labelled);
        idx.upsert_service_account("a", sa("default", &[], &[]));
        let mut opted = sa("opted", &[], &[]);
        opted.inject_opt_out = true;
        idx.upsert_service_account("a", opted);
        let mut p = policy();
        p.reconcile.selector = BTreeMap::from([("team".to_owned(), "x".to_owned())]);
        let c = plan(&idx, &p);
        assert_eq!(
            c.iter()
                .map(|c| c.service_account.as_str())
                .collect::<Vec<_>>(),
            ["builder"]
        );
        assert_eq!(plan(&idx, &policy()).len(), 2);
        assert!(plan(&idx, &Policy::default()).is_empty());
        idx.upsert_secret(pull_secret("kube-system", "regcred", &["r.io"], 1));
        idx.upsert_service_account("kube-system", sa("default", &[], &[]));
        assert!(plan(&idx, &policy())
            .iter()
            .all(|c| c.namespace != "kube-system"));
    }
}
