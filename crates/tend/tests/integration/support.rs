use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tend_ledger::Ledger;

/// A private tend home with its own ledger, and helpers to drive the binary.
/// The ledger is a SQLite file in the home, or, when the suite runs on
/// PostgreSQL (`TEND_TEST_BACKEND=postgres`, as `scripts/test` runs it a
/// second time), a fresh database on the test server.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pg: Option<std::sync::Arc<PgDatabase>>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        if std::env::var("TEND_TEST_BACKEND").as_deref() == Ok("postgres") {
            return TestEnv::postgres();
        }
        TestEnv {
            dir: tempfile::tempdir().expect("a temp dir"),
            pg: None,
        }
    }

    /// A home on a fresh PostgreSQL database, whatever the suite's backend.
    pub fn postgres() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().expect("a temp dir"),
            pg: Some(std::sync::Arc::new(PgDatabase::fresh())),
        }
    }

    /// A home on a fresh database of the server `admin` names (a private
    /// server a test may stop and restart).
    pub fn postgres_on(admin: &str) -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().expect("a temp dir"),
            pg: Some(std::sync::Arc::new(PgDatabase::on(admin.to_string()))),
        }
    }

    /// Another home (another agent, as on another host) on the same
    /// PostgreSQL ledger as `other`.
    pub fn sharing(other: &TestEnv) -> TestEnv {
        let pg = other
            .pg
            .clone()
            .expect("only a PostgreSQL ledger is shared");
        TestEnv {
            dir: tempfile::tempdir().expect("a temp dir"),
            pg: Some(pg),
        }
    }

    /// Whether this home's ledger is on PostgreSQL: the tests of what only
    /// a SQLite file has (its bytes, its directory) return early on it.
    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// The ledger's location, as `--store`/`TEND_STORE` take it.
    pub fn store(&self) -> String {
        match &self.pg {
            Some(db) => db.url.clone(),
            None => self.ledger_path().display().to_string(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `tend` with this env's home and no outside configuration.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tend"));
        c.env("TEND_HOME", self.home())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("NO_COLOR", "1")
            .env_remove("TEND_KILL_GRACE")
            .env_remove("TEND_FAILPOINT")
            .env_remove("TEND_EXECUTION_ID")
            .env_remove("TEND_LEDGER")
            .env_remove("TEND_TOKEN")
            .env_remove("TEND_ALLOWED_HOSTS")
            // The test server's admin URL (with its password) is the
            // suite's, not tend's.
            .env_remove("TEND_TEST_POSTGRES")
            .stdin(Stdio::null());
        match &self.pg {
            // Commands see the URL without its password: the password file
            // is how their `tend heartbeat` logs in, as an operator's would.
            Some(db) => c.env("TEND_STORE", &db.url).env("PGPASSFILE", &db.pgpass),
            None => c.env_remove("TEND_STORE"),
        };
        c
    }

    pub fn tend(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("tend runs")
    }

    /// Runs tend, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.tend(args);
        assert!(
            out.status.success(),
            "tend {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("tend {args:?} printed no JSON ({e}): {out}"))
    }

    /// Starts a detached execution, returns its id.
    pub fn detach(&self, cmd: &[&str]) -> String {
        let mut a = vec!["run", "-d", "--"];
        a.extend_from_slice(cmd);
        self.ok(&a).trim().to_string()
    }

    /// Starts a detached execution with one setting in tend's environment,
    /// returns its id.
    pub fn detach_with_env(&self, var: (&str, &str), cmd: &[&str]) -> String {
        let mut a = vec!["run", "-d", "--"];
        a.extend_from_slice(cmd);
        let out = self
            .cmd()
            .env(var.0, var.1)
            .args(&a)
            .output()
            .expect("tend runs");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    /// Starts a detached execution with run options, returns its id.
    pub fn detach_with(&self, opts: &[&str], cmd: &[&str]) -> String {
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(opts);
        a.push("--");
        a.extend_from_slice(cmd);
        self.ok(&a).trim().to_string()
    }

    pub fn show(&self, id: &str) -> Value {
        self.json(&["show", id])
    }

    pub fn status(&self, id: &str) -> String {
        self.show(id)["status"]
            .as_str()
            .expect("a status")
            .to_string()
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.home().join("tend.db")
    }

    /// The SQLite file itself, for the tests of what only a file has.
    pub fn sqlite(&self) -> tend_ledger::SqliteLedger {
        assert!(!self.is_postgres(), "this test needs a SQLite ledger");
        tend_ledger::SqliteLedger::open(&self.ledger_path()).expect("the test ledger opens")
    }

    pub fn ledger(&self) -> Box<dyn Ledger> {
        let store = tend_ledger::Store::parse(&self.store()).expect("a store");
        tend_ledger::open(&store).expect("the test ledger opens")
    }

    /// The ledger, if it opens (`None` before tend made it, or when it is
    /// unusable).
    pub fn try_ledger(&self) -> Option<Box<dyn Ledger>> {
        let store = tend_ledger::Store::parse(&self.store()).ok()?;
        tend_ledger::open(&store).ok()
    }

    /// True (and says so) when this home is on PostgreSQL and the test is
    /// about what only a SQLite file has: the test then ends early; it
    /// runs in the suite's SQLite pass.
    pub fn sqlite_only(&self) -> bool {
        if self.is_postgres() {
            eprintln!("not on PostgreSQL: this test is about the SQLite file");
        }
        self.is_postgres()
    }

    /// Whether the ledger exists yet (tend made it).
    pub fn has_ledger(&self) -> bool {
        self.is_postgres() || self.ledger_path().exists()
    }

    pub fn ledger_id(&self) -> String {
        self.ledger().ledger_id().to_string()
    }

    /// PIDs of live processes carrying this ledger's marker (optionally for
    /// one execution).
    pub fn marked(&self, execution: Option<&str>) -> Vec<i32> {
        if !self.has_ledger() {
            return Vec::new();
        }
        tend_supervisor::marked_processes(&self.ledger_id(), None)
            .into_iter()
            .filter(|(_, id)| execution.is_none_or(|e| e == id))
            .map(|(fd, _)| fd.pid())
            .collect()
    }

    /// Waits (polling against a deadline) until no marked process is left.
    pub fn assert_no_marked(&self, execution: Option<&str>, within: Duration) {
        let left = eventually(within, || self.marked(execution).is_empty());
        assert!(
            left,
            "processes still carry the marker: {:?}",
            self.marked(execution)
        );
    }

    /// Reads an event list of an execution.
    pub fn events(&self, id: &str) -> Vec<Value> {
        self.show(id)["events"].as_array().expect("events").clone()
    }

    pub fn event_kinds(&self, id: &str) -> Vec<String> {
        self.events(id)
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // The home's daemon first (tend may have started one by itself for
        // a launch on a shared ledger), by the identity its file records.
        stop_daemon_of(&self.home());
        if !self.has_ledger() {
            return;
        }
        let Ok(store) = tend_ledger::Store::parse(&self.store()) else {
            return;
        };
        let Ok(ledger) = tend_ledger::open(&store) else {
            return;
        };
        // Supervisors first (they are not marked), then anything marked.
        for e in ledger.live().unwrap_or_default() {
            if let Ok(tend_proc::Verified::Alive(fd)) =
                tend_proc::Pidfd::open_verified(&e.supervisor)
            {
                let _ = fd.signal(tend_proc::Sig::Kill);
            }
        }
        for (fd, _) in tend_supervisor::marked_processes(ledger.ledger_id(), None) {
            let _ = fd.signal(tend_proc::Sig::Kill);
        }
        // Let tend itself tidy the rest (rows to lost, cgroups removed).
        drop(ledger);
        let _ = self.cmd().arg("reap").output();
    }
}

/// A database made for one test's homes on the server `TEND_TEST_POSTGRES`
/// names, dropped (with whatever still connects to it) when they are gone.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
    pgpass: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgDatabase {
    fn fresh() -> PgDatabase {
        let admin = std::env::var("TEND_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!(
                "this test needs a PostgreSQL server: run scripts/test, or set TEND_TEST_POSTGRES \
                 to a URL of a server where it may create databases (scripts/postgres start prints one)"
            )
        });
        PgDatabase::on(admin)
    }

    fn on(admin: String) -> PgDatabase {
        let name = format!("tend_it_{:016x}", rand_u64());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach the test server TEND_TEST_POSTGRES: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("a test database");
        let (scheme, rest) = admin.split_once("://").expect("a URL");
        let authority = rest.split('/').next().unwrap_or(rest);
        let url = format!("{scheme}://{authority}/{name}");
        let dir = tempfile::tempdir().expect("a temp dir");
        let pgpass = dir.path().join("pgpass");
        let (user, password) = authority
            .split_once('@')
            .and_then(|(u, _)| u.split_once(':'))
            .expect("the test server's URL has a user and a password");
        std::fs::write(&pgpass, format!("*:*:*:{user}:{password}\n")).expect("a password file");
        std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("a private password file");
        PgDatabase {
            admin,
            name,
            url,
            pgpass,
            _dir: dir,
        }
    }
}

