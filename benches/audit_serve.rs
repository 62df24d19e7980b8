//! The background audit of the real `pullgate serve --cluster` at scale: peak RSS during a full
//! pass over 50,000 pods in 5,000 namespaces, against the process's idle figure once synced.
//!
//! The cluster: per namespace a ServiceAccount, a pull secret, a Deployment, its ReplicaSet and
//! `--pods-per-namespace` (10) pods; one Deployment in ten names a secret that does not exist, so
//! the pass has findings to publish. The Lease `pullgate-audit` is held by another identity at
//! first, so pullgate syncs and idles; the idle RSS is read, the peak (VmHWM) is reset through
//! /proc/<pid>/clear_refs, the Lease is deleted, and pullgate takes it and runs its first full
//! pass. The fake API server runs in a child process (this binary re-executed), so its objects
//! never count in the figures.
//!
//! ```text
//! cargo bench --bench audit_serve -- [--namespaces 5000] [--pods-per-namespace 10]
//! ```
// Bench code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/process.rs"]
mod process;
#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use process::{arg, mib, serve_until_stdin_closes, spawn_fake_api, status_kib};
use std::ffi::OsStr;
use std::time::{Duration, Instant};
use support::fake_api::FakeApi;
use support::fixtures;
use support::serve::ServeProcess;
use support::workloads::{pod, pod_spec, workload};

const ROLE: &str = "PULLGATE_BENCH_ROLE";
const IMAGE: &str = "registry.example.com/team/app:1.4.2";

fn namespace_name(i: usize) -> String {
    format!("team-{i:05}")
}

/// Child role: serve the populated cluster until the parent closes our stdin.
fn serve_fake(namespaces: usize, pods: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let fake = FakeApi::start().await;
        let started = Instant::now();
        fake.apply(fixtures::namespace("pullgate", &[]));
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .expect("round");
        fake.apply(serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "pullgate-audit", "namespace": "pullgate"},
            "spec": {"holderIdentity": "bench-holder", "leaseDurationSeconds": 3600,
                "acquireTime": now.to_string(), "renewTime": now.to_string()}
        }));
        for i in 0..namespaces {
            let ns = namespace_name(i);
            fake.apply(fixtures::namespace(&ns, &[]));
            fake.apply(fixtures::service_account(&ns, "default", &[]));
            fake.apply(fixtures::pull_secret(
                &ns,
                "regcred",
                &["registry.example.com"],
                "bench-pw",
            ));
            let secret = if i % 10 == 0 { "deleted" } else { "regcred" };
            let spec = pod_spec(IMAGE, &[secret], "default");
            let dep = fake.apply(workload("Deployment", &ns, "app", spec.clone(), None));
            let rs = fake.apply(workload(
                "ReplicaSet",
                &ns,
                "app-7d9f8",
                spec.clone(),
                Some(&dep),
            ));
            for p in 0..pods {
                fake.apply(pod(
                    &ns,
                    &format!("app-7d9f8-{p:05}"),
                    spec.clone(),
                    Some(&rs),
                ));
            }
        }
        eprintln!(
            "fake API: {} namespaces, {} pods populated in {:.1} s",
            fake.count("namespaces"),
            fake.count("pods"),
            started.elapsed().as_secs_f64(),
        );
        serve_until_stdin_closes(fake.kubeconfig_path()).await;
    });
}

fn main() {
    let namespaces = arg("--namespaces", 5_000);
    let pods = arg("--pods-per-namespace", 10);
    if std::env::var_os(ROLE).is_some() {
        serve_fake(namespaces, pods);
        return;
    }
    let (mut child, kubeconfig) = spawn_fake_api(
        ROLE,
        &[
            "--namespaces".to_owned(),
            namespaces.to_string(),
            "--pods-per-namespace".to_owned(),
            pods.to_string(),
        ],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "audit:\n  enabled: true\n  interval: 1h\n").expect("policy");
    let ca_out = dir.path().join("ca.pem");
    let args = [
        OsStr::new("--cluster"),
        OsStr::new("--self-signed"),
        OsStr::new("--kubeconfig"),
        kubeconfig.as_os_str(),
        OsStr::new("--ca-out"),
        ca_out.as_os_str(),
        OsStr::new("--config"),
        policy.as_os_str(),
    ];
    let mut served = ServeProcess::spawn(
        args,
        &[("POD_NAMESPACE", "pullgate"), ("POD_NAME", "pullgate-0")],
        Duration::from_secs(600),
    );
    served.wait_log("the cluster store to sync", 0, |v| {
        v["message"] == "cluster store synced"
    });
    let pid = served.pid().to_string();
    let idle = status_kib(&pid, "VmRSS:");
    let sync_peak = status_kib(&pid, "VmHWM:");
    // Reset the peak, so that what follows measures the pass, not the initial sync.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = pullgate::store::kube::client(Some(&kubeconfig))
            .await
            .expect("client");
        Api::<Lease>::namespaced(client, "pullgate")
            .delete("pullgate-audit", &DeleteParams::default())
            .await
            .expect("delete the Lease");
    });
    let started = Instant::now();
    let pass = served.wait_log("the full audit pass", 0, |v| {
        v["message"] == "audit pass complete" && v["scope"] == "full"
    });
    let wall = started.elapsed();
    let peak = status_kib(&pid, "VmHWM:");
    let after = status_kib(&pid, "VmRSS:");
    let evaluation_ms = pass["evaluation_ms"].as_f64().unwrap_or(0.0);
    let pods_audited = pass["pods"].as_f64().unwrap_or(0.0);
    println!(
        "audit_serve: {namespaces} namespaces, {} pods, {} workloads ({} with problems)",
        pass["pods"], pass["workloads"], pass["workloads_with_problems"]
    );
    println!(
        "  idle RSS (synced)      {:>8.1} MiB (sync peak {:.1} MiB)",
        mib(idle),
        mib(sync_peak)
    );
    println!(
        "  peak RSS during pass   {:>8.1} MiB: {:.1} MiB above idle (target < 16); {:.1} MiB after",
        mib(peak),
        mib(peak.saturating_sub(idle)),
        mib(after)
    );
    println!(
        "  full pass              {:>8.2} s from the Lease's deletion ({} ms in the pass, {evaluation_ms:.0} ms evaluating: {:.0} pods/s excluding API time)",
        wall.as_secs_f64(),
        pass["elapsed_ms"],
        pods_audited / (evaluation_ms.max(1.0) / 1000.0)
    );
    served.sigterm();
    let _ = served.finish(Duration::from_secs(30));
    drop(child.stdin.take());
    let _ = child.wait();
}
