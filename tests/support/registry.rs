//! Registries for the credential-verification tests and bench, all on loopback:
//!
//! - [`RealRegistry`]: Debian's `docker-registry` binary (the distribution registry, what
//!   most private registries run) started with TLS and htpasswd basic auth or token auth.
//! - [`Realm`]: a minimal bearer-token realm (checks HTTP Basic, issues an opaque token).
//! - [`FakeRegistry`]: a scriptable `/v2/` (challenges, redirects, slowness, 5xx) that counts
//!   requests and the most it served at once; with [`Behaviour::Trap`] it proves nothing reached it.
//!
//! Every server uses certificates from `pullgate::tls::certs::generate` (one test CA, SANs for
//! localhost and 127.0.0.1–3), or [`TestPki::self_signed`]'s certificate that is its own CA, so
//! tests can trust it with a `caFile` or leave it untrusted.
#![allow(dead_code)]

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where Debian's package installs the registry (override with `PULLGATE_TEST_REGISTRY_BIN`).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The test CA and a server certificate for localhost and 127.0.0.1–3, as files and as a
/// rustls server configuration.
pub struct TestPki {
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM) file: the `caFile` that makes the servers trusted.
    pub ca_file: PathBuf,
    /// The server certificate (PEM) file.
    pub cert_file: PathBuf,
    /// The server key (PEM) file.
    pub key_file: PathBuf,
    /// rustls configuration serving that certificate.
    pub server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    /// Generate a fresh CA and server certificate.
    pub fn new() -> TestPki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ips: Vec<IpAddr> = (1..=3).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        let g = pullgate::tls::certs::generate(&["localhost".to_owned()], &ips, 2)
            .expect("generate test certificates");
        let dir = tempfile::tempdir().expect("pki dir");
        let write = |name: &str, pem: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).expect("write pem");
            p
        };
        let ca_file = write("ca.crt", &g.ca_cert_pem);
        let cert_file = write("tls.crt", &g.tls_cert_pem);
        let key_file = write("tls.key", &g.tls_key_pem);
        TestPki::serving(
            dir,
            ca_file,
            cert_file,
            key_file,
            &g.tls_cert_pem,
            &g.tls_key_pem,
        )
    }

    /// A registry certificate made like the distribution registry's recipe
    /// (`openssl req -x509 -newkey … -addext "subjectAltName=…"`): self-signed and therefore its
    /// own CA (basicConstraints CA:TRUE), for localhost and 127.0.0.1–3. The `caFile` is that
    /// very certificate, as the recipe has containerd and Docker trust it.
    pub fn self_signed() -> TestPki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("certificate names");
        params
            .subject_alt_names
            .extend((1..=3).map(|i| rcgen::SanType::IpAddress(IpAddr::from([127, 0, 0, i]))));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(2);
        let cert = params.self_signed(&key).expect("self-sign");
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let dir = tempfile::tempdir().expect("pki dir");
        let cert_file = dir.path().join("domain.crt");
        let key_file = dir.path().join("domain.key");
        std::fs::write(&cert_file, &cert_pem).expect("write pem");
        std::fs::write(&key_file, &key_pem).expect("write pem");
        TestPki::serving(
            dir,
            cert_file.clone(),
            cert_file,
            key_file,
            &cert_pem,
            &key_pem,
        )
    }

    fn serving(
        dir: tempfile::TempDir,
        ca_file: PathBuf,
        cert_file: PathBuf,
        key_file: PathBuf,
        cert_pem: &str,
        key_pem: &str,
    ) -> TestPki {
        let loaded = pullgate::tls::load_pem_pair(
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
            "test cert",
            "test key",
        )
        .expect("load test certificate");
        let resolver = Arc::new(pullgate::tls::CertResolver::new(loaded.key));
        let server = Arc::new(pullgate::tls::server_config(resolver).expect("server config"));
        TestPki {
            _dir: dir,
            ca_file,
            cert_file,
            key_file,
            server,
        }
    }
}

/// A server started by the tests; stops accepting when dropped.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// `host:port` as a registry key or URL authority.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `router` on `ip` (a free port), over TLS with `pki` or plain HTTP without.
pub async fn serve(ip: &str, pki: Option<&TestPki>, router: Router) -> Served {
    let listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .expect("bind a test server");
    let addr = listener.local_addr().expect("test server address");
    let task = match pki {
        Some(pki) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    // As a registry's server would: small responses go out at once.
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let service = hyper_util::service::TowerToHyperService::new(router.clone());
                    tokio::spawn(async move {
                        // A failed handshake (an untrusting client) just ends the connection.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                    });
                }
            })
        }
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }),
    };
    Served { addr, task }
}

/// The `Authorization: Basic` credential of a request, decoded.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

// ---- the real registry ----

/// How the real registry authenticates.
pub enum Auth {
    /// htpasswd basic auth with these users (bcrypt lines from `htpasswd -Bbn`).
    Htpasswd(Vec<(String, String)>),
    /// Token auth: a Bearer challenge naming this realm URL and service.
    Token {
        /// The realm URL.
        realm: String,
        /// The service name.
        service: String,
    },
}

