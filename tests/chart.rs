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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use support::helm::{Case, Release, NAMESPACE, RELEASE};

mod support;

type TestResult = Result<(), String>;

const BIN: &str = env!("CARGO_BIN_EXE_pullgate");

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts")
        .join("pullgate")
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn run(args: &[&str]) -> Result<Output, String> {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .map_err(|e| format!("cannot run {BIN} {}: {e}", args.join(" ")))
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A file of its own in the system temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Result<Self, String> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "pullgate-chart-test-{}-{n}-{name}",
            std::process::id()
        ));
        fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
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
    let file = TempFile::new(name, policy)?;
    run(&["validate-config", file.path()])
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
fn rendered_policy(case: &str) -> Result<(serde_json::Value, pullgate::policy::Policy), String> {
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
    let policy = pullgate::policy::Policy::from_yaml(text)
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
    let defaults = pullgate::policy::Policy::default();
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
    // Durations: pullgate accepts and refuses what the schema's `^[1-9][0-9]{0,8}(s|m|h|d)$` does (the
    // chart lint proves the schema side by rendering `0s`).
    for key in ["interval", "timeout"] {
        for (value, ok) in [
            ("1s", true),
            ("6h", true),
            ("0s", false),
            ("5", false),
            ("1w", false),
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

// ---------------------------------------------------------------------------------------------------
// The chart's contract, case by case: webhooks, Deployment, policy, RBAC, pre-delete hook and the
// optional objects, checked against the effective values (the defaults overlaid with the case's).

use serde_json::{json, Value};

/// A CA certificate the existingSecret cases pass (its content is never parsed).
const FAKE_CA: &str = "-----BEGIN CERTIFICATE-----\n\
     MIIBfzCCASWgAwIBAgIUXHZ0ZXN0LWNhLW5vdC1hLXJlYWwtY2VydDAKBggqhkjO\n\
     -----END CERTIFICATE-----\n";

/// The keys a rendered policy file may have (the policy file's own).
const POLICY_KEYS: &[&str] = &[
    "inject",
    "validation",
    "registries",
    "namespaces",
    "maxSecretAge",
    "reconcile",
    "verify",
    "attribution",
];

fn yaml_file(name: &str) -> Result<Value, String> {
    let text = read(&chart_dir().join(name))?;
    let v: Value = serde_saphyr::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    Ok(if v.is_null() { json!({}) } else { v })
}

/// Python's truth: null, false, 0, "" and empty collections are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `over` on `base` as Helm coalesces values: maps merge, anything else replaces, null deletes.
fn overlay(base: &Value, over: &Value) -> Value {
    let (Value::Object(b), Value::Object(o)) = (base, over) else {
        return over.clone();
    };
    let mut out = b.clone();
    for (k, v) in o {
        if v.is_null() {
            out.remove(k);
        } else if v.is_object() && out.get(k).is_some_and(Value::is_object) {
            let merged = overlay(&out[k], v);
            out.insert(k.clone(), merged);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn webhook_object(kind: &str, name: &str, ca: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {
            "name": name, "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}
        },
        "webhooks": [{"name": "pods.example.pullgate.io", "clientConfig": {"caBundle": ca}}]
    })
}

/// A case of [`chart_cases`]: name, values, what the cluster holds, the caBundle to keep.
type ChartCase = (&'static str, Value, BTreeMap<String, Value>, Option<String>);

/// The cases whose whole render is checked: the profiles, every certificate mode, an upgrade that
/// must keep the caBundle of the webhook configurations in the cluster, and every option on.
fn chart_cases() -> Result<Vec<ChartCase>, String> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .encode("-----BEGIN CERTIFICATE-----\nkept\n-----END CERTIFICATE-----\n");
    let existing = BTreeMap::from([
        (
            format!("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{RELEASE}-mutating"),
            webhook_object("MutatingWebhookConfiguration", &format!("{RELEASE}-mutating"), &ca),
        ),
        (
            format!("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{RELEASE}-validating"),
            webhook_object("ValidatingWebhookConfiguration", &format!("{RELEASE}-validating"), &ca),
        ),
    ]);
    let none = BTreeMap::new;
    Ok(vec![
        ("chart-default", json!({}), none(), None),
        ("staging", yaml_file("values-staging.yaml")?, none(), None),
        ("prod", yaml_file("values-prod.yaml")?, none(), None),
        ("selfsigned-upgrade", json!({}), existing, Some(ca)),
        (
            "certmanager",
            json!({"certificates": {"mode": "certManager"}}),
            none(),
            None,
        ),
        (
            "certmanager-issuer",
            json!({"certificates": {"mode": "certManager", "certManager": {
                "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}),
            none(),
            None,
        ),
        (
            "existingsecret-validate-only",
            json!({
                "certificates": {"mode": "existingSecret", "existingSecret": {"name": "pullgate-tls", "caBundle": FAKE_CA}},
                "cluster": {"enabled": false}, "policy": {"inject": false, "validation": "off"},
                "webhooks": {"mutating": {"enabled": false}}, "hooks": {"preDelete": {"enabled": false}},
                "podDisruptionBudget": {"enabled": false}, "zoneSpread": false, "podAntiAffinity": "none"
            }),
            none(),
            None,
        ),
        (
            "everything",
            json!({
                "replicaCount": 3, "priorityClassName": "system-cluster-critical",
                "server": {"bindAddress": "::"}, "reconciler": {"enabled": true},
                "cluster": {"watchNamespaces": ["team-a", "team-b"]},
                "policy": {"maxSecretAge": "30d", "registries": {"private": ["*.corp.example", "ghcr.io/acme"],
                                                                 "public": ["registry.k8s.io"]},
                           "namespaces": {"exclude": ["kube-system", "kube-node-lease", "monitoring"]}},
                "webhooks": {"validating": {"secrets": true, "failurePolicy": "Fail"},
                             "namespaceSelector": {"excludeNamespaces": ["sandbox"],
                                                   "matchExpressions": [{"key": "team", "operator": "Exists"}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "DoNotSchedule"}],
                "podDisruptionBudget": {"minAvailable": 2},
                "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
                            "prometheusRule": {"enabled": true, "additionalRuleLabels": {"team": "platform"}},
                            "dashboard": {"enabled": true, "namespace": "monitoring"}},
                "networkPolicy": {"enabled": true, "apiServer": {"cidrs": ["10.0.0.0/24"]},
                                  "metrics": {"peers": [{"namespaceSelector": {"matchLabels": {
                                      "kubernetes.io/metadata.name": "monitoring"}}}]}},
                "extraEnv": [{"name": "EXTRA", "value": "1"}]
            }),
            none(),
            None,
        ),
        (
            "verify-attribution",
            render_cases()["full"].clone(),
            none(),
            None,
        ),
        (
            "verify-attribution-watchnamespaces",
            json!({
                "cluster": {"watchNamespaces": ["team-a", "team-b"]}, "reconciler": {"enabled": true},
                "policy": {"verify": {"enabled": true}, "attribution": {"enabled": true}}
            }),
            none(),
            None,
        ),
    ])
}

/// Values the chart must refuse (by its schema or its _validate.tpl), and a fragment the message
/// must contain: the value's name.
fn refusal_cases() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "schema: validation enum",
            json!({"policy": {"validation": "block"}}),
            "validation",
        ),
        (
            "schema: bare off is a boolean",
            json!({"policy": {"validation": false}}),
            "validation",
        ),
        (
            "schema: unknown key",
            json!({"polcy": {"inject": true}}),
            "polcy",
        ),
        (
            "schema: unknown nested key",
            json!({"webhooks": {"timeoutSecond": 5}}),
            "timeoutSecond",
        ),
        (
            "schema: timeout range",
            json!({"webhooks": {"timeoutSeconds": 31}}),
            "timeoutSeconds",
        ),
        (
            "schema: failurePolicy enum",
            json!({"webhooks": {"failurePolicy": "Deny"}}),
            "failurePolicy",
        ),
        (
            "schema: certificates.mode enum",
            json!({"certificates": {"mode": "vault"}}),
            "mode",
        ),
        (
            "validate: existingSecret needs caBundle",
            json!({"certificates": {"mode": "existingSecret", "existingSecret": {"name": "x"}}}),
            "caBundle",
        ),
        (
            "validate: caBundle outside existingSecret",
            json!({"certificates": {"existingSecret": {"caBundle": FAKE_CA}}}),
            "existingSecret",
        ),
        (
            "validate: networkPolicy without API server",
            json!({"networkPolicy": {"enabled": true}}),
            "networkPolicy.apiServer",
        ),
        (
            "validate: request timeout >= webhook timeout",
            json!({"server": {"requestTimeoutSeconds": 5}}),
            "requestTimeoutSeconds",
        ),
        (
            "validate: deny without validating webhook",
            json!({"policy": {"validation": "deny", "inject": true}, "webhooks": {"validating": {"enabled": false}}}),
            "policy.validation=deny",
        ),
        (
            "validate: inject without mutating webhook",
            json!({"webhooks": {"mutating": {"enabled": false}}}),
            "policy.inject",
        ),
        (
            "validate: PDB blocks drains",
            json!({"podDisruptionBudget": {"minAvailable": 2}}),
            "minAvailable",
        ),
        (
            "validate: reconciler without cluster mode",
            json!({"reconciler": {"enabled": true}, "cluster": {"enabled": false}}),
            "reconciler.enabled",
        ),
        (
            "validate: grace periods",
            json!({"terminationGracePeriodSeconds": 20}),
            "shutdownGracePeriodSeconds",
        ),
        (
            "validate: verify without cluster mode",
            json!({"policy": {"verify": {"enabled": true}}, "cluster": {"enabled": false}}),
            "policy.verify.enabled",
        ),
        (
            "validate: attribution without cluster mode",
            json!({"policy": {"attribution": {"enabled": true}}, "cluster": {"enabled": false}}),
            "policy.attribution.enabled",
        ),
        (
            "validate: restartStuckPods without attribution",
            json!({"policy": {"attribution": {"restartStuckPods": true}}}),
            "restartStuckPods",
        ),
        (
            "validate: CA bundles without verify",
            json!({"verifyCaBundles": [{"configMap": "corp-ca"}]}),
            "verifyCaBundles",
        ),
        (
            "validate: caFile in /etc/pullgate/ca without bundles",
            json!({"policy": {"verify": {"enabled": true, "registries": [{"pattern": "r.example", "caFile": "/etc/pullgate/ca/r.pem"}]}}}),
            "verifyCaBundles",
        ),
        (
            "schema: maxRestartPercent range",
            json!({"policy": {"attribution": {"maxRestartPercent": 101}}}),
            "maxRestartPercent",
        ),
        (
            "schema: zero interval",
            json!({"policy": {"verify": {"interval": "0s"}}}),
            "interval",
        ),
        (
            "schema: CA bundle names one source",
            json!({"verifyCaBundles": [{"configMap": "a", "secret": "b"}]}),
            "verifyCaBundles",
        ),
    ]
}

/// Failed checks, each named.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: String) -> bool {
        if !ok {
            self.0.push(what);
        }
        ok
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn check_webhooks(r: &mut Checks, case: &str, docs: &[Value], v: &Value, kept_ca: Option<&str>) {
    use base64::Engine;
    let no_service = json!({"metadata": {"name": "?"}, "spec": {"ports": []}});
    let svc = find(docs, "Service")
        .into_iter()
        .next()
        .unwrap_or(&no_service);
    let svc_name = &svc["metadata"]["name"];
    let https = items(&svc["spec"]["ports"])
        .find(|p| p["name"] == "https")
        .cloned()
        .unwrap_or_default();
    let port = &v["service"]["port"];
    r.check(
        https["port"] == *port && https["targetPort"] == "https",
        format!("[{case}] Service port https {port} -> targetPort https"),
    );
    let mode = v["certificates"]["mode"].as_str().unwrap_or_default();
    for (kind, path, side) in [
        ("MutatingWebhookConfiguration", "/mutate", "mutating"),
        ("ValidatingWebhookConfiguration", "/validate", "validating"),
    ] {
        let enabled = v["webhooks"][side]["enabled"] == true;
        let configs = find(docs, kind);
        if !r.check(
            configs.len() == usize::from(enabled),
            format!("[{case}] {kind} rendered iff enabled"),
        ) || !enabled
        {
            continue;
        }
        let cfg = configs[0];
        let failure = if truthy(&v["webhooks"][side]["failurePolicy"]) {
            &v["webhooks"][side]["failurePolicy"]
        } else {
            &v["webhooks"]["failurePolicy"]
        };
        let webhooks: Vec<&Value> = items(&cfg["webhooks"]).collect();
        let names: Vec<&str> = webhooks.iter().filter_map(|w| w["name"].as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        r.check(
            names.len() == webhooks.len()
                && unique.len() == names.len()
                && names.iter().all(|n| n.ends_with(".pullgate.io")),
            format!("[{case}] {kind} webhook names unique and fully qualified: {names:?}"),
        );
        let inject = &cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
        if mode == "certManager" {
            r.check(
                *inject == format!("{NAMESPACE}/{RELEASE}-serving"),
                format!("[{case}] {kind} has cert-manager.io/inject-ca-from"),
            );
        } else {
            r.check(
                inject.is_null(),
                format!("[{case}] {kind} has no inject-ca-from"),
            );
        }
        for w in &webhooks {
            let name = w["name"].as_str().unwrap_or_default();
            let at = format!("[{case}] {kind}/{name}");
            let cc = &w["clientConfig"];
            r.check(
                cc["service"]
                    == json!({"name": svc_name, "namespace": NAMESPACE, "path": path, "port": port}),
                format!("{at} calls service {svc_name}:{port}{path}"),
            );
            r.check(
                w["admissionReviewVersions"] == json!(["v1", "v1beta1"]),
                format!("{at} admissionReviewVersions [v1, v1beta1]"),
            );
            r.check(w["sideEffects"] == "None", format!("{at} sideEffects None"));
            r.check(
                w["matchPolicy"] == "Equivalent",
                format!("{at} matchPolicy Equivalent"),
            );
            r.check(
                w["timeoutSeconds"] == v["webhooks"]["timeoutSeconds"],
                format!("{at} timeoutSeconds"),
            );
            r.check(
                w["failurePolicy"] == *failure,
                format!("{at} failurePolicy {failure}"),
            );
            if side == "mutating" {
                r.check(
                    w["reinvocationPolicy"] == "IfNeeded",
                    format!("{at} reinvocationPolicy IfNeeded"),
                );
            } else {
                r.check(
                    w.get("reinvocationPolicy").is_none(),
                    format!("{at} has no reinvocationPolicy"),
                );
            }
            let ca = &cc["caBundle"];
            match mode {
                "existingSecret" => {
                    let decoded = ca
                        .as_str()
                        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                        .map(|b| String::from_utf8_lossy(&b).trim().to_owned());
                    let want = v["certificates"]["existingSecret"]["caBundle"]
                        .as_str()
                        .map(str::trim);
                    r.check(
                        decoded.as_deref() == want && want.is_some(),
                        format!("{at} caBundle is the existingSecret CA"),
                    );
                }
                "selfSigned" => {
                    r.check(
                        ca.as_str() == kept_ca,
                        format!(
                            "{at} caBundle {} (selfSigned)",
                            kept_ca.map_or("left empty", |_| "kept from the cluster")
                        ),
                    );
                }
                _ => {
                    r.check(
                        ca.is_null(),
                        format!("{at} no caBundle (cainjector fills it)"),
                    );
                }
            }
            let not_in: Vec<&Value> = items(&w["namespaceSelector"]["matchExpressions"])
                .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
                .collect();
            let mut must: BTreeSet<&str> =
                BTreeSet::from(["kube-system", "kube-node-lease", NAMESPACE]);
            must.extend(strings(&v["policy"]["namespaces"]["exclude"]));
            must.extend(strings(
                &v["webhooks"]["namespaceSelector"]["excludeNamespaces"],
            ));
            let excluded: BTreeSet<&str> = not_in
                .first()
                .map(|e| strings(&e["values"]).into_iter().collect())
                .unwrap_or_default();
            r.check(
                not_in.len() == 1 && must.is_subset(&excluded),
                format!("{at} namespaceSelector excludes {must:?}"),
            );
            r.check(
                items(&w["objectSelector"]["matchExpressions"]).any(|e| {
                    *e == json!({"key": "pullgate.io/ignore", "operator": "NotIn", "values": ["true"]})
                }),
                format!("{at} objectSelector skips pullgate.io/ignore=true"),
            );
            for rule in items(&w["rules"]) {
                r.check(
                    rule["scope"] == "Namespaced"
                        && !strings(&rule["resources"]).contains(&"*")
                        && !strings(&rule["apiGroups"]).contains(&"*"),
                    format!("{at} rules are namespaced and name their resources"),
                );
            }
            let ops: BTreeSet<(&str, &str)> = items(&w["rules"])
                .flat_map(|rule| {
                    let ops = strings(&rule["operations"]);
                    strings(&rule["resources"])
                        .into_iter()
                        .flat_map(move |res| ops.clone().into_iter().map(move |op| (res, op)))
                })
                .collect();
            let conditions: BTreeMap<&str, &str> = items(&w["matchConditions"])
                .filter_map(|c| Some((c["name"].as_str()?, c["expression"].as_str()?)))
                .collect();
            let which = name.split('.').next().unwrap_or_default();
            if side == "mutating" && which == "pods" {
                r.check(
                    ops == BTreeSet::from([("pods", "CREATE")]),
                    format!("{at} pods CREATE only"),
                );
                r.check(
                    conditions
                        .get("not-a-mirror-pod")
                        .is_some_and(|e| e.contains("kubernetes.io/config.mirror")),
                    format!("{at} skips mirror pods"),
                );
            }
            if side == "validating" && which == "pods" {
                r.check(
                    ops == BTreeSet::from([
                        ("pods", "CREATE"),
                        ("pods", "UPDATE"),
                        ("pods/ephemeralcontainers", "CREATE"),
                        ("pods/ephemeralcontainers", "UPDATE"),
                    ]),
                    format!("{at} pods + ephemeralcontainers CREATE/UPDATE"),
                );
            }
            if which == "serviceaccounts" {
                r.check(
                    ops == BTreeSet::from([
                        ("serviceaccounts", "CREATE"),
                        ("serviceaccounts", "UPDATE"),
                    ]),
                    format!("{at} serviceaccounts CREATE/UPDATE"),
                );
            }
        }
        let by_name: BTreeSet<&str> = names.iter().filter_map(|n| n.split('.').next()).collect();
        let mut want = BTreeSet::from(["pods", "serviceaccounts"]);
        if side == "validating" {
            if v["webhooks"]["validating"]["workloads"] == true {
                want.insert("workloads");
            }
            if v["webhooks"]["validating"]["secrets"] == true {
                want.insert("secrets");
            }
            for w in webhooks.iter().filter(|w| {
                w["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("workloads."))
            }) {
                let resources: BTreeSet<&str> = items(&w["rules"])
                    .flat_map(|x| strings(&x["resources"]))
                    .collect();
                r.check(
                    resources
                        == BTreeSet::from([
                            "deployments",
                            "statefulsets",
                            "daemonsets",
                            "replicasets",
                            "replicationcontrollers",
                            "jobs",
                            "cronjobs",
                        ]),
                    format!("[{case}] workloads webhook covers every workload kind"),
                );
            }
        }
        r.check(
            by_name == want,
            format!("[{case}] {side} webhooks: {want:?}, rendered {by_name:?}"),
        );
    }
}

fn check_deployment(r: &mut Checks, case: &str, docs: &[Value], v: &Value) {
    let deps = find(docs, "Deployment");
    if !r.check(deps.len() == 1, format!("[{case}] one Deployment")) {
        return;
    }
    let dep = deps[0];
    let spec = &dep["spec"]["template"]["spec"];
    r.check(
        dep["spec"]["replicas"] == v["replicaCount"],
        format!("[{case}] replicas {}", v["replicaCount"]),
    );
    let Some(c) = items(&spec["containers"]).find(|c| c["name"] == "pullgate") else {
        r.check(false, format!("[{case}] a container named pullgate"));
        return;
    };
    let args = strings(&c["args"]);
    let with = |prefix: &str| -> Vec<&str> {
        args.iter().filter_map(|a| a.strip_prefix(prefix)).collect()
    };
    r.check(
        args.first() == Some(&"serve"),
        format!("[{case}] container runs `pullgate serve`"),
    );
    let ports: BTreeMap<&str, &Value> = items(&c["ports"])
        .filter_map(|p| Some((p["name"].as_str()?, &p["containerPort"])))
        .collect();
    let (https, metrics) = (&v["server"]["port"], &v["server"]["metricsPort"]);
    r.check(
        ports == BTreeMap::from([("https", https), ("metrics", metrics)]),
        format!("[{case}] container ports https {https}, metrics {metrics}"),
    );
    let listen = with("--listen=");
    r.check(
        listen.len() == 1 && listen[0].ends_with(&format!(":{https}")),
        format!("[{case}] --listen on the https port"),
    );
    let metrics_listen = with("--metrics-listen=");
    r.check(
        metrics_listen.len() == 1 && metrics_listen[0].ends_with(&format!(":{metrics}")),
        format!("[{case}] --metrics-listen on the metrics port"),
    );
    r.check(
        args.contains(&"--config=/etc/pullgate/policy.yaml"),
        format!("[{case}] --config=/etc/pullgate/policy.yaml"),
    );
    let mounts: BTreeMap<&str, &Value> = items(&c["volumeMounts"])
        .filter_map(|m| Some((m["mountPath"].as_str()?, m)))
        .collect();
    r.check(
        mounts.contains_key("/etc/pullgate/policy.yaml"),
        format!("[{case}] policy mounted at /etc/pullgate/policy.yaml"),
    );
    let bundles = &v["verifyCaBundles"];
    let ca_mount = mounts.get("/etc/pullgate/ca");
    r.check(
        ca_mount.is_some() == truthy(bundles),
        format!("[{case}] /etc/pullgate/ca mounted iff verifyCaBundles"),
    );
    if let Some(m) = ca_mount {
        let volume = items(&spec["volumes"]).find(|x| x["name"] == m["name"]);
        let sources = volume
            .map(|x| x["projected"]["sources"].clone())
            .unwrap_or_default();
        let want: Vec<Value> = items(bundles)
            .map(|b| {
                let (source, name) = if b.get("configMap").is_some() {
                    ("configMap", &b["configMap"])
                } else {
                    ("secret", &b["secret"])
                };
                let mut s = json!({"name": name});
                if truthy(&b["items"]) {
                    s["items"] = b["items"].clone();
                }
                json!({ source: s })
            })
            .collect();
        r.check(
            m["readOnly"] == true && sources == Value::Array(want),
            format!("[{case}] CA bundles mounted read-only as one projected volume of the named sources"),
        );
    }
    let mode = v["certificates"]["mode"].as_str().unwrap_or_default();
    if mode == "selfSigned" {
        r.check(
            !with("--self-signed-secret=").is_empty() && with("--tls-cert").is_empty(),
            format!("[{case}] selfSigned: --self-signed-secret and no --tls-cert"),
        );
        let mut want = Vec::new();
        if v["webhooks"]["mutating"]["enabled"] == true {
            want.push(format!("{RELEASE}-mutating"));
        }
        if v["webhooks"]["validating"]["enabled"] == true {
            want.push(format!("{RELEASE}-validating"));
        }
        r.check(
            with("--webhook-configuration=") == want,
            format!("[{case}] --webhook-configuration names {want:?}"),
        );
    } else {
        r.check(
            args.contains(&"--tls-cert=/etc/pullgate/tls/tls.crt")
                && args.contains(&"--tls-key=/etc/pullgate/tls/tls.key")
                && mounts.contains_key("/etc/pullgate/tls"),
            format!("[{case}] {mode}: TLS Secret mounted and passed"),
        );
    }
    let cluster = v["cluster"]["enabled"] == true;
    r.check(
        args.contains(&"--cluster") == cluster,
        format!("[{case}] --cluster iff cluster.enabled"),
    );
    let watched = if cluster {
        strings(&v["cluster"]["watchNamespaces"])
    } else {
        Vec::new()
    };
    r.check(
        with("--watch-namespace=") == watched,
        format!("[{case}] --watch-namespace per watched namespace"),
    );
    let needs_api = cluster || mode == "selfSigned" || v["reconciler"]["enabled"] == true;
    r.check(
        spec["automountServiceAccountToken"] == needs_api,
        format!("[{case}] automountServiceAccountToken {needs_api}"),
    );
    let env: BTreeMap<&str, &Value> = items(&c["env"])
        .filter_map(|e| Some((e["name"].as_str()?, e)))
        .collect();
    r.check(
        env.get("POD_NAMESPACE")
            .is_some_and(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        format!("[{case}] POD_NAMESPACE from the downward API"),
    );
    r.check(
        env.get("RUST_LOG")
            .is_some_and(|e| e["value"] == v["logLevel"]),
        format!("[{case}] RUST_LOG"),
    );
    let sc = &c["securityContext"];
    r.check(
        sc["runAsNonRoot"] == true
            && sc["runAsUser"] == 65532
            && sc["readOnlyRootFilesystem"] == true
            && sc["allowPrivilegeEscalation"] == false
            && sc["capabilities"]["drop"] == json!(["ALL"])
            && sc["seccompProfile"]["type"] == "RuntimeDefault",
        format!("[{case}] container securityContext hardened"),
    );
    let psc = &spec["securityContext"];
    r.check(
        psc["runAsNonRoot"] == true && psc["runAsUser"] == 65532,
        format!("[{case}] pod securityContext non-root 65532"),
    );
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let g = &c[probe]["httpGet"];
        r.check(
            g["path"] == path && g["scheme"] == "HTTPS" && g["port"] == "https",
            format!("[{case}] {probe} GET {path} over HTTPS"),
        );
    }
    let checksum = dep["spec"]["template"]["metadata"]["annotations"]["checksum/policy"]
        .as_str()
        .unwrap_or_default();
    r.check(
        checksum.len() == 64
            && checksum
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        format!("[{case}] checksum/policy annotation"),
    );
    if truthy(&v["priorityClassName"]) {
        r.check(
            spec["priorityClassName"] == v["priorityClassName"],
            format!("[{case}] priorityClassName"),
        );
    }
    if !truthy(&v["affinity"]) && v["podAntiAffinity"] != "none" {
        r.check(
            spec["affinity"].get("podAntiAffinity").is_some(),
            format!("[{case}] pod anti-affinity"),
        );
    }
    if truthy(&v["zoneSpread"]) {
        r.check(
            items(&spec["topologySpreadConstraints"])
                .any(|t| t["topologyKey"] == "topology.kubernetes.io/zone"),
            format!("[{case}] zone topology spread"),
        );
    }
    r.check(
        c["resources"] == v["resources"],
        format!("[{case}] resources from values"),
    );
}

fn check_policy(r: &mut Checks, case: &str, docs: &[Value], v: &Value) {
    let cms: Vec<&Value> = find(docs, "ConfigMap")
        .into_iter()
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-policy"))
        })
        .collect();
    if !r.check(cms.len() == 1, format!("[{case}] one policy ConfigMap")) {
        return;
    }
    let text = cms[0]["data"]["policy.yaml"].as_str().unwrap_or_default();
    let policy: Value = match serde_saphyr::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            r.check(false, format!("[{case}] policy.yaml parses: {e}"));
            return;
        }
    };
    let keys: Vec<&str> = policy
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    r.check(
        policy.is_object() && keys.iter().all(|k| POLICY_KEYS.contains(k)),
        format!("[{case}] policy keys {keys:?} within {POLICY_KEYS:?}"),
    );
    let mut want = v["policy"].clone();
    if !truthy(&want["maxSecretAge"]) {
        want.as_object_mut().map(|o| o.remove("maxSecretAge"));
    }
    if !truthy(&want["verify"]["probeRepository"]) {
        want["verify"]
            .as_object_mut()
            .map(|o| o.remove("probeRepository"));
    }
    if v["reconciler"]["enabled"] == true {
        let selector = if v["reconciler"]["selector"].is_null() {
            json!({})
        } else {
            v["reconciler"]["selector"].clone()
        };
        want["reconcile"] = json!({"serviceAccounts": true, "selector": selector});
    }
    r.check(
        policy == want,
        format!("[{case}] rendered policy equals policy values:\n{policy}\n!=\n{want}"),
    );
    r.check(
        policy["validation"].is_string(),
        format!("[{case}] validation is a string (quoted off)"),
    );
}

fn check_rbac(r: &mut Checks, case: &str, docs: &[Value], v: &Value) {
    let mode = v["certificates"]["mode"].as_str().unwrap_or_default();
    let mut rules: Vec<(&str, &str, &Value)> = Vec::new();
    for kind in ["ClusterRole", "Role"] {
        for d in find(docs, kind) {
            let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
            rules.extend(items(&d["rules"]).map(|rule| (kind, ns, rule)));
        }
    }
    for (kind, ns, rule) in &rules {
        let (verbs, resources) = (strings(&rule["verbs"]), strings(&rule["resources"]));
        r.check(
            ["verbs", "resources", "apiGroups"]
                .iter()
                .all(|k| !strings(&rule[*k]).contains(&"*")),
            format!("[{case}] {kind} rule {resources:?} has no wildcard"),
        );
        let named = truthy(&rule["resourceNames"]);
        if resources.contains(&"secrets") {
            if verbs
                .iter()
                .any(|v| ["update", "patch", "delete"].contains(v))
            {
                r.check(
                    named,
                    format!("[{case}] secret {verbs:?} limited by resourceNames"),
                );
            }
            if verbs.contains(&"get") && !named {
                // Verification reads the credentials it probes; list already returns the same data.
                r.check(
                    v["policy"]["verify"]["enabled"] == true && !verbs.contains(&"update"),
                    format!("[{case}] get on any secret only for policy.verify"),
                );
            }
            if verbs.contains(&"create") {
                r.check(
                    *kind == "Role" && *ns == NAMESPACE,
                    format!("[{case}] secret create only in the release namespace"),
                );
            }
        }
        if resources
            .iter()
            .any(|x| x.ends_with("webhookconfigurations"))
        {
            r.check(
                named && verbs.iter().all(|v| ["get", "patch"].contains(v)),
                format!("[{case}] webhook configuration rules: get/patch by name"),
            );
        }
    }
    let granted = |resource: &str, verb: &str| {
        rules.iter().any(|(_, _, rule)| {
            strings(&rule["resources"]).contains(&resource)
                && strings(&rule["verbs"]).contains(&verb)
        })
    };
    let cluster = v["cluster"]["enabled"] == true;
    let reconciler = v["reconciler"]["enabled"] == true;
    let verify = v["policy"]["verify"]["enabled"] == true;
    let attribution = v["policy"]["attribution"]["enabled"] == true;
    for res in ["secrets", "serviceaccounts", "namespaces"] {
        r.check(
            granted(res, "watch") == cluster && granted(res, "list") == cluster,
            format!("[{case}] list/watch {res} iff cluster mode"),
        );
    }
    r.check(
        granted("serviceaccounts", "patch") == reconciler,
        format!("[{case}] patch serviceaccounts iff reconciler"),
    );
    let elects = reconciler || attribution;
    r.check(
        granted("leases", "update") == elects && granted("leases", "create") == elects,
        format!("[{case}] leases iff reconciler or attribution"),
    );
    r.check(
        rules
            .iter()
            .filter(|(_, _, rule)| strings(&rule["resources"]).contains(&"leases"))
            .all(|(kind, ns, _)| *kind == "Role" && *ns == NAMESPACE),
        format!("[{case}] leases only in the release namespace"),
    );
    let writes_events = reconciler || verify || attribution;
    r.check(
        granted("events", "create") == writes_events && granted("events", "patch") == writes_events,
        format!("[{case}] create/patch events iff reconciler, verify or attribution"),
    );
    r.check(
        rules.iter().any(|(_, _, rule)| {
            strings(&rule["resources"]).contains(&"secrets")
                && strings(&rule["verbs"]).contains(&"get")
                && !truthy(&rule["resourceNames"])
        }) == verify,
        format!("[{case}] get secrets iff policy.verify"),
    );
    r.check(
        granted("events", "watch") == attribution && granted("events", "list") == attribution,
        format!("[{case}] list/watch events iff policy.attribution"),
    );
    r.check(
        granted("pods", "get") == attribution && granted("pods", "list") == attribution,
        format!("[{case}] get/list pods iff policy.attribution"),
    );
    r.check(
        granted("pods", "delete") == (v["policy"]["attribution"]["restartStuckPods"] == true),
        format!("[{case}] delete pods iff restartStuckPods"),
    );
    r.check(
        !granted("pods", "watch") && !granted("pods", "update") && !granted("pods", "patch"),
        format!("[{case}] pods never watched, updated or patched"),
    );
    r.check(
        rules
            .iter()
            .filter(|(_, _, rule)| strings(&rule["resources"]).contains(&"events"))
            .all(|(_, _, rule)| rule["apiGroups"] == json!([""])),
        format!("[{case}] events rules are core/v1 only"),
    );
    r.check(
        granted("mutatingwebhookconfigurations", "patch") == (mode == "selfSigned"),
        format!("[{case}] patch webhook configurations iff selfSigned"),
    );
    r.check(
        granted("secrets", "create") == (mode == "selfSigned"),
        format!("[{case}] create secrets iff selfSigned"),
    );
    let watched = strings(&v["cluster"]["watchNamespaces"]);
    if cluster && !watched.is_empty() {
        let roles: BTreeSet<&str> = find(docs, "Role")
            .into_iter()
            .filter(|d| {
                items(&d["rules"]).any(|x| {
                    strings(&x["resources"]).contains(&"secrets")
                        && strings(&x["verbs"]).contains(&"watch")
                })
            })
            .filter_map(|d| d["metadata"]["namespace"].as_str())
            .collect();
        r.check(
            roles == watched.iter().copied().collect(),
            format!("[{case}] secret watch Roles only in watched namespaces"),
        );
        let cluster_wide = |names: &[&str]| {
            rules.iter().any(|(kind, _, rule)| {
                *kind == "ClusterRole"
                    && strings(&rule["resources"])
                        .iter()
                        .any(|x| names.contains(x))
            })
        };
        r.check(
            !cluster_wide(&["secrets"]),
            format!("[{case}] no cluster-wide secret access with watchNamespaces"),
        );
        r.check(
            !cluster_wide(&["events", "pods", "serviceaccounts"]),
            format!(
                "[{case}] no cluster-wide event, pod or ServiceAccount access with watchNamespaces"
            ),
        );
    }
    let sa = find(docs, "Deployment")
        .first()
        .map(|d| d["spec"]["template"]["spec"]["serviceAccountName"].clone())
        .unwrap_or_else(|| json!("?"));
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in find(docs, kind) {
            r.check(
                b["subjects"]
                    == json!([{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]),
                format!(
                    "[{case}] {kind} {} binds only the pullgate ServiceAccount",
                    b["metadata"]["name"]
                ),
            );
        }
    }
}

fn check_hooks(r: &mut Checks, case: &str, docs: &[Value], v: &Value) {
    let jobs = find(docs, "Job");
    let hook = &v["hooks"]["preDelete"];
    if hook["enabled"] != true {
        r.check(
            jobs.is_empty(),
            format!("[{case}] no pre-delete Job when disabled"),
        );
        return;
    }
    if !r.check(jobs.len() == 1, format!("[{case}] one pre-delete Job")) {
        return;
    }
    let job = jobs[0];
    let ann = &job["metadata"]["annotations"];
    r.check(
        ann["helm.sh/hook"] == "pre-delete"
            && ann["helm.sh/hook-delete-policy"]
                .as_str()
                .is_some_and(|p| p.contains("hook-succeeded")),
        format!("[{case}] Job is a pre-delete hook, deleted on success"),
    );
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let image = &v["image"];
    let prefix = format!(
        "{}{}",
        image["repository"].as_str().unwrap_or_default(),
        if truthy(&image["digest"]) { "@" } else { ":" }
    );
    r.check(
        c["image"].as_str().is_some_and(|i| i.starts_with(&prefix)),
        format!("[{case}] hook runs the pullgate image (no separate kubectl image to pull)"),
    );
    r.check(
        c["imagePullPolicy"] == image["pullPolicy"],
        format!("[{case}] hook pulls as the Deployment does"),
    );
    let words: Vec<&str> = strings(&c["command"])
        .into_iter()
        .chain(strings(&c["args"]))
        .collect();
    r.check(
        words.first() == Some(&"uninstall-webhooks")
            && words.contains(&format!("--mutating={RELEASE}-mutating").as_str())
            && words.contains(&format!("--validating={RELEASE}-validating").as_str()),
        format!("[{case}] hook runs `pullgate uninstall-webhooks` on both webhook configurations"),
    );
    let deadline = &job["spec"]["activeDeadlineSeconds"];
    r.check(
        *deadline == hook["activeDeadlineSeconds"] && deadline.as_u64().is_some_and(|d| d <= 300),
        format!("[{case}] hook Job has a short activeDeadlineSeconds"),
    );
    let sa = &pod["serviceAccountName"];
    let roles = find(docs, "ClusterRole");
    r.check(
        roles.len() == 1
            && items(&roles[0]["rules"]).all(|x| {
                let mut names = strings(&x["resourceNames"]);
                names.sort_unstable();
                x["verbs"] == json!(["delete"])
                    && names
                        == [
                            format!("{RELEASE}-mutating"),
                            format!("{RELEASE}-validating"),
                        ]
            }),
        format!("[{case}] hook ClusterRole: delete on exactly the two configuration names"),
    );
    r.check(
        find(docs, "ServiceAccount")
            .iter()
            .any(|d| d["metadata"]["name"] == *sa)
            && find(docs, "ClusterRoleBinding")
                .iter()
                .any(|b| b["subjects"][0]["name"] == *sa),
        format!("[{case}] hook has its own ServiceAccount and binding"),
    );
    for d in docs {
        r.check(
            d["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete",
            format!("[{case}] hook object {} is a pre-delete hook", d["kind"]),
        );
    }
}

fn check_extras(r: &mut Checks, case: &str, docs: &[Value], v: &Value) -> Result<(), String> {
    let mode = v["certificates"]["mode"].as_str().unwrap_or_default();
    let deps = find(docs, "Deployment");
    let dep = deps.first().copied().unwrap_or(&Value::Null);
    let labels = &dep["spec"]["selector"]["matchLabels"];
    let pdb = find(docs, "PodDisruptionBudget");
    r.check(
        pdb.len() == usize::from(v["podDisruptionBudget"]["enabled"] == true),
        format!("[{case}] PodDisruptionBudget iff enabled"),
    );
    if let Some(p) = pdb.first() {
        r.check(
            p["spec"]["selector"]["matchLabels"] == *labels,
            format!("[{case}] PDB selects the pullgate pods"),
        );
    }
    let certs = find(docs, "Certificate");
    if mode == "certManager" {
        let serving: Vec<&&Value> = certs
            .iter()
            .filter(|c| c["metadata"]["name"] == format!("{RELEASE}-serving"))
            .collect();
        r.check(serving.len() == 1, format!("[{case}] serving Certificate"));
        if let Some(s) = serving.first() {
            let vol =
                items(&dep["spec"]["template"]["spec"]["volumes"]).find(|x| x["name"] == "tls");
            r.check(
                vol.is_some_and(|x| x["secret"]["secretName"] == s["spec"]["secretName"]),
                format!("[{case}] Deployment mounts the serving Certificate's Secret"),
            );
            r.check(
                strings(&s["spec"]["dnsNames"])
                    .contains(&format!("{RELEASE}.{NAMESPACE}.svc").as_str()),
                format!("[{case}] serving Certificate names the Service"),
            );
        }
        let own_ca = !truthy(&v["certificates"]["certManager"]["issuerRef"]["name"]);
        r.check(
            find(docs, "Issuer").len() == if own_ca { 2 } else { 0 }
                && certs.len() == if own_ca { 2 } else { 1 },
            format!(
                "[{case}] cert-manager CA chain {}",
                if own_ca {
                    "created"
                } else {
                    "taken from issuerRef"
                }
            ),
        );
    } else {
        r.check(
            certs.is_empty() && find(docs, "Issuer").is_empty(),
            format!("[{case}] no cert-manager objects outside certManager mode"),
        );
    }
    let np = find(docs, "NetworkPolicy");
    r.check(
        np.len() == usize::from(v["networkPolicy"]["enabled"] == true),
        format!("[{case}] NetworkPolicy iff enabled"),
    );
    if let Some(n) = np.first() {
        let ingress: Vec<&Value> = items(&n["spec"]["ingress"]).collect();
        let ports: Vec<&Value> = ingress
            .iter()
            .flat_map(|rule| items(&rule["ports"]))
            .map(|p| &p["port"])
            .collect();
        r.check(
            ports.first().is_some_and(|p| **p == "https")
                && ingress.iter().all(|x| truthy(&x["from"])),
            format!("[{case}] NetworkPolicy: listed peers only"),
        );
        r.check(
            ports.iter().any(|p| **p == "metrics")
                == truthy(&v["networkPolicy"]["metrics"]["peers"]),
            format!("[{case}] NetworkPolicy metrics rule"),
        );
    }
    let sm = find(docs, "ServiceMonitor");
    r.check(
        sm.len() == usize::from(v["metrics"]["serviceMonitor"]["enabled"] == true),
        format!("[{case}] ServiceMonitor iff enabled"),
    );
    if let Some(s) = sm.first() {
        let ep = &s["spec"]["endpoints"][0];
        r.check(
            ep["port"] == "metrics" && ep["path"] == "/metrics",
            format!("[{case}] ServiceMonitor scrapes metrics:/metrics"),
        );
    }
    let listed = metrics_in(&read(&chart_dir().join("metrics.txt"))?);
    let mut used = BTreeSet::new();
    let pr = find(docs, "PrometheusRule");
    r.check(
        pr.len() == usize::from(v["metrics"]["prometheusRule"]["enabled"] == true),
        format!("[{case}] PrometheusRule iff enabled"),
    );
    if let Some(p) = pr.first() {
        let alerts: BTreeMap<&str, &Value> = items(&p["spec"]["groups"])
            .flat_map(|g| items(&g["rules"]))
            .filter_map(|rule| Some((rule["alert"].as_str()?, rule)))
            .collect();
        for need in [
            "PullgateWebhookErrors",
            "PullgateWebhookSlow",
            "PullgateCertificateExpiringSoon",
            "PullgateStoreStale",
        ] {
            r.check(alerts.contains_key(need), format!("[{case}] alert {need}"));
        }
        for (name, rule) in &alerts {
            let expr = rule["expr"].as_str().unwrap_or("{{");
            r.check(
                !expr.contains("{{")
                    && ["info", "warning", "critical"]
                        .iter()
                        .any(|s| rule["labels"]["severity"] == *s),
                format!("[{case}] alert {name} is rendered and has a severity"),
            );
            used.extend(metrics_in(expr));
        }
    }
    let dash: Vec<&Value> = find(docs, "ConfigMap")
        .into_iter()
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-dashboard"))
        })
        .collect();
    r.check(
        dash.len() == usize::from(v["metrics"]["dashboard"]["enabled"] == true),
        format!("[{case}] dashboard ConfigMap iff enabled"),
    );
    if let Some(d) = dash.first() {
        r.check(
            d["metadata"]["labels"]["grafana_dashboard"] == "1",
            format!("[{case}] dashboard label grafana_dashboard: \"1\""),
        );
        let text = d["data"]["pullgate.json"].as_str().unwrap_or_default();
        let board: Result<Value, _> = serde_json::from_str(text);
        r.check(
            board.as_ref().is_ok_and(|b| truthy(&b["panels"])),
            format!("[{case}] dashboard JSON parses and has panels"),
        );
        used.extend(metrics_in(text));
    }
    if !pr.is_empty() && !dash.is_empty() {
        r.check(
            used == listed,
            format!(
                "[{case}] dashboard + alerts use exactly metrics.txt (extra {:?}, unused {:?})",
                used.difference(&listed).collect::<Vec<_>>(),
                listed.difference(&used).collect::<Vec<_>>()
            ),
        );
    }
    for d in docs {
        let ns = &d["metadata"]["namespace"];
        r.check(
            ns.is_null()
                || *ns == NAMESPACE
                || ["Role", "RoleBinding", "ConfigMap"]
                    .iter()
                    .any(|k| d["kind"] == *k),
            format!(
                "[{case}] {}/{} lives in the release namespace",
                d["kind"], d["metadata"]["name"]
            ),
        );
    }
    Ok(())
}

/// Every case of [`chart_cases`] renders, and what it renders is what its values ask for.
#[test]
fn rendered_chart_matches_its_values() -> TestResult {
    let defaults = yaml_file("values.yaml")?;
    let mut r = Checks::default();
    for (case, values, _, kept_ca) in chart_cases()? {
        let release = match rendered(case)? {
            Ok(release) => release,
            Err(e) => {
                r.check(false, format!("[{case}] renders: {e}"));
                continue;
            }
        };
        let docs = &release.objects;
        r.check(
            docs.iter()
                .all(|d| truthy(&d["apiVersion"]) && truthy(&d["kind"])),
            format!("[{case}] every document has apiVersion and kind"),
        );
        let v = overlay(&defaults, &values);
        check_webhooks(&mut r, case, docs, &v, kept_ca.as_deref());
        check_deployment(&mut r, case, docs, &v);
        check_policy(&mut r, case, docs, &v);
        check_rbac(&mut r, case, docs, &v);
        check_hooks(&mut r, case, &release.hooks, &v);
        check_extras(&mut r, case, docs, &v)?;
        r.check(
            release.notes.contains("rollout status") && release.notes.contains("--dry-run=server"),
            format!("[{case}] NOTES explain how to verify"),
        );
    }
    check_all("rendered chart", r.0)
}

/// Invalid values (schema) and contradictions (_validate.tpl) fail the install, naming the value.
#[test]
fn chart_refuses_invalid_and_contradictory_values() -> TestResult {
    let mut failures = Vec::new();
    for (case, _, fragment) in refusal_cases() {
        match refusal(case) {
            Ok(msg) if msg.contains(fragment) => {}
            Ok(msg) => failures.push(format!(
                "[{case}] refused without naming {fragment:?}: {msg}"
            )),
            Err(e) => failures.push(e),
        }
    }
    check_all("refusals", failures)
}

// ---------------------------------------------------------------------------------------------------
// Static checks: Chart.yaml, the documentation of every value, the schema, the README values table.

#[test]
fn chart_app_version_is_the_crate_version() -> TestResult {
    let chart = yaml_file("Chart.yaml")?;
    let crate_version = env!("CARGO_PKG_VERSION");
    let mut failures = Vec::new();
    if chart["appVersion"] != crate_version {
        failures.push(format!(
            "Chart.yaml appVersion {} is not the crate version {crate_version:?}",
            chart["appVersion"]
        ));
    }
    if chart["apiVersion"] != "v2" {
        failures.push(format!(
            "Chart.yaml apiVersion {} is not v2",
            chart["apiVersion"]
        ));
    }
    check_all("Chart.yaml", failures)
}

/// After `#`, at most one blank, `--`, at most one blank: the rest of a `# --` doc comment.
fn doc_comment(line: &str) -> Option<&str> {
    fn blank(s: &str) -> &str {
        s.strip_prefix(|c: char| c.is_whitespace()).unwrap_or(s)
    }
    Some(blank(blank(line.strip_prefix('#')?).strip_prefix("--")?))
}

/// A `key:` line of values.yaml: its indent and key.
fn key_line(raw: &str) -> Option<(usize, String)> {
    let rest = raw.trim_start();
    let indent = raw.len() - rest.len();
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "_.-/\"".contains(c)))?;
    let after = rest[end..].strip_prefix(':')?;
    if end == 0 || after.starts_with(|c: char| !c.is_whitespace()) {
        return None;
    }
    Some((indent, rest[..end].trim_matches('"').to_owned()))
}

