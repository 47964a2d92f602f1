//! The ledgers the suite runs against: a fresh SQLite file per test, and a
//! fresh PostgreSQL database per test on the server `TEND_TEST_POSTGRES`
//! names (one where the suite may create databases; `scripts/postgres
//! start` makes one, and `scripts/test` exports it). Without that variable
//! the PostgreSQL variants fail, saying how to get a server, unless
//! `TEND_TEST_NO_POSTGRES=1` asks to skip them (each says it skipped).

use std::sync::Mutex;

use tend_ledger::{
    AlertOutcome, Claim, Created, FireOutcome, KillRequest, Ledger, NewExecution, Outcome,
    PgLedger, SqliteLedger, Transition,
};
use tend_model::job::JobDefinition;
use tend_model::{AlertKind, Execution, ProcessIdentity, Status};

use super::Filter;

/// A fresh SQLite ledger in a folder of its own.
pub fn sqlite() -> (tempfile::TempDir, SqliteLedger) {
    let dir = tempfile::tempdir().unwrap();
    let l = SqliteLedger::open(&dir.path().join("tend.db")).unwrap();
    (dir, l)
}

/// The server the PostgreSQL variants use, or `None` when skipping them
/// was asked for; any other absence is a failure, never a silent skip.
pub fn server() -> Option<String> {
    if let Ok(url) = std::env::var("TEND_TEST_POSTGRES") {
        if !url.is_empty() {
            return Some(url);
        }
    }
    if std::env::var("TEND_TEST_NO_POSTGRES").as_deref() == Ok("1") {
        eprintln!("skipped: TEND_TEST_NO_POSTGRES=1 skips the PostgreSQL variants");
        return None;
    }
    panic!(
        "the PostgreSQL variant of this test needs a server: run scripts/test, or set \
         TEND_TEST_POSTGRES to a URL of a server where it may create databases \
         (scripts/postgres start prints one); TEND_TEST_NO_POSTGRES=1 skips these variants"
    );
}

/// `url` naming the database `db` instead of its own.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{db}{query}")
}

/// A database made for one test, dropped (with whatever still connects
/// to it) when the test ends, passed or failed.
pub struct Database {
    admin: String,
    name: String,
    /// The URL of the database.
    pub url: String,
}

impl Database {
    /// A new, empty database on the test server (`None`: skipped).
    pub fn fresh() -> Option<Database> {
        let admin = server()?;
        let name = format!("tend_test_{:016x}", rand_u64());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach the test server TEND_TEST_POSTGRES: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = with_database(&admin, &name);
        Some(Database { admin, name, url })
    }

    /// A ledger on it (created and migrated on first open).
    pub fn ledger(&self) -> PgLedger {
        PgLedger::open(&self.url).unwrap()
    }

    /// A plain client on it, for what only raw SQL can do.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Several connections to one ledger, for the racing tests: each call
/// goes through a connection of its own, so that racing threads contend
/// through the backend's locks exactly as separate processes do.
pub enum Many {
    /// SQLite: a fresh connection per call.
    PerCall(std::path::PathBuf),
    /// PostgreSQL: a pool of connections, each call on a free one.
    Pool(Vec<Mutex<PgLedger>>),
}

impl Many {
    /// A pool of `n` connections to the database at `url`.
    pub fn pool(url: &str, n: usize) -> Many {
        Many::Pool(
            (0..n)
                .map(|_| Mutex::new(PgLedger::open(url).unwrap()))
                .collect(),
        )
    }

