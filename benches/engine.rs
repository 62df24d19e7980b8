//! Criterion benchmarks of the decision engine's hot path: image reference parsing, keyring
//! lookups, pod views, `evaluate_pod`, and a whole `admission::review` of a realistic
//! five-container pod review.
//!
//! Run with `cargo bench --bench engine` (optionally `-- <filter>`); see docs/performance.md.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pullgate::admission::{review, Endpoint};
use pullgate::engine::index::ClusterIndex;
use pullgate::engine::keyring::{Keyring, MatchTarget, RegistryKey};
use pullgate::engine::podview::{PodView, WorkloadKind};
use pullgate::engine::reference::ImageRef;
use pullgate::engine::{evaluate_pod, Operation, PodContext};
use std::hint::black_box;
use std::time::Duration;

#[path = "common/mod.rs"]
mod common;

/// Realistic image references: Docker Hub short names, registries with ports and paths,
/// digests, cloud registries and an IPv6 literal.
const REFERENCES: [&str; 14] = [
    "nginx",
    "nginx:1.27.3",
    "bitnami/redis:7.2.5",
    "docker.io/library/alpine:3.20",
    "registry.example.com:5000/team/app:1.2.3",
    "ghcr.io/acme/worker@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "quay.io/prometheus/node-exporter:v1.8.2@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments/ledger:v3.2.0",
    "europe-west4-docker.pkg.dev/acme-prod/images/api:sha-4f2a9c1",
    "[fd00::10]:5000/mirror/envoy:v1.31.2",
    "localhost:5000/dev/app",
    "registry.k8s.io/pause:3.10",
    "mcr.microsoft.com/dotnet/aspnet:8.0",
    "index.docker.io/grafana/grafana:11.2.0",
];

