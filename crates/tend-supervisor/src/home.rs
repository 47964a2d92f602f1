//! Where one ledger's files live: the database, the logs, and the exit
//! files that wake waiters.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tend_model::{ExecutionId, Status};

/// The folder of a ledger's files (`TEND_HOME`). Notification files go in
/// `notify/`: whoever commits a transition (created, started, terminal)
/// writes `notify/<id>` right after, and waiters and the daemon watch that
/// folder with inotify instead of polling the database (SQLite has no
/// cross-process notification).
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home at `root`; nothing is created until [`Home::ensure`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// Creates the folders (mode 0700: logs may hold secrets) and checks
    /// that they are writable, so that a bad `TEND_HOME` is reported before
    /// anything is recorded.
    pub fn ensure(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in [self.root.clone(), self.logs_dir(), self.notify_dir()] {
            if !dir.is_dir() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)?;
            }
        }
        // access(2) answers for read-only file systems too (EROFS), without
        // creating a file on every command.
        rustix::fs::access(&self.root, rustix::fs::Access::WRITE_OK).map_err(io::Error::from)
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The default SQLite ledger file.
    pub fn default_db(&self) -> PathBuf {
        self.root.join("tend.db")
    }

    /// Folder of stdout/stderr files.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Folder of notification files.
    pub fn notify_dir(&self) -> PathBuf {
        self.root.join("notify")
    }

    /// Announces that `id` changed status. Written atomically (temp file +
    /// rename, which raises one `IN_MOVED_TO`) so a watcher never reads half
    /// a file; failure is harmless to correctness (waiters also watch the
    /// supervisor's pidfd, and the daemon reconciles on a slow timer).
    pub fn announce(&self, id: &ExecutionId, status: Status) {
        let dir = self.notify_dir();
        let tmp = dir.join(format!(".{id}.tmp"));
        if fs::write(&tmp, status.as_str()).is_ok() {
            let _ = fs::rename(&tmp, dir.join(id.as_str()));
        }
    }
}
