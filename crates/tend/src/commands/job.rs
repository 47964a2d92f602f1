//! `tend job add|list|show|run|pause|resume|rm`: stored jobs.
//!
//! A job's template is exactly the [`RunOptions`](tend_model::run::RunOptions)
//! `tend run` builds from the same flags, checked by the one validator (with
//! the name, schedule and zone) before anything is stored. `job run` applies
//! the job's concurrency policy (`tend_supervisor::jobs::make_room`) and
//! then behaves as `tend run`. Every change announces itself on the home's
//! notifier, so a daemon's scheduler looks again at once.

use anyhow::{bail, Result};
use tend_ledger::{Filter, Ledger};
use tend_model::job::{JobDetail, JobSpec, JobView};
use tend_model::{format_rfc3339, Execution};
use tend_supervisor::jobs::{forbidden_sentence, live_runs, make_room, Room};

use super::Context;
use crate::cli::{JobAddArgs, JobCmd, JobRmArgs, JobRunArgs};
use crate::output::{self, ago, colour, exit, table, Cell};

/// How many fires `job show` lists.
const SHOWN_FIRES: usize = 5;
/// How many executions `job show` lists.
const SHOWN_RUNS: u32 = 10;

/// `tend job …`.
pub fn job(ctx: &Context, cmd: &JobCmd) -> Result<i32> {
    match cmd {
        JobCmd::Add(a) => add(ctx, a),
        JobCmd::List => list(ctx),
        JobCmd::Show(a) => show(ctx, &a.job),
        JobCmd::Run(a) => run(ctx, a),
        JobCmd::Pause(a) => pause(ctx, &a.job, true),
        JobCmd::Resume(a) => pause(ctx, &a.job, false),
        JobCmd::Rm(a) => rm(ctx, a),
    }
}

fn now() -> i64 {
    tend_ledger::now_ms()
}

fn add(ctx: &Context, args: &JobAddArgs) -> Result<i32> {
    let spec = JobSpec {
        name: args.job.clone(),
        run: super::run::options(&args.options, &args.command)?,
        schedule: args.schedule.clone(),
        timezone: args.timezone.clone(),
        concurrency: args.concurrency,
        catch_up: args.catch_up,
    };
    let zone = tend_model::job::local_zone_name();
    let def = spec
        .check(&ctx.config.policy()?, &zone)
        .map_err(|e| crate::usage(e.to_string()))?;
    let job = ctx.ledger.add_job(&def, args.replace)?;
    ctx.home.notifier().announce_jobs();
    let view = JobView::new(job, now(), 1);
    if ctx.global.json {
        output::json(&view)?;
        return Ok(0);
    }
    let verb = if args.replace { "stored" } else { "added" };
    match view.next_fires.first() {
        Some(f) => say!("job {} {verb}; next fire {f}", view.job.definition.name)?,
        None if view.job.definition.schedule.is_some() => {
            say!("job {} {verb}; paused", view.job.definition.name)?
        }
        None => say!(
            "job {} {verb}; no schedule: run it with tend job run {}",
            view.job.definition.name,
            view.job.definition.name
        )?,
    }
    Ok(0)
}

fn list(ctx: &Context) -> Result<i32> {
    let views: Vec<JobView> = ctx
        .ledger
        .jobs()?
        .into_iter()
        .map(|j| JobView::new(j, now(), 1))
        .collect();
    if ctx.global.json {
        output::json(&views)?;
        return Ok(0);
    }
    if views.is_empty() {
        ctx.note("no jobs; add one with tend job add NAME --schedule SPEC -- CMD");
        return Ok(0);
    }
    let cells = views
        .iter()
        .map(|v| {
            let d = &v.job.definition;
            vec![
                Cell::text(&d.name),
                Cell::text(d.schedule.as_deref().unwrap_or("-")),
                v.next_fires
                    .first()
                    .map_or("-".into(), |f| f.clone())
                    .into(),
                if v.job.paused { "paused" } else { "active" }.into(),
                d.concurrency.as_str().into(),
                (v.job.next_number - 1).to_string().into(),
                Cell::text(&output::command_line(&d.run.command)),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "SCHEDULE",
            "NEXT",
            "STATE",
            "CONCURRENCY",
            "RUNS",
            "COMMAND",
        ],
        cells,
    )?;
    Ok(0)
}

fn show(ctx: &Context, name: &str) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let job = ctx.ledger.job(name)?;
    let executions = ctx.ledger.list(&Filter {
        job: Some(name.to_string()),
        limit: Some(SHOWN_RUNS),
        ..Filter::default()
    })?;
    let events = ctx.ledger.job_events(name)?;
    let detail = JobDetail {
        view: JobView::new(job, now(), SHOWN_FIRES),
        executions,
        events,
    };
    if ctx.global.json {
        output::json(&detail)?;
        return Ok(0);
    }
    print_definition(&detail.view)?;
    say!("")?;
    say!("next fires:")?;
    for f in &detail.view.next_fires {
        say!("  {f}")?;
    }
    if detail.view.next_fires.is_empty() {
        say!("  none")?;
    }
    say!("")?;
    print_runs(&detail.executions)?;
    if !detail.events.is_empty() {
        say!("")?;
        output::events_table(
            detail
                .events
                .iter()
                .map(|ev| (ev.at, ev.kind.as_str(), ev.actor.as_str(), &ev.details)),
        )?;
    }
    Ok(0)
}

