//! The live cluster store: kube-rs watchers on pull Secrets, ServiceAccounts and Namespaces keep a
//! [`ClusterIndex`] current in place.
//!
//! One watcher runs per resource (and per pull-secret type, selected server-side with
//! `type=…`), cluster-wide or once per watched namespace. Secrets of other types are watched as
//! metadata only (`PartialObjectMetadata`: their data never leaves the API server), so that a pod
//! naming one is told it has the wrong type rather than that it does not exist; metadata does not
//! carry the type, so one such watcher selects `type=Opaque` (the usual mistake) and another every
//! remaining type, and the index keeps their names only. Each event is converted to an index
//! entry outside the lock and applied with a short write lock, so admission reads are never
//! blocked for long. A relist (`Init` … `InitDone`, after a 410 or a restart) removes whatever
//! that watcher no longer sees, so the index converges even when deletions were missed.
//! Secret data is decoded only to parse registry keys and is dropped at once: the index keeps
//! what [`SecretInfo`] keeps, and nothing here logs or formats an object.

use super::{Store, View};
use crate::engine::index::{ClusterIndex, OtherSecret, SecretInfo, ServiceAccountInfo};
use crate::engine::policy::{NamespaceOverrides, Policy};
use crate::engine::pullsecret::{DOCKERCFG_TYPE, DOCKER_CONFIG_JSON_TYPE};
use crate::metrics::{KindLabels, Metrics, ResourceLabels};
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, Resource};
use prometheus_client::metrics::gauge::Gauge;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn, Instrument};

/// A client from a kubeconfig file, or else inferred (in-cluster config, then `$KUBECONFIG`/`~/.kube/config`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, kube::Error> {
    let config = match kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(
                Kubeconfig::read_from(path)?,
                &KubeConfigOptions::default(),
            )
            .await?
        }
        None => Config::infer().await.map_err(kube::Error::InferConfig)?,
    };
    Client::try_from(config)
}

/// A store fed by watches on the API server.
pub struct ClusterStore {
    shared: Arc<Shared>,
    /// The watcher tasks; aborted when the store is dropped so nothing outlives it.
    tasks: Vec<AbortHandle>,
    /// The namespaces watched, sorted; empty when watching the whole cluster.
    namespaces: Vec<String>,
}

/// State the watcher tasks share with the store.
struct Shared {
    index: RwLock<ClusterIndex>,
    /// Watchers that have not yet finished their first list.
    unsynced: AtomicUsize,
    /// Watchers whose last outcome was an error; `store_stale` is 1 while this is non-zero.
    /// A mutex rather than an atomic so the count and the gauge always change together.
    failing: Mutex<usize>,
    metrics: Arc<Metrics>,
    gauges: ObjectGauges,
    started: Instant,
    /// Namespaces whose pull Secrets or ServiceAccounts changed after the first list.
    changes: tokio::sync::broadcast::Sender<String>,
}

/// The `store_objects` gauges, looked up once instead of per event.
struct ObjectGauges {
    secrets: Gauge,
    service_accounts: Gauge,
    namespaces: Gauge,
}

/// What a [`ClusterStore`] watches and keeps.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// ServiceAccount label keys to keep (those the reconciler's selector reads); the others are
    /// dropped as objects arrive.
    pub service_account_labels: BTreeSet<String>,
}

impl Scope {
    /// These namespaces, keeping the label keys the policy's reconciler reads (none when it is off).
    pub fn for_policy(namespaces: Vec<String>, policy: &Policy) -> Scope {
        let labels = if policy.reconcile.service_accounts {
            policy.reconcile.selector.keys().cloned().collect()
        } else {
            BTreeSet::new()
        };
        Scope {
            namespaces,
            service_account_labels: labels,
        }
    }
}

impl ClusterStore {
    /// Start watching `scope`; the store is ready once every watcher has completed its initial
    /// list. Must be called within a Tokio runtime.
    pub fn start(client: Client, scope: Scope, metrics: Arc<Metrics>) -> Arc<ClusterStore> {
        let watches = plan(&scope.namespaces);
        let mut namespaces: Vec<String> =
            watches.iter().filter_map(|w| w.namespace.clone()).collect();
        namespaces.dedup();
        let gauge = |kind| {
            metrics
                .store_objects
                .get_or_create(&KindLabels { kind })
                .clone()
        };
        let gauges = ObjectGauges {
            secrets: gauge("Secret"),
            service_accounts: gauge("ServiceAccount"),
            namespaces: gauge("Namespace"),
        };
        let shared = Arc::new(Shared {
            index: RwLock::new(ClusterIndex::keeping_labels(scope.service_account_labels)),
            unsynced: AtomicUsize::new(watches.len()),
            failing: Mutex::new(0),
            metrics,
            gauges,
            started: Instant::now(),
            changes: tokio::sync::broadcast::channel(CHANGES_CAPACITY).0,
        });
        shared.publish_counts(&shared.read());
        let tasks = watches
            .into_iter()
            .map(|w| spawn_watch(&shared, &client, w))
            .collect();
        Arc::new(ClusterStore {
            shared,
            tasks,
            namespaces,
        })
    }
}

/// Namespace changes a slow subscriber may fall behind by before it is told it lagged.
const CHANGES_CAPACITY: usize = 1_024;

impl ClusterStore {
    /// The names of namespaces whose pull Secrets or ServiceAccounts change from now on (added,
    /// updated, deleted, or found gone by a relist), once per change, after the change is in
    /// the index. A receiver that falls behind gets `Lagged` and should assume anything changed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.shared.changes.subscribe()
    }
}

