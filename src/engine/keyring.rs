//! Registry-key normalisation and matching as the kubelet's credential keyring does.
//!
//! Ports, to the byte, the kubelet code that does this: `BasicDockerKeyring.Add`/`Lookup`,
//! `URLsMatch` and `isDefaultRegistryMatch` (pkg/credentialprovider/keyring.go), over the Go
//! standard library functions ported in [`super::gostd`]. Matching works on bytes because a
//! percent-escape can put bytes that are not UTF-8 into a Go string.

use std::fmt;

use super::gostd::{glob_match, has_class, parse_url, split_host_port, GLOB};

pub use super::gostd::KeyError;

/// A docker-config key normalised like BasicDockerKeyring.Add (scheme dropped, /v1/ /v2/ cut, host verbatim).
///
/// The cluster index holds one per registry entry of every pull secret, so a key is one text
/// buffer plus offsets: the key bytes, the host and port, and the parts URLsMatch compares are
/// all slices of it, except in keys with %-escapes (see `spill`).
#[derive(Clone)]
pub struct RegistryKey {
    /// The key as text: the key bytes themselves unless a %-escape produced bytes that are not UTF-8.
    text: Box<str>,
    /// Only for keys whose bytes are not all slices of `text`: the key bytes when they are not
    /// UTF-8, then the parts URLsMatch compares when parsing the key again decodes a %-escape.
    spill: Option<Box<[u8]>>,
    /// Where the key bytes are: `spill[..key_len]` when `key_spilled`, else all of `text`.
    key_len: u32,
    key_spilled: bool,
    /// Length of the host (with port) at the start of `text`.
    host_len: u32,
    /// Where the host's port colon is in `text`, if it has one.
    port_colon: Option<u32>,
    /// How URLsMatch sees the key (it parses the key string again, which can fail): spans into
    /// `spill` when `matcher_spilled`, else into the key bytes.
    matcher: Option<Split>,
    matcher_spilled: bool,
}

impl RegistryKey {
    /// Normalise `raw`; Err where Go's url.Parse of "https://"+raw fails (the kubelet then ignores the entry).
    pub fn parse(raw: &str) -> Result<RegistryKey, KeyError> {
        // Add prepends "https://" unless one of these exact, case-sensitive schemes is there.
        let after_scheme = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .unwrap_or(raw);
        let url = parse_url(after_scheme.as_bytes())?;
        // Docker treats the v1/v2 API roots as the bare host; only the first 3 bytes go.
        let path: &[u8] = if url.path.starts_with(b"/v1/") || url.path.starts_with(b"/v2/") {
            url.path.get(3..).unwrap_or_default()
        } else {
            &url.path
        };
        let path = if path == b"/" { &[][..] } else { path };
        let mut key = Vec::with_capacity(url.host.len() + path.len());
        key.extend_from_slice(&url.host);
        key.extend_from_slice(path);

        let host_text = String::from_utf8_lossy(&url.host);
        let mut text = String::with_capacity(key.len());
        text.push_str(&host_text);
        text.push_str(&String::from_utf8_lossy(path));
        // Offsets are u32 to keep keys small.
        let too_long = |_| KeyError::TooLong;
        let key_spilled = text.as_bytes() != key.as_slice();
        let mut spill: Vec<u8> = if key_spilled { key.clone() } else { Vec::new() };
        let (matcher, matcher_spilled) = match split_url(&key) {
            None => (None, false),
            Some((split, None)) => (Some(split), false),
            Some((split, Some(decoded))) => {
                let offset = u32::try_from(spill.len()).map_err(too_long)?;
                spill.extend_from_slice(&decoded);
                (Some(split.shifted(offset)), true)
            }
        };
        Ok(RegistryKey {
            key_len: u32::try_from(key.len()).map_err(too_long)?,
            key_spilled,
            host_len: u32::try_from(host_text.len()).map_err(too_long)?,
            port_colon: port_colon(&host_text).and_then(|i| u32::try_from(i).ok()),
            matcher,
            matcher_spilled,
            spill: (!spill.is_empty()).then(|| spill.into_boxed_slice()),
            text: text.into_boxed_str(),
        })
    }

    /// The key string the kubelet indexes, byte for byte.
    fn key_bytes(&self) -> &[u8] {
        match (&self.spill, self.key_spilled) {
            (Some(spill), true) => spill.get(..self.key_len as usize).unwrap_or_default(),
            _ => self.text.as_bytes(),
        }
    }

