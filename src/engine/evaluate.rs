//! `evaluate_pod` and `evaluate_service_account`: what the kubelet will do with a pod's images,
//! what to inject so that it can pull them, and the findings that name each cause and fix.
//! This file decides (which finding, how severe); every sentence is written in [`super::findings`].

use super::findings::{self, closest, Code, Finding, Severity};
use super::index::{
    ClusterIndex, CredentialStatus, NamespaceInfo, OtherSecret, SecretInfo,
    MAX_ELSEWHERE_CANDIDATES,
};
use super::keyring::{Keyring, MatchTarget, RegistryKey};
use super::podview::{ContainerKind, PodView, WorkloadKind};
use super::policy::{Effective, Policy, Validation};
use super::reference::ImageRef;
use super::registry_class::{classify, RegistryClass};
use super::verification::VerificationTable;
use std::ops::Range;

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
    /// Credential verification results (`verify`); `None` when nothing was verified.
    pub verified: Option<&'a VerificationTable>,
}

impl<'a> PodContext<'a> {
    /// A pod about to be created through the mutating webhook (which may inject).
    pub fn creating(namespace: &'a str, now: i64) -> Self {
        PodContext {
            namespace,
            operation: Operation::Create,
            now,
            allow_inject: true,
            verified: None,
        }
    }

    /// A pod that exists: its imagePullSecrets can no longer change, so nothing is injected.
    pub fn existing(namespace: &'a str, now: i64) -> Self {
        PodContext {
            namespace,
            operation: Operation::Update,
            now,
            allow_inject: false,
            verified: None,
        }
    }

    /// The same context reading these verification results (an empty table counts as none).
    pub fn with_verified(self, verified: Option<&'a VerificationTable>) -> Self {
        PodContext {
            verified: verified.filter(|t| !t.is_empty()),
            ..self
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
            Source::Pod => findings::secrets_field(None),
            Source::ServiceAccount(sa) => findings::secrets_field(Some(sa)),
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

/// The pod's imagePullSecrets as the kubelet will see them, and what naming the cause of an
/// uncovered image reads.
struct PodSecrets<'a, 'c> {
    ns: &'a NamespaceInfo,
    index: &'a ClusterIndex,
    ctx: &'c PodContext<'c>,
    /// Where the names come from.
    source: Source<'a>,
    /// `spec.serviceAccountName`, defaulted.
    sa_name: &'a str,
    /// The names, deduplicated, in order.
    names: Vec<&'a str>,
    /// Each name resolved in the namespace.
    resolved: Vec<Resolved<'a>>,
}

/// Decide for one pod or pod template, as the kubelet would pull its images: the images read,
/// their registries classified, the pod's secrets resolved, each image covered (or a secret
/// injected for it), then the credentials it would use checked.
pub fn evaluate_pod<'a>(
    view: &'a PodView,
    ctx: &PodContext<'_>,
    policy: &Policy,
    index: &'a ClusterIndex,
) -> Decision<'a> {
    let ns = index.namespace(ctx.namespace);
    let mut d = new_decision(view, ctx, policy, ns);
    if d.excluded {
        return d;
    }
    let mut findings = Vec::new();
    d.images = read_images(view, &mut findings);
    // One match target per image, reused by every step below. Targets borrow their names, which
    // are copied into one buffer so that `d.images` can still be changed.
    let (names, spans) = image_names(&d.images);
    let targets = match_targets(&names, &spans);
    classify_registries(&mut d.images, &targets, policy, index, ctx.namespace);

    if d.static_pod {
        static_pod_findings(&d, view.pod.spec.has_own_pull_secrets(), &mut findings);
        d.findings = sorted(findings);
        return d;
    }

    let secrets = pod_secrets(view, ns, index, ctx, &mut findings);
    d.image_pull_secrets = secrets.names.clone();
    let (mut usable, fatal) = secrets.keyring();
    if let Some(bad) = fatal {
        // The kubelet's keyring construction fails: every pull of this pod fails, public images too.
        let message = findings::secret_unusable_for_pod(
            &bad.name,
            &secrets.source.field(),
            &payload_error(bad),
            ctx.namespace,
        );
        findings.push(Finding::general(
            Code::MalformedSecret,
            Severity::Error,
            message,
        ));
    }
    let can_inject = d.effective.inject
        && ctx.allow_inject
        && ctx.operation == Operation::Create
        && !view.pod.metadata.annotations.inject_opt_out
        && fatal.is_none();
    let mut blamed: Vec<&str> = Vec::new();
    let lookups = if fatal.is_some() {
        vec![None; d.images.len()]
    } else {
        cover_or_inject(
            &mut d,
            &targets,
            &secrets,
            &mut usable,
            can_inject,
            &mut blamed,
            &mut findings,
        )
    };
    // Referenced-secret problems that did not cause a failure are still worth fixing.
    for r in &secrets.resolved {
        name_level_findings(r, ns, index, ctx, secrets.source, &blamed, &mut findings);
    }
    check_used_credentials(
        &mut d,
        &targets,
        lookups,
        &usable,
        &secrets,
        policy,
        &mut findings,
    );

    d.findings = sorted(findings);
    d.would_deny = d.findings.iter().any(|f| f.severity == Severity::Error);
    d.allowed = !(d.effective.validation == Validation::Deny && d.would_deny);
    d
}

/// The decision before any image is looked at: the namespace's settings and the pod's kind.
fn new_decision<'a>(
    view: &'a PodView,
    ctx: &PodContext<'_>,
    policy: &Policy,
    ns: &NamespaceInfo,
) -> Decision<'a> {
    Decision {
        effective: policy.for_namespace(&ns.overrides),
        excluded: policy.excludes(ctx.namespace),
        static_pod: view.kind == WorkloadKind::Pod && view.pod.metadata.is_mirror(),
        allowed: true,
        would_deny: false,
        injected: Vec::new(),
        had_own_pull_secrets: view.pod.spec.has_own_pull_secrets(),
        image_pull_secrets: Vec::new(),
        images: Vec::new(),
        findings: Vec::new(),
    }
}

