//! Retries (`--retries`): each attempt is an execution of its own.
//!
//! An attempt that ends `failed` or `timed_out` (or is marked `lost`) while
//! attempts are left has its next attempt recorded `queued`, with the time
//! it may start, in the same transaction as its outcome
//! ([`Ledger::transition_retrying`]): a crash during the backoff never
//! loses it. The supervisor of the attempt that ended waits out the backoff
//! in the same `poll` as ever (signals, nudges) and runs the next attempt
//! itself, so a foreground run streams every attempt and ends with the last.
//!
//! A pending attempt whose supervisor is gone (SIGKILLed during the
//! backoff, or a `lost` attempt's retry recorded by a reaper) is an
//! *orphan*. When a daemon runs for the home, it adopts it: a new
//! background supervisor takes it over with one compare-and-set
//! ([`Ledger::adopt`]) and starts it when it is due. Without a daemon the
//! next tend command that reconciles cancels it, saying why — nothing stays
//! `queued` forever and nothing is dropped without a word.

use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use serde_json::json;
use tend_ledger::{Ledger, Outcome, Transition};
use tend_model::{Actor, EventKind, Execution, ExecutionId, Status};
use tend_proc::procfs;

use crate::signals::Signals;
use crate::supervisor::{attempt, Me, Run};
use crate::{Error, Home, Mode, Report, RunResult, RunSpec};

/// The wait before the attempt after `e`: its backoff doubled once per
/// earlier retry, capped, with ±10 % jitter so that many runs failing
/// together do not all come back at the same instant.
pub(crate) fn delay_ms(e: &Execution) -> u64 {
    let mut b = [0u8; 4];
    let r = getrandom::fill(&mut b).map_or(0.5, |()| {
        f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
    });
    tend_model::run::retry_delay_ms(
        e.attempt.unwrap_or(1),
        e.retry_backoff_ms.unwrap_or(1000),
        e.retry_max_backoff_ms.unwrap_or(300_000),
        0.9 + 0.2 * r,
    )
}

/// After an attempt this supervisor ran: while the ledger recorded a next
/// attempt for this supervisor to run, waits out its backoff and runs it.
/// Returns the last attempt's result (or the pending attempt, cancelled).
pub(crate) fn follow_attempts<L: Ledger + ?Sized>(
    run: &Run<'_, L>,
    mut result: RunResult,
    report: &mut dyn FnMut(Report<'_>),
) -> Result<RunResult, Error> {
    let (ledger, home, me) = (run.ledger, run.home, run.me);
    loop {
        let ended = match &result {
            RunResult::Finished(e) | RunResult::Undelivered(e, _) => e,
            RunResult::Existing(..) => return Ok(result),
        };
        let Some(next) = ledger.next_attempt(&ended.id)? else {
            return Ok(result);
        };
        if next.status != Status::Queued || next.supervisor != me.identity {
            return Ok(result);
        }
        home.notifier().announce(&next.id, next.status);
        report(Report::Retrying { ended, next: &next });
        match backoff(ledger, home, run.mode, run.signals, next)? {
            Ok(due) => result = attempt(run, due, report)?,
            Err(cancelled) => return Ok(RunResult::Finished(cancelled)),
        }
    }
}

/// Waits until `next` may start, in one `poll` over the supervisor's
/// signals: Ctrl-C (foreground), SIGTERM or SIGHUP cancel the pending
/// attempt, and so does a kill request (a nudge). `Ok` with the row to
/// start, or `Err` with the row as it ended (cancelled).
fn backoff<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    mode: Mode,
    signals: &Signals,
    mut next: Execution,
) -> Result<Result<Execution, Execution>, Error> {
    loop {
        if let Some(k) = &next.kill_request {
            let why = match &k.reason {
                Some(r) => format!("cancelled by {}: {r}", k.by),
                None => format!("cancelled by {}", k.by),
            };
            let by = k.by.parse().unwrap_or(Actor::Supervisor);
            return cancel(ledger, home, &next, why, by).map(Err);
        }
        if next.status.is_terminal() {
            return Ok(Err(next));
        }
        let left = next.start_after.unwrap_or(0) - tend_ledger::now_ms();
        if left <= 0 {
            return Ok(Ok(next));
        }
        let left = Duration::from_millis(left as u64);
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(signals, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("waiting out a retry backoff")(e.into())),
        }
        let p = signals.take();
        if p.child {
            while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
        }
        let stop = match (p.interrupt, mode) {
            (true, Mode::Foreground) => Some("Ctrl-C"),
            (true, Mode::Detached) => Some("SIGINT to its supervisor"),
            _ => p.stop.map(|s| {
                if s == "SIGTERM" {
                    "SIGTERM to its supervisor"
                } else {
                    "SIGHUP to its supervisor"
                }
            }),
        };
        if let Some(what) = stop {
            let why = format!("cancelled during the retry backoff by {what}");
            return cancel(ledger, home, &next, why, Actor::Supervisor).map(Err);
        }
        if p.suspend && mode == Mode::Foreground {
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::STOP);
        }
        if p.nudge {
            next = ledger.get(&next.id)?;
        }
    }
}

