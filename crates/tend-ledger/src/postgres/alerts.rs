//! The alert outbox in PostgreSQL. Rows are queued by the triggers of the
//! schema (an outcome that is lost, timed out or failed; a `fire-missed`
//! job event) in the transaction that causes them, and by [`set_level`]; a
//! sender claims them with a lease (`FOR UPDATE SKIP LOCKED`, so racing
//! senders never take the same row) and finishes them. Every function that
//! writes runs inside the caller's transaction.

use postgres::{GenericClient, Row, Transaction};
use serde_json::json;
use tend_model::{Actor, AlertKind, EventKind, ExecutionId};

use super::client::{Fail, PgResult};
use crate::{now_ms, Alert, AlertCounts, AlertOutcome};

const COLS: &str = "id, kind, execution_id, job, details, created_at, attempts, delivered_to";

/// The first key of the advisory locks on a level's name.
const LEVEL_LOCK: i32 = 0x746c; // "tl"

fn row_to_alert(r: &Row) -> PgResult<Alert> {
    let bad = |what: String| Fail::Decode(format!("a stored alert does not decode: {what}"));
    let kind: String = r.try_get(1)?;
    let execution: Option<String> = r.try_get(2)?;
    let details: String = r.try_get(4)?;
    let delivered: String = r.try_get(7)?;
    Ok(Alert {
        id: r.try_get(0)?,
        kind: kind.parse::<AlertKind>().map_err(bad)?,
        execution: execution
            .map(|id| ExecutionId::parse(&id).map_err(|e| bad(e.to_string())))
            .transpose()?,
        job: r.try_get(3)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        created_at: r.try_get(5)?,
        attempts: r.try_get::<_, i64>(6)? as u32,
        delivered_to: serde_json::from_str(&delivered).unwrap_or_default(),
    })
}

/// The level stored for `name`, if any.
pub(crate) fn stored_level(c: &mut impl GenericClient, name: &str) -> PgResult<Option<String>> {
    let row = c.query_opt(
        "SELECT level FROM tend.alert_levels WHERE name = $1",
        &[&name],
    )?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// See [`crate::Ledger::set_alert_level`]. The level's advisory lock makes
/// the read and the write one step for racing daemons: one queues.
pub(crate) fn set_level(
    tx: &mut Transaction<'_>,
    name: &str,
    level: &str,
    quiet: &str,
    kind: AlertKind,
    details: &serde_json::Value,
) -> PgResult<bool> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LEVEL_LOCK, &name],
    )?;
    let before = stored_level(tx, name)?;
    let now = now_ms();
    if before.as_deref().unwrap_or(quiet) == level {
        if before.is_none() {
            tx.execute(
                "INSERT INTO tend.alert_levels (name, level, changed_at) VALUES ($1, $2, $3)",
                &[&name, &level, &now],
            )?;
        }
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO tend.alert_levels (name, level, changed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET level = $2, changed_at = $3",
        &[&name, &level, &now],
    )?;
    let mut details = details.clone();
    if let Some(d) = details.as_object_mut() {
        d.insert("level".into(), json!(level));
        d.insert("previous".into(), json!(before.as_deref().unwrap_or(quiet)));
    }
    tx.execute(
        "INSERT INTO tend.alerts (kind, details, created_at, next_at) VALUES ($1, $2, $3, $3)",
        &[&kind.as_str(), &details.to_string(), &now],
    )?;
    Ok(true)
}

/// See [`crate::Ledger::claim_alerts`].
pub(crate) fn claim(
    tx: &mut Transaction<'_>,
    by: &str,
    lease_ms: i64,
    limit: u32,
) -> PgResult<Vec<Alert>> {
    let now = now_ms();
    let sql = format!(
        "UPDATE tend.alerts SET claimed_by = $1, claim_until = $2 WHERE id IN \
         (SELECT id FROM tend.alerts WHERE state = 'queued' AND next_at <= $3 \
          AND (claim_until IS NULL OR claim_until <= $3) ORDER BY id LIMIT $4 \
          FOR UPDATE SKIP LOCKED) RETURNING {COLS}"
    );
    let rows = tx.query(
        &sql,
        &[&by, &now.saturating_add(lease_ms), &now, &i64::from(limit)],
    )?;
    let mut alerts: Vec<Alert> = rows.iter().map(row_to_alert).collect::<PgResult<_>>()?;
    alerts.sort_by_key(|a| a.id);
    Ok(alerts)
}

/// See [`crate::Ledger::release_alerts`].
pub(crate) fn release(tx: &mut Transaction<'_>, by: &str) -> PgResult<u64> {
    Ok(tx.execute(
        "UPDATE tend.alerts SET claimed_by = NULL, claim_until = NULL \
         WHERE state = 'queued' AND claimed_by = $1",
        &[&by],
    )?)
}

