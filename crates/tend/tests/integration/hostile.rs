//! Hostile text and paths (issue 8, item 7): names, labels, reasons and
//! progress cannot act on the terminal or forge rows; a working directory
//! that is not UTF-8 is used exactly.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde_json::json;

use crate::support::*;

const EVIL: &str = "evil\x1b[31mRED\x1b[0m\nFAKE  line  succeeded\x1b]0;pwned\x07\u{202e}";

/// Human output holds no byte that a terminal acts on.
fn assert_inert(out: &str, what: &str) {
    for bad in ['\x1b', '\x07', '\u{202e}', '\r'] {
        assert!(!out.contains(bad), "{what} printed {bad:?} raw:\n{out}");
    }
}

#[test]
fn hostile_text_is_escaped_in_human_output_and_exact_in_json() {
    let env = TestEnv::new();
    let tend = env!("CARGO_BIN_EXE_tend");
    let script = format!("{tend} heartbeat --progress \"$P\" && exec sleep 1000");
    let label = format!("team={EVIL}");
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            EVIL,
            "--label",
            &label,
            "--heartbeat-timeout",
            "1h",
            "--env",
            &format!("P={EVIL}"),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .trim()
        .to_string();
    assert!(eventually(std::time::Duration::from_secs(20), || {
        env.show(&id)["progress"].as_str() == Some(EVIL)
    }));
    let list = env.ok(&["list"]);
    assert_inert(&list, "list");
    assert_eq!(list.lines().count(), 2, "a header and one row:\n{list}");
    assert!(list.contains(r"evil\x1b[31mRED\x1b[0m\nFAKE"), "{list}");
    let ps = env.ok(&["ps"]);
    assert_inert(&ps, "ps");
    assert_eq!(ps.lines().count(), 2, "{ps}");
    let show = env.ok(&["show", &id]);
    assert_inert(&show, "show");
    assert!(show.contains(r"\u{202e}"), "{show}");
    let dry = env.tend(&["kill", "--name", "evil*"]);
    let dry_out = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert_inert(&dry_out, "the bulk-kill confirmation");
    assert_eq!(dry_out.lines().count(), 2, "{dry_out}");
    env.ok(&["kill", "--reason", EVIL, &id]);
    let show = env.ok(&["show", &id]);
    assert_inert(&show, "show after the kill");
    // JSON is exact.
    let e = env.show(&id);
    assert_eq!(e["name"], EVIL);
    assert_eq!(e["labels"]["team"], EVIL);
    assert_eq!(e["progress"], EVIL);
}

/// Two directories that a lossy conversion would confuse: `x\xffdir` and
/// `x\u{FFFD}dir` (what `\xff` becomes when decoded lossily).
fn lookalike_dirs(env: &TestEnv) -> (PathBuf, PathBuf) {
    let root = std::fs::canonicalize(env.dir.path()).unwrap();
    let mut raw = root.as_os_str().as_bytes().to_vec();
    raw.extend_from_slice(b"/x\xffdir");
    let raw = PathBuf::from(OsStr::from_bytes(&raw));
    let lossy = root.join("x\u{fffd}dir");
    std::fs::create_dir(&raw).unwrap();
    std::fs::create_dir(&lossy).unwrap();
    (raw, lossy)
}

#[test]
fn a_working_directory_that_is_not_utf8_is_used_exactly() {
    let env = TestEnv::new();
    let (raw, _lossy) = lookalike_dirs(&env);
    let out = env.dir.path().join("pwd.out");
    let script = format!("pwd -P > {}", out.display());
    // (what, through --cwd rather than the current directory, detached)
    let runs = [
        ("--cwd, foreground", true, false),
        ("--cwd, detached", true, true),
        ("current dir, foreground", false, false),
        ("current dir, detached", false, true),
    ];
    for (what, flag, detached) in runs {
        let _ = std::fs::remove_file(&out);
        let mut cmd = env.cmd();
        cmd.arg("run");
        if detached {
            cmd.arg("-d");
        }
        if flag {
            cmd.arg("--cwd").arg(&raw);
        } else {
            cmd.current_dir(&raw);
        }
        let o = cmd.args(["--", "sh", "-c", &script]).output().unwrap();
        assert_eq!(code(&o), 0, "{what}: {}", stderr(&o));
        let id = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
        if detached {
            env.ok(&["wait", &id]);
        }
        let pwd = std::fs::read(&out).unwrap();
        assert_eq!(
            pwd.strip_suffix(b"\n").unwrap_or(&pwd),
            raw.as_os_str().as_bytes(),
            "{what}: ran in {}",
            String::from_utf8_lossy(&pwd)
        );
        let e = env.show(&id);
        assert!(e["cwd"].as_str().unwrap().ends_with(r"/x\xffdir"), "{e}");
        assert!(env.ok(&["show", &id]).contains(r"/x\xffdir"));
    }
}