/// `queued → cancelled` with the reason; the row as it ends (whoever won).
fn cancel<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
    reason: String,
    actor: Actor,
) -> Result<Execution, Error> {
    let outcome = Outcome {
        status: Status::Cancelled,
        reason,
        exit_code: None,
        signal: None,
        kill: None,
        usage: None,
        event: EventKind::Cancelled,
        actor,
        details: json!({ "attempt": e.attempt, "start_after": e.start_after }),
    };
    let t = ledger.transition(&e.id, Status::Queued, &outcome)?;
    home.notifier().announce(&e.id, t.execution().status);
    Ok(match t {
        Transition::Won(row) | Transition::Lost(row) => row,
    })
}

/// Whether `e` is a pending attempt: a retry not started yet.
pub fn is_pending_attempt(e: &Execution) -> bool {
    e.status == Status::Queued && e.retry_of.is_some()
}

/// Whether a daemon holds this home's lock: then it adopts orphaned
/// attempts, and nobody else may cancel them. Read from `/proc/locks`,
/// which takes no lock and so never makes a starting daemon fail.
pub fn daemon_running(home: &Home) -> bool {
    !procfs::lock_holders(&[home.root().join("daemon.lock")]).is_empty()
}

/// What a reconciler does with a pending attempt whose supervisor is gone:
/// leave it to the home's daemon when one runs (it adopts it), else cancel
/// it with the reason. Returns the cancelled row.
pub(crate) fn orphaned<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
) -> Result<Option<Execution>, Error> {
    if daemon_running(home) {
        return Ok(None);
    }
    let why = "its supervisor ended during the retry backoff, and no tend serve runs for this home to start it"
        .to_string();
    let row = cancel(ledger, home, e, why, Actor::Reaper)?;
    Ok((row.status == Status::Cancelled).then_some(row))
}

/// The last attempt of the chain `e` begins (`e` itself when it has no
/// retry): what `wait` and `kill` of a retried run's id mean.
pub fn last_attempt<L: Ledger + ?Sized>(ledger: &L, e: Execution) -> Result<Execution, Error> {
    let mut e = e;
    while e.status.is_terminal() {
        match ledger.next_attempt(&e.id)? {
            Some(next) => e = next,
            None => break,
        }
    }
    Ok(e)
}

/// Waits until each of `ids` has ended together with every attempt that
/// retries it, and returns the last attempts, in order; `Ok(None)` if the
/// timeout passed first.
pub fn wait_for_last_attempts<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    ids: &[ExecutionId],
    timeout: Option<Duration>,
) -> Result<Option<Vec<Execution>>, Error> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    let mut ids = ids.to_vec();
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let Some(rows) = crate::wait_until_done(ledger, home, &ids, left)? else {
            return Ok(None);
        };
        let mut followed = false;
        for (id, row) in ids.iter_mut().zip(&rows) {
            if let Some(next) = ledger.next_attempt(&row.id)? {
                *id = next.id;
                followed = true;
            }
        }
        if !followed {
            return Ok(Some(rows));
        }
    }
}

/// The body of a supervisor that adopts the pending attempt `id` (see
/// [`crate::detach::adopt`]): takes it over from its gone supervisor with
/// one compare-and-set, waits out what is left of its backoff and runs it,
/// and any attempt after it.
pub(crate) fn run_adopted<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    spec: &RunSpec,
    id: &ExecutionId,
    report: &mut dyn FnMut(Report<'_>),
) -> Result<RunResult, Error> {
    let me = Me::become_supervisor(ledger, home, spec)?;
    let row = ledger.get(id)?;
    let held = match ledger.adopt(&row.id, &row.supervisor, &me.identity)? {
        Transition::Won(r) if is_pending_attempt(&r) => r,
        Transition::Won(r) | Transition::Lost(r) => {
            report(Report::Existing(&r, crate::OnDuplicate::Wait));
            return Ok(RunResult::Existing(r, crate::OnDuplicate::Wait));
        }
    };
    let signals = Signals::install().map_err(Error::io("installing signal handlers"))?;
    let before = match &held.retry_of {
        Some(prev) => ledger.get(prev)?,
        None => held.clone(),
    };
    report(Report::Retrying {
        ended: &before,
        next: &held,
    });
    let mode = Mode::Detached;
    let run = Run {
        ledger,
        home,
        spec,
        mode,
        me: &me,
        signals: &signals,
    };
    match backoff(ledger, home, mode, &signals, held)? {
        Ok(due) => {
            let first = attempt(&run, due, report)?;
            follow_attempts(&run, first, report)
        }
        Err(cancelled) => Ok(RunResult::Finished(cancelled)),
    }
}

/// The daemon's part: adopts `e` if it is a pending attempt of this home
/// whose supervisor is gone (a new background supervisor started with the
/// `tend` executable `exe`); returns whether a new supervisor now holds it.
pub fn adopt_if_orphaned<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    exe: &std::path::Path,
    store: &tend_ledger::Store,
    e: &Execution,
) -> Result<bool, Error> {
    let agent = home.agent().ok().map(|a| a.id);
    if !is_pending_attempt(e) || (e.agent_id.is_some() && e.agent_id != agent) {
        return Ok(false);
    }
    if crate::reaper::supervision_gone(e, &procfs::hostname())?.is_none() {
        return Ok(false);
    }
    let answer = crate::detach::adopt(ledger, exe, home, store, &e.id)?;
    Ok(matches!(answer, crate::detach::Answer::Started { .. }))
}
