//! Where tend finds its home, its ledger and its settings (issue 10).

use crate::support::*;

/// `tend` run from `dir` with `TEND_HOME` (and `HOME`) as given.
fn tend_in(
    env: &TestEnv,
    dir: &std::path::Path,
    home: &str,
    args: &[&str],
) -> std::process::Output {
    env.cmd()
        .current_dir(dir)
        .env("HOME", env.dir.path())
        .env("TEND_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_relative_or_tilde_home_is_one_absolute_home() {
    let env = TestEnv::new();
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    // A relative home: a detached run (whose supervisor runs in /) and
    // its command use the same ledger as the tend that started them.
    let out = tend_in(&env, &work, "rel-home", &["run", "-d", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = tend_in(&env, &work, "rel-home", &["wait", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(env.is_postgres() || work.join("rel-home/tend.db").is_file());
    // `~` means HOME, in TEND_HOME and in --cwd.
    let out = tend_in(
        &env,
        &work,
        "~/tilde-home",
        &["run", "--cwd=~/work/sub", "--", "pwd"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sub = std::fs::canonicalize(work.join("sub")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sub.to_str().unwrap()
    );
    assert!(env.is_postgres() || env.dir.path().join("tilde-home/tend.db").is_file());
    assert!(!work.join("~").exists(), "no folder named ~ was made");
}

#[test]
fn a_bad_configuration_names_the_file_and_the_key() {
    let env = TestEnv::new();
    let file = env.dir.path().join("tend.toml");
    let path = file.to_str().unwrap();
    let with_config = |text: Option<&str>| {
        if let Some(t) = text {
            std::fs::write(&file, t).unwrap();
        }
        let out = env
            .cmd()
            .env("TEND_CONFIG", &file)
            .args(["list"])
            .output()
            .unwrap();
        assert_one_sentence(&out, 2)
    };
    let e = with_config(None);
    assert!(
        e.contains(path) && e.contains("No such file"),
        "a missing TEND_CONFIG is an error: {e}"
    );
    let e = with_config(Some("kill_grace = \"forever\"\n"));
    assert!(
        e.contains("'kill_grace'") && e.contains(path) && !e.contains("TEND_KILL_GRACE"),
        "{e}"
    );
    let e = with_config(Some("max_conections = 3\n"));
    assert!(
        e.contains("unknown key 'max_conections'") && e.contains("max_connections"),
        "{e}"
    );
    let e = with_config(Some("kill_grace = \n"));
    assert!(e.contains(path) && e.contains("not valid TOML"), "{e}");
    let e = with_config(Some("max_connections = \"many\"\n"));
    assert!(
        e.contains("'max_connections'") && e.contains("whole number"),
        "{e}"
    );
    std::fs::write(&file, "kill_grace = \"2s\"\nmax_connections = 3\n").unwrap();
    let out = env
        .cmd()
        .env("TEND_CONFIG", &file)
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(env.json(&["list"])[0]["kill_grace_ms"], 2000);
}

/// `tend doctor` only looks: the per-ledger cgroup folder its probe made is
/// gone afterwards (issue 10).
#[test]
fn doctor_leaves_nothing_behind() {
    let env = TestEnv::new();
    let out = env.ok(&["doctor"]);
    let Some(line) = out
        .lines()
        .find(|l| l.contains("tier cgroup") && l.contains("cgroup v2 at "))
    else {
        eprintln!("skipped: no cgroup tier here: {out}");
        return;
    };
    let path = line.split("cgroup v2 at ").nth(1).unwrap().trim();
    assert!(
        !std::path::Path::new(path).exists(),
        "doctor left {path} behind"
    );
}

/// `tend doctor` checks what the stored jobs need (issue 14): a program it
/// can find and a working directory that exists.
#[test]
fn doctor_checks_what_each_job_needs() {
    let env = TestEnv::new();
    env.ok(&["job", "add", "fine", "--", "true"]);
    env.ok(&["job", "add", "typo", "--", "ture"]);
    let gone = env.dir.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    env.ok(&[
        "job",
        "add",
        "moved",
        "--cwd",
        gone.to_str().unwrap(),
        "--",
        "true",
    ]);
    std::fs::remove_dir(&gone).unwrap();
    let out = env.ok(&["doctor"]);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!("job {name} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("fine").starts_with("ok"), "{out}");
    assert!(
        line("typo").starts_with("warn") && line("typo").contains("ture"),
        "{out}"
    );
    assert!(
        line("moved").starts_with("warn") && line("moved").contains("does not exist"),
        "{out}"
    );
}

/// Fresh-eyes fixes (issue 10): a dry bulk kill with --json is an array
/// (empty when nothing matches), `~` in --store means HOME, and a shared
/// folder like /tmp is refused as a home without a chmod hint.
#[test]
fn json_dry_bulk_kill_tilde_store_and_shared_homes() {
    let env = TestEnv::new();
    let none = env.tend(&["--json", "kill", "--all"]);
    assert_eq!(code(&none), 0);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&none.stdout).unwrap(),
        serde_json::json!([])
    );
    let id = env.detach(&["sleep", "600"]);
    let dry = env.tend(&["--json", "kill", "--all"]);
    assert_eq!(code(&dry), 1, "nothing killed without --yes");
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str(), "{v}");
    env.ok(&["kill", &id]);

    let out = env
        .cmd()
        .env("HOME", env.dir.path())
        .args(["--store=~/tilde.db", "run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(env.dir.path().join("tilde.db").is_file());

    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = env
        .cmd()
        .env("TEND_HOME", &shared)
        .args(["ps"])
        .output()
        .unwrap();
    let e = assert_one_sentence(&out, 1);
    assert!(
        e.contains("every user shares") && !e.contains("chmod"),
        "{e}"
    );
}
