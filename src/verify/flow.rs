//! The Docker Registry HTTP API v2 auth flow as a pure state machine: it says which request to
//! send next and judges each response; the HTTP adapter only moves bytes. Keeping the decisions
//! here means every rule — where credentials may go, what counts as rejected — is table-tested
//! without a network.
//!
//! The flow: `GET /v2/` without credentials. A 401 carries challenges: `Bearer` names a token
//! realm, which gets the credential by HTTP Basic (with `service` and, if configured, a `pull`
//! scope); `Basic` means `/v2/` is retried with the credential. A 200 means `/v2/` needs no
//! authentication; with a probe repository its tags are asked for next, since some registries
//! challenge only there. Credentials go only to the registry's origin and to the realm origin
//! the registry itself named; redirects are followed within the same origin only.

use super::challenge::{self, Challenge};
use crate::engine::index::CredentialStatus;
use crate::engine::keyring::RegistryKey;
use std::fmt;

/// Redirects followed (same origin only) per request before giving up.
pub const MAX_REDIRECTS: u8 = 3;
/// Largest response body the flow reads (a token response is a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Hosts that are aliases of Docker Hub, whose registry API is served by `registry-1.docker.io`
/// (where the kubelet's container runtime sends these credentials).
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Scheme, host and port: where a request goes, and the unit of credential trust.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// HTTPS (true) or plain HTTP.
    pub tls: bool,
    /// Host name (lowercase) or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Origin {
    /// Where the registry API of a kubelet key lives: its host (and port), HTTPS unless
    /// `insecure`. Docker Hub's aliases map to its API host; glob keys name no single host.
    pub fn for_key(key: &RegistryKey, insecure: bool) -> Result<Origin, String> {
        if key.is_glob() {
            return Err(format!(
                "key {:?} is a glob and names no single registry host to probe",
                key.as_str()
            ));
        }
        let hostname = key.hostname();
        let host = hostname
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(hostname)
            .to_ascii_lowercase();
        let default_port = if insecure { 80 } else { 443 };
        let port = match key.port() {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("key {:?} has an invalid port", key.as_str()))?,
        };
        if host.is_empty() {
            return Err(format!("key {:?} has no host", key.as_str()));
        }
        let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) && key.port().is_none() {
            DOCKER_HUB_API.to_owned()
        } else {
            host
        };
        Ok(Origin {
            tls: !insecure,
            host,
            port,
        })
    }

    /// `host[:port]` for the Host header and for matching policy patterns (default port omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// Why a URL from a registry (realm or redirect target) is not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute http(s) URL with a host.
    #[error("is not an absolute http(s) URL")]
    NotHttp,
    /// It carries user-info (`user:pass@`), which would be a second credential source.
    #[error("carries user-info")]
    Userinfo,
}

/// Split an absolute URL (or a path or scheme-relative reference against `base`) into its
/// origin and path-and-query; the fragment is dropped.
pub fn resolve_url(
    reference: &str,
    base: &Origin,
    base_path: &str,
) -> Result<(Origin, String), UrlError> {
    let reference = reference.trim();
    let reference = reference.split('#').next().unwrap_or_default();
    let lower = reference.get(..8).unwrap_or(reference).to_ascii_lowercase();
    let (tls, rest) = if lower.starts_with("https://") {
        (true, reference.get(8..).unwrap_or_default())
    } else if lower.starts_with("http://") {
        (false, reference.get(7..).unwrap_or_default())
    } else if let Some(rest) = reference.strip_prefix("//") {
        (base.tls, rest)
    } else if reference.starts_with('/') {
        return Ok((base.clone(), reference.to_owned()));
    } else if (reference.contains(':') && !reference.contains('/')) || reference.contains("://") {
        return Err(UrlError::NotHttp);
    } else {
        // A relative path: against the directory of the base path.
        let path = base_path.split('?').next().unwrap_or("/");
        let dir = path
            .rfind('/')
            .map_or("/", |i| path.get(..=i).unwrap_or("/"));
        return Ok((base.clone(), format!("{dir}{reference}")));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(UrlError::Userinfo);
    }
    let (host, port) = split_host_port(authority).ok_or(UrlError::NotHttp)?;
    let port = match port {
        Some(p) => p,
        None if tls => 443,
        None => 80,
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    };
    Ok((
        Origin {
            tls,
            host: host.to_ascii_lowercase(),
            port,
        },
        path,
    ))
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = v6.get(..close)?;
        let after = v6.get(close + 1..)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
    };
    Some((host, port))
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay as they are).
fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request for the adapter to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where to.
    pub origin: Origin,
    /// Path and query, e.g. `/v2/`.
    pub path_and_query: String,
    /// Whether to send the credential (HTTP Basic).
    pub credentials: bool,
}

