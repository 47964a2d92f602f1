//! `tend prune`: the ledger's old terminal executions go, with their events
//! and their log files; live ones never, and the last few of each job stay.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::PruneArgs;
use crate::output;

/// What `--json` prints.
#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    executions: Vec<String>,
    bytes: u64,
    workspaces: &'a [tend_supervisor::prune::PrunedWorkspace],
}

/// `tend prune [--older-than DUR] [--dry-run] [--force] [--force-branches]`.
pub fn prune(ctx: &Context, args: &PruneArgs) -> Result<i32> {
    ctx.reconcile()?;
    let older = args.older_than.unwrap_or(ctx.config.retention);
    let force = tend_supervisor::prune::Force {
        worktrees: args.force,
        branches: args.force_branches,
    };
    let p = tend_supervisor::prune::prune(
        &ctx.ledger,
        older,
        ctx.config.keep_last,
        args.dry_run,
        force,
    )?;
    let (gone, bytes) = (&p.executions, p.bytes);
    let report = Report {
        dry_run: args.dry_run,
        executions: gone.iter().map(|e| e.id.to_string()).collect(),
        bytes,
        workspaces: &p.workspaces,
    };
    if ctx.global.json {
        output::json(&report)?;
        return Ok(0);
    }
    if args.dry_run {
        for e in gone {
            say!(
                "{}  {}  {}  {}",
                e.id,
                output::esc(&e.name),
                e.status,
                output::ago(e.created_at)
            )?;
        }
    }
    for w in &p.workspaces {
        say_workspace(ctx, w, args.dry_run)?;
    }
    let verb = if args.dry_run {
        "would prune"
    } else {
        "pruned"
    };
    ctx.note(format_args!(
        "{verb} {} execution{} older than {} ({} of logs)",
        gone.len(),
        if gone.len() == 1 { "" } else { "s" },
        tend_model::format_duration(older),
        output::bytes(bytes)
    ));
    Ok(0)
}

/// One line per workspace looked at: removed, or kept and how to remove it.
fn say_workspace(
    ctx: &Context,
    w: &tend_supervisor::prune::PrunedWorkspace,
    dry_run: bool,
) -> Result<()> {
    use tend_supervisor::workspace::Cleaned;
    let what = match (&w.workspace.branch, w.workspace.kind) {
        (Some(b), _) => format!("worktree {} (branch {})", w.workspace.path, output::esc(b)),
        (None, kind) => format!("{kind} workspace {}", w.workspace.path),
    };
    let line = match (&w.outcome, dry_run) {
        (Cleaned::Removed, true) => format!("would remove {what}"),
        (Cleaned::Removed, false) => format!("removed {what}"),
        (Cleaned::BranchKept, _) => format!(
            "kept the branch of {what}: it is not merged into its repository's current branch (--force-branches deletes it)"
        ),
        (Cleaned::DirtyKept, _) => format!(
            "kept {what}: it has changes that were never committed (--force removes it)"
        ),
        (Cleaned::Failed(why), _) => format!("could not clean up {what}: {}", output::esc(why)),
    };
    ctx.note(line);
    Ok(())
}
