//! `tend kill`.

use anyhow::Result;
use tend_ledger::KillRequest;
use tend_model::limits::{check_kill_grace, check_reason};
use tend_model::wire::Killed;
use tend_model::Execution;

use super::{actor, name_glob, Context};
use crate::cli::KillArgs;
use crate::output;

fn bulk(ctx: &Context, args: &KillArgs) -> Result<Vec<Execution>> {
    let sel = tend_supervisor::kill::Selection {
        name: args.name.as_deref().map(name_glob).transpose()?,
        labels: args.labels.clone(),
        older_than: args.older_than,
    };
    Ok(tend_supervisor::kill::select(&ctx.ledger, &sel)?)
}

/// The kill request, with its reason and grace within their limits.
fn request(args: &KillArgs) -> Result<KillRequest> {
    if let Some(r) = &args.reason {
        check_reason(r).map_err(|e| crate::usage(e.to_string()))?;
    }
    if let Some(g) = args.grace {
        check_kill_grace(g).map_err(|e| crate::usage(format!("--grace: {e}")))?;
    }
    Ok(KillRequest {
        actor: actor(),
        reason: args.reason.clone(),
        force: args.force,
        grace_ms: args.grace.map(|g| g.as_millis() as u64),
    })
}

/// `tend kill`.
pub fn kill(ctx: &Context, args: &KillArgs) -> Result<i32> {
    ctx.reconcile()?;
    let is_bulk =
        args.all || args.name.is_some() || !args.labels.is_empty() || args.older_than.is_some();
    if is_bulk && !args.ids.is_empty() {
        return Err(crate::usage(
            "give ids or a bulk selection (--name, --label, --older-than, --all), not both",
        ));
    }
    if !is_bulk && args.ids.is_empty() {
        return Err(crate::usage(
            "name the executions to kill: ids, or --name, --label, --older-than or --all",
        ));
    }
    let req = request(args)?;
    let targets = if is_bulk {
        let t = bulk(ctx, args)?;
        if !args.yes {
            return would_kill(ctx, &t);
        }
        t
    } else {
        args.ids
            .iter()
            .map(|id| ctx.resolve(id))
            .collect::<Result<Vec<_>>>()?
    };
    let results = tend_supervisor::kill_noting(&ctx.ledger, &ctx.home, &targets, &req, &mut |e| {
        ctx.note(remote_note(e))
    })?;
    let rows: Vec<Killed> = results
        .iter()
        .map(|r| Killed::new(&r.execution, r.already_finished))
        .collect();
    if ctx.global.json {
        output::json(&rows)?;
        return Ok(0);
    }
    for k in &rows {
        print_killed(k)?;
    }
    Ok(0)
}

/// What a kill of another agent's execution that has not ended yet says:
/// who must carry it out, and that it is still waited for.
fn remote_note(e: &Execution) -> String {
    format!(
        "execution {} runs on host {} under agent {}, whose `tend serve` has not carried the kill out yet; it will once that daemon runs, and tend keeps waiting (Ctrl-C stops waiting, the request stays recorded)",
        e.id,
        e.host,
        e.agent_id.as_deref().unwrap_or("unknown")
    )
}

/// A bulk selection without `--yes`: what it would kill, and exit 1.
fn would_kill(ctx: &Context, targets: &[Execution]) -> Result<i32> {
    if ctx.global.json {
        // The executions it would kill, as any list: an array, maybe empty.
        output::json(&targets)?;
        if !targets.is_empty() {
            note!("nothing was killed; add --yes to kill these");
        }
        return Ok(if targets.is_empty() { 0 } else { 1 });
    }
    if targets.is_empty() {
        ctx.note("no live execution matches");
        return Ok(0);
    }
    say!("would kill {} execution(s):", targets.len())?;
    for e in targets {
        say!(
            "  {}  {}  {}",
            e.id,
            output::esc(&e.name),
            output::ago(e.created_at)
        )?;
    }
    note!("nothing was killed; add --yes to kill these");
    Ok(1)
}

fn print_killed(k: &Killed) -> Result<()> {
    let e = &k.execution;
    if k.already_finished {
        return say!("{}  already finished ({}); nothing to kill", e.id, e.status);
    }
    let n = e.processes_signalled.unwrap_or(0);
    say!(
        "{}  {}  {}  {}ms  {} process{} signalled",
        e.id,
        e.status,
        e.kill_method
            .unwrap_or(tend_model::KillMethod::None)
            .as_str(),
        e.kill_duration_ms.unwrap_or(0),
        n,
        if n == 1 { "" } else { "es" }
    )
}
