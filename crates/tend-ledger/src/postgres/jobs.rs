//! Jobs in PostgreSQL: definitions, the never-reused counters, fire claims
//! and job events. Every function runs inside the caller's transaction (or
//! on its client). Where SQLite's serialized writers make a read-then-write
//! safe, PostgreSQL gets a lock: a fire claim holds a transaction-scoped
//! advisory lock on its job, so a claim never slips in before a later one
//! decided at the same moment.

use postgres::{GenericClient, Row, Transaction};
use tend_model::job::{Job, JobDefinition, JobEvent};
use tend_model::{Actor, EventKind};

use super::client::{Fail, PgResult};
use crate::{now_ms, Claim, Error, FireOutcome, FireStats};

const JOB_COLS: &str = "j.name, j.run, j.schedule, j.timezone, j.concurrency, j.catch_up, \
    j.paused, j.created_at, j.fires_after, COALESCE(c.next_number, 1)";

/// The first key of the advisory locks on a job's fires (the second is the
/// hash of its name).
const FIRE_LOCK: i32 = 0x7466; // "tf"

fn bad(column: &str, what: impl std::fmt::Display) -> Fail {
    Fail::Decode(format!("the stored job {column} does not decode: {what}"))
}

fn row_to_job(r: &Row) -> PgResult<Job> {
    let run: String = r.try_get(1)?;
    Ok(Job {
        definition: JobDefinition {
            name: r.try_get(0)?,
            run: serde_json::from_str(&run).map_err(|e| bad("run", e))?,
            schedule: r.try_get(2)?,
            timezone: r.try_get(3)?,
            concurrency: r
                .try_get::<_, String>(4)?
                .parse()
                .map_err(|e: String| bad("concurrency", e))?,
            catch_up: r
                .try_get::<_, String>(5)?
                .parse()
                .map_err(|e: String| bad("catch_up", e))?,
        },
        paused: r.try_get(6)?,
        created_at: r.try_get(7)?,
        fires_after: r.try_get(8)?,
        next_number: r.try_get::<_, i64>(9)? as u64,
    })
}

/// One job by name.
pub(crate) fn get(c: &mut impl GenericClient, name: &str) -> PgResult<Option<Job>> {
    let sql = format!(
        "SELECT {JOB_COLS} FROM tend.jobs j LEFT JOIN tend.job_counters c ON c.job = j.name \
         WHERE j.name = $1"
    );
    c.query_opt(&sql, &[&name])?
        .as_ref()
        .map(row_to_job)
        .transpose()
}

/// One job by name, or [`Error::NoJob`].
pub(crate) fn must_get(c: &mut impl GenericClient, name: &str) -> PgResult<Job> {
    get(c, name)?.ok_or_else(|| Fail::Ledger(Error::NoJob(name.to_string())))
}

/// Every job, by name (byte order, as SQLite sorts).
pub(crate) fn all(c: &mut impl GenericClient) -> PgResult<Vec<Job>> {
    let sql = format!(
        "SELECT {JOB_COLS} FROM tend.jobs j LEFT JOIN tend.job_counters c ON c.job = j.name \
         ORDER BY j.name"
    );
    c.query(&sql, &[])?.iter().map(row_to_job).collect()
}

/// Stores `def`; a replaced job keeps its creation time, pause and
/// counter, and owes no fire from before now. A name taken by a racing
/// add is [`Error::JobExists`], as a name taken before.
pub(crate) fn add(tx: &mut Transaction<'_>, def: &JobDefinition, replace: bool) -> PgResult<Job> {
    let run = serde_json::to_string(&def.run).expect("run options serialise");
    let conflict = if replace {
        "ON CONFLICT (name) DO UPDATE SET run = $2, schedule = $3, timezone = $4, \
         concurrency = $5, catch_up = $6, fires_after = $7"
    } else {
        "ON CONFLICT (name) DO NOTHING"
    };
    let sql = format!(
        "INSERT INTO tend.jobs (name, run, schedule, timezone, concurrency, catch_up, created_at, \
         fires_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) {conflict}"
    );
    let n = tx.execute(
        &sql,
        &[
            &def.name,
            &run,
            &def.schedule,
            &def.timezone,
            &def.concurrency.as_str(),
            &def.catch_up.as_str(),
            &now_ms(),
        ],
    )?;
    if n == 0 {
        return Err(Fail::Ledger(Error::JobExists(def.name.clone())));
    }
    must_get(tx, &def.name)
}

/// Pauses or resumes; a resume owes no fire from the pause.
pub(crate) fn set_paused(tx: &mut Transaction<'_>, name: &str, paused: bool) -> PgResult<Job> {
    let n = tx.execute(
        "UPDATE tend.jobs SET paused = $2, \
         fires_after = CASE WHEN paused AND NOT $2 THEN $3 ELSE fires_after END \
         WHERE name = $1",
        &[&name, &paused, &now_ms()],
    )?;
    if n == 0 {
        return Err(Fail::Ledger(Error::NoJob(name.to_string())));
    }
    must_get(tx, name)
}

/// Removes a job and returns it as it was.
pub(crate) fn remove(tx: &mut Transaction<'_>, name: &str) -> PgResult<Job> {
    let job = must_get(tx, name)?;
    tx.execute("DELETE FROM tend.jobs WHERE name = $1", &[&name])?;
    Ok(job)
}

