//! Starting the command and the writes around it: the identity recorded
//! for it, the lost-start path, the commits that must not be given up on,
//! and finding the program the way `execvp` will.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use serde_json::json;
use tend_ledger::{Ledger, Outcome, Transition};
use tend_model::{Actor, EventKind, Execution, ProcessIdentity, Status};
use tend_proc::cgroup::Cgroup;
use tend_proc::{procfs, tree, Pidfd, Sig};

use super::{Mode, Report, RunResult};
use crate::logs::LogFile;
use crate::{Error, Home};

/// The identity to record for the command. In the pidns tier the direct
/// child is only the relay that passes the exit status on; the ledger
/// records the command itself (so `ps` shows its CPU and memory), pinned by
/// a pidfd opened before its start time is read.
pub(crate) fn command_identity(
    direct: i32,
    direct_fd: &Pidfd,
    pidns: bool,
    boot_id: &str,
) -> Result<ProcessIdentity, Error> {
    // The relay lets `spawn` return before the init has forked the
    // command, so give it a moment (once, at start, in this tier only).
    let mut inner = None;
    for _ in 0..100 {
        if !pidns {
            break;
        }
        inner = tend_proc::pidns::command_of(direct).and_then(|p| Pidfd::open(p).ok());
        if inner.is_some() || !direct_fd.is_alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (pid, ino) = match &inner {
        Some(fd) => (fd.pid(), fd.inode()),
        None => (direct, direct_fd.inode()),
    };
    let stat = procfs::stat(pid).map_err(Error::io("reading the command's start time"))?;
    Ok(ProcessIdentity {
        boot_id: boot_id.to_string(),
        pid,
        start_time: stat.start_time,
        pidfd_ino: ino,
    })
}

/// Retries a write the supervisor must not give up on — the start of a
/// command that is already running, the outcome of one that finished —
/// for as long as the ledger refuses for a transient reason (busy past its
/// timeout, disk full, read-only for now). The tree is held (or already
/// gone) meanwhile, and waiters keep waiting: they watch this process,
/// which stays alive until the write is in.
pub(crate) fn persist<T>(
    mode: Mode,
    id: &tend_model::ExecutionId,
    what: &str,
    mut write: impl FnMut() -> Result<T, tend_ledger::Error>,
) -> Result<T, Error> {
    let mut pause = Duration::from_millis(20);
    let mut said = false;
    loop {
        match write() {
            Ok(t) => return Ok(t),
            Err(e) if e.is_transient() => {
                if !said && mode == Mode::Foreground {
                    eprintln!("tend: cannot record {what} of {id} yet ({e}); retrying until it is recorded");
                }
                said = true;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// SIGKILLs the whole tree at once — `cgroup.kill` and every member, or
/// every descendant of the supervisor — and waits (bounded) for it to go.
pub(crate) fn kill_tree_now(me: i32, cgroup: Option<&Cgroup>) {
    if let Some(cg) = cgroup {
        let _ = cg.kill();
    }
    let tree = match cgroup {
        Some(cg) => cg.open_members(),
        None => tree::open_descendants(me),
    };
    tree::signal_all(&tree, Sig::Kill);
    tree::wait_all(&tree, Duration::from_secs(5));
}

/// Removes an emptied cgroup. The kernel may report it busy for a moment
/// after its last process is reaped, so a few attempts are made.
pub(crate) fn remove_cgroup(cg: &Cgroup) {
    for _ in 0..50 {
        if cg.remove().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Looks `program` up the way `execvp` will: a path with a slash as it is
/// (relative to the command's `cwd`), else each folder of `PATH`.
pub fn find_program(program: &str, cwd: &Path, path: Option<&String>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| -> io::Result<()> {
        let m = std::fs::metadata(p)?;
        if m.is_file() && m.permissions().mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc_eacces()))
        }
    };
    if program.contains('/') {
        return executable(&cwd.join(program));
    }
    let search = path
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let mut denied = false;
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        match executable(&Path::new(dir).join(program)) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => denied = true,
            Err(_) => {}
        }
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc_eacces()
    } else {
        2
    }))
}

