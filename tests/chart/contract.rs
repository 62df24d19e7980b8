//! The chart's contract, case by case: webhooks, Deployment, policy, RBAC, pre-delete hook and the
//! optional objects, checked against the effective values (the defaults overlaid with the case's);
//! and the values the chart must refuse.

use super::*;
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

pub(super) fn yaml_file(name: &str) -> Result<Value, String> {
    let text = read(&chart_dir().join(name))?;
    let v: Value = serde_saphyr::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    Ok(if v.is_null() { json!({}) } else { v })
}

/// Python's truth: null, false, 0, "" and empty collections are false.
pub(super) fn truthy(v: &Value) -> bool {
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
pub(super) type ChartCase = (&'static str, Value, BTreeMap<String, Value>, Option<String>);

/// The cases whose whole render is checked: the profiles, every certificate mode, an upgrade that
/// must keep the caBundle of the webhook configurations in the cluster, and every option on.
pub(super) fn chart_cases() -> Result<Vec<ChartCase>, String> {
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
pub(super) fn refusal_cases() -> Vec<(&'static str, Value, &'static str)> {
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

pub(super) fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

pub(super) fn items(v: &Value) -> impl Iterator<Item = &Value> {
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
