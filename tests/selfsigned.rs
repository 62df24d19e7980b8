//! `--self-signed-secret` against the in-repo fake API server (Secrets) behind the webhook
//! configuration proxy of `support/webhookconfig.rs`: replicas racing to create the Secret, the
//! caBundle of both configurations, a rotation during which a client trusting only the published
//! bundle never fails a handshake, and the real `pullgate serve` end to end.
//!
//! Every wait polls against a deadline; nothing sleeps to synchronise. The rotation runs on a
//! [`TestClock`] the test moves (the checks decide with it, the probing client verifies with it):
//! no test waits for a certificate to age.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;
#[allow(dead_code)]
use pullgate::metrics::Metrics;
use pullgate::tls::rotation::{Material, CA_CRT, CA_KEY, TLS_CRT, TLS_KEY};
use pullgate::tls::runner::{Managed, Settings};
use pullgate::tls::CertResolver;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::clock::TestClock;
use support::fake_api::FakeApi;
use support::serve::ServeProcess;
use support::webhookconfig::{ca_bundles, webhook_configuration, Kind, WebhookConfigs};
use support::{eventually, fixtures, logs, poll, DEADLINE};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const NS: &str = "pullgate";
const SECRET: &str = "pullgate-tls";
const MUTATING: &str = "pullgate-mutating";
const VALIDATING: &str = "pullgate-validating";
const SERVICE_NAME: &str = "pullgate.pullgate.svc";

/// The fake, the proxy, the namespace, and the two configurations as the chart renders them.
async fn cluster(with_validating: bool) -> (FakeApi, WebhookConfigs) {
    support::install_crypto();
    logs::capture();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace(NS, &[]));
    let proxy = WebhookConfigs::start(&fake).await;
    proxy.put(webhook_configuration(
        Kind::Mutating,
        MUTATING,
        "pullgate",
        NS,
    ));
    if with_validating {
        proxy.put(webhook_configuration(
            Kind::Validating,
            VALIDATING,
            "pullgate",
            NS,
        ));
    }
    (fake, proxy)
}

fn settings() -> Settings {
    Settings::new(
        NS.to_owned(),
        SECRET.to_owned(),
        vec![MUTATING.to_owned(), VALIDATING.to_owned()],
    )
}

fn secret_material(fake: &FakeApi) -> Option<Material> {
    let s = fake.get("secrets", NS, SECRET)?;
    let data: BTreeMap<String, k8s_openapi::ByteString> =
        serde_json::from_value(s["data"].clone()).ok()?;
    Some(Material::from_data(Some(&data)))
}

fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// The bundle every webhook of a configuration carries (asserting they all carry the same).
fn published(proxy: &WebhookConfigs, kind: Kind, name: &str) -> Option<Vec<u8>> {
    let cfg = proxy.get(kind, name)?;
    let bundles = ca_bundles(&cfg);
    let first = bundles.first()?.clone();
    assert!(
        bundles.iter().all(|b| *b == first),
        "webhooks of {name} disagree"
    );
    first
}

/// A TLS server that completes handshakes with `resolver` and closes.
async fn tls_server(resolver: Arc<CertResolver>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let cfg = pullgate::tls::server_config(resolver).expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    (addr, task)
}

/// Handshake as the API server would: trusting only `bundle`, for the Service's name, at the
/// real time. Returns the served certificate.
async fn handshake(addr: SocketAddr, bundle: &[u8]) -> Result<CertificateDer<'static>, String> {
    handshake_at(
        addr,
        bundle,
        Arc::new(rustls::time_provider::DefaultTimeProvider),
    )
    .await
}

/// [`handshake`], verifying the certificate at the time `time` reads.
async fn handshake_at(
    addr: SocketAddr,
    bundle: &[u8],
    time: Arc<dyn rustls::time_provider::TimeProvider>,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_details(provider, time)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(SERVICE_NAME).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "no peer certificate".to_owned())
}

