//! The HTTP API. This module assembles it: the routes, the layers every
//! request passes, and the answers for unknown routes and methods. Each
//! resource has its own module, with its request and response types next to
//! its handlers; [`openapi`] describes them all. Nothing below this module
//! imports it, so the router is the one place that knows every handler and
//! the document.

mod events;
mod executions;
mod extract;
mod health;
mod jobs;
mod kill;
mod logs;
mod openapi;
mod reap;
mod stats;
mod wait;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::ALLOW;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::guard::MAX_BODY;
use crate::{auth, guard, metrics, ApiError, AppState};

/// The whole API. Every request passes, in order, the request guard
/// (`Host`, `Origin`, no preflight, JSON bodies, a declared size within the
/// limit: see `guard.rs`), the token check, and a bounded read of its body;
/// only then a handler.
pub fn router(state: AppState) -> Router {
    // axum adds `Allow` outside every layer of a route: one router around
    // the whole API reads it (see `name_allowed`).
    // The dashboard's page, script and style hold no data: they are served
    // without the token (the page asks for it and sends it to the API).
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/app.js", get(crate::dashboard::script))
        .route("/app.css", get(crate::dashboard::style))
        .fallback_service(routes(state))
        .layer(axum::middleware::from_fn(name_allowed))
}

fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health::health))
        .route(
            "/api/v1/executions",
            get(executions::list).post(executions::launch),
        )
        .route("/api/v1/executions/kill", post(kill::bulk))
        .route("/api/v1/executions/{id}", get(executions::show))
        .route("/api/v1/executions/{id}/events", get(executions::events))
        .route("/api/v1/executions/{id}/logs", get(logs::logs))
        .route("/api/v1/executions/{id}/kill", post(kill::kill))
        .route("/api/v1/executions/{id}/wait", get(wait::wait))
        .route("/api/v1/reap", post(reap::reap))
        .route("/api/v1/stats", get(stats::stats))
        .route("/api/v1/jobs", get(jobs::list).post(jobs::add))
        .route("/api/v1/jobs/{name}", get(jobs::show).delete(jobs::remove))
        .route("/api/v1/jobs/{name}/run", post(jobs::run))
        .route("/api/v1/jobs/{name}/pause", post(jobs::pause))
        .route("/api/v1/jobs/{name}/resume", post(jobs::resume))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// A route nobody serves: a 404 of its own, not an unknown execution's.
async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such route: {method} {}; see /api/v1/openapi.json",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not served at this path"),
    )
}

/// A 405 says in its body what the path does serve: axum sets the `Allow`
/// header after the fallback ran, so this layer, around the whole routed
/// API, reads it back into the sentence.
async fn name_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let res = next.run(req).await;
    if res.status() != StatusCode::METHOD_NOT_ALLOWED {
        return res;
    }
    let Some(allow) = res.headers().get(ALLOW).cloned() else {
        return res;
    };
    let served = allow.to_str().unwrap_or_default().replace(',', ", ");
    let mut out = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not served at this path; it serves {served}"),
    )
    .into_response();
    out.headers_mut().insert(ALLOW, allow);
    out
}
