//! `tend prune`: the ledger's old terminal executions go, with their events
//! and their log files; live ones never, and the last few of each job stay.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::PruneArgs;
use crate::output;

/// What `--json` prints.
#[derive(Serialize)]
struct Report {
    dry_run: bool,
    executions: Vec<String>,
    bytes: u64,
}

/// `tend prune [--older-than DUR] [--dry-run]`.
pub fn prune(ctx: &Context, args: &PruneArgs) -> Result<i32> {
    ctx.reconcile()?;
    let older = args.older_than.unwrap_or(ctx.config.retention);
    let p = tend_supervisor::prune::prune(&ctx.ledger, older, ctx.config.keep_last, args.dry_run)?;
    let (gone, bytes) = (&p.executions, p.bytes);
    let report = Report {
        dry_run: args.dry_run,
        executions: gone.iter().map(|e| e.id.to_string()).collect(),
        bytes,
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
