//! Admission webhook configurations for tests. The fake API server ([`FakeApi`]) does not serve
//! `admissionregistration.k8s.io`, so this is a small proxy in front of it: it answers
//! `mutatingwebhookconfigurations` and `validatingwebhookconfigurations` itself and forwards every
//! other request to the fake unchanged.
//!
//! Served, as the API server does: GET of one configuration (404 `NotFound` Status when missing);
//! PATCH with `application/merge-patch+json` or `application/json-patch+json`, where a
//! `metadata.resourceVersion` left in the patched object that differs from the stored one is a 409
//! `Conflict`, and a `caBundle` that is not base64 is a 400 (the field is `[]byte`). Strategic merge
//! patch answers 415. DELETE of one configuration answers the deleted object, or 404 when it is
//! missing. Not served: lists, watches, PUT (the test drives those through the handle). Forwarded responses are buffered, so watches of other resources do not work through the
//! proxy; pullgate's self-signed mode never watches.
//!
//! The test drives it through the handle: [`WebhookConfigs::put`] creates or replaces a
//! configuration, [`WebhookConfigs::fail_next_patches`] answers the next patches with 500,
//! [`WebhookConfigs::patch_log`] lists the patches received, [`WebhookConfigs::fail_next_deletes`]
//! answers the next deletes with 503, [`WebhookConfigs::forbid_deletes`] answers every delete with
//! the API server's 403 for a ServiceAccount without the verb, and [`WebhookConfigs::delete_log`]
//! lists the deletes received.

use crate::support::fake_api::FakeApi;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

const GROUP_PREFIX: &str = "/apis/admissionregistration.k8s.io/v1/";
const MAX_BODY: usize = 3 << 20;

/// Which kind of configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// MutatingWebhookConfiguration.
    Mutating,
    /// ValidatingWebhookConfiguration.
    Validating,
}

impl Kind {
    /// The plural in paths.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Mutating => "mutatingwebhookconfigurations",
            Kind::Validating => "validatingwebhookconfigurations",
        }
    }

    /// The kind.
    pub fn kind(self) -> &'static str {
        match self {
            Kind::Mutating => "MutatingWebhookConfiguration",
            Kind::Validating => "ValidatingWebhookConfiguration",
        }
    }

    fn from_plural(p: &str) -> Option<Kind> {
        [Kind::Mutating, Kind::Validating]
            .into_iter()
            .find(|k| k.plural() == p)
    }

    fn from_kind(k: &str) -> Option<Kind> {
        [Kind::Mutating, Kind::Validating]
            .into_iter()
            .find(|x| x.kind() == k)
    }
}

/// A configuration as the chart renders it: two webhooks calling `service` in `namespace`
/// (paths `/mutate` or `/validate`), with no caBundle yet.
pub fn webhook_configuration(kind: Kind, name: &str, service: &str, namespace: &str) -> Value {
    let path = match kind {
        Kind::Mutating => "/mutate",
        Kind::Validating => "/validate",
    };
    let webhook = |w: &str| {
        json!({
            "name": format!("{w}.{}.pullgate.io", &path[1..]),
            "admissionReviewVersions": ["v1", "v1beta1"],
            "clientConfig": { "service": { "name": service, "namespace": namespace, "path": path, "port": 443 } },
            "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": [w], "scope": "Namespaced" }],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind.kind(),
        "metadata": { "name": name, "labels": { "app.kubernetes.io/name": "pullgate" } },
        "webhooks": [webhook("pods"), webhook("serviceaccounts")],
    })
}

/// The `caBundle` of each webhook of a configuration, decoded (`None` when unset).
pub fn ca_bundles(config: &Value) -> Vec<Option<Vec<u8>>> {
    config["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|wh| {
            wh["clientConfig"]["caBundle"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        })
        .collect()
}

struct Inner {
    objects: Mutex<BTreeMap<(&'static str, String), Value>>,
    rv: AtomicU64,
    upstream: String,
    http: reqwest::Client,
    fail_patches: AtomicUsize,
    patches: Mutex<Vec<(Kind, String, u16)>>,
    fail_deletes: AtomicUsize,
    forbid_deletes: AtomicBool,
    deletes: Mutex<Vec<(Kind, String, u16)>>,
}

impl Inner {
    fn objects(&self) -> MutexGuard<'_, BTreeMap<(&'static str, String), Value>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_rv(&self) -> String {
        (self.rv.fetch_add(1, Ordering::AcqRel) + 1).to_string()
    }
}

