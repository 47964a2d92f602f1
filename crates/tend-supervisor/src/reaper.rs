//! Reconciling the ledger with the kernel.
//!
//! A live execution's supervisor is *provably* dead when its PID is gone,
//! when the PID now belongs to a process with another start time or pidfd
//! inode, or when the host booted since it was recorded. Nothing here relies
//! on time: on one host the kernel knows, so no lease or heartbeat is needed.

use std::time::Duration;

use serde_json::json;
use tend_ledger::{KillReport, Ledger, Outcome, Transition};
use tend_model::{Actor, EventKind, LostReason};
use tend_model::{Execution, ExecutionId, KillMethod, Status};
use tend_proc::{procfs, tree, Pidfd, Verified};

use crate::leftovers::{end_marked_with, Marks, SETTLE};
use crate::{Error, Home};

/// One execution the reaper marked `lost`.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The row after the change.
    pub execution: Execution,
    /// Status it had before.
    pub was: Status,
    /// Processes of its tree that were still alive and got ended.
    pub processes_ended: u32,
}

/// Checks every live execution of this host and marks those whose
/// supervision is gone `lost`, ending their leftover processes. Cheap when
/// nothing is wrong: one pidfd open and one `/proc` read per live execution.
pub fn reconcile<L: Ledger + ?Sized>(ledger: &L, home: &Home) -> Result<Vec<Reconciled>, Error> {
    let host = procfs::hostname();
    let mut out = Vec::new();
    // One scan of the host's processes for markers serves every execution
    // this pass finds lost, instead of one scan each.
    let mut marks = Marks::of(home);
    for e in ledger.live()? {
        if let Some(r) = reconcile_with(ledger, home, &e, &host, &mut marks)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Why `e`'s supervision is gone, or `None` if its supervisor is alive (or
/// it runs on another host, which only that host's lease can judge).
pub(crate) fn supervision_gone(e: &Execution, host: &str) -> Result<Option<LostReason>, Error> {
    if !crate::is_local(e, host) {
        return Ok(None);
    }
    let boot = procfs::boot_id().map_err(Error::io("reading the boot id"))?;
    if boot != e.supervisor.boot_id {
        return Ok(Some(LostReason::HostRebooted));
    }
    let v = Pidfd::open_verified(&e.supervisor).map_err(Error::io("checking a supervisor"))?;
    Ok(match v {
        Verified::Alive(_) => None,
        _ if e.status == Status::Queued => Some(LostReason::DiedBeforeStart),
        Verified::Gone => Some(LostReason::SupervisorDied),
        Verified::Mismatch(_) => Some(LostReason::SupervisorPidReused),
    })
}

/// Reconciles one execution: marks it `lost` (ending what is left of it) if
/// its supervision is gone, and ends it if its supervisor is stopped past
/// its timeout. Returns what changed, if anything.
pub fn reconcile_execution<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
) -> Result<Option<Reconciled>, Error> {
    reconcile_with(ledger, home, e, &procfs::hostname(), &mut Marks::of(home))
}

/// What [`verify_or_reconcile`] found about a row's supervisor.
#[derive(Debug)]
pub enum Supervision {
    /// Nothing for this host to check: the row is terminal, or supervised
    /// on another host (only that host's kernel, or its lease, can tell),
    /// or another agent's on a shared ledger (which counts as another
    /// host's: [`supervised_here`](crate::supervised_here)).
    NotHere,
    /// The recorded supervisor is alive; the pidfd pins it, to be polled
    /// for its exit (right after it commits the outcome) or signalled.
    Alive(Pidfd),
    /// The supervisor was gone, and the row was reconciled: `Some` when this
    /// call marked it `lost`; `None` when another process got there first
    /// (re-read the row: it is terminal now) or the row is another agent's
    /// to judge (it stays live until that agent does). Boxed: a row is
    /// large, and this is the rare answer.
    Gone(Option<Box<Reconciled>>),
}

/// The step every waiter and asker takes before it trusts a live row: on
/// this host, pin the recorded supervisor with a verified pidfd; if it is
/// gone (or its PID is another process now), reconcile the row on the
/// spot, so that nobody waits for a supervisor that will never commit.
///
/// Unlike [`reconcile_execution`], an alive supervisor is not looked at
/// further (an overdue timeout is the caller's to act on, as `wait` does).
pub fn verify_or_reconcile<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
) -> Result<Supervision, Error> {
    let host = procfs::hostname();
    if e.status.is_terminal() || !crate::supervised_here(ledger.shared(), home, e, &host) {
        return Ok(Supervision::NotHere);
    }
    match Pidfd::open_verified(&e.supervisor).map_err(Error::io("checking a supervisor"))? {
        Verified::Alive(fd) => Ok(Supervision::Alive(fd)),
        Verified::Gone | Verified::Mismatch(_) => {
            let r = reconcile_with(ledger, home, e, &host, &mut Marks::of(home))?;
            Ok(Supervision::Gone(r.map(Box::new)))
        }
    }
}

