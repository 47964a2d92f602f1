//! Agent leases on a shared (PostgreSQL) ledger, with the lease shortened
//! to 300 ms / 2 s: one renewal write per interval whatever runs; a crashed
//! host's executions `lost` by its lease as a peer sees it; an agent that
//! died fenced by its supervisors unless it returns in time; an agent cut
//! off from the database ending its trees before any peer judges them; a
//! database restart killing nothing; racing reapers making one verdict; and
//! a launch with no agent starting one, which `tend serve` replaces.
//!
//! Both homes run on this one machine: the verdicts about the other
//! agent's executions come from its lease, never from its processes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const TTL: Duration = Duration::from_secs(2);
const LEASE: [(&str, &str); 2] = [("TEND_LEASE_INTERVAL", "300ms"), ("TEND_LEASE_TTL", "2s")];

fn lease_cmd(env: &TestEnv) -> Command {
    let mut c = env.cmd();
    c.envs(LEASE);
    c
}

/// `tend run -d` with the short lease (and `store`, when given), its id.
fn launch(env: &TestEnv, store: Option<&str>, opts: &[&str], cmd: &[&str]) -> String {
    let mut c = lease_cmd(env);
    if let Some(s) = store {
        c.env("TEND_STORE", s);
    }
    let out = c
        .args(["run", "-d"])
        .args(opts)
        .arg("--")
        .args(cmd)
        .output()
        .expect("tend runs");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn agent_id(env: &TestEnv) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&read(&env.home().join("agent.json"))).expect("agent.json");
    v["agent_id"].as_str().unwrap().to_string()
}

fn pg(env: &TestEnv) -> postgres::Client {
    postgres::Client::connect(&env.store(), postgres::NoTls).expect("the test database")
}

fn renewals(env: &TestEnv, agent: &str) -> i64 {
    pg(env)
        .query_opt(
            "SELECT renewals FROM tend.agents WHERE agent_id = $1",
            &[&agent],
        )
        .unwrap()
        .map_or(0, |r| r.get(0))
}

/// Renewal writes of `agent` during `window`.
fn writes_during(env: &TestEnv, agent: &str, window: Duration) -> i64 {
    let before = renewals(env, agent);
    std::thread::sleep(window);
    renewals(env, agent) - before
}

/// The statuses of `ids`, read on one open connection (a `tend show` per
/// look would take longer than the lease's TTL to see a change).
fn statuses(c: &mut postgres::Client, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            c.query_one("SELECT status FROM tend.executions WHERE id = $1", &[id])
                .unwrap()
                .get(0)
        })
        .collect()
}

fn all_lost(c: &mut postgres::Client, ids: &[String]) -> bool {
    statuses(c, ids).iter().all(|s| s == "lost")
}

fn supervisor_of(env: &TestEnv, id: &str) -> tend_model::ProcessIdentity {
    let id = tend_model::ExecutionId::parse(id).unwrap();
    env.ledger().get(&id).unwrap().supervisor
}

fn kill9(who: &tend_model::ProcessIdentity) {
    if let Ok(tend_proc::Verified::Alive(fd)) = tend_proc::Pidfd::open_verified(who) {
        let _ = fd.signal(tend_proc::Sig::Kill);
        assert!(eventually(Duration::from_secs(5), || !fd.is_alive()));
    }
}

#[test]
fn the_lease_is_one_write_per_interval_whatever_runs() {
    let a = TestEnv::postgres();
    let _d = Daemon::start_with(&a, &LEASE);
    let me = agent_id(&a);
    assert!(eventually(Duration::from_secs(5), || renewals(&a, &me) > 0));
    let idle = writes_during(&a, &me, Duration::from_secs(3));
    for _ in 0..5 {
        launch(&a, None, &[], &["sleep", "60"]);
    }
    let busy = writes_during(&a, &me, Duration::from_secs(3));
    // 3 s / 300 ms: ten renewals, give or take the window's edges.
    for n in [idle, busy] {
        assert!((8..=11).contains(&n), "{idle} idle, {busy} with 5 running");
    }
    let epoch: i64 = pg(&a)
        .query_one("SELECT epoch FROM tend.agents WHERE agent_id = $1", &[&me])
        .unwrap()
        .get(0);
    assert_eq!(epoch, 1, "a lease renewed in time keeps its epoch");
}

