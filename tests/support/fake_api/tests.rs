//! The fake's own protocol tests, over raw HTTP and through kube's client.

use super::{FakeApi, Options};
use crate::support::{fixtures, workloads};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use std::time::Duration;

struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Raw {
    fn new(fake: &FakeApi) -> Raw {
        Raw {
            http: reqwest::Client::new(),
            base: fake.url(),
            token: Options::default().token,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let resp = req.send().await.expect("request to the fake");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// A GET with an `Accept` header: the status and the body as text.
    async fn get_accepting(&self, path: &str, accept: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("accept", accept)
            .send()
            .await
            .expect("request to the fake");
        let code = resp.status().as_u16();
        (code, resp.text().await.expect("body"))
    }

    /// Open a watch and read lines until `done` says enough (or the stream ends).
    async fn watch_until(&self, path: &str, done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        self.watch_accepting(path, "application/json", done).await
    }

    /// [`Raw::watch_until`] with an `Accept` header.
    async fn watch_accepting(
        &self,
        path: &str,
        accept: &str,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("accept", accept)
            .send()
            .await
            .expect("watch request");
        assert_eq!(resp.status(), 200, "watch {path}");
        let mut events = Vec::new();
        let mut buf = Vec::new();
        let read = async {
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.extend_from_slice(&chunk);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    events
                        .push(serde_json::from_slice(&line).expect("a JSON watch event per line"));
                }
                if done(&events) {
                    break;
                }
            }
        };
        tokio::time::timeout(crate::support::DEADLINE, read)
            .await
            .expect("watch events in time");
        events
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn lists_paginate_on_a_consistent_snapshot() {
    let fake = FakeApi::start().await;
    for i in 0..5 {
        fake.apply(fixtures::service_account("a", &format!("sa-{i}"), &[]));
    }
    let raw = Raw::new(&fake);
    let (code, page1) = raw
        .get("/api/v1/namespaces/a/serviceaccounts?limit=2")
        .await;
    assert_eq!(code, 200);
    assert_eq!(page1["kind"], "ServiceAccountList");
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert!(
        page1["items"][0].get("kind").is_none(),
        "list items carry no TypeMeta"
    );
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    let rv = page1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = page1["metadata"]["continue"].as_str().unwrap().to_owned();

    // Writes after the first page do not show in later pages.
    fake.delete("serviceaccounts", "a", "sa-4");
    fake.apply(fixtures::service_account("a", "sa-9", &[]));
    let (_, page2) = raw
        .get(&format!(
            "/api/v1/namespaces/a/serviceaccounts?limit=2&continue={token}"
        ))
        .await;
    let (_, page3) = raw
        .get(&format!(
            "/api/v1/namespaces/a/serviceaccounts?limit=2&continue={}",
            page2["metadata"]["continue"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page2["metadata"]["resourceVersion"], rv.as_str());
    let names: Vec<&str> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(names, ["sa-0", "sa-1", "sa-2", "sa-3", "sa-4"]);
    assert!(page3["metadata"].get("continue").is_none());

    let (code, _) = raw
        .get(&format!(
            "/api/v1/namespaces/a/serviceaccounts?limit=2&continue={token}&resourceVersion=5"
        ))
        .await;
    assert_eq!(code, 400);
    fake.compact();
    let (code, status) = raw
        .get(&format!(
            "/api/v1/namespaces/a/serviceaccounts?limit=2&continue={token}"
        ))
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (410, Some("Expired")),
        "{status}"
    );
    // As etcd3's handleCompactedErrorForPaging: the Status offers an inconsistent continuation
    // from the same key at the latest state (sa-4 deleted and sa-9 created since show up).
    assert!(
        status["message"].as_str().is_some_and(|m| m
            .starts_with("The provided continue parameter is too old")
            && m.contains("inconsistent list")),
        "{status}"
    );
    let next = status["metadata"]["continue"]
        .as_str()
        .expect("a continue token in the 410 Status");
    let (code, rest) = raw
        .get(&format!(
            "/api/v1/namespaces/a/serviceaccounts?limit=10&continue={next}"
        ))
        .await;
    assert_eq!(code, 200, "{rest}");
    let rest: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["sa-2", "sa-3", "sa-9"]);

    // Exact reads need history; not-older-than reads need the server to have got there.
    let (code, _) = raw
        .get(&format!(
            "/api/v1/serviceaccounts?resourceVersion={rv}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(code, 410);
    let ahead = fake.resource_version() + 10;
    let (code, status) = raw
        .get(&format!(
            "/api/v1/serviceaccounts?resourceVersion={ahead}&resourceVersionMatch=NotOlderThan"
        ))
        .await;
    assert_eq!((code, status["reason"].as_str()), (504, Some("Timeout")));
    let (code, _) = raw
        .get("/api/v1/serviceaccounts?resourceVersionMatch=NotOlderThan")
        .await;
    assert_eq!(code, 422);
}

#[tokio::test]
async fn workloads_are_served_and_continues_expire_on_request() {
    let fake = FakeApi::start().await;
    for i in 0..3 {
        fake.apply(workloads::workload(
            "Deployment",
            "a",
            &format!("d-{i}"),
            workloads::pod_spec("nginx", &[], "default"),
            None,
        ));
    }
    fake.apply(workloads::workload(
        "CronJob",
        "a",
        "c",
        workloads::pod_spec("nginx", &[], "default"),
        None,
    ));
    let raw = Raw::new(&fake);
    let (code, page1) = raw
        .get("/apis/apps/v1/namespaces/a/deployments?limit=2")
        .await;
    assert_eq!(
        (code, page1["kind"].as_str()),
        (200, Some("DeploymentList"))
    );
    let token = page1["metadata"]["continue"].as_str().unwrap().to_owned();
    let (code, cron) = raw.get("/apis/batch/v1/cronjobs").await;
    assert_eq!(code, 200);
    assert_eq!(
        cron["items"][0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            ["image"],
        "nginx"
    );
    fake.expire_continues(1);
    let path = format!("/apis/apps/v1/namespaces/a/deployments?limit=2&continue={token}");
    let (code, status) = raw.get(&path).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (410, Some("Expired")),
        "{status}"
    );
    // Armed once: a fresh list, and its own continuation, are served.
    let (_, again) = raw
        .get("/apis/apps/v1/namespaces/a/deployments?limit=2")
        .await;
    let token = again["metadata"]["continue"].as_str().unwrap().to_owned();
    let (code, page2) = raw
        .get(&format!(
            "/apis/apps/v1/namespaces/a/deployments?limit=2&continue={token}"
        ))
        .await;
    assert_eq!(code, 200);
    assert_eq!(page2["items"][0]["metadata"]["name"], "d-2");
}

#[tokio::test]
async fn selectors_filter_lists() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::pull_secret("a", "json", &["r.io"], "pw"));
    fake.apply(fixtures::dockercfg_secret("b", "cfg", &["r.io"], "pw"));
    fake.apply(fixtures::opaque_secret("a", "opaque", "k", "v"));
    let raw = Raw::new(&fake);
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, v) = raw
        .get("/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Fdockerconfigjson")
        .await;
    assert_eq!(names(&v), ["json"]);
    let (_, v) = raw
        .get("/api/v1/secrets?fieldSelector=type!%3DOpaque,metadata.namespace%3Db")
        .await;
    assert_eq!(names(&v), ["cfg"]);
    let (_, v) = raw
        .get("/api/v1/secrets?labelSelector=app.kubernetes.io%2Fpart-of%3Dci")
        .await;
    assert_eq!(names(&v), ["json"]);
    let (_, v) = raw
        .get("/api/v1/namespaces?fieldSelector=metadata.name%3Db")
        .await;
    assert_eq!(names(&v), ["b"]);
    assert_eq!(
        v["items"][0]["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "b"
    );
    let (code, v) = raw.get("/api/v1/secrets?fieldSelector=data.x%3D1").await;
    assert_eq!(
        (code, v["message"].as_str()),
        (400, Some("field label not supported: data.x"))
    );
}

#[tokio::test]
async fn watches_stream_changes_bookmarks_and_expiry() {
    let fake = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_millis(50),
        ..Options::default()
    })
    .await;
    fake.apply(fixtures::pull_secret("a", "old", &["r.io"], "pw"));
    let from = fake.resource_version();
    let raw = Raw::new(&fake);

    // Unset resourceVersion: synthetic ADDED for what exists, then live changes.
    let events = raw
        .watch_until("/api/v1/secrets?watch=true&timeoutSeconds=1", |e| {
            !e.is_empty()
        })
        .await;
    assert_eq!(types(&events), ["ADDED"]);
    assert_eq!(events[0]["object"]["kind"], "Secret");

    let path = format!(
        "/api/v1/namespaces/a/secrets?watch=1&resourceVersion={from}&allowWatchBookmarks=true"
    );
    let watching = raw.watch_until(&path, |e| {
        types(e).contains(&"DELETED") && types(e).last() == Some(&"BOOKMARK")
    });
    let writer = async {
        crate::support::eventually("the watch to open", || fake.open_watches() > 0).await;
        fake.apply(fixtures::pull_secret("a", "new", &["r.io"], "pw"));
        fake.apply(fixtures::pull_secret("a", "new", &["q.io"], "pw"));
        fake.apply(fixtures::pull_secret("other", "elsewhere", &["r.io"], "pw"));
        fake.delete("secrets", "a", "new");
    };
    let (events, ()) = tokio::join!(watching, writer);
    let changes: Vec<&str> = types(&events)
        .into_iter()
        .filter(|t| *t != "BOOKMARK")
        .collect();
    assert_eq!(changes, ["ADDED", "MODIFIED", "DELETED"]);
    let deleted = events.iter().find(|e| e["type"] == "DELETED").unwrap();
    assert_eq!(
        deleted["object"]["metadata"]["resourceVersion"],
        fake.resource_version().to_string()
    );
    let bookmark = events.last().unwrap();
    assert_eq!(bookmark["object"]["kind"], "Secret");
    assert!(
        bookmark["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= from
    );

    // A resourceVersion older than the history: 200, then one ERROR event with 410 Expired.
    fake.compact();
    let events = raw
        .watch_until(
            &format!("/api/v1/secrets?watch=true&resourceVersion={from}"),
            |_| false,
        )
        .await;
    assert_eq!(types(&events), ["ERROR"]);
    assert_eq!(events[0]["object"]["kind"], "Status");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");

    // timeoutSeconds ends the stream, with a last bookmark.
    let now = fake.resource_version();
    let events =
        raw.watch_until(&format!("/api/v1/secrets?watch=true&resourceVersion={now}&timeoutSeconds=1&allowWatchBookmarks=true"), |_| false).await;
    assert_eq!(types(&events).last(), Some(&"BOOKMARK"));

    // Streaming lists: initial state, then the initial-events-end bookmark.
    let events = raw
        .watch_until(
            "/api/v1/secrets?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            |e| types(e).contains(&"BOOKMARK"),
        )
        .await;
    assert_eq!(types(&events), ["ADDED", "ADDED", "BOOKMARK"]);
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn writes_follow_the_api_servers_rules() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("a", &[]));
    let raw = Raw::new(&fake);
    let post = |path: &'static str, body: Value| {
        raw.send(
            reqwest::Method::POST,
            path,
            Some(("application/json", body.to_string())),
        )
    };
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}});
    let (code, created) = post("/api/v1/namespaces/a/secrets", secret.clone()).await;
    assert_eq!(code, 201);
    assert_eq!(created["data"]["k"], fixtures::b64("v"));
    assert!(created.get("stringData").is_none());
    assert_eq!(created["type"], "Opaque");
    assert_eq!(fake.get("secrets", "a", "s").as_ref(), Some(&created));
    let (code, v) = post("/api/v1/namespaces/a/secrets", secret).await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, v) = post(
        "/api/v1/namespaces/missing/secrets",
        json!({"metadata": {"name": "s"}}),
    )
    .await;
    assert_eq!(
        (code, v["message"].as_str()),
        (404, Some("namespaces \"missing\" not found"))
    );
    let (code, v) = raw.get("/api/v1/namespaces/a/secrets/nope").await;
    assert_eq!(
        (code, v["kind"].as_str(), v["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );

    // Optimistic concurrency: a stale resourceVersion conflicts, in PUT and in patches.
    let stale = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let merge = |body: Value| {
        raw.send(
            reqwest::Method::PATCH,
            "/api/v1/namespaces/a/secrets/s",
            Some(("application/merge-patch+json", body.to_string())),
        )
    };
    let (code, patched) = merge(json!({"metadata": {"labels": {"x": "1"}}})).await;
    assert_eq!(
        (code, patched["metadata"]["labels"]["x"].as_str()),
        (200, Some("1"))
    );
    let (code, v) = merge(json!({"metadata": {"resourceVersion": stale}})).await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("Conflict")));
    let mut put = patched.clone();
    put["metadata"]["resourceVersion"] = json!(stale);
    let (code, _) = raw
        .send(
            reqwest::Method::PUT,
            "/api/v1/namespaces/a/secrets/s",
            Some(("application/json", put.to_string())),
        )
        .await;
    assert_eq!(code, 409);
    let (code, v) = merge(json!({"type": "kubernetes.io/dockerconfigjson"})).await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (422, Some("Invalid")),
        "secret type is immutable"
    );

    let json_patch = |ops: Value| {
        raw.send(
            reqwest::Method::PATCH,
            "/api/v1/namespaces/a/secrets/s",
            Some(("application/json-patch+json", ops.to_string())),
        )
    };
    let (code, _) =
        json_patch(json!([{"op": "test", "path": "/metadata/labels/x", "value": "2"}])).await;
    assert_eq!(code, 422);
    let (code, _) =
        json_patch(json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": stale}]))
            .await;
    assert_eq!(code, 409);
    let (code, _) =
        json_patch(json!([{"op": "add", "path": "/metadata/labels/y", "value": "2"}])).await;
    assert_eq!(code, 200);
    let (code, _) = raw
        .send(
            reqwest::Method::PATCH,
            "/api/v1/namespaces/a/secrets/s",
            Some(("application/strategic-merge-patch+json", "{}".into())),
        )
        .await;
    assert_eq!(code, 415);

    let (code, v) = raw
        .send(
            reqwest::Method::DELETE,
            "/api/v1/namespaces/a/secrets/s",
            None,
        )
        .await;
    assert_eq!(
        (code, v["status"].as_str(), v["details"]["name"].as_str()),
        (200, Some("Success"), Some("s"))
    );

    // Leases and Events through kube's typed client; server-side apply creates, then merges.
    let client = fake.client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "a");
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me"}}),
    )
    .unwrap();
    let err = leases
        .patch("leader", &PatchParams::default(), &Patch::Apply(&lease))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );
    let applied = leases
        .patch(
            "leader",
            &PatchParams::apply("pullgate"),
            &Patch::Apply(&lease),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.unwrap().holder_identity.as_deref(), Some("me"));
    let patch = json!({"spec": {"leaseDurationSeconds": 15}});
    let merged = leases
        .patch(
            "leader",
            &PatchParams::apply("pullgate"),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
    let spec = merged.spec.unwrap();
    assert_eq!(
        (spec.holder_identity.as_deref(), spec.lease_duration_seconds),
        (Some("me"), Some(15))
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "a");
    let event = serde_json::from_value(json!({"metadata": {"generateName": "pullgate-"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "Injected", "action": "Inject", "reportingController": "pullgate", "reportingInstance": "pullgate-0", "type": "Normal"}))
    .unwrap();
    let created = events.create(&PostParams::default(), &event).await.unwrap();
    assert!(created.metadata.name.unwrap().starts_with("pullgate-"));

    // Deleting a namespace takes its objects with it.
    fake.apply(fixtures::pull_secret("a", "p", &["r.io"], "pw"));
    assert!(fake.delete("namespaces", "", "a"));
    assert_eq!(
        fake.count("secrets") + fake.count("leases.coordination.k8s.io"),
        0
    );
}

#[tokio::test]
async fn kube_client_pages_and_faults() {
    let fake = FakeApi::start().await;
    for i in 0..7 {
        fake.apply(fixtures::pull_secret(
            &format!("ns-{i}"),
            "regcred",
            &["r.io"],
            "pw",
        ));
    }
    let secrets: Api<Secret> = Api::all(fake.client().await);
    let page = secrets
        .list(
            &ListParams::default()
                .limit(3)
                .fields("type=kubernetes.io/dockerconfigjson"),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    let rest = secrets
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 4);

    fake.fail_next(1);
    let err = secrets.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500 && s.reason == "InternalError"),
        "{err}"
    );
    assert!(secrets.list(&ListParams::default()).await.is_ok());

    // A stalled server holds the request until released.
    fake.set_stalled(true);
    let held = tokio::spawn({
        let secrets = secrets.clone();
        async move {
            secrets
                .list(&ListParams::default())
                .await
                .map(|l| l.items.len())
        }
    });
    let requests = fake.request_log().len();
    crate::support::eventually("the stalled request to arrive", || {
        fake.request_log().len() > requests
    })
    .await;
    assert!(!held.is_finished());
    fake.set_stalled(false);
    assert_eq!(held.await.unwrap().unwrap(), 7);

    // No token, no access.
    let anonymous = reqwest::get(format!("{}/api/v1/secrets", fake.url()))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(fake
        .request_log()
        .iter()
        .any(|r| !r.authorized && r.status == Some(401)));
}

