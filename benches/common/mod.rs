//! Fixtures shared by the `engine` and `loadtest` benches: a realistic cluster index, a policy,
//! and a ~7 KB five-container pod AdmissionReview built from a review captured from a real
//! kube-apiserver (`benches/data/`).
//!
//! Everything here is setup code: it may panic on a broken fixture, never on benchmark input.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use pullgate::engine::index::{ClusterIndex, SecretInfo, ServiceAccountInfo};
use pullgate::engine::policy::Policy;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A pod-create review exactly as the API server sent it to the validating webhook.
const CAPTURED_REVIEW: &str =
    include_str!("../data/admissionreview-pod-create-validate-after-mutation.json");

/// The namespace the benchmarked pods live in.
pub const NAMESPACE: &str = "team-payments";
/// The ServiceAccount of the benchmarked pods; it lists [`POD_SECRETS`].
pub const SERVICE_ACCOUNT: &str = "payments-deployer";
/// Pull secrets the namespace holds (of which the pod references [`POD_SECRETS`]).
pub const NAMESPACE_SECRETS: usize = 50;
/// Secrets per other namespace.
pub const SECRETS_PER_OTHER_NAMESPACE: usize = 5;
/// Creation time of every secret (seconds since the epoch).
pub const CREATED: i64 = 1_767_225_600;
/// "Now" for evaluations: a month after [`CREATED`].
pub const NOW: i64 = CREATED + 30 * 86_400;

/// A 64-hex sha256 digest for digest references.
pub const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The five images of the benchmarked pod, init container first: Docker Hub short name, a
/// registry with a port, a digest reference, an ECR host matched by a glob key, and a
/// path-scoped key.
pub fn pod_images() -> [(&'static str, String, bool); 5] {
    [
        ("init-config", "busybox:1.36.1".to_owned(), true),
        (
            "api",
            "registry.example.com:5000/payments/api:2.14.1".to_owned(),
            false,
        ),
        (
            "worker",
            format!("ghcr.io/acme/payments-worker@{DIGEST}"),
            false,
        ),
        (
            "ledger",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments/ledger:v3.2.0".to_owned(),
            false,
        ),
        (
            "envoy",
            "quay.io/acme/envoy-sidecar:v1.31.2".to_owned(),
            false,
        ),
    ]
}

/// The secrets the pod's ServiceAccount (and so the pod) references, with the keys that cover
/// [`pod_images`], as a `kubectl create secret docker-registry` user would write them.
pub const POD_SECRETS: [(&str, &[&str]); 5] = [
    ("dockerhub", &["https://index.docker.io/v1/"]),
    ("regcred", &["registry.example.com:5000"]),
    ("ghcr", &["ghcr.io"]),
    (
        "ecr",
        &[
            "*.dkr.ecr.eu-west-1.amazonaws.com",
            "*.dkr.ecr.us-east-1.amazonaws.com",
        ],
    ),
    ("quay-acme", &["quay.io/acme"]),
];

/// The policy used everywhere: every registry private except two public mirrors.
pub fn policy() -> Policy {
    Policy::from_yaml(
        "registries:\n  private: ['*']\n  public: [registry.k8s.io, mcr.microsoft.com]\n",
    )
    .expect("bench policy")
}

/// A pull secret holding `keys`, built the way the store builds one from a Secret manifest.
pub fn pull_secret(ns: &str, name: &str, keys: &[&str], created: i64) -> SecretInfo {
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:not-a-real-password");
    let auths: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| ((*k).to_owned(), json!({ "auth": auth })))
        .collect();
    let mut data = BTreeMap::new();
    data.insert(
        ".dockerconfigjson".to_owned(),
        json!({ "auths": auths }).to_string().into_bytes(),
    );
    SecretInfo::new(
        ns,
        name,
        "kubernetes.io/dockerconfigjson",
        Some(created),
        None,
        &data,
    )
}