/// What the adapter brings back from one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    /// HTTP status code.
    pub status: u16,
    /// Every `WWW-Authenticate` header value.
    pub www_authenticate: Vec<Vec<u8>>,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The body, at most [`MAX_BODY`] bytes (empty when it was longer).
    pub body: Vec<u8>,
}

/// The flow's verdict on one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The outcome.
    pub status: CredentialStatus,
    /// Why, in one line (never any credential or token).
    pub detail: String,
}

impl Verdict {
    /// A verdict with its explanation.
    pub fn new(status: CredentialStatus, detail: impl Into<String>) -> Self {
        Verdict {
            status,
            detail: detail.into(),
        }
    }
}

/// The next step of the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this request and report its response.
    Send(Outgoing),
    /// The flow is over.
    Done(Verdict),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `GET /v2/` without credentials.
    Ping,
    /// `GET /v2/<repo>/tags/list` without credentials, after an unauthenticated 200 on `/v2/`.
    RepositoryPing,
    /// The token realm with the credential.
    Token,
    /// The registry again, with the credential.
    Basic,
}

/// One run of the auth flow for one credential against one registry.
#[derive(Debug, Clone)]
pub struct Flow {
    registry: Origin,
    allow_http: bool,
    repository: Option<String>,
    stage: Stage,
    /// The realm origin the registry named; the only other origin credentials may go to.
    realm: Option<Origin>,
    current: Outgoing,
    redirects: u8,
}

impl Flow {
    /// A flow against `registry`; `allow_http` permits a plain-HTTP token realm (only for
    /// registries configured insecure); `repository` is the configured probe repository.
    pub fn new(registry: Origin, allow_http: bool, repository: Option<String>) -> Flow {
        let current = Outgoing {
            origin: registry.clone(),
            path_and_query: "/v2/".to_owned(),
            credentials: false,
        };
        Flow {
            registry,
            allow_http,
            repository,
            stage: Stage::Ping,
            realm: None,
            current,
            redirects: 0,
        }
    }

    /// The registry probed.
    pub fn registry(&self) -> &Origin {
        &self.registry
    }

    /// The first request.
    pub fn start(&self) -> Outgoing {
        self.current.clone()
    }

    /// Whether a credential may be sent to `origin`: the registry, or the realm it named.
    /// The adapter checks this again before every request, as a second line of defence.
    pub fn may_send_credentials_to(&self, origin: &Origin) -> bool {
        *origin == self.registry || self.realm.as_ref() == Some(origin)
    }

    /// The verdict when a request could not be completed (network, TLS, timeout).
    pub fn on_transport_error(&self, error: &str) -> Verdict {
        Verdict::new(
            CredentialStatus::Unreachable,
            format!("{} {}: {error}", self.what(), self.current.origin),
        )
    }

