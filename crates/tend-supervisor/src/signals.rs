//! The supervisor's signals, turned into a readable file descriptor so that
//! its one thread can wait for a signal, a pipe and a pidfd in one `poll`.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{
    SIGALRM, SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGIO, SIGPROF, SIGQUIT, SIGTERM, SIGTSTP, SIGUSR1,
    SIGUSR2, SIGVTALRM, SIGWINCH, SIGXCPU, SIGXFSZ,
};

/// Linux's numbers for two signals signal-hook does not name.
const SIGSTKFLT: i32 = 16;
const SIGPWR: i32 = 30;

/// The signals the supervisor acts on.
const HANDLED: [i32; 9] = [
    SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGQUIT, SIGTSTP, SIGCONT, SIGWINCH,
];

/// Signals whose default action would end the supervisor and that tend has
/// no use for: they are caught and dropped, so a stray `kill -USR2` or
/// `alarm()` from the command cannot leave its tree unsupervised. (Caught,
/// not ignored: an ignored signal would stay ignored in the command after
/// `exec`; a caught one is reset to its default there.) The faults (SEGV,
/// BUS, ILL, FPE, ABRT, SYS, TRAP) keep their default: a supervisor that
/// faults is what the reaper is for.
const DROPPED: [i32; 9] = [
    SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT, SIGXCPU, SIGXFSZ,
];
/// Linux's real-time signals as glibc leaves them to programs.
const REALTIME: std::ops::RangeInclusive<i32> = 34..=64;

/// Handlers for the signals the supervisor acts on (see [`Pending`]) and
/// for those it drops. Installed once the execution's key is decided (a run
/// that attaches to a key's holder keeps the default Ctrl-C); until then
/// [`shield_nudge`] keeps a SIGUSR1 from killing the supervisor.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    flags: [(i32, Arc<AtomicBool>); 9],
}

/// What arrived since the last [`Signals::take`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    /// A child changed state.
    pub child: bool,
    /// Somebody asked this process to stop (name of the signal).
    pub stop: Option<&'static str>,
    /// Ctrl-C (SIGINT).
    pub interrupt: bool,
    /// Another tend process recorded a request in the ledger.
    pub nudge: bool,
    /// `Ctrl-\` (SIGQUIT): passed on to the command.
    pub quit: bool,
    /// Ctrl-Z (SIGTSTP): stop the execution like a shell job.
    pub suspend: bool,
    /// SIGCONT: the supervisor was continued (`fg`).
    pub resumed: bool,
    /// SIGWINCH: tend's terminal was resized.
    pub winch: bool,
}

/// Catches SIGUSR1 (the nudge other tend processes send once the execution
/// is recorded; its default action is to die) before the handlers are
/// installed. A nudge that comes this early is not lost: the request is in
/// the ledger, and the supervisor reads its row again when it commits the
/// start. Caught rather than ignored, so the command gets the default
/// disposition after `exec`.
pub fn shield_nudge() -> io::Result<()> {
    signal_hook::flag::register(SIGUSR1, Arc::new(AtomicBool::new(false))).map(drop)
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let flags = HANDLED.map(|s| (s, Arc::new(AtomicBool::new(false))));
        let dropped = Arc::new(AtomicBool::new(false));
        for sig in DROPPED.into_iter().chain(REALTIME) {
            signal_hook::flag::register(sig, Arc::clone(&dropped))?;
        }
        for (sig, flag) in &flags {
            // The flag is set before the wake-up byte is written (handlers
            // run in registration order), so a reader never misses one.
            signal_hook::flag::register(*sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(*sig, write.try_clone()?)?;
        }
        Ok(Signals { wake: read, flags })
    }

    /// Drains the wake-up pipe and returns (and clears) what arrived.
    pub fn take(&self) -> Pending {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        let mut p = Pending::default();
        for (sig, flag) in &self.flags {
            if flag.swap(false, Ordering::SeqCst) {
                match *sig {
                    SIGCHLD => p.child = true,
                    SIGUSR1 => p.nudge = true,
                    SIGQUIT => p.quit = true,
                    SIGTSTP => p.suspend = true,
                    SIGCONT => p.resumed = true,
                    SIGWINCH => p.winch = true,
                    SIGINT => p.interrupt = true,
                    SIGTERM => p.stop = Some("SIGTERM"),
                    _ => p.stop = p.stop.or(Some("SIGHUP")),
                }
            }
        }
        p
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}