/// Fails the test, naming the install command, unless the real registry and htpasswd are
/// here: `.ci/run` installs them, and a test without its tool must not pass.
pub fn require_real_registry(test: &str) {
    let bin = registry_bin();
    if !bin.exists() {
        panic!(
            "{test}: {} is missing: apt-get install docker-registry (.ci/run installs it)",
            bin.display()
        );
    }
    if which("htpasswd").is_none() {
        panic!("{test}: htpasswd is missing: apt-get install apache2-utils (.ci/run installs it)");
    }
}

fn registry_bin() -> PathBuf {
    std::env::var_os("PULLGATE_TEST_REGISTRY_BIN")
        .map_or_else(|| PathBuf::from(REGISTRY_BIN), PathBuf::from)
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

/// A bcrypt htpasswd line for `user`/`password`.
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "htpasswd failed: {:?}", out);
    String::from_utf8(out.stdout)
        .expect("htpasswd output")
        .trim()
        .to_owned()
}

/// A running `docker-registry serve`; killed when dropped.
pub struct RealRegistry {
    child: Option<Child>,
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RealRegistry {
    /// Start the registry on a free port of 127.0.0.1 with TLS from `pki`, and wait until it accepts connections.
    pub async fn start(pki: &TestPki, auth: Auth) -> RealRegistry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("port").port()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let auth_yaml = match &auth {
            Auth::Htpasswd(users) => {
                let file = dir.path().join("htpasswd");
                let lines: Vec<String> = users.iter().map(|(u, p)| htpasswd_line(u, p)).collect();
                std::fs::write(&file, lines.join("\n") + "\n").expect("write htpasswd");
                format!("  htpasswd:\n    realm: pullgate-test\n    path: {}\n", file.display())
            }
            Auth::Token { realm, service } => format!(
                "  token:\n    realm: {realm}\n    service: {service}\n    issuer: pullgate-test-issuer\n    rootcertbundle: {}\n",
                pki.ca_file.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: pullgate-test-secret\n  tls:\n    certificate: {}\n    key: {}\nauth:\n{auth_yaml}",
            dir.path().join("data").display(),
            pki.cert_file.display(),
            pki.key_file.display(),
        );
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("write registry config");
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).expect("registry log");
        let err = out.try_clone().expect("registry log");
        let child = Command::new(registry_bin())
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start docker-registry");
        let mut registry = RealRegistry {
            child: Some(child),
            addr,
            log,
            _dir: dir,
        };
        registry.wait_ready().await;
        registry
    }

    async fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("docker-registry exited ({status}):\n{}", self.log_text());
                }
            }
            assert!(
                Instant::now() < end,
                "docker-registry did not listen on {} within 20 s:\n{}",
                self.addr,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The registry key of this registry (`127.0.0.1:port`).
    pub fn key(&self) -> String {
        self.addr.to_string()
    }

    /// Everything the registry logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests from pullgate's prober the registry logged (its access log names the user agent).
    pub fn probe_requests(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("pullgate/"))
            .count()
    }

    /// Kill the registry (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- the token realm ----

/// One request the realm received.
#[derive(Debug, Clone)]
pub struct RealmRequest {
    /// The query string.
    pub query: String,
    /// The Basic username, if any.
    pub user: Option<String>,
    /// Whether the credential matched.
    pub accepted: bool,
}

#[derive(Default)]
struct RealmState {
    user: String,
    password: String,
    redirect_to: Option<String>,
    seen: Mutex<Vec<RealmRequest>>,
    issued: AtomicUsize,
}

/// A minimal bearer-token realm: `GET /token` with the right HTTP Basic credential gets
/// `{"token": …}`, anything else 401.
pub struct Realm {
    /// The server.
    pub served: Served,
    state: Arc<RealmState>,
}

impl Realm {
    /// Start a realm on `ip` (HTTPS) accepting `user`/`password`; with `redirect_to`, every
    /// request is redirected there instead.
    pub async fn start(
        ip: &str,
        pki: &TestPki,
        user: &str,
        password: &str,
        redirect_to: Option<String>,
    ) -> Realm {
        let state = Arc::new(RealmState {
            user: user.to_owned(),
            password: password.to_owned(),
            redirect_to,
            ..Default::default()
        });
        let router = Router::new()
            .route("/token", axum::routing::get(realm_token))
            .with_state(state.clone());
        Realm {
            served: serve(ip, Some(pki), router).await,
            state,
        }
    }

    /// The realm URL for a registry's challenge.
    pub fn url(&self) -> String {
        format!("https://{}/token", self.served.addr)
    }

    /// What the realm received.
    pub fn seen(&self) -> Vec<RealmRequest> {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Tokens issued.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }
}

