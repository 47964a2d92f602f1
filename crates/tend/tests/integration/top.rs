//! `tend top` on a real terminal: tmux on a private socket, driven with
//! `send-keys` and read back with `capture-pane`. The server is ended by
//! its socket and every process of the pane by PID, whatever the outcome.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::support::{assert_one_sentence, eventually, TestEnv};

/// The prompt of the pane's shell, to see it back after `q`.
const PROMPT: &str = "top-test$";

/// A detached tmux server of our own with one 120x40 pane running `sh`.
struct Tmux {
    socket: String,
    /// The pane's shell: its PID, and its children's, are ended on drop.
    shell: u32,
    /// The server's socket file, which `kill-server` leaves behind.
    path: String,
}

impl Tmux {
    /// `None` when tmux is missing (scripts/test installs it).
    fn start(env: &TestEnv) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let socket = format!("tend-test-{}-{n}", std::process::id());
        let home = env.home();
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "120", "-y", "40", "env"])
            .arg(format!("TEND_HOME={}", home.display()))
            .arg(format!("TEND_STORE={}", env.store()))
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                env.dir.path().join("config").display()
            ))
            .args(["NO_COLOR=1", "TERM=xterm-256color"])
            .arg(format!("PS1={PROMPT} "))
            .args(["sh"])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        let mut tmux = Tmux {
            socket,
            shell: 0,
            path: String::new(),
        };
        let out = tmux.run(&["display-message", "-p", "#{pane_pid} #{socket_path}"]);
        let out = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (pid, path) = out.split_once(' ').expect("a pane pid and a socket path");
        tmux.shell = pid.parse().expect("a pane pid");
        tmux.path = path.to_string();
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Sends keys (tmux key names or literal text).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "0"]).stdout).into_owned()
    }

    /// Waits until the pane shows what `cond` looks for; fails with it.
    fn shows(&self, what: &str, cond: impl Fn(&str) -> bool) {
        let ok = eventually(Duration::from_secs(10), || cond(&self.pane()));
        assert!(ok, "the pane never showed {what}:\n{}", self.pane());
    }

    /// The PIDs of the pane's shell's children (tend top while it runs).
    fn children(&self) -> Vec<u32> {
        let path = format!("/proc/{0}/task/{0}/children", self.shell);
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Pidfds first: once kill-server has ended them, their pids may be
        // reused by another test's processes, which must never be signalled.
        use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
        let fds: Vec<_> = self
            .children()
            .into_iter()
            .chain([self.shell])
            .filter_map(|p| Pid::from_raw(p as i32))
            .filter_map(|p| pidfd_open(p, PidfdFlags::empty()).ok())
            .collect();
        let _ = self.run(&["kill-server"]);
        for fd in &fds {
            let _ = pidfd_send_signal(fd, Signal::KILL);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Voluntary context switches of every thread of `pid` so far: each
/// wake-up from a blocking wait is one.
fn wake_ups(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process is there");
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            let line = s
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// The row of the table that names `id`.
fn row_of<'a>(pane: &'a str, id: &str) -> Option<&'a str> {
    pane.lines().find(|l| l.contains(id))
}

/// A pane with `tend top` running in it, once it has drawn.
fn top_in_tmux(env: &TestEnv) -> Option<Tmux> {
    top_in_tmux_with(env, "")
}

/// The same, with `vars` (`K=V `…) before the command.
fn top_in_tmux_with(env: &TestEnv, vars: &str) -> Option<Tmux> {
    env.ok(&["ps"]); // the home exists before top subscribes to it
    let Some(tmux) = Tmux::start(env) else {
        eprintln!("skipped: tmux is not installed (scripts/test installs it)");
        return None;
    };
    tmux.shows("the prompt", |p| p.contains(PROMPT));
    tmux.keys(&["-l", &format!("{vars}{} top", env!("CARGO_BIN_EXE_tend"))]);
    tmux.keys(&["Enter"]);
    if vars.is_empty() {
        tmux.shows("tend top's title", |p| p.contains("tend top: "));
    }
    Some(tmux)
}

/// The shell's prompt is the last line again, and tend top is gone.
fn assert_shell_back(tmux: &Tmux) {
    tmux.shows("the shell's prompt back", |p| {
        let last = p.lines().rev().find(|l| !l.trim().is_empty());
        last.is_some_and(|l| l.trim() == PROMPT)
    });
    assert!(
        eventually(Duration::from_secs(5), || tmux.children().is_empty()),
        "tend top is still running"
    );
}

#[test]
fn top_shows_an_execution_kills_it_on_k_y_and_gives_the_shell_back_on_q() {
    let env = TestEnv::new();
    let Some(tmux) = top_in_tmux(&env) else {
        return;
    };
    tmux.shows("nothing live", |p| p.contains("tend top: 0 live"));
    // With nothing live there is no deadline: it sleeps until told.
    let top = *tmux.children().first().expect("tend top runs in the pane");
    let before = wake_ups(top);
    std::thread::sleep(Duration::from_secs(2));
    let idle = wake_ups(top) - before;
    assert!(idle <= 2, "an idle tend top woke {idle} times in 2s");

    let id = env.detach(&["sh", "-c", "echo top-says-hi; exec sleep 300"]);
    tmux.shows("the new execution, running and selected", |p| {
        row_of(p, &id).is_some_and(|r| r.contains("running") && r.starts_with('>'))
    });
    // While something runs, only the usage columns move: once a second.
    let before = wake_ups(top);
    std::thread::sleep(Duration::from_secs(3));
    let busy = wake_ups(top) - before;
    eprintln!("tend top woke {idle} times in 2s idle, {busy} in 3s with one running");
    // On PostgreSQL each refresh's reads are round trips to the server, and
    // every answer is a wake-up of its own (plus the listener's self-check).
    let bound = if env.is_postgres() { 12 } else { 6 };
    assert!(
        busy <= bound,
        "tend top woke {busy} times in 3s with one running"
    );

    tmux.keys(&["l"]);
    tmux.shows("its output", |p| p.contains("top-says-hi"));
    tmux.keys(&["Escape"]);
    tmux.shows("the table again", |p| p.contains("HEARTBEAT"));

    tmux.keys(&["K"]);
    tmux.shows("the kill question with the grace", |p| {
        p.contains(&format!("kill {id}")) && p.contains("grace of 5") && p.contains("[y/N]")
    });
    tmux.keys(&["y"]);
    assert!(
        eventually(Duration::from_secs(10), || env.status(&id) == "killed"),
        "the ledger says {}",
        env.status(&id)
    );
    tmux.shows("it killed", |p| {
        row_of(p, &id).is_some_and(|r| r.contains("killed"))
    });
    tmux.keys(&["Enter"]);
    tmux.shows("its events", |p| {
        p.contains("EVENTS") && p.contains("kill-requested") && p.contains("killed from tend top")
    });

    tmux.keys(&["q"]);
    assert_shell_back(&tmux);
}

/// Ctrl-C arrives as a key in raw mode; it quits and the terminal is
/// cooked again (canonical input and echo back on).
#[test]
fn ctrl_c_quits_top_and_restores_the_terminal() {
    let env = TestEnv::new();
    let Some(tmux) = top_in_tmux(&env) else {
        return;
    };
    tmux.keys(&["C-c"]);
    assert_shell_back(&tmux);
    assert_cooked(&tmux);
}

/// SIGTERM (and SIGHUP, the same handler) ends it like `q`: through the
/// loop, so the terminal is given back.
#[test]
fn sigterm_ends_top_and_restores_the_terminal() {
    let env = TestEnv::new();
    let Some(tmux) = top_in_tmux(&env) else {
        return;
    };
    let top = *tmux.children().first().expect("tend top runs in the pane");
    let fd = tend_proc::Pidfd::open(top as i32).expect("tend top is there");
    fd.signal(tend_proc::Sig::Term).expect("SIGTERM is sent");
    assert_shell_back(&tmux);
    assert_cooked(&tmux);
}

/// A panic inside the loop (a failpoint) still gives the terminal back:
/// ratatui's hook restores it before the message is printed.
#[test]
fn a_panic_in_top_restores_the_terminal_first() {
    let env = TestEnv::new();
    let Some(tmux) = top_in_tmux_with(&env, "TEND_FAILPOINT=top-panic-after-draw ") else {
        return;
    };
    tmux.shows("the panic's message", |p| {
        p.contains("top-panic-after-draw")
    });
    assert_shell_back(&tmux);
    assert_cooked(&tmux);
}

/// The pane's terminal is cooked: canonical input and echo are on.
fn assert_cooked(tmux: &Tmux) {
    tmux.keys(&[
        "-l",
        "stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo -e -icanon -e -echo",
    ]);
    tmux.keys(&["Enter"]);
    tmux.shows("a cooked terminal", |p| {
        let lines: Vec<&str> = p.lines().map(str::trim).collect();
        lines.contains(&"icanon") && lines.contains(&"echo") && !lines.contains(&"-icanon")
    });
}

#[test]
fn top_without_a_terminal_refuses_in_one_sentence() {
    let env = TestEnv::new();
    let out = env.tend(&["top"]);
    let err = assert_one_sentence(&out, 2);
    assert!(err.contains("terminal"), "{err}");
    let out = env.tend(&["--json", "top"]);
    let err = assert_one_sentence(&out, 2);
    assert!(err.contains("tend --json ps"), "{err}");
}
