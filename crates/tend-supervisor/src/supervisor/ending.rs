//! Ending the tree: why (the [`Cause`]), and the kill under way ([`Kill`]):
//! SIGTERM + SIGCONT to each process once, SIGKILL (and `cgroup.kill`) when
//! the grace is over, and an `unkillable` event for a tree that resists
//! SIGKILL. Each step is taken from the event loop after a rescan of the
//! tree, so processes forked during the kill are found and signalled too.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tend_ledger::{KillReport, Ledger};
use tend_model::{Actor, EventKind, KillMethod, KillRequested};
use tend_proc::cgroup::Cgroup;
use tend_proc::{procfs, spawn, Pidfd, Sig};

use super::start::{kill_tree_now, remove_cgroup};
use super::Supervision;
use crate::Error;

/// How long a tree may resist SIGKILL (uninterruptible sleep) before the
/// supervisor records that it is stuck. It keeps waiting afterwards.
const STUCK_REPORT_AFTER: Duration = Duration::from_secs(5);

/// Why the supervisor is ending the tree.
#[derive(Debug, Clone)]
pub(super) enum Cause {
    Timeout(u64),
    Heartbeat(u64),
    Idle(u64),
    Memory {
        used: u64,
        limit: u64,
    },
    Request {
        by: Actor,
        reason: Option<String>,
    },
    Signal(&'static str),
    /// The agent's lease may lapse: the tree is ended first (why).
    Fence(String),
    /// The command exited and left processes behind.
    Cleanup,
}

#[derive(Debug)]
pub(super) struct Kill {
    pub(super) cause: Cause,
    pub(super) started: Instant,
    pub(super) grace_deadline: Instant,
    pub(super) forced: bool,
    pub(super) sigkilled: bool,
    pub(super) signalled: HashSet<i32>,
    sigkill_sent: HashSet<i32>,
    pub(super) watch: Vec<Pidfd>,
    pub(super) stuck_reported: bool,
    /// When this process was last continued after being stopped: a stopped
    /// supervisor saw nothing die, so the tree is not stuck until
    /// [`STUCK_REPORT_AFTER`] after both the SIGKILL and this.
    pub(super) resumed_at: Instant,
}

/// What one round of signals did.
struct Sent {
    /// The processes that got the signal this round.
    newly: Vec<i32>,
    /// The processes tend may not signal, and the error that said so.
    refused: Vec<(i32, String)>,
}

impl Kill {
    /// When the tree counts as stuck, if it is still there then.
    pub(super) fn stuck_at(&self) -> Instant {
        self.started.max(self.grace_deadline).max(self.resumed_at) + STUCK_REPORT_AFTER
    }

    /// The audited facts of this kill, for the outcome. A requested kill
    /// counts from the moment it was asked for (`request`, as the row holds
    /// it): a supervisor that was stopped or busy must not make the kill
    /// look quick.
    pub(super) fn report(&self, request: Option<&KillRequested>) -> KillReport {
        KillReport {
            method: if self.sigkilled {
                KillMethod::Forced
            } else {
                KillMethod::Graceful
            },
            duration_ms: match (&self.cause, request) {
                (Cause::Request { .. }, Some(r)) => (tend_ledger::now_ms() - r.at).max(0) as u64,
                _ => self.started.elapsed().as_millis() as u64,
            },
            processes_signalled: self.signalled.len() as u32,
        }
    }

    /// The signal this step sends: SIGTERM during the grace, then SIGKILL.
    fn sig(&self) -> Sig {
        if self.forced {
            Sig::Kill
        } else {
            Sig::Term
        }
    }

    /// Signals the processes of `tree` that have not had this step's signal
    /// yet. Each process gets each signal once: a rescan (every exit in a
    /// dying tree causes one) re-signals only processes it has not seen.
    fn signal_each(&mut self, tree: &[Pidfd]) -> Sent {
        let sig = self.sig();
        let mut sent = Sent {
            newly: Vec::new(),
            refused: Vec::new(),
        };
        for fd in tree {
            let seen = if self.forced {
                &mut self.sigkill_sent
            } else {
                &mut self.signalled
            };
            if seen.contains(&fd.pid()) {
                continue;
            }
            match fd.signal(sig) {
                Ok(true) => {
                    if sig == Sig::Term {
                        let _ = fd.signal(Sig::Cont);
                    }
                    seen.insert(fd.pid());
                    self.signalled.insert(fd.pid());
                    sent.newly.push(fd.pid());
                }
                Ok(false) => {}
                // Not ours to signal (another user's process, e.g. under
                // sudo): say so instead of waiting on it in silence.
                Err(e) => {
                    seen.insert(fd.pid());
                    sent.refused.push((fd.pid(), e.to_string()));
                }
            }
        }
        sent
    }
}

impl<L: Ledger + ?Sized> Supervision<'_, L> {
    /// Looks at the tree and pushes the kill (if any) forward. Returns true
    /// when the execution is over: command reaped and no descendant left.
    pub(super) fn step_tree(&mut self) -> Result<bool, Error> {
        // In the cgroup tier the cgroup is the tree: exact, and far cheaper
        // than walking every process of the host. Otherwise walk /proc from
        // the supervisor, which every orphan of the command re-parents to.
        let tree = self.tree();
        let populated = self.cgroup.as_ref().is_some_and(Cgroup::populated);
        if self.status.is_some() && tree.is_empty() && !populated && !spawn::has_children() {
            return Ok(true);
        }
        if self.status.is_some() && self.kill.is_none() {
            self.begin_kill(
                Cause::Cleanup,
                Duration::from_millis(self.exec.kill_grace_ms),
                false,
            );
        }
        let Some(kill) = self.kill.as_mut() else {
            return Ok(false);
        };
        if !kill.forced && Instant::now() >= kill.grace_deadline {
            kill.forced = true;
        }
        let forced = kill.forced;
        if forced && self.leftovers.is_some() {
            self.sample_before_sigkill(&tree);
        }
        let kill = self.kill.as_mut().expect("checked above");
        let sent = kill.signal_each(&tree);
        if forced {
            if let Some(cg) = &self.cgroup {
                // Also takes whatever forked after the walk above.
                if populated && cg.kill().is_ok() && sent.newly.is_empty() {
                    kill.sigkilled = true;
                }
            }
            if !sent.newly.is_empty() {
                kill.sigkilled = true;
            }
        }
        kill.watch = tree;
        self.record_signals(forced, sent);
        Ok(false)
    }