impl Drop for ClusterStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Store for ClusterStore {
    fn view(&self) -> View<'_> {
        View::Locked(self.shared.read())
    }

    fn ready(&self) -> bool {
        self.shared.unsynced.load(Ordering::Acquire) == 0
    }

    fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterIndex> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters more than stopping admission would, so keep serving.
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_counts(&self, idx: &ClusterIndex) {
        let n = |c: usize| i64::try_from(c).unwrap_or(i64::MAX);
        self.gauges
            .secrets
            .set(n(idx.secret_count() + idx.other_secret_count()));
        self.gauges
            .service_accounts
            .set(n(idx.service_account_count()));
        self.gauges.namespaces.set(n(idx.namespace_count()));
    }

    fn adjust_failing(&self, failed: bool) {
        let mut n = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        *n = if failed { *n + 1 } else { n.saturating_sub(1) };
        self.metrics.store_stale.set(i64::from(*n > 0));
    }
}

/// What one watcher keeps in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Secrets of one pull type.
    Secrets(&'static str),
    /// The metadata of secrets of one other type, or (`None`) of every type not watched by name.
    OtherSecrets(Option<&'static str>),
    /// ServiceAccounts.
    ServiceAccounts,
    /// Namespaces (their labels).
    Namespaces,
}

impl Target {
    /// The `resource` label of `store_last_sync`.
    fn resource(self) -> &'static str {
        match self {
            Target::Secrets(_) | Target::OtherSecrets(_) => "secrets",
            Target::ServiceAccounts => "serviceaccounts",
            Target::Namespaces => "namespaces",
        }
    }
}

/// One watcher: a target, cluster-wide (`None`) or in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watch {
    target: Target,
    namespace: Option<String>,
}

/// Non-pull secret types watched by name, so the index knows their type; every other type is
/// watched by one more watcher and known only as "not a pull type".
const NAMED_OTHER_TYPES: [&str; 1] = ["Opaque"];

