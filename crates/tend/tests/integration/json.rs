use crate::support::*;

const EXECUTION_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "reason",
    "exit_code",
    "signal",
    "pid",
    "key",
    "labels",
    "created_at",
    "started_at",
    "finished_at",
    "host",
    "tier",
];

fn assert_execution(v: &serde_json::Value) {
    for f in EXECUTION_FIELDS {
        assert!(v.get(*f).is_some(), "field {f} missing from {v}");
    }
    assert!(v["labels"].is_object());
    let t = v["created_at"].as_str().unwrap();
    assert!(
        t.ends_with('Z') && t.len() == 24,
        "RFC 3339 UTC with milliseconds: {t}"
    );
}

#[test]
fn every_command_speaks_the_same_execution_schema() {
    let env = TestEnv::new();
    let run = env.json(&[
        "run", "-d", "--key", "kk", "--label", "a=b", "--", "sleep", "30",
    ]);
    assert_execution(&run);
    assert_eq!(run["status"], "running");
    assert_eq!(run["key"], "kk");
    assert_eq!(run["labels"]["a"], "b");
    assert!(run["tier"] == "cgroup" || run["tier"] == "session", "{run}");
    assert!(run["pid"].as_i64().unwrap() > 0);
    let id = run["id"].as_str().unwrap();
    let ps = env.json(&["ps"]);
    assert_execution(&ps[0]);
    assert!(ps[0]["rss_bytes"].as_u64().unwrap() > 0);
    let show = env.json(&["show", id]);
    assert_execution(&show);
    assert_eq!(show["events"][0]["kind"], "created");
    let killed = env.json(&["kill", id]);
    let k = &killed[0];
    // The execution itself, with this kill's fields (issue 10).
    assert_execution(k);
    for f in [
        "id",
        "status",
        "kill_method",
        "kill_duration_ms",
        "processes_signalled",
    ] {
        assert!(k.get(f).is_some(), "{f} missing from {k}");
    }
    assert_eq!(k["status"], "killed");
    assert_eq!(k["kill_method"], "graceful");
    assert_eq!(k["processes_signalled"], 1);
    let again = env.json(&["kill", id]);
    assert_eq!(again[0]["kill_method"], "none");
    assert_eq!(again[0]["already_finished"], true);
    let list = env.json(&["list"]);
    assert!(list.is_array());
    assert_execution(&list[0]);
    let fg = env.json(&["run", "--", "true"]);
    assert_execution(&fg);
    assert_eq!(fg["status"], "succeeded");
}

// Issue 9: `ps --json` wrote `cpu_ms` twice in one object (the stored
// value's and the live one). One key per field, the live value.
#[test]
fn ps_json_has_one_key_per_field() {
    let env = TestEnv::new();
    env.detach(&["sleep", "30"]);
    let raw = env.ok(&["--json", "ps"]);
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&raw).unwrap();
    assert_eq!(rows.len(), 1, "{raw}");
    let keys = raw.matches("\"cpu_ms\"").count();
    assert_eq!(keys, 1, "cpu_ms once per object: {raw}");
    assert!(rows[0]["cpu_ms"].is_u64(), "the live value: {raw}");
    assert_eq!(raw.matches("\"rss_bytes\"").count(), 1, "{raw}");
}

/// `run --json` in the foreground: stdout carries the JSON and nothing
/// else; the command's output goes to stderr, in the order it was written.
#[test]
fn run_json_keeps_the_commands_output_out_of_stdout() {
    let env = TestEnv::new();
    let out = env.tend(&[
        "--json",
        "run",
        "--",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(v["status"], "succeeded");
    assert_eq!(stderr(&out), "out1\nerr1\nout2\n");
}
