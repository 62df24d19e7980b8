//! `pullgate serve`: the HTTPS admission server (HTTP/1.1 and HTTP/2 over rustls), the plain-HTTP
//! metrics server, hot reload of the store and of the certificate, and graceful shutdown.

use crate::admission::{self, Endpoint, Outcome, ReviewError};
use crate::audit::background::SharedUsage;
use crate::cli::ServeArgs;
use crate::engine::policy::{Policy, PolicyError};
use crate::metrics::{
    kind_label, operation_label, CodeLabels, EndpointLabels, KindLabels, Metrics, RequestLabels,
    WouldDenyLabels,
};
use crate::store::files::FileStore;
use crate::store::Store;
use crate::tls::{self, CertResolver, TlsError};
use crate::verify::Verifications;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

/// Largest admission body accepted (an UPDATE review carries the object twice).
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Time a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The policy file is invalid.
    #[error("policy {path}: {source}")]
    Policy {
        /// File.
        path: String,
        /// Error.
        #[source]
        source: PolicyError,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be loaded.
    #[error("loading the store: {0}")]
    Store(#[from] crate::store::files::FileStoreError),
    /// No client for the API server.
    #[error("{what}: connecting to the API server: {source}")]
    Kube {
        /// What needed it.
        what: &'static str,
        /// Error.
        #[source]
        source: kube::Error,
    },
    /// Certificates could not be loaded or generated.
    #[error("TLS: {0}")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No certificate source was given.
    #[error("TLS: pass --tls-cert and --tls-key, --self-signed, or --self-signed-secret")]
    NoCertificate,
    /// Binding or serving failed.
    #[error("{what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// Neither --manifests nor --cluster was given.
    #[error("no store: pass --manifests DIR or --cluster")]
    NoStore,
    /// The `verify` settings are unusable (e.g. a `caFile`).
    #[error(transparent)]
    Verify(crate::verify::VerifyError),
}

impl ServeError {
    fn tls(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ServeError::Tls(Box::new(e))
    }
}

impl From<TlsError> for ServeError {
    fn from(e: TlsError) -> Self {
        ServeError::tls(e)
    }
}

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// The policy in force.
    pub policy: Policy,
    /// Where namespace views come from.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// False once shutdown begins.
    pub serving: AtomicBool,
    /// Bound on admissions handled at once.
    pub limiter: Semaphore,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// Who uses which secret, as of the last completed background audit.
    pub audit_usage: SharedUsage,
    /// Credential verification results, as the verify task last published them.
    pub verifications: Arc<Verifications>,
}

impl AppState {
    /// State with the given parts.
    pub fn new(
        policy: Policy,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        max_concurrent: usize,
        request_timeout: Duration,
    ) -> Self {
        AppState {
            policy,
            store,
            metrics,
            serving: AtomicBool::new(true),
            limiter: Semaphore::new(max_concurrent.max(1)),
            request_timeout,
            audit_usage: Default::default(),
            verifications: Default::default(),
        }
    }
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "code": status.as_u16() });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The HTTPS routes: `/mutate`, `/validate`, `/healthz`, `/readyz`.
pub fn router(state: Arc<AppState>) -> Router {
    let method = || async {
        json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST for admission, GET for probes",
        )
    };
    Router::new()
        .route(
            "/mutate",
            post(|s, q, h, b| admit(Endpoint::Mutate, s, q, h, b)).fallback(method),
        )
        .route(
            "/validate",
            post(|s, q, h, b| admit(Endpoint::Validate, s, q, h, b)).fallback(method),
        )
        .route(
            "/healthz",
            get(|| async { (StatusCode::OK, "ok") }).fallback(method),
        )
        .route("/readyz", get(readyz).fallback(method))
        .fallback(|| async {
            json_error(
                StatusCode::NOT_FOUND,
                "not found: the webhook serves POST /mutate and POST /validate",
            )
        })
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.serving.load(Ordering::Relaxed) && st.store.ready() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

#[derive(serde::Deserialize)]
struct AdmitQuery {
    timeout: Option<String>,
}

