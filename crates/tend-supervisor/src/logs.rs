//! Size-capped log files. A full disk or an unwritable file must never stop
//! the command: the supervisor keeps draining its pipes and reports the
//! failure once, as an event.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// One stream's log file, rotated to `<path>.1` when it reaches its cap, so
/// that at most two caps' worth of output is kept.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    cap: u64,
    failed: bool,
    /// Bytes written since the last [`LogFile::make_durable`].
    unsynced: bool,
    /// Bytes written since the start, rotated ones included: the offset
    /// the output index gives each write.
    total: u64,
    /// Which stream this is (0 stdout, 1 stderr), and the index both
    /// streams note their writes in.
    indexed: Option<(u8, Rc<RefCell<OutputIndex>>)>,
}

impl LogFile {
    /// Creates (truncates) the file.
    pub fn create(path: PathBuf, cap: u64) -> io::Result<LogFile> {
        let file = open(&path)?;
        Ok(LogFile {
            path,
            file: Some(file),
            written: 0,
            cap: cap.max(1),
            failed: false,
            unsynced: false,
            total: 0,
            indexed: None,
        })
    }

    /// Notes every write of this stream (`0` stdout, `1` stderr) in
    /// `index`, so that readers can interleave the two streams in the order
    /// they were written and tell when each part came.
    pub fn indexed(mut self, stream: u8, index: Rc<RefCell<OutputIndex>>) -> LogFile {
        self.indexed = Some((stream, index));
        self
    }

    /// Appends `data`. Returns the first error only; after an error the file
    /// is abandoned and later writes are dropped silently.
    pub fn write(&mut self, data: &[u8]) -> Option<io::Error> {
        if self.failed {
            return None;
        }
        let r = self.try_write(data);
        match r {
            Ok(()) => None,
            Err(e) => {
                self.failed = true;
                self.file = None;
                Some(e)
            }
        }
    }

    fn try_write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.written >= self.cap {
                // The rotated file keeps output a finished execution shows.
                if let Some(f) = self.file.take() {
                    f.sync_data()?;
                }
                let mut old = self.path.clone().into_os_string();
                old.push(".1");
                std::fs::rename(&self.path, old)?;
                self.file = Some(open(&self.path)?);
                self.written = 0;
                if let Some((stream, index)) = &self.indexed {
                    index
                        .borrow_mut()
                        .note(Kind::Rotated, *stream, self.total, 0);
                }
            }
            let room = (self.cap - self.written) as usize;
            let n = room.min(data.len());
            self.file
                .as_mut()
                .expect("a log file is open unless it failed")
                .write_all(&data[..n])?;
            self.written += n as u64;
            if let Some((stream, index)) = &self.indexed {
                index
                    .borrow_mut()
                    .note(Kind::Wrote, *stream, self.total, n as u32);
            }
            self.total += n as u64;
            self.unsynced = true;
            data = &data[n..];
        }
        Ok(())
    }
}

impl LogFile {
    /// Flushes what was written to the disk (one `fdatasync`, only when
    /// there is something new), so that a finished execution's output
    /// survives a power cut with its status. Returns whether it synced.
    pub fn make_durable(&mut self) -> io::Result<bool> {
        match self.file.as_ref() {
            Some(f) if self.unsynced => {
                f.sync_data()?;
                self.unsynced = false;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// What an index record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `len` bytes were written at `offset` of the stream.
    Wrote,
    /// The stream's file was rotated when `offset` bytes had been written:
    /// the current file starts there.
    Rotated,
}

/// One record of `<id>.idx`: 24 bytes, little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Data or rotation.
    pub kind: Kind,
    /// 0 stdout, 1 stderr.
    pub stream: u8,
    /// Bytes written (0 for a rotation).
    pub len: u32,
    /// Offset in the stream, counted from its first byte ever written.
    pub offset: u64,
    /// When, in milliseconds since the epoch (the first write of a
    /// coalesced run).
    pub at_ms: i64,
}

/// Size of one [`Record`] on disk.
pub const RECORD_BYTES: usize = 24;

impl Record {
    fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0] = matches!(self.kind, Kind::Rotated) as u8;
        b[1] = self.stream;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.at_ms.to_le_bytes());
        b
    }

    /// Reads one record; `None` for bytes that are not one.
    pub fn decode(b: &[u8]) -> Option<Record> {
        let b: &[u8; RECORD_BYTES] = b.try_into().ok()?;
        Some(Record {
            kind: match b[0] {
                0 => Kind::Wrote,
                1 => Kind::Rotated,
                _ => return None,
            },
            stream: b[1],
            len: u32::from_le_bytes(b[4..8].try_into().ok()?),
            offset: u64::from_le_bytes(b[8..16].try_into().ok()?),
            at_ms: i64::from_le_bytes(b[16..24].try_into().ok()?),
        })
    }
}

/// `<id>.idx`: the order in which the two streams were written, and when.
/// Writes of one stream within the same second that follow each other are
/// one record, grown in place, so the index stays small (a record per
/// second of output, or per switch between the streams). A failure to
/// write it loses only the interleaving: the logs stay whole.
#[derive(Debug)]
pub struct OutputIndex {
    file: Option<File>,
    /// The last record and where it is in the file.
    last: Option<(u64, Record)>,
    end: u64,
}

impl OutputIndex {
    /// Creates (truncates) the index at `path`.
    pub fn create(path: &Path) -> io::Result<OutputIndex> {
        Ok(OutputIndex {
            file: Some(open(&path.to_path_buf())?),
            last: None,
            end: 0,
        })
    }

    /// The index file of an execution whose stdout log is `stdout_path`.
    pub fn path_for(stdout_path: &Path) -> PathBuf {
        stdout_path.with_extension("idx")
    }

    fn note(&mut self, kind: Kind, stream: u8, offset: u64, len: u32) {
        let Some(file) = &self.file else { return };
        let now = tend_ledger::now_ms();
        let grown = match self.last {
            Some((at, r))
                if kind == Kind::Wrote
                    && r.kind == Kind::Wrote
                    && r.stream == stream
                    && r.offset + r.len as u64 == offset
                    && r.at_ms / 1000 == now / 1000
                    && r.len.checked_add(len).is_some() =>
            {
                Some((
                    at,
                    Record {
                        len: r.len + len,
                        ..r
                    },
                ))
            }
            _ => None,
        };
        let (at, record) = grown.unwrap_or((
            self.end,
            Record {
                kind,
                stream,
                len,
                offset,
                at_ms: now,
            },
        ));
        if file.write_all_at(&record.encode(), at).is_err() {
            self.file = None;
            return;
        }
        if at == self.end {
            self.end += RECORD_BYTES as u64;
        }
        self.last = Some((at, record));
    }
}

/// Makes the names of new files in `dir` durable.
pub fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn open(path: &PathBuf) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.out");
        let mut log = LogFile::create(p.clone(), 10).unwrap();
        assert!(log.write(b"0123456789abcdef").is_none());
        assert!(log.write(b"ghijklmnopqrstu").is_none());
        assert_eq!(
            std::fs::read(dir.path().join("x.out.1")).unwrap(),
            b"klmnopqrst"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"u");
    }
}
