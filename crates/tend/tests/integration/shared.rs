//! Two homes on one PostgreSQL ledger behave as two hosts' agents: each
//! sees every execution, and acts only through the one that owns it.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn two_homes_on_one_postgres_ledger_see_each_others_executions() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    let id = a.detach(&["sh", "-c", "sleep 1; exit 3"]);
    let listed = b.json(&["list"]);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_ne!(
        listed[0]["agent_id"],
        b.json(&["run", "--", "true"])["agent_id"],
        "each home is its own agent"
    );
    let t0 = Instant::now();
    let out = b.tend(&["wait", &id]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(a.status(&id), "failed");
}

#[test]
fn launched_commands_see_the_store_without_its_password() {
    let a = TestEnv::postgres();
    let out = a.ok(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo \"$TEND_STORE\"; echo \"${PGPASSWORD:-none}\"",
    ]);
    let store = a.store();
    let (_, rest) = store.split_once("://").unwrap();
    let (userinfo, _) = rest.split_once('@').unwrap();
    let password = userinfo
        .split_once(':')
        .map(|(_, p)| p)
        .expect("a password in the test URL");
    assert!(!out.contains(password), "{out}");
    assert!(out.contains("postgres://"), "{out}");
    let out = a
        .cmd()
        .env("PGPASSWORD", "hunter2")
        .args(["run", "--", "sh", "-c", "echo \"${PGPASSWORD:-none}\""])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "none");
}

#[test]
fn a_detached_commands_supervisor_holds_no_password_in_its_environment() {
    let a = TestEnv::postgres();
    let store = a.store();
    let password = store
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .and_then(|(u, _)| u.split_once(':'))
        .map(|(_, p)| p.to_string())
        .expect("a password in the test URL");
    // What a command can read of its parent: the supervisor's environment.
    let id = a.detach(&["sh", "-c", "tr '\\0' '\\n' < /proc/$PPID/environ"]);
    assert_eq!(a.tend(&["wait", &id]).status.code(), Some(0));
    let seen = a.ok(&["logs", &id]);
    assert!(
        seen.contains("TEND_HOME="),
        "the parent's environment: {seen}"
    );
    assert!(!seen.contains(&password), "{seen}");
}

#[test]
fn supervisors_hold_no_database_connection_while_their_commands_run() {
    let a = TestEnv::postgres();
    let ids: Vec<String> = (0..4).map(|_| a.detach(&["sleep", "60"])).collect();
    // The home's agent holds connections of its own: this counts the
    // supervisors' alone.
    stop_daemon_of(&a.home());
    let mut c = postgres::Client::connect(&a.store(), postgres::NoTls).unwrap();
    let others = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let idle = eventually(Duration::from_secs(10), || others(&mut c) == 0);
    assert!(
        idle,
        "{} connections held by 4 idle supervisors",
        others(&mut c)
    );
    for id in &ids {
        assert_eq!(a.status(id), "running");
    }
    for id in &ids {
        a.ok(&["kill", id]);
    }
}