/// Every container's image, parsed; an `InvalidImageReference` for each that does not parse.
fn read_images<'a>(view: &'a PodView, findings: &mut Vec<Finding>) -> Vec<ImageDetail<'a>> {
    let spec = &view.pod.spec;
    let mut images = Vec::with_capacity(spec.all_containers().count());
    for (kind, c) in spec.all_containers() {
        let image = c.image.as_deref().unwrap_or_default();
        let parsed = if image.is_empty() {
            Err(findings::no_image(&c.name, container_field(kind)))
        } else {
            ImageRef::parse(image)
                .map_err(|e| findings::invalid_reference(image, &c.name, &e, container_field(kind)))
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
        images.push(ImageDetail {
            container: &c.name,
            container_kind: kind,
            image,
            reference,
            requires_credentials: false,
            registry_class: None,
            matched_secrets: Vec::new(),
        });
    }
    images
}

/// The parsed images' names in one buffer, and where each image's name lies in it.
fn image_names(images: &[ImageDetail<'_>]) -> (String, Vec<Option<Range<usize>>>) {
    let mut names = String::with_capacity(
        images
            .iter()
            .filter_map(|i| i.reference.as_ref())
            .map(|r| r.name().len())
            .sum(),
    );
    let spans = images
        .iter()
        .map(|img| {
            img.reference.as_ref().map(|r| {
                let start = names.len();
                names.push_str(r.name());
                start..names.len()
            })
        })
        .collect();
    (names, spans)
}

/// A match target per parsed image, borrowing its name from `names`.
fn match_targets<'n>(
    names: &'n str,
    spans: &[Option<Range<usize>>],
) -> Vec<Option<MatchTarget<'n>>> {
    spans
        .iter()
        .map(|span| {
            span.clone()
                .and_then(|s| names.get(s))
                .map(MatchTarget::new)
        })
        .collect()
}

