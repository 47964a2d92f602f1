//! Kills are certain whatever state the supervisor is in: stopped, sent a
//! signal tend does not use, or holding a process that left its cgroup.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

fn supervisor_pid(env: &TestEnv, id: &str) -> i32 {
    env.show(id)["supervisor"]["pid"].as_i64().unwrap() as i32
}

fn state(pid: i32) -> char {
    tend_proc::procfs::stat(pid).map_or('-', |s| s.state)
}

/// Sends signal number `sig` to `pid` (a process this test started).
fn signal(pid: i32, sig: i32) {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{sig} {pid}"))
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

#[test]
fn a_supervisor_stopped_by_its_command_does_not_hang_run_d() {
    let env = TestEnv::new();
    let start = Instant::now();
    let mut child = env
        .cmd()
        .args(["run", "-d", "--", "sh", "-c", "kill -STOP $PPID; sleep 60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let done = eventually(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !done {
        let _ = child.kill();
    }
    assert!(done, "tend run -d hung on a stopped supervisor");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(env.status(&id), "running");
    assert!(start.elapsed() < Duration::from_secs(20));
    env.ok(&["kill", &id]);
    assert_eq!(env.status(&id), "killed");
}

#[test]
fn a_kill_of_a_stopped_supervisor_is_carried_out_by_the_killer() {
    let env = TestEnv::new();
    for force in [true, false] {
        let id = env.detach(&["sh", "-c", "sleep 0.3; kill -STOP $PPID; sleep 60"]);
        let sup = supervisor_pid(&env, &id);
        assert!(eventually(Duration::from_secs(10), || state(sup) == 'T'));
        let started = Instant::now();
        let mut args = vec!["kill", "--grace", "1s", id.as_str()];
        if force {
            args.push("--force");
        }
        let out = env.tend(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(started.elapsed() < Duration::from_secs(15));
        let e = env.show(&id);
        assert_eq!(e["status"], "killed");
        assert_eq!(e["kill_method"], if force { "forced" } else { "graceful" });
        assert!(e["reason"]
            .as_str()
            .unwrap()
            .contains("supervisor is stopped"));
        assert!(env
            .event_kinds(&id)
            .contains(&"kill-taken-over".to_string()));
        assert!(
            eventually(Duration::from_secs(5), || state(sup) == '-'
                || state(sup) == 'Z'),
            "the stopped supervisor is ended too"
        );
        env.assert_no_marked(Some(&id), Duration::from_secs(5));
    }
}

#[test]
fn a_timeout_fires_even_when_the_supervisor_is_stopped() {
    let env = TestEnv::new();
    let id = env.detach_with(
        &["--timeout", "1s", "--kill-grace", "200ms"],
        &["sh", "-c", "sleep 0.3; kill -STOP $PPID; sleep 60"],
    );
    // Due after 1 s, plus the grace and the 3 s the supervisor gets to act.
    let fired = eventually(Duration::from_secs(20), || {
        env.ok(&["list"]);
        env.status(&id) == "timed_out"
    });
    assert!(fired, "status is {}", env.status(&id));
    let e = env.show(&id);
    assert!(e["reason"]
        .as_str()
        .unwrap()
        .contains("supervisor is stopped"));
    env.assert_no_marked(Some(&id), Duration::from_secs(5));
}

#[test]
fn signals_tend_does_not_use_do_not_kill_the_supervisor() {
    let env = TestEnv::new();
    let id = env.detach(&["sleep", "60"]);
    let sup = supervisor_pid(&env, &id);
    let sigs = [
        libc::SIGQUIT,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGTSTP,
        libc::SIGRTMIN() + 3,
    ];
    for s in sigs {
        signal(sup, s);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(state(sup), 'S' | 'R'),
        "supervisor is {}",
        state(sup)
    );
    assert_eq!(env.status(&id), "running");
    env.ok(&["kill", &id]);
    assert_eq!(env.status(&id), "killed");
}

#[test]
fn ctrl_z_stops_the_whole_execution_and_fg_continues_it() {
    let env = TestEnv::new();
    let marker = env.dir.path().join("ticks");
    let mut child = env
        .cmd()
        .args(["run", "--", "sh", "-c"])
        .arg(format!(
            "while :; do echo x >> {}; sleep 0.05; done",
            marker.display()
        ))
        .spawn()
        .unwrap();
    let tend = child.id() as i32;
    assert!(eventually(Duration::from_secs(10), || marker.exists()));
    let id = env.json(&["ps"])[0]["id"].as_str().unwrap().to_string();
    let cmd = env.show(&id)["pid"].as_i64().unwrap() as i32;
    signal(tend, libc::SIGTSTP);
    assert!(eventually(Duration::from_secs(5), || state(tend) == 'T'
        && state(cmd) == 'T'));
    let len = std::fs::metadata(&marker).unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::metadata(&marker).unwrap().len(),
        len,
        "the command is stopped too"
    );
    signal(tend, libc::SIGCONT);
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::metadata(&marker).unwrap().len() > len
    }));
    assert!(state(tend) != 'T' && state(cmd) != 'T');
    // Stopped again, a kill from elsewhere is carried out by the killer.
    signal(tend, libc::SIGTSTP);
    assert!(eventually(Duration::from_secs(5), || state(tend) == 'T'));
    env.ok(&["kill", "--grace", "1s", &id]);
    assert_eq!(env.status(&id), "killed");
    let _ = child.wait();
    env.assert_no_marked(Some(&id), Duration::from_secs(5));
}

