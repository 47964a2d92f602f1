//! The `pidns` containment tier: the command runs under a tiny init in a
//! PID namespace of its own, so that when the namespace's init dies the
//! kernel SIGKILLs every process in it — including ones that scrubbed their
//! environment and double-forked away, which no walk or marker scan could
//! find after a supervisor was SIGKILLed.
//!
//! Everything happens in the forked child before `exec`, with raw,
//! async-signal-safe system calls only:
//!
//! ```text
//! supervisor ─ P (outside the namespace: relays the exit status)
//!               └─ C (PID 1 inside: reaps orphans; exits when the command does)
//!                   └─ G ─ exec(command)   (PID 2)
//! ```
//!
//! P and C have SIGKILL as their parent-death signal, so a dead supervisor
//! takes P, P takes C, and C takes the namespace. The command is not PID 1,
//! so SIGTERM reaches it with its normal meaning. Processes the command
//! leaves behind are SIGKILLed by the kernel when it exits (no grace).

// The whole module is pre-exec code: raw system calls in a forked child.
// Each unsafe block and function says what makes it sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Whether this host lets tend make PID namespaces: as root always; else
/// through an unprivileged user namespace, if the kernel allows them.
pub fn available() -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    match std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        Ok(n) if n.trim() != "0" => Ok(()),
        Ok(_) => Err("user namespaces are disabled (user.max_user_namespaces = 0)".into()),
        Err(e) => Err(format!(
            "cannot tell whether user namespaces are allowed: {e}"
        )),
    }
}

/// Makes `cmd` run in a new PID namespace under an init, as described in
/// the module docs. Register it *after* [`crate::spawn::supervised`], so the
/// outer process has already left the terminal's session and armed its
/// parent-death signal.
pub fn contain(cmd: &mut Command) -> io::Result<Leftovers> {
    // The "leftovers" pipe: C writes one byte to it when the command exited
    // while other processes of the namespace were still alive (the kernel
    // SIGKILLs those when C exits). It is fd 3 in P and C only.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let write_fd = std::os::fd::AsRawFd::as_raw_fd(&write);
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let user_ns = uid != 0;
    // Formatted before the fork: the child must not allocate.
    let uid_map = format!("0 {uid} 1\n").into_bytes();
    let gid_map = format!("0 {gid} 1\n").into_bytes();
    // SAFETY: only async-signal-safe calls (sigaction, unshare, open, write,
    // close, pipe2, fork, prctl, getppid, waitpid, read, kill, _exit) on
    // memory that was allocated before the fork; the process is the
    // single-threaded child of fork(2).
    unsafe {
        cmd.pre_exec(move || {
            // The supervisor's signal handlers were inherited by the fork;
            // P and C never exec, so put the defaults back.
            for sig in [libc::SIGUSR1, libc::SIGCHLD] {
                libc::signal(sig, libc::SIG_DFL);
            }
            // P only relays: a graceful kill's SIGTERM is for the command,
            // and P dying of it would take the namespace down at once
            // (through C's death signal) with no grace. G puts these back.
            for sig in STOP_SIGNALS {
                libc::signal(sig, libc::SIG_IGN);
            }
            let flags = if user_ns {
                libc::CLONE_NEWUSER | libc::CLONE_NEWPID
            } else {
                libc::CLONE_NEWPID
            };
            if libc::unshare(flags) != 0 {
                return Err(io::Error::last_os_error());
            }
            if user_ns {
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &uid_map)?;
                write_file(c"/proc/self/gid_map", &gid_map)?;
            }
            // P and C never exec, so nothing marked close-on-exec would ever
            // close in them: not the supervisor's ledger or log files, and
            // not the pipe through which std learns that the exec happened
            // (its spawn would block until the command ended). Keep only
            // stdin, stdout and stderr.
            if libc::dup2(write_fd, LEFTOVERS_FD) != LEFTOVERS_FD {
                return Err(io::Error::last_os_error());
            }
            libc::syscall(
                libc::SYS_close_range,
                (LEFTOVERS_FD + 1) as u32,
                u32::MAX,
                0u32,
            );
            let mut pipe = [0i32; 2];
            if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(io::Error::last_os_error());
            }
            let outer = libc::getpid();
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => init(outer, pipe),
                c => relay(c, pipe),
            }
        });
    }
    Ok(Leftovers {
        read,
        write: Some(write),
    })
}

