//! The alert outbox in SQLite. Rows are queued by the triggers of
//! migration 7 (an outcome that is lost, timed out or failed; a
//! `fire-missed` job event) in the transaction that causes them, and by
//! [`set_level`]; a sender claims them with a lease and finishes them.
//! Every function that writes runs inside the caller's transaction.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;
use tend_model::{Actor, AlertKind, EventKind, ExecutionId};

use crate::{now_ms, Alert, AlertCounts, AlertOutcome, Error, Result};

const COLS: &str = "id, kind, execution_id, job, details, created_at, attempts, delivered_to";

fn row_to_alert(r: &Row<'_>) -> rusqlite::Result<Alert> {
    let bad = |i: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into())
    };
    let kind: String = r.get(1)?;
    let execution: Option<String> = r.get(2)?;
    let details: String = r.get(4)?;
    let delivered: String = r.get(7)?;
    Ok(Alert {
        id: r.get(0)?,
        kind: kind.parse::<AlertKind>().map_err(|e| bad(1, e))?,
        execution: execution
            .map(|id| ExecutionId::parse(&id).map_err(|e| bad(2, e.to_string())))
            .transpose()?,
        job: r.get(3)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        created_at: r.get(5)?,
        attempts: r.get::<_, i64>(6)? as u32,
        delivered_to: serde_json::from_str(&delivered).unwrap_or_default(),
    })
}

/// The level stored for `name`, if any.
pub(super) fn stored_level(conn: &Connection, name: &str) -> Result<Option<String>> {
    conn.query_row(
        "SELECT level FROM alert_levels WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
    .map_err(Error::storage("reading an alert level"))
}

/// See [`crate::Ledger::set_alert_level`].
pub(super) fn set_level(
    conn: &Connection,
    name: &str,
    level: &str,
    quiet: &str,
    kind: AlertKind,
    details: &serde_json::Value,
) -> Result<bool> {
    let doing = "recording an alert level";
    let before = stored_level(conn, name)?;
    if before.as_deref().unwrap_or(quiet) == level {
        if before.is_none() {
            conn.execute(
                "INSERT INTO alert_levels (name, level, changed_at) VALUES (?1, ?2, ?3)",
                params![name, level, now_ms()],
            )
            .map_err(Error::storage(doing))?;
        }
        return Ok(false);
    }
    let now = now_ms();
    conn.execute(
        "INSERT INTO alert_levels (name, level, changed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET level = ?2, changed_at = ?3",
        params![name, level, now],
    )
    .map_err(Error::storage(doing))?;
    let mut details = details.clone();
    if let Some(d) = details.as_object_mut() {
        d.insert("level".into(), json!(level));
        d.insert("previous".into(), json!(before.as_deref().unwrap_or(quiet)));
    }
    conn.execute(
        "INSERT INTO alerts (kind, details, created_at, next_at) VALUES (?1, ?2, ?3, ?3)",
        params![kind.as_str(), details.to_string(), now],
    )
    .map_err(Error::storage("queueing an alert"))?;
    Ok(true)
}

/// See [`crate::Ledger::claim_alerts`].
pub(super) fn claim(conn: &Connection, by: &str, lease_ms: i64, limit: u32) -> Result<Vec<Alert>> {
    let now = now_ms();
    let mut q = conn
        .prepare_cached(&format!(
            "UPDATE alerts SET claimed_by = ?1, claim_until = ?2 WHERE id IN \
             (SELECT id FROM alerts WHERE state = 'queued' AND next_at <= ?3 \
              AND (claim_until IS NULL OR claim_until <= ?3) ORDER BY id LIMIT ?4) \
             RETURNING {COLS}"
        ))
        .map_err(Error::storage("claiming alerts"))?;
    let mut alerts: Vec<Alert> = q
        .query_map(
            params![by, now.saturating_add(lease_ms), now, limit],
            row_to_alert,
        )
        .and_then(|rows| rows.collect())
        .map_err(Error::storage("claiming alerts"))?;
    alerts.sort_by_key(|a| a.id);
    Ok(alerts)
}

/// See [`crate::Ledger::release_alerts`].
pub(super) fn release(conn: &Connection, by: &str) -> Result<u64> {
    conn.execute(
        "UPDATE alerts SET claimed_by = NULL, claim_until = NULL \
         WHERE state = 'queued' AND claimed_by = ?1",
        [by],
    )
    .map(|n| n as u64)
    .map_err(Error::storage("releasing alert claims"))
}

/// See [`crate::Ledger::finish_alert`].
pub(super) fn finish(conn: &Connection, id: i64, by: &str, o: &AlertOutcome) -> Result<bool> {
    let now = now_ms();
    let list = |v: &[String]| serde_json::to_string(v).expect("strings serialise");
    let (state, next_at, error, delivered) = match o {
        AlertOutcome::Delivered { delivered_to } => ("delivered", None, None, list(delivered_to)),
        AlertOutcome::Retry {
            at,
            error,
            delivered_to,
        } => (
            "queued",
            Some(*at),
            Some(error.as_str()),
            list(delivered_to),
        ),
        AlertOutcome::Failed {
            error,
            delivered_to,
        } => ("failed", None, Some(error.as_str()), list(delivered_to)),
        AlertOutcome::Skipped { why } => ("skipped", None, Some(why.as_str()), "[]".into()),
    };
    let tried = i64::from(!matches!(o, AlertOutcome::Skipped { .. }));
    let row = conn
        .query_row(
            &format!(
                "UPDATE alerts SET state = ?3, attempts = attempts + ?4, \
                 next_at = COALESCE(?5, next_at), last_error = COALESCE(?6, last_error), \
                 delivered_to = ?7, done_at = CASE WHEN ?3 = 'queued' THEN NULL ELSE ?8 END, \
                 claimed_by = NULL, claim_until = NULL \
                 WHERE id = ?1 AND state = 'queued' AND claimed_by = ?2 RETURNING {COLS}"
            ),
            params![id, by, state, tried, next_at, error, delivered, now],
            row_to_alert,
        )
        .optional()
        .map_err(Error::storage("finishing an alert"))?;
    let Some(alert) = row else {
        return Ok(false);
    };
    let kind = match o {
        AlertOutcome::Delivered { .. } => EventKind::AlertSent,
        AlertOutcome::Failed { .. } => EventKind::AlertFailed,
        _ => return Ok(true),
    };
    record_event(conn, &alert, kind, error)?;
    Ok(true)
}

/// The `alert-sent` or `alert-failed` event, on the execution (if it is
/// still in the ledger) or the job the alert is about; alerts about
/// neither (long-running, health) keep their row in the outbox only.
fn record_event(
    conn: &Connection,
    alert: &Alert,
    kind: EventKind,
    error: Option<&str>,
) -> Result<()> {
    let details = json!({
        "alert": alert.id, "alert_kind": alert.kind, "attempts": alert.attempts,
        "webhooks": alert.delivered_to.len(), "error": error,
    })
    .to_string();
    let actor = Actor::Alerts.to_string();
    let doing = Error::storage("recording an alert's event");
    if let Some(id) = &alert.execution {
        conn.execute(
            "INSERT INTO events (execution_id, at, kind, actor, details) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM executions WHERE id = ?1)",
            params![id.as_str(), now_ms(), kind.as_str(), actor, details],
        )
        .map_err(doing)?;
    } else if let Some(job) = &alert.job {
        conn.execute(
            "INSERT INTO job_events (job, at, kind, actor, details) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job, now_ms(), kind.as_str(), actor, details],
        )
        .map_err(doing)?;
    }
    Ok(())
}

/// See [`crate::Ledger::next_alert_at`].
pub(super) fn next_at(conn: &Connection) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT MIN(MAX(next_at, COALESCE(claim_until, 0))) FROM alerts WHERE state = 'queued'",
        [],
        |r| r.get(0),
    )
    .map_err(Error::storage("reading the next alert"))
}

