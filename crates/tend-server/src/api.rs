//! The HTTP API: routes, request and response types, handlers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tend_ledger::{Filter, KillRequest, Ledger};
use tend_model::limits::{check_kill_grace, check_text, MAX_REASON_BYTES};
use tend_model::{Event, Execution, KillMethod, Status};
use tend_supervisor::detach::Answer;
use tend_supervisor::{OnDuplicate, RunSpec};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;
use utoipa::ToSchema;

use crate::{auth, guard, metrics, openapi, ApiError, AppState};

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Largest log read without `follow`.
const MAX_LOG_READ: u64 = 16 << 20;
/// Longest long-poll wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// The whole API. Every request passes, in order, the request guard
/// (`Host`, `Origin`, no preflight, JSON bodies, a declared size within the
/// limit: see `guard.rs`), the token check, and a bounded read of its body;
/// only then a handler.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/executions", get(list).post(launch))
        .route("/api/v1/executions/{id}", get(show))
        .route("/api/v1/executions/{id}/events", get(events))
        .route("/api/v1/executions/{id}/logs", get(logs))
        .route("/api/v1/executions/{id}/kill", post(kill))
        .route("/api/v1/executions/{id}/wait", get(wait))
        .route("/api/v1/reap", post(reap))
        .route("/api/v1/events", get(stream))
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

async fn not_found() -> ApiError {
    ApiError::from(tend_ledger::Error::NotFound("this path".into()))
}

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not served at this path"),
    )
}

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
            Err(r) => Err(ApiError::bad_request(r.body_text())),
        }
    }
}

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

fn duration(field: &str, v: &Option<String>) -> Result<Option<Duration>, ApiError> {
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

fn resolve(l: &(impl Ledger + ?Sized), id: &str) -> Result<Execution, ApiError> {
    Ok(l.resolve(id)?)
}

/// Health and a few numbers.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `degraded` (too many long-running executions) or `unhealthy`
    /// (live rows whose supervision is gone survived reconciliation).
    pub status: String,
    /// Executions running now.
    pub running: u64,
    /// Executions queued now.
    pub queued: u64,
    /// Running longer than the alert threshold.
    pub long_running: u64,
    /// Live rows whose supervisor is gone (should be 0: the reaper fixes them).
    pub stale: u64,
    /// Executions created in the last 24 hours, per status.
    pub last_24h: BTreeMap<String, u64>,
    /// Seconds since this daemon started.
    pub uptime_s: u64,
}

#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = Health)), security(("token" = [])))]
async fn health(State(s): State<AppState>) -> Result<Json<Health>, ApiError> {
    s.blocking(|s, l| {
        let live = l.live()?;
        let stale = tend_supervisor::reconcile_dry_run(l, &s.config().home)?.len() as u64;
        let now = tend_ledger::now_ms();
        let cutoff = now - s.config().long_running_after.as_millis() as i64;
        let day = l.summary(Some(now - 86_400_000), cutoff)?;
        let running = live.iter().filter(|e| e.status == Status::Running).count() as u64;
        let status = if stale > 0 {
            "unhealthy"
        } else if day.long_running > s.config().long_running_alert {
            "degraded"
        } else {
            "ok"
        };
        Ok(Json(Health {
            status: status.into(),
            running,
            queued: live.len() as u64 - running,
            long_running: day.long_running,
            stale,
            last_24h: day
                .by_status
                .iter()
                .map(|(st, n)| (st.to_string(), *n))
                .collect(),
            uptime_s: s.uptime_s(),
        }))
    })
    .await
}

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
async fn list(
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
        since_ms: since.map(|d| tend_ledger::now_ms() - d.as_millis() as i64),
        limit: Some(limit),
        offset: q.offset,
    };
    s.blocking(move |_, l| Ok(Json(l.list(&filter)?))).await
}

#[utoipa::path(get, path = "/api/v1/executions/{id}", params(IdPath),
    responses((status = 200, body = Execution), (status = 404, description = "unknown id")), security(("token" = [])))]
