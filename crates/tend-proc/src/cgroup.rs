//! The `cgroup` containment tier: one cgroup v2 per execution.
//!
//! The cgroup2 mount is found through `/proc/self/mountinfo` (on hybrid
//! hosts it is not at `/sys/fs/cgroup`), and the caller's own cgroup through
//! the `0::` line of `/proc/self/cgroup`; executions go in
//! `<mount><own cgroup>/tend/<ledger id>/<execution id>`. The command joins
//! its cgroup before `exec` (a write of `0` to a pre-opened `cgroup.procs`),
//! so nothing it runs is ever outside it, and the end is `cgroup.kill`,
//! which also kills processes forked while it runs.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Pidfd;

/// Why the cgroup tier cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the cgroup2 hierarchy is mounted, if anywhere.
pub fn mount_point() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// The calling process's cgroup v2 path, relative to the mount.
pub fn own_path() -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

/// The folder that holds one ledger's execution cgroups, created (and
/// tested with a probe cgroup that must offer `cgroup.kill`) on first use.
pub fn ledger_parent(ledger: &str) -> Result<PathBuf, Unavailable> {
    let mount =
        mount_point().ok_or_else(|| Unavailable("no cgroup2 hierarchy is mounted".into()))?;
    let own = own_path().ok_or_else(|| Unavailable("this process is in no cgroup v2".into()))?;
    let base = mount
        .join(own.trim_start_matches('/'))
        .join("tend")
        .join(ledger);
    fs::create_dir_all(&base).map_err(|e| {
        Unavailable(format!(
            "cannot create {} ({e}); run as root or in a delegated cgroup",
            base.display()
        ))
    })?;
    if !base.join("cgroup.procs").exists() {
        return Err(Unavailable(format!(
            "{} is not a cgroup v2 folder",
            base.display()
        )));
    }
    if !base.join("cgroup.kill").exists() {
        return Err(Unavailable(
            "this kernel has no cgroup.kill (needs Linux 5.14)".into(),
        ));
    }
    // Executions get the memory controller where it is delegated, so that
    // the kernel can enforce `--max-memory`; where it is not, nothing
    // changes (the limit is sampled).
    for dir in [base.parent().unwrap_or(&base), base.as_path()] {
        if offers(dir, "memory") && !enabled(dir, "memory") {
            let _ = fs::write(dir.join("cgroup.subtree_control"), "+memory");
        }
    }
    Ok(base)
}

/// One execution's cgroup.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    procs: Option<OwnedFd>,
}

impl Cgroup {
    /// Creates `parent/name` and opens its `cgroup.procs` for the child to
    /// join through.
    pub fn create(parent: &Path, name: &str) -> io::Result<Cgroup> {
        let path = parent.join(name);
        if let Err(e) = fs::create_dir(&path) {
            // The last execution of the ledger may have just removed the
            // (then empty) parent: make it again and retry once.
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            fs::create_dir_all(parent)?;
            fs::create_dir(&path)?;
        }
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))?;
        Ok(Cgroup {
            path,
            procs: Some(procs.into()),
        })
    }

    /// An existing cgroup (to end or remove it).
    pub fn at(path: impl Into<PathBuf>) -> Cgroup {
        Cgroup {
            path: path.into(),
            procs: None,
        }
    }

    /// Its folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `cmd` join this cgroup before `exec`. Must be called before
    /// any other pre-exec setup so that nothing runs outside it.
    #[allow(unsafe_code)] // pre_exec
    pub fn join_before_exec(&self, cmd: &mut Command) {
        let fd = self
            .procs
            .as_ref()
            .expect("created cgroups keep cgroup.procs open")
            .as_raw_fd();
        // SAFETY: write(2) of a constant buffer to an fd that stays open for
        // the lifetime of `self` (which outlives the spawn) is
        // async-signal-safe; nothing is allocated or locked.
        unsafe {
            cmd.pre_exec(move || {
                let zero = b"0";
                if libc::write(fd, zero.as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// PIDs in the cgroup and its children.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        collect(&self.path, &mut out);
        out
    }

    /// Pidfds of its members, each confirmed (after opening) to still be in
    /// this cgroup, so that a PID reused in between is never included.
    pub fn open_members(&self) -> Vec<Pidfd> {
        let rel = self.relative();
        self.pids()
            .into_iter()
            .filter_map(|pid| {
                let fd = Pidfd::open(pid).ok()?;
                let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
                let inside = cg
                    .lines()
                    .filter_map(|l| l.strip_prefix("0::"))
                    .any(|p| rel.as_deref().is_some_and(|r| p.trim().starts_with(r)));
                (inside && fd.is_alive()).then_some(fd)
            })
            .collect()
    }

    fn relative(&self) -> Option<String> {
        let mount = mount_point()?;
        let rel = self.path.strip_prefix(&mount).ok()?;
        Some(format!("/{}", rel.display()))
    }

    /// CPU time used by every process that was ever in it, exited ones
    /// too (`usage_usec` in `cpu.stat`, which needs no controller).
    pub fn cpu_usage(&self) -> Option<std::time::Duration> {
        let text = std::fs::read_to_string(self.path.join("cpu.stat")).ok()?;
        let usec = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        Some(std::time::Duration::from_micros(usec))
    }

    /// Lets the kernel enforce a memory limit on the whole tree
    /// (`memory.max`), when this cgroup has the memory controller. Returns
    /// whether it does; without it, the caller samples instead.
    pub fn limit_memory(&self, bytes: u64) -> io::Result<bool> {
        let max = self.path.join("memory.max");
        if !max.exists() {
            return Ok(false);
        }
        fs::OpenOptions::new()
            .write(true)
            .open(max)?
            .write_all(bytes.to_string().as_bytes())?;
        Ok(true)
    }

    /// How many processes the kernel's OOM killer ended in it for its
    /// `memory.max` (`oom_kill` in `memory.events`); 0 without the
    /// controller.
    pub fn oom_kills(&self) -> u64 {
        fs::read_to_string(self.path.join("memory.events"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// True while any process is in it (`populated 1` in `cgroup.events`).
    pub fn populated(&self) -> bool {
        fs::read_to_string(self.path.join("cgroup.events"))
            .map(|s| s.lines().any(|l| l.trim() == "populated 1"))
            .unwrap_or(false)
    }

    /// SIGKILLs every process in it, including ones forked meanwhile.
    pub fn kill(&self) -> io::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.kill"))?
            .write_all(b"1")
    }

    /// Removes the (empty) cgroup folder; a missing one is fine. The
    /// ledger's folder above it goes too once it holds no execution (rmdir
    /// fails harmlessly while a sibling exists), so nothing accumulates.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => {
                if let Some(ledger_dir) = self.path.parent() {
                    if fs::remove_dir(ledger_dir).is_ok() {
                        if let Some(tend_dir) = ledger_dir.parent() {
                            let _ = fs::remove_dir(tend_dir);
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Whether executions under `parent` (a [`ledger_parent`]) get the memory
/// controller, so that the kernel can enforce `--max-memory`.
pub fn memory_enforced(parent: &Path) -> bool {
    enabled(parent, "memory")
}

/// Whether `dir`'s cgroup has `controller` available.
fn offers(dir: &Path, controller: &str) -> bool {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .is_ok_and(|t| t.split_whitespace().any(|c| c == controller))
}

/// Whether `dir` hands `controller` down to its children.
fn enabled(dir: &Path, controller: &str) -> bool {
    fs::read_to_string(dir.join("cgroup.subtree_control"))
        .is_ok_and(|t| t.split_whitespace().any(|c| c == controller))
}

fn collect(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&e.path(), out);
            }
        }
    }
}
