//! Everything that can wake `tend top` that is not a descriptor of the
//! home: keys and resizes (read on a thread of their own, because
//! crossterm reads resizes from a signal pipe of its own and may buffer
//! keys), the outcome of a kill carried out in the background, and
//! SIGTERM/SIGHUP. Each is a [`Msg`] on a channel plus one byte on a pipe,
//! so the loop waits for all of them with the home's descriptors in one
//! `poll(2)`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use crossterm::event::Event as Input;
use rustix::pipe::{pipe_with, PipeFlags};

/// Something for the loop.
pub enum Msg {
    Input(Input),
    /// A kill finished: what to say about it.
    Said(String),
}

/// The receiving end: a pipe to poll and the messages behind it.
pub struct Wakes {
    read: OwnedFd,
    rx: Receiver<Msg>,
    tx: Poster,
    stop: Arc<AtomicBool>,
}

/// A handle that posts a message and wakes the loop, for another thread.
#[derive(Clone)]
pub struct Poster {
    tx: Sender<Msg>,
    write: Arc<OwnedFd>,
}

impl Poster {
    /// Posts `msg`; a loop that is gone is no error (it is quitting).
    pub fn post(&self, msg: Msg) {
        if self.tx.send(msg).is_ok() {
            let _ = rustix::io::write(&*self.write, &[1]);
        }
    }
}

impl Wakes {
    /// The pipe, the input thread, and the signal handlers.
    pub fn start() -> Result<Wakes> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
            .context("creating tend top's wake-up pipe")?;
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("handling SIGTERM and SIGHUP")?;
            let dup = rustix::io::fcntl_dupfd_cloexec(&write, 0)
                .context("duplicating the wake-up pipe")?;
            signal_hook::low_level::pipe::register(sig, dup)
                .context("handling SIGTERM and SIGHUP")?;
        }
        let poster = Poster {
            tx,
            write: Arc::new(write),
        };
        let input = poster.clone();
        // It blocks in `read` until the process exits: nothing to join.
        std::thread::Builder::new()
            .name("tend-top-input".into())
            .spawn(move || {
                while let Ok(ev) = crossterm::event::read() {
                    input.post(Msg::Input(ev));
                }
            })
            .context("starting tend top's input thread")?;
        Ok(Wakes {
            read,
            rx,
            tx: poster,
            stop,
        })
    }

    /// A handle for a background job to report through.
    pub fn poster(&self) -> Poster {
        self.tx.clone()
    }

    /// The descriptor that is readable while something waits here.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Everything posted so far, without blocking.
    pub fn take(&self) -> Vec<Msg> {
        let mut buf = [0u8; 256];
        while matches!(rustix::io::read(&self.read, &mut buf), Ok(n) if n > 0) {}
        self.rx.try_iter().collect()
    }

    /// True once SIGTERM or SIGHUP came: leave, restoring the terminal.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