async fn admit(
    endpoint: Endpoint,
    State(st): State<Arc<AppState>>,
    Query(q): Query<AdmitQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    // The API server says how long it waits (`?timeout=5s`); answer well before that.
    let deadline = q
        .timeout
        .as_deref()
        .and_then(|t| crate::cli::parse_duration(t).ok())
        .map_or(st.request_timeout, |t| {
            st.request_timeout.min(t.mul_f32(0.8))
        });
    let resp = match tokio::time::timeout(deadline, handle(endpoint, &st, &headers, body)).await {
        Ok(r) => r,
        Err(_) => {
            record_error(&st, endpoint, "deadline exceeded");
            json_error(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded")
        }
    };
    st.metrics
        .duration
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.as_str(),
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn handle(endpoint: Endpoint, st: &AppState, headers: &HeaderMap, body: Body) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        record_error(st, endpoint, "unsupported content type");
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {ct:?} is not application/json"),
        );
    }
    // Refuse a declared oversize body before reading (or 100-continuing) any of it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        record_error(st, endpoint, "body too large");
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            record_error(st, endpoint, "unreadable body");
            return if too_large {
                json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                json_error(StatusCode::BAD_REQUEST, "could not read the request body")
            };
        }
    };
    let Ok(_permit) = st.limiter.acquire().await else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let now = jiff::Timestamp::now().as_second();
    let usage = st.audit_usage.current();
    let verified = st.verifications.snapshot();
    let observed = admission::Observed {
        usage: usage.as_deref(),
        verified: Some(&verified),
    };
    let result = {
        let view = st.store.view();
        admission::review_with_usage(endpoint, &bytes, &st.policy, &view, now, observed)
    };
    match result {
        Ok(outcome) => {
            record(st, endpoint, &outcome);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                outcome.body,
            )
                .into_response()
        }
        Err(e) => {
            record_error(st, endpoint, &review_error_kind(&e));
            json_error(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

fn review_error_kind(e: &ReviewError) -> String {
    match e {
        ReviewError::Malformed(_) | ReviewError::NotAnObject(_) => {
            "malformed AdmissionReview".to_owned()
        }
        other => other.to_string(),
    }
}

fn record_error(st: &AppState, endpoint: Endpoint, what: &str) {
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.as_str(),
            kind: "other",
            operation: "other",
            result: "error",
        })
        .inc();
    warn!(
        endpoint = endpoint.as_str(),
        error = what,
        "admission request refused"
    );
}

fn record(st: &AppState, endpoint: Endpoint, o: &Outcome) {
    let m = &st.metrics;
    let result = if o.object_error {
        "error"
    } else if !o.allowed {
        "denied"
    } else if o.mutated {
        "mutated"
    } else {
        "allowed"
    };
    let kind = kind_label(&o.kind);
    m.requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.as_str(),
            kind,
            operation: operation_label(&o.operation),
            result,
        })
        .inc();
    for c in &o.denied_codes {
        m.denials
            .get_or_create(&CodeLabels { code: c.as_str() })
            .inc();
    }
    for c in &o.warning_codes {
        m.warnings
            .get_or_create(&CodeLabels { code: c.as_str() })
            .inc();
    }
    for pattern in &o.would_deny_patterns {
        m.would_deny
            .get_or_create(&WouldDenyLabels {
                namespace: o.namespace.clone(),
                registry: pattern.clone(),
            })
            .inc();
    }
    if o.injected > 0 {
        m.injected
            .get_or_create(&KindLabels { kind })
            .inc_by(o.injected as u64);
    }
    let codes: Vec<&str> = o.denied_codes.iter().map(|c| c.as_str()).collect();
    if o.object_error {
        warn!(uid = %o.uid, namespace = %o.namespace, kind = %o.kind, operation = %o.operation, "unreadable object in admission request");
    } else if !o.allowed {
        info!(uid = %o.uid, namespace = %o.namespace, kind = %o.kind, operation = %o.operation, codes = ?codes, "denied");
    }
}

/// The metrics route.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    )
}

/// Resolve once the flag is true (or its sender is gone). Holds no borrow across an await, so the
/// server future stays `Send` and can be spawned.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serve `router` over TLS on `listener` until `shutdown` turns true; then stop accepting and let
/// in-flight requests finish for at most `grace`.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // E.g. EMFILE: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder.http2().timer(TokioTimer::new());
            let conn = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => info!("all connections drained"),
        _ = tokio::time::sleep(grace) => warn!("shutdown grace period over; closing remaining connections"),
    }
}

/// Resolve on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Identity of a file for change detection: its resolved path (symlink swaps change it), mtime and size.
fn file_stamp(p: &Path) -> Option<(PathBuf, SystemTime, u64)> {
    let real = std::fs::canonicalize(p).ok()?;
    let m = std::fs::metadata(&real).ok()?;
    Some((real, m.modified().ok()?, m.len()))
}

