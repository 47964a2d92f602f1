//! The agent's lease on a shared ledger: what this daemon knows of it, and
//! whether it may start new work. The tasks that renew it, claim expired
//! peers and fence are in `lease/`.
//!
//! The lease is valid for the TTL after a renewal by the database's clock;
//! this process times it by its own monotonic clock from the moment it sent
//! its last successful renewal (which is no later than the database's
//! stamp), so what it believes never outlasts what its peers believe. On
//! SQLite there is no lease: work always may start.

mod fence;
mod renew;

pub(crate) use renew::{first_renewal, spawn};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tend_model::{Execution, ExecutionId, ProcessIdentity};
use tend_supervisor::lease::LeaseTimes;

/// The lease as this daemon holds it.
pub(crate) struct Lease {
    pub(crate) times: LeaseTimes,
    /// Whether the ledger is shared (PostgreSQL): only then is there one.
    pub(crate) shared: bool,
    /// The default kill grace, which a fence shortens to fit.
    pub(crate) grace: Duration,
    pub(crate) ledger_id: String,
    held: Mutex<Held>,
    /// This home's live executions and their supervisors, as the watcher
    /// last saw them: whom to fence when the ledger cannot be read.
    known: Mutex<HashMap<ExecutionId, ProcessIdentity>>,
    /// Wakes the fencer after a renewal.
    pub(crate) renewed: tokio::sync::Notify,
}

#[derive(Default)]
struct Held {
    /// When the last successful renewal was sent.
    last_ok: Option<Instant>,
    epoch: Option<i64>,
    /// The trees were fenced since the last successful renewal.
    fenced: bool,
    /// The last attempt failed.
    failing: bool,
}

impl Lease {
    pub(crate) fn new(
        times: LeaseTimes,
        shared: bool,
        grace: Duration,
        ledger_id: String,
    ) -> Lease {
        Lease {
            times,
            shared,
            grace,
            ledger_id,
            held: Mutex::new(Held::default()),
            known: Mutex::new(HashMap::new()),
            renewed: tokio::sync::Notify::new(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether new work (an API launch, a scheduled fire) may start: on a
    /// shared ledger only while the lease is certainly valid with room to
    /// spare; else the sentence that says why not.
    pub fn may_start(&self) -> Result<(), String> {
        if !self.shared {
            return Ok(());
        }
        let held = self.held();
        let limit = self.times.work_until(self.grace);
        match held.last_ok {
            Some(at) if at.elapsed() < limit && !held.fenced => Ok(()),
            Some(at) => Err(format!(
                "this agent has not renewed its lease for {} (it cannot reach the ledger), so it starts no new work until it does; try again shortly",
                tend_model::format_duration(at.elapsed())
            )),
            None => Err(
                "this agent holds no lease on the shared ledger yet, so it starts no new work; try again shortly"
                    .to_string(),
            ),
        }
    }

    /// A renewal sent at `sent` succeeded with `epoch`. Returns the epoch
    /// held before, and whether the attempt before failed.
    pub(crate) fn renewed_at(&self, sent: Instant, epoch: i64) -> (Option<i64>, bool) {
        let mut held = self.held();
        let before = (held.epoch, held.failing);
        held.last_ok = Some(sent);
        held.epoch = Some(epoch);
        held.fenced = false;
        held.failing = false;
        drop(held);
        self.renewed.notify_one();
        before
    }

    /// A renewal failed. Returns whether the one before had succeeded.
    pub(crate) fn failed(&self) -> bool {
        let mut held = self.held();
        !std::mem::replace(&mut held.failing, true)
    }

    /// Whether the attempt before failed (then the home's stragglers are
    /// ended before the next renewal).
    pub(crate) fn failing(&self) -> bool {
        self.held().failing
    }

    /// When the fence must begin: `None` while it is done or there is no
    /// lease.
    pub(crate) fn fence_at(&self) -> Option<Instant> {
        let held = self.held();
        match (held.last_ok, held.fenced) {
            (Some(at), false) => Some(at + self.times.fence_after(self.grace)),
            _ => None,
        }
    }

    /// Marks the fence begun if it is due; `Some(since last renewal)` when
    /// this call is the one to carry it out.
    pub(crate) fn take_fence(&self) -> Option<Duration> {
        let mut held = self.held();
        let at = held.last_ok?;
        if held.fenced || at.elapsed() < self.times.fence_after(self.grace) {
            return None;
        }
        held.fenced = true;
        Some(at.elapsed())
    }

    /// Follows one row of this home (`agent`): a live one is remembered
    /// with its supervisor, a finished one forgotten.
    pub(crate) fn track(&self, agent: &str, e: &Execution) {
        if !self.shared || e.agent_id.as_deref() != Some(agent) {
            return;
        }
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if e.status.is_terminal() {
            known.remove(&e.id);
        } else {
            known.insert(e.id.clone(), e.supervisor.clone());
        }
    }

    /// The live executions of this home as last seen.
    pub(crate) fn known(&self) -> Vec<(ExecutionId, ProcessIdentity)> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
