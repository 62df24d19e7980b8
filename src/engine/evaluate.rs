//! `evaluate_pod` and `evaluate_service_account`: what the kubelet will do with a pod's images,
//! what to inject so that it can pull them, and the findings that name each cause and fix.

use super::findings::{closest, Code, Finding, Severity};
use super::keyring::{Keyring, MatchTarget, NearMiss, RegistryKey};
use super::podview::{ContainerKind, PodView, WorkloadKind};
use super::reference::ImageRef;
use super::registry_class::{classify, RegistryClass};
use crate::engine::index::{
    ClusterIndex, CredentialStatus, NamespaceInfo, OtherSecret, SecretInfo,
    MAX_ELSEWHERE_CANDIDATES,
};
use crate::engine::policy::{Effective, Policy, Validation};

/// The admission operation being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new object: injection possible.
    Create,
    /// An update of an existing pod: imagePullSecrets can no longer change.
    Update,
}

/// Where and when a pod is evaluated.
#[derive(Debug, Clone, Copy)]
pub struct PodContext<'a> {
    /// Namespace of the pod.
    pub namespace: &'a str,
    /// Operation.
    pub operation: Operation,
    /// Current time, seconds since the Unix epoch (for secret age).
    pub now: i64,
    /// Whether this phase may inject (the mutating phase); validation sees the mutated object.
    pub allow_inject: bool,
}

impl<'a> PodContext<'a> {
    /// A pod about to be created through the mutating webhook (which may inject).
    pub fn creating(namespace: &'a str, now: i64) -> Self {
        PodContext {
            namespace,
            operation: Operation::Create,
            now,
            allow_inject: true,
        }
    }

    /// A pod that exists: its imagePullSecrets can no longer change, so nothing is injected.
    pub fn existing(namespace: &'a str, now: i64) -> Self {
        PodContext {
            namespace,
            operation: Operation::Update,
            now,
            allow_inject: false,
        }
    }
}

/// One container image and how the kubelet will authenticate its pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetail<'a> {
    /// Container name.
    pub container: &'a str,
    /// Where the container sits in the spec.
    pub container_kind: ContainerKind,
    /// Image as written.
    pub image: &'a str,
    /// Parsed reference (None when invalid).
    pub reference: Option<ImageRef>,
    /// Whether this registry needs credentials ([`RegistryClass::requires_credentials`]).
    pub requires_credentials: bool,
    /// Why the registry counts as private or public (None when the reference is invalid).
    pub registry_class: Option<RegistryClass<'a>>,
    /// Secrets whose keys cover the image, in the order the kubelet tries them.
    pub matched_secrets: Vec<&'a str>,
}

/// The engine's answer for one pod or pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Settings in force for the namespace.
    pub effective: Effective,
    /// The namespace is excluded by policy: nothing was checked.
    pub excluded: bool,
    /// Static (mirror) pod: never mutated, never denied.
    pub static_pod: bool,
    /// Whether the pod is admitted.
    pub allowed: bool,
    /// Whether deny mode would reject it (any error finding).
    pub would_deny: bool,
    /// Secret names to add, in order.
    pub injected: Vec<&'a str>,
    /// Whether the spec had its own imagePullSecrets (else they came from the ServiceAccount).
    pub had_own_pull_secrets: bool,
    /// The imagePullSecrets the pod ends up with (own or inherited, then injected).
    pub image_pull_secrets: Vec<&'a str>,
    /// Per-image details.
    pub images: Vec<ImageDetail<'a>>,
    /// Findings, errors first.
    pub findings: Vec<Finding>,
}

impl Decision<'_> {
    /// Findings that fail a pull.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

/// Where the pod's effective imagePullSecrets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source<'a> {
    Pod,
    ServiceAccount(&'a str),
}

impl Source<'_> {
    fn field(self) -> String {
        match self {
            Source::Pod => "the pod's spec.imagePullSecrets".to_owned(),
            Source::ServiceAccount(sa) => format!("ServiceAccount {sa:?} imagePullSecrets"),
        }
    }
}

