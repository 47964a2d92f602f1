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
        .and_then(|t| String::from_utf8_lossy(&t).trim().parse::<u32>().ok());
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

/// How long a replacing daemon waits for the one it replaces to let go.
const REPLACE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

impl DaemonLock {
    /// Takes the lock; when another daemon holds it and `replace` is asked
    /// for, or that daemon was started by tend itself (its daemon file
    /// says so), stops it with SIGTERM (through a pidfd verified against
    /// its recorded identity) and takes the lock the moment it is free, so
    /// that the home's lease is renewed again without a gap its TTL would
    /// notice.
    pub fn acquire_or_replace(home: &Home, replace: bool) -> Result<DaemonLock, Error> {
        let refused = match DaemonLock::acquire(home) {
            Err(Error::AlreadyRunning(why)) => why,
            other => return other,
        };
        let recorded = tend_supervisor::read_small(&home.root().join("daemon.json"))
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok());
        let auto = recorded
            .as_ref()
            .is_some_and(|v| v["started_by_tend"] == serde_json::json!(true));
        let Some(holder) = recorded
            .as_ref()
            .and_then(identity)
            .filter(|_| replace || auto)
        else {
            return Err(Error::AlreadyRunning(refused));
        };
        let lock = [home.root().join("daemon.lock")];
        let held = tend_proc::procfs::lock_holders(&lock).contains(&holder.pid);
        match tend_proc::Pidfd::open_verified(&holder) {
            Ok(tend_proc::Verified::Alive(fd)) if held => {
                tracing::info!(pid = holder.pid, "replacing this home's daemon");
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

/// The process identity a daemon file records.
fn identity(v: &serde_json::Value) -> Option<tend_model::ProcessIdentity> {
    Some(tend_model::ProcessIdentity {
        boot_id: v["boot_id"].as_str()?.to_string(),
        pid: i32::try_from(v["pid"].as_i64()?).ok()?,
        start_time: v["start_time"].as_u64()?,
        pidfd_ino: v["pidfd_ino"].as_u64(),
    })
}
