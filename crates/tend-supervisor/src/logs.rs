//! Size-capped log files. A full disk or an unwritable file must never stop
//! the command: the supervisor keeps draining its pipes and reports the
//! failure once, as an event.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

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
        })
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
            }
            let room = (self.cap - self.written) as usize;
            let n = room.min(data.len());
            self.file
                .as_mut()
                .expect("a log file is open unless it failed")
                .write_all(&data[..n])?;
            self.written += n as u64;
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