async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Execution>, ApiError> {
    s.blocking(move |_, l| Ok(Json(resolve(l, &id)?))).await
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/events", params(IdPath),
    responses((status = 200, body = Vec<Event>), (status = 404, description = "unknown id")), security(("token" = [])))]
async fn events(
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
    let timeout = duration("timeout", &r.timeout)?.filter(|t| !t.is_zero());
    if let Some(t) = timeout {
        if t > s.config().max_timeout {
            return Err(ApiError::bad_request(format!(
                "timeout: must be between 1ms and {}",
                tend_model::format_duration(s.config().max_timeout)
            )));
        }
    }
    // Zero means "no such limit", as leaving the field out does.
    let positive = |field: &str, v: &Option<String>| -> Result<Option<u64>, ApiError> {
        Ok(duration(field, v)?
            .filter(|d| !d.is_zero())
            .map(|d| d.as_millis() as u64))
    };
    let max_memory = r
        .max_memory
        .as_deref()
        .map(|m| {
            tend_model::parse_size(m).map_err(|e| ApiError::bad_request(format!("max_memory: {e}")))
        })
        .transpose()?
        .filter(|m| *m > 0);
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
        timeout_ms: timeout.map(|t| t.as_millis() as u64),
        kill_grace_ms: kill_grace.as_millis() as u64,
        log_max_bytes: s.config().log_max_size,
        heartbeat_timeout_ms: positive("heartbeat_timeout", &r.heartbeat_timeout)?,
        idle_timeout_ms: positive("idle_timeout", &r.idle_timeout)?,
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
async fn launch(
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

/// How to kill.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    /// SIGKILL at once.
    #[serde(default)]
    pub force: bool,
    /// Grace override (`5s`).
    #[schema(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub grace: Option<String>,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

/// What a kill did.
#[derive(Serialize, ToSchema)]
pub struct Killed {
    /// Execution id.
    pub id: String,
    /// Final status.
    pub status: Status,
    /// `graceful`, `forced`, or `none` when it had already finished.
    pub kill_method: KillMethod,
    /// Request to empty tree.
    pub kill_duration_ms: u64,
    /// Processes signalled.
    pub processes_signalled: u32,
    /// True when nothing was done because it had already ended.
    pub already_finished: bool,
}

#[utoipa::path(post, path = "/api/v1/executions/{id}/kill", params(IdPath), request_body = Option<KillBody>,
    responses((status = 200, body = Killed), (status = 404, description = "unknown id")), security(("token" = [])))]
async fn kill(
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Killed>, ApiError> {
    // The body is optional: no body means a plain graceful kill.
    let body: KillBody = if raw.iter().all(u8::is_ascii_whitespace) || raw.trim_ascii() == b"null" {
        KillBody::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("invalid kill body: {e}")))?
    };
    let grace = duration("grace", &body.grace)?;
    grace
        .map_or(Ok(()), check_kill_grace)
        .map_err(|e| ApiError::bad_request(format!("grace: {e}")))?;
    if let Some(r) = &body.reason {
        check_text("reason", r, MAX_REASON_BYTES)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    s.counters().kill_requests.fetch_add(1, Ordering::Relaxed);
    let mut rx = s.subscribe();
    let req = KillRequest {
        actor: tend_model::Actor::Api,
        reason: body.reason,
        force: body.force,
        grace_ms: grace.map(|g| g.as_millis() as u64),
    };
    let asked = req.clone();
    let (e, already) = s
        .blocking(move |s, l| {
            let e = resolve(l, &id)?;
            let done =
                tend_supervisor::request_kill(l, &s.config().home, std::slice::from_ref(&e), &req)?;
            Ok((e, done[0]))
        })
        .await?;
    let e = if already {
        s.blocking(move |_, l| Ok(l.get(&e.id)?)).await?
    } else {
        wait_killed(&s, &mut rx, &e, asked).await?
    };
    Ok(Json(Killed {
        id: e.id.to_string(),
        status: e.status,
        kill_method: if already {
            KillMethod::None
        } else {
            e.kill_method.unwrap_or(KillMethod::None)
        },
        kill_duration_ms: if already {
            0
        } else {
            e.kill_duration_ms.unwrap_or(0)
        },
        processes_signalled: if already {
            0
        } else {
            e.processes_signalled.unwrap_or(0)
        },
        already_finished: already,
    }))
}