    fn with<T>(&self, f: impl FnOnce(&dyn Ledger) -> T) -> T {
        match self {
            Many::PerCall(path) => f(&SqliteLedger::open(path).unwrap()),
            Many::Pool(pool) => {
                for m in pool {
                    if let Ok(l) = m.try_lock() {
                        return f(&*l);
                    }
                }
                let l = pool[rand_u64() as usize % pool.len()].lock().unwrap();
                f(&*l)
            }
        }
    }
}

impl Ledger for Many {
    fn ledger_id(&self) -> &str {
        "many"
    }
    fn shared(&self) -> bool {
        self.with(|l| l.shared())
    }
    fn renew_lease(
        &self,
        h: &tend_ledger::LeaseHolder,
        ttl_ms: i64,
    ) -> tend_ledger::Result<Option<tend_ledger::Renewed>> {
        self.with(|l| l.renew_lease(h, ttl_ms))
    }
    fn leases(&self) -> tend_ledger::Result<Vec<tend_ledger::AgentLease>> {
        self.with(|l| l.leases())
    }
    fn claim_expired(&self, by: &str) -> tend_ledger::Result<Vec<tend_ledger::ExpiredClaim>> {
        self.with(|l| l.claim_expired(by))
    }
    fn schema(&self) -> tend_ledger::Result<(i64, i64)> {
        self.with(|l| l.schema())
    }
    fn create(&self, n: &NewExecution) -> tend_ledger::Result<Created> {
        self.with(|l| l.create(n))
    }
    fn start(
        &self,
        id: &tend_model::ExecutionId,
        p: &ProcessIdentity,
    ) -> tend_ledger::Result<Transition> {
        self.with(|l| l.start(id, p))
    }
    fn transition(
        &self,
        id: &tend_model::ExecutionId,
        s: Status,
        o: &Outcome,
    ) -> tend_ledger::Result<Transition> {
        self.with(|l| l.transition(id, s, o))
    }
    fn transition_retrying(
        &self,
        id: &tend_model::ExecutionId,
        s: Status,
        o: &Outcome,
        r: &tend_ledger::Retry,
    ) -> tend_ledger::Result<(Transition, Option<Execution>)> {
        self.with(|l| l.transition_retrying(id, s, o, r))
    }
    fn next_attempt(&self, id: &tend_model::ExecutionId) -> tend_ledger::Result<Option<Execution>> {
        self.with(|l| l.next_attempt(id))
    }
    fn adopt(
        &self,
        id: &tend_model::ExecutionId,
        from: &ProcessIdentity,
        to: &ProcessIdentity,
    ) -> tend_ledger::Result<Transition> {
        self.with(|l| l.adopt(id, from, to))
    }
    fn run_spec(&self, id: &tend_model::ExecutionId) -> tend_ledger::Result<Option<String>> {
        self.with(|l| l.run_spec(id))
    }
    fn request_kill(
        &self,
        id: &tend_model::ExecutionId,
        k: &KillRequest,
    ) -> tend_ledger::Result<Execution> {
        self.with(|l| l.request_kill(id, k))
    }
    fn heartbeat(
        &self,
        id: &tend_model::ExecutionId,
        p: Option<&str>,
    ) -> tend_ledger::Result<Execution> {
        self.with(|l| l.heartbeat(id, p))
    }
    fn count(&self, f: &tend_ledger::Filter) -> tend_ledger::Result<u64> {
        self.with(|l| l.count(f))
    }
    fn prune(&self, before: i64, keep: u32, dry: bool) -> tend_ledger::Result<Vec<Execution>> {
        self.with(|l| l.prune(before, keep, dry))
    }
    fn stats(
        &self,
        since: Option<i64>,
        name: Option<&str>,
    ) -> tend_ledger::Result<tend_model::wire::Stats> {
        self.with(|l| l.stats(since, name))
    }
    fn summary(
        &self,
        since: Option<i64>,
        before: i64,
    ) -> tend_ledger::Result<tend_ledger::Summary> {
        self.with(|l| l.summary(since, before))
    }
    fn get(&self, id: &tend_model::ExecutionId) -> tend_ledger::Result<Execution> {
        self.with(|l| l.get(id))
    }
    fn resolve(&self, p: &str) -> tend_ledger::Result<Execution> {
        self.with(|l| l.resolve(p))
    }
    fn list(&self, f: &Filter) -> tend_ledger::Result<Vec<Execution>> {
        self.with(|l| l.list(f))
    }
    fn live(&self) -> tend_ledger::Result<Vec<Execution>> {
        self.with(|l| l.live())
    }
    fn by_key(&self, k: &str) -> tend_ledger::Result<Option<Execution>> {
        self.with(|l| l.by_key(k))
    }
    fn events(&self, id: &tend_model::ExecutionId) -> tend_ledger::Result<Vec<tend_model::Event>> {
        self.with(|l| l.events(id))
    }
    fn record(
        &self,
        id: &tend_model::ExecutionId,
        k: tend_model::EventKind,
        a: &tend_model::Actor,
        d: serde_json::Value,
    ) -> tend_ledger::Result<()> {
        self.with(|l| l.record(id, k, a, d))
    }
    fn add_job(
        &self,
        d: &JobDefinition,
        replace: bool,
    ) -> tend_ledger::Result<tend_model::job::Job> {
        self.with(|l| l.add_job(d, replace))
    }
    fn job(&self, n: &str) -> tend_ledger::Result<tend_model::job::Job> {
        self.with(|l| l.job(n))
    }
    fn jobs(&self) -> tend_ledger::Result<Vec<tend_model::job::Job>> {
        self.with(|l| l.jobs())
    }
    fn remove_job(&self, n: &str) -> tend_ledger::Result<tend_model::job::Job> {
        self.with(|l| l.remove_job(n))
    }
    fn set_paused(&self, n: &str, p: bool) -> tend_ledger::Result<tend_model::job::Job> {
        self.with(|l| l.set_paused(n, p))
    }
    fn claim_fire(&self, j: &str, at: i64, by: &str, o: FireOutcome) -> tend_ledger::Result<Claim> {
        self.with(|l| l.claim_fire(j, at, by, o))
    }
    fn left_workspaces(&self) -> tend_ledger::Result<Vec<tend_ledger::LeftWorkspace>> {
        self.with(|l| l.left_workspaces())
    }
    fn workspace_cleaned(&self, path: &str, kept: bool) -> tend_ledger::Result<()> {
        self.with(|l| l.workspace_cleaned(path, kept))
    }
    fn unlaunched_fire(&self, j: &str, by: &str, since: i64) -> tend_ledger::Result<Option<i64>> {
        self.with(|l| l.unlaunched_fire(j, by, since))
    }
    fn last_fire(&self, j: &str) -> tend_ledger::Result<Option<i64>> {
        self.with(|l| l.last_fire(j))
    }
    fn record_job(
        &self,
        j: &str,
        k: tend_model::EventKind,
        a: &tend_model::Actor,
        d: serde_json::Value,
    ) -> tend_ledger::Result<()> {
        self.with(|l| l.record_job(j, k, a, d))
    }
    fn job_events(&self, j: &str) -> tend_ledger::Result<Vec<tend_model::job::JobEvent>> {
        self.with(|l| l.job_events(j))
    }
    fn fire_stats(&self, s: Option<i64>) -> tend_ledger::Result<Vec<tend_ledger::FireStats>> {
        self.with(|l| l.fire_stats(s))
    }
    fn set_alert_level(
        &self,
        n: &str,
        level: &str,
        quiet: &str,
        k: AlertKind,
        d: serde_json::Value,
    ) -> tend_ledger::Result<bool> {
        self.with(|l| l.set_alert_level(n, level, quiet, k, d))
    }
    fn claim_alerts(
        &self,
        by: &str,
        lease: i64,
        limit: u32,
    ) -> tend_ledger::Result<Vec<tend_ledger::Alert>> {
        self.with(|l| l.claim_alerts(by, lease, limit))
    }
    fn release_alerts(&self, by: &str) -> tend_ledger::Result<u64> {
        self.with(|l| l.release_alerts(by))
    }
    fn finish_alert(&self, id: i64, by: &str, o: &AlertOutcome) -> tend_ledger::Result<bool> {
        self.with(|l| l.finish_alert(id, by, o))
    }
    fn next_alert_at(&self) -> tend_ledger::Result<Option<i64>> {
        self.with(|l| l.next_alert_at())
    }
    fn alert_counts(&self, since: i64) -> tend_ledger::Result<tend_ledger::AlertCounts> {
        self.with(|l| l.alert_counts(since))
    }
    fn prune_alerts(&self, before: i64) -> tend_ledger::Result<u64> {
        self.with(|l| l.prune_alerts(before))
    }
}
