-- Version 8: workspaces (`--workspace tmp|worktree`). The workspace is
-- recorded with the execution, before it is made, so a crash in between
-- leaves nothing tend does not know of.
ALTER TABLE executions ADD COLUMN workspace_kind TEXT;
ALTER TABLE executions ADD COLUMN workspace_path TEXT;
ALTER TABLE executions ADD COLUMN workspace_repo TEXT;
ALTER TABLE executions ADD COLUMN workspace_branch TEXT;
CREATE INDEX executions_workspace ON executions (workspace_path) WHERE workspace_path IS NOT NULL;

-- Every workspace tend made, kept until it is cleaned up: it outlives the
-- rows of the executions that used it, so that a worktree kept because it
-- was dirty, or a branch kept because it is unmerged, stays known (a later
-- `prune --force` / `--force-branches` deletes it). Attempts of one run
-- share their first attempt's workspace.
CREATE TABLE workspaces (
    path             TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('tmp','worktree')),
    repository       TEXT,
    branch           TEXT,
    execution_id     TEXT NOT NULL,             -- the execution that made it
    created_at       INTEGER NOT NULL,
    worktree_removed INTEGER NOT NULL DEFAULT 0 -- a worktree gone, its branch kept
) STRICT;
