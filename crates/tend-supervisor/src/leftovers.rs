//! What is left of an execution when its supervisor cannot end it, and
//! ending it: the recorded command (if it is still the same process), its
//! cgroup's members and the processes carrying its marker, graceful then
//! certain. The reaper, a take-over and `tend kill` of a dead supervisor's
//! execution all end a tree this one way.

use std::time::Duration;

use serde_json::json;
use tend_ledger::Ledger;
use tend_model::{Actor, EventKind, Execution};
use tend_proc::cgroup::Cgroup;
use tend_proc::{tree, Pidfd, Verified};

use crate::{Error, Home};

/// How long processes get after SIGKILL to disappear before the reaper
/// reports them as stuck and moves on.
pub(crate) const SETTLE: Duration = Duration::from_secs(5);

/// Marked processes of this ledger (and agent, when known) by execution
/// id, read from `/proc` at most once and only when some execution needs
/// them.
#[derive(Default)]
pub(crate) struct Marks {
    agent: Option<String>,
    by_id: Option<std::collections::HashMap<String, Vec<Pidfd>>>,
}

impl Marks {
    /// Marks of `home`'s agent only.
    pub(crate) fn of(home: &Home) -> Marks {
        Marks {
            agent: home.agent().ok().map(|a| a.id),
            by_id: None,
        }
    }

    /// Whether `e` was launched by another agent (a home this one is a
    /// copy of, or another home on a shared ledger): not ours to judge.
    pub(crate) fn foreign(&self, e: &Execution) -> bool {
        matches!((&e.agent_id, &self.agent), (Some(theirs), Some(ours)) if theirs != ours)
    }

    fn take(&mut self, ledger: &str, id: &str) -> Vec<Pidfd> {
        let agent = self.agent.as_deref();
        let map = self.by_id.get_or_insert_with(|| {
            let mut m: std::collections::HashMap<String, Vec<Pidfd>> =
                std::collections::HashMap::new();
            for (fd, id) in crate::marked_processes(ledger, agent) {
                m.entry(id).or_default().push(fd);
            }
            m
        });
        map.remove(id).unwrap_or_default()
    }
}

/// Ends every live process of execution `e` without its supervisor: the
/// recorded command process (if it is still the same process) and every
/// process carrying `e`'s marker, graceful then certain. A recorded PID that
/// now belongs to another process is left alone and the refusal is recorded
/// as an `identity-mismatch` event.
pub fn end_marked<L: Ledger + ?Sized>(
    ledger: &L,
    e: &Execution,
    actor: &Actor,
) -> Result<tree::Terminated, Error> {
    end_marked_with(ledger, e, actor, &mut Marks::default())
}

pub(crate) fn end_marked_with<L: Ledger + ?Sized>(
    ledger: &L,
    e: &Execution,
    actor: &Actor,
    marks: &mut Marks,
) -> Result<tree::Terminated, Error> {
    let grace = Duration::from_millis(e.kill_grace_ms);
    end_tree(ledger, e, actor, marks, Vec::new(), grace)
}

/// Ends `e`'s processes — the recorded command, its cgroup's members, the
/// processes carrying its marker, and `extra` — graceful (for `grace`),
/// then certain, and records what was signalled.
pub(crate) fn end_tree<L: Ledger + ?Sized>(
    ledger: &L,
    e: &Execution,
    actor: &Actor,
    marks: &mut Marks,
    extra: Vec<Pidfd>,
    grace: Duration,
) -> Result<tree::Terminated, Error> {
    let mut fds: Vec<Pidfd> = Vec::new();
    if let Some(p) = &e.process {
        match Pidfd::open_verified(p).map_err(Error::io("checking a process identity"))? {
            Verified::Alive(fd) => fds.push(fd),
            Verified::Mismatch(why) => ledger.record(
                &e.id,
                EventKind::IdentityMismatch,
                actor,
                json!({ "pid": p.pid, "detail": why, "action": "not signalled" }),
            )?,
            Verified::Gone => {}
        }
    }
    let cgroup = e.cgroup.as_ref().map(Cgroup::at);
    let members = cgroup
        .as_ref()
        .map(Cgroup::open_members)
        .unwrap_or_default();
    let marked = marks.take(ledger.ledger_id(), e.id.as_str());
    for fd in members.into_iter().chain(marked).chain(extra) {
        if !fds.iter().any(|f| f.pid() == fd.pid()) {
            fds.push(fd);
        }
    }
    let pids: Vec<i32> = fds.iter().map(Pidfd::pid).collect();
    let mut t = tree::terminate(&fds, grace, SETTLE);
    if let Some(cg) = &cgroup {
        // Whatever forked while we worked is still in the cgroup.
        if cg.populated() {
            t.forced = true;
            let _ = cg.kill();
            let _ = crate::notify::until_empty(cg, SETTLE);
        }
        let _ = cg.remove();
    }
    if pids.is_empty() {
        return Ok(t);
    }
    ledger.record(
        &e.id,
        EventKind::SignalSent,
        actor,
        json!({ "pids": pids, "processes": t.signalled, "forced": t.forced, "remaining": t.remaining }),
    )?;
    Ok(t)
}
