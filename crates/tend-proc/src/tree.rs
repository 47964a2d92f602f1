//! Finding and signalling every descendant of a process.
//!
//! The supervisor is a child subreaper, so every process its command ever
//! started — including ones that called `setsid` or double-forked — stays
//! its descendant until it exits. Walking the parent links in `/proc` from
//! the supervisor therefore finds the whole tree, where `killpg` would miss
//! everything that left the process group.

use std::collections::HashMap;

use crate::{procfs, Pidfd, Sig};

/// PIDs of every live (non-zombie) descendant of `root`, parents first.
pub fn descendants(root: i32) -> Vec<i32> {
    Snapshot::take()
        .descendants(root)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// The process table at one moment: every live process's stat, by parent.
/// Take one and ask it about many roots, rather than re-reading `/proc`
/// once per root.
#[derive(Debug, Default)]
pub struct Snapshot {
    children: HashMap<i32, Vec<(i32, procfs::Stat)>>,
}

impl Snapshot {
    /// Reads `/proc` once.
    pub fn take() -> Snapshot {
        let mut children: HashMap<i32, Vec<(i32, procfs::Stat)>> = HashMap::new();
        for pid in procfs::pids() {
            if let Ok(st) = procfs::stat(pid) {
                if st.state != 'Z' && st.state != 'X' {
                    children.entry(st.ppid).or_default().push((pid, st));
                }
            }
        }
        Snapshot { children }
    }

    /// Every live descendant of `root` with its stat, parents first.
    pub fn descendants(&self, root: i32) -> Vec<(i32, procfs::Stat)> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(p) = stack.pop() {
            if let Some(kids) = self.children.get(&p) {
                for &(k, st) in kids {
                    out.push((k, st));
                    stack.push(k);
                }
            }
        }
        out
    }
}

/// Opens a pidfd on each live descendant of `root` and confirms, after it
/// is open, that the process is still in the tree (so a PID reused between
/// the walk and the open is never taken for a descendant).
pub fn open_descendants(root: i32) -> Vec<Pidfd> {
    let mut out = Vec::new();
    for pid in descendants(root) {
        let Ok(fd) = Pidfd::open(pid) else { continue };
        if still_below(pid, root) && fd.is_alive() {
            out.push(fd);
        }
    }
    out
}

fn still_below(mut pid: i32, root: i32) -> bool {
    for _ in 0..4096 {
        match procfs::stat(pid) {
            Ok(st) if st.ppid == root => return true,
            Ok(st) if st.ppid <= 1 => return false,
            Ok(st) => pid = st.ppid,
            Err(_) => return false,
        }
    }
    false
}

/// Sends `sig` (and SIGCONT after SIGTERM, so stopped processes can act on
/// it) to every process in `fds`. Returns how many were still alive to
/// receive it.
pub fn signal_all(fds: &[Pidfd], sig: Sig) -> u32 {
    let mut n = 0;
    for fd in fds {
        if let Ok(true) = fd.signal(sig) {
            n += 1;
            if sig == Sig::Term {
                let _ = fd.signal(Sig::Cont);
            }
        }
    }
    n
}

/// Which marked processes to find: those whose initial environment has
/// `must` (a variable and its value), does not have another value of
/// `must_not_differ` (absent is fine), and names something in `key`. The
/// caller names the variables; this crate knows nothing of what they mean.
#[derive(Clone, Copy, Debug)]
pub struct Markers<'a> {
    /// A variable and the value it must have.
    pub must: (&'a str, &'a str),
    /// A variable that, when present, must have this value.
    pub must_not_differ: Option<(&'a str, &'a str)>,
    /// The variable whose value is returned with each process.
    pub key: &'a str,
}

/// Every live process that carries `markers` (see [`Markers`]), with the
/// value of its key variable, each pinned by a pidfd that was opened
/// *before* its environment was read (so the marker read belongs to the
/// pinned process, or the pidfd reports it gone). The caller's own process
/// is never included.
pub fn marked(markers: &Markers<'_>) -> Vec<(Pidfd, String)> {
    let (must, value) = markers.must;
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for pid in procfs::pids() {
        if pid == me {
            continue;
        }
        let Ok(fd) = Pidfd::open(pid) else { continue };
        if procfs::environ_var(pid, must).as_deref() != Some(value) {
            continue;
        }
        let Some(id) = procfs::environ_var(pid, markers.key) else {
            continue;
        };
        if let Some((var, want)) = markers.must_not_differ {
            if procfs::environ_var(pid, var).is_some_and(|m| m != want) {
                continue;
            }
        }
        if fd.is_alive() && procfs::stat(pid).is_ok_and(|s| s.state != 'Z') {
            out.push((fd, id));
        }
    }
    out
}

/// How [`terminate`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminated {
    /// Processes that were alive to receive SIGTERM (or SIGKILL when forced).
    pub signalled: u32,
    /// Whether anything was still alive after the grace and got SIGKILL.
    pub forced: bool,
    /// Processes still present after SIGKILL and the final wait (stuck in
    /// uninterruptible sleep); reported, never forgotten.
    pub remaining: u32,
}

/// Graceful, then certain: SIGTERM and SIGCONT to every process, up to
/// `grace` for them to leave (woken by their pidfds, not a sleep loop),
/// then SIGKILL to the rest and up to `settle` for them to disappear.
/// `grace` of zero means SIGKILL at once.
pub fn terminate(
    fds: &[Pidfd],
    grace: std::time::Duration,
    settle: std::time::Duration,
) -> Terminated {
    let mut signalled = 0;
    if !grace.is_zero() {
        signalled = signal_all(fds, Sig::Term);
        wait_all(fds, grace);
    }
    let alive: Vec<&Pidfd> = fds.iter().filter(|f| f.is_alive()).collect();
    let forced = !alive.is_empty();
    for fd in &alive {
        if let Ok(true) = fd.signal(Sig::Kill) {
            if grace.is_zero() {
                signalled += 1;
            }
        }
    }
    wait_all(fds, settle);
    let remaining = fds.iter().filter(|f| f.is_alive()).count() as u32;
    Terminated {
        signalled,
        forced,
        remaining,
    }
}

/// Waits until every pidfd reports exit or `limit` passes.
pub fn wait_all(fds: &[Pidfd], limit: std::time::Duration) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = std::time::Instant::now() + limit;
    loop {
        let alive: Vec<&Pidfd> = fds.iter().filter(|f| f.is_alive()).collect();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if alive.is_empty() || left.is_zero() {
            return;
        }
        let mut polls: Vec<PollFd<'_>> = alive
            .iter()
            .map(|f| PollFd::new(*f, PollFlags::IN))
            .collect();
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let _ = poll(&mut polls, Some(&ts));
    }
}
