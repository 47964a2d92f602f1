//! Killing executions from any tend process.
//!
//! The request is stored in the ledger first (so it is audited and survives
//! a crash of the asker), then the supervisor is nudged with SIGUSR1 through
//! a verified pidfd and performs the kill itself — it knows the whole tree.
//! If the supervisor is dead, the asker reconciles the execution, which
//! ends what is left of it with identity checks.
//!
//! On a shared (PostgreSQL) ledger a kill of another agent's execution is
//! only recorded here: the request's NOTIFY (a trigger, in the same
//! transaction) wakes that agent's daemon, which carries it out as this
//! function would ([`deliver`](fn@crate::deliver)); the asker waits for the
//! outcome, woken by the completion's NOTIFY, and after
//! [`REMOTE_NOTE_AFTER`] is told which agent must act.
//!
//! A kill is certain whatever state the supervisor is in. A supervisor that
//! is stopped (SIGSTOP by its command, Ctrl-Z), or that has not carried the
//! kill out within its grace plus [`ACT_WITHIN`], cannot be trusted to act:
//! the asker then ends the tree itself — the supervisor's descendants, the
//! cgroup, the marked processes — graceful then certain, commits `killed`
//! saying why, and SIGKILLs the supervisor.

use std::time::{Duration, Instant};

use tend_ledger::{KillRequest, Ledger};
use tend_model::{EventKind, Execution, Status};
use tend_proc::{procfs, Pidfd, Sig, Verified};

use crate::reaper::{self, Supervision};
use crate::takeover::{end_without_supervisor, Ending};
use crate::{wait_until_done, Error, Home};

pub use crate::takeover::ACT_WITHIN;

/// How long a kill of an execution only another agent can reach waits
/// before the asker is told, once, which agent (and host) must carry it
/// out; the wait goes on.
pub const REMOTE_NOTE_AFTER: Duration = Duration::from_secs(2);

/// Which live executions a bulk kill is for (`tend kill --name/--label/
/// --older-than/--all`, `POST /api/v1/executions/kill`): all of the given
/// conditions; none given means every live execution.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Names matching this glob.
    pub name: Option<tend_model::Glob>,
    /// Carrying every one of these labels.
    pub labels: Vec<(String, String)>,
    /// Created at least this long ago.
    pub older_than: Option<Duration>,
}

/// The live executions `sel` selects, oldest first: the one selection both
/// the CLI's and the API's bulk kill use.
pub fn select<L: Ledger + ?Sized>(ledger: &L, sel: &Selection) -> Result<Vec<Execution>, Error> {
    let before = sel.older_than.map(tend_ledger::ms_ago);
    Ok(ledger
        .live()?
        .into_iter()
        .filter(|e| sel.name.as_ref().is_none_or(|g| g.matches(&e.name)))
        .filter(|e| sel.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
        .filter(|e| before.is_none_or(|b| e.created_at <= b))
        .collect())
}

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
pub fn request<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    targets: &[Execution],
    req: &KillRequest,
) -> Result<Vec<bool>, Error> {
    let mut finished = Vec::with_capacity(targets.len());
    for e in targets {
        // On one host, another agent's row is a copy's or another home's
        // on a shared file: not ours to act on. A shared ledger carries
        // the request to that agent.
        if crate::another_agents(home, e) && !e.status.is_terminal() && !ledger.shared() {
            return Err(Error::Foreign {
                id: e.id.to_string(),
                agent: e.agent_id.clone().unwrap_or_default(),
            });
        }
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
        nudge(ledger, home, &row, req)?;
    }
    Ok(finished)
}

/// Hands the kill request stored on `row` to its supervisor: SIGUSR1
/// through a verified pidfd, or a take-over when it is stopped; a dead
/// supervisor's row is reconciled on the spot. Nothing for a row this
/// process cannot reach ([`supervised_here`](crate::supervised_here)):
/// the request on the row is for its own agent.
pub(crate) fn nudge<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    row: &Execution,
    req: &KillRequest,
) -> Result<(), Error> {
    match reaper::verify_or_reconcile(ledger, home, row)? {
        Supervision::Alive(fd) if fd.is_stopped() => {
            take_over(ledger, home, row, fd, req, "its supervisor is stopped")
        }
        Supervision::Alive(fd) => fd
            .signal(Sig::Usr1)
            .map(|_| ())
            .map_err(Error::io("nudging the supervisor")),
        // Reconciled on the spot, or supervised elsewhere (the request is
        // stored on the row for it).
        Supervision::Gone(_) | Supervision::NotHere => Ok(()),
    }
}