/// A referenced secret and what the kubelet makes of it.
enum Resolved<'a> {
    Usable(&'a SecretInfo),
    Missing(&'a str),
    WrongType(&'a OtherSecret),
    Unusable(&'a SecretInfo),
}

/// Decide for one pod or pod template, as the kubelet would pull its images.
pub fn evaluate_pod<'a>(
    view: &'a PodView,
    ctx: &PodContext<'_>,
    policy: &Policy,
    index: &'a ClusterIndex,
) -> Decision<'a> {
    let ns = index.namespace(ctx.namespace);
    let effective = policy.for_namespace(&ns.overrides);
    let spec = &view.pod.spec;
    let mut d = Decision {
        effective,
        excluded: policy.excludes(ctx.namespace),
        static_pod: view.kind == WorkloadKind::Pod && view.pod.metadata.is_mirror(),
        allowed: true,
        would_deny: false,
        injected: Vec::new(),
        had_own_pull_secrets: spec.has_own_pull_secrets(),
        image_pull_secrets: Vec::new(),
        images: Vec::new(),
        findings: Vec::new(),
    };
    if d.excluded {
        return d;
    }
    let mut findings = Vec::new();

    d.images.reserve_exact(spec.all_containers().count());
    for (kind, c) in spec.all_containers() {
        let image = c.image.as_deref().unwrap_or_default();
        let parsed = if image.is_empty() {
            Err(format!(
                "container {:?} has no image: the API server rejects it ({}: Required value); set the image",
                c.name,
                container_field(kind)
            ))
        } else {
            ImageRef::parse(image).map_err(|e| {
                format!(
                    "image {image:?} of container {:?} is not a valid reference ({e}): the kubelet cannot pull it; fix {}",
                    c.name,
                    container_field(kind)
                )
            })
        };
        let reference = parsed
            .map_err(|message| {
                findings.push(Finding::for_image(
                    Code::InvalidImageReference,
                    Severity::Error,
                    &c.name,
                    image,
                    None,
                    message,
                ));
            })
            .ok();
        d.images.push(ImageDetail {
            container: &c.name,
            container_kind: kind,
            image,
            reference,
            requires_credentials: false,
            registry_class: None,
            matched_secrets: Vec::new(),
        });
    }
    // One match target per image, reused by every step below. Targets borrow their names, which
    // are copied into one buffer so that `d.images` can still be changed.
    let mut names = String::with_capacity(
        d.images
            .iter()
            .filter_map(|i| i.reference.as_ref())
            .map(|r| r.name().len())
            .sum(),
    );
    let spans: Vec<Option<(usize, usize)>> = d
        .images
        .iter()
        .map(|img| {
            img.reference.as_ref().map(|r| {
                let start = names.len();
                names.push_str(r.name());
                (start, names.len())
            })
        })
        .collect();
    let targets: Vec<Option<MatchTarget<'_>>> = spans
        .iter()
        .map(|span| {
            span.and_then(|(start, end)| names.get(start..end))
                .map(MatchTarget::new)
        })
        .collect();
    for (img, t) in d.images.iter_mut().zip(&targets) {
        img.registry_class = t
            .as_ref()
            .map(|t| classify(&policy.registries, t, index, ctx.namespace));
        img.requires_credentials = img.registry_class.is_some_and(|c| c.requires_credentials());
    }

    if d.static_pod {
        static_pod_findings(&d, spec.has_own_pull_secrets(), &mut findings);
        d.findings = sorted(findings);
        return d;
    }

    // The ServiceAccount admission plugin copies the SA's secrets only when the pod names none.
    let sa_name = spec.service_account();
    let sa = ns.service_accounts.get(sa_name);
    let (source, names): (Source<'a>, Vec<&'a str>) = if d.had_own_pull_secrets {
        let names = spec
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.as_str());
        (Source::Pod, dedup(names))
    } else {
        let names = sa
            .into_iter()
            .flat_map(|s| s.image_pull_secrets.iter().map(String::as_str));
        (Source::ServiceAccount(sa_name), dedup(names))
    };
    if sa.is_none() && sa_name != "default" {
        // With no ServiceAccount known at all the store is probably partial (offline check).
        let severity = if ns.service_accounts.is_empty() {
            Severity::Warning
        } else {
            Severity::Error
        };
        findings.push(Finding::general(
            Code::ServiceAccountMissing,
            severity,
            format!(
                "ServiceAccount {sa_name:?} does not exist in namespace {:?}, so pods using it are rejected: create it (kubectl create serviceaccount {sa_name} -n {}) or fix spec.serviceAccountName",
                ctx.namespace, ctx.namespace
            ),
        ));
    }

    let resolved: Vec<Resolved<'a>> = names.iter().map(|n| resolve(ns, n)).collect();
    // The kubelet's keyring of the pod's usable secrets; injected secrets join it below.
    let mut usable: Keyring<'a, &'a str> = Keyring::new();
    let mut fatal: Option<&'a SecretInfo> = None;
    for r in &resolved {
        match r {
            Resolved::Usable(s) => usable.add(s.usable_keys(), &*s.name),
            Resolved::Unusable(s) if s.payload.as_ref().is_err_and(|e| e.is_fatal()) => {
                fatal = fatal.or(Some(s));
            }
            _ => {}
        }
    }
    d.image_pull_secrets = names.clone();

    if let Some(bad) = fatal {
        // The kubelet's keyring construction fails: every pull of this pod fails, public images too.
        let err = bad
            .payload
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        findings.push(Finding::general(
            Code::MalformedSecret,
            Severity::Error,
            format!(
                "secret {:?} in {} is unusable ({err}): fix its .dockerconfigjson (kubectl create secret docker-registry {} -n {} --docker-server=… --dry-run=client -o yaml | kubectl apply -f -) or remove the reference",
                bad.name,
                source.field(),
                bad.name,
                ctx.namespace
            ),
        ));
    }

    // Coverage with what the pod has, then injection for what is left uncovered.
    let can_inject = effective.inject
        && ctx.allow_inject
        && ctx.operation == Operation::Create
        && !view.pod.metadata.annotations.inject_opt_out
        && fatal.is_none();
    let mut blamed: Vec<&str> = Vec::new();
    // What the kubelet would use for each covered image; still right at the end unless a secret
    // was injected meanwhile, so that each image is usually looked up only once.
    let mut lookups: Vec<Option<Vec<&'a str>>> = vec![None; d.images.len()];
    for i in 0..d.images.len() {
        let img = &d.images[i];
        let Some(r) = img.reference.as_ref().filter(|_| img.requires_credentials) else {
            continue;
        };
        let Some(target) = targets.get(i).and_then(Option::as_ref) else {
            continue;
        };
        if fatal.is_some() {
            continue;
        }
        let found = usable.lookup_values(target);
        if !found.is_empty() {
            if let Some(slot) = lookups.get_mut(i) {
                *slot = Some(found);
            }
            continue;
        }
        let candidate = ns
            .pull_secrets_newest_first()
            .into_iter()
            .find(|s| s.payload.is_ok() && s.covers(target) && !names.contains(&&*s.name));
        match candidate {
            Some(s) if can_inject => {
                if !d.injected.contains(&&*s.name) {
                    d.injected.push(&s.name);
                    usable.add(s.usable_keys(), &*s.name);
                }
            }
            _ => {
                let (container, image) = (img.container, img.image);
                let certain = img.registry_class.is_none_or(|c| c.is_certain());
                let mut f = uncovered_finding(
                    ns,
                    index,
                    ctx,
                    target,
                    r,
                    &resolved,
                    source,
                    sa_name,
                    candidate,
                    &mut blamed,
                    container,
                    image,
                );
                if !certain {
                    f.severity = Severity::Warning;
                    f.message.push_str(" (Docker Hub serves public and private repositories alike, so this is a warning: list docker.io in registries.private to make it an error)");
                }
                findings.push(f);
            }
        }
    }
    if !d.injected.is_empty() {
        d.image_pull_secrets.extend(d.injected.iter().copied());
        findings.push(Finding::general(
            Code::SecretsInjected,
            Severity::Info,
            format!(
                "added imagePullSecrets {} so that the kubelet can authenticate",
                quoted(&d.injected)
            ),
        ));
    }

    // Referenced-secret problems that did not cause a failure are still worth fixing.
    for r in &resolved {
        name_level_findings(r, ns, index, ctx, source, &blamed, &mut findings);
    }

    // Verification is opt-in: without any result recorded no credential can have been rejected.
    let verified = index.has_verifications();
    let injected = !d.injected.is_empty();
    for ((img, target), found) in d.images.iter_mut().zip(&targets).zip(lookups) {
        let (Some(r), Some(target)) = (img.reference.as_ref(), target.as_ref()) else {
            continue;
        };
        img.matched_secrets = match found {
            Some(found) if !injected => found,
            _ => usable.lookup_values(target),
        };
        if !img.requires_credentials {
            continue;
        }
        if img.matched_secrets.len() > 1 {
            findings.push(Finding::for_image(
                Code::AmbiguousCredentials,
                Severity::Warning,
                img.container,
                img.image,
                Some(r.domain()),
                format!(
                    "{} secrets cover registry {:?} ({}); the kubelet tries them in that order and a stale one can mask a valid one: keep one secret per registry",
                    img.matched_secrets.len(),
                    r.domain(),
                    quoted(&img.matched_secrets)
                ),
            ));
        }
        if let Some(max) = policy.max_secret_age {
            for name in &img.matched_secrets {
                let Some(s) = ns.secrets.get(name) else {
                    continue;
                };
                let Some(created) = s.created else { continue };
                let age = ctx.now.saturating_sub(created);
                if age > i64::try_from(max.0.as_secs()).unwrap_or(i64::MAX) {
                    findings.push(Finding::for_image(
                        Code::StaleCredentials,
                        Severity::Warning,
                        img.container,
                        img.image,
                        Some(r.domain()),
                        format!(
                            "secret {name:?} covering {:?} is {} days old (maxSecretAge {max}): rotate the credential at the registry, create a new secret and reference it before removing the old one",
                            r.domain(),
                            age / 86_400
                        ),
                    ));
                }
            }
        }
        if verified {
            rejected_credentials(
                img,
                r,
                &usable.lookup(target),
                index,
                ctx,
                policy,
                &mut findings,
            );
        }
    }

    d.findings = sorted(findings);
    d.would_deny = d.findings.iter().any(|f| f.severity == Severity::Error);
    d.allowed = !(effective.validation == Validation::Deny && d.would_deny);
    d
}