/// The field selector of a secrets watcher.
fn secret_selector(target: Target) -> String {
    match target {
        Target::Secrets(t) | Target::OtherSecrets(Some(t)) => format!("type={t}"),
        _ => [DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE]
            .iter()
            .chain(&NAMED_OTHER_TYPES)
            .map(|t| format!("type!={t}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Move a Secret's decoded bytes out of its ByteStrings: no copy is made, and none is left in the
/// object for whoever holds it next.
pub(crate) fn take_data(secret: &mut Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// The watchers for a list of namespaces (empty: cluster-wide).
fn plan(namespaces: &[String]) -> Vec<Watch> {
    let mut scopes: Vec<Option<String>> = namespaces
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| Some(n.to_owned()))
        .collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        scopes.push(None);
    }
    let targets = [
        Target::Secrets(DOCKER_CONFIG_JSON_TYPE),
        Target::Secrets(DOCKERCFG_TYPE),
        Target::OtherSecrets(Some(NAMED_OTHER_TYPES[0])),
        Target::OtherSecrets(None),
        Target::ServiceAccounts,
        Target::Namespaces,
    ];
    scopes
        .into_iter()
        .flat_map(|namespace| {
            targets.map(|target| Watch {
                target,
                namespace: namespace.clone(),
            })
        })
        .collect()
}

/// An object's identity in the index: (namespace, name); the namespace is empty for Namespaces.
type Key = (String, String);

/// An object converted for the index, ready to apply.
#[derive(Debug)]
enum Entry {
    Secret(SecretInfo),
    OtherSecret(String, OtherSecret),
    ServiceAccount(String, ServiceAccountInfo),
    Namespace(String, NamespaceOverrides),
}

impl Entry {
    fn key(&self) -> Key {
        match self {
            Entry::Secret(s) => (s.namespace.to_string(), s.name.to_string()),
            Entry::OtherSecret(ns, o) => (ns.clone(), o.name.to_string()),
            Entry::ServiceAccount(ns, sa) => (ns.clone(), sa.name.clone()),
            Entry::Namespace(name, _) => (String::new(), name.clone()),
        }
    }

    fn apply(self, idx: &mut ClusterIndex) {
        match self {
            Entry::Secret(s) => idx.upsert_secret(s),
            Entry::OtherSecret(ns, o) => idx.upsert_other_secret(&ns, o),
            Entry::ServiceAccount(ns, sa) => idx.upsert_service_account(&ns, sa),
            Entry::Namespace(name, o) => idx.upsert_namespace(&name, o),
        }
    }
}

/// A watched Kubernetes type and its conversion to an index entry.
trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static
{
    /// The entry for an object `target`'s watcher delivered, or `None` when the object lacks a
    /// name (or namespace) the API always sets.
    fn into_entry(self, target: Target) -> Option<Entry>;
}

impl Watched for Secret {
    fn into_entry(mut self, _: Target) -> Option<Entry> {
        let namespace = self.metadata.namespace.take()?;
        let name = self.metadata.name.take()?;
        let created = self
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second());
        let secret_type = self.type_.take().unwrap_or_else(|| "Opaque".to_owned());
        let data = take_data(&mut self);
        let info = SecretInfo::new(
            &namespace,
            &name,
            &secret_type,
            created,
            self.metadata.resource_version.take(),
            &data,
        );
        drop(data);
        Some(Entry::Secret(info))
    }
}

impl Watched for PartialObjectMeta<Secret> {
    /// Only the name is kept: the metadata's labels and annotations (which hold the data of a
    /// secret written with `kubectl apply`) are dropped here.
    fn into_entry(self, target: Target) -> Option<Entry> {
        let namespace = self.metadata.namespace?;
        let name = self.metadata.name?;
        let secret_type = match target {
            Target::OtherSecrets(t) => t.map(Cow::Borrowed),
            _ => None,
        };
        Some(Entry::OtherSecret(
            namespace,
            OtherSecret {
                name: Arc::from(name),
                secret_type,
            },
        ))
    }
}

impl Watched for ServiceAccount {
    fn into_entry(self, _: Target) -> Option<Entry> {
        let namespace = self.metadata.namespace?;
        let name = self.metadata.name?;
        let annotations = self.metadata.annotations.unwrap_or_default();
        let labels = self.metadata.labels.unwrap_or_default();
        let refs = self
            .image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name);
        let info = ServiceAccountInfo::new(name, refs, &annotations, labels);
        Some(Entry::ServiceAccount(namespace, info))
    }
}

impl Watched for Namespace {
    fn into_entry(self, _: Target) -> Option<Entry> {
        let name = self.metadata.name?;
        let overrides = NamespaceOverrides::from_labels(&self.metadata.labels.unwrap_or_default());
        Some(Entry::Namespace(name, overrides))
    }
}

impl Watch {
    /// Keys of the objects this watcher is responsible for in the index.
    fn keys_in_scope(&self, idx: &ClusterIndex) -> HashSet<Key> {
        let namespaces: Vec<&str> = match &self.namespace {
            Some(ns) => vec![ns.as_str()],
            None => idx.namespace_names().collect(),
        };
        let mut keys = HashSet::new();
        for ns in namespaces {
            let info = idx.namespace(ns);
            match self.target {
                Target::Secrets(t) => keys.extend(
                    info.secrets
                        .values()
                        .filter(|s| s.secret_type == t)
                        .map(|s| (ns.to_owned(), s.name.to_string())),
                ),
                Target::OtherSecrets(t) => keys.extend(
                    info.other_secrets
                        .values()
                        .filter(|o| o.secret_type.as_deref() == t)
                        .map(|o| (ns.to_owned(), o.name.to_string())),
                ),
                Target::ServiceAccounts => {
                    keys.extend(
                        info.service_accounts
                            .keys()
                            .map(|n| (ns.to_owned(), n.to_owned())),
                    );
                }
                Target::Namespaces => {
                    if info.overrides != NamespaceOverrides::default() {
                        keys.insert((String::new(), ns.to_owned()));
                    }
                }
            }
        }
        keys
    }

    /// Remove an object this watcher saw deleted (or no longer lists).
    fn remove(&self, idx: &mut ClusterIndex, (ns, name): &Key) {
        match self.target {
            // Secret types are immutable, but a secret deleted and recreated under another type
            // is reported by two watchers in no particular order: only drop our own type.
            Target::Secrets(t) => {
                if idx
                    .namespace(ns)
                    .secrets
                    .get(name)
                    .is_some_and(|s| s.secret_type == t)
                {
                    idx.remove_secret(ns, name);
                }
            }
            Target::OtherSecrets(t) => {
                if idx
                    .namespace(ns)
                    .other_secrets
                    .get(name)
                    .is_some_and(|o| o.secret_type.as_deref() == t)
                {
                    idx.remove_other_secret(ns, name);
                }
            }
            Target::ServiceAccounts => {
                idx.remove_service_account(ns, name);
            }
            Target::Namespaces => idx.remove_namespace(name),
        }
    }
}

/// What an event meant for the watcher's lifecycle.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// An ordinary change (or a relist step).
    Changed,
    /// A relist began (`Init` after the first).
    Relisting,
    /// A list completed; `first` for the watcher's very first one; `removed` objects were gone.
    Listed { first: bool, removed: usize },
}

/// Applies one watcher's events to the index, tracking relists.
struct Follower {
    watch: Watch,
    /// During a relist: the keys this watcher held before it that the relist has not yet shown.
    unseen: Option<HashSet<Key>>,
    listed_once: bool,
    /// Namespaces seen deleted since the last drain, whose metric series are to go too.
    deleted_namespaces: Vec<String>,
    /// Namespaces whose objects changed since the last drain (not during the first list).
    changed_namespaces: Vec<String>,
}

impl Follower {
    fn new(watch: Watch) -> Self {
        Follower {
            watch,
            unseen: None,
            listed_once: false,
            deleted_namespaces: Vec::new(),
            changed_namespaces: Vec::new(),
        }
    }

