//! What the handlers share: extractors whose rejections are JSON errors
//! naming the problem, the `{id}` path parameter, durations in requests.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tend_ledger::Ledger;
use tend_model::Execution;

use crate::ApiError;

/// JSON body whose rejection is a JSON error naming the problem.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The guard already refused a body not declared JSON (415) or too
        // large (413), and read it within the body timeout.
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        if bytes.trim_ascii().is_empty() {
            return Err(ApiError::bad_request(
                "the body is empty: send a JSON object with Content-Type: application/json",
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(body_error(&r.body_text())),
        }
    }
}

/// A body serde refused, as one sentence naming the field when there is
/// one: `timeout: 'banana' is not a duration: …`, `{"field": "timeout"}`.
fn body_error(text: &str) -> ApiError {
    let t = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    let t = match t.rfind(" at line ") {
        Some(i) if t[i..].contains(" column ") => &t[..i],
        _ => t,
    };
    let named = |f: &str| {
        !f.is_empty()
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if let Some(rest) = t.strip_prefix("unknown field `") {
        if let Some((f, _)) = rest.split_once('`') {
            return field_error(f, t);
        }
    }
    match t.split_once(": ") {
        Some((f, why)) if named(f) => field_error(f, why),
        _ => ApiError::bad_request(t.to_string()),
    }
}

fn field_error(field: &str, why: &str) -> ApiError {
    // Named only when it is one of the request types' own fields (the
    // error body's `field` is one of those, never text from the client).
    match KNOWN_FIELDS.iter().find(|k| **k == field) {
        Some(k) => ApiError::field(k, why.trim_start_matches(&format!("{field}: "))),
        None => ApiError::bad_request(format!("{field}: {why}")),
    }
}

/// Every field a request body may have, so that a refusal can name it.
const KNOWN_FIELDS: &[&str] = &[
    "command",
    "name",
    "cwd",
    "env",
    "labels",
    "key",
    "on_duplicate",
    "reuse_finished",
    "timeout",
    "kill_grace",
    "heartbeat_timeout",
    "idle_timeout",
    "max_memory",
    "retries",
    "retry_backoff",
    "retry_max_backoff",
    "workspace",
    "force",
    "grace",
    "reason",
    "label",
    "older_than",
    "all",
    "dry_run",
    "run",
    "schedule",
    "timezone",
    "concurrency",
    "catch_up",
];

/// Query string whose rejection is a JSON error naming the problem.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| ApiError::bad_request(r.body_text()))
    }
}

/// A duration field of a request (`90s`), its error naming the field.
pub(super) fn duration(field: &str, v: &Option<String>) -> Result<Option<Duration>, ApiError> {
    v.as_deref()
        .map(|s| {
            tend_model::parse_duration(s)
                .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
        })
        .transpose()
}

/// An execution id, or a unique prefix of at least 4 characters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdPath {
    /// Execution id or unique prefix.
    #[param(pattern = r"^[0-9a-z]{4,8}$", min_length = 4, max_length = 8)]
    id: String,
}

/// The execution `id` names (an id or a unique prefix).
pub(super) fn resolve(l: &(impl Ledger + ?Sized), id: &str) -> Result<Execution, ApiError> {
    Ok(l.resolve(id)?)
}
