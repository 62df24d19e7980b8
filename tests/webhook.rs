//! Integration tests of the webhook server over real TLS with real AdmissionReview JSON.
//!
//! In-process tests serve `server::router` through `server::serve_tls` on 127.0.0.1:0 with
//! certificates made by `pullgate certs`; the binary tests run `pullgate serve` itself (certificate
//! rotation, SIGTERM drain, metrics, secrecy of credentials in its output).
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{
    admission::*, certs::*, client::*, fixtures::*, inprocess::*, paths::*, secrets::*, serve::*,
};
use support::{install_crypto, poll, DEADLINE};

async fn server() -> (InProcess, reqwest::Client) {
    let s = start_in_process(shared_manifests(), test_policy()).await;
    let c = https_client(&s.ca_pem, false);
    (s, c)
}

/// POST a review, check the envelope (status 200, JSON, apiVersion/kind/uid echoed) and return `.response`.
async fn admit(c: &reqwest::Client, url: &str, review: &Value) -> Value {
    let a = post_json(c, url, review).await;
    assert_eq!(a.status, 200, "{url}: {}", a.text);
    assert!(
        a.content_type.starts_with("application/json"),
        "{url}: content type {:?}",
        a.content_type
    );
    let v = a.json();
    assert_eq!(v["apiVersion"], review["apiVersion"], "{v}");
    assert_eq!(v["kind"], "AdmissionReview", "{v}");
    assert_eq!(v["response"]["uid"], review["request"]["uid"], "{v}");
    v["response"].clone()
}

fn names(refs: Option<&Vec<k8s_openapi::api::core::v1::LocalObjectReference>>) -> Vec<String> {
    refs.into_iter().flatten().map(|r| r.name.clone()).collect()
}

fn pod_pull_secrets(pod: &Value) -> Vec<String> {
    let p: Pod = serde_json::from_value(pod.clone())
        .unwrap_or_else(|e| panic!("patched object is not a Pod ({e}): {pod}"));
    names(p.spec.as_ref().and_then(|s| s.image_pull_secrets.as_ref()))
}

fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|x| x.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn with_spec(mut pod: Value, key: &str, value: Value) -> Value {
    pod["spec"][key] = value;
    pod
}

// ---------------------------------------------------------------------------------------------
// /validate

struct DenyCase {
    what: &'static str,
    object: Value,
    operation: &'static str,
    code: &'static str,
    /// Fragments of the fix the message must carry.
    fix: &'static [&'static str],
}