/// The `# --` doc comment of each dotted key of values.yaml, and every dotted key in file order.
fn value_docs(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let (mut docs, mut keys) = (BTreeMap::new(), Vec::new());
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut in_doc = false;
    for raw in text.lines() {
        let s = raw.trim();
        if s.starts_with('#') {
            if let Some(first) = doc_comment(s) {
                pending = vec![first.to_owned()];
                in_doc = true;
            } else if in_doc {
                pending.push(s.trim_start_matches('#').trim().to_owned());
            }
            continue;
        }
        let key = if s.is_empty() || s.starts_with('-') {
            None
        } else {
            key_line(raw)
        };
        if let Some((indent, key)) = key {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, key));
            let dotted = stack
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>()
                .join(".");
            if !pending.is_empty() {
                docs.insert(dotted.clone(), pending.join(" ").trim().to_owned());
            }
            keys.push(dotted);
        }
        pending.clear();
        in_doc = false;
    }
    (docs, keys)
}

/// Dotted paths of the leaves of `values` (empty maps, lists and scalars).
fn leaf_paths(values: &Value, prefix: &str, out: &mut Vec<String>) {
    match values.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, v) in m {
                leaf_paths(v, &format!("{prefix}{k}."), out);
            }
        }
        _ => out.push(prefix.trim_end_matches('.').to_owned()),
    }
}