fn print_definition(v: &JobView) -> Result<()> {
    let (j, d) = (&v.job, &v.job.definition);
    let run = serde_json::to_value(&d.run)?;
    let mut fields: Vec<(&str, Cell)> = vec![
        ("name", Cell::text(&d.name)),
        ("command", Cell::text(&output::command_line(&d.run.command))),
        ("cwd", d.run.cwd.as_deref().map_or("/".into(), Cell::path)),
        (
            "schedule",
            Cell::text(&match &d.schedule {
                Some(s) => format!("{s} ({})", d.timezone),
                None => "none (runs on demand)".into(),
            }),
        ),
        ("concurrency", d.concurrency.as_str().into()),
        ("catch-up", d.catch_up.as_str().into()),
        ("state", if j.paused { "paused" } else { "active" }.into()),
        ("next number", j.next_number.to_string().into()),
        ("created", format_rfc3339(j.created_at).into()),
    ];
    let options: Vec<String> = run
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "command" | "cwd"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !options.is_empty() {
        fields.push(("options", Cell::text(&options.join(" "))));
    }
    output::fields(fields)
}

fn print_runs(runs: &[Execution]) -> Result<()> {
    if runs.is_empty() {
        say!("no executions yet")?;
        return Ok(());
    }
    let c = colour();
    let cells = runs
        .iter()
        .map(|e| {
            vec![
                Cell::text(&e.job_ref().unwrap_or_default()),
                e.id.to_string().into(),
                Cell::status(e.status, c),
                exit(e).into(),
                ago(e.created_at).into(),
                output::ran_for(e).into(),
            ]
        })
        .collect();
    table(
        &["RUN", "ID", "STATUS", "EXIT", "CREATED", "DURATION"],
        cells,
    )
}

fn run(ctx: &Context, args: &JobRunArgs) -> Result<i32> {
    let job = ctx.ledger.job(&args.job)?;
    let spec = job
        .spec(&ctx.config.policy()?)
        .map_err(|e| crate::usage(e.to_string()))?;
    ctx.reconcile()?;
    if let Room::Forbidden(live) = make_room(&ctx.ledger, &ctx.home, &job, super::actor())? {
        bail!("{}", forbidden_sentence(&args.job, &live));
    }
    super::run::execute(ctx, spec, args.detach)
}

fn pause(ctx: &Context, name: &str, paused: bool) -> Result<i32> {
    let job = ctx.ledger.set_paused(name, paused)?;
    ctx.home.notifier().announce_jobs();
    let view = JobView::new(job, now(), 1);
    if ctx.global.json {
        output::json(&view)?;
        return Ok(0);
    }
    match (paused, view.next_fires.first()) {
        (true, _) => say!("job {name} paused")?,
        (false, Some(f)) => say!("job {name} resumed; next fire {f}")?,
        (false, None) => say!("job {name} resumed")?,
    }
    Ok(0)
}

fn rm(ctx: &Context, args: &JobRmArgs) -> Result<i32> {
    let live = live_runs(&ctx.ledger, &args.job)?;
    let job = ctx.ledger.remove_job(&args.job)?;
    ctx.home.notifier().announce_jobs();
    if args.kill && !live.is_empty() {
        let req = tend_ledger::KillRequest {
            actor: super::actor(),
            reason: Some(format!("job '{}' was removed", args.job)),
            force: false,
            grace_ms: None,
        };
        tend_supervisor::kill(&ctx.ledger, &ctx.home, &live, &req)?;
    } else if !live.is_empty() {
        ctx.note(format!(
            "{} of its executions still run and were left alone (--kill ends them)",
            live.len()
        ));
    }
    if ctx.global.json {
        output::json(&JobView::new(job, now(), 0))?;
    } else {
        say!("job {} removed", args.job)?;
    }
    Ok(0)
}
