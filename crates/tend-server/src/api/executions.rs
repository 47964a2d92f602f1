//! Executions: list, show, events, and launch (`POST /api/v1/executions`).
//!
//! A launch's options are checked in one place, [`spec`], which turns a
//! [`LaunchRequest`] into the `RunSpec` that the background supervisor
//! runs.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tend_ledger::Filter;
use tend_model::limits::check_kill_grace;
use tend_model::{Event, Execution, Status};
use tend_supervisor::detach::Answer;
use tend_supervisor::{OnDuplicate, RunSpec};
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
    let filter = Filter {
        statuses,
        name: q.name,
        labels,
        since_ms: since.map(tend_ledger::ms_ago),
        limit: Some(limit),
        offset: q.offset,
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

/// What to launch; the same options as `tend run`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// argv; never run through a shell.
    #[schema(min_items = 1, value_type = Vec<NonEmpty>)]
    pub command: Vec<String>,
    /// Name (default: the program's file name).
    pub name: Option<String>,
    /// Absolute working directory (default `/`).
    #[schema(pattern = "^/")]
    pub cwd: Option<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Deduplication key.
    pub key: Option<String>,
    /// `wait` or `skip` (both answer 200 with the execution holding the key), or `run`.
    #[schema(value_type = Option<String>, pattern = "^(wait|skip|run)$")]
    pub on_duplicate: Option<OnDuplicate>,
    /// Timeout (`90s`, `5m`, …), at most the daemon's maximum (24h by default).
    #[schema(pattern = r"^([0-9]{1,9}(ms|s|m|h)){1,4}$")]
    pub timeout: Option<String>,
    /// SIGTERM → SIGKILL grace.
    #[schema(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub kill_grace: Option<String>,
    /// Heartbeat period.
    #[schema(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub heartbeat_timeout: Option<String>,
    /// Idle (no output) timeout.
    #[schema(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub idle_timeout: Option<String>,
    /// Memory limit (`512M`, `2G`).
    #[schema(pattern = r"^[0-9]+([KMGTkmgt](i?B)?|B)?$")]
    pub max_memory: Option<String>,
}

/// Every rule a launch must pass, and the [`RunSpec`] it becomes: the
/// daemon's defaults and limits (kill grace, longest timeout, log size,
/// containment) applied, each refusal a 400 naming the field. One function,
/// so that the shared run-options validator can take its place whole.
fn spec(s: &AppState, r: LaunchRequest) -> Result<RunSpec, ApiError> {
    let Some(program) = r.command.first() else {
        return Err(ApiError::bad_request("command: must name a program"));
    };
    if program.is_empty() || r.command.iter().any(|a| a.is_empty() || a.contains('\0')) {
        return Err(ApiError::bad_request(
            "command: every argument must be non-empty text without NUL bytes",
        ));
    }
    let cwd = r.cwd.unwrap_or_else(|| "/".into());
    let p = std::path::Path::new(&cwd);
    if !p.is_absolute() || !p.is_dir() {
        return Err(ApiError::bad_request(format!(
            "cwd: '{cwd}' is not an existing absolute directory"
        )));
    }
    for k in r.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "env: '{k}' is not a variable name"
            )));
        }
    }
    // The CLI's rule and words: more than zero, at most the maximum.
    let max = s.config().max_timeout;
    let limit = |field: &'static str, name, v: &Option<String>| -> Result<Option<u64>, ApiError> {
        duration(field, v)?
            .map(|d| tend_model::limits::check_time_limit(name, d, max))
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
    };
    let timeout_ms = limit("timeout", "timeout", &r.timeout)?;
    let max_memory = r
        .max_memory
        .as_deref()
        .map(|m| {
            tend_model::parse_size(m).map_err(|e| ApiError::bad_request(format!("max_memory: {e}")))
        })
        .transpose()?;
    if max_memory == Some(0) {
        return Err(ApiError::bad_request(
            "max_memory: must be more than zero; leave it out for no limit",
        ));
    }
    let kill_grace = duration("kill_grace", &r.kill_grace)?.unwrap_or(s.config().kill_grace);
    check_kill_grace(kill_grace).map_err(|e| ApiError::bad_request(format!("kill_grace: {e}")))?;
    let spec = RunSpec {
        name: r.name,
        command: r.command,
        cwd: cwd.into(),
        env: r.env,
        labels: r.labels,
        key: r.key,
        on_duplicate: r.on_duplicate.unwrap_or_default(),
        timeout_ms,
        kill_grace_ms: kill_grace.as_millis() as u64,
        log_max_bytes: s.config().log_max_size,
        heartbeat_timeout_ms: limit(
            "heartbeat_timeout",
            "heartbeat timeout",
            &r.heartbeat_timeout,
        )?,
        idle_timeout_ms: limit("idle_timeout", "idle timeout", &r.idle_timeout)?,
        max_memory_bytes: max_memory,
        containment: s.config().containment,
        store: Some(s.config().store.to_string()),
    };
    spec.check()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(spec)
}

#[utoipa::path(post, path = "/api/v1/executions", request_body = LaunchRequest,
    responses((status = 201, description = "launched", body = Execution),
              (status = 200, description = "the key matched an existing execution", body = Execution),
              (status = 400, description = "bad request")), security(("token" = [])))]
pub(super) async fn launch(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<LaunchRequest>,
) -> Result<Response, ApiError> {
    let spec = spec(&s, req)?;
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
        Ok((code, Json(e)).into_response())
    })
    .await
}

/// A non-empty string (an argv element), for the schema only.
pub struct NonEmpty;

impl utoipa::PartialSchema for NonEmpty {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .into()
    }
}

impl ToSchema for NonEmpty {}