/// Everything needed to name why one image is not covered.
#[allow(clippy::too_many_arguments)]
fn uncovered_finding<'a>(
    ns: &'a NamespaceInfo,
    index: &'a ClusterIndex,
    ctx: &PodContext<'_>,
    target: &MatchTarget<'_>,
    r: &ImageRef,
    resolved: &[Resolved<'a>],
    source: Source<'_>,
    sa_name: &str,
    candidate: Option<&'a SecretInfo>,
    blamed: &mut Vec<&'a str>,
    container: &str,
    image: &str,
) -> Finding {
    let registry = r.domain();
    let recreate = if ctx.operation == Operation::Update {
        "; a pod's imagePullSecrets cannot change after creation, so fix the workload or ServiceAccount and recreate the pod"
    } else {
        ""
    };
    let mk = |code, message: String| {
        Finding::for_image(
            code,
            Severity::Error,
            container,
            image,
            Some(registry),
            format!("{message}{recreate}"),
        )
    };

    // 1. A referenced secret is for this host, but not exactly.
    let referenced = resolved.iter().filter_map(|x| match x {
        Resolved::Usable(s) => Some(*s),
        _ => None,
    });
    if let Some((s, key, why)) = near_miss(referenced, target) {
        blamed.push(&s.name);
        return mk(
            Code::RegistryMismatch,
            mismatch_message(image, r, s, key, &why),
        );
    }
    // 2. A referenced secret is missing, in another namespace, of the wrong type, or unusable.
    for x in resolved {
        match x {
            Resolved::Missing(name) => {
                blamed.push(name);
                return mk(
                    missing_code(index, name, ctx.namespace),
                    missing_message(ns, index, ctx, name, source, Some(registry)),
                );
            }
            Resolved::WrongType(s) => {
                blamed.push(&s.name);
                return mk(Code::WrongSecretType, wrong_type_message(s, ctx.namespace));
            }
            Resolved::Unusable(s) => {
                blamed.push(&s.name);
                let err = s
                    .payload
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                return mk(
                    Code::MalformedSecret,
                    format!(
                        "secret {:?} gives the kubelet no credentials ({err}), so image {image:?} is pulled without any: recreate it with kubectl create secret docker-registry {} -n {} --docker-server={registry}",
                        s.name, s.name, ctx.namespace
                    ),
                );
            }
            Resolved::Usable(_) => {}
        }
    }
    // 3. A matching secret exists here but nothing references it.
    if let Some(s) = candidate {
        let other_sa = ns
            .service_accounts
            .values()
            .find(|a| a.name != sa_name && a.image_pull_secrets.iter().any(|n| **n == *s.name));
        let hint = other_sa
            .map(|a| format!("; ServiceAccount {:?} references it: should the pod use serviceAccountName: {}?", a.name, a.name))
            .unwrap_or_default();
        return mk(
            Code::ServiceAccountNotPatched,
            format!(
                "secret {:?} covers registry {registry:?} but neither the pod nor ServiceAccount {sa_name:?} references it: kubectl patch serviceaccount {sa_name} -n {} -p '{{\"imagePullSecrets\":[{{\"name\":\"{}\"}}]}}' (or add it to spec.imagePullSecrets), then recreate the pod{hint}",
                s.name, ctx.namespace, s.name
            ),
        );
    }
    // 4. An unreferenced secret of the namespace is for this host, but not exactly.
    let all = ns
        .secrets
        .values()
        .filter(|s| s.payload.is_ok() && s.is_pull_type());
    if let Some((s, key, why)) = near_miss(all, target) {
        return mk(
            Code::RegistryMismatch,
            mismatch_message(image, r, s, key, &why),
        );
    }
    // 5. Nothing here covers it.
    let elsewhere = index.covering_elsewhere(target, ctx.namespace, 3);
    let create = format!(
        "create one (kubectl create secret docker-registry regcred -n {} --docker-server={registry} --docker-username=… --docker-password=…) and reference it from the pod or its ServiceAccount",
        ctx.namespace
    );
    let where_ = if elsewhere.found.is_empty() && elsewhere.exhaustive {
        format!("and none exists elsewhere in the cluster: {create}")
    } else if elsewhere.found.is_empty() {
        format!(
            "and none of the first {MAX_ELSEWHERE_CANDIDATES} secrets of other namespaces with a key for this registry covers it either: {create}"
        )
    } else {
        let list: Vec<String> = elsewhere
            .found
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        format!(
            "but {} covers it in another namespace and secrets are namespace-scoped: copy or sync it into {:?} and reference it",
            list.join(", "),
            ctx.namespace
        )
    };
    mk(
        Code::NoCredentials,
        format!(
            "no pull secret in namespace {:?} covers registry {registry:?} (image {image:?}), {where_}; a retry succeeds once it exists",
            ctx.namespace
        ),
    )
}