#[test]
fn a_process_moved_out_of_its_cgroup_is_still_ended() {
    if !is_root() {
        eprintln!("skipped: moving a process between cgroups needs root here");
        return;
    }
    let env = TestEnv::new();
    let probe = env.detach(&["true"]);
    let e = env.show(&probe);
    let Some(cg) = e["cgroup"].as_str().map(str::to_string) else {
        eprintln!("skipped: the cgroup tier is not offered here");
        return;
    };
    // The cgroup v2 root: the mount point of the recorded cgroup's tree.
    let root = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .find(|m| cg.starts_with(m.as_str()))
        .expect("the cgroup2 mount");
    let script = format!("sleep 60 & echo $! > {root}/cgroup.procs; echo moved; exec sleep 60");
    let start = Instant::now();
    let out = env.tend(&[
        "run",
        "--timeout",
        "1s",
        "--kill-grace",
        "300ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code(&out), 124, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(20));
    let id = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        read(env.show(&id)["stdout_path"].as_str().unwrap().as_ref()),
        "moved\n"
    );
    env.assert_no_marked(Some(&id), Duration::from_secs(5));
}

#[test]
fn a_second_kill_with_a_shorter_grace_shortens_the_kill_under_way() {
    let env = TestEnv::new();
    let id = env.detach(&["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]);
    let mut first = env
        .cmd()
        .args(["kill", "--grace", "60s", &id])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        env.event_kinds(&id).contains(&"signal-sent".to_string())
    }));
    let start = Instant::now();
    env.ok(&["kill", "--grace", "1s", &id]);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "the grace was not shortened"
    );
    assert_eq!(env.status(&id), "killed");
    assert_eq!(env.show(&id)["kill_method"], "forced");
    let _ = first.wait();
}

#[test]
fn the_api_kill_of_a_stopped_supervisor_is_carried_out_too() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    for force in [true, false] {
        let id = env.detach(&["sh", "-c", "sleep 0.3; kill -STOP $PPID; sleep 60"]);
        let sup = supervisor_pid(&env, &id);
        assert!(eventually(Duration::from_secs(10), || state(sup) == 'T'));
        let started = Instant::now();
        let (st, body) = d.post(
            &format!("/api/v1/executions/{id}/kill"),
            serde_json::json!({ "force": force, "grace": "1s" }),
        );
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["status"], "killed");
        assert!(started.elapsed() < Duration::from_secs(15));
        env.assert_no_marked(Some(&id), Duration::from_secs(5));
    }
}

#[test]
fn the_pidns_tier_records_the_command_and_what_it_used() {
    let env = TestEnv::new();
    let offered = env
        .json(&["doctor"])
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "tier pidns" && c["ok"] == true);
    if !offered {
        eprintln!("skipped: the pidns tier is not offered here");
        return;
    }
    let id = env.detach_with_env(
        ("TEND_CONTAINMENT", "pidns"),
        &["sh", "-c", "while :; do :; done"],
    );
    let pid = env.show(&id)["pid"].as_i64().unwrap() as i32;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "sh",
        "the recorded pid is the command, not the relay"
    );
    std::thread::sleep(Duration::from_millis(1500));
    env.ok(&["kill", "--force", &id]);
    let e = env.show(&id);
    // The bug recorded ~1 ms; a loaded machine may give the loop less than its wall time.
    assert!(e["cpu_ms"].as_u64().unwrap() >= 100, "cpu {}", e["cpu_ms"]);
}

#[test]
fn a_supervisor_stopped_inside_a_write_does_not_lock_the_home_out() {
    let env = TestEnv::new();
    for _ in 0..3 {
        // SIGTERM makes the command stop its supervisor, which is then
        // usually inside the transaction that records the signal.
        let id = env.detach(&[
            "sh",
            "-c",
            "trap 'kill -STOP $PPID' TERM; while :; do sleep 0.1; done",
        ]);
        let start = Instant::now();
        let out = env.tend(&["kill", "--grace", "1s", &id]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(env.status(&id), "killed");
        env.ok(&["run", "--", "true"]);
        env.assert_no_marked(Some(&id), Duration::from_secs(5));
    }
}

#[test]
fn wait_and_the_daemon_carry_out_a_stopped_supervisors_timeout_unasked() {
    let env = TestEnv::new();
    let stopped = ["sh", "-c", "sleep 0.3; kill -STOP $PPID; sleep 60"];
    let opts = ["--timeout", "1s", "--kill-grace", "200ms"];
    // `tend wait` alone: it wakes when the timeout is overdue.
    let id = env.detach_with(&opts, &stopped);
    let start = Instant::now();
    let out = env.tend(&["wait", "--timeout", "30s", &id]);
    assert_eq!(code(&out), 124, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(15));
    // The daemon alone: nobody reads, its timer fires.
    let _d = Daemon::start_with(&env, &[("TEND_RECONCILE_EVERY", "1h")]);
    let id = env.detach_with(&opts, &stopped);
    let parsed = tend_model::ExecutionId::parse(&id).unwrap();
    let done = eventually(Duration::from_secs(20), || {
        use tend_ledger::Ledger;
        env.ledger()
            .get(&parsed)
            .is_ok_and(|e| e.status.is_terminal())
    });
    assert!(done, "the daemon left a stopped supervisor's timeout alone");
    assert_eq!(env.status(&id), "timed_out");
    env.assert_no_marked(Some(&id), Duration::from_secs(5));
}
