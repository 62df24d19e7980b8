//! Property tests of the admission endpoints: arbitrary bytes, arbitrary JSON, pod reviews with
//! arbitrary images and references, and mutated real reviews, through `router(state)` in-process
//! (`tower::ServiceExt::oneshot`) and through `admission::review` directly.
//!
//! The HTTP answer is always well-formed: status 200, 400, 413 or 415 with a JSON body; a 200 is
//! an AdmissionReview echoing the uid; the mutating webhook never denies a readable pod and its
//! patches apply and are idempotent.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use pullgate::admission::{self, Endpoint};
use pullgate::metrics::Metrics;
use pullgate::server::{self, AppState};
use pullgate::store::files::FileStore;
use pullgate::store::Store;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use support::{admission::*, fixtures::*, inprocess::*, paths::*};
use tower::ServiceExt;

const CASES: u32 = 256;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn store() -> &'static Arc<FileStore> {
    static STORE: OnceLock<Arc<FileStore>> = OnceLock::new();
    STORE.get_or_init(|| Arc::new(FileStore::load(shared_manifests()).expect("store")))
}

fn router() -> axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            let state = Arc::new(AppState::new(
                test_policy(),
                store().clone(),
                Arc::new(Metrics::new()),
                16,
                Duration::from_secs(4),
            ));
            server::router(state)
        })
        .clone()
}

struct Reply {
    status: StatusCode,
    body: Value,
}

/// One request through the router; panics unless the answer is well-formed.
fn call(path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = Request::post(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Body::from(body)).expect("request");
    runtime().block_on(async {
        let resp = router().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("response body");
        assert!(
            [200, 400, 413, 415].contains(&status.as_u16()),
            "{path}: status {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(
            ct.starts_with("application/json"),
            "{path}: content type {ct:?}"
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        if status == StatusCode::OK {
            assert_eq!(body["kind"], "AdmissionReview", "{body}");
            assert!(body["response"]["uid"].is_string(), "{body}");
            assert!(body["response"]["allowed"].is_boolean(), "{body}");
        } else {
            assert_eq!(body["code"], status.as_u16(), "{body}");
            assert!(body["error"].is_string(), "{body}");
        }
        Reply { status, body }
    })
}

fn post_both(body: &[u8]) -> [Reply; 2] {
    [
        call("/mutate", Some("application/json"), body.to_vec()),
        call(
            "/validate?timeout=5s",
            Some("application/json"),
            body.to_vec(),
        ),
    ]
}

/// `admission::review` on the shared store must never panic; Ok bodies are reviews echoing the uid.
fn review_directly(body: &[u8]) {
    let view = store().view();
    let policy = test_policy();
    for ep in [Endpoint::Mutate, Endpoint::Validate] {
        if let Ok(o) = admission::review(ep, body, &policy, &view, 1_800_000_000) {
            let v: Value = serde_json::from_slice(&o.body).expect("outcome body is JSON");
            assert_eq!(v["response"]["uid"], json!(o.uid));
            assert_eq!(v["response"]["allowed"], json!(o.allowed));
            assert_eq!(v["response"]["patch"].is_string(), o.mutated);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn words() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Pod",
            "ServiceAccount",
            "Secret",
            "Deployment",
            "CronJob",
            "Job",
            "StatefulSet",
            "CREATE",
            "UPDATE",
            "DELETE",
            "CONNECT",
            "admission.k8s.io/v1",
            "admission.k8s.io/v1beta1",
            "AdmissionReview",
            "",
            "shop",
            "payments",
            "lab",
            "wh-test",
            "kube-system",
            "apps",
            "batch",
            "v1",
            "regcred",
            "ghcr-creds",
            "default",
            "builder",
            "true",
            "false",
            "registry.example.com/shop/web:1",
            "ghcr.io/acme/tool:1",
            "ephemeralcontainers",
            "status",
            "kubernetes.io/dockerconfigjson",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,24}",
    ]
}

fn keys() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "apiVersion",
            "kind",
            "request",
            "uid",
            "object",
            "oldObject",
            "spec",
            "containers",
            "initContainers",
            "ephemeralContainers",
            "image",
            "name",
            "namespace",
            "metadata",
            "imagePullSecrets",
            "operation",
            "group",
            "version",
            "subResource",
            "annotations",
            "serviceAccountName",
            "serviceAccount",
            "data",
            "stringData",
            "type",
            "template",
            "jobTemplate",
            "labels",
            "generateName",
            "dryRun",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,8}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        words().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn image() -> impl Strategy<Value = String> {
    prop_oneof![
        // Registries the store has secrets for (injection and coverage).
        4 => prop::sample::select(vec![
            "registry.example.com/shop/web:1",
            "registry.example.com/app:1",
            "ghcr.io/acme/tool:1",
            "quay.io/acme/legacy:1",
            "lab.example.com/x/y:1",
            "stale.example.com/x:1",
            "helper.example.com/x:1",
        ])
        .prop_map(str::to_owned),
        // Near misses, other registries and odd references.
        2 => prop::sample::select(vec![
            "registry.example.com:5000/shop/api:2",
            "REGISTRY.example.com/shop/web:1",
            "harbor.example.com/shop/app:1",
            "registry.internal.example:5000/pay/ledger:1",
            "nginx",
            "library/nginx:latest",
            "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost:5000/a",
            "[::1]:5000/a/b:1",
            "",
            ":",
            "a//b",
            "UPPER/case",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z0-9./:@_\\[\\]-]{0,80}",
    ]
}

fn secret_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "regcred",
            "regcreds",
            "ghcr-creds",
            "quay-legacy",
            "gitlab-token",
            "harbor-broken",
            "payments-registry",
            "lab-a",
            "lab-b",
            "old-cred",
            "helper-cred",
            "regcred-sa",
            "",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9.-]{0,20}",
    ]
}

