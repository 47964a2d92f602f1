//! A pseudo-terminal for `tend run -t`: the command gets the terminal side
//! as its controlling terminal (so vi, REPLs, colours and progress bars
//! behave), the supervisor keeps the other side, and tend's own terminal is
//! put in raw mode meanwhile so that every key, Ctrl-C included, reaches
//! the command's terminal as typed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};

/// The supervisor's side of a command's pseudo-terminal.
pub struct Pty {
    master: OwnedFd,
}

impl Pty {
    /// Opens a pseudo-terminal and makes its terminal side `cmd`'s stdin,
    /// stdout, stderr and controlling terminal (the command must start a
    /// session of its own: see [`crate::spawn::supervised`], which must be
    /// applied to `cmd` before this).
    #[allow(unsafe_code)] // pre_exec
    pub fn attach(cmd: &mut Command) -> io::Result<Pty> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: one ioctl, async-signal-safe, on the child's own fd 0
        // (the terminal side, dup'ed there by std before this runs).
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
                Ok(())
            });
        }
        Ok(Pty { master })
    }

    /// A copy of the supervisor's side, to read the command's output from
    /// and write its input to.
    pub fn master(&self) -> io::Result<OwnedFd> {
        self.master.try_clone()
    }

    /// Gives the command's terminal the size of `from` (tend's own
    /// terminal), as at start and on every SIGWINCH; a `from` that is no
    /// terminal changes nothing.
    pub fn copy_size(master: BorrowedFd<'_>, from: BorrowedFd<'_>) {
        if let Ok(size) = tcgetwinsize(from) {
            let _ = tcsetwinsize(master, size);
        }
    }
}

/// tend's own terminal in raw mode for as long as this lives: keys go to
/// the command's terminal unchanged, and the saved mode comes back on drop
/// (also when tend ends by an error).
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts `fd`'s terminal in raw mode; `None` when it is no terminal.
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
        Some(RawMode {
            fd: fd.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd.as_fd(), OptionalActions::Now, &self.saved);
    }
}
