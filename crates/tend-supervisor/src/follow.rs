//! `tend logs -f`: an execution's output as it is written, until it ends.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use tend_ledger::Ledger;
use tend_model::Execution;

use std::time::{Duration, Instant};

use crate::notify::wait_any;
use crate::output::{OutputReader, Piece};
use crate::reaper::{verify_or_reconcile, Supervision};
use crate::{Error, Home};

/// How often a follow looks again at a row only another agent can end.
const FOREIGN_RECHECK: Duration = Duration::from_secs(1);

/// Gives `sink` an execution's output as it is written, through `reader`
/// (both streams in order, or one), until the execution is terminal and
/// everything is given; woken by the home's [`Notifier`](crate::Notifier)
/// (transitions and, in the same subscription, new output in `logs/`) and
/// by the supervisor's pidfd.
pub fn follow<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    e: &Execution,
    reader: &mut OutputReader,
    sink: &mut dyn FnMut(Vec<Piece>) -> io::Result<()>,
) -> Result<(), Error> {
    // Transitions too, not only the pidfd: a foreground supervisor stays
    // alive after its terminal commit while its reader takes the output.
    let mut wake = home.notifier().subscribe_with_output(&home.logs_dir())?;
    loop {
        // Read the state before the output: if it is terminal now,
        // everything it wrote is on disk and one last read gets it all.
        let row = ledger.get(&e.id)?;
        let (supervisor, foreign) = match verify_or_reconcile(ledger, home, &row)? {
            Supervision::Alive(fd) => (Some(fd), false),
            Supervision::Gone(Some(_)) => continue,
            // Another agent's row: that agent ends it; look again in a
            // second rather than at once (which would spin).
            Supervision::Gone(None) => (None, true),
            // Supervised on another host (or by another agent of a shared
            // ledger): its end is heard through the ledger's listener.
            Supervision::NotHere => (None, !row.status.is_terminal() && !wake.hears_remote()),
        };
        let done = row.status.is_terminal();
        let pieces = reader.read(done).map_err(Error::io("reading the log"))?;
        sink(pieces).map_err(Error::io("writing the output"))?;
        if done {
            return Ok(());
        }
        let mut fds: Vec<BorrowedFd<'_>> = vec![wake.as_fd()];
        fds.extend(supervisor.iter().map(|s| s.as_fd()));
        let backstop = foreign.then(|| Instant::now() + FOREIGN_RECHECK);
        wait_any(&fds, backstop)?;
        wake.take();
    }
}
