//! The ledger under pressure: a lock held past the busy timeout, a full
//! disk, a read-only home; private files; logs durable before the outcome.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// A tmpfs (or a read-only bind) mounted over a path for one test,
/// unmounted on drop. Field order matters in [`MountedHome`].
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) {
        assert!(Mount::try_run(args), "mount {args:?} failed");
    }

    fn try_run(args: &[&str]) -> bool {
        Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `None` where this machine lets nobody mount (a container without
    /// the capability): the caller skips, saying so.
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Mount::try_run(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            at.to_str().unwrap(),
        ]);
        ok.then(|| Mount(at.to_path_buf()))
    }

    fn read_only(at: &Path) -> Mount {
        let p = at.to_str().unwrap();
        Mount::run(&["--bind", p, p]);
        Mount::run(&["-o", "remount,bind,ro", p]);
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A test home on a small tmpfs; the env (its processes, its reap) goes
/// before the mount does.
struct MountedHome {
    env: TestEnv,
    _mount: Mount,
}

fn mounted_home(size: &str) -> Option<MountedHome> {
    if !is_root() {
        eprintln!("skipped: mounting a small file system needs root");
        return None;
    }
    let env = TestEnv::new();
    let Some(mount) = Mount::tmpfs(&env.home(), size) else {
        eprintln!("skipped: this machine refuses to mount a tmpfs");
        return None;
    };
    Some(MountedHome { env, _mount: mount })
}

/// Fills the file system under `dir` and returns the file that did it.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.write_all(&[0u8; 512]);
    while f.write_all(&[0u8]).is_ok() {}
    p
}

