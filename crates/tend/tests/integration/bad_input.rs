use crate::support::*;

#[test]
fn unknown_and_malformed_ids_are_usage_errors() {
    let env = TestEnv::new();
    env.ok(&["run", "--", "true"]);
    let e = assert_one_sentence(&env.tend(&["show", "zzzzzzzz"]), 2);
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
fn unsupported_stores_say_so() {
    let env = TestEnv::new();
    let e = assert_one_sentence(
        &env.tend(&["--store", "postgres://localhost/tend", "list"]),
        1,
    );
    assert!(e.contains("PostgreSQL"), "{e}");
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
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
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