    /// The parts URLsMatch compares; None when url.Parse refuses the key string.
    fn parts(&self) -> Option<UrlParts<'_>> {
        let base = match (&self.spill, self.matcher_spilled) {
            (Some(spill), true) => spill,
            _ => self.key_bytes(),
        };
        self.matcher.map(|m| m.parts(base))
    }

    /// The normalised key, e.g. "index.docker.io", "quay.io/foo/", "registry.example.com:5000".
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Host with port, as written (after percent-decoding and without user-info, as Go's URL.Host).
    pub fn host(&self) -> &str {
        self.text.get(..self.host_len as usize).unwrap_or_default()
    }

    /// Host without port; IPv6 brackets are kept.
    pub fn hostname(&self) -> &str {
        let host = self.host();
        self.port_colon
            .and_then(|i| host.get(..i as usize))
            .unwrap_or(host)
    }

    /// The port digits, or None when there are none (a bare trailing colon counts as no port, as in Go).
    pub fn port(&self) -> Option<&str> {
        self.port_colon
            .and_then(|i| self.host().get(i as usize + 1..))
            .filter(|p| !p.is_empty())
    }

    /// The path part: "" or e.g. "/team" or "/foo/".
    pub fn path(&self) -> &str {
        self.text.get(self.host_len as usize..).unwrap_or_default()
    }

    /// The hostname and port URLsMatch compares: a key that is not a glob matches only images
    /// with exactly these (see [`MatchTarget::host_and_port`]). None when URLsMatch cannot parse
    /// the key, which then matches nothing.
    pub fn host_and_port(&self) -> Option<(&[u8], &[u8])> {
        self.parts().map(|p| (p.hostname, p.port))
    }

    /// Whether this is the key (`index.docker.io`, written with or without scheme and `/v1/`)
    /// whose credentials the kubelet offers Docker Hub images when no key matches them.
    pub fn is_docker_hub_fallback(&self) -> bool {
        self.key_bytes() == DOCKER_HUB_KEY
    }

    /// The image name whose registry this key serves, for asking the policy whether that
    /// registry is private: `docker.io` for the Docker Hub fallback key, else the key itself.
    pub fn served_name(&self) -> &str {
        if self.is_docker_hub_fallback() {
            "docker.io"
        } else {
            self.as_str()
        }
    }

    /// Whether the key is for the image's registry host whatever the port, path or letter case:
    /// the host a secret shows the cluster treats as private (near misses included).
    pub fn claims_host(&self, target: &MatchTarget<'_>) -> bool {
        let (Some(key), Some(image)) = (self.parts(), target.parts()) else {
            return false;
        };
        if key.labels == image.labels {
            if key.glob {
                labels_match(&key, &image, true)
            } else {
                key.hostname.eq_ignore_ascii_case(image.hostname)
            }
        } else {
            key.glob && literal_suffix_agrees(&key, &image)
        }
    }

    /// Whether the host URLsMatch compares has glob metacharacters (so it is not an exact-host key).
    pub fn is_glob(&self) -> bool {
        self.matcher.is_some_and(|m| m.glob)
    }

    /// URLsMatch against an image name that was prepared once.
    pub fn matches(&self, target: &MatchTarget<'_>) -> bool {
        match (self.parts(), target.parts()) {
            (Some(key), Some(image)) => urls_match(&key, &image),
            _ => false,
        }
    }

    /// Why a related key does not match (same hostname ignoring case/port, or a glob of the same hostname); None when unrelated or when it matches.
    pub fn near_miss(&self, target: &MatchTarget<'_>) -> Option<NearMiss> {
        let (key, image) = (self.parts()?, target.parts()?);
        if urls_match(&key, &image) {
            return None;
        }
        let same_count = key.labels == image.labels;
        let exact = same_count && labels_match(&key, &image, false);
        let folded = same_count && !exact && labels_match(&key, &image, true);
        if exact || folded {
            // Report in the order the kubelet checks: port, then path, then the labels.
            if key.port != image.port {
                return Some(NearMiss::Port {
                    key: non_empty_text(key.port),
                    image: non_empty_text(image.port),
                });
            }
            if !image.path.starts_with(key.path) {
                return Some(NearMiss::Path {
                    key_path: String::from_utf8_lossy(key.path).into_owned(),
                    image_path: String::from_utf8_lossy(image.path).into_owned(),
                });
            }
            return folded.then_some(NearMiss::Case);
        }
        (key.glob && !same_count && literal_suffix_agrees(&key, &image))
            .then_some(NearMiss::LabelCount)
    }
}

// Every other field is a function of the key bytes, so they alone decide equality and order.
impl PartialEq for RegistryKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_bytes() == other.key_bytes()
    }
}

impl Eq for RegistryKey {}

impl std::hash::Hash for RegistryKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key_bytes().hash(state);
    }
}

impl PartialOrd for RegistryKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RegistryKey {
    /// Go's sort order of the key strings: bytewise.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key_bytes().cmp(other.key_bytes())
    }
}

impl fmt::Debug for RegistryKey {
    /// The normalised key as text, rather than its bytes and parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegistryKey").field(&self.as_str()).finish()
    }
}

/// An image Name() (e.g. "registry.example.com:5000/team/app", "docker.io/library/nginx") split once for matching.
///
/// Borrows the name: an image name (ImageRef's grammar admits no '%') never needs decoding,
/// so building a target allocates nothing.
#[derive(Debug, Clone)]
pub struct MatchTarget<'a> {
    name: &'a str,
    /// What `split` indexes when url.Parse decoded a %-escape in `name` (never for image names).
    decoded: Option<Box<[u8]>>,
    /// None when `url.Parse("https://"+name)` fails: then no key matches, as in Lookup.
    split: Option<Split>,
}

impl<'a> MatchTarget<'a> {
    /// Parse `name` as URLsMatch does, once for all the keys it is compared with.
    pub fn new(name: &'a str) -> MatchTarget<'a> {
        let (split, decoded) = match split_url(name.as_bytes()) {
            Some((split, decoded)) => (Some(split), decoded),
            None => (None, None),
        };
        MatchTarget {
            name,
            decoded,
            split,
        }
    }

    fn parts(&self) -> Option<UrlParts<'_>> {
        let base = self.decoded.as_deref().unwrap_or(self.name.as_bytes());
        self.split.map(|s| s.parts(base))
    }

    /// The hostname and port URLsMatch compares; None when url.Parse refuses the name.
    pub fn host_and_port(&self) -> Option<(&[u8], &[u8])> {
        self.parts().map(|p| (p.hostname, p.port))
    }

    /// The image name as given.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The registry part of the name as written: everything before the first '/'.
    pub fn host(&self) -> &'a str {
        self.name
            .split_once('/')
            .map_or(self.name, |(host, _)| host)
    }
}

