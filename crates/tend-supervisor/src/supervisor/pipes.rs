//! The command's output: its pipes read into the log files and, in the
//! foreground, queued for tend's own stdout and stderr; the events that say
//! output was not saved or not delivered; and the logs made durable before
//! the outcome that points at them is committed.

use std::time::Instant;

use serde_json::json;
use tend_ledger::Ledger;
use tend_model::{Actor, EventKind};

use super::{Mode, Supervision};
use crate::Home;

const READ_CHUNK: usize = 64 * 1024;

impl<L: Ledger + ?Sized> Supervision<'_, L> {
    /// Reads pipe `i` (0 stdout, 1 stderr): one chunk, so that one busy
    /// stream cannot starve the loop; or, when `to_end`, all that is in it,
    /// and then closes it.
    pub(super) fn read_pipe(&mut self, i: usize, to_end: bool) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let Some(fd) = self.pipes[i].as_ref() else {
                return;
            };
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    self.pipes[i] = None;
                    return;
                }
                Ok(n) => {
                    self.copy_out(i, &buf[..n]);
                    if !to_end {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                // A pseudo-terminal whose command side is closed by all.
                Err(rustix::io::Errno::IO) => {
                    self.pipes[i] = None;
                    return;
                }
                Err(_) => {
                    // EAGAIN: nothing more now. When draining at the end
                    // the whole tree is gone, so no writer is left.
                    if to_end {
                        self.pipes[i] = None;
                    }
                    return;
                }
            }
        }
    }

    /// Keeps a chunk of output: in the log, and for the terminal in the
    /// foreground. Output is what counts as progress for `--idle-timeout`.
    fn copy_out(&mut self, i: usize, data: &[u8]) {
        self.last_output = Instant::now();
        if self.mode == Mode::Foreground {
            self.term.push(i, data);
        }
        if let Some(e) = self.logs[i].write(data) {
            let stream = if i == 0 { "stdout" } else { "stderr" };
            self.outbox.record(
                self.ledger,
                EventKind::LogWriteFailed,
                Actor::Supervisor,
                json!({ "stream": stream, "error": e.to_string(),
                        "note": "output is no longer saved; the command keeps running" }),
            );
        }
    }

    /// Makes the logs durable before the status that points at them is
    /// committed (an fsync per stream that has new output, and one of the
    /// folder). A failure is recorded, not fatal: the outcome still counts.
    pub(super) fn make_logs_durable(&mut self, home: &Home) {
        let mut synced = false;
        for i in 0..2 {
            match self.logs[i].make_durable() {
                Ok(s) => synced |= s,
                Err(e) => {
                    self.outbox.record(
                        self.ledger,
                        EventKind::LogSyncFailed,
                        Actor::Supervisor,
                        json!({ "stream": if i == 0 { "stdout" } else { "stderr" }, "error": e.to_string() }),
                    );
                }
            }
        }
        if synced {
            let _ = crate::logs::sync_dir(&home.logs_dir());
        }
    }

    /// Audits (once per stream) that output could not be written to tend's
    /// own stdout or stderr; the command runs on, its output kept in the log.
    pub(super) fn record_undelivered(&mut self) {
        if let Some((stream, e)) = self.term.failure() {
            self.outbox.record(
                self.ledger,
                EventKind::OutputUndelivered,
                Actor::Supervisor,
                json!({ "stream": stream, "error": e.to_string(),
                        "note": "the rest of this stream is only in the log" }),
            );
        }
    }

    /// The reader of our stream `i` went away: keep in the log what the
    /// command already wrote, then close its pipe, as a plain pipeline
    /// would (its next write gets SIGPIPE or EPIPE).
    pub(super) fn close_stream(&mut self, i: usize) {
        self.read_pipe(i, true);
        self.pipes[i] = None;
    }

    /// Reads what is left in both pipes once the tree is gone.
    pub(super) fn drain_pipes(&mut self) {
        for i in 0..2 {
            self.read_pipe(i, true);
        }
    }
}
