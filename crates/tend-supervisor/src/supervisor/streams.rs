//! One pipe for the command's stdout and stderr when, in the foreground,
//! tend's own stdout and stderr are one file (`2>&1`).
//!
//! Two pipes read in turn cannot keep the order in which the command wrote
//! to its two streams: `echo a; echo b >&2; echo c` would come out as
//! `a c b`. When both of tend's streams end up in the same place anyway, the
//! command gets what a shell's `2>&1` gives it — one pipe as both its
//! stdout and its stderr — and the supervisor copies that one stream to
//! tend's stdout, in the order the kernel received the writes. The log then
//! holds both streams in `<id>.out`; `<id>.err` stays empty (the execution
//! has a `streams-merged` event saying so).

use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;

use rustix::fs::{fcntl_getfl, fstat, FileType, OFlags};
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::stdio::{stderr, stdout};

/// Whether tend's stdout and stderr are the same open file.
///
/// The same device and inode identify the same pipe, terminal or socket
/// (`/dev/null` and other devices that are not terminals do not count:
/// nothing is read back from them, so there is no order to keep). For a regular file that is not enough: `> f 2> f`
/// opens it twice, with two offsets that overwrite each other, and a shell
/// keeps that; so the two must also share one open file description
/// (`> f 2>&1`, asked of the kernel with `kcmp`), or both append (`>> f
/// 2>> f`, where every write lands at the end in the order it is made).
/// Where `kcmp` is not available, the same device and inode are taken as
/// the same file.
pub(crate) fn stdout_is_stderr() -> bool {
    let (Ok(o), Ok(e)) = (fstat(stdout()), fstat(stderr())) else {
        return false;
    };
    if o.st_dev != e.st_dev || o.st_ino != e.st_ino {
        return false;
    }
    match FileType::from_raw_mode(o.st_mode) {
        FileType::RegularFile => {}
        // `/dev/null` and the like: nothing is read back, so no order to
        // keep, and the two logs stay apart.
        FileType::CharacterDevice if !std::io::IsTerminal::is_terminal(&stdout()) => return false,
        _ => return true,
    }
    match tend_proc::same_open_file(stdout(), stderr()) {
        Some(same) => same || (appends(stdout()) && appends(stderr())),
        None => true,
    }
}

fn appends(fd: impl AsFd) -> bool {
    fcntl_getfl(fd).is_ok_and(|f| f.contains(OFlags::APPEND))
}

/// One pipe: its read end for the supervisor, and its write end twice,
/// as the command's stdout and as its stderr. The caller must drop the
/// `Command` once it has spawned, so that no write end is left open here.
pub(crate) fn one_pipe() -> std::io::Result<(OwnedFd, Stdio, Stdio)> {
    let (read, write) = pipe_with(PipeFlags::CLOEXEC)?;
    let again = write.try_clone()?;
    Ok((read, Stdio::from(write), Stdio::from(again)))
}
