//! dockerconfigjson / dockercfg secret payloads parsed as the kubelet does, keeping registry keys only.
//!
//! The kubelet decodes these payloads with Go's encoding/json into the typed structs of
//! pkg/credentialprovider/config.go, so this module reads JSON the way that decoder does, not
//! the way serde does: the whole document is checked first (nesting to 10,000 levels, numbers
//! of any size, invalid UTF-8 and lone surrogates in strings become U+FFFD), a repeated member
//! overwrites, repeated "auths" objects merge, member names match case-insensitively, and a
//! type error outside a registry entry does not stop decoding. Credential values are looked at
//! only for emptiness and for the `auth` decode, whose buffers are zeroed before they are freed;
//! no error or result carries any part of them.

use std::collections::{BTreeMap, HashMap};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::gostd::decode_rune;
use super::keyring::{KeyError, RegistryKey};

/// Secret type whose `.dockerconfigjson` holds `{"auths": {registry: entry}}`.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Legacy secret type whose `.dockercfg` holds `{registry: entry}`.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Data key the kubelet reads for [`DOCKER_CONFIG_JSON_TYPE`].
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// Data key the kubelet reads for [`DOCKERCFG_TYPE`].
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// One registry entry of a payload: the key as written (not secret) and its normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyEntry {
    /// The key as written when it differs from the normalised key (or there is none): the
    /// index holds one entry per registry of every pull secret, and most are written normalised.
    written: Option<Box<str>>,
    /// The normalised key, or why the kubelet ignores this entry.
    pub key: Result<RegistryKey, KeyError>,
    /// Whether username or password is non-empty once `auth` is decoded (an entry without still matches).
    pub has_credentials: bool,
}

impl KeyEntry {
    fn new(raw: &str, has_credentials: bool) -> KeyEntry {
        let key = RegistryKey::parse(raw);
        let masked = mask_userinfo(raw);
        let written = match &key {
            Ok(k) if k.as_str() == masked => None,
            _ => Some(masked.into_boxed_str()),
        };
        KeyEntry {
            written,
            key,
            has_credentials,
        }
    }

    /// The registry key as written, except that a `user:password@` part is shown as `***@`.
    pub fn raw(&self) -> &str {
        match (&self.written, &self.key) {
            (Some(written), _) => written,
            (None, Ok(key)) => key.as_str(),
            // Not built: `written` is kept whenever there is no key.
            (None, Err(_)) => "",
        }
    }
}

/// What a pull secret contributes, with all credential material already dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PullSecretKeys {
    /// The registry entries in document order; a repeated key keeps its first place and its last value.
    pub entries: Vec<KeyEntry>,
    /// registries named under credHelpers, plus "credsStore" if present (the kubelet ignores both)
    pub ignored_helpers: Vec<String>,
}

/// Why a payload is unusable; see [`PayloadError::is_fatal`] for what the kubelet then does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Neither pull-secret type: the kubelet skips the secret.
    #[error("secret type {secret_type:?} is not a docker pull-secret type (kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg); the kubelet ignores it")]
    UnsupportedType {
        /// The secret's type.
        secret_type: String,
    },
    /// The data key the type calls for is absent or empty, e.g. a dockerconfigjson secret holding only `.dockercfg`: the kubelet skips it.
    #[error("secret of type {secret_type:?} has no non-empty {expected_key:?} data (it has {present_keys:?}); the kubelet ignores it")]
    MissingData {
        /// The secret's type.
        secret_type: String,
        /// The data key that type is read from.
        expected_key: &'static str,
        /// The data keys the secret has.
        present_keys: Vec<String>,
    },
    /// A `.dockerconfigjson` with no "auths" object (or `null` for it or for the whole payload): no registry is taken from it.
    #[error(
        "the .dockerconfigjson has no \"auths\" object; the kubelet takes no registry from it"
    )]
    NoAuths {
        /// Registries under credHelpers, and "credsStore", which the kubelet ignores too.
        ignored_helpers: Vec<String>,
    },
    /// The registry map is empty (or a `.dockercfg` is `null`): no registry is taken from it.
    #[error("the payload names no registry; the kubelet takes none from it")]
    NoEntries {
        /// Registries under credHelpers, and "credsStore", which the kubelet ignores too.
        ignored_helpers: Vec<String>,
    },
    /// Not JSON as Go reads it (only the position is kept: the text may be a credential).
    #[error("the payload is not valid JSON (line {line}, column {column}); every image pull of a pod using this secret fails")]
    Syntax {
        /// 1-based line of the offending byte.
        line: usize,
        /// 1-based byte column of the offending byte.
        column: usize,
    },
    /// A member whose JSON type its Go field cannot take, e.g. `"email": false`.
    #[error("{} has the wrong JSON type (line {line}, column {column}); every image pull of a pod using this secret fails", site(.registry, .field))]
    WrongType {
        /// The registry entry it is in, as written (user-info masked), if any.
        registry: Option<String>,
        /// The member, e.g. "auths", "entry", "username", "HttpHeaders".
        field: &'static str,
        /// 1-based line of the value.
        line: usize,
        /// 1-based byte column of the value.
        column: usize,
    },
    /// An `auth` that is not base64 (padded when it ends in '=', unpadded otherwise).
    #[error("the auth of registry {registry:?} is not valid base64; every image pull of a pod using this secret fails")]
    AuthNotBase64 {
        /// The registry entry, as written (user-info masked).
        registry: String,
    },
    /// An `auth` whose decoded text has no ':' between username and password.
    #[error("the auth of registry {registry:?} does not decode to username:password; every image pull of a pod using this secret fails")]
    AuthMissingColon {
        /// The registry entry, as written (user-info masked).
        registry: String,
    },
}

fn site(registry: &Option<String>, field: &str) -> String {
    match registry {
        Some(registry) => format!("the {field} of registry {registry:?}"),
        None => format!("the {field}"),
    }
}

impl PayloadError {
    /// Whether the kubelet's keyring construction fails, which fails every pull of a pod referencing the secret.
    pub fn is_fatal(&self) -> bool {
        match self {
            PayloadError::Syntax { .. }
            | PayloadError::WrongType { .. }
            | PayloadError::AuthNotBase64 { .. }
            | PayloadError::AuthMissingColon { .. } => true,
            PayloadError::UnsupportedType { .. }
            | PayloadError::MissingData { .. }
            | PayloadError::NoAuths { .. }
            | PayloadError::NoEntries { .. } => false,
        }
    }
}

