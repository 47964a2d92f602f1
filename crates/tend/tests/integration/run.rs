use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn success_is_recorded_and_exits_zero() {
    let env = TestEnv::new();
    let out = env.tend(&["run", "--", "sh", "-c", "echo hello; echo oops >&2"]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\n",
        "output streams through"
    );
    assert_eq!(stderr(&out), "oops\n");
    let list = env.json(&["list"]);
    let e = &list[0];
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["exit_code"], 0);
    assert_eq!(e["reason"], "exited with code 0");
    assert_eq!(read(e["stdout_path"].as_str().unwrap().as_ref()), "hello\n");
    assert_eq!(read(e["stderr_path"].as_str().unwrap().as_ref()), "oops\n");
}

#[test]
fn exit_codes_pass_through() {
    let env = TestEnv::new();
    for c in [1, 7, 42, 255] {
        let out = env.tend(&["run", "--", "sh", "-c", &format!("exit {c}")]);
        assert_eq!(code(&out), c);
    }
    let list = env.json(&["list", "--status", "failed"]);
    assert_eq!(list.as_array().unwrap().len(), 4);
}

#[test]
fn death_by_signal_exits_128_plus_n() {
    let env = TestEnv::new();
    let out = env.tend(&["run", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(code(&out), 137);
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "failed");
    assert_eq!(e["signal"], 9);
    assert_eq!(e["exit_code"], serde_json::Value::Null);
    assert!(e["reason"].as_str().unwrap().contains("SIGKILL"));
}

#[test]
fn timeout_ends_the_whole_tree_and_exits_124() {
    let env = TestEnv::new();
    let start = Instant::now();
    let out = env.tend(&[
        "run",
        "--timeout",
        "1s",
        "--kill-grace",
        "500ms",
        "--",
        "sh",
        "-c",
        "sleep 100 & setsid sleep 100 & sleep 100",
    ]);
    assert_eq!(code(&out), 124, "{}", stderr(&out));
    assert!(start.elapsed() >= Duration::from_secs(1));
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "timed_out");
    assert_eq!(e["reason"], "timed out after 1.0s");
    assert_eq!(e["kill_method"], "graceful");
    assert!(e["processes_signalled"].as_u64().unwrap() >= 3, "{e}");
    // The supervisor commits only once the tree is gone: nothing is left now.
    assert!(env.marked(Some(e["id"].as_str().unwrap())).is_empty());
}

#[test]
fn a_command_that_ignores_term_is_forced_after_the_grace() {
    let env = TestEnv::new();
    let start = Instant::now();
    let out = env.tend(&[
        "run",
        "--timeout",
        "300ms",
        "--kill-grace",
        "700ms",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 100",
    ]);
    let took = start.elapsed();
    assert_eq!(code(&out), 124);
    assert!(
        took >= Duration::from_millis(1000),
        "SIGKILL came before the grace ended: {took:?}"
    );
    let e = &env.json(&["list"])[0];
    assert_eq!(e["kill_method"], "forced");
    assert!(env.marked(None).is_empty());
}

#[test]
fn processes_left_behind_by_a_normal_exit_are_ended() {
    let env = TestEnv::new();
    let out = env.tend(&[
        "run",
        "--",
        "sh",
        "-c",
        "setsid sleep 100 & (sleep 100 &) ; nohup sleep 100 >/dev/null 2>&1 & exit 0",
    ]);
    assert_eq!(code(&out), 0);
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "succeeded");
    let id = e["id"].as_str().unwrap();
    assert!(
        env.marked(Some(id)).is_empty(),
        "escapers outlived their execution"
    );
    let exited = env
        .events(id)
        .into_iter()
        .find(|ev| ev["kind"] == "exited")
        .unwrap();
    assert_eq!(exited["details"]["stragglers_ended"], 3, "{exited}");
}

#[test]
fn markers_reach_the_command() {
    let env = TestEnv::new();
    let out = env.ok(&[
        "run",
        "--env",
        "GREETING=hi",
        "--",
        "sh",
        "-c",
        "echo $TEND_EXECUTION_ID $TEND_LEDGER $GREETING",
    ]);
    let parts: Vec<&str> = out.split_whitespace().collect();
    let e = &env.json(&["list"])[0];
    assert_eq!(parts[0], e["id"]);
    assert_eq!(parts[1], env.ledger_id());
    assert_eq!(parts[2], "hi");
}

#[test]
fn cwd_name_and_labels_are_recorded() {
    let env = TestEnv::new();
    let dir = env.dir.path().join("work");
    std::fs::create_dir(&dir).unwrap();
    let out = env.ok(&[
        "run",
        "--cwd",
        dir.to_str().unwrap(),
        "--name",
        "where",
        "--label",
        "team=infra",
        "--",
        "pwd",
    ]);
    assert_eq!(
        out.trim(),
        std::fs::canonicalize(&dir).unwrap().to_str().unwrap()
    );
    let e = &env.json(&["list", "--name", "wh*", "--label", "team=infra"])[0];
    assert_eq!(e["name"], "where");
    assert_eq!(e["labels"]["team"], "infra");
}

