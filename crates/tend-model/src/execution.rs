use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{ExecutionId, Status};

/// Who a process is, in a way a reused PID cannot fake: the PID alone is
/// recycled within seconds on a busy host, but (boot id, pid, start time)
/// is unique, and the pidfd inode (Linux 6.8+) is unique within a boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProcessIdentity {
    /// `/proc/sys/kernel/random/boot_id` when the process was recorded.
    pub boot_id: String,
    /// The PID, meaningful only together with the rest.
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot.
    pub start_time: u64,
    /// Inode of a pidfd of the process, where the kernel has pidfs.
    pub pidfd_ino: Option<u64>,
}

/// How a kill ended the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KillMethod {
    /// Everything left after SIGTERM within the grace period.
    Graceful,
    /// Something was still there after the grace period and got SIGKILL.
    Forced,
    /// Nothing was signalled (already finished).
    None,
}

impl KillMethod {
    /// The name used in the ledger and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            KillMethod::Graceful => "graceful",
            KillMethod::Forced => "forced",
            KillMethod::None => "none",
        }
    }

    /// Reads a stored name back.
    pub fn parse(s: &str) -> Option<KillMethod> {
        match s {
            "graceful" => Some(KillMethod::Graceful),
            "forced" => Some(KillMethod::Forced),
            "none" => Some(KillMethod::None),
            _ => None,
        }
    }
}

/// A kill that somebody asked for, as stored on the execution so that its
/// supervisor (or, if that is dead, whoever reconciles) can act on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KillRequested {
    /// When it was asked.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// Who asked.
    pub by: String,
    /// Why.
    pub reason: Option<String>,
    /// SIGKILL at once, no grace.
    pub force: bool,
    /// Grace override in milliseconds.
    pub grace_ms: Option<u64>,
}

/// One run of a command, as the ledger knows it. This is also the JSON
/// schema that `--json` prints (times as RFC 3339 strings in UTC).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Execution {
    /// Short random id.
    pub id: ExecutionId,
    /// Human name; defaults to the program's file name.
    pub name: String,
    /// Where it is in its life.
    pub status: Status,
    /// Why it ended the way it did (`exited with code 3`, `supervisor died`, …).
    pub reason: Option<String>,
    /// Exit code, if the command exited.
    pub exit_code: Option<i32>,
    /// Signal number, if the command died of a signal.
    pub signal: Option<i32>,
    /// PID of the command (meaningful with `process`).
    pub pid: Option<i32>,
    /// Deduplication key.
    pub key: Option<String>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// argv of the command.
    pub command: Vec<String>,
    /// Working directory, byte for byte (it need not be UTF-8). JSON shows
    /// it exactly when it is UTF-8, else escaped (see [`crate::text::json_path`]).
    #[serde(serialize_with = "ser_path")]
    #[schema(value_type = String)]
    pub cwd: PathBuf,
    /// Extra environment given with `--env`.
    pub env: BTreeMap<String, String>,
    /// When it was recorded.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// When the command was started.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<i64>,
    /// When it reached its terminal status.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<i64>,
    /// Host name of the supervisor.
    pub host: String,
    /// Containment tier (`session`, `cgroup`, `pidns`).
    pub tier: crate::Containment,
    /// The agent (home) that launched it; `None` for rows from before
    /// agents were recorded.
    pub agent_id: Option<String>,
    /// Identity of the command's process.
    pub process: Option<ProcessIdentity>,
    /// Identity of the supervisor, which the ledger checks against the kernel.
    pub supervisor: ProcessIdentity,
    /// Timeout in milliseconds, if any.
    pub timeout_ms: Option<u64>,
    /// Grace between SIGTERM and SIGKILL, in milliseconds.
    pub kill_grace_ms: u64,
    /// A pending or acted-on request to kill it.
    pub kill_request: Option<KillRequested>,
    /// How a kill (or timeout) ended it.
    pub kill_method: Option<KillMethod>,
    /// How long the kill took, request to empty tree.
    pub kill_duration_ms: Option<u64>,
    /// How many processes the kill signalled.
    pub processes_signalled: Option<u32>,
    /// File holding its standard output.
    pub stdout_path: String,
    /// File holding its standard error.
    pub stderr_path: String,
    /// Bumped by every change; lets a reader tell two snapshots apart.
    pub version: i64,
    /// Its cgroup, in the `cgroup` tier.
    pub cgroup: Option<String>,
    /// Heartbeat period it must keep, in milliseconds.
    pub heartbeat_timeout_ms: Option<u64>,
    /// Longest silence allowed on its output, in milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// Memory limit of its tree, in bytes.
    pub max_memory_bytes: Option<u64>,
    /// When it last called `tend heartbeat`.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat_at: Option<i64>,
    /// The progress text of its last heartbeat.
    pub progress: Option<String>,
    /// CPU time its tree used, in milliseconds (user + system).
    pub cpu_ms: Option<u64>,
    /// Peak resident memory of its largest process, in bytes.
    pub max_rss_bytes: Option<u64>,
    /// The stored job it is a run of, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Its number in the job (1, 2, 3…, never reused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_number: Option<u64>,
    /// Which attempt of that number it is (1 for the first); set for a
    /// job's run and for any run with retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// How many attempts may follow the first (`--retries`).
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The wait before the first retry; doubled before each next one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<u64>,
    /// The longest wait between two attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_max_backoff_ms: Option<u64>,
    /// The attempt this one retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<ExecutionId>,
    /// A pending attempt starts no earlier than this.
    #[serde(
        serialize_with = "ser_opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_after: Option<i64>,
    /// `--workspace`: where its command ran instead of its cwd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
}

