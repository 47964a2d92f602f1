//! `tend run -t`: the keys typed at tend's terminal go to the command's
//! pseudo-terminal, and its size follows tend's. Output comes back through
//! the ordinary stdout path (the pseudo-terminal's side the supervisor
//! keeps is read like a pipe).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

/// The command's pseudo-terminal, as the supervisor writes to it.
pub(crate) struct TtyInput {
    /// The supervisor's side (non-blocking: it shares its file with the
    /// copy the output is read from).
    master: OwnedFd,
    /// Typed bytes the terminal has not taken yet.
    pending: Vec<u8>,
    /// tend's stdin has not ended.
    open: bool,
}

/// End of input on a terminal (`VEOF`, Ctrl-D), sent when tend's own stdin
/// ends, so the command reads end-of-file as it would from a terminal.
const EOT: u8 = 0x04;

impl TtyInput {
    pub(crate) fn new(master: OwnedFd) -> TtyInput {
        TtyInput {
            master,
            pending: Vec::new(),
            open: true,
        }
    }

    /// Whether to wait for tend's stdin (nothing is pending).
    pub(crate) fn wants_stdin(&self) -> bool {
        self.open && self.pending.is_empty()
    }

    /// Whether to wait for the terminal to take pending bytes.
    pub(crate) fn wants_room(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The supervisor's side, to poll for room.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Moves what tend's stdin holds to the terminal.
    pub(crate) fn on_stdin(&mut self) {
        let mut buf = [0u8; 4096];
        match rustix::io::read(rustix::stdio::stdin(), &mut buf) {
            Ok(0) | Err(Errno::IO) | Err(Errno::BADF) => {
                self.open = false;
                self.pending.push(EOT);
            }
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        self.flush();
    }

    /// Writes pending bytes as far as the terminal takes them.
    pub(crate) fn flush(&mut self) {
        while !self.pending.is_empty() {
            match rustix::io::write(&self.master, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    // The command's terminal is gone: nobody to type to.
                    self.pending.clear();
                    self.open = false;
                    return;
                }
            }
        }
    }

    /// tend's terminal was resized (SIGWINCH): the command's follows.
    pub(crate) fn resize(&self) {
        let from = if rustix::termios::isatty(rustix::stdio::stdin()) {
            rustix::stdio::stdin()
        } else {
            rustix::stdio::stdout()
        };
        tend_proc::pty::Pty::copy_size(self.master.as_fd(), from);
    }
}
