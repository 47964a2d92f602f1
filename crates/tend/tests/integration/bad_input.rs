use std::time::Duration;

use crate::support::*;

#[test]
/// Issue 10, per SPEC: an id that matches nothing is "not found" (exit 1);
/// a malformed one is a usage error (exit 2).
fn unknown_ids_are_not_found_and_malformed_ids_are_usage_errors() {
    let env = TestEnv::new();
    env.ok(&["run", "--", "true"]);
    let e = assert_one_sentence(&env.tend(&["show", "zzzzzzzz"]), 1);
    assert!(e.contains("no execution matches 'zzzzzzzz'"), "{e}");
    let e = assert_one_sentence(&env.tend(&["show", "ab"]), 2);
    assert!(e.contains("prefix needs at least 4"), "{e}");
    let e = assert_one_sentence(&env.tend(&["wait", "../../etc"]), 2);
    assert!(e.contains("0-9 and a-z"), "{e}");
}

#[test]
fn malformed_durations_and_missing_commands_exit_2() {
    let env = TestEnv::new();
    let out = env.tend(&["run", "--timeout", "5x", "--", "true"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not a duration"),
        "{}",
        stderr(&out)
    );
    let out = env.tend(&["run"]);
    assert_eq!(code(&out), 2);
    let out = env.tend(&["run", "--label", "novalue", "--", "true"]);
    assert_eq!(code(&out), 2);
    let e = assert_one_sentence(
        &env.tend(&["run", "--cwd", "/does/not/exist", "--", "true"]),
        2,
    );
    assert!(e.contains("does not exist"), "{e}");
    let e = assert_one_sentence(&env.tend(&["run", "--timeout", "30d", "--", "true"]), 2);
    assert!(e.contains("maximum"), "{e}");
    assert_eq!(
        env.json(&["list"]).as_array().unwrap().len(),
        0,
        "nothing was recorded"
    );
}

#[test]
fn a_missing_or_unexecutable_program_is_recorded_as_failed_to_start() {
    let env = TestEnv::new();
    let e = assert_one_sentence(&env.tend(&["run", "--", "no-such-program-xyz"]), 127);
    assert!(e.contains("No such file or directory"), "{e}");
    let script = env.dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let e = assert_one_sentence(&env.tend(&["run", "--", script.to_str().unwrap()]), 126);
    assert!(e.contains("Permission denied"), "{e}");
    let list = env.json(&["list"]);
    for row in list.as_array().unwrap() {
        assert_eq!(row["status"], "failed");
        assert!(row["reason"]
            .as_str()
            .unwrap()
            .starts_with("failed to start: "));
        assert_eq!(row["started_at"], serde_json::Value::Null);
    }
    let id = list[0]["id"].as_str().unwrap();
    assert!(env.event_kinds(id).contains(&"failed-to-start".to_string()));
    // Detached, the same.
    let out = env.tend(&["run", "-d", "--", "no-such-program-xyz"]);
    assert_eq!(code(&out), 127);
}

#[test]
fn an_unusable_home_is_one_sentence() {
    let env = TestEnv::new();
    let file = env.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = env
        .cmd()
        .env("TEND_HOME", file.join("home"))
        .args(["list"])
        .output()
        .unwrap();
    let e = assert_one_sentence(&out, 1);
    assert!(e.contains("cannot use") && e.contains("TEND_HOME"), "{e}");
}

#[test]
fn a_newer_or_corrupt_ledger_is_refused() {
    let env = TestEnv::new();
    if env.sqlite_only() {
        return;
    }
    env.ok(&["run", "--", "true"]);
    let status = std::process::Command::new("sqlite3")
        .arg(env.ledger_path())
        .arg("PRAGMA user_version = 99;")
        .status();
    if status.is_ok_and(|s| s.success()) {
        let e = assert_one_sentence(&env.tend(&["list"]), 1);
        assert!(
            e.contains("newer than this tend") && e.contains("upgrade tend"),
            "{e}"
        );
    }
    let other = TestEnv::new();
    std::fs::create_dir_all(other.home()).unwrap();
    std::fs::write(other.ledger_path(), vec![7u8; 4096]).unwrap();
    let e = assert_one_sentence(&other.tend(&["list"]), 1);
    assert!(e.contains("not a readable tend ledger"), "{e}");
}

#[test]
fn unreachable_and_unknown_stores_say_so() {
    let env = TestEnv::new();
    let e = assert_one_sentence(
        &env.tend(&["--store", "postgres://tend:s3cret@127.0.0.1:1/tend", "list"]),
        1,
    );
    assert!(
        e.contains("postgres://tend@127.0.0.1:1/tend") && e.contains("refused"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    let e = assert_one_sentence(&env.tend(&["--store", "mysql://db/tend", "list"]), 2);
    assert!(e.contains("not a ledger location"), "{e}");
}

#[test]
fn a_full_disk_for_logs_does_not_stop_the_command() {
    if !is_root() {
        eprintln!("skipped: mounting a tiny tmpfs needs root");
        return;
    }
    let env = TestEnv::new();
    let small = env.dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        // mode=0700: a tmpfs root is 1777 by default, which tend refuses.
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let ledger = env.dir.path().join("ledger.db");
    let out = env
        .cmd()
        .env("TEND_HOME", &small)
        .args([
            "--store",
            ledger.to_str().unwrap(),
            "--json",
            "run",
            "--",
            "sh",
            "-c",
        ])
        .arg("head -c 300000 /dev/zero | tr '\\0' x; echo; echo done")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("done"),
        "the terminal still gets everything"
    );
    let e: serde_json::Value =
        serde_json::from_slice(&out.stdout[out.stdout.len().saturating_sub(4096)..])
            .ok()
            .or_else(|| {
                let s = String::from_utf8_lossy(&out.stdout).into_owned();
                let at = s.rfind("\n{").map(|i| i + 1)?;
                serde_json::from_str(&s[at..]).ok()
            })
            .expect("the final JSON");
    assert_eq!(e["status"], "succeeded");
    let show = env
        .cmd()
        .env("TEND_HOME", &small)
        .args(["--store", ledger.to_str().unwrap(), "--json", "show"])
        .arg(e["id"].as_str().unwrap())
        .output()
        .unwrap();
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let kinds: Vec<&str> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"log-write-failed"), "{kinds:?}");
}

