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

/// `tend logs` (issue 10): both streams in the order written by default,
/// one with --stdout/--stderr, the last lines, the recent part, times,
/// records in JSON, the latest execution without an id, and -f of both.
#[test]
fn logs_interleave_tail_since_timestamps_and_json() {
    let env = TestEnv::new();
    let script = "echo o1; sleep 0.2; echo e1 >&2; sleep 0.2; echo o2; sleep 0.2; echo e2 >&2";
    env.ok(&["run", "--", "sh", "-c", script]);
    assert_eq!(
        env.ok(&["logs"]),
        "o1\ne1\no2\ne2\n",
        "the latest, interleaved"
    );
    assert_eq!(env.ok(&["logs", "--stdout"]), "o1\no2\n");
    assert_eq!(env.ok(&["logs", "--stderr"]), "e1\ne2\n");
    assert_eq!(env.ok(&["logs", "-n", "3"]), "e1\no2\ne2\n");
    assert_eq!(env.ok(&["logs", "--tail", "1", "--stdout"]), "o2\n");
    assert_eq!(env.ok(&["logs", "--since", "1h"]), "o1\ne1\no2\ne2\n");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(env.ok(&["logs", "--since", "1s"]), "", "all of it is older");
    let stamped = env.ok(&["logs", "-t"]);
    for (line, text) in stamped.lines().zip(["o1", "e1", "o2", "e2"]) {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "{line}");
        assert_eq!(rest, text);
    }
    let records = env.json(&["logs"]);
    assert_eq!(records[1]["stream"], "stderr", "{records}");
    assert_eq!(records[1]["text"], "e1\n");
    assert!(records[1]["at"].is_string() && records[1]["offset"] == 0);
    let e = assert_one_sentence(&env.tend(&["--json", "logs", "-f"]), 2);
    assert!(e.contains("cannot follow"), "{e}");

    let id = env.detach(&[
        "sh",
        "-c",
        "for i in 1 2 3; do echo out $i; sleep 0.2; echo err $i >&2; sleep 0.2; done",
    ]);
    let followed = env.ok(&["logs", "-f", &id]);
    assert_eq!(followed, "out 1\nerr 1\nout 2\nerr 2\nout 3\nerr 3\n");
}

/// `tend stats` and `GET /api/v1/stats` (issue 14): the same figures, of a
/// ledger whose contents the test knows.
#[test]
fn stats_say_what_the_ledger_holds_in_the_cli_and_the_api() {
    let env = TestEnv::new();
    env.ok(&["run", "--name", "ok-job", "--", "true"]);
    env.ok(&["run", "--name", "ok-job", "--", "sleep", "0.3"]);
    let _ = env.tend(&["run", "--name", "bad-job", "--", "sh", "-c", "exit 4"]);
    let s = env.json(&["stats"]);
    assert_eq!(s["total"], 3, "{s}");
    assert_eq!(s["by_status"]["succeeded"], 2);
    assert_eq!(s["by_status"]["failed"], 1);
    let rate = s["failure_rate"].as_f64().unwrap();
    assert!((rate - 1.0 / 3.0).abs() < 1e-9, "{s}");
    assert!(
        s["duration_ms"]["max"].as_u64().unwrap() >= 250,
        "the sleep 0.3: {s}"
    );
    assert_eq!(s["slowest"][0]["key"], "ok-job");
    assert_eq!(s["most_failing"][0]["key"], "bad-job");
    assert_eq!(s["per_hour"].as_array().unwrap().len(), 24);
    let only = env.json(&["stats", "--name", "ok-*"]);
    assert_eq!(
        (only["total"].as_u64(), only["failure_rate"].as_f64()),
        (Some(2), Some(0.0))
    );
    let text = env.ok(&["stats"]);
    assert!(
        text.contains("3 executions") && text.contains("33.3%"),
        "{text}"
    );
    let d = Daemon::start(&env);
    let (st, api) = d.get("/api/v1/stats");
    assert_eq!(st, 200);
    assert_eq!(
        (&api["total"], &api["by_status"], &api["most_failing"]),
        (&s["total"], &s["by_status"], &s["most_failing"])
    );
    let (st, e) = d.get("/api/v1/stats?name=%5B");
    assert_eq!((st, &e["field"]), (400, &serde_json::json!("name")), "{e}");
}

/// `tend prune` (issue 14): a dry run deletes nothing and says what would
/// go and how much it frees; a real one removes old terminal executions
/// with their events and logs, never a live one, and keeps the last
/// `TEND_KEEP_LAST` of each job.
#[test]
fn prune_removes_old_finished_executions_and_their_logs_but_never_a_live_one() {
    let env = TestEnv::new();
    for _ in 0..3 {
        env.ok(&["run", "--", "echo", "old"]);
    }
    env.ok(&["job", "add", "nightly", "--", "echo", "job"]);
    for _ in 0..4 {
        env.ok(&["job", "run", "nightly"]);
    }
    let live = env.detach(&["sleep", "600"]);
    let all = || {
        env.json(&["list", "--limit", "100"])
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(all().len(), 8);
    let old = all()
        .iter()
        .find(|e| e["job"].is_null() && e["status"] == "succeeded")
        .unwrap()
        .clone();
    let log = std::path::PathBuf::from(old["stdout_path"].as_str().unwrap());
    assert!(log.exists());
    let keep = [("TEND_KEEP_LAST", "2")];
    let mut dry = env.cmd();
    dry.envs(keep)
        .args(["--json", "prune", "--older-than", "0", "--dry-run"]);
    let out = dry.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["executions"].as_array().unwrap().len(),
        5,
        "3 plain + 2 of the job's 4: {report}"
    );
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert_eq!(all().len(), 8, "a dry run deletes nothing");
    assert!(log.exists());
    let out = env
        .cmd()
        .envs(keep)
        .args(["prune", "--older-than", "0"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pruned 5 executions"),
        "{}",
        stderr(&out)
    );
    let left = all();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left
        .iter()
        .any(|e| e["id"] == live.as_str() && e["status"] == "running"));
    let numbers: Vec<_> = left
        .iter()
        .filter_map(|e| e["job_number"].as_u64())
        .collect();
    assert_eq!(numbers, [4, 3], "the last 2 of the job stay");
    assert!(!log.exists(), "its log went with it");
    let e = assert_one_sentence(&env.tend(&["show", old["id"].as_str().unwrap()]), 1);
    assert!(e.contains("no execution matches"), "{e}");
    env.ok(&["kill", &live]);
}
