//! A fake Kubernetes API server for tests: plain HTTP on 127.0.0.1, reached by kube clients
//! through a kubeconfig file exactly as production would be.
//!
//! It is faithful to the wire protocol for what pullgate uses (read against the apiserver's
//! handlers, storage and watch cache): lists with `fieldSelector`/`labelSelector`,
//! `limit`/`continue` (base64url continue tokens, consistent snapshots, 410 once compacted),
//! `resourceVersion`/`resourceVersionMatch` semantics; watches as chunked JSON lines from a
//! resourceVersion with ADDED/MODIFIED/DELETED, periodic BOOKMARKs, `timeoutSeconds`, and an
//! ERROR event with a 410 `Expired` Status for a resourceVersion older than the kept history;
//! get/create/update/patch (merge, JSON, minimal server-side apply)/delete with
//! resourceVersion preconditions and `Status` errors; Secrets, ServiceAccounts, Namespaces,
//! ConfigMaps, Pods, v1 and events.k8s.io Events, coordination.k8s.io Leases, and the workloads
//! (apps/v1 Deployments, StatefulSets, DaemonSets, ReplicaSets; batch/v1 Jobs, CronJobs; v1
//! ReplicationControllers); and wgpolicyk8s.io/v1alpha2 PolicyReports, a CRD present or absent
//! in discovery (`/apis`, `/apis/{group}/{version}`) as the test installs it.
//!
//! Deliberate simplifications: one shared storage per resource version (core and
//! events.k8s.io Events are stored apart), no field ownership in apply, no strategic merge
//! patch (415), Namespace deletion is immediate and cascades, bookmarks every
//! `bookmark_interval` (the server uses about a minute), and a too-large resourceVersion fails
//! at once rather than after the server's 3 s wait.
//!
//! The test drives faults through the handle: [`FakeApi::drop_watches`] cuts every open watch
//! mid-stream, [`FakeApi::end_watches`] ends them cleanly, [`FakeApi::fail_next`] answers the next requests with 500,
//! [`FakeApi::expire_continues`] expires the continue tokens of the next paginated lists (410),
//! [`FakeApi::race_writes`] lets another client's update land just before the next writes (which
//! then get 409 Conflict from their resourceVersion precondition), [`FakeApi::compact`]
//! makes every older resourceVersion expire, [`FakeApi::set_stalled`] holds requests and
//! watch events until released, and [`FakeApi::go_away`] / [`FakeApi::come_back`] take the
//! server off its port (connections refused, open ones cut) and back on the same port with the
//! same storage, as an API server restart does (with [`FakeApi::compact`] in between, clients
//! resuming from before then get 410 and relist, as after a restart's fresh watch cache).
//!
//! GETs honour `Accept`: `as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1` answers metadata
//! only, as the server does for kube's `PartialObjectMeta` (and client-go's metadata informers).

mod http;
mod select;
mod status;
mod store;

pub use http::LoggedRequest;

use http::App;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{resource_by_kind, State, NAMESPACES, RESOURCES};
use tokio::sync::watch;

#[cfg(test)]
mod tests;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Changes kept for watches and exact reads (the watch cache window); older ones expire.
    pub history_limit: usize,
    /// Bearer token clients must present.
    pub token: String,
    /// What a list costs the server, to model a real one's pace (none by default).
    pub list_cost: ListCost,
    /// Whether streaming lists (`sendInitialEvents`) are served, as with the WatchList feature
    /// on (the default from v1.34, which the fake reports); off, they are refused with 422 as
    /// v1.33 does.
    pub watch_list: bool,
}

/// The time a list takes per object returned, by where the API server reads it: a paged LIST
/// goes to etcd (measured on a real one: 46,600 secrets in pages of 500 took 5.4 s, ~116 µs
/// each), one at `resourceVersion=0` is served whole from its watch cache (1.5 s, ~32 µs each).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListCost {
    /// Per object of a list read from storage.
    pub storage: Duration,
    /// Per object of a list (or a watch's initial events) served from the watch cache.
    pub cache: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bookmark_interval: Duration::from_millis(500),
            history_limit: 100 * 1024,
            token: "pullgate-fake-token".to_owned(),
            list_cost: ListCost::default(),
            watch_list: true,
        }
    }
}