/// Watch a certificate pair and swap it into the resolver when both files change into a valid pair.
async fn watch_certificate(
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let mut last = (file_stamp(&cert), file_stamp(&key));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = (file_stamp(&cert), file_stamp(&key));
        if now == last {
            continue;
        }
        last = now;
        match tls::load_pem_files(&cert, &key) {
            Ok(loaded) => {
                resolver.set(loaded.key);
                metrics.cert_expiry.set(loaded.not_after as f64);
                info!(cert = %cert.display(), not_after = loaded.not_after, "serving certificate reloaded");
            }
            Err(e) => {
                error!(error = %e, "certificate reload failed; keeping the previous certificate")
            }
        }
    }
}

/// Poll the manifests directory and swap in a new index when it changes.
async fn watch_manifests(store: Arc<FileStore>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match store.reload_if_changed() {
            Ok(true) => {
                metrics.store_stale.set(0);
                publish_store_metrics(&*store, &metrics);
                info!(dir = %store.dir().display(), "manifests reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                metrics.store_stale.set(1);
                error!(error = %e, "manifest reload failed; keeping the last good state");
            }
        }
    }
}

fn publish_store_metrics(store: &dyn Store, metrics: &Metrics) {
    let view = store.view();
    let gauge = |kind, n: usize| {
        metrics
            .store_objects
            .get_or_create(&KindLabels { kind })
            .set(i64::try_from(n).unwrap_or(i64::MAX))
    };
    gauge("Secret", view.secret_count() + view.other_secret_count());
    gauge("ServiceAccount", view.service_account_count());
    gauge("Namespace", view.namespace_count());
    metrics
        .store_last_reload
        .set(jiff::Timestamp::now().as_second() as f64);
}

/// How long the leader tasks get after the termination signal to release their Leases.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the serving certificate comes from, and so what keeps it current.
enum Certificate {
    /// Generated in memory at start (`--self-signed`): nothing to refresh.
    Generated,
    /// Files reloaded on change (`--tls-cert`, `--tls-key`).
    Files { cert: PathBuf, key: PathBuf },
    /// A Secret shared by the replicas (`--self-signed-secret`), rotated by its runner.
    Managed(Box<tls::runner::Managed>),
}

/// The background tasks of `serve`: `tasks` are stopped at exit; `leaders` hold Leases, are told
/// through `terminating` at the termination signal, and get [`RELEASE_TIMEOUT`] to release them.
struct Background {
    tasks: JoinSet<()>,
    leaders: JoinSet<()>,
    terminating: watch::Receiver<bool>,
    /// Where the verify task publishes its results, for admission, audit and attribution.
    verifications: Arc<Verifications>,
}

impl Background {
    /// Wait (bounded) for the leader tasks to release their Leases, then stop everything.
    async fn shut_down(mut self) {
        let released = async { while self.leaders.join_next().await.is_some() {} };
        if tokio::time::timeout(RELEASE_TIMEOUT, released)
            .await
            .is_err()
        {
            warn!("leases not released in time; the next leader waits for them to expire");
        }
        self.leaders.abort_all();
        self.tasks.abort_all();
    }
}

/// Run `pullgate serve` until SIGTERM/SIGINT.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let policy = load_policy(args.config.as_deref())?;
    let metrics = Arc::new(Metrics::with_max_series(args.metrics_max_series));
    let (resolver, certificate) = certificate(&args, &metrics).await?;
    let tls_config = tls::server_config(resolver.clone()).map_err(ServeError::tls)?;
    let (terminate, terminating) = watch::channel(false);
    let mut background = Background {
        tasks: JoinSet::new(),
        leaders: JoinSet::new(),
        terminating,
        verifications: Default::default(),
    };
    let audit_usage = SharedUsage::default();
    let store = start_store(&args, &policy, &metrics, &mut background, &audit_usage).await?;
    let mut state = AppState::new(
        policy,
        store,
        metrics.clone(),
        args.max_concurrent_requests,
        args.request_timeout,
    );
    state.audit_usage = audit_usage;
    state.verifications = background.verifications.clone();
    let state = Arc::new(state);
    let listener = bind("listen", args.listen).await?;
    let metrics_listener = bind("metrics-listen", args.metrics_listen).await?;
    // Log the bound addresses (port 0 picks a free one, which tests rely on).
    let bound = listener.local_addr().unwrap_or(args.listen);
    let metrics_bound = metrics_listener.local_addr().unwrap_or(args.metrics_listen);
    info!(listen = %bound, metrics = %metrics_bound, "pullgate serving");

    let every = args.reload_interval;
    keep_certificate_current(
        certificate,
        resolver,
        &metrics,
        every,
        &mut background.tasks,
    );
    background
        .tasks
        .spawn(serve_metrics(metrics_listener, metrics));
    let (stop, stopping) = watch::channel(false);
    let delay = args.shutdown_delay;
    tokio::spawn(terminate_on_signal(state.clone(), delay, terminate, stop));
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));
    let grace = args.shutdown_grace_period;
    serve_tls(listener, acceptor, router(state), stopping, grace).await;
    background.shut_down().await;
    info!("stopped");
    Ok(())
}

