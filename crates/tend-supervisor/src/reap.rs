//! [`reap`]: the one reaper pass that `tend reap` and `POST /api/v1/reap`
//! make, and the report both print.

use std::time::Duration;

use tend_ledger::Ledger;
use tend_model::wire::{MarkedLost, Reaped, StrayProcess};

use crate::{reconcile, reconcile_dry_run, sweep_stragglers, Error, Home};

/// Reconciles every live execution of this host (those whose supervision is
/// gone become `lost`, their trees ended), then ends the processes of this
/// ledger whose execution is terminal or unknown, each gracefully within
/// `grace`. With `dry_run` it changes nothing and reports what it would do.
pub fn reap<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    dry_run: bool,
    grace: Duration,
) -> Result<Reaped, Error> {
    let lost = if dry_run {
        reconcile_dry_run(ledger, home)?
            .into_iter()
            .map(|(e, reason)| MarkedLost {
                id: e.id.to_string(),
                was: e.status,
                reason: reason.to_string(),
                processes_ended: 0,
            })
            .collect()
    } else {
        reconcile(ledger, home)?
            .into_iter()
            .map(|r| MarkedLost {
                id: r.execution.id.to_string(),
                was: r.was,
                reason: r.execution.reason.unwrap_or_default(),
                processes_ended: r.processes_ended,
            })
            .collect()
    };
    let stragglers = sweep_stragglers(ledger, home, dry_run, grace)?
        .into_iter()
        .map(|s| StrayProcess {
            pid: s.pid,
            execution_id: s.execution_id,
            execution_status: s.status,
        })
        .collect();
    Ok(Reaped {
        lost,
        stragglers,
        dry_run,
    })
}