/// Subscribe first (the caller passes a receiver made before its read),
/// then re-read, then wait for a terminal transition of `e` or the timeout.
/// Waits for a requested kill to be carried out; a supervisor that has not
/// done it within the grace plus `ACT_WITHIN` (stopped, stuck) has it done
/// for it, as `tend kill` does.
async fn wait_killed(
    s: &AppState,
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Execution>>,
    e: &Execution,
    req: KillRequest,
) -> Result<Execution, ApiError> {
    let grace = match (req.force, req.grace_ms) {
        (true, _) => Duration::ZERO,
        (false, g) => Duration::from_millis(g.unwrap_or(e.kill_grace_ms)),
    };
    let bound = grace + tend_supervisor::kill::ACT_WITHIN;
    match wait_terminal(s, rx, e, Some(bound)).await {
        Err(err) if err.status() == axum::http::StatusCode::REQUEST_TIMEOUT => {
            let id = e.id.clone();
            s.blocking(move |s, l| {
                Ok(tend_supervisor::kill::enforce(
                    l,
                    &s.config().home,
                    &id,
                    &req,
                    bound,
                )?)
            })
            .await?;
            wait_terminal(s, rx, e, None).await
        }
        other => other,
    }
}

async fn wait_terminal(
    s: &AppState,
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Execution>>,
    e: &Execution,
    timeout: Option<Duration>,
) -> Result<Execution, ApiError> {
    let id = e.id.clone();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    // The supervisor's pidfd is a second wake-up that needs no watcher: it
    // exits right after committing the outcome (or dies without one, and
    // then this wait reconciles the row itself).
    let mut supervisor = if tend_supervisor::is_local(e, &tend_proc::procfs::hostname()) {
        match tend_proc::Pidfd::open_verified(&e.supervisor) {
            Ok(tend_proc::Verified::Alive(fd)) => crate::readable_fd(fd).ok(),
            _ => None,
        }
    } else {
        None
    };
    let mut supervisor_gone =
        supervisor.is_none() && tend_supervisor::is_local(e, &tend_proc::procfs::hostname());
    loop {
        let current = {
            let id = id.clone();
            s.blocking(move |s, l| {
                let row = l.get(&id)?;
                if supervisor_gone && !row.status.is_terminal() {
                    if let Some(r) =
                        tend_supervisor::reconcile_execution(l, &s.config().home, &row)?
                    {
                        return Ok(r.execution);
                    }
                }
                Ok(row)
            })
            .await?
        };
        if current.status.is_terminal() {
            return Ok(current);
        }
        loop {
            let until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let sup_exit = async {
                match &supervisor {
                    Some(fd) => {
                        let _ = fd.readable().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = until => {
                    return Err(ApiError::timeout(format!(
                        "execution {id} is still {} after the wait timeout",
                        current.status
                    )))
                }
                _ = s.stopped() => return Err(ApiError::unavailable("the daemon is shutting down; retry the wait")),
                _ = sup_exit => {
                    supervisor = None;
                    supervisor_gone = true;
                    break;
                }
                t = rx.recv() => match t {
                    Ok(t) if t.id == id && t.status.is_terminal() => return Ok((*t).clone()),
                    Ok(_) => {}
                    // Missed some: re-read the row rather than trust the gap.
                    Err(_) => break,
                },
            }
        }
    }
}

/// Long-poll parameters.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// How long to wait (default 30s, at most 5m).
    #[param(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub timeout: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/wait", params(IdPath, WaitQuery),
    responses((status = 200, description = "it ended", body = Execution),
              (status = 408, description = "still live when the timeout passed")), security(("token" = [])))]
