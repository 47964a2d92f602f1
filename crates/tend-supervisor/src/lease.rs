//! Agent leases on a shared ledger, as the processes of one home see them:
//! the timing (`TEND_LEASE_INTERVAL`, `TEND_LEASE_TTL`), how long a fence
//! may take so that it is over before the lease can expire, and the fence
//! requests an agent leaves in its home for its supervisors when it cannot
//! reach the database to store a kill request.
//!
//! On SQLite none of this applies: one host's kernel says who is alive.

use std::path::PathBuf;
use std::time::Duration;

use crate::Home;

/// Variable that sets how often an agent renews its lease.
pub const INTERVAL_VAR: &str = "TEND_LEASE_INTERVAL";
/// Variable that sets how long a lease stays valid after a renewal.
pub const TTL_VAR: &str = "TEND_LEASE_TTL";

/// How often a lease is renewed and how long it is valid: the contract
/// between an agent, its supervisors and its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimes {
    /// Between renewals (5 s).
    pub interval: Duration,
    /// Validity after a renewal, by the database clock (20 s).
    pub ttl: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        LeaseTimes {
            interval: Duration::from_secs(5),
            ttl: Duration::from_secs(20),
        }
    }
}

impl LeaseTimes {
    /// The times in this process's environment (the CLI puts the resolved
    /// configuration there, so that every supervisor it starts agrees),
    /// else the defaults. A value that cannot be used is refused in one
    /// sentence.
    pub fn from_env() -> Result<LeaseTimes, String> {
        let d = LeaseTimes::default();
        let read = |var: &str, default: Duration| match std::env::var(var) {
            Ok(t) => tend_model::parse_duration(&t).map_err(|e| format!("bad {var}: {e}")),
            Err(_) => Ok(default),
        };
        LeaseTimes::new(read(INTERVAL_VAR, d.interval)?, read(TTL_VAR, d.ttl)?)
    }

    /// Checked times: a positive interval, and a TTL longer than it (at
    /// least two renewals fit in one TTL, so one lost write expires
    /// nothing).
    pub fn new(interval: Duration, ttl: Duration) -> Result<LeaseTimes, String> {
        if interval.is_zero() {
            return Err(format!("{INTERVAL_VAR} must be more than 0"));
        }
        if ttl < interval * 2 {
            return Err(format!(
                "{TTL_VAR} must be at least twice {INTERVAL_VAR} (a lease outlives one missed renewal)"
            ));
        }
        Ok(LeaseTimes { interval, ttl })
    }

    /// The TTL in milliseconds, as the ledger stores it.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// Room kept between the end of a fence and the earliest moment the
    /// lease can expire: a tenth of the TTL, at least 100 ms.
    pub fn margin(&self) -> Duration {
        (self.ttl / 10).max(Duration::from_millis(100))
    }

    /// The grace a fence gives a tree: the execution's own, but at most
    /// half of what a TTL leaves after a renewal interval and the margin,
    /// so the certain kill still comes before the lease can lapse.
    pub fn fence_grace(&self, grace: Duration) -> Duration {
        let room = self.ttl.saturating_sub(self.interval + self.margin());
        grace.min(room / 2)
    }

    /// How long after the lease was last known valid (by this process's
    /// clock) a fence with `grace` must begin.
    pub fn fence_after(&self, grace: Duration) -> Duration {
        self.ttl
            .saturating_sub(self.margin() + self.fence_grace(grace))
    }

    /// How long after an agent's last successful renewal it stops starting
    /// new work: one interval before the lease could lapse, and never after
    /// its fence begins.
    pub fn work_until(&self, grace: Duration) -> Duration {
        self.ttl
            .saturating_sub(self.interval)
            .min(self.fence_after(grace))
    }

    /// For a supervisor whose agent went away: how long it waits for an
    /// agent of its home to come back before it fences its tree. The agent
    /// may have renewed last one interval before it went.
    pub fn orphan_wait(&self, grace: Duration) -> Duration {
        self.fence_after(grace).saturating_sub(self.interval)
    }
}

/// A request, left in the home by its agent, that a supervisor end its
/// tree because the agent's lease may lapse: the why, and the grace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    /// In words, for the outcome's reason.
    pub reason: String,
    /// The grace before SIGKILL.
    pub grace_ms: u64,
}

fn fence_path(home: &Home, id: &str) -> PathBuf {
    home.root().join("fence").join(id)
}

/// Leaves a fence request for execution `id`'s supervisor (written to a
/// temporary name and renamed, so a reader never sees half of it). The
/// supervisor is then nudged; it looks here before it asks the ledger,
/// which may be out of reach.
pub fn request_fence(home: &Home, id: &str, fence: &Fence) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = home.root().join("fence");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let tmp = dir.join(format!(".{id}.tmp"));
    let body = serde_json::to_vec(fence).expect("a fence serialises");
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, fence_path(home, id))
}

/// Takes (reads and removes) the fence request for execution `id`, if its
/// agent left one.
pub fn take_fence(home: &Home, id: &str) -> Option<Fence> {
    let path = fence_path(home, id);
    let text = crate::read_small(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_ends_before_the_lease_can_lapse() {
        let t = LeaseTimes::new(Duration::from_millis(300), Duration::from_secs(2)).unwrap();
        let grace = Duration::from_millis(200);
        assert_eq!(t.margin(), Duration::from_millis(200));
        assert_eq!(t.fence_grace(grace), grace);
        assert_eq!(t.fence_after(grace), Duration::from_millis(1600));
        assert_eq!(t.orphan_wait(grace), Duration::from_millis(1300));
        assert_eq!(t.work_until(grace), Duration::from_millis(1600));
        // A long grace is cut so that the certain kill still fits.
        let d = LeaseTimes::default();
        let long = Duration::from_secs(60);
        assert!(d.fence_after(long) + d.fence_grace(long) + d.margin() <= d.ttl);
        assert!(LeaseTimes::new(Duration::from_secs(5), Duration::from_secs(6)).is_err());
        assert!(LeaseTimes::new(Duration::ZERO, Duration::from_secs(6)).is_err());
    }

    #[test]
    fn a_fence_request_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        home.ensure().unwrap();
        assert_eq!(take_fence(&home, "abc"), None);
        let f = Fence {
            reason: "r".into(),
            grace_ms: 5,
        };
        request_fence(&home, "abc", &f).unwrap();
        assert_eq!(take_fence(&home, "abc"), Some(f));
        assert_eq!(take_fence(&home, "abc"), None);
    }
}
