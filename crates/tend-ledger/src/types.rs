use std::collections::BTreeMap;
use std::path::PathBuf;

use tend_model::{Execution, KillMethod, ProcessIdentity, Status};

/// Everything needed to record an execution before its command is started.
#[derive(Clone, Debug)]
pub struct NewExecution {
    /// Human name.
    pub name: String,
    /// argv.
    pub command: Vec<String>,
    /// Working directory, byte for byte: it need not be UTF-8.
    pub cwd: PathBuf,
    /// `--env` extras.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Deduplication key: at most one live execution holds it.
    pub key: Option<String>,
    /// With a key: a `succeeded` execution with it that finished at most
    /// this long ago stands for it too (`--reuse-finished`), so it is
    /// returned instead of a new one. Without it a finished execution frees
    /// its key.
    pub reuse_finished_ms: Option<u64>,
    /// Host name.
    pub host: String,
    /// Containment tier chosen for it.
    pub tier: tend_model::Containment,
    /// The agent (home) launching it.
    pub agent_id: Option<String>,
    /// The process that will supervise it (the caller itself).
    pub supervisor: ProcessIdentity,
    /// Timeout, if any.
    pub timeout_ms: Option<u64>,
    /// SIGTERM → SIGKILL grace.
    pub kill_grace_ms: u64,
    /// Folder of its log files; they are named after the id.
    pub log_dir: PathBuf,
    /// Parent cgroup (cgroup tier): the execution's cgroup is this folder
    /// joined with its id, which is never reused.
    pub cgroup: Option<PathBuf>,
    /// The command must call `tend heartbeat` within each such period.
    pub heartbeat_timeout_ms: Option<u64>,
    /// Ended when it prints nothing for this long.
    pub idle_timeout_ms: Option<u64>,
    /// Ended when its tree's memory exceeds this.
    pub max_memory_bytes: Option<u64>,
    /// The stored job it is a run of: it takes the job's next number, in
    /// the same transaction that records it.
    pub job: Option<String>,
    /// The fire of its job it runs for (the nominal instant, ms): a fire
    /// is launched at most once, and one decided but never launched is
    /// found ([`crate::Ledger::unlaunched_fire`]).
    pub job_slot: Option<i64>,
    /// How many attempts may follow this one (`--retries`), and their
    /// backoff; each next attempt copies them.
    pub retries: u32,
    /// The wait before the first retry.
    pub retry_backoff_ms: Option<u64>,
    /// The longest wait between two attempts.
    pub retry_max_backoff_ms: Option<u64>,
    /// `--workspace`: what to record, before it is made.
    pub workspace: Option<NewWorkspace>,
    /// With retries: the run's description (a `RunSpec` as JSON, opaque to
    /// the ledger), from which a daemon starts a pending attempt whose
    /// supervisor is gone.
    pub run_spec: Option<String>,
}

/// The workspace a new execution will get: its kind, the folder the
/// workspaces go in (its path is that folder joined with the execution's
/// id, which is never reused) and, for a worktree, the repository.
#[derive(Clone, Debug)]
pub struct NewWorkspace {
    /// `tmp` or `worktree`.
    pub kind: tend_model::WorkspaceKind,
    /// The folder of workspaces.
    pub dir: PathBuf,
    /// `worktree`: the repository's top level.
    pub repository: Option<PathBuf>,
}

impl NewWorkspace {
    /// The workspace of the execution `id`: its path and, for a worktree,
    /// its branch `exec-<id>`.
    pub fn for_execution(&self, id: &tend_model::ExecutionId) -> tend_model::Workspace {
        let worktree = self.kind == tend_model::WorkspaceKind::Worktree;
        tend_model::Workspace {
            kind: self.kind,
            path: self.dir.join(id.as_str()).display().to_string(),
            repository: self.repository.as_ref().map(|r| r.display().to_string()),
            branch: worktree.then(|| format!("exec-{id}")),
        }
    }
}

/// A workspace tend made that no execution uses any more: what `prune`
/// cleans up (the directory, or the worktree and then its branch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftWorkspace {
    /// The workspace as recorded.
    pub workspace: tend_model::Workspace,
    /// The execution that made it (its row may be gone).
    pub execution_id: String,
    /// A worktree already removed whose branch was kept (unmerged).
    pub worktree_removed: bool,
}

/// A retry asked for with an outcome: if the outcome is one that is retried
/// (`failed`, `timed_out`, `lost`) and attempts remain, the next attempt is
/// recorded `queued` in the same transaction.
#[derive(Clone, Debug)]
pub struct Retry {
    /// How long the next attempt waits before it starts.
    pub delay_ms: u64,
    /// The process that will start it: the supervisor of the attempt that
    /// ended, or, when that one is gone, the one that recorded the outcome
    /// (a reaper; a daemon then adopts the attempt).
    pub supervisor: ProcessIdentity,
}

/// What an execution used, recorded with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of the whole tree (user + system).
    pub cpu_ms: u64,
    /// Peak resident memory.
    pub max_rss_bytes: u64,
}

