//! Stored jobs: `GET|POST /api/v1/jobs`, `GET|DELETE /api/v1/jobs/{name}`,
//! `POST /api/v1/jobs/{name}/run`, `…/pause`, `…/resume`.
//!
//! A job's body is [`JobSpec`], checked by the one validator `tend job add`
//! uses ([`JobSpec::check`], its run template by `RunOptions::resolve`);
//! each refusal is a 400 naming the field. Every change wakes the
//! scheduler through the home's notifier. A job's executions are
//! `GET /api/v1/executions?job=NAME`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tend_ledger::Filter;
use tend_model::job::{JobDetail, JobSpec, JobView};
use tend_model::{Actor, Execution};
use tend_supervisor::detach::Answer;
use tend_supervisor::jobs::{forbidden_sentence, live_runs, make_room, Room};
use utoipa::IntoParams;

use super::extract::{resolve, ApiJson, ApiQuery};
use crate::{ApiError, AppState};

/// How many fires a job's views list.
const SHOWN_FIRES: usize = 5;

/// The `{name}` path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct NamePath {
    /// The job's name.
    #[param(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        min_length = 1,
        max_length = 64
    )]
    name: String,
}

/// `POST /api/v1/jobs` options.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AddQuery {
    /// Redefine the job if it exists (its numbering continues).
    #[serde(default)]
    pub replace: bool,
}

/// `DELETE /api/v1/jobs/{name}` options.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Also kill its running executions (by default they are left alone).
    #[serde(default)]
    pub kill: bool,
}

fn now() -> i64 {
    tend_ledger::now_ms()
}

#[utoipa::path(get, path = "/api/v1/jobs",
    responses((status = 200, body = Vec<JobView>)), security(("token" = [])))]
pub(super) async fn list(State(s): State<AppState>) -> Result<Json<Vec<JobView>>, ApiError> {
    s.blocking(|_, l| {
        let jobs = l.jobs()?;
        Ok(Json(
            jobs.into_iter()
                .map(|j| JobView::new(j, now(), 1))
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/jobs", params(AddQuery), request_body = JobSpec,
    responses((status = 201, description = "added", body = JobView),
              (status = 200, description = "redefined (replace)", body = JobView),
              (status = 409, description = "a job of this name exists and replace is not set")),
    security(("token" = [])))]
pub(super) async fn add(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<AddQuery>,
    ApiJson(spec): ApiJson<JobSpec>,
) -> Result<Response, ApiError> {
    let zone = tend_model::job::local_zone_name();
    let def = spec
        .check(&s.config().run, &zone)
        .map_err(|e| ApiError::field(e.field, e.message))?;
    if let Some(cwd) = def.run.cwd.as_deref().filter(|c| !c.is_dir()) {
        let shown = tend_model::text::escape(&cwd.to_string_lossy()).into_owned();
        return Err(ApiError::field(
            "cwd",
            format!("the working directory '{shown}' does not exist"),
        ));
    }
    s.blocking(move |s, l| {
        let existed = q.replace && l.job(&def.name).is_ok();
        let job = l.add_job(&def, q.replace)?;
        s.config().home.notifier().announce_jobs();
        let code = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((code, Json(JobView::new(job, now(), SHOWN_FIRES))).into_response())
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/jobs/{name}", params(NamePath),
    responses((status = 200, body = JobDetail), (status = 404, description = "no job has this name")),
    security(("token" = [])))]
pub(super) async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    s.blocking(move |_, l| {
        let job = l.job(&name)?;
        let executions = l.list(&Filter {
            job: Some(name.clone()),
            limit: Some(10),
            ..Filter::default()
        })?;
        let events = l.job_events(&name)?;
        Ok(Json(JobDetail {
            view: JobView::new(job, now(), SHOWN_FIRES),
            executions,
            events,
        }))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/jobs/{name}", params(NamePath, RemoveQuery),
    responses((status = 200, description = "removed; the job as it was", body = JobView),
              (status = 404, description = "no job has this name")),
    security(("token" = [])))]
pub(super) async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> Result<Json<JobView>, ApiError> {
    s.blocking(move |s, l| {
        let live = live_runs(l, &name)?;
        let job = l.remove_job(&name)?;
        let home = &s.config().home;
        home.notifier().announce_jobs();
        if q.kill && !live.is_empty() {
            let req = tend_ledger::KillRequest {
                actor: Actor::Api,
                reason: Some(format!("job '{name}' was removed")),
                force: false,
                grace_ms: None,
            };
            tend_supervisor::kill(l, home, &live, &req)?;
        }
        Ok(Json(JobView::new(job, now(), 0)))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/jobs/{name}/run", params(NamePath),
    responses((status = 201, description = "started, detached", body = Execution),
              (status = 200, description = "the template's key named an existing execution", body = Execution),
              (status = 404, description = "no job has this name"),
              (status = 409, description = "forbid, and one of its runs is live")),
    security(("token" = [])))]
pub(super) async fn run(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    s.may_start()?;
    s.blocking(move |s, l| {
        let c = s.config();
        let job = l.job(&name)?;
        let spec = job
            .spec(&c.run)
            .map_err(|e| ApiError::field(e.field, e.message))?;
        if let Room::Forbidden(live) = make_room(l, &c.home, &job, Actor::Api)? {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                forbidden_sentence(&name, &live),
            ));
        }
        let answer = tend_supervisor::detach::launch(&c.exe, &c.home, &c.store, &spec)?;
        let (code, id) = match answer {
            Answer::Started { id } | Answer::FailedToStart { id } => (StatusCode::CREATED, id),
            Answer::Existing { id } => (StatusCode::OK, id),
            Answer::Error { message } => return Err(ApiError::internal(message)),
        };
        Ok((code, Json(resolve(l, &id)?)).into_response())
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/jobs/{name}/pause", params(NamePath),
    responses((status = 200, body = JobView), (status = 404, description = "no job has this name")),
    security(("token" = [])))]
pub(super) async fn pause(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    set_paused(s, name, true).await
}

#[utoipa::path(post, path = "/api/v1/jobs/{name}/resume", params(NamePath),
    responses((status = 200, body = JobView), (status = 404, description = "no job has this name")),
    security(("token" = [])))]
pub(super) async fn resume(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    set_paused(s, name, false).await
}

async fn set_paused(s: AppState, name: String, paused: bool) -> Result<Json<JobView>, ApiError> {
    s.blocking(move |s, l| {
        let job = l.set_paused(&name, paused)?;
        s.config().home.notifier().announce_jobs();
        Ok(Json(JobView::new(job, now(), SHOWN_FIRES)))
    })
    .await
}
