//! Executions and their events as PostgreSQL rows: the column list, the
//! decoding (the SQLite backend's, column for column), and the small reads
//! and writes every other part uses. Each takes a client or a transaction.

use postgres::{GenericClient, Row};
use tend_model::{
    Actor, EventKind, Execution, ExecutionId, KillMethod, KillRequested, ProcessIdentity,
};

use super::client::{Fail, PgResult};
pub(crate) use crate::columns::path_columns;
use crate::columns::{json_map, path_from_columns};
use crate::now_ms;

/// Every column [`execution`] decodes, in its order (the SQLite
/// backend's list).
pub(crate) const COLS: &str =
    "id, name, status, reason, exit_code, signal, pid, key, labels, command, cwd, env, \
    created_at, started_at, finished_at, host, tier, \
    sup_boot_id, sup_pid, sup_start_time, sup_pidfd_ino, pid_start_time, pid_pidfd_ino, \
    timeout_ms, kill_grace_ms, kill_requested_at, kill_requested_by, kill_request_reason, \
    kill_request_force, kill_request_grace_ms, kill_method, kill_duration_ms, processes_signalled, \
    stdout_path, stderr_path, version, cgroup, heartbeat_timeout_ms, idle_timeout_ms, \
    max_memory_bytes, last_heartbeat_at, progress, cpu_ms, max_rss_bytes, cwd_bytes, agent_id, \
    job, job_number, attempt, retries, retry_backoff_ms, retry_max_backoff_ms, retry_of, \
    start_after, workspace_kind, workspace_path, workspace_repo, workspace_branch";

fn bad(column: &str, what: impl std::fmt::Display) -> Fail {
    Fail::Decode(format!("the stored {column} does not decode: {what}"))
}

fn unsigned(r: &Row, i: usize) -> PgResult<Option<u64>> {
    Ok(r.try_get::<_, Option<i64>>(i)?.map(|v| v as u64))
}

/// One row of [`COLS`] as an execution.
pub(crate) fn execution(r: &Row) -> PgResult<Execution> {
    let id: String = r.try_get(0)?;
    let status: String = r.try_get(2)?;
    let command: String = r.try_get(9)?;
    let sup_boot: String = r.try_get(17)?;
    let pid: Option<i32> = r.try_get(6)?;
    Ok(Execution {
        id: ExecutionId::parse(&id).map_err(|e| bad("id", e))?,
        name: r.try_get(1)?,
        status: status.parse().map_err(|e| bad("status", e))?,
        reason: r.try_get(3)?,
        exit_code: r.try_get(4)?,
        signal: r.try_get(5)?,
        pid,
        key: r.try_get(7)?,
        labels: json_map(r.try_get(8)?),
        command: serde_json::from_str(&command).map_err(|e| bad("command", e))?,
        cwd: path_from_columns(r.try_get(10)?, r.try_get(44)?),
        env: json_map(r.try_get(11)?),
        created_at: r.try_get(12)?,
        started_at: r.try_get(13)?,
        finished_at: r.try_get(14)?,
        host: r.try_get(15)?,
        tier: r
            .try_get::<_, String>(16)?
            .parse()
            .map_err(|e: String| bad("tier", e))?,
        process: process_of(r, pid, &sup_boot)?,
        supervisor: ProcessIdentity {
            boot_id: sup_boot,
            pid: r.try_get(18)?,
            start_time: r.try_get::<_, i64>(19)? as u64,
            pidfd_ino: unsigned(r, 20)?,
        },
        timeout_ms: unsigned(r, 23)?,
        kill_grace_ms: r.try_get::<_, i64>(24)? as u64,
        kill_request: kill_request_of(r)?,
        kill_method: r
            .try_get::<_, Option<String>>(30)?
            .as_deref()
            .and_then(KillMethod::parse),
        kill_duration_ms: unsigned(r, 31)?,
        processes_signalled: unsigned(r, 32)?.map(|v| v as u32),
        stdout_path: r.try_get(33)?,
        stderr_path: r.try_get(34)?,
        version: r.try_get(35)?,
        cgroup: r.try_get(36)?,
        heartbeat_timeout_ms: unsigned(r, 37)?,
        idle_timeout_ms: unsigned(r, 38)?,
        max_memory_bytes: unsigned(r, 39)?,
        last_heartbeat_at: r.try_get(40)?,
        progress: r.try_get(41)?,
        cpu_ms: unsigned(r, 42)?,
        max_rss_bytes: unsigned(r, 43)?,
        agent_id: r.try_get(45)?,
        job: r.try_get(46)?,
        job_number: unsigned(r, 47)?,
        attempt: unsigned(r, 48)?.map(|v| v as u32),
        retries: r.try_get::<_, i64>(49)? as u32,
        retry_backoff_ms: unsigned(r, 50)?,
        retry_max_backoff_ms: unsigned(r, 51)?,
        retry_of: r
            .try_get::<_, Option<String>>(52)?
            .map(|s| ExecutionId::parse(&s).map_err(|e| bad("retry_of", e)))
            .transpose()?,
        start_after: r.try_get(53)?,
        workspace: workspace_of(r)?,
    })
}

