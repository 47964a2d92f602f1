use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags};

use crate::{procfs, ProcessIdentity, Sig};

/// A pidfd: a file descriptor that refers to one process for as long as it
/// is open. Signals sent through it reach that process or fail with ESRCH;
/// they never reach whoever gets the PID next.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: i32,
}

/// What [`Pidfd::open_verified`] found at a recorded identity.
#[derive(Debug)]
pub enum Verified {
    /// The recorded process is alive; the pidfd pins it.
    Alive(Pidfd),
    /// No process has that PID any more.
    Gone,
    /// A different process has the PID now (reused), or it belongs to an
    /// earlier boot. It must not be signalled.
    Mismatch(String),
}

impl Verified {
    /// True for [`Verified::Alive`].
    pub fn is_alive(&self) -> bool {
        matches!(self, Verified::Alive(_))
    }
}

impl Pidfd {
    /// Opens a pidfd for `pid`. ESRCH means there is no such process.
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        let p = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        let fd = pidfd_open(p, PidfdFlags::empty())?;
        Ok(Pidfd { fd, pid })
    }

    /// Opens a pidfd only if the process at `id.pid` is the one recorded:
    /// same boot, same start time, and the same pidfd inode where both are
    /// known. The checks happen *after* the pidfd is open, so the answer
    /// cannot go stale: the pidfd keeps referring to the checked process.
    pub fn open_verified(id: &ProcessIdentity) -> io::Result<Verified> {
        let boot = procfs::boot_id()?;
        if boot != id.boot_id {
            return Ok(Verified::Mismatch(format!(
                "recorded in boot {}, this is boot {boot}",
                id.boot_id
            )));
        }
        let fd = match Pidfd::open(id.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Verified::Gone),
            Err(e) => return Err(e),
        };
        // With pidfs the inode alone is exact (unique per process within a
        // boot), and cheaper than reading /proc: this check runs for every
        // live execution on every read of the ledger.
        if let (Some(want), Some(have)) = (id.pidfd_ino, fd.inode()) {
            if want != have {
                return Ok(Verified::Mismatch(format!(
                    "identity mismatch: pid {} has pidfd inode {have}, recorded {want}",
                    id.pid
                )));
            }
            return Ok(if fd.is_alive() {
                Verified::Alive(fd)
            } else {
                Verified::Gone
            });
        }
        let stat = match procfs::stat(id.pid) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verified::Gone),
            Err(e) => return Err(e),
        };
        if !fd.is_alive() {
            return Ok(Verified::Gone);
        }
        if stat.start_time != id.start_time {
            return Ok(Verified::Mismatch(format!(
                "identity mismatch: pid {} started at tick {}, recorded {}",
                id.pid, stat.start_time, id.start_time
            )));
        }
        if let (Some(want), Some(have)) = (id.pidfd_ino, fd.inode()) {
            if want != have {
                return Ok(Verified::Mismatch(format!(
                    "identity mismatch: pid {} has pidfd inode {have}, recorded {want}",
                    id.pid
                )));
            }
        }
        if stat.state == 'Z' {
            return Ok(Verified::Gone);
        }
        Ok(Verified::Alive(fd))
    }

    /// The PID this pidfd was opened for.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pidfs inode, unique per process within a boot on Linux 6.8+;
    /// `None` on older kernels, where pidfds share an anonymous inode.
    pub fn inode(&self) -> Option<u64> {
        if !pidfs() {
            return None;
        }
        rustix::fs::fstat(&self.fd).ok().map(|st| st.st_ino)
    }

    /// Sends `sig` to exactly this process. `Ok(false)` when it has already
    /// exited (ESRCH): nothing else can have been hit.
    pub fn signal(&self, sig: Sig) -> io::Result<bool> {
        match pidfd_send_signal(&self.fd, sig.to_rustix()) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == libc::ESRCH => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Signals the process group this process leads (the command and its
    /// pipeline, as a shell's Ctrl-C reaches them), when it leads one; else
    /// the process alone. Only its parent may call this, before reaping it:
    /// until then its pid, and so the group id, cannot be reused.
    pub fn signal_group_as_parent(&self, sig: Sig) -> io::Result<bool> {
        let leads = procfs::stat(self.pid).is_ok_and(|s| s.pgrp == self.pid);
        if !leads {
            return self.signal(sig);
        }
        let group =
            Pid::from_raw(self.pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        match rustix::process::kill_process_group(group, sig.to_rustix()) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == libc::ESRCH => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the process is stopped (`T`), or stopped under a tracer
    /// (`t`): it acts on nothing until it is continued.
    pub fn is_stopped(&self) -> bool {
        procfs::stat(self.pid).is_ok_and(|s| matches!(s.state, 'T' | 't')) && self.is_alive()
    }

    /// True until the process exits (a pidfd polls readable at exit).
    pub fn is_alive(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&zero)), Ok(0))
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether pidfds have an inode per process (pidfs, Linux 6.8+). Without
/// pidfs every pidfd shares one anonymous inode, which identifies nothing.
/// Decided once per process, by comparing pidfds of two processes.
fn pidfs() -> bool {
    static PIDFS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PIDFS.get_or_init(|| {
        let ino = |pid: i32| {
            Pidfd::open(pid)
                .ok()
                .and_then(|f| rustix::fs::fstat(&f.fd).ok())
                .map(|s| s.st_ino)
        };
        let me = ino(std::process::id() as i32);
        let parent = ino(std::os::unix::process::parent_id() as i32);
        matches!((me, parent), (Some(a), Some(b)) if a != b)
    })
}

impl std::os::fd::AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_identity_is_alive_then_gone_and_never_matches_another_start() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let id = crate::identify(pid).unwrap();
        assert!(Pidfd::open_verified(&id).unwrap().is_alive());
        // A reused PID shows another start time (kernels without pidfs) ...
        let forged = ProcessIdentity {
            start_time: id.start_time + 1,
            pidfd_ino: None,
            ..id.clone()
        };
        assert!(
            matches!(Pidfd::open_verified(&forged).unwrap(), Verified::Mismatch(m) if m.contains("identity mismatch"))
        );
        // ... or another pidfd inode (pidfs).
        let forged = ProcessIdentity {
            pidfd_ino: id.pidfd_ino.map(|i| i + 1),
            ..id.clone()
        };
        if id.pidfd_ino.is_some() {
            assert!(
                matches!(Pidfd::open_verified(&forged).unwrap(), Verified::Mismatch(m) if m.contains("identity mismatch"))
            );
        }
        let other_boot = ProcessIdentity {
            boot_id: "elsewhere".into(),
            ..id.clone()
        };
        assert!(matches!(
            Pidfd::open_verified(&other_boot).unwrap(),
            Verified::Mismatch(_)
        ));
        let Verified::Alive(fd) = Pidfd::open_verified(&id).unwrap() else {
            unreachable!()
        };
        assert!(fd.signal(Sig::Kill).unwrap());
        child.wait().unwrap();
        assert!(!fd.is_alive());
        assert!(
            !fd.signal(Sig::Term).unwrap(),
            "a reaped process is never signalled"
        );
        assert!(matches!(
            Pidfd::open_verified(&id).unwrap(),
            Verified::Gone | Verified::Mismatch(_)
        ));
    }
}
