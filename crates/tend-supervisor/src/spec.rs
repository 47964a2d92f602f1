//! What to run, as the CLI (and later the API) describes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tend_model::limits::{
    check_kill_grace, check_labels, check_text, LimitError, MAX_KEY_BYTES, MAX_NAME_BYTES,
};

/// What a second run with the same key does (`--on-duplicate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Attach to the execution holding the key and return its result.
    #[default]
    Wait,
    /// Report the existing execution and do nothing.
    Skip,
    /// Start another one anyway.
    Run,
}

/// Everything a supervisor needs to start one execution. Serialisable,
/// because a detached supervisor receives it from `tend run -d` on stdin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    /// Human name; defaults to the program's file name.
    pub name: Option<String>,
    /// argv; never passed through a shell.
    pub command: Vec<String>,
    /// Absolute working directory, byte for byte: a directory whose name
    /// is not UTF-8 is run in exactly, never in a lossy look-alike.
    #[serde(with = "path_bytes")]
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Deduplication key.
    pub key: Option<String>,
    /// What to do when the key is taken.
    pub on_duplicate: OnDuplicate,
    /// End it after this long.
    pub timeout_ms: Option<u64>,
    /// SIGTERM → SIGKILL grace.
    pub kill_grace_ms: u64,
    /// Size at which a log file is rotated (one old file is kept).
    pub log_max_bytes: u64,
    /// The command must run `tend heartbeat` within each such period.
    pub heartbeat_timeout_ms: Option<u64>,
    /// End it when it prints nothing for this long.
    pub idle_timeout_ms: Option<u64>,
    /// End it when its tree's resident memory exceeds this.
    pub max_memory_bytes: Option<u64>,
    /// Containment tier to insist on (`cgroup`, `session`); `None` picks the
    /// best this host offers.
    pub containment: Option<tend_model::Containment>,
    /// Ledger location handed to the command as `TEND_STORE`, so that a
    /// `tend heartbeat` (or any tend) inside it uses the same ledger.
    pub store: Option<String>,
}

impl RunSpec {
    /// The name to record: the given one, or the program's file name (cut
    /// to [`MAX_NAME_BYTES`], since nobody chose it to be that long).
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let program = self.command.first().map_or("", |p| p.as_str());
            let base = program.rsplit('/').next().unwrap_or(program);
            let mut end = base.len().min(MAX_NAME_BYTES);
            while !base.is_char_boundary(end) {
                end -= 1;
            }
            base[..end].to_string()
        })
    }

    /// Refuses what no execution may be recorded with: text over the caps
    /// of [`tend_model::limits`] and a kill grace over an hour. `tend run`
    /// and the API's launch both call it, so both accept the same.
    pub fn check(&self) -> Result<(), LimitError> {
        if let Some(name) = &self.name {
            check_text("name", name, MAX_NAME_BYTES)?;
        }
        if let Some(key) = &self.key {
            check_text("key", key, MAX_KEY_BYTES)?;
        }
        check_labels(&self.labels)?;
        tend_model::limits::check_env(&self.env)?;
        check_kill_grace(Duration::from_millis(self.kill_grace_ms))
    }
}

/// A path on the wire to a detached supervisor: a JSON string when it is
/// UTF-8, else the array of its bytes, so that no path is changed on the way.
mod path_bytes {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire<'a> {
        Text(std::borrow::Cow<'a, str>),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        match p.to_str() {
            Some(t) => Wire::Text(t.into()),
            None => Wire::Bytes(p.as_os_str().as_bytes().to_vec()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Text(t) => PathBuf::from(t.into_owned()),
            Wire::Bytes(b) => PathBuf::from(OsString::from_vec(b)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn spec(cwd: &[u8]) -> RunSpec {
        RunSpec {
            name: None,
            command: vec!["true".into()],
            cwd: std::ffi::OsStr::from_bytes(cwd).into(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            key: None,
            on_duplicate: OnDuplicate::Run,
            timeout_ms: None,
            kill_grace_ms: 5000,
            log_max_bytes: 1 << 20,
            heartbeat_timeout_ms: None,
            idle_timeout_ms: None,
            max_memory_bytes: None,
            containment: None,
            store: None,
        }
    }

    #[test]
    fn a_cwd_that_is_not_utf8_survives_the_trip_to_a_detached_supervisor() {
        for raw in [&b"/tmp/x\xffdir"[..], "/tmp/x\u{fffd}dir".as_bytes()] {
            let json = serde_json::to_string(&spec(raw)).unwrap();
            let back: RunSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back.cwd.as_os_str().as_bytes(), raw, "{json}");
        }
    }

    #[test]
    fn names_labels_and_graces_over_their_caps_are_refused() {
        let mut s = spec(b"/");
        assert!(s.check().is_ok());
        s.name = Some("n".repeat(MAX_NAME_BYTES + 1));
        assert!(s.check().is_err());
        s.name = None;
        s.kill_grace_ms = 3_600_001;
        assert!(s.check().is_err());
        s.kill_grace_ms = 0;
        s.command = vec![format!("/bin/{}", "é".repeat(200))];
        assert!(s.display_name().len() <= MAX_NAME_BYTES);
    }
}
