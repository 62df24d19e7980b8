//! The production entry points a table row must agree on: `evaluate_pod` with the secrets
//! referenced by the pod, `evaluate_pod` with the secrets only present in the namespace and
//! injection on, ServiceAccount admission (`evaluate_service_account`) followed by a pod of that
//! ServiceAccount, and the `pullgate check` binary on the same objects as manifests.
//!
//! What the kubelet does is the keyring lookup of the image's normalised name over the pod's
//! secrets, in pod order; each entry point must come to the same secrets.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use base64::Engine as _;
use pullgate::engine::index::{ClusterIndex, SecretInfo, ServiceAccountInfo};
use pullgate::engine::keyring::{Keyring, MatchTarget};
use pullgate::engine::podview::{PodView, WorkloadKind};
use pullgate::engine::policy::{Policy, Validation};
use pullgate::engine::reference::ImageRef;
use pullgate::engine::{evaluate_pod, evaluate_service_account, Code, Decision, PodContext};
use serde_json::{json, Value};

const NS: &str = "tables";
const NOW: i64 = 1_800_000_000;

/// A pull secret of a table row: its name, type and data.
pub struct RowSecret {
    pub name: String,
    pub secret_type: &'static str,
    pub data: BTreeMap<String, Vec<u8>>,
}

/// The namespace's store: the row's secrets, the first one newest (so that injection, which
/// prefers the newest covering secret, and the ServiceAccount's order follow the row's order).
fn index_of(secrets: &[RowSecret]) -> ClusterIndex {
    let mut index = ClusterIndex::new();
    for (age, s) in (0i64..).zip(secrets) {
        index.upsert_secret(SecretInfo::new(
            NS,
            &s.name,
            s.secret_type,
            Some(NOW - 3600 - age * 60),
            None,
            &s.data,
        ));
    }
    index
}

