//! Ports of the Go standard library functions the kubelet's keyring calls, to the byte:
//! `net/url.Parse` (Go 1.26 rules: bracketed hosts must be IPv6, one colon in an http(s) host),
//! `net.SplitHostPort`, `netip.ParseAddr`, `path/filepath.Match` on Unix and `utf8.DecodeRune`.
//! They work on bytes because a percent-escape can put bytes that are not UTF-8 into a Go string.

use std::borrow::Cow;

/// Why `url.Parse` refuses a docker-config key; the kubelet then ignores the entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyError {
    /// Go refuses ASCII control characters anywhere before a `#`.
    #[error("contains an ASCII control character")]
    ControlCharacter,
    /// The part before the last `@` has a character RFC 3986 user-info does not allow.
    #[error("invalid user-info before '@'")]
    InvalidUserinfo,
    /// A `%` not followed by two hex digits, or a host escape of an ASCII byte.
    #[error("invalid %-escape in the {part}")]
    InvalidEscape {
        /// Which part of the key the escape is in (never the escape itself: it may be user-info).
        part: &'static str,
    },
    /// A character Go does not allow in a host name, such as a space.
    #[error("invalid character {0:?} in host name")]
    InvalidHostCharacter(char),
    /// What follows the host's first colon is not all digits.
    #[error("invalid port {0:?} after host")]
    InvalidPort(String),
    /// A host starting with `[` has no `]`.
    #[error("missing ']' in host")]
    MissingBracket,
    /// A `[` not at the start of the host, or a bracketed host that is not an IPv6 address.
    #[error("invalid IP literal in host (only an IPv6 address may be in brackets)")]
    InvalidIpLiteral,
    /// Longer than the 4 GiB a key's offsets can address (no API object comes near).
    #[error("longer than 4 GiB")]
    TooLong,
}

/// Byte class: url.Parse cuts, decodes or refuses at it (controls, DEL, '#', '?', '@', '[', '%').
const URL_SPECIAL: u8 = 1;
/// Byte class: ASCII that a host may not hold as it is (shouldEscape(c, encodeHost)).
const HOST_REFUSED: u8 = 2;
/// Byte class: a filepath.Match metacharacter on Unix.
pub(super) const GLOB: u8 = 4;

/// The classes of every byte, so that the one-scan paths test each byte with one load.
static CLASSES: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut classes = [0; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut class = 0;
        if c < b' ' || matches!(c, 0x7f | b'#' | b'?' | b'@' | b'[' | b'%') {
            class |= URL_SPECIAL;
        }
        if c < 0x80 && should_escape_in_host(c) {
            class |= HOST_REFUSED;
        }
        if matches!(c, b'*' | b'?' | b'[' | b'\\') {
            class |= GLOB;
        }
        classes[i] = class;
        i += 1;
    }
    classes
}

pub(super) fn has_class(c: u8, class: u8) -> bool {
    CLASSES.get(usize::from(c)).is_some_and(|&k| k & class != 0)
}

// ---- net/url.Parse, reduced to the Host and Path of "scheme://" + rest ----

/// The two fields of Go's url.URL that the keyring reads.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) struct GoUrl<'a> {
    /// URL.Host: percent-decoded, user-info dropped.
    pub(super) host: Cow<'a, [u8]>,
    /// URL.Path: percent-decoded.
    pub(super) path: Cow<'a, [u8]>,
}

/// Which unescape rules apply, as Go's `encoding` modes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    Userinfo,
    Path,
    Fragment,
}

impl Mode {
    fn part(self) -> &'static str {
        match self {
            Mode::Host | Mode::Zone => "host",
            Mode::Userinfo => "user-info",
            Mode::Path => "path",
            Mode::Fragment => "fragment",
        }
    }
}

/// url.Parse of "https://" + `rest`, where `rest` is what follows the "//".
pub(super) fn parse_url(rest: &[u8]) -> Result<GoUrl<'_>, KeyError> {
    // Image names and almost all keys hold none of the bytes that make Go's parser cut, decode
    // or refuse: one scan then settles what the general parse below would do in ten.
    if rest.iter().any(|&b| has_class(b, URL_SPECIAL)) {
        return parse_url_general(rest);
    }
    let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    let (host, path) = rest.split_at(slash);
    // As parse_host without '[': the port, then every host byte (none is escaped).
    let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
    check_port(host.get(colon..).unwrap_or_default())?;
    if let Some(&c) = host.iter().find(|&&c| has_class(c, HOST_REFUSED)) {
        return Err(KeyError::InvalidHostCharacter(char::from(c)));
    }
    Ok(GoUrl {
        host: Cow::Borrowed(host),
        path: Cow::Borrowed(path),
    })
}

