//! Writing to stdout and stderr without panicking.
//!
//! `println!` panics when stdout is a pipe whose reader has gone
//! (`tend list | head -1`), and a panic after `tend run -d` has launched
//! looks like a failed launch to a caller that then retries. So every write
//! to stdout goes through here and returns its error; a closed stdout
//! (EPIPE — Rust ignores SIGPIPE, so the write fails instead of killing
//! tend) becomes [`StdoutClosed`], which `main` turns into a quiet exit
//! with [`CLOSED_EXIT`], like a command killed by SIGPIPE in a shell
//! pipeline. Notes on stderr are written the same way and dropped if stderr
//! is gone too: there is nowhere left to report that.

use std::fmt;
use std::io::{self, Write};

/// Exit status after stdout was closed: 128 + SIGPIPE (13), what a shell
/// reports for a pipeline member that SIGPIPE ended.
pub const CLOSED_EXIT: i32 = 141;

/// The reader of stdout went away; nothing more can be said there.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// The error tend reports for a failed write to stdout.
fn stdout_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

/// Writes `text` to stdout and flushes it.
pub fn text(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes one formatted line to stdout (use `say!`).
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes `tend: …` and a newline to stderr (use `note!`).
pub fn note_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "tend: {args}");
}

/// Whether `e` says that stdout was closed.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
}

/// Stdout for a copy done by other code (`io::copy`, `follow`), which may
/// wrap the error it gets beyond recognition: it remembers whether the
/// reader went away, so the outcome can still be told apart.
pub struct Stdout {
    inner: io::StdoutLock<'static>,
    closed: bool,
}

impl Stdout {
    /// Locks stdout for the copy.
    pub fn lock() -> Stdout {
        Stdout {
            inner: io::stdout().lock(),
            closed: false,
        }
    }

    /// `r`, with any error replaced by [`StdoutClosed`] if stdout was
    /// closed meanwhile.
    pub fn check<T, E>(&self, r: Result<T, E>) -> anyhow::Result<T>
    where
        E: Into<anyhow::Error>,
    {
        match r {
            Ok(v) => Ok(v),
            Err(_) if self.closed => Err(anyhow::Error::new(StdoutClosed)),
            Err(e) => Err(e.into()),
        }
    }

    fn seen<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) {
            self.closed = true;
        }
        r
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.seen(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.seen(r)
    }
}

/// `println!` that returns the error instead of panicking: use with `?`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::print::line(format_args!($($arg)*))
    };
}

/// `eprintln!("tend: …")` that never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::print::note_line(format_args!($($arg)*))
    };
}