fn reconcile_with<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
    host: &str,
    marks: &mut Marks,
) -> Result<Option<Reconciled>, Error> {
    if marks.foreign(e) {
        return Ok(None);
    }
    let Some(reason) = supervision_gone(e, host)? else {
        overdue(ledger, home, e)?;
        return Ok(None);
    };
    if crate::retry::is_pending_attempt(e) {
        // Nothing of it ever ran: it is not lost, only unowned.
        return Ok(
            crate::retry::orphaned(ledger, home, e)?.map(|row| Reconciled {
                execution: row,
                was: e.status,
                processes_ended: 0,
            }),
        );
    }
    // End the tree first, then commit: the row then says how it was ended,
    // and the status is never `lost` while a process of it still runs.
    let started = std::time::Instant::now();
    let ended = if reason.may_have_processes() {
        Some(end_marked_with(ledger, e, &Actor::Reaper, marks)?)
    } else {
        None
    };
    let kill = ended.filter(|t| t.signalled > 0).map(|t| KillReport {
        method: if t.forced {
            KillMethod::Forced
        } else {
            KillMethod::Graceful
        },
        duration_ms: started.elapsed().as_millis() as u64,
        processes_signalled: t.signalled,
    });
    let outcome = Outcome {
        status: Status::Lost,
        reason: reason.to_string(),
        exit_code: None,
        signal: None,
        kill,
        usage: None,
        event: EventKind::MarkedLost,
        actor: Actor::Reaper,
        details: json!({ "supervisor_pid": e.supervisor.pid, "remaining": ended.map(|t| t.remaining) }),
    };
    match mark_lost(ledger, home, e, &outcome)? {
        Transition::Won(row) => Ok(Some(Reconciled {
            execution: row,
            was: e.status,
            processes_ended: ended.map_or(0, |t| t.signalled),
        })),
        Transition::Lost(_) => Ok(None),
    }
}

/// Commits `lost` (and announces it); with retries left, its next attempt
/// in the same transaction, which has no supervisor yet: the home's daemon
/// adopts it, or, without one, it is cancelled at once with the reason.
fn mark_lost<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
    outcome: &Outcome,
) -> Result<Transition, Error> {
    let (t, next) = if e.retries == 0 {
        (ledger.transition(&e.id, e.status, outcome)?, None)
    } else {
        let retry = tend_ledger::Retry {
            delay_ms: crate::retry::delay_ms(e),
            supervisor: e.supervisor.clone(),
        };
        ledger.transition_retrying(&e.id, e.status, outcome, &retry)?
    };
    if let Transition::Won(row) = &t {
        home.notifier().announce(&row.id, row.status);
    }
    if let Some(next) = next {
        home.notifier().announce(&next.id, next.status);
        crate::retry::orphaned(ledger, home, &next)?;
    }
    Ok(t)
}