/// The proxy; stopped when dropped.
pub struct WebhookConfigs {
    inner: Arc<Inner>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl WebhookConfigs {
    /// Start in front of `fake`, with a kubeconfig like the fake's that points here.
    pub async fn start(fake: &FakeApi) -> WebhookConfigs {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook-configuration proxy");
        let addr = listener.local_addr().expect("proxy address");
        let inner = Arc::new(Inner {
            objects: Mutex::new(BTreeMap::new()),
            // Far from the fake's resourceVersions, so a mix-up shows.
            rv: AtomicU64::new(500_000),
            upstream: fake.url(),
            http: reqwest::Client::new(),
            fail_patches: AtomicUsize::new(0),
            patches: Mutex::new(Vec::new()),
            fail_deletes: AtomicUsize::new(0),
            forbid_deletes: AtomicBool::new(false),
            deletes: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let dir = tempfile::tempdir().expect("kubeconfig dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let text = std::fs::read_to_string(fake.kubeconfig_path()).expect("the fake's kubeconfig");
        std::fs::write(
            &kubeconfig,
            text.replace(&fake.url(), &format!("http://{addr}")),
        )
        .expect("write kubeconfig");
        WebhookConfigs {
            inner,
            kubeconfig,
            _dir: dir,
            server,
        }
    }

    /// The kubeconfig pointing at the proxy.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client through the proxy, built as `pullgate serve --kubeconfig` builds it.
    pub async fn client(&self) -> kube::Client {
        pullgate::store::kube::client(Some(&self.kubeconfig))
            .await
            .expect("client from the proxy's kubeconfig")
    }

    /// Create or replace a configuration (its `kind` says which); returns it as stored.
    pub fn put(&self, mut obj: Value) -> Value {
        let kind = Kind::from_kind(obj["kind"].as_str().unwrap_or_default())
            .expect("a webhook configuration kind");
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_owned();
        let mut objects = self.inner.objects();
        let uid = objects
            .get(&(kind.plural(), name.clone()))
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("uid-{}", self.inner.rv.load(Ordering::Acquire)));
        obj["metadata"]["uid"] = json!(uid);
        obj["metadata"]["resourceVersion"] = json!(self.inner.next_rv());
        objects.insert((kind.plural(), name), obj.clone());
        obj
    }

    /// A configuration as stored.
    pub fn get(&self, kind: Kind, name: &str) -> Option<Value> {
        self.inner
            .objects()
            .get(&(kind.plural(), name.to_owned()))
            .cloned()
    }

    /// Answer the next `n` patches with 500.
    pub fn fail_next_patches(&self, n: usize) {
        self.inner.fail_patches.store(n, Ordering::Release);
    }

    /// Answer the next `n` deletes with 503.
    pub fn fail_next_deletes(&self, n: usize) {
        self.inner.fail_deletes.store(n, Ordering::Release);
    }

    /// Answer every delete with 403 Forbidden (or stop doing so).
    pub fn forbid_deletes(&self, forbid: bool) {
        self.inner.forbid_deletes.store(forbid, Ordering::Release);
    }

    /// The deletes received: kind, name and the status answered.
    pub fn delete_log(&self) -> Vec<(Kind, String, u16)> {
        self.inner
            .deletes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The patches received: kind, name and the status answered.
    pub fn patch_log(&self) -> Vec<(Kind, String, u16)> {
        self.inner
            .patches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for WebhookConfigs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code,
    });
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn object(code: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_default()
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(GROUP_PREFIX) else {
        return forward(&inner, req).await;
    };
    let (kind, name) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        [plural, name] if Kind::from_plural(plural).is_some() => {
            (Kind::from_plural(plural), (*name).to_owned())
        }
        _ => (None, String::new()),
    };
    let Some(kind) = kind else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    };
    let qualified = format!("{}.admissionregistration.k8s.io", kind.plural());
    let not_found = || {
        status(
            404,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
            json!({"name": name, "group": "admissionregistration.k8s.io", "kind": kind.plural()}),
        )
    };
    match *req.method() {
        Method::GET => match inner.objects().get(&(kind.plural(), name.clone())) {
            Some(o) => object(StatusCode::OK, o),
            None => not_found(),
        },
        Method::PATCH => {
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
                return status(400, "BadRequest", "unreadable body".into(), json!({}));
            };
            let resp = patch(&inner, kind, &name, &qualified, &ct, &body).unwrap_or_else(|r| *r);
            inner
                .patches
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((kind, name.clone(), resp.status().as_u16()));
            resp
        }
        Method::DELETE => {
            let resp = delete(&inner, kind, &name, &qualified);
            inner
                .deletes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((kind, name.clone(), resp.status().as_u16()));
            resp
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the proxy serves GET, PATCH and DELETE only".into(),
            json!({}),
        ),
    }
}

fn delete(inner: &Inner, kind: Kind, name: &str, qualified: &str) -> Response {
    let details =
        json!({"name": name, "group": "admissionregistration.k8s.io", "kind": kind.plural()});
    if inner.forbid_deletes.load(Ordering::Acquire) {
        // The API server's words for a ServiceAccount without the verb on this name.
        return status(
            403,
            "Forbidden",
            format!("{qualified} \"{name}\" is forbidden: User \"system:serviceaccount:pullgate:pullgate-pre-delete\" cannot delete resource \"{}\" in API group \"admissionregistration.k8s.io\" at the cluster scope", kind.plural()),
            details,
        );
    }
    if inner
        .fail_deletes
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
    {
        return status(
            503,
            "ServiceUnavailable",
            "injected by the test".into(),
            json!({}),
        );
    }
    match inner.objects().remove(&(kind.plural(), name.to_owned())) {
        Some(o) => object(StatusCode::OK, &o),
        None => status(
            404,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
            details,
        ),
    }
}

fn patch(
    inner: &Inner,
    kind: Kind,
    name: &str,
    qualified: &str,
    ct: &str,
    body: &[u8],
) -> Result<Response, Box<Response>> {
    if inner
        .fail_patches
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(Box::new(status(
            500,
            "InternalError",
            "injected by the test".into(),
            json!({}),
        )));
    }
    let mut objects = inner.objects();
    let key = (kind.plural(), name.to_owned());
    let Some(current) = objects.get(&key).cloned() else {
        return Err(Box::new(status(
            404,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
            json!({"name": name, "group": "admissionregistration.k8s.io", "kind": kind.plural()}),
        )));
    };
    let bad = |m: String| Box::new(status(400, "BadRequest", m, json!({})));
    let mut patched = current.clone();
    if ct.starts_with("application/merge-patch+json") {
        let p: Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("error decoding patch: {e}")))?;
        json_patch::merge(&mut patched, &p);
    } else if ct.starts_with("application/json-patch+json") {
        let p: json_patch::Patch =
            serde_json::from_slice(body).map_err(|e| bad(format!("error decoding patch: {e}")))?;
        json_patch::patch(&mut patched, &p)
            .map_err(|e| Box::new(status(422, "", e.to_string(), json!({}))))?;
    } else {
        return Err(Box::new(status(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got {ct:?}; the proxy has no strategic merge patch)"),
            json!({}),
        )));
    }
    let wanted = patched["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    if !wanted.is_empty() && Some(wanted) != current["metadata"]["resourceVersion"].as_str() {
        return Err(Box::new(status(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
            json!({"name": name, "group": "admissionregistration.k8s.io", "kind": kind.plural()}),
        )));
    }
    for wh in patched["webhooks"].as_array().into_iter().flatten() {
        if let Some(b) = wh["clientConfig"].get("caBundle") {
            let ok = b
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(bad(format!(
                    "{qualified} \"{name}\": caBundle: illegal base64 data"
                )));
            }
        }
    }
    patched["metadata"]["name"] = json!(name);
    patched["metadata"]["uid"] = current["metadata"]["uid"].clone();
    patched["metadata"]["resourceVersion"] = json!(inner.next_rv());
    objects.insert(key, patched.clone());
    Ok(object(StatusCode::OK, &patched))
}

async fn forward(inner: &Inner, req: Request) -> Response {
    let url = format!(
        "{}{}",
        inner.upstream,
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut out = inner.http.request(method, url);
    for h in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = req.headers().get(&h).and_then(|v| v.to_str().ok()) {
            out = out.header(h.as_str(), v);
        }
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return status(400, "BadRequest", "unreadable body".into(), json!({}));
    };
    match out.body(body.to_vec()).send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let bytes = resp.bytes().await.unwrap_or_default();
            Response::builder()
                .status(code)
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(bytes))
                .unwrap_or_default()
        }
        Err(e) => status(502, "InternalError", format!("proxy: {e}"), json!({})),
    }
}
