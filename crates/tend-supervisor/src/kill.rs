//! Killing executions from any tend process.
//!
//! The request is stored in the ledger first (so it is audited and survives
//! a crash of the asker), then the supervisor is nudged with SIGUSR1 through
//! a verified pidfd and performs the kill itself — it alone knows the whole
//! tree. If the supervisor is dead, the asker reconciles the execution,
//! which ends what is left of it with identity checks.

use std::time::Duration;

use tend_ledger::{KillRequest, Ledger};
use tend_model::Execution;
use tend_proc::{procfs, Pidfd, Sig, Verified};

use crate::{reaper, wait_until_done, Error, Home};

/// What a kill did to one execution.
#[derive(Debug, Clone)]
pub struct KillResult {
    /// The row after the kill.
    pub execution: Execution,
    /// True when it had already ended: nothing was signalled.
    pub already_finished: bool,
}

/// Asks for each of `targets` to be killed — stored in the ledger, then the
/// supervisor nudged (or, if it is dead, the execution reconciled at once) —
/// without waiting. Returns, per target, whether it had already finished.
pub fn request<L: Ledger>(
    ledger: &L,
    home: &Home,
    targets: &[Execution],
    req: &KillRequest,
) -> Result<Vec<bool>, Error> {
    let host = procfs::hostname();
    let mut finished = Vec::with_capacity(targets.len());
    for e in targets {
        if e.status.is_terminal() {
            finished.push(true);
            continue;
        }
        let row = ledger.request_kill(&e.id, req)?;
        if row.status.is_terminal() {
            finished.push(true);
            continue;
        }
        finished.push(false);
        if crate::is_local(&row, &host) {
            match Pidfd::open_verified(&row.supervisor)
                .map_err(Error::io("checking the supervisor"))?
            {
                Verified::Alive(fd) => {
                    fd.signal(Sig::Usr1)
                        .map_err(Error::io("nudging the supervisor"))?;
                }
                _ => {
                    reaper::reconcile_one(ledger, home, &row, &host)?;
                }
            }
        }
    }
    Ok(finished)
}

/// Kills every execution in `targets` at once (so their grace periods run
/// side by side) and waits until each outcome is committed.
pub fn kill<L: Ledger>(
    ledger: &L,
    home: &Home,
    targets: &[Execution],
    req: &KillRequest,
) -> Result<Vec<KillResult>, Error> {
    let finished = request(ledger, home, targets, req)?;
    let pending: Vec<_> = targets
        .iter()
        .zip(&finished)
        .filter(|(_, done)| !**done)
        .map(|(e, _)| e.id.clone())
        .collect();
    let mut done = wait_until_done(ledger, home, &pending, None::<Duration>)?
        .expect("a wait without a timeout returns only when done")
        .into_iter();
    Ok(targets
        .iter()
        .zip(finished)
        .map(|(e, already)| {
            if already {
                let execution = ledger.get(&e.id).unwrap_or_else(|_| e.clone());
                KillResult {
                    execution,
                    already_finished: true,
                }
            } else {
                KillResult {
                    execution: done.next().expect("one row per pending id"),
                    already_finished: false,
                }
            }
        })
        .collect())
}
