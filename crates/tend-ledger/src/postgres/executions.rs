//! Executions in PostgreSQL: recording one, the guarded compare-and-set of
//! every status change, kill requests and heartbeats. Every function runs
//! inside the caller's transaction. Writers race under READ COMMITTED: a
//! guarded `UPDATE … WHERE id = $1 AND status = $2` waits for a racing
//! writer's row lock and then sees its committed status, so of several
//! callers exactly one wins, as in SQLite's serialized writes.

use postgres::error::SqlState;
use postgres::Transaction;
use serde_json::json;
use tend_model::{Actor, EventKind, Execution, ExecutionId, ProcessIdentity, Status};

use super::client::{Fail, PgResult};
use super::rows::{execution, get_in, insert_event, path_columns, refused, COLS};
use super::{jobs, workspaces};
use crate::{now_ms, Created, Error, NewExecution, Outcome, Transition};

fn opt(v: Option<u64>) -> Option<i64> {
    v.map(|v| v as i64)
}

/// The insert of a new `queued` row; `$7` is both its key and its live key.
fn insert_sql() -> String {
    format!(
        "INSERT INTO tend.executions (id, name, command, cwd, env, labels, key, live_key, status, \
         created_at, host, tier, sup_boot_id, sup_pid, sup_start_time, sup_pidfd_ino, \
         timeout_ms, kill_grace_ms, stdout_path, stderr_path, cgroup, heartbeat_timeout_ms, \
         idle_timeout_ms, max_memory_bytes, cwd_bytes, agent_id, job, job_number, attempt, \
         retries, retry_backoff_ms, retry_max_backoff_ms, run_spec, job_slot, \
         workspace_kind, workspace_path, workspace_repo, workspace_branch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 'queued', $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, \
         $32, $33, $34, $35, $36) \
         ON CONFLICT (id) DO NOTHING RETURNING {COLS}"
    )
}

/// Inserts `new` as `queued` with the id `id`. `None` when the id is
/// taken already (the caller tries another).
fn insert_queued(
    tx: &mut Transaction<'_>,
    new: &NewExecution,
    id: &ExecutionId,
    job_number: Option<i64>,
) -> PgResult<Option<Execution>> {
    let log = |ext: &str| {
        new.log_dir
            .join(format!("{id}.{ext}"))
            .display()
            .to_string()
    };
    let (cwd_text, cwd_bytes) = path_columns(&new.cwd);
    let ws = new.workspace.as_ref().map(|w| w.for_execution(id));
    let text = |v: serde_json::Result<String>| v.expect("argv and string maps serialise");
    let sql = insert_sql();
    let s = &new.supervisor;
    let row = tx.query_opt(
        &sql,
        &[
            &id.as_str(),
            &new.name,
            &text(serde_json::to_string(&new.command)),
            &cwd_text,
            &text(serde_json::to_string(&new.env)),
            &text(serde_json::to_string(&new.labels)),
            &new.key,
            &now_ms(),
            &new.host,
            &new.tier.as_str(),
            &s.boot_id,
            &s.pid,
            &(s.start_time as i64),
            &opt(s.pidfd_ino),
            &opt(new.timeout_ms),
            &(new.kill_grace_ms as i64),
            &log("out"),
            &log("err"),
            &new.cgroup
                .as_ref()
                .map(|c| c.join(id.as_str()).display().to_string()),
            &opt(new.heartbeat_timeout_ms),
            &opt(new.idle_timeout_ms),
            &opt(new.max_memory_bytes),
            &cwd_bytes,
            &new.agent_id,
            &new.job,
            &job_number,
            &(new.job.is_some() || new.retries > 0).then_some(1i64),
            &(new.retries as i64),
            &opt(new.retry_backoff_ms),
            &opt(new.retry_max_backoff_ms),
            &new.run_spec,
            &new.job_slot,
            &ws.as_ref().map(|w| w.kind.as_str()),
            &ws.as_ref().map(|w| w.path.clone()),
            &ws.as_ref().and_then(|w| w.repository.clone()),
            &ws.as_ref().and_then(|w| w.branch.clone()),
        ],
    )?;
    let row = row.as_ref().map(execution).transpose()?;
    if let (Some(_), Some(w)) = (&row, &ws) {
        workspaces::record(tx, w, id)?;
    }
    Ok(row)
}