#[test]
fn kill_grace_comes_from_the_environment() {
    let env = TestEnv::new();
    let out = env
        .cmd()
        .env("TEND_KILL_GRACE", "250ms")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(env.json(&["list"])[0]["kill_grace_ms"], 250);
    std::fs::create_dir_all(env.dir.path().join("config/tend")).unwrap();
    std::fs::write(
        env.dir.path().join("config/tend/config.toml"),
        "kill_grace = \"2s\"\n",
    )
    .unwrap();
    env.ok(&["run", "--", "true"]);
    assert_eq!(env.json(&["list"])[0]["kill_grace_ms"], 2000);
}

/// Issue 10: when tend ends a command it says so in one line on stderr —
/// a limit, a kill from elsewhere — and a wait on a lost execution says it
/// was lost and why.
#[test]
fn tend_says_in_one_line_why_it_ended_a_command() {
    let env = TestEnv::new();
    let out = env.tend(&["run", "--timeout", "300ms", "--", "sleep", "30"]);
    assert_eq!(code(&out), 124);
    let e = assert_one_sentence(&out, 124);
    assert!(
        e.contains("timed out after") && e.contains("killed 1 process gracefully in"),
        "{e}"
    );
    let out = env.tend(&["run", "--idle-timeout", "300ms", "--", "sleep", "30"]);
    let e = assert_one_sentence(&out, 124);
    assert!(e.contains("idle") || e.contains("no output"), "{e}");

    let mut fg = env.cmd();
    fg.args(["run", "--name", "victim", "--", "sleep", "30"]);
    let fg = std::thread::spawn(move || finish(fg, Duration::from_secs(30)));
    assert!(eventually(Duration::from_secs(10), || env
        .json(&["ps"])
        .as_array()
        .is_some_and(|a| a.len() == 1)));
    env.ok(&["kill", "--name", "victim", "--yes", "--reason", "enough"]);
    let out = fg.join().unwrap();
    let e = assert_one_sentence(&out, 143);
    assert!(
        e.contains("enough") && e.contains("killed 1 process"),
        "{e}"
    );

    let id = env.detach(&["sleep", "100"]);
    let sup = env.show(&id)["supervisor"]["pid"].as_i64().unwrap() as u32;
    sigkill(sup);
    let out = env.tend(&["wait", &id]);
    let e = assert_one_sentence(&out, 1);
    assert!(e.contains(&format!("execution {id} was lost")), "{e}");
    let out = env.tend(&["--json", "wait", &id]);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        all.is_array(),
        "wait --json is an array even for one id: {all}"
    );
    env.assert_no_marked(Some(&id), Duration::from_secs(10));
}

/// The README tour's scripts exist and behave as the tour says: train.sh
/// reports heartbeats and leaves a helper behind, which tend ends with it;
/// report.sh under a key.
#[test]
fn the_tours_example_scripts_run_under_tend() {
    let env = TestEnv::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tend"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .cmd()
        .current_dir(&examples)
        .env("PATH", &path)
        .env("EPOCHS", "2")
        .env("EPOCH_SECONDS", "0.2")
        .args(["run", "--heartbeat-timeout", "1m", "--", "./train.sh"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("epoch 2/2: loss 500\ndone"));
    let e = &env.json(&["list"])[0];
    assert_eq!(
        (&e["status"], &e["progress"]),
        (&"succeeded".into(), &"epoch 2/2".into()),
        "{e}"
    );
    env.assert_no_marked(Some(e["id"].as_str().unwrap()), Duration::from_secs(10));
    let out = env
        .cmd()
        .current_dir(&examples)
        .env("REPORT_SECONDS", "0")
        .args(["run", "--key", "nightly-report", "--", "./report.sh"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("report for "));
}

/// `tend run -t` (issue 10): the command runs on a pseudo-terminal of its
/// own with tend's terminal's size, keys typed at tend reach it, a resize
/// follows, and the log keeps what it printed. Driven by python3's pty
/// from a real pseudo-terminal.
#[test]
fn a_tty_run_gets_a_terminal_of_its_own_keys_and_resizes() {
    let env = TestEnv::new();
    let driver =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/drivers/tty.py");
    let out = env.cmd().arg("--version").output().unwrap();
    assert!(out.status.success());
    let out = std::process::Command::new("python3")
        .arg(&driver)
        .arg(env!("CARGO_BIN_EXE_tend"))
        .env("TEND_HOME", env.home())
        .env("TEND_STORE", env.store())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("/dev/pts/"),
        "a terminal of its own: {shown}"
    );
    assert!(shown.contains("40 100"), "tend's size: {shown}");
    assert!(shown.contains("got:hello"), "typed keys arrive: {shown}");
    assert!(shown.contains("50 120"), "the resize follows: {shown}");
    assert!(shown.contains("rc=0"), "{shown} {}", stderr(&out));
    let id = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    assert!(env.ok(&["logs", &id]).contains("got:hello"));
    let e = assert_one_sentence(&env.tend(&["run", "-d", "-t", "--", "true"]), 2);
    assert!(e.contains("--tty") || e.contains("-t"), "{e}");
}