/// Parse a secret's type and (already base64-decoded) data map.
pub fn parse_pull_secret(
    secret_type: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<PullSecretKeys, PayloadError> {
    // secrets.go: the type picks the one data key that is read; anything else is skipped.
    let (expected_key, format) = match secret_type {
        DOCKER_CONFIG_JSON_TYPE => (DOCKER_CONFIG_JSON_KEY, Format::DockerConfigJson),
        DOCKERCFG_TYPE => (DOCKERCFG_KEY, Format::Dockercfg),
        _ => {
            return Err(PayloadError::UnsupportedType {
                secret_type: secret_type.to_owned(),
            })
        }
    };
    match data.get(expected_key).filter(|payload| !payload.is_empty()) {
        Some(payload) => parse_payload(format, payload),
        None => Err(PayloadError::MissingData {
            secret_type: secret_type.to_owned(),
            expected_key,
            present_keys: data.keys().cloned().collect(),
        }),
    }
}

/// A username and password the kubelet would send for one registry entry.
///
/// Both are zeroed when dropped. There is deliberately no `Debug`, `Display`, `Clone` or
/// `Serialize`: the value cannot end up in a log line, an error or a report by accident.
pub struct Credential {
    username: Secret,
    password: Secret,
}

impl Credential {
    /// The username, as the kubelet decodes it (bytes: Go strings need not be UTF-8).
    pub fn username(&self) -> &[u8] {
        &self.username.0
    }

    /// The password, as the kubelet decodes it.
    pub fn password(&self) -> &[u8] {
        &self.password.0
    }

    /// Whether both are empty (the kubelet then pulls as if it had no credential).
    pub fn is_empty(&self) -> bool {
        self.username.0.is_empty() && self.password.0.is_empty()
    }
}

/// The credentials a secret holds for one registry key: one per entry whose key normalises to
/// `key`, in document order, each decoded exactly as the kubelet decodes it (a non-empty `auth`
/// replaces username and password). Errors are those of [`parse_pull_secret`].
pub fn credentials_for(
    secret_type: &str,
    data: &BTreeMap<String, Vec<u8>>,
    key: &RegistryKey,
) -> Result<Vec<Credential>, PayloadError> {
    let (expected_key, format) = match secret_type {
        DOCKER_CONFIG_JSON_TYPE => (DOCKER_CONFIG_JSON_KEY, Format::DockerConfigJson),
        DOCKERCFG_TYPE => (DOCKERCFG_KEY, Format::Dockercfg),
        _ => {
            return Err(PayloadError::UnsupportedType {
                secret_type: secret_type.to_owned(),
            })
        }
    };
    match data.get(expected_key).filter(|payload| !payload.is_empty()) {
        Some(payload) => parse_payload_capturing(format, payload, Some(key)).map(|(_, c)| c),
        None => Err(PayloadError::MissingData {
            secret_type: secret_type.to_owned(),
            expected_key,
            present_keys: data.keys().cloned().collect(),
        }),
    }
}

/// The Go type a payload is unmarshalled into.
#[derive(Clone, Copy)]
enum Format {
    /// DockerConfigJSON, of which the kubelet keeps `.Auths`.
    DockerConfigJson,
    /// DockerConfig, a bare registry map.
    Dockercfg,
}

/// `json.Unmarshal` of `payload` into the `format` struct, as secrets.go does.
fn parse_payload(format: Format, payload: &[u8]) -> Result<PullSecretKeys, PayloadError> {
    parse_payload_capturing(format, payload, None).map(|(keys, _)| keys)
}

/// [`parse_payload`], also decoding the credentials of the entries whose key normalises to `capture`.
fn parse_payload_capturing(
    format: Format,
    payload: &[u8],
    capture: Option<&RegistryKey>,
) -> Result<(PullSecretKeys, Vec<Credential>), PayloadError> {
    validate(payload)?;
    let mut d = Decoder::new(payload);
    d.capture = capture.cloned();
    let mut registries: Option<Entries> = None;
    let mut ignored_helpers = Vec::new();
    let outcome = match format {
        Format::DockerConfigJson => d.docker_config_json(&mut registries, &mut ignored_helpers),
        Format::Dockercfg => d.dockercfg(&mut registries),
    };
    d.finish(outcome)?;
    match (registries, format) {
        (None, Format::DockerConfigJson) => Err(PayloadError::NoAuths { ignored_helpers }),
        (None, Format::Dockercfg) => Err(PayloadError::NoEntries { ignored_helpers }),
        (Some(entries), _) if entries.order.is_empty() => {
            Err(PayloadError::NoEntries { ignored_helpers })
        }
        (Some(mut entries), _) => {
            let credentials = entries.take_credentials();
            Ok((
                PullSecretKeys {
                    entries: entries.into_key_entries(),
                    ignored_helpers,
                },
                credentials,
            ))
        }
    }
}

/// Registry entries as Go's map holds them: one per key, the last value winning.
#[derive(Default)]
struct Entries {
    order: Vec<(String, bool)>,
    index: HashMap<String, usize>,
    /// Decoded credentials by position in `order`, for the entries being captured only.
    credentials: HashMap<usize, Credential>,
}

impl Entries {
    fn upsert(&mut self, raw: String, has_credentials: bool, credential: Option<Credential>) {
        let at = match self.index.get(&raw).copied() {
            Some(i) => {
                if let Some(entry) = self.order.get_mut(i) {
                    entry.1 = has_credentials;
                }
                i
            }
            None => {
                self.index.insert(raw.clone(), self.order.len());
                self.order.push((raw, has_credentials));
                self.order.len() - 1
            }
        };
        // The last value of a repeated key wins, its credential included.
        match credential {
            Some(c) => self.credentials.insert(at, c),
            None => self.credentials.remove(&at),
        };
    }

    /// The captured credentials in document order.
    fn take_credentials(&mut self) -> Vec<Credential> {
        let mut captured: Vec<(usize, Credential)> = self.credentials.drain().collect();
        captured.sort_by_key(|(at, _)| *at);
        captured.into_iter().map(|(_, c)| c).collect()
    }

    fn into_key_entries(self) -> Vec<KeyEntry> {
        self.order
            .into_iter()
            .map(|(raw, has_credentials)| KeyEntry::new(&raw, has_credentials))
            .collect()
    }
}

/// `raw` with the user-info of its authority (what url.Parse drops from the host) masked.
fn mask_userinfo(raw: &str) -> String {
    let scheme_len = ["https://", "http://"]
        .iter()
        .find(|scheme| raw.starts_with(**scheme))
        .map_or(0, |scheme| scheme.len());
    let (scheme, rest) = raw.split_at_checked(scheme_len).unwrap_or(("", raw));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest
        .get(..authority_end)
        .and_then(|authority| authority.rfind('@'))
    {
        Some(at) => format!("{scheme}***{}", rest.get(at..).unwrap_or_default()),
        None => raw.to_owned(),
    }
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// Whether a JSON member name selects the Go field `lower_name`: encoding/json folds case,
/// and its Unicode folding also maps 'ſ' to 's' and the Kelvin sign to 'k'.
fn json_name_is(name: &str, lower_name: &str) -> bool {
    name.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .eq(lower_name.chars())
}

// ---- reading JSON as Go's encoding/json does ----

/// Go's scanner refuses more nesting than this (maxNestingDepth).
const MAX_DEPTH: usize = 10_000;

/// Where in the payload reading stopped: a byte offset for a syntax error, or a finished error.
enum Stop {
    Syntax(usize),
    Fatal(PayloadError),
}

impl From<usize> for Stop {
    fn from(at: usize) -> Stop {
        Stop::Syntax(at)
    }
}

/// A cursor over the payload; every method checks the JSON grammar as Go's scanner does.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Skips whitespace, then requires `c`.
    fn eat(&mut self, c: u8) -> Result<(), usize> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(self.pos);
        }
        self.pos += 1;
        Ok(())
    }

    /// The raw bytes between the quotes of the string at the cursor.
    fn string(&mut self) -> Result<&'a [u8], usize> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            for _ in 0..4 {
                                self.pos += 1;
                                if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                    return Err(self.pos);
                                }
                            }
                            self.pos += 1;
                        }
                        _ => return Err(self.pos),
                    }
                }
                // Go checks no UTF-8 here; bytes below 0x20 must be escaped.
                Some(c) if c >= 0x20 => self.pos += 1,
                _ => return Err(self.pos),
            }
        }
        let raw = self.buf.get(start..self.pos).ok_or(self.pos)?;
        self.pos += 1;
        Ok(raw)
    }

    /// Skips one value nested in `depth` containers, checking it; iterative so depth costs no stack.
    fn skip_value(&mut self, depth: usize) -> Result<(), usize> {
        // Open containers: true for an object, false for an array.
        let mut open: Vec<bool> = Vec::new();
        loop {
            self.ws();
            let is_object = match self.peek() {
                Some(b'{') => true,
                Some(b'[') => false,
                _ => {
                    self.scalar()?;
                    if !self.close_containers(&mut open)? {
                        return Ok(());
                    }
                    continue;
                }
            };
            if depth + open.len() + 1 > MAX_DEPTH {
                return Err(self.pos);
            }
            self.pos += 1;
            self.ws();
            if self.peek() == Some(if is_object { b'}' } else { b']' }) {
                self.pos += 1;
                if !self.close_containers(&mut open)? {
                    return Ok(());
                }
                continue;
            }
            open.push(is_object);
            if is_object {
                self.string()?;
                self.eat(b':')?;
            }
        }
    }

    /// After a value: closes finished containers; true when another value follows, false when none is open.
    fn close_containers(&mut self, open: &mut Vec<bool>) -> Result<bool, usize> {
        loop {
            let Some(&is_object) = open.last() else {
                return Ok(false);
            };
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    if is_object {
                        self.string()?;
                        self.eat(b':')?;
                    }
                    return Ok(true);
                }
                Some(b'}') if is_object => {
                    self.pos += 1;
                    open.pop();
                }
                Some(b']') if !is_object => {
                    self.pos += 1;
                    open.pop();
                }
                _ => return Err(self.pos),
            }
        }
    }

    /// A string, number, true, false or null.
    fn scalar(&mut self) -> Result<(), usize> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.pos),
        }
    }

    fn word(&mut self, word: &[u8]) -> Result<(), usize> {
        for &expected in word {
            if self.peek() != Some(expected) {
                return Err(self.pos);
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, of any magnitude.
    fn number(&mut self) -> Result<(), usize> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.pos),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), usize> {
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(self.pos);
        }
        self.digits();
        Ok(())
    }
}