fn container() -> impl Strategy<Value = Value> {
    ("[a-z]{1,6}", image()).prop_map(|(n, i)| json!({"name": n, "image": i}))
}

/// A readable pod (or workload) review with arbitrary images, references and settings.
fn pod_review() -> impl Strategy<Value = Value> {
    // Weighted so that injections, denials and the excluded/unknown namespaces all come up often.
    (
        prop::sample::select(vec![
            "shop", "shop", "shop", "shop", "lab", "lab", "lab", "wh-test", "wh-test", "wh-test",
            "payments", "kube-system", "nowhere", "",
        ]),
        prop::collection::vec(container(), 1..4),
        prop::collection::vec(container(), 0..2),
        prop_oneof![
            3 => Just(None),
            1 => prop::collection::vec(secret_name(), 0..4).prop_map(Some),
        ],
        prop::option::of(prop::sample::select(vec!["default", "builder", "puller", "ghost", ""])),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
        prop::sample::select(vec!["CREATE", "CREATE", "CREATE", "CREATE", "CREATE", "UPDATE"]),
        prop::sample::select(vec!["Pod", "Pod", "Pod", "Pod", "Pod", "Deployment", "CronJob"]),
    )
        .prop_map(|(ns, containers, init, ips, sa, opt_out, mirror, op, kind)| {
            let mut annotations = serde_json::Map::new();
            if opt_out {
                annotations.insert("pullgate.io/inject".into(), json!("false"));
            }
            if mirror {
                annotations.insert("kubernetes.io/config.mirror".into(), json!("x"));
            }
            let mut spec = json!({"containers": containers, "initContainers": init});
            if let Some(ips) = ips {
                spec["imagePullSecrets"] = json!(ips.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
            }
            if let Some(sa) = sa {
                spec["serviceAccountName"] = json!(sa);
            }
            let meta = json!({"name": "p", "namespace": ns, "annotations": annotations});
            let object = match kind {
                "Pod" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}),
                "Deployment" => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": ns},
                    "spec": {"template": {"metadata": meta, "spec": spec}}}),
                _ => json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": ns},
                    "spec": {"jobTemplate": {"spec": {"template": {"metadata": meta, "spec": spec}}}}}),
            };
            review_for("admission.k8s.io/v1", "prop-uid", op, &object)
        })
}

