//! Image references parsed as distribution/reference `ParseNormalizedNamed` does.
//!
//! The kubelet turns every container image into a `Named` with
//! `ParseNormalizedNamed` (github.com/distribution/reference v0.6, go-digest
//! v1.0.0, sha256/sha384/sha512 registered). pullgate must reach the same
//! verdict, so this mirrors that code path quirk for quirk; Go's regular
//! expressions are replaced by hand-written scanners, each linear in the input.

use std::fmt;
use std::str::FromStr;

/// Docker Hub's canonical domain, assumed when the first component is not a domain.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's historical domain, rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Always a domain, although it has neither `.` nor `:`.
const LOCALHOST: &str = "localhost";
/// Namespace of Docker Hub's official images, added to one-component Hub paths.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// `RepositoryNameTotalLengthMax`: since v0.6 it bounds the path, not domain + path.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The tag grammar is `[\w][\w.-]{0,127}`.
const TAG_LENGTH_MAX: usize = 128;
/// The digest grammar wants at least 128 bits of hex.
const DIGEST_HEX_MIN: usize = 32;

/// Why a string is not an image reference; `Display` is upstream's message, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// `ErrReferenceInvalidFormat`: the string does not fit the reference grammar.
    #[error("invalid reference format")]
    ReferenceInvalidFormat,
    /// `ErrTagInvalidFormat`: upstream returns it only from `WithTag`, so `parse` never does.
    #[error("invalid tag format")]
    TagInvalidFormat,
    /// `ErrDigestInvalidFormat`: upstream returns it only from `WithDigest`, so `parse` never does.
    #[error("invalid digest format")]
    DigestInvalidFormat,
    /// `ParseNormalizedNamed`'s own check: the remote name (normalised, up to the first `:`) has uppercase.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    NameContainsUppercase(String),
    /// `Parse`'s `ErrNameContainsUppercase`: the string only fits the grammar once lowercased.
    #[error("repository name must be lowercase")]
    NameMustBeLowercase,
    /// `ErrNameEmpty`: `ParseNormalizedNamed` always prefixes a domain, so `parse` never returns it.
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// `ErrNameTooLong`: the path (domain excluded) is longer than 255 bytes.
    #[error(
        "repository name must not be more than {} characters",
        NAME_TOTAL_LENGTH_MAX
    )]
    NameTooLong,
    /// The whole input is 64 lowercase hex digits, which Docker reserves for image IDs.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexadecimalName(String),
    /// go-digest `ErrDigestInvalidFormat`: bad hex for a known algorithm, or an uppercase unknown one.
    #[error("invalid checksum digest format")]
    ChecksumInvalidFormat,
    /// go-digest `ErrDigestInvalidLength`: hex length differs from the algorithm's size.
    #[error("invalid checksum digest length")]
    ChecksumInvalidLength,
    /// go-digest `ErrDigestUnsupported`: a well-formed algorithm other than sha256/sha384/sha512.
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

/// Byte offsets into the normalised string; `tag_end == name_end` means no tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spans {
    /// Start of the path: 0 when there is no domain, else just past the first `/`.
    path_start: usize,
    /// End of the name, i.e. where `:tag` or `@digest` begins.
    name_end: usize,
    /// End of `:tag`; a digest, if any, follows as `@digest`.
    tag_end: usize,
}

/// A parsed image reference: one normalised string plus offsets into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    full: String,
    spans: Spans,
}