#[test]
fn every_value_has_a_doc_comment() -> TestResult {
    let (docs, _) = value_docs(&read(&chart_dir().join("values.yaml"))?);
    let mut leaves = Vec::new();
    leaf_paths(&yaml_file("values.yaml")?, "", &mut leaves);
    if leaves.len() < 20 {
        return Err(format!(
            "values.yaml has only {} values: {leaves:?}",
            leaves.len()
        ));
    }
    let undocumented: Vec<&String> = leaves
        .iter()
        .filter(|leaf| {
            let parts: Vec<&str> = leaf.split('.').collect();
            !(1..=parts.len()).any(|i| docs.contains_key(&parts[..i].join(".")))
        })
        .collect();
    if undocumented.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "values.yaml values without a `# --` comment (on them or a parent): {undocumented:?}"
        ))
    }
}

fn schema() -> Result<Value, String> {
    serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
        .map_err(|e| format!("values.schema.json: {e}"))
}

fn schema_at<'a>(schema: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(schema, |node, part| node["properties"].get(part))
}

#[test]
fn values_schema_is_draft_07_and_describes_every_documented_value() -> TestResult {
    let schema = schema()?;
    let (docs, _) = value_docs(&read(&chart_dir().join("values.yaml"))?);
    let mut failures = Vec::new();
    if !schema["$schema"]
        .as_str()
        .is_some_and(|s| s.starts_with("http://json-schema.org/draft-07/schema"))
    {
        failures.push(format!("$schema {} is not draft-07", schema["$schema"]));
    }
    for key in docs.keys() {
        match schema_at(&schema, key) {
            None => failures.push(format!("`{key}` is not described")),
            Some(node) if !truthy(&node["properties"]) && node.get("default").is_none() => {
                failures.push(format!("`{key}` has no default"))
            }
            Some(_) => {}
        }
    }
    check_all("values.schema.json", failures)
}

