//! Handler tests: the router in-process, called with `oneshot`, against a
//! real temporary SQLite ledger. Launching needs the `tend` binary and is
//! covered by the binary's integration tests.

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tend_server::{router, AppState, Config};
use tend_supervisor::Home;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token-for-tests";
const HOST: &str = "127.0.0.1:7757";

fn state(dir: &tempfile::TempDir) -> AppState {
    let home = Home::new(dir.path().join("home"));
    AppState::new(
        Config {
            store: tend_ledger::Store::Sqlite(dir.path().join("home/tend.db")),
            home,
            exe: "/nonexistent/tend".into(),
            token: TOKEN.into(),
            allowed_hosts: Vec::new(),
            limits: Default::default(),
            run: tend_model::run::Policy {
                kill_grace: Duration::from_secs(1),
                max_timeout: Duration::from_secs(3600),
                log_max_bytes: 1 << 20,
                containment: None,
                default_timeout: None,
                store: None,
            },
            reconcile_every: Duration::from_secs(30),
            prune: None,
            long_running_after: Duration::from_secs(3600),
            long_running_alert: 5,
            alerts: Default::default(),
            lease: Default::default(),
            replace: false,
            started_by_tend: false,
        },
        HOST.parse().unwrap(),
    )
    .unwrap()
}

/// Calls the router as a client reaching it by its address would (with
/// `Host`, which every HTTP/1.1 client sends).
async fn call(s: &AppState, mut req: Request<Body>) -> (StatusCode, serde_json::Value) {
    if !req.headers().contains_key("host") {
        req.headers_mut()
            .insert("host", axum::http::HeaderValue::from_static(HOST));
    }
    let resp = router(s.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(
        String::from_utf8_lossy(&bytes).into(),
    ));
    (status, v)
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path)
}

