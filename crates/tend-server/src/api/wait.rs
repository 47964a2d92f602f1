//! Waiting for an execution to end: the long poll
//! (`GET /api/v1/executions/{id}/wait`), and the wait behind an API kill.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use tend_model::{Execution, ExecutionId};
use tend_supervisor::Supervision;
use tokio::sync::broadcast;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::extract::{duration, resolve, ApiQuery, IdPath};
use crate::readable::Readable;
use crate::{ApiError, AppState};

/// Longest long-poll wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

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
    responses((status = 200, description = "it ended (a run with retries: its last attempt)", body = Execution),
              (status = 408, description = "still live when the timeout passed")), security(("token" = [])))]
pub(super) async fn wait(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Json<Execution>, ApiError> {
    let timeout = duration("timeout", &q.timeout)?
        .unwrap_or(Duration::from_secs(30))
        .min(MAX_WAIT);
    let mut rx = s.subscribe();
    let mut e = s.blocking(move |_, l| resolve(l, &id)).await?;
    // A retried run's id stands for its attempts: the wait ends with the
    // last (each next attempt is recorded with the outcome before it).
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let done = wait_terminal(&s, &mut rx, &e, Some(left)).await?;
        let id = done.id.clone();
        match s.blocking(move |_, l| Ok(l.next_attempt(&id)?)).await? {
            Some(next) => e = next,
            None => return Ok(Json(done)),
        }
    }
}

/// What ended one wait for a wake-up.
enum Woken {
    /// The execution's terminal transition was streamed.
    Ended(Arc<Execution>),
    /// Its supervisor exited: re-read the row, reconciling it if need be.
    SupervisorGone,
    /// Transitions were missed: re-read the row rather than trust the gap.
    Missed,
}

/// Waits until `e` is terminal, or `timeout` passes (408) or the daemon
/// stops (503). The caller subscribed `rx` before it read `e`, and this
/// re-reads the row after every wake-up that could mean the end, so no
/// transition falls between the read and the wait.
pub(super) async fn wait_terminal(
    s: &AppState,
    rx: &mut broadcast::Receiver<Arc<Execution>>,
    e: &Execution,
    timeout: Option<Duration>,
) -> Result<Execution, ApiError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    // The supervisor's pidfd is a second wake-up that needs no watcher: it
    // exits right after committing the outcome (or dies without one, and
    // then this wait reconciles the row itself).
    let mut supervisor: Option<Readable> = None;
    loop {
        let (current, fd) = reread(s, &e.id, supervisor.is_none()).await?;
        if current.status.is_terminal() {
            return Ok(current);
        }
        if let Some(fd) = fd {
            supervisor = Readable::new(fd).ok();
        }
        match next_wake(s, rx, &current, supervisor.as_ref(), deadline).await? {
            Woken::Ended(done) => return Ok((*done).clone()),
            Woken::SupervisorGone => supervisor = None,
            Woken::Missed => {}
        }
    }
}

/// The row as it is now. With `verify` (no pidfd held on its supervisor
/// yet, or it fired), the supervisor is checked first
/// ([`tend_supervisor::verify_or_reconcile`]): a live one's pidfd is
/// returned (a duplicate, for the reactor), a gone one's row reconciled.
async fn reread(
    s: &AppState,
    id: &ExecutionId,
    verify: bool,
) -> Result<(Execution, Option<OwnedFd>), ApiError> {
    let id = id.clone();
    s.blocking(move |s, l| {
        let row = l.get(&id)?;
        if !verify {
            return Ok((row, None));
        }
        Ok(
            match tend_supervisor::verify_or_reconcile(l, &s.config().home, &row)? {
                Supervision::Alive(fd) => (row, fd.as_fd().try_clone_to_owned().ok()),
                Supervision::Gone(Some(r)) => (r.execution, None),
                Supervision::Gone(None) | Supervision::NotHere => (row, None),
            },
        )
    })
    .await
}

/// Waits for the next wake-up that could mean `current` ended.
async fn next_wake(
    s: &AppState,
    rx: &mut broadcast::Receiver<Arc<Execution>>,
    current: &Execution,
    supervisor: Option<&Readable>,
    deadline: Option<Instant>,
) -> Result<Woken, ApiError> {
    loop {
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let sup_exit = async {
            match supervisor {
                Some(fd) => {
                    let _ = fd.readable().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = until => {
                return Err(ApiError::timeout(format!(
                    "execution {} is still {} after the wait timeout",
                    current.id, current.status
                )))
            }
            _ = s.stopped() => return Err(ApiError::unavailable("the daemon is shutting down; retry the wait")),
            _ = sup_exit => return Ok(Woken::SupervisorGone),
            t = rx.recv() => match t {
                Ok(t) if t.id == current.id && t.status.is_terminal() => return Ok(Woken::Ended(t)),
                Ok(_) => {}
                Err(_) => return Ok(Woken::Missed),
            },
        }
    }
}
