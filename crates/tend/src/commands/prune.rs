//! `tend prune`: the ledger's old terminal executions go, with their events
//! and their log files; live ones never, and the last few of each job stay.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;
use tend_ledger::Ledger;
use tend_model::Execution;

use super::Context;
use crate::cli::PruneArgs;
use crate::output;

/// What a prune removed (or, with `--dry-run`, would remove).
#[derive(Serialize)]
struct Pruned {
    dry_run: bool,
    executions: Vec<String>,
    bytes: u64,
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

/// `tend prune [--older-than DUR] [--dry-run]`.
pub fn prune(ctx: &Context, args: &PruneArgs) -> Result<i32> {
    ctx.reconcile()?;
    let older = args.older_than.unwrap_or(ctx.config.retention);
    let gone = ctx.ledger.prune(
        tend_ledger::ms_ago(older),
        ctx.config.keep_last,
        args.dry_run,
    )?;
    let mut bytes = 0;
    for e in &gone {
        for f in files_of(e) {
            let Ok(meta) = std::fs::symlink_metadata(&f) else {
                continue;
            };
            bytes += meta.len();
            if !args.dry_run {
                let _ = std::fs::remove_file(&f);
            }
        }
    }
    let report = Pruned {
        dry_run: args.dry_run,
        executions: gone.iter().map(|e| e.id.to_string()).collect(),
        bytes,
    };
    if ctx.global.json {
        output::json(&report)?;
        return Ok(0);
    }
    if args.dry_run {
        for e in &gone {
            say!(
                "{}  {}  {}  {}",
                e.id,
                output::esc(&e.name),
                e.status,
                output::ago(e.created_at)
            )?;
        }
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