async fn wait(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Json<Execution>, ApiError> {
    let timeout = duration("timeout", &q.timeout)?
        .unwrap_or(Duration::from_secs(30))
        .min(MAX_WAIT);
    let mut rx = s.subscribe();
    let e = s.blocking(move |_, l| resolve(l, &id)).await?;
    Ok(Json(wait_terminal(&s, &mut rx, &e, Some(timeout)).await?))
}

/// What a reap did.
#[derive(Serialize, ToSchema)]
pub struct Reaped {
    /// Executions marked `lost`.
    pub lost: Vec<Execution>,
    /// PIDs of stray processes of this ledger that were ended.
    pub stragglers: Vec<i32>,
}

#[utoipa::path(post, path = "/api/v1/reap", responses((status = 200, body = Reaped)), security(("token" = [])))]
async fn reap(State(s): State<AppState>) -> Result<Json<Reaped>, ApiError> {
    s.blocking(|s, l| {
        let lost = tend_supervisor::reconcile(l, &s.config().home)?;
        let strays =
            tend_supervisor::sweep_stragglers(l, &s.config().home, false, s.config().kill_grace)?;
        s.note_reaped(lost.len(), strays.len());
        Ok(Json(Reaped {
            lost: lost.into_iter().map(|r| r.execution).collect(),
            stragglers: strays.into_iter().map(|s| s.pid).collect(),
        }))
    })
    .await
}

/// Which log and how much.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// `stdout` (default) or `stderr`.
    #[param(pattern = "^(stdout|stderr)$")]
    pub stream: Option<String>,
    /// Keep the response open and stream output until the execution ends.
    #[serde(default)]
    pub follow: bool,
    /// Start at this byte.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub offset: Option<u64>,
    /// At most this many bytes (default and maximum 16 MiB) without `follow`.
    #[param(minimum = 1, maximum = 16777216)]
    pub limit: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/logs", params(IdPath, LogsQuery),
    responses((status = 200, description = "output", content_type = "text/plain"), (status = 404, description = "unknown id")),
    security(("token" = [])))]
async fn logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let stderr = match q.stream.as_deref() {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "stream: '{other}' is not stdout or stderr"
            )))
        }
    };
    if q.offset.is_some_and(|o| o > i64::MAX as u64) {
        return Err(ApiError::bad_request(
            "offset: must be at most 9223372036854775807",
        ));
    }
    if q.limit.is_some_and(|l| l == 0 || l > MAX_LOG_READ) {
        return Err(ApiError::bad_request(format!(
            "limit: must be between 1 and {MAX_LOG_READ}"
        )));
    }
    let limit = q.limit.unwrap_or(MAX_LOG_READ);
    let offset = q.offset.unwrap_or(0);
    let e = s.blocking(move |_, l| resolve(l, &id)).await?;
    // The path comes from the ledger row, never from the request.
    let path = std::path::PathBuf::from(if stderr {
        &e.stderr_path
    } else {
        &e.stdout_path
    });
    if !q.follow {
        let data = tokio::task::spawn_blocking(move || read_range(&path, offset, limit))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], data).into_response());
    }
    let rx = s.subscribe();
    let body =
        axum::body::Body::from_stream(crate::logs::follow_stream(s.clone(), e, path, offset, rx));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

pub(crate) fn read_range(
    path: &std::path::Path,
    offset: u64,
    limit: u64,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if offset >= f.metadata()?.len() {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    f.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/events",
    responses((status = 200, description = "server-sent events: one `transition` event (an Execution as JSON) per status change", content_type = "text/event-stream")),
    security(("token" = [])))]
async fn stream(
    State(s): State<AppState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let mut transitions = BroadcastStream::new(s.subscribe());
    // Forward until the client goes or the daemon stops.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = transitions.next() => match m {
                    Some(m) => if tx.send(m).await.is_err() { return },
                    None => return,
                },
                _ = s.stopped() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).filter_map(|m| {
        m.ok().map(|e| {
            Ok(SseEvent::default()
                .event("transition")
                .id(format!("{}-{}", e.id, e.version))
                .json_data(&*e)
                .expect("executions serialise"))
        })
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(30)))
}