fn resolve<'a>(ns: &'a NamespaceInfo, name: &'a str) -> Resolved<'a> {
    match ns.secrets.get(name) {
        Some(s) if s.payload.is_err() => Resolved::Unusable(s),
        Some(s) => Resolved::Usable(s),
        None => match ns.other_secrets.get(name) {
            Some(o) => Resolved::WrongType(o),
            None => Resolved::Missing(name),
        },
    }
}

/// Findings about a referenced secret itself, when it was not already blamed for a failed pull.
fn name_level_findings(
    r: &Resolved<'_>,
    ns: &NamespaceInfo,
    index: &ClusterIndex,
    ctx: &PodContext<'_>,
    source: Source<'_>,
    blamed: &[&str],
    out: &mut Vec<Finding>,
) {
    let name = match r {
        Resolved::Missing(n) => *n,
        Resolved::Usable(s) | Resolved::Unusable(s) => &s.name,
        Resolved::WrongType(o) => &o.name,
    };
    if let Resolved::Usable(s) | Resolved::Unusable(s) = r {
        if s.is_dockercfg() {
            out.push(Finding::general(
                Code::DeprecatedDockercfg,
                Severity::Warning,
                format!(
                    "secret {name:?} uses the deprecated kubernetes.io/dockercfg type: recreate it as kubernetes.io/dockerconfigjson (kubectl create secret docker-registry {name} -n {} …)",
                    ctx.namespace
                ),
            ));
        }
        if let Ok(p) = &s.payload {
            if !p.ignored_helpers.is_empty() {
                out.push(Finding::general(
                    Code::CredentialHelperIgnored,
                    Severity::Warning,
                    format!(
                        "secret {name:?} names credential helpers ({}), which the kubelet ignores: put the credentials under \"auths\"",
                        p.ignored_helpers.join(", ")
                    ),
                ));
            }
        }
    }
    if blamed.contains(&name) {
        return;
    }
    let f = match r {
        Resolved::Missing(n) => Finding::general(
            missing_code(index, n, ctx.namespace),
            Severity::Warning,
            missing_message(ns, index, ctx, n, source, None),
        ),
        Resolved::WrongType(o) => Finding::general(
            Code::WrongSecretType,
            Severity::Warning,
            wrong_type_message(o, ctx.namespace),
        ),
        Resolved::Unusable(s) if s.payload.as_ref().is_err_and(|e| !e.is_fatal()) => {
            let err = s
                .payload
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            Finding::general(
                Code::MalformedSecret,
                Severity::Warning,
                format!(
                    "secret {:?} gives the kubelet no credentials ({err}): fix or remove it",
                    s.name
                ),
            )
        }
        _ => return,
    };
    out.push(f);
}

fn missing_code(index: &ClusterIndex, name: &str, namespace: &str) -> Code {
    if index
        .namespaces_with_secret(name, namespace)
        .next()
        .is_some()
    {
        Code::SecretInOtherNamespace
    } else {
        Code::SecretNotFound
    }
}

fn missing_message(
    ns: &NamespaceInfo,
    index: &ClusterIndex,
    ctx: &PodContext<'_>,
    name: &str,
    source: Source<'_>,
    registry: Option<&str>,
) -> String {
    let namespace = ctx.namespace;
    let others: Vec<&str> = index
        .namespaces_with_secret(name, namespace)
        .take(3)
        .collect();
    if let Some(first) = others.first() {
        return format!(
            "imagePullSecret {name:?} (from {}) exists only in namespace(s) {}, and a pod can use secrets of its own namespace only: copy it (kubectl get secret {name} -n {first} -o json | jq 'del(.metadata.namespace,.metadata.uid,.metadata.resourceVersion,.metadata.creationTimestamp)' | kubectl apply -n {namespace} -f -) or sync it",
            source.field(),
            others.join(", ")
        );
    }
    let suggestion = closest(
        name,
        ns.secrets
            .values()
            .filter(|s| s.is_pull_type())
            .map(|s| &*s.name),
    )
    .map(|c| format!(" (did you mean {c:?}?)"))
    .unwrap_or_default();
    let server = registry.unwrap_or("<registry>");
    format!(
        "imagePullSecret {name:?} (from {}) does not exist in namespace {namespace:?}{suggestion}: fix the name, or create it (kubectl create secret docker-registry {name} -n {namespace} --docker-server={server} --docker-username=… --docker-password=…)",
        source.field()
    )
}

fn wrong_type_message(s: &OtherSecret, namespace: &str) -> String {
    let what = match &s.secret_type {
        Some(t) => format!("has type {t:?}, which the kubelet ignores for image pulls"),
        None => "is not of a pull-secret type (kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg), so the kubelet ignores it for image pulls".to_owned(),
    };
    format!(
        "secret {:?} {what}: recreate it as kubernetes.io/dockerconfigjson (kubectl create secret docker-registry {} -n {namespace} …)",
        s.name, s.name
    )
}

fn mismatch_message(
    image: &str,
    r: &ImageRef,
    s: &SecretInfo,
    key: &RegistryKey,
    why: &NearMiss,
) -> String {
    let registry = r.domain();
    let raw = s
        .payload
        .as_ref()
        .ok()
        .and_then(|p| p.entries.iter().find(|e| e.key.as_ref().ok() == Some(key)))
        .map_or(key.as_str(), |e| e.raw());
    let detail = match why {
        NearMiss::Port { key: k, image: i } => format!(
            "the port differs (key {}, image {})",
            k.as_deref().map_or("none".to_owned(), |p| format!(":{p}")),
            i.as_deref().map_or("none".to_owned(), |p| format!(":{p}"))
        ),
        NearMiss::Path {
            key_path,
            image_path,
        } => {
            format!("the key's path {key_path:?} is not a prefix of the image path {image_path:?}")
        }
        NearMiss::Case => "the host differs in letter case (keys are case-sensitive)".to_owned(),
        NearMiss::LabelCount => {
            "a glob matches one DNS label per '*', and the label counts differ".to_owned()
        }
    };
    format!(
        "image {image:?} needs credentials for {:?}, but secret {:?} has key {raw:?}: {detail}; add an entry for {registry:?} (kubectl create secret docker-registry {} -n {} --docker-server={registry} …)",
        r.name(),
        s.name,
        s.name,
        s.namespace
    )
}

