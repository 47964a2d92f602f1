use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn heartbeats_keep_an_execution_alive_and_their_absence_ends_it() {
    let env = TestEnv::new();
    let tend = env!("CARGO_BIN_EXE_tend");
    let beating =
        format!("for i in 1 2 3 4 5; do {tend} heartbeat --progress step$i; sleep 0.2; done");
    let out = env.tend(&[
        "run",
        "--heartbeat-timeout",
        "600ms",
        "--",
        "sh",
        "-c",
        &beating,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["progress"], "step5");
    assert!(e["last_heartbeat_at"].is_string());

    let start = Instant::now();
    let out = env.tend(&["run", "--heartbeat-timeout", "400ms", "--", "sleep", "30"]);
    assert_eq!(code(&out), 124);
    assert!(start.elapsed() < Duration::from_secs(10));
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "timed_out");
    assert_eq!(e["reason"], "no heartbeat within 400ms");
    let id = e["id"].as_str().unwrap();
    assert!(env
        .event_kinds(id)
        .contains(&"heartbeat-missed".to_string()));
}

#[test]
fn heartbeat_outside_an_execution_is_a_usage_error() {
    let env = TestEnv::new();
    let e = assert_one_sentence(&env.tend(&["heartbeat"]), 2);
    assert!(e.contains("TEND_EXECUTION_ID"), "{e}");
}

#[test]
fn silence_longer_than_the_idle_timeout_ends_it() {
    let env = TestEnv::new();
    let out = env.tend(&[
        "run",
        "--idle-timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        "echo a; sleep 0.3; echo b; sleep 0.3; echo c; sleep 30",
    ]);
    assert_eq!(code(&out), 124);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a\nb\nc\n",
        "output kept it alive until it stopped"
    );
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "timed_out");
    assert_eq!(e["reason"], "no output for 500ms");
}

#[test]
fn a_tree_above_its_memory_limit_is_killed() {
    let env = TestEnv::new();
    // The kernel enforces the limit where the memory controller is
    // delegated (the OOM killer: SIGKILL, exit 137); elsewhere it is
    // sampled and ended gracefully (SIGTERM, 143). doctor says which.
    let kernel = env.ok(&["doctor"]).contains("enforced by the kernel");
    let out = env.tend(&[
        "run",
        "--max-memory",
        "64M",
        "--kill-grace",
        "500ms",
        "--",
        "python3",
        "-c",
        "import time; x = bytearray(256 << 20); time.sleep(30)",
    ]);
    if code(&out) == 127 {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    assert_eq!(
        code(&out),
        if kernel { 137 } else { 143 },
        "{}",
        stderr(&out)
    );
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "killed");
    let reason = e["reason"].as_str().unwrap();
    assert!(reason.starts_with("memory limit exceeded"), "{e}");
    assert_eq!(reason.contains("the kernel ended"), kernel, "{e}");
    if !kernel {
        eprintln!(
            "note: the kernel does not enforce memory.max here; the sampled limit was tested"
        );
    }
    assert!(
        kernel || e["max_rss_bytes"].as_u64().unwrap() > 64 << 20,
        "the sampled peak is recorded: {e}"
    );
}

#[test]
fn cpu_and_peak_memory_are_recorded() {
    let env = TestEnv::new();
    env.ok(&[
        "run",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
    ]);
    let e = &env.json(&["list"])[0];
    assert!(e["cpu_ms"].as_u64().is_some(), "{e}");
    assert!(e["max_rss_bytes"].as_u64().unwrap() > 0, "{e}");
}

/// A foreground `tend run` started, and its pid once its command runs.
fn foreground(env: &TestEnv, args: &[&str]) -> (std::process::Child, rustix::process::Pid) {
    let child = env
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || env
        .marked(None)
        .len()
        >= 2
        || env.json(&["ps"])[0]["status"] == "running"));
    std::thread::sleep(Duration::from_millis(200));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    (child, pid)
}

