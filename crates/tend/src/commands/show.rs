//! `tend show`: every field of one execution and its events, after
//! reconciling, with text from outside tend escaped.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tend_ledger::Ledger;
use tend_model::{format_rfc3339, Execution};

use super::Context;
use crate::cli::ShowArgs;
use crate::output::{self, ago, bytes, colour, ran_for, Cell};

/// `tend show`.
pub fn show(ctx: &Context, args: &ShowArgs) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let mut e = ctx.resolve(&args.id)?;
    if !e.status.is_terminal() {
        // What the tree has used so far, as `tend ps` shows it.
        let snapshot = tend_proc::tree::Snapshot::take();
        e.cpu_ms = super::query::usage(&snapshot, &e).0.or(e.cpu_ms);
    }
    let events = ctx.ledger.events(&e.id)?;
    if ctx.global.json {
        #[derive(Serialize)]
        struct Show<'a> {
            #[serde(flatten)]
            execution: &'a Execution,
            events: &'a [tend_model::Event],
        }
        output::json(&Show {
            execution: &e,
            events: &events,
        })?;
        return Ok(0);
    }
    output::fields(fields(&e))?;
    say!("")?;
    output::events_table(
        events
            .iter()
            .map(|ev| (ev.at, ev.kind.as_str(), ev.actor.as_str(), &ev.details)),
    )?;
    Ok(0)
}

/// `2 of 4, retries abcd1234, starts in 3s` for a run with retries.
fn attempt(e: &Execution) -> Option<String> {
    if e.retries == 0 {
        return None;
    }
    let mut s = format!("{} of {}", e.attempt.unwrap_or(1), e.retries + 1);
    if let Some(prev) = &e.retry_of {
        s.push_str(&format!(", retries {prev}"));
    }
    if let (tend_model::Status::Queued, Some(at)) = (e.status, e.start_after) {
        let left = (at - tend_ledger::now_ms()).max(0) as u64;
        let left = output::short(std::time::Duration::from_millis(left));
        s.push_str(&format!(", starts in {left}"));
    }
    Some(s)
}

/// The fields of `e`, one per line, in the order a person reads them.
fn fields(e: &Execution) -> Vec<(&'static str, Cell)> {
    let opt = |v: Option<String>| -> Cell { v.unwrap_or_else(|| "-".into()).into() };
    let time = |t: Option<i64>| -> Cell {
        t.map_or("-".into(), |t| {
            format!("{} ({})", format_rfc3339(t), ago(t))
        })
        .into()
    };
    let mut fields: Vec<(&str, Cell)> = vec![
        ("id", e.id.to_string().into()),
        ("name", Cell::text(&e.name)),
        ("job", opt(e.job_ref())),
        ("attempt", opt(attempt(e))),
        ("status", Cell::status(e.status, colour())),
        ("reason", opt(e.reason.clone())),
        ("exit code", opt(e.exit_code.map(|c| c.to_string()))),
        (
            "signal",
            opt(e
                .signal
                .map(|s| format!("{s} ({})", tend_supervisor::signal_name(s)))),
        ),
        ("command", output::command_line(&e.command).into()),
        ("cwd", Cell::path(&e.cwd)),
        (
            "workspace",
            opt(e.workspace.as_ref().map(|w| match &w.branch {
                Some(b) => format!("{} (worktree, branch {b})", w.path),
                None => format!("{} ({})", w.path, w.kind),
            })),
        ),
        ("key", opt(e.key.clone())),
        ("labels", join_map(&e.labels).into()),
        ("env", join_map(&e.env).into()),
        ("created", time(Some(e.created_at))),
        ("started", time(e.started_at)),
        ("finished", time(e.finished_at)),
        ("duration", ran_for(e).into()),
        ("host", Cell::text(&e.host)),
        ("tier", Cell::text(e.tier.as_str())),
        (
            "pid",
            opt(e
                .process
                .as_ref()
                .map(|p| format!("{} (start tick {})", p.pid, p.start_time))),
        ),
        (
            "supervisor",
            format!(
                "pid {} (start tick {}, boot {})",
                e.supervisor.pid, e.supervisor.start_time, e.supervisor.boot_id
            )
            .into(),
        ),
        ("timeout", opt(e.timeout_ms.map(dur))),
        ("kill grace", dur(e.kill_grace_ms).into()),
        (
            "heartbeat",
            opt(e.heartbeat_timeout_ms.map(|t| heartbeat(e, t))),
        ),
        ("idle timeout", opt(e.idle_timeout_ms.map(dur))),
        ("max memory", opt(e.max_memory_bytes.map(bytes))),
        ("cgroup", opt(e.cgroup.clone())),
        ("cpu", opt(e.cpu_ms.map(dur))),
        ("peak rss", opt(e.max_rss_bytes.map(bytes))),
    ];
    if let Some(m) = e.kill_method {
        let kill = format!(
            "{} in {}ms, {} processes signalled",
            m.as_str(),
            e.kill_duration_ms.unwrap_or(0),
            e.processes_signalled.unwrap_or(0)
        );
        fields.push(("kill", kill.into()));
    }
    fields.push(("stdout", Cell::text(&e.stdout_path)));
    fields.push(("stderr", Cell::text(&e.stderr_path)));
    fields
}

/// `every 30s, last 5s ago (progress)`.
fn heartbeat(e: &Execution, every_ms: u64) -> String {
    format!(
        "every {}, last {}{}",
        dur(every_ms),
        e.last_heartbeat_at.map_or("never".into(), ago),
        e.progress
            .as_ref()
            .map_or(String::new(), |p| format!(" ({p})"))
    )
}

fn dur(ms: u64) -> String {
    tend_model::format_duration(Duration::from_millis(ms))
}

fn join_map(m: &std::collections::BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
