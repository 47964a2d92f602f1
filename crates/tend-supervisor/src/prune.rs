//! [`prune`]: the one pass that `tend prune` and the daemon's periodic
//! prune make — old terminal executions out of the ledger, then their files
//! off the disk.

use std::path::PathBuf;
use std::time::Duration;

use tend_ledger::{Ledger, LeftWorkspace};
use tend_model::{Execution, Workspace};

use crate::workspace::Cleaned;

use crate::Error;

/// What a prune removed (or, as a dry run, would remove).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Pruned {
    /// True when nothing was deleted.
    pub dry_run: bool,
    /// The executions, oldest first.
    pub executions: Vec<Execution>,
    /// Bytes of their files and of the workspaces removed.
    pub bytes: u64,
    /// The workspaces no execution uses any more, and what became of each.
    pub workspaces: Vec<PrunedWorkspace>,
}

/// One workspace a prune looked at.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PrunedWorkspace {
    /// The workspace.
    #[serde(flatten)]
    pub workspace: Workspace,
    /// The execution that made it.
    pub execution_id: String,
    /// Removed, or kept and why.
    pub outcome: Cleaned,
}

/// What a prune may remove that it keeps by default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Force {
    /// Worktrees with changes never committed (`--force`).
    pub worktrees: bool,
    /// `exec-<id>` branches not merged into their repository's current
    /// branch (`--force-branches`).
    pub branches: bool,
}

/// Every file the supervisor keeps for `e`: both logs, their rotated
/// parts, the output index and the supervisor's own notes.
fn files_of(e: &Execution) -> Vec<PathBuf> {
    let out = PathBuf::from(&e.stdout_path);
    let mut files = vec![out.clone(), PathBuf::from(&e.stderr_path)];
    for p in files.clone() {
        let mut rotated = p.into_os_string();
        rotated.push(".1");
        files.push(rotated.into());
    }
    files.push(out.with_extension("idx"));
    files.push(out.with_file_name(format!("{}.supervisor.log", e.id)));
    files
}

/// Deletes the terminal executions created more than `older` ago (never a
/// live one; the `keep_last` newest of each job stay), with their events,
/// then their files, and the alerts queued that long ago, whatever their
/// state (so the outbox stays bounded); then cleans up the workspaces no
/// execution uses any more ([`crate::workspace::clean`]). With `dry_run`,
/// only says what would go.
pub fn prune<L: Ledger + ?Sized>(
    ledger: &L,
    older: Duration,
    keep_last: u32,
    dry_run: bool,
    force: Force,
) -> Result<Pruned, Error> {
    let cutoff = tend_ledger::ms_ago(older);
    let executions = ledger.prune(cutoff, keep_last, dry_run)?;
    if !dry_run {
        ledger.prune_alerts(cutoff)?;
    }
    let mut bytes = 0;
    for f in executions.iter().flat_map(files_of) {
        let Ok(meta) = std::fs::symlink_metadata(&f) else {
            continue;
        };
        bytes += meta.len();
        if !dry_run {
            let _ = std::fs::remove_file(&f);
        }
    }
    let mut workspaces = Vec::new();
    for left in left_workspaces(ledger, &executions, dry_run)? {
        let size = dir_bytes(std::path::Path::new(&left.workspace.path));
        let outcome =
            crate::workspace::clean(ledger, &left, force.worktrees, force.branches, dry_run)?;
        if outcome == Cleaned::Removed {
            bytes += size;
        }
        workspaces.push(PrunedWorkspace {
            workspace: left.workspace,
            execution_id: left.execution_id,
            outcome,
        });
    }
    Ok(Pruned {
        dry_run,
        executions,
        bytes,
        workspaces,
    })
}

/// The workspaces no execution uses any more; in a dry run also those the
/// pruned executions would leave (unless a live execution shares one).
fn left_workspaces<L: Ledger + ?Sized>(
    ledger: &L,
    pruned: &[Execution],
    dry_run: bool,
) -> Result<Vec<LeftWorkspace>, Error> {
    let mut left = ledger.left_workspaces()?;
    if dry_run {
        let live: Vec<String> = ledger
            .live()?
            .into_iter()
            .filter_map(|e| e.workspace.map(|w| w.path))
            .collect();
        for e in pruned {
            let Some(w) = &e.workspace else { continue };
            if live.contains(&w.path) || left.iter().any(|l| l.workspace.path == w.path) {
                continue;
            }
            left.push(LeftWorkspace {
                workspace: w.clone(),
                execution_id: e.id.to_string(),
                worktree_removed: false,
            });
        }
    }
    Ok(left)
}

/// The bytes of the files under `dir` (symbolic links not followed).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| dir_bytes(&e.path())).sum())
        .unwrap_or(0)
}
