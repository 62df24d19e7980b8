//! Load test: pullgate's real HTTPS admission server against a FLOOR server, side by side,
//! driven by the same load generator in the same run.
//!
//! * pullgate: `server::{router, AppState, serve_tls}` over rustls, with a cluster index of
//!   10,000 namespaces × 5 pull secrets plus the pod's namespace (50 pull secrets).
//! * floor: the same rustls config and certificate type, the same hyper-util HTTP/1.1 + h2
//!   connection builder, but the handler only parses the review into a `serde_json::Value` and
//!   answers `{"apiVersion":…,"kind":"AdmissionReview","response":{"uid":…,"allowed":true}}`.
//!   Nothing can answer a review faster, so it is the bar pullgate is measured against.
//! * load generator: N keep-alive TLS connections (HTTP/1.1 over tokio-rustls, written by hand
//!   so that the client costs little CPU), each sending the ~7 KB five-container pod review
//!   the API server would send, one request at a time; a fixed request count per run, capped by
//!   a duration.
//!
//! Everything runs in this process on loopback (127.0.0.1) only: the servers on one tokio
//! runtime (worker threads `lt-server`), the client on another (`lt-client`). Nothing is pinned:
//! client and servers share the machine's cores, which the report states.
//!
//! ```text
//! cargo bench --bench loadtest -- [--concurrency 1,4,32,64] [--requests 20000] [--warmup 2000]
//!     [--rounds 2] [--max-secs 15] [--namespaces 10000] [--endpoint validate|mutate]
//!     [--client-threads 2] [--server-threads 2] [--only floor|pullgate] [--out FILE]
//! ```
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pullgate::engine::index::ClusterIndex;
use pullgate::metrics::Metrics;
use pullgate::server::{router, serve_tls, AppState, MAX_BODY_BYTES};
use pullgate::store::{Store, View};
use pullgate::tls::{self, CertResolver};
use rustls::pki_types::pem::PemObject;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Barrier};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[path = "common/mod.rs"]
mod common;

/// Time a client gets to finish the TLS handshake (floor server; pullgate has its own).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to send request headers (floor server; same as pullgate's).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct request uids cycled through (the answers must echo them).
const UIDS: usize = 64;
/// Requests slower than this are listed (when they started, how long they took) on stderr.
const SLOW: Duration = Duration::from_millis(20);

