use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// Every tier this host offers, as `tend doctor` reports it.
fn tiers(env: &TestEnv) -> Vec<&'static str> {
    let checks = env.json(&["doctor"]);
    let ok = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == name && c["ok"] == true)
    };
    let mut t = vec!["session"];
    for tier in ["cgroup", "pidns"] {
        if ok(&format!("tier {tier}")) {
            t.push(tier);
        } else {
            eprintln!("note: the {tier} tier is not offered here; not testing it");
        }
    }
    t
}

/// A command that scatters every kind of escaper, then `tail` decides how
/// it ends: `exit 0` or a long sleep.
fn escapers(tail: &str) -> String {
    format!(
        "setsid sleep 1000 & \
         (sleep 1000 &) & \
         nohup sleep 1000 >/dev/null 2>&1 & \
         sh -c 'trap \"\" TERM; while :; do sleep 1; done' & \
         sh -c 'kill -STOP $$; sleep 1000' & \
         python3 -c 'import os,time; os.setpgid(0,0); time.sleep(1000)' 2>/dev/null || perl -e 'setpgrp(0,0); sleep 1000' & \
         sleep 0.3; echo ready; {tail}"
    )
}

fn run_env(env: &TestEnv, tier: &str) -> std::process::Command {
    let mut c = env.cmd();
    c.env("TEND_CONTAINMENT", tier);
    c
}

fn assert_gone(env: &TestEnv, id: &str, tier: &str) {
    env.assert_no_marked(Some(id), Duration::from_secs(4));
    let e = env.show(id);
    assert_eq!(e["tier"], tier);
    if let Some(cg) = e["cgroup"].as_str() {
        assert!(
            eventually(Duration::from_secs(2), || !std::path::Path::new(cg)
                .exists()),
            "cgroup {cg} left behind"
        );
    }
}