/// Whether each image's registry needs credentials, and why.
fn classify_registries<'a>(
    images: &mut [ImageDetail<'a>],
    targets: &[Option<MatchTarget<'_>>],
    policy: &Policy,
    index: &'a ClusterIndex,
    namespace: &str,
) {
    for (img, t) in images.iter_mut().zip(targets) {
        img.registry_class = t
            .as_ref()
            .map(|t| classify(&policy.registries, t, index, namespace));
        img.requires_credentials = img.registry_class.is_some_and(|c| c.requires_credentials());
    }
}

/// The secrets the pod names, resolved in its namespace (the ServiceAccount admission plugin
/// copies the ServiceAccount's only when the pod names none), and a finding when the pod's
/// ServiceAccount does not exist.
fn pod_secrets<'a, 'c>(
    view: &'a PodView,
    ns: &'a NamespaceInfo,
    index: &'a ClusterIndex,
    ctx: &'c PodContext<'c>,
    findings: &mut Vec<Finding>,
) -> PodSecrets<'a, 'c> {
    let spec = &view.pod.spec;
    let sa_name = spec.service_account();
    let sa = ns.service_accounts.get(sa_name);
    let (source, names): (Source<'a>, Vec<&'a str>) = if spec.has_own_pull_secrets() {
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
            findings::service_account_missing(sa_name, ctx.namespace),
        ));
    }
    let resolved = names.iter().map(|n| resolve(ns, n)).collect();
    PodSecrets {
        ns,
        index,
        ctx,
        source,
        sa_name,
        names,
        resolved,
    }
}

impl<'a> PodSecrets<'a, '_> {
    /// The kubelet's keyring of the pod's usable secrets, and the first secret whose payload
    /// makes building it fail (then every pull of the pod fails).
    fn keyring(&self) -> (Keyring<'a, &'a str>, Option<&'a SecretInfo>) {
        let mut usable: Keyring<'a, &'a str> = Keyring::new();
        let mut fatal: Option<&'a SecretInfo> = None;
        for r in &self.resolved {
            match r {
                Resolved::Usable(s) => usable.add(s.usable_keys(), &*s.name),
                Resolved::Unusable(s) if s.payload.as_ref().is_err_and(|e| e.is_fatal()) => {
                    fatal = fatal.or(Some(s));
                }
                _ => {}
            }
        }
        (usable, fatal)
    }
}

/// Coverage with what the pod has, then injection for what is left uncovered: injected secrets
/// join `d.injected`, the pod's imagePullSecrets and `usable`; each image nothing covers gets a
/// finding naming why. Returns
/// what the kubelet would use for each image covered at first, still right at the end unless a
/// secret was injected meanwhile, so that each image is usually looked up only once.
fn cover_or_inject<'a>(
    d: &mut Decision<'a>,
    targets: &[Option<MatchTarget<'_>>],
    secrets: &PodSecrets<'a, '_>,
    usable: &mut Keyring<'a, &'a str>,
    can_inject: bool,
    blamed: &mut Vec<&'a str>,
    findings: &mut Vec<Finding>,
) -> Vec<Option<Vec<&'a str>>> {
    let mut lookups: Vec<Option<Vec<&'a str>>> = vec![None; d.images.len()];
    for ((img, target), slot) in d.images.iter().zip(targets).zip(&mut lookups) {
        let Some(r) = img.reference.as_ref().filter(|_| img.requires_credentials) else {
            continue;
        };
        let Some(target) = target.as_ref() else {
            continue;
        };
        let found = usable.lookup_values(target);
        if !found.is_empty() {
            *slot = Some(found);
            continue;
        }
        let candidate = secrets
            .ns
            .pull_secrets_newest_first()
            .into_iter()
            .find(|s| s.payload.is_ok() && s.covers(target) && !secrets.names.contains(&&*s.name));
        match candidate {
            Some(s) if can_inject => {
                if !d.injected.contains(&&*s.name) {
                    d.injected.push(&s.name);
                    usable.add(s.usable_keys(), &*s.name);
                }
            }
            _ => {
                let mut f = uncovered_finding(secrets, img, r, target, candidate, blamed);
                if !img.registry_class.is_none_or(|c| c.is_certain()) {
                    f.severity = Severity::Warning;
                    f.message.push_str(findings::MAYBE_PUBLIC);
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
            findings::secrets_injected(&d.injected),
        ));
    }
    lookups
}