fn pod(name: &str, image: &str, secrets: &[&str], service_account: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    if !secrets.is_empty() {
        spec["imagePullSecrets"] = secrets.iter().map(|n| json!({"name": n})).collect();
    }
    if let Some(sa) = service_account {
        spec["serviceAccountName"] = json!(sa);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn decide<'a>(view: &'a PodView, policy: &Policy, index: &'a ClusterIndex) -> Decision<'a> {
    evaluate_pod(view, &PodContext::creating(NS, NOW), policy, index)
}

fn view(value: &Value) -> PodView {
    PodView::from_value(WorkloadKind::Pod, value).expect("a well-formed pod")
}

fn policy(inject: bool) -> Policy {
    // The tables are about the lookup, on registries no other secret names: all are private.
    let mut p = Policy::from_yaml("registries:\n  private: ['*']\n").expect("policy");
    p.inject = inject;
    p.validation = Validation::Deny;
    p
}

/// The secrets the kubelet tries for `image` with the row's secrets on the pod, in its order:
/// the production keyring over the stored secrets.
fn kubelet(index: &ClusterIndex, names: &[&str], name: &str) -> Vec<String> {
    let ns = index.namespace(NS);
    let mut ring: Keyring<'_, &str> = Keyring::new();
    for s in names.iter().filter_map(|n| ns.secrets.get(n)) {
        ring.add(s.usable_keys(), &*s.name);
    }
    ring.lookup_values(&MatchTarget::new(name))
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Run `image` with the row's secrets through every entry point; the mismatches, each naming
/// the entry point and the row's origin (empty when all agree with the kubelet).
pub fn disagreements(origin: &str, secrets: &[RowSecret], image: &str) -> Vec<String> {
    let index = index_of(secrets);
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
    let mut fail = |mode: &str, what: String| {
        out.push(format!("[{origin}] image {image:?}, {mode}: {what}"));
    };

    let explicit_pod = pod("explicit", image, &names, None);
    let explicit = view(&explicit_pod);
    let d = decide(&explicit, &policy(false), &index);
    let Ok(reference) = ImageRef::parse(image) else {
        // The kubelet never reaches its keyring for an image it cannot parse.
        if !d
            .findings
            .iter()
            .any(|f| f.code == Code::InvalidImageReference)
            || d.allowed
        {
            fail(
                "explicit",
                format!("want InvalidImageReference, got {:?}", d.findings),
            );
        }
        return out;
    };
    let want = kubelet(&index, &names, reference.name());
    let got = owned(&d.images[0].matched_secrets);
    if got != want || d.allowed == want.is_empty() {
        fail(
            "secrets referenced by the pod",
            format!(
                "kubelet uses {want:?}; evaluate_pod matched {got:?}, allowed {}",
                d.allowed
            ),
        );
    }

    let bare_pod = pod("injected", image, &[], None);
    let bare = view(&bare_pod);
    let d = decide(&bare, &policy(true), &index);
    let got = owned(&d.images[0].matched_secrets);
    let covered = !got.is_empty() && got.iter().all(|g| want.contains(g));
    if covered == want.is_empty() || d.allowed == want.is_empty() {
        fail(
            "secrets only in the namespace, injection on",
            format!(
                "kubelet would use {want:?} if referenced; injected {:?}, matched {got:?}, allowed {}",
                d.injected, d.allowed
            ),
        );
    }

    let sa = evaluate_service_account("builder", &[], false, NS, &policy(true), &index);
    let sa_secrets = owned(&sa.injected);
    let mut with_sa = index_of(secrets);
    with_sa.upsert_service_account(
        NS,
        ServiceAccountInfo::new(
            "builder".to_owned(),
            sa_secrets.clone(),
            &BTreeMap::new(),
            BTreeMap::new(),
        ),
    );
    let sa_pod = pod("via-sa", image, &[], Some("builder"));
    let sa_view = view(&sa_pod);
    let d = decide(&sa_view, &policy(false), &with_sa);
    let got = owned(&d.images[0].matched_secrets);
    let sa_names: Vec<&str> = sa_secrets.iter().map(String::as_str).collect();
    let want_sa = kubelet(&with_sa, &sa_names, reference.name());
    if got != want_sa || want_sa.is_empty() != want.is_empty() {
        fail(
            "ServiceAccount injected, pod inherits",
            format!("ServiceAccount got {sa_secrets:?}; kubelet uses {want_sa:?} (with all secrets {want:?}); evaluate_pod matched {got:?}"),
        );
    }

    let report = check_binary(secrets, &[explicit_pod, bare_pod]);
    let matched = |name: &str| -> Option<Vec<String>> {
        report["results"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == name)?["images"][0]["matchedSecrets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
    };
    if matched("explicit").as_ref() != Some(&want) {
        fail(
            "pullgate check, secrets referenced",
            format!("want {want:?}, got {:?}", matched("explicit")),
        );
    }
    let injected = matched("injected").unwrap_or_default();
    if injected.is_empty() != want.is_empty() || !injected.iter().all(|g| want.contains(g)) {
        fail(
            "pullgate check, injection",
            format!("want a subset of {want:?}, non-empty iff it is; got {injected:?}"),
        );
    }
    out
}

/// The `pullgate check -o json` report on the row's secrets and these pods.
fn check_binary(secrets: &[RowSecret], pods: &[Value]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut items: Vec<Value> = secrets
        .iter()
        .map(|s| {
            let data: serde_json::Map<String, Value> = s
                .data
                .iter()
                .map(|(k, v)| (k.clone(), json!(b64.encode(v))))
                .collect();
            json!({"apiVersion": "v1", "kind": "Secret", "type": s.secret_type,
                   "metadata": {"name": s.name, "namespace": NS}, "data": data})
        })
        .collect();
    items.extend(pods.iter().cloned());
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .args(["check", "--validation", "deny", "-o", "json", "-"])
        .arg("--config")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/policy/every-registry-private.yaml"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pullgate check");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(list.to_string().as_bytes())
            .expect("write manifests");
    }
    let out = child.wait_with_output().expect("pullgate check finishes");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pullgate check printed no JSON report ({e}); exit {:?}, stderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Pods of each image through `evaluate_pod` and the `pullgate check` binary: the registry
/// and repository each reports, or None where it finds the reference invalid.
pub fn parsed_by_entry_points(images: &[String]) -> Vec<(Option<(String, String)>, Value)> {
    let index = ClusterIndex::new();
    let pods: Vec<Value> = (0..)
        .zip(images)
        .map(|(i, image)| pod(&format!("p{i}"), image, &[], None))
        .collect();
    let report = check_binary(&[], &pods);
    let results = report["results"].as_array().cloned().unwrap_or_default();
    pods.iter()
        .zip(0..)
        .map(|(p, i)| {
            let v = view(p);
            let d = decide(&v, &policy(false), &index);
            let engine = d.images[0]
                .reference
                .as_ref()
                .map(|r| (r.domain().to_owned(), r.path().to_owned()));
            let from_check = results
                .iter()
                .find(|r| r["name"] == format!("p{i}"))
                .map(|r| r["images"][0].clone())
                .unwrap_or(Value::Null);
            (engine, from_check)
        })
        .collect()
}

/// A pod naming this one secret, which the kubelet cannot use: `evaluate_pod` and the
/// `pullgate check` binary must both deny it as `MalformedSecret` (empty when they do).
pub fn malformed_disagreements(origin: &str, secret: &RowSecret) -> Vec<String> {
    let index = index_of(std::slice::from_ref(secret));
    let image = "r.example.com/team/app";
    let p = pod("explicit", image, &[secret.name.as_str()], None);
    let v = view(&p);
    let d = decide(&v, &policy(false), &index);
    let mut out = Vec::new();
    if d.allowed || !d.errors().any(|f| f.code == Code::MalformedSecret) {
        out.push(format!(
            "[{origin}] evaluate_pod: want a MalformedSecret denial, got allowed {} {:?}",
            d.allowed, d.findings
        ));
    }
    let report = check_binary(std::slice::from_ref(secret), &[p]);
    let result = &report["results"][0];
    let named = result["findings"].as_array().is_some_and(|f| {
        f.iter()
            .any(|f| f["code"] == "MalformedSecret" && f["severity"] == "error")
    });
    if result["allowed"] != json!(false) || !named {
        out.push(format!(
            "[{origin}] pullgate check: want a MalformedSecret denial, got {result}"
        ));
    }
    out
}
