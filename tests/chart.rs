//! Keeps the Helm chart (charts/pullgate) and the binary in step.
//!
//! - every `--flag` the Deployment passes to `pullgate serve` is one `pullgate serve --help` lists;
//! - the policy file of every rendered case passes `pullgate validate-config`;
//! - the values the schema allows for `policy.validation` are the ones the binary accepts;
//! - the webhook paths and ports in the templates are the binary's (/mutate, /validate, /healthz, /readyz,
//!   8443, 9090);
//! - `charts/pullgate/metrics.txt` lists exactly the metrics the dashboard and the alerts query;
//! - rendered with the real Helm (tests/support/helm.rs: `scripts/helm-render.py`, helm-sdkpy, a real
//!   `helm install` against a fake API server), for the profiles, every certificate mode, an upgrade and
//!   every option on: both webhook configurations (paths, ports, selectors, rules, caBundle per
//!   certificate mode), the Deployment (args, ports, mounts, probes, hardened security context), the
//!   policy file equal to the policy values, least-privilege RBAC, the pre-delete hook, the optional
//!   objects (PDB, cert-manager, NetworkPolicy, ServiceMonitor, alerts, dashboard) and the NOTES;
//!   invalid or contradictory values are refused naming the value; `policy.verify` and
//!   `policy.attribution` reach the policy ConfigMap and load in pullgate as given, their RBAC exists only
//!   when they are on (pods/delete only with `restartStuckPods`, inside the watched namespaces when
//!   `cluster.watchNamespaces` is set), `verifyCaBundles` is mounted read-only where `caFile` points, and
//!   contradictory settings are refused; the schema's bounds are the binary's.
//!
//! - Chart.yaml's appVersion is the crate version; every value has a `# --` doc comment; the schema is
//!   draft-07, closes every object and describes every documented value; the README values table is
//!   current (`PULLGATE_WRITE_CHART_README=1 cargo test --test chart chart_readme` rewrites it).
//!
//! The chart files are scanned as text; rendered objects are read with the crate's own YAML parser.
//! The render tests need python3 with helm-sdkpy and fail naming the install command without it;
//! `helm lint` itself is a CI step (`scripts/helm-lint.py` in `.ci/run`).
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::helm::{Case, Release, NAMESPACE, RELEASE};
use support::paths::{bin, root, scratch};

mod support;

#[path = "chart/contract.rs"]
mod contract;
#[path = "chart/statics.rs"]
mod statics;

use contract::{chart_cases, find, refusal_cases};

type TestResult = Result<(), String>;

fn chart_dir() -> PathBuf {
    root().join("charts").join("pullgate")
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn run(args: &[&str]) -> Result<Output, String> {
    Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .map_err(|e| format!("cannot run {} {}: {e}", bin(), args.join(" ")))
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `--name` tokens in a text: two dashes at the start of a word, then `[a-z][a-z0-9-]*`.
fn flags_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut flags = BTreeSet::new();
    let mut i = 0;
    while i + 2 < bytes.len() {
        let at_word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-');
        if at_word_start
            && bytes[i] == b'-'
            && bytes[i + 1] == b'-'
            && bytes[i + 2].is_ascii_lowercase()
        {
            let start = i + 2;
            let mut end = start;
            while end < bytes.len()
                && (bytes[end].is_ascii_lowercase()
                    || bytes[end].is_ascii_digit()
                    || bytes[end] == b'-')
            {
                end += 1;
            }
            flags.insert(text[start..end].trim_end_matches('-').to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    flags
}

/// `pullgate_*` metric names in a text, with `_bucket`, `_sum` and `_count` folded into the base name.
fn metrics_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(pos) = rest.find("pullgate_") {
        let before_ok = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[pos..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if before_ok {
            let name = &tail[..len];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        rest = &tail[len.max(1)..];
    }
    names
}

/// The `policy:` block of a values file as a policy file: the block's lines, de-indented by two. Keys set
/// to `""` are dropped, as the chart's template leaves empty optional keys out.
fn policy_block(values: &str) -> Option<String> {
    let mut lines = values.lines().skip_while(|l| l.trim_end() != "policy:");
    lines.next()?;
    let mut out = String::new();
    for line in lines {
        let top_level = !line.is_empty() && !line.starts_with(' ') && !line.starts_with('#');
        if top_level {
            break;
        }
        if line.trim_end().ends_with(": \"\"") {
            continue;
        }
        out.push_str(line.strip_prefix("  ").unwrap_or(line));
        out.push('\n');
    }
    Some(out)
}

fn validate_config(name: &str, policy: &str) -> Result<Output, String> {
    let dir = scratch("chart-policy");
    let file = dir.path().join(name);
    fs::write(&file, policy).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    run(&["validate-config", &file.to_string_lossy()])
}

fn expect_valid(name: &str, policy: &str) -> TestResult {
    let out = validate_config(name, policy)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`pullgate validate-config` rejected {name} ({}):\n{}\n--- policy ---\n{policy}",
            out.status,
            text_of(&out)
        ))
    }
}

#[test]
fn deployment_flags_are_flags_of_pullgate_serve() -> TestResult {
    let deployment = read(&chart_dir().join("templates/deployment.yaml"))?;
    let used = flags_in(&deployment);
    if used.is_empty() {
        return Err("no --flags found in templates/deployment.yaml".into());
    }
    let out = run(&["serve", "--help"])?;
    if !out.status.success() {
        return Err(format!(
            "`pullgate serve --help` failed ({}):\n{}",
            out.status,
            text_of(&out)
        ));
    }
    let known = flags_in(&text_of(&out));
    let unknown: Vec<_> = used.difference(&known).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "templates/deployment.yaml passes flags `pullgate serve --help` does not list: {unknown:?}\n\
             (help lists {known:?})"
        ))
    }
}

