//! `prune` over the SQLite ledger: terminal executions that ended before a
//! cutoff go, with their events, in short write transactions of at most
//! [`BATCH`] rows, so that supervisors recording their own executions are
//! never held up for long; the last few of each job stay whatever their
//! age; a live execution is never touched.

use rusqlite::params;
use tend_model::Execution;

use crate::sqlite::{row_to_execution, SqliteLedger, COLS};
use crate::{Error, Result};

/// Rows deleted per write transaction.
const BATCH: i64 = 500;

/// Terminal, ended (and so created) before `before_ms`, and not among the
/// `keep_last` newest of its job. Age counts from the end, so a run that
/// outlived the retention is still there to be seen after it ends.
fn candidates(keep_last: u32) -> String {
    format!(
        "SELECT {COLS} FROM executions WHERE created_at < ?1 AND coalesce(finished_at, created_at) < ?1 \
         AND status NOT IN ('queued','running') \
         AND (job IS NULL OR id NOT IN (SELECT id FROM (SELECT id, row_number() OVER \
         (PARTITION BY job ORDER BY job_number DESC, attempt DESC) AS n FROM executions WHERE job IS NOT NULL) \
         WHERE n <= {keep_last})) ORDER BY created_at LIMIT ?2"
    )
}

impl SqliteLedger {
    /// See [`crate::Ledger::prune`].
    pub(crate) fn prune_rows(
        &self,
        before_ms: i64,
        keep_last: u32,
        dry_run: bool,
    ) -> Result<Vec<Execution>> {
        let sql = candidates(keep_last);
        if dry_run {
            let mut stmt = self
                .conn
                .prepare(&sql)
                .map_err(Error::storage("listing what to prune"))?;
            return stmt
                .query_map(params![before_ms, i64::MAX], row_to_execution)
                .and_then(|r| r.collect())
                .map_err(Error::storage("listing what to prune"));
        }
        let mut gone = Vec::new();
        loop {
            let tx = self.write()?;
            let batch: Vec<Execution> = {
                let mut stmt = tx.prepare(&sql).map_err(Error::storage("pruning"))?;
                stmt.query_map(params![before_ms, BATCH], row_to_execution)
                    .and_then(|r| r.collect())
                    .map_err(Error::storage("pruning"))?
            };
            for e in &batch {
                tx.execute(
                    "DELETE FROM events WHERE execution_id = ?1",
                    [e.id.as_str()],
                )
                .map_err(Error::storage("pruning"))?;
                tx.execute(
                    "DELETE FROM executions WHERE id = ?1 AND status NOT IN ('queued','running')",
                    [e.id.as_str()],
                )
                .map_err(Error::storage("pruning"))?;
            }
            tx.commit().map_err(Error::storage("pruning"))?;
            let done = (batch.len() as i64) < BATCH;
            gone.extend(batch);
            if done {
                return Ok(gone);
            }
        }
    }

    /// See [`crate::Ledger::prune_alerts`]: in batches of [`BATCH`] rows too.
    pub(crate) fn prune_alert_rows(&self, before_ms: i64) -> Result<u64> {
        let mut gone = 0;
        loop {
            let tx = self.write()?;
            let n = crate::sqlite::prune_alerts(&tx, before_ms, BATCH)?;
            tx.commit().map_err(Error::storage("pruning alerts"))?;
            gone += n;
            if (n as i64) < BATCH {
                return Ok(gone);
            }
        }
    }
}