/// What stands for `key` when a new execution wants it: the live holder,
/// else (with `reuse_ms`) the newest `succeeded` one that finished within
/// that long.
fn holder(
    tx: &mut Transaction<'_>,
    key: &str,
    reuse_ms: Option<u64>,
) -> PgResult<Option<Execution>> {
    let sql = format!("SELECT {COLS} FROM tend.executions WHERE live_key = $1");
    let live = tx
        .query_opt(&sql, &[&key])?
        .as_ref()
        .map(execution)
        .transpose()?;
    let Some(ms) = reuse_ms.filter(|_| live.is_none()) else {
        return Ok(live);
    };
    let sql = format!(
        "SELECT {COLS} FROM tend.executions WHERE key = $1 AND status = 'succeeded' \
         AND finished_at >= $2 ORDER BY finished_at DESC, seq DESC LIMIT 1"
    );
    let since = crate::ms_ago(std::time::Duration::from_millis(ms));
    tx.query_opt(&sql, &[&key, &since])?
        .as_ref()
        .map(execution)
        .transpose()
}

/// Whether `e` is the unique index on live keys refusing a second holder
/// (a racing create committed the key first).
fn key_taken(e: &Fail) -> bool {
    matches!(e, Fail::Pg(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|d| d.constraint()) == Some("executions_live_key"))
}

/// See [`crate::Ledger::create`]. Each try is a savepoint: an id collision
/// or a key taken by a racing create is rolled back (the job's number
/// with it) and tried again, the holder then found.
pub(crate) fn create(tx: &mut Transaction<'_>, new: &NewExecution) -> PgResult<Created> {
    for _ in 0..8 {
        let mut sp = tx.transaction()?;
        if let Some(key) = &new.key {
            if let Some(existing) = holder(&mut sp, key, new.reuse_finished_ms)? {
                return Ok(Created::Existing(existing));
            }
        }
        let id = ExecutionId::from_random(super::random_u64());
        let number = match &new.job {
            Some(job) => Some(jobs::take_number(&mut sp, job)?),
            None => None,
        };
        let row = match insert_queued(&mut sp, new, &id, number) {
            Err(e) if key_taken(&e) => continue,
            other => other?,
        };
        let Some(row) = row else { continue };
        insert_event(
            &mut sp,
            id.as_str(),
            EventKind::Created,
            &Actor::Supervisor,
            &json!({ "supervisor_pid": new.supervisor.pid, "tier": new.tier, "key": new.key }),
        )?;
        sp.commit()?;
        return Ok(Created::New(row));
    }
    Err(Fail::Ledger(Error::Storage {
        doing: "choosing an execution id",
        source: "eight random ids in a row were taken".into(),
    }))
}

/// See [`crate::Ledger::start`].
pub(crate) fn start(
    tx: &mut Transaction<'_>,
    id: &ExecutionId,
    p: &ProcessIdentity,
) -> PgResult<Transition> {
    let sql = format!(
        "UPDATE tend.executions SET status = 'running', started_at = $2, pid = $3, \
         pid_start_time = $4, pid_pidfd_ino = $5, version = version + 1 \
         WHERE id = $1 AND status = 'queued' RETURNING {COLS}"
    );
    let row = tx.query_opt(
        &sql,
        &[
            &id.as_str(),
            &now_ms(),
            &p.pid,
            &(p.start_time as i64),
            &opt(p.pidfd_ino),
        ],
    )?;
    match row.as_ref().map(execution).transpose()? {
        Some(e) => {
            let details = json!({ "pid": p.pid });
            insert_event(
                tx,
                id.as_str(),
                EventKind::Started,
                &Actor::Supervisor,
                &details,
            )?;
            Ok(Transition::Won(e))
        }
        None => {
            let details = json!({ "wanted": "running", "expected": "queued" });
            Ok(Transition::Lost(refused(
                tx,
                id,
                &Actor::Supervisor,
                details,
            )?))
        }
    }
}

/// Refuses an outcome that no row may take from `expected`.
pub(crate) fn check_transition(expected: Status, o: &Outcome) -> crate::Result<()> {
    if expected.can_become(o.status) {
        Ok(())
    } else {
        Err(Error::IllegalTransition {
            from: expected,
            to: o.status,
        })
    }
}