/// A running fake API server; stopped (and its watches cut) when dropped.
pub struct FakeApi {
    app: Arc<App>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    router: axum::Router,
    /// The accept loop, which owns every connection; `None` while away.
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Serve connections until aborted; aborting drops every connection (their tasks are in the set).
async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A listener on `addr`, reusable at once after a previous one on it closed.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl FakeApi {
    /// Start with default options.
    pub async fn start() -> FakeApi {
        Self::start_with(Options::default()).await
    }

    /// Start on a free port of 127.0.0.1 and write a kubeconfig for it.
    pub async fn start_with(options: Options) -> FakeApi {
        let listener =
            listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind the fake API server");
        let addr = listener.local_addr().expect("fake API address");
        let app = Arc::new(App {
            state: Mutex::new(State::new(1000, options.history_limit)),
            log: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            expire_continues: AtomicUsize::new(0),
            open_watches: AtomicUsize::new(0),
            drops: watch::channel(0).0,
            ends: watch::channel(0).0,
            bookmarks: Mutex::new(Vec::new()),
            stalled: watch::channel(false).0,
            token: options.token.clone(),
            bookmark_interval: options.bookmark_interval,
            list_cost: options.list_cost,
            watch_list: options.watch_list,
            races: Mutex::new(Vec::new()),
            policy_report_crd: AtomicBool::new(false),
        });
        let router = http::router(app.clone());
        let server = tokio::spawn(serve(listener, router.clone()));
        let dir = tempfile::tempdir().expect("kubeconfig dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: default\n\
             current-context: fake\nusers:\n- name: tester\n  user:\n    token: {}\n",
            options.token
        );
        std::fs::write(&kubeconfig, config).expect("write kubeconfig");
        FakeApi {
            app,
            addr,
            _dir: dir,
            kubeconfig,
            router,
            server: Mutex::new(Some(server)),
        }
    }

    /// Install (or remove) the `wgpolicyk8s.io/v1alpha2` PolicyReport CRD: while absent, as in a
    /// cluster without Kyverno or Policy Reporter, discovery does not list the group and its
    /// paths answer 404 (stored reports stay, unreachable).
    pub fn install_policy_report_crd(&self, installed: bool) {
        self.app
            .policy_report_crd
            .store(installed, Ordering::Release);
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig file pointing at this server.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client built from the kubeconfig the way `pullgate serve --kubeconfig` builds it.
    pub async fn client(&self) -> kube::Client {
        pullgate::store::kube::client(Some(&self.kubeconfig))
            .await
            .expect("client from the fake's kubeconfig")
    }

    /// Create or replace an object (its kind names the resource; the namespace defaults to
    /// `default` and is created first when missing, as a test convenience). Returns it as stored.
    pub fn apply(&self, mut obj: Value) -> Value {
        let api_version = obj["apiVersion"].as_str().unwrap_or("v1").to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let res = resource_by_kind(&api_version, &kind)
            .unwrap_or_else(|| panic!("the fake does not serve {api_version} {kind}"));
        let rt = &RESOURCES[res];
        let ns = if rt.namespaced {
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        } else {
            String::new()
        };
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let mut state = self.app.state();
        if rt.namespaced && state.get(NAMESPACES, "", &ns).is_err() {
            state
                .create(NAMESPACES, "", json!({"metadata": {"name": ns}}), false)
                .unwrap_or_else(|e| panic!("creating namespace {ns}: {}", e.message));
        }
        let stored = if state.get(res, &ns, &name).is_ok() {
            state.update(res, &ns, &name, obj, false)
        } else {
            state.create(res, &ns, obj, false)
        };
        stored
            .unwrap_or_else(|e| panic!("applying {kind} {ns}/{name}: {}", e.message))
            .value(rt)
    }

    /// Create or replace a dockerconfigjson pull secret with credentials for `registries`.
    pub fn apply_secret(&self, ns: &str, name: &str, registries: &[&str], password: &str) -> Value {
        self.apply(super::fixtures::pull_secret(ns, name, registries, password))
    }

    /// Delete an object; `resource` is a plural (`secrets`) or `plural.group`. Returns whether it existed.
    pub fn delete(&self, resource: &str, ns: &str, name: &str) -> bool {
        self.app
            .state()
            .delete(resource_index(resource), ns, name, None, false)
            .is_ok()
    }

    /// Read an object as the API would return it.
    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let res = resource_index(resource);
        self.app
            .state()
            .get(res, ns, name)
            .ok()
            .map(|o| o.value(&RESOURCES[res]))
    }

    /// Number of objects of a resource.
    pub fn count(&self, resource: &str) -> usize {
        self.app.state().count(resource_index(resource))
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.app.state().resource_version()
    }

    /// Forget all history: watches and exact reads from any earlier resourceVersion, and
    /// continue tokens issued before, now get 410 Expired.
    pub fn compact(&self) {
        self.app.state().compact();
    }

    /// End every open watch stream cleanly (the final chunk is sent), as the server does when
    /// a watch's `timeoutSeconds` is up: clients resume from their last resourceVersion.
    pub fn end_watches(&self) {
        self.app.ends.send_modify(|g| *g += 1);
    }

    /// Cut every open watch stream mid-stream (the connection ends without the final chunk).
    pub fn drop_watches(&self) {
        self.app.drops.send_modify(|g| *g += 1);
    }

    /// Arm a concurrent writer: just before each of the next `n` PATCH or PUT requests to an
    /// existing object of `resource` (a plural, or `plural.group`) reaches the storage, the object
    /// is updated with `edit`, as another client's write that landed first (it must change the
    /// object: its resourceVersion moves on and watchers see MODIFIED). The request then meets the
    /// server's own precondition check: one carrying the resourceVersion it read before is
    /// answered 409 with the `Conflict` Status the API server sends for a lost race ("the object
    /// has been modified; please apply your changes to the latest version and try again"); one
    /// without a precondition is applied on top of the other write.
    pub fn race_writes(
        &self,
        resource: &str,
        n: usize,
        edit: impl Fn(&mut Value) + Send + Sync + 'static,
    ) {
        self.app
            .races
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(http::Race {
                resource: resource_index(resource),
                remaining: n,
                edit: Box::new(edit),
            });
    }

    /// Before each of the next `n` list requests that carry a `continue` token, another client
    /// writes and the storage compacts, as etcd does under a long paginated list: the token has
    /// expired, and the request gets the API server's 410 `Expired` Status (with the
    /// `metadata.continue` of an inconsistent continuation).
    pub fn expire_continues(&self, n: usize) {
        self.app.expire_continues.store(n, Ordering::Release);
    }

    /// Answer the next `n` requests with 500 InternalError (0 ends an outage early).
    pub fn fail_next(&self, n: usize) {
        self.app.fail_next.store(n, Ordering::Release);
    }

    /// Hold (true) or release (false) every request and watch event.
    pub fn set_stalled(&self, stalled: bool) {
        self.app.stalled.send_replace(stalled);
    }

    /// Requests received so far.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.app
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// BOOKMARK events sent so far: (index in [`FakeApi::request_log`] of the watch, resourceVersion).
    pub fn bookmarks(&self) -> Vec<(usize, u64)> {
        self.app
            .bookmarks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Go away as a stopped API server does: the port refuses connections and every open
    /// connection (watches included) is cut. The storage stays, and changes made through the
    /// handle meanwhile are there when the server comes back.
    pub async fn go_away(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            server.abort();
            // Once the accept loop is dropped its listener is closed and its connections aborted.
            let _ = server.await;
        }
        self.drop_watches();
    }

    /// Serve again on the same port after [`FakeApi::go_away`].
    pub fn come_back(&self) {
        let listener = listen(self.addr)
            .unwrap_or_else(|e| panic!("rebind the fake API server on {}: {e}", self.addr));
        let server = tokio::spawn(serve(listener, self.router.clone()));
        let old = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(server);
        assert!(old.is_none(), "come_back without go_away");
    }

    /// Whether the port accepts connections (false between go_away and come_back).
    pub fn is_up(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.app.open_watches.load(Ordering::Acquire)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(server) = self
            .server
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            server.abort();
        }
        self.drop_watches();
    }
}

fn resource_index(resource: &str) -> usize {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    RESOURCES
        .iter()
        .position(|r| r.plural == plural && r.group == group)
        .unwrap_or_else(|| panic!("the fake does not serve {resource}"))
}
