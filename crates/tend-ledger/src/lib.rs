//! The durable ledger: every execution and every event, behind one trait.
//!
//! [`Ledger`] is what the supervisor, the reaper and the CLI talk to; the
//! SQLite backend ([`SqliteLedger`]) is the embedded default, and the
//! PostgreSQL backend ([`PgLedger`]) is one ledger that several hosts share. Every status change is a single
//! compare-and-set ([`Ledger::transition`]): it names the status it expects,
//! and the caller learns whether it won ([`Transition::Won`]) or somebody
//! else got there first ([`Transition::Lost`]). The terminal event is written
//! in the same transaction, and the loser's attempt is recorded too.
//!
//! What the ledger does *not* do: it never looks at processes. Deciding that
//! a supervisor is dead is `tend-supervisor`'s job; the ledger only makes the
//! resulting write safe.
//!
//! ```
//! use tend_ledger::{Ledger, Store};
//! let dir = tempfile::tempdir()?;
//! // `--store` and `TEND_STORE` take the same text: a path or sqlite://PATH.
//! let store = Store::parse(&dir.path().join("tend.db").to_string_lossy())?;
//! // Created and migrated on first open; everything above sees the trait.
//! let ledger: Box<dyn Ledger> = tend_ledger::open(&store)?;
//! let (found, newest) = ledger.schema()?;
//! assert_eq!(found, newest);
//! for e in ledger.live()? {
//!     println!("{} {}", e.id, e.status);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

mod alerts;
mod busy;
mod columns;
mod error;
mod lease;
mod postgres;
mod sqlite;
mod sqlite_prune;
mod sqlite_stats;
mod store;
mod types;

pub use alerts::{Alert, AlertCounts, AlertOutcome};
pub use busy::{on_long_busy, LONG_BUSY};
pub use error::Error;
pub use lease::{expired_reason, AgentLease, ExpiredClaim, LeaseHolder, Renewed};
pub use postgres::{Heard, Listener, PgLedger};
/// The channels a PostgreSQL ledger NOTIFYs on (see [`Listener`]).
pub mod channels {
    pub use crate::postgres::{KILLS, TRANSITIONS};
}
pub use sqlite::SqliteLedger;
pub use store::{open, open_read_only, PgUrl, Store};
pub use types::{
    Claim, Created, Filter, FireOutcome, FireStats, KillReport, KillRequest, LeftWorkspace,
    NewExecution, NewWorkspace, Outcome, Retry, Summary, Transition, Usage, KILL_BUCKETS_MS,
};

use tend_model::job::{Job, JobDefinition, JobEvent};
use tend_model::{Actor, AlertKind, Event, EventKind, Execution, ExecutionId, ProcessIdentity};

/// Shorthand for ledger results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The operations every ledger backend offers. Methods take `&self` so that
/// one handle can be shared by a single-threaded supervisor's loop; every
/// write is its own transaction.
pub trait Ledger: Send {
    /// The random id made when this ledger was created; it goes into every
    /// process's marker so that ledgers never touch each other's processes.
    fn ledger_id(&self) -> &str;

    /// Whether several hosts share this ledger (PostgreSQL): then another
    /// agent's execution is supervised where this process's kernel cannot
    /// look, even when both homes happen to be on one machine, and is
    /// reached only through the ledger (a kill request that agent carries
    /// out, a notification of its end), and an agent's liveness is its
    /// lease. A SQLite file has one host.
    fn shared(&self) -> bool {
        false
    }

    /// Records a new `queued` execution with a fresh unique id, holding its
    /// key if it has one. When a live execution holds the key already (or,
    /// with [`NewExecution::reuse_finished_ms`], a recent `succeeded` one
    /// has it), that one is returned instead ([`Created::Existing`]) and
    /// nothing is recorded: a key names at most one live execution.
    fn create(&self, new: &NewExecution) -> Result<Created>;

    /// `queued → running`, recording the command's process identity.
    fn start(&self, id: &ExecutionId, process: &ProcessIdentity) -> Result<Transition>;

    /// Moves an execution from `expected` to the outcome's terminal status,
    /// releasing its key and writing the outcome's event, all in one
    /// transaction. Exactly one of several racing callers wins.
    fn transition(
        &self,
        id: &ExecutionId,
        expected: tend_model::Status,
        outcome: &Outcome,
    ) -> Result<Transition>;

