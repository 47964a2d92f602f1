//! Where one ledger's files live: the database, the logs, and the notify
//! files that wake waiters.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::notify::{FileNotifier, Notifier};

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

/// The folder of a ledger's files (`TEND_HOME`), and the [`Notifier`]
/// through which its transitions are announced and waited for: whoever
/// commits a transition (created, started, terminal) announces it right
/// after, and waiters and the daemon subscribe instead of polling the
/// database: [`FileNotifier`] on the home's `notify/`, and on a shared
/// ledger LISTEN too ([`Home::listening`]).
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
    /// The agent, once this process has read it (it cannot change while
    /// the process runs: a copy is recognised by the first look).
    agent: Arc<std::sync::OnceLock<Agent>>,
    notifier: Arc<dyn Notifier>,
}

impl Home {
    /// A home at `root`; nothing is created until [`Home::ensure`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Home {
            notifier: Arc::new(FileNotifier::new(root.join("notify"))),
            root,
            agent: Default::default(),
        }
    }

    /// This home, hearing every host of a shared ledger: on a PostgreSQL
    /// `store` its notifier is a [`ListeningNotifier`](crate::ListeningNotifier)
    /// (the home's files, and LISTEN), so that waiters wake when another
    /// host ends an execution and the daemon hears kill requests for its
    /// agent. Only for processes that are no supervisor: a subscription
    /// starts a thread. A supervisor keeps [`Home::new`]'s files, since the
    /// ledger's triggers announce its transitions to other hosts.
    pub fn listening(mut self, store: &tend_ledger::Store) -> Home {
        if let tend_ledger::Store::Postgres(url) = store {
            let files = FileNotifier::new(self.notify_dir());
            self.notifier = Arc::new(crate::ListeningNotifier::new(files, url.as_str()));
        }
        self
    }

    /// Creates the folders (mode 0700: logs may hold secrets) and checks
    /// that they are the user's own ([`Home::check_owner`]) and writable,
    /// so that a bad `TEND_HOME` is reported before anything is recorded.
    pub fn ensure(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        self.check_owner()?;
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

    /// Refuses a home that another user made or can change: its folder must
    /// belong to the effective user and be writable by nobody else. Whoever
    /// controls a home's files controls what tend does with them (the API
    /// token the daemon accepts, the processes a kill signals), so a home
    /// prepared by another user (`TEND_HOME=/tmp/tend`) would hand them
    /// this user's rights. A home that cannot be looked at passes (it does
    /// not exist yet, and [`Home::ensure`] creates it 0700, or making it
    /// fails and says why). The error is one sentence that says what is
    /// wrong and how to fix it.
    pub fn check_owner(&self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = fs::metadata(&self.root) else {
            return Ok(());
        };
        let me = rustix::process::geteuid().as_raw();
        let path = self.root.display();
        let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
        if m.uid() != me {
            return refuse(format!(
                "the home {path} belongs to user {} and not to you (user {me}), so another user could have prepared its files; set TEND_HOME to a folder of your own",
                m.uid()
            ));
        }
        if m.mode() & 0o022 != 0 {
            let who = if m.mode() & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            };
            // A shared folder (sticky, like /tmp) is not to be chmod'ed:
            // only a folder of tend's own is.
            if m.mode() & 0o1000 != 0 {
                return refuse(format!(
                    "the home {path} is a folder every user shares (mode {:04o}); set TEND_HOME to a folder of your own inside it, like {path}/tend-$USER",
                    m.mode() & 0o7777
                ));
            }
            return refuse(format!(
                "the home {path} can be changed by {who} (mode {:04o}); run chmod 700 {path}, or set TEND_HOME to another folder",
                m.mode() & 0o7777
            ));
        }
        Ok(())
    }

    /// This home's agent id, made on first use. A home whose folder is not
    /// the one its id was made for (device and inode differ) is a copy: it
    /// takes a new id, so that it never signals a process or nudges a
    /// supervisor of the original, and says so through
    /// [`Agent::copied_from`]. On a read-only home the id is only read.
    pub fn agent(&self) -> io::Result<Agent> {
        if let Some(a) = self.agent.get() {
            return Ok(a.clone());
        }
        let a = self.read_agent()?;
        Ok(self.agent.get_or_init(|| a).clone())
    }

    fn read_agent(&self) -> io::Result<Agent> {
        use std::io::{Seek, Write};
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
            .custom_flags(SAFE_OPEN)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(not_regular(&path));
            }
            Err(_) => {
                let rec: AgentFile = serde_json::from_slice(&read_small(&path)?)?;
                return Ok(Agent {
                    id: rec.agent_id,
                    copied_from: None,
                });
            }
        };
        if !f.metadata()?.is_file() {
            return Err(not_regular(&path));
        }
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        let text = read_capped(&mut f, &path)?;
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

    /// Folder of the runs' workspaces (`--workspace`), one per execution id.
    pub fn workspaces_dir(&self) -> PathBuf {
        self.root.join("workspaces")
    }

    /// Folder of notification files ([`FileNotifier`]'s).
    pub fn notify_dir(&self) -> PathBuf {
        self.root.join("notify")
    }

    /// Where this home's transitions are announced and waited for: every
    /// committer, waiter and watcher goes through it, so that another
    /// ledger backend changes only what this returns.
    pub fn notifier(&self) -> &dyn Notifier {
        &*self.notifier
    }
}

/// The most tend reads of one of the small files of a home (`agent.json`,
/// `daemon.json`, `daemon.lock`, `token`): far more than it ever writes
/// there, and little enough to hold in memory whatever put the file there.
pub const SMALL_FILE_MAX: u64 = 64 << 10;

/// Opening flags for a home's small files: a symbolic link is refused
/// (`ELOOP`) rather than followed to `/dev/zero` or another user's file,
/// and a FIFO opens without waiting for a writer.
const SAFE_OPEN: i32 =
    (rustix::fs::OFlags::NOFOLLOW.bits() | rustix::fs::OFlags::NONBLOCK.bits()) as i32;

/// Reads one of a home's small files, but only if it is a regular file
/// (not a symbolic link, a FIFO or a device) of at most
/// [`SMALL_FILE_MAX`] bytes; anything else is an error of one sentence
/// naming the file. A missing file is an error of kind
/// [`io::ErrorKind::NotFound`], as with [`fs::read`].
pub fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    Ok(open_small(path)?.1)
}

/// Like [`read_small`], and also returns the file's metadata (its owner
/// and mode, for a file that must be private).
pub fn open_small(path: &Path) -> io::Result<(fs::Metadata, Vec<u8>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(SAFE_OPEN)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(not_regular(path));
        }
        Err(e) => return Err(e),
    };
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(not_regular(path));
    }
    Ok((m, read_capped(&mut f, path)?))
}

/// At most [`SMALL_FILE_MAX`] bytes of `f`, or an error naming `path`.
fn read_capped(f: &mut fs::File, path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::new();
    f.take(SMALL_FILE_MAX + 1).read_to_end(&mut text)?;
    if text.len() as u64 > SMALL_FILE_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than {} KiB, more than tend ever writes there; remove it",
                path.display(),
                SMALL_FILE_MAX >> 10
            ),
        ));
    }
    Ok(text)
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is not a regular file (a symbolic link, a FIFO or a device), which tend never makes; remove it",
            path.display()
        ),
    )
}

/// 16 hex digits from the kernel's random source.
fn random_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the kernel's random source is always available on Linux");
    format!("{:016x}", u64::from_le_bytes(b))
}
