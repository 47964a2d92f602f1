//! Following a log over HTTP: the file is read as it grows, woken by
//! inotify on the logs folder, until the execution's terminal transition.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use rustix::fs::inotify;
use tend_model::Execution;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::readable::Readable;
use crate::AppState;

/// A stream of the file's bytes from `offset`, ending after the execution
/// ends and the file is read to its end (or when the client goes away).
pub fn follow_stream(
    state: AppState,
    e: Execution,
    path: PathBuf,
    offset: u64,
    mut rx: broadcast::Receiver<Arc<Execution>>,
) -> ReceiverStream<Result<Bytes, std::io::Error>> {
    let (tx, out) = mpsc::channel(16);
    tokio::spawn(async move {
        let watch = match watch_logs(&state) {
            Ok(w) => w,
            Err(err) => {
                let _ = tx.send(Err(err)).await;
                return;
            }
        };
        let mut pos = offset;
        let mut ended = e.status.is_terminal();
        loop {
            // Re-check the row after each wake-up that could mean the end,
            // so a transition missed before subscribing is still seen.
            if !ended {
                let id = e.id.clone();
                let s = state.clone();
                ended = tokio::task::spawn_blocking(move || {
                    s.ledger().ok().and_then(|l| l.get(&id).ok())
                })
                .await
                .ok()
                .flatten()
                .is_some_and(|row| row.status.is_terminal());
            }
            // Everything written so far, in chunks of at most 1 MiB.
            loop {
                let (chunk, new_pos) = match read_from(&path, pos) {
                    Ok(r) => r,
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                };
                pos = new_pos;
                if chunk.is_empty() {
                    break;
                }
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
            if ended {
                return;
            }
            tokio::select! {
                _ = watch.read_with(drain) => {}
                t = rx.recv() => {
                    match t {
                        Ok(t) if t.id == e.id && t.status.is_terminal() => ended = true,
                        Ok(_) => {}
                        Err(_) => {}
                    }
                }
                _ = tx.closed() => return,
                _ = state.stopped() => return,
            }
        }
    });
    ReceiverStream::new(out)
}

fn read_from(path: &PathBuf, pos: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), pos)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    // Rotated underneath us: start the new file from its beginning.
    let pos = if len < pos { 0 } else { pos };
    f.seek(SeekFrom::Start(pos))?;
    let mut buf = Vec::new();
    f.take(1 << 20).read_to_end(&mut buf)?;
    let n = buf.len() as u64;
    Ok((buf, pos + n))
}

fn watch_logs(state: &AppState) -> std::io::Result<Readable> {
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    inotify::add_watch(
        &fd,
        state.config().home.logs_dir(),
        inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
    )?;
    Readable::new(fd)
}

fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}