/// The Type column of the README for a schema node.
fn schema_type(schema: &Value, node: &Value) -> String {
    if let Some(r) = node["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return schema_type(schema, &schema["definitions"][name]);
    }
    if let Some(e) = node["enum"].as_array() {
        return e
            .iter()
            .map(|x| format!("`{x}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let alternatives = node.get("oneOf").or_else(|| node.get("anyOf"));
    if let (Some(alts), None) = (alternatives, node.get("type")) {
        // With a type, oneOf/anyOf only constrain it.
        let names: BTreeSet<String> = items(alts).map(|n| schema_type(schema, n)).collect();
        return names.into_iter().collect::<Vec<_>>().join(" or ");
    }
    match &node["type"] {
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        t if *t == "array" && node.get("items").is_some() => {
            format!("list of {}", schema_type(schema, &node["items"]))
        }
        _ if node.get("const").is_some() => format!("`{}`", node["const"]),
        Value::String(t) if !t.is_empty() => t.clone(),
        _ => "any".to_owned(),
    }
}

/// The cells of a Markdown table row, split at `|` not escaped as `\|`.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut prev = ' ';
    for c in inner.chars() {
        if c == '|' && prev != '\\' {
            out.push(String::new());
        } else if let Some(cell) = out.last_mut() {
            cell.push(c);
        }
        prev = c;
    }
    out.iter().map(|c| c.trim().to_owned()).collect()
}

/// JSON as the README's Default column shows it: `, ` and `: ` separators.
fn spaced_json(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(spaced_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), spaced_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => scalar.to_string(),
    }
}

/// The README values table: one row per documented value, in values.yaml's order, its type from the
/// schema, its default from values.yaml and the `# --` comment. Set `PULLGATE_WRITE_CHART_README` to
/// rewrite a stale table (a default already shown keeps its text, whatever its key order).
#[test]
fn chart_readme_values_table_is_current() -> TestResult {
    let (start, end) = ("<!-- values-table:start -->", "<!-- values-table:end -->");
    let path = chart_dir().join("README.md");
    let readme = read(&path)?;
    let (head, rest) = readme
        .split_once(start)
        .ok_or_else(|| format!("charts/pullgate/README.md lacks the {start} marker"))?;
    let (table, tail) = rest
        .split_once(end)
        .ok_or_else(|| format!("charts/pullgate/README.md lacks the {end} marker"))?;
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(cells)
        .collect();
    let schema = schema()?;
    let values = yaml_file("values.yaml")?;
    let (docs, keys) = value_docs(&read(&chart_dir().join("values.yaml"))?);
    let mut fresh = vec![
        "| Key | Type | Default | Description |".to_owned(),
        "|-----|------|---------|-------------|".to_owned(),
    ];
    // A default already shown keeps its text: it is JSON, compared as data (key order, spacing).
    let shown: BTreeMap<&str, &String> = rows
        .iter()
        .filter(|r| r.len() == 4)
        .map(|r| (r[0].as_str(), &r[2]))
        .collect();
    let mut failures = Vec::new();
    for key in keys.iter().filter(|k| docs.contains_key(*k)) {
        let default = key.split('.').fold(&values, |v, part| &v[part]);
        let node = schema_at(&schema, key).unwrap_or(&Value::Null);
        let cell = shown
            .get(format!("`{key}`").as_str())
            .copied()
            .filter(|cell| {
                cell.strip_prefix('`')
                    .and_then(|c| c.strip_suffix('`'))
                    .and_then(|j| serde_json::from_str::<Value>(&j.replace("\\|", "|")).ok())
                    .as_ref()
                    == Some(default)
            });
        let want = [
            format!("`{key}`"),
            schema_type(&schema, node),
            cell.cloned()
                .unwrap_or_else(|| format!("`{}`", spaced_json(default).replace('|', "\\|"))),
            docs[key].replace('|', "\\|"),
        ];
        let at = fresh.len() - 2;
        if rows.get(at).is_none_or(|r| r[..] != want[..]) {
            failures.push(format!(
                "row {at} is {:?}, want | {} |",
                rows.get(at),
                want.join(" | ")
            ));
        }
        fresh.push(format!("| {} |", want.join(" | ")));
    }
    if rows.len() + 2 != fresh.len() {
        failures.push(format!(
            "{} rows for {} documented values",
            rows.len(),
            fresh.len() - 2
        ));
    }
    if failures.is_empty() {
        return Ok(());
    }
    if std::env::var_os("PULLGATE_WRITE_CHART_README").is_some() {
        let text = format!("{head}{start}\n{}\n{end}{tail}", fresh.join("\n"));
        return fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()));
    }
    check_all(
        "charts/pullgate/README.md values table is stale (PULLGATE_WRITE_CHART_README=1 cargo test --test chart chart_readme rewrites it)",
        failures,
    )
}