    /// [`transition`](Ledger::transition), and in the same transaction,
    /// when the outcome is retried (`failed`, `timed_out`, `lost`) and the
    /// execution has attempts left, its next attempt recorded `queued`,
    /// starting after the retry's delay and holding its key. Returns the
    /// transition and the next attempt, if one was recorded.
    fn transition_retrying(
        &self,
        id: &ExecutionId,
        expected: tend_model::Status,
        outcome: &Outcome,
        retry: &Retry,
    ) -> Result<(Transition, Option<Execution>)>;

    /// The attempt recorded to retry `id`, if there is one.
    fn next_attempt(&self, id: &ExecutionId) -> Result<Option<Execution>>;

    /// Hands a `queued` execution from its supervisor `from` (gone) to
    /// `to`, as one compare-and-set: of several adopters exactly one wins.
    fn adopt(
        &self,
        id: &ExecutionId,
        from: &ProcessIdentity,
        to: &ProcessIdentity,
    ) -> Result<Transition>;

    /// The run description stored with an execution that has retries.
    fn run_spec(&self, id: &ExecutionId) -> Result<Option<String>>;

    /// Renews `holder`'s lease for `ttl_ms` by the database's clock (or
    /// takes it, with a new epoch, when it is new or had expired): one
    /// write per call whatever the number of executions. `None` where
    /// leases do not exist: on one host with SQLite no lease writes happen,
    /// liveness comes from the kernel.
    fn renew_lease(&self, holder: &LeaseHolder, ttl_ms: i64) -> Result<Option<Renewed>> {
        let _ = (holder, ttl_ms);
        Ok(None)
    }

    /// Every agent's lease, by agent id (none where leases do not exist).
    fn leases(&self) -> Result<Vec<AgentLease>> {
        Ok(Vec::new())
    }

    /// For the reaper of agent `by`: every other agent whose lease expired
    /// while it has live executions, claimed (`FOR UPDATE SKIP LOCKED`,
    /// guarded by the expired epoch) and its live executions marked `lost`
    /// with the lease named as the reason, one agent per transaction. Of
    /// racing reapers exactly one makes each verdict; the others get
    /// [`ExpiredClaim::AlreadyClaimed`]. Nothing where leases do not exist.
    fn claim_expired(&self, by: &str) -> Result<Vec<ExpiredClaim>> {
        let _ = by;
        Ok(Vec::new())
    }

    /// Records a kill request on a live execution, for its supervisor to act
    /// on. Returns the row as it is after the request (terminal rows are
    /// returned unchanged: a kill of a finished execution is a no-op).
    fn request_kill(&self, id: &ExecutionId, request: &KillRequest) -> Result<Execution>;

    /// Records a heartbeat (and optional progress text) of a running
    /// execution; a row that is not running is returned unchanged.
    fn heartbeat(&self, id: &ExecutionId, progress: Option<&str>) -> Result<Execution>;

    /// One execution by full id.
    fn get(&self, id: &ExecutionId) -> Result<Execution>;

    /// One execution by a unique prefix of 4 to 8 characters.
    fn resolve(&self, prefix: &str) -> Result<Execution>;

    /// Executions matching a filter, newest first.
    fn list(&self, filter: &Filter) -> Result<Vec<Execution>>;

    /// Counts, failure rate, run-time percentiles, the slowest and most
    /// failing names and the last 24 hours, over the executions created at
    /// or after `since_ms` whose name matches the glob `name`
    /// (`tend stats`, `GET /api/v1/stats`): aggregates the backend computes,
    /// not rows it returns.
    fn stats(&self, since_ms: Option<i64>, name: Option<&str>) -> Result<tend_model::wire::Stats>;

    /// Lets go of what the ledger holds open between calls (a database
    /// connection) until the next call. A supervisor calls it before it
    /// waits for its command, so that a thousand idle executions do not
    /// hold a thousand PostgreSQL connections; SQLite holds only a file.
    fn idle(&self) {}

    /// Deletes the terminal executions that ended before `before_ms`, with
    /// their events, except the `keep_last` newest of each job; never a live
    /// one. Returns what went (with `dry_run`, what would go, deleting
    /// nothing), so that the caller removes their logs.
    fn prune(&self, before_ms: i64, keep_last: u32, dry_run: bool) -> Result<Vec<Execution>>;

    /// How many executions match `filter`, paging aside: what `list`
    /// would show without a limit, so a cut list can say how many more.
    fn count(&self, filter: &Filter) -> Result<u64>;