#[tokio::test]
async fn every_endpoint_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir);
    for path in [
        "/api/v1/health",
        "/api/v1/executions",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/events",
        "/nope",
    ] {
        let (st, body) = call(&s, get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        let (st, _) = call(
            &s,
            get(path)
                .header("authorization", "Bearer wrong")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
        let (st, _) = call(
            &s,
            get(path)
                .header("authorization", TOKEN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "a bare token without Bearer is refused: {path}"
        );
    }
    let (st, _) = call(
        &s,
        get("/api/v1/health")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(
        &s,
        get("/api/v1/health")
            .header("x-api-key", TOKEN)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

fn authed(b: axum::http::request::Builder) -> axum::http::request::Builder {
    b.header("authorization", format!("Bearer {TOKEN}"))
}

#[tokio::test]
async fn bad_input_gets_a_json_error_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir);
    let post = |body: &str| {
        authed(Request::post("/api/v1/executions"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let cases = [
        ("{not json", "JSON"),
        (r#"{"command": "ls -l"}"#, "command"),
        (r#"{"command": []}"#, "command"),
        (r#"{"command": ["ls"], "surprise": 1}"#, "surprise"),
        (r#"{"command": ["ls"], "timeout": "soon"}"#, "timeout"),
        (r#"{"command": ["ls"], "timeout": "48h"}"#, "timeout"),
        (r#"{"command": ["ls"], "cwd": "relative/dir"}"#, "cwd"),
        (r#"{"command": ["ls"], "cwd": "/does/not/exist"}"#, "cwd"),
        (r#"{"command": ["ls"], "env": {"A=B": "x"}}"#, "env"),
        (r#"{"command": ["ls"], "max_memory": "lots"}"#, "max_memory"),
        (
            r#"{"command": ["ls"], "on_duplicate": "sometimes"}"#,
            "on_duplicate",
        ),
    ];
    for (body, field) in cases {
        let (st, v) = call(&s, post(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert!(
            v["error"].as_str().unwrap().contains(field),
            "{body} -> {v}"
        );
    }
    let big = format!(r#"{{"command": ["{}"]}}"#, "x".repeat(100_000));
    let (st, v) = call(&s, post(&big)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "an oversized body: {v}");
    let (st, v) = call(&s, post("")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "an empty body: {v}");
    assert!(v["error"].as_str().unwrap().contains("empty"), "{v}");
    for (path, want) in [
        ("/api/v1/executions/zzzzzzzz", StatusCode::NOT_FOUND),
        ("/api/v1/executions/ab", StatusCode::BAD_REQUEST),
        ("/api/v1/executions/..%2F..%2Fetc", StatusCode::BAD_REQUEST),
        ("/api/v1/executions?limit=0", StatusCode::BAD_REQUEST),
        ("/api/v1/executions?status=done", StatusCode::BAD_REQUEST),
        ("/api/v1/executions?bogus=1", StatusCode::BAD_REQUEST),
        ("/api/v1/executions/zzzzzzzz/logs", StatusCode::NOT_FOUND),
        ("/api/v1/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let (st, v) = call(&s, authed(get(path)).body(Body::empty()).unwrap()).await;
        assert_eq!(st, want, "{path} -> {v}");
        assert!(v["error"].is_string(), "{path} -> {v}");
    }
    let kill = |content_type: Option<&str>| {
        let mut b = authed(Request::post("/api/v1/executions/zzzzzzzz/kill"));
        if let Some(t) = content_type {
            b = b.header("content-type", t);
        }
        b.body(Body::from("{\"force\": 1}")).unwrap()
    };
    let (st, v) = call(&s, kill(Some("application/json"))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    for t in [None, Some("text/plain")] {
        let (st, v) = call(&s, kill(t)).await;
        assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{t:?}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("application/json"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir);
    let (st, doc) = call(
        &s,
        authed(get("/api/v1/openapi.json"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/health",
        "/api/v1/executions",
        "/api/v1/executions/{id}",
        "/api/v1/executions/{id}/events",
        "/api/v1/executions/{id}/logs",
        "/api/v1/executions/{id}/kill",
        "/api/v1/executions/{id}/wait",
        "/api/v1/reap",
        "/api/v1/events",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let execution = &doc["components"]["schemas"]["Execution"]["properties"];
    for field in [
        "id",
        "status",
        "reason",
        "exit_code",
        "signal",
        "pid",
        "key",
        "labels",
        "created_at",
        "host",
        "tier",
    ] {
        assert!(execution[field].is_object(), "Execution.{field} missing");
    }
}

#[tokio::test]
async fn health_metrics_and_reap_answer_on_an_empty_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir);
    let (st, h) = call(
        &s,
        authed(get("/api/v1/health")).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["running"], 0);
    let names: Vec<&str> = h["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["home", "ledger", "stale", "long-running"], "{h}");
    assert!(h["uptime_s"].is_u64(), "{h}");
    let (st, m) = call(&s, authed(get("/metrics")).body(Body::empty()).unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("tend_executions{status=\"running\"} 0"), "{m}");
    assert!(
        m.contains("tend_kill_duration_seconds_bucket{le=\"+Inf\"} 0"),
        "{m}"
    );
    let (st, r) = call(
        &s,
        authed(Request::post("/api/v1/reap"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["lost"], serde_json::json!([]));
    assert_eq!(r["stragglers"], serde_json::json!([]));
    assert_eq!(r["dry_run"], false);
}

#[tokio::test]
async fn an_unknown_route_is_its_own_404_not_an_unknown_execution() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir);
    for (method, path) in [
        ("GET", "/x"),
        ("GET", "/api/v1/nothing-here"),
        ("POST", "/api/v1/executions/abcd/explode"),
    ] {
        let req = authed(Request::builder().method(method).uri(path))
            .body(Body::empty())
            .unwrap();
        let (st, v) = call(&s, req).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{method} {path} -> {v}");
        assert_eq!(
            v["error"],
            format!("no such route: {method} {path}; see /api/v1/openapi.json"),
            "{method} {path}"
        );
    }
    let (st, v) = call(
        &s,
        authed(get("/api/v1/executions/zzzzzzzz"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no execution matches"),
        "an unknown id still says so: {v}"
    );
}

#[tokio::test]
async fn foreign_hosts_origins_and_preflights_are_refused_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir);
    let health = || authed(get("/api/v1/health"));
    let cases = [
        (
            health().header("host", "evil.example:7757"),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            health().header("origin", "http://evil.example"),
            StatusCode::FORBIDDEN,
        ),
        (health().header("origin", "null"), StatusCode::FORBIDDEN),
        (
            authed(Request::options("/api/v1/executions")),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            authed(Request::put("/api/v1/executions")),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (req, want) in cases {
        let (st, v) = call(&s, req.body(Body::empty()).unwrap()).await;
        assert_eq!(st, want, "{v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let own = health()
        .header("host", "localhost:7757")
        .header("origin", "http://localhost:7757")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&s, own).await.0, StatusCode::OK);
}
