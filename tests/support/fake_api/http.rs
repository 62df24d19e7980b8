//! The fake's HTTP side: routing of `/api/v1/…` and `/apis/{group}/{version}/…`, bearer-token
//! authentication, the request log, fault injection, and chunked watch streams.

use super::select::{FieldSelector, LabelSelector};
use super::status::{json_response, ApiError};
use super::store::{
    bookmark_line, is_optional_crd, resource_by_path, Filter, ListQuery, PatchType, ResourceType,
    State, WatchQuery, WatchStart, RESOURCES,
};
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxumState};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Largest request body accepted (the API server's limit is 3 MiB).
const MAX_BODY: usize = 3 << 20;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Whether the request carried the expected bearer token.
    pub authorized: bool,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The status answered (set when the response starts).
    pub status: Option<u16>,
}

impl LoggedRequest {
    /// A query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this was a watch.
    pub fn is_watch(&self) -> bool {
        self.param("watch").is_some_and(parse_bool)
    }

    /// Whether this was a list (a collection GET that is not a watch).
    pub fn is_list(&self) -> bool {
        self.method == "GET"
            && !self.is_watch()
            && matches!(route(&self.path), Ok(Route::Collection { .. }))
    }
}

/// Everything the server shares between requests and with the test's handle.
pub struct App {
    /// Storage.
    pub state: Mutex<State>,
    /// Requests received.
    pub log: Mutex<Vec<LoggedRequest>>,
    /// Requests still to fail with 500.
    pub fail_next: AtomicUsize,
    /// Open watch streams.
    pub open_watches: AtomicUsize,
    /// Bumped to make every open watch stream fail mid-stream.
    pub drops: watch::Sender<u64>,
    /// Bumped to end every open watch stream cleanly, as a server ends one at its timeout.
    pub ends: watch::Sender<u64>,
    /// While true, requests and watch events wait.
    pub stalled: watch::Sender<bool>,
    /// Expected bearer token.
    pub token: String,
    /// Time between BOOKMARK events.
    pub bookmark_interval: Duration,
    /// What lists cost.
    pub list_cost: super::ListCost,
    /// Whether `sendInitialEvents` is served.
    pub watch_list: bool,
    /// BOOKMARK events sent: (index in the request log of the watch, resourceVersion).
    pub bookmarks: Mutex<Vec<(usize, u64)>>,
    /// Continued list requests still to meet an expired token ([`super::FakeApi::expire_continues`]).
    pub expire_continues: AtomicUsize,
    /// Concurrent writers armed by the test ([`super::FakeApi::race_writes`]).
    pub races: Mutex<Vec<Race>>,
    /// Whether the PolicyReport CRD is installed ([`super::FakeApi::install_policy_report_crd`]).
    pub policy_report_crd: AtomicBool,
}

/// A concurrent writer: before each of the next `remaining` PATCH or PUT requests to an existing
/// object of `resource`, that object is updated with `edit`, as another client's write that
/// reached the storage first.
pub struct Race {
    /// Index in [`RESOURCES`].
    pub resource: usize,
    /// Writes still to race.
    pub remaining: usize,
    /// The other client's change to the object (as the API returns it).
    pub edit: Box<dyn Fn(&mut Value) + Send + Sync>,
}

