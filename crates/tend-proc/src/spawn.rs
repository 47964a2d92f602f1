//! Pre-exec setup for a supervised command. Everything here runs in the
//! forked child before `exec`, so it only makes raw, async-signal-safe
//! system calls: no allocation, no locks, no logging.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{getppid, set_parent_process_death_signal, setsid, Pid, Signal};

/// Makes `cmd` start in its own session (so it has its own process group,
/// away from the terminal's Ctrl-C) with SIGKILL as its parent-death
/// signal, so that it cannot outlive a supervisor that is SIGKILLed.
///
/// The death signal is tied to the *thread* that forks; call this from the
/// supervisor's one long-lived thread, never from a thread pool.
#[allow(unsafe_code)] // pre_exec
pub fn supervised(cmd: &mut Command) -> &mut Command {
    let parent = rustix::process::getpid();
    // SAFETY: the closure only makes async-signal-safe system calls
    // (setsid, prctl, getppid, _exit) and touches no shared state.
    unsafe {
        cmd.pre_exec(move || {
            setsid()?;
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The supervisor may have died between fork and prctl; then the
            // death signal will never come, so leave now (bubblewrap#730).
            if getppid() != Some(parent) {
                libc::_exit(127);
            }
            Ok(())
        })
    }
}

/// Makes the calling process a child subreaper: orphaned descendants are
/// re-parented to it instead of to init, so that the supervisor can still
/// find (and end) a daemon that double-forked away.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(Pid::from_raw(1).expect("1 is a valid pid")))
        .map_err(Into::into)
}

/// Makes the calling process its own session leader (detaching it from any
/// terminal), as a background supervisor must be.
#[allow(unsafe_code)] // pre_exec
pub fn detach_session(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            setsid()?;
            Ok(())
        })
    }
}

/// Forks the calling process and lets the parent exit at once, so that the
/// child is re-parented away from whoever started it (a daemon then has no
/// child to reap). Returns in the child only.
///
/// Call it only while the process is single-threaded (at the very start of
/// `main`): after `fork` only the calling thread exists in the child.
#[allow(unsafe_code)] // fork, _exit
pub fn fork_away() -> io::Result<()> {
    // SAFETY: the caller guarantees the process is single-threaded, so the
    // child inherits no lock held by another thread; the parent only calls
    // _exit, which runs no destructors or atexit handlers.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(()),
        // SAFETY: _exit is async-signal-safe and ends the parent at once,
        // running nothing of the child's state.
        _ => unsafe { libc::_exit(0) },
    }
}

/// True while the calling process has any child, exited or not. For a
/// subreaper this is the exact test for "no descendant left": every orphan
/// re-parents to it, so a descendant anywhere means a child here — which
/// holds even when a `/proc` walk misses one (PID wrap during the scan, a
/// thread-group leader that exited while its threads run).
pub fn has_children() -> bool {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    match waitid(
        WaitId::All,
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    ) {
        Ok(_) => true,
        Err(e) => e != rustix::io::Errno::CHILD,
    }
}
