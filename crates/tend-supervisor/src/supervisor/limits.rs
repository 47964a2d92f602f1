//! The limits of a running command: `--timeout`, `--idle-timeout`,
//! `--heartbeat-timeout` and `--max-memory`. Each is checked only when it is
//! due (its deadline is part of the poll timeout), and each that fires begins
//! a graceful kill with its [`Cause`].

use std::time::{Duration, Instant};

use serde_json::json;
use tend_ledger::Ledger;
use tend_model::{Actor, EventKind};
use tend_proc::{procfs, tree};

use super::ending::Cause;
use super::Supervision;
use crate::Error;

/// How often the tree's memory is sampled, only when `--max-memory` is set
/// (the cgroup's memory controller is not delegated on every host).
pub(super) const MEMORY_SAMPLE: Duration = Duration::from_millis(250);

impl<L: Ledger + ?Sized> Supervision<'_, L> {
    /// Fires the timeouts and limits whose time has come.
    pub(super) fn check_limits(&mut self, now: Instant) -> Result<(), Error> {
        let grace = Duration::from_millis(self.exec.kill_grace_ms);
        if self.interrupted.is_some_and(|at| now >= at + grace) {
            // Ctrl-C was passed on a grace ago and it still runs.
            self.begin_kill(Cause::Signal("SIGINT"), grace, false);
            return Ok(());
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.begin_kill(
                Cause::Timeout(self.exec.timeout_ms.unwrap_or(0)),
                grace,
                false,
            );
            return Ok(());
        }
        if let Some(ms) = self
            .exec
            .idle_timeout_ms
            .filter(|_| !self.term.behind_reader())
        {
            if now >= self.last_output + Duration::from_millis(ms) {
                self.begin_kill(Cause::Idle(ms), grace, false);
                return Ok(());
            }
        }
        if self.check_heartbeat(now, grace)? {
            return Ok(());
        }
        self.check_memory(now, grace);
        Ok(())
    }

    /// Looks at the last heartbeat when it is due, and begins the kill when
    /// it is missed. Returns true when it did.
    fn check_heartbeat(&mut self, now: Instant, grace: Duration) -> Result<bool, Error> {
        let (Some(due), Some(ms)) = (self.heartbeat_due, self.exec.heartbeat_timeout_ms) else {
            return Ok(false);
        };
        if now < due {
            return Ok(false);
        }
        // The heartbeat is in the ledger; look only when it is due.
        let row = match self.ledger.get(&self.exec.id) {
            Ok(row) => row,
            Err(e) if e.is_transient() => {
                // Not knowing is no reason to end it: look again.
                self.outbox.defer("read the last heartbeat", &e);
                self.heartbeat_due = Some(now + self.outbox.pause());
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let last = row
            .last_heartbeat_at
            .or(row.started_at)
            .unwrap_or(row.created_at);
        let left = last + ms as i64 - tend_ledger::now_ms();
        if left > 0 {
            self.heartbeat_due = Some(now + Duration::from_millis(left as u64));
            return Ok(false);
        }
        self.heartbeat_due = None;
        self.outbox.record(
            self.ledger,
            EventKind::HeartbeatMissed,
            Actor::Supervisor,
            json!({ "timeout_ms": ms, "last_heartbeat_at": row.last_heartbeat_at }),
        );
        self.begin_kill(Cause::Heartbeat(ms), grace, false);
        Ok(true)
    }

    /// Samples the tree's memory when a sample is due, keeps the peak, and
    /// begins the kill when the tree uses more than `--max-memory`.
    fn check_memory(&mut self, now: Instant, grace: Duration) {
        let (Some(at), Some(limit)) = (self.next_sample, self.exec.max_memory_bytes) else {
            return;
        };
        if now < at {
            return;
        }
        let used = self.tree_rss();
        self.peak_rss = self.peak_rss.max(used);
        self.next_sample = Some(now + MEMORY_SAMPLE);
        if used > limit {
            self.begin_kill(Cause::Memory { used, limit }, grace, false);
        }
    }

    /// The resident memory of every descendant, summed.
    fn tree_rss(&self) -> u64 {
        let page = procfs::page_size();
        tree::descendants(self.me)
            .into_iter()
            .filter_map(|p| procfs::stat(p).ok())
            .map(|s| s.rss_pages * page)
            .sum()
    }
}
