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
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in procfs::pids() {
        if let Ok(st) = procfs::stat(pid) {
            if st.state != 'Z' && st.state != 'X' {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                out.push(k);
                stack.push(k);
            }
        }
    }
    out
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
