//! Renewing the lease (one write per interval, on a thread of its own with
//! its own connection, so that a ledger that hangs delays nothing else),
//! and, after each renewal, claiming the executions of peers whose lease
//! expired. A renewal that follows failures first ends the home's marked
//! processes whose executions are no longer running: a peer may have
//! judged them `lost` meanwhile.

use std::time::Instant;

use tend_ledger::{ExpiredClaim, LeaseHolder, Ledger};

use crate::AppState;

/// The renewer's connection, kept from one renewal to the next (a new
/// one costs a round of authentication).
pub(crate) type Conn = Option<Box<dyn Ledger>>;

/// The first renewal, before the daemon answers anything: it starts no
/// work without a lease. A failure is logged; the renewer keeps trying on
/// the connection this returns.
pub(crate) async fn first_renewal(state: &AppState) -> Conn {
    if !state.lease().shared {
        return None;
    }
    let s = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut ledger = None;
        renew_once(&s, &mut ledger);
        ledger
    })
    .await
    .ok()
    .flatten()
}

/// Starts the renewer thread and the fencer task (nothing on SQLite).
/// The thread ends when the daemon stops; the task is aborted with it.
pub(crate) fn spawn(state: &AppState, conn: Conn) -> Option<tokio::task::JoinHandle<()>> {
    if !state.lease().shared {
        return None;
    }
    let s = state.clone();
    let spawned = std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || renewer(s, conn));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the lease renewer; the lease will lapse and this home's executions be fenced");
    }
    Some(tokio::spawn(super::fence::fencer(state.clone())))
}

fn renewer(state: AppState, conn: Conn) {
    let interval = state.lease().times.interval;
    let mut ledger = conn;
    let mut next = Instant::now() + interval;
    while !state.is_stopping() {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        if renew_once(&state, &mut ledger) {
            if let Some(l) = ledger.as_deref() {
                claim_expired(&state, l);
            }
        }
        // A renewal that took longer than an interval is not followed by
        // a burst of them.
        next = next.max(Instant::now());
    }
}

fn holder(state: &AppState) -> Option<LeaseHolder> {
    Some(LeaseHolder {
        agent_id: state.config().home.agent().ok()?.id,
        host: tend_proc::procfs::hostname(),
        api: Some(state.listen().to_string()),
    })
}

/// One renewal; `true` when it succeeded.
fn renew_once(state: &AppState, ledger: &mut Option<Box<dyn Ledger>>) -> bool {
    let lease = state.lease();
    let Some(holder) = holder(state) else {
        tracing::error!("cannot read this home's agent id; the lease is not renewed");
        return false;
    };
    let sent = Instant::now();
    match renew(state, ledger, &holder) {
        Ok(epoch) => {
            let (before, was_failing) = lease.renewed_at(sent, epoch);
            match before {
                Some(b) if b != epoch => tracing::warn!(
                    epoch, before = b,
                    "the lease had expired and is taken anew: peers may have marked this home's executions of the epoch before lost"
                ),
                None => tracing::info!(epoch, agent = %holder.agent_id, "lease taken"),
                _ if was_failing => tracing::info!(epoch, "the ledger answers again; the lease is renewed"),
                _ => {}
            }
            true
        }
        Err(e) => {
            *ledger = None;
            if lease.failed() {
                tracing::warn!(error = %e, ttl = ?lease.times.ttl, "cannot renew the lease; retrying every interval, and this home's executions are fenced if it cannot be renewed before the TTL");
            }
            false
        }
    }
}

fn renew(
    state: &AppState,
    ledger: &mut Option<Box<dyn Ledger>>,
    holder: &LeaseHolder,
) -> Result<i64, tend_ledger::Error> {
    let lease = state.lease();
    if ledger.is_none() {
        *ledger = Some(tend_ledger::open(&state.config().store)?);
    }
    let l = ledger.as_deref().expect("opened above");
    if lease.failing() {
        sweep(state, l)?;
    }
    match l.renew_lease(holder, lease.times.ttl_ms())? {
        Some(r) => Ok(r.epoch),
        None => Ok(0),
    }
}

/// Ends the marked processes of this home whose executions are no longer
/// running (audited in the log), before the lease is renewed again.
fn sweep(state: &AppState, l: &dyn Ledger) -> Result<(), tend_ledger::Error> {
    let c = state.config();
    match tend_supervisor::sweep_stragglers(l, &c.home, false, c.run.kill_grace) {
        Ok(ended) if !ended.is_empty() => {
            let ids: Vec<&str> = ended.iter().map(|s| s.execution_id.as_str()).collect();
            tracing::warn!(processes = ended.len(), executions = ?ids, "ended marked processes of this home whose executions no longer run, before renewing the lease");
            state.note_reaped(0, ended.len());
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(tend_supervisor::Error::Ledger(e)) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "cannot sweep this home's stragglers");
            Ok(())
        }
    }
}

/// Marks the executions of peers whose lease expired `lost` (one verdict
/// per agent whoever races), and says what it found.
fn claim_expired(state: &AppState, l: &dyn Ledger) {
    let Some(me) = state.config().home.agent().ok().map(|a| a.id) else {
        return;
    };
    let claims = match l.claim_expired(&me) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for expired leases");
            return;
        }
    };
    for c in claims {
        match c {
            ExpiredClaim::Claimed {
                agent_id,
                host,
                epoch,
                lost,
            } => {
                tracing::warn!(agent = %agent_id, %host, epoch, executions = lost.len(), "an agent's lease expired: its live executions are marked lost");
                for e in &lost {
                    state.config().home.notifier().announce(&e.id, e.status);
                }
                state.note_reaped(lost.len(), 0);
            }
            ExpiredClaim::AlreadyClaimed {
                agent_id,
                epoch,
                by,
            } => tracing::info!(
                agent = %agent_id, epoch, by = by.as_deref().unwrap_or("another reaper"),
                "an agent's lease expired, and its executions were already claimed by another reaper"
            ),
        }
    }
}
