//! The real binary's command line: `check` (JSON schema, expected codes of every example, exit
//! codes, stdin, overrides, text output), `validate-config` and `certs`.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use support::install_crypto;
use support::{client::*, fixtures::*, paths::*, secrets::*};

const EVERY_REGISTRY_PRIVATE: &str = "tests/fixtures/policy/every-registry-private.yaml";

fn pullgate(args: &[&str]) -> Output {
    run_with_stdin(args, None)
}

fn run_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(root())
        // The examples' mistakes include registries no secret names: checked with every one private.
        .env("PULLGATE_CONFIG", EVERY_REGISTRY_PRIVATE)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pullgate");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    })
}

fn result<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no result named {name} in {report}"))
}

fn codes(r: &Value) -> Vec<(String, String)> {
    r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap_or_default().to_owned(),
                f["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// (file, object name, allowed, the finding codes with severities, injected secrets)
type Expect = (
    &'static str,
    &'static str,
    bool,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const EXPECTED: [Expect; 14] = [
    (
        "deployment-broken",
        "storefront",
        false,
        &[("RegistryMismatch", "error")],
        &[],
    ),
    (
        "dockercfg",
        "legacy",
        true,
        &[("DeprecatedDockercfg", "warning")],
        &[],
    ),
    (
        "injected",
        "batch",
        true,
        &[("SecretsInjected", "info")],
        &["regcred"],
    ),
    (
        "invalid-image",
        "typo",
        false,
        &[("InvalidImageReference", "error")],
        &[],
    ),
    (
        "malformed-secret",
        "harbor",
        false,
        &[("MalformedSecret", "error")],
        &[],
    ),
    (
        "no-credentials",
        "ledger",
        false,
        &[("NoCredentials", "error")],
        &[],
    ),
    ("ok", "web", true, &[], &[]),
    (
        "other-namespace",
        "billing",
        false,
        &[("SecretInOtherNamespace", "error")],
        &[],
    ),
    (
        "registry-mismatch",
        "api",
        false,
        &[("RegistryMismatch", "error")],
        &[],
    ),
    (
        "sa-not-patched",
        "worker",
        false,
        &[("ServiceAccountNotPatched", "error")],
        &[],
    ),
    (
        "secret-not-found",
        "cart",
        false,
        &[("SecretNotFound", "error")],
        &[],
    ),
    (
        "static-pod",
        "node-agent-node1",
        true,
        &[("StaticPod", "warning")],
        &[],
    ),
    (
        "wrong-service-account",
        "tool",
        false,
        &[("ServiceAccountNotPatched", "error")],
        &[],
    ),
    (
        "wrong-type",
        "ci",
        false,
        &[("WrongSecretType", "error")],
        &[],
    ),
];

#[test]
fn check_json_reports_each_example_with_its_code() {
    let o = pullgate(&["check", "examples/cluster", "examples/pods", "-o", "json"]);
    assert_eq!(code(&o), 1, "stderr: {}", stderr(&o));
    let report = json_report(&o);
    assert_eq!(
        report["results"].as_array().map(Vec::len),
        Some(EXPECTED.len())
    );
    assert_eq!(report["skipped"], 0);
    assert!(report.get("errors").is_none(), "{report}");
    let mut failures = Vec::new();
    for (file, name, allowed, want, injected) in EXPECTED {
        let r = result(&report, name);
        let got = codes(r);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(c, s)| ((*c).to_owned(), (*s).to_owned()))
            .collect();
        if r["allowed"] != allowed
            || got != want
            || r["injectedSecrets"] != serde_json::json!(injected)
        {
            failures.push(format!(
                "{file}: want allowed={allowed} {want:?} injected {injected:?}, got {r}"
            ));
        }
        // Schema of every result.
        assert_eq!(r["namespace"], "shop", "{file}");
        assert!(r["kind"] == "Pod" || r["kind"] == "Deployment", "{file}");
        assert!(r["imagePullSecrets"].is_array(), "{file}");
        for img in r["images"].as_array().expect("images") {
            for k in [
                "container",
                "image",
                "registry",
                "repository",
                "requiresCredentials",
                "matchedSecrets",
            ] {
                assert!(img.get(k).is_some(), "{file}: image lacks {k}: {img}");
            }
        }
        for f in r["findings"].as_array().expect("findings") {
            assert!(
                f["message"].as_str().is_some_and(|m| m.len() > 20),
                "{file}: {f}"
            );
            assert!(
                ["error", "warning", "info"].contains(&f["severity"].as_str().unwrap_or_default())
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Images in detail.
    let api = &result(&report, "api")["images"][0];
    assert_eq!(api["container"], "app");
    assert_eq!(api["image"], "registry.example.com:5000/shop/api:2");
    assert_eq!(api["registry"], "registry.example.com:5000");
    assert_eq!(api["repository"], "shop/api");
    assert_eq!(api["requiresCredentials"], true);
    assert_eq!(api["matchedSecrets"], serde_json::json!([]));
    let web = &result(&report, "web")["images"][0];
    assert_eq!(web["matchedSecrets"], serde_json::json!(["regcred"]));
    let typo = &result(&report, "typo")["images"][0];
    assert!(
        typo["registry"].is_null() && typo["repository"].is_null(),
        "{typo}"
    );
    let batch = result(&report, "batch");
    assert_eq!(batch["imagePullSecrets"], serde_json::json!(["regcred"]));
    assert_eq!(
        batch["images"][0]["matchedSecrets"],
        serde_json::json!(["regcred"])
    );
    // Findings carry the container when they are about one image, and the fix.
    let cart = &result(&report, "cart")["findings"][0];
    assert_eq!(cart["container"], "app");
    assert!(
        cart["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did you mean \"regcred\""),
        "{cart}"
    );
    let tool = &result(&report, "tool")["findings"][0];
    assert!(
        tool["message"]
            .as_str()
            .unwrap_or_default()
            .contains("serviceAccountName: builder"),
        "{tool}"
    );
}

#[test]
fn check_exit_codes() {
    // 0: only admitted objects.
    let ok = pullgate(&[
        "check",
        "examples/cluster",
        "examples/pods/ok.yaml",
        "examples/pods/injected.yaml",
        "examples/pods/dockercfg.yaml",
        "examples/pods/static-pod.yaml",
    ]);
    assert_eq!(code(&ok), 0, "{}{}", stdout(&ok), stderr(&ok));
    // 1: one denied.
    let denied = pullgate(&[
        "check",
        "examples/cluster",
        "examples/pods/ok.yaml",
        "examples/pods/wrong-type.yaml",
    ]);
    assert_eq!(code(&denied), 1, "{}", stderr(&denied));
    // 2: a file that cannot be read, named in stderr.
    let missing = pullgate(&[
        "check",
        "examples/cluster",
        "examples/pods/does-not-exist.yaml",
    ]);
    assert_eq!(code(&missing), 2);
    assert!(
        stderr(&missing).contains("does-not-exist.yaml"),
        "{}",
        stderr(&missing)
    );
    // 2: not UTF-8, named in the report; the other input is still evaluated.
    let tmp = scratch("cli-bytes");
    let bin_file = tmp.path().join("binary.yaml");
    std::fs::write(&bin_file, [0xff, 0xfe, 0x00, 0x41]).expect("write");
    let o = pullgate(&[
        "check",
        "examples/cluster",
        "examples/pods/ok.yaml",
        &bin_file.to_string_lossy(),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("binary.yaml: not UTF-8 text"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("1 checked"), "{}", stdout(&o));
    // 2: an object that cannot be read as a pod.
    let bad_pod = tmp.path().join("bad-pod.yaml");
    std::fs::write(
        &bad_pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: nope\n",
    )
    .expect("write");
    let o = pullgate(&["check", "examples/cluster", &bad_pod.to_string_lossy()]);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    assert!(format!("{}{}", stdout(&o), stderr(&o)).contains("bad-pod.yaml"));
    // 2: usage errors, naming what clap refused.
    for (args, refused) in [
        (&["check", "--bogus"][..], "unexpected argument '--bogus'"),
        (
            &["check", "--validation", "maybe", "examples/pods"],
            "invalid value 'maybe' for '--validation <VALIDATION>'",
        ),
        (
            &["check", "-o", "xml"],
            "invalid value 'xml' for '--output <OUTPUT>'",
        ),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ] {
        let o = pullgate(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(&format!("error: {refused}")),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn malformed_yaml_names_the_file_and_the_document_index() {
    let tmp = scratch("cli-yaml");
    let f = tmp.path().join("three-docs.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [unclosed\n",
    )
    .expect("write");
    let o = pullgate(&["check", &f.to_string_lossy()]);
    assert_eq!(code(&o), 2);
    let out = stdout(&o);
    // The third document (index 2) is the broken one.
    assert!(
        out.contains("three-docs.yaml (document 2): "),
        "the error does not name document 2: {out}"
    );
}

#[test]
fn malformed_yaml_error_does_not_print_secret_lines() {
    let tmp = scratch("cli-yaml-secret");
    let f = tmp.path().join("secret.yaml");
    std::fs::write(
        &f,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: \"{PLANTED_PASSWORD}\n  x: [1, 2\n"),
    )
    .expect("write");
    let o = pullgate(&["check", &f.to_string_lossy()]);
    assert_eq!(code(&o), 2);
    let out = stdout(&o);
    assert!(
        out.contains("secret.yaml (document 0): ") && out.contains("line 6"),
        "{out}"
    );
    assert_no_secrets("stderr", &stderr(&o));
    assert_no_secrets("stdout", &stdout(&o));
}

#[test]
fn check_reads_stdin() {
    let pod = std::fs::read(root().join("examples/pods/registry-mismatch.yaml")).expect("pod");
    let o = run_with_stdin(
        &["check", "examples/cluster", "-", "-o", "json"],
        Some(&pod),
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let r = json_report(&o);
    assert_eq!(
        codes(result(&r, "api")),
        [("RegistryMismatch".to_owned(), "error".to_owned())]
    );
    // No path at all means stdin; the store can come in the same stream.
    let mut all = std::fs::read(root().join("examples/cluster/cluster.yaml")).expect("cluster");
    all.extend_from_slice(b"\n---\n");
    all.extend(std::fs::read(root().join("examples/pods/ok.yaml")).expect("ok"));
    let o = run_with_stdin(&["check", "-o", "json"], Some(&all));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(result(&json_report(&o), "web")["allowed"], true);
    // Malformed stdin is named `-`.
    let o = run_with_stdin(&["check"], Some(b"a: [\n"));
    assert_eq!(code(&o), 2);
    assert!(
        stdout(&o).contains("error: - (document 0): "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn validation_override_and_namespace_flag() {
    // payments has no validation label: the policy (default warn) decides.
    let tmp = scratch("cli-validation");
    let f = tmp.path().join("pod.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: reporter\n  namespace: payments\nspec:\n  containers:\n    - name: app\n      image: registry.example.com/pay/reporter:1\n",
    )
    .expect("write");
    let path = f.to_string_lossy().into_owned();
    let warn = pullgate(&["check", "examples/cluster", &path, "-o", "json"]);
    assert_eq!(code(&warn), 0, "default policy is warn: {}", stdout(&warn));
    let r = json_report(&warn);
    assert_eq!(result(&r, "reporter")["allowed"], true);
    assert_eq!(
        codes(result(&r, "reporter")),
        [("NoCredentials".to_owned(), "error".to_owned())]
    );
    let deny = pullgate(&[
        "check",
        "--validation",
        "deny",
        "examples/cluster",
        &path,
        "-o",
        "json",
    ]);
    assert_eq!(code(&deny), 1);
    assert_eq!(result(&json_report(&deny), "reporter")["allowed"], false);
    let explicit_warn = pullgate(&["check", "--validation", "warn", "examples/cluster", &path]);
    assert_eq!(code(&explicit_warn), 0);
    let off = pullgate(&["check", "--validation", "off", "examples/cluster", &path]);
    assert_eq!(code(&off), 0);
    // A policy file with validation: deny does the same.
    let policy = tmp.path().join("policy.yaml");
    std::fs::write(&policy, "validation: deny\n").expect("write");
    let o = pullgate(&[
        "check",
        "--config",
        &policy.to_string_lossy(),
        "examples/cluster",
        &path,
    ]);
    assert_eq!(code(&o), 1);

    // -n: objects without a namespace are evaluated in it (shop is labelled deny).
    let bare = tmp.path().join("bare.yaml");
    std::fs::write(
        &bare,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\nspec:\n  containers:\n    - name: app\n      image: registry.internal.example:5000/pay/x:1\n",
    )
    .expect("write");
    let bare = bare.to_string_lossy().into_owned();
    let o = pullgate(&[
        "check",
        "-n",
        "shop",
        "examples/cluster",
        &bare,
        "-o",
        "json",
    ]);
    assert_eq!(code(&o), 1);
    assert_eq!(result(&json_report(&o), "bare")["namespace"], "shop");
    let o = pullgate(&[
        "check",
        "-n",
        "payments",
        "examples/cluster",
        &bare,
        "-o",
        "json",
    ]);
    assert_eq!(code(&o), 0);
    let r = json_report(&o);
    assert_eq!(result(&r, "bare")["namespace"], "payments");
    assert_eq!(
        result(&r, "bare")["injectedSecrets"],
        serde_json::json!(["payments-registry"])
    );
}

#[test]
fn check_text_output_has_the_table_and_the_fixes() {
    let o = pullgate(&["check", "examples/cluster", "examples/pods"]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let header = out.lines().next().unwrap_or_default();
    for col in ["KIND", "NAMESPACE", "NAME", "RESULT", "INJECTED"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    for row in [
        ("web", "allowed"),
        ("batch", "regcred"),
        ("api", "DENIED"),
        ("storefront", "DENIED"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().any(|w| w == row.0) && l.contains(row.1)),
            "no row {row:?} in\n{out}"
        );
    }
    for fix in [
        "did you mean \"regcred\"",
        "kubectl create secret docker-registry",
        "kubectl get secret payments-registry -n payments",
        "serviceAccountName: builder",
        "kubernetes.io/dockerconfigjson",
        "spec.containers[].image",
    ] {
        assert!(
            out.contains(fix),
            "text output lacks the fix {fix:?}:\n{out}"
        );
    }
    for code in [
        "RegistryMismatch",
        "SecretNotFound",
        "NoCredentials",
        "StaticPod",
        "SecretsInjected",
    ] {
        assert!(out.contains(code), "{code}");
    }
    assert!(out.contains("14 checked, 10 denied, 0 skipped"), "{out}");
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn check_never_prints_credentials() {
    let tmp = scratch("cli-secrets");
    std::fs::write(tmp.path().join("vault.yaml"), planted_manifests()).expect("write");
    let mut pods = String::new();
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
    .iter()
    .enumerate()
    {
        pods.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  namespace: vault\nspec:\n  imagePullSecrets: [{{name: {secret}}}]\n  containers:\n    - name: app\n      image: {host}/app:1\n"
        ));
    }
    pods.push_str("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: inject\n  namespace: vault\nspec:\n  containers:\n    - {name: app, image: private.example.org/app:1}\n");
    std::fs::write(tmp.path().join("pods.yaml"), pods).expect("write");
    let dir = tmp.path().to_string_lossy().into_owned();
    for args in [
        vec![
            "check",
            dir.as_str(),
            "examples/cluster",
            "examples/pods",
            "-o",
            "json",
        ],
        vec!["check", dir.as_str(), "examples/cluster", "examples/pods"],
    ] {
        let o = pullgate(&args);
        assert!(code(&o) == 1, "{args:?}: {}", stderr(&o));
        assert_no_secrets("check stdout", &stdout(&o));
        assert_no_secrets("check stderr", &stderr(&o));
    }
    // The planted findings are really there (so the check above looked at real messages).
    let r = json_report(&pullgate(&["check", &dir, "-o", "json"]));
    assert_eq!(
        result(&r, "inject")["injectedSecrets"],
        serde_json::json!(["good"])
    );
    assert!(
        codes(result(&r, "p1"))
            .iter()
            .any(|(c, _)| c == "MalformedSecret"),
        "{r}"
    );
}

#[test]
fn validate_config_accepts_a_full_policy_and_names_the_bad_field() {
    let tmp = scratch("cli-config");
    let good = tmp.path().join("good.yaml");
    std::fs::write(
        &good,
        "inject: false\nvalidation: deny\nregistries:\n  private: ['*.example.com', ghcr.io/acme]\n  public: [registry.k8s.io]\nnamespaces:\n  exclude: [infra]\nmaxSecretAge: 90d\n",
    )
    .expect("write");
    let o = pullgate(&["validate-config", &good.to_string_lossy()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "{}: valid (inject false, validation deny)\n",
            good.display()
        )
    );
    let cases = [
        (
            "unknown nested field",
            "registries:\n  privat: [x]\n",
            "registries.privat",
        ),
        ("unknown top-level field", "validaton: deny\n", "validaton"),
        ("bad enum", "validation: maybe\n", "validation"),
        ("bad duration", "maxSecretAge: 90x\n", "maxSecretAge"),
        (
            "bad pattern",
            "registries:\n  private: ['http://[bad']\n",
            "registries.private",
        ),
        ("wrong type", "inject: [yes]\n", "inject"),
    ];
    for (what, text, path) in cases {
        let f = tmp.path().join("bad.yaml");
        std::fs::write(&f, text).expect("write");
        let o = pullgate(&["validate-config", &f.to_string_lossy()]);
        assert_eq!(code(&o), 2, "{what}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains(path),
            "{what}: stderr does not name {path}: {err}"
        );
        assert!(err.contains("bad.yaml"), "{what}: {err}");
    }
    let o = pullgate(&["validate-config", "/nonexistent/policy.yaml"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("/nonexistent/policy.yaml"));
}

#[test]
fn certs_writes_four_files_and_prints_the_ca_bundle() {
    install_crypto();
    let tmp = scratch("cli-certs");
    let out = tmp.path().join("out");
    let o = pullgate(&["certs", "--out", &out.to_string_lossy()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "tls.key"] {
        let mode = std::fs::metadata(out.join(key))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key} is readable by others");
    }
    let bundle = stdout(&o).trim().to_owned();
    let ca = std::fs::read_to_string(out.join("ca.crt")).expect("ca.crt");
    assert_eq!(String::from_utf8(unb64(&bundle)).expect("utf-8"), ca);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    // The serving certificate verifies against the CA for the default names.
    let cert = std::fs::read_to_string(out.join("tls.crt")).expect("tls.crt");
    let key = std::fs::read_to_string(out.join("tls.key")).expect("tls.key");
    for name in [
        "pullgate.pullgate.svc",
        "pullgate.pullgate.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ] {
        handshake(&ca, &cert, &key, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let refused = handshake(&ca, &cert, &key, "other.example").expect_err("other.example");
    assert!(refused.contains("not valid for name"), "{refused}");
    let days = (pullgate::tls::load_pem_pair(cert.as_bytes(), key.as_bytes(), "c", "k")
        .expect("pair")
        .not_after
        - jiff::Timestamp::now().as_second())
        / 86_400;
    assert!((364..=365).contains(&days), "{days}");

    // --dns, --ip, --days.
    let custom = tmp.path().join("custom");
    let o = pullgate(&[
        "certs",
        "--out",
        &custom.to_string_lossy(),
        "--dns",
        "hook.ns.svc",
        "--ip",
        "10.1.2.3",
        "--days",
        "30",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let read = |f: &str| std::fs::read_to_string(custom.join(f)).expect("read");
    let (ca, cert, key) = (read("ca.crt"), read("tls.crt"), read("tls.key"));
    handshake(&ca, &cert, &key, "hook.ns.svc").expect("hook.ns.svc");
    handshake(&ca, &cert, &key, "10.1.2.3").expect("10.1.2.3");
    let refused =
        handshake(&ca, &cert, &key, "localhost").expect_err("default names dropped with --dns");
    assert!(refused.contains("not valid for name"), "{refused}");
    let days = (pullgate::tls::load_pem_pair(cert.as_bytes(), key.as_bytes(), "c", "k")
        .expect("pair")
        .not_after
        - jiff::Timestamp::now().as_second())
        / 86_400;
    assert!((29..=30).contains(&days), "{days}");

    // Errors: exit 2 with the reason.
    let o = pullgate(&["certs", "--out", "/proc/pullgate-cannot-write-here"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with("pullgate: writing /proc/pullgate-cannot-write-here/ca.crt: "),
        "{}",
        stderr(&o)
    );
    let o = pullgate(&[
        "certs",
        "--out",
        &tmp.path().join("x").to_string_lossy(),
        "--dns",
        "b\u{fc}cher.example",
    ]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let o = pullgate(&["certs"]);
    assert_eq!(code(&o), 2);
}

/// A TLS handshake in memory: the server presents `cert`/`key`, the client trusts only `ca` and
/// checks `name`.
fn handshake(ca: &str, cert: &str, key: &str, name: &str) -> Result<(), String> {
    let loaded = pullgate::tls::load_pem_pair(cert.as_bytes(), key.as_bytes(), "c", "k")
        .map_err(|e| e.to_string())?;
    let resolver = Arc::new(pullgate::tls::CertResolver::new(loaded.key));
    let server_cfg = Arc::new(pullgate::tls::server_config(resolver).map_err(|e| e.to_string())?);
    let client_cfg = client_tls(ca, &[b"h2"]);
    let server_name =
        rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut client =
        rustls::ClientConnection::new(client_cfg, server_name).map_err(|e| e.to_string())?;
    let mut server = rustls::ServerConnection::new(server_cfg).map_err(|e| e.to_string())?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).map_err(|e| e.to_string())?;
        server
            .read_tls(&mut buf.as_slice())
            .map_err(|e| e.to_string())?;
        server.process_new_packets().map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        server.write_tls(&mut buf).map_err(|e| e.to_string())?;
        client
            .read_tls(&mut buf.as_slice())
            .map_err(|e| e.to_string())?;
        client.process_new_packets().map_err(|e| e.to_string())?;
        if !client.is_handshaking() && !server.is_handshaking() {
            assert_eq!(client.alpn_protocol(), Some(&b"h2"[..]));
            return Ok(());
        }
    }
    Err("handshake did not finish".to_owned())
}

/// `registries.private: [auto]` on a mixed cluster: public images (Artifact Registry, Docker
/// Hub official and user images, registry.k8s.io) get no finding, while each classic mistake
/// on the one private registry is still reported with its own code, and the JSON says why.
#[test]
fn auto_registries_leave_public_images_alone_and_catch_private_mistakes() {
    let dir = scratch("auto-policy");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "validation: deny\nregistries:\n  private: [auto]\n",
    )
    .expect("policy");
    let out = pullgate(&[
        "check",
        "--config",
        policy.to_str().expect("utf-8 path"),
        "-o",
        "json",
        "examples/mixed-cluster",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let results = report["results"].as_array().expect("results");
    let codes = |name: &str| -> Vec<String> {
        let r = results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the report"));
        r["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["severity"] != "info")
            .map(|f| f["code"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let public: Vec<&Value> = results
        .iter()
        .filter(|r| r["kind"] == "Deployment")
        .collect();
    assert_eq!(public.len(), 15);
    for r in &public {
        assert_eq!(r["allowed"], true, "{r}");
        assert!(
            codes(r["name"].as_str().unwrap_or_default()).is_empty(),
            "{r}"
        );
        let class = r["images"][0]["registryClass"].as_str().unwrap_or_default();
        assert!(class.starts_with("public ("), "{r}");
    }
    assert_eq!(codes("ok"), Vec::<String>::new());
    assert_eq!(codes("name-mismatch"), ["SecretNotFound"]);
    assert_eq!(codes("port-mismatch"), ["RegistryMismatch"]);
    assert_eq!(codes("sa-not-patched"), ["ServiceAccountNotPatched"]);
    assert_eq!(codes("other-namespace"), ["NoCredentials"]);
    assert_eq!(codes("wrong-type"), ["WrongSecretType"]);
    assert_eq!(codes("static-agent"), ["StaticPod"]);
    let port = results
        .iter()
        .find(|r| r["name"] == "port-mismatch")
        .expect("port-mismatch");
    assert_eq!(
        port["images"][0]["registryClass"],
        "private (secret \"acme-pull\" in this namespace is for registry.acme.example)"
    );
}