/// The policy file of every case the chart renders passes `pullgate validate-config`.
#[test]
fn rendered_policies_pass_validate_config() -> TestResult {
    let mut names: Vec<String> = chart_cases()?.into_iter().map(|c| c.0.to_owned()).collect();
    if let serde_json::Value::Object(m) = render_cases() {
        names.extend(m.keys().cloned());
    }
    let mut checked = 0;
    for case in &names {
        let Ok(release) = rendered(case)? else {
            continue;
        };
        let text = find(&release.objects, "ConfigMap")
            .into_iter()
            .filter(|d| {
                d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-policy"))
            })
            .find_map(|d| d["data"]["policy.yaml"].as_str())
            .ok_or_else(|| format!("{case}: no policy.yaml in a -policy ConfigMap"))?;
        expect_valid(&format!("{case}.policy.yaml"), text)?;
        checked += 1;
    }
    if checked < 10 {
        return Err(format!("only {checked} cases rendered a policy"));
    }
    Ok(())
}

#[test]
fn validate_config_rejects_what_the_chart_schema_rejects() -> TestResult {
    let base = policy_block(&read(&chart_dir().join("values.yaml"))?)
        .ok_or("values.yaml has no top-level `policy:` block")?;
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
            .map_err(|e| format!("values.schema.json: {e}"))?;
    let allowed = schema
        .pointer("/properties/policy/properties/validation/enum")
        .and_then(serde_json::Value::as_array)
        .ok_or("values.schema.json has no enum for policy.validation")?;
    let with_validation = |value: &str| {
        base.lines()
            .map(|l| {
                if l.starts_with("validation:") {
                    format!("validation: {value:?}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for value in allowed.iter().filter_map(serde_json::Value::as_str) {
        expect_valid(&format!("validation-{value}.yaml"), &with_validation(value))?;
    }
    // A value outside the enum, and a misspelt key of the reconciler section the chart renders, both fail
    // with exit code 2 and the path.
    let bad_cases = [
        (
            "validation-block.yaml",
            with_validation("block"),
            "validation",
        ),
        (
            "reconcile-key.yaml",
            format!("{base}reconcile:\n  serviceAcounts: true\n"),
            "reconcile.serviceAcounts",
        ),
    ];
    for (name, policy, path) in bad_cases {
        let out = validate_config(name, &policy)?;
        if out.status.code() != Some(2) || !text_of(&out).contains(path) {
            return Err(format!(
                "`pullgate validate-config` on {name} should exit 2 naming `{path}`; got {}:\n{}",
                out.status,
                text_of(&out)
            ));
        }
    }
    Ok(())
}

#[test]
fn webhook_paths_and_ports_match_the_binary() -> TestResult {
    let chart = chart_dir();
    let webhooks = read(&chart.join("templates/webhooks.yaml"))?;
    let deployment = read(&chart.join("templates/deployment.yaml"))?;
    let service = read(&chart.join("templates/service.yaml"))?;
    let values = read(&chart.join("values.yaml"))?;
    let monitor = read(&chart.join("templates/servicemonitor.yaml"))?;
    let checks = [
        (
            webhooks.contains("\"path\" \"/mutate\""),
            "webhooks.yaml sends the mutating webhooks to /mutate",
        ),
        (
            webhooks.contains("\"path\" \"/validate\""),
            "webhooks.yaml sends the validating webhooks to /validate",
        ),
        (
            deployment.contains("path: /healthz") && deployment.contains("path: /readyz"),
            "probes use /healthz and /readyz",
        ),
        (
            deployment.matches("scheme: HTTPS").count() == 3,
            "the three probes use HTTPS",
        ),
        (
            deployment.contains("--listen={{ $bind }}:{{ .Values.server.port }}"),
            "--listen uses server.port",
        ),
        (
            deployment.contains("--metrics-listen={{ $bind }}:{{ .Values.server.metricsPort }}"),
            "--metrics-listen uses server.metricsPort",
        ),
        (
            deployment.contains("containerPort: {{ .Values.server.port }}"),
            "the https container port is server.port",
        ),
        (
            deployment.contains("containerPort: {{ .Values.server.metricsPort }}"),
            "the metrics container port is server.metricsPort",
        ),
        (
            deployment.contains("--config=/etc/pullgate/policy.yaml"),
            "--config is /etc/pullgate/policy.yaml",
        ),
        (
            deployment.contains("mountPath: /etc/pullgate/policy.yaml"),
            "the policy is mounted at /etc/pullgate/policy.yaml",
        ),
        (
            service.contains("targetPort: https") && service.contains("targetPort: metrics"),
            "the Service targets the named ports",
        ),
        (
            values.contains("\n  port: 8443\n"),
            "values.yaml server.port is 8443",
        ),
        (
            values.contains("\n  metricsPort: 9090\n"),
            "values.yaml server.metricsPort is 9090",
        ),
        (
            values.contains("\n  port: 443\n"),
            "values.yaml service.port is 443",
        ),
        (
            monitor.contains("path: /metrics") && monitor.contains("port: metrics"),
            "the ServiceMonitor scrapes metrics:/metrics",
        ),
    ];
    let failed: Vec<_> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| *what)
        .collect();
    if !failed.is_empty() {
        return Err(format!(
            "chart does not match the binary's endpoints: {failed:?}"
        ));
    }
    // The binary's own defaults are the chart's ports.
    let out = run(&["serve", "--help"])?;
    let help = text_of(&out);
    for port in ["8443", "9090"] {
        if !help.contains(port) {
            return Err(format!(
                "`pullgate serve --help` does not show the default port {port}:\n{help}"
            ));
        }
    }
    Ok(())
}

#[test]
fn metrics_list_matches_dashboard_and_alerts() -> TestResult {
    let chart = chart_dir();
    let listed: BTreeSet<String> = read(&chart.join("metrics.txt"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let dashboard = read(&chart.join("dashboards/pullgate.json"))?;
    serde_json::from_str::<serde_json::Value>(&dashboard)
        .map_err(|e| format!("dashboards/pullgate.json: {e}"))?;
    let alerts = read(&chart.join("templates/prometheusrule.yaml"))?;
    let queried: BTreeSet<String> = metrics_in(&dashboard)
        .union(&metrics_in(&alerts))
        .cloned()
        .collect();
    let unlisted: Vec<_> = queried.difference(&listed).collect();
    let unused: Vec<_> = listed.difference(&queried).collect();
    if unlisted.is_empty() && unused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "metrics.txt and the dashboard/alerts disagree: queried but not listed {unlisted:?}, \
             listed but never queried {unused:?}"
        ))
    }
}

#[test]
fn values_schema_closes_every_object() -> TestResult {
    fn walk(node: &serde_json::Value, at: &str, open: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        if let Some(props) = obj.get("properties").and_then(serde_json::Value::as_object) {
            if at != "/global"
                && obj.get("additionalProperties") != Some(&serde_json::Value::Bool(false))
            {
                open.push(if at.is_empty() {
                    "/".into()
                } else {
                    at.to_string()
                });
            }
            for (k, v) in props {
                walk(v, &format!("{at}/{k}"), open);
            }
        }
        if let Some(defs) = obj
            .get("definitions")
            .and_then(serde_json::Value::as_object)
        {
            for (k, v) in defs {
                walk(v, &format!("#/definitions/{k}"), open);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{at}[]"), open);
        }
    }
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
            .map_err(|e| format!("values.schema.json: {e}"))?;
    let mut open = Vec::new();
    walk(&schema, "", &mut open);
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "values.schema.json objects without additionalProperties: false: {open:?}"
        ))
    }
}

