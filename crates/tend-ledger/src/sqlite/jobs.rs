//! Jobs in SQLite: definitions, the never-reused counters, fire claims and
//! job events. Every function runs inside the caller's transaction.

use rusqlite::{params, Connection, OptionalExtension, Row};
use tend_model::job::{Job, JobDefinition, JobEvent};
use tend_model::{Actor, EventKind};

use crate::{now_ms, Claim, Error, FireOutcome, FireStats, Result};

const JOB_COLS: &str = "j.name, j.run, j.schedule, j.timezone, j.concurrency, j.catch_up, \
    j.paused, j.created_at, j.fires_after, COALESCE(c.next_number, 1)";

fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Job> {
    let bad = |i: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into())
    };
    let run: String = r.get(1)?;
    Ok(Job {
        definition: JobDefinition {
            name: r.get(0)?,
            run: serde_json::from_str(&run).map_err(|e| bad(1, e.to_string()))?,
            schedule: r.get(2)?,
            timezone: r.get(3)?,
            concurrency: r.get::<_, String>(4)?.parse().map_err(|e| bad(4, e))?,
            catch_up: r.get::<_, String>(5)?.parse().map_err(|e| bad(5, e))?,
        },
        paused: r.get::<_, i64>(6)? != 0,
        created_at: r.get(7)?,
        fires_after: r.get(8)?,
        next_number: r.get::<_, i64>(9)? as u64,
    })
}

/// One job by name.
pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<Job>> {
    conn.query_row(
        &format!(
            "SELECT {JOB_COLS} FROM jobs j LEFT JOIN job_counters c ON c.job = j.name \
             WHERE j.name = ?1"
        ),
        [name],
        row_to_job,
    )
    .optional()
    .map_err(Error::storage("reading a job"))
}

/// Every job, by name.
pub(super) fn all(conn: &Connection) -> Result<Vec<Job>> {
    let mut q = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM jobs j LEFT JOIN job_counters c ON c.job = j.name \
             ORDER BY j.name"
        ))
        .map_err(Error::storage("listing jobs"))?;
    q.query_map([], row_to_job)
        .and_then(|rows| rows.collect())
        .map_err(Error::storage("listing jobs"))
}

/// Stores `def`; a replaced job keeps its creation time, pause and
/// counter, and owes no fire from before now.
pub(super) fn add(conn: &Connection, def: &JobDefinition, replace: bool) -> Result<Job> {
    let now = now_ms();
    let run = serde_json::to_string(&def.run).expect("run options serialise");
    let exists = get(conn, &def.name)?.is_some();
    if exists && !replace {
        return Err(Error::JobExists(def.name.clone()));
    }
    let sql = if exists {
        "UPDATE jobs SET run = ?2, schedule = ?3, timezone = ?4, concurrency = ?5, \
         catch_up = ?6, fires_after = ?7 WHERE name = ?1"
    } else {
        "INSERT INTO jobs (name, run, schedule, timezone, concurrency, catch_up, created_at, \
         fires_after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)"
    };
    conn.execute(
        sql,
        params![
            def.name,
            run,
            def.schedule,
            def.timezone,
            def.concurrency.as_str(),
            def.catch_up.as_str(),
            now
        ],
    )
    .map_err(Error::storage("storing a job"))?;
    get(conn, &def.name)?.ok_or_else(|| Error::NoJob(def.name.clone()))
}

/// Pauses or resumes; a resume owes no fire from the pause.
pub(super) fn set_paused(conn: &Connection, name: &str, paused: bool) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE jobs SET paused = ?2, \
             fires_after = CASE WHEN paused = 1 AND ?2 = 0 THEN ?3 ELSE fires_after END \
             WHERE name = ?1",
            params![name, paused as i64, now_ms()],
        )
        .map_err(Error::storage("pausing a job"))?;
    if n == 0 {
        return Err(Error::NoJob(name.to_string()));
    }
    Ok(())
}

/// The job's next number, spent: the counter row is created on first use
/// and never deleted.
pub(super) fn take_number(conn: &Connection, job: &str) -> Result<i64> {
    conn.query_row(
        "INSERT INTO job_counters (job, next_number) VALUES (?1, 2) \
         ON CONFLICT (job) DO UPDATE SET next_number = next_number + 1 \
         RETURNING next_number - 1",
        [job],
        |r| r.get(0),
    )
    .map_err(Error::storage("numbering a job's execution"))
}

