//! `ps`, `list` and `show` tell the whole truth (issue 10).

use std::time::Duration;

use crate::support::*;

/// CPU counts the processes of the tree that already exited (the cgroup's
/// account, or what was reaped), and HEARTBEAT shows the last one.
#[test]
fn ps_shows_the_last_heartbeat_and_cpu_of_exited_processes() {
    let env = TestEnv::new();
    let tend = env!("CARGO_BIN_EXE_tend");
    let script = format!(
        "(end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done); \
         {tend} heartbeat --progress 'step 2'; sleep 30"
    );
    let id = env.detach_with(&["--heartbeat-timeout", "1m"], &["sh", "-c", &script]);
    let beat = eventually(Duration::from_secs(20), || {
        env.json(&["ps"])[0]["progress"] == "step 2"
    });
    assert!(beat, "the heartbeat came");
    let ps = env.json(&["ps"]);
    let cpu = ps[0]["cpu_ms"].as_u64().unwrap_or(0);
    assert!(
        cpu >= 700,
        "the busy subshell that exited is counted: {cpu} ms"
    );
    let text = env.ok(&["ps"]);
    assert!(
        text.contains("HEARTBEAT") && text.contains("ago step 2"),
        "{text}"
    );
    let shown = env.ok(&["show", &id]);
    let cpu_line = shown
        .lines()
        .find(|l| l.trim_start().starts_with("cpu"))
        .unwrap();
    assert!(
        !cpu_line.trim_end().ends_with('-'),
        "show gives the CPU so far: {cpu_line}"
    );
    env.ok(&["kill", &id]);
}

#[test]
fn list_shows_the_command_and_how_many_more_there_are() {
    let env = TestEnv::new();
    for word in ["one", "two", "three"] {
        env.ok(&["run", "--", "sh", "-c", &format!("echo {word}")]);
    }
    let out = env.tend(&["list", "--limit", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("COMMAND") && text.contains("sh -c 'echo three'"),
        "{text}"
    );
    assert!(!text.contains("echo one"), "{text}");
    assert!(
        stderr(&out).contains("1 more not shown; see them with --limit 3"),
        "{}",
        stderr(&out)
    );
    let all = env.tend(&["list", "--limit", "3"]);
    assert!(!stderr(&all).contains("more"), "{}", stderr(&all));
}
