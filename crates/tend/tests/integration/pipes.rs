//! A closed stdout ends tend quietly with 141 (128 + SIGPIPE), after any
//! launch it did is recorded — never a panic (issue 8, item 3).

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;

/// Runs `cmd` with stdout a pipe whose read end is already closed, so its
/// first write fails with EPIPE whatever it prints.
fn into_closed_pipe(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("tend runs")
}

/// Exit 141 and nothing on stderr that looks like a failure.
fn assert_quiet_141(o: &Output, what: &str) {
    let err = stderr(o);
    assert_eq!(code(o), 141, "{what}: exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{what}: a panic: {err}");
    assert!(!err.contains("Broken pipe"), "{what}: {err}");
}

#[test]
fn a_closed_stdout_ends_every_printing_command_with_141() {
    let env = TestEnv::new();
    env.ok(&["run", "--", "true"]);
    let done = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    let live = env.detach(&["sleep", "1000"]);
    let commands: &[&[&str]] = &[
        &["list"],
        &["--json", "list"],
        &["ps"],
        &["--json", "ps"],
        &["show", &done],
        &["--json", "show", &done],
        &["health"],
        &["doctor"],
        &["kill", "--name", "sleep"],
        &["--json", "wait", &done],
    ];
    for args in commands {
        let mut cmd = env.cmd();
        cmd.args(*args);
        assert_quiet_141(&into_closed_pipe(cmd), &format!("tend {args:?}"));
    }
    assert_eq!(
        env.status(&live),
        "running",
        "the dry-run kill killed nothing"
    );
}

#[test]
fn run_detached_into_a_closed_pipe_records_its_execution_once() {
    let env = TestEnv::new();
    for json in [false, true] {
        let mut cmd = env.cmd();
        if json {
            cmd.arg("--json");
        }
        cmd.args(["run", "-d", "--name", "once", "--", "sleep", "1000"]);
        assert_quiet_141(&into_closed_pipe(cmd), "run -d");
    }
    let rows = env.json(&["list", "--name", "once"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "one execution per launch: {rows:?}");
    for r in rows {
        assert_eq!(r["status"], "running", "{r}");
    }
}

#[test]
fn logs_into_a_reader_that_stops_early_ends_with_141() {
    let env = TestEnv::new();
    // More than a pipe holds, so tend is still writing when the reader goes.
    let out = env
        .cmd()
        .args(["run", "--", "seq", "1", "300000"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    for follow in [false, true] {
        let mut cmd = env.cmd();
        cmd.arg("logs").arg(&id);
        if follow {
            cmd.arg("-f");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 1];
        let mut stdout = child.stdout.take().unwrap();
        stdout.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"1");
        drop(stdout);
        let done = eventually(Duration::from_secs(30), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !done {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(done, "tend logs (follow: {follow}) did not end");
        assert_quiet_141(&out, &format!("logs (follow: {follow})"));
    }
}
