//! Stored jobs from the command line: `tend job add|list|show|run|pause|
//! resume|rm`, their numbering, and their refusals.

use std::time::Duration;

use serde_json::Value;

use crate::support::{assert_one_sentence, code, eventually, TestEnv};

fn numbers(env: &TestEnv, job: &str) -> Vec<u64> {
    let rows = env.json(&["list", "--job", job]);
    let mut n: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["job_number"].as_u64().unwrap())
        .collect();
    n.sort();
    n
}

#[test]
fn a_job_is_added_listed_shown_run_and_removed() {
    let env = TestEnv::new();
    let added = env.json(&[
        "job",
        "add",
        "backup",
        "--schedule",
        "*/5 * * * *",
        "--timezone",
        "Europe/Berlin",
        "--timeout",
        "1m",
        "--env",
        "A=1",
        "--",
        "sh",
        "-c",
        "echo $A; exit 3",
    ]);
    assert_eq!(added["name"], "backup");
    assert_eq!(added["run"]["timeout"], "1m00s");
    assert!(
        added["run"]["cwd"].as_str().unwrap().starts_with('/'),
        "cwd made absolute: {added}"
    );
    assert_eq!(added["next_fires"].as_array().unwrap().len(), 1);
    let list = env.json(&["job", "list"]);
    assert_eq!(list[0]["name"], "backup");
    // `job run` is `tend run`: the command's output and exit code.
    let out = env.tend(&["job", "run", "backup"]);
    assert_eq!(code(&out), 3);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let id = env.ok(&["job", "run", "-d", "backup"]).trim().to_string();
    assert!(eventually(Duration::from_secs(10), || env.status(&id) == "failed"));
    let shown = env.json(&["job", "show", "backup"]);
    let fires = shown["next_fires"].as_array().unwrap();
    assert_eq!(fires.len(), 5);
    assert!(fires[0].as_str().unwrap().ends_with("+01:00"), "{fires:?}");
    assert_eq!(shown["executions"].as_array().unwrap().len(), 2);
    let text = env.ok(&["job", "show", "backup"]);
    assert!(
        text.contains("backup#2") && text.contains("next fires"),
        "{text}"
    );
    let listed = env.ok(&["list", "--job", "backup"]);
    assert!(
        listed.contains("backup#1") && listed.contains("backup#2"),
        "{listed}"
    );
    let e = env.show(&id);
    assert_eq!(
        (
            e["job"].as_str(),
            e["job_number"].as_u64(),
            e["attempt"].as_u64()
        ),
        (Some("backup"), Some(2), Some(1))
    );
    env.ok(&["job", "rm", "backup"]);
    assert_eq!(env.json(&["job", "list"]), Value::Array(vec![]));
    // Its executions stay.
    assert_eq!(numbers(&env, "backup"), [1, 2]);
}

#[test]
fn numbers_count_up_and_are_never_reused_after_rm_and_add() {
    let env = TestEnv::new();
    env.ok(&["job", "add", "n", "--", "true"]);
    for _ in 0..3 {
        env.ok(&["job", "run", "n"]);
    }
    assert_eq!(numbers(&env, "n"), [1, 2, 3]);
    env.ok(&["job", "rm", "n"]);
    env.ok(&["job", "add", "n", "--", "true"]);
    env.ok(&["job", "run", "n"]);
    assert_eq!(numbers(&env, "n"), [1, 2, 3, 4]);
    // --replace keeps the numbering too.
    env.ok(&["job", "add", "n", "--replace", "--", "false"]);
    assert_eq!(code(&env.tend(&["job", "run", "n"])), 1);
    assert_eq!(numbers(&env, "n"), [1, 2, 3, 4, 5]);
}

#[test]
fn bad_job_input_is_one_sentence_exit_2_and_stores_nothing() {
    let env = TestEnv::new();
    env.ok(&["job", "add", "taken", "--", "true"]);
    for args in [
        &["job", "add", "taken", "--", "true"][..],
        &["job", "add", "x", "--schedule", "61 * * * *", "--", "true"],
        &["job", "add", "x", "--schedule", "@every 0s", "--", "true"],
        &[
            "job",
            "add",
            "x",
            "--timezone",
            "Mars/Olympus",
            "--",
            "true",
        ],
        &["job", "add", "x", "--", ""],
        &["job", "add", "bad name", "--", "true"],
        &[
            "job",
            "add",
            "x",
            "--concurrency",
            "sometimes",
            "--",
            "true",
        ],
        &["job", "show", "nope"],
        &["job", "run", "nope"],
        &["job", "pause", "nope"],
        &["job", "rm", "nope"],
    ] {
        let out = env.tend(args);
        assert_one_sentence(&out, 2);
    }
    let names: Vec<Value> = env
        .json(&["job", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].clone())
        .collect();
    assert_eq!(names, ["taken"]);
}

#[test]
fn forbid_refuses_a_run_while_one_runs_and_rm_leaves_it_unless_kill() {
    let env = TestEnv::new();
    env.ok(&[
        "job",
        "add",
        "slow",
        "--concurrency",
        "forbid",
        "--",
        "sleep",
        "30",
    ]);
    let first = env.ok(&["job", "run", "-d", "slow"]).trim().to_string();
    let out = env.tend(&["job", "run", "-d", "slow"]);
    let said = assert_one_sentence(&out, 1);
    assert!(
        said.contains("slow#1") && said.contains("forbids"),
        "{said}"
    );
    env.ok(&["job", "rm", "slow"]);
    assert_eq!(
        env.status(&first),
        "running",
        "rm leaves a running execution alone"
    );
    env.ok(&[
        "job",
        "add",
        "slow",
        "--concurrency",
        "replace",
        "--kill-grace",
        "1s",
        "--",
        "sleep",
        "30",
    ]);
    let second = env.ok(&["job", "run", "-d", "slow"]).trim().to_string();
    let old = env.show(&first);
    assert_eq!(old["status"], "killed");
    assert_eq!(old["kill_request"]["reason"], "replaced by slow#2");
    assert_eq!(env.status(&second), "running");
    env.ok(&["job", "rm", "--kill", "slow"]);
    assert!(eventually(Duration::from_secs(10), || env.status(&second) == "killed"));
}

#[test]
fn pause_and_resume_say_so() {
    let env = TestEnv::new();
    env.ok(&["job", "add", "p", "--schedule", "@hourly", "--", "true"]);
    assert_eq!(env.json(&["job", "pause", "p"])["paused"], true);
    assert_eq!(
        env.json(&["job", "show", "p"])["next_fires"],
        Value::Array(vec![])
    );
    let resumed = env.json(&["job", "resume", "p"]);
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["next_fires"].as_array().unwrap().len(), 1);
}