fn detach_in(env: &TestEnv, tier: &str, script: &str) -> String {
    let out = run_env(env, tier)
        .args([
            "run",
            "-d",
            "--kill-grace",
            "500ms",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // Every escaper is up once the script says so (it waits 0.3 s first).
    let out = env.show(&id)["stdout_path"].as_str().unwrap().to_string();
    let up = eventually(Duration::from_secs(10), || {
        read(out.as_ref()).contains("ready") && env.marked(Some(&id)).len() >= 7
    });
    assert!(up, "escapers did not start");
    id
}

#[test]
fn escapers_end_with_a_normal_exit_in_every_tier() {
    let env = TestEnv::new();
    for tier in tiers(&env) {
        let out = run_env(&env, tier)
            .args([
                "run",
                "--kill-grace",
                "500ms",
                "--",
                "sh",
                "-c",
                &escapers("exit 0"),
            ])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{tier}: {}", stderr(&out));
        let e = &env.json(&["list"])[0];
        assert_eq!(e["status"], "succeeded");
        assert_gone(&env, e["id"].as_str().unwrap(), tier);
    }
}

#[test]
fn escapers_end_with_tend_kill_in_every_tier() {
    let env = TestEnv::new();
    for tier in tiers(&env) {
        let id = detach_in(&env, tier, &escapers("sleep 1000"));
        let k = env.json(&["kill", &id, "--reason", "test"]);
        assert_eq!(k[0]["status"], "killed");
        assert_eq!(
            k[0]["kill_method"], "forced",
            "a TERM-ignorer is among them"
        );
        assert!(k[0]["processes_signalled"].as_u64().unwrap() >= 6, "{k}");
        assert_gone(&env, &id, tier);
        let kinds = env.event_kinds(&id);
        assert!(kinds.contains(&"kill-requested".to_string()), "{kinds:?}");
        assert!(kinds.contains(&"signal-sent".to_string()));
        let show = env.show(&id);
        assert!(show["reason"].as_str().unwrap().contains("test"), "{show}");
    }
}

#[test]
fn escapers_end_with_tend_reap_after_the_supervisor_is_sigkilled_in_every_tier() {
    let env = TestEnv::new();
    for tier in tiers(&env) {
        let id = detach_in(&env, tier, &escapers("sleep 1000"));
        let sup = env.show(&id)["supervisor"]["pid"].as_i64().unwrap() as u32;
        sigkill(sup);
        let reaped = env.json(&["reap"]);
        assert_eq!(reaped["lost"][0]["id"], id.as_str(), "{reaped}");
        if tier == "pidns" {
            // The supervisor's death took the namespace with it: nothing
            // was left for the reaper to end.
            assert_eq!(reaped["lost"][0]["processes_ended"], 0, "{reaped}");
        } else {
            assert!(
                reaped["lost"][0]["processes_ended"].as_u64().unwrap() >= 6,
                "{reaped}"
            );
        }
        assert_eq!(env.status(&id), "lost");
        assert_gone(&env, &id, tier);
    }
}

#[test]
fn kill_escalation_is_graceful_or_forced_and_tend_run_exits_143_or_137() {
    let env = TestEnv::new();
    for (script, method, exit) in [
        ("sleep 1000", "graceful", 143),
        ("trap '' TERM; sleep 1000", "forced", 137),
    ] {
        let child = env
            .cmd()
            .args([
                "run",
                "--name",
                method,
                "--kill-grace",
                "1s",
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(eventually(Duration::from_secs(5), || env
            .marked(None)
            .len()
            >= 2));
        let id = env.json(&["list", "--name", method])[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let start = Instant::now();
        let k = env.json(&["kill", &id]);
        let took = start.elapsed();
        assert_eq!(k[0]["kill_method"], method);
        if method == "forced" {
            assert!(
                took >= Duration::from_secs(1),
                "SIGKILL before the grace: {took:?}"
            );
            assert!(k[0]["kill_duration_ms"].as_u64().unwrap() >= 1000);
        } else {
            assert!(
                took < Duration::from_secs(1),
                "a TERM-obeying tree took {took:?}"
            );
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), exit);
        env.assert_no_marked(Some(&id), Duration::from_secs(2));
    }
}

#[test]
fn force_skips_the_grace_and_a_finished_kill_is_a_no_op() {
    let env = TestEnv::new();
    let id = env.detach(&["sh", "-c", "trap '' TERM; sleep 1000"]);
    let start = Instant::now();
    let k = env.json(&["kill", "--force", "--grace", "30s", &id]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(k[0]["kill_method"], "forced");
    let out = env.tend(&["kill", &id]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already finished"));
}

#[test]
fn bulk_kills_list_first_and_act_with_yes() {
    let env = TestEnv::new();
    let a = env
        .ok(&["run", "-d", "--label", "grp=x", "--", "sleep", "1000"])
        .trim()
        .to_string();
    let b = env
        .ok(&["run", "-d", "--label", "grp=x", "--", "sleep", "1000"])
        .trim()
        .to_string();
    let keep = env
        .ok(&["run", "-d", "--label", "grp=y", "--", "sleep", "1000"])
        .trim()
        .to_string();
    let out = env.tend(&["kill", "--label", "grp=x"]);
    assert_eq!(code(&out), 1);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&a) && listed.contains(&b) && !listed.contains(&keep),
        "{listed}"
    );
    assert!(stderr(&out).contains("--yes"));
    assert_eq!(env.status(&a), "running");
    let k = env.json(&["kill", "--label", "grp=x", "--yes"]);
    assert_eq!(k.as_array().unwrap().len(), 2);
    assert_eq!(env.status(&a), "killed");
    assert_eq!(env.status(&keep), "running");
    assert_eq!(
        env.json(&["kill", "--name", "sl*", "--yes"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(env.status(&keep), "killed");
}

#[test]
fn reap_ends_stragglers_of_this_ledger_only() {
    let env = TestEnv::new();
    env.ok(&["run", "--", "true"]);
    let finished = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    let ledger = env.ledger_id();
    let spawn = |ledger: &str, id: &str| {
        std::process::Command::new("sleep")
            .arg("1000")
            .env("TEND_LEDGER", ledger)
            .env("TEND_EXECUTION_ID", id)
            .spawn()
            .unwrap()
    };
    let mut ours = spawn(&ledger, &finished);
    let mut unknown = spawn(&ledger, "zzzz9999");
    let mut theirs = spawn("another-ledger", &finished);
    let dry = env.json(&["reap", "--dry-run"]);
    assert_eq!(dry["stragglers"].as_array().unwrap().len(), 2, "{dry}");
    assert!(theirs.try_wait().unwrap().is_none() && ours.try_wait().unwrap().is_none());
    let done = env.json(&["reap"]);
    assert_eq!(done["stragglers"].as_array().unwrap().len(), 2, "{done}");
    assert!(ours.wait().unwrap().signal().is_some());
    assert!(unknown.wait().unwrap().signal().is_some());
    assert!(
        theirs.try_wait().unwrap().is_none(),
        "another ledger's process was touched"
    );
    let _ = theirs.kill();
    let _ = theirs.wait();
}

/// The honest limit of the session tier, shown: a process that scrubs its
/// environment and double-forks, after its supervisor was SIGKILLed, has
/// neither a marker nor a supervisor to be found by. The cgroup tier still
/// holds it, and ends it.
#[test]
fn a_scrubbed_double_fork_escapes_only_the_session_tier() {
    let env = TestEnv::new();
    for tier in tiers(&env) {
        let pidfile = env.dir.path().join(format!("escaped-{tier}"));
        let script = format!(
            "env -i sh -c '(sleep 1000 & echo $! > {}) &'; sleep 1000",
            pidfile.display()
        );
        let id = detach_in_scrubbed(&env, tier, &script, &pidfile);
        let escaped: i32 = read(&pidfile).trim().parse().unwrap();
        // In the pidns tier the command saw its own PID numbers.
        // (It may not have exec'd sleep yet when its PID is written.)
        let mut host_pid = escaped;
        if tier == "pidns" {
            let found = eventually(Duration::from_secs(5), || {
                host_pid_of(escaped).map(|p| host_pid = p).is_some()
            });
            assert!(found, "the escaper runs");
        }
        let pin = tend_proc::Pidfd::open(host_pid).expect("the escaper runs");
        let sup = env.show(&id)["supervisor"]["pid"].as_i64().unwrap() as u32;
        sigkill(sup);
        env.ok(&["reap"]);
        assert_eq!(env.status(&id), "lost");
        let survived = !eventually(Duration::from_secs(2), || !pin.is_alive());
        match tier {
            "session" => {
                assert!(survived, "expected the documented session-tier limit");
                let _ = pin.signal(tend_proc::Sig::Kill);
            }
            _ => assert!(!survived, "the {tier} tier let a scrubbed escaper live"),
        }
    }
}

/// The host PID of a `sleep 1000` whose PID inside its namespace is `inner`.
fn host_pid_of(inner: i32) -> Option<i32> {
    tend_proc::procfs::pids().into_iter().find(|p| {
        let status = read(format!("/proc/{p}/status").as_ref());
        let nspid: Vec<&str> = status
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .map(|l| l.split_whitespace().skip(1).collect())
            .unwrap_or_default();
        nspid.len() > 1
            && nspid.last() == Some(&inner.to_string().as_str())
            && read(format!("/proc/{p}/cmdline").as_ref()) == "sleep\u{0}1000\u{0}"
    })
}

fn detach_in_scrubbed(
    env: &TestEnv,
    tier: &str,
    script: &str,
    pidfile: &std::path::Path,
) -> String {
    let out = run_env(env, tier)
        .args(["run", "-d", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(eventually(Duration::from_secs(5), || !read(pidfile)
        .trim()
        .is_empty()));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
