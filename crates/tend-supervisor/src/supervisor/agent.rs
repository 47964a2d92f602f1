//! On a shared ledger, a supervisor keeps an eye on its home's agent (the
//! `tend serve` that holds the home's lease): a pidfd on it in the same
//! `poll` as everything else, so while the agent lives the supervisor is
//! idle and wakes for nothing. When the agent goes, nobody renews the
//! lease; the supervisor looks for an agent of the home to be back (every
//! [`LOOK_EVERY`], by `/proc/locks`, which takes no lock) until
//! [`LeaseTimes::orphan_wait`] has passed, and then ends its tree (fencing)
//! so that no process of it runs when a peer marks it `lost`.
//!
//! It is also where the agent's fence requests are read: an agent that
//! cannot reach the database to store a kill request leaves one in the
//! home and nudges the supervisor.

use std::time::{Duration, Instant};

use tend_proc::{procfs, Pidfd};

use crate::lease::{take_fence, Fence, LeaseTimes};
use crate::Home;

/// How often a supervisor whose agent went away looks for one to be back.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The home's agent as one supervisor watches it.
pub(super) struct AgentWatch {
    home: Home,
    times: LeaseTimes,
    grace: Duration,
    /// The agent's process, while it lives.
    daemon: Option<Pidfd>,
    /// When the agent was found gone (this process's clock).
    gone_since: Option<Instant>,
    next_look: Option<Instant>,
}

impl AgentWatch {
    /// Watches `home`'s agent for an execution whose kill grace is
    /// `grace`. With no agent running, the wait for one begins now.
    pub(super) fn new(home: &Home, times: LeaseTimes, grace: Duration) -> AgentWatch {
        let mut w = AgentWatch {
            home: home.clone(),
            times,
            grace,
            daemon: None,
            gone_since: None,
            next_look: None,
        };
        w.daemon = w.find();
        if w.daemon.is_none() {
            w.went(Instant::now());
        }
        w
    }

    /// The agent's pidfd, to be polled: readable once it has exited.
    pub(super) fn fd(&self) -> Option<&Pidfd> {
        self.daemon.as_ref()
    }

    /// When to look for a returning agent, while there is none.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next_look
    }

    /// The agent's pidfd became readable: it exited.
    pub(super) fn on_exit(&mut self, now: Instant) {
        if self.daemon.as_ref().is_some_and(|d| !d.is_alive()) {
            self.daemon = None;
            self.went(now);
        }
    }

    /// Looks for a returning agent when the look is due. `Some` when none
    /// came back in time: the tree must be fenced now.
    pub(super) fn look(&mut self, now: Instant) -> Option<Fence> {
        let (Some(at), Some(since)) = (self.next_look, self.gone_since) else {
            return None;
        };
        if now < at {
            return None;
        }
        if let Some(d) = self.find() {
            self.daemon = Some(d);
            self.gone_since = None;
            self.next_look = None;
            return None;
        }
        let waited = now.duration_since(since);
        if waited < self.times.orphan_wait(self.grace) {
            self.next_look = Some(now + LOOK_EVERY);
            return None;
        }
        self.next_look = None;
        self.gone_since = None;
        Some(Fence {
            reason: format!(
                "no agent of its home ran for {} and its lease would expire",
                tend_model::format_duration(waited)
            ),
            grace_ms: self.times.fence_grace(self.grace).as_millis() as u64,
        })
    }

    /// The fence request the agent left for execution `id`, if any.
    pub(super) fn take_fence(&self, id: &str) -> Option<Fence> {
        take_fence(&self.home, id)
    }

    fn went(&mut self, now: Instant) {
        self.gone_since = Some(now);
        self.next_look = Some(now);
    }

    /// A pidfd on the process holding the home's daemon lock, checked to
    /// hold it still once the pidfd is open (so a recycled PID is never
    /// taken for the agent).
    fn find(&self) -> Option<Pidfd> {
        let lock = [self.home.root().join("daemon.lock")];
        let pid = *procfs::lock_holders(&lock).first()?;
        let fd = Pidfd::open(pid).ok()?;
        procfs::lock_holders(&lock).contains(&pid).then_some(fd)
    }
}

/// The watch a run on `ledger` needs: on a shared ledger, one on the home's
/// agent; on SQLite none (the kernel says who is alive there).
pub(super) fn for_ledger<L: tend_ledger::Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    exec: &tend_model::Execution,
) -> Result<Option<AgentWatch>, crate::Error> {
    if !ledger.shared() {
        return Ok(None);
    }
    let times = LeaseTimes::from_env().map_err(|e| crate::Error::Io {
        doing: "reading the lease settings",
        source: std::io::Error::other(e),
    })?;
    let grace = Duration::from_millis(exec.kill_grace_ms);
    Ok(Some(AgentWatch::new(home, times, grace)))
}

impl<L: tend_ledger::Ledger + ?Sized> super::Supervision<'_, L> {
    /// Follows the home's agent: its exit starts the wait for one to come
    /// back, and a wait that ran out fences the tree.
    pub(super) fn check_agent(&mut self, exited: bool, now: Instant) {
        let Some(a) = self.agent.as_mut() else { return };
        if exited {
            a.on_exit(now);
        }
        if let Some(f) = a.look(now) {
            self.fence(f);
        }
    }

    /// Ends the tree because the agent's lease may lapse (graceful for the
    /// fence's grace, then certain), and says so in the outbox, which the
    /// ledger takes once it is reachable. A kill under way, or a command
    /// that already exited, is left to finish.
    pub(super) fn fence(&mut self, f: Fence) {
        if self.kill.is_some() || self.status.is_some() {
            return;
        }
        let grace = Duration::from_millis(f.grace_ms);
        // The ledger is likely out of reach: nothing waits on it until the
        // tree is gone.
        self.outbox.hold(grace + Duration::from_secs(1));
        self.outbox.record(
            self.ledger,
            tend_model::EventKind::KillRequested,
            tend_model::Actor::Supervisor,
            serde_json::json!({ "fence": true, "reason": f.reason, "grace_ms": f.grace_ms }),
        );
        self.begin_kill(super::ending::Cause::Fence(f.reason), grace, false);
    }
}
