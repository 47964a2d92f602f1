//! `tend logs -f`: print a log file as it grows, until the execution ends.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tend_ledger::Ledger;
use tend_model::Execution;

use crate::notify::wait_any;
use crate::reaper::{verify_or_reconcile, Supervision};
use crate::{Error, Home};

/// Copies `path` to `out` from the start and keeps copying as it grows
/// (following rotation), woken by the home's [`Notifier`](crate::Notifier)
/// (transitions and, in the same subscription, new output in `logs/`) and
/// by the supervisor's pidfd. Returns once the execution is terminal and
/// the file is read to its end.
pub fn follow<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(), Error> {
    // Transitions too, not only the pidfd: a foreground supervisor stays
    // alive after its terminal commit while its reader takes the output.
    let mut wake = home.notifier().subscribe_with_output(&home.logs_dir())?;
    let mut file: Option<(File, u64)> = None;
    loop {
        // Read the state before the file: if it is terminal now, everything
        // it wrote is already in the file and one last read gets it all.
        let row = ledger.get(&e.id)?;
        let supervisor = match verify_or_reconcile(ledger, home, &row)? {
            Supervision::Alive(fd) => Some(fd),
            Supervision::Gone(_) => continue,
            Supervision::NotHere => None,
        };
        copy_new(path, &mut file, out).map_err(Error::io("reading the log"))?;
        if row.status.is_terminal() {
            return Ok(());
        }
        let mut fds: Vec<BorrowedFd<'_>> = vec![wake.as_fd()];
        fds.extend(supervisor.iter().map(|s| s.as_fd()));
        wait_any(&fds, None)?;
        wake.take();
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