    fn what(&self) -> &'static str {
        match self.stage {
            Stage::Ping | Stage::RepositoryPing | Stage::Basic => "registry",
            Stage::Token => "token realm",
        }
    }

    fn send(&mut self, stage: Stage, out: Outgoing) -> Next {
        self.stage = stage;
        self.redirects = 0;
        self.current = out.clone();
        Next::Send(out)
    }

    /// Judge a response and say what comes next.
    pub fn on_response(&mut self, r: &Incoming) -> Next {
        let at = format!(
            "{}{}",
            self.current.origin,
            path_only(&self.current.path_and_query)
        );
        if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
            return self.redirect(r, &at);
        }
        if r.status >= 500 {
            return Next::Done(Verdict::new(
                CredentialStatus::Unreachable,
                format!("{} {at} answered {}", self.what(), r.status),
            ));
        }
        match self.stage {
            Stage::Ping | Stage::RepositoryPing => self.anonymous(r, &at),
            Stage::Token => Next::Done(match r.status {
                200..=299 if has_token(&r.body) => Verdict::new(
                    CredentialStatus::Valid,
                    format!("token realm {at} issued a token"),
                ),
                200..=299 => Verdict::new(
                    CredentialStatus::Unsupported,
                    format!("token realm {at} answered {} without a token", r.status),
                ),
                401 | 403 => Verdict::new(
                    CredentialStatus::Rejected,
                    format!("token realm {at} refused the credential ({})", r.status),
                ),
                s => Verdict::new(
                    CredentialStatus::Unsupported,
                    format!("token realm {at} answered {s}"),
                ),
            }),
            Stage::Basic => Next::Done(match r.status {
                200..=299 => Verdict::new(
                    CredentialStatus::Valid,
                    format!("registry {at} accepted the credential"),
                ),
                401 | 403 => Verdict::new(
                    CredentialStatus::Rejected,
                    format!("registry {at} refused the credential ({})", r.status),
                ),
                s => Verdict::new(
                    CredentialStatus::Unsupported,
                    format!("registry {at} answered {s} to the credential"),
                ),
            }),
        }
    }

    fn redirect(&mut self, r: &Incoming, at: &str) -> Next {
        let Some(location) = r.location.as_deref() else {
            return Next::Done(Verdict::new(
                CredentialStatus::Unsupported,
                format!(
                    "{} {at} answered {} without a Location",
                    self.what(),
                    r.status
                ),
            ));
        };
        match resolve_url(location, &self.current.origin, &self.current.path_and_query) {
            Ok((origin, path)) if origin == self.current.origin => {
                if self.redirects >= MAX_REDIRECTS {
                    return Next::Done(Verdict::new(
                        CredentialStatus::Unsupported,
                        format!("{} {at}: more than {MAX_REDIRECTS} redirects", self.what()),
                    ));
                }
                self.redirects += 1;
                self.current.path_and_query = path;
                Next::Send(self.current.clone())
            }
            Ok((origin, _)) => Next::Done(Verdict::new(
                CredentialStatus::Unsupported,
                format!(
                    "{} {at} redirected to {origin}; pullgate follows redirects within the same origin only, so nothing was sent there",
                    self.what()
                ),
            )),
            Err(e) => Next::Done(Verdict::new(
                CredentialStatus::Unsupported,
                format!("{} {at} redirected to a location that {e}", self.what()),
            )),
        }
    }

    /// A response to an unauthenticated request to the registry.
    fn anonymous(&mut self, r: &Incoming, at: &str) -> Next {
        match r.status {
            200..=299 => {
                if let (Stage::Ping, Some(repo)) = (self.stage, self.repository.clone()) {
                    let out = Outgoing {
                        origin: self.registry.clone(),
                        path_and_query: format!("/v2/{repo}/tags/list"),
                        credentials: false,
                    };
                    return self.send(Stage::RepositoryPing, out);
                }
                Next::Done(Verdict::new(
                    CredentialStatus::Unsupported,
                    format!("registry {at} needs no authentication, so it does not check credentials and this one cannot be verified"),
                ))
            }
            401 => {
                let challenges = challenge::parse_all(r.www_authenticate.iter().map(Vec::as_slice));
                self.challenged(&challenges, at)
            }
            s => Next::Done(Verdict::new(
                CredentialStatus::Unsupported,
                format!("registry {at} answered {s} without credentials (not a v2 registry API?)"),
            )),
        }
    }

    fn challenged(&mut self, challenges: &[Challenge], at: &str) -> Next {
        if let Some(bearer) = challenges.iter().find(|c| c.is("bearer")) {
            return self.bearer(bearer, at);
        }
        if challenges.iter().any(|c| c.is("basic")) {
            let out = Outgoing {
                origin: self.registry.clone(),
                path_and_query: self.current.path_and_query.clone(),
                credentials: true,
            };
            return self.send(Stage::Basic, out);
        }
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        Next::Done(Verdict::new(
            CredentialStatus::Unsupported,
            if schemes.is_empty() {
                format!("registry {at} answered 401 without a readable WWW-Authenticate challenge")
            } else {
                format!(
                    "registry {at} offers only {} authentication, not Bearer or Basic",
                    schemes.join(", ")
                )
            },
        ))
    }

    fn bearer(&mut self, c: &Challenge, at: &str) -> Next {
        let unsupported =
            |why: String| Next::Done(Verdict::new(CredentialStatus::Unsupported, why));
        let Some(realm) = c.param("realm").filter(|r| !r.trim().is_empty()) else {
            return unsupported(format!(
                "registry {at} sent a Bearer challenge without a realm"
            ));
        };
        let (origin, path) = match resolve_url(realm, &self.registry, "/v2/") {
            Ok(v) => v,
            Err(e) => {
                return unsupported(format!(
                    "the token realm {realm:?} named by registry {at} {e}"
                ))
            }
        };
        if !origin.tls && !self.allow_http {
            return unsupported(format!(
                "registry {at} names a plain-HTTP token realm {origin}; credentials go over HTTPS only (mark the registry insecure to allow it)"
            ));
        }
        let mut query = Vec::new();
        if let Some(service) = c.param("service") {
            query.push(format!("service={}", query_escape(service)));
        }
        if let Some(repo) = &self.repository {
            query.push(format!(
                "scope={}",
                query_escape(&format!("repository:{repo}:pull"))
            ));
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let path_and_query = if query.is_empty() {
            path
        } else {
            format!("{path}{sep}{}", query.join("&"))
        };
        self.realm = Some(origin.clone());
        self.send(
            Stage::Token,
            Outgoing {
                origin,
                path_and_query,
                credentials: true,
            },
        )
    }
}

