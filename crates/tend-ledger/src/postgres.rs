//! The PostgreSQL backend: one ledger that several hosts share. Its tables
//! live in the schema `tend` of the database the URL names (see
//! `migrations/postgres/`); every transition is one guarded
//! compare-and-set, and the database refuses an illegal one itself
//! (a plpgsql trigger, as SQLite's triggers do). The alert outbox is filled
//! by triggers too. Timestamps are taken from this host's clock, as the
//! SQLite backend takes them.
//!
//! The handle holds one connection (`client.rs`), made again when it
//! breaks; a call that fails for a transient reason is tried again a
//! bounded number of times, and any other failure is one sentence naming
//! the store without its password.

use tend_model::job::{Job, JobDefinition, JobEvent};
use tend_model::{Actor, Event, EventKind, Execution, ExecutionId, ProcessIdentity, Status};

use crate::{
    Alert, AlertCounts, AlertOutcome, Claim, Created, Error, Filter, FireOutcome, FireStats,
    KillRequest, Ledger, LeftWorkspace, NewExecution, Outcome, Result, Retry, Summary, Transition,
};

mod alerts;
mod client;
mod connect;
mod executions;
mod glob;
mod jobs;
mod leases;
mod listen;
mod migrate;
mod pgpass;
mod prune;
mod reads;
mod retries;
mod rows;
mod stats;
mod workspaces;

pub(crate) use connect::{redact, Target};
pub use listen::{Heard, Listener, KILLS, TRANSITIONS};

use client::{Conn, Fail};
use migrate::Found;

/// A ledger in a PostgreSQL database.
pub struct PgLedger {
    conn: Conn,
    ledger_id: String,
}

impl PgLedger {
    /// Connects to the database `url` names (the `PG*` variables filling
    /// what it leaves out) and brings tend's schema there up to date. An
    /// unusable URL, an unreachable server, refused credentials, a schema
    /// written by a newer tend and a database that holds other software's
    /// tables are each refused in one sentence, with nothing written.
    pub fn open(url: &str) -> Result<Self> {
        let target = Target::parse(url).map_err(Error::Location)?;
        PgLedger::open_target(target)
    }

    pub(crate) fn open_target(target: Target) -> Result<Self> {
        let conn = Conn::open(target)?;
        let store = conn.target.shown().to_string();
        match conn.run("bringing the schema up to date", migrate::migrate)? {
            Found::Ready(ledger_id) => Ok(PgLedger { conn, ledger_id }),
            Found::TooNew(found) => Err(Error::TooNew {
                path: store.into(),
                found,
                supported: migrate::latest(),
            }),
            Found::NotTends => Err(Error::NotTends { store }),
        }
    }

    /// Opens an existing ledger without migrating it, for a read-only
    /// home: a schema of another version is refused.
    pub fn open_read_only(url: &str) -> Result<Self> {
        let target = Target::parse(url).map_err(Error::Location)?;
        let conn = Conn::open(target)?;
        let store = conn.target.shown().to_string();
        let found = conn.run("reading the schema version", migrate::version)?;
        if found != Some(migrate::latest()) {
            return Err(Error::Open {
                path: store.into(),
                detail: format!(
                    "its schema version is {}, this tend needs {}, and a read-only ledger is not migrated",
                    found.unwrap_or(0),
                    migrate::latest()
                ),
            });
        }
        let ledger_id = conn.run("reading the ledger id", |c| {
            Ok(
                c.query_one("SELECT value FROM tend.meta WHERE key = 'ledger_id'", &[])?
                    .try_get(0)?,
            )
        })?;
        Ok(PgLedger { conn, ledger_id })
    }

    /// The newest schema version this build knows.
    pub fn schema_version() -> i64 {
        migrate::latest()
    }

    /// The store as it may be shown: its URL without the password.
    pub fn shown(&self) -> &str {
        self.conn.target.shown()
    }
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("store", &self.shown())
            .field("ledger_id", &self.ledger_id)
            .finish()
    }
}

pub(crate) use crate::columns::{random_ledger_id, random_u64};

impl Ledger for PgLedger {
    fn ledger_id(&self) -> &str {
        &self.ledger_id
    }

    fn shared(&self) -> bool {
        true
    }

    fn idle(&self) {
        self.conn.close();
    }

    fn renew_lease(
        &self,
        holder: &crate::LeaseHolder,
        ttl_ms: i64,
    ) -> Result<Option<crate::Renewed>> {
        self.conn
            .run("renewing the agent's lease", |c| {
                leases::renew(c, holder, ttl_ms)
            })
            .map(Some)
    }

    fn leases(&self) -> Result<Vec<crate::AgentLease>> {
        self.conn.run("reading the agents' leases", leases::all)
    }

