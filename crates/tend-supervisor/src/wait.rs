//! Waiting for executions to end, woken by events.
//!
//! Subscribe first, read second: a subscription to the home's
//! [`Notifier`](crate::Notifier) is in place before the ledger is read, so a
//! transition committed in between still wakes us. Each live execution's
//! supervisor is also watched through its pidfd, so a supervisor that dies
//! without committing wakes us too, and the execution is reconciled to
//! `lost` on the spot ([`verify_or_reconcile`]).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use tend_ledger::Ledger;
use tend_model::{Execution, ExecutionId};
use tend_proc::{procfs, Pidfd};

use crate::reaper::{self, verify_or_reconcile, Supervision};
use crate::{notify, Error, Home};

/// How often a wait looks again at a row only another agent can end, when
/// no healthy listener would wake it ([`Subscription::hears_remote`](crate::Subscription::hears_remote)).
const FOREIGN_RECHECK: Duration = Duration::from_secs(1);

/// Blocks until every execution in `ids` is terminal, and returns their
/// rows in the same order; `Ok(None)` if `timeout` passed first.
pub fn wait_until_done<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    ids: &[ExecutionId],
    timeout: Option<Duration>,
) -> Result<Option<Vec<Execution>>, Error> {
    let host = procfs::hostname();
    let shared = ledger.shared();
    // A supervisor exits right after it commits the outcome (unless it has
    // a retry to run), so on this host its pidfd is the whole wake-up. Announcements are only needed for
    // executions supervised elsewhere — and only then paid for: closing an
    // inotify descriptor waits for an RCU grace period (~10 ms).
    // A supervisor with retries goes on to the next attempt instead of
    // exiting: its attempts' ends are announced too.
    let remote = ids.iter().any(|id| {
        ledger
            .get(id)
            .is_ok_and(|e| !crate::supervised_here(shared, home, &e, &host) || e.retries > 0)
    });
    let mut transitions = if remote {
        Some(home.notifier().subscribe()?)
    } else {
        None
    };
    // A timeout too far away to be an instant is no timeout at all.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    // Overdue timeouts already looked at: a supervisor that is merely slow
    // is not looked at again and again.
    let mut looked: Vec<ExecutionId> = Vec::new();
    loop {
        let Some(pass) = look(ledger, home, ids, &mut looked)? else {
            continue;
        };
        if pass.rows.iter().all(|e| e.status.is_terminal()) {
            return Ok(Some(pass.rows));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        let overdue = pass.wake_at.and_then(|at| {
            let left = (at - tend_ledger::now_ms()).max(0) as u64;
            Instant::now().checked_add(Duration::from_millis(left))
        });
        // Another agent announces in its own home, not ours: its ending
        // of a foreign row wakes us through the ledger's listener, and is
        // looked for once a second while there is none (SQLite) or it is
        // not healthy.
        let hears = transitions.as_ref().is_some_and(|t| t.hears_remote());
        let backstop = (pass.foreign && !hears).then(|| Instant::now() + FOREIGN_RECHECK);
        let until = deadline.into_iter().chain(overdue).chain(backstop).min();
        let mut fds: Vec<BorrowedFd<'_>> = transitions.iter().map(|t| t.as_fd()).collect();
        fds.extend(pass.supervisors.iter().map(Pidfd::as_fd));
        notify::wait_any(&fds, until)?;
        if let Some(t) = &mut transitions {
            t.take();
        }
    }
}

/// One look at every waited execution.
struct Pass {
    /// The rows, in the order asked for.
    rows: Vec<Execution>,
    /// A pidfd on each live execution's supervisor on this host.
    supervisors: Vec<Pidfd>,
    /// The earliest moment a running execution becomes overdue (ms).
    wake_at: Option<i64>,
    /// A live row whose supervisor is gone is another agent's to end.
    foreign: bool,
}

/// Reads every execution in `ids` and pins each live one's supervisor;
/// carries out timeouts that are overdue (once per execution: `looked`).
/// `None` when one had to be reconciled: then look again.
fn look<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    ids: &[ExecutionId],
    looked: &mut Vec<ExecutionId>,
) -> Result<Option<Pass>, Error> {
    let mut pass = Pass {
        rows: Vec::with_capacity(ids.len()),
        supervisors: Vec::new(),
        wake_at: None,
        foreign: false,
    };
    let mut rechecked = false;
    for id in ids {
        let mut e = ledger.get(id)?;
        if let Some(at) = reaper::overdue_at(&e).filter(|_| !looked.contains(id)) {
            if tend_ledger::now_ms() >= at {
                // A stopped supervisor cannot time out by itself.
                looked.push(id.clone());
                reaper::reconcile_execution(ledger, home, &e)?;
                e = ledger.get(id)?;
            } else {
                pass.wake_at = Some(pass.wake_at.map_or(at, |w| w.min(at)));
            }
        }
        match verify_or_reconcile(ledger, home, &e)? {
            Supervision::Alive(fd) => pass.supervisors.push(fd),
            Supervision::Gone(Some(_)) => rechecked = true,
            // Its supervisor is gone but the row is another agent's to
            // reconcile (another home on a shared store): looking again at
            // once would spin; that agent's reaper will end it.
            Supervision::Gone(None) => pass.foreign = true,
            // Supervised on another host: its end is announced there, so it
            // is looked for here once a second too.
            Supervision::NotHere => pass.foreign |= !e.status.is_terminal(),
        }
        pass.rows.push(e);
    }
    Ok((!rechecked).then_some(pass))
}