impl App {
    /// The storage, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn logged(&self) -> MutexGuard<'_, Vec<LoggedRequest>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn unstalled(&self) {
        let mut rx = self.stalled.subscribe();
        let _ = rx.wait_for(|s| !*s).await;
    }

    /// Run an armed race before a write to `path`: the addressed object is updated with the race's
    /// edit through the storage's normal write path (validation, a new resourceVersion, a
    /// MODIFIED event), so the request then meets the real resourceVersion precondition.
    fn race(&self, method: &Method, path: &str) -> Result<(), ApiError> {
        if !matches!(*method, Method::PATCH | Method::PUT) {
            return Ok(());
        }
        let Ok(Route::Object { res, ns, name }) = route(path) else {
            return Ok(());
        };
        let mut races = self.races.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(race) = races
            .iter_mut()
            .find(|r| r.resource == res && r.remaining > 0)
        else {
            return Ok(());
        };
        let mut state = self.state();
        // A missing object has nothing to race: the request gets its own 404.
        let Ok(current) = state.get(res, &ns, &name) else {
            return Ok(());
        };
        race.remaining -= 1;
        let before = current.value(&RESOURCES[res]);
        let mut after = before.clone();
        (race.edit)(&mut after);
        if after == before {
            // The API server does not write (nor bump the resourceVersion of) a no-op update.
            return Err(ApiError::internal(
                "a race_writes edit must change the object: a no-op update cannot conflict",
            ));
        }
        state.update(res, &ns, &name, after, false).map(|_| ())
    }

    fn take_failure(&self) -> bool {
        take(&self.fail_next)
    }
}

/// Count one down from a non-zero counter; whether it was non-zero.
fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

/// The router: one handler, since Kubernetes paths are parsed more easily than routed.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// The APIGroupList of `/apis`: every named group served (the CRD's only while installed).
fn api_groups(crd: bool) -> Value {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for (i, r) in RESOURCES.iter().enumerate() {
        let served = crd || !is_optional_crd(i);
        if served && !r.group.is_empty() && !groups.contains(&(r.group, r.version)) {
            groups.push((r.group, r.version));
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The APIResourceList of one group version.
fn api_resources(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    })
}

/// Go's `strconv.ParseBool`, which the API server uses for query flags.
fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// What a path addresses.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Version,
    /// `/apis`: the APIGroupList.
    Groups,
    /// `/apis/{group}/{version}`: its APIResourceList.
    GroupVersion {
        group: String,
        version: String,
    },
    Collection {
        res: usize,
        ns: Option<String>,
    },
    Object {
        res: usize,
        ns: String,
        name: String,
    },
}

fn route(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["apis"] => return Ok(Route::Groups),
        ["apis", g, v] => {
            if !RESOURCES.iter().any(|r| r.group == *g && r.version == *v) {
                return Err(ApiError::no_route());
            }
            return Ok(Route::GroupVersion {
                group: (*g).to_owned(),
                version: (*v).to_owned(),
            });
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    let res =
        |plural: &str| resource_by_path(group, version, plural).ok_or_else(ApiError::no_route);
    match rest {
        [plural] => Ok(Route::Collection {
            res: res(plural)?,
            ns: None,
        }),
        [plural, name] => {
            let r = res(plural)?;
            if RESOURCES[r].namespaced {
                return Err(ApiError::no_route());
            }
            Ok(Route::Object {
                res: r,
                ns: String::new(),
                name: (*name).to_owned(),
            })
        }
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 1 => {
            let r = res(plural)?;
            if !RESOURCES[r].namespaced {
                return Err(ApiError::no_route());
            }
            Ok(match tail {
                [name] => Route::Object {
                    res: r,
                    ns: (*ns).to_owned(),
                    name: (*name).to_owned(),
                },
                _ => Route::Collection {
                    res: r,
                    ns: Some((*ns).to_owned()),
                },
            })
        }
        _ => Err(ApiError::no_route()),
    }
}

async fn handle(AxumState(app): AxumState<Arc<App>>, req: Request) -> Response {
    let query = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", app.token));
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let entry = {
        let mut log = app.logged();
        log.push(LoggedRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: query.clone(),
            authorized,
            accept,
            status: None,
        });
        log.len() - 1
    };
    app.unstalled().await;
    let resp = if app.take_failure() {
        ApiError::internal("injected by the test").response()
    } else if !authorized {
        ApiError::unauthorized().response()
    } else if let Err(e) = app.race(req.method(), req.uri().path()) {
        e.response()
    } else {
        dispatch(&app, req, &query, entry)
            .await
            .unwrap_or_else(|e| e.response())
    };
    if let Some(l) = app.logged().get_mut(entry) {
        l.status = Some(resp.status().as_u16());
    }
    resp
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn filter_of(
    res: usize,
    ns: Option<String>,
    query: &[(String, String)],
) -> Result<Filter, ApiError> {
    let fields = FieldSelector::parse(
        param(query, "fieldSelector").unwrap_or(""),
        &RESOURCES[res].selectable(),
    )?;
    let labels = LabelSelector::parse(param(query, "labelSelector").unwrap_or(""))?;
    Ok(Filter {
        resource: res,
        namespace: ns,
        fields,
        labels,
    })
}

async fn body_value(req: Request) -> Result<(Option<String>, Bytes), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request(format!("request body larger than {MAX_BODY} bytes")))?;
    Ok((ct, bytes))
}