/// A run's workspace, recorded with the execution before it is made, and
/// removed only by `prune`, never while an execution that uses it lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    /// `tmp` or `worktree`.
    pub kind: crate::WorkspaceKind,
    /// The directory.
    pub path: String,
    /// `worktree`: the repository it is a worktree of (its top level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// `worktree`: its branch, `exec-<id>` of the run's first attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Execution {
    /// Its place in its job as people write it (`backup#42`, `backup#42.2`),
    /// if it is a job's run.
    pub fn job_ref(&self) -> Option<String> {
        Some(crate::job::job_ref(
            self.job.as_deref()?,
            self.job_number?,
            self.attempt.unwrap_or(1),
        ))
    }

    /// The exit code a shell would see for this execution: the command's own
    /// code, 128+N for death by signal N, 124 for a timeout, 130 when it was
    /// cancelled before it started, 127/126 when it
    /// could not be started, and 1 when tend can say nothing better (lost).
    pub fn shell_code(&self) -> i32 {
        match self.status {
            Status::TimedOut => 124,
            // Cancelled before it started (Ctrl-C or a kill during a
            // retry's backoff): as a shell reports an interrupted command.
            Status::Cancelled => 130,
            _ => {
                if let Some(sig) = self.signal {
                    128 + sig
                } else {
                    self.exit_code.unwrap_or(1)
                }
            }
        }
    }
}

/// An append-only audit record of something that happened to an execution.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Ledger-wide sequence number; orders events.
    pub seq: i64,
    /// The execution it concerns.
    pub execution_id: ExecutionId,
    /// When it was recorded.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// What happened: `created`, `started`, `exited`, `kill-requested`, `marked-lost`, …
    pub kind: String,
    /// Who did it: `supervisor`, `reaper`, `user:NAME`, …
    pub actor: String,
    /// Everything else, as JSON.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

pub(crate) fn ser_time<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ms))
}

fn ser_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::text::json_path(p))
}

fn ser_opt_time<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format_rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// Writes milliseconds since the Unix epoch as RFC 3339 in UTC with
/// millisecond precision (`2026-12-01T17:53:29.120Z`).
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant), valid for the whole i64 range we use.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_796_147_609_120),
            "2026-12-01T17:53:29.120Z"
        );
    }
}
