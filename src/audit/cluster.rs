//! The thin adapter: the index of pull Secrets, ServiceAccounts and Namespaces comes from the
//! cluster store's own watchers (as `serve --cluster` builds it); workloads and then Pods are
//! listed page by page (`limit`/`continue`), each page evaluated under a short read of the index
//! and dropped. A continue token that expires mid-list (410 Gone) restarts that list from a
//! checkpoint of the audit taken before it, and the report says so.

use super::object;
use super::report::{AuditReport, Auditor};
use crate::engine::podview::WorkloadKind;
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use crate::metrics::Metrics;
use crate::store::kube::{ClusterStore, Scope};
use crate::store::Store;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::Client;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to audit and how to read it.
#[derive(Debug, Clone)]
pub struct Options {
    /// One namespace, or every one (`None`).
    pub namespace: Option<String>,
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
    #[error("pull Secrets, ServiceAccounts and Namespaces not read within {0:?} (can this identity list and watch them cluster-wide?)")]
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

/// Audit the cluster `client` reaches, under `policy` at `now`.
pub async fn run(
    client: Client,
    policy: &Policy,
    options: &Options,
    now: i64,
) -> Result<(AuditReport, Stats), AuditError> {
    // Fail fast (exit 2) when the API server is not there, rather than at the sync deadline.
    Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .map_err(AuditError::Unreachable)?;
    // The index is built cluster-wide as the webhook builds it, so that decisions (a secret that
    // exists only in another namespace, say) are the webhook's even when one namespace is audited.
    let store = ClusterStore::start(
        client.clone(),
        Scope::for_policy(Vec::new(), policy),
        Arc::new(Metrics::new()),
    );
    let deadline = Instant::now() + options.sync_timeout;
    while !store.ready() {
        if Instant::now() >= deadline {
            return Err(AuditError::Sync(options.sync_timeout));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pass(&client, &*store, policy, options, now).await
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
    for kind in ORDER {
        list(client, kind, options, store, &mut auditor, &mut stats).await?;
    }
    Ok((auditor.finish(), stats))
}

/// Read every page of `kind` into the audit.
async fn list<'p>(
    client: &Client,
    kind: WorkloadKind,
    options: &Options,
    store: &dyn Store,
    auditor: &mut Auditor<'p>,
    stats: &mut Stats,
) -> Result<(), AuditError> {
    let namespace = options.namespace.as_deref();
    let path = collection_path(kind, namespace);
    let checkpoint = auditor.clone();
    let mut token: Option<String> = None;
    let mut restarts = 0;
    loop {
        let mut params = ListParams::default().limit(options.page_size);
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
