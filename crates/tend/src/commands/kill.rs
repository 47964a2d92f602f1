//! `tend kill`.

use anyhow::Result;
use serde::Serialize;
use tend_ledger::{KillRequest, Ledger};
use tend_model::{Execution, KillMethod, Status};

use super::{actor, Context};
use crate::cli::KillArgs;
use crate::output;

#[derive(Serialize)]
struct Killed<'a> {
    id: &'a str,
    status: Status,
    kill_method: KillMethod,
    kill_duration_ms: u64,
    processes_signalled: u32,
    already_finished: bool,
}

fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

fn bulk(ctx: &Context, args: &KillArgs) -> Result<Vec<Execution>> {
    let now = tend_ledger::now_ms();
    Ok(ctx
        .ledger
        .live()?
        .into_iter()
        .filter(|e| args.name.as_deref().is_none_or(|g| glob(g, &e.name)))
        .filter(|e| args.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
        .filter(|e| {
            args.older_than
                .is_none_or(|d| now - e.created_at >= d.as_millis() as i64)
        })
        .collect())
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
    let targets = if is_bulk {
        let t = bulk(ctx, args)?;
        if !args.yes {
            if t.is_empty() {
                ctx.note("no live execution matches");
                return Ok(0);
            }
            println!("would kill {} execution(s):", t.len());
            for e in &t {
                println!("  {}  {}  {}", e.id, e.name, output::ago(e.created_at));
            }
            eprintln!("tend: nothing was killed; add --yes to kill these");
            return Ok(1);
        }
        t
    } else {
        args.ids
            .iter()
            .map(|id| ctx.resolve(id))
            .collect::<Result<Vec<_>>>()?
    };
    let req = KillRequest {
        actor: actor(),
        reason: args.reason.clone(),
        force: args.force,
        grace_ms: args.grace.map(|g| g.as_millis() as u64),
    };
    let results = tend_supervisor::kill(&ctx.ledger, &ctx.home, &targets, &req)?;
    let rows: Vec<Killed<'_>> = results
        .iter()
        .map(|r| {
            let e = &r.execution;
            Killed {
                id: e.id.as_str(),
                status: e.status,
                kill_method: if r.already_finished {
                    KillMethod::None
                } else {
                    e.kill_method.unwrap_or(KillMethod::None)
                },
                kill_duration_ms: if r.already_finished {
                    0
                } else {
                    e.kill_duration_ms.unwrap_or(0)
                },
                processes_signalled: if r.already_finished {
                    0
                } else {
                    e.processes_signalled.unwrap_or(0)
                },
                already_finished: r.already_finished,
            }
        })
        .collect();
    if ctx.global.json {
        output::json(&rows);
        return Ok(0);
    }
    for k in &rows {
        if k.already_finished {
            println!("{}  already finished ({}); nothing to kill", k.id, k.status);
        } else {
            println!(
                "{}  {}  {}  {}ms  {} process{} signalled",
                k.id,
                k.status,
                k.kill_method.as_str(),
                k.kill_duration_ms,
                k.processes_signalled,
                if k.processes_signalled == 1 { "" } else { "es" }
            );
        }
    }
    Ok(0)
}