fn path_only(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or(path_and_query)
}

/// Whether a token response carries a token (`token` or the OAuth2 `access_token`).
fn has_token(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    serde_json::from_slice::<TokenResponse>(body).is_ok_and(|t| {
        t.token.is_some_and(|t| !t.is_empty()) || t.access_token.is_some_and(|t| !t.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use CredentialStatus::*;

    fn origin(s: &str) -> Origin {
        resolve_url(
            s,
            &Origin {
                tls: true,
                host: "x".into(),
                port: 443,
            },
            "/",
        )
        .unwrap()
        .0
    }

    fn key_origin(k: &str, insecure: bool) -> Result<Origin, String> {
        Origin::for_key(&RegistryKey::parse(k).unwrap(), insecure)
    }

    fn resp(status: u16, challenge: &str) -> Incoming {
        Incoming {
            status,
            www_authenticate: if challenge.is_empty() {
                vec![]
            } else {
                vec![challenge.as_bytes().to_vec()]
            },
            ..Default::default()
        }
    }

    fn with_location(status: u16, location: &str) -> Incoming {
        Incoming {
            status,
            location: Some(location.to_owned()),
            ..Default::default()
        }
    }

    fn token(body: &str) -> Incoming {
        Incoming {
            status: 200,
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn flow(repo: Option<&str>) -> Flow {
        Flow::new(
            origin("https://r.example.com"),
            false,
            repo.map(str::to_owned),
        )
    }

    /// Drive a flow through the responses; the requests it sent and its verdict.
    fn run(mut f: Flow, responses: &[Incoming]) -> (Vec<Outgoing>, Option<Verdict>) {
        let mut sent = vec![f.start()];
        for r in responses {
            match f.on_response(r) {
                Next::Send(o) => {
                    if o.credentials {
                        assert!(f.may_send_credentials_to(&o.origin), "{o:?}");
                    }
                    sent.push(o)
                }
                Next::Done(v) => return (sent, Some(v)),
            }
        }
        (sent, None)
    }

    #[test]
    fn key_origins() {
        let o = key_origin("registry.example.com:5000/team", false).unwrap();
        assert_eq!(
            (o.tls, o.host.as_str(), o.port),
            (true, "registry.example.com", 5000)
        );
        assert_eq!(o.to_string(), "https://registry.example.com:5000");
        let o = key_origin("Registry.Example.com", true).unwrap();
        assert_eq!((o.tls, o.port), (false, 80));
        assert_eq!(o.to_string(), "http://registry.example.com");
        let o = key_origin("[::1]:5000", false).unwrap();
        assert_eq!(
            (o.host.as_str(), o.authority()),
            ("::1", "[::1]:5000".to_owned())
        );
        for hub in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
        ] {
            assert_eq!(key_origin(hub, false).unwrap().host, "registry-1.docker.io");
        }
        assert!(key_origin("*.example.com", false).is_err());
    }

    #[test]
    fn url_resolution() {
        let base = origin("https://r.io");
        type Case<'a> = (&'a str, Result<(&'a str, &'a str), UrlError>);
        let cases: Vec<Case<'_>> = vec![
            (
                "https://auth.r.io/token",
                Ok(("https://auth.r.io", "/token")),
            ),
            (
                "HTTPS://Auth.R.io:8443/t?x=1#frag",
                Ok(("https://auth.r.io:8443", "/t?x=1")),
            ),
            ("http://r.io", Ok(("http://r.io", "/"))),
            ("https://r.io?x=1", Ok(("https://r.io", "/?x=1"))),
            ("/v2/", Ok(("https://r.io", "/v2/"))),
            ("//other.io/x", Ok(("https://other.io", "/x"))),
            ("token", Ok(("https://r.io", "/v2/token"))),
            ("https://[::1]:5000/t", Ok(("https://[::1]:5000", "/t"))),
            ("https://user:pw@evil.io/t", Err(UrlError::Userinfo)),
            ("ftp://r.io/t", Err(UrlError::NotHttp)),
            ("javascript:alert(1)", Err(UrlError::NotHttp)),
            ("https://", Err(UrlError::NotHttp)),
            ("https://r.io:99999/", Err(UrlError::NotHttp)),
            ("https://r io/", Err(UrlError::NotHttp)),
        ];
        for (input, want) in cases {
            let got = resolve_url(input, &base, "/v2/x").map(|(o, p)| (o.to_string(), p));
            let want = want.map(|(o, p)| (o.to_owned(), p.to_owned()));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn basic_flow() {
        let basic = resp(401, r#"Basic realm="basic-realm""#);
        let (sent, v) = run(flow(None), &[basic.clone(), resp(200, "")]);
        assert_eq!(v.map(|v| v.status), Some(Valid));
        assert_eq!(sent.len(), 2);
        assert!(!sent[0].credentials && sent[1].credentials);
        assert_eq!(sent[1].origin, origin("https://r.example.com"));
        assert_eq!(sent[1].path_and_query, "/v2/");
        for refused in [401, 403] {
            let (_, v) = run(flow(None), &[basic.clone(), resp(refused, "")]);
            assert_eq!(v.map(|v| v.status), Some(Rejected), "{refused}");
        }
        let (_, v) = run(flow(None), &[basic.clone(), resp(503, "")]);
        assert_eq!(v.map(|v| v.status), Some(Unreachable));
        let (_, v) = run(flow(None), &[basic, resp(404, "")]);
        assert_eq!(v.map(|v| v.status), Some(Unsupported));
    }

    #[test]
    fn bearer_flow_with_realm_on_another_host() {
        let challenge =
            r#"Bearer realm="https://auth.example.com/token?client=x",service="r.example.com""#;
        let (sent, v) = run(
            flow(Some("library/busybox")),
            &[
                resp(401, challenge),
                token(r#"{"token":"abc","expires_in":300}"#),
            ],
        );
        assert_eq!(v.as_ref().map(|v| v.status), Some(Valid), "{v:?}");
        assert_eq!(sent[1].origin, origin("https://auth.example.com"));
        assert!(sent[1].credentials);
        assert_eq!(
            sent[1].path_and_query,
            "/token?client=x&service=r.example.com&scope=repository%3Alibrary%2Fbusybox%3Apull"
        );
        let ok_oauth = run(
            flow(None),
            &[resp(401, challenge), token(r#"{"access_token":"t"}"#)],
        );
        assert_eq!(ok_oauth.1.map(|v| v.status), Some(Valid));
        let cases = [
            (token(r#"{"token":""}"#), Unsupported),
            (token("not json"), Unsupported),
            (resp(401, ""), Rejected),
            (resp(403, ""), Rejected),
            (resp(500, ""), Unreachable),
            (resp(400, ""), Unsupported),
        ];
        for (answer, want) in cases {
            let (_, v) = run(flow(None), &[resp(401, challenge), answer.clone()]);
            assert_eq!(v.map(|v| v.status), Some(want), "{answer:?}");
        }
    }

    #[test]
    fn bearer_is_preferred_and_unknown_schemes_are_unsupported() {
        let both = r#"Basic realm="x", Bearer realm="https://a.io/t""#;
        let (sent, _) = run(flow(None), &[resp(401, both)]);
        assert_eq!(sent[1].origin, origin("https://a.io"));
        let cases = [
            (resp(401, "Negotiate"), "offers only Negotiate"),
            (resp(401, ""), "without a readable"),
            (resp(401, "Bearer service=x"), "without a realm"),
            (resp(401, r#"Bearer realm="ftp://a/t""#), "not an absolute"),
            (resp(401, r#"Bearer realm="https://u:p@a/t""#), "user-info"),
            (
                resp(401, r#"Bearer realm="http://a/t""#),
                "plain-HTTP token realm",
            ),
            (resp(404, ""), "not a v2 registry"),
            (resp(403, ""), "answered 403"),
        ];
        for (answer, why) in cases {
            let (sent, v) = run(flow(None), &[answer]);
            let v = v.unwrap();
            assert_eq!(v.status, Unsupported, "{why}");
            assert!(v.detail.contains(why), "{}: {why}", v.detail);
            assert_eq!(sent.len(), 1, "no credential sent");
        }
        // An insecure registry may use a plain-HTTP realm.
        let f = Flow::new(origin("http://r.io:5000"), true, None);
        let (sent, _) = run(f, &[resp(401, r#"Bearer realm="http://r.io:5000/t""#)]);
        assert_eq!(sent[1].origin, origin("http://r.io:5000"));
    }

    #[test]
    fn anonymous_registry_and_probe_repository() {
        let (_, v) = run(flow(None), &[resp(200, "")]);
        let v = v.unwrap();
        assert_eq!(v.status, Unsupported);
        assert!(v.detail.contains("needs no authentication"));
        // With a probe repository: the repository is asked for, and its challenge used.
        let (sent, v) = run(
            flow(Some("team/app")),
            &[
                resp(200, ""),
                resp(401, r#"Basic realm="r""#),
                resp(200, ""),
            ],
        );
        assert_eq!(v.map(|v| v.status), Some(Valid));
        assert_eq!(sent[1].path_and_query, "/v2/team/app/tags/list");
        assert!(!sent[1].credentials);
        assert_eq!(sent[2].path_and_query, "/v2/team/app/tags/list");
        assert!(sent[2].credentials);
        let (_, v) = run(flow(Some("team/app")), &[resp(200, ""), resp(200, "")]);
        assert_eq!(v.map(|v| v.status), Some(Unsupported));
    }

    #[test]
    fn redirects_stay_within_the_origin() {
        // Same origin: followed, credentials kept.
        let (sent, v) = run(
            flow(None),
            &[
                resp(401, "Basic"),
                with_location(307, "/v2/elsewhere/"),
                resp(200, ""),
            ],
        );
        assert_eq!(v.map(|v| v.status), Some(Valid));
        assert_eq!(sent[2].path_and_query, "/v2/elsewhere/");
        assert!(sent[2].credentials);
        // Another host, another port, another scheme: refused before anything is sent there.
        for foreign in [
            "https://evil.example.net/v2/",
            "https://r.example.com:8443/v2/",
            "http://r.example.com/v2/",
        ] {
            for at_stage in [
                vec![with_location(302, foreign)],
                vec![resp(401, "Basic"), with_location(307, foreign)],
                vec![
                    resp(401, r#"Bearer realm="https://auth.io/t""#),
                    with_location(302, foreign),
                ],
            ] {
                let n = at_stage.len();
                let (sent, v) = run(flow(None), &at_stage);
                let v = v.unwrap();
                assert_eq!(v.status, Unsupported, "{foreign}");
                assert!(v.detail.contains("same origin only"), "{}", v.detail);
                assert_eq!(sent.len(), n, "nothing sent to {foreign}");
            }
        }
        // Loops end.
        let mut answers = vec![resp(401, "Basic")];
        answers.extend((0..10).map(|_| with_location(308, "/v2/")));
        let (sent, v) = run(flow(None), &answers);
        assert_eq!(v.map(|v| v.status), Some(Unsupported));
        assert_eq!(sent.len(), 2 + usize::from(MAX_REDIRECTS));
        let (_, v) = run(flow(None), &[resp(302, "")]);
        assert!(v.unwrap().detail.contains("without a Location"));
    }

    #[test]
    fn transport_errors_and_5xx_are_unreachable_never_rejected() {
        let f = flow(None);
        let v = f.on_transport_error("connection refused");
        assert_eq!(v.status, Unreachable);
        assert!(v.detail.contains("https://r.example.com"));
        for s in [500, 502, 503, 504] {
            let (_, v) = run(flow(None), &[resp(s, "")]);
            assert_eq!(v.map(|v| v.status), Some(Unreachable));
        }
    }

    #[test]
    fn credentials_only_to_registry_and_named_realm() {
        let mut f = flow(None);
        assert!(f.may_send_credentials_to(&origin("https://r.example.com")));
        assert!(!f.may_send_credentials_to(&origin("https://auth.example.com")));
        let _ = f.on_response(&resp(401, r#"Bearer realm="https://auth.example.com/t""#));
        assert!(f.may_send_credentials_to(&origin("https://auth.example.com")));
        assert!(!f.may_send_credentials_to(&origin("https://auth.example.com:444")));
        assert!(!f.may_send_credentials_to(&origin("http://r.example.com")));
    }

    proptest! {
        /// Whatever a registry answers, the flow never panics, ends within a bounded number of
        /// requests, and never addresses a credential to an origin it may not send one to.
        #[test]
        fn any_answers_are_safe(
            answers in proptest::collection::vec(
                (prop_oneof![Just(200u16), Just(301), Just(302), Just(307), Just(401), Just(403), Just(404), Just(500), 100u16..600],
                 "[ -~]{0,60}",
                 proptest::option::of("[ -~]{0,40}"),
                 proptest::collection::vec(any::<u8>(), 0..40)),
                0..12),
            repo in proptest::option::of("[a-z]{1,8}"),
        ) {
            let mut f = Flow::new(origin("https://r.io"), false, repo);
            let mut requests = 1;
            for (status, challenge, location, body) in answers {
                let r = Incoming {
                    status,
                    www_authenticate: vec![challenge.into_bytes()],
                    location,
                    body,
                };
                match f.on_response(&r) {
                    Next::Send(o) => {
                        requests += 1;
                        prop_assert!(!o.credentials || f.may_send_credentials_to(&o.origin));
                        prop_assert!(o.origin.tls || !o.credentials);
                        prop_assert!(requests <= 4 * (1 + usize::from(MAX_REDIRECTS)));
                    }
                    Next::Done(_) => break,
                }
            }
        }
    }
}
