//! `tend wait`.

use anyhow::Result;
use tend_ledger::Ledger;

use super::Context;
use crate::cli::WaitArgs;
use crate::output;

/// Exit code when `wait --timeout` gives up (EX_TEMPFAIL: try again later).
pub const WAIT_TIMED_OUT: i32 = 75;

/// `tend wait ID… | --key KEY`.
pub fn wait(ctx: &Context, args: &WaitArgs) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let targets = match &args.key {
        Some(key) => match ctx.ledger.by_key(key)? {
            Some(e) => vec![e],
            None => return Err(crate::usage(format!("no execution holds the key '{key}'"))),
        },
        None => args
            .ids
            .iter()
            .map(|id| ctx.resolve(id))
            .collect::<Result<Vec<_>>>()?,
    };
    let ids: Vec<_> = targets.iter().map(|e| e.id.clone()).collect();
    let Some(done) = tend_supervisor::wait_until_done(&ctx.ledger, &ctx.home, &ids, args.timeout)?
    else {
        let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        eprintln!(
            "tend: gave up waiting for {} after --timeout",
            names.join(", ")
        );
        return Ok(WAIT_TIMED_OUT);
    };
    if ctx.global.json {
        if done.len() == 1 {
            output::json(&done[0]);
        } else {
            output::json(&done);
        }
    } else if !ctx.global.quiet && done.len() > 1 {
        for e in &done {
            eprintln!(
                "tend: {} {} ({})",
                e.id,
                e.status,
                e.reason.as_deref().unwrap_or("")
            );
        }
    }
    // One execution: its code. Several: the first non-zero, like a pipeline.
    Ok(done
        .iter()
        .map(|e| e.shell_code())
        .find(|c| *c != 0)
        .unwrap_or(0))
}
