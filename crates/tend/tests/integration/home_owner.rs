//! A home is its owner's: a home or token file another user made or can
//! change is refused; the home's small files are read only if they are
//! small regular files; health says when the home cannot be written; a
//! foreground run hands no secret to its command; an unusable busy timeout
//! is a usage error.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;

fn tend_in(env: &TestEnv, args: &[&str]) -> Output {
    let mut cmd = env.cmd();
    cmd.args(args);
    finish(cmd, Duration::from_secs(20))
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_nobody(p: &Path) {
    let st = Command::new("chown").arg("nobody").arg(p).status().unwrap();
    assert!(st.success(), "chown nobody {}", p.display());
}

/// A home as another user would leave it in /tmp for root to find.
fn hostile_home(env: &TestEnv) -> PathBuf {
    let home = env.home();
    std::fs::create_dir(&home).unwrap();
    chmod(&home, 0o777);
    let token = home.join("token");
    std::fs::write(&token, "a".repeat(32)).unwrap();
    chmod(&token, 0o644);
    chown_nobody(&token);
    chown_nobody(&home);
    home
}

#[test]
fn a_home_another_user_made_is_refused() {
    if !is_root() {
        eprintln!("skipped: making a home owned by nobody needs root");
        return;
    }
    let env = TestEnv::new();
    let home = hostile_home(&env);
    let marker = env.dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["run", "--", "sh", "-c", &touch],
        vec!["run", "-d", "--", "sh", "-c", &touch],
        vec!["ps"],
    ] {
        let out = tend_in(&env, &args);
        let err = assert_one_sentence(&out, 1);
        assert!(
            err.contains(&home.display().to_string())
                && err.contains("belongs to user")
                && err.contains("TEND_HOME"),
            "{args:?}: {err}"
        );
    }
    // Even one owned by nobody but closed to others is not ours.
    chmod(&home, 0o700);
    let err = assert_one_sentence(&tend_in(&env, &["ps"]), 1);
    assert!(err.contains("belongs to user"), "{err}");
    assert!(!marker.exists(), "a command ran in another user's home");
    assert!(!home.join("tend.db").exists(), "a ledger was made there");
}

#[test]
fn a_home_others_can_change_is_refused_until_it_is_chmod_700() {
    let env = TestEnv::new();
    env.ok(&["ps"]);
    let home = env.home();
    for (mode, who) in [(0o777, "every user"), (0o770, "its group")] {
        chmod(&home, mode);
        for args in [vec!["ps"], vec!["run", "--", "true"], vec!["health"]] {
            let out = tend_in(&env, &args);
            let want = if args[0] == "health" { 2 } else { 1 };
            let text = if want == 2 {
                String::from_utf8_lossy(&out.stdout).into_owned()
            } else {
                assert_one_sentence(&out, want)
            };
            assert_eq!(code(&out), want, "{args:?}: {text}");
            assert!(
                text.contains(who) && text.contains(&format!("chmod 700 {}", home.display())),
                "{args:?}: {text}"
            );
        }
    }
    chmod(&home, 0o750);
    env.ok(&["run", "--", "true"]);
}

#[test]
fn the_daemon_refuses_a_token_file_that_is_not_private() {
    let env = TestEnv::new();
    env.ok(&["ps"]);
    let token = env.home().join("token");
    std::fs::write(&token, "b".repeat(32)).unwrap();
    chmod(&token, 0o644);
    let serve = ["serve", "--listen", "127.0.0.1:0"];
    let err = assert_one_sentence(&tend_in(&env, &serve), 1);
    assert!(
        err.contains(&format!("chmod 600 {}", token.display())),
        "{err}"
    );
    assert!(!env.home().join("daemon.json").exists());
    if is_root() {
        chmod(&token, 0o600);
        chown_nobody(&token);
        let err = assert_one_sentence(&tend_in(&env, &serve), 1);
        assert!(
            err.contains("belongs to user") && err.contains("delete it"),
            "{err}"
        );
    } else {
        eprintln!("skipped (the token owned by nobody): chown needs root");
    }
    // Nor is a token read through a symbolic link.
    std::fs::remove_file(&token).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &token).unwrap();
    let err = assert_one_sentence(&tend_in(&env, &serve), 1);
    assert!(err.contains("not a regular file"), "{err}");
}

/// Puts something other than a small regular file at `<home>/<name>`.
fn plant(env: &TestEnv, name: &str, what: &str) -> PathBuf {
    let p = env.home().join(name);
    let _ = std::fs::remove_file(&p);
    match what {
        "zero" => std::os::unix::fs::symlink("/dev/zero", &p).unwrap(),
        "fifo" => {
            let st = Command::new("mkfifo").arg(&p).status().unwrap();
            assert!(st.success(), "mkfifo");
        }
        "big" => std::fs::write(&p, vec![b' '; 1 << 20]).unwrap(),
        _ => unreachable!(),
    }
    p
}