/// `expected` → the outcome's status as one guarded update, with its
/// event (or the refusal's), inside the caller's transaction.
pub(crate) fn transition_in(
    tx: &mut Transaction<'_>,
    id: &ExecutionId,
    expected: Status,
    o: &Outcome,
) -> PgResult<Transition> {
    let kill = o.kill.as_ref();
    let sql = format!(
        "UPDATE tend.executions SET status = $3, reason = $4, exit_code = $5, signal = $6, \
         finished_at = $7, kill_method = $8, kill_duration_ms = $9, processes_signalled = $10, \
         cpu_ms = COALESCE($11, cpu_ms), max_rss_bytes = COALESCE($12, max_rss_bytes), \
         live_key = NULL, version = version + 1 \
         WHERE id = $1 AND status = $2 RETURNING {COLS}"
    );
    let row = tx.query_opt(
        &sql,
        &[
            &id.as_str(),
            &expected.as_str(),
            &o.status.as_str(),
            &o.reason,
            &o.exit_code,
            &o.signal,
            &now_ms(),
            &kill.map(|k| k.method.as_str()),
            &kill.map(|k| k.duration_ms as i64),
            &kill.map(|k| k.processes_signalled as i64),
            &o.usage.map(|u| u.cpu_ms as i64),
            &o.usage.map(|u| u.max_rss_bytes as i64),
        ],
    )?;
    let Some(e) = row.as_ref().map(execution).transpose()? else {
        let details = json!({ "wanted": o.status, "expected": expected, "reason": o.reason });
        return Ok(Transition::Lost(refused(tx, id, &o.actor, details)?));
    };
    let mut details = json!({
        "status": o.status, "reason": o.reason,
        "exit_code": o.exit_code, "signal": o.signal,
    });
    if let Some(k) = kill {
        details["kill_method"] = json!(k.method);
        details["kill_duration_ms"] = json!(k.duration_ms);
        details["processes_signalled"] = json!(k.processes_signalled);
    }
    if let (Some(into), Some(extra)) = (details.as_object_mut(), o.details.as_object()) {
        for (k, v) in extra {
            into.insert(k.clone(), v.clone());
        }
    }
    insert_event(tx, id.as_str(), o.event, &o.actor, &details)?;
    Ok(Transition::Won(e))
}

/// See [`crate::Ledger::request_kill`].
pub(crate) fn request_kill(
    tx: &mut Transaction<'_>,
    id: &ExecutionId,
    k: &crate::KillRequest,
) -> PgResult<Execution> {
    let sql = format!(
        "UPDATE tend.executions SET kill_requested_at = COALESCE(kill_requested_at, $2), \
         kill_requested_by = COALESCE(kill_requested_by, $3), \
         kill_request_reason = COALESCE(kill_request_reason, $4), \
         kill_request_force = COALESCE(kill_request_force, false) OR $5, \
         kill_request_grace_ms = COALESCE($6, kill_request_grace_ms), version = version + 1 \
         WHERE id = $1 AND status IN ('queued','running') RETURNING {COLS}"
    );
    let row = tx.query_opt(
        &sql,
        &[
            &id.as_str(),
            &now_ms(),
            &k.actor.to_string(),
            &k.reason,
            &k.force,
            &opt(k.grace_ms),
        ],
    )?;
    match row.as_ref().map(execution).transpose()? {
        Some(e) => {
            let details = json!({ "reason": k.reason, "force": k.force, "grace_ms": k.grace_ms });
            insert_event(
                tx,
                id.as_str(),
                EventKind::KillRequested,
                &k.actor,
                &details,
            )?;
            Ok(e)
        }
        None => super::rows::must_get(tx, id),
    }
}

/// See [`crate::Ledger::heartbeat`].
pub(crate) fn heartbeat(
    tx: &mut Transaction<'_>,
    id: &ExecutionId,
    progress: Option<&str>,
) -> PgResult<Execution> {
    let sql = format!(
        "UPDATE tend.executions SET last_heartbeat_at = $2, progress = COALESCE($3, progress) \
         WHERE id = $1 AND status = 'running' RETURNING {COLS}"
    );
    match tx.query_opt(&sql, &[&id.as_str(), &now_ms(), &progress])? {
        Some(r) => execution(&r),
        None => {
            get_in(tx, id.as_str())?.ok_or_else(|| Fail::Ledger(Error::NotFound(id.to_string())))
        }
    }
}
