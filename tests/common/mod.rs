//! Shared helpers of the integration tests: certificates from the real binary, an in-process TLS
//! server, a spawned `pullgate serve` whose bound ports come from its log (tests/support/serve.rs), AdmissionReview
//! builders, a raw HTTP/1.1-over-TLS client (for keep-alive and half-sent bodies), and polling.
//!
//! Every wait is a poll against a deadline; nothing sleeps to synchronise.
#![allow(dead_code)]

use base64::Engine;
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::server::{self, AppState};
use pullgate::store::files::FileStore;
use pullgate::tls::{self, CertResolver};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The password inside every example pull secret (examples/cluster).
pub const EXAMPLE_PASSWORD: &str = "example-password-not-real";
/// A password planted by the tests in their own manifests; it must never be printed or served.
pub const PLANTED_PASSWORD: &str = "Planted-Pw-7f3kQ9xZ-c0rgi";
/// The user of the planted credentials.
pub const PLANTED_USER: &str = "planted-user";
/// Longest wait for anything the tests poll for.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {s}"))
}

/// The `pullgate` binary built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pullgate")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn examples() -> PathBuf {
    root().join("examples")
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// A fresh directory under the target dir (kept for post-mortems; `cargo clean` removes it).
pub fn scratch(name: &str) -> tempfile::TempDir {
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("target tmp dir");
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("scratch dir")
}

/// Install the ring provider as the process default once (tests share a process).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Poll `f` until it returns `Some`, or panic naming `what` after `deadline`.
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Blocking variant of [`poll`] for plain `#[test]`s.
pub fn poll_blocking<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A directory written by `pullgate certs`.
#[derive(Debug, Clone)]
pub struct CertDir {
    pub dir: PathBuf,
    pub ca_pem: String,
    /// What `pullgate certs` printed (the caBundle).
    pub ca_bundle: String,
}

impl CertDir {
    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// Run `pullgate certs --out DIR` (the real binary) and read the CA back.
pub fn make_certs(dir: &Path) -> CertDir {
    let out = Command::new(bin())
        .args(["certs", "--out"])
        .arg(dir)
        .output()
        .expect("run pullgate certs");
    assert!(
        out.status.success(),
        "pullgate certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca_pem = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    CertDir {
        dir: dir.to_owned(),
        ca_pem,
        ca_bundle: String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned(),
    }
}

/// Remove `shared-*` directories of earlier test processes (statics are never dropped, so their
/// temporary directories outlive the process).
fn sweep_shared_dirs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old && e.file_name().to_string_lossy().starts_with("shared-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One certificate directory per test process.
pub fn shared_certs() -> &'static CertDir {
    static CERTS: OnceLock<(tempfile::TempDir, CertDir)> = OnceLock::new();
    &CERTS
        .get_or_init(|| {
            sweep_shared_dirs();
            let d = scratch("shared-certs");
            let c = make_certs(d.path());
            (d, c)
        })
        .1
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// Copy examples/cluster and tests/fixtures/manifests (namespaces wh-test and lab) into `dir`.
pub fn write_test_manifests(dir: &Path) {
    std::fs::create_dir_all(dir).expect("manifests dir");
    std::fs::copy(
        examples().join("cluster/cluster.yaml"),
        dir.join("cluster.yaml"),
    )
    .expect("copy cluster.yaml");
    for f in ["wh-test.yaml", "lab.yaml"] {
        std::fs::copy(fixtures().join("manifests").join(f), dir.join(f)).expect("copy fixture");
    }
}

/// A dockerconfigjson payload with one `auths` entry per (host, user, password).
pub fn docker_config_json(entries: &[(&str, &str, &str)]) -> String {
    let auths: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(h, u, p)| {
            (
                (*h).to_owned(),
                json!({"username": u, "password": p, "auth": b64(format!("{u}:{p}"))}),
            )
        })
        .collect();
    json!({ "auths": auths }).to_string()
}

fn secret_yaml(name: &str, ns: &str, ty: &str, key: &str, payload: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  creationTimestamp: \"2026-05-01T00:00:00Z\"\ntype: {ty}\ndata:\n  {key}: {}\n",
        b64(payload)
    )
}

