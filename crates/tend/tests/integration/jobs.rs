//! Stored jobs from the command line: `tend job add|list|show|run|pause|
//! resume|rm`, their numbering, and their refusals.

use std::time::Duration;

use serde_json::Value;

use crate::support::{assert_one_sentence, code, eventually, Daemon, TestEnv};

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
    ] {
        let out = env.tend(args);
        assert_one_sentence(&out, 2);
    }
    // A name that matches no job is "not found", like an unknown id: 1.
    for args in [
        &["job", "show", "nope"][..],
        &["job", "run", "nope"],
        &["job", "pause", "nope"],
        &["job", "rm", "nope"],
    ] {
        let e = assert_one_sentence(&env.tend(args), 1);
        assert!(e.contains("no job is named 'nope'"), "{e}");
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

/// The nominal instants the job's runs were fired for, from each run's
/// `fired` event, in the ledger at `store`.
fn fired_slots(env: &TestEnv, store: &str, job: &str) -> Vec<String> {
    let out = env
        .cmd()
        .env("TEND_STORE", store)
        .args(["--json", "list", "--job", job, "--limit", "1000"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut slots = Vec::new();
    for e in rows.as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let out = env
            .cmd()
            .env("TEND_STORE", store)
            .args(["--json", "show", id])
            .output()
            .unwrap();
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        for ev in shown["events"].as_array().unwrap() {
            if ev["kind"] == "fired" {
                slots.push(ev["details"]["scheduled_at"].as_str().unwrap().to_string());
            }
        }
    }
    slots.sort();
    slots
}

fn assert_distinct(slots: &[String]) {
    let mut d = slots.to_vec();
    d.dedup();
    assert_eq!(d.len(), slots.len(), "a slot fired twice: {slots:?}");
}

fn job_events(env: &TestEnv, job: &str) -> Vec<Value> {
    env.json(&["job", "show", job])["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_schedule_fires_once_a_second_and_never_twice_across_a_daemon_sigkill() {
    let env = TestEnv::new();
    let store = env.store();
    env.ok(&[
        "job",
        "add",
        "tick",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "true",
    ]);
    let mut daemon = Daemon::start(&env);
    assert!(eventually(Duration::from_secs(10), || numbers(
        &env, "tick"
    )
    .len()
        >= 3));
    daemon.kill9();
    let before = fired_slots(&env, &store, "tick");
    let daemon = Daemon::start(&env);
    let n = before.len();
    assert!(eventually(Duration::from_secs(10), || numbers(
        &env, "tick"
    )
    .len()
        >= n + 3));
    drop(daemon);
    let slots = fired_slots(&env, &store, "tick");
    assert_distinct(&slots);
    let nums = numbers(&env, "tick");
    assert_eq!(
        nums,
        (1..=nums.len() as u64).collect::<Vec<_>>(),
        "numbers without gaps"
    );
}

#[test]
fn two_daemons_on_one_ledger_fire_each_slot_once() {
    let (a, b) = (TestEnv::new(), TestEnv::new());
    let store = a.store();
    a.ok(&[
        "job",
        "add",
        "both",
        "--schedule",
        "@every 1s",
        "--",
        "true",
    ]);
    let da = Daemon::start(&a);
    let db = Daemon::start_with(&b, &[("TEND_STORE", &store)]);
    let started = std::time::Instant::now();
    assert!(eventually(Duration::from_secs(15), || numbers(&a, "both")
        .len()
        >= 5));
    let elapsed = started.elapsed().as_secs() + 2;
    drop((da, db));
    let slots = fired_slots(&a, &store, "both");
    assert_distinct(&slots);
    assert!(
        slots.len() as u64 <= elapsed,
        "{} fires in about {elapsed}s",
        slots.len()
    );
}

#[test]
fn forbid_records_a_skipped_fire_while_a_run_is_live() {
    let env = TestEnv::new();
    env.ok(&[
        "job",
        "add",
        "long",
        "--schedule",
        "@every 1s",
        "--concurrency",
        "forbid",
        "--",
        "sleep",
        "3",
    ]);
    let _daemon = Daemon::start(&env);
    assert!(eventually(Duration::from_secs(10), || {
        job_events(&env, "long")
            .iter()
            .any(|e| e["kind"] == "fire-skipped")
    }));
    let live = env.json(&["list", "--job", "long", "--status", "queued,running"]);
    assert_eq!(
        live.as_array().unwrap().len(),
        1,
        "one run at a time: {live}"
    );
    let skipped = job_events(&env, "long")
        .into_iter()
        .find(|e| e["kind"] == "fire-skipped")
        .unwrap();
    assert_eq!(skipped["actor"], "scheduler");
    assert_eq!(skipped["details"]["live"][0], "long#1");
}

#[test]
fn a_paused_job_fires_nothing_until_resumed() {
    let env = TestEnv::new();
    env.ok(&["job", "add", "p", "--schedule", "@every 1s", "--", "true"]);
    env.ok(&["job", "pause", "p"]);
    let _daemon = Daemon::start(&env);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(numbers(&env, "p").is_empty(), "a paused job fired");
    env.ok(&["job", "resume", "p"]);
    assert!(eventually(Duration::from_secs(5), || !numbers(&env, "p").is_empty()));
    // Nothing owed from the pause: no catch-up event.
    assert!(
        job_events(&env, "p").is_empty(),
        "{:?}",
        job_events(&env, "p")
    );
}

#[test]
fn catch_up_runs_the_latest_or_records_the_misses_after_the_daemon_was_down() {
    let env = TestEnv::new();
    for (name, policy) in [("late", "latest"), ("skip", "skip")] {
        env.ok(&[
            "job",
            "add",
            name,
            "--schedule",
            "@every 1s",
            "--catch-up",
            policy,
            "--",
            "true",
        ]);
    }
    let mut daemon = Daemon::start(&env);
    assert!(eventually(Duration::from_secs(10), || {
        !numbers(&env, "late").is_empty() && !numbers(&env, "skip").is_empty()
    }));
    daemon.kill9();
    std::thread::sleep(Duration::from_millis(3200));
    let daemon = Daemon::start(&env);
    // The catch-up's event (a late wake under load may add others).
    let missed = |job: &str| {
        job_events(&env, job)
            .into_iter()
            .find(|e| e["kind"] == "fire-missed" && e["details"]["while_down"] == true)
    };
    assert!(eventually(Duration::from_secs(10), || missed("late")
        .is_some()
        && missed("skip").is_some()));
    let (late, skip) = (missed("late").unwrap(), missed("skip").unwrap());
    assert_eq!(
        (
            late["details"]["catch_up"].as_str(),
            late["details"]["ran_latest"].as_bool()
        ),
        (Some("latest"), Some(true)),
        "{late}"
    );
    assert_eq!(
        (
            skip["details"]["catch_up"].as_str(),
            skip["details"]["ran_latest"].as_bool()
        ),
        (Some("skip"), Some(false)),
        "{skip}"
    );
    assert!(late["details"]["missed"].as_u64().unwrap() >= 2, "{late}");
    assert!(skip["details"]["missed"].as_u64().unwrap() >= 3, "{skip}");
    // Health is degraded by the misses of the last day, and /metrics counts them.
    let health = env.tend(&["--json", "health"]);
    assert_eq!(
        code(&health),
        1,
        "{}",
        String::from_utf8_lossy(&health.stdout)
    );
    let report: Value = serde_json::from_slice(&health.stdout).unwrap();
    assert!(report.to_string().contains("fires missed"), "{report}");
    let (_, metrics) = d_metrics(&daemon);
    assert!(
        metrics.contains("tend_job_fires_total{job=\"skip\",outcome=\"missed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tend_job_fires_total{job=\"late\",outcome=\"fired\"}"),
        "{metrics}"
    );
}

fn d_metrics(d: &Daemon) -> (u16, String) {
    let (code, v) = d.get("/metrics");
    (code, v.as_str().unwrap_or_default().to_string())
}

#[test]
fn the_api_adds_lists_shows_runs_pauses_resumes_and_deletes_jobs() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let body = serde_json::json!({
        "name": "web", "run": {"command": ["sh", "-c", "exit 4"], "cwd": "/tmp"},
        "schedule": "@daily", "timezone": "UTC", "concurrency": "forbid"
    });
    let (code, job) = d.post("/api/v1/jobs", body.clone());
    assert_eq!(code, 201, "{job}");
    assert_eq!(
        (
            job["name"].as_str(),
            job["next_fires"].as_array().map(Vec::len)
        ),
        (Some("web"), Some(5))
    );
    assert_eq!(d.post("/api/v1/jobs", body.clone()).0, 409);
    assert_eq!(d.post("/api/v1/jobs?replace=true", body).0, 200);
    for (bad, field) in [
        (
            serde_json::json!({"name": "x", "run": {"command": []}}),
            "command",
        ),
        (
            serde_json::json!({"name": "x", "run": {"command": ["true"]}, "schedule": "61 * * * *"}),
            "schedule",
        ),
        (
            serde_json::json!({"name": "x", "run": {"command": ["true"]}, "schedule": "@every 0s"}),
            "schedule",
        ),
        (
            serde_json::json!({"name": "x", "run": {"command": ["true"]}, "timezone": "Nowhere/Land"}),
            "timezone",
        ),
        (
            serde_json::json!({"name": "a b", "run": {"command": ["true"]}}),
            "name",
        ),
    ] {
        let (code, err) = d.post("/api/v1/jobs", bad);
        assert_eq!((code, err["field"].as_str()), (400, Some(field)), "{err}");
    }
    let (_, list) = d.get("/api/v1/jobs");
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing refused was stored: {list}"
    );
    let (code, e) = d.post("/api/v1/jobs/web/run", Value::Null);
    assert_eq!(code, 201, "{e}");
    assert_eq!(
        (e["job"].as_str(), e["job_number"].as_u64()),
        (Some("web"), Some(1))
    );
    let id = e["id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(10), || env.status(&id) == "failed"));
    let (_, runs) = d.get("/api/v1/executions?job=web");
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(
        d.post("/api/v1/jobs/web/pause", Value::Null).1["paused"],
        true
    );
    assert_eq!(
        d.post("/api/v1/jobs/web/resume", Value::Null).1["paused"],
        false
    );
    let (code, shown) = d.get("/api/v1/jobs/web");
    assert_eq!(
        (code, shown["executions"][0]["id"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(d.delete("/api/v1/jobs/web").0, 200);
    assert_eq!(d.get("/api/v1/jobs/web").0, 404);
    assert_eq!(d.post("/api/v1/jobs/web/run", Value::Null).0, 404);
    let (_, doc) = d.get("/api/v1/openapi.json");
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{name}",
        "/api/v1/jobs/{name}/run",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}

#[test]
fn a_fire_decided_but_never_launched_is_started_by_the_next_daemon() {
    let env = TestEnv::new();
    env.ok(&[
        "job",
        "add",
        "tick",
        "--schedule",
        "* * * * * *",
        "--",
        "true",
    ]);
    // This daemon dies between deciding its first fire and launching it.
    let mut cmd = env.cmd();
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("TEND_FAILPOINT", "scheduler-after-claim");
    let out = crate::support::finish(cmd, Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        None,
        "killed by its failpoint: {}",
        crate::support::stderr(&out)
    );
    use tend_ledger::Ledger;
    let slot = env
        .ledger()
        .last_fire("tick")
        .unwrap()
        .expect("a fire was decided");
    assert!(env
        .json(&["list", "--job", "tick"])
        .as_array()
        .unwrap()
        .is_empty());
    let slot_text = tend_model::format_rfc3339(slot);
    let _daemon = Daemon::start(&env);
    let ran_for = |at: &str| -> usize {
        let rows = env.json(&["list", "--job", "tick"]);
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                env.events(e["id"].as_str().unwrap())
                    .iter()
                    .any(|ev| ev["kind"] == "fired" && ev["details"]["scheduled_at"] == at)
            })
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || ran_for(&slot_text) == 1),
        "the decided fire was never started"
    );
    let shown = env.json(&["job", "show", "tick"]);
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"fire-recovered"), "{shown}");
    assert_eq!(ran_for(&slot_text), 1, "a recovered fire runs once");
}
