//! Retries in PostgreSQL: the next attempt recorded in the transaction that
//! ends the one before, the hand-over of a pending attempt to a new
//! supervisor, and the lookups that follow a chain of attempts.

use std::path::Path;

use postgres::{GenericClient, Transaction};
use serde_json::json;
use tend_model::{Actor, EventKind, Execution, ExecutionId, ProcessIdentity, Status};

use super::client::PgResult;
use super::rows::{execution, insert_event, must_get, COLS};
use crate::{now_ms, Retry, Transition};

/// Whether the row that just ended is retried: a retried outcome, and
/// attempts left. `killed` and `cancelled` never are.
pub(crate) fn wanted(row: &Execution) -> bool {
    matches!(row.status, Status::Failed | Status::TimedOut | Status::Lost)
        && row.attempt.unwrap_or(1) <= row.retries
}

/// Records the attempt after `prev` as `queued` (see the SQLite backend's
/// `retries::insert`). `None` when the random id was taken.
pub(crate) fn insert(
    tx: &mut Transaction<'_>,
    prev: &Execution,
    retry: &Retry,
) -> PgResult<Option<Execution>> {
    let id = ExecutionId::from_random(super::random_u64());
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
    let sql = format!(
        "INSERT INTO tend.executions (id, name, command, cwd, env, labels, key, live_key, status, \
         created_at, host, tier, sup_boot_id, sup_pid, sup_start_time, sup_pidfd_ino, \
         timeout_ms, kill_grace_ms, stdout_path, stderr_path, cgroup, heartbeat_timeout_ms, \
         idle_timeout_ms, max_memory_bytes, cwd_bytes, agent_id, job, job_number, attempt, \
         retries, retry_backoff_ms, retry_max_backoff_ms, run_spec, retry_of, start_after, \
         workspace_kind, workspace_path, workspace_repo, workspace_branch) \
         SELECT $1, name, command, cwd, env, labels, key, key, 'queued', $2, host, tier, \
         $3, $4, $5, $6, timeout_ms, kill_grace_ms, $7, $8, $9, heartbeat_timeout_ms, \
         idle_timeout_ms, max_memory_bytes, cwd_bytes, agent_id, job, job_number, \
         COALESCE(attempt, 1) + 1, retries, retry_backoff_ms, retry_max_backoff_ms, \
         run_spec, id, $10, workspace_kind, workspace_path, workspace_repo, \
         workspace_branch FROM tend.executions WHERE id = $11 \
         ON CONFLICT (id) DO NOTHING RETURNING {COLS}"
    );
    let row = tx.query_opt(
        &sql,
        &[
            &id.as_str(),
            &now_ms(),
            &s.boot_id,
            &s.pid,
            &(s.start_time as i64),
            &s.pidfd_ino.map(|v| v as i64),
            &beside(&prev.stdout_path, "out"),
            &beside(&prev.stderr_path, "err"),
            &cgroup,
            &start_after,
            &prev.id.as_str(),
        ],
    )?;
    let Some(next) = row.as_ref().map(execution).transpose()? else {
        return Ok(None);
    };
    let attempt = next.attempt.unwrap_or(2);
    let details = json!({ "next": next.id, "attempt": attempt, "delay_ms": retry.delay_ms });
    insert_event(
        tx,
        prev.id.as_str(),
        EventKind::RetryScheduled,
        &Actor::Supervisor,
        &details,
    )?;
    let details = json!({ "retry_of": prev.id, "attempt": attempt, "supervisor_pid": s.pid, "tier": next.tier });
    insert_event(
        tx,
        next.id.as_str(),
        EventKind::Created,
        &Actor::Supervisor,
        &details,
    )?;
    Ok(Some(next))
}

/// The attempt that retries `id`, if one was recorded.
pub(crate) fn next(c: &mut impl GenericClient, id: &ExecutionId) -> PgResult<Option<Execution>> {
    let sql = format!("SELECT {COLS} FROM tend.executions WHERE retry_of = $1");
    c.query_opt(&sql, &[&id.as_str()])?
        .as_ref()
        .map(execution)
        .transpose()
}

/// A queued execution's supervisor `from` → `to`, guarded on both the
/// status and the old identity, with an `adopted` event.
pub(crate) fn adopt(
    tx: &mut Transaction<'_>,
    id: &ExecutionId,
    from: &ProcessIdentity,
    to: &ProcessIdentity,
) -> PgResult<Transition> {
    let sql = format!(
        "UPDATE tend.executions SET sup_boot_id = $2, sup_pid = $3, sup_start_time = $4, \
         sup_pidfd_ino = $5, version = version + 1 \
         WHERE id = $1 AND status = 'queued' AND sup_boot_id = $6 AND sup_pid = $7 \
         AND sup_start_time = $8 RETURNING {COLS}"
    );
    let row = tx.query_opt(
        &sql,
        &[
            &id.as_str(),
            &to.boot_id,
            &to.pid,
            &(to.start_time as i64),
            &to.pidfd_ino.map(|v| v as i64),
            &from.boot_id,
            &from.pid,
            &(from.start_time as i64),
        ],
    )?;
    match row.as_ref().map(execution).transpose()? {
        Some(e) => {
            let details = json!({ "from_pid": from.pid, "supervisor_pid": to.pid });
            insert_event(
                tx,
                id.as_str(),
                EventKind::Adopted,
                &Actor::Supervisor,
                &details,
            )?;
            Ok(Transition::Won(e))
        }
        None => Ok(Transition::Lost(must_get(tx, id)?)),
    }
}

/// The run description stored with an execution that has retries.
pub(crate) fn run_spec(c: &mut impl GenericClient, id: &ExecutionId) -> PgResult<Option<String>> {
    let row = c.query_opt(
        "SELECT run_spec FROM tend.executions WHERE id = $1",
        &[&id.as_str()],
    )?;
    Ok(row
        .map(|r| r.try_get::<_, Option<String>>(0))
        .transpose()?
        .flatten())
}
