//! What to run, as the CLI (and later the API) describes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Absolute working directory.
    pub cwd: String,
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
    pub containment: Option<String>,
    /// Ledger location handed to the command as `TEND_STORE`, so that a
    /// `tend heartbeat` (or any tend) inside it uses the same ledger.
    pub store: Option<String>,
}

impl RunSpec {
    /// The name to record: the given one, or the program's file name.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.command
                .first()
                .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
                .unwrap_or_default()
        })
    }
}
