//! The ledger watchdog: a tend process stopped (SIGSTOP by the command it
//! supervises, for instance) while inside a write transaction would hold
//! the SQLite lock for as long as it stays stopped, and every other tend
//! process of the home would fail after the busy timeout — kills included.
//! When a write has waited for half a second, [`install`]'s hook looks at
//! who holds locks on the ledger's files (`/proc/locks`) and continues
//! (SIGCONT, through a pidfd) each holder that is stopped and is a tend
//! process (the same executable), so that it can finish its transaction.
//! Only continuing: a kill that is due is carried out as usual afterwards
//! (see `kill`), however often the command stops its supervisor again.

use std::path::PathBuf;

use tend_proc::{procfs, Pidfd, Sig};

/// Installs the hook, once per process. Call it before opening a ledger.
pub fn install() {
    tend_ledger::on_long_busy(continue_stopped_holders);
}

fn continue_stopped_holders(files: &[PathBuf]) {
    let me = std::process::id() as i32;
    for pid in procfs::lock_holders(files) {
        if pid == me {
            continue;
        }
        let Ok(fd) = Pidfd::open(pid) else { continue };
        // Checked after the pidfd pins the process, so the answer is its own.
        if fd.is_stopped() && procfs::same_executable(pid) {
            let _ = fd.signal(Sig::Cont);
        }
    }
}