#[test]
fn metrics_txt_holds_unique_pullgate_names() -> TestResult {
    let text = read(&chart_dir().join("metrics.txt"))?;
    let names: Vec<&str> = text.split_whitespace().collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    let bad: Vec<&&str> = names
        .iter()
        .filter(|n| {
            !n.strip_prefix("pullgate_").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
        })
        .collect();
    if names.is_empty() || unique.len() != names.len() || !bad.is_empty() {
        return Err(format!(
            "metrics.txt must hold unique pullgate_[a-z0-9_]+ names: {} names, {} unique, bad {bad:?}",
            names.len(),
            unique.len()
        ));
    }
    Ok(())
}

#[test]
fn doc_and_key_scanners_work() {
    assert_eq!(doc_comment("# -- Replicas."), Some("Replicas."));
    assert_eq!(doc_comment("#--x"), Some("x"));
    assert_eq!(doc_comment("# plain"), None);
    assert_eq!(key_line("  image:"), Some((2, "image".to_owned())));
    assert_eq!(key_line("\"a.b/c\": 1"), Some((0, "a.b/c".to_owned())));
    assert_eq!(key_line("url: http://x"), Some((0, "url".to_owned())));
    assert_eq!(key_line("a:b"), None);
    let (docs, keys) = value_docs(
        "# -- Top.\n# More.\ntop:\n  # -- Inner.\n  inner: 1\n  bare: 2\n\n# -- Gone.\n\nlost: 3\n",
    );
    assert_eq!(keys, ["top", "top.inner", "top.bare", "lost"]);
    assert_eq!(
        docs,
        BTreeMap::from([
            ("top".to_owned(), "Top. More.".to_owned()),
            ("top.inner".to_owned(), "Inner.".to_owned()),
        ])
    );
    assert_eq!(
        cells(r#"| `a` | `"x"` \| `"y"` | `1` | d |"#),
        ["`a`", r#"`"x"` \| `"y"`"#, "`1`", "d"]
    );
}
