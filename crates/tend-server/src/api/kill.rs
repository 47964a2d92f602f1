//! Kills: `POST /api/v1/executions/{id}/kill`, and the bulk kill by filter
//! `POST /api/v1/executions/kill`. The kill is requested in the ledger,
//! then waited for; a supervisor that does not carry it out in time has it
//! carried out for it, as `tend kill` does (the bulk kill is the CLI's own
//! code: `tend_supervisor::kill::select` and `tend_supervisor::kill`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use tend_ledger::KillRequest;
use tend_model::limits::{check_kill_grace, check_reason};
use tend_model::wire::Killed;
use tend_model::Execution;
use utoipa::ToSchema;

use super::extract::{duration, resolve, IdPath};
use super::wait::wait_terminal;
use crate::{ApiError, AppState};

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

impl KillBody {
    /// The optional body: none (or `null`) means a plain graceful kill.
    fn parse(raw: &[u8]) -> Result<KillBody, ApiError> {
        if raw.iter().all(u8::is_ascii_whitespace) || raw.trim_ascii() == b"null" {
            return Ok(KillBody::default());
        }
        serde_json::from_slice(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid kill body: {e}")))
    }

    /// The ledger's request, with the grace and reason within their limits.
    fn request(self) -> Result<KillRequest, ApiError> {
        let grace = duration("grace", &self.grace)?;
        grace
            .map_or(Ok(()), check_kill_grace)
            .map_err(|e| ApiError::bad_request(format!("grace: {e}")))?;
        if let Some(r) = &self.reason {
            check_reason(r).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        Ok(KillRequest {
            actor: tend_model::Actor::Api,
            reason: self.reason,
            force: self.force,
            grace_ms: grace.map(|g| g.as_millis() as u64),
        })
    }
}

#[utoipa::path(post, path = "/api/v1/executions/{id}/kill", params(IdPath), request_body = Option<KillBody>,
    responses((status = 200, body = Killed), (status = 404, description = "unknown id")), security(("token" = [])))]
pub(super) async fn kill(
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Killed>, ApiError> {
    let req = KillBody::parse(&raw)?.request()?;
    s.counters().kill_requests.fetch_add(1, Ordering::Relaxed);
    let mut rx = s.subscribe();
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
    Ok(Json(Killed::new(&e, already)))
}

/// Waits for a requested kill to be carried out (`rx` was subscribed before
/// the request); a supervisor that has not done it within the grace plus
/// `ACT_WITHIN` (stopped, stuck) has it done for it, as `tend kill` does.
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

/// A bulk kill: the live executions matching every filter given (`all`
/// when none is), first as a dry run.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkKill {
    /// Glob on the name.
    pub name: Option<String>,
    /// A label as `key=value`.
    #[schema(pattern = r"^[^=]+=.*$")]
    pub label: Option<String>,
    /// Only those created at least this long ago (`2h`).
    #[schema(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub older_than: Option<String>,
    /// Every live execution (needed when no filter is given).
    #[serde(default)]
    pub all: bool,
    /// Only say what would be killed (default true: a bulk kill is shown
    /// before it is done).
    pub dry_run: Option<bool>,
    /// SIGKILL at once.
    #[serde(default)]
    pub force: bool,
    /// Grace override (`5s`).
    #[schema(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub grace: Option<String>,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

/// What a bulk kill matched and, unless a dry run, did to each.
#[derive(serde::Serialize, ToSchema)]
pub struct BulkKilled {
    /// True when nothing was done.
    pub dry_run: bool,
    /// The executions the filters matched.
    pub matched: Vec<Execution>,
    /// Per execution, what the kill did (empty for a dry run).
    pub killed: Vec<Killed>,
}

impl BulkKill {
    fn selection(&self) -> Result<tend_supervisor::kill::Selection, ApiError> {
        let name = self
            .name
            .as_deref()
            .map(|n| tend_model::Glob::parse(n).map_err(|e| ApiError::field("name", e)))
            .transpose()?;
        let labels = match &self.label {
            Some(l) => match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => vec![(k.to_string(), v.to_string())],
                _ => return Err(ApiError::field("label", format!("'{l}' is not key=value"))),
            },
            None => Vec::new(),
        };
        let older_than = duration("older_than", &self.older_than)?;
        if name.is_none() && labels.is_empty() && older_than.is_none() && !self.all {
            return Err(ApiError::field(
                "all",
                "give a filter (name, label, older_than), or all: true to kill every live execution",
            ));
        }
        Ok(tend_supervisor::kill::Selection {
            name,
            labels,
            older_than,
        })
    }
}

#[utoipa::path(post, path = "/api/v1/executions/kill", request_body = BulkKill,
    responses((status = 200, body = BulkKilled), (status = 400, description = "bad filter")), security(("token" = [])))]
pub(super) async fn bulk(
    State(s): State<AppState>,
    super::extract::ApiJson(b): super::extract::ApiJson<BulkKill>,
) -> Result<Json<BulkKilled>, ApiError> {
    let sel = b.selection()?;
    let dry_run = b.dry_run.unwrap_or(true);
    let req = KillBody {
        force: b.force,
        grace: b.grace,
        reason: b.reason,
    }
    .request()?;
    s.blocking(move |s, l| {
        let home = &s.config().home;
        tend_supervisor::reconcile(l, home)?;
        let matched = tend_supervisor::kill::select(l, &sel)?;
        if dry_run || matched.is_empty() {
            return Ok(Json(BulkKilled {
                dry_run,
                matched,
                killed: Vec::new(),
            }));
        }
        s.counters()
            .kill_requests
            .fetch_add(matched.len() as u64, Ordering::Relaxed);
        let killed = tend_supervisor::kill(l, home, &matched, &req)?
            .iter()
            .map(|r| Killed::new(&r.execution, r.already_finished))
            .collect();
        Ok(Json(BulkKilled {
            dry_run,
            matched,
            killed,
        }))
    })
    .await
}