#[test]
fn text_scanners_work() {
    assert_eq!(
        flags_in("- serve\n- --listen=[::]:8443\n- --cluster\n{{- if x }}\n# -- doc\n--watch-namespace=a"),
        ["cluster", "listen", "watch-namespace"].iter().map(|s| (*s).to_string()).collect()
    );
    assert_eq!(
        metrics_in("rate(pullgate_admission_duration_seconds_bucket{x}[5m]) / pullgate_store_stale xpullgate_no"),
        ["pullgate_admission_duration_seconds", "pullgate_store_stale"]
            .iter()
            .map(|s| (*s).to_string())
            .collect()
    );
    let block = policy_block("a: 1\npolicy:\n  # -- doc\n  inject: true\n  maxSecretAge: \"\"\n  registries:\n    private: [\"*\"]\n\nwebhooks:\n  x: 1\n");
    assert_eq!(
        block.as_deref(),
        Some("# -- doc\ninject: true\nregistries:\n  private: [\"*\"]\n\n")
    );
}

// ---------------------------------------------------------------------------------------------------
// Renders with the real Helm: credential verification and pull-failure attribution.

/// One case's render: the release, or the message Helm refused it with.
type Rendered = Result<Release, String>;

/// The values of every case the tests below render.
fn render_cases() -> serde_json::Value {
    serde_json::json!({
        "default": {},
        "workers": {"server": {"workerThreads": 3}},
        "digest": {"image": {"digest": format!("sha256:{}", "ab".repeat(32))}},
        "verify": {"policy": {"verify": {"enabled": true}}},
        "attribution": {"policy": {"attribution": {"enabled": true}}},
        "restart": {"policy": {"attribution": {"enabled": true, "restartStuckPods": true}}},
        "full": {
            "policy": {
                "verify": {
                    "enabled": true, "interval": "1h", "timeout": "5s", "deny": true,
                    "probeRepository": "library/busybox",
                    "registries": [
                        {"pattern": "*.corp.example", "caFile": "/etc/pullgate/ca/corp.pem"},
                        {"pattern": "registry.local:5000", "insecure": true}
                    ]
                },
                "attribution": {
                    "enabled": true, "eventsPerSecond": 5, "restartStuckPods": true,
                    "maxRestartPercent": 50, "restartsPerMinute": 3
                }
            },
            "verifyCaBundles": [
                {"configMap": "corp-ca"},
                {"secret": "partner-ca", "items": [{"key": "ca.crt", "path": "partner.pem"}]}
            ]
        },
        "watch-namespaces": {
            "cluster": {"watchNamespaces": ["team-a", "team-b"]},
            "policy": {
                "verify": {"enabled": true},
                "attribution": {"enabled": true, "restartStuckPods": true}
            }
        },
        "verify-without-cluster": {
            "cluster": {"enabled": false}, "policy": {"verify": {"enabled": true}}
        },
        "attribution-without-cluster": {
            "cluster": {"enabled": false}, "policy": {"attribution": {"enabled": true}}
        },
        "restart-without-attribution": {"policy": {"attribution": {"restartStuckPods": true}}},
        "bundles-without-verify": {"verifyCaBundles": [{"configMap": "corp-ca"}]},
        "audit": {
            "audit": {"enabled": true, "installPolicyReportCrd": true},
            "metrics": {"prometheusRule": {"enabled": true}}
        },
        "audit-reports-off": {
            "audit": {"enabled": true, "reports": "off", "interval": "30m", "protectInUseSecrets": true}
        },
        "audit-watch-namespaces": {
            "cluster": {"watchNamespaces": ["team-a"]}, "audit": {"enabled": true}
        },
        "rules-without-audit": {"metrics": {"prometheusRule": {"enabled": true}}},
        "audit-without-cluster": {"cluster": {"enabled": false}, "audit": {"enabled": true}},
        "protect-without-audit": {"audit": {"protectInUseSecrets": true}},
        "cafile-without-bundles": {
            "policy": {"verify": {"enabled": true, "registries": [
                {"pattern": "r.example", "caFile": "/etc/pullgate/ca/r.pem"}
            ]}}
        }
    })
}

