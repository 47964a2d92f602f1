//! Workspaces in PostgreSQL: recorded with the execution that makes them,
//! and kept in a table of their own until `prune` has cleaned them up,
//! since a kept worktree or branch outlives the execution rows that used it.

use postgres::GenericClient;
use tend_model::{ExecutionId, Workspace};

use super::client::PgResult;
use crate::{now_ms, LeftWorkspace};

/// Records the workspace `w` that the execution `id` is about to make.
pub(crate) fn record(c: &mut impl GenericClient, w: &Workspace, id: &ExecutionId) -> PgResult<()> {
    c.execute(
        "INSERT INTO tend.workspaces (path, kind, repository, branch, execution_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (path) DO NOTHING",
        &[
            &w.path,
            &w.kind.as_str(),
            &w.repository,
            &w.branch,
            &id.as_str(),
            &now_ms(),
        ],
    )?;
    Ok(())
}

/// The workspaces no execution row uses any more.
pub(crate) fn left(c: &mut impl GenericClient) -> PgResult<Vec<LeftWorkspace>> {
    let rows = c.query(
        "SELECT w.path, w.kind, w.repository, w.branch, w.execution_id, w.worktree_removed \
         FROM tend.workspaces w WHERE NOT EXISTS \
         (SELECT 1 FROM tend.executions e WHERE e.workspace_path = w.path) ORDER BY w.created_at",
        &[],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let kind: String = r.try_get(1)?;
        let Ok(kind) = kind.parse() else { continue };
        out.push(LeftWorkspace {
            workspace: Workspace {
                kind,
                path: r.try_get(0)?,
                repository: r.try_get(2)?,
                branch: r.try_get(3)?,
            },
            execution_id: r.try_get(4)?,
            worktree_removed: r.try_get(5)?,
        });
    }
    Ok(out)
}

/// A workspace cleaned up: forgotten, or (`branch_kept`) its worktree
/// marked removed while its branch stays known.
pub(crate) fn cleaned(c: &mut impl GenericClient, path: &str, branch_kept: bool) -> PgResult<()> {
    let sql = if branch_kept {
        "UPDATE tend.workspaces SET worktree_removed = true WHERE path = $1"
    } else {
        "DELETE FROM tend.workspaces WHERE path = $1"
    };
    c.execute(sql, &[&path])?;
    Ok(())
}
