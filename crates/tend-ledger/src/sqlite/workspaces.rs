//! Workspaces in SQLite: recorded with the execution that makes them, and
//! kept in a table of their own until `prune` has cleaned them up, since a
//! kept worktree or branch outlives the execution rows that used it.

use rusqlite::{params, Connection};
use tend_model::{ExecutionId, Workspace};

use crate::{now_ms, Error, LeftWorkspace, Result};

/// Records the workspace `w` that the execution `id` is about to make.
pub(super) fn record(conn: &Connection, w: &Workspace, id: &ExecutionId) -> Result<()> {
    conn.execute(
        "INSERT INTO workspaces (path, kind, repository, branch, execution_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (path) DO NOTHING",
        params![
            w.path,
            w.kind.as_str(),
            w.repository,
            w.branch,
            id.as_str(),
            now_ms()
        ],
    )
    .map(drop)
    .map_err(Error::storage("recording a workspace"))
}

/// The workspaces no execution row uses any more.
pub(super) fn left(conn: &Connection) -> Result<Vec<LeftWorkspace>> {
    let mut stmt = conn
        .prepare(
            "SELECT w.path, w.kind, w.repository, w.branch, w.execution_id, w.worktree_removed \
             FROM workspaces w WHERE NOT EXISTS \
             (SELECT 1 FROM executions e WHERE e.workspace_path = w.path) ORDER BY w.created_at",
        )
        .map_err(Error::storage("reading workspaces"))?;
    let rows = stmt
        .query_map([], |r| {
            let kind: String = r.get(1)?;
            Ok((
                kind,
                r.get(0)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(Error::storage("reading workspaces"))?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, path, repository, branch, execution_id, removed) =
            row.map_err(Error::storage("reading workspaces"))?;
        let Ok(kind) = kind.parse() else { continue };
        out.push(LeftWorkspace {
            workspace: Workspace {
                kind,
                path,
                repository,
                branch,
            },
            execution_id,
            worktree_removed: removed != 0,
        });
    }
    Ok(out)
}

/// A workspace cleaned up: forgotten, or (`branch_kept`) its worktree
/// marked removed while its branch stays known.
pub(super) fn cleaned(conn: &Connection, path: &str, branch_kept: bool) -> Result<()> {
    let sql = if branch_kept {
        "UPDATE workspaces SET worktree_removed = 1 WHERE path = ?1"
    } else {
        "DELETE FROM workspaces WHERE path = ?1"
    };
    conn.execute(sql, [path])
        .map(drop)
        .map_err(Error::storage("recording a workspace's clean-up"))
}
