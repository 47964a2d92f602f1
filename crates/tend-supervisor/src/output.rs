//! Reading an execution's output back: both streams in the order they were
//! written, each part with the moment it came, from the logs and the
//! output index (`<id>.idx`) the supervisor keeps beside them.
//!
//! A reader is incremental: each [`OutputReader::read`] gives what was
//! written since the last one, so `tend logs -f` and a one-shot `tend logs`
//! are the same code. Output the index does not cover (an execution from
//! before the index, or an index that could not be written) comes last,
//! per stream, without a time.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tend_model::Execution;

use crate::logs::{Kind, OutputIndex, Record, RECORD_BYTES};

/// Which streams to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// Both, interleaved as written.
    Both,
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
}

impl Streams {
    fn wants(self, stream: u8) -> bool {
        match self {
            Streams::Both => true,
            Streams::Stdout => stream == 0,
            Streams::Stderr => stream == 1,
        }
    }
}

/// A run of bytes one stream wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// 0 stdout, 1 stderr.
    pub stream: u8,
    /// Where it starts in its stream, counted from the stream's first byte.
    pub offset: u64,
    /// When it was written (ms since the epoch), if known.
    pub at_ms: Option<i64>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Reads one execution's output, a little more at each call.
pub struct OutputReader {
    logs: [PathBuf; 2],
    index: PathBuf,
    which: Streams,
    /// Index bytes consumed, up to the start of the last record (which may
    /// still grow in place).
    consumed: u64,
    /// Per stream: offsets where it was rotated, in order.
    rotations: [Vec<u64>; 2],
    /// Per stream: how far it has been given out.
    given: [u64; 2],
}

impl OutputReader {
    /// A reader of `e`'s output, from its first byte.
    pub fn new(e: &Execution, which: Streams) -> OutputReader {
        let stdout = PathBuf::from(&e.stdout_path);
        OutputReader {
            index: OutputIndex::path_for(&stdout),
            logs: [stdout, PathBuf::from(&e.stderr_path)],
            which,
            consumed: 0,
            rotations: [Vec::new(), Vec::new()],
            given: [0, 0],
        }
    }

