//! `pullgate doctor` (the real binary) against the in-repo fake API server: one pod per failure
//! cause, the verdicts and fixes it prints, its exit codes, and that it never prints credentials.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

/// A kubelet Event about a pod, `seconds` after a fixed start (doctor orders Events by time).
fn kubelet_event(ns: &str, pod: &str, n: u32, seconds: u32, reason: &str, message: &str) -> Value {
    let at = format!("2025-01-01T00:{:02}:{:02}Z", seconds / 60, seconds % 60);
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{pod}.{n}"), "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
        "reason": reason, "type": "Warning", "message": message,
        "firstTimestamp": at, "lastTimestamp": at})
}

fn with_status(mut pod: Value, status: Value) -> Value {
    pod["status"] = status;
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_kubelet_cannot_read_is_named_malformed() {
    let fake = cluster().await;
    let image = "registry.example.com/shop/app:1";
    // Not base64 at byte 0, and carrying the planted text that must never be printed.
    fake.apply(fixtures::malformed_pull_secret(
        "shop",
        "mal",
        "registry.example.com",
        &format!("%{PLANTED}"),
    ));
    let keyring = "illegal base64 data at input byte 0";
    fake.apply(with_status(
        pod("shop", "app", image, &["mal"], json!({})),
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": image,
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": keyring, "message": keyring}}}]}),
    ));
    // What a v1.36 kubelet records (reference/kubelet-events.md): one pull without the secret, then only the keyring error.
    let events = [
        (
            "FailedToRetrieveImagePullSecret",
            "Unable to retrieve some image pull secrets (mal); attempting to pull the image may not succeed.".to_owned(),
        ),
        (
            "Failed",
            format!("Failed to pull image \"{image}\": failed to resolve reference: 401 Unauthorized"),
        ),
        ("Failed", "Error: ErrImagePull".to_owned()),
        ("Failed", format!("Error: {keyring}")),
    ];
    for (n, (reason, message)) in (0u32..).zip(events) {
        fake.apply(kubelet_event("shop", "app", n, n * 10, reason, &message));
    }
    let (code, text) = doctor(&fake, "shop", "app", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("diagnosis: MalformedSecret: no image of the pod can be pulled"),
        "{text}"
    );
    assert!(
        text.contains("secret \"mal\"") && text.contains("not valid base64"),
        "the secret and what is wrong with it: {text}"
    );
    assert!(
        text.contains(&format!("(kubelet: {keyring})")),
        "quotes the kubelet: {text}"
    );
    assert!(
        verdict(&text, "secrets are of the dockerconfigjson type").contains("PROBLEM"),
        "{text}"
    );
    assert!(
        verdict(&text, "pod events").contains("PROBLEM")
            && text.contains(&format!("container \"app\" waits: {keyring}"))
            && text.contains(&format!("Failed: Error: {keyring}")),
        "{text}"
    );

    // The other variant, from the Event alone (no status yet): auth decodes but has no ':'.
    fake.apply(fixtures::malformed_pull_secret(
        "shop",
        "nocolon",
        "registry.example.com",
        &fixtures::b64("robot"),
    ));
    fake.apply(pod("shop", "app2", image, &["nocolon"], json!({})));
    let parse = "unable to parse auth field, must be formatted as base64(username:password)";
    fake.apply(kubelet_event(
        "shop",
        "app2",
        0,
        0,
        "Failed",
        &format!("Error: {parse}"),
    ));
    let (code, text) = doctor(&fake, "shop", "app2", &["-o", "json"]);
    assert_eq!(code, 1, "{text}");
    let report: Value = serde_json::from_str(&text).expect("JSON report");
    assert_eq!(report["diagnosis"]["cause"], "MalformedSecret", "{text}");
    assert!(
        report["diagnosis"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not decode to username:password")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_failures_before_the_pod_started_are_history() {
    let fake = cluster().await;
    let image = "registry.example.com/shop/web:2";
    fake.apply(with_status(
        pod("shop", "flaky", image, &["regcred"], json!({})),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": image,
            "imageID": "registry.example.com/shop/web@sha256:0123", "ready": true, "started": true,
            "restartCount": 0, "state": {"running": {"startedAt": "2025-01-01T00:01:00Z"}}}]}),
    ));
    let events = [
        (
            "Failed",
            format!("Failed to pull image \"{image}\": failed to do request: Head \"https://registry.example.com/v2/shop/web/manifests/2\": dial tcp: connect: connection refused"),
        ),
        ("Failed", "Error: ErrImagePull".to_owned()),
        ("BackOff", format!("Back-off pulling image \"{image}\"")),
        ("Failed", "Error: ImagePullBackOff".to_owned()),
        ("Pulled", format!("Successfully pulled image \"{image}\" in 1.2s")),
    ];
    for (n, (reason, message)) in (0u32..).zip(events) {
        fake.apply(kubelet_event("shop", "flaky", n, n * 10, reason, &message));
    }
    let (code, text) = doctor(&fake, "shop", "flaky", &[]);
    assert_eq!(code, 0, "only current problems count:\n{text}");
    assert!(!text.contains("PROBLEM"), "{text}");
    assert!(!text.contains("diagnosis:"), "{text}");
    assert!(
        verdict(&text, "pod events").contains("[ok     ]")
            && text.contains("earlier pull failures (4 events, the latest: Failed: Error: ImagePullBackOff) are history: all containers have started"),
        "{text}"
    );
}