fn ctrl_c(pid: rustix::process::Pid) {
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
}

/// Ctrl-C, as a shell passes it (issue 10, SPEC): the command gets SIGINT
/// and may handle it; one that ignores it is ended a kill grace later, or
/// at once by a second Ctrl-C, gracefully then certainly (status killed,
/// actor the user).
#[test]
fn ctrl_c_is_passed_to_the_command_then_ends_the_tree() {
    let env = TestEnv::new();
    let handles = "trap 'echo caught; exit 0' INT; sleep 30 & wait";
    let (child, pid) = foreground(&env, &["run", "--", "sh", "-c", handles]);
    ctrl_c(pid);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "the command handled it: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "caught\n");
    assert_eq!(env.json(&["list"])[0]["status"], "succeeded");

    let (child, pid) = foreground(&env, &["run", "--", "sleep", "30"]);
    ctrl_c(pid);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "sleep died of the SIGINT, as in a shell");
    let e = &env.json(&["list"])[0];
    assert_eq!(
        (&e["status"], &e["reason"]),
        (
            &"killed".into(),
            &"interrupted (Ctrl-C, passed on to the command as SIGINT)".into()
        ),
        "{e}"
    );

    let ignores = "trap '' INT; sleep 30";
    let (child, pid) = foreground(
        &env,
        &["run", "--kill-grace", "300ms", "--", "sh", "-c", ignores],
    );
    let start = std::time::Instant::now();
    ctrl_c(pid);
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        code(&out),
        143,
        "ended with SIGTERM a grace after the Ctrl-C"
    );
    let e = &env.json(&["list"])[0];
    assert_eq!(
        (&e["status"], &e["kill_method"]),
        (&"killed".into(), &"graceful".into()),
        "{e}"
    );

    let (child, pid) = foreground(
        &env,
        &["run", "--kill-grace", "1m", "--", "sh", "-c", ignores],
    );
    ctrl_c(pid);
    std::thread::sleep(Duration::from_millis(200));
    let start = std::time::Instant::now();
    ctrl_c(pid);
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a second Ctrl-C does not wait for the grace"
    );
    assert_eq!(
        env.json(&["list"])[0]["status"],
        "killed",
        "{}",
        stderr(&out)
    );
    env.assert_no_marked(None, Duration::from_secs(5));
}

#[test]
fn health_exits_0_healthy_1_degraded_2_unhealthy() {
    let env = TestEnv::new();
    let out = env.tend(&["health"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let id = env.detach(&["sleep", "30"]);
    std::thread::sleep(Duration::from_millis(50));
    let out = env
        .cmd()
        .env("TEND_ALERT_LONG_RUNNING_AFTER", "10ms")
        .env("TEND_ALERT_LONG_RUNNING_COUNT", "0")
        .args(["--json", "health"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["status"], "degraded");
    env.ok(&["kill", &id]);
    if env.sqlite_only() {
        return;
    }
    std::fs::write(env.ledger_path(), vec![9u8; 4096]).unwrap();
    let _ = std::fs::remove_file(env.home().join("tend.db-wal"));
    let out = env.tend(&["health"]);
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unhealthy"));
}

#[test]
fn a_terminal_that_stops_reading_does_not_stall_a_timeout() {
    let env = TestEnv::new();
    // stdout is a pipe nobody reads: it fills within milliseconds.
    let mut child = env
        .cmd()
        .args([
            "run",
            "--timeout",
            "1s",
            "--kill-grace",
            "200ms",
            "--",
            "yes",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let timed_out = eventually(Duration::from_secs(15), || {
        env.try_ledger()
            .and_then(|l| l.list(&tend_ledger::Filter::default()).ok())
            .and_then(|l| l.first().map(|e| e.status.as_str() == "timed_out"))
            .unwrap_or(false)
    });
    assert!(
        timed_out,
        "the timeout did not fire while the terminal was full"
    );
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124));
    env.assert_no_marked(None, Duration::from_secs(2));
}

use tend_ledger::Ledger;