/// The policy file, or the default policy without one.
fn load_policy(path: Option<&Path>) -> Result<Policy, ServeError> {
    let Some(p) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(p).map_err(|source| ServeError::Read {
        path: p.display().to_string(),
        source,
    })?;
    Policy::from_yaml(&text).map_err(|source| ServeError::Policy {
        path: p.display().to_string(),
        source,
    })
}

/// The serving certificate's resolver, and where the certificate comes from.
async fn certificate(
    args: &ServeArgs,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<CertResolver>, Certificate), ServeError> {
    if args.self_signed {
        let resolver = self_signed(args.ca_out.as_deref(), metrics)?;
        return Ok((resolver, Certificate::Generated));
    }
    if let Some(secret) = &args.self_signed_secret {
        let managed = managed_certificate(args, secret, metrics).await?;
        return Ok((managed.resolver(), Certificate::Managed(Box::new(managed))));
    }
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Err(ServeError::NoCertificate);
    };
    let loaded = tls::load_pem_files(cert, key)?;
    metrics.cert_expiry.set(loaded.not_after as f64);
    let files = Certificate::Files {
        cert: cert.clone(),
        key: key.clone(),
    };
    Ok((Arc::new(CertResolver::new(loaded.key)), files))
}

/// An in-memory CA and serving certificate, the CA certificate written to `ca_out` if given.
fn self_signed(ca_out: Option<&Path>, metrics: &Metrics) -> Result<Arc<CertResolver>, ServeError> {
    let ips = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(Ipv6Addr::LOCALHOST),
    ];
    let dns: Vec<String> = tls::certs::DEFAULT_DNS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let g = tls::certs::generate(&dns, &ips, 365).map_err(ServeError::tls)?;
    if let Some(out) = ca_out {
        std::fs::write(out, &g.ca_cert_pem).map_err(|source| ServeError::Read {
            path: out.display().to_string(),
            source,
        })?;
        info!(path = %out.display(), "wrote the self-signed CA certificate");
    }
    let loaded = tls::load_pem_pair(
        g.tls_cert_pem.as_bytes(),
        g.tls_key_pem.as_bytes(),
        "generated",
        "generated",
    )?;
    metrics.cert_expiry.set(loaded.not_after as f64);
    Ok(Arc::new(CertResolver::new(loaded.key)))
}

/// The CA and serving certificate kept in a Secret shared by the replicas; see tls::runner.
async fn managed_certificate(
    args: &ServeArgs,
    secret: &str,
    metrics: &Arc<Metrics>,
) -> Result<tls::runner::Managed, ServeError> {
    let client = kube_client(args, "TLS").await?;
    let settings = tls::runner::Settings::new(
        tls::runner::pod_namespace(args.pod_namespace(), &client),
        secret.to_owned(),
        args.webhook_configurations.clone(),
    );
    tls::runner::Managed::start(client, settings, metrics.clone())
        .await
        .map_err(ServeError::tls)
}

/// Spawn what keeps the certificate current: a file watcher, or the managed Secret's runner.
fn keep_certificate_current(
    certificate: Certificate,
    resolver: Arc<CertResolver>,
    metrics: &Arc<Metrics>,
    every: Duration,
    tasks: &mut JoinSet<()>,
) {
    match certificate {
        Certificate::Generated => {}
        Certificate::Files { cert, key } => {
            tasks.spawn(watch_certificate(
                cert,
                key,
                resolver,
                metrics.clone(),
                every,
            ));
        }
        Certificate::Managed(managed) => {
            tasks.spawn(managed.run());
        }
    }
}

/// A client for the API server (`--kubeconfig`, else in-cluster); `what` names who needs it.
async fn kube_client(args: &ServeArgs, what: &'static str) -> Result<kube::Client, ServeError> {
    crate::store::kube::client(args.kubeconfig.as_deref())
        .await
        .map_err(|source| ServeError::Kube { what, source })
}

/// The store: the manifests directory (reloaded on change) or the cluster (watched).
async fn start_store(
    args: &ServeArgs,
    policy: &Policy,
    metrics: &Arc<Metrics>,
    background: &mut Background,
    audit_usage: &SharedUsage,
) -> Result<Arc<dyn Store>, ServeError> {
    if let Some(dir) = &args.manifests {
        let every = args.reload_interval;
        return manifest_store(dir, policy, metrics, every, &mut background.tasks);
    }
    if args.cluster {
        return cluster_store(args, policy, metrics, background, audit_usage).await;
    }
    Err(ServeError::NoStore)
}

