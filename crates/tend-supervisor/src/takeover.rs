//! Ending an execution in place of its supervisor: when the supervisor is
//! stopped, or has not carried a kill or an overdue timeout out in time,
//! whoever noticed (`tend kill`, a reconciling reader) ends the tree, commits
//! the ending saying why, and SIGKILLs the supervisor.

use std::time::Duration;

use serde_json::json;
use tend_ledger::{KillReport, Ledger, Outcome, Transition};
use tend_model::{Actor, EventKind, Execution, KillMethod, Status};
use tend_proc::{procfs, tree, Pidfd, Sig};

use crate::leftovers::{end_tree, Marks};
use crate::{Error, Home};

/// How long a running supervisor has, beyond the kill's grace, to carry a
/// kill out before the asker does it itself.
pub const ACT_WITHIN: Duration = Duration::from_secs(3);

/// How an execution ends when its supervisor cannot end it.
pub(crate) struct Ending {
    pub status: Status,
    /// What happened, before the "supervisor did not act" part.
    pub what: String,
    pub event: EventKind,
    pub actor: Actor,
    pub grace: Duration,
    /// When the ending was due (the kill request, the timeout), ms.
    pub since_ms: i64,
}

/// Ends `row`'s tree in place of its supervisor `sup` (descendants, cgroup,
/// marked processes; graceful then certain), commits the ending with the
/// real duration and the reason, then SIGKILLs the supervisor. Nothing is
/// committed while a process of the tree is still there.
pub(crate) fn end_without_supervisor<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    row: &Execution,
    sup: Pidfd,
    ending: Ending,
    why: &str,
) -> Result<(), Error> {
    let files = ledger.files();
    if !files.is_empty() && !procfs::holds_open(sup.pid(), &files) {
        // A supervisor that just committed its outcome closes the ledger
        // on its way out: that is not another copy of the file.
        if ledger.get(&row.id)?.status.is_terminal() {
            return Ok(());
        }
        return Err(Error::OtherLedger {
            id: row.id.to_string(),
        });
    }
    let by = &ending.actor;
    ledger.record(
        &row.id,
        EventKind::KillTakenOver,
        by,
        json!({ "supervisor_pid": sup.pid(), "why": why }),
    )?;
    let descendants = tree::open_descendants(sup.pid());
    let mut marks = Marks::default();
    let t = end_tree(ledger, row, by, &mut marks, descendants, ending.grace)?;
    if t.remaining > 0 {
        // Uninterruptible processes: the execution is not over; the
        // waiters keep waiting, as they would for the supervisor.
        return Ok(());
    }
    let outcome = Outcome {
        status: ending.status,
        reason: format!("{} ({why}; {by} ended the tree)", ending.what),
        exit_code: None,
        signal: None,
        kill: Some(KillReport {
            method: if t.forced || ending.grace.is_zero() {
                KillMethod::Forced
            } else {
                KillMethod::Graceful
            },
            duration_ms: (tend_ledger::now_ms() - ending.since_ms).max(0) as u64,
            processes_signalled: t.signalled,
        }),
        usage: None,
        event: ending.event,
        actor: by.clone(),
        details: json!({ "supervisor_pid": sup.pid(), "taken_over": why }),
    };
    if let Transition::Won(e) = ledger.transition(&row.id, row.status, &outcome)? {
        home.notifier().announce(&e.id, e.status);
    }
    let _ = sup.signal(Sig::Kill);
    tree::wait_all(std::slice::from_ref(&sup), Duration::from_secs(5));
    Ok(())
}