#[test]
fn health_reads_daemon_json_only_if_it_is_a_small_regular_file() {
    let env = TestEnv::new();
    env.ok(&["ps"]);
    for what in ["zero", "fifo", "big"] {
        let p = plant(&env, "daemon.json", what);
        let out = tend_in(&env, &["health"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(code(&out), 1, "{what}: {text}{}", stderr(&out));
        assert!(
            text.contains(&p.display().to_string()) && text.contains("remove it"),
            "{what}: {text}"
        );
    }
}

#[test]
fn run_reads_agent_json_only_if_it_is_a_small_regular_file() {
    let env = TestEnv::new();
    env.ok(&["ps"]);
    let marker = env.dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for what in ["zero", "fifo", "big"] {
        let p = plant(&env, "agent.json", what);
        for args in [
            vec!["run", "--", "sh", "-c", &touch],
            vec!["run", "-d", "--", "sh", "-c", &touch],
        ] {
            let err = assert_one_sentence(&tend_in(&env, &args), 1);
            assert!(
                err.contains(&p.display().to_string()) && err.contains("remove it"),
                "{what} {args:?}: {err}"
            );
        }
    }
    assert!(!marker.exists(), "a command ran");
}

/// A read-only bind mount over a path, unmounted (lazily) on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(at: &Path) -> ReadOnly {
        let p = at.to_str().unwrap();
        for args in [vec!["--bind", p, p], vec!["-o", "remount,bind,ro", p]] {
            let st = Command::new("mount").args(&args).status().unwrap();
            if !st.success() {
                let _ = Command::new("umount").arg("-l").arg(at).status();
                panic!("mount {args:?} failed");
            }
        }
        ReadOnly(at.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn health_is_unhealthy_when_the_home_cannot_be_written() {
    if !is_root() {
        eprintln!("skipped: a read-only bind mount needs root");
        return;
    }
    let env = TestEnv::new();
    env.ok(&["ps"]);
    let home = env.home();
    let out = {
        let _ro = ReadOnly::mount(&home);
        tend_in(&env, &["health"])
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 2, "{text}{}", stderr(&out));
    let line = text
        .lines()
        .find(|l| l.contains(" home "))
        .unwrap_or_else(|| panic!("no home check: {text}"));
    assert!(
        line.starts_with("warn")
            && line.contains(&home.display().to_string())
            && line.contains("cannot be written"),
        "{text}"
    );
    let out = tend_in(&env, &["health"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn health_is_degraded_when_the_homes_file_system_is_nearly_full() {
    if !is_root() {
        eprintln!("skipped: mounting a small file system needs root");
        return;
    }
    let env = TestEnv::new();
    let home = env.home();
    std::fs::create_dir(&home).unwrap();
    let p = home.to_str().unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4M,mode=0700", "tmpfs", p])
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let out = {
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg("-l").arg(self.0).status();
            }
        }
        let _m = Unmount(&home);
        tend_in(&env, &["health"])
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "{text}{}", stderr(&out));
    assert!(text.contains("MiB free on its file system"), "{text}");
}

#[test]
fn a_foreground_run_hands_its_command_no_token() {
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    let env = TestEnv::new();
    let mut child = env
        .cmd()
        .env("TEND_TOKEN", TOKEN)
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo \"${TEND_TOKEN-unset}\"; read x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The command's supervisor is this very process: its environment, which
    // the command can read in /proc, has no token either.
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let st = child.wait().unwrap();
    assert_eq!(line, "unset\n");
    assert!(
        !environ.windows(11).any(|w| w == b"TEND_TOKEN="),
        "the foreground supervisor kept TEND_TOKEN"
    );
    assert!(st.success(), "{st}");
}

#[test]
fn an_unusable_busy_timeout_is_a_usage_error() {
    let env = TestEnv::new();
    for bad in ["abc", "-1", "1.5", "99999999999"] {
        let out = env
            .cmd()
            .env("TEND_SQLITE_BUSY_TIMEOUT", bad)
            .arg("ps")
            .output()
            .unwrap();
        let err = assert_one_sentence(&out, 2);
        assert!(err.contains("TEND_SQLITE_BUSY_TIMEOUT"), "{bad}: {err}");
    }
    let out = env
        .cmd()
        .env("TEND_SQLITE_BUSY_TIMEOUT", "200")
        .arg("ps")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