    fn on_event<K: Watched>(&mut self, index: &RwLock<ClusterIndex>, event: Event<K>) -> Progress {
        let write = || index.write().unwrap_or_else(PoisonError::into_inner);
        let tracked = self.watch.target != Target::Namespaces;
        let live = tracked && matches!(&event, Event::Apply(_) | Event::Delete(_));
        match event {
            Event::Init => {
                let read = index.read().unwrap_or_else(PoisonError::into_inner);
                self.unseen = Some(self.watch.keys_in_scope(&read));
                if self.listed_once {
                    Progress::Relisting
                } else {
                    Progress::Changed
                }
            }
            Event::InitApply(obj) | Event::Apply(obj) => {
                // Convert (and parse secret payloads) before taking the lock.
                if let Some(entry) = obj.into_entry(self.watch.target) {
                    let key = entry.key();
                    if let Some(unseen) = &mut self.unseen {
                        unseen.remove(&key);
                    }
                    entry.apply(&mut write());
                    if live {
                        self.changed_namespaces.push(key.0);
                    }
                } else {
                    warn!(
                        resource = self.watch.target.resource(),
                        "object without name or namespace ignored"
                    );
                }
                Progress::Changed
            }
            Event::Delete(obj) => {
                if let Some(entry) = obj.into_entry(self.watch.target) {
                    let key = entry.key();
                    self.watch.remove(&mut write(), &key);
                    if self.watch.target == Target::Namespaces {
                        self.deleted_namespaces.push(key.1);
                    } else if live {
                        self.changed_namespaces.push(key.0);
                    }
                }
                Progress::Changed
            }
            Event::InitDone => {
                let gone = self.unseen.take().unwrap_or_default();
                let removed = gone.len();
                if removed > 0 {
                    let mut idx = write();
                    for key in &gone {
                        self.watch.remove(&mut idx, key);
                    }
                    if self.watch.target == Target::Namespaces {
                        self.deleted_namespaces
                            .extend(gone.into_iter().map(|(_, name)| name));
                    } else if tracked && self.listed_once {
                        self.changed_namespaces
                            .extend(gone.into_iter().map(|(ns, _)| ns));
                    }
                }
                let first = !self.listed_once;
                self.listed_once = true;
                Progress::Listed { first, removed }
            }
        }
    }
}

/// A watcher's health, shared with the HTTP layer of its client.
struct Health {
    shared: Arc<Shared>,
    failing: AtomicBool,
    last_sync: Gauge<f64, AtomicU64>,
}

impl Health {
    fn synced(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_sync.set(now);
    }

    fn failed(&self) {
        if !self.failing.swap(true, Ordering::AcqRel) {
            self.shared.adjust_failing(true);
        }
    }

    fn recovered(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            self.shared.adjust_failing(false);
            info!("watch recovered");
        }
    }
}

/// The watcher's view of its client's HTTP responses.
///
/// After an error the watcher reconnects and then only yields something when an object
/// changes, which in a quiet namespace can be hours away; bookmarks are consumed inside kube's
/// watcher. A successful response to the watcher's own (re)list or (re)watch request is the
/// earliest proof that it is connected again, so that is where recovery is recorded.
#[derive(Clone)]
struct Observed {
    client: Client,
    health: Arc<Health>,
}

impl tower::Service<hyper::Request<kube::client::Body>> for Observed {
    type Response = hyper::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        // The inner client buffers and applies its own backpressure in `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<kube::client::Body>) -> Self::Future {
        let Observed { client, health } = self.clone();
        Box::pin(async move {
            let res = client.send(req).await?;
            if res.status().is_success() {
                health.synced();
                health.recovered();
            }
            Ok(res)
        })
    }
}

/// Every watcher's configuration: the initial state arrives as a streaming list (a watch with
/// `sendInitialEvents=true`, ended by the `k8s.io/initial-events-end` bookmark), which the API
/// server serves from its watch cache object by object, so neither side ever holds the whole
/// list (at 100,000 namespaces the pull secrets alone are ~300 MB of JSON) and etcd is not read
/// page by page (46,600 secrets: 5.4 s from etcd, 1.5 s from the cache). Servers where the
/// WatchList feature is off (on by default in v1.32 and from v1.34, off in v1.33, alpha before)
/// refuse it; [`follow`] then lists in pages ([`paged_list_config`]).
fn watch_config() -> watcher::Config {
    watcher::Config::default().streaming_lists()
}

/// The fallback: kube's default list + watch, in pages of 500 from etcd. Slower than one list
/// from the watch cache (`resourceVersion=0`), but that one comes whole whatever the `limit`:
/// at 10,000 namespaces it raised the store's peak from 49.5 to 197.9 MiB and left it at
/// 140.7 MiB (docs/performance.md), past the memory a Deployment is given.
fn paged_list_config(config: watcher::Config) -> watcher::Config {
    watcher::Config {
        initial_list_strategy: watcher::InitialListStrategy::ListWatch,
        ..config
    }
}

/// Whether the API server refused a streaming list: 422 for `sendInitialEvents` with the
/// WatchList feature off, and for `resourceVersionMatch` on a watch before v1.27.
fn refuses_streaming_list(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 422)
}

fn spawn_watch(shared: &Arc<Shared>, client: &Client, watch: Watch) -> AbortHandle {
    let resource = watch.target.resource();
    let health = Arc::new(Health {
        shared: shared.clone(),
        failing: AtomicBool::new(false),
        last_sync: shared
            .metrics
            .store_last_sync
            .get_or_create(&ResourceLabels { resource })
            .clone(),
    });
    let observed = Client::new(
        Observed {
            client: client.clone(),
            health: health.clone(),
        },
        client.default_namespace(),
    );
    let span = tracing::info_span!(
        "watch",
        resource,
        namespace = watch.namespace.as_deref().unwrap_or("*"),
        secret_type = match watch.target {
            Target::Secrets(t) | Target::OtherSecrets(Some(t)) => t,
            Target::OtherSecrets(None) => "other",
            _ => "",
        },
    );
    let task = match watch.target {
        Target::Secrets(_) => {
            let api: Api<Secret> = match &watch.namespace {
                Some(ns) => Api::namespaced(observed, ns),
                None => Api::all(observed),
            };
            let config = watch_config().fields(&secret_selector(watch.target));
            tokio::spawn(
                follow(shared.clone(), health, Follower::new(watch), api, config).instrument(span),
            )
        }
        Target::OtherSecrets(_) => {
            // `PartialObjectMeta` makes every list and watch ask for metadata only.
            let api: Api<PartialObjectMeta<Secret>> = match &watch.namespace {
                Some(ns) => Api::namespaced(observed, ns),
                None => Api::all(observed),
            };
            let config = watch_config().fields(&secret_selector(watch.target));
            tokio::spawn(
                follow(shared.clone(), health, Follower::new(watch), api, config).instrument(span),
            )
        }
        Target::ServiceAccounts => {
            let api: Api<ServiceAccount> = match &watch.namespace {
                Some(ns) => Api::namespaced(observed, ns),
                None => Api::all(observed),
            };
            tokio::spawn(
                follow(
                    shared.clone(),
                    health,
                    Follower::new(watch),
                    api,
                    watch_config(),
                )
                .instrument(span),
            )
        }
        Target::Namespaces => {
            // Namespaces are cluster-scoped: in namespaced mode read just the one by name.
            let config = match &watch.namespace {
                Some(ns) => watch_config().fields(&format!("metadata.name={ns}")),
                None => watch_config(),
            };
            let api: Api<Namespace> = Api::all(observed);
            tokio::spawn(
                follow(shared.clone(), health, Follower::new(watch), api, config).instrument(span),
            )
        }
    };
    task.abort_handle()
}

