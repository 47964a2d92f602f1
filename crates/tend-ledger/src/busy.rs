//! Waiting for a busy SQLite ledger, with a way out when the writer that
//! holds the lock cannot finish: SQLite's own busy timeout, taken in steps
//! of [`LONG_BUSY`], and after each step a hook the process layer installs
//! ([`on_long_busy`]), called with the ledger files.
//!
//! A supervisor is a process its command may signal: a command that sends
//! it SIGSTOP while it is inside a write transaction would otherwise lock
//! every other tend process of the home out of the ledger for as long as it
//! likes. The ledger never looks at processes itself; the hook (see
//! `tend_supervisor::ledger_watchdog`) does.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a write waits before the hook is asked to look.
pub const LONG_BUSY: Duration = Duration::from_millis(500);

static HOOK: OnceLock<fn(&[PathBuf])> = OnceLock::new();
static FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Installs the hook called, with the files of every ledger this process
/// opened, each time a write has waited another [`LONG_BUSY`] for the lock.
/// The first caller wins.
pub fn on_long_busy(hook: fn(&[PathBuf])) {
    let _ = HOOK.set(hook);
}

/// Remembers a ledger file (and its WAL and shared-memory files, where
/// SQLite takes its locks) for the hook.
pub(crate) fn watch(db: &std::path::Path) {
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    if files.iter().any(|f| f == db) {
        return;
    }
    files.push(db.to_path_buf());
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        files.push(PathBuf::from(p));
    }
}

/// A write has waited [`LONG_BUSY`] more: let the hook look.
pub(crate) fn long_busy() {
    if let Some(hook) = HOOK.get() {
        let files = FILES.lock().unwrap_or_else(|e| e.into_inner()).clone();
        hook(&files);
    }
}
