//! `tend reap`.

use anyhow::Result;
use serde::Serialize;
use tend_ledger::Ledger;

use super::Context;
use crate::cli::ReapArgs;
use crate::output;

#[derive(Serialize)]
struct Reaped {
    lost: Vec<Lost>,
    stragglers: Vec<Straggler>,
    dry_run: bool,
}

#[derive(Serialize)]
struct Lost {
    id: String,
    was: tend_model::Status,
    reason: String,
    processes_ended: u32,
}

#[derive(Serialize)]
struct Straggler {
    pid: i32,
    execution_id: String,
    execution_status: Option<tend_model::Status>,
}

/// `tend reap [--dry-run]`.
pub fn reap(ctx: &Context, args: &ReapArgs) -> Result<i32> {
    let lost: Vec<Lost> = if args.dry_run {
        tend_supervisor::reconcile_dry_run(&ctx.ledger, &ctx.home)?
            .into_iter()
            .map(|(e, reason)| Lost {
                id: e.id.to_string(),
                was: e.status,
                reason: reason.to_string(),
                processes_ended: 0,
            })
            .collect()
    } else {
        ctx.reconcile()?
            .into_iter()
            .map(|r| Lost {
                id: r.execution.id.to_string(),
                was: r.was,
                reason: r.execution.reason.clone().unwrap_or_default(),
                processes_ended: r.processes_ended,
            })
            .collect()
    };
    let stragglers: Vec<Straggler> = tend_supervisor::sweep_stragglers(
        &ctx.ledger,
        &ctx.home,
        args.dry_run,
        ctx.config.kill_grace,
    )?
    .into_iter()
    .map(|s| Straggler {
        pid: s.pid,
        execution_id: s.execution_id,
        execution_status: s.status,
    })
    .collect();
    if ctx.global.json {
        output::json(&Reaped {
            lost,
            stragglers,
            dry_run: args.dry_run,
        })?;
        return Ok(0);
    }
    let verb = if args.dry_run { "would mark" } else { "marked" };
    for l in &lost {
        say!(
            "{verb} {} lost (was {}): {}; {} process(es) ended",
            l.id,
            l.was,
            output::esc(&l.reason),
            l.processes_ended
        )?;
    }
    let verb = if args.dry_run { "would end" } else { "ended" };
    for s in &stragglers {
        let what = match s.execution_status {
            Some(st) => format!("execution {} is {st}", output::esc(&s.execution_id)),
            None => format!(
                "execution {} is unknown to this ledger",
                output::esc(&s.execution_id)
            ),
        };
        say!("{verb} stray process {} ({what})", s.pid)?;
    }
    if lost.is_empty() && stragglers.is_empty() {
        ctx.note(format_args!(
            "nothing to reap: {} live execution(s), all supervised",
            ctx.ledger.live()?.len()
        ));
    }
    Ok(0)
}