#[test]
fn a_lock_held_past_the_busy_timeout_delays_the_outcome_but_never_loses_it() {
    let env = TestEnv::new();
    if env.sqlite_only() {
        return;
    }
    env.ok(&["list"]);
    let id = env.detach_with_env(
        ("TEND_SQLITE_BUSY_TIMEOUT", "200"),
        &["sh", "-c", "sleep 1; exit 3"],
    );
    let conn = rusqlite::Connection::open(env.ledger_path()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Hold the write lock for ten busy timeouts past the command's exit.
    std::thread::sleep(Duration::from_secs(3));
    conn.execute_batch("COMMIT").unwrap();
    let out = env.tend(&["wait", &id]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let e = env.show(&id);
    assert_eq!(e["status"], "failed");
    assert_eq!(e["exit_code"], 3);
}

/// Issue 9: a ledger busy past its timeout while the command runs ends
/// nothing. The events of the run (here the timeout's SIGTERM) wait in the
/// supervisor, in order, and are recorded before the outcome; what could
/// not be recorded yet is said on stderr in the foreground and in
/// `<id>.supervisor.log` when detached.
#[test]
fn events_written_while_the_ledger_is_locked_wait_and_are_recorded() {
    let env = TestEnv::new();
    if env.sqlite_only() {
        return;
    }
    env.ok(&["list"]);
    let busy = ("TEND_SQLITE_BUSY_TIMEOUT", "200");
    let run = ["run", "--timeout", "1s", "--", "sleep", "30"];
    let out = env
        .cmd()
        .env(busy.0, busy.1)
        .args(["run", "-d"])
        .args(&run[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let detached = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut fg = env.cmd();
    fg.env(busy.0, busy.1).args(run);
    let fg = std::thread::spawn(move || finish(fg, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(300));
    let conn = rusqlite::Connection::open(env.ledger_path()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    conn.execute_batch("COMMIT").unwrap();
    let fg = fg.join().unwrap();
    assert_eq!(code(&fg), 124, "{}", stderr(&fg));
    assert!(
        stderr(&fg).contains("cannot record the signal-sent event of"),
        "{}",
        stderr(&fg)
    );
    assert_eq!(code(&env.tend(&["wait", &detached])), 124);
    let list = env.json(&["list"]);
    for e in list.as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        assert_eq!(e["status"], "timed_out", "{e}");
        let sent: Vec<_> = env
            .events(id)
            .into_iter()
            .filter(|v| v["kind"] == "signal-sent")
            .collect();
        assert!(
            sent.iter()
                .any(|v| v["details"]["signal"] == "SIGTERM"
                    && v["details"]["happened_at"].is_string()),
            "the SIGTERM of {id} is in its audit: {sent:?}"
        );
    }
    let note = std::fs::read_to_string(env.home().join(format!("logs/{detached}.supervisor.log")))
        .unwrap_or_default();
    assert!(
        note.contains("cannot record the signal-sent event"),
        "{note:?}"
    );
    assert!(note.contains("answers again"), "{note:?}");
}

#[test]
fn a_full_disk_keeps_reads_working_and_the_outcome_is_committed_when_space_returns() {
    let Some(m) = mounted_home("4M") else { return };
    let env = &m.env;
    if env.sqlite_only() {
        return;
    }
    let id = env.detach(&["sh", "-c", "sleep 1; echo done"]);
    let filler = fill(&env.home());
    std::thread::sleep(Duration::from_secs(2));
    for args in [&["list"][..], &["ps"], &["show", &id]] {
        let out = env.tend(args);
        assert_eq!(
            code(&out),
            0,
            "tend {args:?} on a full disk: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        env.status(&id),
        "running",
        "the outcome waits, it is not lost"
    );
    std::fs::remove_file(filler).unwrap();
    let out = env.tend(&["wait", "--timeout", "30s", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(env.status(&id), "succeeded");
}

#[test]
fn a_read_only_home_can_still_be_read() {
    let Some(m) = mounted_home("16M") else { return };
    let env = &m.env;
    env.ok(&["run", "--", "echo", "hello"]);
    let id = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    let ro = Mount::read_only(&env.home());
    for args in [&["list"][..], &["ps"], &["show", &id], &["logs", &id]] {
        let out = env.tend(args);
        assert_eq!(
            code(&out),
            0,
            "tend {args:?} on a read-only home: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("read-only"),
            "it says it did not reconcile"
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&env.tend(&["logs", &id]).stdout),
        "hello\n"
    );
    assert_one_sentence(&env.tend(&["run", "--", "true"]), 1);
    drop(ro);
}

#[test]
fn the_ledger_and_its_wal_are_private_and_the_home_is_0700() {
    let env = TestEnv::new();
    if env.sqlite_only() {
        return;
    }
    // Under the usual umask 022, which would give 0644 files.
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; exec {} run -- true",
            env!("CARGO_BIN_EXE_tend")
        ))
        .env("TEND_HOME", env.home())
        .env("TEND_STORE", env.store())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .status()
        .unwrap();
    assert!(st.success());
    let mode = |p: PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(env.home()), 0o700);
    for f in ["tend.db", "tend.db-wal", "tend.db-shm"] {
        assert_eq!(mode(env.home().join(f)), 0o600, "{f}");
    }
}

#[test]
fn logs_are_synced_to_disk_before_the_outcome_is_committed() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed (scripts/test installs it)");
        return;
    }
    let env = TestEnv::new();
    env.ok(&["list"]);
    let trace = env.dir.path().join("trace");
    // On PostgreSQL a commit is the COMMIT the supervisor sends the server.
    let calls = match env.is_postgres() {
        true => "trace=fsync,fdatasync,write,sendto,writev",
        false => "trace=fsync,fdatasync",
    };
    let st = Command::new("strace")
        .args(["-f", "-qq", "-yy", "-s", "512", "-e", calls, "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_tend"))
        .args(["run", "--", "sh", "-c", "echo out; echo err >&2"])
        .env("TEND_HOME", env.home())
        .env("TEND_STORE", env.store())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let text = read(&trace);
    let at = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no sync of {needle} in:\n{text}"))
    };
    let out = at(".out>");
    let err = at(".err>");
    let logs_dir = at("/logs>");
    // The last sync of the WAL is the terminal commit.
    let lines: Vec<&str> = text.lines().collect();
    let commit = |l: &&str| match env.is_postgres() {
        true => l.contains("TCP") && l.contains("COMMIT"),
        false => l.contains("tend.db-wal>"),
    };
    let last_commit = lines
        .iter()
        .rposition(commit)
        .unwrap_or_else(|| panic!("no commit in:\n{text}"));
    assert!(
        out < last_commit && err < last_commit && logs_dir < last_commit,
        "{text}"
    );
}

#[test]
fn a_write_that_waits_out_the_busy_timeout_says_so_in_one_sentence() {
    let env = TestEnv::new();
    if env.sqlite_only() {
        return;
    }
    env.ok(&["list"]);
    let id = env.detach(&["sleep", "30"]);
    let conn = rusqlite::Connection::open(env.ledger_path()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let start = std::time::Instant::now();
    let out = env
        .cmd()
        .env("TEND_SQLITE_BUSY_TIMEOUT", "1200")
        .args(["kill", &id])
        .output()
        .unwrap();
    let waited = start.elapsed();
    conn.execute_batch("COMMIT").unwrap();
    let err = assert_one_sentence(&out, 1);
    assert!(err.contains("the ledger is busy"), "{err}");
    assert!(
        waited >= Duration::from_millis(1100),
        "gave up early: {waited:?}"
    );
    env.ok(&["kill", &id]);
}