    /// What was written since the last call, in order. With `to_end`
    /// (the execution is over), output the index does not cover is given
    /// too, at the end.
    pub fn read(&mut self, to_end: bool) -> io::Result<Vec<Piece>> {
        let records = self.new_records()?;
        // The files on disk are as the latest rotation left them.
        for r in records.iter().filter(|r| r.kind == Kind::Rotated) {
            let rot = &mut self.rotations[r.stream as usize];
            if rot.last().is_none_or(|last| *last < r.offset) {
                rot.push(r.offset);
            }
        }
        let mut out = Vec::new();
        for r in records {
            match r.kind {
                Kind::Rotated => {}
                Kind::Wrote if self.which.wants(r.stream) => {
                    if let Some(p) = self.piece(r.stream, r.offset, r.len as u64, Some(r.at_ms))? {
                        push(&mut out, p);
                    }
                }
                Kind::Wrote => {}
            }
        }
        if to_end {
            for s in [0u8, 1] {
                if self.which.wants(s) {
                    let end = self.end(s)?;
                    let from = self.given[s as usize];
                    if let Some(p) = self.piece(s, from, end.saturating_sub(from), None)? {
                        out.push(p);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Records from where the last read stopped; the last record is read
    /// again next time, since the supervisor grows it in place.
    fn new_records(&mut self) -> io::Result<Vec<Record>> {
        let f = match File::open(&self.index) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let whole = len - len % RECORD_BYTES as u64;
        if whole <= self.consumed {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (whole - self.consumed) as usize];
        f.read_exact_at(&mut buf, self.consumed)?;
        let records: Vec<Record> = buf
            .chunks_exact(RECORD_BYTES)
            .map_while(Record::decode)
            .collect();
        if let Some(n) = records.len().checked_sub(1) {
            self.consumed += (n * RECORD_BYTES) as u64;
        }
        Ok(records)
    }

    /// Stream `s`'s files as they are now: each with the stream offset of
    /// its first byte and its length (the rotated one first).
    fn files(&self, s: u8) -> io::Result<Vec<(PathBuf, u64, u64)>> {
        let path = &self.logs[s as usize];
        let current = file_len(path)?;
        let Some(&start) = self.rotations[s as usize].last() else {
            return Ok(vec![(path.clone(), 0, current)]);
        };
        let old = rotated(path);
        let old_len = file_len(&old)?;
        Ok(vec![
            (old, start.saturating_sub(old_len), old_len),
            (path.clone(), start, current),
        ])
    }

    /// Where stream `s` ends on disk now.
    fn end(&self, s: u8) -> io::Result<u64> {
        Ok(self
            .files(s)?
            .last()
            .map_or(0, |(_, start, len)| start + len))
    }

    /// Stream `s`'s bytes `[offset, offset + len)` not given out before and
    /// still on disk (what rotated away twice is gone).
    fn piece(
        &mut self,
        s: u8,
        offset: u64,
        len: u64,
        at_ms: Option<i64>,
    ) -> io::Result<Option<Piece>> {
        let from = offset.max(self.given[s as usize]);
        let to = offset + len;
        if from >= to {
            return Ok(None);
        }
        self.given[s as usize] = to;
        let mut bytes = Vec::new();
        let mut first = None;
        for (path, start, flen) in self.files(s)? {
            let lo = from.max(start);
            let hi = to.min(start + flen);
            if lo >= hi {
                continue;
            }
            let mut buf = vec![0u8; (hi - lo) as usize];
            File::open(&path)?.read_exact_at(&mut buf, lo - start)?;
            first.get_or_insert(lo);
            bytes.extend_from_slice(&buf);
        }
        Ok(first.map(|offset| Piece {
            stream: s,
            offset,
            at_ms,
            bytes,
        }))
    }
}

/// Adds `p`, joined to the last piece when it continues it (the same
/// stream, the next bytes, the same second, as the index coalesces): a
/// rotation splits no piece.
fn push(out: &mut Vec<Piece>, p: Piece) {
    if let Some(last) = out.last_mut() {
        if last.stream == p.stream
            && last.offset + last.bytes.len() as u64 == p.offset
            && last.at_ms.map(|t| t / 1000) == p.at_ms.map(|t| t / 1000)
        {
            last.bytes.extend_from_slice(&p.bytes);
            return;
        }
    }
    out.push(p);
}

fn file_len(p: &Path) -> io::Result<u64> {
    match std::fs::metadata(p) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn rotated(p: &Path) -> PathBuf {
    let mut old = p.as_os_str().to_owned();
    old.push(".1");
    PathBuf::from(old)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::logs::LogFile;

    fn reader(dir: &Path, which: Streams) -> OutputReader {
        let stdout = dir.join("x.out");
        OutputReader {
            index: OutputIndex::path_for(&stdout),
            logs: [stdout, dir.join("x.err")],
            which,
            consumed: 0,
            rotations: [Vec::new(), Vec::new()],
            given: [0, 0],
        }
    }

    /// `stream:text|…`, runs of one stream joined (a second boundary
    /// between two writes splits a piece; that is not what is tested).
    fn text(pieces: &[Piece]) -> String {
        let mut runs: Vec<(u8, String)> = Vec::new();
        for p in pieces {
            let t = String::from_utf8_lossy(&p.bytes);
            match runs.last_mut() {
                Some((s, run)) if *s == p.stream => run.push_str(&t),
                _ => runs.push((p.stream, t.into_owned())),
            }
        }
        let shown: Vec<String> = runs.iter().map(|(s, t)| format!("{s}:{t}")).collect();
        shown.join("|")
    }

    #[test]
    fn both_streams_come_back_in_the_order_written_even_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let index = OutputIndex::create(&dir.path().join("x.idx")).unwrap();
        let index = Rc::new(RefCell::new(index));
        let mut out = LogFile::create(dir.path().join("x.out"), 8)
            .unwrap()
            .indexed(0, index.clone());
        let mut err = LogFile::create(dir.path().join("x.err"), 8)
            .unwrap()
            .indexed(1, index);
        out.write(b"a1 ");
        out.write(b"a2 ");
        err.write(b"E1 ");
        out.write(b"a3 ");
        let mut all = reader(dir.path(), Streams::Both);
        assert_eq!(text(&all.read(false).unwrap()), "0:a1 a2 |1:E1 |0:a3 ");
        assert!(all.read(false).unwrap().is_empty(), "nothing new");
        out.write(b"a4 ");
        assert_eq!(
            text(&all.read(false).unwrap()),
            "0:a4 ",
            "a grown record gives only its new part"
        );
        // Past the 8-byte cap, stdout rotates; `a1 a2 a3 a4 ` overflowed it
        // already, so the oldest bytes are gone from a fresh reader's view.
        out.write(b"a5 a6 a7 ");
        let mut fresh = reader(dir.path(), Streams::Stdout);
        let got = text(&fresh.read(true).unwrap());
        assert!(got.ends_with("a7 "), "{got}");
        assert!(!got.contains("a1"), "rotated away twice: {got}");
        let mut err_only = reader(dir.path(), Streams::Stderr);
        assert_eq!(text(&err_only.read(true).unwrap()), "1:E1 ");
    }

    #[test]
    fn output_without_an_index_comes_whole_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.out"), "old out\n").unwrap();
        std::fs::write(dir.path().join("x.err"), "old err\n").unwrap();
        let mut r = reader(dir.path(), Streams::Both);
        assert!(r.read(false).unwrap().is_empty());
        let all = r.read(true).unwrap();
        assert_eq!(text(&all), "0:old out\n|1:old err\n");
        assert!(all.iter().all(|p| p.at_ms.is_none()));
    }
}
