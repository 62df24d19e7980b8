//! The kube adapter of `--self-signed-secret`: one check reads the Secret and pullgate's webhook
//! configurations, writes what [`rotation`](super::rotation) decides, and publishes the CA bundle.
//!
//! The Secret (`kubernetes.io/tls`, in the pod's namespace) holds:
//! - `tls.crt`, `tls.key`: the serving certificate every replica serves;
//! - `ca.crt`: the CA bundle, the current CA first, then the previous CA while it is still valid;
//! - `ca.key`: the current CA's key. It never leaves the Secret and this process, and is never logged.
//!
//! A replica that read the Secret before a rotation never writes its stale bundle over the newer
//! one: Secret writes carry a resourceVersion precondition, webhook patches too, and a
//! configuration that already trusts a newer CA makes the replica re-read the Secret first.

use super::rotation::{apply, decide, Decision, Material, RotationError, SECRET_TYPE};
use super::webhook_config::{service_names, trusts_newer_ca, webhooks_with_bundle};
use super::TlsError;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Reads and writes of the Secret in one check before giving up on a contended Secret.
const MAX_STEPS: usize = 8;
/// Patch attempts per webhook configuration in one check (a 409 means it changed under us).
const MAX_PATCH_ATTEMPTS: usize = 3;
/// Field manager of pullgate's patches.
const FIELD_MANAGER: &str = "pullgate";

/// Why the Secret could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// The Secret's new contents could not be made.
    #[error(transparent)]
    Rotation(#[from] RotationError),
    /// A Secret API call failed.
    #[error("{action} Secret {namespace}/{name}: {source}")]
    Secret {
        /// What was being done.
        action: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The error (boxed: kube's error is large, and every Result here carries it).
        #[source]
        source: Box<kube::Error>,
    },
    /// The Secret exists with another type; pullgate leaves it alone.
    #[error("Secret {namespace}/{name} has type {found:?}, not {SECRET_TYPE}; pullgate does not change it")]
    SecretType {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Its type.
        found: String,
    },
    /// The Secret changed under every attempt of one check.
    #[error("Secret {namespace}/{name} kept changing; gave up after {MAX_STEPS} attempts")]
    Contended {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The serving certificate in the Secret cannot be served.
    #[error("serving certificate from the Secret: {0}")]
    Serving(#[from] TlsError),
}

#[derive(Debug, Clone, Copy)]
enum ConfigKind {
    Mutating,
    Validating,
}

impl ConfigKind {
    const ALL: [ConfigKind; 2] = [ConfigKind::Mutating, ConfigKind::Validating];

    fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Mutating => "MutatingWebhookConfiguration",
            ConfigKind::Validating => "ValidatingWebhookConfiguration",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            ConfigKind::Mutating => ApiResource::erase::<MutatingWebhookConfiguration>(&()),
            ConfigKind::Validating => ApiResource::erase::<ValidatingWebhookConfiguration>(&()),
        }
    }
}

/// A webhook configuration as last read. Dynamic, so that a patch sends back every field of the
/// `webhooks` list, including fields newer than this client's API types.
struct FoundConfig {
    kind: ConfigKind,
    name: String,
    api: Api<DynamicObject>,
    obj: DynamicObject,
}

/// The webhook configurations read at the start of a check.
struct Configs {
    found: Vec<FoundConfig>,
    /// Every named configuration was found and read.
    complete: bool,
}

impl Configs {
    fn names(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .found
            .iter()
            .flat_map(|c| service_names(&c.obj.data))
            .collect();
        set.into_iter().collect()
    }
}

/// What publishing the bundle found.
struct Publication {
    /// Every found configuration carried the bundle already when this check read it.
    was_current: bool,
    /// Every found configuration carries the bundle now, and none is missing or unreadable.
    complete: bool,
    /// A configuration trusts a newer CA than the Secret we read: re-read the Secret.
    stale: bool,
}

/// When to check next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// All is current: after the check interval.
    Done,
    /// A hand-over is waiting for the API servers: after the settle time.
    Settle,
    /// Something is missing or failed: soon, backing off.
    Retry,
}

/// The result of one check.
pub(crate) struct Checked {
    pub(crate) material: Material,
    pub(crate) next: Next,
}

