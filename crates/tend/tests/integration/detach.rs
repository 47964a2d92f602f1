use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

#[test]
fn detach_prints_the_id_then_wait_returns_the_code() {
    let env = TestEnv::new();
    let id = env.detach(&["sh", "-c", "sleep 0.5; exit 5"]);
    assert_eq!(id.len(), 8);
    assert_eq!(env.status(&id), "running");
    let out = env.tend(&["wait", &id]);
    assert_eq!(code(&out), 5);
    assert_eq!(env.status(&id), "failed");
    // A prefix works wherever an id does.
    assert_eq!(code(&env.tend(&["wait", &id[..5]])), 5);
}

#[test]
fn wait_wakes_within_milliseconds_of_the_exit() {
    let env = TestEnv::new();
    let stamp = env.dir.path().join("exit-time");
    let script = format!("sleep 1; date +%s%N > {}; exit 0", stamp.display());
    let id = env.detach(&["sh", "-c", &script]);
    let out = env.tend(&["wait", &id]);
    let returned = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert_eq!(code(&out), 0);
    let exited: u128 = read(&stamp)
        .trim()
        .parse()
        .expect("the command wrote its exit time");
    let latency = Duration::from_nanos((returned - exited) as u64);
    eprintln!("measured: exit -> tend wait returned in {latency:?} (includes tend's own exit)");
    assert!(
        latency < Duration::from_secs(2),
        "wait woke {latency:?} after the exit"
    );
}

#[test]
fn wait_timeout_gives_up_with_75() {
    let env = TestEnv::new();
    let id = env.detach(&["sleep", "30"]);
    let start = Instant::now();
    let out = env.tend(&["wait", "--timeout", "300ms", &id]);
    assert_eq!(code(&out), 75);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(stderr(&out).contains("gave up waiting"));
    env.ok(&["kill", &id]);
}

#[test]
fn logs_follow_until_the_end() {
    let env = TestEnv::new();
    let id = env.detach(&["sh", "-c", "echo one; sleep 0.5; echo two; echo bad >&2"]);
    let out = env.ok(&["logs", "-f", "--stdout", &id]);
    assert_eq!(out, "one\ntwo\n");
    assert_eq!(env.ok(&["logs", "--stderr", &id]), "bad\n");
    assert_eq!(
        env.ok(&["logs", &id]),
        "one\ntwo\nbad\n",
        "both, by default"
    );
    assert_eq!(env.status(&id), "succeeded");
}

#[test]
fn logs_are_capped_and_rotated() {
    let env = TestEnv::new();
    let out = env
        .cmd()
        .env("TEND_LOG_MAX_SIZE", "1K")
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    let e = &env.json(&["list"])[0];
    let path = e["stdout_path"].as_str().unwrap();
    assert!(std::fs::metadata(path).unwrap().len() <= 1024);
    assert!(std::fs::metadata(format!("{path}.1")).unwrap().len() <= 1024);
    let logs = env.ok(&["logs", e["id"].as_str().unwrap()]);
    assert!(logs.ends_with("line-299\n"), "the newest output is kept");
}

#[test]
fn wait_on_several_and_by_key() {
    let env = TestEnv::new();
    let a = env.detach(&["sh", "-c", "sleep 0.2; exit 0"]);
    let b = env.detach(&["sh", "-c", "sleep 0.4; exit 3"]);
    assert_eq!(code(&env.tend(&["wait", &a, &b])), 3);
    env.ok(&[
        "run",
        "-d",
        "--key",
        "nightly",
        "--",
        "sh",
        "-c",
        "sleep 0.2; exit 6",
    ]);
    assert_eq!(code(&env.tend(&["wait", "--key", "nightly"])), 6);
}