/// Record what the kubelet will use for each image, and find what is fragile in it: more than one
/// covering secret, secrets older than `maxSecretAge`, credentials a registry rejected.
fn check_used_credentials<'a>(
    d: &mut Decision<'a>,
    targets: &[Option<MatchTarget<'_>>],
    lookups: Vec<Option<Vec<&'a str>>>,
    usable: &Keyring<'a, &'a str>,
    secrets: &PodSecrets<'a, '_>,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) {
    // Verification is opt-in: without any result recorded no credential can have been rejected.
    let verified = secrets.ctx.verified.filter(|t| !t.is_empty());
    let injected = !d.injected.is_empty();
    for ((img, target), found) in d.images.iter_mut().zip(targets).zip(lookups) {
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
                findings::ambiguous_credentials(r.domain(), &img.matched_secrets),
            ));
        }
        stale_credentials(img, r, secrets.ns, secrets.ctx.now, policy, findings);
        if let Some(table) = verified {
            let hits = usable.lookup(target);
            rejected_credentials(img, r, &hits, secrets, table, policy, findings);
        }
    }
}

/// `StaleCredentials`: a secret covering the image is older than `maxSecretAge`.
fn stale_credentials(
    img: &ImageDetail<'_>,
    r: &ImageRef,
    ns: &NamespaceInfo,
    now: i64,
    policy: &Policy,
    findings: &mut Vec<Finding>,
) {
    let Some(max) = policy.max_secret_age else {
        return;
    };
    for name in &img.matched_secrets {
        let Some(s) = ns.secrets.get(name) else {
            continue;
        };
        let Some(created) = s.created else { continue };
        let age = now.saturating_sub(created);
        if age > i64::try_from(max.0.as_secs()).unwrap_or(i64::MAX) {
            findings.push(Finding::for_image(
                Code::StaleCredentials,
                Severity::Warning,
                img.container,
                img.image,
                Some(r.domain()),
                findings::stale_credentials(name, r.domain(), age / 86_400, &max),
            ));
        }
    }
}

/// Why one image is not covered, as an error finding: the first cause found in the order below
/// (a referenced secret blamed for it is recorded in `blamed`, so it gets no second finding).
fn uncovered_finding<'a>(
    secrets: &PodSecrets<'a, '_>,
    img: &ImageDetail<'_>,
    r: &ImageRef,
    target: &MatchTarget<'_>,
    candidate: Option<&'a SecretInfo>,
    blamed: &mut Vec<&'a str>,
) -> Finding {
    let (code, message) = referenced_cause(secrets, img.image, r, target, blamed)
        .unwrap_or_else(|| unreferenced_cause(secrets, img.image, r, target, candidate));
    let recreate = if secrets.ctx.operation == Operation::Update {
        findings::RECREATE_POD
    } else {
        ""
    };
    Finding::for_image(
        code,
        Severity::Error,
        img.container,
        img.image,
        Some(r.domain()),
        format!("{message}{recreate}"),
    )
}

