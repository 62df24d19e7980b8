//! The webhook served in-process over real TLS (the router and TLS stack production runs).

use super::certs::shared_certs;
use super::{install_crypto, DEADLINE};
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::server::{self, AppState};
use pullgate::store::files::FileStore;
use pullgate::tls::{self, CertResolver};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// The webhook served in-process over real TLS.
pub struct InProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The CA its certificate chains to.
    pub ca_pem: String,
    /// The server state.
    pub state: Arc<AppState>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// `https://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// Stop accepting and wait for the drain.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || t.join());
            tokio::time::timeout(DEADLINE, joined)
                .await
                .expect("server stops")
                .expect("join")
                .expect("server thread");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The policy the in-process tests run with: defaults plus a 10-year maxSecretAge.
pub fn test_policy() -> Policy {
    // Several example mistakes are on registries no secret names: every registry is private here.
    Policy::from_yaml("maxSecretAge: 3650d\nregistries:\n  private: ['*']\n").expect("policy")
}

/// Start the webhook in-process on 127.0.0.1:0 over TLS with the shared certificates.
pub async fn start_in_process(manifests: &Path, policy: Policy) -> InProcess {
    install_crypto();
    let certs = shared_certs();
    let store = Arc::new(FileStore::load(manifests).expect("load manifests"));
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState::new(
        policy,
        store,
        metrics.clone(),
        64,
        Duration::from_secs(4),
    ));
    let loaded = tls::load_pem_files(&certs.cert(), &certs.key()).expect("load certs");
    let resolver = Arc::new(CertResolver::new(loaded.key));
    let cfg = tls::server_config(resolver).expect("server config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = watch::channel(false);
    let router = server::router(state.clone());
    // `serve_tls`'s future is not `Send` (it holds the watch guard of `wait_for` inside
    // `select!`), so it cannot be `tokio::spawn`ed: it runs on a runtime of its own thread.
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            server::serve_tls(
                listener,
                TlsAcceptor::from(Arc::new(cfg)),
                router,
                rx,
                Duration::from_secs(5),
            )
            .await;
        });
    });
    InProcess {
        addr,
        ca_pem: certs.ca_pem.clone(),
        state,
        metrics,
        shutdown: tx,
        thread: Some(thread),
    }
}
