//! The chart rendered by the real Helm: [`render`] runs `scripts/helm-render.py` (helm-sdkpy, Helm
//! v4 as a library). helm-sdkpy has no `helm template`, so each case is a real `helm install`
//! (wait=False) against [`HelmApi`], which renders exactly what a cluster would get, schema
//! validation and `lookup` included. Without python3 and helm-sdkpy, [`render`] fails naming the
//! install command.
//!
//! [`HelmApi`] answers discovery (`/version`, `/api`, `/apis`, each group version's resource
//! list) for every kind the chart renders, GETs of the objects it was started with (what `lookup`
//! finds), an empty list for any other collection, 404 `NotFound` for any other object, and
//! echoes every write (Helm's release Secret arrives as protobuf: any JSON object answers it).
//! It stores nothing: the tests read the release Helm returns, not the server. Plain HTTP on
//! 127.0.0.1.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The release namespace of every render.
pub const NAMESPACE: &str = "pullgate-system";
/// The release name of every render.
pub const RELEASE: &str = "pullgate";

/// What Helm made of one case's values.
#[derive(Debug, Clone)]
pub struct Release {
    /// The manifest's documents.
    pub objects: Vec<Value>,
    /// The hooks' documents.
    pub hooks: Vec<Value>,
    /// The rendered NOTES.txt.
    pub notes: String,
}

/// One case to render: its values, and the objects already in the cluster (API path -> object).
pub struct Case {
    /// The values given to `helm install`.
    pub values: Value,
    /// What the cluster holds before the install (what the chart's `lookup` finds).
    pub cluster: BTreeMap<String, Value>,
}

/// The documents of a multi-document YAML text (empty documents dropped).
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("not YAML: {e}\n{text}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Render every case with the real Helm; per case the release, or the message Helm refused the
/// values with. Err when Helm could not be run at all.
pub fn render(
    cases: &BTreeMap<String, Case>,
) -> Result<BTreeMap<String, Result<Release, String>>, String> {
    let io = |e: std::io::Error| format!("cannot start the fake API server for Helm: {e}");
    let shared = HelmApi::start(BTreeMap::new(), NAMESPACE).map_err(io)?;
    let mut own = Vec::new();
    let mut input = serde_json::Map::new();
    for (name, case) in cases {
        let kubeconfig = if case.cluster.is_empty() {
            shared.kubeconfig().to_owned()
        } else {
            let api = HelmApi::start(case.cluster.clone(), NAMESPACE).map_err(io)?;
            let k = api.kubeconfig().to_owned();
            own.push(api);
            k
        };
        input.insert(
            name.clone(),
            json!({"values": case.values, "kubeconfig": kubeconfig}),
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/helm-render.py");
    let install = "python3 -m pip install --ignore-requires-python helm-sdkpy";
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3 ({e}): the chart tests need python3 with helm-sdkpy ({install})"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin for the render script")?
        .write_all(Value::Object(input).to_string().as_bytes())
        .map_err(|e| format!("cannot write the render cases: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); the chart tests need python3 with helm-sdkpy ({install}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let answer: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{} answered no JSON object ({e}):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let mut all = BTreeMap::new();
    for (name, r) in answer {
        let release = match r["error"].as_str() {
            Some(e) => Err(e.to_owned()),
            None => {
                let hooks: Result<Vec<Vec<Value>>, String> = r["hooks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| documents(h.as_str().unwrap_or_default()))
                    .collect();
                Ok(Release {
                    objects: documents(r["manifest"].as_str().unwrap_or_default())
                        .map_err(|e| format!("{name}: the manifest is {e}"))?,
                    hooks: hooks
                        .map_err(|e| format!("{name}: a hook is {e}"))?
                        .into_iter()
                        .flatten()
                        .collect(),
                    notes: r["notes"].as_str().unwrap_or_default().to_owned(),
                })
            }
        };
        all.insert(name, release);
    }
    Ok(all)
}

/// A resource: plural, kind, whether namespaced.
type Resource = (&'static str, &'static str, bool);

/// Every (group, version) the chart's objects use, with its resources.
const RESOURCES: &[(&str, &str, &[Resource])] = &[
    (
        "",
        "v1",
        &[
            ("configmaps", "ConfigMap", true),
            ("secrets", "Secret", true),
            ("services", "Service", true),
            ("serviceaccounts", "ServiceAccount", true),
            ("namespaces", "Namespace", false),
            ("pods", "Pod", true),
            ("events", "Event", true),
        ],
    ),
    ("apps", "v1", &[("deployments", "Deployment", true)]),
    ("batch", "v1", &[("jobs", "Job", true)]),
    (
        "policy",
        "v1",
        &[("poddisruptionbudgets", "PodDisruptionBudget", true)],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        &[
            ("clusterroles", "ClusterRole", false),
            ("clusterrolebindings", "ClusterRoleBinding", false),
            ("roles", "Role", true),
            ("rolebindings", "RoleBinding", true),
        ],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        &[
            (
                "mutatingwebhookconfigurations",
                "MutatingWebhookConfiguration",
                false,
            ),
            (
                "validatingwebhookconfigurations",
                "ValidatingWebhookConfiguration",
                false,
            ),
        ],
    ),
    (
        "networking.k8s.io",
        "v1",
        &[("networkpolicies", "NetworkPolicy", true)],
    ),
    ("coordination.k8s.io", "v1", &[("leases", "Lease", true)]),
    (
        "monitoring.coreos.com",
        "v1",
        &[
            ("servicemonitors", "ServiceMonitor", true),
            ("prometheusrules", "PrometheusRule", true),
        ],
    ),
    (
        "cert-manager.io",
        "v1",
        &[
            ("issuers", "Issuer", true),
            ("certificates", "Certificate", true),
        ],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        &[(
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )],
    ),
];

/// A running server; stopped when dropped.
pub struct HelmApi {
    /// Where it listens.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl HelmApi {
    /// Start on a free port of 127.0.0.1, answering GETs of `objects` (API path -> object), and
    /// write a kubeconfig whose context namespace is `namespace`.
    pub fn start(objects: BTreeMap<String, Value>, namespace: &str) -> std::io::Result<HelmApi> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let router = Router::new().fallback(handle).with_state(Arc::new(objects));
        runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, router).await;
            }
        });
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
                 users:\n- name: fake\n  user:\n    token: not-a-real-token\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n"
            ),
        )?;
        Ok(HelmApi {
            addr,
            _dir: dir,
            kubeconfig,
            _runtime: runtime,
        })
    }

    /// The kubeconfig file pointing at this server.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