/// Causes 1–2 of an uncovered image: a secret the pod references is to blame.
fn referenced_cause<'a>(
    secrets: &PodSecrets<'a, '_>,
    image: &str,
    r: &ImageRef,
    target: &MatchTarget<'_>,
    blamed: &mut Vec<&'a str>,
) -> Option<(Code, String)> {
    let namespace = secrets.ctx.namespace;
    // 1. A referenced secret is for this host, but not exactly.
    let referenced = secrets.resolved.iter().filter_map(|x| match x {
        Resolved::Usable(s) => Some(*s),
        _ => None,
    });
    if let Some((s, key, why)) = near_miss(referenced, target) {
        blamed.push(&s.name);
        return Some((
            Code::RegistryMismatch,
            mismatch_message(image, r, s, key, &why),
        ));
    }
    // 2. A referenced secret is missing, in another namespace, of the wrong type, or unusable.
    for x in &secrets.resolved {
        let cause = match x {
            Resolved::Missing(name) => {
                blamed.push(name);
                let message = missing_message(
                    secrets.ns,
                    secrets.index,
                    secrets.ctx,
                    name,
                    secrets.source,
                    Some(r.domain()),
                );
                (missing_code(secrets.index, name, namespace), message)
            }
            Resolved::WrongType(s) => {
                blamed.push(&s.name);
                (Code::WrongSecretType, wrong_type_message(s, namespace))
            }
            Resolved::Unusable(s) => {
                blamed.push(&s.name);
                let message = findings::secret_gives_image_nothing(
                    &s.name,
                    &payload_error(s),
                    image,
                    namespace,
                    r.domain(),
                );
                (Code::MalformedSecret, message)
            }
            Resolved::Usable(_) => continue,
        };
        return Some(cause);
    }
    None
}