/// EACCES on Linux (tend-supervisor has no libc dependency).
pub(crate) fn libc_eacces() -> i32 {
    13
}

/// The two log files, noting their writes in one output index.
pub(crate) fn open_logs(exec: &Execution, cap: u64) -> io::Result<(LogFile, LogFile)> {
    let stdout: std::path::PathBuf = exec.stdout_path.clone().into();
    let index = crate::logs::OutputIndex::create(&crate::logs::OutputIndex::path_for(&stdout))?;
    let index = std::rc::Rc::new(std::cell::RefCell::new(index));
    Ok((
        LogFile::create(stdout, cap)?.indexed(0, index.clone()),
        LogFile::create(exec.stderr_path.clone().into(), cap)?.indexed(1, index),
    ))
}

/// `"No such file or directory"` rather than `"... (os error 2)"`.
pub(crate) fn plain_os_error(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub(crate) fn failed_to_start<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    exec: Execution,
    code: i32,
    why: String,
    report: &mut dyn FnMut(Report<'_>),
) -> Result<RunResult, Error> {
    let outcome = Outcome {
        status: Status::Failed,
        reason: format!("failed to start: {why}"),
        exit_code: Some(code),
        signal: None,
        kill: None,
        usage: None,
        event: EventKind::FailedToStart,
        actor: Actor::Supervisor,
        details: json!({}),
    };
    let t = ledger.transition(&exec.id, Status::Queued, &outcome)?;
    home.notifier().announce(&exec.id, t.execution().status);
    let e = match t {
        Transition::Won(e) | Transition::Lost(e) => e,
    };
    report(Report::FailedToStart(&e));
    Ok(RunResult::Finished(e))
}

pub(crate) fn nonblocking(fd: OwnedFd) -> Result<OwnedFd, Error> {
    let flags = fcntl_getfl(&fd).map_err(|e| Error::io("configuring a pipe")(e.into()))?;
    fcntl_setfl(&fd, flags | OFlags::NONBLOCK)
        .map_err(|e| Error::io("configuring a pipe")(e.into()))?;
    Ok(fd)
}

/// The command, started: its process, what the ledger records of it, and
/// the supervisor's ends of its output pipes.
pub(crate) struct Launched {
    /// The supervisor's own child (in the pidns tier, the relay).
    pub direct: i32,
    /// A pidfd on that child.
    pub child: Pidfd,
    /// What is recorded as the command.
    pub identity: ProcessIdentity,
    /// The read end of its stdout (of both streams, when merged).
    pub stdout: OwnedFd,
    /// The read end of its stderr; `None` when merged into stdout.
    pub stderr: Option<OwnedFd>,
    /// pidns tier: tells whether the kernel ended leftovers.
    pub leftovers: Option<tend_proc::pidns::Leftovers>,
    /// `-t`: the supervisor's side of the command's pseudo-terminal, to
    /// type into and resize (its output is `stdout`).
    pub tty: Option<super::tty::TtyInput>,
}

/// Starts the command in its tier, with the markers in its environment and
/// tend's secrets removed. `Ok(Err((code, why)))` when it could not be
/// started (127 not found, 126 not executable, 1 otherwise); `Err` when the
/// supervisor itself failed.
pub(crate) fn launch(
    spec: &crate::RunSpec,
    mode: Mode,
    tier: &crate::Tier,
    cgroup: Option<&Cgroup>,
    markers: &[(&str, &str)],
    boot_id: &str,
) -> Result<Result<Launched, (i32, String)>, Error> {
    let mut cmd = command(spec, mode, markers);
    let tty = spec.tty && mode == Mode::Foreground;
    let merged = if tty {
        None
    } else {
        output_pipes(&mut cmd, mode)
    };
    if let Some(cg) = cgroup {
        cg.join_before_exec(&mut cmd);
    }
    tend_proc::spawn::supervised(&mut cmd);
    // After `supervised`: the terminal is taken in the command's own session.
    let pty = match tty {
        true => Some(
            tend_proc::pty::Pty::attach(&mut cmd)
                .map_err(Error::io("opening a pseudo-terminal"))?,
        ),
        false => None,
    };
    let could_not =
        |e: &io::Error, code: i32| (code, format!("{}: {}", spec.command[0], plain_os_error(e)));
    let mut leftovers = None;
    if matches!(tier, crate::Tier::Pidns) {
        // The command is exec'd two forks below the child, where a failed
        // exec could only exit 127; find it first so that the execution is
        // recorded as failed to start, as in the other tiers.
        if let Err(e) = find_program(&spec.command[0], &spec.cwd, spec.env.get("PATH")) {
            let code = if e.kind() == io::ErrorKind::PermissionDenied {
                126
            } else {
                127
            };
            return Ok(Err(could_not(&e, code)));
        }
        let l =
            tend_proc::pidns::contain(&mut cmd).map_err(Error::io("preparing a PID namespace"))?;
        leftovers = Some(l);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                io::ErrorKind::NotFound => 127,
                io::ErrorKind::PermissionDenied => 126,
                _ => 1,
            };
            return Ok(Err(could_not(&e, code)));
        }
    };
    // The command holds its copies now; ours (of a merged pipe's write
    // end) must close, or that pipe would never end.
    drop(cmd);
    if let Some(l) = leftovers.as_mut() {
        l.spawned();
    }
    let direct = child.id() as i32;
    let child_fd = Pidfd::open(direct).map_err(Error::io("opening a pidfd on the command"))?;
    let identity = command_identity(direct, &child_fd, leftovers.is_some(), boot_id)?;
    let (stdout, stderr, tty) = streams(&mut child, pty.as_ref(), merged)?;
    Ok(Ok(Launched {
        direct,
        child: child_fd,
        identity,
        stdout,
        stderr,
        leftovers,
        tty,
    }))
}