/// [`parse_url`] for any input, step by step as Go's parser goes.
pub(super) fn parse_url_general(rest: &[u8]) -> Result<GoUrl<'_>, KeyError> {
    let (before_fragment, fragment) = cut(rest, b'#');
    if before_fragment.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err(KeyError::ControlCharacter);
    }
    let (before_query, _query) = cut(before_fragment, b'?');
    let slash = before_query
        .iter()
        .position(|&b| b == b'/')
        .unwrap_or(before_query.len());
    let (authority, raw_path) = before_query.split_at(slash);
    let host = parse_authority(authority)?;
    let path = unescape(raw_path, Mode::Path)?;
    if let Some(fragment) = fragment {
        unescape(fragment, Mode::Fragment)?;
    }
    Ok(GoUrl { host, path })
}

fn parse_authority(authority: &[u8]) -> Result<Cow<'_, [u8]>, KeyError> {
    let (userinfo, host) = rcut(authority, b'@');
    let host = parse_host(host)?;
    if let Some(userinfo) = userinfo {
        if !userinfo.iter().all(|&c| valid_userinfo_byte(c)) {
            return Err(KeyError::InvalidUserinfo);
        }
        // Go unescapes user and password separately; only their errors matter here.
        let (user, password) = cut(userinfo, b':');
        unescape(user, Mode::Userinfo)?;
        if let Some(password) = password {
            unescape(password, Mode::Userinfo)?;
        }
    }
    Ok(host)
}

fn valid_userinfo_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c)
}

fn parse_host(host: &[u8]) -> Result<Cow<'_, [u8]>, KeyError> {
    match host.iter().rposition(|&b| b == b'[') {
        Some(0) => parse_ip_literal(host),
        // Since the CVE-2025-47912 fix a '[' may only open an IPv6 literal.
        Some(_) => Err(KeyError::InvalidIpLiteral),
        None => {
            // Go 1.26 is strict for http(s): the first colon starts the port.
            let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
            check_port(host.get(colon..).unwrap_or_default())?;
            unescape(host, Mode::Host)
        }
    }
}

fn parse_ip_literal(host: &[u8]) -> Result<Cow<'_, [u8]>, KeyError> {
    let (Some(bracketed), colon_port) = rcut(host, b']') else {
        return Err(KeyError::MissingBracket);
    };
    check_port(colon_port)?;
    let inner = bracketed.get(1..).unwrap_or_default();
    // "%25" starts an RFC 6874 zone, which has looser escaping rules than the address.
    let address = match find(inner, b"%25") {
        Some(zone) => {
            let (address, zone) = inner.split_at(zone);
            let mut out = unescape(address, Mode::Host)?.into_owned();
            out.extend_from_slice(&unescape(zone, Mode::Zone)?);
            Cow::Owned(out)
        }
        None => unescape(inner, Mode::Host)?,
    };
    if !is_ipv6_literal(&address) {
        return Err(KeyError::InvalidIpLiteral);
    }
    if let Cow::Borrowed(_) = address {
        // Nothing was decoded: "[" address "]" port is the host as written.
        return Ok(Cow::Borrowed(host));
    }
    let mut out = Vec::with_capacity(address.len() + colon_port.len() + 2);
    out.push(b'[');
    out.extend_from_slice(&address);
    out.push(b']');
    out.extend_from_slice(colon_port);
    Ok(Cow::Owned(out))
}

/// validOptionalPort: empty, or ':' and digits only (possibly none).
fn check_port(colon_port: &[u8]) -> Result<(), KeyError> {
    match colon_port.split_first() {
        None => Ok(()),
        Some((&b':', digits)) if digits.iter().all(u8::is_ascii_digit) => Ok(()),
        Some(_) => Err(KeyError::InvalidPort(
            String::from_utf8_lossy(colon_port).into_owned(),
        )),
    }
}

