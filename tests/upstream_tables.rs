//! An independent audit of the engine against the upstream projects' own test tables.
//!
//! Each table below restates, in this project's terms, what one upstream Go test function
//! expects; the comment on each table names that function. Where an upstream test calls an API
//! pullgate does not expose (`Parse`, `WithName`, the raw regular expressions), the case is
//! restated for `ParseNormalizedNamed` (the only parser the kubelet uses), and the expectation
//! was worked out from upstream's source (normalize.go `splitDockerDomain`, reference.go `Parse`),
//! not copied from the Go test.
//!
//! Upstream sources:
//! - github.com/distribution/reference: reference_test.go, normalize_test.go, regexp_test.go
//! - kubernetes/kubernetes pkg/credentialprovider: keyring_test.go, config_test.go,
//!   secrets/secrets_test.go; keyring.go and config.go for behaviour no test pins down.
//!
//! Every table collects all its mismatches before failing, so one run lists every discrepancy.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::Engine as _;
use pullgate::engine::keyring::{is_default_registry_match, Keyring, MatchTarget, RegistryKey};
use pullgate::engine::pullsecret::{
    credentials_for, parse_pull_secret, PayloadError, DOCKERCFG_KEY, DOCKERCFG_TYPE,
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE,
};
use pullgate::engine::reference::{ImageRef, ReferenceError};
use serde_json::{json, Value};

#[path = "upstream/entry_points.rs"]
mod entry_points;

use entry_points::{disagreements, RowSecret};

// ---------------------------------------------------------------------------------------------
// Image references (distribution/reference)
// ---------------------------------------------------------------------------------------------

/// 64 hex digits of `f`, the digest most upstream reference cases use.
fn hex_f() -> String {
    "f".repeat(64)
}

const BE: &str = "be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";
const DBCC: &str = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
const HEX_ID: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

/// What `ParseNormalizedNamed` should do with one input.
#[derive(Debug)]
enum Want {
    /// Accepted, with these parts of the normalised reference.
    Parsed {
        domain: String,
        path: String,
        tag: Option<String>,
        digest: Option<String>,
    },
    /// Refused with exactly this error.
    Refused(ReferenceError),
    /// Refused; the upstream test only asserts that some error is returned.
    RefusedSomehow,
}

struct RefCase {
    /// The upstream test function the case comes from.
    origin: &'static str,
    input: String,
    want: Want,
}

fn accepts(origin: &'static str, input: impl Into<String>, domain: &str, path: &str) -> RefCase {
    RefCase {
        origin,
        input: input.into(),
        want: Want::Parsed {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: None,
            digest: None,
        },
    }
}

fn refuses(origin: &'static str, input: impl Into<String>, err: ReferenceError) -> RefCase {
    RefCase {
        origin,
        input: input.into(),
        want: Want::Refused(err),
    }
}

fn refuses_somehow(origin: &'static str, input: impl Into<String>) -> RefCase {
    RefCase {
        origin,
        input: input.into(),
        want: Want::RefusedSomehow,
    }
}

impl RefCase {
    fn tag(mut self, t: &str) -> Self {
        if let Want::Parsed { tag, .. } = &mut self.want {
            *tag = Some(t.to_owned());
        }
        self
    }

    fn digest(mut self, d: &str) -> Self {
        if let Want::Parsed { digest, .. } = &mut self.want {
            *digest = Some(d.to_owned());
        }
        self
    }

    /// The mismatch between pullgate and the expectation, if any.
    fn check(&self) -> Option<String> {
        let got = ImageRef::parse(&self.input);
        let describe = |what: String| {
            Some(format!(
                "[{}] {:?}: {what}; got {got:?}",
                self.origin, self.input
            ))
        };
        match (&self.want, &got) {
            (
                Want::Parsed {
                    domain,
                    path,
                    tag,
                    digest,
                },
                Ok(r),
            ) => {
                let name = format!("{domain}/{path}");
                let mut full = name.clone();
                if let Some(t) = tag {
                    full = format!("{full}:{t}");
                }
                if let Some(d) = digest {
                    full = format!("{full}@{d}");
                }
                let same = r.domain() == domain
                    && r.path() == path
                    && r.name() == name
                    && r.tag() == tag.as_deref()
                    && r.digest() == digest.as_deref()
                    && r.to_string() == full;
                (!same).then(|| {
                    format!(
                        "[{}] {:?}: want {full:?} (domain {domain:?}, path {path:?}, tag {tag:?}, digest {digest:?}); got {:?} (domain {:?}, path {:?}, tag {:?}, digest {:?})",
                        self.origin,
                        self.input,
                        r.to_string(),
                        r.domain(),
                        r.path(),
                        r.tag(),
                        r.digest()
                    )
                })
            }
            (Want::Parsed { .. }, Err(_)) => describe("want it accepted".to_owned()),
            (Want::Refused(want), Err(e)) if e == want => None,
            (Want::Refused(want), _) => describe(format!("want error {want:?}")),
            (Want::RefusedSomehow, Err(_)) => None,
            (Want::RefusedSomehow, Ok(_)) => describe("want an error".to_owned()),
        }
    }
}

