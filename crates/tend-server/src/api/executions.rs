//! Executions: list, show, events, and launch (`POST /api/v1/executions`).
//!
//! A launch's body is [`RunOptions`], the run options `tend run` and
//! stored jobs share; [`spec`] resolves it into the `RunSpec` that the
//! background supervisor runs.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tend_ledger::Filter;
use tend_model::run::RunOptions;
use tend_model::{Event, Execution, Status};
use tend_supervisor::detach::Answer;
use tend_supervisor::RunSpec;
use utoipa::ToSchema;

use super::extract::{duration, resolve, ApiJson, ApiQuery, IdPath};
use crate::{ApiError, AppState};

/// Filters and paging for the list.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated statuses.
    #[param(
        pattern = r"^(queued|running|succeeded|failed|timed_out|killed|lost|cancelled)(,(queued|running|succeeded|failed|timed_out|killed|lost|cancelled))*$"
    )]
    pub status: Option<String>,
    /// Glob on the name.
    pub name: Option<String>,
    /// A label as `key=value`.
    #[param(pattern = r"^[^=]+=.*$")]
    pub label: Option<String>,
    /// Only created within this long (`1h`, `7d`).
    #[param(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub since: Option<String>,
    /// Only the runs of this stored job.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub job: Option<String>,
    /// Page size, 1–1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Rows to skip.
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/executions", params(ListQuery),
    responses((status = 200, body = Vec<Execution>), (status = 400, description = "bad filter")), security(("token" = [])))]
pub(super) async fn list(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Execution>>, ApiError> {
    let statuses = match &q.status {
        Some(v) => v
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<Status>()
                    .map_err(|e| ApiError::bad_request(format!("status: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let labels = match &q.label {
        Some(l) => match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => vec![(k.to_string(), v.to_string())],
            _ => {
                return Err(ApiError::bad_request(format!(
                    "label: '{l}' is not key=value"
                )))
            }
        },
        None => Vec::new(),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: must be between 1 and 1000"));
    }
    if q.offset.is_some_and(|o| o > i32::MAX as u32) {
        return Err(ApiError::bad_request("offset: must be at most 2147483647"));
    }
    let since = duration("since", &q.since)?;
    if let Some(job) = &q.job {
        tend_model::job::check_name(job).map_err(|e| ApiError::field("job", e.message))?;
    }
    let filter = Filter {
        statuses,
        name: q.name,
        labels,
        since_ms: since.map(tend_ledger::ms_ago),
        limit: Some(limit),
        offset: q.offset,
        job: q.job,
    };
    s.blocking(move |_, l| Ok(Json(l.list(&filter)?))).await
}

#[utoipa::path(get, path = "/api/v1/executions/{id}", params(IdPath),
    responses((status = 200, body = Execution), (status = 404, description = "unknown id")), security(("token" = [])))]
pub(super) async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Execution>, ApiError> {
    s.blocking(move |_, l| Ok(Json(resolve(l, &id)?))).await
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/events", params(IdPath),
    responses((status = 200, body = Vec<Event>), (status = 404, description = "unknown id")), security(("token" = [])))]
pub(super) async fn events(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Event>>, ApiError> {
    s.blocking(move |_, l| {
        let e = resolve(l, &id)?;
        Ok(Json(l.events(&e.id)?))
    })
    .await
}

/// Every rule a launch must pass, and the [`RunSpec`] it becomes: the
/// one validator of [`RunOptions`], which `tend run` uses too, against the
/// daemon's policy; and, since the daemon runs it, a working directory that
/// exists here. Each refusal is a 400 naming the field.
fn spec(s: &AppState, r: RunOptions) -> Result<RunSpec, ApiError> {
    let mut spec = r.resolve(&s.config().run).map_err(ApiError::option)?;
    spec.requested_by = Some(tend_model::Actor::Api.to_string());
    tend_supervisor::workspace::check(&spec).map_err(|why| ApiError::field("workspace", why))?;
    if !spec.cwd.is_dir() {
        return Err(ApiError::field(
            "cwd",
            format!(
                "the working directory '{}' does not exist",
                tend_model::text::escape(&spec.cwd.to_string_lossy())
            ),
        ));
    }
    Ok(spec)
}

#[utoipa::path(post, path = "/api/v1/executions", request_body = RunOptions,
    responses((status = 201, description = "launched", body = Execution),
              (status = 200, description = "the key named an existing execution (wait, skip, or a reused result)", body = Execution),
              (status = 409, description = "the key is held and on_duplicate is fail"),
              (status = 400, description = "bad request")), security(("token" = [])))]
pub(super) async fn launch(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<RunOptions>,
) -> Result<Response, ApiError> {
    let spec = spec(&s, req)?;
    s.may_start()?;
    let refuse = spec.on_duplicate == tend_model::run::OnDuplicate::Fail;
    s.counters().launches.fetch_add(1, Ordering::Relaxed);
    s.blocking(move |s, l| {
        let c = s.config();
        let answer = tend_supervisor::detach::launch(&c.exe, &c.home, &c.store, &spec)?;
        let (code, id) = match answer {
            Answer::Started { id } | Answer::FailedToStart { id } => (StatusCode::CREATED, id),
            Answer::Existing { id } => (StatusCode::OK, id),
            Answer::Error { message } => return Err(ApiError::internal(message)),
        };
        let e = resolve(l, &id)?;
        if code == StatusCode::OK && refuse && !e.status.is_terminal() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "key '{}' is held by execution {} ({}); not started (on_duplicate fail)",
                    e.key.as_deref().unwrap_or_default(),
                    e.id,
                    e.status
                ),
            ));
        }
        Ok((code, Json(e)).into_response())
    })
    .await
}