fn reply(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

async fn handle(State(objects): State<Arc<BTreeMap<String, Value>>>, req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    match *req.method() {
        Method::GET => get(&objects, &path),
        Method::DELETE => reply(
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        Method::POST | Method::PUT | Method::PATCH => {
            let created = req.method() == Method::POST;
            let patched = objects.get(&path).cloned();
            let body = axum::body::to_bytes(req.into_body(), 8 << 20)
                .await
                .unwrap_or_default();
            // A patch answers the object patched; its content does not matter here.
            let echo = patched
                .or_else(|| serde_json::from_slice::<Value>(&body).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            reply(code, echo)
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, json!({"kind": "Status"})),
    }
}

fn get(objects: &BTreeMap<String, Value>, path: &str) -> Response {
    if path == "/version" {
        return reply(
            StatusCode::OK,
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}),
        );
    }
    if path == "/api" {
        return reply(
            StatusCode::OK,
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        );
    }
    if path == "/apis" {
        let groups: Vec<Value> = RESOURCES
            .iter()
            .filter(|(g, _, _)| !g.is_empty())
            .map(|(g, v, _)| {
                let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                json!({"name": g, "versions": [gv], "preferredVersion": gv})
            })
            .collect();
        return reply(
            StatusCode::OK,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
        );
    }
    for (g, v, resources) in RESOURCES {
        let (base, group_version) = if g.is_empty() {
            ("/api/v1".to_owned(), (*v).to_owned())
        } else {
            (format!("/apis/{g}/{v}"), format!("{g}/{v}"))
        };
        if path == base {
            let list: Vec<Value> = resources
                .iter()
                .map(|(plural, kind, namespaced)| {
                    json!({
                        "name": plural, "singularName": kind.to_ascii_lowercase(),
                        "namespaced": namespaced, "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    })
                })
                .collect();
            return reply(
                StatusCode::OK,
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}),
            );
        }
    }
    if let Some(o) = objects.get(path) {
        return reply(StatusCode::OK, o.clone());
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    let is_collection = RESOURCES
        .iter()
        .flat_map(|(_, _, rs)| rs.iter())
        .any(|(plural, _, _)| *plural == last);
    if is_collection {
        return reply(
            StatusCode::OK,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}),
        );
    }
    reply(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
               "code": 404, "message": format!("{path} not found")}),
    )
}