/// Why a key for the same registry host does not cover the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NearMiss {
    /// Ports are compared as strings: absent and "443" differ, as do "5000" and "05000".
    Port {
        /// The key's port, None when it has none.
        key: Option<String>,
        /// The image's port, None when it has none.
        image: Option<String>,
    },
    /// The image path does not start with the key path (a plain string prefix).
    Path {
        /// The key's path, e.g. "/team/".
        key_path: String,
        /// The image's path, e.g. "/team".
        image_path: String,
    },
    /// The hosts differ only in ASCII case; the kubelet compares case-sensitively.
    Case,
    /// A glob key whose `*` would have to span a '.'; each `*` covers one label only.
    LabelCount,
}

/// isDefaultRegistryMatch: whether the kubelet would offer index.docker.io credentials for this name.
pub fn is_default_registry_match(name: &str) -> bool {
    let (first, has_slash) = match name.split_once('/') {
        Some((first, _)) => (first, true),
        None => (name, false),
    };
    if first.is_empty() {
        return false;
    }
    // Docker reads a first segment with '.' or ':' as a registry host, anything else as a user.
    !has_slash || first == "docker.io" || first == "index.docker.io" || !first.contains(['.', ':'])
}

/// The name of the key the kubelet falls back to for Docker Hub images.
const DOCKER_HUB_KEY: &[u8] = b"index.docker.io";

/// A pod's credential keyring as the kubelet builds it (BasicDockerKeyring over the entries of
/// every usable pull secret), and its Lookup: the one implementation of the lookup that every
/// pullgate path uses, from admission to diagnosis.
#[derive(Clone)]
pub struct Keyring<'k, T> {
    /// (key, position of its source, value), in source then key order.
    entries: Vec<(&'k RegistryKey, usize, T)>,
    sources: usize,
}

impl<'k, T: Copy + PartialEq> Keyring<'k, T> {
    /// An empty keyring.
    pub fn new() -> Self {
        Keyring {
            entries: Vec::new(),
            sources: 0,
        }
    }

    /// A keyring of one source's keys.
    pub fn of(keys: impl IntoIterator<Item = &'k RegistryKey>, value: T) -> Self {
        let mut ring = Keyring::new();
        ring.add(keys, value);
        ring
    }

    /// Add one source (a pull secret): its keys, each carrying `value`; sources keep the order
    /// they are added in, as the pod's imagePullSecrets do.
    pub fn add(&mut self, keys: impl IntoIterator<Item = &'k RegistryKey>, value: T) {
        let at = self.sources;
        self.sources += 1;
        self.entries
            .extend(keys.into_iter().map(|k| (k, at, value)));
    }

    /// BasicDockerKeyring.Lookup: (key, value) of every key that matches, keys in DESCENDING
    /// byte order and one key's values in source order; the `index.docker.io` entries only when
    /// nothing matched and the name is a default-registry name.
    pub fn lookup(&self, target: &MatchTarget<'_>) -> Vec<(&'k RegistryKey, T)> {
        let mut hits: Vec<(&'k RegistryKey, usize, T)> = self
            .entries
            .iter()
            .filter(|(k, _, _)| k.matches(target))
            .copied()
            .collect();
        if hits.is_empty() && is_default_registry_match(target.name()) {
            hits.extend(
                self.entries
                    .iter()
                    .filter(|(k, _, _)| k.is_docker_hub_fallback())
                    .copied(),
            );
        }
        hits.sort_by(|a, b| b.0.cmp(a.0).then(a.1.cmp(&b.1)));
        hits.into_iter().map(|(k, _, v)| (k, v)).collect()
    }

    /// The distinct values [`Keyring::lookup`] returns, in its order: the secrets the kubelet
    /// tries for an image.
    pub fn lookup_values(&self, target: &MatchTarget<'_>) -> Vec<T> {
        let mut out: Vec<T> = Vec::new();
        for (_, v) in self.lookup(target) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    /// Whether [`Keyring::lookup`] finds anything, without collecting.
    pub fn covers(&self, target: &MatchTarget<'_>) -> bool {
        keys_cover(self.entries.iter().map(|(k, _, _)| *k), target)
    }
}

impl<T: Copy + PartialEq> Default for Keyring<'_, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Keyring<'_, T> {
    /// Lists keys only: values may stand for credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(k, _, _)| k.as_str()))
            .finish()
    }
}

/// Whether a keyring of these keys finds credentials for the image: a key matches it, or the
/// `index.docker.io` fallback applies. [`Keyring::covers`] is this.
pub fn keys_cover<'k>(
    keys: impl IntoIterator<Item = &'k RegistryKey>,
    target: &MatchTarget<'_>,
) -> bool {
    let mut hub = false;
    for k in keys {
        if k.matches(target) {
            return true;
        }
        hub |= k.is_docker_hub_fallback();
    }
    hub && is_default_registry_match(target.name())
}

