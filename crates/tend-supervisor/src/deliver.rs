//! Kill requests that reach this home's agent through a shared ledger: on
//! PostgreSQL an asker on another host (or another home) cannot nudge the
//! supervisor, so it records the request, which the ledger NOTIFYs, and
//! this agent's daemon carries it out ([`deliver`]) exactly as a local
//! `tend kill` would: SIGUSR1 to the supervisor through a verified pidfd,
//! and, when the supervisor has not acted within the grace plus
//! [`ACT_WITHIN`], the tree ended in its place.
//! The supervisor commits the outcome, whose NOTIFY wakes the asker.
//!
//! A daemon that (re)connects first LISTENs, then sweeps
//! ([`undelivered`]): requests made while it was down or disconnected are
//! carried out then.

use tend_ledger::{KillRequest, Ledger};
use tend_model::{Actor, Execution};

use crate::kill::{enforce, grace_of, nudge, ACT_WITHIN};
use crate::{wait_until_done, Error, Home};

/// The live executions of this home's agent that carry a kill request:
/// what a daemon carries out when it starts or its listener reconnects.
pub fn undelivered<L: Ledger + ?Sized>(ledger: &L, home: &Home) -> Result<Vec<Execution>, Error> {
    let ours = home.agent().map_err(Error::io("reading the agent id"))?.id;
    Ok(ledger
        .live()?
        .into_iter()
        .filter(|e| e.agent_id.as_deref() == Some(&ours) && e.kill_request.is_some())
        .collect())
}

/// Carries out the kill request stored on `row` (an execution of this
/// home's agent) and waits until its outcome is committed; returns the row
/// then. `None` when there is nothing to do: no request, another agent's
/// row, or it had ended already. A request the supervisor is already
/// carrying out is only nudged again, which changes nothing.
pub fn deliver<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    row: &Execution,
) -> Result<Option<Execution>, Error> {
    let Some(k) = row.kill_request.as_ref() else {
        return Ok(None);
    };
    if row.status.is_terminal() || crate::another_agents(home, row) || row.agent_id.is_none() {
        return Ok(None);
    }
    let req = KillRequest {
        actor: k
            .by
            .parse()
            .unwrap_or_else(|_| Actor::User(Some(k.by.clone()))),
        reason: k.reason.clone(),
        force: k.force,
        grace_ms: k.grace_ms,
    };
    nudge(ledger, home, row, &req)?;
    let ids = [row.id.clone()];
    let bound = grace_of(row, &req) + ACT_WITHIN;
    if wait_until_done(ledger, home, &ids, Some(bound))?.is_none() {
        enforce(ledger, home, &row.id, &req, bound)?;
    }
    let done = wait_until_done(ledger, home, &ids, None)?;
    Ok(done.and_then(|rows| rows.into_iter().next()))
}