#[test]
fn text_over_its_cap_is_refused_before_anything_is_recorded() {
    let env = TestEnv::new();
    let long = |n: usize| "x".repeat(n);
    let label_value = format!("k={}", long(1025));
    let label_key = format!("{}=v", long(257));
    let mut many = vec!["run".to_string()];
    for i in 0..65 {
        many.extend(["--label".into(), format!("l{i}=v")]);
    }
    many.extend(["--".into(), "true".into()]);
    let name = long(257);
    let key = long(257);
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--name", &name, "--", "true"],
        vec!["run", "--key", &key, "--", "true"],
        vec!["run", "--label", &label_value, "--", "true"],
        vec!["run", "--label", &label_key, "--", "true"],
        many.iter().map(String::as_str).collect(),
        vec!["run", "-d", "--name", &name, "--", "true"],
    ];
    for args in &cases {
        let e = assert_one_sentence(&env.tend(args), 2);
        assert!(e.contains("at most"), "{e}");
    }
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 0);
    // At the cap is fine.
    env.ok(&["run", "--name", &long(256), "--", "true"]);
    let id = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    let reason = long(1025);
    let e = assert_one_sentence(&env.tend(&["kill", "--reason", &reason, &id]), 2);
    assert!(e.contains("reason") && e.contains("at most 1024"), "{e}");
    let e = assert_one_sentence(&env.tend(&["kill", "--reason", "", &id]), 2);
    assert!(e.contains("the reason is empty"), "{e}");
    let progress = long(1025);
    let e = assert_one_sentence(&env.tend(&["heartbeat", "--progress", &progress]), 2);
    assert!(e.contains("progress"), "{e}");
}

