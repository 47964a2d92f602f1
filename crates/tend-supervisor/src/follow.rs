//! `tend logs -f`: print a log file as it grows, until the execution ends.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::event::{poll, PollFd, PollFlags};
use tend_ledger::Ledger;
use tend_model::Execution;
use tend_proc::{procfs, Pidfd, Verified};

use crate::notify::{add, drain, watch_dir};
use crate::{reaper, Error, Home};

/// Copies `path` to `out` from the start and keeps copying as it grows
/// (following rotation), woken by inotify on the log and exit folders and by
/// the supervisor's pidfd. Returns once the execution is terminal and the
/// file is read to its end.
pub fn follow<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let watch = watch_dir(&home.notify_dir())?;
    add(&watch, &home.logs_dir())?;
    let host = procfs::hostname();
    let mut file: Option<(File, u64)> = None;
    loop {
        // Read the state before the file: if it is terminal now, everything
        // it wrote is already in the file and one last read gets it all.
        let row = ledger.get(&e.id)?;
        let supervisor = if row.status.is_terminal() || !crate::is_local(&row, &host) {
            None
        } else {
            match Pidfd::open_verified(&row.supervisor)
                .map_err(Error::io("checking the supervisor"))?
            {
                Verified::Alive(fd) => Some(fd),
                _ => {
                    reaper::reconcile_one(ledger, home, &row, &host)?;
                    continue;
                }
            }
        };
        copy_new(path, &mut file, out).map_err(Error::io("reading the log"))?;
        if row.status.is_terminal() {
            return Ok(());
        }
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(&watch, PollFlags::IN)];
        if let Some(s) = &supervisor {
            fds.push(PollFd::new(s, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("waiting for output")(e.into())),
        }
        drain(&watch);
    }
}

fn copy_new(path: &Path, file: &mut Option<(File, u64)>, out: &mut dyn Write) -> io::Result<()> {
    // A different inode at the path means the log was rotated: finish the
    // old file, then start the new one from its beginning.
    let current = std::fs::metadata(path).ok().map(|m| m.ino());
    if let Some((f, ino)) = file.as_mut() {
        if Some(*ino) != current {
            io::copy(f, out)?;
            *file = None;
        }
    }
    if file.is_none() {
        match File::open(path) {
            Ok(f) => {
                let ino = f.metadata()?.ino();
                *file = Some((f, ino));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    let (f, _) = file.as_mut().expect("opened above");
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.flush()
}