/// The command's own process, as this (outer) namespace numbers it: the
/// grandchild of the relay P (P → C → command). This is the process whose
/// identity, CPU and memory the ledger shows; the relay only passes its
/// exit status on. `None` if it is already gone (or the kernel has no
/// `/proc/PID/task/TID/children`), in which case the relay stands for it.
pub fn command_of(relay: i32) -> Option<i32> {
    let children = |pid: i32| -> Vec<i32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let init = *children(relay).first()?;
    // C's first child is the command; orphans it adopts come later.
    children(init)
        .into_iter()
        .min_by_key(|p| crate::procfs::stat(*p).map_or(u64::MAX, |s| s.start_time))
}

/// The supervisor's end of the leftovers pipe.
#[derive(Debug)]
pub struct Leftovers {
    read: OwnedFd,
    write: Option<OwnedFd>,
}

impl Leftovers {
    /// Call once the command is spawned: closes our copy of the write end
    /// (the child needed it open until its fork), so that the read end sees
    /// EOF once P and C are gone.
    pub fn spawned(&mut self) {
        self.write = None;
    }

    /// After the command's process exited: true if it left processes
    /// behind in its namespace, which the kernel then SIGKILLed.
    pub fn left_processes_behind(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(rustix::io::read(&self.read, &mut b), Ok(1))
    }
}

/// The descriptor number of the leftovers pipe in P and C.
const LEFTOVERS_FD: i32 = 3;

/// Signals the relay ignores and the command gets back.
const STOP_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Writes `data` to the file at `path` with raw system calls.
///
/// # Safety
///
/// Only async-signal-safe calls, on memory the caller allocated before the
/// fork: callable in the forked child of a multi-threaded process.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    libc::close(fd);
    if n != data.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// C, PID 1 of the new namespace. Returns `Ok` only in G, which then execs.
///
/// # Safety
///
/// Call only in the single-threaded child of `fork`, before `exec`: it makes
/// async-signal-safe calls only, and `pipe` must be the two ends of a pipe
/// this process owns.
unsafe fn init(outer: libc::pid_t, pipe: [i32; 2]) -> io::Result<()> {
    libc::close(pipe[0]);
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    // P is outside this namespace, so getppid() says 0 and cannot be used
    // to catch a P that died before the prctl. Nothing is lost then: C is
    // re-parented to the supervisor (a subreaper), whose tree walk ends it.
    let _ = outer;
    let g = libc::fork();
    if g == -1 {
        libc::_exit(126);
    }
    if g == 0 {
        libc::close(pipe[1]);
        libc::close(LEFTOVERS_FD);
        for sig in STOP_SIGNALS {
            libc::signal(sig, libc::SIG_DFL);
        }
        return Ok(());
    }
    // Reap everything; leave when the command is gone (the kernel then
    // kills whatever is left in the namespace).
    loop {
        let mut status = 0;
        let pid = libc::waitpid(-1, &mut status, 0);
        if pid == g {
            // Anything still alive is a descendant of C; if C has a child
            // left, the kernel is about to SIGKILL the namespace's rest.
            // (Reap the zombies first: only a live child answers 0.)
            let mut other = 0;
            let mut r = libc::waitpid(-1, &mut other, libc::WNOHANG);
            while r > 0 {
                r = libc::waitpid(-1, &mut other, libc::WNOHANG);
            }
            if r == 0 {
                libc::write(LEFTOVERS_FD, b"K".as_ptr().cast(), 1);
            }
            if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status) as u8;
                libc::write(pipe[1], (&sig as *const u8).cast(), 1);
                libc::_exit(128 + sig as i32);
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if pid == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            libc::_exit(127);
        }
    }
}

/// P: waits for C and leaves the way the command did (its code, or the
/// same signal), so the supervisor records the truth.
///
/// # Safety
///
/// As for [`init`]: the single-threaded child of `fork`, `c` its own child,
/// `pipe` the two ends of a pipe this process owns.
unsafe fn relay(c: libc::pid_t, pipe: [i32; 2]) -> io::Result<()> {
    libc::close(pipe[1]);
    let mut status = 0;
    while libc::waitpid(c, &mut status, 0) == -1 {
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            libc::_exit(127);
        }
    }
    let mut sig = 0u8;
    if libc::read(pipe[0], (&mut sig as *mut u8).cast(), 1) == 1 && sig != 0 {
        // Die the way the command did, but never leave a core file of the
        // relay (which could overwrite the command's own).
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::signal(sig as i32, libc::SIG_DFL);
        libc::kill(libc::getpid(), sig as i32);
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    libc::_exit(128 + libc::WTERMSIG(status))
}
