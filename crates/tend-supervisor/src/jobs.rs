//! A stored job's concurrency policy, applied the same way by `tend job
//! run`, the API's run and the daemon's scheduler.
//!
//! [`make_room`] looks at the job's live executions: `allow` starts beside
//! them; `forbid` starts nothing and names them; `replace` kills them
//! (audited, graceful then certain, through [`crate::kill()`]) and returns
//! only once each outcome is committed, which the supervisor does only
//! after the tree is gone, so the new run never overlaps the old.

use tend_ledger::{Filter, KillRequest, Ledger};
use tend_model::job::{job_ref, Job};
use tend_model::{Actor, Concurrency, Execution, Status};

use crate::{Error, Home};

/// What [`make_room`] found.
#[derive(Debug)]
pub enum Room {
    /// A new run may start.
    Free,
    /// `forbid`, and these runs are live.
    Forbidden(Vec<Execution>),
}

/// The job's queued or running executions, oldest first.
pub fn live_runs<L: Ledger + ?Sized>(ledger: &L, job: &str) -> Result<Vec<Execution>, Error> {
    let mut rows = ledger.list(&Filter {
        statuses: vec![Status::Queued, Status::Running],
        job: Some(job.to_string()),
        ..Filter::default()
    })?;
    rows.reverse();
    Ok(rows)
}

/// Applies the job's concurrency policy before a run of it starts; `actor`
/// is who asked (the scheduler, a user, the API), for the kill's audit.
/// The reason a replaced run gets names the number the new one is about to
/// take (the counter's next value; a run started meanwhile by somebody
/// else would take it first).
pub fn make_room<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    job: &Job,
    actor: Actor,
) -> Result<Room, Error> {
    let name = &job.definition.name;
    let live = live_runs(ledger, name)?;
    if live.is_empty() {
        return Ok(Room::Free);
    }
    match job.definition.concurrency {
        Concurrency::Allow => Ok(Room::Free),
        Concurrency::Forbid => Ok(Room::Forbidden(live)),
        Concurrency::Replace => {
            let req = KillRequest {
                actor,
                reason: Some(format!("replaced by {}", job_ref(name, job.next_number, 1))),
                force: false,
                grace_ms: None,
            };
            crate::kill(ledger, home, &live, &req)?;
            Ok(Room::Free)
        }
    }
}

/// The sentence for a run `forbid` refused.
pub fn forbidden_sentence(job: &str, live: &[Execution]) -> String {
    let shown: Vec<String> = live
        .iter()
        .map(|e| e.job_ref().unwrap_or_else(|| e.id.to_string()))
        .collect();
    format!(
        "job '{job}' forbids overlapping runs and {} still runs; not started",
        shown.join(", ")
    )
}
