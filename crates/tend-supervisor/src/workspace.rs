//! Workspaces (`--workspace tmp|worktree`): a run's command works in a
//! directory of its own instead of its cwd.
//!
//! The workspace is recorded with the execution (its path is the home's
//! `workspaces/` folder joined with the execution's id, never reused) before
//! it is made, so a crash in between leaves nothing tend does not know of.
//! `tmp` is a fresh directory, mode 0700; `worktree` is `git worktree add`
//! of the repository at the run's cwd on a new branch `exec-<id>`, from
//! HEAD. Attempts of one run share their first attempt's workspace. Nothing
//! here removes a workspace: [`clean`] does, for `prune`, once no execution
//! uses it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tend_ledger::{Ledger, LeftWorkspace};
use tend_model::{Execution, WorkspaceKind};

use crate::{Error, RunSpec};

/// Checks that the run's workspace can be made, before anything is
/// recorded: for a worktree, git is there, the cwd is in a repository with
/// a commit and without uncommitted changes (a worktree starts from HEAD,
/// so they would silently be missing). Returns the repository's top level
/// for a worktree; the refusal is one sentence.
pub fn check(spec: &RunSpec) -> Result<Option<PathBuf>, String> {
    if spec.workspace != Some(WorkspaceKind::Worktree) {
        return Ok(None);
    }
    let cwd = &spec.cwd;
    let top = git(cwd, &["rev-parse", "--show-toplevel"]).map_err(|e| match e {
        Git::Missing => "git is not installed, and --workspace worktree needs it".to_string(),
        Git::Failed(_) => format!(
            "{} is not in a git repository, so --workspace worktree has nothing to check out",
            cwd.display()
        ),
    })?;
    let top = PathBuf::from(top.trim_end_matches('\n'));
    if git(&top, &["rev-parse", "--verify", "--quiet", "HEAD"]).is_err() {
        return Err(format!(
            "the repository {} has no commit yet, so a worktree has nothing to start from",
            top.display()
        ));
    }
    match git(&top, &["status", "--porcelain", "--untracked-files=no"]) {
        Ok(s) if s.trim().is_empty() => Ok(Some(top)),
        Ok(_) => Err(format!(
            "the repository {} has uncommitted changes, which a worktree of HEAD would not have; commit or stash them first",
            top.display()
        )),
        Err(_) => Err(format!("cannot read the status of the repository {}", top.display())),
    }
}

/// Makes the execution's workspace (or, for a later attempt, finds the one
/// its first attempt made) and returns the directory its command runs in:
/// the workspace, or for a worktree the same subdirectory of it as the cwd
/// is of the repository.
pub(crate) fn make(exec: &Execution, spec: &RunSpec) -> Result<Option<PathBuf>, String> {
    let Some(w) = &exec.workspace else {
        return Ok(None);
    };
    let path = PathBuf::from(&w.path);
    let retry = exec.retry_of.is_some() && path.is_dir();
    match w.kind {
        WorkspaceKind::Tmp if !retry => make_private_dir(&path)?,
        WorkspaceKind::Worktree if !retry => {
            let repo = w.repository.as_deref().map(Path::new).unwrap_or(&spec.cwd);
            if let Some(parent) = path.parent() {
                make_private_parent(parent)?;
            }
            let (branch, at) = (
                w.branch.as_deref().unwrap_or("exec"),
                path.to_string_lossy(),
            );
            git(
                repo,
                &["worktree", "add", "--quiet", "-b", branch, &at, "HEAD"],
            )
            .map_err(|e| format!("cannot create its worktree: {}", e.say()))?;
        }
        _ => {}
    }
    let inside = w
        .repository
        .as_deref()
        .and_then(|r| spec.cwd.strip_prefix(r).ok())
        .map(|rel| path.join(rel))
        .filter(|p| p.is_dir());
    Ok(Some(inside.unwrap_or(path)))
}

fn make_private_parent(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn make_private_dir(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = path.parent() {
        make_private_parent(parent)?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("cannot create its workspace {}: {e}", path.display()))
}

/// What cleaning up one left workspace did (or, dry, would do).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cleaned {
    /// The directory, or the worktree and its branch, are gone.
    Removed,
    /// The worktree is gone; its branch is unmerged and stays (it goes with
    /// `--force-branches`).
    BranchKept,
    /// The worktree has changes that were never committed: it stays (it goes
    /// with `--force`).
    DirtyKept,
    /// Something failed; the workspace stays known and is tried again.
    Failed(String),
}