#[test]
fn a_crashed_hosts_executions_are_lost_by_its_lease_within_the_ttl() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    let _peer = Daemon::start_with(&b, &LEASE);
    let ids: Vec<String> = (0..3)
        .map(|_| launch(&a, None, &[], &["sleep", "600"]))
        .collect();
    let agent = daemon_of(&a.home()).expect("a launch started a's agent");
    let sups: Vec<_> = ids.iter().map(|id| supervisor_of(&a, id)).collect();
    // The host goes: its agent, its supervisors, everything marked.
    kill9(&agent);
    sups.iter().for_each(kill9);
    let mut c = pg(&b);
    let t0 = Instant::now();
    for pid in a.marked(None) {
        sigkill(pid as u32);
    }
    let lost = eventually(TTL + Duration::from_secs(3), || all_lost(&mut c, &ids));
    let took = t0.elapsed();
    assert!(
        lost,
        "{:?}",
        ids.iter().map(|i| b.show(i)).collect::<Vec<_>>()
    );
    assert!(took <= TTL + Duration::from_secs(1), "lost after {took:?}");
    let reason = b.show(&ids[0])["reason"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with(&format!("agent {} (", agent_id(&a)))
            && reason.ends_with("lease expired"),
        "{reason}"
    );
    a.assert_no_marked(None, Duration::from_secs(1));
}

#[test]
fn supervisors_fence_their_trees_when_their_agent_died() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    let _peer = Daemon::start_with(&b, &LEASE);
    let id = launch(&a, None, &["--kill-grace", "200ms"], &["sleep", "600"]);
    let pid = a.show(&id)["pid"].as_i64().unwrap() as u32;
    kill9(&daemon_of(&a.home()).unwrap());
    let t0 = Instant::now();
    assert!(
        eventually(TTL, || a.marked(Some(&id)).is_empty()),
        "the tree outlived the TTL"
    );
    assert!(t0.elapsed() < TTL, "fenced after {:?}", t0.elapsed());
    assert!(eventually(Duration::from_secs(10), || a.status(&id) != "running"));
    let e = b.show(&id);
    assert_eq!(e["status"], "killed", "{e}");
    assert!(e["reason"].as_str().unwrap().starts_with("fenced: "), "{e}");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn an_agent_back_within_the_ttl_keeps_every_execution_running() {
    let a = TestEnv::postgres();
    let id = launch(&a, None, &["--kill-grace", "200ms"], &["sleep", "600"]);
    kill9(&daemon_of(&a.home()).unwrap());
    let _back = Daemon::start_with(&a, &LEASE);
    std::thread::sleep(TTL * 2);
    assert_eq!(a.status(&id), "running");
    assert_eq!(a.marked(Some(&id)).len(), 1);
}

/// A TCP relay between an agent and the database that the test can cut:
/// a tiny Python program, started and stopped by its PID.
struct Proxy {
    child: Child,
    port: u16,
    to: String,
}