#[test]
fn zero_sizes_and_endless_graces_are_refused() {
    let env = TestEnv::new();
    let e = assert_one_sentence(&env.tend(&["run", "--max-memory", "0", "--", "true"]), 2);
    assert!(e.contains("memory limit"), "{e}");
    let out = env
        .cmd()
        .env("TEND_LOG_MAX_SIZE", "0")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    let e = assert_one_sentence(&out, 2);
    assert!(e.contains("TEND_LOG_MAX_SIZE"), "{e}");
    let e = assert_one_sentence(&env.tend(&["run", "--kill-grace", "2h", "--", "true"]), 2);
    assert!(e.contains("at most 1h"), "{e}");
    let out = env
        .cmd()
        .env("TEND_KILL_GRACE", "106751991167d")
        .args(["list"])
        .output()
        .unwrap();
    let e = assert_one_sentence(&out, 2);
    assert!(e.contains("TEND_KILL_GRACE"), "{e}");
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 0);
    env.ok(&["run", "--", "true"]);
    let id = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    let e = assert_one_sentence(&env.tend(&["kill", "--grace", "61m", &id]), 2);
    assert!(e.contains("--grace"), "{e}");
}

#[test]
fn an_invalid_name_glob_is_a_usage_error_not_an_empty_match() {
    let env = TestEnv::new();
    env.detach(&["sleep", "1000"]);
    for args in [
        &["kill", "--name", "["][..],
        &["kill", "--name", "[", "--yes"],
        &["list", "--name", "a[b"],
    ] {
        let e = assert_one_sentence(&env.tend(args), 2);
        assert!(e.contains("not a valid glob"), "{args:?}: {e}");
    }
    // Brackets that close are a set, as in `list --name`.
    let dry = env.tend(&["kill", "--name", "[rs]leep"]);
    assert_eq!(code(&dry), 1, "a dry bulk kill lists and exits 1");
    assert!(String::from_utf8_lossy(&dry.stdout).contains("sleep"));
}

#[test]
fn a_cwd_that_is_a_file_is_not_a_directory() {
    let env = TestEnv::new();
    let file = env.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    for cwd in [file.clone(), file.join("below")] {
        let e = assert_one_sentence(
            &env.tend(&["run", "--cwd", cwd.to_str().unwrap(), "--", "true"]),
            2,
        );
        assert!(e.contains("is not a directory"), "{e}");
    }
}

#[test]
fn waiting_beyond_the_open_file_limit_says_why_and_exits_2() {
    let env = TestEnv::new();
    let ids: Vec<String> = (0..24).map(|_| env.detach(&["sleep", "1000"])).collect();
    let tend = env!("CARGO_BIN_EXE_tend");
    let wait = format!("{tend} wait --timeout 200ms {}", ids.join(" "));
    // A low soft limit under a higher hard one is raised: the wait works
    // (and gives up on its timeout).
    let soft = shell(&env, &format!("ulimit -S -n 16; exec {wait}"));
    assert_eq!(code(&soft), 75, "{}", stderr(&soft));
    // A hard limit too low for the ids: one sentence, exit 2, not 1 (lost).
    let hard = shell(&env, &format!("ulimit -n 16; exec {wait}"));
    let e = assert_one_sentence(&hard, 2);
    assert!(e.contains("open file") && e.contains("ulimit -n"), "{e}");
    for id in &ids {
        assert_eq!(env.status(id), "running", "nothing was marked lost");
    }
}

/// `sh -c script` with this env's tend settings.
fn shell(env: &TestEnv, script: &str) -> std::process::Output {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(script);
    for (k, v) in env.cmd().get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(std::process::Stdio::null()).output().unwrap()
}