/// Causes 3–5 of an uncovered image: nothing the pod references is to blame.
fn unreferenced_cause(
    secrets: &PodSecrets<'_, '_>,
    image: &str,
    r: &ImageRef,
    target: &MatchTarget<'_>,
    candidate: Option<&SecretInfo>,
) -> (Code, String) {
    let (ns, namespace, registry) = (secrets.ns, secrets.ctx.namespace, r.domain());
    // 3. A matching secret exists here but nothing references it.
    if let Some(s) = candidate {
        let other_sa = ns.service_accounts.values().find(|a| {
            a.name != secrets.sa_name && a.image_pull_secrets.iter().any(|n| **n == *s.name)
        });
        let message = findings::service_account_not_patched(
            &s.name,
            registry,
            secrets.sa_name,
            namespace,
            other_sa.map(|a| a.name.as_str()),
        );
        return (Code::ServiceAccountNotPatched, message);
    }
    // 4. An unreferenced secret of the namespace is for this host, but not exactly.
    let all = ns
        .secrets
        .values()
        .filter(|s| s.payload.is_ok() && s.is_pull_type());
    if let Some((s, key, why)) = near_miss(all, target) {
        return (
            Code::RegistryMismatch,
            mismatch_message(image, r, s, key, &why),
        );
    }
    // 5. Nothing here covers it.
    let elsewhere = secrets.index.covering_elsewhere(target, namespace, 3);
    let list: Vec<String> = elsewhere
        .found
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    let where_ = if !list.is_empty() {
        findings::Elsewhere::Found(&list)
    } else if elsewhere.exhaustive {
        findings::Elsewhere::Nowhere
    } else {
        findings::Elsewhere::NoneOfFirst(MAX_ELSEWHERE_CANDIDATES)
    };
    let message = findings::no_credentials(namespace, registry, image, where_);
    (Code::NoCredentials, message)
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

/// Why a secret's payload is unusable, as text ("" for a usable one).
fn payload_error(s: &SecretInfo) -> String {
    s.payload
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default()
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
                findings::dockercfg_referenced(name, ctx.namespace),
            ));
        }
        if let Ok(p) = &s.payload {
            if !p.ignored_helpers.is_empty() {
                out.push(Finding::general(
                    Code::CredentialHelperIgnored,
                    Severity::Warning,
                    findings::credential_helpers_ignored(name, &p.ignored_helpers),
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
            Finding::general(
                Code::MalformedSecret,
                Severity::Warning,
                findings::secret_gives_nothing_referenced(&s.name, &payload_error(s)),
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

/// The message of a missing secret: where else it exists, or the closest name that does.
fn missing_message(
    ns: &NamespaceInfo,
    index: &ClusterIndex,
    ctx: &PodContext<'_>,
    name: &str,
    source: Source<'_>,
    registry: Option<&str>,
) -> String {
    let others: Vec<&str> = index
        .namespaces_with_secret(name, ctx.namespace)
        .take(3)
        .collect();
    if !others.is_empty() {
        return findings::secret_in_other_namespace(name, &source.field(), &others, ctx.namespace);
    }
    let suggestion = closest(
        name,
        ns.secrets
            .values()
            .filter(|s| s.is_pull_type())
            .map(|s| &*s.name),
    );
    findings::secret_not_found(name, &source.field(), ctx.namespace, suggestion, registry)
}

fn wrong_type_message(s: &OtherSecret, namespace: &str) -> String {
    findings::wrong_secret_type(&s.name, s.secret_type.as_deref(), namespace)
}

/// The message of a key that misses the image: the key as the secret wrote it, and why.
fn mismatch_message(
    image: &str,
    r: &ImageRef,
    s: &SecretInfo,
    key: &RegistryKey,
    why: &super::keyring::NearMiss,
) -> String {
    let raw = s
        .payload
        .as_ref()
        .ok()
        .and_then(|p| p.entries.iter().find(|e| e.key.as_ref().ok() == Some(key)))
        .map_or(key.as_str(), |e| e.raw());
    findings::registry_mismatch(image, r.name(), r.domain(), &s.name, &s.namespace, raw, why)
}

/// The first key among `secrets` that is for the image's host but does not cover it.
fn near_miss<'s>(
    secrets: impl Iterator<Item = &'s SecretInfo>,
    target: &MatchTarget<'_>,
) -> Option<(&'s SecretInfo, &'s RegistryKey, super::keyring::NearMiss)> {
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
            findings::static_pod_image(img.image),
        ));
    }
    if references_secrets {
        out.push(Finding::general(
            Code::StaticPod,
            Severity::Warning,
            findings::STATIC_POD_WITH_SECRETS.to_owned(),
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
    secrets: &PodSecrets<'_, '_>,
    table: &VerificationTable,
    policy: &Policy,
    out: &mut Vec<Finding>,
) {
    let namespace = secrets.ctx.namespace;
    let tried: Vec<(&str, &str)> = hits.iter().map(|(k, name)| (*name, k.as_str())).collect();
    let rejected: Vec<&(&str, &str)> = tried
        .iter()
        .filter(|(name, key)| {
            table.credential_status(secrets.index, namespace, name, key)
                == Some(CredentialStatus::Rejected)
        })
        .collect();
    let all_rejected = rejected.len() == tried.len();
    let severity = if policy.verify.deny && all_rejected {
        Severity::Error
    } else {
        Severity::Warning
    };
    for (name, key) in &rejected {
        let others: Vec<&str> = img
            .matched_secrets
            .iter()
            .copied()
            .filter(|n| n != name)
            .collect();
        out.push(Finding::for_image(
            Code::CredentialsRejected,
            severity,
            img.container,
            img.image,
            Some(r.domain()),
            findings::credentials_rejected(
                key,
                name,
                img.image,
                namespace,
                (!all_rejected).then_some(others.as_slice()),
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
        verified: None,
    };
    let source = Source::ServiceAccount(sa_name);
    for name in dedup(referenced.iter().copied()) {
        let r = resolve(ns, name);
        if let Resolved::Unusable(s) = r {
            if s.payload.as_ref().is_err_and(|e| e.is_fatal()) {
                d.findings.push(Finding::general(
                    Code::MalformedSecret,
                    Severity::Warning,
                    findings::secret_unusable_for_service_account(name, &payload_error(s)),
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
            findings::dockercfg_secret(&s.name),
        ));
    }
    match &s.payload {
        Err(e) => out.push(Finding::general(
            Code::MalformedSecret,
            Severity::Warning,
            findings::secret_payload_unusable(&s.name, e, e.is_fatal()),
        )),
        Ok(p) => {
            if !p.ignored_helpers.is_empty() {
                out.push(Finding::general(
                    Code::CredentialHelperIgnored,
                    Severity::Warning,
                    findings::credential_helpers_ignored(&s.name, &p.ignored_helpers),
                ));
            }
            for e in &p.entries {
                let decorated =
                    e.raw().contains("://") || e.key.as_ref().is_ok_and(|k| !k.path().is_empty());
                let covers_private = e.key.as_ref().is_ok_and(|k| {
                    policy
                        .registries
                        .requires_credentials(&MatchTarget::new(k.served_name()))
                });
                match &e.key {
                    Err(err) => out.push(Finding::general(
                        Code::RegistryMismatch,
                        Severity::Warning,
                        findings::key_ignored(&s.name, e.raw(), err),
                    )),
                    Ok(k) if decorated && !covers_private => out.push(Finding::general(
                        Code::RegistryMismatch,
                        Severity::Warning,
                        findings::key_matches_no_private_registry(&s.name, e.raw(), k.as_str()),
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
            verified: None,
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
            let mut t = VerificationTable::new();
            assert!(t.record(
                idx,
                "shop",
                name,
                SecretVerification {
                    resource_version: rv,
                    verified_at: NOW,
                    keys: BTreeMap::from([(key.to_owned(), status)]),
                },
            ));
            t
        };
        let idx = shop();
        let t = verified(
            &idx,
            "regcred",
            "registry.example.com",
            CredentialStatus::Rejected,
        );
        let v = one("registry.example.com/shop/web:1", &["regcred"]);
        // Without the results passed in, nothing is known about the credentials.
        let d = evaluate_pod(&v, &ctx(false), &deny(), &idx);
        assert!(d.findings.is_empty(), "{:?}", d.findings);
        let c = ctx(false).with_verified(Some(&t));
        // Warning by default: admitted even in deny mode.
        let d = evaluate_pod(&v, &c, &deny(), &idx);
        assert!(d.allowed && !d.would_deny);
        assert_eq!(codes(&d), [Code::CredentialsRejected]);
        assert_eq!(d.findings[0].severity, Severity::Warning);
        assert!(d.findings[0].message.contains("no other credential"));
        // verify.deny makes it an error.
        let mut p = deny();
        p.verify.deny = true;
        let d = evaluate_pod(&v, &c, &p, &idx);
        assert!(!d.allowed && d.would_deny);
        assert_eq!(d.findings[0].severity, Severity::Error);
        // Valid, unreachable or unknown credentials say nothing.
        for status in [CredentialStatus::Valid, CredentialStatus::Unreachable] {
            let idx = shop();
            let t = verified(&idx, "regcred", "registry.example.com", status);
            let c = ctx(false).with_verified(Some(&t));
            assert!(evaluate_pod(&v, &c, &p, &idx).findings.is_empty());
        }
        // A second, unrejected secret for the registry: the kubelet falls back, so a warning only.
        let mut idx = shop();
        idx.upsert_secret(pull_secret("shop", "spare", &["registry.example.com"], NOW));
        let t = verified(
            &idx,
            "regcred",
            "registry.example.com",
            CredentialStatus::Rejected,
        );
        let v2 = one("registry.example.com/shop/web:1", &["regcred", "spare"]);
        let c = ctx(false).with_verified(Some(&t));
        let d = evaluate_pod(&v2, &c, &p, &idx);
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
        let t = verified(
            &idx,
            "regcred",
            "registry.example.com",
            CredentialStatus::Rejected,
        );
        let mut rotated = pull_secret("shop", "regcred", &["registry.example.com"], NOW);
        rotated.resource_version = Some("2".into());
        idx.upsert_secret(rotated);
        let c = ctx(false).with_verified(Some(&t));
        assert!(evaluate_pod(&v, &c, &p, &idx).findings.is_empty());
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