#[tokio::test]
async fn a_raced_write_meets_the_real_precondition() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::service_account("a", "sa", &[]));
    let raw = Raw::new(&fake);
    let read = fake.get("serviceaccounts", "a", "sa").unwrap();
    let read_rv = read["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another client labels the ServiceAccount just before each of our next two writes.
    let edits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = edits.clone();
    fake.race_writes("serviceaccounts", 2, move |sa| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        sa["metadata"]["labels"]["other-client"] = json!(n.to_string());
    });
    let merge = |body: Value| {
        raw.send(
            reqwest::Method::PATCH,
            "/api/v1/namespaces/a/serviceaccounts/sa",
            Some(("application/merge-patch+json", body.to_string())),
        )
    };
    let add = |rv: &str| json!({"metadata": {"resourceVersion": rv}, "imagePullSecrets": [{"name": "regcred"}]});
    // With the resourceVersion it read: the API server's lost-race answer, word for word.
    let (code, status) = merge(add(&read_rv)).await;
    assert_eq!(code, 409);
    assert_eq!(
        status,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Operation cannot be fulfilled on serviceaccounts \"sa\": the object has been modified; please apply your changes to the latest version and try again",
            "reason": "Conflict", "details": {"name": "sa", "kind": "serviceaccounts"}, "code": 409
        })
    );
    let now = fake.get("serviceaccounts", "a", "sa").unwrap();
    assert_eq!(now["metadata"]["labels"]["other-client"], "1");
    assert_eq!(
        now["imagePullSecrets"], read["imagePullSecrets"],
        "the losing write left no trace"
    );
    // Without a precondition the write goes through, on top of the other client's second write.
    let (code, patched) = merge(json!({"imagePullSecrets": [{"name": "regcred"}]})).await;
    assert_eq!(code, 200);
    assert_eq!(patched["metadata"]["labels"]["other-client"], "2");
    assert_eq!(patched["imagePullSecrets"], json!([{"name": "regcred"}]));
    // Disarmed after two: a write with the fresh resourceVersion is not raced.
    let rv = patched["metadata"]["resourceVersion"].as_str().unwrap();
    let (code, _) = merge(add(rv)).await;
    assert_eq!(code, 200);
    assert_eq!(edits.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Reads, creates and other resources are never raced.
    fake.race_writes("serviceaccounts", 1, |sa| {
        sa["metadata"]["labels"]["late"] = json!("1")
    });
    let (code, _) = raw.get("/api/v1/namespaces/a/serviceaccounts/sa").await;
    assert_eq!(code, 200);
    assert!(
        fake.get("serviceaccounts", "a", "sa").unwrap()["metadata"]["labels"]
            .get("late")
            .is_none()
    );
}