    /// pidns: what SIGKILL takes now is reaped by the kernel, and its usage
    /// would reach no one; read it while it is there.
    fn sample_before_sigkill(&mut self, tree: &[Pidfd]) {
        let pids: Vec<i32> = tree.iter().map(Pidfd::pid).collect();
        let (cpu, peak) = tend_proc::live_usage(&pids);
        self.sampled_cpu_ms = self.sampled_cpu_ms.max(cpu);
        self.peak_rss = self.peak_rss.max(peak);
    }

    /// Audits one round of signals: the processes tend may not signal, then
    /// those it did. Audit events are best-effort here: failing to write one
    /// must never stop the kill half-way.
    fn record_signals(&mut self, forced: bool, sent: Sent) {
        let name = if forced { "SIGKILL" } else { "SIGTERM" };
        if !sent.refused.is_empty() {
            self.outbox.record(
                self.ledger,
                EventKind::SignalRefused,
                Actor::Supervisor,
                json!({ "signal": name, "refused": sent.refused,
                        "note": "tend may not signal these processes; the execution ends when they do" }),
            );
        }
        if !sent.newly.is_empty() {
            self.outbox.record(
                self.ledger,
                EventKind::SignalSent,
                Actor::Supervisor,
                json!({ "signal": name, "processes": sent.newly.len() as u32, "pids": sent.newly }),
            );
        }
    }

    /// Ends the whole tree at once (SIGKILL, and `cgroup.kill`), for a
    /// supervisor that has to stop on an error.
    pub(super) fn abandon(&mut self) {
        kill_tree_now(self.me, self.cgroup.as_ref());
        self.reap();
        if let Some(cg) = &self.cgroup {
            remove_cgroup(cg);
        }
    }

    /// Starts ending the tree for `cause`: SIGTERM at the next step, SIGKILL
    /// once `grace` is over (at once when `force`).
    pub(super) fn begin_kill(&mut self, cause: Cause, grace: Duration, force: bool) {
        let now = Instant::now();
        self.kill = Some(Kill {
            cause,
            started: now,
            grace_deadline: if force { now } else { now + grace },
            forced: false,
            sigkilled: false,
            signalled: HashSet::new(),
            sigkill_sent: HashSet::new(),
            watch: Vec::new(),
            stuck_reported: false,
            resumed_at: now,
        });
        self.rescan = true;
    }

    /// Escalates a kill in progress: a second Ctrl-C or a `--force` request.
    pub(super) fn hurry(&mut self) {
        if let Some(k) = self.kill.as_mut() {
            k.grace_deadline = Instant::now();
            self.rescan = true;
        }
    }

    /// Carries out a kill request read from the row.
    pub(super) fn on_request(&mut self, req: KillRequested) {
        match &self.kill {
            // The command already exited (Cleanup) or a kill is under way:
            // keep its cause and counts; a forced request only hurries it.
            Some(k) if matches!(k.cause, Cause::Cleanup) => self.hurry(),
            Some(_) => {
                if req.force {
                    self.hurry();
                } else if let Some(ms) = req.grace_ms {
                    // A later, shorter grace shortens the kill under way
                    // (a longer one never lengthens it).
                    let k = self.kill.as_mut().expect("matched above");
                    k.grace_deadline = k
                        .grace_deadline
                        .min(Instant::now() + Duration::from_millis(ms));
                    self.rescan = true;
                }
            }
            _ => {
                let grace = Duration::from_millis(req.grace_ms.unwrap_or(self.exec.kill_grace_ms));
                self.begin_kill(
                    Cause::Request {
                        by: req.by.parse().unwrap_or(Actor::User(Some(req.by))),
                        reason: req.reason,
                    },
                    grace,
                    req.force,
                );
            }
        }
    }

    /// Pushes a kill on when its grace is over, and records a tree that is
    /// still there well after SIGKILL (uninterruptible sleep).
    pub(super) fn check_kill(&mut self, now: Instant) {
        let Some(k) = self.kill.as_mut() else { return };
        if !k.forced && now >= k.grace_deadline {
            self.rescan = true;
            return;
        }
        if !k.forced || k.stuck_reported || now < k.stuck_at() {
            return;
        }
        k.stuck_reported = true;
        let pids: Vec<i32> = k.watch.iter().map(Pidfd::pid).collect();
        let states: Vec<String> = pids
            .iter()
            .map(|p| {
                procfs::stat(*p)
                    .map(|s| format!("{p}:{}", s.state))
                    .unwrap_or_default()
            })
            .collect();
        self.outbox.record(
            self.ledger,
            EventKind::Unkillable,
            Actor::Supervisor,
            json!({ "pids": pids, "states": states,
                    "note": "still present after SIGKILL (uninterruptible sleep?); still waiting" }),
        );
    }
}