/// Kills every execution in `targets` at once (so their grace periods run
/// side by side) and waits until each outcome is committed.
pub fn kill<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    targets: &[Execution],
    req: &KillRequest,
) -> Result<Vec<KillResult>, Error> {
    kill_noting(ledger, home, targets, req, &mut |_| {})
}

/// [`kill`], calling `remote` once for each target that only another agent
/// can reach and that is still live after [`REMOTE_NOTE_AFTER`] (its
/// daemon may not run), so that the asker can say who must act.
pub fn kill_noting<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    targets: &[Execution],
    req: &KillRequest,
    remote: &mut dyn FnMut(&Execution),
) -> Result<Vec<KillResult>, Error> {
    // A retried run's id stands for its attempts: the kill is for the one
    // that is live (a pending one is cancelled, never started).
    let targets = targets
        .iter()
        .map(|e| crate::retry::last_attempt(ledger, e.clone()))
        .collect::<Result<Vec<_>, Error>>()?;
    let targets = &targets[..];
    let finished = request(ledger, home, targets, req)?;
    let pending: Vec<_> = targets
        .iter()
        .zip(&finished)
        .filter(|(_, done)| !**done)
        .map(|(e, _)| e.id.clone())
        .collect();
    let bound = targets
        .iter()
        .map(|e| grace_of(e, req))
        .max()
        .unwrap_or_default()
        + ACT_WITHIN;
    let started = Instant::now();
    if !wait_remote(ledger, home, &pending, remote)? {
        let left = bound.saturating_sub(started.elapsed());
        if wait_until_done(ledger, home, &pending, Some(left))?.is_none() {
            for id in &pending {
                enforce(ledger, home, id, req, bound)?;
            }
        }
    }
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

/// When some of `pending` only another agent can reach: waits up to
/// [`REMOTE_NOTE_AFTER`], then calls `remote` for each of those still live.
/// Returns whether all of `pending` ended meanwhile.
fn wait_remote<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    pending: &[tend_model::ExecutionId],
    remote: &mut dyn FnMut(&Execution),
) -> Result<bool, Error> {
    let host = procfs::hostname();
    let unreachable = |e: &Execution| {
        !e.status.is_terminal() && !crate::supervised_here(ledger.shared(), home, e, &host)
    };
    let mut rows = Vec::with_capacity(pending.len());
    for id in pending {
        rows.push(ledger.get(id)?);
    }
    if !rows.iter().any(unreachable) {
        return Ok(false);
    }
    if wait_until_done(ledger, home, pending, Some(REMOTE_NOTE_AFTER))?.is_some() {
        return Ok(true);
    }
    for id in pending {
        let row = ledger.get(id)?;
        if unreachable(&row) {
            remote(&row);
        }
    }
    Ok(false)
}

/// The grace a kill request gives `e`.
pub(crate) fn grace_of(e: &Execution, req: &KillRequest) -> Duration {
    if req.force {
        Duration::ZERO
    } else {
        Duration::from_millis(req.grace_ms.unwrap_or(e.kill_grace_ms))
    }
}

/// For an execution still live after `waited`: if its supervisor has not
/// carried the kill out (stopped, or stuck), ends the tree without it. A
/// supervisor that is gone is left to the wait that follows, which
/// reconciles the row ([`verify_or_reconcile`](crate::verify_or_reconcile)).
pub fn enforce<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    id: &tend_model::ExecutionId,
    req: &KillRequest,
    waited: Duration,
) -> Result<(), Error> {
    let row = ledger.get(id)?;
    let here = crate::supervised_here(ledger.shared(), home, &row, &procfs::hostname());
    if row.status.is_terminal() || !here {
        return Ok(());
    }
    if let Verified::Alive(fd) =
        Pidfd::open_verified(&row.supervisor).map_err(Error::io("checking the supervisor"))?
    {
        let why = if fd.is_stopped() {
            "its supervisor is stopped".to_string()
        } else {
            format!(
                "its supervisor did not carry the kill out within {}",
                tend_model::format_duration(waited)
            )
        };
        take_over(ledger, home, &row, fd, req, &why)?;
    }
    Ok(())
}

fn take_over<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    row: &Execution,
    sup: Pidfd,
    req: &KillRequest,
    why: &str,
) -> Result<(), Error> {
    let by = req.actor.clone();
    let ending = Ending {
        status: Status::Killed,
        what: match &req.reason {
            Some(r) => format!("killed by {by}: {r}"),
            None => format!("killed by {by}"),
        },
        event: EventKind::Killed,
        grace: grace_of(row, req),
        since_ms: row
            .kill_request
            .as_ref()
            .map_or_else(tend_ledger::now_ms, |k| k.at),
        actor: by,
    };
    end_without_supervisor(ledger, home, row, sup, ending, why)
}
