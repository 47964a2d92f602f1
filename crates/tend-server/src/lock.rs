//! One daemon per home (issue 8). Without it a second `tend serve` on the
//! same home started, overwrote `daemon.json` and deleted it when it
//! stopped, so `tend health` said "none running" while the first still
//! served.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use rustix::fs::FlockOperation;
use tend_supervisor::Home;

use crate::Error;

/// An exclusive `flock` on `<home>/daemon.lock`, held for the daemon's
/// lifetime and released by the kernel however the daemon ends (even by
/// SIGKILL), so a stale lock cannot exist. The descriptor is close-on-exec:
/// the supervisors the daemon launches do not inherit it, and a daemon
/// restarted while its executions run gets the lock back. The file holds
/// the holder's pid, for the refusal of a second daemon.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the lock, or says which daemon holds it (its pid, and its
    /// address from `daemon.json`).
    pub fn acquire(home: &Home) -> Result<DaemonLock, Error> {
        let io = |doing| move |source| Error::Io { doing, source };
        home.ensure().map_err(io("preparing tend's home"))?;
        let path = home.root().join("daemon.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // Never through a symbolic link, never waiting on a FIFO.
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW.bits() | rustix::fs::OFlags::NONBLOCK.bits()) as i32,
            )
            .open(&path)
            .map_err(io("opening the daemon lock file"))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(io("opening the daemon lock file")(std::io::Error::other(
                format!("{} is not a regular file; remove it", path.display()),
            )));
        }
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(Error::AlreadyRunning(running(home)));
            }
            Err(e) => return Err(io("locking the daemon lock file")(e.into())),
        }
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(io("writing the daemon lock file"))?;
        Ok(DaemonLock { _file: file })
    }
}

/// One sentence naming the daemon that holds the lock.
fn running(home: &Home) -> String {
    let root = home.root();
    let pid = tend_supervisor::read_small(&root.join("daemon.lock"))
        .ok()
        .and_then(|t| {
            let t = String::from_utf8_lossy(&t);
            t.split_whitespace().next()?.parse::<u32>().ok()
        });
    let recorded: Option<serde_json::Value> =
        tend_supervisor::read_small(&root.join("daemon.json"))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok());
    // daemon.json may be a dead daemon's; trust its address only when it
    // names the pid that holds the lock.
    let listen = recorded
        .filter(|v| pid.is_some_and(|p| v["pid"].as_u64() == Some(u64::from(p))))
        .and_then(|v| v["listen"].as_str().map(str::to_string));
    let who = match (pid, listen) {
        (Some(p), Some(l)) => format!("pid {p}, listening on {l}"),
        (Some(p), None) => format!("pid {p}, still starting"),
        _ => "still starting".to_string(),
    };
    format!(
        "another tend serve ({who}) already serves the home {}; stop it first, or give this one another TEND_HOME",
        root.display()
    )
}

/// What the lock file of a daemon tend started by itself says after its pid.
const STARTED_BY_TEND: &str = "started-by-tend";

/// How long a replacing daemon waits for the one it replaces to let go.
const REPLACE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

impl DaemonLock {
    /// Says in the lock file that tend started this daemon by itself, so
    /// that a `tend serve` started later replaces it.
    pub fn mark_started_by_tend(&mut self) -> Result<(), Error> {
        use std::io::Seek;
        self._file
            .set_len(0)
            .and_then(|()| self._file.rewind())
            .and_then(|()| write!(self._file, "{} {STARTED_BY_TEND}", std::process::id()))
            .map_err(|source| Error::Io {
                doing: "writing the daemon lock file",
                source,
            })
    }

    /// Takes the lock; when another daemon holds it and `replace` is asked
    /// for, or that daemon was started by tend itself (its lock file says
    /// so), stops it with SIGTERM (through a pidfd on the lock's holder,
    /// checked to hold it once the pidfd pins it, so a recycled PID is never
    /// signalled) and takes the lock the moment it is free, so that the
    /// home's lease is renewed again without a gap its TTL would notice.
    pub fn acquire_or_replace(home: &Home, replace: bool) -> Result<DaemonLock, Error> {
        let refused = match DaemonLock::acquire(home) {
            Err(Error::AlreadyRunning(why)) => why,
            other => return other,
        };
        let lock = [home.root().join("daemon.lock")];
        let Some(&pid) = tend_proc::procfs::lock_holders(&lock).first() else {
            return Err(Error::AlreadyRunning(refused));
        };
        let auto = tend_supervisor::read_small(&lock[0])
            .is_ok_and(|t| String::from_utf8_lossy(&t).contains(STARTED_BY_TEND));
        if !(replace || auto) {
            return Err(Error::AlreadyRunning(refused));
        }
        match tend_proc::Pidfd::open(pid) {
            Ok(fd) if tend_proc::procfs::lock_holders(&lock).contains(&pid) => {
                tracing::info!(pid, "replacing this home's daemon");
                let _ = fd.signal(tend_proc::Sig::Term);
            }
            _ => return Err(Error::AlreadyRunning(refused)),
        }
        let deadline = std::time::Instant::now() + REPLACE_WITHIN;
        loop {
            match DaemonLock::acquire(home) {
                Err(Error::AlreadyRunning(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }
}
