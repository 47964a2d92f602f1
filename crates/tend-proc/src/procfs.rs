//! Readers for the few `/proc` files tend needs, parsed by hand: each is a
//! line or two, and a parser here is shorter than a dependency's API.

use std::fs;
use std::io;
use std::path::PathBuf;

/// The fields of `/proc/PID/stat` that tend uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// One-letter state (`R`, `S`, `D`, `Z`, `T`, …).
    pub state: char,
    /// Parent PID.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session.
    pub session: i32,
    /// User-mode CPU time in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time in clock ticks.
    pub stime: u64,
    /// CPU time of its children that it waited for (and of theirs), in
    /// clock ticks: what exited processes of a tree leave behind.
    pub children_ticks: u64,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Reads `/proc/PID/stat`. NotFound when there is no such process.
pub fn stat(pid: i32) -> io::Result<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// Parses the text of a stat file. The command name may contain spaces and
/// parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> io::Result<Stat> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat line");
    let rest = &text[text.rfind(')').ok_or_else(bad)? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, so index 0 here.
    let num =
        |i: usize| -> io::Result<u64> { f.get(i).ok_or_else(bad)?.parse().map_err(|_| bad()) };
    let int =
        |i: usize| -> io::Result<i32> { f.get(i).ok_or_else(bad)?.parse().map_err(|_| bad()) };
    Ok(Stat {
        state: f.first().and_then(|s| s.chars().next()).ok_or_else(bad)?,
        ppid: int(1)?,
        pgrp: int(2)?,
        session: int(3)?,
        utime: num(11)?,
        stime: num(12)?,
        children_ticks: num(13)? + num(14)?,
        start_time: num(19)?,
        rss_pages: num(21)?,
    })
}

/// This boot's id. `TEND_BOOT_ID_FILE` points it elsewhere, so that tests
/// can simulate a reboot without one.
///
/// Read once per process: it cannot change while the process lives, and
/// reconciling checks it for every live execution.
pub fn boot_id() -> io::Result<String> {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return Ok(id.clone());
    }
    let path = std::env::var_os("TEND_BOOT_ID_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/sys/kernel/random/boot_id"));
    let id = fs::read_to_string(path)?.trim().to_string();
    Ok(BOOT_ID.get_or_init(|| id).clone())
}

/// The host name, as the kernel knows it.
pub fn hostname() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string())
    })
    .clone()
}

/// Every PID in `/proc` right now.
pub fn pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The value of `name` in the *initial* environment of `pid` (what it was
/// exec'd with). `None` if unset or unreadable (other user, not dumpable).
pub fn environ_var(pid: i32, name: &str) -> Option<String> {
    let data = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    data.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The peak resident set size (`VmHWM` of `/proc/PID/status`), in bytes.
pub fn peak_rss(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The processes holding a POSIX or flock lock on any of `files`, from
/// `/proc/locks` (whose device is `MAJOR:MINOR` in hex and inode in
/// decimal). Open-file-description locks name no process and are skipped.
pub fn lock_holders(files: &[PathBuf]) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let ids: Vec<String> = files
        .iter()
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| {
            let dev = m.dev();
            let (maj, min) = (rustix::fs::major(dev), rustix::fs::minor(dev));
            format!("{maj:02x}:{min:02x}:{}", m.ino())
        })
        .collect();
    let text = fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut pids: Vec<i32> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
            let (pid, id) = (f.get(4)?, f.get(5)?);
            ids.iter()
                .any(|i| i == id)
                .then(|| pid.parse().ok())
                .flatten()
        })
        .filter(|p: &i32| *p > 0)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether process `pid` holds any of `files` open (compared by device and
/// inode, so a file replaced or bind-mounted at the same path is not taken
/// for the one the process has).
pub fn holds_open(pid: i32, files: &[PathBuf]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let want: Vec<(u64, u64)> = files
        .iter()
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten()
        .filter_map(|e| fs::metadata(e.path()).ok())
        .any(|m| want.contains(&(m.dev(), m.ino())))
}

/// Whether `pid` runs the calling process's executable, by path: a binary
/// replaced since that process started (an upgrade, a rebuild) still
/// counts, though the kernel then calls it `PATH (deleted)`.
pub fn same_executable(pid: i32) -> bool {
    let path = |p: &str| {
        fs::read_link(p).ok().map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_suffix(" (deleted)")
                .map(str::to_string)
                .unwrap_or(l)
        })
    };
    match (path(&format!("/proc/{pid}/exe")), path("/proc/self/exe")) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The page size, for turning RSS pages into bytes.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_paren() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000 250 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.utime, 7);
        assert_eq!(s.stime, 3);
        assert_eq!(s.start_time, 123456);
        assert_eq!(s.rss_pages, 250);
    }

    #[test]
    fn own_stat_and_environ_are_readable() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.ppid, std::os::unix::process::parent_id() as i32);
        assert!(s.start_time > 0);
        if let Ok(p) = std::env::var("PATH") {
            assert_eq!(environ_var(me, "PATH"), Some(p));
        }
        assert!(!boot_id().unwrap().is_empty());
    }
}