    /// Every `queued` or `running` execution, oldest first; this is what
    /// reconciling reads, so backends keep it cheap (an index on live rows).
    fn live(&self) -> Result<Vec<Execution>>;

    /// The execution a key stands for: the live one holding it, else the
    /// newest finished one that is not `lost` or `cancelled`.
    fn by_key(&self, key: &str) -> Result<Option<Execution>>;

    /// Counts for health and metrics over executions created at or after
    /// `since_ms` (all when `None`); `long_running_before` is the start-time
    /// cutoff (ms since the epoch) for counting long-running executions.
    fn summary(&self, since_ms: Option<i64>, long_running_before: i64) -> Result<Summary>;

    /// All events of one execution, oldest first.
    fn events(&self, id: &ExecutionId) -> Result<Vec<Event>>;

    /// The schema version found and the newest this build knows, for
    /// `doctor` and `health`.
    fn schema(&self) -> Result<(i64, i64)>;

    /// A full consistency check of the storage, where the backend has one
    /// (SQLite's `integrity_check`); `None` where it has none.
    fn integrity_check(&self) -> Option<Result<(), String>> {
        None
    }

    /// The files this ledger is, where it is files (SQLite): a process that
    /// supervises through this ledger holds one of them open.
    fn files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// When this process found the ledger to be a copy of another (a copied
    /// file) and gave it an id of its own: the original's id. Backends that
    /// cannot be copied that way answer `None`.
    fn copied_from(&self) -> Option<&str> {
        None
    }

