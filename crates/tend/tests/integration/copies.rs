//! A copy of a home (a restored backup, a baked image, `cp -a`) is
//! recognised as a copy, takes ids of its own, and never signals the
//! original's processes.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn a_copied_home_never_touches_the_originals_processes() {
    let a = TestEnv::new();
    let b = TestEnv::new();
    if a.sqlite_only() {
        return;
    }
    let before = a.detach(&["sleep", "60"]);
    let st = Command::new("cp")
        .arg("-a")
        .arg(a.home())
        .arg(b.home())
        .status()
        .unwrap();
    assert!(st.success());
    let after = a.detach(&["sleep", "61"]);

    let out = b.tend(&["reap"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("copy of ledger"), "{said}");
    assert!(said.contains("copy of another"), "{said}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("stray"));
    // Said once: the next command in the copy says nothing of it.
    assert!(!stderr(&b.tend(&["list"])).contains("copy"));

    // The original's executions run on, unsignalled.
    std::thread::sleep(Duration::from_millis(300));
    for id in [&before, &after] {
        assert_eq!(a.status(id), "running", "{id}");
        assert!(!a.event_kinds(id).iter().any(|k| k.starts_with("signal")));
    }
    // In the copy, the execution that was live is over, and says why.
    let copied = b.show(&before);
    assert_eq!(copied["status"], "lost");
    assert!(copied["reason"].as_str().unwrap().contains("copied"));
    assert_ne!(a.ledger_id(), b.ledger_id());
    let agent = |env: &TestEnv| std::fs::read_to_string(env.home().join("agent.json")).unwrap();
    assert_ne!(agent(&a), agent(&b));
    assert_eq!(
        a.show(&after)["agent_id"]
            .as_str()
            .map(|s| agent(&a).contains(s)),
        Some(true)
    );
    a.ok(&["kill", &before, &after]);
}

#[test]
fn a_copy_of_the_ledger_file_at_the_same_path_does_not_act_on_the_original() {
    if !is_root() || Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: bind-mounting a copy over the ledger needs root and unshare");
        return;
    }
    let env = TestEnv::new();
    if env.sqlite_only() {
        return;
    }
    let id = env.detach(&["sleep", "60"]);
    let copy = env.dir.path().join("dbcopy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["tend.db", "tend.db-wal", "tend.db-shm"] {
        std::fs::copy(env.home().join(f), copy.join(f)).unwrap();
    }
    // A container that mounts a backup of the ledger where the ledger was.
    let script = format!(
        "for f in tend.db tend.db-wal tend.db-shm; do mount --bind {c}/$f {h}/$f || exit 9; done; exec {t} kill --grace 1s {id}",
        c = copy.display(),
        h = env.home().display(),
        t = env!("CARGO_BIN_EXE_tend"),
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("TEND_HOME", env.home())
        .env("TEND_STORE", env.store())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .output()
        .unwrap();
    if code(&out) == 9 {
        eprintln!(
            "skipped: this machine refuses bind mounts: {}",
            stderr(&out)
        );
        env.ok(&["kill", &id]);
        return;
    }
    assert!(stderr(&out).contains("another copy"), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.status(&id), "running", "the original was not touched");
    assert!(!env.event_kinds(&id).iter().any(|k| k.starts_with("signal")));
    env.ok(&["kill", &id]);
}