/// Namespace `vault` (deny) whose secrets all carry [`PLANTED_PASSWORD`], several of them malformed
/// in ways whose error messages could be tempted to quote the payload.
pub fn planted_manifests() -> String {
    let p = PLANTED_PASSWORD;
    let u = PLANTED_USER;
    let dcj = "kubernetes.io/dockerconfigjson";
    let docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: vault\n  labels:\n    pullgate.io/validation: deny\n".to_owned(),
        secret_yaml("good", "vault", dcj, ".dockerconfigjson", &docker_config_json(&[("private.example.org", u, p)])),
        // auth that is not base64, and contains the password.
        secret_yaml("bad-auth", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"bad.example.org": {"auth": format!("{p}!!not base64")}}}).to_string()),
        // auth whose decoded form has no colon.
        secret_yaml("no-colon", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"colon.example.org": {"auth": b64(format!("{u}{p}"))}}}).to_string()),
        // an entry of the wrong JSON type (a string where an object belongs).
        secret_yaml("wrong-shape", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"shape.example.org": p}}).to_string()),
        // not JSON at all.
        secret_yaml("not-json", "vault", dcj, ".dockerconfigjson", &format!("{{auths: {p}")),
        // credential helpers next to a real entry.
        secret_yaml("helpers", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"helped.example.org": {"username": u, "password": p}}, "credHelpers": {"helped.example.org": p}}).to_string()),
        secret_yaml("legacy", "vault", "kubernetes.io/dockercfg", ".dockercfg",
            &json!({"legacy.example.org": {"username": u, "password": p, "auth": b64(format!("{u}:{p}"))}}).to_string()),
        secret_yaml("opaque", "vault", "Opaque", "password", p),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: vault\n".to_owned(),
    ];
    docs.join("---\n")
}

/// Everything that would betray a credential of the examples or of the planted secrets.
pub fn secret_needles() -> Vec<String> {
    let mut v = vec![
        EXAMPLE_PASSWORD.to_owned(),
        b64(EXAMPLE_PASSWORD),
        b64(format!("ci-bot:{EXAMPLE_PASSWORD}")),
        b64(format!("robot:{EXAMPLE_PASSWORD}")),
        PLANTED_PASSWORD.to_owned(),
        b64(PLANTED_PASSWORD),
        b64(format!("{PLANTED_USER}:{PLANTED_PASSWORD}")),
        b64(format!("{PLANTED_USER}{PLANTED_PASSWORD}")),
    ];
    // The stored payloads themselves (base64 of the whole config).
    let cluster =
        std::fs::read_to_string(examples().join("cluster/cluster.yaml")).expect("cluster.yaml");
    for line in cluster.lines() {
        let t = line.trim();
        if let Some((k, val)) = t.split_once(": ") {
            if k.starts_with('.') || k == "token" {
                v.push(val.trim().to_owned());
            }
        }
    }
    // Base64 of a password depends on its alignment: also look for the aligned middle part.
    for p in [EXAMPLE_PASSWORD, PLANTED_PASSWORD] {
        for pad in ["", "x", "xx"] {
            let e = b64(format!("{pad}{p}"));
            let start = if pad.is_empty() { 0 } else { 4 };
            let core: String = e.chars().skip(start).take(16).collect();
            v.push(core);
        }
    }
    v
}

/// The first credential material found in `text` (named `what`), with the line around it.
pub fn leak(what: &str, text: &str) -> Option<String> {
    secret_needles()
        .into_iter()
        .find(|n| text.contains(n.as_str()))
        .map(|n| format!("{what} leaks secret material {n:?}:\n{}", excerpt(text, &n)))
}

/// Panic if `text` (named `what`) contains any credential material.
pub fn assert_no_secrets(what: &str, text: &str) {
    if let Some(l) = leak(what, text) {
        panic!("{l}");
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let start = text[..i].rfind('\n').map_or(0, |n| n + 1);
    let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
    text[start..end].chars().take(600).collect()
}

// ---------------------------------------------------------------------------------------------
// AdmissionReviews

/// Read one fixture review (tests/fixtures/admission-reviews/NAME).
pub fn fixture_review(name: &str) -> Value {
    let p = fixtures().join("admission-reviews").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

/// The documents of a manifest file, as JSON.
pub fn manifest_docs(path: &Path) -> Vec<Value> {
    pullgate::manifests::load_paths(&[path.to_owned()])
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// The (only) object of examples/pods/NAME.yaml.
pub fn example_object(name: &str) -> Value {
    let docs = manifest_docs(&examples().join("pods").join(format!("{name}.yaml")));
    assert_eq!(docs.len(), 1, "{name}");
    docs.into_iter().next().expect("one document")
}

/// An AdmissionReview for `object` as the API server would send it (kind, resource and
/// namespace taken from the object).
pub fn review_for(api_version: &str, uid: &str, operation: &str, object: &Value) -> Value {
    let (group, version) = match object["apiVersion"]
        .as_str()
        .unwrap_or("v1")
        .split_once('/')
    {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap_or("v1").to_owned(),
        ),
    };
    let kind = object["kind"].as_str().unwrap_or("Pod").to_owned();
    let resource = match kind.as_str() {
        "ServiceAccount" => "serviceaccounts".to_owned(),
        k => format!("{}s", k.to_ascii_lowercase()),
    };
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": object["metadata"]["name"],
            "namespace": ns,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// A v1 CREATE review of `object`.
pub fn create_review(uid: &str, object: &Value) -> Value {
    review_for("admission.k8s.io/v1", uid, "CREATE", object)
}

/// A minimal pod in `ns` with one container per image.
pub fn pod(ns: &str, name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, img)| json!({"name": format!("c{i}"), "image": img}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": containers, "serviceAccountName": "default"}
    })
}

/// Apply the response's base64 JSONPatch to `object`.
pub fn apply_patch(object: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let raw = unb64(response["patch"].as_str().expect("patch is a string"));
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch is RFC 6902");
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| panic!("patch {patch:?} failed: {e}"));
    doc
}