    /// Appends an audit event.
    fn record(
        &self,
        id: &ExecutionId,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()>;

    /// Stores a job. An existing name is refused ([`Error::JobExists`])
    /// unless `replace`, which keeps its creation time, pause and counter
    /// and owes no fire from before now.
    fn add_job(&self, def: &JobDefinition, replace: bool) -> Result<Job>;

    /// One job by name ([`Error::NoJob`] when there is none).
    fn job(&self, name: &str) -> Result<Job>;

    /// Every job, by name.
    fn jobs(&self) -> Result<Vec<Job>>;

    /// Removes a job and returns it as it was; its executions, fires,
    /// events and counter stay (numbers are never handed out again).
    fn remove_job(&self, name: &str) -> Result<Job>;

    /// Pauses or resumes a job. A resumed job owes no fire from its pause.
    fn set_paused(&self, name: &str, paused: bool) -> Result<Job>;

    /// Decides the fire of `job` at the nominal instant `scheduled_at`,
    /// once: the first caller wins, every other (another daemon, a
    /// restarted one) gets [`Claim::Taken`], as does a claim older than a
    /// decided fire. `by` is the deciding agent.
    fn claim_fire(
        &self,
        job: &str,
        scheduled_at: i64,
        by: &str,
        outcome: FireOutcome,
    ) -> Result<Claim>;

    /// The newest fire of `job` that agent `by` decided to run at or after
    /// `since_ms` but that no execution was recorded for (a daemon stopped
    /// between the claim and the launch), if any.
    fn unlaunched_fire(&self, job: &str, by: &str, since_ms: i64) -> Result<Option<i64>>;

    /// The nominal instant of the job's last decided fire.
    fn last_fire(&self, job: &str) -> Result<Option<i64>>;

    /// Appends an audit event of a job (not of one of its executions).
    fn record_job(
        &self,
        job: &str,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()>;

    /// A job's events, oldest first (the job need not exist any more).
    fn job_events(&self, job: &str) -> Result<Vec<JobEvent>>;

    /// Per job, what its schedule did since `since_ms` (ever when `None`),
    /// by name.
    fn fire_stats(&self, since_ms: Option<i64>) -> Result<Vec<FireStats>>;

    /// Stores `level` as the level of `name` (`long_running`,
    /// `health:<agent>`) and, when it differs from the one stored before
    /// (or from `quiet` when none was), queues an alert of `kind` with
    /// `details`, in one transaction: of several daemons that see the same
    /// change, one queues it. Returns whether an alert was queued.
    fn set_alert_level(
        &self,
        name: &str,
        level: &str,
        quiet: &str,
        kind: AlertKind,
        details: serde_json::Value,
    ) -> Result<bool>;

    /// Claims up to `limit` queued alerts that are due, for `lease_ms`:
    /// nobody else gets them until the lease ends (a sender that dies
    /// holding them loses them then), and a row claimed by one caller is
    /// never handed to another while the lease runs. `by` is the agent id.
    fn claim_alerts(&self, by: &str, lease_ms: i64, limit: u32) -> Result<Vec<Alert>>;

    /// Gives back every claim `by` holds (a daemon starting again after a
    /// crash, which alone sends for its agent). Returns how many.
    fn release_alerts(&self, by: &str) -> Result<u64>;

    /// Records how a claimed alert went, with its event (`alert-sent`,
    /// `alert-failed`) on the execution or the job, in one transaction.
    /// `false` when `by` no longer holds the claim (its lease ended and
    /// another sender took the alert): nothing is written then.
    fn finish_alert(&self, id: i64, by: &str, outcome: &AlertOutcome) -> Result<bool>;

    /// When the next queued alert is due (its retry time, or the end of
    /// the lease that holds it), ms since the epoch; `None` when none waits.
    fn next_alert_at(&self) -> Result<Option<i64>>;

    /// How many alerts wait, and how many were given up since
    /// `failed_since_ms`.
    fn alert_counts(&self, failed_since_ms: i64) -> Result<AlertCounts>;

    /// Deletes the alerts queued before `before_ms`, whatever their state
    /// (`tend prune` and the daemon's prune keep the outbox bounded).
    /// Returns how many went.
    fn prune_alerts(&self, before_ms: i64) -> Result<u64>;

    /// The workspaces tend made that no execution uses any more (their
    /// executions were pruned), for `prune` to clean up.
    fn left_workspaces(&self) -> Result<Vec<LeftWorkspace>>;

    /// A left workspace cleaned up: forgotten, or, with `branch_kept`, its
    /// worktree recorded as removed while its unmerged branch stays known.
    fn workspace_cleaned(&self, path: &str, branch_kept: bool) -> Result<()>;
}

/// A boxed ledger is a ledger, so that what [`open`] returns goes wherever
/// a backend does.
impl<T: Ledger + ?Sized> Ledger for Box<T> {
    fn ledger_id(&self) -> &str {
        (**self).ledger_id()
    }
    fn shared(&self) -> bool {
        (**self).shared()
    }
    fn create(&self, new: &NewExecution) -> Result<Created> {
        (**self).create(new)
    }
    fn start(&self, id: &ExecutionId, process: &ProcessIdentity) -> Result<Transition> {
        (**self).start(id, process)
    }
    fn transition(
        &self,
        id: &ExecutionId,
        expected: tend_model::Status,
        outcome: &Outcome,
    ) -> Result<Transition> {
        (**self).transition(id, expected, outcome)
    }
    fn transition_retrying(
        &self,
        id: &ExecutionId,
        expected: tend_model::Status,
        outcome: &Outcome,
        retry: &Retry,
    ) -> Result<(Transition, Option<Execution>)> {
        (**self).transition_retrying(id, expected, outcome, retry)
    }
    fn next_attempt(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        (**self).next_attempt(id)
    }
    fn adopt(
        &self,
        id: &ExecutionId,
        from: &ProcessIdentity,
        to: &ProcessIdentity,
    ) -> Result<Transition> {
        (**self).adopt(id, from, to)
    }
    fn run_spec(&self, id: &ExecutionId) -> Result<Option<String>> {
        (**self).run_spec(id)
    }
    fn renew_lease(&self, holder: &LeaseHolder, ttl_ms: i64) -> Result<Option<Renewed>> {
        (**self).renew_lease(holder, ttl_ms)
    }
    fn leases(&self) -> Result<Vec<AgentLease>> {
        (**self).leases()
    }
    fn claim_expired(&self, by: &str) -> Result<Vec<ExpiredClaim>> {
        (**self).claim_expired(by)
    }
    fn request_kill(&self, id: &ExecutionId, request: &KillRequest) -> Result<Execution> {
        (**self).request_kill(id, request)
    }
    fn heartbeat(&self, id: &ExecutionId, progress: Option<&str>) -> Result<Execution> {
        (**self).heartbeat(id, progress)
    }
    fn get(&self, id: &ExecutionId) -> Result<Execution> {
        (**self).get(id)
    }
    fn resolve(&self, prefix: &str) -> Result<Execution> {
        (**self).resolve(prefix)
    }
    fn list(&self, filter: &Filter) -> Result<Vec<Execution>> {
        (**self).list(filter)
    }
    fn count(&self, filter: &Filter) -> Result<u64> {
        (**self).count(filter)
    }
    fn idle(&self) {
        (**self).idle()
    }
    fn prune(&self, before_ms: i64, keep_last: u32, dry_run: bool) -> Result<Vec<Execution>> {
        (**self).prune(before_ms, keep_last, dry_run)
    }
    fn stats(&self, since_ms: Option<i64>, name: Option<&str>) -> Result<tend_model::wire::Stats> {
        (**self).stats(since_ms, name)
    }
    fn live(&self) -> Result<Vec<Execution>> {
        (**self).live()
    }
    fn by_key(&self, key: &str) -> Result<Option<Execution>> {
        (**self).by_key(key)
    }
    fn summary(&self, since_ms: Option<i64>, long_running_before: i64) -> Result<Summary> {
        (**self).summary(since_ms, long_running_before)
    }
    fn events(&self, id: &ExecutionId) -> Result<Vec<Event>> {
        (**self).events(id)
    }
    fn schema(&self) -> Result<(i64, i64)> {
        (**self).schema()
    }
    fn integrity_check(&self) -> Option<Result<(), String>> {
        (**self).integrity_check()
    }
    fn copied_from(&self) -> Option<&str> {
        (**self).copied_from()
    }
    fn files(&self) -> Vec<std::path::PathBuf> {
        (**self).files()
    }
    fn record(
        &self,
        id: &ExecutionId,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()> {
        (**self).record(id, kind, actor, details)
    }
    fn add_job(&self, def: &JobDefinition, replace: bool) -> Result<Job> {
        (**self).add_job(def, replace)
    }
    fn job(&self, name: &str) -> Result<Job> {
        (**self).job(name)
    }
    fn jobs(&self) -> Result<Vec<Job>> {
        (**self).jobs()
    }
    fn remove_job(&self, name: &str) -> Result<Job> {
        (**self).remove_job(name)
    }
    fn set_paused(&self, name: &str, paused: bool) -> Result<Job> {
        (**self).set_paused(name, paused)
    }
    fn claim_fire(
        &self,
        job: &str,
        scheduled_at: i64,
        by: &str,
        outcome: FireOutcome,
    ) -> Result<Claim> {
        (**self).claim_fire(job, scheduled_at, by, outcome)
    }
    fn unlaunched_fire(&self, job: &str, by: &str, since_ms: i64) -> Result<Option<i64>> {
        (**self).unlaunched_fire(job, by, since_ms)
    }
    fn last_fire(&self, job: &str) -> Result<Option<i64>> {
        (**self).last_fire(job)
    }
    fn record_job(
        &self,
        job: &str,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()> {
        (**self).record_job(job, kind, actor, details)
    }
    fn job_events(&self, job: &str) -> Result<Vec<JobEvent>> {
        (**self).job_events(job)
    }
    fn fire_stats(&self, since_ms: Option<i64>) -> Result<Vec<FireStats>> {
        (**self).fire_stats(since_ms)
    }
    fn set_alert_level(
        &self,
        name: &str,
        level: &str,
        quiet: &str,
        kind: AlertKind,
        details: serde_json::Value,
    ) -> Result<bool> {
        (**self).set_alert_level(name, level, quiet, kind, details)
    }
    fn claim_alerts(&self, by: &str, lease_ms: i64, limit: u32) -> Result<Vec<Alert>> {
        (**self).claim_alerts(by, lease_ms, limit)
    }
    fn release_alerts(&self, by: &str) -> Result<u64> {
        (**self).release_alerts(by)
    }
    fn finish_alert(&self, id: i64, by: &str, outcome: &AlertOutcome) -> Result<bool> {
        (**self).finish_alert(id, by, outcome)
    }
    fn next_alert_at(&self) -> Result<Option<i64>> {
        (**self).next_alert_at()
    }
    fn alert_counts(&self, failed_since_ms: i64) -> Result<AlertCounts> {
        (**self).alert_counts(failed_since_ms)
    }
    fn prune_alerts(&self, before_ms: i64) -> Result<u64> {
        (**self).prune_alerts(before_ms)
    }
    fn left_workspaces(&self) -> Result<Vec<LeftWorkspace>> {
        (**self).left_workspaces()
    }
    fn workspace_cleaned(&self, path: &str, branch_kept: bool) -> Result<()> {
        (**self).workspace_cleaned(path, branch_kept)
    }
}

/// The moment `age` before now, in milliseconds since the epoch; an age
/// older than the epoch is the epoch (a huge `--since` or `--older-than`
/// never wraps around to the future).
pub fn ms_ago(age: std::time::Duration) -> i64 {
    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    now_ms().saturating_sub(age).max(0)
}

/// Milliseconds since the Unix epoch on this host's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