/// What [`crate::Ledger::create`] did.
#[derive(Debug)]
pub enum Created {
    /// A new execution was recorded.
    New(Execution),
    /// The key already stands for this execution; nothing was recorded.
    Existing(Execution),
}

/// A terminal outcome and the event that records it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Terminal status.
    pub status: Status,
    /// Why, in words.
    pub reason: String,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal, if it died of one.
    pub signal: Option<i32>,
    /// Kill facts, if tend ended it.
    pub kill: Option<KillReport>,
    /// What it used, if known.
    pub usage: Option<Usage>,
    /// Event kind (`exited`, `killed`, `marked-lost`, …).
    pub event: tend_model::EventKind,
    /// Who decided (`supervisor`, `reaper`, …).
    pub actor: tend_model::Actor,
    /// Extra event details.
    pub details: serde_json::Value,
}

/// The audited facts of a kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillReport {
    /// Graceful or forced.
    pub method: KillMethod,
    /// Request to empty tree.
    pub duration_ms: u64,
    /// How many processes got a signal.
    pub processes_signalled: u32,
}

/// The result of a compare-and-set on the status.
#[derive(Debug)]
pub enum Transition {
    /// This caller made the change; the row as written.
    Won(Execution),
    /// The status was no longer the expected one; the row as it is, whose
    /// status and events say who won.
    Lost(Execution),
}

impl Transition {
    /// The row, whoever won.
    pub fn execution(&self) -> &Execution {
        match self {
            Transition::Won(e) | Transition::Lost(e) => e,
        }
    }

    /// True if this caller's change was applied.
    pub fn won(&self) -> bool {
        matches!(self, Transition::Won(_))
    }
}

/// A request to end a live execution, stored for its supervisor.
#[derive(Clone, Debug)]
pub struct KillRequest {
    /// Who asked (`user:root`, `api`, …).
    pub actor: tend_model::Actor,
    /// Why, in the asker's words.
    pub reason: Option<String>,
    /// Skip the grace period.
    pub force: bool,
    /// Grace override.
    pub grace_ms: Option<u64>,
}

/// Which executions [`crate::Ledger::list`] returns.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Any of these statuses (empty: all).
    pub statuses: Vec<Status>,
    /// Shell-style glob on the name.
    pub name: Option<String>,
    /// Every one of these labels must match.
    pub labels: Vec<(String, String)>,
    /// Created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// At most this many rows.
    pub limit: Option<u32>,
    /// Skip this many rows first (paging).
    pub offset: Option<u32>,
    /// Only the runs of this job.
    pub job: Option<String>,
}

/// Counts over the ledger, for health, metrics and stats. Computed from the
/// rows, so they are true across daemon restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Executions per status.
    pub by_status: Vec<(Status, u64)>,
    /// `lost` executions per reason.
    pub lost_by_reason: Vec<(String, u64)>,
    /// Ended-by-tend executions per kill method.
    pub kills_by_method: Vec<(KillMethod, u64)>,
    /// Kill durations: for each upper bound (ms) of [`KILL_BUCKETS_MS`], how
    /// many kills took at most that long (cumulative, as Prometheus wants).
    pub kill_duration_le: Vec<(u64, u64)>,
    /// Sum of all kill durations, in milliseconds.
    pub kill_duration_sum_ms: u64,
    /// Executions that were started (reached `running`).
    pub started: u64,
    /// Running executions started before the `long_running_before` cutoff.
    pub long_running: u64,
}

/// Upper bounds of the kill-duration histogram, in milliseconds.
pub const KILL_BUCKETS_MS: [u64; 8] = [5, 10, 50, 100, 500, 1000, 5000, 30000];

/// What was decided about one fire of a job; the ledger keeps one decision
/// per (job, nominal instant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    /// An execution was started for it.
    Fired,
    /// It came while a run was live under `forbid`.
    Skipped,
    /// It came and went with no daemon up (`--catch-up skip`, or one of
    /// several missed before the latest).
    Missed,
}

impl FireOutcome {
    /// The name in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Fired => "fired",
            FireOutcome::Skipped => "skipped",
            FireOutcome::Missed => "missed",
        }
    }
}

/// The answer to [`crate::Ledger::claim_fire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller decides the fire. `previous` is the nominal instant of
    /// the job's last decided fire before it, read in the same transaction,
    /// so the fires in between are exactly the ones nobody decided.
    Won {
        /// The last decided fire before this one.
        previous: Option<i64>,
    },
    /// Somebody decided this fire, or a later one, already.
    Taken,
}

/// What the ledger says one job's schedule did, for metrics and health:
/// counted from the decided fires and the `fire-missed` events, so true
/// across daemon restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FireStats {
    /// The job's name.
    pub job: String,
    /// Fires that started an execution.
    pub fired: u64,
    /// Fires skipped under `forbid`.
    pub skipped: u64,
    /// Fires that came and went unrun (no daemon up, or overtaken).
    pub missed: u64,
}