/// Go's checkValid: the whole payload is one JSON value, before anything is decoded.
fn validate(payload: &[u8]) -> Result<(), PayloadError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let checked = r.skip_value(0).and_then(|()| {
        r.ws();
        if r.pos < payload.len() {
            Err(r.pos)
        } else {
            Ok(())
        }
    });
    checked.map_err(|at| syntax_error(payload, at))
}

fn syntax_error(payload: &[u8], at: usize) -> PayloadError {
    let (line, column) = line_column(payload, at);
    PayloadError::Syntax { line, column }
}

fn line_column(payload: &[u8], at: usize) -> (usize, usize) {
    let before = payload.get(..at).unwrap_or(payload);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
    (line, column)
}

/// Decodes a payload that [`validate`] accepted into the kubelet's structs.
struct Decoder<'a> {
    r: Reader<'a>,
    /// Go's savedError: the first type error outside an entry, returned only if nothing else fails.
    saved: Option<PayloadError>,
    /// The key whose entries' credentials are decoded and kept ([`credentials_for`]).
    capture: Option<RegistryKey>,
}

/// The string fields of Go's dockerConfigEntryWithAuth.
#[derive(Clone, Copy)]
enum EntryField {
    Username,
    Password,
    Email,
    Auth,
}

impl EntryField {
    fn of(name: &str) -> Option<EntryField> {
        [
            EntryField::Username,
            EntryField::Password,
            EntryField::Email,
            EntryField::Auth,
        ]
        .into_iter()
        .find(|field| json_name_is(name, field.name()))
    }

    fn name(self) -> &'static str {
        match self {
            EntryField::Username => "username",
            EntryField::Password => "password",
            EntryField::Email => "email",
            EntryField::Auth => "auth",
        }
    }
}

impl<'a> Decoder<'a> {
    fn new(payload: &'a [u8]) -> Decoder<'a> {
        Decoder {
            r: Reader {
                buf: payload,
                pos: 0,
            },
            saved: None,
            capture: None,
        }
    }

    /// Unmarshal's result: an error that stopped decoding, else the saved type error.
    fn finish(&mut self, outcome: Result<(), Stop>) -> Result<(), PayloadError> {
        match outcome {
            Err(Stop::Fatal(error)) => Err(error),
            Err(Stop::Syntax(at)) => Err(syntax_error(self.r.buf, at)),
            Ok(()) => self.saved.take().map_or(Ok(()), Err),
        }
    }

    /// DockerConfigJSON's members: "auths" (maps merge; null resets), "HttpHeaders" checked for
    /// type, docker's helper members noted, anything else skipped.
    fn docker_config_json(
        &mut self,
        auths: &mut Option<Entries>,
        helpers: &mut Vec<String>,
    ) -> Result<(), Stop> {
        self.r.ws();
        match self.r.peek() {
            Some(b'{') => {}
            Some(b'n') => return Ok(()),
            _ => {
                self.save(None, "top-level value", self.r.pos);
                return Ok(());
            }
        }
        self.open_object()?;
        while let Some(name) = self.next_key()? {
            let name = unquote_text(name);
            if json_name_is(&name, "auths") {
                match self.r.peek() {
                    Some(b'{') => self.entries(1, auths.get_or_insert_with(Entries::default))?,
                    // null sets the map to nil; a later "auths" object starts a new one.
                    Some(b'n') => {
                        self.r.skip_value(1)?;
                        *auths = None;
                    }
                    _ => {
                        self.save(None, "auths", self.r.pos);
                        self.r.skip_value(1)?;
                    }
                }
            } else if json_name_is(&name, "httpheaders") {
                self.http_headers(1)?;
            } else if json_name_is(&name, "credhelpers") {
                self.cred_helpers(1, helpers)?;
            } else {
                if json_name_is(&name, "credsstore") {
                    push_unique(helpers, "credsStore".to_owned());
                }
                self.r.skip_value(1)?;
            }
        }
        Ok(())
    }

    /// DockerConfig: the payload is the registry map itself (null leaves it nil).
    fn dockercfg(&mut self, entries: &mut Option<Entries>) -> Result<(), Stop> {
        self.r.ws();
        match self.r.peek() {
            Some(b'{') => self.entries(0, entries.get_or_insert_with(Entries::default)),
            Some(b'n') => Ok(()),
            _ => {
                self.save(None, "top-level value", self.r.pos);
                Ok(())
            }
        }
    }

    fn wrong_type(&self, registry: Option<&str>, field: &'static str, at: usize) -> PayloadError {
        let (line, column) = line_column(self.r.buf, at);
        PayloadError::WrongType {
            registry: registry.map(mask_userinfo),
            field,
            line,
            column,
        }
    }

    fn save(&mut self, registry: Option<&str>, field: &'static str, at: usize) {
        if self.saved.is_none() {
            self.saved = Some(self.wrong_type(registry, field, at));
        }
    }

    fn open_object(&mut self) -> Result<(), Stop> {
        Ok(self.r.eat(b'{')?)
    }

    /// The next member name of the open object, the cursor then on its value; None at its end.
    fn next_key(&mut self) -> Result<Option<&'a [u8]>, Stop> {
        self.r.ws();
        match self.r.peek() {
            Some(b'}') => {
                self.r.pos += 1;
                return Ok(None);
            }
            Some(b',') => self.r.pos += 1,
            _ => {}
        }
        let name = self.r.string()?;
        self.r.eat(b':')?;
        self.r.ws();
        Ok(Some(name))
    }

    /// A registry map (the object at the cursor, inside `depth` containers) into `into`.
    fn entries(&mut self, depth: usize, into: &mut Entries) -> Result<(), Stop> {
        self.open_object()?;
        while let Some(name) = self.next_key()? {
            let registry = unquote_text(name);
            let capture = self
                .capture
                .as_ref()
                .is_some_and(|key| RegistryKey::parse(&registry).as_ref() == Ok(key));
            let (has_credentials, credential) = self.entry(&registry, depth + 1, capture)?;
            into.upsert(registry, has_credentials, credential);
        }
        Ok(())
    }

