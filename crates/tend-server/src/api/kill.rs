//! Kills: `POST /api/v1/executions/{id}/kill`. The kill is requested in the
//! ledger, then waited for; a supervisor that does not carry it out in time
//! has it carried out for it, as `tend kill` does.

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
