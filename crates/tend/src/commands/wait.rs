//! `tend wait`.

use anyhow::Result;
use rustix::io::Errno;
use rustix::process::{getrlimit, setrlimit, Resource};
use tend_ledger::Ledger;
use tend_model::Status;

use super::Context;
use crate::cli::WaitArgs;
use crate::output;

/// Exit code when `wait --timeout` gives up (EX_TEMPFAIL: try again later).
pub const WAIT_TIMED_OUT: i32 = 75;

/// A wait holds a pidfd per live execution: lift the soft open-file limit
/// to the hard one first, as any process may. Returns the limit in force.
fn raise_open_file_limit() -> Option<u64> {
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum || l.maximum.is_none() {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current
}

/// Whether `e` comes from running out of file descriptors (EMFILE, ENFILE).
fn out_of_descriptors(e: &tend_supervisor::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            let raw = io.raw_os_error();
            if raw == Some(Errno::MFILE.raw_os_error()) || raw == Some(Errno::NFILE.raw_os_error())
            {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// `tend wait ID… | --key KEY`. Too many ids for the open-file limit is a
/// usage error (exit 2), never mistaken for a `lost` execution (exit 1).
pub fn wait(ctx: &Context, args: &WaitArgs) -> Result<i32> {
    let limit = raise_open_file_limit();
    ctx.reconcile_for_read()?;
    let targets = match &args.key {
        Some(key) => match ctx.ledger.by_key(key)? {
            Some(e) => vec![e],
            None => anyhow::bail!("no execution holds the key '{key}'"),
        },
        None => args
            .ids
            .iter()
            .map(|id| ctx.resolve(id))
            .collect::<Result<Vec<_>>>()?,
    };
    let ids: Vec<_> = targets.iter().map(|e| e.id.clone()).collect();
    // A retried run's id stands for its attempts: the wait ends with the last.
    let done =
        tend_supervisor::retry::wait_for_last_attempts(&ctx.ledger, &ctx.home, &ids, args.timeout)
            .map_err(|e| {
                if !out_of_descriptors(&e) {
                    return e.into();
                }
                crate::usage(format!(
                    "cannot wait for {} executions at once: each live one needs an open file and \
                 the limit is {}; wait for fewer at a time or raise it (ulimit -n)",
                    ids.len(),
                    limit.map_or("unlimited".into(), |l| l.to_string())
                ))
            })?;
    let Some(done) = done else {
        let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        note!("gave up waiting for {} after --timeout", names.join(", "));
        return Ok(WAIT_TIMED_OUT);
    };
    if ctx.global.json {
        // One schema, whatever the number of ids: an array.
        output::json(&done)?;
    } else if done.len() == 1 {
        if let Some(line) = output::ending(&done[0]).filter(|_| done[0].status == Status::Lost) {
            ctx.note(line);
        }
    } else if !ctx.global.quiet {
        for e in &done {
            note!(
                "{} {} ({})",
                e.id,
                e.status,
                output::esc(e.reason.as_deref().unwrap_or(""))
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
