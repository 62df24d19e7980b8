//! Webhook configurations as JSON, read and edited without I/O: the Service names the API server
//! connects to, the `caBundle` to publish, and whether a configuration already trusts a newer CA.
//! JSON rather than typed objects, so that a patch sends back every field of the `webhooks` list,
//! including fields newer than this client's API types.

use super::x509;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

/// The DNS names the API server uses for the Services of a configuration's webhooks
/// (`webhooks[*].clientConfig.service`): `name.namespace.svc` and `name.namespace.svc.cluster.local`.
pub fn service_names(data: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for wh in data["webhooks"].as_array().into_iter().flatten() {
        let svc = &wh["clientConfig"]["service"];
        if let (Some(name), Some(ns)) = (svc["name"].as_str(), svc["namespace"].as_str()) {
            for n in [
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}.svc.cluster.local"),
            ] {
                // A name that cannot be in a certificate cannot be served either.
                if ServerName::try_from(n.as_str()).is_ok() {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// The configuration's `webhooks` with every `clientConfig.caBundle` set to `want`, or `None` when
/// they all are already.
pub fn webhooks_with_bundle(data: &Value, want: &str) -> Option<Value> {
    let webhooks = data["webhooks"].as_array()?;
    if webhooks
        .iter()
        .all(|wh| wh["clientConfig"]["caBundle"].as_str() == Some(want))
    {
        return None;
    }
    let patched = webhooks
        .iter()
        .map(|wh| {
            let mut wh = wh.clone();
            if let Some(cc) = wh.get_mut("clientConfig").and_then(Value::as_object_mut) {
                cc.insert("caBundle".to_owned(), json!(want));
            }
            wh
        })
        .collect();
    Some(Value::Array(patched))
}

/// Whether the configuration trusts a CA that is newer than every CA of `ours` and not one of
/// them: then `ours` comes from a Secret read before someone else's rotation.
pub fn trusts_newer_ca(data: &Value, ours: &[CertificateDer<'_>]) -> bool {
    let newest = |certs: &mut dyn Iterator<Item = &CertificateDer<'_>>| {
        certs
            .filter_map(|d| x509::cert_info(d).ok())
            .map(|c| c.not_before)
            .max()
    };
    let Some(our_newest) = newest(&mut ours.iter()) else {
        return false;
    };
    let theirs: Vec<CertificateDer<'static>> = data["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|wh| wh["clientConfig"]["caBundle"].as_str())
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .flat_map(|pem| {
            CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect::<Vec<_>>()
        })
        .filter(|c| !ours.contains(c))
        .collect();
    newest(&mut theirs.iter()).is_some_and(|t| t > our_newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::rotation::{apply, Decision, Material};
    use std::time::Duration;

    const T0: i64 = 1_750_000_000;
    const DAY: i64 = 86_400;

    fn config(bundles: &[Option<&str>]) -> Value {
        let webhooks: Vec<Value> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut cc = json!({"service": {"name": "pullgate", "namespace": "pullgate", "path": format!("/p{i}")}});
                if let Some(b) = b {
                    cc["caBundle"] = json!(b);
                }
                json!({"name": format!("w{i}.pullgate.io"), "clientConfig": cc, "sideEffects": "None", "futureField": i})
            })
            .collect();
        json!({ "webhooks": webhooks })
    }

    #[test]
    fn webhook_bundles_are_set_on_every_webhook_and_unknown_fields_survive() {
        let cfg = config(&[None, Some("old")]);
        let patched = webhooks_with_bundle(&cfg, "new").unwrap();
        for (i, wh) in patched.as_array().unwrap().iter().enumerate() {
            assert_eq!(wh["clientConfig"]["caBundle"], "new");
            assert_eq!(wh["futureField"], i);
            assert_eq!(wh["clientConfig"]["service"]["path"], format!("/p{i}"));
        }
        assert_eq!(
            webhooks_with_bundle(&config(&[Some("new"), Some("new")]), "new"),
            None
        );
        assert_eq!(
            service_names(&cfg),
            vec![
                "pullgate.pullgate.svc",
                "pullgate.pullgate.svc.cluster.local",
                "pullgate.pullgate.svc",
                "pullgate.pullgate.svc.cluster.local"
            ]
        );
        assert!(
            service_names(&json!({"webhooks": [{"clientConfig": {"url": "https://x"}}]}))
                .is_empty()
        );
    }

    #[test]
    fn a_configuration_trusting_a_newer_ca_marks_the_secret_read_as_stale() {
        let year = Duration::from_secs(365 * DAY as u64);
        let names = ["a.ns.svc".to_owned()];
        let m0 = apply(None, Decision::Create, &names, T0, year)
            .unwrap()
            .unwrap();
        let due = Decision::NewCa(crate::tls::rotation::CaReason::RotationDue);
        let m1: Material = apply(Some(&m0), due, &names, T0 + 250 * DAY, year)
            .unwrap()
            .unwrap();
        let newer = config(&[Some(&m1.ca_bundle_base64())]);
        assert!(trusts_newer_ca(&newer, &m0.ca_certificates()));
        assert!(!trusts_newer_ca(&newer, &m1.ca_certificates()));
        let older = config(&[Some(&m0.ca_bundle_base64())]);
        assert!(!trusts_newer_ca(&older, &m1.ca_certificates()));
        assert!(!trusts_newer_ca(
            &config(&[Some("!!"), None]),
            &m0.ca_certificates()
        ));
    }
}