impl ImageRef {
    /// Parse like ParseNormalizedNamed (docker.io default, library/ prefix for single-component Hub names, index.docker.io -> docker.io, tag, digest, tag+digest).
    pub fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        if is_identifier(s) {
            return Err(ReferenceError::HexadecimalName(s.to_owned()));
        }
        let (domain, prefix, remainder) = split_docker_domain(s);
        // Upstream cuts at the first ':' even when it belongs to a digest, and reports that slice.
        let remote = split_once(remainder, b':').map_or(remainder, |(r, _)| r);
        if changes_when_lowercased(remote) {
            return Err(ReferenceError::NameContainsUppercase(format!(
                "{prefix}{remote}"
            )));
        }
        let mut full = String::with_capacity(domain.len() + 1 + prefix.len() + remainder.len());
        full.push_str(domain);
        full.push('/');
        full.push_str(prefix);
        full.push_str(remainder);
        Self::from_normalised(full)
    }

    /// Upstream's `Parse` applied to `domain + "/" + remainder`.
    fn from_normalised(full: String) -> Result<ImageRef, ReferenceError> {
        let Some(spans) = match_reference(&full) else {
            return Err(if matches_when_lowercased(&full) {
                ReferenceError::NameMustBeLowercase
            } else {
                ReferenceError::ReferenceInvalidFormat
            });
        };
        // Checked before the digest, as upstream does.
        if spans.name_end.saturating_sub(spans.path_start) > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        let digest = full
            .get(spans.tag_end..)
            .and_then(|rest| rest.strip_prefix('@'))
            .and_then(|digest| split_once(digest, b':'));
        if let Some((algorithm, encoded)) = digest {
            validate_digest(algorithm, encoded)?;
        }
        Ok(ImageRef { full, spans })
    }

    /// Registry domain, e.g. "docker.io", "registry.example.com:5000", "[::1]:5000", "localhost".
    ///
    /// Empty, as upstream, when the first component was taken for a domain but only fits as a
    /// path component (e.g. `foo_bar.com/app`); [`ImageRef::name`] is then the path alone.
    pub fn domain(&self) -> &str {
        self.slice(0, self.spans.path_start.saturating_sub(1))
    }

    /// Repository path without domain, e.g. "library/ubuntu".
    pub fn path(&self) -> &str {
        self.slice(self.spans.path_start, self.spans.name_end)
    }

    /// domain + "/" + path: exactly what the kubelet looks up in its keyring (Named.Name()).
    pub fn name(&self) -> &str {
        self.slice(0, self.spans.name_end)
    }

    /// The tag, without its `:`.
    pub fn tag(&self) -> Option<&str> {
        (self.spans.tag_end > self.spans.name_end)
            .then(|| self.slice(self.spans.name_end + 1, self.spans.tag_end))
    }

    /// Full digest string "sha256:…".
    pub fn digest(&self) -> Option<&str> {
        (self.spans.tag_end < self.full.len())
            .then(|| self.slice(self.spans.tag_end + 1, self.full.len()))
    }

    /// The familiar (short) form as FamiliarString: "ubuntu:latest" style (docker.io and library/ stripped).
    ///
    /// As upstream, it need not parse back to the same name: `docker.io/foo.com/app` becomes
    /// `foo.com/app`, and `docker.io/library/<64 hex>` becomes a rejected identifier.
    pub fn familiar(&self) -> String {
        if self.domain() != DEFAULT_DOMAIN {
            return self.full.clone();
        }
        let path = self.path();
        // Only `library/x` is shortened; `library/x/y` keeps its namespace.
        let short = match path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest,
            _ => path,
        };
        let suffix = self.slice(self.spans.name_end, self.full.len());
        let mut out = String::with_capacity(short.len() + suffix.len());
        out.push_str(short);
        out.push_str(suffix);
        out
    }

    /// A sub-slice of the normalised string; offsets are ours, so the fallback is never taken.
    fn slice(&self, start: usize, end: usize) -> &str {
        self.full.get(start..end).unwrap_or_default()
    }
}

