//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1) as registries send them.
//!
//! A header holds a comma-separated list of challenges, each a scheme followed by either a
//! token68 or comma-separated `name=value` parameters, and a response may carry several such
//! headers. Commas therefore separate both parameters and challenges: an item that is not
//! `name=…` starts the next challenge. Values are tokens or quoted strings (with `\` escapes,
//! and commas inside the quotes). The parser is total: malformed input yields the challenges
//! that could be read, never an error or a panic, because a registry's header is untrusted.

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (compare with [`Challenge::is`]: schemes are case-insensitive).
    pub scheme: String,
    /// Parameters in order; names lowercased (they are case-insensitive), values unquoted.
    pub params: Vec<(String, String)>,
    /// The token68 form (`Basic abc==`), when the challenge has one instead of parameters.
    pub token68: Option<String>,
}

impl Challenge {
    /// Whether the scheme is `scheme` (ASCII case-insensitive).
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The first parameter named `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Every challenge of every header value, in order.
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Challenge> {
    values.into_iter().flat_map(parse).collect()
}

/// The challenges of one header value.
pub fn parse(value: &[u8]) -> Vec<Challenge> {
    let mut p = Parser { s: value, at: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_list_separators();
        if p.done() {
            return out;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            // Not a challenge: skip this list element (quotes respected) and go on.
            p.skip_element();
            continue;
        }
        let mut challenge = Challenge {
            scheme: text(scheme),
            params: Vec::new(),
            token68: None,
        };
        p.challenge_body(&mut challenge);
        out.push(challenge);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// tchar of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The characters of token68 before its trailing `=`s.
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        self.s.get(start..self.at).unwrap_or_default()
    }

    /// Skip to the next comma outside a quoted string.
    fn skip_element(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b',' => return,
                b'"' => {
                    self.quoted();
                }
                _ => self.at += 1,
            }
        }
    }

    /// A quoted string at the cursor (which is on the opening quote), unescaped; an
    /// unterminated one runs to the end of the value.
    fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.at += 1;
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'"' => return out,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.at += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }

    /// An unquoted parameter value: up to a comma or whitespace. Lenient (RFC: a token) because
    /// registries send unquoted URLs such as `realm=https://auth.example.com/token`.
    fn bare_value(&mut self) -> &'a [u8] {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| !matches!(b, b',' | b' ' | b'\t' | b'"'))
        {
            self.at += 1;
        }
        self.s.get(start..self.at).unwrap_or_default()
    }

    /// What follows a scheme: a token68, or parameters up to the next challenge.
    fn challenge_body(&mut self, c: &mut Challenge) {
        let mut first = true;
        loop {
            if first {
                self.skip_ws();
            } else {
                self.skip_list_separators();
            }
            if self.done() {
                return;
            }
            if first {
                if let Some(t68) = self.token68() {
                    c.token68 = Some(text(t68));
                    return;
                }
            }
            let name_start = self.at;
            let name = self.token();
            self.skip_ws();
            if name.is_empty() || self.peek() != Some(b'=') {
                // Not `name=`: the next challenge (or garbage the caller skips) starts here.
                self.at = name_start;
                return;
            }
            self.at += 1;
            self.skip_ws();
            let value = match self.peek() {
                Some(b'"') => self.quoted(),
                _ => self.bare_value().to_vec(),
            };
            c.params
                .push((text(name).to_ascii_lowercase(), text(&value)));
            first = false;
        }
    }

    /// A token68 at the cursor, consumed only when it is the whole rest of the challenge
    /// (end, or a comma, follows it): `realm=x` is a parameter, `abc==` is a token68.
    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut end = start;
        while self.s.get(end).copied().is_some_and(is_token68_char) {
            end += 1;
        }
        if end == start {
            return None;
        }
        while self.s.get(end) == Some(&b'=') {
            end += 1;
        }
        let mut after = end;
        while matches!(self.s.get(after), Some(b' ' | b'\t')) {
            after += 1;
        }
        if matches!(self.s.get(after), None | Some(b',')) {
            // `name=` with nothing after it reads as a token68 too, as RFC 9110 intends.
            self.at = after;
            return self.s.get(start..end);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(v: &str) -> Vec<Challenge> {
        parse(v.as_bytes())
    }

    fn ch(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.to_owned(),
            params: params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            token68: None,
        }
    }

    #[test]
    fn registry_challenges_parse() {
        let cases: Vec<(&str, Vec<Challenge>)> = vec![
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
                vec![ch(
                    "Bearer",
                    &[
                        ("realm", "https://auth.docker.io/token"),
                        ("service", "registry.docker.io"),
                    ],
                )],
            ),
            (
                r#"Basic realm="basic-realm""#,
                vec![ch("Basic", &[("realm", "basic-realm")])],
            ),
            ("Basic", vec![ch("Basic", &[])]),
            (
                r#"bearer REALM = "https://a/t" , Service=reg"#,
                vec![ch(
                    "bearer",
                    &[("realm", "https://a/t"), ("service", "reg")],
                )],
            ),
            // Commas and escaped quotes inside quoted strings.
            (
                r#"Bearer realm="https://a/t?x=1,2",scope="repository:a/b:pull,push",error="say \"no\"""#,
                vec![ch(
                    "Bearer",
                    &[
                        ("realm", "https://a/t?x=1,2"),
                        ("scope", "repository:a/b:pull,push"),
                        ("error", "say \"no\""),
                    ],
                )],
            ),
            // Several challenges in one header.
            (
                r#"Negotiate, Basic realm="r", Bearer realm="https://a/t",service="s""#,
                vec![
                    ch("Negotiate", &[]),
                    ch("Basic", &[("realm", "r")]),
                    ch("Bearer", &[("realm", "https://a/t"), ("service", "s")]),
                ],
            ),
            // Unquoted URL values.
            (
                "Bearer realm=https://a.example/token,service=a.example",
                vec![ch(
                    "Bearer",
                    &[
                        ("realm", "https://a.example/token"),
                        ("service", "a.example"),
                    ],
                )],
            ),
            // Empty list elements and stray whitespace.
            (
                " , ,Basic realm=\"r\" ,, ",
                vec![ch("Basic", &[("realm", "r")])],
            ),
            // An unterminated quote runs to the end.
            (
                r#"Bearer realm="https://a/t"#,
                vec![ch("Bearer", &[("realm", "https://a/t")])],
            ),
            ("", vec![]),
            ("   ", vec![]),
            // Garbage before a challenge is skipped up to the next comma.
            (
                r#"@@@ "x,y", Basic realm="r""#,
                vec![ch("Basic", &[("realm", "r")])],
            ),
        ];
        for (header, want) in cases {
            assert_eq!(one(header), want, "{header}");
        }
    }

    #[test]
    fn token68_and_its_ambiguities() {
        let c = one("Basic dXNlcjpwYXNz==, Bearer realm=\"r\"");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].token68.as_deref(), Some("dXNlcjpwYXNz=="));
        assert!(c[0].params.is_empty());
        assert_eq!(c[1].param("REALM"), Some("r"));
        // `name=` alone reads as a token68, `name=value` as a parameter.
        assert_eq!(one("Foo abc=")[0].token68.as_deref(), Some("abc="));
        assert_eq!(one("Foo abc=d")[0].param("abc"), Some("d"));
    }

    #[test]
    fn several_headers_and_non_utf8() {
        let c = parse_all([&b"Basic realm=\"a\""[..], &b"Bearer realm=\"\xff\""[..]]);
        assert_eq!(c.len(), 2);
        assert!(c[1].is("BEARER"));
        assert_eq!(c[1].param("realm"), Some("\u{fffd}"));
    }

    proptest! {
        #[test]
        fn never_panics_and_terminates(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_header_like_text(s in r#"[ ,="\\a-zA-Z0-9:/._~+-]{0,120}"#) {
            for c in parse(s.as_bytes()) {
                prop_assert!(!c.scheme.is_empty());
            }
        }

        #[test]
        fn quoted_values_round_trip(v in r#"[ -~]{0,40}"#) {
            let quoted = v.replace('\\', "\\\\").replace('"', "\\\"");
            let c = parse(format!("Bearer realm=\"{quoted}\", Basic").as_bytes());
            prop_assert_eq!(c.len(), 2);
            prop_assert_eq!(c[0].param("realm"), Some(v.as_str()));
        }
    }
}
