//! Waiting for executions to end, woken by events.
//!
//! Subscribe first, read second: the inotify watch on the exit-file folder
//! is in place before the ledger is read, so an exit committed in between
//! still wakes us. Each live execution's supervisor is also watched through
//! its pidfd, so a supervisor that dies without writing an exit file wakes
//! us too, and the execution is reconciled to `lost` on the spot.

use std::time::{Duration, Instant};

use crate::notify::{drain, watch_dir};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tend_ledger::Ledger;
use tend_model::{Execution, ExecutionId};
use tend_proc::{procfs, Pidfd, Verified};

use crate::{reaper, Error, Home};

/// Blocks until every execution in `ids` is terminal, and returns their
/// rows in the same order; `Ok(None)` if `timeout` passed first.
pub fn wait_until_done<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    ids: &[ExecutionId],
    timeout: Option<Duration>,
) -> Result<Option<Vec<Execution>>, Error> {
    let host = procfs::hostname();
    // A supervisor exits right after it commits the outcome, so on this host
    // its pidfd is the whole wake-up. Notification files (inotify) are only
    // needed for executions supervised elsewhere — and only then paid for:
    // closing an inotify descriptor waits for an RCU grace period (~10 ms).
    let remote = ids
        .iter()
        .any(|id| ledger.get(id).is_ok_and(|e| !crate::is_local(&e, &host)));
    let watch = if remote {
        Some(watch_dir(&home.notify_dir())?)
    } else {
        None
    };
    // A timeout too far away to be an instant is no timeout at all.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    // Overdue timeouts already looked at: a supervisor that is merely slow
    // is not looked at again and again.
    let mut looked: Vec<ExecutionId> = Vec::new();
    loop {
        let mut rows = Vec::with_capacity(ids.len());
        let mut supervisors: Vec<Pidfd> = Vec::new();
        let mut rechecked = false;
        let mut wake_at: Option<i64> = None;
        for id in ids {
            let mut e = ledger.get(id)?;
            if let Some(at) = reaper::overdue_at(&e).filter(|_| !looked.contains(id)) {
                if tend_ledger::now_ms() >= at {
                    // A stopped supervisor cannot time out by itself.
                    looked.push(id.clone());
                    reaper::reconcile_one(ledger, home, &e, &host)?;
                    e = ledger.get(id)?;
                } else {
                    wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                }
            }
            if !e.status.is_terminal() && crate::is_local(&e, &host) {
                match Pidfd::open_verified(&e.supervisor)
                    .map_err(Error::io("checking a supervisor"))?
                {
                    Verified::Alive(fd) => supervisors.push(fd),
                    _ => {
                        reaper::reconcile_one(ledger, home, &e, &host)?;
                        rechecked = true;
                    }
                }
            }
            rows.push(e);
        }
        if rechecked {
            continue;
        }
        if rows.iter().all(|e| e.status.is_terminal()) {
            return Ok(Some(rows));
        }
        let give_up = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                Some(left)
            }
            None => None,
        };
        let overdue_in =
            wake_at.map(|at| Duration::from_millis((at - tend_ledger::now_ms()).max(0) as u64));
        let left = match (give_up, overdue_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|d| Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        });
        let mut fds: Vec<PollFd<'_>> = watch
            .iter()
            .map(|w| PollFd::new(w, PollFlags::IN))
            .collect();
        fds.extend(supervisors.iter().map(|s| PollFd::new(s, PollFlags::IN)));
        match poll(&mut fds, left.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("waiting for an exit")(e.into())),
        }
        if let Some(w) = &watch {
            drain(w);
        }
    }
}
