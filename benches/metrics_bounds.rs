//! RSS while pods with made-up registries keep arriving: `--pods N` (default 1,000,000) validate
//! reviews, each with its own registry host, across `--namespaces M` (default 5,000) namespaces, through
//! `server::router` in-process (the handler the server runs, without TLS). With the labels bounded
//! (policy pattern, per-family cap) the process RSS must stay flat once warm; the exported series
//! stay at the cap plus one. Prints a table for docs/performance.md.
//!
//! `cargo bench --bench metrics_bounds [-- --pods N --namespaces M]`
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the process-level benches, each using a part of it.
#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use process::{arg, mib, status_kib};
use pullgate::engine::index::ClusterIndex;
use pullgate::engine::policy::Policy;
use pullgate::metrics::{Metrics, DEFAULT_MAX_SERIES};
use pullgate::server::{router, AppState};
use pullgate::store::{Store, View};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// A store with no secrets: every pod lacks credentials, so every review is a would-deny.
struct Empty(Arc<ClusterIndex>);

impl Store for Empty {
    fn view(&self) -> View<'_> {
        View::Shared(self.0.clone())
    }
    fn ready(&self) -> bool {
        true
    }
}

fn review(i: usize, ns: &str) -> String {
    // Distinct hosts; every other one under the policy's corp pattern.
    let image = if i.is_multiple_of(2) {
        format!("r{i:x}.corp.example/app:1")
    } else {
        format!("r{i:x}.example:5000/app:1")
    };
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u{i}","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"{ns}","operation":"CREATE","object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p","namespace":"{ns}"}},"spec":{{"serviceAccountName":"default","containers":[{{"name":"c0","image":"{image}"}}]}}}}}}}}"#
    )
}

fn main() {
    let pods = arg("--pods", 1_000_000);
    let namespaces = arg("--namespaces", 5_000).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let policy =
        Policy::from_yaml("registries:\n  private: ['*.corp.example', '*']\n").expect("policy");
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState::new(
        policy,
        Arc::new(Empty(Arc::new(ClusterIndex::default()))),
        metrics.clone(),
        256,
        Duration::from_secs(4),
    ));
    let app = router(state);
    let checkpoints = [pods / 10, pods / 4, pods / 2, pods * 3 / 4, pods];
    let rss0 = status_kib("self", "VmRSS:");
    println!("| pods reviewed | would-deny series | process RSS | RSS high-water |");
    println!("|---|---|---|---|");
    println!("| 0 | 0 | {:.1} MiB | |", mib(rss0));
    let start = Instant::now();
    let mut done = 0;
    let mut warm = 0;
    for (k, &upto) in checkpoints.iter().enumerate() {
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..8 {
                let app = app.clone();
                let from = done;
                tasks.spawn(async move {
                    for i in (from + w..upto).step_by(8) {
                        let ns = format!("team-{}", i % namespaces);
                        let req = Request::post("/validate")
                            .header("content-type", "application/json")
                            .body(Body::from(review(i, &ns)))
                            .expect("request");
                        let resp = app.clone().oneshot(req).await.expect("infallible");
                        assert_eq!(resp.status(), StatusCode::OK);
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("caller");
            }
        });
        done = upto;
        let series = metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("pullgate_would_deny_total{"))
            .count();
        assert!(
            series <= DEFAULT_MAX_SERIES + 1,
            "{series} would-deny series after {done} pods"
        );
        let rss = status_kib("self", "VmRSS:");
        if k == 0 {
            warm = rss;
        }
        println!(
            "| {done} | {series} | {:.1} MiB | {:.1} MiB |",
            mib(rss),
            mib(status_kib("self", "VmHWM:"))
        );
    }
    let rss = status_kib("self", "VmRSS:");
    println!(
        "\n{pods} pods ({pods} distinct registries, {namespaces} namespaces) in {:.1} s; RSS after the first tenth {:.1} MiB, at the end {:.1} MiB ({:+.1} MiB)",
        start.elapsed().as_secs_f64(),
        mib(warm),
        mib(rss),
        mib(rss) - mib(warm)
    );
}