const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const META_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

#[tokio::test]
async fn accept_negotiates_metadata_only_as_the_server_does() {
    let fake = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_millis(50),
        ..Options::default()
    })
    .await;
    let planted = "Planted-Metadata-Pw-7rT";
    fake.apply(fixtures::opaque_secret("a", "app", "password", planted));
    fake.apply(fixtures::pull_secret("a", "regcred", &["r.io"], planted));
    let encoded = fixtures::b64(planted);
    let raw = Raw::new(&fake);
    let no_data = |text: &str| {
        !text.contains(planted) && !text.contains(&encoded) && !text.contains("\"data\"")
    };

    let (code, text) = raw
        .get_accepting("/api/v1/secrets?limit=1", META_LIST)
        .await;
    assert_eq!(code, 200, "{text}");
    assert!(no_data(&text), "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert!(
        list["metadata"]["continue"].is_string() && list["metadata"]["resourceVersion"].is_string()
    );
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(list["items"][0]["metadata"]["name"], "app");
    assert!(list["items"][0].get("type").is_none());

    let (code, text) = raw
        .get_accepting("/api/v1/namespaces/a/secrets/regcred", META)
        .await;
    assert_eq!(code, 200);
    assert!(no_data(&text), "{text}");
    let one: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (one["kind"].as_str(), one["metadata"]["name"].as_str()),
        (Some("PartialObjectMetadata"), Some("regcred"))
    );

    // The single form for a list and the list form for an object are 406, as on the server.
    for (path, accept) in [
        ("/api/v1/secrets", META),
        ("/api/v1/namespaces/a/secrets/app", META_LIST),
    ] {
        let (code, text) = raw.get_accepting(path, accept).await;
        assert_eq!(code, 406, "{path}: {text}");
        assert!(text.contains("NotAcceptable"), "{text}");
    }
    // The first clause that can be served wins; a header with none is 406.
    let (code, text) = raw
        .get_accepting(
            "/api/v1/secrets",
            &format!("application/json;as=Nothing;g=meta.k8s.io;v=v1, {META_LIST}"),
        )
        .await;
    assert_eq!(code, 200);
    assert!(text.contains("PartialObjectMetadataList"));
    let (code, _) = raw
        .get_accepting(
            "/api/v1/secrets",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v9",
        )
        .await;
    assert_eq!(code, 406);
    let (code, text) = raw.get_accepting("/api/v1/secrets", "*/*").await;
    assert_eq!(code, 200);
    assert!(text.contains(&encoded), "whole objects by default");

    // Watch events and bookmarks carry metadata only; an ERROR keeps its Status.
    let from = fake.resource_version();
    let path = format!(
        "/api/v1/namespaces/a/secrets?watch=1&resourceVersion={from}&allowWatchBookmarks=true"
    );
    let watching = raw.watch_accepting(&path, META, |e| {
        types(e).contains(&"DELETED") && types(e).last() == Some(&"BOOKMARK")
    });
    let writer = async {
        crate::support::eventually("the watch to open", || fake.open_watches() > 0).await;
        fake.apply(fixtures::opaque_secret("a", "later", "password", planted));
        fake.delete("secrets", "a", "later");
    };
    let (events, ()) = tokio::join!(watching, writer);
    let text = serde_json::to_string(&events).unwrap();
    assert!(no_data(&text), "{text}");
    assert!(
        events
            .iter()
            .all(|e| e["object"]["kind"] == "PartialObjectMetadata"),
        "{text}"
    );
    assert_eq!(events[0]["object"]["metadata"]["name"], "later");
    fake.compact();
    let events = raw
        .watch_accepting(
            &format!("/api/v1/secrets?watch=true&resourceVersion={from}"),
            META,
            |_| false,
        )
        .await;
    assert_eq!(types(&events), ["ERROR"]);
    assert_eq!(events[0]["object"]["kind"], "Status");
    assert_eq!(events[0]["object"]["code"], 410);

    // kube's PartialObjectMeta asks for exactly this.
    let metas: Api<kube::core::PartialObjectMeta<Secret>> = Api::all(fake.client().await);
    let names: Vec<String> = metas
        .list(&ListParams::default().fields("type=Opaque"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .collect();
    assert_eq!(names, ["app"]);
    let last = fake.request_log().pop().unwrap();
    assert_eq!(last.accept.as_deref(), Some(META_LIST));
}

#[tokio::test]
async fn goes_away_and_comes_back_on_the_same_port() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::pull_secret("a", "before", &["r.io"], "pw"));
    let raw = Raw::new(&fake);
    let watching = raw.watch_until("/api/v1/secrets?watch=true", |_| false);
    let outage = async {
        crate::support::eventually("the watch to open", || fake.open_watches() > 0).await;
        fake.go_away().await;
    };
    let (events, ()) = tokio::join!(watching, outage);
    assert_eq!(types(&events), ["ADDED"], "the open watch is cut");
    assert!(!fake.is_up());
    let refused = reqwest::Client::new()
        .get(format!("{}/api/v1/secrets", fake.url()))
        .send()
        .await
        .expect_err("connections are refused while away");
    assert!(refused.is_connect(), "{refused}");

    // Changed while away, served once back, at the same address.
    fake.apply(fixtures::pull_secret("a", "during", &["r.io"], "pw"));
    assert!(fake.delete("secrets", "a", "before"));
    fake.come_back();
    assert!(fake.is_up());
    let (code, list) = raw.get("/api/v1/secrets").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["during"]);
}
