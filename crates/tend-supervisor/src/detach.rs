//! Background supervisors: how `tend run -d` and the daemon start one, and
//! what the started one does first.
//!
//! The launcher spawns `tend __supervise` in a new session, writes the run
//! description to its stdin and reads one JSON answer from its stdout. The
//! supervisor forks once more so that it is nobody's child (a daemon that
//! launches thousands has nothing to reap), records the execution, starts
//! the command, answers, and lets go of the pipe.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tend_ledger::{Ledger, Store};
use tend_model::ExecutionId;

use crate::{Error, Home, Mode, Report, RunResult, RunSpec};

/// What the launcher hands the background supervisor on stdin.
#[derive(Serialize, Deserialize)]
struct Envelope {
    spec: RunSpec,
    home: PathBuf,
    /// The ledger, as [`Store`]'s display form.
    store: String,
    /// Adopt this pending attempt (whose supervisor is gone) instead of
    /// recording a new execution.
    #[serde(default)]
    adopt: Option<String>,
}

/// The background supervisor's answer, once the start is decided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// The command runs as this execution.
    Started {
        /// Its id.
        id: String,
    },
    /// The key already stands for this execution; nothing was started.
    Existing {
        /// Its id.
        id: String,
    },
    /// The command could not be started; the execution is recorded `failed`.
    FailedToStart {
        /// Its id.
        id: String,
    },
    /// Nothing was recorded, for this reason.
    Error {
        /// One sentence.
        message: String,
    },
}

/// The argument [`launch`] runs its executable with. Whatever program
/// launches must answer it by calling [`supervise_from_stdin`] and exiting
/// with its code: `tend` has a hidden `tend __supervise` command for it, and
/// a Rust program can be its own supervisor the same way (see the crate's
/// `examples/`).
pub const SUPERVISE_ARG: &str = "__supervise";

/// Starts a background supervisor for `spec` by running `exe`
/// [`SUPERVISE_ARG`] (the `tend` executable, or any program that answers
/// that argument), and returns its answer. Blocks only until the start is
/// decided.
pub fn launch(exe: &Path, home: &Home, store: &Store, spec: &RunSpec) -> Result<Answer, Error> {
    start(
        exe,
        &Envelope {
            spec: spec.clone(),
            home: home.root().to_path_buf(),
            store: store.reopen_form(),
            adopt: None,
        },
    )
}

/// Starts a background supervisor that adopts the pending attempt `id`
/// (a retry whose supervisor is gone) and runs it when it is due, with the
/// run description stored with it. The answer is `Started` once it holds
/// the attempt, `Existing` when another supervisor adopted it first.
pub fn adopt<L: Ledger + ?Sized>(
    ledger: &L,
    exe: &Path,
    home: &Home,
    store: &Store,
    id: &ExecutionId,
) -> Result<Answer, Error> {
    let Some(text) = ledger.run_spec(id)? else {
        return Ok(Answer::Error {
            message: format!("execution {id} has no stored run description to start it from"),
        });
    };
    let spec: RunSpec = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Answer::Error {
                message: format!("execution {id}'s stored run description is unreadable: {e}"),
            })
        }
    };
    start(
        exe,
        &Envelope {
            spec,
            home: home.root().to_path_buf(),
            store: store.reopen_form(),
            adopt: Some(id.to_string()),
        },
    )
}

