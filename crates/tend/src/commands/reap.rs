//! `tend reap`.

use anyhow::Result;
use tend_ledger::Ledger;

use super::Context;
use crate::cli::ReapArgs;
use crate::output;

/// `tend reap [--dry-run]`: the reaper pass the daemon's `POST /api/v1/reap`
/// makes too ([`tend_supervisor::reap`]), printed.
pub fn reap(ctx: &Context, args: &ReapArgs) -> Result<i32> {
    let reaped =
        tend_supervisor::reap(&ctx.ledger, &ctx.home, args.dry_run, ctx.config.kill_grace)?;
    if ctx.global.json {
        output::json(&reaped)?;
        return Ok(0);
    }
    let (lost, stragglers) = (&reaped.lost, &reaped.stragglers);
    let verb = if args.dry_run { "would mark" } else { "marked" };
    for l in lost {
        say!(
            "{verb} {} lost (was {}): {}; {} process(es) ended",
            l.id,
            l.was,
            output::esc(&l.reason),
            l.processes_ended
        )?;
    }
    let verb = if args.dry_run { "would end" } else { "ended" };
    for s in stragglers {
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