/// Delay before the first reconnection after an error.
const RECONNECT_FIRST: Duration = Duration::from_millis(500);

/// The longest delay between reconnections. kube's default backoff (client-go's) grows to 30 s,
/// so after an outage of a minute a watcher noticed the API server's return up to ~40 s late;
/// capped, the store is current again within this plus one list of the API server's return.
const RECONNECT_MAX: Duration = Duration::from_secs(4);

/// Capped exponential backoff between a watcher's reconnections: the n-th delay in a row is
/// drawn uniformly from [d/2, d] with d = min(RECONNECT_FIRST * 2^n, RECONNECT_MAX), so that
/// the watchers of every replica do not all return to a recovering API server at once.
#[derive(Debug, Default)]
struct Reconnect {
    /// Errors in a row so far.
    attempt: u32,
}

impl Reconnect {
    /// The delay before the next attempt; `unit` in [0, 1] picks it within the jitter range.
    fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = RECONNECT_FIRST
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(RECONNECT_MAX);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A uniformly distributed number in [0, 1) for jitter: std's per-instance random SipHash keys
/// are randomness enough here, without a dependency for it.
fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // The top 53 bits, exactly representable in an f64.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a watcher error is the API server's 410 Gone: the resourceVersion (or a list's
/// continue token) expired, and the watcher relists.
fn is_expired(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// Run one watcher for as long as the store lives. The config asks for bookmarks (so
/// reconnects resume instead of relisting).
async fn follow<K: Watched>(
    shared: Arc<Shared>,
    health: Arc<Health>,
    mut follower: Follower,
    api: Api<K>,
    config: watcher::Config,
) {
    // The watcher retries on the next poll after an error: the delay is slept here, between polls.
    let mut streaming = config.initial_list_strategy == watcher::InitialListStrategy::StreamingList;
    let mut events = watcher::watcher(api.clone(), config.clone()).boxed();
    let mut backoff = Reconnect::default();
    let mut expired_last = false;
    while let Some(item) = events.next().await {
        if streaming && matches!(&item, Err(e) if refuses_streaming_list(e)) {
            info!("the API server does not offer streaming lists; listing in pages");
            streaming = false;
            events = watcher::watcher(api.clone(), paged_list_config(config.clone())).boxed();
            continue;
        }
        let expired = matches!(&item, Err(e) if is_expired(e));
        let expired_before = std::mem::replace(&mut expired_last, expired);
        match item {
            Ok(event) => {
                backoff.reset();
                apply_event(&shared, &health, &mut follower, event);
            }
            // The server expired our resourceVersion: routine (history is compacted, and an API
            // server that restarted answers so to every watcher). Relist at once, as the state
            // is stale until then; only a relist that expires again waits like any error.
            Err(e) if expired => {
                debug!(error = %e, "resourceVersion expired; relisting");
                if expired_before {
                    tokio::time::sleep(backoff.next_delay(jitter_unit())).await;
                }
            }
            Err(e) => {
                // The API server answered since the last error: this is a new outage.
                if !health.failing.load(Ordering::Acquire) {
                    backoff.reset();
                }
                health.failed();
                warn!(error = %e, "watch failed; serving the last known state until it recovers");
                tokio::time::sleep(backoff.next_delay(jitter_unit())).await;
            }
        }
    }
    // The watcher retries forever, so the stream only ends if kube changes that.
    warn!("watch stream ended; this resource is no longer updated");
}

/// Apply one watch event to the index and tell the rest of the store: metrics of deleted
/// namespaces dropped, changed namespaces sent to the audit, health, counts, and sync progress.
fn apply_event<K: Watched>(
    shared: &Shared,
    health: &Health,
    follower: &mut Follower,
    event: Event<K>,
) {
    health.recovered();
    let progress = follower.on_event(&shared.index, event);
    for ns in follower.deleted_namespaces.drain(..) {
        shared.metrics.forget_namespace(&ns);
    }
    for ns in follower.changed_namespaces.drain(..) {
        // No subscriber is not an error: nothing listens unless the audit runs.
        let _ = shared.changes.send(ns);
    }
    health.synced();
    shared.publish_counts(&shared.read());
    log_progress(shared, progress);
}

/// Log a relist, and the store's first complete sync (when this watcher was the last to list).
fn log_progress(shared: &Shared, progress: Progress) {
    match progress {
        Progress::Changed => {}
        Progress::Relisting => info!("relisting"),
        Progress::Listed { first, removed } => {
            if removed > 0 {
                info!(
                    removed,
                    "relist removed objects deleted while the watch was down"
                );
            }
            if first && shared.unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
                let idx = shared.read();
                info!(
                    secrets = idx.secret_count(),
                    service_accounts = idx.service_account_count(),
                    namespaces = idx.namespace_count(),
                    elapsed_ms =
                        u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "cluster store synced"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::MANAGED_ANNOTATION;
    use crate::engine::podview::INJECT_ANNOTATION;
    use base64::Engine;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::ByteString;

    #[test]
    fn scope_keeps_the_selector_keys_only_while_reconciling() {
        let mut policy = Policy::default();
        policy.reconcile.selector = BTreeMap::from([("team".to_owned(), "web".to_owned())]);
        let off = Scope::for_policy(vec!["a".into()], &policy);
        assert_eq!(off.namespaces, ["a"]);
        assert!(off.service_account_labels.is_empty());
        policy.reconcile.service_accounts = true;
        let on = Scope::for_policy(Vec::new(), &policy);
        assert_eq!(
            on.service_account_labels,
            BTreeSet::from(["team".to_owned()])
        );
    }

    const PLANTED: &str = "pl4nted-Kube-pw";

    fn secret(ns: &str, name: &str, ty: &str, host: &str) -> Secret {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("robot:{PLANTED}"));
        let cfg = format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}","password":"{PLANTED}"}}}}}}"#);
        let key = if ty == DOCKERCFG_TYPE {
            ".dockercfg"
        } else {
            ".dockerconfigjson"
        };
        let cfg = if ty == DOCKERCFG_TYPE {
            format!(r#"{{"{host}":{{"auth":"{auth}"}}}}"#)
        } else {
            cfg
        };
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                resource_version: Some("7".into()),
                creation_timestamp: Some(Time("2026-01-02T03:04:05Z".parse().unwrap())),
                ..Default::default()
            },
            type_: Some(ty.into()),
            data: Some([(key.to_owned(), ByteString(cfg.into_bytes()))].into()),
            ..Default::default()
        }
    }

    fn sa(ns: &str, name: &str, pulls: &[&str], annotations: &[(&str, &str)]) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..Default::default()
            },
            image_pull_secrets: Some(
                pulls
                    .iter()
                    .map(|n| k8s_openapi::api::core::v1::LocalObjectReference { name: (*n).into() })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn follower(target: Target, ns: Option<&str>) -> Follower {
        Follower::new(Watch {
            target,
            namespace: ns.map(str::to_owned),
        })
    }

    #[test]
    fn conversions_keep_keys_and_metadata_only() {
        let Some(Entry::Secret(s)) = secret(
            "ns",
            "regcred",
            DOCKER_CONFIG_JSON_TYPE,
            "registry.example.com",
        )
        .into_entry(Target::Secrets(DOCKER_CONFIG_JSON_TYPE)) else {
            panic!("not a secret entry")
        };
        assert_eq!((&*s.namespace, &*s.name), ("ns", "regcred"));
        assert_eq!(s.created, Some(1_767_323_045));
        assert_eq!(s.resource_version.as_deref(), Some("7"));
        assert_eq!(
            s.usable_keys()
                .map(|k| k.as_str().to_owned())
                .collect::<Vec<_>>(),
            ["registry.example.com"]
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains(PLANTED), "{debug}");
        assert!(!debug.contains(
            &base64::engine::general_purpose::STANDARD.encode(format!("robot:{PLANTED}"))
        ));

        let sa = sa(
            "ns",
            "builder",
            &["a", ""],
            &[(MANAGED_ANNOTATION, "a, b"), (INJECT_ANNOTATION, "False")],
        );
        let Some(Entry::ServiceAccount(ns, info)) = sa.into_entry(Target::ServiceAccounts) else {
            panic!("not a ServiceAccount entry")
        };
        assert_eq!(ns, "ns");
        assert_eq!(info.image_pull_secrets, ["a"]);
        assert_eq!(info.managed, ["a", "b"]);
        assert!(info.inject_opt_out);

        let n = namespace("ci", &[("pullgate.io/validation", "deny")]);
        let Some(Entry::Namespace(name, o)) = n.into_entry(Target::Namespaces) else {
            panic!("not a Namespace entry")
        };
        assert_eq!(name, "ci");
        assert_eq!(o.validation, Some(crate::engine::policy::Validation::Deny));

        let nameless = Secret::default();
        assert!(nameless
            .into_entry(Target::Secrets(DOCKERCFG_TYPE))
            .is_none());
    }

    #[test]
    fn changes_are_reported_per_namespace_after_the_first_list_only() {
        let index = RwLock::new(ClusterIndex::new());
        let mut f = follower(Target::ServiceAccounts, None);
        f.on_event::<ServiceAccount>(&index, Event::Init);
        f.on_event(&index, Event::InitApply(sa("a", "default", &[], &[])));
        f.on_event(&index, Event::InitApply(sa("b", "default", &[], &[])));
        f.on_event::<ServiceAccount>(&index, Event::InitDone);
        assert!(
            f.changed_namespaces.is_empty(),
            "the first list is no change"
        );
        f.on_event(&index, Event::Apply(sa("a", "default", &["x"], &[])));
        f.on_event(&index, Event::Delete(sa("c", "gone", &[], &[])));
        // A relist that no longer shows b/default: deleted while the watch was down.
        f.on_event::<ServiceAccount>(&index, Event::Init);
        f.on_event(&index, Event::InitApply(sa("a", "default", &["x"], &[])));
        f.on_event::<ServiceAccount>(&index, Event::InitDone);
        assert_eq!(f.changed_namespaces, ["a", "c", "b"]);
        let mut n = follower(Target::Namespaces, None);
        n.on_event(&index, Event::Apply(namespace("a", &[])));
        assert!(
            n.changed_namespaces.is_empty(),
            "namespaces are not tracked"
        );
    }

    #[test]
    fn reconnect_delays_grow_to_a_cap_of_a_few_seconds_with_jitter() {
        let mut low = Reconnect::default();
        let mut high = Reconnect::default();
        let lows: Vec<Duration> = (0..8).map(|_| low.next_delay(0.0)).collect();
        let highs: Vec<Duration> = (0..8).map(|_| high.next_delay(1.0)).collect();
        let ms = |v: &[Duration]| v.iter().map(|d| d.as_millis()).collect::<Vec<_>>();
        assert_eq!(ms(&highs), [500, 1000, 2000, 4000, 4000, 4000, 4000, 4000]);
        assert_eq!(ms(&lows), [250, 500, 1000, 2000, 2000, 2000, 2000, 2000]);
        // However long the outage, no delay exceeds the cap.
        let mut long = Reconnect::default();
        for _ in 0..10_000 {
            assert!(long.next_delay(jitter_unit()) <= RECONNECT_MAX);
        }
        long.reset();
        assert_eq!(long.next_delay(1.0), RECONNECT_FIRST);
        let units: Vec<f64> = (0..64).map(|_| jitter_unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(
            units.iter().any(|u| *u < 0.5) && units.iter().any(|u| *u >= 0.5),
            "spread: {units:?}"
        );
    }

    #[test]
    fn secret_selectors_split_pull_named_and_other_types() {
        assert_eq!(
            secret_selector(Target::Secrets(DOCKERCFG_TYPE)),
            "type=kubernetes.io/dockercfg"
        );
        assert_eq!(
            secret_selector(Target::OtherSecrets(Some("Opaque"))),
            "type=Opaque"
        );
        assert_eq!(
            secret_selector(Target::OtherSecrets(None)),
            "type!=kubernetes.io/dockerconfigjson,type!=kubernetes.io/dockercfg,type!=Opaque"
        );
    }

    fn metadata(ns: &str, name: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                annotations: Some(BTreeMap::from([(
                    "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                    format!(r#"{{"data":{{"password":"{PLANTED}"}}}}"#),
                )])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn other_secrets_keep_their_names_and_watched_type_only() {
        let index = RwLock::new(ClusterIndex::new());
        let mut opaque = follower(Target::OtherSecrets(Some("Opaque")), None);
        let mut rest = follower(Target::OtherSecrets(None), None);
        opaque.on_event::<PartialObjectMeta<Secret>>(&index, Event::Init);
        opaque.on_event(&index, Event::InitApply(metadata("a", "regcred")));
        opaque.on_event(&index, Event::InitApply(metadata("a", "app")));
        opaque.on_event::<PartialObjectMeta<Secret>>(&index, Event::InitDone);
        rest.on_event::<PartialObjectMeta<Secret>>(&index, Event::Init);
        rest.on_event(
            &index,
            Event::InitApply(metadata("a", "sh.helm.release.v1.x.v1")),
        );
        rest.on_event::<PartialObjectMeta<Secret>>(&index, Event::InitDone);
        {
            let idx = index.read().unwrap();
            let a = idx.namespace("a");
            assert_eq!(
                a.other_secrets
                    .get("regcred")
                    .and_then(|o| o.secret_type.as_deref()),
                Some("Opaque")
            );
            assert_eq!(
                a.other_secrets
                    .get("sh.helm.release.v1.x.v1")
                    .map(|o| o.secret_type.is_none()),
                Some(true)
            );
            assert_eq!((idx.secret_count(), idx.other_secret_count()), (0, 3));
            assert!(!format!("{idx:?}").contains(PLANTED));
        }

        // A delete from the other watcher leaves the Opaque one alone; a relist of the Opaque
        // watcher that no longer shows "app" removes it.
        rest.on_event(&index, Event::Delete(metadata("a", "regcred")));
        assert!(index
            .read()
            .unwrap()
            .namespace("a")
            .other_secrets
            .contains_key("regcred"));
        opaque.on_event::<PartialObjectMeta<Secret>>(&index, Event::Init);
        opaque.on_event(&index, Event::InitApply(metadata("a", "regcred")));
        assert_eq!(
            opaque.on_event::<PartialObjectMeta<Secret>>(&index, Event::InitDone),
            Progress::Listed {
                first: false,
                removed: 1
            }
        );

        // Recreated as a pull secret: the pull watcher's ADDED may arrive before the Opaque
        // watcher's DELETED, which must then not remove the pull secret.
        let mut json = follower(Target::Secrets(DOCKER_CONFIG_JSON_TYPE), None);
        json.on_event(
            &index,
            Event::Apply(secret("a", "regcred", DOCKER_CONFIG_JSON_TYPE, "r.io")),
        );
        opaque.on_event(&index, Event::Delete(metadata("a", "regcred")));
        let idx = index.read().unwrap();
        assert!(idx.namespace("a").secrets.contains_key("regcred"));
        assert!(!idx.namespace("a").other_secrets.contains_key("regcred"));
        assert_eq!((idx.secret_count(), idx.other_secret_count()), (1, 1));
    }

    #[test]
    fn plan_is_cluster_wide_or_per_namespace() {
        assert_eq!(plan(&[]).len(), 6);
        assert!(plan(&[]).iter().all(|w| w.namespace.is_none()));
        let p = plan(&["b".into(), "a".into(), "b".into(), " ".into()]);
        assert_eq!(p.len(), 12);
        assert_eq!(p[0].namespace.as_deref(), Some("a"));
        assert_eq!(
            p[11],
            Watch {
                target: Target::Namespaces,
                namespace: Some("b".into())
            }
        );
    }

    #[test]
    fn relist_removes_only_what_this_watcher_no_longer_sees() {
        let index = RwLock::new(ClusterIndex::new());
        let mut json = follower(Target::Secrets(DOCKER_CONFIG_JSON_TYPE), None);
        let mut cfg = follower(Target::Secrets(DOCKERCFG_TYPE), None);
        assert_eq!(
            json.on_event::<Secret>(&index, Event::Init),
            Progress::Changed
        );
        for (ns, name) in [("a", "one"), ("a", "two"), ("b", "one")] {
            json.on_event(
                &index,
                Event::InitApply(secret(ns, name, DOCKER_CONFIG_JSON_TYPE, "r.io")),
            );
        }
        assert_eq!(
            json.on_event::<Secret>(&index, Event::InitDone),
            Progress::Listed {
                first: true,
                removed: 0
            }
        );
        cfg.on_event::<Secret>(&index, Event::Init);
        cfg.on_event(
            &index,
            Event::InitApply(secret("c", "old", DOCKERCFG_TYPE, "r.io")),
        );
        cfg.on_event::<Secret>(&index, Event::InitDone);
        assert_eq!(index.read().unwrap().secret_count(), 4);

        // A relist of the dockerconfigjson watcher that no longer shows a/two and b/one.
        assert_eq!(
            json.on_event::<Secret>(&index, Event::Init),
            Progress::Relisting
        );
        json.on_event(
            &index,
            Event::InitApply(secret("a", "one", DOCKER_CONFIG_JSON_TYPE, "r.io")),
        );
        assert_eq!(
            json.on_event::<Secret>(&index, Event::InitDone),
            Progress::Listed {
                first: false,
                removed: 2
            }
        );
        let idx = index.read().unwrap();
        assert_eq!(
            idx.secret_count(),
            2,
            "the dockercfg secret is another watcher's"
        );
        assert!(idx.namespace("c").secrets.contains_key("old"));
        assert!(idx.namespace("a").secrets.contains_key("one"));
    }

    #[test]
    fn deletes_are_scoped_to_the_watchers_type() {
        let index = RwLock::new(ClusterIndex::new());
        let mut json = follower(Target::Secrets(DOCKER_CONFIG_JSON_TYPE), Some("a"));
        let mut cfg = follower(Target::Secrets(DOCKERCFG_TYPE), Some("a"));
        // Recreated as dockercfg; its ADDED arrives before the old type's DELETED.
        cfg.on_event(
            &index,
            Event::Apply(secret("a", "s", DOCKERCFG_TYPE, "r.io")),
        );
        json.on_event(
            &index,
            Event::Delete(secret("a", "s", DOCKER_CONFIG_JSON_TYPE, "r.io")),
        );
        assert_eq!(
            index.read().unwrap().namespace("a").secrets["s"].secret_type,
            DOCKERCFG_TYPE
        );
        cfg.on_event(
            &index,
            Event::Delete(secret("a", "s", DOCKERCFG_TYPE, "r.io")),
        );
        assert_eq!(index.read().unwrap().secret_count(), 0);
    }

    #[test]
    fn service_accounts_and_namespaces_follow_relists() {
        let index = RwLock::new(ClusterIndex::new());
        let mut sas = follower(Target::ServiceAccounts, Some("a"));
        let mut nss = follower(Target::Namespaces, Some("a"));
        sas.on_event::<ServiceAccount>(&index, Event::Init);
        sas.on_event(&index, Event::InitApply(sa("a", "default", &["x"], &[])));
        sas.on_event(&index, Event::InitApply(sa("a", "builder", &[], &[])));
        sas.on_event::<ServiceAccount>(&index, Event::InitDone);
        nss.on_event::<Namespace>(&index, Event::Init);
        nss.on_event(
            &index,
            Event::InitApply(namespace("a", &[("pullgate.io/inject", "false")])),
        );
        nss.on_event::<Namespace>(&index, Event::InitDone);
        assert_eq!(
            index.read().unwrap().namespace("a").overrides.inject,
            Some(false)
        );

        sas.on_event::<ServiceAccount>(&index, Event::Init);
        sas.on_event(&index, Event::InitApply(sa("a", "default", &["y"], &[])));
        assert_eq!(
            sas.on_event::<ServiceAccount>(&index, Event::InitDone),
            Progress::Listed {
                first: false,
                removed: 1
            }
        );
        nss.on_event::<Namespace>(&index, Event::Init);
        assert_eq!(
            nss.on_event::<Namespace>(&index, Event::InitDone),
            Progress::Listed {
                first: false,
                removed: 1
            }
        );
        let idx = index.read().unwrap();
        assert_eq!(idx.service_account_count(), 1);
        assert_eq!(
            idx.namespace("a").service_accounts["default"].image_pull_secrets,
            ["y"]
        );
        assert_eq!(idx.namespace("a").overrides, NamespaceOverrides::default());
    }
}