impl fmt::Display for ImageRef {
    /// The fully normalised string: name[:tag][@digest] — same as Go's String().
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    /// Same as [`ImageRef::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// `^[a-f0-9]{64}$`: a bare image ID, which must not be mistaken for a Hub repository.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Upstream's `splitDockerDomain`: (domain, "library/" or "", remainder with tag and digest).
fn split_docker_domain(name: &str) -> (&str, &'static str, &str) {
    let Some((maybe_domain, maybe_remote)) = split_once(name, b'/') else {
        // A single component is always a Hub official image, even "localhost" or "example.com".
        return (DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX, name);
    };
    let (domain, remote) = if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain == LOCALHOST
        || maybe_domain.bytes().any(|b| b == b'.' || b == b':')
        // Paths are lowercase, so an uppercase first component can only be a host.
        || changes_when_lowercased(maybe_domain)
    {
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    let prefix = if domain == DEFAULT_DOMAIN && !remote.as_bytes().contains(&b'/') {
        OFFICIAL_REPO_PREFIX
    } else {
        ""
    };
    (domain, prefix, remote)
}

/// Whether Go's `strings.ToLower` would change `s` (Unicode-aware, as upstream's check is).
fn changes_when_lowercased(s: &str) -> bool {
    if s.is_ascii() {
        return s.bytes().any(|b| b.is_ascii_uppercase());
    }
    s.chars().any(|c| {
        if c.is_ascii() {
            return c.is_ascii_uppercase();
        }
        let mut lower = c.to_lowercase();
        lower.next() != Some(c) || lower.next().is_some()
    })
}

/// `Parse`'s second chance: does `strings.ToLower(s)` differ from `s` and fit the grammar?
fn matches_when_lowercased(s: &str) -> bool {
    let mut lowered = String::with_capacity(s.len());
    for c in s.chars() {
        lowered.push(match c {
            // Go lowercases these two into ASCII, so they can turn a reject into a match.
            '\u{212A}' => 'k',
            '\u{0130}' => 'i',
            c if c.is_ascii() => c.to_ascii_lowercase(),
            // Anything else stays non-ASCII, and the grammar is ASCII-only.
            _ => return false,
        });
    }
    lowered != s && match_reference(&lowered).is_some()
}

/// Upstream's anchored `ReferenceRegexp` and, on its name, `anchoredNameRegexp`.
///
/// `name [":" tag] ["@" digest]` splits only one way: `@` appears only before the digest, and
/// a tag is whatever follows the last `:` when no `/` follows it (a `:` in the domain is
/// always followed by the path's `/`).
fn match_reference(s: &str) -> Option<Spans> {
    let (left, digest) = match split_once(s, b'@') {
        Some((left, digest)) => (left, Some(digest)),
        None => (s, None),
    };
    if !digest.is_none_or(is_digest) {
        return None;
    }
    let (name, tag) = match rsplit_once(left, b':') {
        Some((name, tag)) if !tag.as_bytes().contains(&b'/') => (name, Some(tag)),
        _ => (left, None),
    };
    if !tag.is_none_or(is_tag) {
        return None;
    }
    let path_start = split_name(name)?;
    Some(Spans {
        path_start,
        name_end: name.len(),
        tag_end: left.len(),
    })
}

/// `anchoredNameRegexp`: the optional domain group is greedy, so the first component is the
/// domain whenever both halves fit; otherwise the whole name must be a path.
fn split_name(name: &str) -> Option<usize> {
    if let Some((domain, path)) = split_once(name, b'/') {
        if is_domain(domain) && is_remote_name(path) {
            return Some(domain.len() + 1);
        }
    }
    is_remote_name(name).then_some(0)
}

/// `host [":" port]`, host being dot-separated components or `[` hex and colons `]`.
fn is_domain(d: &str) -> bool {
    let (host_ok, port) = if let Some(bracketed) = d.strip_prefix('[') {
        let Some((ipv6, after)) = split_once(bracketed, b']') else {
            return false;
        };
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return false,
        };
        let ipv6_ok = !ipv6.is_empty() && ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        (ipv6_ok, port)
    } else {
        let (host, port) = match split_once(d, b':') {
            Some((host, port)) => (host, Some(port)),
            None => (d, None),
        };
        (
            host.as_bytes()
                .split(|&b| b == b'.')
                .all(is_domain_component),
            port,
        )
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`: no leading or trailing `-`.
fn is_domain_component(bytes: &[u8]) -> bool {
    let edges_ok = matches!(
        (bytes.first(), bytes.last()),
        (Some(first), Some(last)) if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()
    );
    edges_ok
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// One or more `/`-separated path components.
fn is_remote_name(s: &str) -> bool {
    s.as_bytes().split(|&b| b == b'/').all(is_path_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, as a small state machine.
fn is_path_component(c: &[u8]) -> bool {
    #[derive(Clone, Copy)]
    enum State {
        /// Nothing yet, or a separator that needs an alphanumeric next.
        NeedAlnum,
        /// Inside an alphanumeric run: the component may end here.
        Alnum,
        /// After one `_`: a second `_` or an alphanumeric may follow.
        Underscore,
        /// After `-`: more dashes or an alphanumeric may follow.
        Dash,
    }
    let mut state = State::NeedAlnum;
    for &b in c {
        state = match (state, b) {
            (_, b'a'..=b'z' | b'0'..=b'9') => State::Alnum,
            (State::Alnum, b'.') | (State::Underscore, b'_') => State::NeedAlnum,
            (State::Alnum, b'_') => State::Underscore,
            (State::Alnum | State::Dash, b'-') => State::Dash,
            _ => return false,
        };
    }
    matches!(state, State::Alnum)
}

/// `[\w][\w.-]{0,127}` with Go's ASCII-only `\w`.
fn is_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    t.len() <= TAG_LENGTH_MAX
        && bytes.next().is_some_and(is_word)
        && bytes.all(|b| is_word(b) || b == b'.' || b == b'-')
}

/// Go's `\w`.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}`.
fn is_digest(d: &str) -> bool {
    let Some((algorithm, hex)) = split_once(d, b':') else {
        return false;
    };
    let mut need_letter = true;
    for b in algorithm.bytes() {
        need_letter = match b {
            b'A'..=b'Z' | b'a'..=b'z' => false,
            b'0'..=b'9' if !need_letter => false,
            b'-' | b'_' | b'+' | b'.' if !need_letter => true,
            _ => return false,
        };
    }
    !need_letter && hex.len() >= DIGEST_HEX_MIN && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// go-digest v1.0.0 `Digest.Validate` on a digest the grammar already accepted.
fn validate_digest(algorithm: &str, encoded: &str) -> Result<(), ReferenceError> {
    let hex_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        // Unknown algorithms hit go-digest's `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`;
        // after our grammar, only uppercase in the algorithm can fail it.
        _ if algorithm.bytes().any(|b| b.is_ascii_uppercase()) => {
            return Err(ReferenceError::ChecksumInvalidFormat)
        }
        _ => return Err(ReferenceError::DigestUnsupported),
    };
    if encoded.len() != hex_len {
        return Err(ReferenceError::ChecksumInvalidLength);
    }
    if !encoded
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ReferenceError::ChecksumInvalidFormat);
    }
    Ok(())
}

// The char-pattern searcher of `str::split_once` costs more than the grammar checks on names
// this short; every separator here is ASCII, so a byte search splits at a char boundary.

/// `str::split_once` at the first `sep`.
fn split_once(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `str::rsplit_once` at the last `sep`.
fn rsplit_once(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().rposition(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn sha256() -> String {
        format!("sha256:{HEX64}")
    }

    /// Asserts a successful parse, its parts, and that `Display` and re-parsing agree with them.
    #[track_caller]
    fn ok(input: &str, domain: &str, path: &str, tag: Option<&str>, digest: Option<&str>) {
        let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
        assert_eq!(r.domain(), domain, "domain of {input:?}");
        assert_eq!(r.path(), path, "path of {input:?}");
        assert_eq!(r.tag(), tag, "tag of {input:?}");
        assert_eq!(r.digest(), digest, "digest of {input:?}");
        let name = if domain.is_empty() {
            path.to_owned()
        } else {
            format!("{domain}/{path}")
        };
        assert_eq!(r.name(), name, "name of {input:?}");
        let mut full = name;
        if let Some(tag) = tag {
            full = format!("{full}:{tag}");
        }
        if let Some(digest) = digest {
            full = format!("{full}@{digest}");
        }
        assert_eq!(r.to_string(), full, "string of {input:?}");
        assert_eq!(input.parse::<ImageRef>().as_ref(), Ok(&r));
        assert_eq!(ImageRef::parse(&full), Ok(r));
    }

    #[track_caller]
    fn fails(input: &str, err: ReferenceError) {
        assert_eq!(ImageRef::parse(input), Err(err), "input {input:?}");
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        ok("root", "docker.io", "library/root", None, None);
        ok("root:tag", "docker.io", "library/root", Some("tag"), None);
        ok("user/repo", "docker.io", "user/repo", None, None);
        ok("user/repo:tag", "docker.io", "user/repo", Some("tag"), None);
        ok("docker.io/foo", "docker.io", "library/foo", None, None);
        ok(
            "docker.io/library/foo",
            "docker.io",
            "library/foo",
            None,
            None,
        );
        ok(
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
            None,
            None,
        );
        ok("library/debian", "docker.io", "library/debian", None, None);
        ok(
            "index.docker.io/debian",
            "docker.io",
            "library/debian",
            None,
            None,
        );
        ok(
            "index.docker.io/docker/docker",
            "docker.io",
            "docker/docker",
            None,
            None,
        );
        ok("test_com/foo", "docker.io", "test_com/foo", None, None);
        ok(
            "docker-rules/docker",
            "docker.io",
            "docker-rules/docker",
            None,
            None,
        );
        ok(
            "docker---rules/docker",
            "docker.io",
            "docker---rules/docker",
            None,
            None,
        );
        ok(
            "dock__er/docker",
            "docker.io",
            "dock__er/docker",
            None,
            None,
        );
        ok("d/docker", "docker.io", "d/docker", None, None);
        ok("jess/t", "docker.io", "jess/t", None, None);
        // The single-component fast path never looks for a domain or a port.
        ok("localhost", "docker.io", "library/localhost", None, None);
        ok(
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            None,
        );
        ok(
            "192.168.0.1",
            "docker.io",
            "library/192.168.0.1",
            None,
            None,
        );
        ok(
            "192.168.0.1:80",
            "docker.io",
            "library/192.168.0.1",
            Some("80"),
            None,
        );
        ok(
            "foo_bar.com:8080",
            "docker.io",
            "library/foo_bar.com",
            Some("8080"),
            None,
        );
        ok(
            "foo/foo_bar.com:8080",
            "docker.io",
            "foo/foo_bar.com",
            Some("8080"),
            None,
        );
        // 64 characters that are not all hex are a fine name.
        let song = "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev";
        ok(song, "docker.io", &format!("library/{song}"), None, None);
        // With a domain, a hex name is unambiguous.
        let hex_path = format!("library/{HEX64}");
        ok(
            &format!("docker.io/{HEX64}"),
            "docker.io",
            &hex_path,
            None,
            None,
        );
    }

    #[test]
    fn registry_domains_are_kept() {
        ok("url:5000/repo", "url:5000", "repo", None, None);
        ok("url:5000/repo:tag", "url:5000", "repo", Some("tag"), None);
        ok("test.com:8080/foo", "test.com:8080", "foo", None, None);
        ok("test-com:8080/foo", "test-com:8080", "foo", None, None);
        ok(
            "xn--n3h.com:18080/foo",
            "xn--n3h.com:18080",
            "foo",
            None,
            None,
        );
        ok(
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000",
            "library/debian",
            None,
            None,
        );
        ok(
            "192.168.0.1:8/debian",
            "192.168.0.1:8",
            "debian",
            None,
            None,
        );
        ok(
            "192.168.1.1:750050/x",
            "192.168.1.1:750050",
            "x",
            None,
            None,
        );
        ok("localhost/foo", "localhost", "foo", None, None);
        ok(
            "localhost:5000/foo/bar:tag",
            "localhost:5000",
            "foo/bar",
            Some("tag"),
            None,
        );
        ok("example.com/foo", "example.com", "foo", None, None);
        ok(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        );
        ok(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        );
        ok(
            "registry.io/foo/project--id.module--name.ver---sion--name",
            "registry.io",
            "foo/project--id.module--name.ver---sion--name",
            None,
            None,
        );
        // Uppercase is fine in a domain, and an uppercase first component is a domain.
        ok("Docker/docker", "Docker", "docker", None, None);
        ok("DOCKER/docker", "DOCKER", "docker", None, None);
        ok("Asdf.com/foo/bar", "Asdf.com", "foo/bar", None, None);
        // No Hub rewriting of anything but the exact domains.
        ok("Docker.io/foo", "Docker.io", "foo", None, None);
        ok(
            "registry-1.docker.io/foo",
            "registry-1.docker.io",
            "foo",
            None,
            None,
        );
    }

    #[test]
    fn ipv6_domains() {
        ok(
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000",
            "docker",
            None,
            None,
        );
        ok(
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "[fc00:1:2:3:4:5:6:7]:5000",
            "library/debian",
            None,
            None,
        );
        ok("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None);
        ok(
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "repo",
            None,
            None,
        );
        ok(
            "[::1]:5000/repo:tag",
            "[::1]:5000",
            "repo",
            Some("tag"),
            None,
        );
        let digest = sha256();
        ok(
            &format!("[::1]:5000/repo:tag@{digest}"),
            "[::1]:5000",
            "repo",
            Some("tag"),
            Some(&digest),
        );
        // The grammar does not check the address itself.
        ok(
            "[fd00123123123]:75050/x",
            "[fd00123123123]:75050",
            "x",
            None,
            None,
        );
        fails("[fc00::1]", ReferenceError::ReferenceInvalidFormat);
        fails("[fc00::1]:5000", ReferenceError::ReferenceInvalidFormat);
        fails("[2001:db8::1]:tag", ReferenceError::ReferenceInvalidFormat);
        fails(
            "fc00::1:5000/debian",
            ReferenceError::ReferenceInvalidFormat,
        );
        fails(
            "[fe80::1%eth0]:5000/debian",
            ReferenceError::ReferenceInvalidFormat,
        );
        fails(
            "[fe80::1%@invalidzone]:5000/repo",
            ReferenceError::ReferenceInvalidFormat,
        );
        fails(
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            ReferenceError::ReferenceInvalidFormat,
        );
        fails(
            "[fd00:1:2::3]75050/x",
            ReferenceError::ReferenceInvalidFormat,
        );
        fails(
            "[fd00:1:2::3]::75050/x",
            ReferenceError::ReferenceInvalidFormat,
        );
        fails("[]/foo", ReferenceError::ReferenceInvalidFormat);
        // Without ':' or '.', brackets are only a domain when uppercase makes them one.
        fails("[abc]/foo", ReferenceError::ReferenceInvalidFormat);
        ok("[ABC]/foo", "[ABC]", "foo", None, None);
        fails("[::1]:/foo", ReferenceError::ReferenceInvalidFormat);
    }

    #[test]
    fn domain_that_only_fits_as_a_path_leaves_domain_empty() {
        // `Parse` finds no valid domain, so the whole name is the path (upstream's Domain() == "").
        ok("foo_bar.com/baz", "", "foo_bar.com/baz", None, None);
        ok(
            "exa_mple.com/foo:v1",
            "",
            "exa_mple.com/foo",
            Some("v1"),
            None,
        );
        fails(
            "foo_bar.com:8080/app",
            ReferenceError::ReferenceInvalidFormat,
        );
        fails(
            "bad_hostname.com:8080/myapp:tag",
            ReferenceError::ReferenceInvalidFormat,
        );
        // The path limit then covers the whole name.
        fails(
            &format!("a_b.c/{}", "a".repeat(250)),
            ReferenceError::NameTooLong,
        );
        ok(
            &format!("ab.cd/{}", "a".repeat(250)),
            "ab.cd",
            &"a".repeat(250),
            None,
            None,
        );
    }

    #[test]
    fn tags_and_digests() {
        let digest = sha256();
        ok(
            &format!("root@{digest}"),
            "docker.io",
            "library/root",
            None,
            Some(&digest),
        );
        ok(
            &format!("busybox:latest@{digest}"),
            "docker.io",
            "library/busybox",
            Some("latest"),
            Some(&digest),
        );
        ok(
            &format!("url:5000/repo@{digest}"),
            "url:5000",
            "repo",
            None,
            Some(&digest),
        );
        ok(
            "lowercase:Uppercase",
            "docker.io",
            "library/lowercase",
            Some("Uppercase"),
            None,
        );
        ok("foo:_tag", "docker.io", "library/foo", Some("_tag"), None);
        ok(
            "foo:v1.2-rc_3",
            "docker.io",
            "library/foo",
            Some("v1.2-rc_3"),
            None,
        );
        let long_tag = "t".repeat(128);
        ok(
            &format!("foo:{long_tag}"),
            "docker.io",
            "library/foo",
            Some(&long_tag),
            None,
        );
        let sha384 = format!("sha384:{}", "a".repeat(96));
        ok(
            &format!("foo@{sha384}"),
            "docker.io",
            "library/foo",
            None,
            Some(&sha384),
        );
        let sha512 = format!("sha512:{}", "f".repeat(128));
        let input = format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}");
        ok(
            &input,
            "xn--7o8h.com",
            "myimage",
            Some("xn--7o8h.com"),
            Some(&sha512),
        );
    }

    #[test]
    fn tag_and_digest_grammar_failures() {
        use ReferenceError::*;
        fails(&format!("foo:{}", "t".repeat(129)), ReferenceInvalidFormat);
        fails("foo:-tag", ReferenceInvalidFormat);
        fails("foo:.tag", ReferenceInvalidFormat);
        fails("foo:invalid~tag", ReferenceInvalidFormat);
        fails("foo:", ReferenceInvalidFormat);
        fails("foo@", ReferenceInvalidFormat);
        fails("foo:tag@", ReferenceInvalidFormat);
        fails("foo@sha256:badbadbadbad", ReferenceInvalidFormat);
        fails("foo@bad", ReferenceInvalidFormat);
        fails(&format!("foo@2bad:{HEX64}"), ReferenceInvalidFormat);
        fails(&format!("foo@sha3-256:{HEX64}"), ReferenceInvalidFormat);
        fails(&format!("foo@sha256:{HEX64}@x"), ReferenceInvalidFormat);
        fails(&format!("foo@sha256:{HEX64}:tag"), ReferenceInvalidFormat);
        fails(&format!("@sha256:{HEX64}"), ReferenceInvalidFormat);
        fails(":justtag", ReferenceInvalidFormat);
        fails("a:b:c", ReferenceInvalidFormat);
    }

    #[test]
    fn go_digest_validation() {
        use ReferenceError::*;
        fails(
            &format!("repo@sha256:{}", "f".repeat(34)),
            ChecksumInvalidLength,
        );
        fails(
            &format!("repo@sha256:{}", "f".repeat(65)),
            ChecksumInvalidLength,
        );
        fails(&format!("repo@sha512:{HEX64}"), ChecksumInvalidLength);
        fails(
            &format!("repo@sha256:{}", HEX64.to_uppercase()),
            ChecksumInvalidFormat,
        );
        fails(
            &format!("validname@invaliddigest:{HEX64}"),
            DigestUnsupported,
        );
        fails(&format!("repo@md5:{}", "a".repeat(32)), DigestUnsupported);
        fails(&format!("repo@sha256+b64:{HEX64}"), DigestUnsupported);
        // An uppercase algorithm fails go-digest's own grammar before "unsupported".
        fails(&format!("repo:tag@SHA256:{HEX64}"), ChecksumInvalidFormat);
        // Without a tag, the first ':' is the digest's, so the remote check sees "SHA256".
        fails(
            &format!("repo@SHA256:{HEX64}"),
            NameContainsUppercase("library/repo@SHA256".into()),
        );
    }

    #[test]
    fn path_component_grammar() {
        use ReferenceError::*;
        for bad in [
            "-docker",
            "-docker/docker",
            "docker-/docker",
            "-docker-/docker",
            "-docker.io/docker/docker",
            "____/____",
            "_docker/_docker",
            "docker_/docker_",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "dock___er/docker",
            "docker./docker",
            ".docker/docker",
            "example.com/__underscore/myimage",
            "example.com/.dots/myimage",
            "example.com/nodouble..dots/myimage",
            "foo/bar-",
            "foo/-bar",
            "aa/asdf$$^/aa",
            "https://github.com/docker/docker",
        ] {
            fails(bad, ReferenceInvalidFormat);
        }
    }

    #[test]
    fn empty_components_slashes_and_whitespace() {
        use ReferenceError::*;
        for bad in [
            "",
            "/",
            "docker/",
            "foo/",
            "docker.io/",
            "localhost:5000/",
            "docker///docker",
            "docker.io/docker///docker",
            "/foo",
            " foo",
            "foo ",
            "foo\n",
            "\tfoo",
            "foo bar",
            "example.com:/foo",
            "example.com:http/foo",
            "example-.com/foo",
            "émile",
        ] {
            fails(bad, ReferenceInvalidFormat);
        }
    }

    #[test]
    fn uppercase_rules() {
        use ReferenceError::*;
        fails(
            "Uppercase:tag",
            NameContainsUppercase("library/Uppercase".into()),
        );
        fails("Foo", NameContainsUppercase("library/Foo".into()));
        fails(
            "docker/Docker",
            NameContainsUppercase("docker/Docker".into()),
        );
        fails(
            "docker.io/docker/Docker",
            NameContainsUppercase("docker/Docker".into()),
        );
        fails(
            "test:5000/Uppercase/lowercase:tag",
            NameContainsUppercase("Uppercase/lowercase".into()),
        );
        fails("localhost:5000/Foo", NameContainsUppercase("Foo".into()));
        fails("Émile", NameContainsUppercase("library/Émile".into()));
        fails("foo/\u{212A}", NameContainsUppercase("foo/\u{212A}".into()));
        // Domain-looking but invalid as a domain, so only its lowercase form would parse.
        fails("FOO_bar/baz", NameMustBeLowercase);
        // Go lowercases KELVIN SIGN and dotted capital I into ASCII letters.
        fails("foo:\u{212A}", NameMustBeLowercase);
        fails("\u{212A}/foo", NameMustBeLowercase);
        fails("\u{0130}.com/foo", NameMustBeLowercase);
        fails("\u{00C9}.com/foo", ReferenceInvalidFormat);
        let err = ImageRef::parse("Foo/FarB").err();
        assert_eq!(err, Some(NameContainsUppercase("FarB".into())));
    }

    #[test]
    fn hexadecimal_identifier_is_refused() {
        fails(HEX64, ReferenceError::HexadecimalName(HEX64.into()));
        // Uppercase hex, 63 or 65 digits are ordinary (if odd) names or plain errors.
        let upper = HEX64.to_uppercase();
        fails(
            &upper,
            ReferenceError::NameContainsUppercase(format!("library/{upper}")),
        );
        ok(
            &HEX64[..63],
            "docker.io",
            &format!("library/{}", &HEX64[..63]),
            None,
            None,
        );
        ok(
            &format!("{HEX64}a"),
            "docker.io",
            &format!("library/{HEX64}a"),
            None,
            None,
        );
        ok(
            &format!("{HEX64}:tag"),
            "docker.io",
            &format!("library/{HEX64}"),
            Some("tag"),
            None,
        );
    }

    #[test]
    fn name_length_counts_the_path_only() {
        use ReferenceError::NameTooLong;
        ok(
            &"a".repeat(247),
            "docker.io",
            &format!("library/{}", "a".repeat(247)),
            None,
            None,
        );
        fails(&"a".repeat(248), NameTooLong);
        let path = "a".repeat(255);
        ok(
            &format!("example.com/{path}:tag"),
            "example.com",
            &path,
            Some("tag"),
            None,
        );
        fails(&format!("domain.com/{}:tag", "a".repeat(256)), NameTooLong);
        let nested = format!("{}a", "a/".repeat(127));
        ok(
            &format!("{nested}:tag-puts-this-over-max"),
            "docker.io",
            &nested,
            Some("tag-puts-this-over-max"),
            None,
        );
        fails(&format!("this_is_{}/docker", "x".repeat(250)), NameTooLong);
        // The length error wins over a bad digest, as in upstream.
        fails(
            &format!(
                "example.com/{}@sha256:abcd{}",
                "a".repeat(256),
                "0".repeat(30)
            ),
            NameTooLong,
        );
    }

    #[test]
    fn error_messages_match_upstream() {
        use ReferenceError::*;
        let cases = [
            (ReferenceInvalidFormat, "invalid reference format"),
            (TagInvalidFormat, "invalid tag format"),
            (DigestInvalidFormat, "invalid digest format"),
            (NameMustBeLowercase, "repository name must be lowercase"),
            (NameEmpty, "repository name must have at least one component"),
            (NameTooLong, "repository name must not be more than 255 characters"),
            (ChecksumInvalidFormat, "invalid checksum digest format"),
            (ChecksumInvalidLength, "invalid checksum digest length"),
            (DigestUnsupported, "unsupported digest algorithm"),
            (
                NameContainsUppercase("library/Foo".into()),
                "invalid reference format: repository name (library/Foo) must be lowercase",
            ),
            (
                HexadecimalName(HEX64.into()),
                "invalid repository name (e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855), cannot specify 64-byte hexadecimal strings",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn familiar_forms() {
        let digest = sha256();
        let cases = [
            ("ubuntu", "ubuntu"),
            ("docker.io/library/ubuntu:latest", "ubuntu:latest"),
            (
                "index.docker.io/library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
            ),
            ("fooo/bar", "fooo/bar"),
            ("index.docker.io/fooo/bar", "fooo/bar"),
            ("library/foo/bar", "library/foo/bar"),
            ("other/library", "other/library"),
            (
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
            ),
            (
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
            ),
            ("Foo/bar", "Foo/bar"),
            ("foo_bar.com/baz:1", "foo_bar.com/baz:1"),
        ];
        for (input, familiar) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(r.familiar(), familiar, "familiar of {input:?}");
        }
        let short = format!("busybox:latest@{digest}");
        let r = ImageRef::parse(&short).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.familiar(), short);
        assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
    }

    #[test]
    fn huge_inputs_are_linear_and_safe() {
        let deep = "a/".repeat(1 << 20) + "a";
        fails(&deep, ReferenceError::NameTooLong);
        let colons = ":".repeat(1 << 20);
        fails(&colons, ReferenceError::ReferenceInvalidFormat);
        let ats = format!("foo{}", "@".repeat(1 << 20));
        fails(&ats, ReferenceError::ReferenceInvalidFormat);
        let dashes = format!("a{}a", "-".repeat(1 << 20));
        fails(&dashes, ReferenceError::NameTooLong);
        let upper = "A".repeat(1 << 20);
        fails(
            &upper,
            ReferenceError::NameContainsUppercase(format!("library/{upper}")),
        );
        let domain = format!("{}.com/x", "A-".repeat(1 << 20));
        fails(&domain, ReferenceError::ReferenceInvalidFormat);
    }

    /// Properties every accepted reference must have, whatever the input.
    fn check_invariants(input: &str) {
        let Ok(r) = ImageRef::parse(input) else {
            return;
        };
        let reparsed = ImageRef::parse(&r.to_string());
        assert_eq!(reparsed.as_ref(), Ok(&r), "round trip of {input:?}");
        let name = if r.domain().is_empty() {
            r.path().to_owned()
        } else {
            format!("{}/{}", r.domain(), r.path())
        };
        assert_eq!(r.name(), name);
        assert!(r.path().len() <= NAME_TOTAL_LENGTH_MAX);
        assert!(r.to_string().starts_with(r.name()));
        if let Some(tag) = r.tag() {
            assert!(is_tag(tag));
        }
        if let Some(digest) = r.digest() {
            assert!(digest.starts_with("sha"));
        }
        // Upstream's familiar form is lossy when a Hub path starts with a domain-like
        // component or is a bare 64-hex name; otherwise it must name the same repository.
        let first = r.path().split('/').next().unwrap_or_default();
        let lossy = r.domain() == DEFAULT_DOMAIN
            && (first.contains('.') || first == LOCALHOST || is_identifier(r.familiar().as_str()));
        if !lossy {
            let familiar = ImageRef::parse(&r.familiar());
            assert_eq!(
                familiar.as_ref().map(ImageRef::name),
                Ok(r.name()),
                "familiar of {input:?}"
            );
        }
    }

    fn hub_free_domain() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("localhost".to_owned()),
            "localhost:[0-9]{1,5}",
            "[a-z0-9]{1,5}(\\.[a-z0-9]([a-z0-9-]{0,3}[a-z0-9])?){1,2}(:[0-9]{1,5})?",
            "\\[[a-fA-F0-9]{0,4}:[a-fA-F0-9:]{0,8}\\](:[0-9]{1,5})?",
            "[A-Z][a-zA-Z0-9]{0,5}",
        ]
    }

    fn component(dots: bool) -> &'static str {
        if dots {
            "[a-z0-9]{1,4}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,2}"
        } else {
            "[a-z0-9]{1,4}((_|__|-{1,3})[a-z0-9]{1,4}){0,2}"
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            check_invariants(&s);
        }

        #[test]
        fn reference_alphabet_never_panics(s in "[a-zA-Z0-9:/@._+\\-\\[\\] \u{212A}]{0,48}") {
            check_invariants(&s);
        }

        #[test]
        fn structured_references_parse_as_modelled(
            domain in option::of(prop_oneof![
                hub_free_domain(),
                Just("docker.io".to_owned()),
                Just("index.docker.io".to_owned()),
            ]),
            first in component(false),
            rest in vec(component(true), 0..3),
            tag in option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            hex in option::of("[a-f0-9]{64}"),
        ) {
            let mut path = std::iter::once(first).chain(rest).collect::<Vec<_>>().join("/");
            let mut input = match &domain {
                Some(d) => format!("{d}/{path}"),
                None => path.clone(),
            };
            if let Some(tag) = &tag {
                input = format!("{input}:{tag}");
            }
            let digest = hex.map(|h| format!("sha256:{h}"));
            if let Some(digest) = &digest {
                input = format!("{input}@{digest}");
            }
            let expected_domain = match domain.as_deref() {
                None | Some("index.docker.io") => DEFAULT_DOMAIN,
                Some(d) => d,
            };
            if expected_domain == DEFAULT_DOMAIN && !path.contains('/') {
                path = format!("library/{path}");
            }
            let r = ImageRef::parse(&input);
            prop_assert!(r.is_ok(), "{input:?}: {r:?}");
            ok(&input, expected_domain, &path, tag.as_deref(), digest.as_deref());
            check_invariants(&input);
        }

        #[test]
        fn mutated_references_never_panic(
            base in "[a-z]{1,3}\\.[a-z]{2}(:[0-9]{2})?/[a-z0-9._-]{1,8}(/[a-z]{1,4})?(:[a-zA-Z0-9._-]{1,6})?(@sha256:[a-f0-9]{64})?",
            at in any::<prop::sample::Index>(),
            insert in proptest::char::any(),
            delete in any::<bool>(),
        ) {
            let mut s: Vec<char> = base.chars().collect();
            let i = at.index(s.len() + 1);
            if delete && i < s.len() {
                s.remove(i);
            } else {
                s.insert(i, insert);
            }
            check_invariants(&s.into_iter().collect::<String>());
        }
    }
}