#[test]
fn the_api_refuses_what_the_cli_refuses() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let long = "x".repeat(257);
    let bodies = [
        json!({"command": ["true"], "name": long}),
        json!({"command": ["true"], "key": long}),
        json!({"command": ["true"], "labels": {"k": "v".repeat(1025)}}),
        json!({"command": ["true"], "kill_grace": "61m"}),
        json!({"command": ["true"], "kill_grace": "106751991167d"}),
    ];
    for body in bodies {
        let (st, e) = d.post("/api/v1/executions", body.clone());
        assert_eq!(st, 400, "{body}: {e}");
    }
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 0);
    let id = env.detach(&["sleep", "1000"]);
    for body in [json!({"grace": "2h"}), json!({"reason": "r".repeat(1025)})] {
        let (st, e) = d.post(&format!("/api/v1/executions/{id}/kill"), body.clone());
        assert_eq!(st, 400, "{body}: {e}");
    }
    assert_eq!(env.status(&id), "running");
}

/// One validator behind both doors (issue 9): every bad run option is
/// refused by `tend run` (exit 2, one sentence) and by the API (400 naming
/// the field) in the same words, and nothing is recorded.
#[test]
fn run_options_are_refused_alike_by_the_cli_and_the_api() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let big = "v".repeat(32 * 1024 + 1);
    let (big_env, name, key) = (format!("K={big}"), "n".repeat(257), "k".repeat(257));
    let label = format!("k={}", "v".repeat(1025));
    let cases: Vec<(Vec<&str>, serde_json::Value, &str)> = vec![
        (vec!["--timeout", "0"], json!({"timeout": "0"}), "timeout"),
        (
            vec!["--timeout", "25h"],
            json!({"timeout": "25h"}),
            "timeout",
        ),
        (
            vec!["--heartbeat-timeout", "0s"],
            json!({"heartbeat_timeout": "0s"}),
            "heartbeat_timeout",
        ),
        (
            vec!["--idle-timeout", "0"],
            json!({"idle_timeout": "0"}),
            "idle_timeout",
        ),
        (
            vec!["--kill-grace", "2h"],
            json!({"kill_grace": "2h"}),
            "kill_grace",
        ),
        (
            vec!["--max-memory", "0"],
            json!({"max_memory": "0"}),
            "max_memory",
        ),
        (
            vec!["--env", "A\nB=x"],
            json!({"env": {"A\nB": "x"}}),
            "env",
        ),
        (vec!["--env", &big_env], json!({"env": {"K": big}}), "env"),
        (
            vec!["--name", &name],
            json!({"name": "n".repeat(257)}),
            "name",
        ),
        (vec!["--key", &key], json!({"key": "k".repeat(257)}), "key"),
        (vec!["--name", ""], json!({"name": ""}), "name"),
        (vec!["--key", ""], json!({"key": ""}), "key"),
        (
            vec!["--label", &label],
            json!({"labels": {"k": "v".repeat(1025)}}),
            "labels",
        ),
    ];
    for (flags, mut body, field) in cases {
        body["command"] = json!(["true"]);
        let (st, e) = d.post("/api/v1/executions", body.clone());
        assert_eq!(st, 400, "{body}: {e}");
        assert_eq!(e["field"], field, "{e}");
        let mut args = vec!["run"];
        args.extend(flags.iter().copied());
        args.extend(["--", "true"]);
        let cli = assert_one_sentence(&env.tend(&args), 2);
        let words = cli.trim().trim_start_matches("tend: ");
        assert_eq!(e["error"], format!("{field}: {words}"), "{flags:?}");
    }
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 0);
    // A value that does not parse is named too, in one sentence.
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["true"], "timeout": "banana"}),
    );
    assert_eq!((st, &e["field"]), (400, &json!("timeout")), "{e}");
    let text = e["error"].as_str().unwrap();
    assert!(
        text.starts_with("timeout: 'banana' is not a duration") && !text.contains("line 1"),
        "{e}"
    );
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["true"], "timeoot": "1s"}),
    );
    assert_eq!(st, 400);
    assert!(e["error"].as_str().unwrap().contains("timeoot"), "{e}");
}