/// A running execution past its timeout (plus grace and [`ACT_WITHIN`])
/// whose supervisor is stopped cannot time out by itself: end it here, as
/// `timed_out`, and say why. Costs nothing for executions within their
/// time, or without a timeout.
///
/// [`ACT_WITHIN`]: crate::takeover::ACT_WITHIN
fn overdue<L: Ledger + ?Sized>(ledger: &L, home: &Home, e: &Execution) -> Result<(), Error> {
    let (Some(ms), Some(at)) = (e.timeout_ms, overdue_at(e)) else {
        return Ok(());
    };
    if tend_ledger::now_ms() < at {
        return Ok(());
    }
    let Verified::Alive(sup) =
        Pidfd::open_verified(&e.supervisor).map_err(Error::io("checking a supervisor"))?
    else {
        return Ok(());
    };
    if !sup.is_stopped() {
        return Ok(());
    }
    let ending = crate::takeover::Ending {
        status: Status::TimedOut,
        what: format!(
            "timed out after {}",
            tend_model::format_duration(Duration::from_millis(ms))
        ),
        event: EventKind::TimedOut,
        actor: Actor::Reaper,
        grace: Duration::from_millis(e.kill_grace_ms),
        // The kill's own duration; the reason says it was a timeout.
        since_ms: tend_ledger::now_ms(),
    };
    match crate::takeover::end_without_supervisor(
        ledger,
        home,
        e,
        sup,
        ending,
        "its supervisor is stopped",
    ) {
        // Not this ledger's to end (a copy at this path): leave it alone.
        Err(Error::OtherLedger { .. }) => Ok(()),
        other => other,
    }
}

/// When a running execution with a timeout is overdue: its timeout, plus
/// the grace and [`ACT_WITHIN`](crate::takeover::ACT_WITHIN) its supervisor
/// has to end it (ms since the epoch). Waiters wake then, so that a stopped
/// supervisor's timeout is carried out without anyone polling.
pub fn overdue_at(e: &Execution) -> Option<i64> {
    let (Some(ms), Some(started)) = (e.timeout_ms, e.started_at) else {
        return None;
    };
    if e.status != Status::Running {
        return None;
    }
    let slack = e.kill_grace_ms + crate::takeover::ACT_WITHIN.as_millis() as u64;
    Some(started.saturating_add((ms + slack) as i64))
}

/// A marked process whose execution is not live (finished, or unknown to
/// this ledger).
#[derive(Debug, Clone)]
pub struct Straggler {
    /// Its PID.
    pub pid: i32,
    /// The execution id its marker names.
    pub execution_id: String,
    /// The status of that execution, or `None` if the ledger has no such id.
    pub status: Option<Status>,
}

/// Finds processes that carry this ledger's marker but whose execution is
/// terminal or unknown, and (unless `dry_run`) ends them. Processes marked
/// for another ledger are never looked at twice.
pub fn sweep_stragglers<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    dry_run: bool,
    grace: Duration,
) -> Result<Vec<Straggler>, Error> {
    let mut found = Vec::new();
    let mut fds = Vec::new();
    let agent = home.agent().ok().map(|a| a.id);
    for (fd, id) in crate::marked_processes(ledger.ledger_id(), agent.as_deref()) {
        let status = match ExecutionId::parse(&id) {
            Ok(eid) => match ledger.get(&eid) {
                Ok(e) => Some(e.status),
                Err(tend_ledger::Error::NotFound(_)) => None,
                Err(err) => return Err(err.into()),
            },
            Err(_) => None,
        };
        if status.is_some_and(|s| !s.is_terminal()) {
            continue;
        }
        found.push(Straggler {
            pid: fd.pid(),
            execution_id: id,
            status,
        });
        fds.push(fd);
    }
    if !dry_run && !fds.is_empty() {
        tree::terminate(&fds, grace, SETTLE);
    }
    Ok(found)
}

