//! `prune` over the PostgreSQL ledger: terminal executions created before a
//! cutoff go, with their events, in transactions of at most [`BATCH`] rows
//! (as in SQLite, so that no transaction holds many row locks for long);
//! the last few of each job stay whatever their age; a live execution is
//! never touched.

use tend_model::Execution;

use super::client::{Conn, PgResult};
use super::rows::{executions, COLS};
use crate::Result;

/// Rows deleted per transaction.
const BATCH: i64 = 500;

/// Terminal, ended (and so created) before `$1`, and not among the
/// `keep_last` newest of its job; at most `$2`. Age counts from the end, as
/// on SQLite.
fn candidates(keep_last: u32) -> String {
    format!(
        "SELECT {COLS} FROM tend.executions WHERE created_at < $1 \
         AND coalesce(finished_at, created_at) < $1 AND status NOT IN ('queued','running') \
         AND (job IS NULL OR id NOT IN (SELECT id FROM (SELECT id, row_number() OVER \
         (PARTITION BY job ORDER BY job_number DESC, attempt DESC) AS n FROM tend.executions \
         WHERE job IS NOT NULL) ranked WHERE n <= {keep_last})) ORDER BY created_at, seq LIMIT $2"
    )
}

/// See [`crate::Ledger::prune`].
pub(crate) fn prune(
    conn: &Conn,
    before_ms: i64,
    keep_last: u32,
    dry_run: bool,
) -> Result<Vec<Execution>> {
    let sql = candidates(keep_last);
    if dry_run {
        return conn.run("listing what to prune", |c| {
            executions(c.query(&sql, &[&before_ms, &i64::MAX])?)
        });
    }
    let mut gone = Vec::new();
    loop {
        let batch = conn.write("pruning", |tx| -> PgResult<Vec<Execution>> {
            let batch = executions(tx.query(&sql, &[&before_ms, &BATCH])?)?;
            let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
            tx.execute(
                "DELETE FROM tend.events WHERE execution_id = ANY($1)",
                &[&ids],
            )?;
            tx.execute(
                "DELETE FROM tend.executions WHERE id = ANY($1) \
                 AND status NOT IN ('queued','running')",
                &[&ids],
            )?;
            Ok(batch)
        })?;
        let done = (batch.len() as i64) < BATCH;
        gone.extend(batch);
        if done {
            return Ok(gone);
        }
    }
}

/// See [`crate::Ledger::prune_alerts`]: in batches of [`BATCH`] rows too.
pub(crate) fn prune_alerts(conn: &Conn, before_ms: i64) -> Result<u64> {
    let mut gone = 0;
    loop {
        let n = conn.write("pruning alerts", |tx| {
            super::alerts::prune(tx, before_ms, BATCH)
        })?;
        gone += n;
        if (n as i64) < BATCH {
            return Ok(gone);
        }
    }
}
