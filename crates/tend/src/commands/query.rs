//! `tend ps`, `tend list`: reading the ledger, after reconciling it so
//! that what is shown is true.

use anyhow::Result;
use serde::Serialize;
use tend_ledger::{Filter, Ledger};
use tend_model::Execution;
use tend_proc::{procfs, tree, Pidfd, Verified};

use super::{name_glob, Context};
use crate::cli::ListArgs;
use crate::output::{self, ago, bytes, colour, exit, ran_for, table, Cell};

/// A live execution with what the kernel says about its tree right now:
/// its `cpu_ms` is the tree's CPU time so far (one key, the live value;
/// issue 9 found it twice).
#[derive(Serialize)]
struct PsRow {
    #[serde(flatten)]
    execution: Execution,
    /// Resident memory of every process of its tree, in bytes.
    rss_bytes: Option<u64>,
}

/// CPU time and RSS of an execution's tree, from one snapshot of the
/// process table shared by every row. CPU counts the exited processes too:
/// the cgroup's own account where there is one, else what the supervisor
/// (the subreaper every process of the tree is reaped by) and the live
/// processes accumulated from the children they waited for. Shared by
/// `tend ps` and `tend top`, so both show the same numbers.
pub(super) fn usage(snapshot: &tree::Snapshot, e: &Execution) -> (Option<u64>, Option<u64>) {
    let Ok(Verified::Alive(_pin)) = Pidfd::open_verified(&e.supervisor) else {
        return (None, None);
    };
    let tick_ms = 1000 / rustix::param::clock_ticks_per_second().max(1);
    let page = procfs::page_size();
    let reaped = procfs::stat(e.supervisor.pid).map_or(0, |s| s.children_ticks);
    let (mut ticks, mut rss) = (reaped, 0u64);
    for (_, st) in snapshot.descendants(e.supervisor.pid) {
        ticks += st.utime + st.stime + st.children_ticks;
        rss += st.rss_pages * page;
    }
    let cgroup = e.cgroup.as_deref().map(tend_proc::cgroup::Cgroup::at);
    let cpu = match cgroup.and_then(|c| c.cpu_usage()) {
        Some(d) => d.as_millis() as u64,
        None => ticks * tick_ms,
    };
    (Some(cpu), Some(rss))
}

/// The HEARTBEAT cell: how long ago the last one came and its progress
/// text; "none yet" when one is expected and none came.
fn heartbeat(e: &Execution) -> Cell {
    match (e.last_heartbeat_at, &e.progress) {
        (Some(at), Some(p)) => Cell::text(&format!("{} {p}", ago(at))),
        (Some(at), None) => ago(at).into(),
        (None, _) if e.heartbeat_timeout_ms.is_some() => "none yet".into(),
        (None, _) => "-".into(),
    }
}

/// The NAME cell: a job's run shows its place in the job (`backup#42`),
/// after its own name when that is another.
pub(super) fn shown_name(e: &Execution) -> String {
    match e.job_ref() {
        Some(r) if e.job.as_deref() == Some(e.name.as_str()) => r,
        Some(r) => format!("{} ({r})", e.name),
        None => e.name.clone(),
    }
}

/// `tend ps`.
pub fn ps(ctx: &Context) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let snapshot = tree::Snapshot::take();
    let rows: Vec<PsRow> = ctx
        .ledger
        .live()?
        .into_iter()
        .map(|mut execution| {
            let (cpu_ms, rss_bytes) = usage(&snapshot, &execution);
            execution.cpu_ms = cpu_ms.or(execution.cpu_ms);
            PsRow {
                execution,
                rss_bytes,
            }
        })
        .collect();
    if ctx.global.json {
        output::json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        ctx.note("nothing is running");
        return Ok(0);
    }
    let c = colour();
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let e = &r.execution;
            vec![
                e.id.to_string().into(),
                Cell::text(&shown_name(e)),
                Cell::status(e.status, c),
                e.pid.map_or("-".into(), |p| p.to_string()).into(),
                ago(e.created_at).trim_end_matches(" ago").into(),
                heartbeat(e),
                e.cpu_ms
                    .map_or("-".into(), |ms| {
                        tend_model::format_duration(std::time::Duration::from_millis(ms))
                    })
                    .into(),
                r.rss_bytes.map_or("-".into(), bytes).into(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "STATUS",
            "PID",
            "AGE",
            "HEARTBEAT",
            "CPU",
            "RSS",
        ],
        cells,
    )?;
    Ok(0)
}

/// `tend list`.
pub fn list(ctx: &Context, args: &ListArgs) -> Result<i32> {
    if let Some(name) = &args.name {
        name_glob(name)?;
    }
    ctx.reconcile_for_read()?;
    let filter = Filter {
        statuses: args.status.clone(),
        name: args.name.clone(),
        labels: args.labels.clone(),
        since_ms: args.since.map(tend_ledger::ms_ago),
        limit: Some(args.limit),
        offset: None,
        job: args.job.clone(),
    };
    let rows = ctx.ledger.list(&filter)?;
    if ctx.global.json {
        output::json(&rows)?;
        return Ok(0);
    }
    // Only a full page can have been cut: only then is a count worth it.
    let more = match rows.len() as u32 == args.limit {
        true => ctx.ledger.count(&filter)?.saturating_sub(rows.len() as u64),
        false => 0,
    };
    if rows.is_empty() {
        ctx.note("no executions match");
        return Ok(0);
    }
    let c = colour();
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|e| {
            vec![
                e.id.to_string().into(),
                Cell::text(&shown_name(e)),
                Cell::status(e.status, c),
                exit(e).into(),
                ago(e.created_at).into(),
                ran_for(e).into(),
                Cell::text(&output::command_line(&e.command)),
                Cell::text(e.reason.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    table(
        &[
            "ID", "NAME", "STATUS", "EXIT", "CREATED", "DURATION", "COMMAND", "REASON",
        ],
        cells,
    )?;
    if more > 0 {
        ctx.note(format!(
            "{more} more not shown; see them with --limit {}",
            args.limit as u64 + more
        ));
    }
    Ok(0)
}
