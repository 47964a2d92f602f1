//! Agent leases in PostgreSQL (`tend.agents`, migration 10): the renewal
//! (one upsert per interval, judged and stamped by the database clock), the
//! rows peers read, and a reaper's claim on an expired agent. The claim
//! locks the agent's row with `FOR UPDATE SKIP LOCKED`, re-checks the epoch
//! it saw expire under that lock, and marks the agent's live executions
//! `lost` in the same transaction: of racing reapers one makes the verdict,
//! and a renewal that waits on the lock finds the lease expired and takes a
//! new epoch.

use postgres::{GenericClient, Transaction};
use serde_json::json;
use tend_model::{Actor, EventKind, ExecutionId, Status};

use super::client::PgResult;
use super::executions::transition_in;
use super::rows::{execution, COLS};
use crate::lease::{expired_reason, AgentLease, ExpiredClaim, LeaseHolder, Renewed};
use crate::{Outcome, Transition};

const EXPIRED: &str = "tend.lease_expired(a.renewed_at, a.server_started, a.ttl_ms)";

/// Renews (or first takes) `holder`'s lease for `ttl_ms`: one statement,
/// one row written whatever the number of executions.
pub(crate) fn renew(
    c: &mut impl GenericClient,
    holder: &LeaseHolder,
    ttl_ms: i64,
) -> PgResult<Renewed> {
    let sql = format!(
        "INSERT INTO tend.agents AS a (agent_id, host, api, epoch, ttl_ms, renewed_at, \
         server_started, acquired_at, renewals) \
         VALUES ($1, $2, $3, 1, $4, now(), pg_postmaster_start_time(), now(), 1) \
         ON CONFLICT (agent_id) DO UPDATE SET \
         epoch = CASE WHEN {EXPIRED} THEN a.epoch + 1 ELSE a.epoch END, \
         acquired_at = CASE WHEN {EXPIRED} THEN now() ELSE a.acquired_at END, \
         host = EXCLUDED.host, api = EXCLUDED.api, ttl_ms = EXCLUDED.ttl_ms, \
         renewed_at = now(), server_started = pg_postmaster_start_time(), \
         renewals = a.renewals + 1 \
         RETURNING epoch, renewals, acquired_at = renewed_at"
    );
    let row = c.query_one(
        &sql,
        &[&holder.agent_id, &holder.host, &holder.api, &ttl_ms],
    )?;
    Ok(Renewed {
        epoch: row.try_get(0)?,
        renewals: row.try_get(1)?,
        fresh: row.try_get(2)?,
    })
}

/// Every agent's lease, by agent id.
pub(crate) fn all(c: &mut impl GenericClient) -> PgResult<Vec<AgentLease>> {
    let sql = format!(
        "SELECT agent_id, host, api, epoch, ttl_ms, renewals, {EXPIRED}, claimed_epoch, claimed_by \
         FROM tend.agents a ORDER BY agent_id"
    );
    let mut out = Vec::new();
    for r in c.query(&sql, &[])? {
        let claimed: Option<i64> = r.try_get(7)?;
        let by: Option<String> = r.try_get(8)?;
        out.push(AgentLease {
            agent_id: r.try_get(0)?,
            host: r.try_get(1)?,
            api: r.try_get(2)?,
            epoch: r.try_get(3)?,
            ttl_ms: r.try_get(4)?,
            renewals: r.try_get(5)?,
            expired: r.try_get(6)?,
            claimed: claimed.zip(by),
        });
    }
    Ok(out)
}

/// The agents other than `by` whose lease expired while they still have
/// live executions: (agent, host, epoch). A plain read, no lock: most
/// passes find none and write nothing.
pub(crate) fn expired_with_live(
    c: &mut impl GenericClient,
    by: &str,
) -> PgResult<Vec<(String, String, i64)>> {
    let sql = format!(
        "SELECT a.agent_id, a.host, a.epoch FROM tend.agents a \
         WHERE a.agent_id <> $1 AND {EXPIRED} AND EXISTS (SELECT 1 FROM tend.executions e \
         WHERE e.agent_id = a.agent_id AND e.status IN ('queued','running'))"
    );
    let rows = c.query(&sql, &[&by])?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Claims the expired agent `agent` at `epoch` for the reaper of `by` and
/// marks its live executions `lost`, in the caller's transaction (see the
/// module's documentation).
pub(crate) fn claim(
    tx: &mut Transaction<'_>,
    by: &str,
    agent: &str,
    host: &str,
    epoch: i64,
) -> PgResult<ExpiredClaim> {
    let sql = format!(
        "SELECT 1 FROM tend.agents a WHERE a.agent_id = $1 AND a.epoch = $2 AND {EXPIRED} \
         FOR UPDATE SKIP LOCKED"
    );
    let already = |tx: &mut Transaction<'_>| -> PgResult<ExpiredClaim> {
        let by: Option<String> = tx
            .query_opt(
                "SELECT claimed_by FROM tend.agents WHERE agent_id = $1",
                &[&agent],
            )?
            .map(|r| r.try_get(0))
            .transpose()?
            .flatten();
        Ok(ExpiredClaim::AlreadyClaimed {
            agent_id: agent.to_string(),
            epoch,
            by,
        })
    };
    if tx.query_opt(&sql, &[&agent, &epoch])?.is_none() {
        return already(tx);
    }
    let rows = tx.query(
        &format!(
            "SELECT {COLS} FROM tend.executions WHERE agent_id = $1 \
             AND status IN ('queued','running') ORDER BY seq FOR UPDATE SKIP LOCKED"
        ),
        &[&agent],
    )?;
    let mut lost = Vec::new();
    for r in &rows {
        let e = execution(r)?;
        if let Transition::Won(row) = mark(tx, &e.id, e.status, by, agent, host, epoch)? {
            lost.push(row);
        }
    }
    if lost.is_empty() {
        return already(tx);
    }
    tx.execute(
        "UPDATE tend.agents SET claimed_epoch = $2, claimed_by = $3, claimed_at = now() \
         WHERE agent_id = $1",
        &[&agent, &epoch, &by],
    )?;
    Ok(ExpiredClaim::Claimed {
        agent_id: agent.to_string(),
        host: host.to_string(),
        epoch,
        lost,
    })
}

/// One execution of the expired agent to `lost`, with its event.
fn mark(
    tx: &mut Transaction<'_>,
    id: &ExecutionId,
    was: Status,
    by: &str,
    agent: &str,
    host: &str,
    epoch: i64,
) -> PgResult<Transition> {
    let outcome = Outcome {
        status: Status::Lost,
        reason: expired_reason(agent, host),
        exit_code: None,
        signal: None,
        kill: None,
        usage: None,
        event: EventKind::MarkedLost,
        actor: Actor::Reaper,
        details: json!({ "agent": agent, "host": host, "epoch": epoch, "judged_by": by }),
    };
    transition_in(tx, id, was, &outcome)
}
