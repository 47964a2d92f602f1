//! The supervisor's signals, turned into a readable file descriptor so that
//! its one thread can wait for a signal, a pipe and a pidfd in one `poll`.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// Handlers for SIGCHLD, SIGINT, SIGTERM, SIGHUP and SIGUSR1. Installed
/// before the execution is recorded, because from then on other processes
/// may nudge the supervisor with SIGUSR1, whose default action is to die.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    flags: [(i32, Arc<AtomicBool>); 5],
}

/// What arrived since the last [`Signals::take`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    /// A child changed state.
    pub child: bool,
    /// Somebody asked this process to stop (name of the signal).
    pub stop: Option<&'static str>,
    /// Another tend process recorded a request in the ledger.
    pub nudge: bool,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let flags = [SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR1]
            .map(|s| (s, Arc::new(AtomicBool::new(false))));
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
                    SIGINT => p.stop = Some("SIGINT"),
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