#[track_caller]
fn run_reference_cases(cases: &[RefCase]) {
    assert!(!cases.is_empty());
    let mut failures: Vec<String> = cases.iter().filter_map(RefCase::check).collect();
    // The same images in pods, through evaluate_pod and the `pullgate check` binary.
    let images: Vec<String> = cases.iter().map(|c| c.input.clone()).collect();
    for (case, (engine, from_check)) in cases
        .iter()
        .zip(entry_points::parsed_by_entry_points(&images))
    {
        let want = match &case.want {
            Want::Parsed { domain, path, .. } => Some((domain.clone(), path.clone())),
            Want::Refused(_) | Want::RefusedSomehow => None,
        };
        let reported = from_check["registry"].as_str().map(|d| {
            let path = from_check["repository"].as_str().unwrap_or_default();
            (d.to_owned(), path.to_owned())
        });
        if engine != want || reported != want {
            failures.push(format!(
                "[{}] {:?} in a pod: want {want:?}; evaluate_pod {engine:?}, pullgate check {reported:?}",
                case.origin, case.input
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} reference cases disagree with upstream:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// reference_test.go `TestReferenceParse`, restated for `ParseNormalizedNamed`: inputs without a
/// domain gain `docker.io` (and `library/` for one component), so `Parse`'s `ErrNameEmpty` for ""
/// becomes an invalid-format error and `Uppercase:tag` reports the normalised remote name.
#[test]
fn reference_parse_table() {
    use ReferenceError::*;
    const T: &str = "TestReferenceParse";
    let ff = hex_f();
    let sha = format!("sha256:{ff}");
    let sha512 = format!("sha512:{}", "f".repeat(128));
    let deep_ok = format!("{}a", "a/".repeat(127));
    let cases = vec![
        accepts(T, "test_com", "docker.io", "library/test_com"),
        accepts(T, "test.com:tag", "docker.io", "library/test.com").tag("tag"),
        accepts(T, "test.com:5000", "docker.io", "library/test.com").tag("5000"),
        accepts(T, "test.com/repo:tag", "test.com", "repo").tag("tag"),
        accepts(T, "test:5000/repo", "test:5000", "repo"),
        accepts(T, "test:5000/repo:tag", "test:5000", "repo").tag("tag"),
        accepts(T, format!("test:5000/repo@{sha}"), "test:5000", "repo").digest(&sha),
        accepts(T, format!("test:5000/repo:tag@{sha}"), "test:5000", "repo")
            .tag("tag")
            .digest(&sha),
        refuses(T, "", ReferenceInvalidFormat),
        refuses(T, ":justtag", ReferenceInvalidFormat),
        refuses(T, format!("@{sha}"), ReferenceInvalidFormat),
        refuses(
            T,
            format!("repo@sha256:{}", "f".repeat(34)),
            ChecksumInvalidLength,
        ),
        refuses(
            T,
            format!("validname@invaliddigest:{ff}"),
            DigestUnsupported,
        ),
        refuses(
            T,
            "Uppercase:tag",
            NameContainsUppercase("library/Uppercase".into()),
        ),
        refuses(
            T,
            "test:5000/Uppercase/lowercase:tag",
            NameContainsUppercase("Uppercase/lowercase".into()),
        ),
        accepts(T, "lowercase:Uppercase", "docker.io", "library/lowercase").tag("Uppercase"),
        // 257 bytes of path; the first component has no '.' or ':', so it is all path.
        refuses(T, format!("{}a:tag", "a/".repeat(128)), NameTooLong),
        // Exactly 255 bytes of path.
        accepts(
            T,
            format!("{deep_ok}:tag-puts-this-over-max"),
            "docker.io",
            &deep_ok,
        )
        .tag("tag-puts-this-over-max"),
        refuses(T, "aa/asdf$$^/aa", ReferenceInvalidFormat),
        accepts(
            T,
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
        ),
        accepts(
            T,
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
        )
        .tag("some-long-tag"),
        accepts(
            T,
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
        )
        .tag("test.example.com"),
        accepts(
            T,
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
        )
        .tag("xn--n3h.com"),
        accepts(
            T,
            format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
            "xn--7o8h.com",
            "myimage",
        )
        .tag("xn--7o8h.com")
        .digest(&sha512),
        accepts(T, "foo_bar.com:8080", "docker.io", "library/foo_bar.com").tag("8080"),
        accepts(T, "foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com").tag("8080"),
        accepts(T, "192.168.1.1", "docker.io", "library/192.168.1.1"),
        accepts(T, "192.168.1.1:tag", "docker.io", "library/192.168.1.1").tag("tag"),
        accepts(T, "192.168.1.1:5000", "docker.io", "library/192.168.1.1").tag("5000"),
        accepts(T, "192.168.1.1/repo", "192.168.1.1", "repo"),
        accepts(T, "192.168.1.1:5000/repo", "192.168.1.1:5000", "repo"),
        accepts(T, "192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo").tag("5050"),
        refuses(T, "[2001:db8::1]", ReferenceInvalidFormat),
        refuses(T, "[2001:db8::1]:5000", ReferenceInvalidFormat),
        refuses(T, "[2001:db8::1]:tag", ReferenceInvalidFormat),
        accepts(T, "[2001:db8::1]/repo", "[2001:db8::1]", "repo"),
        accepts(
            T,
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "repo",
        )
        .tag("tag"),
        accepts(T, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo"),
        accepts(
            T,
            "[2001:db8::1]:5000/repo:tag",
            "[2001:db8::1]:5000",
            "repo",
        )
        .tag("tag"),
        accepts(
            T,
            format!("[2001:db8::1]:5000/repo@{sha}"),
            "[2001:db8::1]:5000",
            "repo",
        )
        .digest(&sha),
        accepts(
            T,
            format!("[2001:db8::1]:5000/repo:tag@{sha}"),
            "[2001:db8::1]:5000",
            "repo",
        )
        .tag("tag")
        .digest(&sha),
        accepts(T, "[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo"),
        accepts(T, "[::1]:5000/repo", "[::1]:5000", "repo"),
        refuses(T, "[fe80::1%eth0]:5000/repo", ReferenceInvalidFormat),
        refuses(
            T,
            "[fe80::1%@invalidzone]:5000/repo",
            ReferenceInvalidFormat,
        ),
    ];
    run_reference_cases(&cases);
}

/// reference_test.go `TestDomainAndPath`, `TestSerialization` and `TestWithNameFailure`, restated
/// for `ParseNormalizedNamed` (names that already have a domain keep it).
#[test]
fn domain_path_and_serialization_tables() {
    use ReferenceError::*;
    const DP: &str = "TestDomainAndPath";
    const SER: &str = "TestSerialization";
    const WN: &str = "TestWithNameFailure";
    let ser_digest = "sha256:1234567890098765432112345667890098765432112345667890098765432112";
    let cases = vec![
        accepts(DP, "test.com/foo", "test.com", "foo"),
        // `WithName` leaves the domain empty here; `ParseNormalizedNamed` puts it on Docker Hub.
        accepts(DP, "test_com/foo", "docker.io", "test_com/foo"),
        accepts(DP, "test:8080/foo", "test:8080", "foo"),
        accepts(DP, "test.com:8080/foo", "test.com:8080", "foo"),
        accepts(DP, "test-com:8080/foo", "test-com:8080", "foo"),
        accepts(DP, "xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        accepts(SER, "example.com:8000/named", "example.com:8000", "named"),
        accepts(
            SER,
            "example.com:8000/named:tagged",
            "example.com:8000",
            "named",
        )
        .tag("tagged"),
        accepts(
            SER,
            format!("other.com/named@{ser_digest}"),
            "other.com",
            "named",
        )
        .digest(ser_digest),
        refuses(SER, "", ReferenceInvalidFormat),
        refuses_somehow(WN, ":justtag"),
        refuses_somehow(WN, format!("@sha256:{}", hex_f())),
        refuses_somehow(WN, format!("validname@invaliddigest:{}", hex_f())),
        refuses_somehow(WN, format!("{}a:tag", "a/".repeat(128))),
        refuses_somehow(WN, "aa/asdf$$^/aa"),
    ];
    run_reference_cases(&cases);
}

/// reference_test.go `TestParseNamed`: `ParseNamed` accepts exactly the inputs whose
/// `ParseNormalizedNamed` form prints back unchanged (reference.go `ParseNamed`).
#[test]
fn parse_named_canonical_table() {
    // (input, canonical domain and path when ParseNamed accepts it)
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("test.com/foo", Some(("test.com", "foo"))),
        ("test:8080/foo", Some(("test:8080", "foo"))),
        ("test_com/foo", None),
        ("test.com", None),
        ("foo", None),
        ("library/foo", None),
        ("docker.io/library/foo", Some(("docker.io", "library/foo"))),
        // Ambiguous: the parser adds "library/".
        ("docker.io/foo", None),
    ];
    let mut failures = Vec::new();
    for &(input, want) in cases {
        let parsed = ImageRef::parse(input);
        let canonical = parsed
            .as_ref()
            .ok()
            .filter(|r| r.to_string() == input)
            .map(|r| (r.domain().to_owned(), r.path().to_owned()));
        let want = want.map(|(d, p)| (d.to_owned(), p.to_owned()));
        if canonical != want {
            failures.push(format!(
                "[TestParseNamed] {input:?}: want canonical {want:?}, got {canonical:?} from {parsed:?}"
            ));
        }
        // Every one of these parses once normalised; only canonicality differs.
        if parsed.is_err() {
            failures.push(format!(
                "[TestParseNamed] {input:?} should parse: {parsed:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// normalize_test.go `TestValidateReferenceName` and `TestValidateRemoteName`: which names
/// `ParseNormalizedNamed` accepts. Upstream asserts only accept/refuse; the exact errors and
/// normalised forms were worked out from normalize.go and reference.go.
#[test]
fn validate_reference_and_remote_name_tables() {
    use ReferenceError::*;
    const RN: &str = "TestValidateReferenceName";
    const RM: &str = "TestValidateRemoteName";
    let song = "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev";
    let long_namespace = format!(
        "{}/docker",
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_".repeat(3)
            + "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"
    );
    let cases = vec![
        accepts(RN, "docker/docker", "docker.io", "docker/docker"),
        accepts(RN, "library/debian", "docker.io", "library/debian"),
        accepts(RN, "debian", "docker.io", "library/debian"),
        accepts(RN, "docker.io/docker/docker", "docker.io", "docker/docker"),
        accepts(
            RN,
            "docker.io/library/debian",
            "docker.io",
            "library/debian",
        ),
        accepts(RN, "docker.io/debian", "docker.io", "library/debian"),
        accepts(
            RN,
            "index.docker.io/docker/docker",
            "docker.io",
            "docker/docker",
        ),
        accepts(
            RN,
            "index.docker.io/library/debian",
            "docker.io",
            "library/debian",
        ),
        accepts(RN, "index.docker.io/debian", "docker.io", "library/debian"),
        accepts(
            RN,
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000",
            "docker/docker",
        ),
        accepts(
            RN,
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000",
            "library/debian",
        ),
        accepts(RN, "127.0.0.1:5000/debian", "127.0.0.1:5000", "debian"),
        accepts(RN, "192.168.0.1", "docker.io", "library/192.168.0.1"),
        accepts(RN, "192.168.0.1:80", "docker.io", "library/192.168.0.1").tag("80"),
        accepts(RN, "192.168.0.1:8/debian", "192.168.0.1:8", "debian"),
        accepts(
            RN,
            "192.168.0.2:25000/debian",
            "192.168.0.2:25000",
            "debian",
        ),
        accepts(RN, song, "docker.io", &format!("library/{song}")),
        accepts(RN, "[fc00::1]:5000/docker", "[fc00::1]:5000", "docker"),
        accepts(
            RN,
            "[fc00::1]:5000/docker/docker",
            "[fc00::1]:5000",
            "docker/docker",
        ),
        accepts(
            RN,
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "[fc00:1:2:3:4:5:6:7]:5000",
            "library/debian",
        ),
        // With a domain, 64 hex digits are a repository, not an image ID.
        accepts(
            RN,
            format!("docker.io/{HEX_ID}"),
            "docker.io",
            &format!("library/{HEX_ID}"),
        ),
        // An uppercase first component can only be a domain.
        accepts(RN, "Docker/docker", "Docker", "docker"),
        accepts(RN, "DOCKER/docker", "DOCKER", "docker"),
        refuses(
            RN,
            "https://github.com/docker/docker",
            ReferenceInvalidFormat,
        ),
        refuses(
            RN,
            "docker/Docker",
            NameContainsUppercase("docker/Docker".into()),
        ),
        refuses(RN, "-docker", ReferenceInvalidFormat),
        refuses(RN, "-docker/docker", ReferenceInvalidFormat),
        refuses(RN, "-docker.io/docker/docker", ReferenceInvalidFormat),
        refuses(RN, "docker///docker", ReferenceInvalidFormat),
        refuses(
            RN,
            "docker.io/docker/Docker",
            NameContainsUppercase("docker/Docker".into()),
        ),
        refuses(RN, "docker.io/docker///docker", ReferenceInvalidFormat),
        refuses(RN, "[fc00::1]", ReferenceInvalidFormat),
        refuses(RN, "[fc00::1]:5000", ReferenceInvalidFormat),
        refuses(RN, "fc00::1:5000/debian", ReferenceInvalidFormat),
        refuses(RN, "[fe80::1%eth0]:5000/debian", ReferenceInvalidFormat),
        refuses(
            RN,
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            ReferenceInvalidFormat,
        ),
        refuses(RN, HEX_ID, HexadecimalName(HEX_ID.into())),
        accepts(RM, "docker/docker", "docker.io", "docker/docker"),
        accepts(RM, song, "docker.io", &format!("library/{song}")),
        accepts(
            RM,
            "docker-rules/docker",
            "docker.io",
            "docker-rules/docker",
        ),
        accepts(
            RM,
            "docker---rules/docker",
            "docker.io",
            "docker---rules/docker",
        ),
        accepts(RM, "doc/docker", "docker.io", "doc/docker"),
        accepts(RM, "d/docker", "docker.io", "d/docker"),
        accepts(RM, "jess/t", "docker.io", "jess/t"),
        accepts(RM, "dock__er/docker", "docker.io", "dock__er/docker"),
        refuses(
            RM,
            "docker/Docker",
            NameContainsUppercase("docker/Docker".into()),
        ),
        refuses(RM, "docker///docker", ReferenceInvalidFormat),
        refuses(RM, HEX_ID, HexadecimalName(HEX_ID.into())),
        refuses(RM, "-docker/docker", ReferenceInvalidFormat),
        refuses(RM, "docker-/docker", ReferenceInvalidFormat),
        refuses(RM, "-docker-/docker", ReferenceInvalidFormat),
        refuses(RM, "____/____", ReferenceInvalidFormat),
        refuses(RM, "_docker/_docker", ReferenceInvalidFormat),
        refuses(RM, "dock..er/docker", ReferenceInvalidFormat),
        refuses(RM, "dock_.er/docker", ReferenceInvalidFormat),
        refuses(RM, "dock-.er/docker", ReferenceInvalidFormat),
        refuses(RM, "docker/", ReferenceInvalidFormat),
        refuses(RM, long_namespace, NameTooLong),
    ];
    run_reference_cases(&cases);
}

/// normalize_test.go `TestNormalizedSplitHostname`, `TestParseReferenceWithTagAndDigest`,
/// `TestInvalidReferenceComponents`, and the name-only rows of `TestParseAnyReference` and
/// `TestParseDockerRef` (both fall through to `ParseNormalizedNamed` for names; the rows that
/// `ParseAnyReference` turns into bare digests are restated as what `ParseNormalizedNamed`
/// itself does with them).
#[test]
fn normalized_split_and_any_reference_tables() {
    use ReferenceError::*;
    const NS: &str = "TestNormalizedSplitHostname";
    const TD: &str = "TestParseReferenceWithTagAndDigest";
    const IC: &str = "TestInvalidReferenceComponents";
    const AR: &str = "TestParseAnyReference";
    const DR: &str = "TestParseDockerRef";
    let bb = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let e6 = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
    let dbcc = format!("sha256:{DBCC}");
    let dbcc63 = &DBCC[..63];
    let cases = vec![
        accepts(NS, "test.com/foo", "test.com", "foo"),
        accepts(NS, "test_com/foo", "docker.io", "test_com/foo"),
        accepts(NS, "docker/migrator", "docker.io", "docker/migrator"),
        accepts(NS, "test.com:8080/foo", "test.com:8080", "foo"),
        accepts(NS, "test-com:8080/foo", "test-com:8080", "foo"),
        accepts(NS, "foo", "docker.io", "library/foo"),
        accepts(NS, "xn--n3h.com/foo", "xn--n3h.com", "foo"),
        accepts(NS, "xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        accepts(NS, "docker.io/foo", "docker.io", "library/foo"),
        accepts(NS, "docker.io/library/foo", "docker.io", "library/foo"),
        accepts(
            NS,
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
        ),
        accepts(
            TD,
            format!("busybox:latest@{bb}"),
            "docker.io",
            "library/busybox",
        )
        .tag("latest")
        .digest(bb),
        refuses_somehow(IC, "-foo"),
        accepts(IC, "busybox", "docker.io", "library/busybox"),
        accepts(AR, "redis", "docker.io", "library/redis"),
        accepts(AR, "redis:latest", "docker.io", "library/redis").tag("latest"),
        accepts(
            AR,
            "docker.io/library/redis:latest",
            "docker.io",
            "library/redis",
        )
        .tag("latest"),
        accepts(AR, format!("redis@{dbcc}"), "docker.io", "library/redis").digest(&dbcc),
        accepts(
            AR,
            format!("docker.io/library/redis@{dbcc}"),
            "docker.io",
            "library/redis",
        )
        .digest(&dbcc),
        accepts(AR, "dmcgowan/myapp", "docker.io", "dmcgowan/myapp"),
        accepts(AR, "dmcgowan/myapp:latest", "docker.io", "dmcgowan/myapp").tag("latest"),
        accepts(
            AR,
            "docker.io/mcgowan/myapp:latest",
            "docker.io",
            "mcgowan/myapp",
        )
        .tag("latest"),
        accepts(
            AR,
            format!("dmcgowan/myapp@{dbcc}"),
            "docker.io",
            "dmcgowan/myapp",
        )
        .digest(&dbcc),
        accepts(
            AR,
            format!("docker.io/dmcgowan/myapp@{dbcc}"),
            "docker.io",
            "dmcgowan/myapp",
        )
        .digest(&dbcc),
        // ParseAnyReference makes a digest reference of these two; ParseNormalizedNamed refuses
        // the bare image ID and reads "sha256:<hex>" as repository "sha256" with a hex tag.
        refuses(AR, DBCC, HexadecimalName(DBCC.into())),
        accepts(AR, dbcc.clone(), "docker.io", "library/sha256").tag(DBCC),
        accepts(AR, dbcc63, "docker.io", &format!("library/{dbcc63}")),
        accepts(AR, "dbcc1", "docker.io", "library/dbcc1"),
        accepts(DR, "busybox", "docker.io", "library/busybox"),
        accepts(DR, "busybox:latest", "docker.io", "library/busybox").tag("latest"),
        accepts(DR, format!("busybox@{e6}"), "docker.io", "library/busybox").digest(e6),
        accepts(DR, "library/busybox", "docker.io", "library/busybox"),
        accepts(DR, "docker.io/busybox", "docker.io", "library/busybox"),
        accepts(
            DR,
            "docker.io/library/busybox",
            "docker.io",
            "library/busybox",
        ),
        accepts(
            DR,
            "docker.io/busybox:latest",
            "docker.io",
            "library/busybox",
        )
        .tag("latest"),
        accepts(DR, "library/busybox:latest", "docker.io", "library/busybox").tag("latest"),
        accepts(DR, "gcr.io/library/busybox", "gcr.io", "library/busybox"),
        accepts(
            DR,
            format!("gcr.io/library/busybox:latest@{e6}"),
            "gcr.io",
            "library/busybox",
        )
        .tag("latest")
        .digest(e6),
    ];
    run_reference_cases(&cases);
}

/// regexp_test.go `TestDomainRegexp`, restated as `<domain>/repo`: a first component with '.'
/// or ':' (or "localhost") is taken as the domain, so the reference parses exactly when the
/// domain grammar matches ("a" has neither, and lands on Docker Hub).
#[test]
fn domain_grammar_table() {
    use ReferenceError::*;
    const T: &str = "TestDomainRegexp";
    let good = [
        "test.com",
        "test.com:10304",
        "localhost",
        "localhost:8080",
        "a.b",
        "ab.cd.com",
        "a-b.com",
        "ab.c-om",
        "0101.com",
        "001a.com",
        "b.gbc.io:443",
        "b.gbc.io",
        "xn--n3h.com",
        "Asdf.com",
        "192.168.1.1:75050",
        "192.168.1.1:750050",
        "[fd00:1:2::3]:75050",
        "[fd00123123123]:75050",
        "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050",
        "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505",
    ];
    let bad = [
        "test.com:http",
        "-ab.com",
        "ab-.com",
        "ab.-com",
        "ab.com-",
        "[fd00:1:2::3]75050",
        "[fd00:1:2::3]::75050",
        "[fd00:1:2::3%eth0]:75050",
        "fd00:1:2::3:75050",
    ];
    let mut cases: Vec<RefCase> = good
        .iter()
        .map(|d| accepts(T, format!("{d}/repo"), d, "repo"))
        .collect();
    cases.push(accepts(T, "a/repo", "docker.io", "a/repo"));
    cases.extend(
        bad.iter()
            .map(|d| refuses(T, format!("{d}/repo"), ReferenceInvalidFormat)),
    );
    run_reference_cases(&cases);
}

/// regexp_test.go `TestFullNameRegexp` and `TestReferenceRegexp`, restated for
/// `ParseNormalizedNamed`. Names the anchored name grammar refuses but that parse as
/// `name:tag` once normalised (e.g. "foo_bar.com:8080") are accepted here, as upstream's
/// `ParseNormalizedNamed` does.
#[test]
fn name_and_reference_grammar_tables() {
    use ReferenceError::*;
    const N: &str = "TestFullNameRegexp";
    const R: &str = "TestReferenceRegexp";
    let be = format!("sha256:{BE}");
    let deep = format!("{}a", "a/".repeat(128));
    let cases = vec![
        refuses(N, "", ReferenceInvalidFormat),
        accepts(N, "short", "docker.io", "library/short"),
        accepts(N, "simple/name", "docker.io", "simple/name"),
        accepts(N, "library/ubuntu", "docker.io", "library/ubuntu"),
        accepts(N, "docker/stevvooe/app", "docker.io", "docker/stevvooe/app"),
        accepts(
            N,
            "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
            "docker.io",
            "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
        ),
        accepts(N, "aa/aa/bb/bb/bb", "docker.io", "aa/aa/bb/bb/bb"),
        accepts(N, "a/a/a/a", "docker.io", "a/a/a/a"),
        refuses(N, "a/a/a/a/", ReferenceInvalidFormat),
        refuses(N, "a//a/a", ReferenceInvalidFormat),
        accepts(N, "a", "docker.io", "library/a"),
        accepts(N, "a/aa", "docker.io", "a/aa"),
        accepts(N, "a/aa/a", "docker.io", "a/aa/a"),
        accepts(N, "foo.com", "docker.io", "library/foo.com"),
        refuses(N, "foo.com/", ReferenceInvalidFormat),
        accepts(N, "foo.com:8080/bar", "foo.com:8080", "bar"),
        refuses(N, "foo.com:http/bar", ReferenceInvalidFormat),
        accepts(N, "foo.com/bar", "foo.com", "bar"),
        accepts(N, "foo.com/bar/baz", "foo.com", "bar/baz"),
        accepts(N, "localhost:8080/bar", "localhost:8080", "bar"),
        accepts(
            N,
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
        ),
        accepts(N, "blog.foo.com/bar/baz", "blog.foo.com", "bar/baz"),
        refuses(N, "a^a", ReferenceInvalidFormat),
        refuses(N, "aa/asdf$$^/aa", ReferenceInvalidFormat),
        refuses(N, "asdf$$^/aa", ReferenceInvalidFormat),
        accepts(N, "aa-a/a", "docker.io", "aa-a/a"),
        // 257 bytes of path once on Docker Hub (the name grammar alone accepts it).
        refuses(N, deep, NameTooLong),
        refuses(N, "a-/a/a/a", ReferenceInvalidFormat),
        refuses(N, "foo.com/a-/a/a", ReferenceInvalidFormat),
        refuses(N, "-foo/bar", ReferenceInvalidFormat),
        refuses(N, "foo/bar-", ReferenceInvalidFormat),
        refuses(N, "foo-/bar", ReferenceInvalidFormat),
        refuses(N, "foo/-bar", ReferenceInvalidFormat),
        refuses(N, "_foo/bar", ReferenceInvalidFormat),
        accepts(N, "foo_bar", "docker.io", "library/foo_bar"),
        accepts(N, "foo_bar.com", "docker.io", "library/foo_bar.com"),
        accepts(N, "foo_bar.com:8080", "docker.io", "library/foo_bar.com").tag("8080"),
        refuses(N, "foo_bar.com:8080/app", ReferenceInvalidFormat),
        accepts(N, "foo.com/foo_bar", "foo.com", "foo_bar"),
        refuses(N, "____/____", ReferenceInvalidFormat),
        refuses(N, "_docker/_docker", ReferenceInvalidFormat),
        refuses(N, "docker_/docker_", ReferenceInvalidFormat),
        accepts(
            N,
            "b.gcr.io/test.example.com/my-app",
            "b.gcr.io",
            "test.example.com/my-app",
        ),
        accepts(N, "xn--n3h.com/myimage", "xn--n3h.com", "myimage"),
        accepts(N, "xn--7o8h.com/myimage", "xn--7o8h.com", "myimage"),
        accepts(
            N,
            "example.com/xn--7o8h.com/myimage",
            "example.com",
            "xn--7o8h.com/myimage",
        ),
        accepts(
            N,
            "example.com/some_separator__underscore/myimage",
            "example.com",
            "some_separator__underscore/myimage",
        ),
        refuses(
            N,
            "example.com/__underscore/myimage",
            ReferenceInvalidFormat,
        ),
        refuses(N, "example.com/..dots/myimage", ReferenceInvalidFormat),
        refuses(N, "example.com/.dots/myimage", ReferenceInvalidFormat),
        refuses(
            N,
            "example.com/nodouble..dots/myimage",
            ReferenceInvalidFormat,
        ),
        refuses(N, "docker./docker", ReferenceInvalidFormat),
        refuses(N, ".docker/docker", ReferenceInvalidFormat),
        refuses(N, "docker-/docker", ReferenceInvalidFormat),
        refuses(N, "-docker/docker", ReferenceInvalidFormat),
        refuses(N, "do..cker/docker", ReferenceInvalidFormat),
        refuses(N, "do__cker:8080/docker", ReferenceInvalidFormat),
        accepts(N, "do__cker/docker", "docker.io", "do__cker/docker"),
        accepts(
            N,
            "registry.io/foo/project--id.module--name.ver---sion--name",
            "registry.io",
            "foo/project--id.module--name.ver---sion--name",
        ),
        accepts(N, "Asdf.com/foo/bar", "Asdf.com", "foo/bar"),
        // "Foo" is taken for a domain (uppercase), then the remote name must be lowercase.
        refuses(N, "Foo/FarB", NameContainsUppercase("FarB".into())),
        accepts(
            R,
            "registry.com:8080/myapp:tag",
            "registry.com:8080",
            "myapp",
        )
        .tag("tag"),
        accepts(
            R,
            format!("registry.com:8080/myapp@{be}"),
            "registry.com:8080",
            "myapp",
        )
        .digest(&be),
        accepts(
            R,
            format!("registry.com:8080/myapp:tag2@{be}"),
            "registry.com:8080",
            "myapp",
        )
        .tag("tag2")
        .digest(&be),
        refuses(
            R,
            "registry.com:8080/myapp@sha256:badbadbadbad",
            ReferenceInvalidFormat,
        ),
        refuses(
            R,
            "registry.com:8080/myapp:invalid~tag",
            ReferenceInvalidFormat,
        ),
        refuses(R, "bad_hostname.com:8080/myapp:tag", ReferenceInvalidFormat),
        // One component: "localhost" is the repository and 8080 its tag.
        accepts(
            R,
            format!("localhost:8080@{be}"),
            "docker.io",
            "library/localhost",
        )
        .tag("8080")
        .digest(&be),
        accepts(
            R,
            format!("localhost:8080/name@{be}"),
            "localhost:8080",
            "name",
        )
        .digest(&be),
        refuses(
            R,
            format!("localhost:http/name@{be}"),
            ReferenceInvalidFormat,
        ),
        accepts(
            R,
            format!("localhost@{be}"),
            "docker.io",
            "library/localhost",
        )
        .digest(&be),
        refuses(R, "registry.com:8080/myapp@bad", ReferenceInvalidFormat),
        refuses(R, "registry.com:8080/myapp@2bad", ReferenceInvalidFormat),
    ];
    run_reference_cases(&cases);
}

/// regexp_test.go `TestIdentifierRegexp`: only 64 lowercase hex digits are an image ID, which
/// `ParseNormalizedNamed` refuses; the near misses are ordinary (or uppercase) names.
#[test]
fn identifier_table() {
    use ReferenceError::*;
    const T: &str = "TestIdentifierRegexp";
    let id = "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821";
    let upper = "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C";
    let short = "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf";
    let long = "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482";
    let cases = vec![
        refuses(T, id, HexadecimalName(id.into())),
        refuses(T, upper, NameContainsUppercase(format!("library/{upper}"))),
        accepts(T, short, "docker.io", &format!("library/{short}")),
        accepts(T, format!("sha256:{id}"), "docker.io", "library/sha256").tag(id),
        accepts(T, long, "docker.io", &format!("library/{long}")),
    ];
    run_reference_cases(&cases);
}

/// normalize_test.go `TestParseRepositoryInfo`: the familiar, full and ambiguous spellings of
/// one repository all normalise to the full name, with the same domain, remote name and
/// familiar name (`FamiliarName`; none of these has a tag or digest, so `familiar()` is it).
#[test]
fn repository_info_familiar_names() {
    // (remote name, familiar, full, ambiguous, domain)
    let rows: &[(&str, &str, &str, &str, &str)] = &[
        (
            "fooo/bar",
            "fooo/bar",
            "docker.io/fooo/bar",
            "index.docker.io/fooo/bar",
            "docker.io",
        ),
        (
            "library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu",
            "library/ubuntu",
            "docker.io",
        ),
        (
            "nonlibrary/ubuntu",
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            "",
            "docker.io",
        ),
        (
            "other/library",
            "other/library",
            "docker.io/other/library",
            "",
            "docker.io",
        ),
        (
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            "",
            "example.com",
        ),
        (
            "privatebase",
            "example.com/privatebase",
            "example.com/privatebase",
            "",
            "example.com",
        ),
        (
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            "",
            "example.com:8000",
        ),
        (
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            "",
            "example.com:8000",
        ),
        (
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "index.docker.io/library/ubuntu-12.04-base",
            "docker.io",
        ),
        (
            "library/foo",
            "foo",
            "docker.io/library/foo",
            "docker.io/foo",
            "docker.io",
        ),
        (
            "library/foo/bar",
            "library/foo/bar",
            "docker.io/library/foo/bar",
            "",
            "docker.io",
        ),
        (
            "store/foo/bar",
            "store/foo/bar",
            "docker.io/store/foo/bar",
            "",
            "docker.io",
        ),
        ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
        ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for &(remote, familiar, full, ambiguous, domain) in rows {
        for input in [familiar, full, ambiguous] {
            if input.is_empty() {
                continue;
            }
            checked += 1;
            match ImageRef::parse(input) {
                Ok(r) => {
                    let got = (
                        r.to_string(),
                        r.domain().to_owned(),
                        r.path().to_owned(),
                        r.familiar(),
                    );
                    let want = (
                        full.to_owned(),
                        domain.to_owned(),
                        remote.to_owned(),
                        familiar.to_owned(),
                    );
                    if got != want {
                        failures.push(format!(
                            "[TestParseRepositoryInfo] {input:?}: want (full, domain, remote, familiar) {want:?}, got {got:?}"
                        ));
                    }
                }
                Err(e) => {
                    failures.push(format!("[TestParseRepositoryInfo] {input:?} refused: {e}"))
                }
            }
        }
    }
    assert_eq!(checked, 36, "every spelling of every row is checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// normalize_test.go `TestParseReferenceWithTagAndDigest` (`FamiliarString` of a tagged and
/// digested Hub reference is the short input) and reference.go / normalize.go error texts.
#[test]
fn familiar_string_and_error_messages() {
    let short =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let r = ImageRef::parse(short).expect("upstream accepts it");
    assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
    assert_eq!(r.familiar(), short);
    // FamiliarString keeps a namespace other than library/ and any non-Hub domain.
    let r = ImageRef::parse("docker.io/dmcgowan/myapp:latest").expect("valid");
    assert_eq!(r.familiar(), "dmcgowan/myapp:latest");
    let r = ImageRef::parse("gcr.io/library/busybox:latest").expect("valid");
    assert_eq!(r.familiar(), "gcr.io/library/busybox:latest");

    // Error texts: reference.go's Err* values, go-digest's, and ParseNormalizedNamed's own.
    let message = |input: &str| ImageRef::parse(input).map(|_| ()).unwrap_err().to_string();
    assert_eq!(message("aa/asdf$$^/aa"), "invalid reference format");
    assert_eq!(
        message(&format!("{}a", "a/".repeat(128))),
        "repository name must not be more than 255 characters"
    );
    assert_eq!(
        message("Uppercase:tag"),
        "invalid reference format: repository name (library/Uppercase) must be lowercase"
    );
    assert_eq!(
        message(HEX_ID),
        format!("invalid repository name ({HEX_ID}), cannot specify 64-byte hexadecimal strings")
    );
    assert_eq!(
        message(&format!("repo@sha256:{}", "f".repeat(34))),
        "invalid checksum digest length"
    );
    assert_eq!(
        message(&format!("validname@invaliddigest:{}", hex_f())),
        "unsupported digest algorithm"
    );
}

/// kubernetes pkg/util/parsers/parsers_test.go `TestParseImageName`: the repository the kubelet
/// pulls is `ParseNormalizedNamed(image).Name()`. (`ParseImageName` also reports "latest" when
/// no tag is given; that default is the caller's, so only explicit tags are compared here.)
#[test]
fn kubelet_parse_image_name_table() {
    let e3 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    // (input, repository, explicit tag, digest)
    let ok: Vec<(String, &str, Option<&str>, Option<&str>)> = vec![
        ("root".into(), "docker.io/library/root", None, None),
        (
            "root:tag".into(),
            "docker.io/library/root",
            Some("tag"),
            None,
        ),
        (
            format!("root@{e3}"),
            "docker.io/library/root",
            None,
            Some(e3),
        ),
        ("user/repo".into(), "docker.io/user/repo", None, None),
        (
            "user/repo:tag".into(),
            "docker.io/user/repo",
            Some("tag"),
            None,
        ),
        (
            format!("user/repo@{e3}"),
            "docker.io/user/repo",
            None,
            Some(e3),
        ),
        ("url:5000/repo".into(), "url:5000/repo", None, None),
        (
            "url:5000/repo:tag".into(),
            "url:5000/repo",
            Some("tag"),
            None,
        ),
        (
            format!("url:5000/repo@{e3}"),
            "url:5000/repo",
            None,
            Some(e3),
        ),
        (
            format!("url:5000/repo:latest@{e3}"),
            "url:5000/repo",
            Some("latest"),
            Some(e3),
        ),
    ];
    for (input, repo, tag, digest) in &ok {
        let r = ImageRef::parse(input)
            .unwrap_or_else(|e| panic!("[TestParseImageName] {input:?}: {e}"));
        assert_eq!(
            (r.name(), r.tag(), r.digest()),
            (*repo, *tag, *digest),
            "[TestParseImageName] {input:?}"
        );
    }
    // (input, part of the error text)
    let bad = [
        ("ROOT", "must be lowercase"),
        ("http://root", "invalid reference format"),
        (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "cannot specify 64-byte hexadecimal strings",
        ),
    ];
    for (input, text) in bad {
        let err = ImageRef::parse(input).map(|_| ()).unwrap_err().to_string();
        assert!(
            err.contains(text),
            "[TestParseImageName] {input:?}: {err:?} lacks {text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Keyring (kubernetes pkg/credentialprovider/keyring.go)
// ---------------------------------------------------------------------------------------------

/// `URLsMatchStr(glob, target)`: the glob parsed as a key (no scheme or /v1/ in these rows, so
/// the key is the glob itself) matched against the target.
fn urls_match(glob: &str, target: &str) -> Result<bool, String> {
    let key = RegistryKey::parse(glob).map_err(|e| format!("key {glob:?} refused: {e}"))?;
    Ok(key.matches(&MatchTarget::new(target)))
}

/// keyring_test.go `TestURLsMatch`.
#[test]
fn urls_match_table() {
    let cases: &[(&str, &str, bool)] = &[
        // No path component.
        ("*.kubernetes.io", "prefix.kubernetes.io", true),
        ("prefix.*.io", "prefix.kubernetes.io", true),
        ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
        ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
        // With path components.
        ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
        ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
        // With path components and ports.
        (
            "*.kubernetes.io:1111/blah",
            "prefix.kubernetes.io:1111/blah",
            true,
        ),
        (
            "prefix.*.io:1111/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            true,
        ),
        // The number of labels differs.
        ("*.kubernetes.io", "kubernetes.io", false),
        ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
        ("*.*.kubernetes.io", "kubernetes.io", false),
        ("*kubernetes.io", "a.kubernetes.io", false),
        // The number of labels is the same.
        ("*kubernetes.io", "kubernetes.io", true),
        ("*.*.*.kubernetes.io", "a.b.c.kubernetes.io", true),
        // Some labels differ.
        ("kubernetes.io", "kubernetes.com", false),
        ("k*.io", "quay.io", false),
        // Ports differ.
        (
            "*.kubernetes.io:1234/blah",
            "prefix.kubernetes.io:1111/blah",
            false,
        ),
        (
            "prefix.*.io/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            false,
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(glob, target, want)| match urls_match(glob, target) {
            Ok(got) if got == want => None,
            got => Some(format!(
                "[TestURLsMatch] {glob:?} vs {target:?}: want {want}, got {got:?}"
            )),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A one-secret keyring built the way the kubelet builds it: the payload parsed as a secret of
/// `secret_type`, each entry's normalised key added (entries whose key does not parse are
/// skipped, as `Add` skips them). Every lookup also runs the secret and the looked-up name
/// through the production entry points, which must agree with the keyring.
struct SecretRing {
    secret: RowSecret,
    keys: Vec<RegistryKey>,
}

impl SecretRing {
    fn new(secret_type: &'static str, payload: &Value) -> SecretRing {
        let data_key = if secret_type == DOCKERCFG_TYPE {
            DOCKERCFG_KEY
        } else {
            DOCKER_CONFIG_JSON_KEY
        };
        let data = BTreeMap::from([(data_key.to_owned(), payload.to_string().into_bytes())]);
        let keys = parse_pull_secret(secret_type, &data).expect("the payload is usable");
        SecretRing {
            keys: keys
                .entries
                .into_iter()
                .filter_map(|e| e.key.ok())
                .collect(),
            secret: RowSecret {
                name: "regcred".to_owned(),
                secret_type,
                data,
            },
        }
    }

    /// Whether the keyring finds credentials for `name`.
    fn covers(&self, name: &str) -> bool {
        Keyring::of(&self.keys, ()).covers(&MatchTarget::new(name))
    }

    /// (username, password) of every credential Lookup returns for `name`, in order.
    fn lookup(&self, name: &str) -> Vec<(String, String)> {
        let wrong = disagreements("keyring table", std::slice::from_ref(&self.secret), name);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        Keyring::of(&self.keys, ())
            .lookup(&MatchTarget::new(name))
            .into_iter()
            .flat_map(|(key, ())| {
                credentials_for(self.secret.secret_type, &self.secret.data, key)
                    .expect("the payload is usable")
            })
            .map(|c| {
                (
                    String::from_utf8_lossy(c.username()).into_owned(),
                    String::from_utf8_lossy(c.password()).into_owned(),
                )
            })
            .collect()
    }
}

/// Secrets of one key each, named by their labels, in pod order: the kubelet's lookup over
/// them (production keyring), checked against every production entry point.
fn labelled_lookup(pairs: &[(&str, &'static str)], name: &str) -> Vec<&'static str> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let secrets: Vec<RowSecret> = pairs
        .iter()
        .map(|&(raw, label)| RowSecret {
            name: label.to_owned(),
            secret_type: DOCKER_CONFIG_JSON_TYPE,
            data: BTreeMap::from([(
                DOCKER_CONFIG_JSON_KEY.to_owned(),
                json!({"auths": {raw: {"auth": b64.encode(format!("{label}:pw"))}}})
                    .to_string()
                    .into_bytes(),
            )]),
        })
        .collect();
    let wrong = disagreements("lookup table", &secrets, name);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let keys: Vec<RegistryKey> = pairs
        .iter()
        .map(|(raw, _)| RegistryKey::parse(raw).expect("valid key"))
        .collect();
    let mut ring = Keyring::new();
    for (key, (_, label)) in keys.iter().zip(pairs) {
        ring.add([key], *label);
    }
    ring.lookup(&MatchTarget::new(name))
        .into_iter()
        .map(|(_, label)| label)
        .collect()
}

/// The `.dockercfg` the upstream glob tests write: one registry, an email and auth for foo:bar.
fn foo_bar_dockercfg(registry: &str) -> SecretRing {
    let mut cfg = serde_json::Map::new();
    cfg.insert(
        registry.to_owned(),
        json!({"email": "foo@bar.baz", "auth": "Zm9vOmJhcg=="}),
    );
    SecretRing::new(DOCKERCFG_TYPE, &Value::Object(cfg))
}

fn pair(u: &str, p: &str) -> (String, String) {
    (u.to_owned(), p.to_owned())
}

/// keyring_test.go `TestDockerKeyringForGlob` (hits, with foo:bar decoded from `auth`) and
/// `TestKeyringMiss` (misses); every lookup appends "/foo/bar" to the target, as upstream does.
#[test]
fn keyring_glob_hits_and_misses() {
    let hits: &[(&str, &str)] = &[
        ("https://hello.kubernetes.io", "hello.kubernetes.io"),
        ("https://*.docker.io", "prefix.docker.io"),
        ("https://prefix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.*", "prefix.docker.io"),
        ("https://*.docker.io/path", "prefix.docker.io/path"),
        ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
        ("https://prefix.docker.*/path", "prefix.docker.io/path"),
        ("https://*.docker.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
        (
            "https://*.docker.io/path:1111",
            "prefix.docker.io/path:1111",
        ),
        ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
        ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
        (
            "https://prefix.docker.*/path:1111",
            "prefix.docker.io/path:1111",
        ),
        ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
        ("*.docker.io:1111", "prefix.docker.io:1111/path"),
    ];
    let misses: &[(&str, &str)] = &[
        ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
        ("https://*.docker.com", "prefix.docker.io"),
        ("https://suffix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.c*", "prefix.docker.io"),
        (
            "https://prefix.*.io/path:1111",
            "prefix.docker.io/path/subpath:1111",
        ),
        ("suffix.*.io", "prefix.docker.io"),
    ];
    let mut failures = Vec::new();
    for &(registry, target) in hits {
        let got = foo_bar_dockercfg(registry).lookup(&format!("{target}/foo/bar"));
        if got != [pair("foo", "bar")] {
            failures.push(format!(
                "[TestDockerKeyringForGlob] key {registry:?}, image {target:?}/foo/bar: want [foo:bar], got {got:?}"
            ));
        }
    }
    for &(registry, target) in misses {
        let got = foo_bar_dockercfg(registry).lookup(&format!("{target}/foo/bar"));
        if !got.is_empty() {
            failures.push(format!(
                "[TestKeyringMiss] key {registry:?}, image {target:?}/foo/bar: want a miss, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// keyring_test.go `TestKeyringMissWithDockerHubCredentials`,
/// `TestKeyringHitWithUnqualifiedDockerHub`, `TestKeyringHitWithUnqualifiedLibraryDockerHub`
/// and `TestKeyringHitWithQualifiedDockerHub`: a key for "https://index.docker.io/v1/".
#[test]
fn keyring_docker_hub_credentials() {
    let ring = foo_bar_dockercfg("https://index.docker.io/v1/");
    let foo = [pair("foo", "bar")];
    // Missed by a name on another registry.
    assert!(ring.lookup("world.mesos.org/foo/bar").is_empty());
    // Hit, once, through the default-registry fallback.
    assert_eq!(ring.lookup("google/docker-registry"), foo);
    assert_eq!(ring.lookup("jenkins"), foo);
    // Hit by the key's own host (upstream allows up to two results; the key matches once).
    assert_eq!(ring.lookup("index.docker.io/google/docker-registry"), foo);
}

/// keyring_test.go `TestIsDefaultRegistryMatch`.
#[test]
fn default_registry_match_table() {
    let cases: &[(&str, bool)] = &[
        ("foo/bar", true),
        ("docker.io/foo/bar", true),
        ("index.docker.io/foo/bar", true),
        ("foo", true),
        ("", false),
        ("registry.tld/foo/bar", false),
        ("registry:5000/foo/bar", false),
        ("myhostdocker.io/foo/bar", false),
    ];
    for &(image, want) in cases {
        assert_eq!(
            is_default_registry_match(image),
            want,
            "[TestIsDefaultRegistryMatch] {image:?}"
        );
    }
}

/// keyring_test.go `TestDockerKeyringLookup`: a host key and a host+path key; matching keys
/// come longest first and the path is a plain string prefix.
#[test]
fn keyring_lookup_order_table() {
    let ring = SecretRing::new(
        DOCKERCFG_TYPE,
        &json!({
            "bar.example.com/pong": {"username": "grace", "password": "squash", "email": "grace@example.com"},
            "bar.example.com": {"username": "ada", "password": "smash", "email": "ada@example.com"},
        }),
    );
    let ada = pair("ada", "smash");
    let grace = pair("grace", "squash");
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        // Direct match.
        ("bar.example.com", vec![ada.clone()]),
        // A direct match deeper than the other match.
        ("bar.example.com/pong", vec![grace.clone(), ada.clone()]),
        // No deeper match: the host key alone.
        ("bar.example.com/ping", vec![ada.clone()]),
        // The first part of a path token is enough.
        ("bar.example.com/pongz", vec![grace.clone(), ada.clone()]),
        // Whatever follows the key path.
        (
            "bar.example.com/pong/pang",
            vec![grace.clone(), ada.clone()],
        ),
        // No host match.
        ("example.com", vec![]),
        ("foo.example.com", vec![]),
    ];
    for (image, want) in cases {
        assert_eq!(
            ring.lookup(image),
            want,
            "[TestDockerKeyringLookup] {image:?}"
        );
    }
}

/// keyring_test.go `TestIssue3797`: a key with a scheme and the /v1/ path covers the whole host.
#[test]
fn keyring_scheme_and_v1_path_table() {
    let ring = SecretRing::new(
        DOCKERCFG_TYPE,
        &json!({"https://quay.io/v1/": {"username": "rex", "password": "tiny arms", "email": "rex@example.com"}}),
    );
    for image in ["quay.io", "quay.io/foo", "quay.io/foo/bar"] {
        assert_eq!(
            ring.lookup(image),
            [pair("rex", "tiny arms")],
            "[TestIssue3797] {image:?}"
        );
    }
}

/// keyring.go `BasicDockerKeyring.Add` (no upstream test pins these): "https://" is added unless
/// the key starts with exactly "https://" or "http://"; a path starting "/v1/" or "/v2/" loses
/// its first three bytes; a remaining "/" or empty path leaves the host alone, with its port.
#[test]
fn key_normalisation_from_add() {
    let cases: &[(&str, &str)] = &[
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("https://index.docker.io/v2/", "index.docker.io"),
        ("http://index.docker.io", "index.docker.io"),
        ("index.docker.io", "index.docker.io"),
        ("http://foo.example.com", "foo.example.com"),
        ("https://quay.io/v1/", "quay.io"),
        ("https://*.docker.io/v2/", "*.docker.io"),
        ("https://*.docker.io/path:1111", "*.docker.io/path:1111"),
        ("prefix.docker.io:1111", "prefix.docker.io:1111"),
        (
            "https://r.example.com/v2/team/app",
            "r.example.com/team/app",
        ),
        // "/v1" without the trailing slash is not an API root.
        ("https://r.example.com/v1", "r.example.com/v1"),
        ("quay.io/foo/", "quay.io/foo/"),
        ("quay.io/", "quay.io"),
        ("registry.example.com:5000/v2/", "registry.example.com:5000"),
        ("[::1]:5000", "[::1]:5000"),
        // url.Parse: '?' starts the query and '#' the fragment; neither is part of the key.
        ("ex?mple.com", "ex"),
        ("r.example.com/team#frag", "r.example.com/team"),
    ];
    for &(raw, want) in cases {
        let key = RegistryKey::parse(raw).map(|k| k.as_str().to_owned());
        assert_eq!(key.as_deref(), Ok(want), "key {raw:?}");
    }
    // url.Parse refuses a non-numeric port; Add then ignores the entry.
    assert_eq!(
        RegistryKey::parse("registry.example.com:abc")
            .map(|k| k.as_str().to_owned())
            .map_err(|e| e.to_string()),
        Err("invalid port \":abc\" after host".to_owned())
    );
}

/// keyring.go `URLsMatch` / `SplitURL` (labels are globbed one by one with filepath.Match,
/// ports compared as strings, paths as plain prefixes, all case-sensitive), applied to the
/// globs and ports this audit was asked to cover. No single upstream test lists these.
#[test]
fn globs_ports_and_paths_from_urls_match() {
    let cases: &[(&str, &str, bool)] = &[
        ("*.example.com", "a.example.com/x", true),
        ("*.example.com", "example.com/x", false),
        ("*.example.com", "a.b.example.com/x", false),
        ("*.*.example.com", "a.b.example.com/x", true),
        ("*.*.example.com", "a.example.com/x", false),
        ("example.*.com", "example.foo.com/x", true),
        ("example.*.com", "example.com/x", false),
        ("example.*.com", "example.a.b.com/x", false),
        // '?' cannot glob a host: url.Parse starts the query there, leaving host "ex".
        ("ex?mple.com", "example.com/x", false),
        ("ex?mple.com", "ex/x", true),
        ("reg-*.example.com", "reg-eu.example.com/x", true),
        ("reg-*.example.com", "registry.example.com/x", false),
        // Ports: absent vs absent, or the same digits; no defaults, no globbing.
        (
            "registry.example.com:5000",
            "registry.example.com:5000/x",
            true,
        ),
        ("registry.example.com:5000", "registry.example.com/x", false),
        ("registry.example.com", "registry.example.com:5000/x", false),
        ("quay.io", "quay.io:443/x", false),
        (
            "registry.example.com:05000",
            "registry.example.com:5000/x",
            false,
        ),
        ("*.io/foo", "x.io:1111/foo/bar", false),
        // Paths: plain string prefix, not segment-aware; '*' in a path is literal.
        ("quay.io/foo", "quay.io/foobar/x", true),
        ("quay.io/foo/", "quay.io/foo", false),
        ("quay.io/foo/", "quay.io/foo/x", true),
        ("quay.io/*", "quay.io/foo", false),
        // Case-sensitive hosts.
        ("Quay.io", "quay.io/x", false),
        // IPv6 literals keep their brackets; ports still compare as strings.
        ("[::1]:5000", "[::1]:5000/x", true),
        ("[::1]:5000", "[::1]/x", false),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(glob, target, want)| match urls_match(glob, target) {
            Ok(got) if got == want => None,
            got => Some(format!(
                "[URLsMatch] {glob:?} vs {target:?}: want {want}, got {got:?}"
            )),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// keyring.go `Lookup` + `isDefaultRegistryMatch` with the normalised names the kubelet looks
/// up (`ParseNormalizedNamed(image).Name()`): docker.io keys match Hub images directly,
/// index.docker.io keys only through the fallback, and any direct match suppresses it.
#[test]
fn docker_hub_aliases_from_lookup() {
    let name = |image: &str| ImageRef::parse(image).expect("valid").name().to_owned();
    let ubuntu = name("ubuntu");
    assert_eq!(ubuntu, "docker.io/library/ubuntu");
    assert_eq!(name("index.docker.io/ubuntu"), ubuntu);
    assert_eq!(name("docker.io/library/ubuntu:22.04"), ubuntu);

    let hub_v1 = [("https://index.docker.io/v1/", "hub")];
    assert_eq!(labelled_lookup(&hub_v1, &ubuntu), ["hub"]);
    assert_eq!(labelled_lookup(&hub_v1, &name("bitnami/redis")), ["hub"]);
    assert!(labelled_lookup(&hub_v1, &name("quay.io/x/y")).is_empty());

    let docker_io = [("docker.io", "docker-io")];
    assert_eq!(labelled_lookup(&docker_io, &ubuntu), ["docker-io"]);
    let library = [("docker.io/library", "library")];
    assert_eq!(labelled_lookup(&library, &ubuntu), ["library"]);
    assert!(labelled_lookup(&library, &name("bitnami/redis")).is_empty());

    // A path under index.docker.io (not /v1/ or /v2/) is neither the fallback nor a match.
    let index_path = [("index.docker.io/library", "x")];
    assert!(labelled_lookup(&index_path, &ubuntu).is_empty());

    // A direct match wins alone: the Hub fallback is not added to it.
    let both = [("*.io", "glob"), ("index.docker.io", "hub")];
    assert_eq!(labelled_lookup(&both, &ubuntu), ["glob"]);
}

/// keyring.go `Add`/`Lookup`: the index is sorted in descending byte order and every matching
/// key contributes, so ordering follows bytes, not specificity.
#[test]
fn lookup_order_from_sorted_index() {
    let quay = [
        ("quay.io", "host"),
        ("quay.io/coreos", "coreos"),
        ("*.io", "glob"),
        ("quay.io/coreos/etcd", "etcd"),
    ];
    assert_eq!(
        labelled_lookup(&quay, "quay.io/coreos/etcd"),
        ["etcd", "coreos", "host", "glob"]
    );
    assert_eq!(labelled_lookup(&quay, "quay.io/other"), ["host", "glob"]);

    // 'f' sorts after '*', so the exact host comes first although the glob has a longer path.
    let example = [("*.example.com/path", "glob"), ("foo.example.com", "exact")];
    assert_eq!(
        labelled_lookup(&example, "foo.example.com/path/x"),
        ["exact", "glob"]
    );

    // Keys that normalise alike are one key; its values keep the pod's secret order.
    let alike = [
        ("https://r.example.com/v2/", "first"),
        ("r.example.com", "second"),
        ("http://r.example.com/", "third"),
    ];
    assert_eq!(
        labelled_lookup(&alike, "r.example.com/app"),
        ["first", "second", "third"]
    );
}

// ---------------------------------------------------------------------------------------------
// Docker config payloads (kubernetes pkg/credentialprovider/config.go, secrets/secrets.go)
// ---------------------------------------------------------------------------------------------

fn secret_data(data_key: &str, payload: &str) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([(data_key.to_owned(), payload.as_bytes().to_vec())])
}

/// Credentials a dockercfg payload holds for `registry`, or the payload error.
fn dockercfg_creds(payload: &str, registry: &str) -> Result<Vec<(String, String)>, PayloadError> {
    let data = secret_data(DOCKERCFG_KEY, payload);
    let key = RegistryKey::parse(registry).expect("valid key");
    credentials_for(DOCKERCFG_TYPE, &data, &key).map(|creds| {
        creds
            .iter()
            .map(|c| {
                (
                    String::from_utf8_lossy(c.username()).into_owned(),
                    String::from_utf8_lossy(c.password()).into_owned(),
                )
            })
            .collect()
    })
}

/// config_test.go `TestDockerConfigJsonJSONDecode`, `TestDockerConfigJSONDecode`,
/// `TestReadDockerConfigFileFromBytes` and `TestReadDockerConfigJSONFileFromBytes`: both
/// formats decode to the same entries; a truncated document is an error that fails the pull.
#[test]
fn config_formats_decode_alike() {
    let entries = json!({
        "http://foo.example.com": {"username": "foo", "password": "bar", "email": "foo@example.com"},
        "http://bar.example.com": {"username": "bar", "password": "baz", "email": "bar@example.com"},
    });
    let json_ring = SecretRing::new(DOCKER_CONFIG_JSON_TYPE, &json!({ "auths": entries }));
    let cfg_ring = SecretRing::new(DOCKERCFG_TYPE, &entries);
    for ring in [&json_ring, &cfg_ring] {
        assert_eq!(ring.keys.len(), 2);
        assert_eq!(ring.lookup("foo.example.com/app"), [pair("foo", "bar")]);
        assert_eq!(ring.lookup("bar.example.com/app"), [pair("bar", "baz")]);
    }
    let keys = parse_pull_secret(
        DOCKER_CONFIG_JSON_TYPE,
        &secret_data(
            DOCKER_CONFIG_JSON_KEY,
            &json!({ "auths": entries }).to_string(),
        ),
    )
    .expect("valid");
    let mut normalised: Vec<_> = keys
        .entries
        .iter()
        .map(|e| {
            (
                e.raw().to_owned(),
                e.key.as_ref().ok().map(|k| k.as_str().to_owned()),
            )
        })
        .collect();
    normalised.sort();
    assert_eq!(
        normalised,
        [
            (
                "http://bar.example.com".to_owned(),
                Some("bar.example.com".to_owned())
            ),
            (
                "http://foo.example.com".to_owned(),
                Some("foo.example.com".to_owned())
            ),
        ]
    );

    // Truncated JSON, in either format.
    let truncated_cfg = r#"{"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com""#;
    let truncated_json = r#"{"auths": {"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}, "http://bar.example.com":{"username": "bar", "password": "baz", "email": "bar@example.com""#;
    for (secret_type, data_key, payload) in [
        (DOCKERCFG_TYPE, DOCKERCFG_KEY, truncated_cfg),
        (
            DOCKER_CONFIG_JSON_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            truncated_json,
        ),
    ] {
        let err = parse_pull_secret(secret_type, &secret_data(data_key, payload))
            .expect_err("truncated JSON");
        assert!(matches!(err, PayloadError::Syntax { .. }), "{err:?}");
        assert!(err.is_fatal());
        let secret = RowSecret {
            name: "truncated".to_owned(),
            secret_type,
            data: secret_data(data_key, payload),
        };
        let wrong = entry_points::malformed_disagreements("truncated config", &secret);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

/// config_test.go `TestReadDockerConfigFile`: an `auth` of "foo:bar\n" keeps the newline in
/// the password (only the base64 text may carry line breaks, not the decoded value).
#[test]
fn config_file_auth_keeps_decoded_newline() {
    let ring = SecretRing::new(
        DOCKER_CONFIG_JSON_TYPE,
        &json!({"auths": {"http://foo.example.com": {"auth": "Zm9vOmJhcgo=", "email": "foo@example.com"}}}),
    );
    assert_eq!(ring.lookup("foo.example.com/x"), [pair("foo", "bar\n")]);
}

/// config_test.go `TestDockerConfigEntryJSONDecode`: one registry entry, inside a dockercfg.
#[test]
fn config_entry_decode_table() {
    let wrap = |entry: &str| format!(r#"{{"r.example.com": {entry}}}"#);
    // Plain fields.
    assert_eq!(
        dockercfg_creds(
            &wrap(r#"{"username": "foo", "password": "bar", "email": "foo@example.com"}"#),
            "r.example.com"
        ),
        Ok(vec![pair("foo", "bar")])
    );
    // auth decodes to username and password.
    assert_eq!(
        dockercfg_creds(
            &wrap(r#"{"auth": "Zm9vOmJhcg==", "email": "foo@example.com"}"#),
            "r.example.com"
        ),
        Ok(vec![pair("foo", "bar")])
    );
    // auth overrides username and password.
    assert_eq!(
        dockercfg_creds(
            &wrap(
                r#"{"username": "foo", "password": "bar", "auth": "cGluZzpwb25n", "email": "foo@example.com"}"#
            ),
            "r.example.com"
        ),
        Ok(vec![pair("ping", "pong")])
    );
    // A badly formed auth is an error (and the kubelet's keyring construction fails).
    let err = dockercfg_creds(
        &wrap(r#"{"auth": "pants", "email": "foo@example.com"}"#),
        "r.example.com",
    )
    .expect_err("bad auth");
    assert!(matches!(err, PayloadError::AuthNotBase64 { .. }), "{err:?}");
    assert!(err.is_fatal());
    // A value of the wrong JSON type is an error too.
    let err =
        dockercfg_creds(&wrap(r#"{"email": false}"#), "r.example.com").expect_err("wrong type");
    assert!(matches!(err, PayloadError::WrongType { .. }), "{err:?}");
    assert!(err.is_fatal());
}

/// config_test.go `TestDecodeDockerConfigFieldAuth`: padded and unpadded base64, line breaks
/// skipped, other whitespace and a missing ':' refused. Each `auth` is a JSON string here.
#[test]
fn decode_auth_field_table() {
    // (auth as JSON string contents, expected (user, pass) or None for an error)
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("Zm9vOmJhcg==", Some(("foo", "bar"))),
        // Not padded.
        ("Zm9vOmJhcg", Some(("foo", "bar"))),
        // Line breaks inside and after.
        (r"Zm9vOm\nJhcg==\n", Some(("foo", "bar"))),
        // StdEncoding and RawStdEncoding of "foo:bar" (the first two rows again), and
        // encodeDockerConfigFieldAuth's output, which is StdEncoding.
        ("Zm9vOmJhcg==", Some(("foo", "bar"))),
        ("Zm9vOmJhcg", Some(("foo", "bar"))),
        // Good base64 of "pants": no ':' between username and password.
        ("cGFudHM=", None),
        // Only line breaks are skipped, not a space.
        ("Zm9vOmJhcg== ", None),
        // Not base64.
        ("pants", None),
    ];
    let mut failures = Vec::new();
    for &(auth, want) in cases {
        let payload = format!(r#"{{"r.example.com": {{"auth": "{auth}"}}}}"#);
        let got = dockercfg_creds(&payload, "r.example.com");
        if want.is_none() {
            let secret = RowSecret {
                name: "badauth".to_owned(),
                secret_type: DOCKERCFG_TYPE,
                data: secret_data(DOCKERCFG_KEY, &payload),
            };
            failures.extend(entry_points::malformed_disagreements(
                "TestDecodeDockerConfigFieldAuth",
                &secret,
            ));
        }
        let ok = match (want, &got) {
            (Some((u, p)), Ok(creds)) => creds == &[pair(u, p)],
            (None, Err(e)) => {
                e.is_fatal()
                    && matches!(
                        e,
                        PayloadError::AuthNotBase64 { .. } | PayloadError::AuthMissingColon { .. }
                    )
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "[TestDecodeDockerConfigFieldAuth] {auth:?}: want {want:?}, got {:?}",
                got.map(|c| c.len())
            ));
        }
    }
    // The two failure kinds are told apart.
    assert!(matches!(
        dockercfg_creds(
            r#"{"r.example.com": {"auth": "cGFudHM="}}"#,
            "r.example.com"
        ),
        Err(PayloadError::AuthMissingColon { .. })
    ));
    assert!(matches!(
        dockercfg_creds(r#"{"r.example.com": {"auth": "pants"}}"#, "r.example.com"),
        Err(PayloadError::AuthNotBase64 { .. })
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// secrets/secrets_test.go `Test_MakeDockerKeyring`, the rows without a node keyring: each
/// type reads only its own data key, with either `auth` or username/password; a secret whose
/// type and data key disagree is skipped (not an error); a key for another registry misses.
#[test]
fn make_docker_keyring_table() {
    let auth_json = r#"{"auths": {"test.registry.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}}"#;
    let auth_cfg = r#"{"test.registry.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}"#;
    let plain_json =
        r#"{"auths": {"test.registry.io": {"username": "user", "password": "password"}}}"#;
    let plain_cfg = r#"{"test.registry.io": {"username": "user", "password": "password"}}"#;
    let user = [pair("user", "password")];
    for (secret_type, payload) in [
        (DOCKER_CONFIG_JSON_TYPE, auth_json),
        (DOCKERCFG_TYPE, auth_cfg),
        (DOCKER_CONFIG_JSON_TYPE, plain_json),
        (DOCKERCFG_TYPE, plain_cfg),
    ] {
        let ring = SecretRing::new(secret_type, &serde_json::from_str(payload).expect("JSON"));
        assert_eq!(
            ring.lookup("test.registry.io"),
            user,
            "{secret_type} {payload}"
        );
    }

    // Type and data key disagree: the secret is skipped.
    for (secret_type, data_key, payload) in [
        (DOCKERCFG_TYPE, DOCKER_CONFIG_JSON_KEY, auth_json),
        (DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, auth_cfg),
    ] {
        let err = parse_pull_secret(secret_type, &secret_data(data_key, payload))
            .expect_err("mismatched type");
        assert!(matches!(err, PayloadError::MissingData { .. }), "{err:?}");
        assert!(!err.is_fatal(), "a skipped secret does not fail the pull");
        let secret = RowSecret {
            name: "mismatched".to_owned(),
            secret_type,
            data: secret_data(data_key, payload),
        };
        let wrong = entry_points::malformed_disagreements("Test_MakeDockerKeyring", &secret);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    // A secret for another registry does not match.
    for (secret_type, payload) in [
        (
            DOCKER_CONFIG_JSON_TYPE,
            r#"{"auths": {"foobar.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}}"#,
        ),
        (
            DOCKERCFG_TYPE,
            r#"{"foobar.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}"#,
        ),
    ] {
        let ring = SecretRing::new(secret_type, &serde_json::from_str(payload).expect("JSON"));
        assert!(ring.lookup("test.registry.io").is_empty(), "{secret_type}");
        assert!(!ring.covers("test.registry.io"));
    }
}

/// `kubectl create secret docker-registry` without `--docker-server` writes the key
/// `https://index.docker.io/v1/`; the kubelet offers it to every Docker Hub image through the
/// fallback. Every spelling of that key, every form of a Hub image, in every entry point.
#[test]
fn docker_hub_secret_covers_every_hub_image_form_in_every_mode() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let keys = [
        "https://index.docker.io/v1/",
        "index.docker.io/v1/",
        "index.docker.io",
        "https://index.docker.io/v2/",
        "docker.io",
    ];
    let images = [
        "nginx",
        "nginx:1.27",
        "library/busybox",
        "docker.io/acme/app",
        "index.docker.io/acme/app",
        "docker.io/library/redis@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
    ];
    let mut failures = Vec::new();
    for key in keys {
        let secret = RowSecret {
            name: "regcred".to_owned(),
            secret_type: DOCKER_CONFIG_JSON_TYPE,
            data: BTreeMap::from([(
                DOCKER_CONFIG_JSON_KEY.to_owned(),
                json!({"auths": {key: {"username": "u", "password": "p", "auth": b64.encode("u:p")}}})
                    .to_string()
                    .into_bytes(),
            )]),
        };
        for image in images {
            let parsed = parse_pull_secret(DOCKER_CONFIG_JSON_TYPE, &secret.data).expect("usable");
            let ring = Keyring::of(
                parsed.entries.iter().filter_map(|e| e.key.as_ref().ok()),
                (),
            );
            let name = ImageRef::parse(image).expect("valid image");
            if !ring.covers(&MatchTarget::new(name.name())) {
                failures.push(format!("key {key:?} does not cover {image:?}"));
            }
            failures.extend(disagreements(
                &format!("Docker Hub key {key}"),
                std::slice::from_ref(&secret),
                image,
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