fn deny_cases() -> Vec<DenyCase> {
    let ex = |what, code, fix| DenyCase {
        what,
        object: example_object(what),
        operation: "CREATE",
        code,
        fix,
    };
    let mut ghost = pod("shop", "ghost", &["registry.example.com/shop/ghost:1"]);
    ghost["spec"]["serviceAccountName"] = json!("ghost");
    ghost["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    let mut init = pod("shop", "init", &["registry.example.com/shop/web:1"]);
    init["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    init["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "registry.example.com/UPPER/setup:1"}]);
    vec![
        ex(
            "secret-not-found",
            "SecretNotFound",
            &[
                "regcreds",
                "did you mean \"regcred\"",
                "kubectl create secret docker-registry",
            ],
        ),
        ex(
            "other-namespace",
            "SecretInOtherNamespace",
            &[
                "payments-registry",
                "kubectl get secret payments-registry -n payments",
            ],
        ),
        ex(
            "registry-mismatch",
            "RegistryMismatch",
            &[
                "regcred",
                "port",
                "--docker-server=registry.example.com:5000",
            ],
        ),
        ex(
            "wrong-type",
            "WrongSecretType",
            &["gitlab-token", "Opaque", "kubernetes.io/dockerconfigjson"],
        ),
        ex(
            "malformed-secret",
            "MalformedSecret",
            &["harbor-broken", "kubectl"],
        ),
        ex(
            "no-credentials",
            "NoCredentials",
            &[
                "registry.internal.example:5000",
                "payments/payments-registry",
            ],
        ),
        ex(
            "sa-not-patched",
            "ServiceAccountNotPatched",
            &["regcred", "kubectl patch serviceaccount default -n shop"],
        ),
        ex(
            "wrong-service-account",
            "ServiceAccountNotPatched",
            &["ghcr-creds", "serviceAccountName: builder"],
        ),
        ex(
            "invalid-image",
            "InvalidImageReference",
            &["registry.example.com/Shop/Web:1", "spec.containers[].image"],
        ),
        // /validate sees the pod after /mutate: without injection nothing references regcred.
        ex(
            "injected",
            "ServiceAccountNotPatched",
            &["regcred", "kubectl patch serviceaccount"],
        ),
        // A workload template is checked like the pods its ReplicaSet will create.
        ex(
            "deployment-broken",
            "RegistryMismatch",
            &["regcred", "registry.example.com:5000"],
        ),
        DenyCase {
            what: "missing ServiceAccount",
            object: ghost,
            operation: "CREATE",
            code: "ServiceAccountMissing",
            fix: &["kubectl create serviceaccount ghost -n shop"],
        },
        DenyCase {
            what: "invalid init container image",
            object: init,
            operation: "CREATE",
            code: "InvalidImageReference",
            fix: &["spec.initContainers[].image"],
        },
        DenyCase {
            what: "UPDATE of a pod that cannot pull",
            object: example_object("no-credentials"),
            operation: "UPDATE",
            code: "NoCredentials",
            fix: &["recreate the pod"],
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_denies_every_error_code_with_its_cause_and_fix() {
    let (s, c) = server().await;
    let mut failures = Vec::new();
    for (i, case) in deny_cases().into_iter().enumerate() {
        let uid = format!("deny-{i}");
        let mut review = review_for("admission.k8s.io/v1", &uid, case.operation, &case.object);
        if case.operation == "UPDATE" {
            review["request"]["oldObject"] = case.object.clone();
        }
        let r = admit(&c, &s.url("/validate"), &review).await;
        let problems = deny_problems(&r, case.code, case.fix);
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}): {}\n  response: {r}",
                case.what,
                case.code,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn deny_problems(r: &Value, code: &str, fix: &[&str]) -> Vec<String> {
    let mut p = Vec::new();
    if r["allowed"] != false {
        p.push("not denied".to_owned());
        return p;
    }
    let st = &r["status"];
    if st["code"] != 403 {
        p.push(format!("status.code {}", st["code"]));
    }
    if st["reason"] != "Forbidden" {
        p.push(format!("status.reason {}", st["reason"]));
    }
    if st["status"] != "Failure" {
        p.push(format!("status.status {}", st["status"]));
    }
    let msg = st["message"].as_str().unwrap_or_default();
    if !msg.contains(&format!("{code}:")) {
        p.push(format!("message does not name {code}"));
    }
    for f in fix {
        if !msg.contains(f) {
            p.push(format!("message lacks {f:?}"));
        }
    }
    let denied = r["auditAnnotations"]["denied"].as_str().unwrap_or_default();
    if !denied.split(',').any(|c| c == code) {
        p.push(format!("auditAnnotations.denied {denied:?} lacks {code}"));
    }
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_warning_codes_admit_with_warnings_even_in_deny_namespaces() {
    let (s, c) = server().await;
    let lab = |name: &str, secret: &[&str], image: &str| {
        let refs: Vec<Value> = secret.iter().map(|n| json!({"name": n})).collect();
        with_spec(pod("lab", name, &[image]), "imagePullSecrets", json!(refs))
    };
    let cases: Vec<(&str, Value, &str, &[&str])> = vec![
        (
            "dockercfg",
            example_object("dockercfg"),
            "DeprecatedDockercfg",
            &["quay-legacy", "kubernetes.io/dockerconfigjson"],
        ),
        (
            "static-pod",
            example_object("static-pod"),
            "StaticPod",
            &["credential provider"],
        ),
        (
            "ambiguous",
            lab("amb", &["lab-a", "lab-b"], "lab.example.com/x/y:1"),
            "AmbiguousCredentials",
            &["lab-a", "lab-b"],
        ),
        (
            "stale",
            lab("stale", &["old-cred"], "stale.example.com/x/y:1"),
            "StaleCredentials",
            &["old-cred", "3650d"],
        ),
        (
            "helpers",
            lab("helper", &["helper-cred"], "helper.example.com/x/y:1"),
            "CredentialHelperIgnored",
            &["helper-cred", "helper.example.com", "auths"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, obj, code, frags)) in cases.into_iter().enumerate() {
        let r = admit(
            &c,
            &s.url("/validate"),
            &create_review(&format!("warn-{i}"), &obj),
        )
        .await;
        let w = warnings(&r);
        let mut p = Vec::new();
        if r["allowed"] != true {
            p.push("denied".to_owned());
        }
        if !r["status"].is_null() {
            p.push("has a status".to_owned());
        }
        match w
            .iter()
            .find(|w| w.starts_with(&format!("pullgate {code}")))
        {
            None => p.push(format!("no {code} warning")),
            Some(w) => {
                for f in frags {
                    if !w.contains(f) {
                        p.push(format!("warning lacks {f:?}"));
                    }
                }
                if w.len() > 256 {
                    p.push("warning longer than 256 bytes".to_owned());
                }
            }
        }
        let findings = r["auditAnnotations"]["findings"]
            .as_str()
            .unwrap_or_default();
        if !findings.split(',').any(|c| c == code) {
            p.push(format!(
                "auditAnnotations.findings {findings:?} lacks {code}"
            ));
        }
        if !r["auditAnnotations"]["would-deny"].is_null() {
            p.push("would-deny set for a warning".to_owned());
        }
        if !p.is_empty() {
            failures.push(format!(
                "{what} ({code}): {}\n  response: {r}",
                p.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn warn_mode_namespace_admits_with_warnings_and_audit_annotations() {
    let (s, c) = server().await;
    // payments has no label: the policy's default validation (warn) applies.
    let p = pod(
        "payments",
        "reporter",
        &["registry.example.com/pay/reporter:1"],
    );
    let r = admit(&c, &s.url("/validate"), &create_review("warn-mode", &p)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r["status"].is_null(), "{r}");
    let w = warnings(&r);
    assert!(
        w.iter()
            .any(|w| w.starts_with("pullgate NoCredentials") && w.contains("shop/regcred")),
        "{w:?}"
    );
    assert_eq!(r["auditAnnotations"]["findings"], "NoCredentials", "{r}");
    assert_eq!(r["auditAnnotations"]["would-deny"], "true", "{r}");

    // The covered image of the same namespace gets nothing.
    let ok = pod(
        "payments",
        "ledger",
        &["registry.internal.example:5000/pay/ledger:1"],
    );
    let ok = with_spec(
        ok,
        "imagePullSecrets",
        json!([{"name": "payments-registry"}]),
    );
    let r = admit(&c, &s.url("/validate"), &create_review("warn-mode-ok", &ok)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r["warnings"].is_null() && r["auditAnnotations"].is_null(),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_pods_are_never_denied_nor_mutated() {
    let (s, c) = server().await;
    let plain = example_object("static-pod");
    // Worse: a mirror pod with a missing secret and an uncovered registry.
    let mut worse = plain.clone();
    worse["metadata"]["name"] = json!("node-agent-node2");
    worse["spec"]["containers"] = json!([{"name": "a", "image": "nowhere.example/x/y:1"}]);
    worse["spec"]["imagePullSecrets"] = json!([{"name": "does-not-exist"}]);
    for (i, obj) in [plain, worse].iter().enumerate() {
        let r = admit(
            &c,
            &s.url("/validate"),
            &create_review(&format!("mirror-{i}"), obj),
        )
        .await;
        assert_eq!(r["allowed"], true, "{r}");
        assert!(r["status"].is_null(), "{r}");
        assert!(
            warnings(&r)
                .iter()
                .any(|w| w.starts_with("pullgate StaticPod")),
            "{r}"
        );
        assert!(r["auditAnnotations"]["would-deny"].is_null(), "{r}");
        let m = admit(
            &c,
            &s.url("/mutate"),
            &create_review(&format!("mirror-m-{i}"), obj),
        )
        .await;
        assert_eq!(m["allowed"], true, "{m}");
        assert!(m["patch"].is_null(), "mirror pods must not be patched: {m}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_namespace_is_untouched() {
    let (s, c) = server().await;
    let p = pod("kube-system", "coredns", &["private.example.net/dns:1"]);
    let p = with_spec(p, "imagePullSecrets", json!([{"name": "missing"}]));
    for ep in ["/validate", "/mutate"] {
        let r = admit(&c, &s.url(ep), &create_review("kube-system", &p)).await;
        assert_eq!(r, json!({"uid": "kube-system", "allowed": true}), "{ep}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ok_pod_is_allowed_without_findings() {
    let (s, c) = server().await;
    let r = admit(
        &c,
        &s.url("/validate"),
        &create_review("ok", &example_object("ok")),
    )
    .await;
    assert_eq!(r, json!({"uid": "ok", "allowed": true}));
    let m = admit(
        &c,
        &s.url("/mutate"),
        &create_review("ok-m", &example_object("ok")),
    )
    .await;
    assert_eq!(m, json!({"uid": "ok-m", "allowed": true}));
}

// ---------------------------------------------------------------------------------------------
// /mutate

#[tokio::test(flavor = "multi_thread")]
async fn mutate_sets_exact_pull_secrets_for_absent_empty_null_and_present_lists() {
    let (s, c) = server().await;
    let base = example_object("injected"); // shop, no imagePullSecrets, registry.example.com
    let mut present = pod(
        "shop",
        "mixed",
        &["ghcr.io/acme/tool:1", "registry.example.com/shop/x:1"],
    );
    present["spec"]["imagePullSecrets"] = json!([{"name": "ghcr-creds"}]);
    let mut many = pod(
        "shop",
        "many",
        &[
            "registry.example.com/a/b:1",
            "registry.example.com/c/d:2",
            "registry.example.com/e/f:3",
        ],
    );
    many["spec"]["initContainers"] =
        json!([{"name": "init", "image": "registry.example.com/init:1"}]);
    let two_registries = pod(
        "shop",
        "two",
        &["registry.example.com/shop/a:1", "quay.io/acme/legacy:1"],
    );
    let cases: Vec<(&str, Value, Vec<&str>, Vec<&str>)> = vec![
        ("absent", base.clone(), vec!["regcred"], vec!["regcred"]),
        (
            "empty",
            with_spec(base.clone(), "imagePullSecrets", json!([])),
            vec!["regcred"],
            vec!["regcred"],
        ),
        (
            "null",
            with_spec(base.clone(), "imagePullSecrets", Value::Null),
            vec!["regcred"],
            vec!["regcred"],
        ),
        (
            "present",
            present,
            vec!["ghcr-creds", "regcred"],
            vec!["regcred"],
        ),
        (
            "several containers of one registry",
            many,
            vec!["regcred"],
            vec!["regcred"],
        ),
        (
            "two registries",
            two_registries,
            vec!["regcred", "quay-legacy"],
            vec!["regcred", "quay-legacy"],
        ),
    ];
    for (i, (what, obj, want, injected)) in cases.into_iter().enumerate() {
        let r = admit(
            &c,
            &s.url("/mutate"),
            &create_review(&format!("m-{i}"), &obj),
        )
        .await;
        assert_eq!(r["allowed"], true, "{what}: {r}");
        assert!(r["status"].is_null(), "{what}: {r}");
        let patched = apply_patch(&obj, &r);
        let got = pod_pull_secrets(&patched);
        assert_eq!(got, want, "{what}: {r}");
        assert_eq!(
            r["auditAnnotations"]["injected"],
            injected.join(","),
            "{what}"
        );
        if what == "present" {
            // An existing list is appended to, never rewritten.
            let ops = patch_ops(&r);
            assert!(
                ops.iter()
                    .all(|o| o["op"] == "add" && o["path"] == "/spec/imagePullSecrets/-"),
                "{ops:?}"
            );
        }
        // Only imagePullSecrets changed.
        let mut without = patched.clone();
        without["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("imagePullSecrets");
        let mut orig = obj.clone();
        orig["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("imagePullSecrets");
        assert_eq!(
            without, orig,
            "{what}: the patch touched more than imagePullSecrets"
        );

        // Idempotent: the patched pod needs nothing more, and it now passes validation.
        let again = admit(
            &c,
            &s.url("/mutate"),
            &create_review(&format!("m-{i}-again"), &patched),
        )
        .await;
        assert_eq!(
            again,
            json!({"uid": format!("m-{i}-again"), "allowed": true}),
            "{what}"
        );
        let v = admit(
            &c,
            &s.url("/validate"),
            &create_review(&format!("m-{i}-v"), &patched),
        )
        .await;
        assert_eq!(v["allowed"], true, "{what}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutate_leaves_opted_out_updates_and_covered_pods_alone() {
    let (s, c) = server().await;
    let cases = [
        (
            "opt-out annotation",
            create_review("o-1", &example_object("sa-not-patched")),
        ),
        (
            "UPDATE",
            review_for(
                "admission.k8s.io/v1",
                "o-2",
                "UPDATE",
                &example_object("injected"),
            ),
        ),
        ("covered", create_review("o-3", &example_object("ok"))),
        (
            "duplicate references",
            create_review(
                "o-4",
                &with_spec(
                    example_object("ok"),
                    "imagePullSecrets",
                    json!([{"name": "regcred"}, {"name": "regcred"}]),
                ),
            ),
        ),
    ];
    for (what, review) in cases {
        let r = admit(&c, &s.url("/mutate"), &review).await;
        assert_eq!(r["allowed"], true, "{what}: {r}");
        assert!(
            r["patch"].is_null() && r["patchType"].is_null(),
            "{what}: {r}"
        );
    }
    // The mutating webhook never denies, even for a pod validation would reject.
    for name in [
        "no-credentials",
        "invalid-image",
        "wrong-type",
        "malformed-secret",
    ] {
        let r = admit(
            &c,
            &s.url("/mutate"),
            &create_review(name, &example_object(name)),
        )
        .await;
        assert_eq!(r["allowed"], true, "{name}: {r}");
        assert!(r["status"].is_null(), "{name}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutate_then_validate_agrees_with_offline_check() {
    let (s, c) = server().await;
    let policy = test_policy();
    let cluster = pullgate::manifests::load_paths(&[shared_manifests().to_owned()]).expect("docs");
    let mut files: Vec<_> = std::fs::read_dir(examples().join("pods"))
        .expect("pods")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        let name = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let obj = example_object(&name);
        let m = admit(
            &c,
            &s.url("/mutate"),
            &create_review(&format!("{name}-m"), &obj),
        )
        .await;
        let after = if m["patch"].is_null() {
            obj.clone()
        } else {
            apply_patch(&obj, &m)
        };
        let v = admit(
            &c,
            &s.url("/validate"),
            &create_review(&format!("{name}-v"), &after),
        )
        .await;

        let mut docs = cluster.clone();
        docs.extend(pullgate::manifests::load_paths(std::slice::from_ref(&f)).expect("pod doc"));
        let report = pullgate::check::check(
            &docs,
            &policy,
            "default",
            jiff::Timestamp::now().as_second(),
        );
        assert_eq!(report.results.len(), 1, "{name}");
        let offline = &report.results[0];
        assert_eq!(
            v["allowed"], offline.allowed,
            "{name}: webhook {v} vs check {offline:?}"
        );
        let injected: Vec<String> = m["auditAnnotations"]["injected"]
            .as_str()
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        if obj["kind"] == "Pod" {
            assert_eq!(injected, offline.injected_secrets, "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_create_gets_secrets_and_managed_annotation() {
    let (s, c) = server().await;
    // Newest first: regcred (2026-10), quay-legacy (2025-06), ghcr-creds (2025-01); harbor-broken is
    // unusable and gitlab-token is not a pull secret.
    let all = ["regcred", "quay-legacy", "ghcr-creds"];
    let fresh = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fresh", "namespace": "shop"}});
    let r = admit(&c, &s.url("/mutate"), &create_review("sa-1", &fresh)).await;
    assert_eq!(r["allowed"], true, "{r}");
    let patched = apply_patch(&fresh, &r);
    let sa: ServiceAccount = serde_json::from_value(patched.clone()).expect("a ServiceAccount");
    assert_eq!(names(sa.image_pull_secrets.as_ref()), all);
    assert_eq!(
        sa.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("pullgate.io/managed-pull-secrets"))
            .map(String::as_str),
        Some("regcred,quay-legacy,ghcr-creds")
    );
    assert_eq!(r["auditAnnotations"]["injected"], all.join(","));
    let again = admit(
        &c,
        &s.url("/mutate"),
        &create_review("sa-1-again", &patched),
    )
    .await;
    assert!(again["patch"].is_null(), "not idempotent: {again}");

    // Existing annotations and list: the annotation is added through an escaped JSON pointer.
    let owned = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "owned", "namespace": "shop", "annotations": {"team": "web"}},
        "imagePullSecrets": [{"name": "ghcr-creds"}]});
    let r = admit(&c, &s.url("/mutate"), &create_review("sa-2", &owned)).await;
    let ops = patch_ops(&r);
    assert!(
        ops.iter()
            .any(|o| o["path"] == "/metadata/annotations/pullgate.io~1managed-pull-secrets"),
        "{ops:?}"
    );
    let patched = apply_patch(&owned, &r);
    let sa: ServiceAccount = serde_json::from_value(patched.clone()).expect("a ServiceAccount");
    assert_eq!(
        names(sa.image_pull_secrets.as_ref()),
        ["ghcr-creds", "regcred", "quay-legacy"]
    );
    let ann = sa.metadata.annotations.expect("annotations");
    assert_eq!(ann.get("team").map(String::as_str), Some("web"));
    assert_eq!(
        ann.get("pullgate.io/managed-pull-secrets")
            .map(String::as_str),
        Some("regcred,quay-legacy")
    );

    // Opted out.
    let out = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "out", "namespace": "shop", "annotations": {"pullgate.io/inject": "false"}}});
    let r = admit(&c, &s.url("/mutate"), &create_review("sa-3", &out)).await;
    assert_eq!(r, json!({"uid": "sa-3", "allowed": true}));
    // Excluded namespace.
    let sys = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "namespace": "kube-system"}});
    let r = admit(&c, &s.url("/mutate"), &create_review("sa-4", &sys)).await;
    assert_eq!(r, json!({"uid": "sa-4", "allowed": true}));
}

// ---------------------------------------------------------------------------------------------
// Captured reviews

#[tokio::test(flavor = "multi_thread")]
async fn captured_api_server_reviews_are_answered() {
    let (s, c) = server().await;
    // (fixture, endpoint, imagePullSecrets after the patch or None for no patch)
    let cases: [(&str, &str, Option<&[&str]>); 6] = [
        (
            "admissionreview-pod-create-mutate.json",
            "/mutate",
            Some(&["regcred-sa"]),
        ),
        (
            "admissionreview-pod-create-mutate-from-replicaset-generateName.json",
            "/mutate",
            Some(&["regcred-sa"]),
        ),
        (
            "admissionreview-pod-create-mutate-sa-with-pullsecrets.json",
            "/mutate",
            None,
        ),
        (
            "admissionreview-pod-create-mutate-pod-has-own-pullsecrets.json",
            "/mutate",
            None,
        ),
        (
            "admissionreview-pod-create-mutate-dryrun.json",
            "/mutate",
            None,
        ),
        (
            "admissionreview-pod-create-validate-after-mutation.json",
            "/validate",
            None,
        ),
    ];
    for (file, ep, want) in cases {
        let review = fixture_review(file);
        // The API server calls with ?timeout=…
        let r = admit(&c, &s.url(&format!("{ep}?timeout=5s")), &review).await;
        assert_eq!(r["allowed"], true, "{file}: {r}");
        assert!(r["status"].is_null(), "{file}: {r}");
        let obj = &review["request"]["object"];
        match want {
            Some(want) => {
                let patched = apply_patch(obj, &r);
                assert_eq!(pod_pull_secrets(&patched), want, "{file}");
                // Everything else of the real object survives.
                assert_eq!(patched["metadata"], obj["metadata"], "{file}");
                assert_eq!(
                    patched["spec"]["containers"], obj["spec"]["containers"],
                    "{file}"
                );
                let again = admit(&c, &s.url(&format!("{ep}?timeout=5s")), &json!({
                    "apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                    "request": {"uid": "again", "kind": review["request"]["kind"], "namespace": "wh-test",
                                "operation": "CREATE", "object": patched}})).await;
                assert!(again["patch"].is_null(), "{file}: not idempotent: {again}");
            }
            None => {
                assert!(r["patch"].is_null(), "{file}: unexpected patch {r}");
                assert!(r["warnings"].is_null(), "{file}: unexpected warnings {r}");
            }
        }
    }
    // The generateName pod has no name; the patch keeps it that way.
    let rs = fixture_review("admissionreview-pod-create-mutate-from-replicaset-generateName.json");
    assert!(rs["request"]["object"]["metadata"]["name"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn captured_service_account_review_is_patched_with_escaped_annotation() {
    let (s, c) = server().await;
    let review = fixture_review("admissionreview-serviceaccount-create-mutate.json");
    let r = admit(&c, &s.url("/mutate?timeout=5s"), &review).await;
    let ops = patch_ops(&r);
    assert!(
        ops.iter().any(
            |o| o["path"] == "/metadata/annotations/pullgate.io~1managed-pull-secrets"
                && o["value"] == "webhook-injected,regcred-pod"
        ),
        "{ops:?}"
    );
    let obj = &review["request"]["object"];
    let patched = apply_patch(obj, &r);
    let sa: ServiceAccount = serde_json::from_value(patched.clone()).expect("a ServiceAccount");
    // Newest first: webhook-injected (2026-11-20), regcred-pod (2026-06-01).
    assert_eq!(
        names(sa.image_pull_secrets.as_ref()),
        ["regcred-sa", "webhook-injected", "regcred-pod"]
    );
    let ann = sa.metadata.annotations.expect("annotations");
    assert!(ann.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(
        patched["metadata"]["managedFields"],
        obj["metadata"]["managedFields"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_is_served_identically() {
    let (s, c) = server().await;
    let dry = fixture_review("admissionreview-pod-create-mutate-dryrun.json");
    assert_eq!(dry["request"]["dryRun"], true);
    let mut wet = dry.clone();
    wet["request"]["dryRun"] = json!(false);
    wet["request"]["uid"] = json!("wet");
    // And the same pair for a pod that needs injection.
    let mut dry_inject = dry.clone();
    dry_inject["request"]["uid"] = json!("dry-inject");
    let spec = dry_inject["request"]["object"]["spec"]
        .as_object_mut()
        .expect("spec");
    spec.remove("imagePullSecrets");
    spec.insert("serviceAccountName".into(), json!("default"));
    spec.insert("serviceAccount".into(), json!("default"));
    let mut wet_inject = dry_inject.clone();
    wet_inject["request"]["dryRun"] = json!(false);
    wet_inject["request"]["uid"] = json!("wet-inject");
    for (a, b) in [(dry, wet), (dry_inject, wet_inject)] {
        for ep in ["/mutate", "/validate"] {
            let mut ra = admit(&c, &s.url(ep), &a).await;
            let mut rb = admit(&c, &s.url(ep), &b).await;
            ra["uid"] = json!("");
            rb["uid"] = json!("");
            assert_eq!(ra, rb, "{ep}: dry run answered differently");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_query_strings_are_accepted() {
    let (s, c) = server().await;
    let review = fixture_review("admissionreview-pod-create-mutate.json");
    for q in [
        "?timeout=5s",
        "?timeout=30s",
        "?timeout=10s&x=y",
        "?timeout=bogus",
        "?timeout=",
        "?x=1",
    ] {
        let r = admit(&c, &s.url(&format!("/mutate{q}")), &review).await;
        assert_eq!(r["patchType"], "JSONPatch", "{q}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn v1beta1_review_gets_v1beta1_response() {
    let (s, c) = server().await;
    let deny = review_for(
        "admission.k8s.io/v1beta1",
        "beta-deny",
        "CREATE",
        &example_object("no-credentials"),
    );
    let r = admit(&c, &s.url("/validate"), &deny).await; // admit() checks the echoed apiVersion
    assert_eq!(r["allowed"], false, "{r}");
    let inject = review_for(
        "admission.k8s.io/v1beta1",
        "beta-inject",
        "CREATE",
        &example_object("injected"),
    );
    let r = admit(&c, &s.url("/mutate"), &inject).await;
    assert_eq!(
        pod_pull_secrets(&apply_patch(&inject["request"]["object"], &r)),
        ["regcred"]
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[tokio::test(flavor = "multi_thread")]
async fn http1_and_http2_are_both_served() {
    let s = start_in_process(shared_manifests(), test_policy()).await;
    let review = create_review("proto", &example_object("injected"));
    for (http1, want) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let c = https_client(&s.ca_pem, http1);
        for ep in ["/mutate", "/validate"] {
            let a = post_json(&c, &s.url(ep), &review).await;
            assert_eq!(a.status, 200, "{ep}");
            assert_eq!(a.version, want, "{ep}: ALPN did not negotiate {want:?}");
            assert_eq!(a.json()["response"]["uid"], "proto");
        }
        let h = get(&c, &s.url("/healthz")).await;
        assert_eq!((h.status, h.version), (200, want));
    }
    // Several requests multiplexed on one HTTP/2 connection.
    let c = https_client(&s.ca_pem, false);
    let futs: Vec<_> = (0..16)
        .map(|i| {
            let c = c.clone();
            let url = s.url("/validate");
            let r = create_review(&format!("mux-{i}"), &example_object("ok"));
            async move { post_json(&c, &url, &r).await }
        })
        .collect();
    for (i, a) in futures::future::join_all(futs)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["response"]["uid"], format!("mux-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_json_errors_and_the_server_stays_healthy() {
    let (s, c) = server().await;
    let json_ct = Some("application/json");
    let review = |request: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
            .to_string()
            .into_bytes()
    };
    let pod_req = json!({"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "shop", "operation": "CREATE"});
    let without_uid = {
        let mut r = pod_req.clone();
        r.as_object_mut().expect("obj").remove("uid");
        r
    };
    let mut empty_uid = pod_req.clone();
    empty_uid["uid"] = json!("");
    use reqwest::Method;
    type Case<'a> = (&'a str, Method, &'a str, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("not JSON", Method::POST, "/validate", json_ct, b"{not json".to_vec(), 400),
        ("empty body", Method::POST, "/mutate", json_ct, Vec::new(), 400),
        ("JSON array", Method::POST, "/validate", json_ct, b"[]".to_vec(), 400),
        ("JSON string", Method::POST, "/mutate", json_ct, b"\"AdmissionReview\"".to_vec(), 400),
        ("not an AdmissionReview", Method::POST, "/validate", json_ct, br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#.to_vec(), 400),
        ("wrong review version", Method::POST, "/mutate", json_ct, br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(), 400),
        ("missing request", Method::POST, "/validate", json_ct, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400),
        ("null request", Method::POST, "/mutate", json_ct, review(Value::Null), 400),
        ("request not an object", Method::POST, "/validate", json_ct, review(json!([1, 2])), 400),
        ("missing uid", Method::POST, "/validate", json_ct, review(without_uid), 400),
        ("empty uid", Method::POST, "/mutate", json_ct, review(empty_uid), 400),
        ("uid not a string", Method::POST, "/validate", json_ct, review(json!({"uid": 7})), 400),
        ("text/plain", Method::POST, "/validate", Some("text/plain"), review(pod_req.clone()), 415),
        ("no content type", Method::POST, "/mutate", None, review(pod_req.clone()), 415),
        ("application/jsonx", Method::POST, "/mutate", Some("application/jsonx"), review(pod_req.clone()), 415),
        ("GET /mutate", Method::GET, "/mutate", None, Vec::new(), 405),
        ("PUT /validate", Method::PUT, "/validate", json_ct, review(pod_req.clone()), 405),
        ("POST /healthz", Method::POST, "/healthz", json_ct, Vec::new(), 405),
        ("unknown path", Method::POST, "/nope", json_ct, review(pod_req.clone()), 404),
        ("GET /", Method::GET, "/", None, Vec::new(), 404),
    ];
    let mut failures = Vec::new();
    for (what, method, path, ct, body, want) in cases {
        let a = send(&c, method, &s.url(path), ct, body).await;
        let parsed: Option<Value> = serde_json::from_str(&a.text).ok();
        let ok = a.status == want
            && a.content_type.starts_with("application/json")
            && parsed.as_ref().is_some_and(|v| {
                v["code"] == want && v["error"].as_str().is_some_and(|e| !e.is_empty())
            });
        if !ok {
            failures.push(format!(
                "{what}: want {want} with a JSON error, got {} {:?} {}",
                a.status, a.content_type, a.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );

    let h = get(&c, &s.url("/healthz")).await;
    assert_eq!(h.status, 200);
    let r = admit(
        &c,
        &s.url("/validate"),
        &create_review("after", &example_object("ok")),
    )
    .await;
    assert_eq!(r["allowed"], true);
}

/// serde's derived structs also accept JSON arrays (fields by position): an array is not an
/// AdmissionReview, not a request and not an object, and must not be answered as one.
#[tokio::test(flavor = "multi_thread")]
async fn array_shaped_json_is_not_read_as_a_review() {
    let (s, c) = server().await;
    let pod = json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": {"containers": [{"name": "c", "image": "nowhere.example/x:1"}]}});
    let cases = [
        (
            "top-level array",
            json!(["admission.k8s.io/v1", "AdmissionReview", {"uid": "top", "kind": {"group": "", "kind": "Pod"}, "namespace": "shop", "operation": "CREATE", "object": pod}]),
        ),
        (
            "request as array",
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": ["req-uid"]}),
        ),
    ];
    let mut failures = Vec::new();
    for ep in ["/validate", "/mutate"] {
        for (what, body) in &cases {
            let a = post_json(&c, &s.url(ep), body).await;
            if a.status != 400 {
                failures.push(format!(
                    "{ep} {what}: want 400, got {} {}",
                    a.status, a.text
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_objects_are_answered_with_allowed_false_code_400() {
    let (s, c) = server().await;
    let review = |request: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
            .to_string()
            .into_bytes()
    };
    let pod_req = json!({"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "shop", "operation": "CREATE"});
    let json_ct = Some("application/json");
    use reqwest::Method;
    let mut failures = Vec::new();
    // Unreadable objects are answered as reviews (the API server needs the uid): allowed=false, code 400.
    let objects = [
        ("missing object", None),
        ("null object", Some(Value::Null)),
        ("string object", Some(json!("a pod"))),
        ("number object", Some(json!(42))),
        ("array object", Some(json!([{"spec": {}}]))),
        (
            "array of a pod's parts",
            Some(
                json!([{"metadata": {"name": "p"}}, {"containers": [{"name": "c", "image": "nowhere.example/x:1"}]}]),
            ),
        ),
        ("boolean object", Some(json!(true))),
        (
            "containers not a list",
            Some(json!({"metadata": {"name": "p"}, "spec": {"containers": "c"}})),
        ),
    ];
    for ep in ["/validate", "/mutate"] {
        for (what, obj) in &objects {
            let mut req = pod_req.clone();
            req["uid"] = json!(format!("obj-{what}"));
            if let Some(o) = obj {
                req["object"] = o.clone();
            }
            let a = send(&c, Method::POST, &s.url(ep), json_ct, review(req)).await;
            let r = serde_json::from_str::<Value>(&a.text)
                .ok()
                .map(|v| v["response"].clone());
            let ok = a.status == 200
                && r.as_ref().is_some_and(|r| {
                    r["uid"] == format!("obj-{what}")
                        && r["allowed"] == false
                        && r["status"]["code"] == 400
                });
            if !ok {
                failures.push(format!(
                    "{ep} {what}: want 200 with allowed=false code 400, got {} {}",
                    a.status, a.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(get(&c, &s.url("/healthz")).await.status, 200);
}

fn five_mib_review() -> Vec<u8> {
    let mut big = create_review("big", &example_object("ok"));
    big["request"]["object"]["metadata"]["annotations"] = json!({"filler": "x".repeat(5 << 20)});
    let body = serde_json::to_vec(&big).expect("json");
    assert!(body.len() > 5 << 20);
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn five_mebibyte_body_is_refused_with_413() {
    let (s, _) = server().await;
    let body = five_mib_review();
    // HTTP/2 (what a Go client such as the API server negotiates): the 413 always arrives.
    let c = https_client(&s.ca_pem, false);
    for ep in ["/validate", "/mutate"] {
        let a = send(
            &c,
            reqwest::Method::POST,
            &s.url(ep),
            Some("application/json"),
            body.clone(),
        )
        .await;
        assert_eq!(a.version, reqwest::Version::HTTP_2);
        assert_eq!(a.status, 413, "{ep}: {}", a.text);
        let v = a.json();
        assert_eq!(v["code"], 413);
        assert_eq!(
            v["error"],
            format!(
                "body larger than {} bytes",
                pullgate::server::MAX_BODY_BYTES
            )
        );
    }
    // HTTP/1.1: the server answers 413 and closes while the client is still writing, so the
    // client sees either the 413 or a broken pipe/reset; either way the server stays healthy.
    let c1 = https_client(&s.ca_pem, true);
    for ep in ["/validate", "/mutate"] {
        if let Ok(a) = try_send(
            &c1,
            reqwest::Method::POST,
            &s.url(ep),
            Some("application/json"),
            body.clone(),
        )
        .await
        {
            assert_eq!(a.status, 413, "{ep}: {}", a.text);
            assert_eq!(a.json()["code"], 413);
        }
        let fresh = https_client(&s.ca_pem, true);
        assert_eq!(get(&fresh, &s.url("/healthz")).await.status, 200);
    }
    // Just under the limit is still read (and answered as a review).
    let mut fits = create_review("fits", &example_object("ok"));
    fits["request"]["object"]["metadata"]["annotations"] = json!({"filler": "x".repeat(3 << 20)});
    let r = admit(&c, &s.url("/validate"), &fits).await;
    assert_eq!(r["allowed"], true);
}

/// A declared Content-Length over the limit should be refused from the headers alone: with
/// `Expect: 100-continue` the client then never sends the body (and an HTTP/1.1 client is never
/// left writing into a closed connection).
#[tokio::test(flavor = "multi_thread")]
async fn oversized_content_length_is_refused_before_the_body_is_sent() {
    let (s, _) = server().await;
    let mut conn = RawConn::connect(s.addr, &s.ca_pem).await.expect("connect");
    conn.write(
        format!(
            "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            5 << 20
        )
        .as_bytes(),
    )
    .await
    .expect("headers");
    let r = tokio::time::timeout(Duration::from_secs(10), conn.read_response())
        .await
        .expect("no answer within 10s")
        .expect("answer");
    assert_eq!(
        r.status, 413,
        "the server asked for the 5 MiB body (100 Continue) instead of refusing it from Content-Length"
    );
    assert_eq!(r.json()["code"], 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_report_health_and_readiness() {
    let (s, c) = server().await;
    let h = get(&c, &s.url("/healthz")).await;
    assert_eq!((h.status, h.text.as_str()), (200, "ok"));
    let r = get(&c, &s.url("/readyz")).await;
    assert_eq!((r.status, r.text.as_str()), (200, "ok"));
    // During a drain (serving=false) readiness fails while liveness holds.
    s.state
        .serving
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(&c, &s.url("/readyz")).await.status, 503);
    assert_eq!(get(&c, &s.url("/healthz")).await.status, 200);
    s.state
        .serving
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(&c, &s.url("/readyz")).await.status, 200);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The binary

/// A directory laid out like a Kubernetes Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..TIMESTAMP.
struct SecretVolume {
    dir: std::path::PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(dir: &Path, cert: &[u8], key: &[u8]) -> SecretVolume {
        std::fs::create_dir_all(dir).expect("volume dir");
        let mut v = SecretVolume {
            dir: dir.to_owned(),
            version: 0,
        };
        v.swap(cert, key);
        for f in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).expect("file symlink");
        }
        v
    }

    /// Write a new timestamped dir, point `..data_tmp` at it, and rename it over `..data` (atomic).
    fn swap(&mut self, cert: &[u8], key: &[u8]) {
        self.version += 1;
        let ts = format!(
            "..2026_11_29_00_00_{:02}.{}",
            self.version,
            1000 + self.version
        );
        let d = self.dir.join(&ts);
        std::fs::create_dir(&d).expect("timestamped dir");
        std::fs::write(d.join("tls.crt"), cert).expect("cert");
        std::fs::write(d.join("tls.key"), key).expect("key");
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("rename ..data");
    }

    fn cert(&self) -> std::path::PathBuf {
        self.dir.join("tls.crt")
    }
    fn key(&self) -> std::path::PathBuf {
        self.dir.join("tls.key")
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn handshake_ok(addr: std::net::SocketAddr, ca: &str) -> bool {
    match RawConn::connect(addr, ca).await {
        Ok(mut c) => c.get("/healthz").await.is_ok_and(|r| r.status == 200),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_hot_reload_follows_secret_volume_swaps() {
    install_crypto();
    let tmp = scratch("reload");
    let a = make_certs(&tmp.path().join("a"));
    let b = make_certs(&tmp.path().join("b"));
    let cc = make_certs(&tmp.path().join("c"));
    let mut vol = SecretVolume::new(
        &tmp.path().join("volume"),
        &read(&a.cert()),
        &read(&a.key()),
    );
    let manifests = tmp.path().join("manifests");
    write_test_manifests(&manifests);
    let mut srv = spawn_serve(ServeOpts {
        manifests: &manifests,
        cert: &vol.cert(),
        key: &vol.key(),
        rust_log: "info",
        extra: &[],
    });

    // A keep-alive connection trusting CA-A.
    let mut kept = RawConn::connect(srv.listen, &a.ca_pem)
        .await
        .expect("handshake with cert A");
    assert_eq!(kept.get("/healthz").await.expect("GET").status, 200);
    assert!(
        !handshake_ok(srv.listen, &b.ca_pem).await,
        "CA-B accepted before the rotation"
    );

    // Rotate to B.
    vol.swap(&read(&b.cert()), &read(&b.key()));
    poll("a handshake trusting only CA-B", DEADLINE, || async {
        handshake_ok(srv.listen, &b.ca_pem).await.then_some(())
    })
    .await;
    assert!(
        !handshake_ok(srv.listen, &a.ca_pem).await,
        "new handshakes still get cert A"
    );
    let r = kept
        .get("/healthz")
        .await
        .expect("the open connection survives the rotation");
    assert_eq!(r.status, 200);
    let body = serde_json::to_vec(&create_review("kept", &example_object("ok"))).expect("json");
    kept.write(format!("POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).await.expect("write");
    kept.write(&body).await.expect("write");
    let r = kept
        .read_response()
        .await
        .expect("answer on the old connection");
    assert_eq!(r.json()["response"]["uid"], "kept");

    // A mismatched pair (cert C, key B) is refused: B stays.
    let mark = srv.mark();
    vol.swap(&read(&cc.cert()), &read(&b.key()));
    srv.wait_log("the refused mismatched pair", mark, |v| {
        v["level"] == "ERROR"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("certificate reload failed"))
    });
    assert!(
        handshake_ok(srv.listen, &b.ca_pem).await,
        "B no longer served after a mismatched pair"
    );
    assert!(
        !handshake_ok(srv.listen, &cc.ca_pem).await,
        "the mismatched cert C is served"
    );

    // A half-written certificate is refused: B stays.
    let cert_c = read(&cc.cert());
    let mark = srv.mark();
    vol.swap(&cert_c[..cert_c.len() / 2], &read(&cc.key()));
    srv.wait_log("the refused half-written certificate", mark, |v| {
        v["level"] == "ERROR"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("certificate reload failed"))
    });
    assert!(
        handshake_ok(srv.listen, &b.ca_pem).await,
        "B no longer served after a half-written cert"
    );

    // The complete pair C then goes live.
    vol.swap(&cert_c, &read(&cc.key()));
    poll("a handshake trusting only CA-C", DEADLINE, || async {
        handshake_ok(srv.listen, &cc.ca_pem).await.then_some(())
    })
    .await;
    srv.sigterm();
    assert!(srv.finish(DEADLINE).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_an_in_flight_request_and_exits_zero() {
    install_crypto();
    let certs = shared_certs();
    let mut srv = spawn_serve(ServeOpts {
        manifests: shared_manifests(),
        cert: &certs.cert(),
        key: &certs.key(),
        rust_log: "info",
        extra: &["--shutdown-grace-period", "10s"],
    });
    let mut conn = RawConn::connect(srv.listen, &certs.ca_pem)
        .await
        .expect("connect");
    assert_eq!(conn.get("/readyz").await.expect("readyz").status, 200);
    // An idle keep-alive connection must not hold the drain up.
    let mut idle = RawConn::connect(srv.listen, &certs.ca_pem)
        .await
        .expect("connect");
    assert_eq!(idle.get("/healthz").await.expect("healthz").status, 200);

    let body =
        serde_json::to_vec(&create_review("in-flight", &example_object("injected"))).expect("json");
    let half = body.len() / 2;
    conn.write(
        format!(
            "POST /mutate?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("headers");
    // 100 Continue: the handler is reading the body, the request is in flight.
    let cont = conn.read_response().await.expect("100 Continue");
    assert_eq!(cont.status, 100);
    conn.write(&body[..half]).await.expect("first half");

    let mark = srv.mark();
    let t0 = Instant::now();
    srv.sigterm();
    tokio::task::block_in_place(|| {
        srv.wait_log("the drain to start", mark, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("termination signal"))
        })
    });
    assert!(
        idle.closed_within(Duration::from_secs(5)).await,
        "the idle connection was not closed on drain"
    );

    conn.write(&body[half..]).await.expect("second half");
    let resp = conn
        .read_response()
        .await
        .expect("the in-flight request is answered");
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["response"]["uid"], "in-flight");
    assert_eq!(v["response"]["patchType"], "JSONPatch");
    assert!(
        conn.closed_within(Duration::from_secs(5)).await,
        "connection kept open after the drain"
    );

    let status = tokio::task::block_in_place(|| srv.finish(Duration::from_secs(15)))
        .expect("pullgate did not exit within the grace period");
    assert_eq!(status.code(), Some(0), "stderr: {}", srv.stderr_text());
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        t0.elapsed()
    );
    let out = srv.stdout_text();
    assert!(out.contains("all connections drained"), "{out}");
    assert!(!out.contains("grace period over"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_stuck_client_exits_after_the_grace_period() {
    install_crypto();
    let certs = shared_certs();
    let mut srv = spawn_serve(ServeOpts {
        manifests: shared_manifests(),
        cert: &certs.cert(),
        key: &certs.key(),
        rust_log: "info",
        extra: &["--shutdown-grace-period", "1s"],
    });
    let mut conn = RawConn::connect(srv.listen, &certs.ca_pem)
        .await
        .expect("connect");
    conn.write(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n{")
        .await
        .expect("write");
    assert_eq!(conn.read_response().await.expect("100").status, 100);
    let t0 = Instant::now();
    srv.sigterm();
    let status = tokio::task::block_in_place(|| srv.finish(Duration::from_secs(15)))
        .expect("pullgate hung on a stuck client");
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "did not wait for the grace period"
    );
    assert!(
        srv.stdout_text().contains("grace period over"),
        "{}",
        srv.stdout_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_denials_injections_and_store_and_cert_state() {
    install_crypto();
    let tmp = scratch("metrics");
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("dir");
    std::fs::copy(
        examples().join("cluster/cluster.yaml"),
        manifests.join("cluster.yaml"),
    )
    .expect("copy");
    let certs = shared_certs();
    let mut srv = spawn_serve(ServeOpts {
        manifests: &manifests,
        cert: &certs.cert(),
        key: &certs.key(),
        rust_log: "info",
        extra: &[],
    });
    let c = https_client(&certs.ca_pem, false);
    let r = admit(
        &c,
        &srv.url("/validate"),
        &create_review("m1", &example_object("no-credentials")),
    )
    .await;
    assert_eq!(r["allowed"], false);
    let r = admit(
        &c,
        &srv.url("/mutate"),
        &create_review("m2", &example_object("injected")),
    )
    .await;
    assert!(r["patch"].is_string());
    let p = pod(
        "payments",
        "reporter",
        &["registry.example.com/pay/reporter:1"],
    );
    let r = admit(&c, &srv.url("/validate"), &create_review("m3", &p)).await;
    assert_eq!(r["auditAnnotations"]["would-deny"], "true");
    let a = send(
        &c,
        reqwest::Method::POST,
        &srv.url("/mutate"),
        Some("application/json"),
        b"nope".to_vec(),
    )
    .await;
    assert_eq!(a.status, 400);

    let m = scrape(srv.metrics).await;
    let req = |ep: &str, kind: &str, op: &str, res: &str| {
        sample(
            &m,
            "pullgate_admission_requests_total",
            &[
                ("endpoint", ep),
                ("kind", kind),
                ("operation", op),
                ("result", res),
            ],
        )
    };
    assert_eq!(req("validate", "Pod", "CREATE", "denied"), Some(1.0), "{m}");
    assert_eq!(req("mutate", "Pod", "CREATE", "mutated"), Some(1.0), "{m}");
    assert_eq!(
        req("validate", "Pod", "CREATE", "allowed"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(req("mutate", "other", "other", "error"), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "pullgate_admission_duration_seconds_count",
            &[("endpoint", "validate")]
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "pullgate_admission_duration_seconds_count",
            &[("endpoint", "mutate")]
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "pullgate_admission_duration_seconds_bucket",
            &[("endpoint", "validate"), ("le", "+Inf")]
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pullgate_denials_total", &[("code", "NoCredentials")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pullgate_warnings_total", &[("code", "NoCredentials")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "pullgate_would_deny_total",
            // The default policy's pattern: `auto`.
            &[("namespace", "payments"), ("registry", "auto")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pullgate_injected_secrets_total", &[("kind", "Pod")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pullgate_store_objects", &[("kind", "Secret")]),
        Some(6.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pullgate_store_objects", &[("kind", "ServiceAccount")]),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pullgate_store_objects", &[("kind", "Namespace")]),
        Some(2.0),
        "{m}"
    );
    let expiry =
        sample(&m, "pullgate_tls_certificate_expiry_timestamp_seconds", &[]).expect("cert expiry");
    let now = jiff::Timestamp::now().as_second() as f64;
    let days = (expiry - now) / 86_400.0;
    assert!((364.0..=366.0).contains(&days), "expiry in {days} days");
    // No pod names or uids in label values.
    assert!(!m.contains("reporter") && !m.contains("batch"), "{m}");

    // The store gauge follows a manifest reload.
    std::fs::write(
        manifests.join("more.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: extra\n  namespace: payments\ntype: Opaque\ndata:\n  a: Yg==\n",
    )
    .expect("write");
    let addr = srv.metrics;
    poll(
        "store_objects{Secret} to reach 7",
        DEADLINE,
        || async move {
            (sample(
                &scrape(addr).await,
                "pullgate_store_objects",
                &[("kind", "Secret")],
            ) == Some(7.0))
            .then_some(())
        },
    )
    .await;
    srv.sigterm();
    assert!(srv.finish(DEADLINE).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_appear_in_logs_metrics_or_responses() {
    install_crypto();
    let tmp = scratch("secrecy");
    let manifests = tmp.path().join("manifests");
    write_test_manifests(&manifests);
    std::fs::write(manifests.join("vault.yaml"), planted_manifests()).expect("planted");
    let certs = shared_certs();
    let mut srv = spawn_serve(ServeOpts {
        manifests: &manifests,
        cert: &certs.cert(),
        key: &certs.key(),
        rust_log: "debug",
        extra: &[],
    });
    let mut bodies: Vec<String> = Vec::new();
    let c = https_client(&certs.ca_pem, false);
    let c1 = https_client(&certs.ca_pem, true);

    let mut reviews: Vec<(&str, Value)> = Vec::new();
    // Injection of the planted secret.
    reviews.push((
        "/mutate",
        create_review(
            "s-inject",
            &pod("vault", "app", &["private.example.org/app:1"]),
        ),
    ));
    // Each planted secret referenced by a pod whose image it should cover.
    for (i, (secret, host)) in [
        ("good", "private.example.org"),
        ("bad-auth", "bad.example.org"),
        ("no-colon", "colon.example.org"),
        ("wrong-shape", "shape.example.org"),
        ("not-json", "notjson.example.org"),
        ("helpers", "helped.example.org"),
        ("legacy", "legacy.example.org"),
        ("opaque", "private.example.org"),
    ]
    .into_iter()
    .enumerate()
    {
        let p = with_spec(
            pod("vault", &format!("p{i}"), &[&format!("{host}/app:1")]),
            "imagePullSecrets",
            json!([{"name": secret}]),
        );
        reviews.push(("/validate", create_review(&format!("s-v-{i}"), &p)));
        reviews.push(("/mutate", create_review(&format!("s-m-{i}"), &p)));
    }
    // The example pods (denials with the example credentials in the store).
    for name in [
        "malformed-secret",
        "wrong-type",
        "registry-mismatch",
        "ok",
        "dockercfg",
        "injected",
    ] {
        reviews.push((
            "/validate",
            create_review(&format!("s-ex-{name}"), &example_object(name)),
        ));
        reviews.push((
            "/mutate",
            create_review(&format!("s-exm-{name}"), &example_object(name)),
        ));
    }
    // ServiceAccounts in vault and shop.
    for ns in ["vault", "shop"] {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "new", "namespace": ns}});
        reviews.push(("/mutate", create_review(&format!("s-sa-{ns}"), &sa)));
        reviews.push(("/validate", create_review(&format!("s-sav-{ns}"), &sa)));
    }
    // Secret admission: the objects themselves carry the password.
    for (i, doc) in manifest_docs(&manifests.join("vault.yaml"))
        .into_iter()
        .enumerate()
    {
        if doc["kind"] == "Secret" {
            reviews.push(("/validate", create_review(&format!("s-secret-{i}"), &doc)));
        }
    }
    let secret_obj = |data: Value| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "in-flight", "namespace": "vault"}, "data": data})
    };
    for (i, obj) in [
        secret_obj(json!({".dockerconfigjson": PLANTED_PASSWORD})),
        secret_obj(json!({".dockerconfigjson": format!("{PLANTED_PASSWORD}%%")})),
        secret_obj(json!(PLANTED_PASSWORD)),
        secret_obj(json!({".dockerconfigjson": [PLANTED_PASSWORD]})),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "metadata": {"name": "sd", "namespace": "vault"},
            "stringData": {".dockerconfigjson": format!("{{\"auths\": {{\"x.example\": \"{PLANTED_PASSWORD}\"}}}}")}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "metadata": {"name": "sd2", "namespace": "vault"},
            "stringData": {".dockerconfigjson": format!("{{\"auths\": {{\"x.example\": {{\"auth\": \"{PLANTED_PASSWORD}\"}}}}}}")}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "metadata": {"name": "sd3", "namespace": "vault"},
            "stringData": {".dockerconfigjson": format!("{{\"auths\": {{\"x.example\": {{\"auth\": {}}}}}}}", 7), "password": PLANTED_PASSWORD}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "metadata": {"name": "sd4", "namespace": "vault"},
            "stringData": {".dockerconfigjson": format!("{{\"auths\": {{\"x.example\": {{\"auth\": \"{}\"}}}}, \"credsStore\": \"{PLANTED_PASSWORD}\"}}", b64(format!("u:{PLANTED_PASSWORD}")))}}),
    ]
    .into_iter()
    .enumerate()
    {
        reviews.push(("/validate", create_review(&format!("s-secret-x{i}"), &obj)));
    }
    for (i, (ep, review)) in reviews.iter().enumerate() {
        let client = if i % 2 == 0 { &c } else { &c1 };
        let a = post_json(client, &srv.url(ep), review).await;
        assert_eq!(
            a.status, 200,
            "{ep} {}: {}",
            review["request"]["uid"], a.text
        );
        let v = a.json();
        if let Some(p) = v["response"]["patch"].as_str() {
            bodies.push(String::from_utf8_lossy(&unb64(p)).into_owned());
        }
        bodies.push(a.text);
    }
    // Bad inputs.
    for body in [
        &b"{"[..],
        b"[]",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    ] {
        bodies.push(
            send(
                &c,
                reqwest::Method::POST,
                &srv.url("/validate"),
                Some("application/json"),
                body.to_vec(),
            )
            .await
            .text,
        );
    }
    bodies.push(
        send(
            &c,
            reqwest::Method::POST,
            &srv.url("/validate"),
            Some("text/plain"),
            b"x".to_vec(),
        )
        .await
        .text,
    );

    // A reload of a manifest with a bad (not base64) payload: the store keeps its state, quietly.
    let mark = srv.mark();
    std::fs::write(
        manifests.join("bad-data.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad-data\n  namespace: vault\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: \"{PLANTED_PASSWORD}%%\"\n"),
    )
    .expect("write bad data");
    tokio::task::block_in_place(|| {
        srv.wait_log("the failed reload", mark, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("manifest reload failed"))
        })
    });

    let metrics = scrape(srv.metrics).await;
    srv.sigterm();
    let st = tokio::task::block_in_place(|| srv.finish(DEADLINE));
    assert!(st.is_some_and(|s| s.success()));
    let stdout = srv.stdout_text();
    assert!(
        stdout.contains("\"level\":\"DEBUG\""),
        "RUST_LOG=debug produced no debug lines"
    );
    let stderr = srv.stderr_text();
    let mut failures: Vec<String> = [
        ("stdout", stdout.as_str()),
        ("stderr", stderr.as_str()),
        ("/metrics", metrics.as_str()),
    ]
    .into_iter()
    .filter_map(|(what, text)| leak(what, text))
    .collect();
    failures.extend(bodies.iter().filter_map(|b| leak("a response", b)));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A manifests file that stops parsing (a Secret being edited) must not put its lines into the log.
#[tokio::test(flavor = "multi_thread")]
async fn failed_manifest_reload_does_not_log_secret_lines() {
    install_crypto();
    let tmp = scratch("reload-secrecy");
    let manifests = tmp.path().join("manifests");
    write_test_manifests(&manifests);
    let certs = shared_certs();
    let mut srv = spawn_serve(ServeOpts {
        manifests: &manifests,
        cert: &certs.cert(),
        key: &certs.key(),
        rust_log: "debug",
        extra: &[],
    });
    let mark = srv.mark();
    std::fs::write(
        manifests.join("broken.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: broken\n  namespace: vault\nstringData:\n  password: \"{PLANTED_PASSWORD}\n  other: [1, 2\n"),
    )
    .expect("write broken");
    let line = tokio::task::block_in_place(|| {
        srv.wait_log("the failed reload", mark, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("manifest reload failed"))
        })
    });
    // The error still says where: the file and the line.
    let err = line["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("broken.yaml") && err.contains("line 7"),
        "{line}"
    );
    let mark = srv.mark();
    std::fs::remove_file(manifests.join("broken.yaml")).expect("remove");
    tokio::task::block_in_place(|| {
        srv.wait_log("the reload", mark, |v| v["message"] == "manifests reloaded")
    });
    srv.sigterm();
    let st = tokio::task::block_in_place(|| srv.finish(DEADLINE));
    assert!(st.is_some_and(|s| s.success()));
    for (what, text) in [("stdout", srv.stdout_text()), ("stderr", srv.stderr_text())] {
        if let Some(l) = leak(what, &text) {
            panic!("{l}");
        }
    }
}

/// A Docker Hub secret as `kubectl create secret docker-registry` writes it without
/// `--docker-server` (key `https://index.docker.io/v1/`), over the real webhook: every form of
/// a Hub image gets it injected and validates, and a new ServiceAccount gets it.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_docker_hub_secret_is_injected_for_every_hub_image_form() {
    let dir = scratch("docker-hub");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": "hub"},
        "data": {".dockerconfigjson": b64(docker_config_json_entries(&[("https://index.docker.io/v1/", "u", "p")]))}});
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "hub", "labels": {"pullgate.io/validation": "deny"}}});
    std::fs::write(
        dir.path().join("hub.json"),
        json!({"apiVersion": "v1", "kind": "List", "items": [ns, secret]}).to_string(),
    )
    .expect("write manifests");
    let s = start_in_process(dir.path(), test_policy()).await;
    let c = https_client(&s.ca_pem, false);
    for (i, image) in [
        "nginx",
        "library/busybox:1.36",
        "docker.io/acme/app",
        "index.docker.io/acme/app",
    ]
    .into_iter()
    .enumerate()
    {
        let p = pod("hub", &format!("p{i}"), &[image]);
        let r = admit(&c, &s.url("/mutate"), &create_review(&format!("m{i}"), &p)).await;
        let patched = apply_patch(&p, &r);
        assert_eq!(pod_pull_secrets(&patched), ["regcred"], "{image}: {r}");
        let v = admit(
            &c,
            &s.url("/validate"),
            &create_review(&format!("v{i}"), &patched),
        )
        .await;
        assert_eq!(v["allowed"], true, "{image}: {v}");
        assert!(warnings(&v).is_empty(), "{image}: {v}");
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "hub"}});
    let r = admit(&c, &s.url("/mutate"), &create_review("sa", &sa)).await;
    let patched = apply_patch(&sa, &r);
    let sa: ServiceAccount = serde_json::from_value(patched).expect("a ServiceAccount");
    assert_eq!(names(sa.image_pull_secrets.as_ref()), ["regcred"]);
}