/// Go's unescape: validates every escape, and for hosts every ASCII byte; borrows when nothing is escaped.
fn unescape(s: &[u8], mode: Mode) -> Result<Cow<'_, [u8]>, KeyError> {
    // Outside hosts only escapes are checked, and names and paths rarely have any.
    if !matches!(mode, Mode::Host | Mode::Zone) && !s.contains(&b'%') {
        return Ok(Cow::Borrowed(s));
    }
    let bad_escape = KeyError::InvalidEscape { part: mode.part() };
    let mut escapes = 0;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c != b'%' {
            if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape_in_host(c) {
                return Err(KeyError::InvalidHostCharacter(char::from(c)));
            }
            i += 1;
            continue;
        }
        let Some(byte) = escaped_byte(s, i) else {
            return Err(bad_escape);
        };
        // Only "%25" and non-ASCII bytes may be escaped in a host; a zone may escape any
        // byte a host could hold as it is, and a space.
        let refused = match mode {
            Mode::Host => byte < 0x80 && byte != b'%',
            Mode::Zone => byte != b'%' && byte != b' ' && should_escape_in_host(byte),
            Mode::Userinfo | Mode::Path | Mode::Fragment => false,
        };
        if refused {
            return Err(bad_escape);
        }
        escapes += 1;
        i += 3;
    }
    if escapes == 0 {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len() - 2 * escapes);
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match escaped_byte(s, i).filter(|_| c == b'%') {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// The byte a "%XX" at `i` stands for.
fn escaped_byte(s: &[u8], i: usize) -> Option<u8> {
    let hi = s.get(i + 1).copied().and_then(hex_value)?;
    let lo = s.get(i + 2).copied().and_then(hex_value)?;
    Some((hi << 4) | lo)
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// shouldEscape(c, encodeHost): what a host may not hold as it is.
const fn should_escape_in_host(c: u8) -> bool {
    !matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'[' | b']' | b'<' | b'>' | b'"')
}

/// netip.ParseAddr succeeds and the address is not IPv4: what Go allows in brackets.
fn is_ipv6_literal(s: &[u8]) -> bool {
    // ParseAddr picks the family by the first '.', ':' or '%'.
    s.iter().find(|b| b".:%".contains(b)) == Some(&b':') && parse_ipv6(s)
}

/// netip's parseIPv6, as a yes/no.
fn parse_ipv6(input: &[u8]) -> bool {
    let (mut s, zone) = cut(input, b'%');
    if zone.is_some_and(<[u8]>::is_empty) {
        return false;
    }
    let mut ellipsis: Option<usize> = None;
    if let Some(rest) = s.strip_prefix(b"::") {
        ellipsis = Some(0);
        s = rest;
        if s.is_empty() {
            return true;
        }
    }
    let mut i = 0;
    while i < 16 {
        let mut off = 0;
        let mut acc: u32 = 0;
        while let Some(d) = s.get(off).copied().and_then(hex_value) {
            acc = (acc << 4) + u32::from(d);
            if off > 3 || acc > 0xFFFF {
                return false;
            }
            off += 1;
        }
        if off == 0 {
            return false;
        }
        if s.get(off) == Some(&b'.') {
            // An embedded IPv4 address must end the address and replace its last two groups.
            if (ellipsis.is_none() && i != 12) || i + 4 > 16 || !ipv4_fields(s) {
                return false;
            }
            s = &[];
            i += 4;
            break;
        }
        i += 2;
        s = s.get(off..).unwrap_or_default();
        let Some((&colon, rest)) = s.split_first() else {
            break;
        };
        if colon != b':' || rest.is_empty() {
            return false;
        }
        s = rest;
        if let Some(rest) = s.strip_prefix(b":") {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(i);
            s = rest;
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return false;
    }
    // Without "::" all 8 groups are needed; with it, "::" must stand for at least one.
    if i < 16 {
        ellipsis.is_some()
    } else {
        ellipsis.is_none()
    }
}

/// netip's parseIPv4Fields: four decimal octets, no leading zeros.
fn ipv4_fields(s: &[u8]) -> bool {
    let (mut val, mut dots, mut digits) = (0u32, 0, 0);
    for (i, &c) in s.iter().enumerate() {
        if c.is_ascii_digit() {
            if digits == 1 && val == 0 {
                return false;
            }
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
            if val > 255 {
                return false;
            }
        } else if c == b'.' {
            if i == 0 || i + 1 == s.len() || s.get(i - 1) == Some(&b'.') || dots == 3 {
                return false;
            }
            dots += 1;
            val = 0;
            digits = 0;
        } else {
            return false;
        }
    }
    dots == 3
}

/// net.SplitHostPort; None where it returns an error.
pub(super) fn split_host_port(hostport: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = hostport.iter().rposition(|&b| b == b':')?;
    let (host, no_open_from, no_close_from) = if hostport.first() == Some(&b'[') {
        // The first ']' must come just before the last ':'.
        let end = hostport.iter().position(|&b| b == b']')?;
        if end + 1 != colon {
            return None;
        }
        (hostport.get(1..end)?, 1, end + 1)
    } else {
        let host = hostport.get(..colon)?;
        if host.contains(&b':') {
            return None;
        }
        (host, 0, 0)
    };
    if hostport.get(no_open_from..)?.contains(&b'[')
        || hostport.get(no_close_from..)?.contains(&b']')
    {
        return None;
    }
    Some((host, hostport.get(colon + 1..)?))
}

/// strings.Cut on bytes: before the first `sep`, and after it if it occurs.
fn cut(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == sep) {
        Some(i) => (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
        None => (s, None),
    }
}

/// Cut at the last `sep`: before it if it occurs, and after it (all of `s` when it does not).
fn rcut(s: &[u8], sep: u8) -> (Option<&[u8]>, &[u8]) {
    match s.iter().rposition(|&b| b == sep) {
        Some(i) => (s.get(..i), s.get(i + 1..).unwrap_or_default()),
        None => (None, s),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- path/filepath.Match (Unix), with an ErrBadPattern being a non-match ----

/// filepath.Match; a malformed pattern is a non-match, as URLsMatch treats the error.
pub(super) fn glob_match(mut pattern: &[u8], mut name: &[u8]) -> bool {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing '*' takes the rest, short of a separator.
            return !name.contains(&b'/');
        }
        match match_chunk(chunk, name) {
            // The last chunk must use up the name, else a star may still find a later match.
            Ok(Some(t)) if t.is_empty() || !pattern.is_empty() => {
                name = t;
                continue;
            }
            Err(BadPattern) => return false,
            _ => {}
        }
        if star {
            let mut skip = 0;
            while name.get(skip).is_some_and(|&c| c != b'/') {
                skip += 1;
                match match_chunk(chunk, name.get(skip..).unwrap_or_default()) {
                    Ok(Some(t)) if pattern.is_empty() && !t.is_empty() => {}
                    Ok(Some(t)) => {
                        name = t;
                        continue 'pattern;
                    }
                    Ok(None) => {}
                    Err(BadPattern) => return false,
                }
            }
        }
        return false;
    }
    name.is_empty()
}

/// filepath.ErrBadPattern.
struct BadPattern;

/// scanChunk: leading stars, then the pattern up to the next star outside a class.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let start = pattern.iter().take_while(|&&c| c == b'*').count();
    let pattern = pattern.get(start..).unwrap_or_default();
    let mut in_range = false;
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        match c {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    let (chunk, rest) = pattern.split_at(i.min(pattern.len()));
    (start > 0, chunk, rest)
}

/// matchChunk: the rest of `s` after `chunk` matched its start, None if not; checks the
/// whole chunk for errors even after a mismatch, as Go does.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<Option<&'s [u8]>, BadPattern> {
    let mut failed = false;
    while let Some((&c, rest)) = chunk.split_first() {
        failed |= s.is_empty();
        chunk = rest;
        match c {
            b'[' => {
                let mut r = 0;
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = s.get(n..).unwrap_or_default();
                }
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = chunk.get(1..).unwrap_or_default();
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if ranges > 0 {
                        if let Some(rest) = chunk.strip_prefix(b"]") {
                            chunk = rest;
                            break;
                        }
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    let (hi, rest) = match rest.strip_prefix(b"-") {
                        Some(after_dash) => get_esc(after_dash)?,
                        None => (lo, rest),
                    };
                    chunk = rest;
                    matched |= lo <= r && r <= hi;
                    ranges += 1;
                }
                failed |= matched == negated;
            }
            b'?' => {
                if !failed {
                    failed = s.first() == Some(&b'/');
                    let (_, n) = decode_rune(s);
                    s = s.get(n..).unwrap_or_default();
                }
            }
            _ => {
                let literal = if c == b'\\' {
                    let (&escaped, rest) = chunk.split_first().ok_or(BadPattern)?;
                    chunk = rest;
                    escaped
                } else {
                    c
                };
                if !failed {
                    failed = s.first() != Some(&literal);
                    s = s.get(1..).unwrap_or_default();
                }
            }
        }
    }
    Ok((!failed).then_some(s))
}