/// Decides one fire: inserted only when no fire at or after it is decided.
pub(super) fn claim(
    conn: &Connection,
    job: &str,
    at: i64,
    by: &str,
    outcome: FireOutcome,
) -> Result<Claim> {
    let previous = last_fire(conn, job)?;
    if previous.is_some_and(|p| p >= at) {
        return Ok(Claim::Taken);
    }
    let n = conn
        .execute(
            "INSERT INTO job_fires (job, scheduled_at, decided_at, decided_by, outcome) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (job, scheduled_at) DO NOTHING",
            params![job, at, now_ms(), by, outcome.as_str()],
        )
        .map_err(Error::storage("claiming a fire"))?;
    Ok(if n == 1 {
        Claim::Won { previous }
    } else {
        Claim::Taken
    })
}

/// The latest decided fire of a job.
pub(super) fn last_fire(conn: &Connection, job: &str) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT MAX(scheduled_at) FROM job_fires WHERE job = ?1",
        [job],
        |r| r.get(0),
    )
    .map_err(Error::storage("reading a job's fires"))
}

/// The newest fire `by` decided to run since `since_ms` that no execution
/// was recorded for.
pub(super) fn unlaunched_fire(
    conn: &Connection,
    job: &str,
    by: &str,
    since_ms: i64,
) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT f.scheduled_at FROM job_fires f WHERE f.job = ?1 AND f.decided_by = ?2 \
         AND f.outcome = 'fired' AND f.decided_at >= ?3 AND NOT EXISTS \
         (SELECT 1 FROM executions e WHERE e.job = f.job AND e.job_slot = f.scheduled_at) \
         ORDER BY f.scheduled_at DESC LIMIT 1",
        params![job, by, since_ms],
        |r| r.get(0),
    )
    .optional()
    .map_err(Error::storage("reading a job's fires"))
}

/// Appends a job event.
pub(super) fn insert_event(
    conn: &Connection,
    job: &str,
    kind: EventKind,
    actor: &Actor,
    details: &serde_json::Value,
) -> Result<()> {
    conn.execute(
        "INSERT INTO job_events (job, at, kind, actor, details) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            job,
            now_ms(),
            kind.as_str(),
            actor.to_string(),
            details.to_string()
        ],
    )
    .map(drop)
    .map_err(Error::storage("recording a job event"))
}

/// A job's events, oldest first.
pub(super) fn events(conn: &Connection, job: &str) -> Result<Vec<JobEvent>> {
    let mut q = conn
        .prepare_cached(
            "SELECT seq, job, at, kind, actor, details FROM job_events WHERE job = ?1 ORDER BY seq",
        )
        .map_err(Error::storage("reading job events"))?;
    q.query_map([job], |r| {
        let details: String = r.get(5)?;
        Ok(JobEvent {
            seq: r.get(0)?,
            job: r.get(1)?,
            at: r.get(2)?,
            kind: r.get(3)?,
            actor: r.get(4)?,
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(Error::storage("reading job events"))
}

/// Fired and skipped fires from `job_fires`, missed ones from the counts
/// in `fire-missed` events (one event stands for many), since `since`.
pub(super) fn stats(conn: &Connection, since: i64) -> Result<Vec<FireStats>> {
    let doing = Error::storage("counting fires");
    let mut out: std::collections::BTreeMap<String, FireStats> = Default::default();
    let mut q = conn
        .prepare_cached(
            "SELECT job, outcome, count(*) FROM job_fires WHERE decided_at >= ?1 \
             GROUP BY job, outcome",
        )
        .map_err(doing)?;
    let rows: Vec<(String, String, i64)> = q
        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|r| r.collect())
        .map_err(Error::storage("counting fires"))?;
    for (job, outcome, n) in rows {
        let s = out.entry(job.clone()).or_insert_with(|| FireStats {
            job,
            ..FireStats::default()
        });
        match outcome.as_str() {
            "fired" => s.fired += n as u64,
            "skipped" => s.skipped += n as u64,
            _ => {}
        }
    }
    let mut q = conn
        .prepare_cached(
            "SELECT job, COALESCE(SUM(json_extract(details, '$.missed')), 0) FROM job_events \
             WHERE kind = 'fire-missed' AND at >= ?1 GROUP BY job",
        )
        .map_err(Error::storage("counting missed fires"))?;
    let rows: Vec<(String, i64)> = q
        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|r| r.collect())
        .map_err(Error::storage("counting missed fires"))?;
    for (job, n) in rows {
        out.entry(job.clone())
            .or_insert_with(|| FireStats {
                job,
                ..FireStats::default()
            })
            .missed += n as u64;
    }
    Ok(out.into_values().collect())
}