fn bench_reference(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference");
    g.throughput(Throughput::Elements(REFERENCES.len() as u64));
    g.bench_function("parse/mix14", |b| {
        b.iter(|| {
            for r in REFERENCES {
                let _ = black_box(ImageRef::parse(black_box(r)));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    for (label, r) in [
        ("hub_short", REFERENCES[1]),
        ("registry_port", REFERENCES[4]),
        ("tag_and_digest", REFERENCES[6]),
        ("ipv6", REFERENCES[9]),
        ("invalid_uppercase", "Registry.Example.com/Team/App:1"),
    ] {
        g.bench_with_input(BenchmarkId::new("parse", label), r, |b, r| {
            b.iter(|| ImageRef::parse(black_box(r)))
        });
    }
    g.finish();
}

/// `n` realistic registry keys: plain hosts, hosts with ports, with paths, with a scheme and
/// the `/v2/` suffix docker login writes, and 2% globs.
fn keys(n: usize) -> Vec<String> {
    if n == 1 {
        return vec!["registry.example.com".to_owned()];
    }
    (0..n)
        .map(|i| match i % 50 {
            7 | 32 => format!("*.region-{i}.dkr.example.com"),
            k if k % 10 == 0 => format!("registry-{i}.corp.example.com/team-{}", i % 37),
            k if k % 10 == 1 => format!("registry-{i}.corp.example.com:5000"),
            k if k % 10 == 3 => format!("https://registry-{i}.example.org/v2/"),
            _ => format!("registry-{i}.example.com"),
        })
        .collect()
}

fn bench_keyring(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyring");
    g.throughput(Throughput::Elements(1));
    // A pod's keyring: the keys of its few secrets (100 is far more than any pod has).
    for n in [1usize, 10, 100] {
        let parsed: Vec<RegistryKey> = keys(n)
            .iter()
            .map(|k| RegistryKey::parse(k).expect("bench key"))
            .collect();
        let mut ring: Keyring<'_, usize> = Keyring::new();
        for (i, k) in parsed.iter().enumerate() {
            ring.add([k], i);
        }
        // A plain-host key is always present: index 0 for n = 1, else the last `% 10 == 5` one.
        let hit = if n == 1 {
            "registry.example.com/team/app".to_owned()
        } else {
            format!("registry-{}.example.com/team/app", n - 5)
        };
        let miss = "unknown.example.net/team/app";
        assert!(
            !ring.lookup(&MatchTarget::new(&hit)).is_empty(),
            "hit must hit"
        );
        assert!(
            ring.lookup(&MatchTarget::new(miss)).is_empty(),
            "miss must miss"
        );
        g.bench_with_input(BenchmarkId::new("lookup_hit", n), &hit, |b, name| {
            b.iter(|| ring.lookup(&MatchTarget::new(black_box(name))).len())
        });
        g.bench_with_input(BenchmarkId::new("lookup_miss", n), miss, |b, name| {
            b.iter(|| ring.lookup(&MatchTarget::new(black_box(name))).len())
        });
        g.bench_with_input(BenchmarkId::new("covers_hit", n), &hit, |b, name| {
            b.iter(|| ring.covers(&MatchTarget::new(black_box(name))))
        });
        g.bench_with_input(BenchmarkId::new("covers_miss", n), miss, |b, name| {
            b.iter(|| ring.covers(&MatchTarget::new(black_box(name))))
        });
    }
    // The per-image building blocks evaluate_pod uses today.
    let name = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments/ledger";
    g.bench_function("match_target_new", |b| {
        b.iter(|| MatchTarget::new(black_box(name)))
    });
    let glob = RegistryKey::parse("*.dkr.ecr.eu-west-1.amazonaws.com").expect("glob key");
    let target = MatchTarget::new(name);
    g.bench_function("key_matches_glob", |b| {
        b.iter(|| black_box(&glob).matches(black_box(&target)))
    });
    g.finish();
}

/// Everything a pod evaluation needs, for one cluster size.
struct Scenario {
    others: usize,
    index: ClusterIndex,
    pod: Vec<u8>,
    broken_pod: Vec<u8>,
    broken_path_pod: Vec<u8>,
    review: Vec<u8>,
}

fn scenarios() -> Vec<Scenario> {
    let pod = serde_json::to_vec(&common::pod_object(&common::pod_images())).expect("pod");
    let broken_pod = serde_json::to_vec(&common::broken_pod_object()).expect("pod");
    let broken_path_pod = serde_json::to_vec(&common::broken_path_pod_object()).expect("pod");
    let review = common::five_container_review("b18b53c8-8fe6-4b9e-bfcd-70de6df82364");
    [1usize, 10_000]
        .into_iter()
        .map(|others| Scenario {
            others,
            index: common::cluster(others),
            pod: pod.clone(),
            broken_pod: broken_pod.clone(),
            broken_path_pod: broken_path_pod.clone(),
            review: review.clone(),
        })
        .collect()
}

fn ctx(allow_inject: bool) -> PodContext<'static> {
    PodContext {
        namespace: common::NAMESPACE,
        operation: Operation::Create,
        now: common::NOW,
        allow_inject,
        verified: None,
    }
}

fn bench_pod(c: &mut Criterion) {
    let policy = common::policy();
    let all = scenarios();
    let mut g = c.benchmark_group("pod");
    g.throughput(Throughput::Elements(1));

    let first = &all[0];
    let value: serde_json::Value = serde_json::from_slice(&first.pod).expect("pod json");
    g.bench_function("podview_from_slice", |b| {
        b.iter(|| PodView::from_slice(WorkloadKind::Pod, black_box(&first.pod)))
    });
    g.bench_function("podview_from_value", |b| {
        b.iter(|| PodView::from_value(WorkloadKind::Pod, black_box(&value)))
    });

    for s in &all {
        let view = PodView::from_slice(WorkloadKind::Pod, &s.pod).expect("view");
        let broken = PodView::from_slice(WorkloadKind::Pod, &s.broken_pod).expect("view");
        let ok = evaluate_pod(&view, &ctx(false), &policy, &s.index);
        assert!(
            ok.findings.is_empty() && ok.images.iter().all(|i| !i.matched_secrets.is_empty()),
            "the happy-path pod must be fully covered: {:?}",
            ok.findings
        );
        let broken_path = PodView::from_slice(WorkloadKind::Pod, &s.broken_path_pod).expect("view");
        for pod in [&broken, &broken_path] {
            let bad = evaluate_pod(pod, &ctx(false), &policy, &s.index);
            assert!(bad.would_deny, "the broken pods must have an error finding");
        }

        g.bench_with_input(
            BenchmarkId::new("evaluate_validate", s.others),
            s,
            |b, s| b.iter(|| evaluate_pod(black_box(&view), &ctx(false), &policy, &s.index)),
        );
        g.bench_with_input(BenchmarkId::new("evaluate_mutate", s.others), s, |b, s| {
            b.iter(|| evaluate_pod(black_box(&view), &ctx(true), &policy, &s.index))
        });
        g.bench_with_input(BenchmarkId::new("evaluate_broken", s.others), s, |b, s| {
            b.iter(|| evaluate_pod(black_box(&broken), &ctx(false), &policy, &s.index))
        });
        g.bench_with_input(
            BenchmarkId::new("evaluate_broken_path", s.others),
            s,
            |b, s| b.iter(|| evaluate_pod(black_box(&broken_path), &ctx(false), &policy, &s.index)),
        );
        // "Whole pod evaluation": the pod object's bytes to a decision.
        g.bench_with_input(
            BenchmarkId::new("from_slice_evaluate", s.others),
            s,
            |b, s| {
                b.iter(|| {
                    let view =
                        PodView::from_slice(WorkloadKind::Pod, black_box(&s.pod)).expect("view");
                    evaluate_pod(&view, &ctx(false), &policy, &s.index).allowed
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Elements(1));
    for s in &all {
        let out = review(
            Endpoint::Validate,
            &s.review,
            &policy,
            &s.index,
            common::NOW,
        )
        .expect("review");
        assert!(out.allowed && out.warning_codes.is_empty(), "{out:?}");
        for (name, endpoint) in [
            ("review_validate", Endpoint::Validate),
            ("review_mutate", Endpoint::Mutate),
        ] {
            g.bench_with_input(BenchmarkId::new(name, s.others), s, |b, s| {
                b.iter(|| {
                    review(
                        endpoint,
                        black_box(&s.review),
                        &policy,
                        &s.index,
                        common::NOW,
                    )
                    .map(|o| o.body.len())
                })
            });
        }
    }
    // The floor: what the load test's floor server does per request (parse to a Value, answer).
    let bytes = &all[0].review;
    g.bench_function("floor_value_roundtrip", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(bytes)).expect("json");
            let uid = v["request"]["uid"].as_str().unwrap_or_default();
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": v["apiVersion"], "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": true}
            }))
            .map(|b| b.len())
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_reference, bench_keyring, bench_pod
}
criterion_main!(benches);