/// The decoded patch operations.
pub fn patch_ops(response: &Value) -> Vec<Value> {
    serde_json::from_slice(&unb64(response["patch"].as_str().expect("patch"))).expect("ops")
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A reqwest client trusting only `ca_pem`.
pub fn https_client(ca_pem: &str, http1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(15));
    if http1_only {
        b = b.http1_only();
    }
    b.build().expect("client")
}

/// A status, the HTTP version and the body of one answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub version: reqwest::Version,
    pub content_type: String,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }
    /// `.response` of an AdmissionReview answer.
    pub fn response(&self) -> Value {
        let v = self.json();
        assert!(v["response"].is_object(), "no response in {v}");
        v["response"].clone()
    }
}

pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    try_send(client, method, url, content_type, body)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:?}"))
}

/// [`send`] that returns transport errors.
pub async fn try_send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, reqwest::Error> {
    let mut rb = client.request(method, url).body(body);
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    let r = rb.send().await?;
    let status = r.status().as_u16();
    let version = r.version();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await?;
    Ok(Answer {
        status,
        version,
        content_type,
        text,
    })
}

pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Answer {
    send(
        client,
        reqwest::Method::POST,
        url,
        Some("application/json"),
        serde_json::to_vec(body).expect("json"),
    )
    .await
}

pub async fn get(client: &reqwest::Client, url: &str) -> Answer {
    send(client, reqwest::Method::GET, url, None, Vec::new()).await
}

/// A rustls client config trusting only `ca_pem`, offering `alpn`.
pub fn client_tls(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A raw HTTP/1.1 connection over TLS: full control over keep-alive and partial bodies.
pub struct RawConn {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

/// One parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl RawConn {
    /// Connect and handshake (ALPN http/1.1), verifying the server against `ca_pem` as 127.0.0.1.
    pub async fn connect(addr: SocketAddr, ca_pem: &str) -> std::io::Result<RawConn> {
        let connector = TlsConnector::from(client_tls(ca_pem, &[b"http/1.1"]));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        let stream = connector.connect(name, tcp).await?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Read one response (an interim 1xx response is returned as such).
    pub async fn read_response(&mut self) -> std::io::Result<RawResponse> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut resp = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            return Ok(resp);
        }
        if let Some(len) = resp
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            while self.buf.len() < len {
                self.fill().await?;
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.fill().await?;
                }
                resp.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        }
        Ok(resp)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// A keep-alive GET.
    pub async fn get(&mut self, path: &str) -> std::io::Result<RawResponse> {
        self.write(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        self.read_response().await
    }

    /// Whether the server closed the connection (reads EOF or an error within `wait`).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Servers

/// The webhook served in-process over real TLS.
pub struct InProcess {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub state: Arc<AppState>,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
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

/// The manifests of [`write_test_manifests`], written once per test process.
pub fn shared_manifests() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        sweep_shared_dirs();
        let d = scratch("shared-manifests");
        write_test_manifests(d.path());
        d
    })
    .path()
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

/// `pullgate serve` running as a child process, its output collected line by line (the helper
/// shared with the cluster and selfSigned tests: tests/support/serve.rs).
pub use serve::ServeProcess as BinServer;

#[path = "../support/serve.rs"]
mod serve;

/// Options of [`spawn_serve`].
pub struct ServeOpts<'a> {
    pub manifests: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub rust_log: &'a str,
    pub extra: &'a [&'a str],
}

/// Spawn `pullgate serve` on free ports with the file store and a certificate pair, and read the
/// ports from its "pullgate serving" log line.
pub fn spawn_serve(o: ServeOpts<'_>) -> BinServer {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--manifests".into(),
        o.manifests.into(),
        "--tls-cert".into(),
        o.cert.into(),
        "--tls-key".into(),
        o.key.into(),
        "--reload-interval".into(),
        "100ms".into(),
    ];
    args.extend(o.extra.iter().map(Into::into));
    BinServer::spawn(args, &[("RUST_LOG", o.rust_log)], DEADLINE)
}

/// Plain-HTTP GET of the metrics endpoint.
pub async fn scrape(metrics: SocketAddr) -> String {
    let r = reqwest::Client::new()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.expect("metrics text")
}

/// The value of the first sample of `name` whose labels include every `labels` pair.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, v)| v.parse().ok())
}