/// The job's next number, spent: the counter row is created on first use
/// and never deleted.
pub(crate) fn take_number(tx: &mut Transaction<'_>, job: &str) -> PgResult<i64> {
    Ok(tx
        .query_one(
            "INSERT INTO tend.job_counters (job, next_number) VALUES ($1, 2) \
             ON CONFLICT (job) DO UPDATE SET next_number = tend.job_counters.next_number + 1 \
             RETURNING next_number - 1",
            &[&job],
        )?
        .try_get(0)?)
}

/// Decides one fire: inserted only when no fire at or after it is decided.
pub(crate) fn claim(
    tx: &mut Transaction<'_>,
    job: &str,
    at: i64,
    by: &str,
    outcome: FireOutcome,
) -> PgResult<Claim> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&FIRE_LOCK, &job],
    )?;
    let previous = last_fire(tx, job)?;
    if previous.is_some_and(|p| p >= at) {
        return Ok(Claim::Taken);
    }
    let n = tx.execute(
        "INSERT INTO tend.job_fires (job, scheduled_at, decided_at, decided_by, outcome) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job, scheduled_at) DO NOTHING",
        &[&job, &at, &now_ms(), &by, &outcome.as_str()],
    )?;
    Ok(if n == 1 {
        Claim::Won { previous }
    } else {
        Claim::Taken
    })
}

/// The latest decided fire of a job.
pub(crate) fn last_fire(c: &mut impl GenericClient, job: &str) -> PgResult<Option<i64>> {
    Ok(c.query_one(
        "SELECT MAX(scheduled_at) FROM tend.job_fires WHERE job = $1",
        &[&job],
    )?
    .try_get(0)?)
}

/// The newest fire `by` decided to run since `since_ms` that no execution
/// was recorded for.
pub(crate) fn unlaunched_fire(
    c: &mut impl GenericClient,
    job: &str,
    by: &str,
    since_ms: i64,
) -> PgResult<Option<i64>> {
    let row = c.query_opt(
        "SELECT f.scheduled_at FROM tend.job_fires f WHERE f.job = $1 AND f.decided_by = $2 \
         AND f.outcome = 'fired' AND f.decided_at >= $3 AND NOT EXISTS \
         (SELECT 1 FROM tend.executions e WHERE e.job = f.job AND e.job_slot = f.scheduled_at) \
         ORDER BY f.scheduled_at DESC LIMIT 1",
        &[&job, &by, &since_ms],
    )?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Appends a job event.
pub(crate) fn insert_event(
    c: &mut impl GenericClient,
    job: &str,
    kind: EventKind,
    actor: &Actor,
    details: &serde_json::Value,
) -> PgResult<()> {
    c.execute(
        "INSERT INTO tend.job_events (job, at, kind, actor, details) VALUES ($1, $2, $3, $4, $5)",
        &[
            &job,
            &now_ms(),
            &kind.as_str(),
            &actor.to_string(),
            &details.to_string(),
        ],
    )?;
    Ok(())
}

/// A job's events, oldest first.
pub(crate) fn events(c: &mut impl GenericClient, job: &str) -> PgResult<Vec<JobEvent>> {
    let rows = c.query(
        "SELECT seq, job, at, kind, actor, details FROM tend.job_events \
         WHERE job = $1 ORDER BY seq",
        &[&job],
    )?;
    rows.iter()
        .map(|r| {
            let details: String = r.try_get(5)?;
            Ok(JobEvent {
                seq: r.try_get(0)?,
                job: r.try_get(1)?,
                at: r.try_get(2)?,
                kind: r.try_get(3)?,
                actor: r.try_get(4)?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}

/// Fired and skipped fires from `job_fires`, missed ones from the counts
/// in `fire-missed` events (one event stands for many), since `since`.
pub(crate) fn stats(c: &mut impl GenericClient, since: i64) -> PgResult<Vec<FireStats>> {
    let mut out: std::collections::BTreeMap<String, FireStats> = Default::default();
    let entry = |job: String| {
        let key = job.clone();
        (
            key,
            FireStats {
                job,
                ..FireStats::default()
            },
        )
    };
    for r in c.query(
        "SELECT job, outcome, count(*) FROM tend.job_fires WHERE decided_at >= $1 \
         GROUP BY job, outcome",
        &[&since],
    )? {
        let (job, outcome, n): (String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let (key, fresh) = entry(job);
        let s = out.entry(key).or_insert(fresh);
        match outcome.as_str() {
            "fired" => s.fired += n as u64,
            "skipped" => s.skipped += n as u64,
            _ => {}
        }
    }
    // A `missed` that is not a whole number counts as SQLite's SUM over
    // json_extract would: its integer part.
    for r in c.query(
        "SELECT job, COALESCE(SUM(CASE WHEN jsonb_typeof(details::jsonb -> 'missed') = 'number' \
         THEN trunc((details::jsonb ->> 'missed')::numeric) END), 0)::BIGINT \
         FROM tend.job_events WHERE kind = 'fire-missed' AND at >= $1 GROUP BY job",
        &[&since],
    )? {
        let (job, n): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
        let (key, fresh) = entry(job);
        out.entry(key).or_insert(fresh).missed += n.max(0) as u64;
    }
    Ok(out.into_values().collect())
}
