//! `--retries`: each attempt an execution of its own, the backoff between
//! them, the id that stands for the chain, and a pending attempt that
//! survives its supervisor.

use std::time::Duration;

use tend_ledger::{Filter, Ledger};
use tend_model::{Execution, Status};

use crate::support::{
    assert_one_sentence, code, eventually, finish, sigkill_recorded, stderr, Daemon, TestEnv,
};

/// A shell command that fails (exit 3) until its `n`th run, counting in
/// a file of the test's own.
fn flaky(env: &TestEnv, n: u32) -> String {
    let count = env.dir.path().join("count");
    format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo try $n; [ $n -ge {n} ] || exit 3",
        c = count.display()
    )
}

/// Every execution, oldest first.
fn rows(env: &TestEnv) -> Vec<Execution> {
    if !env.has_ledger() {
        return Vec::new();
    }
    let mut all = env.ledger().list(&Filter::default()).expect("listed");
    all.reverse();
    all
}

/// The pending attempt, once there is one.
fn pending(env: &TestEnv) -> Execution {
    let mut found = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            found = rows(env)
                .into_iter()
                .find(|e| e.status == Status::Queued && e.retry_of.is_some());
            found.is_some()
        }),
        "no pending attempt appeared"
    );
    found.unwrap()
}

#[test]
fn failing_twice_then_succeeding_is_three_attempts_with_the_backoff_between() {
    let env = TestEnv::new();
    let script = flaky(&env, 3);
    let out = env.tend(&[
        "run",
        "--retries",
        "3",
        "--retry-backoff",
        "300ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "try 1\ntry 2\ntry 3\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains("attempt 1 failed (exit 3); attempt 2 of 4 in"),
        "{err}"
    );
    assert!(
        err.contains("attempt 2 failed (exit 3); attempt 3 of 4 in"),
        "{err}"
    );
    let all = rows(&env);
    assert_eq!(all.len(), 3);
    let attempts: Vec<_> = all.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [Some(1), Some(2), Some(3)]);
    let statuses: Vec<_> = all.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [Status::Failed, Status::Failed, Status::Succeeded]
    );
    assert_eq!(all[1].retry_of.as_ref(), Some(&all[0].id));
    assert_eq!(all[2].retry_of.as_ref(), Some(&all[1].id));
    // Backoff 300ms, doubling, ±10 %: lower bounds only.
    for (i, want_ms) in [(1, 300.0), (2, 600.0)] {
        let gap = all[i].started_at.unwrap() - all[i - 1].finished_at.unwrap();
        assert!(
            gap as f64 >= 0.9 * want_ms,
            "gap {i} was {gap} ms, want ≥ 0.9 × {want_ms}"
        );
    }
    let kinds = env.event_kinds(all[0].id.as_str());
    assert!(kinds.contains(&"retry-scheduled".to_string()), "{kinds:?}");
    let shown = env.ok(&["show", all[2].id.as_str()]);
    assert!(
        shown.contains(&format!("3 of 4, retries {}", all[1].id)),
        "{shown}"
    );
}

#[test]
fn the_exit_code_is_the_last_attempts_and_timeouts_are_retried() {
    let env = TestEnv::new();
    let out = env.tend(&[
        "run",
        "--retries",
        "2",
        "--retry-backoff",
        "50ms",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(code(&out), 7);
    assert_eq!(rows(&env).len(), 3);

    let env = TestEnv::new();
    let out = env.tend(&[
        "run",
        "--retries",
        "1",
        "--retry-backoff",
        "50ms",
        "--timeout",
        "200ms",
        "--",
        "sleep",
        "5",
    ]);
    assert_eq!(code(&out), 124);
    let statuses: Vec<_> = rows(&env).iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Status::TimedOut, Status::TimedOut]);
}

