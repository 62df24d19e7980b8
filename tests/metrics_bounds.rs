//! Metric series stay bounded whatever pods claim: 100,000 pods with made-up registries, through the
//! router the server serves (`server::router`, in-process), leave `pullgate_would_deny_total` with
//! the policy's registry patterns as labels and at most its cap of series.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pullgate::engine::policy::Policy;
use pullgate::metrics::{Metrics, OVERFLOW};
use pullgate::server::{self, AppState};
use pullgate::store::files::FileStore;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use support::admission::*;
use support::client::*;
use tower::ServiceExt;

const PODS: u64 = 100_000;
const NAMESPACES: u64 = 1_500;
const CAP: usize = 1_000;
const WORKERS: u64 = 8;

/// The made-up registry host of pod `i` and its image: random (xorshift64* of `i`), distinct
/// (the index is part of the name), a third of them under the policy's corp pattern.
fn made_up(i: u64) -> (String, String) {
    let mut x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
    if r.is_multiple_of(3) {
        let host = format!("r{r:x}-{i}.corp.example");
        let image = format!("{host}/app:1");
        (host, image)
    } else {
        let host = format!("r{r:x}-{i}.example");
        let image = format!("{host}:5000/app:1");
        (host, image)
    }
}

/// The `registry` and `namespace` labels of every `pullgate_would_deny_total` sample, with its value.
fn would_deny_series(text: &str) -> Vec<(String, String, f64)> {
    let label = |rest: &str, key: &str| {
        let start = rest.find(&format!("{key}=\""))? + key.len() + 2;
        let len = rest[start..].find('"')?;
        Some(rest[start..start + len].to_owned())
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("pullgate_would_deny_total{"))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").expect("sample value");
            (
                label(labels, "namespace").expect("namespace label"),
                label(labels, "registry").expect("registry label"),
                value.parse().expect("numeric value"),
            )
        })
        .collect()
}

/// A CREATE review of a one-container pod, written out directly: 100,000 of them through
/// `serde_json::Value` would dominate the test's time.
fn review(i: u64, ns: &str, image: &str) -> String {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u{i}","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"{ns}","operation":"CREATE","object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p","namespace":"{ns}"}},"spec":{{"serviceAccountName":"default","containers":[{{"name":"c0","image":"{image}"}}]}}}}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_registries_do_not_grow_would_deny_series() {
    let policy =
        Policy::from_yaml("registries:\n  private: ['*.corp.example', '*']\n").expect("policy");
    let store = Arc::new(FileStore::load(shared_manifests()).expect("store"));
    let metrics = Arc::new(Metrics::with_max_series(CAP));
    let state = Arc::new(AppState::new(
        policy,
        store,
        metrics.clone(),
        16,
        Duration::from_secs(4),
    ));
    let router = server::router(state);
    // A few concurrent callers, as the API server sends them; each takes every WORKERS-th pod.
    let mut callers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let router = router.clone();
        callers.spawn(async move {
            for i in (w..PODS).step_by(WORKERS as usize) {
                let (_, image) = made_up(i);
                let ns = format!("team-{}", i % NAMESPACES);
                let req = Request::post("/validate")
                    .header("content-type", "application/json")
                    .body(Body::from(review(i, &ns, &image)))
                    .expect("request");
                let resp = router.clone().oneshot(req).await.expect("infallible");
                assert_eq!(resp.status(), StatusCode::OK, "pod {i}");
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("caller");
    }
    let hosts: BTreeSet<String> = (0..PODS).map(|i| made_up(i).0).collect();
    assert_eq!(hosts.len() as u64, PODS, "every pod had its own registry");

    let text = metrics.encode();
    let series = would_deny_series(&text);
    // Own series up to the cap, plus the one overflow series.
    assert_eq!(series.len(), CAP + 1, "{} series", series.len());
    let registries: BTreeSet<&str> = series.iter().map(|(_, r, _)| r.as_str()).collect();
    assert_eq!(
        registries,
        BTreeSet::from(["*", "*.corp.example", OVERFLOW]),
        "registry labels are the policy's patterns"
    );
    assert!(
        series
            .iter()
            .all(|(ns, _, _)| ns == OVERFLOW || ns.starts_with("team-")),
        "namespace labels are the pods' namespaces"
    );
    let total: f64 = series.iter().map(|(_, _, v)| v).sum();
    assert_eq!(total, PODS as f64, "every would-deny is counted once");
    let overflow = series
        .iter()
        .find(|(ns, _, _)| ns == OVERFLOW)
        .map(|(_, _, v)| *v)
        .expect("overflow series");
    assert_eq!(
        sample(
            &text,
            "pullgate_metric_series_overflow_total",
            &[("metric", "pullgate_would_deny_total")]
        ),
        Some(overflow),
        "the overflow counter counts what the overflow series holds"
    );
    let values: BTreeSet<&str> = text
        .split('"')
        .skip(1)
        .step_by(2)
        .flat_map(|v| [v, v.split_once(':').map_or(v, |(host, _)| host)])
        .collect();
    assert!(
        values.iter().all(|v| !hosts.contains(*v)),
        "a made-up host is exported"
    );
}