/// Every case of [`render_cases`], [`chart_cases`] and [`refusal_cases`], rendered once per test
/// binary with the real Helm ([`support::helm::render`]).
fn rendered(case: &str) -> Result<&'static Rendered, String> {
    static ALL: std::sync::OnceLock<Result<BTreeMap<String, Rendered>, String>> =
        std::sync::OnceLock::new();
    let all = ALL.get_or_init(render_all).as_ref().map_err(Clone::clone)?;
    all.get(case)
        .ok_or_else(|| format!("no render case {case:?}"))
}

fn render_all() -> Result<BTreeMap<String, Rendered>, String> {
    let mut cases = BTreeMap::new();
    let plain = |values: serde_json::Value| Case {
        values,
        cluster: BTreeMap::new(),
    };
    if let serde_json::Value::Object(m) = render_cases() {
        for (name, values) in m {
            cases.insert(name, plain(values));
        }
    }
    for (name, values, cluster, _) in chart_cases()? {
        cases.insert(name.to_owned(), Case { values, cluster });
    }
    for (name, values, _) in refusal_cases() {
        cases.insert(name.to_owned(), plain(values));
    }
    support::helm::render(&cases)
}

/// The objects of a case that must render.
fn objects(case: &str) -> Result<&'static [serde_json::Value], String> {
    match rendered(case)? {
        Ok(r) => Ok(&r.objects),
        Err(e) => Err(format!("case {case} was refused: {e}")),
    }
}

/// The hook documents of a case that must render.
fn hooks(case: &str) -> Result<&'static [serde_json::Value], String> {
    match rendered(case)? {
        Ok(r) => Ok(&r.hooks),
        Err(e) => Err(format!("case {case} was refused: {e}")),
    }
}

/// The message a case that must be refused was refused with.
fn refusal(case: &str) -> Result<&'static str, String> {
    match rendered(case)? {
        Ok(_) => Err(format!(
            "case {case} rendered, but the chart must refuse it"
        )),
        Err(e) => Ok(e),
    }
}

fn of_kind<'a>(
    objects: &'a [serde_json::Value],
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    objects.iter().filter(move |o| o["kind"] == kind)
}

/// The policy file the chart renders: its text, as YAML data, and as the binary loads it.
fn rendered_policy(
    case: &str,
) -> Result<(serde_json::Value, pullgate::engine::policy::Policy), String> {
    let objects = objects(case)?;
    let cm = of_kind(objects, "ConfigMap")
        .find(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-policy"))
        })
        .ok_or_else(|| format!("{case}: no policy ConfigMap"))?;
    let text = cm["data"]["policy.yaml"]
        .as_str()
        .ok_or_else(|| format!("{case}: the policy ConfigMap has no policy.yaml"))?;
    let data: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("{case}: policy.yaml is not YAML: {e}\n{text}"))?;
    let policy = pullgate::engine::policy::Policy::from_yaml(text)
        .map_err(|e| format!("{case}: pullgate refuses the rendered policy: {e}\n{text}"))?;
    Ok((data, policy))
}

/// RBAC rules of a case: (kind, namespace, rule) for every ClusterRole and Role rule.
fn rules(case: &str) -> Result<Vec<(String, String, serde_json::Value)>, String> {
    let objects = objects(case)?;
    let mut out = Vec::new();
    for kind in ["ClusterRole", "Role"] {
        for role in of_kind(objects, kind) {
            let ns = role["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for rule in role["rules"].as_array().into_iter().flatten() {
                out.push((kind.to_owned(), ns.clone(), rule.clone()));
            }
        }
    }
    Ok(out)
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect()
}

/// Where `verb` on `resource` is granted, as "ClusterRole" or "Role/<namespace>". Rules limited by
/// `resourceNames` are left out: they grant access to named objects only.
fn grants(
    rules: &[(String, String, serde_json::Value)],
    resource: &str,
    verb: &str,
) -> BTreeSet<String> {
    rules
        .iter()
        .filter(|(_, _, r)| {
            r.get("resourceNames").is_none()
                && strings(&r["resources"]).contains(&resource)
                && strings(&r["verbs"]).contains(&verb)
        })
        .map(|(kind, ns, _)| {
            if kind == "Role" {
                format!("Role/{ns}")
            } else {
                kind.clone()
            }
        })
        .collect()
}

fn check_all(what: &str, failures: Vec<String>) -> TestResult {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}:\n  {}", failures.join("\n  ")))
    }
}