/// Reads and writes the Secret and the webhook configurations.
pub(crate) struct Reconciler {
    client: kube::Client,
    secrets: Api<Secret>,
    namespace: String,
    secret: String,
    webhook_configurations: Vec<String>,
    validity: Duration,
}

impl Reconciler {
    /// A reconciler of Secret `namespace/secret` and the named webhook configurations; new
    /// certificates live for `validity`.
    pub(crate) fn new(
        client: kube::Client,
        namespace: String,
        secret: String,
        webhook_configurations: Vec<String>,
        validity: Duration,
    ) -> Self {
        Reconciler {
            secrets: Api::namespaced(client.clone(), &namespace),
            client,
            namespace,
            secret,
            webhook_configurations,
            validity,
        }
    }

    /// Namespace of the Secret.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Name of the Secret.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    fn secret_error(&self, action: &'static str, source: kube::Error) -> ManagedError {
        ManagedError::Secret {
            action,
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
            source: Box::new(source),
        }
    }

    async fn read_configs(&self) -> Configs {
        let mut found = Vec::new();
        let mut complete = true;
        for name in &self.webhook_configurations {
            let mut seen = false;
            for kind in ConfigKind::ALL {
                let api = Api::<DynamicObject>::all_with(self.client.clone(), &kind.resource());
                match api.get_opt(name).await {
                    Ok(Some(obj)) => {
                        seen = true;
                        found.push(FoundConfig {
                            kind,
                            name: name.clone(),
                            api,
                            obj,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        seen = true;
                        complete = false;
                        warn!(kind = kind.as_str(), configuration = %name, error = %e, "cannot read the webhook configuration");
                    }
                }
            }
            if !seen {
                complete = false;
                warn!(configuration = %name, "webhook configuration not found (neither mutating nor validating); its caBundle is set once it exists");
            }
        }
        Configs { found, complete }
    }

    /// Make every found configuration carry `material`'s bundle. `force` skips the stale-Secret
    /// guard (the Secret was re-read and did not change: the newer CA is not pullgate's).
    async fn publish(
        &self,
        configs: &mut Configs,
        material: &Material,
        force: bool,
    ) -> Publication {
        let want = material.ca_bundle_base64();
        let ours = material.ca_certificates();
        let mut p = Publication {
            was_current: true,
            complete: configs.complete,
            stale: false,
        };
        for c in &mut configs.found {
            let mut attempts = 0;
            while let Some(webhooks) = webhooks_with_bundle(&c.obj.data, &want) {
                p.was_current = false;
                if !force && trusts_newer_ca(&c.obj.data, &ours) {
                    p.stale = true;
                    return p;
                }
                attempts += 1;
                if attempts > MAX_PATCH_ATTEMPTS {
                    p.complete = false;
                    break;
                }
                match patch_bundle(c, webhooks).await {
                    Patched::Recheck => {}
                    Patched::Gone => break,
                    Patched::Failed => {
                        p.complete = false;
                        break;
                    }
                }
            }
        }
        p
    }

    /// The Secret and its material; a Secret of another type is an error.
    async fn read_secret(&self) -> Result<Option<(Secret, Material)>, ManagedError> {
        let Some(secret) = self
            .secrets
            .get_opt(&self.secret)
            .await
            .map_err(|e| self.secret_error("reading", e))?
        else {
            return Ok(None);
        };
        let ty = secret.type_.as_deref().unwrap_or("Opaque");
        if ty != SECRET_TYPE {
            return Err(ManagedError::SecretType {
                namespace: self.namespace.clone(),
                name: self.secret.clone(),
                found: ty.to_owned(),
            });
        }
        let material = Material::from_data(secret.data.as_ref());
        Ok(Some((secret, material)))
    }

    /// Write `material`: create the Secret when `existing` is `None`, else replace it with its
    /// resourceVersion as precondition. `Ok(false)` when another replica won (409): re-read.
    async fn write(
        &self,
        existing: Option<Secret>,
        material: &Material,
    ) -> Result<bool, ManagedError> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let result = match existing {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.secret.clone()),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "pullgate".to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    type_: Some(SECRET_TYPE.to_owned()),
                    data: Some(material.to_data()),
                    ..Secret::default()
                };
                self.secrets
                    .create(&pp, &secret)
                    .await
                    .map_err(|e| ("creating", e))
            }
            Some(mut secret) => {
                secret.data = Some(material.to_data());
                secret.string_data = None;
                self.secrets
                    .replace(&self.secret, &pp, &secret)
                    .await
                    .map_err(|e| ("updating", e))
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err((action, kube::Error::Api(s))) if s.code == 409 => {
                debug!(secret = %self.secret, action, "another replica wrote the Secret first; re-reading");
                Ok(false)
            }
            Err((action, e)) => Err(self.secret_error(action, e)),
        }
    }

    fn log(&self, decision: Decision) {
        info!(namespace = %self.namespace, secret = %self.secret, decision = %decision, "updating the self-signed certificate Secret");
    }

    /// One check at `now` (seconds since the epoch): bring the Secret up to date, publish its
    /// bundle, and advance a hand-over.
    pub(crate) async fn check(&self, now: i64) -> Result<Checked, ManagedError> {
        let mut configs = self.read_configs().await;
        let names = configs.names();
        let mut stale_at: Option<String> = None;
        let mut force = false;
        for _ in 0..MAX_STEPS {
            let read = self.read_secret().await?;
            let decision = decide(read.as_ref().map(|(_, m)| m), &names, now);
            let (secret, material) = match (decision, read) {
                (Decision::Reuse | Decision::IssueLeaf(_), Some(read)) => read,
                (decision, read) => {
                    let (secret, material) = read.unzip();
                    if let Some(new) =
                        apply(material.as_ref(), decision, &names, now, self.validity)?
                    {
                        self.log(decision);
                        self.write(secret, &new).await?;
                    }
                    continue;
                }
            };
            let publication = self.publish(&mut configs, &material, force).await;
            if publication.stale {
                let rv = secret.metadata.resource_version.clone().unwrap_or_default();
                // Seen stale twice at the same Secret version: the newer CA is not from the
                // Secret, so the Secret wins.
                force = stale_at.as_deref() == Some(rv.as_str());
                stale_at = Some(rv);
                debug!(
                    "a webhook configuration trusts a newer CA than the Secret read; re-reading"
                );
                continue;
            }
            let Decision::IssueLeaf(reason) = decision else {
                let next = if publication.complete {
                    Next::Done
                } else {
                    Next::Retry
                };
                return Ok(Checked { material, next });
            };
            if reason.waits_for_publication() && !publication.was_current {
                info!(namespace = %self.namespace, secret = %self.secret, "new CA published; the serving certificate changes after the API servers had time to load it");
                return Ok(Checked {
                    material,
                    next: Next::Settle,
                });
            }
            if let Some(new) = apply(Some(&material), decision, &names, now, self.validity)? {
                self.log(decision);
                self.write(Some(secret), &new).await?;
            }
        }
        Err(ManagedError::Contended {
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
        })
    }
}

