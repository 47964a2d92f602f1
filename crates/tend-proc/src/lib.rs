//! The process layer: everything tend does to processes, and nothing about
//! executions or ledgers.
//!
//! - [`Pidfd`]: a handle that pins one process, so a signal can never reach
//!   a stranger that inherited a recycled PID. [`Pidfd::open_verified`]
//!   checks a recorded [`ProcessIdentity`] (boot id, pid, start time, pidfd
//!   inode) before handing one out.
//! - [`procfs`]: `/proc` readers (stat, boot id, environment markers).
//! - [`spawn`]: the pre-exec setup of a supervised command (own session,
//!   death signal tied to the supervisor, clean signal mask).
//! - [`tree`]: finding every descendant of a subreaper and signalling each
//!   one through a pidfd.
//!
//! This crate never decides *whether* to kill; it makes killing exact.
//!
//! ```
//! // Who this process is, then a pidfd that is known to pin exactly it.
//! let me = tend_proc::identify(std::process::id() as i32).unwrap();
//! assert!(tend_proc::Pidfd::open_verified(&me).unwrap().is_alive());
//! ```

pub mod cgroup;
mod pidfd;
pub mod pidns;
pub mod procfs;
pub mod pty;
pub mod spawn;
pub mod tree;

use std::os::fd::{AsRawFd, BorrowedFd};

pub use pidfd::{Pidfd, Verified};
pub use tend_model::ProcessIdentity;

/// Signals tend sends, by name, so callers need no `libc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sig {
    /// Ask to terminate.
    Term,
    /// Terminate, no questions.
    Kill,
    /// Resume a stopped process so that it can act on SIGTERM.
    Cont,
    /// Stop (used to freeze a tree before the final SIGKILL).
    Stop,
    /// tend's "look at the ledger" nudge to a supervisor.
    Usr1,
    /// Ctrl-\ passed on to a foreground command.
    Quit,
    /// Ctrl-C passed on to a foreground command.
    Int,
}

impl Sig {
    fn to_rustix(self) -> rustix::process::Signal {
        use rustix::process::Signal;
        match self {
            Sig::Term => Signal::TERM,
            Sig::Kill => Signal::KILL,
            Sig::Int => Signal::INT,
            Sig::Cont => Signal::CONT,
            Sig::Stop => Signal::STOP,
            Sig::Usr1 => Signal::USR1,
            Sig::Quit => Signal::QUIT,
        }
    }
}

/// What the calling process's reaped descendants used: CPU time (user +
/// system) in milliseconds and the peak RSS of the largest one, in bytes.
#[allow(unsafe_code)] // getrusage
pub fn children_usage() -> (u64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we own and nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) != 0 {
            return (0, 0);
        }
        ru
    };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    (
        ms(ru.ru_utime) + ms(ru.ru_stime),
        ru.ru_maxrss as u64 * 1024,
    )
}

/// What the live processes `pids` have used so far: CPU time (user +
/// system, summed) in milliseconds and the largest peak RSS (`VmHWM`), in
/// bytes. For processes the kernel will reap on nobody's behalf (those
/// left in a PID namespace whose init is killed), whose usage would
/// otherwise never reach [`children_usage`].
pub fn live_usage(pids: &[i32]) -> (u64, u64) {
    let tick_ms = 1000 / rustix::param::clock_ticks_per_second().max(1);
    let mut cpu = 0;
    let mut peak = 0;
    for &pid in pids {
        if let Ok(st) = procfs::stat(pid) {
            cpu += (st.utime + st.stime) * tick_ms;
        }
        peak = peak.max(procfs::peak_rss(pid).unwrap_or(0));
    }
    (cpu, peak)
}

/// Whether two descriptors of the calling process share one open file
/// description, as `> f 2>&1` makes a shell's stdout and stderr share one
/// (one offset, one set of flags): `kcmp(KCMP_FILE)`. `None` when the
/// kernel cannot say (built without `CONFIG_KCMP`, or a seccomp filter
/// refuses the call).
#[allow(unsafe_code)] // the kcmp system call, which libc does not wrap
pub fn same_open_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Option<bool> {
    const KCMP_FILE: libc::c_long = 0;
    let pid = libc::c_long::from(rustix::process::getpid().as_raw_nonzero().get());
    let (a, b) = (
        libc::c_long::from(a.as_raw_fd()),
        libc::c_long::from(b.as_raw_fd()),
    );
    // SAFETY: kcmp takes integers only (two pids, a type, two descriptor
    // numbers), reads and writes none of our memory, and the descriptors
    // are borrowed, so open for the length of the call.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_FILE, a, b) };
    match r {
        0 => Some(true),
        1..=3 => Some(false),
        _ => None,
    }
}

/// Builds the identity of a live process as tend records it.
pub fn identify(pid: i32) -> std::io::Result<ProcessIdentity> {
    let fd = Pidfd::open(pid)?;
    let stat = procfs::stat(pid)?;
    // Re-check after reading /proc: if the process died and its PID was
    // reused between pidfd_open and the read, the pidfd now reports exit.
    if !fd.is_alive() {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(ProcessIdentity {
        boot_id: procfs::boot_id()?,
        pid,
        start_time: stat.start_time,
        pidfd_ino: fd.inode(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    #[test]
    fn a_dup_shares_the_open_file_and_a_second_open_does_not() {
        let dir = std::env::temp_dir().join(format!("tend-kcmp-{}", std::process::id()));
        let f = std::fs::File::create(&dir).unwrap();
        let dup = f.try_clone().unwrap();
        let other = std::fs::File::open(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        // Where the kernel cannot say, it says nothing either way.
        if let Some(same) = super::same_open_file(f.as_fd(), dup.as_fd()) {
            assert!(same);
            assert_eq!(super::same_open_file(f.as_fd(), other.as_fd()), Some(false));
        }
    }
}