const RELAY: &str = r#"
import socket, sys, threading
listen, target = int(sys.argv[1]), sys.argv[2].rsplit(":", 1)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", listen)); s.listen(64)
print(s.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    for x in (a, b):
        try: x.shutdown(socket.SHUT_RDWR)
        except OSError: pass
while True:
    c, _ = s.accept()
    u = socket.create_connection((target[0], int(target[1])))
    for x, y in ((c, u), (u, c)):
        threading.Thread(target=pipe, args=(x, y), daemon=True).start()
"#;

impl Proxy {
    fn start(to: &str, port: u16) -> Proxy {
        let mut child = Command::new("python3")
            .args(["-c", RELAY, &port.to_string(), to])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().expect("the relay's port");
        Proxy {
            child,
            port,
            to: to.to_string(),
        }
    }

    /// The same relay again, on the same port.
    fn restart(&mut self) {
        self.cut();
        *self = Proxy::start(&self.to.clone(), self.port);
    }

    fn cut(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Supervisors SIGKILLed when dropped, by verified pidfd.
struct Sups(Vec<tend_model::ProcessIdentity>);

impl Drop for Sups {
    fn drop(&mut self) {
        for s in &self.0 {
            if let Ok(tend_proc::Verified::Alive(fd)) = tend_proc::Pidfd::open_verified(s) {
                let _ = fd.signal(tend_proc::Sig::Kill);
            }
        }
    }
}

/// The store URL with its host and port replaced.
fn via(url: &str, port: u16) -> (String, String) {
    let (head, rest) = url.rsplit_once('@').unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    (
        format!("{head}@127.0.0.1:{port}/{db}"),
        hostport.to_string(),
    )
}

#[test]
fn an_agent_cut_off_from_the_database_ends_its_trees_before_a_peer_judges_them() {
    let b = TestEnv::postgres();
    let a = TestEnv::sharing(&b);
    let (_, server) = via(&b.store(), 0);
    let mut proxy = Proxy::start(&server, 0);
    let (store, _) = via(&b.store(), proxy.port);
    let mut vars = LEASE.to_vec();
    vars.push(("TEND_STORE", &store));
    let _agent = Daemon::start_with(&a, &vars);
    let _peer = Daemon::start_with(&b, &LEASE);
    let ids: Vec<String> = (0..2)
        .map(|_| {
            launch(
                &a,
                Some(&store),
                &["--kill-grace", "200ms"],
                &["sleep", "600"],
            )
        })
        .collect();
    // Their rows end `lost`, which TestEnv's clean-up skips: a failure
    // here must not leave their supervisors retrying for ever.
    let _sups = Sups(ids.iter().map(|id| supervisor_of(&b, id)).collect());
    let mut c = pg(&b);
    proxy.cut();
    let t0 = Instant::now();
    let (mut fenced, mut judged) = (None, None);
    while t0.elapsed() < TTL + Duration::from_secs(3) && judged.is_none() {
        if fenced.is_none() && a.marked(None).is_empty() {
            fenced = Some(t0.elapsed());
        }
        if judged.is_none() && all_lost(&mut c, &ids) {
            judged = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (Some(fenced), Some(judged)) = (fenced, judged) else {
        panic!("fenced {fenced:?}, judged {judged:?}");
    };
    assert!(fenced < judged, "fenced at {fenced:?}, lost at {judged:?}");
    assert!(judged <= TTL + Duration::from_secs(1), "lost at {judged:?}");
    // Back: the supervisors' outcomes lose to the peer's verdict, which stands.
    proxy.restart();
    for id in &ids {
        let s = supervisor_of(&b, id);
        assert!(
            eventually(Duration::from_secs(15), || {
                !tend_proc::Pidfd::open_verified(&s)
                    .is_ok_and(|v| matches!(v, tend_proc::Verified::Alive(_)))
            }),
            "the supervisor of {id} did not finish once the database was back"
        );
        assert_eq!(b.status(id), "lost");
    }
    let log = std::fs::read_to_string(a.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(log.contains("fencing this home's executions"), "{log}");
}

#[test]
fn racing_reapers_make_one_verdict_on_an_expired_agent() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    let c = TestEnv::sharing(&a);
    let ids: Vec<String> = (0..4)
        .map(|_| launch(&a, None, &[], &["sleep", "600"]))
        .collect();
    let _pb = Daemon::start_with(&b, &LEASE);
    let _pc = Daemon::start_with(&c, &LEASE);
    let sups: Vec<_> = ids.iter().map(|id| supervisor_of(&a, id)).collect();
    kill9(&daemon_of(&a.home()).unwrap());
    sups.iter().for_each(kill9);
    let mut db = pg(&b);
    let lost = eventually(TTL + Duration::from_secs(3), || all_lost(&mut db, &ids));
    assert!(
        lost,
        "{:?}\n{}",
        ids.iter()
            .map(|i| (b.status(i), b.show(i)["reason"].clone()))
            .collect::<Vec<_>>(),
        read(&b.dir.path().join("daemon.log"))
    );
    let (bid, cid) = (agent_id(&b), agent_id(&c));
    let mut judges = Vec::new();
    for id in &ids {
        let lost: Vec<serde_json::Value> = b
            .events(id)
            .into_iter()
            .filter(|e| e["kind"] == "marked-lost")
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        judges.push(
            lost[0]["details"]["judged_by"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    judges.dedup();
    assert_eq!(
        judges.len(),
        1,
        "one claim takes the agent's executions together"
    );
    assert!(judges[0] == bid || judges[0] == cid, "{judges:?}");
}

#[test]
fn a_launch_with_no_agent_starts_one_and_tend_serve_replaces_it() {
    let a = TestEnv::postgres();
    assert!(daemon_of(&a.home()).is_none());
    let id = launch(&a, None, &["--kill-grace", "200ms"], &["sleep", "600"]);
    let auto = daemon_of(&a.home()).expect("the launch started an agent");
    let file = read(&a.home().join("daemon.json"));
    assert!(file.contains("\"started_by_tend\":true"), "{file}");
    let log = std::fs::File::create(a.dir.path().join("daemon.log")).unwrap();
    let mut serve = lease_cmd(&a)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let replaced = eventually(Duration::from_secs(20), || {
        daemon_of(&a.home()).is_some_and(|d| d.pid as u32 == serve.id())
    });
    assert!(replaced, "{}", read(&a.dir.path().join("daemon.log")));
    assert!(eventually(Duration::from_secs(5), || {
        !matches!(
            tend_proc::Pidfd::open_verified(&auto),
            Ok(tend_proc::Verified::Alive(_))
        )
    }));
    // No gap its supervisors would act on.
    std::thread::sleep(TTL * 2);
    assert_eq!(a.status(&id), "running");
    let _ = serve.kill();
    let _ = serve.wait();
    // On SQLite nothing starts.
    let s = TestEnv::new();
    if !s.is_postgres() {
        s.detach(&["true"]);
        assert!(daemon_of(&s.home()).is_none());
    }
}

/// A PostgreSQL server of this test's own (`scripts/postgres` with a state
/// folder of its own), so that it may be restarted; stopped when dropped.
struct PrivateServer {
    state: tempfile::TempDir,
    url: String,
}

impl PrivateServer {
    fn script(state: &std::path::Path, verb: &str) -> std::process::Output {
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/postgres"
        ))
        .arg(verb)
        .env("TEND_PG_STATE", state)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/postgres runs")
    }

    fn start() -> PrivateServer {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        // The server's own user writes its log here.
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = PrivateServer::script(state.path(), "start");
        assert!(out.status.success(), "{}", stderr(&out));
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        PrivateServer { state, url }
    }

    fn restart(&self) {
        let out = PrivateServer::script(self.state.path(), "restart");
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = PrivateServer::script(self.state.path(), "stop");
    }
}

#[test]
fn a_database_restart_within_the_ttl_kills_nothing_and_loses_nothing() {
    let server = PrivateServer::start();
    let a = TestEnv::postgres_on(&server.url);
    let b = TestEnv::sharing(&a);
    let _peer = Daemon::start_with(&b, &LEASE);
    let short: Vec<String> = (0..2)
        .map(|i| launch(&a, None, &[], &["sh", "-c", &format!("sleep 3; exit {i}")]))
        .collect();
    let long = launch(&a, None, &[], &["sleep", "600"]);
    let before = a.marked(None).len();
    server.restart();
    // The commands ran through it, and their outcomes are recorded once
    // the server is back; the peer's reaper judged nobody.
    let mut db = pg(&a);
    let all = [short.clone(), vec![long.clone()]].concat();
    let done = eventually(Duration::from_secs(20), || {
        statuses(&mut db, &short).iter().all(|s| s != "running")
    });
    let now = statuses(&mut db, &all);
    assert!(done, "{now:?}");
    assert_eq!(
        now,
        ["succeeded", "failed", "running"],
        "{before} marked before"
    );
    std::thread::sleep(TTL * 2);
    assert_eq!(statuses(&mut db, std::slice::from_ref(&long)), ["running"]);
    assert_eq!(a.marked(Some(&long)).len(), 1);
    drop(db);
}