    /// DockerConfigEntry.UnmarshalJSON: whether the entry yields a username or password, and
    /// (when `capture`) the decoded credential.
    fn entry(
        &mut self,
        registry: &str,
        depth: usize,
        capture: bool,
    ) -> Result<(bool, Option<Credential>), Stop> {
        match self.r.peek() {
            // Unmarshalling null into the temporary struct leaves it empty.
            Some(b'n') => {
                self.r.skip_value(depth)?;
                let empty = capture.then(|| Credential {
                    username: Secret(Vec::new()),
                    password: Secret(Vec::new()),
                });
                Ok((false, empty))
            }
            Some(b'{') => self.entry_object(registry, depth + 1, capture),
            _ => Err(Stop::Fatal(self.wrong_type(
                Some(registry),
                "entry",
                self.r.pos,
            ))),
        }
    }

    fn entry_object(
        &mut self,
        registry: &str,
        depth: usize,
        capture: bool,
    ) -> Result<(bool, Option<Credential>), Stop> {
        self.open_object()?;
        let (mut username, mut password) = (false, false);
        // The values themselves are decoded only for the entries being captured.
        let (mut username_value, mut password_value): (Option<Secret>, Option<Secret>) =
            (None, None);
        let mut auth: Option<Secret> = None;
        // The inner Unmarshal finishes the object before it reports its first type error.
        let mut type_error = None;
        while let Some(name) = self.next_key()? {
            let at = self.r.pos;
            match (EntryField::of(&unquote_text(name)), self.r.peek()) {
                // Unknown members are ignored; null leaves a string field as it was.
                (None, _) | (Some(_), Some(b'n')) => self.r.skip_value(depth)?,
                (Some(field), Some(b'"')) => {
                    let raw = self.r.string()?;
                    // Any raw content, escapes included, decodes to a non-empty string.
                    match field {
                        EntryField::Username => {
                            username = !raw.is_empty();
                            username_value = capture.then(|| Secret::unquote(raw));
                        }
                        EntryField::Password => {
                            password = !raw.is_empty();
                            password_value = capture.then(|| Secret::unquote(raw));
                        }
                        EntryField::Email => {}
                        EntryField::Auth => auth = Some(Secret::unquote(raw)),
                    }
                }
                (Some(field), _) => {
                    type_error
                        .get_or_insert_with(|| self.wrong_type(Some(registry), field.name(), at));
                    self.r.skip_value(depth)?;
                }
            }
        }
        if let Some(error) = type_error {
            return Err(Stop::Fatal(error));
        }
        let Some(auth) = auth.filter(|auth| !auth.0.is_empty()) else {
            let credential = capture.then(|| Credential {
                username: username_value.unwrap_or(Secret(Vec::new())),
                password: password_value.unwrap_or(Secret(Vec::new())),
            });
            return Ok((username || password, credential));
        };
        // A non-empty auth replaces username and password.
        let (user, pass) = decode_auth_parts(&auth).map_err(|failure| {
            let registry = mask_userinfo(registry);
            Stop::Fatal(match failure {
                AuthFailure::NotBase64 => PayloadError::AuthNotBase64 { registry },
                AuthFailure::NoColon => PayloadError::AuthMissingColon { registry },
            })
        })?;
        let has_credentials = !user.0.is_empty() || !pass.0.is_empty();
        let credential = capture.then_some(Credential {
            username: user,
            password: pass,
        });
        Ok((has_credentials, credential))
    }

    /// DockerConfigJSON.HTTPHeaders, a map[string]string: checked for types, then dropped.
    fn http_headers(&mut self, depth: usize) -> Result<(), Stop> {
        match self.r.peek() {
            Some(b'{') => {
                self.open_object()?;
                while self.next_key()?.is_some() {
                    if !matches!(self.r.peek(), Some(b'"' | b'n')) {
                        self.save(None, "HttpHeaders value", self.r.pos);
                    }
                    self.r.skip_value(depth + 1)?;
                }
            }
            Some(b'n') => self.r.skip_value(depth)?,
            _ => {
                self.save(None, "HttpHeaders", self.r.pos);
                self.r.skip_value(depth)?;
            }
        }
        Ok(())
    }

    /// Docker's credHelpers (unknown to the kubelet): its registry names only.
    fn cred_helpers(&mut self, depth: usize, into: &mut Vec<String>) -> Result<(), Stop> {
        if self.r.peek() != Some(b'{') {
            return Ok(self.r.skip_value(depth)?);
        }
        self.open_object()?;
        while let Some(name) = self.next_key()? {
            push_unique(into, unquote_text(name));
            self.r.skip_value(depth + 1)?;
        }
        Ok(())
    }
}

/// Go's unquote of a checked string's raw bytes: escapes decoded, invalid UTF-8 and unpaired
/// surrogates each replaced by U+FFFD.
fn unquote_into(raw: &[u8], out: &mut String) {
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c != b'\\' {
            let (rune, n) = decode_rune(raw.get(i..).unwrap_or_default());
            out.push(char::from_u32(rune).unwrap_or(char::REPLACEMENT_CHARACTER));
            i += n.max(1);
            continue;
        }
        let Some(&escape) = raw.get(i + 1) else {
            break;
        };
        i += 2;
        let decoded = match escape {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = hex4(raw.get(i..i + 4));
                i += 4;
                match first {
                    Some(high @ 0xD800..=0xDBFF) => {
                        // Only a \u low surrogate right after completes the pair.
                        let low = (raw.get(i) == Some(&b'\\') && raw.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(raw.get(i + 2..i + 6)))
                            .flatten()
                            .filter(|low| (0xDC00..=0xDFFF).contains(low));
                        match low {
                            Some(low) => {
                                i += 6;
                                char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                            }
                            None => None,
                        }
                    }
                    Some(code) => char::from_u32(code),
                    None => None,
                }
                .unwrap_or(char::REPLACEMENT_CHARACTER)
            }
            other => char::from(other),
        };
        out.push(decoded);
    }
}

fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = std::str::from_utf8(digits?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// A member name or registry key as Go decodes it.
fn unquote_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    unquote_into(raw, &mut out);
    out
}

/// Credential bytes, zeroed before their memory is freed; deliberately without Debug.
struct Secret(Vec<u8>);