#[test]
fn policy_configmap_carries_verify_and_attribution() -> TestResult {
    let cases = render_cases();
    let (data, policy) = rendered_policy("full")?;
    let mut failures = Vec::new();
    for section in ["verify", "attribution"] {
        let want = &cases["full"]["policy"][section];
        if data[section] != *want {
            failures.push(format!(
                "policy.yaml {section} is {}, the values say {want}",
                data[section]
            ));
        }
    }
    let v = &policy.verify;
    let a = &policy.attribution;
    let loaded = [
        (v.enabled && v.deny, "verify.enabled and verify.deny"),
        (v.interval.to_string() == "1h", "verify.interval 1h"),
        (v.timeout.to_string() == "5s", "verify.timeout 5s"),
        (
            v.probe_repository.as_deref() == Some("library/busybox"),
            "verify.probeRepository",
        ),
        (
            v.registries.len() == 2
                && v.registries[0].ca_file.as_deref()
                    == Some(Path::new("/etc/pullgate/ca/corp.pem"))
                && v.registries[1].insecure,
            "verify.registries (caFile, insecure)",
        ),
        (
            a.enabled && a.restart_stuck_pods,
            "attribution.enabled and restartStuckPods",
        ),
        (
            (
                a.events_per_second,
                a.max_restart_percent,
                a.restarts_per_minute,
            ) == (5, 50, 3),
            "attribution rates (5/s, 50%, 3/min)",
        ),
    ];
    for (ok, what) in loaded {
        if !ok {
            failures.push(format!(
                "pullgate did not load {what} from the rendered policy"
            ));
        }
    }
    // The chart's defaults are the binary's: verification and attribution off, same settings, and
    // no empty probeRepository (the binary would refuse it).
    let (data, policy) = rendered_policy("default")?;
    let defaults = pullgate::engine::policy::Policy::default();
    if policy.verify != defaults.verify || policy.attribution != defaults.attribution {
        failures.push(format!(
            "default values render verify {:?} / attribution {:?}, the binary defaults are {:?} / {:?}",
            policy.verify, policy.attribution, defaults.verify, defaults.attribution
        ));
    }
    if data["verify"].get("probeRepository").is_some() {
        failures.push("an empty probeRepository is rendered into the policy".into());
    }
    check_all("rendered policy", failures)
}

#[test]
fn verify_and_attribution_rbac_only_when_enabled() -> TestResult {
    let cluster = || BTreeSet::from(["ClusterRole".to_owned()]);
    let none = BTreeSet::new;
    // The release namespace of the renders.
    let release = || BTreeSet::from(["Role/pullgate-system".to_owned()]);
    // (case, resource, verb, where it must be granted)
    let want = [
        ("default", "secrets", "get", none()),
        ("default", "events", "create", none()),
        ("default", "events", "watch", none()),
        ("default", "pods", "get", none()),
        ("default", "pods", "list", none()),
        ("verify", "secrets", "get", cluster()),
        ("verify", "secrets", "list", cluster()),
        ("verify", "events", "create", cluster()),
        ("verify", "events", "patch", cluster()),
        ("verify", "events", "list", none()),
        ("verify", "pods", "get", none()),
        ("attribution", "events", "list", cluster()),
        ("attribution", "events", "watch", cluster()),
        ("attribution", "events", "create", cluster()),
        ("attribution", "events", "patch", cluster()),
        ("attribution", "pods", "get", cluster()),
        ("attribution", "pods", "list", cluster()),
        ("attribution", "secrets", "get", none()),
        // Leader election (Lease pullgate-attribution), in the release namespace only.
        ("attribution", "leases", "update", release()),
        ("attribution", "leases", "create", release()),
        ("verify", "leases", "update", none()),
        ("default", "leases", "update", none()),
    ];
    let mut failures = Vec::new();
    for (case, resource, verb, place) in want {
        let got = grants(&rules(case)?, resource, verb);
        if got != place {
            failures.push(format!(
                "[{case}] {verb} {resource}: granted in {got:?}, want {place:?}"
            ));
        }
    }
    // Events are written and read as core/v1 only; pods are never watched, updated or patched.
    for case in [
        "verify",
        "attribution",
        "restart",
        "full",
        "watch-namespaces",
    ] {
        for (kind, ns, rule) in rules(case)? {
            let resources = strings(&rule["resources"]);
            if (resources.contains(&"events") || resources.contains(&"pods"))
                && strings(&rule["apiGroups"]) != [""]
            {
                failures.push(format!("[{case}] {kind} {ns}: {rule} is not core/v1 only"));
            }
            let verbs = strings(&rule["verbs"]);
            if resources.contains(&"pods")
                && verbs
                    .iter()
                    .any(|v| ["watch", "update", "patch", "*"].contains(v))
            {
                failures.push(format!(
                    "[{case}] {kind} {ns}: {rule} grants more than pullgate uses on pods"
                ));
            }
        }
    }
    check_all("RBAC for verification and attribution", failures)
}

#[test]
fn pods_delete_only_with_restart_stuck_pods() -> TestResult {
    let mut failures = Vec::new();
    for (case, want) in [
        ("default", BTreeSet::new()),
        ("verify", BTreeSet::new()),
        ("attribution", BTreeSet::new()),
        ("restart", BTreeSet::from(["ClusterRole".to_owned()])),
        ("full", BTreeSet::from(["ClusterRole".to_owned()])),
    ] {
        let got = grants(&rules(case)?, "pods", "delete");
        if got != want {
            failures.push(format!(
                "[{case}] delete pods granted in {got:?}, want {want:?}"
            ));
        }
    }
    check_all("pods/delete", failures)
}

#[test]
fn watched_namespaces_confine_verify_and_attribution_grants() -> TestResult {
    let rules = rules("watch-namespaces")?;
    let roles = BTreeSet::from(["Role/team-a".to_owned(), "Role/team-b".to_owned()]);
    let mut failures = Vec::new();
    for (resource, verb) in [
        ("secrets", "get"),
        ("events", "create"),
        ("events", "watch"),
        ("pods", "list"),
        ("pods", "delete"),
    ] {
        let got = grants(&rules, resource, verb);
        if got != roles {
            failures.push(format!(
                "{verb} {resource}: granted in {got:?}, want {roles:?}"
            ));
        }
    }
    check_all("grants with cluster.watchNamespaces", failures)
}