/// What [`reconcile`] would do, without doing it: each live execution whose
/// supervision is gone, and why.
pub fn reconcile_dry_run<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
) -> Result<Vec<(Execution, LostReason)>, Error> {
    let host = procfs::hostname();
    let marks = Marks::of(home);
    let mut out = Vec::new();
    for e in ledger.live()?.into_iter().filter(|e| !marks.foreign(e)) {
        if let Some(reason) = supervision_gone(&e, &host)? {
            out.push((e, reason));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tend_ledger::{Created, NewExecution, SqliteLedger};
    use tend_model::ProcessIdentity;

    use super::*;

    fn queued(ledger: &SqliteLedger, home: &Home, supervisor: ProcessIdentity) -> Execution {
        let new = NewExecution {
            name: "job".into(),
            command: vec!["true".into()],
            cwd: "/".into(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            key: None,
            reuse_finished_ms: None,
            host: procfs::hostname(),
            tier: tend_model::Containment::Session,
            agent_id: Some(home.agent().expect("an agent id").id),
            supervisor,
            timeout_ms: None,
            kill_grace_ms: 100,
            log_dir: home.logs_dir(),
            cgroup: None,
            heartbeat_timeout_ms: None,
            idle_timeout_ms: None,
            max_memory_bytes: None,
            job: None,
            job_slot: None,
            workspace: None,
            retries: 0,
            retry_backoff_ms: None,
            retry_max_backoff_ms: None,
            run_spec: None,
        };
        match ledger.create(&new).expect("created") {
            Created::New(e) => e,
            Created::Existing(e) => panic!("{} already holds no key", e.id),
        }
    }

    /// The identity a process had, once it has exited and been waited for.
    fn dead_identity() -> ProcessIdentity {
        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cat starts");
        let id = tend_proc::identify(child.id() as i32).expect("identified");
        drop(child.stdin.take());
        child.wait().expect("cat ends");
        id
    }

    #[test]
    fn verify_or_reconcile_pins_a_live_supervisor_and_reconciles_a_dead_one() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let home = Home::new(dir.path());
        home.ensure().expect("the home");
        let ledger = SqliteLedger::open(&home.default_db()).expect("the ledger");
        let me = tend_proc::identify(std::process::id() as i32).expect("identified");

        let alive = queued(&ledger, &home, me.clone());
        let found = verify_or_reconcile(&ledger, &home, &alive).expect("checked");
        assert!(matches!(&found, Supervision::Alive(fd) if fd.pid() == me.pid));
        assert_eq!(ledger.get(&alive.id).expect("read").status, Status::Queued);

        let dead = queued(&ledger, &home, dead_identity());
        let Supervision::Gone(Some(r)) =
            verify_or_reconcile(&ledger, &home, &dead).expect("checked")
        else {
            panic!("a dead supervisor's row is reconciled");
        };
        assert_eq!((r.was, r.execution.status), (Status::Queued, Status::Lost));
        let lost = ledger.get(&dead.id).expect("read");
        assert_eq!(lost.status, Status::Lost);
        // Terminal now: nothing left to check, and nothing done twice.
        let again = verify_or_reconcile(&ledger, &home, &lost).expect("checked");
        assert!(matches!(again, Supervision::NotHere));
        // A stale copy of the row loses the race: reconciled, by another.
        let stale = verify_or_reconcile(&ledger, &home, &dead).expect("checked");
        assert!(matches!(stale, Supervision::Gone(None)));
    }

    #[test]
    fn verify_or_reconcile_leaves_another_hosts_row_alone() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let home = Home::new(dir.path());
        home.ensure().expect("the home");
        let ledger = SqliteLedger::open(&home.default_db()).expect("the ledger");
        let mut elsewhere = dead_identity();
        elsewhere.boot_id = "another-boot".into();
        let mut row = queued(&ledger, &home, elsewhere);
        row.host = "another-host".into();
        let found = verify_or_reconcile(&ledger, &home, &row).expect("checked");
        assert!(matches!(found, Supervision::NotHere));
        assert_eq!(ledger.get(&row.id).expect("read").status, Status::Queued);
    }
}