impl Secret {
    /// Decodes a JSON string into a buffer sized so that it never reallocates (and so never leaves a copy).
    fn unquote(raw: &[u8]) -> Secret {
        // U+FFFD for one invalid byte is the largest growth: 3 bytes for 1.
        let mut text = String::with_capacity(raw.len().saturating_mul(3));
        unquote_into(raw, &mut text);
        Secret(text.into_bytes())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

enum AuthFailure {
    NotBase64,
    NoColon,
}

/// StdEncoding: padding required; Go's non-strict decoding ignores non-zero trailing bits.
const PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);
/// RawStdEncoding: padding refused.
const UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// decodeDockerConfigFieldAuth: username and password, each in its own zeroed-on-drop buffer.
fn decode_auth_parts(auth: &Secret) -> Result<(Secret, Secret), AuthFailure> {
    let field = std::str::from_utf8(&auth.0).map_err(|_| AuthFailure::NotBase64)?;
    // Padded decoding only when the trimmed field ends in '='; the untrimmed field is decoded.
    let engine = if field.trim_end().ends_with('=') {
        &PADDED
    } else {
        &UNPADDED
    };
    // Go's decoder skips '\r' and '\n' anywhere; any other whitespace is an error.
    let mut compact = Secret(Vec::with_capacity(field.len()));
    compact
        .0
        .extend(field.bytes().filter(|&b| b != b'\n' && b != b'\r'));
    let decoded = Secret(
        engine
            .decode(&compact.0)
            .map_err(|_| AuthFailure::NotBase64)?,
    );
    // Split at the first ':'; the password may hold more.
    let colon = decoded
        .0
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthFailure::NoColon)?;
    let (user, pass) = decoded.0.split_at(colon);
    Ok((
        Secret(user.to_vec()),
        Secret(pass.get(1..).unwrap_or_default().to_vec()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use proptest::prelude::*;

    fn json_secret(payload: &str) -> Result<PullSecretKeys, PayloadError> {
        parse_payload(Format::DockerConfigJson, payload.as_bytes())
    }

    fn cfg_secret(payload: &str) -> Result<PullSecretKeys, PayloadError> {
        parse_payload(Format::Dockercfg, payload.as_bytes())
    }

    fn ok(result: Result<PullSecretKeys, PayloadError>) -> PullSecretKeys {
        match result {
            Ok(keys) => keys,
            Err(e) => panic!("expected keys, got {e}"),
        }
    }

    /// (raw, has_credentials) of each entry.
    fn summary(keys: &PullSecretKeys) -> Vec<(&str, bool)> {
        keys.entries
            .iter()
            .map(|e| (e.raw(), e.has_credentials))
            .collect()
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn valid_payloads() {
        let padded = STANDARD.encode("user:password");
        let unpadded = STANDARD_NO_PAD.encode("user:password");
        assert_ne!(padded, unpadded, "the unpadded form must differ");
        let cases = [
            format!(r#"{{"auths": {{"test.registry.io": {{"auth": "{padded}"}}}}}}"#),
            format!(r#"{{"auths": {{"test.registry.io": {{"auth": "{unpadded}"}}}}}}"#),
            r#"{"auths": {"test.registry.io": {"username": "user", "password": "password"}}}"#
                .to_owned(),
            r#"{"auths": {"test.registry.io": {"username": "user"}}}"#.to_owned(),
            r#"{"auths": {"test.registry.io": {"auth": "Zm9vOm\nJhcg==\n"}}}"#.to_owned(),
            r#"{"auths": {"test.registry.io": {"auth": "Zm9vOmJhcg\r\n"}}}"#.to_owned(),
            r#"{"auths": {"test.registry.io": {"auth": "\u005A\u006D9vOmJhcg=="}}}"#.to_owned(),
        ];
        for payload in cases {
            let keys = ok(json_secret(&payload));
            assert_eq!(summary(&keys), [("test.registry.io", true)], "{payload}");
            assert_eq!(
                keys.entries[0].key.as_ref().map(RegistryKey::as_str),
                Ok("test.registry.io")
            );
        }
    }

    #[test]
    fn what_counts_as_credentials() {
        // (entry JSON, has_credentials)
        let cases = [
            ("{}", false),
            ("null", false),
            (r#"{"email": "a@b.c"}"#, false),
            (r#"{"username": ""}"#, false),
            (r#"{"password": "p"}"#, true),
            (r#"{"username": "\u0000"}"#, true),
            (&format!(r#"{{"auth": "{}"}}"#, STANDARD.encode(":")), false),
            (
                &format!(r#"{{"auth": "{}"}}"#, STANDARD.encode("user:")),
                true,
            ),
            (
                &format!(r#"{{"auth": "{}"}}"#, STANDARD.encode(":pass")),
                true,
            ),
            // ':' in the password: split at the first one.
            (
                &format!(r#"{{"auth": "{}"}}"#, STANDARD.encode("user:pa:ss")),
                true,
            ),
            // A non-empty auth overrides username and password.
            (
                &format!(
                    r#"{{"username": "u", "password": "p", "auth": "{}"}}"#,
                    STANDARD.encode(":")
                ),
                false,
            ),
            // An empty auth is ignored.
            (r#"{"username": "u", "auth": ""}"#, true),
            // Later members win; null leaves a field as it was.
            (r#"{"username": "u", "username": ""}"#, false),
            (r#"{"username": "u", "username": null}"#, true),
            // Unknown members are ignored, whatever their type.
            (
                r#"{"identitytoken": "t", "registrytoken": 5, "serveraddress": []}"#,
                false,
            ),
        ];
        for (entry, want) in cases {
            let payload = format!(r#"{{"auths": {{"r.io": {entry}}}}}"#);
            assert_eq!(
                summary(&ok(json_secret(&payload))),
                [("r.io", want)],
                "{entry}"
            );
        }
        // A null auth after a real one leaves the real one, which is then decoded ("pants").
        assert_eq!(
            json_secret(
                r#"{"auths": {"r.io": {"auth": "cGFudHM=", "auth": null, "username": "u"}}}"#
            ),
            Err(PayloadError::AuthMissingColon {
                registry: "r.io".into()
            })
        );
    }

    #[test]
    fn member_names_fold_case_like_go() {
        let cases = [
            r#"{"AUTHS": {"r.io": {"USERNAME": "u"}}}"#,
            r#"{"Auths": {"r.io": {"UserName": "u"}}}"#,
            // encoding/json's Unicode folding maps the long s to 's'.
            r#"{"auth\u017f": {"r.io": {"u\u017fername": "u"}}}"#,
            &format!(
                r#"{{"auths": {{"r.io": {{"AUTH": "{}"}}}}}}"#,
                STANDARD.encode("u:p")
            ),
        ];
        for payload in cases {
            assert_eq!(
                summary(&ok(json_secret(payload))),
                [("r.io", true)],
                "{payload}"
            );
        }
        assert_eq!(
            json_secret(r#"{"auth_s": {"r.io": {}}}"#),
            Err(PayloadError::NoAuths {
                ignored_helpers: vec![]
            })
        );
    }

    #[test]
    fn auth_decoding_failures() {
        let cases = [
            ("pants", false),
            ("cGFudHM=", true),
            // Only newlines are skipped: a trailing space is an error.
            ("Zm9vOmJhcg== ", false),
            ("Zm9vOmJhcg=", false),
            ("Zm9vOmJhcg===", false),
            ("Zm9vOmJhcg==Zm9v", false),
            ("Zm9vOmJhc", false),
            ("Zm9v\tOmJhcg==", false),
            ("\n", true),
            ("====", false),
        ];
        for (auth, no_colon) in cases {
            let payload = format!(
                r#"{{"auths": {{"r.io": {{"auth": {}}}}}}}"#,
                serde_json::Value::from(auth)
            );
            let want = if no_colon {
                PayloadError::AuthMissingColon {
                    registry: "r.io".into(),
                }
            } else {
                PayloadError::AuthNotBase64 {
                    registry: "r.io".into(),
                }
            };
            let got = json_secret(&payload);
            assert_eq!(got, Err(want), "auth {auth:?}");
            assert!(got.err().is_some_and(|e| e.is_fatal()));
        }
        // Non-zero trailing bits are accepted, as by Go's non-strict decoder.
        assert!(json_secret(r#"{"auths": {"r.io": {"auth": "Zm9vOmJhch=="}}}"#).is_ok());
    }

    #[test]
    fn wrong_types_are_fatal() {
        let entry = |registry: &str, field: &'static str, line: usize, column: usize| {
            PayloadError::WrongType {
                registry: Some(registry.into()),
                field,
                line,
                column,
            }
        };
        let top = |field: &'static str, column: usize| PayloadError::WrongType {
            registry: None,
            field,
            line: 1,
            column,
        };
        let cases = [
            (
                r#"{"auths": {"r.io": {"email": false}}}"#,
                entry("r.io", "email", 1, 30),
            ),
            (
                r#"{"auths": {"r.io": {"username": 5}}}"#,
                entry("r.io", "username", 1, 33),
            ),
            (
                r#"{"auths": {"r.io": {"password": {}}}}"#,
                entry("r.io", "password", 1, 33),
            ),
            (
                r#"{"auths": {"r.io": {"auth": ["x"]}}}"#,
                entry("r.io", "auth", 1, 29),
            ),
            (
                r#"{"auths": {"r.io": "str"}}"#,
                entry("r.io", "entry", 1, 20),
            ),
            (r#"{"auths": {"r.io": []}}"#, entry("r.io", "entry", 1, 20)),
            (
                r#"{"auths": {"u:p@r.io": true}}"#,
                entry("***@r.io", "entry", 1, 24),
            ),
            (r#"{"auths": []}"#, top("auths", 11)),
            (r#"{"auths": "x"}"#, top("auths", 11)),
            ("[]", top("top-level value", 1)),
            (r#""x""#, top("top-level value", 1)),
            ("5", top("top-level value", 1)),
            (r#"{"auths": {}, "HttpHeaders": 5}"#, top("HttpHeaders", 30)),
            (
                r#"{"auths": {"r.io": {}}, "httpheaders": {"a": 1}}"#,
                top("HttpHeaders value", 46),
            ),
        ];
        for (payload, want) in cases {
            let got = json_secret(payload);
            assert_eq!(got, Err(want), "{payload}");
            assert!(got.err().is_some_and(|e| e.is_fatal()));
        }
        assert_eq!(cfg_secret("[]"), Err(top("top-level value", 1)));
        assert_eq!(
            cfg_secret(r#"{"r.io": 1}"#),
            Err(entry("r.io", "entry", 1, 10))
        );
        // HttpHeaders of the right type are fine.
        for headers in ["null", r#"{}"#, r#"{"a": "b", "c": null}"#] {
            let payload = format!(r#"{{"auths": {{"r.io": {{}}}}, "HttpHeaders": {headers}}}"#);
            assert!(json_secret(&payload).is_ok(), "{payload}");
        }
    }

    #[test]
    fn error_precedence_follows_go() {
        // A syntax error anywhere wins: Go checks the whole document first.
        assert_eq!(
            json_secret(r#"{"auths": {"r.io": {"auth": "pants"}}} x"#),
            Err(PayloadError::Syntax {
                line: 1,
                column: 40
            })
        );
        // An entry's error stops decoding and beats an earlier saved type error.
        assert_eq!(
            json_secret(r#"{"HttpHeaders": 5, "auths": {"r.io": {"auth": "pants"}}}"#),
            Err(PayloadError::AuthNotBase64 {
                registry: "r.io".into()
            })
        );
        // An entry's own type error comes before its auth is decoded.
        assert_eq!(
            json_secret(r#"{"auths": {"r.io": {"auth": "pants", "email": 1}}}"#),
            Err(PayloadError::WrongType {
                registry: Some("r.io".into()),
                field: "email",
                line: 1,
                column: 47
            })
        );
        // The first saved type error is the one reported.
        assert_eq!(
            json_secret(r#"{"auths": 1, "HttpHeaders": 2}"#),
            Err(PayloadError::WrongType {
                registry: None,
                field: "auths",
                line: 1,
                column: 11
            })
        );
    }

    #[test]
    fn syntax_as_go_reads_it() {
        let bad = [
            "{",
            r#"{"auths": {"r.io": {}},}"#,
            r#"{"auths": {"r.io": {}}} {}"#,
            "{'auths': {}}",
            r#"{"auths": {"r.io": {"username": "a\u12"}}}"#,
            r#"{"auths": {"r.io": {"username": "a\x"}}}"#,
            "{\"auths\": {\"r.io\": {\"username\": \"a\tb\"}}}",
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": -}"#,
            r#"{"a": tru}"#,
            r#"{"a": NaN}"#,
            " ",
            "\u{feff}{}",
        ];
        for payload in bad {
            let got = json_secret(payload);
            assert!(
                matches!(got, Err(PayloadError::Syntax { .. })),
                "{payload:?}: {got:?}"
            );
        }
        assert_eq!(
            json_secret("{\n  \"auths\": {\n    \"r.io\": {}\n  },\n  x\n}"),
            Err(PayloadError::Syntax { line: 5, column: 3 })
        );
        // Go accepts what serde would not: huge numbers, lone surrogates, invalid UTF-8.
        let fine: [&[u8]; 4] = [
            br#"{"n": 1e999999, "auths": {"r.io": {"username": "u"}}}"#,
            br#"{"auths": {"r.io": {"username": "\ud800"}}}"#,
            b"{\"auths\": {\"r.io\": {\"username\": \"\xff\"}}}",
            br#"{"auths": {"r.io": {"username": "u"}}, "x": -0.0E+1}"#,
        ];
        for payload in fine {
            assert!(
                parse_payload(Format::DockerConfigJson, payload).is_ok(),
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn nesting_limit_is_gos() {
        let nested = |depth: usize| {
            format!(
                r#"{{"auths": {{"r.io": {{}}}}, "x": {}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // The top-level object is one level, so 9,999 arrays reach Go's limit of 10,000.
        assert!(json_secret(&nested(9_999)).is_ok());
        assert!(matches!(
            json_secret(&nested(10_000)),
            Err(PayloadError::Syntax { .. })
        ));
    }

    #[test]
    fn keys_decode_like_go_strings() {
        let keys = ok(parse_payload(
            Format::DockerConfigJson,
            b"{\"auths\": {\"r\\u00e9g.io\": {}, \"bad\xffkey\": {}, \"\\ud83d\\ude00.io\": {}, \"\\udc00x\": {}}}",
        ));
        let raws: Vec<&str> = keys.entries.iter().map(|e| e.raw()).collect();
        assert_eq!(
            raws,
            ["rég.io", "bad\u{fffd}key", "\u{1f600}.io", "\u{fffd}x"]
        );
    }

    fn creds(payload: &str, key: &str) -> Result<Vec<(String, String)>, PayloadError> {
        let mut data = BTreeMap::new();
        data.insert(
            DOCKER_CONFIG_JSON_KEY.to_owned(),
            payload.as_bytes().to_vec(),
        );
        let key = RegistryKey::parse(key).unwrap();
        credentials_for(DOCKER_CONFIG_JSON_TYPE, &data, &key).map(|v| {
            v.iter()
                .map(|c| {
                    (
                        String::from_utf8_lossy(c.username()).into_owned(),
                        String::from_utf8_lossy(c.password()).into_owned(),
                    )
                })
                .collect()
        })
    }

    #[test]
    fn credentials_for_one_key_decode_as_the_kubelet_does() {
        let pair = |u: &str, p: &str| (u.to_owned(), p.to_owned());
        let auth = STANDARD.encode("robot$ci:pa:ss");
        // auth replaces username/password; the password keeps every ':' after the first.
        let doc = format!(
            r#"{{"auths": {{"r.io": {{"username": "x", "password": "y", "auth": "{auth}"}}, "other.io": {{"auth": "{auth}"}}}}}}"#
        );
        assert_eq!(creds(&doc, "r.io").unwrap(), [pair("robot$ci", "pa:ss")]);
        // Without auth, the username and password members (escapes decoded).
        let doc = r#"{"auths": {"r.io": {"username": "u\u0041", "password": "p\"w"}}}"#;
        assert_eq!(creds(doc, "r.io").unwrap(), [pair("uA", "p\"w")]);
        // Keys that normalise alike each give their credential; a repeated key keeps its last value.
        let doc = format!(
            r#"{{"auths": {{"https://r.io/v2/": {{"username": "a", "password": "1"}}, "r.io": {{"username": "b", "password": "2"}}, "https://r.io/v2/": {{"auth": "{}"}}}}}}"#,
            STANDARD_NO_PAD.encode("c:3")
        );
        assert_eq!(
            creds(&doc, "r.io").unwrap(),
            [pair("c", "3"), pair("b", "2")]
        );
        // Other keys, ports and paths are different keys.
        assert!(creds(&doc, "r.io:5000").unwrap().is_empty());
        assert!(creds(&doc, "r.io/team").unwrap().is_empty());
        // An entry without credentials gives an empty one; a null entry too.
        let c = creds(r#"{"auths": {"r.io": {}, "s.io": null}}"#, "s.io").unwrap();
        assert_eq!(c, [pair("", "")]);
        // Payload errors are the parser's, without any credential text.
        let bad = r#"{"auths": {"r.io": {"auth": "bm8tY29sb24="}}}"#;
        assert_eq!(
            creds(bad, "r.io"),
            Err(PayloadError::AuthMissingColon {
                registry: "r.io".to_owned()
            })
        );
        // The dockercfg form, and the unsupported-type error.
        let mut data = BTreeMap::new();
        data.insert(
            DOCKERCFG_KEY.to_owned(),
            format!(r#"{{"r.io": {{"auth": "{auth}"}}}}"#).into_bytes(),
        );
        let key = RegistryKey::parse("r.io").unwrap();
        assert_eq!(
            credentials_for(DOCKERCFG_TYPE, &data, &key).unwrap().len(),
            1
        );
        assert!(matches!(
            credentials_for("Opaque", &data, &key),
            Err(PayloadError::UnsupportedType { .. })
        ));
    }

    #[test]
    fn entries_merge_and_overwrite_like_go_maps() {
        let keys = ok(json_secret(
            r#"{"auths": {"a.io": {"username": "u"}, "b.io": {}}, "auths": {"a.io": {}, "c.io": {"password": "p"}}}"#,
        ));
        assert_eq!(
            summary(&keys),
            [("a.io", false), ("b.io", false), ("c.io", true)]
        );
        assert_eq!(
            json_secret(r#"{"auths": {"a.io": {}}, "auths": null}"#),
            Err(PayloadError::NoAuths {
                ignored_helpers: vec![]
            })
        );
        let keys = ok(json_secret(r#"{"auths": null, "auths": {"a.io": {}}}"#));
        assert_eq!(summary(&keys), [("a.io", false)]);
    }

    #[test]
    fn entry_keys_normalise_or_explain() {
        let keys = ok(json_secret(
            r#"{"auths": {"https://index.docker.io/v1/": {}, "my registry.io": {}, "https://user:pw@quay.io/team": {}}}"#,
        ));
        let got: Vec<(&str, Result<&str, KeyError>)> = keys
            .entries
            .iter()
            .map(|e| {
                (
                    e.raw(),
                    e.key
                        .as_ref()
                        .map(RegistryKey::as_str)
                        .map_err(Clone::clone),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("https://index.docker.io/v1/", Ok("index.docker.io")),
                ("my registry.io", Err(KeyError::InvalidHostCharacter(' '))),
                ("https://***@quay.io/team", Ok("quay.io/team")),
            ]
        );
    }

    #[test]
    fn helpers_are_reported_not_used() {
        let keys = ok(json_secret(
            r#"{"auths": {"r.io": {}}, "credHelpers": {"gcr.io": "gcloud", "ecr.io": "ecr-login", "gcr.io": "x"}, "credsStore": "desktop"}"#,
        ));
        assert_eq!(keys.ignored_helpers, ["gcr.io", "ecr.io", "credsStore"]);
        assert_eq!(
            json_secret(r#"{"credHelpers": {"gcr.io": "gcloud"}}"#),
            Err(PayloadError::NoAuths {
                ignored_helpers: vec!["gcr.io".into()]
            })
        );
        // The kubelet does not know credHelpers, so a value of any type is fine.
        assert!(json_secret(r#"{"auths": {"r.io": {}}, "credHelpers": 5}"#).is_ok());
    }

    #[test]
    fn empty_and_missing_registry_maps() {
        let cases = [
            (
                json_secret("{}"),
                PayloadError::NoAuths {
                    ignored_helpers: vec![],
                },
            ),
            (
                json_secret("null"),
                PayloadError::NoAuths {
                    ignored_helpers: vec![],
                },
            ),
            (
                json_secret(r#"{"auths": null}"#),
                PayloadError::NoAuths {
                    ignored_helpers: vec![],
                },
            ),
            (
                json_secret(r#"{"r.io": {"auth": "x"}}"#),
                PayloadError::NoAuths {
                    ignored_helpers: vec![],
                },
            ),
            (
                json_secret(r#"{"auths": {}}"#),
                PayloadError::NoEntries {
                    ignored_helpers: vec![],
                },
            ),
            (
                cfg_secret("{}"),
                PayloadError::NoEntries {
                    ignored_helpers: vec![],
                },
            ),
            (
                cfg_secret("null"),
                PayloadError::NoEntries {
                    ignored_helpers: vec![],
                },
            ),
        ];
        for (got, want) in cases {
            assert!(!want.is_fatal());
            assert_eq!(got, Err(want));
        }
    }

    #[test]
    fn dockercfg_is_a_bare_map() {
        let auth = STANDARD.encode("user:password");
        let keys = ok(cfg_secret(&format!(
            r#"{{"test.registry.io": {{"auth": "{auth}"}}, "auths": {{}}}}"#
        )));
        assert_eq!(
            summary(&keys),
            [("test.registry.io", true), ("auths", false)]
        );
    }

    #[test]
    fn type_and_data_key_select_the_payload() {
        let json = r#"{"auths": {"r.io": {"username": "u"}}}"#;
        let cfg = r#"{"r.io": {"username": "u"}}"#;
        let missing = |secret_type: &str, expected_key: &'static str, present: &[&str]| {
            PayloadError::MissingData {
                secret_type: secret_type.into(),
                expected_key,
                present_keys: present.iter().map(|k| (*k).to_owned()).collect(),
            }
        };
        let cases = [
            (
                DOCKER_CONFIG_JSON_TYPE,
                data(&[(".dockerconfigjson", json)]),
                Ok(1),
            ),
            (DOCKERCFG_TYPE, data(&[(".dockercfg", cfg)]), Ok(1)),
            (
                DOCKER_CONFIG_JSON_TYPE,
                data(&[(".dockercfg", cfg)]),
                Err(missing(
                    DOCKER_CONFIG_JSON_TYPE,
                    ".dockerconfigjson",
                    &[".dockercfg"],
                )),
            ),
            (
                DOCKERCFG_TYPE,
                data(&[(".dockerconfigjson", json)]),
                Err(missing(
                    DOCKERCFG_TYPE,
                    ".dockercfg",
                    &[".dockerconfigjson"],
                )),
            ),
            (
                DOCKER_CONFIG_JSON_TYPE,
                data(&[(".dockerconfigjson", "")]),
                Err(missing(
                    DOCKER_CONFIG_JSON_TYPE,
                    ".dockerconfigjson",
                    &[".dockerconfigjson"],
                )),
            ),
            (
                DOCKERCFG_TYPE,
                data(&[]),
                Err(missing(DOCKERCFG_TYPE, ".dockercfg", &[])),
            ),
            (
                "Opaque",
                data(&[(".dockerconfigjson", json)]),
                Err(PayloadError::UnsupportedType {
                    secret_type: "Opaque".into(),
                }),
            ),
            (
                "kubernetes.io/DockerConfigJson",
                data(&[(".dockerconfigjson", json)]),
                Err(PayloadError::UnsupportedType {
                    secret_type: "kubernetes.io/DockerConfigJson".into(),
                }),
            ),
        ];
        for (secret_type, data, want) in cases {
            let got = parse_pull_secret(secret_type, &data).map(|keys| keys.entries.len());
            if let Err(e) = &got {
                assert!(!e.is_fatal(), "{e}");
            }
            assert_eq!(got, want, "{secret_type} {data:?}");
        }
        // Both keys present: the type decides which one is read.
        let both = data(&[(".dockerconfigjson", json), (".dockercfg", "not json")]);
        assert!(parse_pull_secret(DOCKER_CONFIG_JSON_TYPE, &both).is_ok());
        assert!(parse_pull_secret(DOCKERCFG_TYPE, &both).is_err_and(|e| e.is_fatal()));
    }

    #[test]
    fn masks_userinfo_only_in_the_authority() {
        let cases = [
            ("https://user:pw@quay.io/x", "https://***@quay.io/x"),
            ("user@quay.io", "***@quay.io"),
            ("a@b@quay.io", "***@quay.io"),
            ("quay.io/team@x", "quay.io/team@x"),
            ("quay.io?a@b", "quay.io?a@b"),
            ("quay.io", "quay.io"),
        ];
        for (raw, want) in cases {
            assert_eq!(mask_userinfo(raw), want);
        }
    }

    const SECRET: &str = "Hunter2-Pw-7Qz";

    /// Payloads, valid and broken every way, each with SECRET where a credential would be.
    fn planted_payloads() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let auth_ok = STANDARD.encode(format!("user:{SECRET}"));
        let auth_no_colon = STANDARD.encode(SECRET);
        let json = |s: String| {
            (
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                s.into_bytes(),
            )
        };
        let mut payloads = vec![
            json(format!(
                r#"{{"auths": {{"r.io": {{"username": "u", "password": "{SECRET}"}}}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"auth": "{auth_ok}"}}}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"auth": "{auth_no_colon}"}}}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"auth": "{SECRET}!"}}}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"auth": "{auth_ok} "}}}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"password": "{SECRET}", "email": 5}}}}}}"#
            )),
            json(format!(r#"{{"auths": {{"r.io": {{"password": "{SECRET}"#)),
            json(format!(
                r#"{{"auths": {{"r.io": {{"password": "{SECRET}",}}}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"password": {SECRET}}}}}}}"#
            )),
            json(format!(r#"{{"auths": {{"r.io": "{SECRET}"}}}}"#)),
            json(format!(r#"{{"auths": ["{SECRET}"]}}"#)),
            json(format!(r#""{SECRET}""#)),
            json(format!(
                r#"{{"auths": {{"r.io": {{}}}}, "HttpHeaders": {{"Authorization": "{SECRET}", "x": 1}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"identitytoken": "{SECRET}", "registrytoken": "{SECRET}"}}}}}}"#
            )),
            json(format!(
                "{{\"auths\": {{\"r.io\": {{\"password\": \"{SECRET}\u{1}\"}}}}}}"
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"password": "{SECRET}\q"}}}}}}"#
            )),
            json(format!(
                r#"{{"auths": {{"r.io": {{"password": "{SECRET}"}}}}, "x": {}{}}}"#,
                "[".repeat(10_001),
                "]".repeat(10_001)
            )),
            json(format!(r#"{{"auths": {{}}, "credsStore": "{SECRET}"}}"#)),
            json(format!(
                r#"{{"auths": {{"r.io": {{"auth": "{auth_ok}", "username": 1}}}}}}"#
            )),
            (
                DOCKERCFG_TYPE,
                DOCKERCFG_KEY,
                format!(r#"{{"r.io": {{"password": "{SECRET}"}}}}"#).into_bytes(),
            ),
            (
                DOCKERCFG_TYPE,
                DOCKERCFG_KEY,
                format!(r#"{{"r.io": {{"auth": "{auth_no_colon}"}}}}"#).into_bytes(),
            ),
            (
                DOCKERCFG_TYPE,
                DOCKERCFG_KEY,
                format!(r#"["{SECRET}"]"#).into_bytes(),
            ),
            (
                DOCKERCFG_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                format!(r#"{{"auths": {{"r.io": {{"password": "{SECRET}"}}}}}}"#).into_bytes(),
            ),
        ];
        payloads.push(json(format!(r#"{{"r.io": {{"password": "{SECRET}"}}}}"#)));
        payloads.push((
            "Opaque",
            DOCKER_CONFIG_JSON_KEY,
            format!(r#"{{"auths": {{"r.io": {{"password": "{SECRET}"}}}}}}"#).into_bytes(),
        ));
        let mut invalid_utf8 =
            format!(r#"{{"auths": {{"r.io": {{"password": "{SECRET}"#).into_bytes();
        invalid_utf8.extend_from_slice(b"\xff\"}}}");
        payloads.push((
            DOCKER_CONFIG_JSON_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            invalid_utf8,
        ));
        payloads
    }

    #[test]
    fn no_credential_survives_parsing() {
        let forbidden = [
            SECRET.to_owned(),
            STANDARD.encode(format!("user:{SECRET}")),
            STANDARD.encode(SECRET),
            "Hunter2".to_owned(),
        ];
        let mut kinds = std::collections::BTreeSet::new();
        for (secret_type, data_key, payload) in planted_payloads() {
            let mut data = BTreeMap::new();
            data.insert(data_key.to_owned(), payload);
            let result = parse_pull_secret(secret_type, &data);
            let mut shown = format!("{result:?} {result:#?}");
            match &result {
                Ok(keys) => {
                    for entry in &keys.entries {
                        shown.push_str(&format!("{entry:?} {}", entry.raw()));
                        if let Err(e) = &entry.key {
                            shown.push_str(&e.to_string());
                        }
                    }
                }
                Err(e) => shown.push_str(&e.to_string()),
            }
            kinds.insert(match &result {
                Ok(_) => "ok".to_owned(),
                Err(e) => format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            });
            for needle in &forbidden {
                assert!(!shown.contains(needle.as_str()), "{needle} leaked: {shown}");
            }
        }
        let want = [
            "AuthMissingColon",
            "AuthNotBase64",
            "MissingData",
            "NoAuths",
            "NoEntries",
            "Syntax",
            "UnsupportedType",
            "WrongType",
            "ok",
        ];
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            want,
            "every kind of result is covered"
        );
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-zA-Z0-9:=+/ ]{0,12}".prop_map(serde_json::Value::from),
            prop::sample::select(vec![
                "auths",
                "auth",
                "username",
                "password",
                "HttpHeaders",
                "dXNlcjpw",
                "dXNlcjpw=="
            ])
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "auths",
                            "AUTHS",
                            "r.io",
                            "username",
                            "password",
                            "auth",
                            "email",
                            "HttpHeaders",
                            "x"
                        ]),
                        inner
                    ),
                    0..4
                )
                .prop_map(|members| serde_json::Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(payload in prop::collection::vec(any::<u8>(), 0..64), json_type in any::<bool>()) {
            let (secret_type, key) = if json_type { (DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY) } else { (DOCKERCFG_TYPE, DOCKERCFG_KEY) };
            let mut data = BTreeMap::new();
            data.insert(key.to_owned(), payload);
            let _ = parse_pull_secret(secret_type, &data);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value()) {
            let payload = value.to_string();
            for format in [Format::DockerConfigJson, Format::Dockercfg] {
                let result = parse_payload(format, payload.as_bytes());
                prop_assert!(!matches!(result, Err(PayloadError::Syntax { .. })), "valid JSON read as a syntax error: {}", payload);
            }
        }

        #[test]
        fn json_grammar_agrees_with_serde(payload in "[\\[\\]{}\",:0-9.eE+\\-a-z \\\\]{0,16}") {
            // serde_json and Go agree on the grammar where this alphabet cannot reach their
            // differences (depth, number range, surrogates, invalid UTF-8).
            let ours = validate(payload.as_bytes()).is_ok();
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(&payload).is_ok();
            prop_assert_eq!(ours, serde, "payload {:?}", payload);
        }
    }
}
