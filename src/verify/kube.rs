//! Cluster mode: secrets read from the API server at probe time, status changes recorded as
//! Events on the Secret, and the task `pullgate serve --cluster` starts.

use super::prober::{Settings, Verifier, VerifyError};
use super::service::{
    EventSink, FetchedSecret, LoopConfig, SecretData, SecretSource, SourceError, StatusEvent,
    VerifyLoop,
};
use super::table::Verifications;
use crate::engine::index::CredentialStatus;
use crate::engine::policy::Policy;
use crate::metrics::Metrics;
use crate::store::Store;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, PostParams};
use kube::Client;
use std::future::Future;
use std::sync::Arc;
use tracing::{info, warn};

/// Secrets read with a GET per probe: the store keeps no credential data, so it is fetched
/// when needed and dropped (zeroed) right after.
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    /// A source reading through `client`.
    pub fn new(client: Client) -> Self {
        KubeSecrets { client }
    }
}

impl SecretSource for KubeSecrets {
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FetchedSecret>, SourceError>> {
        Box::pin(async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            match api.get_opt(name).await {
                Ok(Some(mut s)) => {
                    let data = crate::store::kube::take_data(&mut s);
                    Ok(Some(FetchedSecret {
                        resource_version: s.metadata.resource_version.take(),
                        secret_type: s.type_.take().unwrap_or_else(|| "Opaque".to_owned()),
                        data: SecretData(data),
                    }))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(SourceError {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    source: Box::new(e),
                }),
            }
        })
    }
}

/// Status changes as core/v1 Events on the Secret.
pub struct KubeEvents {
    client: Client,
}

impl KubeEvents {
    /// A sink writing through `client`.
    pub fn new(client: Client) -> Self {
        KubeEvents { client }
    }
}

/// The Event reason and type for a status.
fn reason(status: CredentialStatus) -> (&'static str, &'static str) {
    match status {
        CredentialStatus::Valid => ("CredentialsVerified", "Normal"),
        CredentialStatus::Rejected => ("CredentialsRejected", "Warning"),
        CredentialStatus::Unreachable => ("RegistryUnreachable", "Warning"),
        CredentialStatus::Unsupported => ("CredentialsUnverifiable", "Normal"),
    }
}

/// The Event recording one status change.
pub fn status_event(e: &StatusEvent, now: jiff::Timestamp) -> Event {
    let (reason, type_) = reason(e.after);
    let before = e
        .before
        .map(|b| format!(" (was {})", b.as_str()))
        .unwrap_or_default();
    let fix = if e.after == CredentialStatus::Rejected {
        format!(
            "; pulls fail on nodes without a cached image: update the credential (kubectl create secret docker-registry {} -n {} --docker-server={} … --dry-run=client -o yaml | kubectl apply -f -)",
            e.secret, e.namespace, e.registry
        )
    } else {
        String::new()
    };
    crate::events::event(
        crate::events::EventSpec {
            kind: "Secret",
            namespace: &e.namespace,
            name: &e.secret,
            uid: None,
            reason,
            type_,
            message: format!(
                "registry {}: credentials {}{before}: {}{fix}",
                e.registry,
                e.after.as_str(),
                e.detail
            ),
        },
        now,
    )
}

impl EventSink for KubeEvents {
    fn status_changed(&self, event: StatusEvent) -> BoxFuture<'static, ()> {
        let client = self.client.clone();
        Box::pin(async move {
            let api: Api<Event> = Api::namespaced(client, &event.namespace);
            let body = status_event(&event, jiff::Timestamp::now());
            if let Err(e) = api.create(&PostParams::default(), &body).await {
                warn!(error = %e, namespace = %event.namespace, secret = %event.secret, "could not record the verification event");
            }
        })
    }
}

/// The verification task of `pullgate serve --cluster`: settings are built (and `caFile`s
/// read) now, so a bad configuration fails the start; registries allowed plain HTTP are logged
/// as warnings. Spawn the returned future; it runs until aborted.
pub fn cluster_task(
    client: Client,
    store: Arc<dyn Store>,
    policy: &Policy,
    metrics: Arc<Metrics>,
    verifications: Arc<Verifications>,
) -> Result<impl Future<Output = ()> + Send + 'static, VerifyError> {
    let settings = Settings::from_policy(&policy.verify)?;
    for pattern in settings.insecure_patterns() {
        warn!(registry = %pattern, "verify: plain HTTP allowed for this registry; its credentials cross the network unencrypted");
    }
    info!(
        interval = %policy.verify.interval,
        timeout = %policy.verify.timeout,
        per_registry = settings.per_registry,
        "credential verification enabled"
    );
    let verify_loop = VerifyLoop {
        store,
        verifications,
        policy: Arc::new(policy.clone()),
        verifier: Arc::new(Verifier::new(settings)),
        source: Arc::new(KubeSecrets::new(client.clone())),
        events: Some(Arc::new(KubeEvents::new(client))),
        metrics,
        config: LoopConfig::default(),
    };
    Ok(verify_loop.run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_change_and_the_fix() {
        let e = StatusEvent {
            namespace: "shop".into(),
            secret: "regcred".into(),
            registry: "r.io".into(),
            before: Some(CredentialStatus::Valid),
            after: CredentialStatus::Rejected,
            detail: "registry https://r.io/v2/ refused the credential (401)".into(),
        };
        let ev = status_event(&e, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(ev.reason.as_deref(), Some("CredentialsRejected"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Secret"));
        let msg = ev.message.unwrap_or_default();
        assert!(
            msg.contains("rejected (was valid)") && msg.contains("kubectl create secret"),
            "{msg}"
        );
        let ok = status_event(
            &StatusEvent {
                after: CredentialStatus::Valid,
                before: Some(CredentialStatus::Rejected),
                ..e
            },
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(ok.type_.as_deref(), Some("Normal"));
    }
}