/// The first key among `secrets` that is for the image's host but does not cover it.
fn near_miss<'s>(
    secrets: impl Iterator<Item = &'s SecretInfo>,
    target: &MatchTarget<'_>,
) -> Option<(&'s SecretInfo, &'s RegistryKey, NearMiss)> {
    for s in secrets {
        for k in s.usable_keys() {
            if let Some(why) = k.near_miss(target) {
                return Some((s, k, why));
            }
        }
    }
    None
}

fn static_pod_findings(d: &Decision<'_>, references_secrets: bool, out: &mut Vec<Finding>) {
    for img in d.images.iter().filter(|i| i.requires_credentials) {
        out.push(Finding::for_image(
            Code::StaticPod,
            Severity::Warning,
            img.container,
            img.image,
            img.reference.as_ref().map(ImageRef::domain),
            format!(
                "static pod: the kubelet cannot give it imagePullSecrets, so {:?} must be pulled with node credentials: configure a kubelet credential provider (--image-credential-provider-config and --image-credential-provider-bin-dir) or pre-pull the image",
                img.image
            ),
        ));
    }
    if references_secrets {
        out.push(Finding::general(
            Code::StaticPod,
            Severity::Warning,
            "static pod lists imagePullSecrets: the API server refuses its mirror pod (mirror pods may not reference secrets) and the kubelet cannot read them; remove them from the manifest and use a kubelet credential provider".to_owned(),
        ));
    }
}

/// `CredentialsRejected`: a credential the kubelet would use for the image was refused by its
/// registry when pullgate last verified it (`verify`). An error under `verify.deny` only when
/// every credential the kubelet would try is refused: it falls through to the next one, so a bad
/// secret beside a good one slows pulls but does not fail them.
fn rejected_credentials(
    img: &ImageDetail<'_>,
    r: &ImageRef,
    hits: &[(&RegistryKey, &str)],
    index: &ClusterIndex,
    ctx: &PodContext<'_>,
    policy: &Policy,
    out: &mut Vec<Finding>,
) {
    let tried: Vec<(&str, &str)> = hits.iter().map(|(k, name)| (*name, k.as_str())).collect();
    let rejected: Vec<&(&str, &str)> = tried
        .iter()
        .filter(|(name, key)| {
            index.credential_status(ctx.namespace, name, key) == Some(CredentialStatus::Rejected)
        })
        .collect();
    let all_rejected = rejected.len() == tried.len();
    let severity = if policy.verify.deny && all_rejected {
        Severity::Error
    } else {
        Severity::Warning
    };
    for (name, key) in &rejected {
        let consequence = if all_rejected {
            format!(
                "the kubelet has no other credential for {:?}, so pulls fail on every node without a cached copy",
                img.image
            )
        } else {
            let others: Vec<&str> = img
                .matched_secrets
                .iter()
                .copied()
                .filter(|n| n != name)
                .collect();
            format!(
                "the kubelet falls back to {}, but tries this one first",
                quoted(&others)
            )
        };
        out.push(Finding::for_image(
            Code::CredentialsRejected,
            severity,
            img.container,
            img.image,
            Some(r.domain()),
            format!(
                "registry {key:?} rejected the credentials of secret {name:?} when pullgate last verified them: {consequence}; update the credential (kubectl create secret docker-registry {name} -n {} --docker-server={key} --docker-username=… --docker-password=… --dry-run=client -o yaml | kubectl apply -f -)",
                ctx.namespace
            ),
        ));
    }
}

fn dedup<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = Vec::new();
    for n in names.filter(|n| !n.is_empty()) {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn container_field(kind: ContainerKind) -> &'static str {
    match kind {
        ContainerKind::Regular => "spec.containers[].image",
        ContainerKind::Init => "spec.initContainers[].image",
        ContainerKind::Ephemeral => "spec.ephemeralContainers[].image",
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings
}

/// The engine's answer for a ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountDecision<'a> {
    /// Secret names to add, newest first.
    pub injected: Vec<&'a str>,
    /// Findings (warnings: a ServiceAccount is never denied).
    pub findings: Vec<Finding>,
}

/// Decide for a ServiceAccount: which of the namespace's pull secrets to add, and what is wrong with its references.
pub fn evaluate_service_account<'a>(
    sa_name: &str,
    referenced: &[&str],
    inject_opt_out: bool,
    namespace: &str,
    policy: &Policy,
    index: &'a ClusterIndex,
) -> ServiceAccountDecision<'a> {
    let ns = index.namespace(namespace);
    let mut d = ServiceAccountDecision {
        injected: Vec::new(),
        findings: Vec::new(),
    };
    if policy.excludes(namespace) {
        return d;
    }
    let ctx = PodContext {
        namespace,
        operation: Operation::Create,
        now: 0,
        allow_inject: false,
    };
    let source = Source::ServiceAccount(sa_name);
    for name in dedup(referenced.iter().copied()) {
        let r = resolve(ns, name);
        if let Resolved::Unusable(s) = r {
            if s.payload.as_ref().is_err_and(|e| e.is_fatal()) {
                let err = s
                    .payload
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                d.findings.push(Finding::general(
                    Code::MalformedSecret,
                    Severity::Warning,
                    format!("secret {name:?} has an unusable payload ({err}); every pod using this ServiceAccount will fail all image pulls: fix or remove it"),
                ));
                continue;
            }
        }
        name_level_findings(&r, ns, index, &ctx, source, &[], &mut d.findings);
    }
    if policy.for_namespace(&ns.overrides).inject && !inject_opt_out {
        for s in ns.pull_secrets_newest_first() {
            if s.payload.is_ok()
                && !referenced.contains(&&*s.name)
                && s.usable_keys().any(|k| {
                    policy
                        .registries
                        .requires_credentials(&MatchTarget::new(k.served_name()))
                })
            {
                d.injected.push(&s.name);
            }
        }
    }
    d
}