#[test]
fn a_killed_attempt_is_never_retried() {
    let env = TestEnv::new();
    let id = env.detach_with(
        &["--retries", "3", "--retry-backoff", "50ms"],
        &["sleep", "30"],
    );
    assert!(eventually(Duration::from_secs(10), || env.status(&id) == "running"));
    env.ok(&["kill", &id]);
    std::thread::sleep(Duration::from_millis(300));
    let all = rows(&env);
    assert_eq!(all.len(), 1, "a killed attempt was retried");
    assert_eq!(all[0].status, Status::Killed);
}

#[test]
fn the_first_id_stands_for_the_chain_in_wait_and_kill() {
    let env = TestEnv::new();
    let script = flaky(&env, 3);
    let id = env.detach_with(
        &["--retries", "3", "--retry-backoff", "100ms"],
        &["sh", "-c", &script],
    );
    let out = env.tend(&["--json", "wait", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done[0]["attempt"], 3, "{done}");
    assert_eq!(done[0]["status"], "succeeded");

    // Killing the first id while the next attempt waits cancels that one.
    let env = TestEnv::new();
    let id = env.detach_with(
        &["--retries", "2", "--retry-backoff", "30s"],
        &["sh", "-c", "exit 1"],
    );
    let next = pending(&env);
    env.ok(&["kill", &id]);
    let row = env.ledger().get(&next.id).unwrap();
    assert_eq!(row.status, Status::Cancelled, "{row:?}");
    assert!(row.reason.unwrap().starts_with("cancelled by "));
    assert_eq!(code(&env.tend(&["wait", &id])), 130);
}

#[test]
fn ctrl_c_during_a_foreground_backoff_cancels_the_pending_attempt() {
    let env = TestEnv::new();
    let mut cmd = env.cmd();
    cmd.args([
        "run",
        "--retries",
        "2",
        "--retry-backoff",
        "30s",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tend runs");
    let fd = tend_proc::Pidfd::open(child.id() as i32).expect("a pidfd on tend");
    let next = pending(&env);
    fd.signal(tend_proc::Sig::Int).expect("SIGINT sent");
    let out = child.wait_with_output().expect("tend ends");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = env.ledger().get(&next.id).unwrap();
    assert_eq!(row.status, Status::Cancelled);
    assert!(row.reason.unwrap().contains("Ctrl-C"));
    let said = String::from_utf8_lossy(&out.stderr);
    let ending = format!(
        "execution {} was cancelled during the retry backoff by Ctrl-C",
        next.id
    );
    assert!(said.contains(&ending), "{said}");
}

#[test]
fn a_supervisor_sigkilled_during_the_backoff_loses_nothing() {
    // Without a daemon: the next command that looks cancels the attempt,
    // saying why.
    let env = TestEnv::new();
    env.detach_with(
        &["--retries", "2", "--retry-backoff", "30s"],
        &["sh", "-c", "exit 1"],
    );
    let next = pending(&env);
    assert!(
        sigkill_recorded(&next.supervisor),
        "the supervisor waits out its backoff"
    );
    env.ok(&["list"]);
    let row = env.ledger().get(&next.id).unwrap();
    assert_eq!(row.status, Status::Cancelled);
    let why = row.reason.unwrap_or_default();
    assert!(why.contains("no tend serve runs"), "{why}");

    // With a daemon: it adopts the attempt and runs it when it is due.
    let env = TestEnv::new();
    let daemon = Daemon::start(&env);
    let script = flaky(&env, 2);
    let id = env.detach_with(
        &["--retries", "2", "--retry-backoff", "3s"],
        &["sh", "-c", &script],
    );
    let next = pending(&env);
    assert!(
        sigkill_recorded(&next.supervisor),
        "the supervisor waits out its backoff"
    );
    let out = finish(
        {
            let mut c = env.cmd();
            c.args(["wait", &id]);
            c
        },
        Duration::from_secs(20),
    );
    assert_eq!(
        code(&out),
        0,
        "{}\n{:?}\n{}",
        stderr(&out),
        rows(&env),
        daemon.log(&env)
    );
    let row = env.ledger().get(&next.id).unwrap();
    assert_eq!(row.status, Status::Succeeded);
    assert!(env
        .event_kinds(next.id.as_str())
        .contains(&"adopted".to_string()));
}

#[test]
fn a_lost_attempt_is_retried_by_the_daemon() {
    let env = TestEnv::new();
    let daemon = Daemon::start(&env);
    let id = env.detach_with(
        &["--retries", "1", "--retry-backoff", "100ms"],
        &["sleep", "30"],
    );
    assert!(eventually(Duration::from_secs(10), || env.status(&id) == "running"));
    let first = env
        .ledger()
        .get(&tend_model::ExecutionId::parse(&id).unwrap())
        .unwrap();
    assert!(
        sigkill_recorded(&first.supervisor),
        "the supervisor runs the first attempt"
    );
    let mut second = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            second = rows(&env)
                .into_iter()
                .find(|e| e.attempt == Some(2) && e.status == Status::Running);
            second.is_some()
        }),
        "the lost attempt's retry did not run: {:?}\n{}",
        rows(&env),
        daemon.log(&env)
    );
    assert_eq!(env.status(&id), "lost");
    // The first id stands for the chain: the kill reaches attempt 2.
    env.ok(&["kill", &id]);
    let second = env.ledger().get(&second.unwrap().id).unwrap();
    assert_eq!(second.status, Status::Killed);
}

