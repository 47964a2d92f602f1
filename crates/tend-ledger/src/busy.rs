//! Waiting for a busy SQLite ledger, with a way out when the writer that
//! holds the lock cannot finish: SQLite's own busy timeout, plus a hook the
//! process layer installs ([`on_long_busy`]) that is called with the
//! ledger files once a wait has lasted [`LONG_BUSY`].
//!
//! A supervisor is a process its command may signal: a command that sends
//! it SIGSTOP while it is inside a write transaction would otherwise lock
//! every other tend process of the home out of the ledger for as long as it
//! likes. The ledger never looks at processes itself; the hook (see
//! `tend_supervisor::ledger_watchdog`) does.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a write waits before the hook is asked to look.
pub const LONG_BUSY: Duration = Duration::from_millis(500);

static HOOK: OnceLock<fn(&[PathBuf])> = OnceLock::new();
static FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static TIMEOUT_MS: OnceLock<u64> = OnceLock::new();

thread_local! {
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    static LOOKED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Installs the hook called, with the files of every ledger this process
/// opened, when a write has waited [`LONG_BUSY`] (and again every
/// [`LONG_BUSY`] after). The first caller wins.
pub fn on_long_busy(hook: fn(&[PathBuf])) {
    let _ = HOOK.set(hook);
}

/// Remembers a ledger file (and its WAL and shared-memory files, where
/// SQLite takes its locks) for the hook, and the wait's limit.
pub(crate) fn watch(db: &std::path::Path, timeout: Duration) {
    let _ = TIMEOUT_MS.set(timeout.as_millis() as u64);
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

/// SQLite's busy handler: `true` to try again. Sleeps a little more each
/// time (up to 20 ms), gives up after the busy timeout, and asks the hook
/// to look once the wait is long.
pub(crate) fn handler(count: i32) -> bool {
    let now = Instant::now();
    if count == 0 {
        SINCE.with(|s| s.set(Some(now)));
        LOOKED.with(|s| s.set(None));
    }
    let since = SINCE.with(|s| s.get()).unwrap_or(now);
    let limit = Duration::from_millis(*TIMEOUT_MS.get().unwrap_or(&30_000));
    if now.duration_since(since) >= limit {
        return false;
    }
    let last = LOOKED.with(|s| s.get()).unwrap_or(since);
    if now.duration_since(last) >= LONG_BUSY {
        LOOKED.with(|s| s.set(Some(now)));
        if let Some(hook) = HOOK.get() {
            let files = FILES.lock().unwrap_or_else(|e| e.into_inner()).clone();
            hook(&files);
        }
    }
    std::thread::sleep(
        Duration::from_millis(1 << count.clamp(0, 4)).min(Duration::from_millis(20)),
    );
    true
}