/// Real reviews: the captured ones and the example pods.
fn seeds() -> &'static Vec<Value> {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut v: Vec<Value> = std::fs::read_dir(fixtures_dir().join("admission-reviews"))
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json"))
            .collect();
        for e in std::fs::read_dir(examples().join("pods")).expect("pods") {
            let p = e.expect("entry").path();
            for doc in manifest_docs(&p) {
                v.push(create_review("seed", &doc));
            }
        }
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "s", "namespace": "shop"},
            "data": {".dockerconfigjson": b64(docker_config_json_entries(&[("r.example", "u", "p")]))}});
        v.push(create_review("seed-secret", &secret));
        v.sort_by_key(|r| r.to_string());
        v
    })
}

fn pointers(v: &Value, prefix: &str, out: &mut Vec<String>) {
    out.push(prefix.to_owned());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, &format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    Truncate(prop::sample::Index),
}

/// A real review with one value replaced or removed, or its bytes cut short.
fn mutated_review() -> impl Strategy<Value = Vec<u8>> {
    let mutation = prop_oneof![
        3 => arb_json().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ];
    (
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), mutation), 1..4),
    )
        .prop_map(|(seed, muts)| {
            let mut doc = seeds()[seed.index(seeds().len())].clone();
            for (at, m) in muts {
                let mut ptrs = Vec::new();
                pointers(&doc, "", &mut ptrs);
                let ptr = ptrs[at.index(ptrs.len())].clone();
                match m {
                    Mutation::Replace(v) => {
                        if let Some(t) = doc.pointer_mut(&ptr) {
                            *t = v;
                        }
                    }
                    Mutation::Remove => {
                        if let Some((parent, key)) = ptr.rsplit_once('/') {
                            match doc.pointer_mut(parent) {
                                Some(Value::Object(o)) => {
                                    o.remove(&key.replace("~1", "/").replace("~0", "~"));
                                }
                                Some(Value::Array(a)) => {
                                    if let Ok(i) = key.parse::<usize>() {
                                        if i < a.len() {
                                            a.remove(i);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    Mutation::Truncate(cut) => {
                        let bytes = serde_json::to_vec(&doc).expect("json");
                        return bytes[..cut.index(bytes.len() + 1)].to_vec();
                    }
                }
            }
            serde_json::to_vec(&doc).expect("json")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_well_formed_answer(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        for r in post_both(&body) {
            // Random bytes are not a review: a 400 (or, should they ever parse, an answer).
            prop_assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::OK);
        }
        review_directly(&body);
    }

    #[test]
    fn arbitrary_json_gets_a_well_formed_answer(v in arb_json()) {
        let body = serde_json::to_vec(&v).expect("json");
        post_both(&body);
        review_directly(&body);
    }

    #[test]
    fn arbitrary_json_in_a_review_envelope_gets_a_well_formed_answer(
        request in arb_json(),
        version in prop::sample::select(vec!["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]),
    ) {
        let body = serde_json::to_vec(&json!({"apiVersion": version, "kind": "AdmissionReview", "request": request})).expect("json");
        for r in post_both(&body) {
            if r.status == StatusCode::OK {
                prop_assert_eq!(&r.body["apiVersion"], version);
                prop_assert_eq!(&r.body["response"]["uid"], &request["uid"]);
            }
        }
        review_directly(&body);
    }

    #[test]
    fn mutated_real_reviews_get_a_well_formed_answer(body in mutated_review()) {
        post_both(&body);
        review_directly(&body);
    }

    #[test]
    fn any_content_type_gets_a_well_formed_answer(
        ct in prop::option::of(prop_oneof![
            Just("application/json; charset=utf-8".to_owned()),
            Just("APPLICATION/JSON".to_owned()),
            Just("text/plain".to_owned()),
            "[ -~]{0,40}",
        ]),
        body in prop::sample::select(vec![0usize, 1, 2]),
    ) {
        let body = serde_json::to_vec(&seeds()[body]).expect("json");
        let r = call("/validate", ct.as_deref(), body);
        let json_ct = ct.as_deref().is_some_and(|c| {
            c.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json")
        });
        prop_assert_eq!(r.status == StatusCode::UNSUPPORTED_MEDIA_TYPE, !json_ct, "{:?}", ct);
    }

    #[test]
    fn readable_pod_reviews_are_answered_and_patches_are_idempotent(review in pod_review()) {
        let body = serde_json::to_vec(&review).expect("json");
        let [m, v] = post_both(&body);
        prop_assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        prop_assert_eq!(v.status, StatusCode::OK, "{}", v.body);
        let (m, v) = (&m.body["response"], &v.body["response"]);
        prop_assert_eq!(&m["uid"], "prop-uid");
        // The mutating webhook never denies a readable pod.
        prop_assert_eq!(&m["allowed"], true, "{}", m);
        if v["allowed"] == false {
            prop_assert_eq!(&v["status"]["code"], 403, "{}", v);
            prop_assert!(v["status"]["message"].as_str().is_some_and(|s| s.starts_with("pullgate: ")), "{}", v);
        }
        if m["patch"].is_string() {
            let object = &review["request"]["object"];
            let patched = apply_patch(object, m);
            let names = |v: &Value| -> Vec<String> {
                v["spec"]["imagePullSecrets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r["name"].as_str().unwrap_or("<no name>").to_owned())
                    .collect()
            };
            let (before, after) = (names(object), names(&patched));
            // The original references are kept, in order, and the added ones follow them.
            let kept = if before.is_empty() { 0 } else { before.len() };
            prop_assert!(after.len() > kept && after[..kept] == before[..], "{:?} -> {:?}", before, after);
            let added = &after[kept..];
            // Added names are new and distinct. (A pod without its own list gets its
            // ServiceAccount's secrets written too, ahead of the injected ones.)
            for (i, a) in added.iter().enumerate() {
                prop_assert!(!before.contains(a) && !added[..i].contains(a), "{:?} -> {:?}", before, after);
            }
            let injected: Vec<String> = m["auditAnnotations"]["injected"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect();
            prop_assert!(added.ends_with(&injected), "{:?} -> {:?}, injected {:?}", before, after, injected);
            let mut again = review.clone();
            again["request"]["object"] = patched;
            let [m2, _] = post_both(&serde_json::to_vec(&again).expect("json"));
            prop_assert!(m2.body["response"]["patch"].is_null(), "not idempotent: {}", m2.body);
        }
        review_directly(&body);
    }
}

#[test]
fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let in_object = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"","kind":"Pod"}},"operation":"CREATE","namespace":"shop","object":{{"metadata":{objects}}}}}}}"#
    );
    for body in [arrays, objects, in_object] {
        for r in post_both(body.as_bytes()) {
            assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::OK);
        }
        review_directly(body.as_bytes());
    }
}

#[test]
fn every_seed_review_is_answered_with_200() {
    for s in seeds() {
        let body = serde_json::to_vec(s).expect("json");
        for r in post_both(&body) {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            assert_eq!(r.body["response"]["uid"], s["request"]["uid"]);
        }
    }
}

/// The pod strategy must reach the interesting paths, or the property above proves little.
#[test]
fn pod_review_strategy_reaches_injection_and_denial() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = pod_review();
    let view = store().view();
    let policy = test_policy();
    let (mut patched, mut denied, n) = (0, 0, 512);
    for _ in 0..n {
        let review = strategy.new_tree(&mut runner).expect("tree").current();
        let body = serde_json::to_vec(&review).expect("json");
        let m = admission::review(Endpoint::Mutate, &body, &policy, &view, 1_800_000_000)
            .expect("mutate");
        let v = admission::review(Endpoint::Validate, &body, &policy, &view, 1_800_000_000)
            .expect("validate");
        patched += usize::from(m.mutated);
        denied += usize::from(!v.allowed);
    }
    assert!(
        patched * 10 >= n,
        "only {patched} of {n} generated pods were patched"
    );
    assert!(
        denied * 10 >= n,
        "only {denied} of {n} generated pods were denied"
    );
}
