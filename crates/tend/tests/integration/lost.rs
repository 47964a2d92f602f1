use tend_ledger::Ledger;

use std::time::Duration;

use crate::support::*;

#[test]
fn a_killed_foreground_supervisor_is_lost_on_the_next_read() {
    let env = TestEnv::new();
    let child = env
        .cmd()
        .args(["run", "--", "sh", "-c", "sleep 100 & sleep 100"])
        .spawn()
        .unwrap();
    let sup = child.id();
    assert!(eventually(Duration::from_secs(5), || env
        .marked(None)
        .len()
        >= 2));
    sigkill(sup);
    let mut child = child;
    child.wait().unwrap();
    let ps = env.json(&["ps"]);
    assert_eq!(ps.as_array().unwrap().len(), 0, "ps still shows it: {ps}");
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "lost");
    assert_eq!(e["reason"], "supervisor died");
    let id = e["id"].as_str().unwrap();
    assert!(env.event_kinds(id).contains(&"marked-lost".to_string()));
    // The command died with its supervisor (PDEATHSIG); the grandchild was
    // found by its marker and ended.
    env.assert_no_marked(Some(id), Duration::from_secs(10));
}

#[test]
fn a_detached_supervisor_killed_is_lost_for_wait_too() {
    let env = TestEnv::new();
    let id = env.detach(&["sleep", "100"]);
    let sup = env.show(&id)["supervisor"]["pid"].as_i64().unwrap() as u32;
    let waiter = env.cmd().args(["wait", &id]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sigkill(sup);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(code(&out), 1, "a lost execution has no code of its own");
    assert_eq!(env.status(&id), "lost");
    env.assert_no_marked(Some(&id), Duration::from_secs(10));
}

#[test]
fn a_reboot_makes_running_executions_lost() {
    let env = TestEnv::new();
    let id = env.detach(&["sleep", "100"]);
    let boot = env.dir.path().join("boot_id");
    std::fs::write(&boot, "another-boot\n").unwrap();
    let out = env
        .cmd()
        .env("TEND_BOOT_ID_FILE", &boot)
        .args(["--json", "list"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["status"], "lost");
    assert_eq!(list[0]["reason"], "host rebooted");
    let _ = id;
}

#[test]
fn a_supervisor_dead_before_spawning_means_failed_to_start() {
    let env = TestEnv::new();
    let out = env
        .cmd()
        .env("TEND_FAILPOINT", "after-queued-commit")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "the failpoint SIGKILLs the supervisor"
    );
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "lost");
    assert!(
        e["reason"].as_str().unwrap().starts_with("failed to start"),
        "{e}"
    );
}

#[test]
fn reap_dry_run_reports_without_acting() {
    let env = TestEnv::new();
    let id = env.detach(&["sleep", "100"]);
    // On a shared ledger the launch started the home's agent, whose watcher
    // would reconcile the death at once: this test is about reap alone.
    stop_daemon_of(&env.home());
    let sup = env.show(&id)["supervisor"]["pid"].as_i64().unwrap() as u32;
    sigkill(sup);
    // Reading through the ledger without the reconcile pass: only reap can see it.
    let dry = env.json(&["reap", "--dry-run"]);
    assert_eq!(dry["lost"][0]["id"], id.as_str());
    let row = env.ledger().resolve(&id).unwrap();
    assert_eq!(row.status.as_str(), "running", "dry run changed nothing");
    let done = env.json(&["reap"]);
    assert_eq!(done["lost"][0]["id"], id.as_str());
    assert_eq!(env.status(&id), "lost");
}

/// Two homes on one store: a wait from home B on an execution of home A
/// whose supervisor died cannot reconcile it (it is A's), and must not
/// spin trying: it looks again once a second until its timeout.
#[test]
fn a_wait_on_another_homes_dead_execution_does_not_spin() {
    let a = TestEnv::new();
    let b = TestEnv::new();
    let store = a.dir.path().join("shared.db");
    let store = store.to_str().unwrap();
    let out = a
        .cmd()
        .env("TEND_STORE", store)
        .args(["run", "-d", "--", "sleep", "100"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let show = a
        .cmd()
        .env("TEND_STORE", store)
        .args(["--json", "show", &id])
        .output()
        .unwrap();
    let e: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let sup = e["supervisor"]["pid"].as_i64().unwrap() as u32;
    sigkill(sup);
    let script = r#""$0" wait --timeout 2s "$1"; echo "rc=$?"; cat /proc/$$/stat"#;
    let out = std::process::Command::new("sh")
        .env("TEND_HOME", b.home())
        .env("XDG_CONFIG_HOME", b.dir.path().join("config"))
        .env("TEND_STORE", store)
        .args(["-c", script, env!("CARGO_BIN_EXE_tend"), &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("rc="), "{text} {}", stderr(&out));
    let stat = text.lines().last().unwrap();
    let f: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .skip(13)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    let ticks = f[0] + f[1];
    assert!(
        ticks < 60,
        "the wait spun: {ticks} clock ticks of CPU in 2s"
    );
    // Nor does a follow of its output.
    let mut follow = b
        .cmd()
        .env("TEND_STORE", store)
        .args(["logs", "-f", &id])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", follow.id())).unwrap();
    let f: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    sigkill(follow.id());
    let _ = follow.wait();
    assert!(
        f[0] + f[1] < 60,
        "logs -f spun: {} clock ticks in 2s",
        f[0] + f[1]
    );
    // Home A's own read reconciles it and ends the tree.
    let out = a
        .cmd()
        .env("TEND_STORE", store)
        .args(["wait", &id])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}