// Issue 9: `tend run --bogus -- true` ran `--bogus` as the command and
// recorded a failed execution. An option tend does not know, before `--`,
// is a usage error; clap's own mistakes read like tend's.
#[test]
fn an_unknown_option_before_the_command_is_a_usage_error() {
    let env = TestEnv::new();
    for args in [
        &["run", "--bogus", "--", "true"][..],
        &["run", "-d", "--bogus", "true"],
        &["run", "-Z", "--", "true"],
    ] {
        let e = assert_one_sentence(&env.tend(args), 2);
        assert!(e.starts_with("tend: "), "{e}");
        assert!(e.contains("unexpected argument"), "{args:?}: {e}");
    }
    let e = assert_one_sentence(&env.tend(&["run"]), 2);
    assert!(e.contains("<CMD>"), "{e}");
    let e = assert_one_sentence(&env.tend(&["run", "--timeout", "5x", "--", "true"]), 2);
    assert!(e.contains("is not a duration"), "{e}");
    assert!(
        !env.has_ledger() || env.json(&["list"]).as_array().unwrap().is_empty(),
        "nothing was recorded"
    );
    // The command's own options still reach it, with or without `--`.
    assert_eq!(env.ok(&["run", "--", "sh", "-c", "echo $0", "-x"]), "-x\n");
    assert_eq!(
        env.ok(&["run", "sh", "-c", "echo $0", "--bogus"]),
        "--bogus\n"
    );
    assert_eq!(env.ok(&["run", "-q", "echo", "-n", "--", "x"]), "-- x");
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 3);
    // Help and version still print in full, on stdout.
    assert!(env.ok(&["run", "--help"]).contains("Usage:"));
    assert!(env.ok(&["--version"]).starts_with("tend "));
}

#[test]
fn huge_ages_and_waits_never_wrap_or_panic() {
    let env = TestEnv::new();
    let id = env.detach(&["sleep", "30"]);
    let huge = "18446744073709551615s";
    // Older than anything that exists: nothing matches.
    let out = env.tend(&["kill", "--older-than", huge, "--yes"]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(env.status(&id), "running");
    let listed = env.json(&["list", "--since", huge]);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "everything is newer than that"
    );
    // A wait that long is a wait without a timeout, not a panic.
    let mut wait = env
        .cmd()
        .args(["wait", "--timeout", huge, &id])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(wait.try_wait().unwrap().is_none(), "tend wait ended early");
    env.ok(&["kill", &id]);
    let out = wait.wait_with_output().unwrap();
    assert_eq!(code(&out), 143, "{}", stderr(&out));
}

/// Issue 10: every command's help shows examples, and the options every
/// command takes are grouped apart from its own.
#[test]
fn every_command_has_examples_and_groups_the_global_options() {
    let env = TestEnv::new();
    let top = env.ok(&["--help"]);
    assert!(top.contains("Examples:"), "{top}");
    for cmd in [
        "run",
        "ps",
        "top",
        "list",
        "show",
        "logs",
        "wait",
        "kill",
        "reap",
        "serve",
        "health",
        "heartbeat",
        "doctor",
        "completions",
        "man",
    ] {
        let help = env.ok(&[cmd, "--help"]);
        assert!(
            help.contains("Examples:\n  tend"),
            "tend {cmd} --help: {help}"
        );
        let global = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("{cmd}: {help}"));
        assert!(
            help[global..].contains("--json"),
            "{cmd}: --json is a global option"
        );
        assert!(
            !help[..global].contains("--json "),
            "{cmd}: --json only under Global options"
        );
    }
}

/// Completion scripts for every shell clap knows, and a man page, generate
/// from the CLI's own definition (issue 14); bash's parses.
#[test]
fn completions_and_the_man_page_generate() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = env.ok(&["completions", shell]);
        assert!(
            script.contains("kill") && script.contains("on-duplicate"),
            "{shell}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tend.bash");
    std::fs::write(&file, env.ok(&["completions", "bash"])).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let man = env.ok(&["man"]);
    assert!(
        man.contains(".TH tend 1") && man.contains("tracked executions"),
        "{man}"
    );
    let run = env.ok(&["man", "run"]);
    assert!(
        run.contains(".TH tend-run 1") && run.contains("timeout"),
        "{run}"
    );
    assert_one_sentence(&env.tend(&["man", "bogus"]), 2);
    let e = assert_one_sentence(&env.tend(&["completions", "tcsh"]), 2);
    assert!(e.contains("tcsh"), "{e}");
}
