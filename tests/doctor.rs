//! `pullgate doctor` (the real binary) against the in-repo fake API server: one pod per failure
//! cause, the verdicts and fixes it prints, its exit codes, and that it never prints credentials.

mod support;

use serde_json::{json, Value};
use std::process::Command;
use support::fake_api::FakeApi;
use support::fixtures;

const PLANTED: &str = "Doctor-Planted-Pw-73kq";

fn pod(ns: &str, name: &str, image: &str, secrets: &[&str], extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": image}]},
    });
    if !secrets.is_empty() {
        p["spec"]["imagePullSecrets"] = json!(secrets
            .iter()
            .map(|s| json!({"name": s}))
            .collect::<Vec<_>>());
    }
    if let (Some(m), Some(e)) = (p["metadata"].as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    p
}

async fn cluster() -> FakeApi {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("shop", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    fake.apply(fixtures::service_account("shop", "builder", &["ghcr"]));
    fake.apply_secret("shop", "regcred", &["registry.example.com"], PLANTED);
    fake.apply_secret("shop", "ghcr", &["ghcr.io"], PLANTED);
    fake.apply_secret("payments", "payreg", &["pay.example.com"], PLANTED);
    fake
}

fn doctor(fake: &FakeApi, ns: &str, pod: &str, extra: &[&str]) -> (i32, String) {
    // The fake API keeps serving on the runtime's other worker while this one waits.
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .args(["doctor", "-n", ns, pod, "--kubeconfig"])
            .arg(fake.kubeconfig_path())
            .args(extra)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run pullgate doctor")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(PLANTED), "credential printed:\n{text}");
    (out.status.code().unwrap_or(-1), text)
}

fn verdict<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(check))
        .unwrap_or_else(|| panic!("no line for {check:?} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cause_gets_its_verdict_and_fix() {
    let fake = cluster().await;
    fake.apply(pod(
        "shop",
        "web",
        "registry.example.com/shop/web:1",
        &["regcred"],
        json!({}),
    ));
    fake.apply(pod(
        "shop",
        "api",
        "registry.example.com:5000/shop/api:1",
        &["regcred"],
        json!({}),
    ));
    fake.apply(pod(
        "shop",
        "worker",
        "registry.example.com/shop/worker:1",
        &[],
        json!({}),
    ));
    fake.apply(pod("shop", "tool", "ghcr.io/acme/tool:1", &[], json!({})));
    fake.apply(pod(
        "shop",
        "billing",
        "pay.example.com/bill:1",
        &["payreg"],
        json!({}),
    ));
    fake.apply(pod(
        "shop",
        "agent",
        "registry.example.com/agent:1",
        &[],
        json!({"annotations": {"kubernetes.io/config.mirror": "x"}}),
    ));
    fake.apply(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "api.1", "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": "api", "namespace": "shop"},
        "reason": "Failed", "type": "Warning",
        "message": "Failed to pull image \"registry.example.com:5000/shop/api:1\": 401 Unauthorized"}));

    let (code, text) = doctor(&fake, "shop", "web", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("PROBLEM"), "{text}");

    let (code, text) = doctor(&fake, "shop", "api", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        verdict(&text, "a secret's registry").contains("PROBLEM"),
        "{text}"
    );
    assert!(
        text.contains("--docker-server=registry.example.com:5000"),
        "{text}"
    );
    assert!(
        verdict(&text, "pod events").contains("PROBLEM") && text.contains("401 Unauthorized"),
        "{text}"
    );
    // The same diagnosis attribution writes on the pod.
    assert!(
        text.contains(
            "diagnosis: RegistryMismatch: pulling \"registry.example.com:5000/shop/api:1\" fails"
        ),
        "{text}"
    );
    let (_, healthy) = doctor(&fake, "shop", "web", &[]);
    assert!(
        !healthy.contains("diagnosis:"),
        "no pull failure, no diagnosis: {healthy}"
    );

    let (code, text) = doctor(&fake, "shop", "worker", &[]);
    assert_eq!(code, 1);
    assert!(
        verdict(&text, "the ServiceAccount").contains("PROBLEM"),
        "{text}"
    );
    assert!(
        text.contains("kubectl patch serviceaccount default -n shop"),
        "{text}"
    );

    let (_, text) = doctor(&fake, "shop", "tool", &[]);
    assert!(
        text.contains("serviceAccountName: builder"),
        "wrong ServiceAccount hint missing:\n{text}"
    );

    let (code, text) = doctor(&fake, "shop", "billing", &[]);
    assert_eq!(code, 1);
    assert!(
        verdict(&text, "referenced secrets exist").contains("PROBLEM") && text.contains("payments"),
        "{text}"
    );

    let (code, text) = doctor(&fake, "shop", "agent", &[]);
    assert_eq!(code, 1);
    assert!(
        verdict(&text, "not a static pod").contains("PROBLEM")
            && text.contains("credential provider"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_secrets_json_output_and_unreadable_pods() {
    let fake = cluster().await;
    // The API server stamps creationTimestamp itself, so "old" here means older than a tiny maxSecretAge.
    fake.apply_secret("shop", "ancient", &["old.example.com"], PLANTED);
    fake.apply(pod(
        "shop",
        "legacy",
        "old.example.com/app:1",
        &["ancient"],
        json!({}),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "maxSecretAge: 1s\n").expect("write policy");
    let policy = policy.to_str().unwrap_or_default().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, text) = doctor(
            &fake,
            "shop",
            "legacy",
            &["--config", &policy, "-o", "json"],
        );
        let report: Value = serde_json::from_str(&text).expect("JSON report");
        let fresh = report["checks"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["check"] == "credentials are fresh and accepted by the registry")
            })
            .map(|c| c["verdict"].clone());
        if fresh == Some(json!("problem")) {
            assert_eq!(code, 1, "{text}");
            assert!(text.contains("rotate the credential"), "{text}");
            break;
        }
        assert_eq!(fresh, Some(json!("ok")), "{text}");
        assert!(
            std::time::Instant::now() < deadline,
            "the secret never became stale:\n{text}"
        );
    }

    let (code, text) = doctor(&fake, "shop", "no-such-pod", &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no-such-pod"), "{text}");
}