    fn claim_expired(&self, by: &str) -> Result<Vec<crate::ExpiredClaim>> {
        let expired = self.conn.run("looking for expired leases", |c| {
            leases::expired_with_live(c, by)
        })?;
        let mut out = Vec::with_capacity(expired.len());
        for (agent, host, epoch) in expired {
            out.push(
                self.conn
                    .write("claiming an expired agent's executions", |tx| {
                        leases::claim(tx, by, &agent, &host, epoch)
                    })?,
            );
        }
        Ok(out)
    }

    fn schema(&self) -> Result<(i64, i64)> {
        let found = self
            .conn
            .run("reading the schema version", migrate::version)?;
        Ok((found.unwrap_or(0), migrate::latest()))
    }

    fn create(&self, new: &NewExecution) -> Result<Created> {
        self.conn.write("recording a new execution", |tx| {
            executions::create(tx, new)
        })
    }

    fn start(&self, id: &ExecutionId, p: &ProcessIdentity) -> Result<Transition> {
        self.conn
            .write("recording a start", |tx| executions::start(tx, id, p))
    }

    fn transition(&self, id: &ExecutionId, expected: Status, o: &Outcome) -> Result<Transition> {
        executions::check_transition(expected, o)?;
        self.conn.write("recording an outcome", |tx| {
            executions::transition_in(tx, id, expected, o)
        })
    }

    fn transition_retrying(
        &self,
        id: &ExecutionId,
        expected: Status,
        o: &Outcome,
        retry: &Retry,
    ) -> Result<(Transition, Option<Execution>)> {
        executions::check_transition(expected, o)?;
        self.conn.write("recording an outcome", |tx| {
            let t = executions::transition_in(tx, id, expected, o)?;
            let Transition::Won(row) = &t else {
                return Ok((t, None));
            };
            if !retries::wanted(row) {
                return Ok((t, None));
            }
            // An id collision is rolled back to the savepoint and retried.
            for _ in 0..8 {
                let mut sp = tx.transaction()?;
                if let Some(next) = retries::insert(&mut sp, row, retry)? {
                    sp.commit()?;
                    return Ok((t, Some(next)));
                }
            }
            Err(Fail::Ledger(Error::Storage {
                doing: "choosing an execution id",
                source: "eight random ids in a row were taken".into(),
            }))
        })
    }

    fn next_attempt(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        self.conn
            .run("reading the next attempt", |c| retries::next(c, id))
    }

    fn adopt(
        &self,
        id: &ExecutionId,
        from: &ProcessIdentity,
        to: &ProcessIdentity,
    ) -> Result<Transition> {
        self.conn
            .write("handing an attempt to a new supervisor", |tx| {
                retries::adopt(tx, id, from, to)
            })
    }

    fn run_spec(&self, id: &ExecutionId) -> Result<Option<String>> {
        self.conn
            .run("reading a run description", |c| retries::run_spec(c, id))
    }

    fn request_kill(&self, id: &ExecutionId, k: &KillRequest) -> Result<Execution> {
        self.conn.write("recording a kill request", |tx| {
            executions::request_kill(tx, id, k)
        })
    }

    fn heartbeat(&self, id: &ExecutionId, progress: Option<&str>) -> Result<Execution> {
        self.conn.write("recording a heartbeat", |tx| {
            executions::heartbeat(tx, id, progress)
        })
    }

    fn get(&self, id: &ExecutionId) -> Result<Execution> {
        self.conn
            .run("reading an execution", |c| rows::must_get(c, id))
    }

    fn resolve(&self, prefix: &str) -> Result<Execution> {
        self.conn
            .run("resolving an id", |c| reads::resolve(c, prefix))
    }

    fn list(&self, filter: &Filter) -> Result<Vec<Execution>> {
        self.conn
            .run("listing executions", |c| reads::list(c, filter))
    }

    fn stats(&self, since_ms: Option<i64>, name: Option<&str>) -> Result<tend_model::wire::Stats> {
        self.conn
            .run("computing stats", |c| stats::stats(c, since_ms, name))
    }

    fn prune(&self, before_ms: i64, keep_last: u32, dry_run: bool) -> Result<Vec<Execution>> {
        prune::prune(&self.conn, before_ms, keep_last, dry_run)
    }

    fn count(&self, filter: &Filter) -> Result<u64> {
        self.conn
            .run("counting executions", |c| reads::count(c, filter))
    }

    fn live(&self) -> Result<Vec<Execution>> {
        self.conn.run("reading live executions", reads::live)
    }

    fn by_key(&self, key: &str) -> Result<Option<Execution>> {
        self.conn.run("looking up a key", |c| reads::by_key(c, key))
    }

