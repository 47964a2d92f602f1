//! Retries in SQLite: the next attempt recorded in the transaction that
//! ends the one before, the hand-over of a pending attempt to a new
//! supervisor, and the lookups that follow a chain of attempts. Every
//! function runs inside the caller's transaction (or on its connection).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;
use tend_model::{Actor, EventKind, Execution, ExecutionId, ProcessIdentity, Status};

use super::{get_in, insert_event, random_u64, row_to_execution, COLS};
use crate::{now_ms, Error, Result, Retry, Transition};

/// Whether the row that just ended is retried: a retried outcome, and
/// attempts left (attempt `n` of a run with `r` retries may be followed
/// while `n <= r`). `killed` and `cancelled` never are.
pub(super) fn wanted(row: &Execution) -> bool {
    matches!(row.status, Status::Failed | Status::TimedOut | Status::Lost)
        && row.attempt.unwrap_or(1) <= row.retries
}

/// Records the attempt after `prev` as `queued`, starting `retry.delay_ms`
/// from now under `retry.supervisor`, with `prev`'s command, limits, key
/// and job number, and the events on both. `None` when the random id was
/// taken (the caller rolls back and tries again).
pub(super) fn insert(
    tx: &Connection,
    prev: &Execution,
    retry: &Retry,
) -> Result<Option<Execution>> {
    let id = ExecutionId::from_random(random_u64());
    let beside = |path: &str, ext: &str| {
        let dir = Path::new(path).parent().unwrap_or(Path::new("/"));
        dir.join(format!("{id}.{ext}")).display().to_string()
    };
    let cgroup = prev
        .cgroup
        .as_deref()
        .map(|c| beside(c, "").trim_end_matches('.').to_string());
    let start_after = now_ms().saturating_add(retry.delay_ms as i64);
    let s = &retry.supervisor;
    let row = tx
        .query_row(
            &format!(
                "INSERT INTO executions (id, name, command, cwd, env, labels, key, live_key, status, \
                 created_at, host, tier, sup_boot_id, sup_pid, sup_start_time, sup_pidfd_ino, \
                 timeout_ms, kill_grace_ms, stdout_path, stderr_path, cgroup, heartbeat_timeout_ms, \
                 idle_timeout_ms, max_memory_bytes, cwd_bytes, agent_id, job, job_number, attempt, \
                 retries, retry_backoff_ms, retry_max_backoff_ms, run_spec, retry_of, start_after, \
                 workspace_kind, workspace_path, workspace_repo, workspace_branch) \
                 SELECT ?1, name, command, cwd, env, labels, key, key, 'queued', ?2, host, tier, \
                 ?3, ?4, ?5, ?6, timeout_ms, kill_grace_ms, ?7, ?8, ?9, heartbeat_timeout_ms, \
                 idle_timeout_ms, max_memory_bytes, cwd_bytes, agent_id, job, job_number, \
                 COALESCE(attempt, 1) + 1, retries, retry_backoff_ms, retry_max_backoff_ms, \
                 run_spec, id, ?10, workspace_kind, workspace_path, workspace_repo, \
                 workspace_branch FROM executions WHERE id = ?11 \
                 ON CONFLICT (id) DO NOTHING RETURNING {COLS}"
            ),
            params![
                id.as_str(),
                now_ms(),
                s.boot_id,
                s.pid,
                s.start_time as i64,
                s.pidfd_ino.map(|v| v as i64),
                beside(&prev.stdout_path, "out"),
                beside(&prev.stderr_path, "err"),
                cgroup,
                start_after,
                prev.id.as_str(),
            ],
            row_to_execution,
        )
        .optional()
        .map_err(Error::storage("recording the next attempt"))?;
    let Some(next) = row else { return Ok(None) };
    let attempt = next.attempt.unwrap_or(2);
    insert_event(
        tx,
        prev.id.as_str(),
        EventKind::RetryScheduled,
        &Actor::Supervisor,
        &json!({ "next": next.id, "attempt": attempt, "delay_ms": retry.delay_ms }),
    )?;
    insert_event(
        tx,
        next.id.as_str(),
        EventKind::Created,
        &Actor::Supervisor,
        &json!({ "retry_of": prev.id, "attempt": attempt, "supervisor_pid": s.pid, "tier": next.tier }),
    )?;
    Ok(Some(next))
}

/// The attempt that retries `id`, if one was recorded.
pub(super) fn next(conn: &Connection, id: &ExecutionId) -> Result<Option<Execution>> {
    conn.query_row(
        &format!("SELECT {COLS} FROM executions WHERE retry_of = ?1"),
        [id.as_str()],
        row_to_execution,
    )
    .optional()
    .map_err(Error::storage("reading the next attempt"))
}

/// A queued execution's supervisor `from` → `to`, guarded on both the
/// status and the old identity, with an `adopted` event.
pub(super) fn adopt(
    tx: &Connection,
    id: &ExecutionId,
    from: &ProcessIdentity,
    to: &ProcessIdentity,
) -> Result<Transition> {
    let row = tx
        .query_row(
            &format!(
                "UPDATE executions SET sup_boot_id = ?2, sup_pid = ?3, sup_start_time = ?4, \
                 sup_pidfd_ino = ?5, version = version + 1 \
                 WHERE id = ?1 AND status = 'queued' AND sup_boot_id = ?6 AND sup_pid = ?7 \
                 AND sup_start_time = ?8 RETURNING {COLS}"
            ),
            params![
                id.as_str(),
                to.boot_id,
                to.pid,
                to.start_time as i64,
                to.pidfd_ino.map(|v| v as i64),
                from.boot_id,
                from.pid,
                from.start_time as i64,
            ],
            row_to_execution,
        )
        .optional()
        .map_err(Error::storage("handing an attempt to a new supervisor"))?;
    match row {
        Some(e) => {
            insert_event(
                tx,
                id.as_str(),
                EventKind::Adopted,
                &Actor::Supervisor,
                &json!({ "from_pid": from.pid, "supervisor_pid": to.pid }),
            )?;
            Ok(Transition::Won(e))
        }
        None => {
            let current =
                get_in(tx, id.as_str())?.ok_or_else(|| Error::NotFound(id.to_string()))?;
            Ok(Transition::Lost(current))
        }
    }
}

/// The run description stored with an execution that has retries.
pub(super) fn run_spec(conn: &Connection, id: &ExecutionId) -> Result<Option<String>> {
    conn.query_row(
        "SELECT run_spec FROM executions WHERE id = ?1",
        [id.as_str()],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .map(Option::flatten)
    .map_err(Error::storage("reading a run description"))
}
