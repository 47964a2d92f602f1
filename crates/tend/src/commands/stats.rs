//! `tend stats`: what the ledger says about recent executions, computed by
//! the ledger (aggregates, not rows), the same figures as `GET
//! /api/v1/stats`.

use std::time::Duration;

use anyhow::Result;
use tend_ledger::Ledger;
use tend_model::format_duration;
use tend_model::wire::{Counted, Stats};

use super::{name_glob, Context};
use crate::cli::StatsArgs;
use crate::output;

/// `tend stats [--since DUR] [--name GLOB]`.
pub fn stats(ctx: &Context, args: &StatsArgs) -> Result<i32> {
    if let Some(name) = &args.name {
        name_glob(name)?;
    }
    ctx.reconcile_for_read()?;
    let since = args.since.unwrap_or(Duration::from_secs(86_400));
    let s = ctx
        .ledger
        .stats(Some(tend_ledger::ms_ago(since)), args.name.as_deref())?;
    if ctx.global.json {
        output::json(&s)?;
        return Ok(0);
    }
    print(&s, since, args.name.as_deref())
}

fn ms(v: u64) -> String {
    format_duration(Duration::from_millis(v))
}

fn list(items: &[Counted], value: impl Fn(u64) -> String) -> String {
    if items.is_empty() {
        return "-".into();
    }
    items
        .iter()
        .map(|c| format!("{} ({})", output::esc(&c.key), value(c.value)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print(s: &Stats, since: Duration, name: Option<&str>) -> Result<i32> {
    let whose = name.map_or(String::new(), |n| format!(" named '{}'", output::esc(n)));
    say!(
        "{} executions{whose} in the last {}",
        s.total,
        format_duration(since)
    )?;
    let counts: Vec<String> = s
        .by_status
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    say!(
        "  by status     {}",
        if counts.is_empty() {
            "-".into()
        } else {
            counts.join("  ")
        }
    )?;
    let ended: u64 = s
        .by_status
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "queued" | "running"))
        .map(|(_, n)| n)
        .sum();
    match s.failure_rate {
        Some(r) => say!("  failure rate  {:.1}% of {ended} that ended", r * 100.0)?,
        None => say!("  failure rate  - (none ended)")?,
    }
    match &s.duration_ms {
        Some(d) => say!(
            "  run time      p50 {}  p90 {}  p95 {}  p99 {}  max {}",
            ms(d.p50),
            ms(d.p90),
            ms(d.p95),
            ms(d.p99),
            ms(d.max)
        )?,
        None => say!("  run time      -")?,
    }
    say!(
        "  lost          {}",
        list(&s.lost_by_reason, |n| n.to_string())
    )?;
    say!("  slowest       {}", list(&s.slowest, ms))?;
    say!(
        "  most failing  {}",
        list(&s.most_failing, |n| n.to_string())
    )?;
    Ok(0)
}
