//! The foreground copy of the command's output to tend's own stdout and
//! stderr.
//!
//! What reaches tend's stdout is exactly what the command wrote, byte for
//! byte, whatever its size and speed: nothing is ever dropped. A slow
//! reader is waited for the way a plain pipe waits for it — once a
//! stream's queue holds [`HIGH_WATER`] bytes the supervisor stops reading
//! that stream's pipe, so the command blocks in `write` (back-pressure)
//! while the supervisor's one loop stays free to enforce timeouts and
//! kills. Writes never block that loop for long: a regular file or a
//! non-terminal character device (`/dev/null`) takes a whole queue at once;
//! a pipe, terminal or socket is written only after `poll` says it has
//! room, at most `PIPE_BUF` bytes at a time.
//!
//! When the reader goes away (`EPIPE`, or `POLLERR` on the write end), the
//! stream is marked gone and the caller closes the command's end of that
//! pipe, as a plain pipeline would. Any other write error (a full disk,
//! `/dev/full`, an I/O error) is not a reader leaving: the stream stops
//! being copied, the command runs on (its output is still in the log), and
//! the error is kept for the caller to report — tend then exits non-zero,
//! as `cat` would. `EAGAIN` (a stdout some other program left non-blocking)
//! only means "not now": the queue waits for the next `POLLOUT`.

use std::io::{self, IsTerminal};
use std::os::fd::BorrowedFd;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::FileType;

/// Bytes queued for one stream above which its pipe is no longer read.
pub(crate) const HIGH_WATER: usize = 256 * 1024;
/// A pipe that polls writable has room for at least this much.
const PIPE_BUF: usize = 4096;
/// At most this much is written to a pipe or terminal in one turn of the
/// loop, so that a fast reader cannot starve timers and signals.
const TURN: usize = 1 << 20;

/// What a turn of writing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// Some bytes (maybe none) went out; the reader is still there.
    Some,
    /// The reader is gone; the stream's queue was discarded.
    ReaderGone,
    /// Writing failed for another reason; the stream is no longer copied.
    Failed,
}

#[derive(Debug, Default)]
struct Stream {
    queue: Vec<u8>,
    /// A regular file or `/dev/null`-like device: a write may be whole.
    whole_writes: bool,
    gone: bool,
    /// Why output of this stream could not be delivered, if it could not.
    failed: Option<io::Error>,
}

/// The two streams, stdout (0) and stderr (1).
#[derive(Debug, Default)]
pub(crate) struct Terminal {
    streams: [Stream; 2],
}

/// tend's own stdout (0) or stderr (1).
pub(crate) fn fd(i: usize) -> BorrowedFd<'static> {
    if i == 0 {
        rustix::stdio::stdout()
    } else {
        rustix::stdio::stderr()
    }
}

fn takes_whole_writes(i: usize) -> bool {
    match rustix::fs::fstat(fd(i)) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => true,
            FileType::CharacterDevice => !fd(i).is_terminal(),
            _ => false,
        },
        Err(_) => false,
    }
}

impl Terminal {
    /// Looks at what tend's stdout and stderr are.
    pub(crate) fn new() -> Terminal {
        let mut t = Terminal::default();
        for (i, s) in t.streams.iter_mut().enumerate() {
            s.whole_writes = takes_whole_writes(i);
        }
        t
    }

    /// Queues output of stream `i` (dropped only once its reader is gone).
    pub(crate) fn push(&mut self, i: usize, data: &[u8]) {
        let s = &mut self.streams[i];
        if !s.gone {
            s.queue.extend_from_slice(data);
        }
    }

    /// Whether stream `i`'s pipe may be read now (its queue has room).
    pub(crate) fn has_room(&self, i: usize) -> bool {
        self.streams[i].queue.len() < HIGH_WATER
    }

    /// Whether stream `i` has bytes waiting for its reader.
    pub(crate) fn pending(&self, i: usize) -> bool {
        !self.streams[i].queue.is_empty()
    }

    /// Whether any output waits for a reader: the command may then be
    /// blocked behind that reader, which is not the command being idle.
    pub(crate) fn behind_reader(&self) -> bool {
        self.pending(0) || self.pending(1)
    }

    /// Handles `poll`'s answer for stream `i`'s descriptor.
    pub(crate) fn on_ready(&mut self, i: usize, revents: PollFlags) -> Wrote {
        if revents.intersects(PollFlags::ERR | PollFlags::NVAL) {
            return self.reader_gone(i);
        }
        if revents.intersects(PollFlags::OUT | PollFlags::HUP) {
            return self.write_turn(i);
        }
        Wrote::Some
    }

    fn reader_gone(&mut self, i: usize) -> Wrote {
        let s = &mut self.streams[i];
        s.gone = true;
        s.queue = Vec::new();
        Wrote::ReaderGone
    }

    fn failed(&mut self, i: usize, e: rustix::io::Errno) -> Wrote {
        if e == rustix::io::Errno::PIPE {
            return self.reader_gone(i);
        }
        let s = &mut self.streams[i];
        s.gone = true;
        s.queue = Vec::new();
        s.failed = Some(e.into());
        Wrote::Failed
    }

    /// The first write error of either stream that was not a reader
    /// leaving, with the stream's name.
    pub(crate) fn failure(&self) -> Option<(&'static str, &io::Error)> {
        let name = |i| if i == 0 { "stdout" } else { "stderr" };
        (0..2).find_map(|i| self.streams[i].failed.as_ref().map(|e| (name(i), e)))
    }

    /// Writes what the reader can take now without blocking the loop.
    fn write_turn(&mut self, i: usize) -> Wrote {
        let mut sent = 0;
        loop {
            let s = &mut self.streams[i];
            if s.queue.is_empty() || sent >= TURN {
                return Wrote::Some;
            }
            let n = if s.whole_writes {
                s.queue.len()
            } else {
                s.queue.len().min(PIPE_BUF)
            };
            match rustix::io::write(fd(i), &s.queue[..n]) {
                Ok(w) => {
                    s.queue.drain(..w);
                    sent += w;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return Wrote::Some,
                Err(e) => return self.failed(i, e),
            }
            if !self.streams[i].whole_writes && !writable_now(i) {
                return Wrote::Some;
            }
        }
    }

    /// After the outcome is committed: hands the readers whatever is still
    /// queued, waiting as long as they need (the ledger is already true).
    pub(crate) fn flush(&mut self) {
        for i in 0..2 {
            while self.pending(i) {
                if !wait_writable(i) {
                    let _ = self.reader_gone(i);
                    break;
                }
                match self.write_turn(i) {
                    Wrote::Some => {}
                    Wrote::ReaderGone | Wrote::Failed => break,
                }
            }
        }
    }
}

/// Blocks until stream `i` can take more (or its reader is gone: false).
fn wait_writable(i: usize) -> bool {
    loop {
        let mut fds = [PollFd::from_borrowed_fd(fd(i), PollFlags::OUT)];
        match poll(&mut fds, None) {
            Ok(_) => {
                let r = fds[0].revents();
                return !r.intersects(PollFlags::ERR | PollFlags::NVAL)
                    || r.contains(PollFlags::OUT);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Whether stream `i` can take another `PIPE_BUF` bytes right now.
fn writable_now(i: usize) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd(i), PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(1)) && fds[0].revents() == PollFlags::OUT
}