/// Key material must never be logged: neither the PEM nor its base64 body.
fn assert_not_logged(keys: &[Vec<u8>]) {
    let logged = logs::text();
    assert!(!logged.contains("PRIVATE KEY"), "a private key was logged");
    for k in keys {
        let text = String::from_utf8_lossy(k);
        for line in text
            .lines()
            .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        {
            assert!(!logged.contains(line), "key material was logged");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_to_create_the_secret_end_with_one_ca_published_on_both_configurations()
{
    let (fake, proxy) = cluster(true).await;
    // Hold the API so both replicas read "no Secret" before either creates it.
    fake.set_stalled(true);
    let start = |client| Managed::start(client, settings(), Arc::new(Metrics::new()));
    let a = tokio::spawn(start(proxy.client().await));
    let b = tokio::spawn(start(proxy.client().await));
    let secret_path = format!("/api/v1/namespaces/{NS}/secrets/{SECRET}");
    let gets = || {
        fake.request_log()
            .iter()
            .filter(|r| r.method == "GET" && r.path == secret_path)
            .count()
    };
    eventually("both replicas to read the Secret", || gets() >= 2).await;
    fake.set_stalled(false);
    let a = a.await.expect("join").expect("replica a starts");
    let b = b.await.expect("join").expect("replica b starts");

    let posts: Vec<Option<u16>> = fake
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/secrets"))
        .map(|r| r.status)
        .collect();
    assert_eq!(posts.len(), 2, "both replicas tried to create: {posts:?}");
    assert!(
        posts.contains(&Some(201)) && posts.contains(&Some(409)),
        "{posts:?}"
    );

    let m = secret_material(&fake).expect("the Secret");
    let secret = fake.get("secrets", NS, SECRET).expect("the Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    for key in [TLS_CRT, TLS_KEY, CA_CRT, CA_KEY] {
        assert!(secret["data"][key].is_string(), "{key}");
    }
    let cas = certs(&m.ca_bundle);
    assert_eq!(cas.len(), 1, "one CA");

    // Both configurations, every webhook, carry exactly that CA.
    for (kind, name) in [(Kind::Mutating, MUTATING), (Kind::Validating, VALIDATING)] {
        assert_eq!(
            published(&proxy, kind, name).as_deref(),
            Some(&m.ca_bundle[..]),
            "{name}"
        );
    }
    // Both replicas serve the Secret's certificate, which the published bundle trusts.
    let leaf = certs(&m.tls_crt)[0].clone();
    for replica in [&a, &b] {
        let (addr, server) = tls_server(replica.resolver()).await;
        assert_eq!(handshake(addr, &m.ca_bundle).await, Ok(leaf.clone()));
        server.abort();
    }
    assert_not_logged(&[m.ca_key.clone(), m.tls_key.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_are_published_when_they_appear_and_repaired_when_they_drift() {
    // The validating configuration is missing at start (Helm creates webhooks after Deployments).
    let (fake, proxy) = cluster(false).await;
    let mut s = settings();
    s.check_interval = Duration::from_millis(100);
    s.retry = Duration::from_millis(50);
    let managed = Managed::start(proxy.client().await, s, Arc::new(Metrics::new()))
        .await
        .expect("starts without the validating configuration");
    let resolver = managed.resolver();
    let task = tokio::spawn(managed.run());
    let m = secret_material(&fake).expect("the Secret");
    assert_eq!(
        published(&proxy, Kind::Mutating, MUTATING).as_deref(),
        Some(&m.ca_bundle[..])
    );
    assert!(logs::text().contains("webhook configuration not found"));

    // It appears with an empty caBundle: published at the next check.
    proxy.put(webhook_configuration(
        Kind::Validating,
        VALIDATING,
        "pullgate",
        NS,
    ));
    eventually("the validating configuration to be published", || {
        published(&proxy, Kind::Validating, VALIDATING).as_deref() == Some(&m.ca_bundle[..])
    })
    .await;

    // Someone re-applies the mutating configuration without a caBundle: repaired.
    proxy.put(webhook_configuration(
        Kind::Mutating,
        MUTATING,
        "pullgate",
        NS,
    ));
    eventually("the mutating caBundle to be repaired", || {
        published(&proxy, Kind::Mutating, MUTATING).as_deref() == Some(&m.ca_bundle[..])
    })
    .await;

    // A failing patch is retried.
    proxy.fail_next_patches(2);
    proxy.put(webhook_configuration(
        Kind::Validating,
        VALIDATING,
        "pullgate",
        NS,
    ));
    eventually(
        "the validating caBundle to be repaired after failures",
        || published(&proxy, Kind::Validating, VALIDATING).as_deref() == Some(&m.ca_bundle[..]),
    )
    .await;
    assert!(proxy.patch_log().iter().any(|(_, _, code)| *code == 500));

    // Nothing about the Secret changed along the way: the same certificate is served.
    assert_eq!(secret_material(&fake), Some(m.clone()));
    let (addr, server) = tls_server(resolver).await;
    assert_eq!(
        handshake(addr, &m.ca_bundle).await,
        Ok(certs(&m.tls_crt)[0].clone())
    );
    server.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_secret_is_regenerated() {
    let (fake, proxy) = cluster(true).await;
    fake.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": SECRET, "namespace": NS },
        "type": "kubernetes.io/tls",
        "data": { "tls.crt": fixtures::b64("junk"), "tls.key": fixtures::b64("junk"), "ca.crt": fixtures::b64("junk") },
    }));
    let managed = Managed::start(proxy.client().await, settings(), Arc::new(Metrics::new()))
        .await
        .expect("starts");
    let m = secret_material(&fake).expect("the Secret");
    assert_eq!(certs(&m.ca_bundle).len(), 1);
    assert_eq!(
        published(&proxy, Kind::Validating, VALIDATING).as_deref(),
        Some(&m.ca_bundle[..])
    );
    let (addr, server) = tls_server(managed.resolver()).await;
    let served = handshake(addr, &m.ca_bundle).await.expect("handshake");
    assert_eq!(
        served,
        certs(&m.tls_crt)[0],
        "serves the regenerated certificate"
    );
    server.abort();

    // A Secret of another type is left alone, and the error says why.
    fake.delete("secrets", NS, SECRET);
    fake.apply(fixtures::opaque_secret(NS, SECRET, "k", "v"));
    let mut s = settings();
    s.startup_timeout = Duration::from_millis(100);
    let err = Managed::start(proxy.client().await, s, Arc::new(Metrics::new()))
        .await
        .err()
        .expect("an Opaque Secret is refused");
    assert!(err.to_string().contains("Opaque"), "{err}");
    assert_eq!(
        fake.get("secrets", NS, SECRET).expect("kept")["type"],
        "Opaque"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_secret_is_replaced_and_served_at_the_next_check() {
    let (fake, proxy) = cluster(true).await;
    let clock = TestClock::new();
    let mut s = settings();
    s.clock = clock.clock();
    s.check_interval = Duration::from_millis(100);
    let managed = Managed::start(proxy.client().await, s, Arc::new(Metrics::new()))
        .await
        .expect("starts");
    let (addr, server) = tls_server(managed.resolver()).await;
    let task = tokio::spawn(managed.run());
    let m0 = secret_material(&fake).expect("the Secret");

    // A year and a day later (a cluster restored from an old backup, say): the CA and the
    // certificate have expired, and neither is kept.
    clock.advance(Duration::from_secs(366 * 86_400));
    let m1 = poll("a new CA in the Secret", DEADLINE, || {
        std::future::ready(secret_material(&fake).filter(|m| m.ca_bundle != m0.ca_bundle))
    })
    .await;
    assert_eq!(certs(&m1.ca_bundle).len(), 1, "the expired CA is dropped");
    assert_ne!(m1.tls_crt, m0.tls_crt);
    eventually("the new bundle to be published", || {
        published(&proxy, Kind::Validating, VALIDATING).as_deref() == Some(&m1.ca_bundle[..])
    })
    .await;
    let leaf1 = certs(&m1.tls_crt)[0].clone();
    poll("the new certificate to be served", DEADLINE, || async {
        handshake_at(addr, &m1.ca_bundle, Arc::new(clock.clone()))
            .await
            .ok()
            .filter(|c| *c == leaf1)
    })
    .await;
    // The expired certificate is refused by a client at that time: the test's clock is the one
    // the client verifies with.
    let (old_addr, old_server) = tls_server(Arc::new(CertResolver::new(
        m0.serving().expect("the old pair loads").key,
    )))
    .await;
    assert!(
        handshake_at(old_addr, &m0.ca_bundle, Arc::new(clock.clone()))
            .await
            .is_err_and(|e| e.contains("xpired"))
    );
    old_server.abort();
    server.abort();
    task.abort();
}

/// Probes like the API server, trusting whatever bundle the validating configuration carries at
/// that moment; counts successes and failures and records the certificates seen.
struct Prober {
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(proxy: Arc<WebhookConfigs>, addr: SocketAddr, clock: TestClock) -> Prober {
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, f, s, st) = (ok.clone(), failures.clone(), seen.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Acquire) {
                let bundle = published(&proxy, Kind::Validating, VALIDATING).unwrap_or_default();
                match handshake_at(addr, &bundle, Arc::new(clock.clone())).await {
                    Ok(cert) => {
                        o.fetch_add(1, Ordering::AcqRel);
                        let mut seen = s.lock().unwrap_or_else(|p| p.into_inner());
                        if seen.last() != Some(&cert) {
                            seen.push(cert);
                        }
                    }
                    Err(e) => f.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                }
                // Pacing of the probe loop (not a synchronisation): a handshake every ~15 ms.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        });
        Prober {
            ok,
            failures,
            seen,
            stop,
            task,
        }
    }

    fn seen(&self) -> Vec<CertificateDer<'static>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn finish(self) -> (usize, Vec<String>, Vec<CertificateDer<'static>>) {
        self.stop.store(true, Ordering::Release);
        let _ = self.task.await;
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (self.ok.load(Ordering::Acquire), failures, seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_ca_trusted_while_the_new_certificate_is_served() {
    let (fake, proxy) = cluster(true).await;
    let proxy = Arc::new(proxy);
    // The default lifetime of a year: rotation starts with a third left, and the old CA stays in
    // the bundle until it expires. The test moves the clock; checks run every 150 ms.
    let clock = TestClock::new();
    let t0 = clock.now();
    let mut s = settings();
    s.clock = clock.clock();
    s.check_interval = Duration::from_millis(150);
    s.settle = Duration::from_millis(300);
    s.retry = Duration::from_millis(50);
    let metrics = Arc::new(Metrics::new());
    let managed = Managed::start(proxy.client().await, s, metrics.clone())
        .await
        .expect("starts");
    let (addr, server) = tls_server(managed.resolver()).await;
    let task = tokio::spawn(managed.run());
    let m0 = secret_material(&fake).expect("the Secret");
    let ca0 = certs(&m0.ca_bundle)[0].clone();
    let leaf0 = certs(&m0.tls_crt)[0].clone();
    let expiry0 = metrics.cert_expiry.get();
    let prober = Prober::start(proxy.clone(), addr, clock.clone());

    // Just before two thirds of the lifetime, whole checks run and change nothing.
    let day = Duration::from_secs(86_400);
    clock.advance(day * 240);
    let secret_path = format!("/api/v1/namespaces/{NS}/secrets/{SECRET}");
    let reads = || {
        fake.request_log()
            .iter()
            .filter(|r| r.method == "GET" && r.path == secret_path)
            .count()
    };
    let before = reads();
    eventually("two checks at day 240", || reads() >= before + 2).await;
    assert_eq!(
        secret_material(&fake),
        Some(m0.clone()),
        "nothing rotates early"
    );

    // The configurations are current, so the next patches are the rotation's: the first ones fail.
    // A certificate signed by the new CA served before the patches succeed fails the prober.
    proxy.fail_next_patches(4);
    clock.advance(day * 10);

    // Step 1: a new CA next to the old one, in the Secret, while the old certificate stays.
    let m1 = poll("a new CA in the Secret", DEADLINE, || {
        let m = secret_material(&fake).filter(|m| certs(&m.ca_bundle).len() == 2);
        std::future::ready(m)
    })
    .await;
    let bundle1 = certs(&m1.ca_bundle);
    assert_eq!(bundle1[1], ca0, "the old CA stays, after the new one");
    assert_ne!(bundle1[0], ca0);
    assert_eq!(
        m1.tls_crt, m0.tls_crt,
        "step 1 keeps the served certificate"
    );

    // Step 2: the new certificate is served only once the configurations trust its CA.
    let leaf1 = poll("the new certificate to be served", DEADLINE, || {
        let seen = prober.seen();
        std::future::ready(seen.last().filter(|c| **c != leaf0).cloned())
    })
    .await;
    let patches = proxy.patch_log();
    assert_eq!(
        patches.iter().filter(|p| p.2 == 500).count(),
        4,
        "{patches:?}"
    );
    for name in [MUTATING, VALIDATING] {
        assert!(
            patches.iter().any(|p| p.1 == name && p.2 == 200),
            "{name} was patched before the new certificate was served: {patches:?}"
        );
    }
    let now_published = published(&proxy, Kind::Validating, VALIDATING).expect("bundle");
    let published_cas = certs(&now_published);
    assert_eq!(
        published_cas.first(),
        Some(&bundle1[0]),
        "the new CA is published first"
    );
    assert!(
        published_cas.contains(&ca0),
        "the old CA is still trusted while the new certificate is served"
    );
    assert_eq!(
        published(&proxy, Kind::Mutating, MUTATING),
        Some(now_published.clone())
    );
    let m2 = secret_material(&fake).expect("the Secret");
    assert_eq!(
        certs(&m2.tls_crt)[0],
        leaf1,
        "the served certificate is the Secret's"
    );
    assert_ne!(
        metrics.cert_expiry.get(),
        expiry0,
        "the expiry metric follows the swap"
    );

    // After: the old CA expires and leaves the bundle; handshakes go on.
    clock.set(t0 + 365 * 86_400 + 1);
    poll("the old CA to leave the bundle", DEADLINE, || {
        let pruned = published(&proxy, Kind::Validating, VALIDATING)
            .map(|b| certs(&b))
            .filter(|c| c.len() == 1 && !c.contains(&ca0));
        std::future::ready(pruned)
    })
    .await;
    let before = prober.ok.load(Ordering::Acquire);
    eventually("handshakes after the rotation", || {
        prober.ok.load(Ordering::Acquire) > before + 3
    })
    .await;

    let (ok, failures, seen) = prober.finish().await;
    task.abort();
    server.abort();
    assert!(
        failures.is_empty(),
        "{} failed handshakes: {failures:?}",
        failures.len()
    );
    assert!(ok > 10, "{ok} handshakes: the prober ran throughout");
    // The old certificate, then the new one, and never back.
    assert_eq!(seen.first(), Some(&leaf0));
    assert_eq!(seen.get(1), Some(&leaf1));
    let keys: Vec<Vec<u8>> = [&m0, &m1, &m2]
        .iter()
        .flat_map(|m| [m.ca_key.clone(), m.tls_key.clone()])
        .collect();
    assert_not_logged(&keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_self_signed_secret_end_to_end() {
    let (fake, proxy) = cluster(true).await;
    let manifests = tempfile::tempdir().expect("temp dir");
    let served = ServeProcess::spawn(
        [
            OsStr::new("--manifests"),
            manifests.path().as_os_str(),
            OsStr::new("--kubeconfig"),
            proxy.kubeconfig_path().as_os_str(),
            OsStr::new("--self-signed-secret"),
            OsStr::new(SECRET),
            OsStr::new("--webhook-configuration"),
            OsStr::new(MUTATING),
            OsStr::new("--webhook-configuration"),
            OsStr::new(VALIDATING),
        ],
        &[("POD_NAMESPACE", NS), ("RUST_LOG", "debug")],
        DEADLINE,
    );
    let listen = served.listen;

    let m = secret_material(&fake).expect("the Secret");
    let secret = fake.get("secrets", NS, SECRET).expect("the Secret");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "pullgate"
    );
    let bundle = published(&proxy, Kind::Validating, VALIDATING).expect("published");
    assert_eq!(bundle, m.ca_bundle);
    assert_eq!(
        published(&proxy, Kind::Mutating, MUTATING),
        Some(bundle.clone())
    );

    // An HTTPS client trusting only the published bundle, addressing the Service name.
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve(SERVICE_NAME, listen);
    for c in reqwest::Certificate::from_pem_bundle(&bundle).expect("bundle") {
        b = b.add_root_certificate(c);
    }
    let client = b.build().expect("client");
    let resp = client
        .get(format!("https://{SERVICE_NAME}:{}/healthz", listen.port()))
        .send()
        .await
        .expect("an HTTPS request trusting the published bundle");
    assert_eq!(resp.status(), 200);

    let output = served.lines().join("\n");
    assert!(!output.contains("PRIVATE KEY"), "a private key was logged");
    for k in [&m.ca_key, &m.tls_key] {
        for line in String::from_utf8_lossy(k)
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!output.contains(line), "key material was logged");
        }
    }
    drop(served);
}