#[test]
fn ca_bundles_are_mounted_read_only_where_ca_file_points() -> TestResult {
    let full = objects("full")?;
    let deployment = of_kind(full, "Deployment").next().ok_or("no Deployment")?;
    let spec = &deployment["spec"]["template"]["spec"];
    let container = spec["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "pullgate"))
        .ok_or("no pullgate container")?;
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["mountPath"] == "/etc/pullgate/ca"))
        .ok_or_else(|| {
            format!(
                "nothing mounted at /etc/pullgate/ca: {}",
                container["volumeMounts"]
            )
        })?;
    let mut failures = Vec::new();
    if mount["readOnly"] != true {
        failures.push(format!("the CA mount is not read-only: {mount}"));
    }
    let volume = spec["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .ok_or("the CA mount has no volume")?;
    let want = serde_json::json!([
        {"configMap": {"name": "corp-ca"}},
        {"secret": {"name": "partner-ca", "items": [{"key": "ca.crt", "path": "partner.pem"}]}}
    ]);
    if volume["projected"]["sources"] != want {
        failures.push(format!(
            "the CA volume should project {want}, it is {volume}"
        ));
    }
    // Every caFile of the policy lies under the mount.
    let (_, policy) = rendered_policy("full")?;
    for r in &policy.verify.registries {
        if let Some(file) = &r.ca_file {
            if !file.starts_with("/etc/pullgate/ca/") {
                failures.push(format!("caFile {} is outside the CA mount", file.display()));
            }
        }
    }
    // Without CA bundles nothing is mounted there.
    let default_mounts = of_kind(objects("verify")?, "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["volumeMounts"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["mountPath"] == "/etc/pullgate/ca")
        .count();
    if default_mounts != 0 {
        failures.push("/etc/pullgate/ca is mounted without verifyCaBundles".into());
    }
    check_all("CA bundles", failures)
}

#[test]
fn verify_and_attribution_settings_the_chart_refuses() -> TestResult {
    let mut failures = Vec::new();
    for (case, fragment) in [
        (
            "verify-without-cluster",
            "policy.verify.enabled=true needs cluster.enabled=true",
        ),
        (
            "attribution-without-cluster",
            "policy.attribution.enabled=true needs cluster.enabled=true",
        ),
        (
            "restart-without-attribution",
            "restartStuckPods=true needs policy.attribution.enabled=true",
        ),
        (
            "bundles-without-verify",
            "verifyCaBundles is set but policy.verify.enabled is false",
        ),
        (
            "cafile-without-bundles",
            "policy.verify.registries[0].caFile",
        ),
    ] {
        let message = refusal(case)?;
        if !message.contains(fragment) {
            failures.push(format!(
                "[{case}] refused without naming {fragment:?}: {message}"
            ));
        }
    }
    check_all("refusals", failures)
}

#[test]
fn schema_bounds_of_verify_and_attribution_are_the_binary_s() -> TestResult {
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
            .map_err(|e| format!("values.schema.json: {e}"))?;
    let attribution = schema
        .pointer("/properties/policy/properties/attribution/properties")
        .ok_or("values.schema.json has no policy.attribution")?;
    let mut failures = Vec::new();
    for key in ["eventsPerSecond", "maxRestartPercent", "restartsPerMinute"] {
        let bound = |b: &str| attribution[key][b].as_u64();
        let (Some(min), Some(max)) = (bound("minimum"), bound("maximum")) else {
            failures.push(format!(
                "policy.attribution.{key} has no minimum and maximum"
            ));
            continue;
        };
        for (value, ok) in [(min, true), (max, true), (min - 1, false), (max + 1, false)] {
            let out = validate_config(
                &format!("attribution-{key}-{value}.yaml"),
                &format!("attribution:\n  {key}: {value}\n"),
            )?;
            if out.status.success() != ok {
                failures.push(format!(
                    "attribution.{key}: {value} is {} by the schema but {} by pullgate: {}",
                    if ok { "allowed" } else { "refused" },
                    if out.status.success() {
                        "allowed"
                    } else {
                        "refused"
                    },
                    text_of(&out).trim()
                ));
            }
        }
    }
    // Durations: pullgate accepts and refuses what the schema's `^[1-9][0-9]{0,8}(s|m|h|d|w)$` does (the
    // chart lint proves the schema side by rendering `0s`).
    for key in ["interval", "timeout"] {
        for (value, ok) in [
            ("1s", true),
            ("6h", true),
            ("0s", false),
            ("5", false),
            ("1w", true),
            ("1mo", false),
            ("1y", false),
        ] {
            let out = validate_config(
                &format!("verify-{key}-{value}.yaml"),
                &format!("verify:\n  {key}: {value:?}\n"),
            )?;
            if out.status.success() != ok {
                failures.push(format!(
                    "verify.{key}: {value:?} should be {}",
                    if ok { "accepted" } else { "refused" }
                ));
            }
        }
    }
    check_all("schema bounds", failures)
}

/// The container args of the Deployment a case renders.
fn serve_args(case: &str) -> Result<Vec<String>, String> {
    let deployment = of_kind(objects(case)?, "Deployment")
        .next()
        .ok_or_else(|| format!("{case}: no Deployment"))?;
    Ok(
        strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
            .into_iter()
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn worker_threads_flag_only_when_set() -> TestResult {
    let default = serve_args("default")?;
    if default.iter().any(|a| a.starts_with("--worker-threads")) {
        return Err(format!("default values pass --worker-threads: {default:?}"));
    }
    let set = serve_args("workers")?;
    if !set.iter().any(|a| a == "--worker-threads=3") {
        return Err(format!(
            "workerThreads: 3 does not pass --worker-threads=3: {set:?}"
        ));
    }
    // 0 means "auto" in the values and is never passed: the binary refuses it.
    let out = run(&["serve", "--worker-threads", "0", "--self-signed"])?;
    if out.status.code() != Some(2) || !text_of(&out).contains("worker-threads") {
        return Err(format!(
            "--worker-threads 0 was not refused: {}",
            text_of(&out)
        ));
    }
    Ok(())
}

/// The pre-delete hook runs pullgate's own image (an air-gapped cluster has nothing else to pull)
/// with `uninstall-webhooks` on both configurations, passing only flags the subcommand has, and its
/// ServiceAccount may delete exactly those two names.
#[test]
fn pre_delete_hook_runs_pullgate_uninstall_webhooks() -> TestResult {
    let help = run(&["uninstall-webhooks", "--help"])?;
    if !help.status.success() {
        return Err(format!(
            "`pullgate uninstall-webhooks --help` failed: {}",
            text_of(&help)
        ));
    }
    let known = flags_in(&text_of(&help));
    let mut failures = Vec::new();
    for case in ["default", "digest"] {
        let deployment = of_kind(objects(case)?, "Deployment")
            .next()
            .ok_or_else(|| format!("{case}: no Deployment"))?;
        let pullgate = &deployment["spec"]["template"]["spec"]["containers"][0];
        let hooks = hooks(case)?;
        let Some(job) = of_kind(hooks, "Job").next() else {
            failures.push(format!("{case}: no pre-delete Job"));
            continue;
        };
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        if c["image"] != pullgate["image"] || c["imagePullPolicy"] != pullgate["imagePullPolicy"] {
            failures.push(format!(
                "{case}: hook image {} ({}), pullgate's {} ({})",
                c["image"], c["imagePullPolicy"], pullgate["image"], pullgate["imagePullPolicy"]
            ));
        }
        if c.get("command").is_some() {
            failures.push(format!(
                "{case}: the hook must use the image's pullgate entrypoint, not {}",
                c["command"]
            ));
        }
        let args = strings(&c["args"]);
        if args
            != [
                "uninstall-webhooks",
                "--mutating=pullgate-mutating",
                "--validating=pullgate-validating",
            ]
        {
            failures.push(format!("{case}: hook args {args:?}"));
        }
        let used = flags_in(&args.join("\n"));
        let unknown: Vec<_> = used.difference(&known).collect();
        if !unknown.is_empty() {
            failures.push(format!("{case}: hook flags `pullgate uninstall-webhooks --help` does not list: {unknown:?}"));
        }
        let deadline = job["spec"]["activeDeadlineSeconds"].as_u64().unwrap_or(0);
        if !(1..=120).contains(&deadline) {
            failures.push(format!(
                "{case}: activeDeadlineSeconds {deadline} is not short"
            ));
        }
        for role in of_kind(hooks, "ClusterRole") {
            for rule in role["rules"].as_array().into_iter().flatten() {
                let mut names = strings(&rule["resourceNames"]);
                names.sort_unstable();
                if strings(&rule["verbs"]) != ["delete"]
                    || names != ["pullgate-mutating", "pullgate-validating"]
                {
                    failures.push(format!(
                        "{case}: hook rule grants more than delete on the two names: {rule}"
                    ));
                }
            }
        }
    }
    check_all("pre-delete hook", failures)
}

/// The policy file's `audit` section as rendered (YAML data: the section is parsed by the binary
/// once the background audit's policy keys are in).
fn rendered_audit(case: &str) -> Result<serde_json::Value, String> {
    let cm = of_kind(objects(case)?, "ConfigMap")
        .find(|o| o["metadata"]["name"] == "pullgate-policy")
        .ok_or_else(|| format!("{case}: no policy ConfigMap"))?;
    let text = cm["data"]["policy.yaml"].as_str().unwrap_or_default();
    let data: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("{case}: policy.yaml is not YAML: {e}\n{text}"))?;
    Ok(data["audit"].clone())
}

fn webhook<'a>(case: &str, name: &str) -> Result<Option<&'a serde_json::Value>, String>
where
    'static: 'a,
{
    Ok(of_kind(objects(case)?, "ValidatingWebhookConfiguration")
        .flat_map(|c| c["webhooks"].as_array().into_iter().flatten())
        .find(|w| w["name"] == name))
}

#[test]
fn audit_policy_rbac_webhook_crd_and_alert_only_when_enabled() -> TestResult {
    use pullgate::audit::policyreport::{GROUP, KIND, PLURAL, VERSION};
    let mut failures = Vec::new();
    let want_policy = [
        ("default", serde_json::Value::Null),
        (
            "audit",
            serde_json::json!({"enabled": true, "interval": "1h", "reports": "auto", "protectInUseSecrets": false}),
        ),
        (
            "audit-reports-off",
            serde_json::json!({"enabled": true, "interval": "30m", "reports": "off", "protectInUseSecrets": true}),
        ),
    ];
    for (case, want) in want_policy {
        let got = rendered_audit(case)?;
        if got != want {
            failures.push(format!("[{case}] policy.yaml audit is {got}, want {want}"));
        }
    }

    let cluster = || BTreeSet::from(["ClusterRole".to_owned()]);
    let none = BTreeSet::new;
    let release = || BTreeSet::from(["Role/pullgate-system".to_owned()]);
    let team = || BTreeSet::from(["Role/team-a".to_owned()]);
    let mut want = vec![
        ("audit", "policyreports", "get", cluster()),
        ("audit", "policyreports", "update", cluster()),
        ("audit", "policyreports", "delete", cluster()),
        ("audit", "policyreports", "patch", none()),
        ("audit", "events", "create", cluster()),
        ("audit", "leases", "update", release()),
        ("audit", "pods", "get", none()),
        ("audit-reports-off", "policyreports", "get", none()),
        ("audit-reports-off", "policyreports", "create", none()),
        ("audit-reports-off", "pods", "list", cluster()),
        ("audit-watch-namespaces", "pods", "list", team()),
        ("audit-watch-namespaces", "deployments", "list", team()),
        ("audit-watch-namespaces", "policyreports", "create", team()),
        ("default", "policyreports", "get", none()),
        ("default", "leases", "update", none()),
    ];
    // Only list: the audit reads page by page and never watches or reads one object by name.
    for resource in [
        "pods",
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "jobs",
        "cronjobs",
        "replicationcontrollers",
    ] {
        want.push(("audit", resource, "list", cluster()));
        want.push(("audit", resource, "watch", none()));
        want.push(("default", resource, "list", none()));
    }
    for (case, resource, verb, place) in want {
        let got = grants(&rules(case)?, resource, verb);
        if got != place {
            failures.push(format!(
                "[{case}] {verb} {resource}: granted in {got:?}, want {place:?}"
            ));
        }
    }
    for (kind, ns, rule) in rules("audit")? {
        if strings(&rule["resources"]).contains(&PLURAL) && strings(&rule["apiGroups"]) != [GROUP] {
            failures.push(format!("[audit] {kind} {ns}: {rule} is not {GROUP} only"));
        }
    }

    match webhook("audit", "secretdeletes.validate.pullgate.io")? {
        None => failures.push("[audit] no webhook for pull-secret deletion".into()),
        Some(w) => {
            let rule = &w["rules"][0];
            if strings(&rule["operations"]) != ["DELETE"]
                || strings(&rule["resources"]) != ["secrets"]
                || w["rules"].as_array().map_or(0, Vec::len) != 1
            {
                failures.push(format!(
                    "[audit] secret deletion webhook rules {}",
                    w["rules"]
                ));
            }
            if w["failurePolicy"] != "Ignore" {
                failures.push(format!(
                    "[audit] secret deletion webhook failurePolicy {} (an outage must not block deletions)",
                    w["failurePolicy"]
                ));
            }
            let condition = w["matchConditions"][0]["expression"].as_str().unwrap_or("");
            if !condition.contains("oldObject.type")
                || condition.contains("object.type ==") && !condition.contains("oldObject.type ==")
            {
                failures.push(format!(
                    "[audit] on DELETE the Secret is oldObject: {condition}"
                ));
            }
        }
    }
    if webhook("default", "secretdeletes.validate.pullgate.io")?.is_some() {
        failures.push("[default] pull-secret deletion webhook without audit".into());
    }

    let crds = |case| -> Result<Vec<&serde_json::Value>, String> {
        Ok(of_kind(objects(case)?, "CustomResourceDefinition").collect())
    };
    match crds("audit")?.as_slice() {
        [crd] => {
            let spec = &crd["spec"];
            let version = &spec["versions"][0];
            if crd["metadata"]["name"] != format!("{PLURAL}.{GROUP}")
                || spec["group"] != GROUP
                || spec["names"]["kind"] != KIND
                || spec["names"]["plural"] != PLURAL
                || spec["scope"] != "Namespaced"
                || version["name"] != VERSION
                || version["served"] != true
            {
                failures.push(format!(
                    "[audit] the CRD is not pullgate's {GROUP}/{VERSION} {PLURAL}: {crd}"
                ));
            }
            if crd["metadata"]["annotations"]["helm.sh/resource-policy"] != "keep" {
                failures.push(
                    "[audit] the CRD would be deleted on uninstall, with other tools' reports"
                        .into(),
                );
            }
            let result = &version["schema"]["openAPIV3Schema"]["properties"]["results"]["items"]
                ["properties"];
            if strings(&result["result"]["enum"]) != ["pass", "fail", "warn", "error", "skip"] {
                failures.push(format!(
                    "[audit] CRD result enum {}",
                    result["result"]["enum"]
                ));
            }
        }
        other => failures.push(format!("[audit] {} CRDs rendered, want 1", other.len())),
    }
    for case in ["default", "audit-reports-off"] {
        if !crds(case)?.is_empty() {
            failures.push(format!(
                "[{case}] the PolicyReport CRD is installed without installPolicyReportCrd"
            ));
        }
    }

    let alert = |case| -> Result<Option<serde_json::Value>, String> {
        Ok(of_kind(objects(case)?, "PrometheusRule")
            .flat_map(|r| r["spec"]["groups"].as_array().into_iter().flatten())
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .find(|r| r["alert"] == "PullgateAuditFindings")
            .cloned())
    };
    match alert("audit")? {
        Some(a)
            if a["expr"]
                .as_str()
                .is_some_and(|e| e.contains("pullgate_audit_findings"))
                && a["for"].is_string() => {}
        other => failures.push(format!("[audit] alert PullgateAuditFindings: {other:?}")),
    }
    if alert("rules-without-audit")?.is_some() {
        failures.push("[rules-without-audit] audit alert without the audit".into());
    }
    check_all("audit in the chart", failures)
}

#[test]
fn audit_settings_the_chart_refuses() -> TestResult {
    let mut failures = Vec::new();
    for (case, needle) in [
        (
            "audit-without-cluster",
            "audit.enabled needs cluster.enabled",
        ),
        (
            "protect-without-audit",
            "audit.protectInUseSecrets needs audit.enabled",
        ),
    ] {
        let e = refusal(case)?;
        if !e.contains(needle) {
            failures.push(format!("[{case}] refused with {e:?}, want {needle:?}"));
        }
    }
    check_all("audit refusals", failures)
}