/// The store read from `dir`, polled for changes every `every`.
fn manifest_store(
    dir: &Path,
    policy: &Policy,
    metrics: &Arc<Metrics>,
    every: Duration,
    tasks: &mut JoinSet<()>,
) -> Result<Arc<dyn Store>, ServeError> {
    let file_store = Arc::new(FileStore::load(dir)?);
    publish_store_metrics(&*file_store, metrics);
    if policy.verify.enabled
        || policy.attribution.enabled
        || policy.reconcile.service_accounts
        || policy.audit.enabled
    {
        warn!("verify, attribution, reconcile and audit need --cluster: ignored with --manifests");
    }
    tasks.spawn(watch_manifests(file_store.clone(), metrics.clone(), every));
    Ok(file_store)
}

/// The watch-backed store, with the cluster-mode tasks the policy enables: verification,
/// attribution, the background audit and the ServiceAccount reconciler (the last three lead
/// through Leases).
async fn cluster_store(
    args: &ServeArgs,
    policy: &Policy,
    metrics: &Arc<Metrics>,
    background: &mut Background,
    audit_usage: &SharedUsage,
) -> Result<Arc<dyn Store>, ServeError> {
    let client = kube_client(args, "loading the store").await?;
    let scope = crate::store::kube::Scope::for_policy(args.watch_namespaces.clone(), policy);
    let cluster = crate::store::kube::ClusterStore::start(client.clone(), scope, metrics.clone());
    let changes = cluster.subscribe();
    let store: Arc<dyn Store> = cluster;
    if policy.verify.enabled {
        let verify = crate::verify::kube::cluster_task(
            client.clone(),
            store.clone(),
            policy,
            metrics.clone(),
            background.verifications.clone(),
        )
        .map_err(ServeError::Verify)?;
        background.tasks.spawn(verify);
    }
    let lease_namespace = args.pod_namespace().unwrap_or("default").to_owned();
    let identity = args.identity().to_owned();
    let policy = Arc::new(policy.clone());
    if policy.attribution.enabled {
        let mut settings = crate::attribution::Settings::new(
            lease_namespace.clone(),
            identity.clone(),
            args.watch_namespaces.clone(),
        );
        settings.verifications = background.verifications.clone();
        background.leaders.spawn(crate::attribution::run(
            client.clone(),
            store.clone(),
            policy.clone(),
            metrics.clone(),
            settings,
            background.terminating.clone(),
        ));
    }
    if policy.audit.enabled {
        let mut settings =
            crate::audit::background::Settings::new(lease_namespace.clone(), identity.clone());
        settings.verifications = background.verifications.clone();
        background.leaders.spawn(crate::audit::background::run(
            client.clone(),
            store.clone(),
            changes,
            policy.clone(),
            metrics.clone(),
            audit_usage.clone(),
            settings,
            background.terminating.clone(),
        ));
    }
    if policy.reconcile.service_accounts {
        let cfg = crate::reconcile::LoopConfig {
            lease_namespace,
            identity,
            every: Duration::from_secs(5),
            patch_interval: Duration::from_millis(100),
        };
        let terminating = background.terminating.clone();
        let reconcile = crate::reconcile::run(client, store.clone(), policy, cfg, terminating);
        background.leaders.spawn(reconcile);
    }
    Ok(store)
}

/// A listener on `addr`; `what` names the flag in the error.
async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { what, addr, source })
}

/// Serve `/metrics` over plain HTTP.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    if let Err(e) = axum::serve(listener, metrics_router(metrics)).await {
        error!(error = %e, "metrics server failed");
    }
}

/// On SIGTERM/SIGINT: turn not ready, tell the leader tasks to release their Leases, keep serving
/// for `delay`, then `stop` the server.
async fn terminate_on_signal(
    state: Arc<AppState>,
    delay: Duration,
    terminate: watch::Sender<bool>,
    stop: watch::Sender<bool>,
) {
    termination_signal().await;
    // Not ready first, and keep serving while endpoints and API servers catch up: a webhook
    // that stops accepting at once makes in-transit admissions hit the failurePolicy.
    state.serving.store(false, Ordering::Relaxed);
    terminate.send_replace(true);
    info!(
        delay_seconds = delay.as_secs_f64(),
        "termination signal: not ready, draining after the delay"
    );
    tokio::time::sleep(delay).await;
    stop.send_replace(true);
}
