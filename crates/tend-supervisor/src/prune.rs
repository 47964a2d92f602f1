//! [`prune`]: the one pass that `tend prune` and the daemon's periodic
//! prune make — old terminal executions out of the ledger, then their files
//! off the disk.

use std::path::PathBuf;
use std::time::Duration;

use tend_ledger::Ledger;
use tend_model::Execution;

use crate::Error;

/// What a prune removed (or, as a dry run, would remove).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Pruned {
    /// True when nothing was deleted.
    pub dry_run: bool,
    /// The executions, oldest first.
    pub executions: Vec<Execution>,
    /// Bytes of their files.
    pub bytes: u64,
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
/// state (so the outbox stays bounded). With `dry_run`, only says what
/// executions would go.
pub fn prune<L: Ledger + ?Sized>(
    ledger: &L,
    older: Duration,
    keep_last: u32,
    dry_run: bool,
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
    Ok(Pruned {
        dry_run,
        executions,
        bytes,
    })
}