/// The supervisor's ends of the command's output (and, with `-t`, of its
/// terminal): a pseudo-terminal's side, one merged pipe, or two pipes.
fn streams(
    child: &mut std::process::Child,
    pty: Option<&tend_proc::pty::Pty>,
    merged: Option<OwnedFd>,
) -> Result<(OwnedFd, Option<OwnedFd>, Option<super::tty::TtyInput>), Error> {
    let opening = || Error::io("opening a pseudo-terminal");
    Ok(match (pty, merged) {
        (Some(p), _) => {
            let input = super::tty::TtyInput::new(p.master().map_err(opening())?);
            input.resize();
            (p.master().map_err(opening())?, None, Some(input))
        }
        (None, Some(read)) => (read, child.stderr.take().map(OwnedFd::from), None),
        (None, None) => (
            child.stdout.take().expect("stdout was piped").into(),
            child.stderr.take().map(OwnedFd::from),
            None,
        ),
    })
}

/// The command line, environment and stdin of the command.
fn command(spec: &crate::RunSpec, mode: Mode, markers: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(&spec.command[0]);
    // Before the run's own env, so that an explicit value still passes.
    for secret in crate::SECRET_VARS.iter().chain(crate::STORE_SECRET_VARS) {
        cmd.env_remove(secret);
    }
    cmd.args(&spec.command[1..])
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .envs(markers.iter().copied())
        .env_remove(crate::FAILPOINT_VAR)
        .envs(spec.store.iter().map(|s| ("TEND_STORE", s)))
        .stdin(if mode == Mode::Foreground {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    cmd
}

/// Pipes for the command's stdout and stderr. Where our stdout and stderr
/// are one file (`2>&1`), the command gets one pipe for both, as a shell
/// would give it, so that its order is kept (see streams.rs); its read end
/// is returned. Should that pipe fail, two are made.
fn output_pipes(cmd: &mut Command, mode: Mode) -> Option<OwnedFd> {
    let merged = (mode == Mode::Foreground && super::streams::stdout_is_stderr())
        .then(super::streams::one_pipe)
        .and_then(Result::ok);
    match merged {
        Some((read, out, err)) => {
            cmd.stdout(out).stderr(err);
            Some(read)
        }
        None => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        }
    }
}
