//! `tend ps`, `tend list`, `tend show`: reading the ledger, after
//! reconciling it so that what is shown is true.

use anyhow::Result;
use serde::Serialize;
use tend_ledger::{Filter, Ledger};
use tend_model::{format_rfc3339, Execution};
use tend_proc::{procfs, tree, Pidfd, Verified};

use super::Context;
use crate::cli::{ListArgs, ShowArgs};
use crate::output::{self, ago, colour, exit, ran_for, status, table};

/// A live execution with what the kernel says about its tree right now.
#[derive(Serialize)]
struct PsRow {
    #[serde(flatten)]
    execution: Execution,
    /// CPU time used by every process of its tree, in milliseconds.
    cpu_ms: Option<u64>,
    /// Resident memory of every process of its tree, in bytes.
    rss_bytes: Option<u64>,
}

/// CPU time and RSS summed over the supervisor's descendants (the tree),
/// from one snapshot of the process table shared by every row.
fn usage(snapshot: &tree::Snapshot, e: &Execution) -> (Option<u64>, Option<u64>) {
    let Ok(Verified::Alive(_pin)) = Pidfd::open_verified(&e.supervisor) else {
        return (None, None);
    };
    let tick_ms = 1000 / rustix::param::clock_ticks_per_second().max(1);
    let page = procfs::page_size();
    let (mut cpu, mut rss) = (0u64, 0u64);
    for (_, st) in snapshot.descendants(e.supervisor.pid) {
        cpu += (st.utime + st.stime) * tick_ms;
        rss += st.rss_pages * page;
    }
    (Some(cpu), Some(rss))
}

fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n}B"),
        1024..=1_048_575 => format!("{:.0}K", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1}M", n as f64 / 1_048_576.0),
        _ => format!("{:.2}G", n as f64 / 1_073_741_824.0),
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
        .map(|execution| {
            let (cpu_ms, rss_bytes) = usage(&snapshot, &execution);
            PsRow {
                execution,
                cpu_ms,
                rss_bytes,
            }
        })
        .collect();
    if ctx.global.json {
        output::json(&rows);
        return Ok(0);
    }
    if rows.is_empty() {
        ctx.note("nothing is running");
        return Ok(0);
    }
    let c = colour();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let e = &r.execution;
            vec![
                e.id.to_string(),
                e.name.clone(),
                status(e.status, c),
                e.pid.map_or("-".into(), |p| p.to_string()),
                ago(e.created_at).trim_end_matches(" ago").to_string(),
                "-".into(),
                r.cpu_ms.map_or("-".into(), |ms| {
                    tend_model::format_duration(std::time::Duration::from_millis(ms))
                }),
                r.rss_bytes.map_or("-".into(), bytes),
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
        &cells,
    );
    Ok(0)
}

/// `tend list`.
pub fn list(ctx: &Context, args: &ListArgs) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let filter = Filter {
        statuses: args.status.clone(),
        name: args.name.clone(),
        labels: args.labels.clone(),
        since_ms: args
            .since
            .map(|d| tend_ledger::now_ms() - d.as_millis() as i64),
        limit: Some(args.limit),
        offset: None,
    };
    let rows = ctx.ledger.list(&filter)?;
    if ctx.global.json {
        output::json(&rows);
        return Ok(0);
    }
    if rows.is_empty() {
        ctx.note("no executions match");
        return Ok(0);
    }
    let c = colour();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.name.clone(),
                status(e.status, c),
                exit(e),
                ago(e.created_at),
                ran_for(e),
                e.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "NAME", "STATUS", "EXIT", "CREATED", "DURATION", "REASON",
        ],
        &cells,
    );
    Ok(0)
}

/// `tend show`.
pub fn show(ctx: &Context, args: &ShowArgs) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let e = ctx.resolve(&args.id)?;
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
        });
        return Ok(0);
    }
    let c = colour();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let time = |t: Option<i64>| {
        t.map_or("-".into(), |t| {
            format!("{} ({})", format_rfc3339(t), ago(t))
        })
    };
    let mut fields: Vec<(&str, String)> = vec![
        ("id", e.id.to_string()),
        ("name", e.name.clone()),
        ("status", status(e.status, c)),
        ("reason", opt(e.reason.clone())),
        ("exit code", opt(e.exit_code.map(|c| c.to_string()))),
        (
            "signal",
            opt(e
                .signal
                .map(|s| format!("{s} ({})", tend_supervisor::signal_name(s)))),
        ),
        ("command", shell_words(&e.command)),
        ("cwd", e.cwd.clone()),
        ("key", opt(e.key.clone())),
        ("labels", join_map(&e.labels)),
        ("env", join_map(&e.env)),
        ("created", time(Some(e.created_at))),
        ("started", time(e.started_at)),
        ("finished", time(e.finished_at)),
        ("duration", ran_for(&e)),
        ("host", e.host.clone()),
        ("tier", e.tier.clone()),
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
            ),
        ),
        (
            "timeout",
            opt(e
                .timeout_ms
                .map(|t| tend_model::format_duration(std::time::Duration::from_millis(t)))),
        ),
        ("kill grace", dur(e.kill_grace_ms)),
        (
            "heartbeat",
            opt(e.heartbeat_timeout_ms.map(|t| {
                format!(
                    "every {}, last {}{}",
                    dur(t),
                    e.last_heartbeat_at.map_or("never".into(), ago),
                    e.progress
                        .as_ref()
                        .map_or(String::new(), |p| format!(" ({p})"))
                )
            })),
        ),
        ("idle timeout", opt(e.idle_timeout_ms.map(dur))),
        ("max memory", opt(e.max_memory_bytes.map(bytes))),
        ("cgroup", opt(e.cgroup.clone())),
        ("cpu", opt(e.cpu_ms.map(dur))),
        ("peak rss", opt(e.max_rss_bytes.map(bytes))),
    ];
    if let Some(m) = e.kill_method {
        fields.push((
            "kill",
            format!(
                "{} in {}ms, {} processes signalled",
                m.as_str(),
                e.kill_duration_ms.unwrap_or(0),
                e.processes_signalled.unwrap_or(0)
            ),
        ));
    }
    fields.push(("stdout", e.stdout_path.clone()));
    fields.push(("stderr", e.stderr_path.clone()));
    let w = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        println!("{k:>w$}  {v}");
    }
    println!();
    let cells: Vec<Vec<String>> = events
        .iter()
        .map(|ev| {
            vec![
                format_rfc3339(ev.at),
                ev.kind.clone(),
                ev.actor.clone(),
                ev.details.to_string(),
            ]
        })
        .collect();
    table(&["TIME", "EVENT", "ACTOR", "DETAILS"], &cells);
    Ok(0)
}

fn dur(ms: u64) -> String {
    tend_model::format_duration(std::time::Duration::from_millis(ms))
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

/// argv written so that it could be pasted into a shell.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