/// See [`crate::Ledger::alert_counts`].
pub(super) fn counts(conn: &Connection, failed_since: i64) -> Result<AlertCounts> {
    let doing = "counting alerts";
    let (queued, failed): (i64, i64) = conn
        .query_row(
            "SELECT COALESCE(SUM(state = 'queued'), 0), \
             COALESCE(SUM(state = 'failed' AND done_at >= ?1), 0) FROM alerts",
            [failed_since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(Error::storage(doing))?;
    let last_error = conn
        .query_row(
            "SELECT last_error FROM alerts WHERE state = 'failed' AND done_at >= ?1 \
             ORDER BY done_at DESC LIMIT 1",
            [failed_since],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::storage(doing))?
        .flatten();
    Ok(AlertCounts {
        queued: queued as u64,
        failed: failed as u64,
        last_error,
    })
}

/// Deletes at most `limit` alerts queued before `before`; how many went.
pub(crate) fn prune(conn: &Connection, before: i64, limit: i64) -> Result<u64> {
    conn.execute(
        "DELETE FROM alerts WHERE id IN \
         (SELECT id FROM alerts WHERE created_at < ?1 ORDER BY id LIMIT ?2)",
        params![before, limit],
    )
    .map(|n| n as u64)
    .map_err(Error::storage("pruning alerts"))
}

/// A copied ledger sends none of the original's alerts (they are the
/// original's to send): every queued one is skipped, in the copy only.
pub(super) fn skip_copied(conn: &Connection) -> Result<()> {
    conn.execute(
        "UPDATE alerts SET state = 'skipped', done_at = ?1, claimed_by = NULL, claim_until = NULL, \
         last_error = 'the ledger file is a copy: alerts queued before the copy are the original''s' \
         WHERE state = 'queued'",
        [now_ms()],
    )
    .map(drop)
    .map_err(Error::storage("skipping a copy's alerts"))
}
