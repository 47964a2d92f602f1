//! Where one ledger's files live: the database, the logs, and the exit
//! files that wake waiters.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tend_model::{ExecutionId, Status};

/// This home's agent, as [`Home::agent`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Random, made with the home and kept in it (`agent.json`); recorded
    /// on every execution launched from the home and carried by its
    /// processes as `TEND_AGENT_ID`.
    pub id: String,
    /// Set when this call found the home to be a copy of another (a
    /// restored backup, a baked image, `cp -a`): the original's agent id.
    /// The copy has just taken an id of its own.
    pub copied_from: Option<String>,
}

/// What `agent.json` holds: the id, and the identity of the folder it was
/// made for, which a copy does not share.
#[derive(Serialize, Deserialize)]
struct AgentFile {
    agent_id: String,
    home: String,
}

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

    /// This home's agent id, made on first use. A home whose folder is not
    /// the one its id was made for (device and inode differ) is a copy: it
    /// takes a new id, so that it never signals a process or nudges a
    /// supervisor of the original, and says so through
    /// [`Agent::copied_from`]. On a read-only home the id is only read.
    pub fn agent(&self) -> io::Result<Agent> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = self.root.join("agent.json");
        let m = fs::metadata(&self.root)?;
        let me = format!("{}:{}", m.dev(), m.ino());
        let mut f = match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(_) => {
                let rec: AgentFile = serde_json::from_slice(&fs::read(&path)?)?;
                return Ok(Agent {
                    id: rec.agent_id,
                    copied_from: None,
                });
            }
        };
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        let mut text = Vec::new();
        f.read_to_end(&mut text)?;
        let found: Option<AgentFile> = serde_json::from_slice(&text).ok();
        if let Some(rec) = found.as_ref().filter(|r| r.home == me) {
            return Ok(Agent {
                id: rec.agent_id.clone(),
                copied_from: None,
            });
        }
        let rec = AgentFile {
            agent_id: random_id(),
            home: me,
        };
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(&serde_json::to_vec(&rec)?)?;
        f.sync_all()?;
        Ok(Agent {
            id: rec.agent_id,
            copied_from: found.map(|r| r.agent_id),
        })
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

/// 16 hex digits from the kernel's random source.
fn random_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the kernel's random source is always available on Linux");
    format!("{:016x}", u64::from_le_bytes(b))
}
