//! Fencing by the agent: when its lease could not be renewed for nearly
//! the TTL (by its own clock), the daemon ends this home's trees before any
//! peer may judge them `lost`. The ledger is likely out of reach, so it
//! cannot store kill requests: it leaves a fence request in the home for
//! each supervisor it knows and nudges it (the supervisor ends its tree,
//! graceful then certain, and records the outcome once the ledger answers,
//! unless a peer's `lost` stood first); whatever marked process of the home
//! is left after the grace it ends itself. Each step is in the log.

use std::time::{Duration, Instant};

use tend_proc::{Pidfd, Sig, Verified};
use tend_supervisor::lease::{request_fence, Fence};

use crate::AppState;

/// Runs until aborted: sleeps until the fence is due (a renewal moves that
/// moment, and wakes it), then fences.
pub(crate) async fn fencer(state: AppState) {
    loop {
        let lease = state.lease();
        let renewed = lease.renewed.notified();
        match lease.fence_at() {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    _ = renewed => continue,
                }
            }
            None => {
                renewed.await;
                continue;
            }
        }
        if let Some(since) = lease.take_fence() {
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || fence(&s, since)).await;
        }
    }
}

/// Ends every tree of this home (see the module's documentation).
fn fence(state: &AppState, since: Duration) {
    let lease = state.lease();
    let home = &state.config().home;
    let grace = lease.times.fence_grace(lease.grace);
    let reason = format!(
        "its agent could not renew its lease for {} and the lease would expire",
        tend_model::format_duration(since)
    );
    let known = lease.known();
    tracing::warn!(
        executions = known.len(), since = ?since, ttl = ?lease.times.ttl,
        "the lease was not renewed in time: fencing this home's executions before it can expire"
    );
    let started = Instant::now();
    for (id, sup) in &known {
        let Ok(Verified::Alive(fd)) = Pidfd::open_verified(sup) else {
            continue;
        };
        let f = Fence {
            reason: reason.clone(),
            grace_ms: grace.as_millis() as u64,
        };
        match request_fence(home, id.as_str(), &f).and_then(|()| fd.signal(Sig::Usr1)) {
            Ok(_) => {
                tracing::info!(id = %id, supervisor = sup.pid, "asked the supervisor to fence its tree")
            }
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "cannot ask the supervisor to fence its tree")
            }
        }
    }
    // The supervisors had the grace; what is left of the home now is ended
    // here, before the margin runs out.
    std::thread::sleep((grace + lease.times.margin() / 4).saturating_sub(started.elapsed()));
    let agent = home.agent().ok().map(|a| a.id);
    let left: Vec<Pidfd> = tend_supervisor::marked_processes(&lease.ledger_id, agent.as_deref())
        .into_iter()
        .map(|(fd, _)| fd)
        .collect();
    if left.is_empty() {
        tracing::warn!(
            executions = known.len(),
            "fenced: no process of this home's executions runs"
        );
        return;
    }
    let t = tend_proc::tree::terminate(&left, Duration::ZERO, Duration::from_secs(1));
    tracing::warn!(
        processes = t.signalled,
        remaining = t.remaining,
        "fenced: ended the processes of this home's executions that were still running"
    );
}