/// The columns an outcome sets: state, next time, error, delivered list.
fn outcome_columns(o: &AlertOutcome) -> (&'static str, Option<i64>, Option<&str>, String) {
    let list = |v: &[String]| serde_json::to_string(v).expect("strings serialise");
    match o {
        AlertOutcome::Delivered { delivered_to } => ("delivered", None, None, list(delivered_to)),
        AlertOutcome::Retry {
            at,
            error,
            delivered_to,
        } => ("queued", Some(*at), Some(error), list(delivered_to)),
        AlertOutcome::Failed {
            error,
            delivered_to,
        } => ("failed", None, Some(error), list(delivered_to)),
        AlertOutcome::Skipped { why } => ("skipped", None, Some(why), "[]".into()),
    }
}

/// See [`crate::Ledger::finish_alert`].
pub(crate) fn finish(
    tx: &mut Transaction<'_>,
    id: i64,
    by: &str,
    o: &AlertOutcome,
) -> PgResult<bool> {
    let (state, next_at, error, delivered) = outcome_columns(o);
    let tried = i64::from(!matches!(o, AlertOutcome::Skipped { .. }));
    let sql = format!(
        "UPDATE tend.alerts SET state = $3, attempts = attempts + $4, \
         next_at = COALESCE($5, next_at), last_error = COALESCE($6, last_error), \
         delivered_to = $7, done_at = CASE WHEN $3 = 'queued' THEN NULL ELSE $8::BIGINT END, \
         claimed_by = NULL, claim_until = NULL \
         WHERE id = $1 AND state = 'queued' AND claimed_by = $2 RETURNING {COLS}"
    );
    let row = tx.query_opt(
        &sql,
        &[
            &id,
            &by,
            &state,
            &tried,
            &next_at,
            &error,
            &delivered,
            &now_ms(),
        ],
    )?;
    let Some(alert) = row.as_ref().map(row_to_alert).transpose()? else {
        return Ok(false);
    };
    let kind = match o {
        AlertOutcome::Delivered { .. } => EventKind::AlertSent,
        AlertOutcome::Failed { .. } => EventKind::AlertFailed,
        _ => return Ok(true),
    };
    record_event(tx, &alert, kind, error)?;
    Ok(true)
}

/// The `alert-sent` or `alert-failed` event, on the execution (if it is
/// still in the ledger) or the job the alert is about.
fn record_event(
    tx: &mut Transaction<'_>,
    alert: &Alert,
    kind: EventKind,
    error: Option<&str>,
) -> PgResult<()> {
    let details = json!({
        "alert": alert.id, "alert_kind": alert.kind, "attempts": alert.attempts,
        "webhooks": alert.delivered_to.len(), "error": error,
    })
    .to_string();
    let actor = Actor::Alerts.to_string();
    if let Some(id) = &alert.execution {
        tx.execute(
            "INSERT INTO tend.events (execution_id, at, kind, actor, details) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM tend.executions WHERE id = $1)",
            &[&id.as_str(), &now_ms(), &kind.as_str(), &actor, &details],
        )?;
    } else if let Some(job) = &alert.job {
        super::jobs::insert_event(
            tx,
            job,
            kind,
            &Actor::Alerts,
            &serde_json::from_str(&details).unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// See [`crate::Ledger::next_alert_at`].
pub(crate) fn next_at(c: &mut impl GenericClient) -> PgResult<Option<i64>> {
    Ok(c.query_one(
        "SELECT MIN(GREATEST(next_at, COALESCE(claim_until, 0))) FROM tend.alerts \
         WHERE state = 'queued'",
        &[],
    )?
    .try_get(0)?)
}

/// See [`crate::Ledger::alert_counts`].
pub(crate) fn counts(c: &mut impl GenericClient, failed_since: i64) -> PgResult<AlertCounts> {
    let r = c.query_one(
        "SELECT count(*) FILTER (WHERE state = 'queued'), \
         count(*) FILTER (WHERE state = 'failed' AND done_at >= $1) FROM tend.alerts",
        &[&failed_since],
    )?;
    let last_error: Option<Option<String>> = c
        .query_opt(
            "SELECT last_error FROM tend.alerts WHERE state = 'failed' AND done_at >= $1 \
             ORDER BY done_at DESC LIMIT 1",
            &[&failed_since],
        )?
        .map(|r| r.try_get(0))
        .transpose()?;
    Ok(AlertCounts {
        queued: r.try_get::<_, i64>(0)? as u64,
        failed: r.try_get::<_, i64>(1)? as u64,
        last_error: last_error.flatten(),
    })
}

/// Deletes at most `limit` alerts queued before `before`; how many went.
pub(crate) fn prune(tx: &mut Transaction<'_>, before: i64, limit: i64) -> PgResult<u64> {
    Ok(tx.execute(
        "DELETE FROM tend.alerts WHERE id IN \
         (SELECT id FROM tend.alerts WHERE created_at < $1 ORDER BY id LIMIT $2)",
        &[&before, &limit],
    )?)
}
