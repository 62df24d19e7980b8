//! The thin adapter: the index of pull Secrets, ServiceAccounts and Namespaces comes from the
//! cluster store's own watchers (as `serve --cluster` builds it); workloads and then Pods are
//! listed page by page (`limit`/`continue`), each page evaluated under a short read of the index
//! and dropped. A continue token that expires mid-list (410 Gone) restarts that list from a
//! checkpoint of the audit taken before it, and the report says so.

use super::object;
use super::report::{AuditReport, Auditor};
use super::verify;
use crate::engine::podview::WorkloadKind;
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use crate::metrics::Metrics;
use crate::store::kube::{ClusterStore, Scope};
use crate::store::Store;
use crate::verify::kube::KubeSecrets;
use crate::verify::Verifier;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::Client;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to audit and how to read it.
#[derive(Debug, Clone)]
pub struct Options {
    /// One namespace, or every one (`None`) the store watches.
    pub namespace: Option<String>,
    /// The namespaces the store watches (the chart's `cluster.watchNamespaces`), where the
    /// identity may hold only a Role per namespace: lists go to each of them, never
    /// cluster-wide. Empty: the whole cluster.
    pub watch_namespaces: Vec<String>,
    /// Objects per list page.
    pub page_size: u32,
    /// Longest wait for the store's first full read of Secrets, ServiceAccounts and Namespaces.
    pub sync_timeout: Duration,
    /// Results with their findings at warning or error only (see [`Auditor::slim`]).
    pub slim: bool,
    /// Credential verification results the decisions read (see [`Auditor::with_verified`]).
    pub verified: Option<Arc<VerificationTable>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            watch_namespaces: Vec::new(),
            page_size: 500,
            sync_timeout: Duration::from_secs(60),
            slim: false,
            verified: None,
        }
    }
}

/// Restarts of one list after expired continue tokens before giving up.
const MAX_RESTARTS: u32 = 5;

/// The kinds in the order the audit reads them: controllers before what they control.
pub const ORDER: [WorkloadKind; 8] = [
    WorkloadKind::Deployment,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::CronJob,
    WorkloadKind::Job,
    WorkloadKind::ReplicaSet,
    WorkloadKind::ReplicationController,
    WorkloadKind::Pod,
];

/// Why the cluster could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The API server did not answer, or refused.
    #[error("cannot read the cluster: {0}")]
    Unreachable(#[source] kube::Error),
    /// The store's watchers did not complete their first list in time.
    #[error("pull Secrets, ServiceAccounts and Namespaces not read within {0:?} (can this identity list and watch them cluster-wide, or in each of --namespaces?)")]
    Sync(Duration),
    /// A list failed.
    #[error("cannot list {resource}: {source}")]
    List {
        /// The resource path.
        resource: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A list kept meeting expired continue tokens.
    #[error("cannot list {0}: its continue token expired {MAX_RESTARTS} times in a row")]
    Expired(String),
}

/// How the audit went, for measurements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Time spent reading and evaluating objects (the pure part), excluding API calls.
    pub evaluation: Duration,
    /// The part of `evaluation` spent on Pods.
    pub pod_evaluation: Duration,
    /// Pages read.
    pub pages: u64,
    /// Objects read.
    pub objects: u64,
    /// Objects read, by kind.
    pub per_kind: std::collections::BTreeMap<&'static str, u64>,
    /// Lists restarted after an expired continue token.
    pub restarts: u64,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: PageMeta,
    #[serde(default)]
    items: Option<Vec<Box<RawValue>>>,
}

#[derive(Deserialize, Default)]
struct PageMeta {
    #[serde(rename = "continue", default)]
    next: Option<String>,
}

/// The collection path of `kind`, in `namespace` or cluster-wide.
pub fn collection_path(kind: WorkloadKind, namespace: Option<&str>) -> String {
    let (prefix, plural) = match kind {
        WorkloadKind::Pod => ("/api/v1", "pods"),
        WorkloadKind::ReplicationController => ("/api/v1", "replicationcontrollers"),
        WorkloadKind::Deployment => ("/apis/apps/v1", "deployments"),
        WorkloadKind::StatefulSet => ("/apis/apps/v1", "statefulsets"),
        WorkloadKind::DaemonSet => ("/apis/apps/v1", "daemonsets"),
        WorkloadKind::ReplicaSet => ("/apis/apps/v1", "replicasets"),
        WorkloadKind::Job => ("/apis/batch/v1", "jobs"),
        WorkloadKind::CronJob => ("/apis/batch/v1", "cronjobs"),
    };
    match namespace {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}"),
        None => format!("{prefix}/{plural}"),
    }
}

impl Options {
    /// The namespaces to list in, one by one; `[None]` lists cluster-wide.
    pub fn list_scopes(&self) -> Vec<Option<String>> {
        if let Some(ns) = &self.namespace {
            return vec![Some(ns.clone())];
        }
        let mut watched: Vec<Option<String>> = self
            .watch_namespaces
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| Some(n.to_owned()))
            .collect();
        watched.sort();
        watched.dedup();
        if watched.is_empty() {
            watched.push(None);
        }
        watched
    }
}