impl Drop for PgDatabase {
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
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("random bytes");
    u64::from_ne_bytes(b)
}

/// Polls `cond` until it holds or `within` passes; returns whether it held.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` and returns its output, or kills it (by its PID: it is our
/// child) and fails if it is still running after `within`: a regression
/// that hangs (reads `/dev/zero`, waits on a FIFO, serves when it should
/// refuse) fails instead of hanging the suite.
pub fn finish(mut cmd: Command, within: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    if !eventually(within, || child.try_wait().unwrap().is_some()) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "still running after {within:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.wait_with_output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Asserts the error convention: exit `want`, one line on stderr starting
/// with `tend:`, and no panic.
pub fn assert_one_sentence(o: &Output, want: i32) -> String {
    let err = stderr(o);
    assert_eq!(code(o), want, "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "a panic reached the user: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    err
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// SIGKILLs a process and returns once it is really gone (kill(2) only
/// queues the signal), so the next tend command sees it dead.
pub fn sigkill(pid: u32) {
    let Ok(fd) = tend_proc::Pidfd::open(pid as i32) else {
        return;
    };
    let _ = fd.signal(tend_proc::Sig::Kill);
    assert!(
        eventually(Duration::from_secs(5), || !fd.is_alive()),
        "pid {pid} survived SIGKILL"
    );
}

/// SIGKILLs the process a ledger row names, only if it is still that
/// process (a pidfd checked against its start time): a PID read from the
/// ledger may belong to another test's process by now. Returns whether it
/// was killed.
pub fn sigkill_recorded(who: &tend_model::ProcessIdentity) -> bool {
    let Ok(tend_proc::Verified::Alive(fd)) = tend_proc::Pidfd::open_verified(who) else {
        return false;
    };
    let _ = fd.signal(tend_proc::Sig::Kill);
    assert!(
        eventually(Duration::from_secs(5), || !fd.is_alive()),
        "pid {} survived SIGKILL",
        who.pid
    );
    true
}

/// A running `tend serve` on a free loopback port, stopped (SIGKILL, by
/// its PID: it is our child) when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub base: String,
    pub token: String,
    agent: ureq::Agent,
}

impl Daemon {
    pub fn start(env: &TestEnv) -> Daemon {
        Daemon::start_with(env, &[])
    }

    pub fn start_with(env: &TestEnv, vars: &[(&str, &str)]) -> Daemon {
        let file = env.home().join("daemon.json");
        let _ = std::fs::remove_file(&file);
        let mut cmd = env.cmd();
        let log = std::fs::File::create(env.dir.path().join("daemon.log")).expect("a daemon log");
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(log)
            .stdout(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("tend serve starts");
        let started = eventually(Duration::from_secs(20), || {
            std::fs::read_to_string(&file).is_ok_and(|t| serde_json::from_str::<Value>(&t).is_ok())
        });
        assert!(started, "the daemon did not come up");
        let info: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let token = match vars.iter().find(|(k, _)| *k == "TEND_TOKEN") {
            Some((_, t)) => t.to_string(),
            None => std::fs::read_to_string(env.home().join("token"))
                .unwrap()
                .trim()
                .to_string(),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Daemon {
            child,
            base: format!("http://{}", info["listen"].as_str().unwrap()),
            token,
            agent,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon wrote to stderr so far (its log), for a failure's
    /// message.
    pub fn log(&self, env: &TestEnv) -> String {
        std::fs::read_to_string(env.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The `ip:port` it listens on.
    pub fn addr(&self) -> &str {
        self.base.strip_prefix("http://").expect("an http base")
    }

    /// GET with the token; (status, JSON or text as a JSON string).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        Daemon::parse(r)
    }

    /// POST a JSON body with the token.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body);
        Daemon::parse(r)
    }

    /// DELETE with the token.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        Daemon::parse(r)
    }

    /// A request without the token.
    pub fn anonymous(&self, path: &str) -> u16 {
        self.agent
            .get(format!("{}{path}", self.base))
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    fn parse(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut resp = r.expect("the daemon answers");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Opens the server-sent event stream and returns a reader of it.
    pub fn events(&self) -> impl std::io::BufRead {
        let resp = self
            .agent
            .get(format!("{}/api/v1/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .config()
            .timeout_global(None)
            .build()
            .call()
            .expect("the event stream opens");
        std::io::BufReader::new(resp.into_body().into_reader())
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// SIGKILLs the daemon that `home`'s daemon file names, when that process
/// still is the one recorded (a verified pidfd) and holds the home's lock.
pub fn stop_daemon_of(home: &Path) {
    let lock = [home.join("daemon.lock")];
    if let Some(who) = daemon_of(home) {
        let held = tend_proc::procfs::lock_holders(&lock).contains(&who.pid);
        if let (true, Ok(tend_proc::Verified::Alive(fd))) =
            (held, tend_proc::Pidfd::open_verified(&who))
        {
            let _ = fd.signal(tend_proc::Sig::Kill);
            let _ = eventually(Duration::from_secs(5), || !fd.is_alive());
        }
    }
    // A daemon whose file is gone (a test removed it) still holds the lock:
    // its holder, checked to hold it once a pidfd pins it.
    for pid in tend_proc::procfs::lock_holders(&lock) {
        if let Ok(fd) = tend_proc::Pidfd::open(pid) {
            if tend_proc::procfs::lock_holders(&lock).contains(&pid) {
                let _ = fd.signal(tend_proc::Sig::Kill);
                let _ = eventually(Duration::from_secs(5), || !fd.is_alive());
            }
        }
    }
}

/// The identity of the daemon `home`'s daemon file records.
pub fn daemon_of(home: &Path) -> Option<tend_model::ProcessIdentity> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("daemon.json")).ok()?).ok()?;
    Some(tend_model::ProcessIdentity {
        boot_id: v["boot_id"].as_str()?.to_string(),
        pid: v["pid"].as_i64()? as i32,
        start_time: v["start_time"].as_u64()?,
        pidfd_ino: v["pidfd_ino"].as_u64(),
    })
}