/// What one patch attempt leaves to do.
enum Patched {
    /// Patched, or re-read after a conflict: look at the configuration again.
    Recheck,
    /// Deleted meanwhile: nothing left to patch.
    Gone,
    /// It cannot be patched in this check.
    Failed,
}

/// Patch `c`'s `webhooks` to `webhooks` (its list with the new bundle), conditional on the
/// resourceVersion read.
async fn patch_bundle(c: &mut FoundConfig, webhooks: serde_json::Value) -> Patched {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    // The resourceVersion makes the patch conditional: the list is sent whole, so it must be the
    // list as we read it.
    let patch = json!({
        "metadata": { "resourceVersion": c.obj.metadata.resource_version },
        "webhooks": webhooks,
    });
    match c.api.patch(&c.name, &params, &Patch::Merge(&patch)).await {
        Ok(obj) => {
            info!(kind = c.kind.as_str(), configuration = %c.name, "caBundle updated");
            c.obj = obj;
            Patched::Recheck
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            debug!(kind = c.kind.as_str(), configuration = %c.name, "webhook configuration changed while patching; re-reading");
            match c.api.get_opt(&c.name).await {
                Ok(Some(obj)) => {
                    c.obj = obj;
                    Patched::Recheck
                }
                Ok(None) => Patched::Gone,
                Err(e) => {
                    warn!(kind = c.kind.as_str(), configuration = %c.name, error = %e, "cannot re-read the webhook configuration");
                    Patched::Failed
                }
            }
        }
        Err(e) => {
            warn!(kind = c.kind.as_str(), configuration = %c.name, error = %e, "cannot update the caBundle");
            Patched::Failed
        }
    }
}