    fn summary(&self, since_ms: Option<i64>, long_running_before: i64) -> Result<Summary> {
        self.conn.run("summarising", |c| {
            reads::summary(c, since_ms, long_running_before)
        })
    }

    fn events(&self, id: &ExecutionId) -> Result<Vec<Event>> {
        self.conn.run("reading events", |c| reads::events(c, id))
    }

    fn record(
        &self,
        id: &ExecutionId,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()> {
        self.conn.write("recording an event", |tx| {
            rows::insert_event(tx, id.as_str(), kind, actor, &details)
        })
    }

    fn add_job(&self, def: &JobDefinition, replace: bool) -> Result<Job> {
        self.conn
            .write("storing a job", |tx| jobs::add(tx, def, replace))
    }

    fn job(&self, name: &str) -> Result<Job> {
        self.conn.run("reading a job", |c| jobs::must_get(c, name))
    }

    fn jobs(&self) -> Result<Vec<Job>> {
        self.conn.run("listing jobs", jobs::all)
    }

    fn remove_job(&self, name: &str) -> Result<Job> {
        self.conn
            .write("removing a job", |tx| jobs::remove(tx, name))
    }

    fn set_paused(&self, name: &str, paused: bool) -> Result<Job> {
        self.conn
            .write("pausing a job", |tx| jobs::set_paused(tx, name, paused))
    }

    fn claim_fire(&self, job: &str, at: i64, by: &str, outcome: FireOutcome) -> Result<Claim> {
        self.conn.write("claiming a fire", |tx| {
            jobs::claim(tx, job, at, by, outcome)
        })
    }

    fn unlaunched_fire(&self, job: &str, by: &str, since_ms: i64) -> Result<Option<i64>> {
        self.conn.run("reading a job's fires", |c| {
            jobs::unlaunched_fire(c, job, by, since_ms)
        })
    }

    fn last_fire(&self, job: &str) -> Result<Option<i64>> {
        self.conn
            .run("reading a job's fires", |c| jobs::last_fire(c, job))
    }

    fn record_job(
        &self,
        job: &str,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()> {
        self.conn.write("recording a job event", |tx| {
            jobs::insert_event(tx, job, kind, actor, &details)
        })
    }

    fn job_events(&self, job: &str) -> Result<Vec<JobEvent>> {
        self.conn
            .run("reading job events", |c| jobs::events(c, job))
    }

    fn fire_stats(&self, since_ms: Option<i64>) -> Result<Vec<FireStats>> {
        self.conn.run("counting fires", |c| {
            jobs::stats(c, since_ms.unwrap_or(i64::MIN))
        })
    }

    fn set_alert_level(
        &self,
        name: &str,
        level: &str,
        quiet: &str,
        kind: tend_model::AlertKind,
        details: serde_json::Value,
    ) -> Result<bool> {
        // Most calls change nothing: say so without a write transaction.
        let stored = self
            .conn
            .run("reading an alert level", |c| alerts::stored_level(c, name))?;
        if stored.as_deref() == Some(level) {
            return Ok(false);
        }
        self.conn.write("recording an alert level", |tx| {
            alerts::set_level(tx, name, level, quiet, kind, &details)
        })
    }

    fn claim_alerts(&self, by: &str, lease_ms: i64, limit: u32) -> Result<Vec<Alert>> {
        self.conn.write("claiming alerts", |tx| {
            alerts::claim(tx, by, lease_ms, limit)
        })
    }

    fn release_alerts(&self, by: &str) -> Result<u64> {
        self.conn
            .write("releasing alert claims", |tx| alerts::release(tx, by))
    }

    fn finish_alert(&self, id: i64, by: &str, outcome: &AlertOutcome) -> Result<bool> {
        self.conn.write("finishing an alert", |tx| {
            alerts::finish(tx, id, by, outcome)
        })
    }

    fn next_alert_at(&self) -> Result<Option<i64>> {
        self.conn.run("reading the next alert", alerts::next_at)
    }

    fn alert_counts(&self, failed_since_ms: i64) -> Result<AlertCounts> {
        self.conn
            .run("counting alerts", |c| alerts::counts(c, failed_since_ms))
    }

    fn prune_alerts(&self, before_ms: i64) -> Result<u64> {
        prune::prune_alerts(&self.conn, before_ms)
    }

    fn left_workspaces(&self) -> Result<Vec<LeftWorkspace>> {
        self.conn.run("reading workspaces", workspaces::left)
    }

    fn workspace_cleaned(&self, path: &str, branch_kept: bool) -> Result<()> {
        self.conn.run("recording a workspace's clean-up", |c| {
            workspaces::cleaned(c, path, branch_kept)
        })
    }
}