/// Audit the cluster `client` reaches, under `policy` at `now`; with a verifier, the audited
/// namespaces' pull-secret credentials are proven against their registries first.
pub async fn run(
    client: Client,
    policy: &Policy,
    options: &Options,
    now: i64,
    verifier: Option<&Verifier>,
) -> Result<(AuditReport, Stats), AuditError> {
    // Fail fast (exit 2) when the API server is not there, rather than at the sync deadline,
    // with a list this identity may make (a namespace-scoped one cannot list Namespaces).
    match options.list_scopes().first().cloned().flatten() {
        Some(ns) => Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().limit(1))
            .await
            .map(drop),
        None => Api::<Namespace>::all(client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .map(drop),
    }
    .map_err(AuditError::Unreachable)?;
    // The index is built as the webhook builds it (cluster-wide unless it watches namespaces), so
    // that decisions (a secret that exists only in another namespace, say) are the webhook's
    // even when one namespace is audited.
    let store = ClusterStore::start(
        client.clone(),
        Scope::for_policy(options.watch_namespaces.clone(), policy),
        Arc::new(Metrics::new()),
    );
    let deadline = Instant::now() + options.sync_timeout;
    while !store.ready() {
        if Instant::now() >= deadline {
            return Err(AuditError::Sync(options.sync_timeout));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(verifier) = verifier else {
        return pass(&client, &*store, policy, options, now).await;
    };
    let namespaces: Vec<String> = match &options.namespace {
        Some(ns) => vec![ns.clone()],
        None => crate::store::namespace_names(&*store),
    };
    let source = KubeSecrets::new(client.clone());
    let (outcomes, verified) =
        verify::verify_secrets(&*store, &source, verifier, policy, &namespaces).await;
    let options = Options {
        verified: Some(Arc::new(verified)),
        ..options.clone()
    };
    let (mut report, stats) = pass(&client, &*store, policy, &options, now).await?;
    report.notes.extend(verify::notes(&outcomes));
    Ok((report, stats))
}

/// One audit pass over workloads and Pods with an index that is already synced (the CLI's own
/// store, or a running webhook's).
pub async fn pass(
    client: &Client,
    store: &dyn Store,
    policy: &Policy,
    options: &Options,
    now: i64,
) -> Result<(AuditReport, Stats), AuditError> {
    let mut auditor = Auditor::new(policy, now);
    if options.slim {
        auditor = auditor.slim();
    }
    if let Some(verified) = &options.verified {
        auditor = auditor.with_verified(Arc::clone(verified));
    }
    let mut stats = Stats::default();
    let scopes = options.list_scopes();
    for kind in ORDER {
        for namespace in &scopes {
            let at = Listing {
                kind,
                namespace: namespace.as_deref(),
                page_size: options.page_size,
            };
            list(client, at, store, &mut auditor, &mut stats).await?;
        }
    }
    Ok((auditor.finish(), stats))
}

/// One list: a kind, in one namespace or cluster-wide.
#[derive(Debug, Clone, Copy)]
struct Listing<'a> {
    kind: WorkloadKind,
    namespace: Option<&'a str>,
    page_size: u32,
}

/// Read every page of one list into the audit.
async fn list<'p>(
    client: &Client,
    at: Listing<'_>,
    store: &dyn Store,
    auditor: &mut Auditor<'p>,
    stats: &mut Stats,
) -> Result<(), AuditError> {
    let Listing {
        kind,
        namespace,
        page_size,
    } = at;
    let path = collection_path(kind, namespace);
    let checkpoint = auditor.clone();
    let mut token: Option<String> = None;
    let mut restarts = 0;
    loop {
        let mut params = ListParams::default().limit(page_size);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let request =
            kube::core::Request::new(&path)
                .list(&params)
                .map_err(|e| AuditError::List {
                    resource: path.clone(),
                    source: kube::Error::BuildRequest(e),
                })?;
        let page = match client.request::<Page>(request).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 410 && token.is_some() => {
                restarts += 1;
                if restarts > MAX_RESTARTS {
                    return Err(AuditError::Expired(path));
                }
                *auditor = checkpoint.clone();
                auditor.note(format!(
                    "the list of {path} was restarted from its first page: its continue token expired (410 Gone)"
                ));
                stats.restarts += 1;
                token = None;
                continue;
            }
            Err(source) => {
                return Err(AuditError::List {
                    resource: path,
                    source,
                })
            }
        };
        let started = Instant::now();
        let items = page.items.unwrap_or_default();
        {
            let index = store.view();
            for item in &items {
                match object::parse(kind, item.get().as_bytes(), namespace.unwrap_or("default")) {
                    Ok(o) if kind == WorkloadKind::Pod => auditor.pod(&o, &index),
                    Ok(o) => auditor.workload(&o, &index),
                    Err(e) => auditor.unreadable(format!("{path}: {e}")),
                }
            }
        }
        stats.objects += items.len() as u64;
        *stats.per_kind.entry(kind.as_str()).or_default() += items.len() as u64;
        drop(items);
        let spent = started.elapsed();
        stats.evaluation += spent;
        if kind == WorkloadKind::Pod {
            stats.pod_evaluation += spent;
        }
        stats.pages += 1;
        token = page.metadata.next.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_go_to_the_audited_namespace_or_each_watched_one() {
        let mut o = Options::default();
        assert_eq!(o.list_scopes(), [None]);
        o.watch_namespaces = vec!["b".into(), " ".into(), "a".into(), "b".into()];
        assert_eq!(o.list_scopes(), [Some("a".into()), Some("b".into())]);
        o.namespace = Some("b".into());
        assert_eq!(o.list_scopes(), [Some("b".into())]);
        assert_eq!(
            collection_path(WorkloadKind::CronJob, Some("a")),
            "/apis/batch/v1/namespaces/a/cronjobs"
        );
    }
}
