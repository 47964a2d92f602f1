//! Wake-ups without polling: inotify on the folders where transitions and
//! output are announced (`notify/`, `logs/`) and on a cgroup's
//! `cgroup.events`. Waiters (`wait`, `follow`) and the reaper share these;
//! none of them sleeps in a loop.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

use crate::Error;

/// An inotify descriptor watching `dir` for files that appear or finish
/// being written.
pub(crate) fn watch_dir(dir: &std::path::Path) -> Result<OwnedFd, Error> {
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .map_err(|e| Error::io("starting inotify")(e.into()))?;
    add(&fd, dir)?;
    Ok(fd)
}

pub(crate) fn add(fd: &OwnedFd, path: &std::path::Path) -> Result<(), Error> {
    use inotify::WatchFlags as W;
    inotify::add_watch(
        fd,
        path,
        W::MOVED_TO | W::CLOSE_WRITE | W::CREATE | W::MODIFY,
    )
    .map(drop)
    .map_err(|e| Error::io("watching a folder")(e.into()))
}

/// Discards queued inotify events: they only say "look again".
pub(crate) fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Waits until a cgroup has no process, woken by inotify on its
/// `cgroup.events` (the kernel signals a modification when `populated`
/// changes). Gives up after `limit`; returns whether it emptied.
pub(crate) fn until_empty(cg: &tend_proc::cgroup::Cgroup, limit: Duration) -> Result<bool, Error> {
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .map_err(|e| Error::io("starting inotify")(e.into()))?;
    inotify::add_watch(
        &fd,
        cg.path().join("cgroup.events"),
        inotify::WatchFlags::MODIFY,
    )
    .map_err(|e| Error::io("watching a cgroup")(e.into()))?;
    let deadline = Instant::now() + limit;
    while cg.populated() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let _ = poll(&mut fds, Some(&ts));
        drain(&fd);
    }
    Ok(true)
}
