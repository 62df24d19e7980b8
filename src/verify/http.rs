//! The thin HTTP adapter of the probe: one HTTP/1.1 request on a fresh connection, over rustls
//! (or plain TCP for registries configured insecure), to exactly the origin the flow names.
//!
//! No connection pool and no client library: a probe makes two or three requests every few
//! hours, and owning the connection makes the rules visible — nothing here follows a redirect,
//! consults a proxy variable or reuses a connection to another host. The caller bounds the
//! whole exchange with a timeout; dropping the future closes the connection.

use super::flow::{Incoming, Outgoing, MAX_BODY};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, HOST, LOCATION, USER_AGENT, WWW_AUTHENTICATE,
};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// `User-Agent` of the probes, so registry operators can tell them apart.
const AGENT: &str = concat!(
    "pullgate/",
    env!("CARGO_PKG_VERSION"),
    " (credential verification)"
);

/// Why a request could not be completed; every variant reads as "unreachable" to the flow.
/// Messages name the failure only (no header, body or credential).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connection (or name resolution) failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// The TLS handshake failed (an untrusted certificate, a name mismatch, …).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    /// HTTPS was wanted but no TLS configuration was given.
    #[error("no TLS configuration for an HTTPS origin")]
    NoTlsConfig,
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[source] hyper::Error),
    /// The request could not be built (an invalid path).
    #[error("invalid request: {0}")]
    Request(#[source] hyper::http::Error),
    /// The credentials do not make a valid header value (the error never holds the value).
    #[error("invalid request: authorization header: {0}")]
    Authorization(#[source] hyper::header::InvalidHeaderValue),
    /// Reading the body failed.
    #[error("reading the response body: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A connection task that is aborted when the exchange ends or is dropped (on timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Send `out` and read the response. `authorization` is the full header value (`Basic …`),
/// given only for requests the flow marked as carrying the credential.
pub async fn exchange(
    out: &Outgoing,
    authorization: Option<&[u8]>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Incoming, TransportError> {
    let tcp = TcpStream::connect((out.origin.host.as_str(), out.origin.port))
        .await
        .map_err(TransportError::Connect)?;
    // Small requests answered at once: Nagle would only add latency.
    let _ = tcp.set_nodelay(true);
    if !out.origin.tls {
        return send(tcp, out, authorization).await;
    }
    let config = tls.ok_or(TransportError::NoTlsConfig)?;
    let name = ServerName::try_from(out.origin.host.clone())
        .map_err(|_| TransportError::ServerName(out.origin.host.clone()))?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(TransportError::Tls)?;
    send(stream, out, authorization).await
}

async fn send<S>(
    io: S,
    out: &Outgoing,
    authorization: Option<&[u8]>,
) -> Result<Incoming, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(TransportError::Http)?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(out.path_and_query.as_str())
        .header(HOST, out.origin.authority())
        .header(USER_AGENT, AGENT)
        .header(ACCEPT, "application/json");
    if let Some(value) = authorization {
        let mut value = HeaderValue::from_bytes(value).map_err(TransportError::Authorization)?;
        // Marked sensitive: hyper's Debug shows "Sensitive" instead of the value.
        value.set_sensitive(true);
        req = req.header(AUTHORIZATION, value);
    }
    let req = req.body(Empty::new()).map_err(TransportError::Request)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(TransportError::Http)?;
    let status = resp.status().as_u16();
    let www_authenticate = resp
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    let location = resp
        .headers()
        .get(LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match Limited::new(resp.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        // Too long for a token response: judged as having no token.
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Vec::new(),
        Err(e) => return Err(TransportError::Body(e)),
    };
    Ok(Incoming {
        status,
        www_authenticate,
        location,
        body,
    })
}