fn decode_object(ct: Option<&str>, bytes: &[u8]) -> Result<Value, ApiError> {
    if ct.is_some_and(|c| c.contains("yaml")) {
        let text =
            std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
        return serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

fn object_response(code: StatusCode, bytes: Vec<u8>) -> Response {
    json_response(code, bytes)
}

async fn dispatch(
    app: &Arc<App>,
    req: Request,
    query: &[(String, String)],
    entry: usize,
) -> Result<Response, ApiError> {
    let route = route(req.uri().path())?;
    let crd = app.policy_report_crd.load(Ordering::Acquire);
    let absent = match &route {
        Route::Collection { res, .. } | Route::Object { res, .. } => is_optional_crd(*res),
        Route::GroupVersion { group, .. } => RESOURCES
            .iter()
            .enumerate()
            .all(|(i, r)| r.group != *group || is_optional_crd(i)),
        _ => false,
    };
    if absent && !crd {
        return Err(ApiError::no_route());
    }
    let dry_run = param(query, "dryRun") == Some("All");
    let output = if req.method() == Method::GET {
        Output::negotiate(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        )?
    } else {
        Output::Object
    };
    match (req.method().clone(), route) {
        (Method::GET, Route::Version) => Ok(json_response(
            StatusCode::OK,
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-pullgate-fake", "platform": "linux/amd64"}).to_string(),
        )),
        (Method::GET, Route::Groups) => Ok(json_response(
            StatusCode::OK,
            api_groups(crd).to_string(),
        )),
        (Method::GET, Route::GroupVersion { group, version }) => Ok(json_response(
            StatusCode::OK,
            api_resources(&group, &version).to_string(),
        )),
        (Method::GET, Route::Collection { res, ns }) => {
            let filter = filter_of(res, ns, query)?;
            if param(query, "watch").is_some_and(parse_bool) {
                return start_watch(app, filter, query, entry, output);
            }
            let limit = match param(query, "limit") {
                None | Some("") => None,
                Some(l) => Some(l.parse::<usize>().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?),
            };
            let q = ListQuery {
                limit,
                continue_token: param(query, "continue").filter(|c| !c.is_empty()).map(str::to_owned),
                resource_version: param(query, "resourceVersion").map(str::to_owned),
                resource_version_match: param(query, "resourceVersionMatch").map(str::to_owned),
            };
            let (body, items) = {
                let mut state = app.state();
                if q.continue_token.is_some() && take(&app.expire_continues) {
                    state.write_and_compact()?;
                }
                state.list(&filter, &q)?
            };
            let per_item = if q.served_by_cache() { app.list_cost.cache } else { app.list_cost.storage };
            tokio::time::sleep(per_item.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX))).await;
            Ok(json_response(StatusCode::OK, output.list(&RESOURCES[res], body)?))
        }
        (Method::GET, Route::Object { res, ns, name }) => {
            let o = app.state().get(res, &ns, &name)?;
            let rt = &RESOURCES[res];
            Ok(object_response(StatusCode::OK, output.object(rt, o.typed(rt))?))
        }
        (Method::POST, Route::Collection { res, ns }) => {
            let ns = match (RESOURCES[res].namespaced, ns) {
                (true, Some(ns)) => ns,
                (false, None) => String::new(),
                _ => return Err(ApiError::method_not_allowed()),
            };
            let (ct, bytes) = body_value(req).await?;
            let v = decode_object(ct.as_deref(), &bytes)?;
            let o = app.state().create(res, &ns, v, dry_run)?;
            Ok(object_response(StatusCode::CREATED, o.typed(&RESOURCES[res])))
        }
        (Method::PUT, Route::Object { res, ns, name }) => {
            let (ct, bytes) = body_value(req).await?;
            let v = decode_object(ct.as_deref(), &bytes)?;
            let o = app.state().update(res, &ns, &name, v, dry_run)?;
            Ok(object_response(StatusCode::OK, o.typed(&RESOURCES[res])))
        }
        (Method::PATCH, Route::Object { res, ns, name }) => {
            let (ct, bytes) = body_value(req).await?;
            let ct = ct.unwrap_or_default();
            let patch_type = PatchType::from_content_type(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            let (o, created) =
                app.state().patch(res, &ns, &name, patch_type, &bytes, param(query, "fieldManager"), dry_run)?;
            let code = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(object_response(code, o.typed(&RESOURCES[res])))
        }
        (Method::DELETE, Route::Object { res, ns, name }) => {
            let (_, bytes) = body_value(req).await?;
            let options: Value = if bytes.is_empty() { json!({}) } else { decode_object(None, &bytes)? };
            let precondition = options.pointer("/preconditions/resourceVersion").and_then(Value::as_str);
            if let Some(uid) = options.pointer("/preconditions/uid").and_then(Value::as_str) {
                let current = app.state().get(res, &ns, &name)?;
                if current.uid != uid {
                    return Err(ApiError::uid_conflict(&RESOURCES[res].qualified(), &name, uid, &current.uid));
                }
            }
            let o = app.state().delete(res, &ns, &name, precondition, dry_run)?;
            let rt = &RESOURCES[res];
            let mut details = json!({"name": o.name, "kind": rt.plural, "uid": o.uid});
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
            Ok(json_response(StatusCode::OK, status.to_string()))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn start_watch(
    app: &Arc<App>,
    filter: Filter,
    query: &[(String, String)],
    entry: usize,
    output: Output,
) -> Result<Response, ApiError> {
    let q = WatchQuery {
        resource_version: param(query, "resourceVersion").map(str::to_owned),
        resource_version_match: param(query, "resourceVersionMatch").map(str::to_owned),
        send_initial_events: param(query, "sendInitialEvents").is_some_and(parse_bool),
        bookmarks: param(query, "allowWatchBookmarks").is_some_and(parse_bool),
    };
    let timeout = match param(query, "timeoutSeconds") {
        None | Some("") => None,
        Some(t) => Some(Duration::from_secs(t.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
    };
    if q.send_initial_events && !app.watch_list {
        // k8s.io/apimachinery's ValidateListOptions with the WatchList feature gate off.
        return Err(ApiError::invalid(
            "ListOptions.meta.k8s.io",
            "",
            "sendInitialEvents",
            "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ));
    }
    // Initial events (streamed or synthetic) come from the watch cache, at its pace.
    let from_state = q.send_initial_events
        || q.resource_version
            .as_deref()
            .is_none_or(|r| r.is_empty() || r == "0");
    let pace = if from_state {
        app.list_cost.cache
    } else {
        Duration::ZERO
    };
    let start = app.state().watch(&filter, &q)?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let spec = WatchSpec {
        filter,
        bookmarks: q.bookmarks,
        timeout,
        entry,
        output,
        pace,
    };
    tokio::spawn(run_watch(app.clone(), start, spec, tx));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default())
}

/// Counts a watch stream as open while alive.
struct OpenWatch(Arc<App>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn send(
    app: &App,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    output: Output,
    line: Bytes,
) -> bool {
    app.unstalled().await;
    tx.send(Ok(output.event(line))).await.is_ok()
}

/// What a watch streams, and how.
struct WatchSpec {
    filter: Filter,
    bookmarks: bool,
    timeout: Option<Duration>,
    /// The watch request's index in the request log.
    entry: usize,
    /// The negotiated form of the events' objects.
    output: Output,
    /// Time per opening line (the cache's cost per object).
    pace: Duration,
}

async fn send_bookmark(
    app: &App,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    spec: (usize, Output),
    rt: &ResourceType,
    rv: u64,
) -> bool {
    let (entry, output) = spec;
    let sent = send(app, tx, output, bookmark_line(rt, rv, false)).await;
    if sent {
        app.bookmarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((entry, rv));
    }
    sent
}

/// Stream one watch: the opening lines, then matching changes and bookmarks until the client
/// goes away, `timeoutSeconds` passes (ending with a bookmark, as the server does), the watcher
/// falls too far behind (the cacher closes it), the test ends it, or the test drops it (the connection is cut
/// mid-stream, without the final chunk).
async fn run_watch(
    app: Arc<App>,
    start: WatchStart,
    spec: WatchSpec,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let WatchSpec {
        filter,
        bookmarks,
        timeout,
        entry,
        output,
        pace,
    } = spec;
    app.open_watches.fetch_add(1, Ordering::AcqRel);
    let _open = OpenWatch(app.clone());
    let mut drops = app.drops.subscribe();
    drops.borrow_and_update();
    let mut ends = app.ends.subscribe();
    ends.borrow_and_update();
    let WatchStart {
        lines,
        close,
        mut changes,
        from,
    } = start;
    let rt = &RESOURCES[filter.resource];
    const PACED: usize = 500;
    let total = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if i % PACED == 0 && !pace.is_zero() {
            let chunk = u32::try_from((total - i).min(PACED)).unwrap_or(u32::MAX);
            tokio::time::sleep(pace.saturating_mul(chunk)).await;
        }
        if !send(&app, &tx, output, line).await {
            return;
        }
    }
    if close {
        return;
    }
    // Bookmarks never run ahead of the changes this stream has been through.
    let mut last_rv = from;
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + app.bookmark_interval,
        app.bookmark_interval,
    );
    loop {
        tokio::select! {
            _ = drops.changed() => {
                let _ = tx.send(Err(std::io::Error::other("watch dropped by the test"))).await;
                return;
            }
            _ = ends.changed() => return,
            () = &mut deadline => {
                if bookmarks {
                    send_bookmark(&app, &tx, (entry, output), rt, last_rv).await;
                }
                return;
            }
            () = tx.closed() => return,
            change = changes.recv() => match change {
                Ok(c) => {
                    last_rv = last_rv.max(c.rv);
                    if let Some(line) = filter.event_for(&c) {
                        if !send(&app, &tx, output, line).await {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick(), if bookmarks => {
                if !send_bookmark(&app, &tx, (entry, output), rt, last_rv).await {
                    return;
                }
            }
        }
    }
}

/// The form a GET answers in, negotiated from `Accept` as the API server does
/// (`negotiation.NegotiateOutputMediaType`, then `handlers.doTransformObject`): the object
/// itself, or its metadata only (`as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object as stored.
    Object,
    /// `PartialObjectMetadata`: kind, apiVersion and the whole `metadata`, nothing else.
    Metadata,
    /// `PartialObjectMetadataList`.
    MetadataList,
}

/// The apiVersion of the metadata-only forms.
const META_V1: &str = "meta.k8s.io/v1";

impl Output {
    /// The first acceptable clause of an `Accept` header (none or `*/*`: JSON). The fake speaks
    /// JSON only and converts to the metadata forms of meta.k8s.io/v1 only (the server also
    /// knows YAML, protobuf, v1beta1 and Table): any other clause is skipped, and a header with
    /// none acceptable is 406 as on the server.
    pub fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Ok(Output::Object);
        };
        for clause in accept.split(',') {
            let mut parts = clause.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            if !matches!(media, "application/json" | "application/*" | "*/*") {
                continue;
            }
            let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
            let get = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let target = match get("as") {
                None => return Ok(Output::Object),
                Some("PartialObjectMetadata") => Output::Metadata,
                Some("PartialObjectMetadataList") => Output::MetadataList,
                Some(_) => continue,
            };
            if get("g") == Some("meta.k8s.io") && get("v") == Some("v1") {
                return Ok(target);
            }
        }
        Err(ApiError::not_acceptable(
            "only the following media types are accepted: application/json, application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        ))
    }

    /// A single object (typed JSON) in this form.
    fn object(self, rt: &ResourceType, typed: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        match self {
            Output::Object => Ok(typed),
            Output::Metadata => Ok(partial(&parse(&typed)).to_string().into_bytes()),
            Output::MetadataList => Err(ApiError::not_acceptable(format!(
                "you requested PartialObjectMetadataList, but the requested object is not a list (*core.{})",
                rt.kind
            ))),
        }
    }

    /// A list body in this form.
    fn list(self, rt: &ResourceType, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        match self {
            Output::Object => Ok(body),
            Output::Metadata => Err(ApiError::not_acceptable(format!(
                "you requested PartialObjectMetadata, but the requested object is a list (*core.{}List)",
                rt.kind
            ))),
            Output::MetadataList => {
                let list = parse(&body);
                let items: Vec<Value> = list["items"]
                    .as_array()
                    .map(|items| items.iter().map(partial).collect())
                    .unwrap_or_default();
                let out = json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": META_V1,
                    "metadata": list["metadata"],
                    "items": items,
                });
                Ok(out.to_string().into_bytes())
            }
        }
    }

    /// A watch event line in this form. Bookmarks are converted like objects; `ERROR` Statuses
    /// are not. A watch asking for the list form gets whole objects: the server's watch encoder
    /// logs the failed conversion and sends the object untransformed.
    fn event(self, line: Bytes) -> Bytes {
        if self != Output::Metadata {
            return line;
        }
        let mut event = parse(&line);
        if event["type"] == "ERROR" {
            return line;
        }
        event["object"] = partial(&event["object"]);
        let mut out = event.to_string().into_bytes();
        out.push(b'\n');
        out.into()
    }
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// `meta.AsPartialObjectMetadata`: the object's whole `metadata`, under the meta.k8s.io kind.
fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": META_V1,
        "metadata": object["metadata"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let secrets = resource_by_path("", "v1", "secrets").unwrap();
        let namespaces = resource_by_path("", "v1", "namespaces").unwrap();
        let leases = resource_by_path("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(
            route("/api/v1/secrets"),
            Ok(Route::Collection {
                res: secrets,
                ns: None
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/a/secrets"),
            Ok(Route::Collection {
                res: secrets,
                ns: Some("a".into())
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/a/secrets/s"),
            Ok(Route::Object {
                res: secrets,
                ns: "a".into(),
                name: "s".into()
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/a"),
            Ok(Route::Object {
                res: namespaces,
                ns: String::new(),
                name: "a".into()
            })
        );
        assert_eq!(
            route("/apis/coordination.k8s.io/v1/namespaces/a/leases/l"),
            Ok(Route::Object {
                res: leases,
                ns: "a".into(),
                name: "l".into()
            })
        );
        assert_eq!(route("/version"), Ok(Route::Version));
        assert_eq!(route("/apis"), Ok(Route::Groups));
        assert_eq!(
            route("/apis/wgpolicyk8s.io/v1alpha2"),
            Ok(Route::GroupVersion {
                group: "wgpolicyk8s.io".into(),
                version: "v1alpha2".into()
            })
        );
        for bad in [
            "/apis/wgpolicyk8s.io/v1beta1",
            "/api/v1/secrets/s",
            "/api/v1/namespaces/a/namespaces",
            "/api/v2/secrets",
            "/api/v1/namespaces/a/secrets/s/status",
            "/healthz",
        ] {
            assert_eq!(route(bad).unwrap_err().code, 404, "{bad}");
        }
    }
}