/// getEsc: one possibly escaped character of a class, which must not end the pattern.
fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    let chunk = match chunk.first() {
        None | Some(b'-' | b']') => return Err(BadPattern),
        Some(b'\\') => chunk.get(1..).filter(|c| !c.is_empty()).ok_or(BadPattern)?,
        Some(_) => chunk,
    };
    let (rune, n) = decode_rune(chunk);
    let rest = chunk.get(n..).unwrap_or_default();
    if (rune == 0xFFFD && n == 1) || rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((rune, rest))
}

/// utf8.DecodeRune: the first rune and its length; (U+FFFD, 1) for an invalid byte, (U+FFFD, 0) for none.
pub(super) fn decode_rune(s: &[u8]) -> (u32, usize) {
    let head = s.get(..4).unwrap_or(s);
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) => {
            std::str::from_utf8(head.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default()
        }
    };
    match valid.chars().next() {
        Some(c) => (u32::from(c), c.len_utf8()),
        None => (0xFFFD, usize::from(!s.is_empty())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn glob_table() {
        // (pattern, name, matches): filepath.Match on Unix, errors as non-matches.
        let cases: [(&[u8], &[u8], bool); 30] = [
            (b"*", b"abc", true),
            (b"*", b"", true),
            (b"a*", b"a", true),
            (b"*c", b"abc", true),
            (b"a*c", b"ac", true),
            (b"a*b*c", b"axxbyyc", true),
            (b"a*b*c", b"axxbyy", false),
            (b"*x", b"yyx", true),
            (b"a?c", b"abc", true),
            (b"a?c", b"ac", false),
            (b"?", "é".as_bytes(), true),
            (b"[a-c]x", b"bx", true),
            (b"[a-c]x", b"dx", false),
            (b"[^a-c]x", b"dx", true),
            (b"[^a-c]x", b"bx", false),
            (b"[!a]", b"!", true),
            (b"[!a]", b"b", false),
            ("[é]".as_bytes(), "é".as_bytes(), true),
            (b"[\\]]", b"]", true),
            (b"\\*", b"*", true),
            (b"\\*", b"a", false),
            (b"*", b"a/b", false),
            // Malformed patterns never match, even where a prefix would.
            (b"[", b"a", false),
            (b"a[", b"a", false),
            (b"[]", b"]", false),
            (b"[a-]", b"a", false),
            (b"\\", b"", false),
            (b"*[", b"a", false),
            (b"a*[", b"ab", false),
            (b"x[", b"a", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                glob_match(pattern, name),
                want,
                "pattern {:?} name {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn split_host_port_follows_net() {
        let cases = [
            ("host:80", Some(("host", "80"))),
            ("host:", Some(("host", ""))),
            ("host", None),
            ("[::1]:80", Some(("::1", "80"))),
            ("[::1]", None),
            ("a:b:c", None),
            ("[::1]x:80", None),
            ("ho[st:80", None),
        ];
        for (input, want) in cases {
            let want = want.map(|(h, p): (&str, &str)| (h.as_bytes(), p.as_bytes()));
            assert_eq!(split_host_port(input.as_bytes()), want, "{input:?}");
        }
    }

    proptest! {
        #[test]
        fn the_one_scan_parse_equals_the_general_one(
            raw in "[a-z:@%\\[\\]/.*?#0-9A-F \\x7f\n{}é]{0,24}",
            any_bytes in prop::collection::vec(any::<u8>(), 0..24),
        ) {
            prop_assert_eq!(parse_url(raw.as_bytes()), parse_url_general(raw.as_bytes()));
            prop_assert_eq!(parse_url(&any_bytes), parse_url_general(&any_bytes));
        }

        #[test]
        fn glob_never_panics(pattern in prop::collection::vec(any::<u8>(), 0..12), name in prop::collection::vec(any::<u8>(), 0..12)) {
            let _ = glob_match(&pattern, &name);
        }
    }
}