/// Findings about a pull secret on its own (for Secret admission): unusable payloads, the
/// deprecated type, ignored helpers, and keys whose scheme or path match no private registry.
pub fn secret_findings(s: &SecretInfo, policy: &Policy) -> Vec<Finding> {
    let mut out = Vec::new();
    if !s.is_pull_type() {
        return out;
    }
    if s.is_dockercfg() {
        out.push(Finding::general(
            Code::DeprecatedDockercfg,
            Severity::Warning,
            format!("secret {:?} uses the deprecated kubernetes.io/dockercfg type: recreate it as kubernetes.io/dockerconfigjson (kubectl create secret docker-registry)", s.name),
        ));
    }
    match &s.payload {
        Err(e) => out.push(Finding::general(
            Code::MalformedSecret,
            Severity::Warning,
            if e.is_fatal() {
                format!("secret {:?} has an unusable payload ({e}): every pod referencing it will fail all image pulls; fix its data", s.name)
            } else {
                format!("secret {:?} gives the kubelet no credentials ({e}): fix its data", s.name)
            },
        )),
        Ok(p) => {
            if !p.ignored_helpers.is_empty() {
                out.push(Finding::general(
                    Code::CredentialHelperIgnored,
                    Severity::Warning,
                    format!("secret {:?} names credential helpers ({}), which the kubelet ignores: put the credentials under \"auths\"", s.name, p.ignored_helpers.join(", ")),
                ));
            }
            for e in &p.entries {
                let decorated = e.raw().contains("://") || e.key.as_ref().is_ok_and(|k| !k.path().is_empty());
                let covers_private = e.key.as_ref().is_ok_and(|k| {
                    policy.registries.requires_credentials(&MatchTarget::new(k.served_name()))
                });
                match &e.key {
                    Err(err) => out.push(Finding::general(
                        Code::RegistryMismatch,
                        Severity::Warning,
                        format!("secret {:?} has registry key {:?} that the kubelet ignores ({err}): write it as host[:port]", s.name, e.raw()),
                    )),
                    Ok(k) if decorated && !covers_private => out.push(Finding::general(
                        Code::RegistryMismatch,
                        Severity::Warning,
                        format!("secret {:?} has registry key {:?} (normalised {:?}) that matches no private registry of the policy: write it as the images' host[:port]", s.name, e.raw(), k.as_str()),
                    )),
                    Ok(_) => {}
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use crate::engine::index::ServiceAccountInfo;
    use serde_json::json;
    use std::collections::BTreeMap;

    const NOW: i64 = 1_800_000_000;

    fn pod(spec: serde_json::Value) -> PodView {
        PodView::from_value(
            WorkloadKind::Pod,
            &json!({"metadata": {"name": "p"}, "spec": spec}),
        )
        .unwrap()
    }

    fn one(image: &str, secrets: &[&str]) -> PodView {
        let refs: Vec<_> = secrets.iter().map(|s| json!({"name": s})).collect();
        let mut spec = json!({"containers": [{"name": "app", "image": image}]});
        if !secrets.is_empty() {
            spec["imagePullSecrets"] = json!(refs);
        }
        pod(spec)
    }

    fn ctx(allow_inject: bool) -> PodContext<'static> {
        PodContext {
            namespace: "shop",
            operation: Operation::Create,
            now: NOW,
            allow_inject,
        }
    }

    /// Deny mode with every registry private: these cases are about the mistakes, not `auto`.
    fn deny() -> Policy {
        Policy {
            validation: Validation::Deny,
            registries: crate::engine::policy::Registries {
                private: vec![crate::engine::policy::RegistryPattern::All],
                public: Vec::new(),
            },
            ..Policy::default()
        }
    }

    fn shop() -> ClusterIndex {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret(
            "shop",
            "regcred",
            &["registry.example.com"],
            NOW - 86_400,
        ));
        idx.upsert_secret(pull_secret(
            "shop",
            "ghcr",
            &["ghcr.io"],
            NOW - 400 * 86_400,
        ));
        idx.upsert_service_account(
            "shop",
            ServiceAccountInfo {
                name: "default".into(),
                ..Default::default()
            },
        );
        idx.upsert_service_account(
            "shop",
            ServiceAccountInfo {
                name: "builder".into(),
                image_pull_secrets: vec!["ghcr".into()],
                ..Default::default()
            },
        );
        idx.upsert_secret(pull_secret(
            "payments",
            "pay",
            &["registry.internal:5000"],
            NOW,
        ));
        idx
    }

    fn codes(d: &Decision<'_>) -> Vec<Code> {
        d.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn covered_image_is_allowed_without_findings() {
        let idx = shop();
        let v = one("registry.example.com/shop/web:1", &["regcred"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.allowed && !d.would_deny, "{:?}", d.findings);
        assert!(d.findings.is_empty());
        assert_eq!(d.images[0].matched_secrets, ["regcred"]);
    }

    #[test]
    fn port_mismatch_names_secret_and_port() {
        let idx = shop();
        let v = one("registry.example.com:5000/shop/api:2", &["regcred"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(!d.allowed);
        assert_eq!(codes(&d), [Code::RegistryMismatch]);
        let m = &d.findings[0].message;
        assert!(
            m.contains("regcred")
                && m.contains(":5000")
                && m.contains("--docker-server=registry.example.com:5000"),
            "{m}"
        );
    }

    #[test]
    fn unreferenced_near_miss_is_found_too() {
        let idx = shop();
        let v = one("registry.example.com:5000/app:1", &[]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert_eq!(codes(&d), [Code::RegistryMismatch]);
        assert!(d.findings[0].message.contains("regcred"));
    }

    #[test]
    fn typo_suggests_closest_name() {
        let idx = shop();
        let v = one("registry.example.com/shop/web:1", &["regcreds"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert_eq!(codes(&d), [Code::SecretNotFound]);
        assert!(
            d.findings[0].message.contains("did you mean \"regcred\""),
            "{}",
            d.findings[0].message
        );
    }

    #[test]
    fn secret_in_other_namespace() {
        let idx = shop();
        let v = one("registry.internal:5000/pay/api:1", &["pay"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert_eq!(codes(&d), [Code::SecretInOtherNamespace]);
        assert!(d.findings[0].message.contains("payments"));
    }

    #[test]
    fn no_credentials_mentions_other_namespaces() {
        let idx = shop();
        let v = one("registry.internal:5000/pay/api:1", &[]);
        let d = evaluate_pod(&v, &ctx(true), &deny(), &idx);
        assert_eq!(codes(&d), [Code::NoCredentials]);
        let m = &d.findings[0].message;
        assert!(m.contains("payments/pay") && m.contains("retry"), "{m}");
        let v = one("quay.io/nobody/x:1", &[]);
        let d = evaluate_pod(&v, &ctx(true), &deny(), &idx);
        assert!(d.findings[0].message.contains("none exists elsewhere"));
    }

    #[test]
    fn injection_adds_newest_covering_secret_once() {
        let mut idx = shop();
        idx.upsert_secret(pull_secret(
            "shop",
            "regcred-new",
            &["registry.example.com"],
            NOW - 10,
        ));
        let v = pod(json!({"containers": [
            {"name": "a", "image": "registry.example.com/a:1"},
            {"name": "b", "image": "registry.example.com/b:1"}]}));
        let d = evaluate_pod(&v, &ctx(true), &deny(), &idx);
        assert!(d.allowed, "{:?}", d.findings);
        assert_eq!(d.injected, ["regcred-new"]);
        assert_eq!(d.image_pull_secrets, ["regcred-new"]);
        assert_eq!(codes(&d), [Code::SecretsInjected]);
    }

    #[test]
    fn an_injected_secret_also_counts_for_images_covered_before() {
        let mut idx = shop();
        // Covers ghcr.io, which "ghcr" already covers, and quay.io, which nothing covers.
        idx.upsert_secret(pull_secret("shop", "both", &["ghcr.io", "quay.io"], NOW));
        let v = pod(json!({
            "serviceAccountName": "builder",
            "containers": [
                {"name": "a", "image": "ghcr.io/acme/a:1"},
                {"name": "b", "image": "quay.io/acme/b:1"}]}));
        let d = evaluate_pod(&v, &ctx(true), &deny(), &idx);
        assert_eq!(d.injected, ["both"]);
        assert_eq!(d.images[0].matched_secrets, ["ghcr", "both"]);
        assert_eq!(d.images[1].matched_secrets, ["both"]);
        assert!(codes(&d).contains(&Code::AmbiguousCredentials));
    }

    #[test]
    fn injection_keeps_inherited_service_account_secrets() {
        let idx = shop();
        let v = pod(json!({"serviceAccountName": "builder", "containers": [
            {"name": "a", "image": "registry.example.com/a:1"}, {"name": "b", "image": "ghcr.io/acme/b:1"}]}));
        let d = evaluate_pod(&v, &ctx(true), &deny(), &idx);
        assert!(d.allowed);
        assert!(!d.had_own_pull_secrets);
        assert_eq!(d.image_pull_secrets, ["ghcr", "regcred"]);
        assert_eq!(d.injected, ["regcred"]);
    }

    #[test]
    fn no_injection_in_validation_phase_or_when_opted_out() {
        let idx = shop();
        let v = one("registry.example.com/a:1", &[]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.injected.is_empty() && !d.allowed);
        assert_eq!(codes(&d), [Code::ServiceAccountNotPatched]);
        let opted = pod(json!({"containers": [{"name": "a", "image": "ghcr.io/a:1"}]}));
        let mut opted = opted;
        opted.pod.metadata.annotations.inject_opt_out = true;
        let d = evaluate_pod(&opted, &ctx(true), &deny(), &idx);
        assert!(d.injected.is_empty());
        let m = &d.findings[0].message;
        assert!(m.contains("serviceAccountName: builder"), "{m}");
    }

    #[test]
    fn update_cannot_inject_and_says_recreate() {
        let idx = shop();
        let v = one("registry.example.com/a:1", &[]);
        let c = PodContext {
            operation: Operation::Update,
            ..ctx(true)
        };
        let d = evaluate_pod(&v, &c, &deny(), &idx);
        assert!(d.injected.is_empty());
        assert!(d.findings[0].message.contains("recreate the pod"));
    }

    #[test]
    fn pod_with_own_secrets_does_not_inherit() {
        let mut idx = shop();
        idx.upsert_service_account(
            "shop",
            ServiceAccountInfo {
                name: "default".into(),
                image_pull_secrets: vec!["regcred".into()],
                ..Default::default()
            },
        );
        let v = one("registry.example.com/a:1", &["ghcr"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(
            !d.allowed,
            "the SA's regcred must not be merged into a pod that names its own"
        );
        let v = one("registry.example.com/a:1", &[]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.allowed);
        assert_eq!(d.images[0].matched_secrets, ["regcred"]);
    }

    #[test]
    fn fatal_malformed_secret_fails_every_image() {
        let mut idx = shop();
        let mut data = BTreeMap::new();
        data.insert(
            ".dockerconfigjson".to_owned(),
            br#"{"auths":{"x.io":{"auth":"!!"}}}"#.to_vec(),
        );
        idx.upsert_secret(SecretInfo::new(
            "shop",
            "broken",
            "kubernetes.io/dockerconfigjson",
            None,
            None,
            &data,
        ));
        let v = one("registry.example.com/a:1", &["broken", "regcred"]);
        let d = evaluate_pod(&v, &ctx(true), &deny(), &idx);
        assert!(!d.allowed);
        assert_eq!(codes(&d), [Code::MalformedSecret]);
        assert!(d.injected.is_empty());
    }

    #[test]
    fn wrong_type_and_dockercfg() {
        let mut idx = shop();
        idx.upsert_secret(SecretInfo::new(
            "shop",
            "opaque",
            "Opaque",
            None,
            None,
            &BTreeMap::new(),
        ));
        let v = one("registry.example.com/a:1", &["opaque"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert_eq!(codes(&d), [Code::WrongSecretType]);
        let v = one("registry.example.com/a:1", &["opaque", "regcred"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.allowed);
        assert_eq!(
            d.findings
                .iter()
                .map(|f| (f.code, f.severity))
                .collect::<Vec<_>>(),
            [(Code::WrongSecretType, Severity::Warning)]
        );

        let mut data = BTreeMap::new();
        data.insert(
            ".dockercfg".to_owned(),
            br#"{"quay.io":{"auth":"dTpw"}}"#.to_vec(),
        );
        idx.upsert_secret(SecretInfo::new(
            "shop",
            "legacy",
            "kubernetes.io/dockercfg",
            None,
            None,
            &data,
        ));
        let v = one("quay.io/a/b:1", &["legacy"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.allowed);
        assert_eq!(codes(&d), [Code::DeprecatedDockercfg]);
    }

    #[test]
    fn ambiguous_and_stale() {
        let mut idx = shop();
        idx.upsert_secret(pull_secret("shop", "ghcr-2", &["ghcr.io"], NOW));
        let v = one("ghcr.io/acme/x:1", &["ghcr", "ghcr-2"]);
        let p = Policy {
            max_secret_age: "90d".parse().ok(),
            ..deny()
        };
        let d = evaluate_pod(&v, &ctx(false), &p, &idx);
        assert!(d.allowed);
        let mut c = codes(&d);
        c.sort();
        assert_eq!(c, [Code::AmbiguousCredentials, Code::StaleCredentials]);
        assert!(d.findings.iter().any(|f| f.message.contains("400 days")));
    }

    #[test]
    fn invalid_image_and_static_pod() {
        let idx = shop();
        let v = one("registry.example.com/Shop/Web:1", &["regcred"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert_eq!(codes(&d), [Code::InvalidImageReference]);
        assert!(!d.allowed);

        let mut v = one("registry.example.com/a:1", &["regcred"]);
        v.pod.metadata.annotations.mirror = true;
        let d = evaluate_pod(&v, &ctx(true), &deny(), &idx);
        assert!(d.allowed && d.static_pod && d.injected.is_empty());
        assert!(codes(&d).iter().all(|c| *c == Code::StaticPod));
        assert_eq!(codes(&d).len(), 2);
    }

    #[test]
    fn service_account_missing() {
        let idx = shop();
        let v = pod(
            json!({"serviceAccountName": "ghost", "containers": [{"name": "a", "image": "registry.example.com/a:1"}],
            "imagePullSecrets": [{"name": "regcred"}]}),
        );
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert_eq!(codes(&d), [Code::ServiceAccountMissing]);
        assert!(!d.allowed);
    }

    #[test]
    fn modes_and_exclusions() {
        let idx = shop();
        let v = one("registry.example.com:5000/a:1", &[]);
        let warn = Policy::default();
        let d = evaluate_pod(&v, &ctx(false), &warn, &idx);
        assert!(d.allowed && d.would_deny);
        let c = PodContext {
            namespace: "kube-system",
            ..ctx(false)
        };
        let d = evaluate_pod(&v, &c, &deny(), &idx);
        assert!(d.allowed && d.excluded && d.findings.is_empty());
        let public = Policy::from_yaml(
            "validation: deny\nregistries:\n  public: ['registry.example.com:5000']\n",
        )
        .unwrap();
        let d = evaluate_pod(&v, &ctx(false), &public, &idx);
        assert!(d.allowed && !d.images[0].requires_credentials);
    }

    #[test]
    fn docker_hub_fallback_to_index_docker_io_key() {
        let mut idx = shop();
        idx.upsert_secret(pull_secret(
            "shop",
            "hub",
            &["https://index.docker.io/v1/"],
            NOW,
        ));
        let v = one("acme/private:1", &["hub"]);
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.allowed, "{:?}", d.findings);
        assert_eq!(d.images[0].matched_secrets, ["hub"]);
    }

    #[test]
    fn rejected_credentials_warn_or_deny_as_configured() {
        use crate::engine::index::SecretVerification;
        let verified = |idx: &ClusterIndex, name: &str, key: &str, status| {
            let rv = idx.namespace("shop").secrets[name].resource_version.clone();
            assert!(idx.record_verification(
                "shop",
                name,
                SecretVerification {
                    resource_version: rv,
                    verified_at: NOW,
                    keys: BTreeMap::from([(key.to_owned(), status)]),
                },
            ));
        };
        let idx = shop();
        verified(
            &idx,
            "regcred",
            "registry.example.com",
            CredentialStatus::Rejected,
        );
        let v = one("registry.example.com/shop/web:1", &["regcred"]);
        // Warning by default: admitted even in deny mode.
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.allowed && !d.would_deny);
        assert_eq!(codes(&d), [Code::CredentialsRejected]);
        assert_eq!(d.findings[0].severity, Severity::Warning);
        assert!(d.findings[0].message.contains("no other credential"));
        // verify.deny makes it an error.
        let mut p = deny();
        p.verify.deny = true;
        let d = evaluate_pod(&v, &ctx(false), &p, &idx);
        assert!(!d.allowed && d.would_deny);
        assert_eq!(d.findings[0].severity, Severity::Error);
        // Valid, unreachable or unknown credentials say nothing.
        for status in [CredentialStatus::Valid, CredentialStatus::Unreachable] {
            let idx = shop();
            verified(&idx, "regcred", "registry.example.com", status);
            assert!(evaluate_pod(&v, &ctx(false), &p, &idx).findings.is_empty());
        }
        // A second, unrejected secret for the registry: the kubelet falls back, so a warning only.
        let mut idx = shop();
        idx.upsert_secret(pull_secret("shop", "spare", &["registry.example.com"], NOW));
        verified(
            &idx,
            "regcred",
            "registry.example.com",
            CredentialStatus::Rejected,
        );
        let v2 = one("registry.example.com/shop/web:1", &["regcred", "spare"]);
        let d = evaluate_pod(&v2, &ctx(false), &p, &idx);
        assert!(d.allowed, "{:?}", d.findings);
        let rejected: Vec<&Finding> = d
            .findings
            .iter()
            .filter(|f| f.code == Code::CredentialsRejected)
            .collect();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].severity, Severity::Warning);
        assert!(rejected[0].message.contains("falls back to \"spare\""));
        // A rotated secret (replaced in the index) drops the old verdict.
        let mut idx = shop();
        verified(
            &idx,
            "regcred",
            "registry.example.com",
            CredentialStatus::Rejected,
        );
        let mut rotated = pull_secret("shop", "regcred", &["registry.example.com"], NOW);
        rotated.resource_version = Some("2".into());
        idx.upsert_secret(rotated);
        assert!(evaluate_pod(&v, &ctx(false), &p, &idx).findings.is_empty());
    }

    #[test]
    fn service_account_injection() {
        let mut idx = shop();
        idx.upsert_secret(SecretInfo::new(
            "shop",
            "opaque",
            "Opaque",
            None,
            None,
            &BTreeMap::new(),
        ));
        let d = evaluate_service_account(
            "builder",
            &["ghcr", "missing"],
            false,
            "shop",
            &Policy::default(),
            &idx,
        );
        assert_eq!(d.injected, ["regcred"]);
        assert_eq!(
            d.findings.iter().map(|f| f.code).collect::<Vec<_>>(),
            [Code::SecretNotFound]
        );
        let d = evaluate_service_account("builder", &[], true, "shop", &Policy::default(), &idx);
        assert!(d.injected.is_empty());
    }
}
