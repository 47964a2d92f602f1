//! Across hosts on a PostgreSQL ledger: two homes play two hosts' agents
//! (both on this machine, which the code must not rely on). A kill of
//! another agent's execution is carried out by that agent's daemon, also
//! when the daemon starts after the request; waiters and the daemon's
//! streams wake on the ledger's NOTIFY, not on a timer.

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

/// An execution of `env` that runs until a line is written to the FIFO
/// it reads, which it creates at `dir/name`; returns (id, fifo path).
fn held(env: &TestEnv, name: &str) -> (String, std::path::PathBuf) {
    let fifo = env.dir.path().join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let id = env.detach(&["sh", "-c", &format!("read x < {}", fifo.display())]);
    (id, fifo)
}

/// Ends a [`held`] execution: the moment it was released, in ms since
/// the epoch.
fn release(fifo: &std::path::Path) -> i64 {
    let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    let at = now_ms();
    f.write_all(b"go\n").unwrap();
    at
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_kill_from_another_home_is_carried_out_by_the_owning_daemon() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    let daemon = Daemon::start(&a);
    let id = a.detach(&["sleep", "300"]);
    let t0 = Instant::now();
    let out = b
        .cmd()
        .env("USER", "bob-on-b")
        .args(["kill", "--reason", "from b", &id])
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), daemon.log(&a));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&id) && printed.contains("killed") && printed.contains("graceful"),
        "{printed}"
    );
    assert!(printed.contains("1 process signalled"), "{printed}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // No sentence about an absent daemon: it answered at once.
    assert!(
        !stderr(&out).contains("has not carried"),
        "{}",
        stderr(&out)
    );
    let row = a.show(&id);
    assert_eq!(row["status"], "killed", "{row}");
    assert_eq!(row["kill_method"], "graceful", "{row}");
    assert_eq!(row["kill_request"]["by"], "user:bob-on-b", "{row}");
    let reason = row["reason"].as_str().unwrap();
    assert!(reason.contains("user:bob-on-b"), "{reason}");
    // A's supervisor did it: nobody took it over.
    let kinds = a.event_kinds(&id);
    assert!(!kinds.iter().any(|k| k == "kill-taken-over"), "{kinds:?}");
    assert!(
        daemon.log(&a).contains("carried out a kill"),
        "{}",
        daemon.log(&a)
    );
    a.assert_no_marked(Some(&id), Duration::from_secs(5));
}

#[test]
fn a_kill_requested_while_the_owner_had_no_daemon_is_carried_out_when_it_starts() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    let id = a.detach(&["sleep", "300"]);
    // The launch started A's agent: this test is about a kill asked while
    // A has none (A's supervisors wait a TTL for one to come back).
    stop_daemon_of(&a.home());
    let err = b.dir.path().join("kill.err");
    let mut kill = b
        .cmd()
        .args(["kill", &id])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let agent = a.show(&id)["agent_id"].as_str().unwrap().to_string();
    let told = eventually(Duration::from_secs(10), || read(&err).contains(&agent));
    assert!(told, "the asker was not told who must act: {}", read(&err));
    let said = read(&err);
    assert_eq!(said.trim().lines().count(), 1, "one sentence: {said}");
    assert!(said.contains("tend serve"), "{said}");
    assert_eq!(a.status(&id), "running", "nothing here may act on it");
    assert!(
        kill.try_wait().unwrap().is_none(),
        "the asker keeps waiting"
    );
    let daemon = Daemon::start(&a);
    let out = finish_child(&mut kill, Duration::from_secs(20));
    assert!(out.0.success(), "{}\n{}", read(&err), daemon.log(&a));
    assert!(out.1.contains("killed"), "{}", out.1);
    assert_eq!(a.status(&id), "killed");
    a.assert_no_marked(Some(&id), Duration::from_secs(5));
}

/// Waits for `child` (stdout piped) to exit within `limit`, SIGKILLing it
/// (our child, by PID) if it does not; its status and stdout.
fn finish_child(
    child: &mut std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let done = eventually(limit, || child.try_wait().unwrap().is_some());
    if !done {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    }
    (status, out)
}

#[test]
fn a_wait_on_another_home_wakes_on_the_notify_not_a_timer() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    // A wait of another agent's execution looks again once a second when
    // nothing else wakes it; five wake-ups in a row well inside that
    // second (at release moments unrelated to its timer) are the NOTIFY.
    for round in 0..5 {
        let (id, fifo) = held(&a, &format!("fifo{round}"));
        let mut wait = b
            .cmd()
            .args(["wait", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Let it start, read the row and block.
        std::thread::sleep(Duration::from_millis(700 + 130 * round));
        assert!(wait.try_wait().unwrap().is_none(), "it waits");
        let released = release(&fifo);
        let done = eventually(Duration::from_secs(10), || {
            wait.try_wait().unwrap().is_some()
        });
        let woke = now_ms() - released;
        assert!(done, "the wait did not end");
        assert!(wait.wait().unwrap().success());
        assert!(woke < 400, "round {round}: woke {woke} ms after the end");
        assert_eq!(a.status(&id), "succeeded");
    }
}

#[test]
fn another_homes_daemon_streams_and_long_polls_the_end() {
    let a = TestEnv::postgres();
    let b = TestEnv::sharing(&a);
    let d = Daemon::start(&b);
    let mut events = d.events();
    let (id, fifo) = held(&a, "fifo");
    let poll = {
        let (base, token, id) = (d.base.clone(), d.token.clone(), id.clone());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut r = agent
                .get(format!("{base}/api/v1/executions/{id}/wait?timeout=60s"))
                .header("Authorization", format!("Bearer {token}"))
                .call()
                .unwrap();
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
        })
    };
    // The long poll has read the row and waits (its only wake-up for
    // another agent's row is the watcher's stream).
    std::thread::sleep(Duration::from_millis(800));
    release(&fifo);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(Instant::now() < deadline, "no terminal event arrived");
        events.read_line(&mut line).unwrap();
        if line.contains(&id) && line.contains("\"succeeded\"") {
            break;
        }
    }
    let (status, body) = poll.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["status"], "succeeded", "{e}");
    assert!(Instant::now() < deadline, "the long poll ended late");
}