/// A byte range of a buffer; u32 because the index holds one [`Split`] per registry key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part` lies in `base`, if it is a slice of it (an empty part lies anywhere).
    fn of(base: &[u8], part: &[u8]) -> Option<Span> {
        if part.is_empty() {
            return Some(Span::default());
        }
        let start = part.as_ptr().addr().checked_sub(base.as_ptr().addr())?;
        let end = start.checked_add(part.len())?;
        if end > base.len() {
            return None;
        }
        Some(Span {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    fn get(self, base: &[u8]) -> &[u8] {
        base.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    fn shifted(self, by: u32) -> Span {
        Span {
            start: self.start.saturating_add(by),
            end: self.end.saturating_add(by),
        }
    }
}

/// Where the parts URLsMatch compares lie in a buffer, and what matching needs to know of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    hostname: Span,
    port: Span,
    path: Span,
    /// How many '.'-separated labels the hostname has.
    labels: u32,
    /// Whether the hostname has a filepath.Match metacharacter; without one a pattern matches
    /// only itself, so the hostnames can be compared as bytes.
    glob: bool,
}

impl Split {
    fn parts(self, base: &[u8]) -> UrlParts<'_> {
        UrlParts {
            hostname: self.hostname.get(base),
            port: self.port.get(base),
            path: self.path.get(base),
            labels: self.labels,
            glob: self.glob,
        }
    }

    fn shifted(self, by: u32) -> Split {
        Split {
            hostname: self.hostname.shifted(by),
            port: self.port.shifted(by),
            path: self.path.shifted(by),
            ..self
        }
    }
}

/// ParseSchemelessURL then SplitURL; None where url.Parse fails.
///
/// The spans index `schemeless` itself when url.Parse decoded nothing, which is always the case
/// for an image name and almost always for a key; otherwise they index the decoded parts, which
/// are returned too.
fn split_url(schemeless: &[u8]) -> Option<(Split, Option<Box<[u8]>>)> {
    let url = parse_url(schemeless).ok()?;
    let (hostname, port): (&[u8], &[u8]) = split_host_port(&url.host).unwrap_or((&url.host, &[]));
    let labels = u32::try_from(hostname.iter().filter(|&&b| b == b'.').count() + 1).ok()?;
    let glob = hostname.iter().any(|&b| has_class(b, GLOB));
    let in_place = (
        Span::of(schemeless, hostname),
        Span::of(schemeless, port),
        Span::of(schemeless, &url.path),
    );
    if let (Some(hostname), Some(port), Some(path)) = in_place {
        let split = Split {
            hostname,
            port,
            path,
            labels,
            glob,
        };
        return Some((split, None));
    }
    let mut decoded = Vec::with_capacity(hostname.len() + port.len() + url.path.len());
    let mut span = |part: &[u8]| {
        let start = u32::try_from(decoded.len()).ok()?;
        decoded.extend_from_slice(part);
        let end = u32::try_from(decoded.len()).ok()?;
        Some(Span { start, end })
    };
    let split = Split {
        hostname: span(hostname)?,
        port: span(port)?,
        path: span(&url.path)?,
        labels,
        glob,
    };
    Some((split, Some(decoded.into_boxed_slice())))
}

/// A URL as URLsMatch compares it: SplitURL's host and port, and the path.
#[derive(Debug, Clone, Copy)]
struct UrlParts<'a> {
    /// What SplitURL splits on '.': SplitHostPort's host, or the whole Host when that fails.
    hostname: &'a [u8],
    /// SplitHostPort's port, empty when absent or when SplitHostPort fails.
    port: &'a [u8],
    path: &'a [u8],
    labels: u32,
    glob: bool,
}

impl<'a> UrlParts<'a> {
    fn label_iter(&self) -> impl Iterator<Item = &'a [u8]> {
        self.hostname.split(|&b| b == b'.')
    }
}

/// URLsMatch: equal ports as strings, equal label counts, path prefix, then a glob per label.
fn urls_match(key: &UrlParts<'_>, image: &UrlParts<'_>) -> bool {
    // The same conditions as Go's, cheapest and most often failing first.
    key.labels == image.labels
        && key.port == image.port
        && image.path.starts_with(key.path)
        && if key.glob {
            labels_match(key, image, false)
        } else {
            // Label by label, a pattern without metacharacters matches only itself.
            key.hostname == image.hostname
        }
}

fn labels_match(key: &UrlParts<'_>, image: &UrlParts<'_>, fold_case: bool) -> bool {
    key.label_iter()
        .zip(image.label_iter())
        .all(|(pattern, label)| {
            if fold_case {
                glob_match(&pattern.to_ascii_lowercase(), &label.to_ascii_lowercase())
            } else {
                glob_match(pattern, label)
            }
        })
}

/// Whether the trailing literal labels of a glob key name the image's trailing labels.
fn literal_suffix_agrees(key: &UrlParts<'_>, image: &UrlParts<'_>) -> bool {
    let key_labels: Vec<&[u8]> = key.label_iter().collect();
    let image_labels: Vec<&[u8]> = image.label_iter().collect();
    let literal = key_labels
        .iter()
        .rev()
        .take_while(|l| !l.iter().any(|&b| has_class(b, GLOB)))
        .count();
    literal > 0
        && literal <= image_labels.len()
        && key_labels
            .iter()
            .rev()
            .zip(image_labels.iter().rev())
            .take(literal)
            .all(|(k, i)| k.eq_ignore_ascii_case(i))
}