#[test]
fn a_jobs_retry_is_the_same_number_next_attempt() {
    let env = TestEnv::new();
    let script = flaky(&env, 2);
    env.ok(&[
        "job",
        "add",
        "backup",
        "--retries",
        "2",
        "--retry-backoff",
        "50ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code(&env.tend(&["job", "run", "backup"])), 0);
    let list = env.ok(&["list", "--job", "backup"]);
    assert!(list.contains("backup#1.2"), "{list}");
    assert!(list.contains("backup#1 "), "{list}");
    let refs: Vec<_> = rows(&env).iter().map(|e| e.job_ref()).collect();
    assert_eq!(refs, [Some("backup#1".into()), Some("backup#1.2".into())]);
}

#[test]
fn bad_retry_options_are_refused_in_one_sentence() {
    let env = TestEnv::new();
    for (args, words) in [
        (&["--retries", "-1"][..], "-1"),
        (&["--retries", "101"][..], "at most 100"),
        (
            &["--retry-backoff", "1s"][..],
            "retry_backoff needs --retries",
        ),
        (
            &[
                "--retries",
                "2",
                "--retry-backoff",
                "10m",
                "--retry-max-backoff",
                "1m",
            ][..],
            "longer than the longest backoff",
        ),
        (
            &["--retries", "2", "--retry-max-backoff", "0s"][..],
            "longer than zero",
        ),
    ] {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--", "true"]);
        let said = assert_one_sentence(&env.tend(&a), 2);
        assert!(said.contains(words), "{args:?}: {said}");
    }
    assert!(rows(&env).is_empty(), "nothing is recorded");
}

#[test]
fn the_api_takes_retries_and_its_wait_ends_with_the_last_attempt() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let script = flaky(&env, 3);
    let body = serde_json::json!({
        "command": ["sh", "-c", script], "retries": 3, "retry_backoff": "100ms",
    });
    let (st, first) = d.post("/api/v1/executions", body);
    assert_eq!(st, 201, "{first}");
    let id = first["id"].as_str().unwrap();
    let (st, last) = d.get(&format!("/api/v1/executions/{id}/wait?timeout=20s"));
    assert_eq!(st, 200, "{last}");
    assert_eq!(
        (last["attempt"].as_u64(), last["status"].as_str()),
        (Some(3), Some("succeeded"))
    );
    let (st, refused) = d.post(
        "/api/v1/executions",
        serde_json::json!({"command": ["true"], "retries": 101}),
    );
    assert_eq!(
        (st, refused["field"].as_str()),
        (400, Some("retries")),
        "{refused}"
    );
}
