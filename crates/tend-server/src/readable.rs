//! [`Readable`]: an owned descriptor (an inotify instance, a pidfd)
//! registered with tokio's reactor, to be awaited until it is readable.
//!
//! tokio's safe `AsyncFd` constructors are deprecated (unsound for an
//! `AsRawFd` that can change its fd: tokio#8587) and their replacement is
//! `unsafe`, which this crate forbids. A `pipe::Receiver` made from an
//! [`OwnedFd`] is registered the same way (epoll, read interest) with no
//! `unsafe`, and owns and closes the fd. Nothing here treats the fd as a
//! pipe: it is only awaited, and read by the caller's own code.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use tokio::net::unix::pipe;

/// An owned descriptor, registered for readability while this lives.
pub(crate) struct Readable(pipe::Receiver);

impl Readable {
    /// Registers `fd`, which must be non-blocking if the caller reads it
    /// (inotify: `IN_NONBLOCK`; a pidfd is never read). Must be called
    /// within the runtime.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Readable> {
        pipe::Receiver::from_owned_fd_unchecked(fd).map(Readable)
    }

    /// Resolves once the fd is readable: for a pidfd, once its process has
    /// exited (and from then on at once).
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.0.readable().await
    }

    /// Waits until the fd is readable, then lets `read` take what is
    /// queued (it must read until the fd would block). The wake-up is
    /// consumed, unless another arrived while `read` ran.
    pub(crate) async fn read_with<R>(
        &self,
        mut read: impl FnMut(BorrowedFd<'_>) -> R,
    ) -> io::Result<R> {
        loop {
            self.0.readable().await?;
            let mut out = None;
            let fd = self.0.as_fd();
            let r = self.0.try_io(|| {
                out = Some(read(fd));
                // What tells tokio that everything was read.
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
            match (out, r) {
                (Some(v), _) => return Ok(v),
                // A stale wake-up: `read` was not called; wait again.
                (None, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (None, Err(e)) => return Err(e),
                (None, Ok(())) => continue,
            }
        }
    }
}