fn non_empty_text(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Where the port colon of a parsed host is: after the closing bracket, else its only colon.
fn port_colon(host: &str) -> Option<usize> {
    let from = if host.starts_with('[') {
        host.rfind(']')? + 1
    } else {
        0
    };
    host.get(from..)?.find(':').map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gostd::parse_url_general;
    use proptest::prelude::*;

    fn key(raw: &str) -> RegistryKey {
        match RegistryKey::parse(raw) {
            Ok(k) => k,
            Err(e) => panic!("{raw:?} should parse: {e}"),
        }
    }

    #[test]
    fn normalisation_table() {
        // (raw, normalised key)
        let cases = [
            ("index.docker.io", "index.docker.io"),
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("https://index.docker.io/v2/", "index.docker.io"),
            ("http://index.docker.io", "index.docker.io"),
            ("http://foo.example.com", "foo.example.com"),
            ("https://quay.io/v1/", "quay.io"),
            ("quay.io/v2/foo", "quay.io/foo"),
            ("quay.io/v1/v2/", "quay.io/v2/"),
            ("quay.io/v1", "quay.io/v1"),
            ("quay.io/v3/", "quay.io/v3/"),
            ("quay.io/foo/", "quay.io/foo/"),
            ("quay.io/", "quay.io"),
            ("quay.io//", "quay.io//"),
            ("Quay.IO/Team", "Quay.IO/Team"),
            ("registry.example.com:5000", "registry.example.com:5000"),
            ("registry.example.com:", "registry.example.com:"),
            ("*.example.com/path", "*.example.com/path"),
            ("[::1]:5000", "[::1]:5000"),
            ("[::1]", "[::1]"),
            ("[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]"),
            ("[fe80::1%25eth0]:5000/x", "[fe80::1%eth0]:5000/x"),
            ("user:pass@registry.io/team", "registry.io/team"),
            ("a@b@registry.io", "registry.io"),
            ("registry.io/my path", "registry.io/my path"),
            ("registry.io/a%2Fb", "registry.io/a/b"),
            ("%C3%A9xample.com", "éxample.com"),
            ("a%25b.com", "a%b.com"),
            ("registry.io?x=1/y", "registry.io"),
            ("registry.io/team?x", "registry.io/team"),
            ("k?s.io", "k"),
            ("registry.io#frag", "registry.io"),
            // A control character after '#' is not checked by Go.
            ("registry.io#a\nb", "registry.io"),
            ("", ""),
            ("/team", "/team"),
            // Only the exact lower-case schemes are recognised; others become host "X:".
            ("HTTPS://quay.io", "HTTPS://quay.io"),
            ("ftp://quay.io/v1/", "ftp://quay.io/v1/"),
            ("https://https://quay.io", "https://quay.io"),
        ];
        for (raw, want) in cases {
            assert_eq!(key(raw).as_str(), want, "raw {raw:?}");
        }
    }

    #[test]
    fn normalisation_errors() {
        let cases = [
            ("host:abc", KeyError::InvalidPort(":abc".into())),
            ("host:80:80", KeyError::InvalidPort(":80:80".into())),
            ("::1", KeyError::InvalidPort("::1".into())),
            ("my registry.io", KeyError::InvalidHostCharacter(' ')),
            ("reg{1}.io", KeyError::InvalidHostCharacter('{')),
            ("reg\\x.io", KeyError::InvalidHostCharacter('\\')),
            ("registry.io\n", KeyError::ControlCharacter),
            ("registry.io/a\tb", KeyError::ControlCharacter),
            ("registry.io?\u{7f}", KeyError::ControlCharacter),
            ("registry.io/a%zz", KeyError::InvalidEscape { part: "path" }),
            ("registry.io/a%4", KeyError::InvalidEscape { part: "path" }),
            (
                "registry.io#%zz",
                KeyError::InvalidEscape { part: "fragment" },
            ),
            ("%41bc.com", KeyError::InvalidEscape { part: "host" }),
            ("us er@registry.io", KeyError::InvalidUserinfo),
            (
                "us%zzer@registry.io",
                KeyError::InvalidEscape { part: "user-info" },
            ),
            ("[::1", KeyError::MissingBracket),
            ("[::1]x", KeyError::InvalidPort("x".into())),
            ("[::1]:x", KeyError::InvalidPort(":x".into())),
            ("[1.2.3.4]", KeyError::InvalidIpLiteral),
            ("[v1.x]", KeyError::InvalidIpLiteral),
            ("[::1%25]", KeyError::InvalidIpLiteral),
            ("[1:2:3:4:5:6:7:8:9]", KeyError::InvalidIpLiteral),
            ("[::ffff:01.2.3.4]", KeyError::InvalidIpLiteral),
            ("reg[0-9].io", KeyError::InvalidIpLiteral),
            ("[a-z].io", KeyError::InvalidPort(".io".into())),
        ];
        for (raw, want) in cases {
            assert_eq!(RegistryKey::parse(raw), Err(want), "raw {raw:?}");
        }
    }

    #[test]
    fn key_components() {
        // (raw, host, hostname, port, path)
        let cases = [
            (
                "registry.example.com:5000/team",
                "registry.example.com:5000",
                "registry.example.com",
                Some("5000"),
                "/team",
            ),
            ("quay.io", "quay.io", "quay.io", None, ""),
            ("quay.io:", "quay.io:", "quay.io", None, ""),
            (
                "https://quay.io/v2/foo/",
                "quay.io",
                "quay.io",
                None,
                "/foo/",
            ),
            ("[::1]:443/x", "[::1]:443", "[::1]", Some("443"), "/x"),
            ("[::1]", "[::1]", "[::1]", None, ""),
        ];
        for (raw, host, hostname, port, path) in cases {
            let k = key(raw);
            assert_eq!(
                (k.host(), k.hostname(), k.port(), k.path()),
                (host, hostname, port, path),
                "raw {raw:?}"
            );
        }
        assert!(key("*.example.com").is_glob());
        assert!(
            key("[::1]").is_glob(),
            "URLsMatch sees '[::1]' as a character class"
        );
        assert!(!key("[::1]:5000").is_glob());
        assert!(!key("quay.io/*").is_glob());
        assert_eq!(
            format!("{:?}", key("https://quay.io/v1/")),
            r#"RegistryKey("quay.io")"#
        );
    }

    #[test]
    fn ordering_is_byte_order_of_the_key() {
        let mut keys = [
            key("*.example.com/path"),
            key("foo.example.com"),
            key("bar.example.com/pong"),
            key("bar.example.com"),
        ];
        keys.sort();
        let sorted: Vec<&str> = keys.iter().map(RegistryKey::as_str).collect();
        assert_eq!(
            sorted,
            [
                "*.example.com/path",
                "bar.example.com",
                "bar.example.com/pong",
                "foo.example.com"
            ]
        );
        assert_eq!(key("https://quay.io/v1/"), key("quay.io"));
    }

    #[test]
    fn matching_table() {
        // (key, image name, matches)
        let cases = [
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            ("*kubernetes.io", "kubernetes.io", true),
            ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
            ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
            (
                "*.kubernetes.io:1111/blah",
                "prefix.kubernetes.io:1111/blah",
                true,
            ),
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
            ("*.*.kubernetes.io", "kubernetes.io", false),
            ("kubernetes.io", "kubernetes.com", false),
            ("k*.io", "quay.io", false),
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
            ("*.io/foo", "x.io:1111/foo/bar", false),
            (
                "*.docker.io/path:1111",
                "prefix.docker.io/path:1111/foo/bar",
                true,
            ),
            (
                "prefix.*.io/path:1111",
                "prefix.docker.io/path/subpath:1111/foo/bar",
                false,
            ),
            // Ports are strings: no default-port folding.
            ("quay.io", "quay.io:443/x", false),
            ("quay.io:443", "quay.io:443/x", true),
            ("quay.io:443", "quay.io/x", false),
            ("quay.io:", "quay.io/x", true),
            ("quay.io:5000", "quay.io:05000/x", false),
            // Paths are plain string prefixes; '*' in a path is literal.
            ("bar.example.com/pong", "bar.example.com/pongz", true),
            ("bar.example.com/pong", "bar.example.com/pon", false),
            ("quay.io/foo/", "quay.io/foo", false),
            ("quay.io/foo/", "quay.io/foo/bar", true),
            ("*.io/fo*", "x.io/foo", false),
            ("*.io/fo*", "x.io/fo*o", true),
            ("https://quay.io/v1/", "quay.io/foo/bar", true),
            // Case-sensitive everywhere.
            ("Quay.io", "quay.io/x", false),
            ("quay.io/Team", "quay.io/team/x", false),
            // IPv6: with a port SplitHostPort strips the brackets; without, "[::1]" is a glob class.
            ("[::1]:5000", "[::1]:5000/x", true),
            ("[::1]", "[::1]/x", false),
            // The Hub key never matches normalised Hub names directly.
            ("index.docker.io", "docker.io/library/nginx", false),
            ("docker.io", "docker.io/library/nginx", true),
            ("*.io", "docker.io/library/nginx", true),
            // A name url.Parse rejects matches nothing.
            ("*", "bad host/x", false),
        ];
        for (k, image, want) in cases {
            assert_eq!(
                key(k).matches(&MatchTarget::new(image)),
                want,
                "key {k:?} image {image:?}"
            );
        }
    }

    #[test]
    fn default_registry_match() {
        let cases = [
            ("foo/bar", true),
            ("docker.io/foo/bar", true),
            ("index.docker.io/foo/bar", true),
            ("foo", true),
            ("docker.io", true),
            ("localhost/x", true),
            ("Foo/x", true),
            ("", false),
            ("/x", false),
            ("registry.tld/foo/bar", false),
            ("registry:5000/foo/bar", false),
            ("localhost:5000/x", false),
            ("myhostdocker.io/foo/bar", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_default_registry_match(name), want, "{name:?}");
        }
    }

    /// Owns the keys of a test keyring, one source per key, and looks names up through [`Keyring`].
    struct Ring<V> {
        keys: Vec<(RegistryKey, V)>,
    }

    impl<V: Copy + PartialEq> Ring<V> {
        fn new() -> Self {
            Ring { keys: Vec::new() }
        }

        fn insert(&mut self, key: RegistryKey, value: V) {
            self.keys.push((key, value));
        }

        fn keyring(&self) -> Keyring<'_, V> {
            let mut ring = Keyring::new();
            for (k, v) in &self.keys {
                ring.add([k], *v);
            }
            ring
        }

        fn lookup(&self, image: &str) -> Vec<V> {
            let ring = self.keyring();
            ring.lookup(&MatchTarget::new(image))
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        }

        fn covers(&self, image: &str) -> bool {
            self.keyring().covers(&MatchTarget::new(image))
        }
    }

    fn ring(entries: &[(&str, &'static str)]) -> Ring<&'static str> {
        let mut ring = Ring::new();
        for (raw, value) in entries {
            ring.insert(key(raw), *value);
        }
        ring
    }

    #[test]
    fn lookup_orders_descending_and_collects_every_match() {
        let ring = ring(&[
            ("bar.example.com/pong", "grace"),
            ("bar.example.com", "ada"),
        ]);
        let cases: [(&str, &[&str]); 7] = [
            ("bar.example.com", &["ada"]),
            ("bar.example.com/pong", &["grace", "ada"]),
            ("bar.example.com/ping", &["ada"]),
            ("bar.example.com/pongz", &["grace", "ada"]),
            ("bar.example.com/pong/pang", &["grace", "ada"]),
            ("example.com", &[]),
            ("foo.example.com", &[]),
        ];
        for (image, want) in cases {
            let got: Vec<&str> = ring.lookup(image);
            assert_eq!(got, want, "image {image:?}");
            assert_eq!(ring.covers(image), !want.is_empty(), "image {image:?}");
        }
    }

    #[test]
    fn lookup_orders_by_bytes_not_specificity() {
        let ring = ring(&[("*.example.com/path", "glob"), ("foo.example.com", "exact")]);
        let got: Vec<&str> = ring.lookup("foo.example.com/path/app");
        assert_eq!(got, ["exact", "glob"], "'f' sorts after '*'");
    }

    #[test]
    fn values_of_one_key_keep_insertion_order() {
        let ring = ring(&[
            ("quay.io", "first"),
            ("https://quay.io/v1/", "second"),
            ("quay.io/team", "team"),
            ("http://quay.io", "third"),
        ]);
        let got: Vec<&str> = ring.lookup("quay.io/team/app");
        assert_eq!(got, ["team", "first", "second", "third"]);
    }

    #[test]
    fn hub_fallback_only_when_nothing_matched() {
        let hub = ring(&[("https://index.docker.io/v1/", "hub")]);
        let cases = [
            ("docker.io/library/nginx", true),
            ("google/docker-registry", true),
            ("jenkins", true),
            ("localhost/x", true),
            ("Foo/x", true),
            ("index.docker.io/v1//google/docker-registry", true),
            ("registry.tld/foo", false),
            ("world.mesos.org/foo/bar", false),
            ("localhost:5000/x", false),
        ];
        for (image, want) in cases {
            let got: Vec<&str> = hub.lookup(image);
            assert_eq!(got == ["hub"], want, "image {image:?}: {got:?}");
            assert_eq!(hub.covers(image), want, "image {image:?}");
        }

        let with_glob = ring(&[("index.docker.io", "hub"), ("*.io", "glob")]);
        let got: Vec<&str> = with_glob.lookup("docker.io/library/nginx");
        assert_eq!(got, ["glob"], "a direct match suppresses the Hub fallback");

        let with_docker_io = ring(&[("index.docker.io", "hub"), ("docker.io", "direct")]);
        let got: Vec<&str> = with_docker_io.lookup("docker.io/library/nginx");
        assert_eq!(got, ["direct"]);

        let path_only = ring(&[("index.docker.io/library", "lib")]);
        assert!(
            path_only.lookup("docker.io/library/nginx").is_empty(),
            "only the bare key is the fallback"
        );
    }

    #[test]
    fn near_misses() {
        let cases = [
            (
                "quay.io",
                "quay.io:443/x",
                Some(NearMiss::Port {
                    key: None,
                    image: Some("443".into()),
                }),
            ),
            (
                "*.example.com:5000",
                "a.example.com/x",
                Some(NearMiss::Port {
                    key: Some("5000".into()),
                    image: None,
                }),
            ),
            (
                "quay.io/foo/",
                "quay.io/foo",
                Some(NearMiss::Path {
                    key_path: "/foo/".into(),
                    image_path: "/foo".into(),
                }),
            ),
            ("Quay.io", "quay.io/x", Some(NearMiss::Case)),
            ("*.Example.com", "a.example.com/x", Some(NearMiss::Case)),
            (
                "*.kubernetes.io",
                "kubernetes.io/x",
                Some(NearMiss::LabelCount),
            ),
            (
                "*.example.com",
                "a.b.example.com/x",
                Some(NearMiss::LabelCount),
            ),
            ("*.example.com", "foo.com/x", None),
            ("example.com", "a.example.com/x", None),
            ("example.com", "other.com/x", None),
            ("quay.io", "quay.io/x", None),
        ];
        for (k, image, want) in cases {
            assert_eq!(
                key(k).near_miss(&MatchTarget::new(image)),
                want,
                "key {k:?} image {image:?}"
            );
        }
    }

    #[test]
    fn keys_whose_bytes_are_not_their_text_still_match_by_bytes() {
        // Not UTF-8 once decoded: the key bytes are kept beside the text.
        let k = key("%FF.io");
        assert_eq!(k.as_str(), "\u{FFFD}.io");
        assert!(k.matches(&MatchTarget::new("%FF.io/x")));
        assert!(!k.matches(&MatchTarget::new("\u{FFFD}.io/x")));
        assert_ne!(k, key("%FE.io"));
        // URLsMatch decodes the key string again: "%25" in the key becomes '%'.
        let k = key("registry.io/a%2525b");
        assert_eq!(k.as_str(), "registry.io/a%25b");
        assert!(k.matches(&MatchTarget::new("registry.io/a%25b/x")));
        assert!(!k.matches(&MatchTarget::new("registry.io/a%2525b/x")));
        // The second parse fails on "%et": the key never matches.
        let k = key("[fe80::1%25eth0]:5000/x");
        assert!(!k.matches(&MatchTarget::new("[fe80::1%25eth0]:5000/x")));
    }

    #[test]
    fn match_target_parts() {
        let t = MatchTarget::new("registry.example.com:5000/team/app");
        assert_eq!(
            (t.name(), t.host()),
            (
                "registry.example.com:5000/team/app",
                "registry.example.com:5000"
            )
        );
        assert_eq!(MatchTarget::new("nginx").host(), "nginx");
    }

    #[test]
    fn debug_of_a_keyring_shows_no_values() {
        let ring = ring(&[("quay.io", "hunter2-value")]);
        let shown = format!("{:?}", ring.keyring());
        assert!(
            shown.contains("quay.io") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    /// The kubelet's Lookup: every key, descending, URLsMatch, then the Hub fallback.
    fn naive_lookup(keys: &[(RegistryKey, u32)], name: &str) -> Vec<u32> {
        let mut sorted: Vec<&RegistryKey> = keys.iter().map(|(k, _)| k).collect();
        sorted.sort();
        sorted.dedup();
        let target = MatchTarget::new(name);
        let hits: Vec<u32> = sorted
            .iter()
            .rev()
            .filter(|k| k.matches(&target))
            .flat_map(|k| keys.iter().filter(move |(k2, _)| k2 == *k).map(|(_, v)| *v))
            .collect();
        if !hits.is_empty() || !is_default_registry_match(name) {
            return hits;
        }
        keys.iter()
            .filter(|(k, _)| k.as_str() == "index.docker.io")
            .map(|(_, v)| *v)
            .collect()
    }

    /// SplitURL's parts computed the plain way, owned: what the in-place spans must agree with.
    fn naive_parts(s: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let url = parse_url_general(s).ok()?;
        let (hostname, port) = split_host_port(&url.host).unwrap_or((&url.host, &[]));
        Some((hostname.to_vec(), port.to_vec(), url.path.to_vec()))
    }

    fn owned(p: UrlParts<'_>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (p.hostname.to_vec(), p.port.to_vec(), p.path.to_vec())
    }

    /// URLsMatch as Go runs it: every label through filepath.Match, metacharacters or not.
    fn naive_urls_match(
        key: &(Vec<u8>, Vec<u8>, Vec<u8>),
        image: &(Vec<u8>, Vec<u8>, Vec<u8>),
    ) -> bool {
        let labels = |h: &[u8]| {
            h.split(|&b| b == b'.')
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        };
        let (key_labels, image_labels) = (labels(&key.0), labels(&image.0));
        key.1 == image.1
            && key_labels.len() == image_labels.len()
            && image.2.starts_with(&key.2)
            && key_labels
                .iter()
                .zip(&image_labels)
                .all(|(pattern, label)| glob_match(pattern, label))
    }

    /// Keys with globs, ports, IPv6 literals and escapes that decode (or spill) at either parse.
    fn escaped_key_strategy() -> impl Strategy<Value = String> {
        prop::string::string_regex(
            "(https://)?((\\*|a|b|[ab?]|a%25b|%C3%A9|%FF|A)(\\.(\\*|a|b|io|A|%C3%A9)){0,2}|\\[::1\\]|\\[fe80::1%25eth0\\])(:(5000|))?(/(a|b|%2525|%FF|%2F)){0,2}",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn escaped_image_strategy() -> impl Strategy<Value = String> {
        prop::string::string_regex(
            "((a|b|x%25|é|A|io)(\\.(a|b|io|A|é)){0,2}|\\[::1\\])(:5000)?(/(a|b|%25|%2F|é)){0,2}",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        prop::string::string_regex("(https://)?((\\*|a|b|ab)\\.){0,2}(io|docker\\.io|index\\.docker\\.io)(:(5000|443|))?(/v1/|/(a|b|ab|a/b)/?)?")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn image_strategy() -> impl Strategy<Value = String> {
        prop::string::string_regex(
            "(((a|b|ab)\\.){0,2}(io|docker\\.io)(:(5000|443))?/)?(a|b|ab|library)(/(a|b|ab|x))?",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    proptest! {
        #[test]
        fn indexed_lookup_equals_the_kubelet_scan(
            raws in prop::collection::vec(key_strategy(), 0..40),
            images in prop::collection::vec(image_strategy(), 1..20),
        ) {
            let keys: Vec<(RegistryKey, u32)> = raws
                .iter()
                .zip(0u32..)
                .filter_map(|(raw, v)| RegistryKey::parse(raw).ok().map(|k| (k, v)))
                .collect();
            let mut ring = Ring::new();
            for (k, v) in &keys {
                ring.insert(k.clone(), *v);
            }
            for image in &images {
                let want = naive_lookup(&keys, image);
                prop_assert_eq!(ring.lookup(image), want.clone(), "image {}", image);
                prop_assert_eq!(ring.covers(image), !want.is_empty());
            }
        }

        #[test]
        fn many_paths_on_one_host_look_up_as_the_kubelet_scan(
            paths in prop::collection::vec("(/[ab]{0,3}){0,3}/?", 17..60),
            images in prop::collection::vec("r\\.io(:5000)?(/[ab]{1,3}){1,4}", 1..20),
        ) {
                        let keys: Vec<(RegistryKey, u32)> = paths
                .iter()
                .zip(0u32..)
                .filter_map(|(path, v)| RegistryKey::parse(&format!("r.io{path}")).ok().map(|k| (k, v)))
                .collect();
            let mut ring = Ring::new();
            for (k, v) in &keys {
                ring.insert(k.clone(), *v);
            }
            for image in &images {
                let want = naive_lookup(&keys, image);
                prop_assert_eq!(ring.lookup(image), want.clone(), "image {}", image);
                prop_assert_eq!(ring.covers(image), !want.is_empty());
            }
        }

        #[test]
        fn in_place_parts_and_byte_compared_hosts_equal_the_plain_port(
            raw in escaped_key_strategy(),
            image in escaped_image_strategy(),
        ) {
            let target = MatchTarget::new(&image);
            let naive_image = naive_parts(image.as_bytes());
            prop_assert_eq!(target.parts().map(owned), naive_image.clone());
            if let Ok(k) = RegistryKey::parse(&raw) {
                let naive_key = naive_parts(k.key_bytes());
                prop_assert_eq!(k.parts().map(owned), naive_key.clone(), "key {:?}", k);
                prop_assert_eq!(
                    k.is_glob(),
                    naive_key.as_ref().is_some_and(|p| p.0.iter().any(|b| b"*?[\\".contains(b)))
                );
                let want = match (&naive_key, &naive_image) {
                    (Some(key), Some(image)) => naive_urls_match(key, image),
                    _ => false,
                };
                prop_assert_eq!(k.matches(&target), want, "key {:?} image {}", k, image);
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(raw in any::<String>(), image in any::<String>()) {
            let target = MatchTarget::new(&image);
            let _ = target.host();
            if let Ok(k) = RegistryKey::parse(&raw) {
                let _ = (k.host(), k.hostname(), k.port(), k.path(), k.is_glob());
                let matched = k.matches(&target);
                let near = k.near_miss(&target);
                prop_assert!(!(matched && near.is_some()));
                let ring = Keyring::of([&k], ());
                prop_assert_eq!(ring.covers(&target), !ring.lookup(&target).is_empty());
            }
        }

        #[test]
        fn url_like_strings_never_panic(raw in "[a-z:@%\\[\\]/.*?#0-9A-F]{0,24}", image in "[a-z:@%\\[\\]/.*0-9]{0,24}") {
            let target = MatchTarget::new(&image);
            if let Ok(k) = RegistryKey::parse(&raw) {
                let _ = (k.matches(&target), k.near_miss(&target), k.hostname(), k.port());
            }
        }

    }
}