/// Every row of a query as executions.
pub(crate) fn executions(rows: Vec<Row>) -> PgResult<Vec<Execution>> {
    rows.iter().map(execution).collect()
}

/// The workspace, if the run has one (columns 54 to 57).
fn workspace_of(r: &Row) -> PgResult<Option<tend_model::Workspace>> {
    let (Some(kind), Some(path)) = (r.try_get::<_, Option<String>>(54)?, r.try_get(55)?) else {
        return Ok(None);
    };
    Ok(Some(tend_model::Workspace {
        kind: kind.parse().map_err(|e: String| bad("workspace_kind", e))?,
        path,
        repository: r.try_get(56)?,
        branch: r.try_get(57)?,
    }))
}

/// The command's identity, once it started: it runs on the supervisor's boot.
fn process_of(r: &Row, pid: Option<i32>, boot_id: &str) -> PgResult<Option<ProcessIdentity>> {
    let pid_start: Option<i64> = r.try_get(21)?;
    Ok(match (pid, pid_start) {
        (Some(pid), Some(st)) => Some(ProcessIdentity {
            boot_id: boot_id.to_string(),
            pid,
            start_time: st as u64,
            pidfd_ino: unsigned(r, 22)?,
        }),
        _ => None,
    })
}

/// The kill asked for, if one was (columns 25 to 29).
fn kill_request_of(r: &Row) -> PgResult<Option<KillRequested>> {
    Ok(match r.try_get::<_, Option<i64>>(25)? {
        Some(at) => Some(KillRequested {
            at,
            by: r.try_get::<_, Option<String>>(26)?.unwrap_or_default(),
            reason: r.try_get(27)?,
            force: r.try_get::<_, Option<bool>>(28)?.unwrap_or(false),
            grace_ms: unsigned(r, 29)?,
        }),
        None => None,
    })
}

/// One execution by full id, if it is there.
pub(crate) fn get_in(c: &mut impl GenericClient, id: &str) -> PgResult<Option<Execution>> {
    let sql = format!("SELECT {COLS} FROM tend.executions WHERE id = $1");
    c.query_opt(&sql, &[&id])?
        .as_ref()
        .map(execution)
        .transpose()
}

/// One execution by full id, or [`crate::Error::NotFound`].
pub(crate) fn must_get(c: &mut impl GenericClient, id: &ExecutionId) -> PgResult<Execution> {
    get_in(c, id.as_str())?.ok_or_else(|| Fail::Ledger(crate::Error::NotFound(id.to_string())))
}

/// Appends an event of an execution.
pub(crate) fn insert_event(
    c: &mut impl GenericClient,
    id: &str,
    kind: EventKind,
    actor: &Actor,
    details: &serde_json::Value,
) -> PgResult<()> {
    c.execute(
        "INSERT INTO tend.events (execution_id, at, kind, actor, details) VALUES ($1, $2, $3, $4, $5)",
        &[
            &id,
            &now_ms(),
            &kind.as_str(),
            &actor.to_string(),
            &details.to_string(),
        ],
    )?;
    Ok(())
}

/// The `transition-refused` event of a caller that lost a race, and the
/// row as the winner left it.
pub(crate) fn refused(
    c: &mut impl GenericClient,
    id: &ExecutionId,
    actor: &Actor,
    details: serde_json::Value,
) -> PgResult<Execution> {
    let current = must_get(c, id)?;
    let mut details = details;
    details["actual"] = serde_json::json!(current.status);
    insert_event(
        c,
        id.as_str(),
        EventKind::TransitionRefused,
        actor,
        &details,
    )?;
    Ok(current)
}