fn service_account(name: &str, secrets: &[&str]) -> ServiceAccountInfo {
    ServiceAccountInfo {
        name: name.to_owned(),
        image_pull_secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// A cluster index with the pod's namespace (50 pull secrets, a few ServiceAccounts and
/// some non-pull secrets) and `others` other namespaces of 5 pull secrets and a default
/// ServiceAccount each. The other namespaces reuse the same secret names and registry hosts
/// (as clusters synced by a secret replicator do), so every cross-namespace index is crowded.
pub fn cluster(others: usize) -> ClusterIndex {
    let mut idx = ClusterIndex::new();
    for (name, keys) in POD_SECRETS {
        idx.upsert_secret(pull_secret(NAMESPACE, name, keys, CREATED));
    }
    for i in POD_SECRETS.len()..NAMESPACE_SECRETS {
        let host = format!("registry-{i}.corp.example.com");
        let keys: Vec<String> = match i % 5 {
            0 => vec![format!("{host}:5000")],
            1 => vec![format!("https://{host}/v2/")],
            2 => vec![
                format!("{host}/team-{i}"),
                format!("mirror-{i}.example.net"),
            ],
            _ => vec![host],
        };
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        idx.upsert_secret(pull_secret(
            NAMESPACE,
            &format!("team-registry-{i}"),
            &keys,
            CREATED - i64::try_from(i).unwrap() * 3600,
        ));
    }
    // Non-pull secrets live in the same namespace and are skipped by type.
    for i in 0..10 {
        idx.upsert_secret(SecretInfo::new(
            NAMESPACE,
            &format!("app-config-{i}"),
            "Opaque",
            Some(CREATED),
            None,
            &BTreeMap::new(),
        ));
    }
    let pod_secret_names: Vec<&str> = POD_SECRETS.iter().map(|(n, _)| *n).collect();
    idx.upsert_service_account(NAMESPACE, service_account("default", &[]));
    idx.upsert_service_account(
        NAMESPACE,
        service_account(SERVICE_ACCOUNT, &pod_secret_names),
    );
    for i in 0..8 {
        idx.upsert_service_account(
            NAMESPACE,
            service_account(&format!("job-runner-{i}"), &["regcred"]),
        );
    }
    for n in 0..others {
        let ns = format!("tenant-{n:05}");
        let own = format!("tenant-{n:05}.registry.internal:443");
        let harbor = format!("harbor.example.com:8443/tenant-{n:05}");
        let secrets: [(&str, &str); SECRETS_PER_OTHER_NAMESPACE] = [
            ("regcred", "registry.example.com:5000"),
            ("ghcr", "ghcr.io"),
            ("dockerhub", "https://index.docker.io/v1/"),
            ("harbor", harbor.as_str()),
            ("tenant-registry", own.as_str()),
        ];
        for (name, key) in secrets {
            idx.upsert_secret(pull_secret(&ns, name, &[key], CREATED));
        }
        idx.upsert_service_account(&ns, service_account("default", &["regcred", "ghcr"]));
    }
    idx
}

/// One container as the API server defaults it: resources, env, ports, mounts,
/// security context and the termination/pull-policy defaults.
fn container(name: &str, image: &str, init: bool) -> Value {
    let mut c = json!({
        "name": name,
        "image": image,
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "resources": {
            "limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"}
        },
        "volumeMounts": [{
            "name": "kube-api-access-xjf76",
            "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"
        }],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false
        }
    });
    if !init {
        c["ports"] = json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]);
    }
    c
}

/// The pod object of the review: the captured pod with five containers (one init), the
/// ServiceAccount's pull secrets copied in (as the ServiceAccount admission plugin does), and
/// managedFields, tolerations and security context as the API server sends them.
pub fn pod_object(images: &[(&str, String, bool)]) -> Value {
    let review: Value = serde_json::from_str(CAPTURED_REVIEW).expect("captured review");
    let mut pod = review["request"]["object"].clone();
    pod["metadata"]["name"] = json!("payments-7f9c6d5b8-x2k4q");
    pod["metadata"]["namespace"] = json!(NAMESPACE);
    pod["metadata"]["labels"] =
        json!({"app.kubernetes.io/name": "payments", "pod-template-hash": "7f9c6d5b8"});
    let fields = &mut pod["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    for (name, _, init) in images {
        let list = if *init {
            "f:initContainers"
        } else {
            "f:containers"
        };
        fields[list][format!("k:{{\"name\":\"{name}\"}}")] = json!({
            ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
            "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}
        });
    }
    let spec = &mut pod["spec"];
    spec["initContainers"] = Value::Array(
        images
            .iter()
            .filter(|(_, _, init)| *init)
            .map(|(n, i, _)| container(n, i, true))
            .collect(),
    );
    spec["containers"] = Value::Array(
        images
            .iter()
            .filter(|(_, _, init)| !*init)
            .map(|(n, i, _)| container(n, i, false))
            .collect(),
    );
    spec["serviceAccountName"] = json!(SERVICE_ACCOUNT);
    spec["serviceAccount"] = json!(SERVICE_ACCOUNT);
    spec["imagePullSecrets"] = Value::Array(
        POD_SECRETS
            .iter()
            .map(|(n, _)| json!({ "name": n }))
            .collect(),
    );
    pod
}

/// The whole AdmissionReview (compact JSON, as the API server sends it) around `pod`.
pub fn review_bytes(pod: &Value, uid: &str) -> Vec<u8> {
    let mut review: Value = serde_json::from_str(CAPTURED_REVIEW).expect("captured review");
    review["request"]["uid"] = json!(uid);
    review["request"]["name"] = pod["metadata"]["name"].clone();
    review["request"]["namespace"] = json!(NAMESPACE);
    review["request"]["object"] = pod.clone();
    serde_json::to_vec(&review).expect("serialise review")
}

/// The benchmarked review: the five-container pod of [`pod_object`].
pub fn five_container_review(uid: &str) -> Vec<u8> {
    review_bytes(&pod_object(&pod_images()), uid)
}

/// A broken variant: one image is on a registry no secret of the namespace covers, whose
/// hostname every other namespace has a key for, but with another port. Diagnosing it looks
/// the cluster-wide host index up (the `NoCredentials` "exists elsewhere?" hint).
pub fn broken_pod_object() -> Value {
    let mut images = pod_images();
    images[1].1 = "harbor.example.com/payments/api:2.14.1".to_owned();
    pod_object(&images)
}

/// Like [`broken_pod_object`], but the image has the same host AND port as every other
/// namespace's `harbor` key, whose paths (`/tenant-NNNNN`) do not cover it: the host index
/// bucket holds one candidate per namespace and none of them matches.
pub fn broken_path_pod_object() -> Value {
    let mut images = pod_images();
    images[1].1 = "harbor.example.com:8443/payments/api:2.14.1".to_owned();
    pod_object(&images)
}