async fn realm_token(State(st): State<Arc<RealmState>>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or_default().to_owned();
    let cred = basic(req.headers());
    let accepted = cred
        .as_ref()
        .is_some_and(|(u, p)| *u == st.user && *p == st.password);
    if let Ok(mut seen) = st.seen.lock() {
        seen.push(RealmRequest {
            query,
            user: cred.map(|(u, _)| u),
            accepted,
        });
    }
    if let Some(to) = &st.redirect_to {
        return (StatusCode::FOUND, [(header::LOCATION, to.clone())]).into_response();
    }
    if !accepted {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"pullgate-test-realm\"",
            )],
            "{\"details\":\"incorrect username or password\"}",
        )
            .into_response();
    }
    let n = st.issued.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"token\":\"opaque-test-token-{n}\",\"expires_in\":300}}"),
    )
        .into_response()
}

// ---- the scriptable fake registry ----

/// What the fake `/v2/` does.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Basic auth: 401 with a Basic challenge, 200 for the right credential.
    Basic {
        /// Accepted username.
        user: String,
        /// Accepted password.
        password: String,
    },
    /// A Bearer challenge naming `realm` (the registry names it; the realm judges).
    Bearer {
        /// Realm URL.
        realm: String,
    },
    /// Every request redirected to `to`.
    Redirect {
        /// Target URL.
        to: String,
    },
    /// 401 Basic without a credential; a request with one is redirected to `to`.
    RedirectAuthenticated {
        /// Target URL.
        to: String,
    },
    /// Always this status (a 401 without a challenge, a 5xx, …).
    Status(u16),
    /// Records whatever arrives and answers 200: nothing should.
    Trap,
}

/// Counters of a fake registry.
#[derive(Default)]
pub struct Stats {
    /// Requests received.
    pub requests: AtomicUsize,
    /// Requests that carried an Authorization header.
    pub with_authorization: AtomicUsize,
    /// Requests being handled now.
    pub in_flight: AtomicUsize,
    /// The most handled at once.
    pub max_in_flight: AtomicUsize,
    /// Credentials accepted.
    pub accepted: AtomicUsize,
}

struct FakeState {
    behaviour: Behaviour,
    latency: Duration,
    stats: Arc<Stats>,
}

/// A scriptable registry `/v2/` over HTTPS (or plain HTTP).
pub struct FakeRegistry {
    /// The server.
    pub served: Served,
    /// Its counters.
    pub stats: Arc<Stats>,
}

impl FakeRegistry {
    /// Start on `ip`; every request takes `latency` first (a slow registry, or network delay).
    pub async fn start(
        ip: &str,
        pki: Option<&TestPki>,
        behaviour: Behaviour,
        latency: Duration,
    ) -> FakeRegistry {
        let stats = Arc::new(Stats::default());
        let state = Arc::new(FakeState {
            behaviour,
            latency,
            stats: stats.clone(),
        });
        let router = Router::new().fallback(fake_v2).with_state(state);
        FakeRegistry {
            served: serve(ip, pki, router).await,
            stats,
        }
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }
}

struct InFlight(Arc<Stats>);

impl InFlight {
    fn enter(stats: &Arc<Stats>) -> InFlight {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn fake_v2(State(st): State<Arc<FakeState>>, req: Request) -> Response {
    let stats = &st.stats;
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let cred = basic(req.headers());
    if req.headers().contains_key(header::AUTHORIZATION) {
        stats.with_authorization.fetch_add(1, Ordering::SeqCst);
    }
    let _in_flight = InFlight::enter(stats);
    if !st.latency.is_zero() {
        tokio::time::sleep(st.latency).await;
    }
    let challenge_basic = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"fake\"".to_owned())],
        )
            .into_response()
    };
    match &st.behaviour {
        Behaviour::Basic { user, password } => match cred {
            Some((u, p)) if u == *user && p == *password => {
                stats.accepted.fetch_add(1, Ordering::SeqCst);
                (StatusCode::OK, "{}").into_response()
            }
            _ => challenge_basic(),
        },
        Behaviour::Bearer { realm } => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"{realm}\",service=\"fake-registry\""),
            )],
        )
            .into_response(),
        Behaviour::Redirect { to } => {
            (StatusCode::FOUND, [(header::LOCATION, to.clone())]).into_response()
        }
        Behaviour::RedirectAuthenticated { to } => {
            if cred.is_some() {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, to.clone())],
                )
                    .into_response()
            } else {
                challenge_basic()
            }
        }
        Behaviour::Status(s) => StatusCode::from_u16(*s)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Behaviour::Trap => (StatusCode::OK, "{}").into_response(),
    }
}

/// A policy YAML `verify` section for tests: `registries` entries `(pattern, caFile, insecure)`.
pub fn verify_policy(deny: bool, timeout: &str, entries: &[(&str, Option<&Path>, bool)]) -> String {
    let mut yaml =
        format!("verify:\n  enabled: true\n  deny: {deny}\n  timeout: {timeout}\n  registries:\n");
    if entries.is_empty() {
        yaml.push_str("  - pattern: 'none.invalid'\n");
    }
    for (pattern, ca, insecure) in entries {
        yaml.push_str(&format!(
            "  - pattern: '{pattern}'\n    insecure: {insecure}\n"
        ));
        if let Some(ca) = ca {
            yaml.push_str(&format!("    caFile: {}\n", ca.display()));
        }
    }
    yaml
}