/// Command-line options (unknown `--bench`, which `cargo bench` passes, is ignored).
#[derive(Debug, Clone)]
struct Args {
    concurrency: Vec<usize>,
    requests: usize,
    warmup: usize,
    rounds: usize,
    max_secs: f64,
    namespaces: usize,
    endpoint: &'static str,
    client_threads: usize,
    server_threads: usize,
    out: Option<String>,
    /// Drive only this server ("floor" or "pullgate"), e.g. under a profiler.
    only: Option<&'static str>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            concurrency: vec![1, 4, 32, 64],
            requests: 20_000,
            warmup: 2_000,
            rounds: 2,
            max_secs: 15.0,
            namespaces: 10_000,
            endpoint: "validate",
            client_threads: 2,
            server_threads: 2,
            out: None,
            only: None,
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" || !flag.starts_with("--") {
            continue;
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--concurrency" => {
                a.concurrency = value()?
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<usize>()
                            .map_err(|_| format!("bad concurrency {c:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--requests" => a.requests = num(value()?)?,
            "--warmup" => a.warmup = num(value()?)?,
            "--rounds" => a.rounds = num(value()?)?.max(1),
            "--namespaces" => a.namespaces = num(value()?)?,
            "--client-threads" => a.client_threads = num(value()?)?.max(1),
            "--server-threads" => a.server_threads = num(value()?)?.max(1),
            "--max-secs" => {
                let v = value()?;
                a.max_secs = v.parse().map_err(|_| format!("--max-secs: bad {v:?}"))?;
            }
            "--endpoint" => {
                a.endpoint = match value()?.as_str() {
                    "validate" => "validate",
                    "mutate" => "mutate",
                    other => return Err(format!("--endpoint: {other:?} is not validate|mutate")),
                }
            }
            "--out" => a.out = Some(value()?),
            "--only" => {
                a.only = match value()?.as_str() {
                    "floor" => Some("floor"),
                    "pullgate" => Some("pullgate"),
                    other => return Err(format!("--only: {other:?} is not floor|pullgate")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.concurrency.is_empty() || a.concurrency.contains(&0) {
        return Err("--concurrency needs positive numbers".to_owned());
    }
    Ok(a)
}

/// A store serving one immutable snapshot, as the file store does between reloads.
struct SnapshotStore(Arc<ClusterIndex>);

impl Store for SnapshotStore {
    fn view(&self) -> View<'_> {
        View::Shared(self.0.clone())
    }
    fn ready(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The floor server.

/// Answer one review with `allowed: true` after a full `serde_json::Value` parse.
async fn floor_handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(floor_error(StatusCode::BAD_REQUEST, "unreadable body")),
    };
    let review: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Ok(floor_error(StatusCode::BAD_REQUEST, "not JSON")),
    };
    let uid = review
        .pointer("/request/uid")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let api_version = review
        .get("apiVersion")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("admission.k8s.io/v1");
    let answer = serde_json::json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    let body = serde_json::to_vec(&answer).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn floor_error(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// Accept TLS connections and serve them with the same hyper-util builder settings pullgate
/// uses, until `shutdown` turns true.
async fn floor_serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // Take the result out of select! first: its other arm holds a watch guard that must
        // not live across the back-off sleep (the future would not be Send).
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // E.g. EMFILE: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder.http2().timer(TokioTimer::new());
            let service = hyper::service::service_fn(floor_handle);
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator.

/// One keep-alive HTTP/1.1 connection over TLS.
struct Conn {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = connector.connect(name, tcp).await?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Send one pre-built request and read the whole response; returns (status, body).
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        self.stream.write_all(request).await?;
        self.stream.flush().await?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let (head_len, body_len, status) = loop {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(h) = parse_head(&self.buf)? {
                break h;
            }
        };
        while self.buf.len() < head_len + body_len {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok((status, &self.buf[head_len..head_len + body_len]))
    }
}

/// (header length, content length, status) once the head is complete.
fn parse_head(buf: &[u8]) -> std::io::Result<Option<(usize, usize, u16)>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| bad("no content-length"))?;
    Ok(Some((end + 4, length, status)))
}

/// Pre-built HTTP requests (head and body), one per uid.
fn requests(endpoint: &str) -> Vec<Vec<u8>> {
    (0..UIDS)
        .map(|i| {
            let body = common::five_container_review(&format!(
                "b18b53c8-8fe6-4b9e-bfcd-{i:012x}"
            ));
            let mut req = format!(
                "POST /{endpoint}?timeout=10s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kube-apiserver-admission\r\nAccept: application/json, */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(&body);
            req
        })
        .collect()
}

/// One request on `conn` (opened first if needed); true when answered 200 with `allowed: true`.
async fn exchange_once(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    connector: &TlsConnector,
    request: &[u8],
) -> bool {
    const ALLOWED: &[u8] = b"\"allowed\":true";
    if conn.is_none() {
        *conn = Conn::open(addr, connector).await.ok();
    }
    let Some(open) = conn.as_mut() else {
        return false;
    };
    match open.exchange(request).await {
        Ok((200, body)) => body.windows(ALLOWED.len()).any(|w| w == ALLOWED),
        Ok(_) => false,
        Err(_) => {
            *conn = None;
            false
        }
    }
}

/// What one run (one server, one concurrency) measured.
#[derive(Debug, Default, Clone)]
struct RunResult {
    /// Latencies in nanoseconds of the measured requests.
    latencies: Vec<u64>,
    /// Wall time of the measured phase.
    elapsed: Duration,
    /// Failed exchanges (I/O errors, non-200, an answer that does not allow).
    errors: usize,
    /// CPU time the server runtime's threads used during the measured phase.
    server_cpu: Duration,
    /// CPU time the client runtime's threads used during the measured phase.
    client_cpu: Duration,
    /// Requests slower than [`SLOW`]: (start, since the measured phase began; latency).
    slow: Vec<(Duration, Duration)>,
}

/// Drive `addr` with `concurrency` connections: warm up, then `total` measured requests.
async fn run(
    addr: SocketAddr,
    connector: TlsConnector,
    reqs: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    total: usize,
    warmup: usize,
    max: Duration,
) -> RunResult {
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let ticket = Arc::new(AtomicUsize::new(0));
    let deadline = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let (barrier, ticket, deadline, reqs, connector) = (
            barrier.clone(),
            ticket.clone(),
            deadline.clone(),
            reqs.clone(),
            connector.clone(),
        );
        tasks.spawn(async move {
            let mut errors = 0usize;
            let mut lat = Vec::with_capacity(total / concurrency + 16);
            let mut slow = Vec::new();
            let mut conn = None;
            // Each connection starts at another uid and cycles through them.
            let mut next = c;
            for _ in 0..warmup.div_ceil(concurrency).max(1) {
                next = (next + 1) % reqs.len();
                exchange_once(&mut conn, addr, &connector, &reqs[next]).await;
            }
            barrier.wait().await;
            let stop = *deadline.get_or_init(|| Instant::now() + max);
            while ticket.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < stop {
                next = (next + 1) % reqs.len();
                let t0 = Instant::now();
                if !exchange_once(&mut conn, addr, &connector, &reqs[next]).await {
                    errors += 1;
                }
                let took = t0.elapsed();
                lat.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
                if took > SLOW {
                    slow.push((t0, took));
                }
            }
            (lat, slow, errors, Instant::now())
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let mut out = RunResult::default();
    let mut end = start;
    while let Some(r) = tasks.join_next().await {
        if let Ok((lat, slow, errors, done)) = r {
            out.latencies.extend(lat);
            out.slow.extend(
                slow.into_iter()
                    .map(|(t0, took)| (t0.saturating_duration_since(start), took)),
            );
            out.errors += errors;
            end = end.max(done);
        }
    }
    let cpu1 = thread_cpu();
    out.elapsed = end - start;
    out.server_cpu = cpu1.0.saturating_sub(cpu0.0);
    out.client_cpu = cpu1.1.saturating_sub(cpu0.1);
    out
}

/// CPU time used so far by this process's `lt-server` and `lt-client` threads (Linux
/// schedstat; zero elsewhere). Threads that exited are not counted, so the runtimes keep
/// their threads alive for the whole run.
fn thread_cpu() -> (Duration, Duration) {
    let (mut server, mut client) = (0u64, 0u64);
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return (Duration::ZERO, Duration::ZERO);
    };
    for task in dir.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0);
        if comm.starts_with("lt-server") {
            server += ns;
        } else if comm.starts_with("lt-client") {
            client += ns;
        }
    }
    (Duration::from_nanos(server), Duration::from_nanos(client))
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// Results of one server at one concurrency, over all rounds.
#[derive(Debug, Default)]
struct Cell {
    runs: Vec<RunResult>,
}

impl Cell {
    fn requests(&self) -> usize {
        self.runs.iter().map(|r| r.latencies.len()).sum()
    }
    fn throughput(&self) -> f64 {
        let secs: f64 = self.runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        self.requests() as f64 / secs.max(1e-9)
    }
    fn round_throughputs(&self) -> Vec<f64> {
        self.runs
            .iter()
            .map(|r| r.latencies.len() as f64 / r.elapsed.as_secs_f64().max(1e-9))
            .collect()
    }
    fn percentile(&self, sorted: &[u64], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1_000.0
    }
    fn sorted(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }
    fn errors(&self) -> usize {
        self.runs.iter().map(|r| r.errors).sum()
    }
    fn cpu_per_request(&self, server: bool) -> f64 {
        let cpu: Duration = self
            .runs
            .iter()
            .map(|r| if server { r.server_cpu } else { r.client_cpu })
            .sum();
        cpu.as_secs_f64() * 1e6 / (self.requests().max(1) as f64)
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {model}")
}

fn report(args: &Args, review_len: usize, cells: &[(usize, Cell, Cell)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pullgate load test — {} — POST /{} with a {review_len}-byte 5-container pod review; index: {} other namespaces × {} secrets + 50 in the pod's; {} rounds × {} requests per cell (ABBA order), {} warm-up; client {} threads, server {} threads; loopback TLS 1.3, HTTP/1.1 keep-alive; client and servers share the cores (nothing pinned).\n",
        machine(),
        args.endpoint,
        args.namespaces,
        common::SECRETS_PER_OTHER_NAMESPACE,
        args.rounds,
        args.requests,
        args.warmup,
        args.client_threads,
        args.server_threads,
    );
    let _ = writeln!(
        s,
        "| conns | server | req/s (per round) | p50 µs | p99 µs | p99.9 µs | max µs | server CPU µs/req | client CPU µs/req | errors |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (conc, floor, pg) in cells {
        for (name, cell) in [("floor", floor), ("pullgate", pg)] {
            if cell.runs.is_empty() {
                continue;
            }
            let sorted = cell.sorted();
            let rounds: Vec<String> = cell
                .round_throughputs()
                .iter()
                .map(|t| format!("{t:.0}"))
                .collect();
            let _ = writeln!(
                s,
                "| {conc} | {name} | {:.0} ({}) | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
                cell.throughput(),
                rounds.join(", "),
                cell.percentile(&sorted, 50.0),
                cell.percentile(&sorted, 99.0),
                cell.percentile(&sorted, 99.9),
                cell.percentile(&sorted, 100.0),
                cell.cpu_per_request(true),
                cell.cpu_per_request(false),
                cell.errors(),
            );
        }
    }
    if cells
        .iter()
        .all(|(_, floor, pg)| floor.runs.is_empty() || pg.runs.is_empty())
    {
        return s;
    }
    let _ = writeln!(
        s,
        "\nTargets (recorded, not asserted): throughput ≥ 2/3 of the floor's; p99 at low concurrency (1, 4) ≤ 1.5× the floor's.\n"
    );
    let _ = writeln!(
        s,
        "| conns | throughput pullgate/floor | target ≥ 0.67 | p99 pullgate/floor | target ≤ 1.5 (conns ≤ 4) | server CPU pullgate/floor |"
    );
    let _ = writeln!(s, "|---:|---:|---|---:|---|---:|");
    for (conc, floor, pg) in cells {
        if floor.runs.is_empty() || pg.runs.is_empty() {
            continue;
        }
        let t = pg.throughput() / floor.throughput();
        let p99 = pg.percentile(&pg.sorted(), 99.0) / floor.percentile(&floor.sorted(), 99.0);
        let cpu = pg.cpu_per_request(true) / floor.cpu_per_request(true);
        let p99_target = if *conc <= 4 {
            if p99 <= 1.5 {
                "met"
            } else {
                "MISSED"
            }
        } else {
            "n/a"
        };
        let _ = writeln!(
            s,
            "| {conc} | {t:.2} | {} | {p99:.2} | {p99_target} | {cpu:.2} |",
            if t >= 2.0 / 3.0 { "met" } else { "MISSED" }
        );
    }
    s
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(2);
        }
    };
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .thread_name("lt-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("lt-client")
        .enable_all()
        .build()
        .expect("client runtime");

    eprintln!(
        "loadtest: building the index ({} namespaces)…",
        args.namespaces
    );
    let index = Arc::new(common::cluster(args.namespaces));
    let certs = tls::certs::generate(
        &["localhost".to_owned()],
        &[IpAddr::from([127, 0, 0, 1])],
        2,
    )
    .expect("certificates");
    let loaded = tls::load_pem_pair(
        certs.tls_cert_pem.as_bytes(),
        certs.tls_key_pem.as_bytes(),
        "bench",
        "bench",
    )
    .expect("key pair");
    let server_cfg =
        Arc::new(tls::server_config(Arc::new(CertResolver::new(loaded.key))).expect("tls config"));

    let (stop_tx, stop_rx) = watch::channel(false);
    let bind = |rt: &tokio::runtime::Runtime| {
        rt.block_on(TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind loopback")
    };
    let pg_listener = bind(&server_rt);
    let floor_listener = bind(&server_rt);
    let pg_addr = pg_listener.local_addr().expect("addr");
    let floor_addr = floor_listener.local_addr().expect("addr");
    let state = Arc::new(AppState::new(
        common::policy(),
        Arc::new(SnapshotStore(index)),
        Arc::new(Metrics::new()),
        256,
        Duration::from_secs(4),
    ));
    let pg_server = server_rt.spawn(serve_tls(
        pg_listener,
        TlsAcceptor::from(server_cfg.clone()),
        router(state),
        stop_rx.clone(),
        Duration::from_secs(2),
    ));
    let floor_server = server_rt.spawn(floor_serve(
        floor_listener,
        TlsAcceptor::from(server_cfg),
        stop_rx,
    ));

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(certs.ca_cert_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let mut client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    client_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(client_cfg));
    let reqs = Arc::new(requests(args.endpoint));
    let review_len = common::five_container_review("x").len();

    let max = Duration::from_secs_f64(args.max_secs);
    let mut cells = Vec::new();
    for &conc in &args.concurrency {
        let (mut floor, mut pg) = (Cell::default(), Cell::default());
        for round in 0..args.rounds {
            // ABBA: alternate which server goes first so drift hits both alike.
            let order = if round % 2 == 0 {
                [(floor_addr, true), (pg_addr, false)]
            } else {
                [(pg_addr, false), (floor_addr, true)]
            };
            for (addr, is_floor) in order {
                let name = if is_floor { "floor" } else { "pullgate" };
                if args.only.is_some_and(|only| only != name) {
                    continue;
                }
                let r = client_rt.block_on(run(
                    addr,
                    connector.clone(),
                    reqs.clone(),
                    conc,
                    args.requests,
                    args.warmup,
                    max,
                ));
                let mut slow = r.slow.clone();
                slow.sort();
                let slow: Vec<String> = slow
                    .iter()
                    .take(8)
                    .map(|(at, took)| {
                        format!("{:.0}ms@{:.3}s", took.as_secs_f64() * 1e3, at.as_secs_f64())
                    })
                    .collect();
                eprintln!(
                    "loadtest: conns={conc} round={round} {}: {} requests in {:.2}s, {} errors, {} slower than {SLOW:?} [{}]",
                    name,
                    r.latencies.len(),
                    r.elapsed.as_secs_f64(),
                    r.errors,
                    r.slow.len(),
                    slow.join(" ")
                );
                if is_floor {
                    floor.runs.push(r);
                } else {
                    pg.runs.push(r);
                }
            }
        }
        cells.push((conc, floor, pg));
    }

    let _ = stop_tx.send(true);
    // serve_tls returns once its connections drained (at most its 2 s grace period).
    let _ = server_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let _ = pg_server.await;
            let _ = floor_server.await;
        })
        .await
    });
    let text = report(&args, review_len, &cells);
    println!("{text}");
    if let Some(path) = &args.out {
        if let Err(e) = std::fs::write(path, &text) {
            eprintln!("loadtest: writing {path}: {e}");
        }
    }
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(2));
}