/// Cleans up a workspace no execution uses any more: a directory is
/// deleted; a worktree is removed with `git worktree remove` (a dirty one
/// only with `force`), then `git worktree prune`, and its branch deleted
/// with `git branch -d` when merged into the repository's current branch
/// (`-D` with `force_branches`). tend touches only what it recorded.
pub fn clean<L: Ledger + ?Sized>(
    ledger: &L,
    left: &LeftWorkspace,
    force: bool,
    force_branches: bool,
    dry_run: bool,
) -> Result<Cleaned, Error> {
    let w = &left.workspace;
    let path = Path::new(&w.path);
    let repo = w.repository.as_deref().map(Path::new);
    let outcome = match (w.kind, repo) {
        (WorkspaceKind::Worktree, Some(repo)) if repo.is_dir() => {
            clean_worktree(left, repo, force, force_branches, dry_run)
        }
        // A directory (or a worktree whose repository is gone): only files.
        _ if dry_run => Cleaned::Removed,
        _ => match std::fs::remove_dir_all(path) {
            Ok(()) => Cleaned::Removed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cleaned::Removed,
            Err(e) => Cleaned::Failed(format!("cannot remove {}: {e}", path.display())),
        },
    };
    if !dry_run {
        match &outcome {
            Cleaned::Removed => ledger.workspace_cleaned(&w.path, false)?,
            Cleaned::BranchKept => ledger.workspace_cleaned(&w.path, true)?,
            Cleaned::DirtyKept | Cleaned::Failed(_) => {}
        }
    }
    Ok(outcome)
}

fn clean_worktree(
    left: &LeftWorkspace,
    repo: &Path,
    force: bool,
    force_branches: bool,
    dry_run: bool,
) -> Cleaned {
    let w = &left.workspace;
    let path = Path::new(&w.path);
    if !left.worktree_removed && path.exists() {
        let dirty = git(path, &["status", "--porcelain"]).is_ok_and(|s| !s.trim().is_empty());
        if dirty && !force {
            return Cleaned::DirtyKept;
        }
        if !dry_run {
            let mut args = vec!["worktree", "remove"];
            if dirty {
                args.push("--force");
            }
            let at = path.to_string_lossy();
            args.push(&at);
            if let Err(e) = git(repo, &args) {
                return Cleaned::Failed(format!("git worktree remove {at}: {}", e.say()));
            }
        }
    }
    if !dry_run {
        let _ = git(repo, &["worktree", "prune"]);
    }
    let Some(branch) = &w.branch else {
        return Cleaned::Removed;
    };
    let exists = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok();
    if !exists {
        return Cleaned::Removed;
    }
    let merged = git(repo, &["merge-base", "--is-ancestor", branch, "HEAD"]).is_ok();
    if !merged && !force_branches {
        return Cleaned::BranchKept;
    }
    if dry_run {
        return Cleaned::Removed;
    }
    let flag = if merged { "-d" } else { "-D" };
    match git(repo, &["branch", "--quiet", flag, branch]) {
        Ok(_) => Cleaned::Removed,
        Err(e) => Cleaned::Failed(format!("git branch {flag} {branch}: {}", e.say())),
    }
}

/// Whether git runs here (what `--workspace worktree` needs; `doctor`
/// asks for the jobs that use it).
pub fn git_installed() -> bool {
    git(Path::new("/"), &["--version"]).is_ok()
}

/// Why a git command did not succeed.
enum Git {
    /// git is not on PATH.
    Missing,
    /// It ran and failed: its first line on stderr.
    Failed(String),
}

impl Git {
    fn say(&self) -> String {
        match self {
            Git::Missing => "git is not installed".into(),
            Git::Failed(why) => why.clone(),
        }
    }
}

/// Runs `git -C dir ARGS…` and returns its stdout.
fn git(dir: &Path, args: &[&str]) -> Result<String, Git> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Git::Missing,
            _ => Git::Failed(e.to_string()),
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or("it failed").trim();
    Err(Git::Failed(first.trim_start_matches("fatal: ").to_string()))
}