fn start(exe: &Path, envelope: &Envelope) -> Result<Answer, Error> {
    let mut cmd = Command::new(exe);
    for secret in crate::SECRET_VARS {
        cmd.env_remove(secret);
    }
    // The store comes on stdin (with its password, if it has one): a
    // command could read its supervisor's environment.
    cmd.env_remove("TEND_STORE");
    cmd.arg(SUPERVISE_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    tend_proc::spawn::detach_session(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(Error::io("starting a background supervisor"))?;
    {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        stdin
            .write_all(&serde_json::to_vec(envelope).expect("a run spec serialises"))
            .map_err(Error::io("handing the run to its supervisor"))?;
    }
    let text = read_answer(child.stdout.take().expect("stdout was piped"))?;
    // The spawned process forked the real supervisor and exited at once.
    let _ = child.wait();
    Ok(
        serde_json::from_str(text.trim()).unwrap_or_else(|_| Answer::Error {
            message: "the background supervisor stopped before it started the command".into(),
        }),
    )
}

/// The first line a background supervisor writes, before anything else:
/// who it is, so that its launcher can tell a stopped one from a slow one.
#[derive(Serialize, Deserialize)]
struct Hello {
    pid: i32,
    start_time: u64,
}

/// How often a launcher that has no answer yet looks at its supervisor.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Reads the supervisor's lines until it lets go of the pipe, and returns
/// the last (the answer). A background supervisor is never legitimately
/// stopped: one that is (its command sent it SIGSTOP before it could
/// record the start) is continued, through a pidfd checked against the
/// identity it announced, so that `tend run -d` never hangs on it.
fn read_answer(out: std::process::ChildStdout) -> Result<String, Error> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut text = Vec::new();
    let mut sup: Option<tend_proc::Pidfd> = None;
    let mut buf = [0u8; 4096];
    loop {
        let every = Timespec {
            tv_sec: LOOK_EVERY.as_secs() as i64,
            tv_nsec: 0,
        };
        let ready = {
            let mut fds = [PollFd::new(&out, PollFlags::IN)];
            matches!(poll(&mut fds, Some(&every)), Ok(n) if n > 0)
        };
        if !ready {
            if let Some(fd) = sup.as_ref().filter(|fd| fd.is_stopped()) {
                let _ = fd.signal(tend_proc::Sig::Cont);
            }
            continue;
        }
        match rustix::io::read(&out, &mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(e) => return Err(Error::io("reading the supervisor's answer")(e.into())),
        }
        if sup.is_none() {
            sup = hello(&text);
        }
    }
    let text = String::from_utf8_lossy(&text);
    Ok(text.lines().last().unwrap_or("").to_string())
}

/// The announced supervisor, pinned by a pidfd and checked against the
/// start time it announced.
fn hello(text: &[u8]) -> Option<tend_proc::Pidfd> {
    let line = text.split(|b| *b == b'\n').next()?;
    let h: Hello = serde_json::from_slice(line).ok()?;
    let fd = tend_proc::Pidfd::open(h.pid).ok()?;
    let same = tend_proc::procfs::stat(h.pid).is_ok_and(|s| s.start_time == h.start_time);
    same.then_some(fd)
}

/// The body of `tend __supervise`: reads the run description from stdin,
/// forks away from its launcher, supervises the execution to its end and
/// returns the exit code for the process.
pub fn supervise_from_stdin() -> i32 {
    let mut text = String::new();
    if std::io::stdin().read_to_string(&mut text).is_err() {
        return 2;
    }
    if tend_proc::spawn::fork_away().is_err() {
        let message = "cannot fork a background supervisor".into();
        answer(&Answer::Error { message }, None);
        return 1;
    }
    say_hello();
    let devnull = let_go_of_surroundings();
    let devnull = devnull.as_ref();
    let env: Envelope = match serde_json::from_str(&text) {
        Ok(e) => e,
        Err(e) => {
            let message = format!("the supervisor got an unreadable run description: {e}");
            answer(&Answer::Error { message }, devnull);
            return 2;
        }
    };
    let ledger = match Store::parse(&env.store)
        .map_err(|e| e.to_string())
        .and_then(|s| tend_ledger::open(&s).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(message) => {
            answer(&Answer::Error { message }, devnull);
            return 1;
        }
    };
    let home = Home::new(env.home);
    let mut answered = false;
    let mut report = |r: Report<'_>| {
        if let Some(a) = answer_for(r) {
            answered = true;
            answer(&a, devnull);
        }
    };
    let result = match env.adopt.as_deref().map(ExecutionId::parse) {
        None => crate::run(&*ledger, &home, &env.spec, Mode::Detached, &mut report),
        Some(Ok(id)) => crate::retry::run_adopted(&*ledger, &home, &env.spec, &id, &mut report),
        Some(Err(e)) => {
            let message = format!("the supervisor got an unreadable execution id: {e}");
            answer(&Answer::Error { message }, devnull);
            return 2;
        }
    };
    match result {
        Ok(RunResult::Finished(e) | RunResult::Undelivered(e, _)) => e.shell_code(),
        Ok(RunResult::Existing(..)) => 0,
        Err(e) => {
            if !answered {
                let message = e.to_string();
                answer(&Answer::Error { message }, devnull);
            }
            1
        }
    }
}

/// Takes stdin from `/dev/null` and leaves the launcher's working
/// directory, so that the supervisor pins no mount point and no deleted
/// directory while it runs. Returns `/dev/null`, which stdout and stderr
/// become once the answer is written.
fn let_go_of_surroundings() -> Option<std::fs::File> {
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ok();
    if let Some(null) = &devnull {
        let _ = rustix::stdio::dup2_stdin(null);
    }
    let _ = std::env::set_current_dir("/");
    devnull
}

/// The answer for what the supervisor reports once the start is decided;
/// `None` for a report that decides nothing yet (a holder being replaced).
fn answer_for(r: Report<'_>) -> Option<Answer> {
    Some(match r {
        Report::Started(e) => Answer::Started {
            id: e.id.to_string(),
        },
        Report::Existing(e, _) => Answer::Existing {
            id: e.id.to_string(),
        },
        Report::FailedToStart(e) => Answer::FailedToStart {
            id: e.id.to_string(),
        },
        Report::Replacing(_) => return None,
        // The first answer decides; a retry (or an adopted attempt) is
        // reported as the attempt now held.
        Report::Retrying { next, .. } => Answer::Started {
            id: next.id.to_string(),
        },
    })
}

fn say_hello() {
    let pid = std::process::id() as i32;
    if let Ok(st) = tend_proc::procfs::stat(pid) {
        let hello = Hello {
            pid,
            start_time: st.start_time,
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&hello).expect("serialises")
        );
        let _ = out.flush();
    }
}

/// Writes the answer line and lets go of the launcher's pipe (and of any
/// terminal), so that the launcher's read ends.
fn answer(a: &Answer, devnull: Option<&std::fs::File>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(a).expect("answers serialise")
    );
    let _ = out.flush();
    if let Some(null) = devnull {
        let _ = rustix::stdio::dup2_stdout(null);
        let _ = rustix::stdio::dup2_stderr(null);
    }
}
