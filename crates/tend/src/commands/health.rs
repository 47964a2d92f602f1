//! `tend heartbeat` and `tend doctor`.

use anyhow::{bail, Result};
use tend_ledger::Ledger;
use tend_model::wire::{HealthCheck, HealthStatus};
use tend_model::{ExecutionId, MARKER_EXECUTION, MARKER_LEDGER};
use tend_proc::{procfs, Pidfd};
use tend_supervisor::health::Thresholds;

use super::Context;
use crate::cli::HeartbeatArgs;
use crate::output;

/// `tend heartbeat [--progress TEXT]`, run from inside an execution.
pub fn heartbeat(ctx: &Context, args: &HeartbeatArgs) -> Result<i32> {
    let Ok(id) = std::env::var(MARKER_EXECUTION) else {
        return Err(crate::usage(format!(
            "{MARKER_EXECUTION} is not set: run `tend heartbeat` from inside an execution started by `tend run`"
        )));
    };
    let id = ExecutionId::parse(&id)?;
    if std::env::var(MARKER_LEDGER).is_ok_and(|l| l != ctx.ledger.ledger_id()) {
        bail!(
            "this execution belongs to another ledger than {}; set TEND_STORE to the ledger that started it",
            ctx.config.store()?
        );
    }
    let e = ctx.ledger.heartbeat(&id, args.progress.as_deref())?;
    if e.status.is_terminal() {
        bail!(
            "execution {id} is already {}; the heartbeat was not recorded",
            e.status
        );
    }
    if ctx.global.json {
        output::json(&e)?;
    }
    Ok(0)
}

/// What each stored job needs to start here: its program, looked up as its
/// supervisor will (`execvp`: a path from its cwd, else the job's `PATH` or
/// tend's), and its working directory.
fn job_checks(ctx: &Context) -> Vec<HealthCheck> {
    let Ok(jobs) = ctx.ledger.jobs() else {
        return Vec::new();
    };
    jobs.iter()
        .map(|j| {
            let run = &j.definition.run;
            let program = run.command.first().map(String::as_str).unwrap_or_default();
            let cwd = run.cwd.clone().unwrap_or_else(|| "/".into());
            let found = tend_supervisor::find_program(program, &cwd, run.env.get("PATH")).is_ok();
            let worktree = run.workspace == Some(tend_model::WorkspaceKind::Worktree);
            let r = match (found, cwd.is_dir()) {
                (true, true) if worktree && !tend_supervisor::workspace::git_installed() => Err(
                    "it runs in a git worktree (--workspace worktree) but git is not installed"
                        .to_string(),
                ),
                (true, true) => Ok(format!(
                    "{} in {}",
                    output::esc(program),
                    output::path(&cwd)
                )),
                (false, _) => Err(format!(
                    "its program {} is not found or not executable",
                    output::esc(program)
                )),
                (_, false) => Err(format!(
                    "its working directory {} does not exist",
                    output::path(&cwd)
                )),
            };
            check(&format!("job {}", j.definition.name), r)
        })
        .collect()
}

/// Each webhook is an http or https URL, and the other alert settings can
/// be used (tend serve refuses to start otherwise). Nothing is sent: that
/// is `tend alert test`.
fn alert_checks(ctx: &Context) -> Vec<HealthCheck> {
    let a = &ctx.config.alerts;
    let hooks = a.webhooks();
    let n = hooks.len();
    let mut checks: Vec<HealthCheck> = hooks
        .into_iter()
        .enumerate()
        .map(|(i, (_, w))| {
            let r = w.map(|w| {
                format!(
                    "{} is an http(s) URL; tend alert test sends it a test alert",
                    w.shown()
                )
            });
            check(&format!("alert webhook {} of {n}", i + 1), r)
        })
        .collect();
    let r = match a.resolve() {
        Err(e) => Err(e.to_string()),
        Ok(c) if c.webhooks.is_empty() => {
            Ok("no webhook configured (TEND_ALERT_WEBHOOKS): alerts are not sent".to_string())
        }
        Ok(c) => {
            let kinds: Vec<&str> = c.kinds.iter().map(|k| k.as_str()).collect();
            let signed = if c.secret.is_some() {
                "signed"
            } else {
                "unsigned (no TEND_ALERT_SECRET)"
            };
            Ok(format!(
                "tend serve sends {} to {} webhook(s), {signed}, retried for {}",
                kinds.join(", "),
                c.webhooks.len(),
                tend_model::format_duration(c.retry_for)
            ))
        }
    };
    // A bad webhook was said above; say only what else is wrong.
    if checks.iter().all(|c| c.ok) {
        checks.push(check("alerts", r));
    }
    checks
}

/// `tend doctor`: what this host offers, and how to fix what it lacks.
pub fn doctor(ctx: &Context) -> Result<i32> {
    let mut checks = kernel_checks();
    for (tier, r) in tend_supervisor::offered_tiers(ctx.ledger.ledger_id()) {
        let r = r.map_err(|why| format!("{why}; executions will use the session tier"));
        checks.push(check(&format!("tier {tier}"), r));
    }
    let chosen = tend_supervisor::choose_tier(ctx.ledger.ledger_id(), ctx.config.containment);
    let memory = match chosen.as_ref().ok().and_then(|t| t.cgroup_parent()) {
        Some(parent) => {
            let enforced = tend_proc::cgroup::memory_enforced(parent);
            // Only a look: leave no empty folder behind (one in use stays).
            let _ = std::fs::remove_dir(parent);
            enforced
        }
        None => false,
    };
    checks.push(check(
        "memory limit",
        Ok(if memory {
            "--max-memory is enforced by the kernel (the cgroup's memory.max)".to_string()
        } else {
            "--max-memory is sampled every 250 ms (the cgroup memory controller is not delegated here)".to_string()
        }),
    ));
    checks.push(check(
        "containment",
        chosen
            .map(|t| format!("new executions use the {} tier", t.kind()))
            .map_err(|e| format!("{e}; unset TEND_CONTAINMENT to use the best available")),
    ));
    let path = ctx.config.store()?;
    checks.push(check(
        "ledger",
        match tend_ledger::open(&path) {
            Ok(l) => l
                .integrity_check()
                .unwrap_or(Ok(()))
                .map(|_| {
                    format!(
                        "{} (schema {}, ledger id {}), integrity ok",
                        path.without_password(),
                        l.schema().map_or(0, |s| s.0),
                        l.ledger_id()
                    )
                })
                .map_err(|e| format!("{path}: integrity check failed: {e}")),
            Err(e) => Err(e.to_string()),
        },
    ));
    checks.extend(listener_check(&path));
    checks.extend(job_checks(ctx));
    checks.extend(alert_checks(ctx));
    checks.push(check(
        "daemon",
        match daemon(ctx) {
            Some(Ok(detail)) => Ok(format!("running, {detail}")),
            Some(Err(why)) => Err(format!("{why}; start it again with `tend serve`")),
            None => {
                Ok("none running (not needed: run, wait, kill and reap work without one)".into())
            }
        },
    ));
    // A bad alert setting stops tend serve from starting: a failure too.
    let healthy = checks
        .iter()
        .filter(|c| c.name == "pidfd" || c.name == "ledger" || c.name.starts_with("alert"))
        .all(|c| c.ok);
    if ctx.global.json {
        output::json(&checks)?;
    } else {
        print_checks(&checks)?;
    }
    Ok(if healthy { 0 } else { 1 })
}

/// On a PostgreSQL ledger: whether LISTEN works, i.e. a notification a
/// connection sends itself arrives within the listener's own deadline.
/// Through a transaction-mode pooler (PgBouncer) it does not, and then
/// waits fall back to looking again once a second.
fn listener_check(store: &tend_ledger::Store) -> Option<HealthCheck> {
    let tend_ledger::Store::Postgres(url) = store else {
        return None;
    };
    let within = tend_supervisor::LISTEN_CHECK_WITHIN;
    let r = tend_ledger::Listener::open(url.as_str()).and_then(|mut l| l.check(within));
    Some(check(
        "listener",
        match r {
            Ok(took) => Ok(format!(
                "LISTEN/NOTIFY works (a notification to itself arrived in {} ms): waiters on every host wake at once, and kills reach other agents' daemons",
                took.as_millis()
            )),
            Err(e) => Err(format!(
                "LISTEN/NOTIFY does not work through this connection ({e}), as behind a transaction-mode pooler such as PgBouncer: connect tend to PostgreSQL directly or through a session-mode pool, or waits on other hosts' executions look again only once a second and their kills wait for their daemon to reconnect"
            )),
        },
    ))
}

/// A check of `tend doctor`: passed with what was found, or failed with
/// what to do.
fn check(name: &str, r: Result<String, String>) -> HealthCheck {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    HealthCheck {
        name: name.into(),
        ok,
        detail,
    }
}

/// What the kernel offers: pidfds, pidfs inodes, the subreaper, a boot id.
fn kernel_checks() -> Vec<HealthCheck> {
    let me = std::process::id() as i32;
    vec![
        check(
            "pidfd",
            Pidfd::open(me)
                .map(|_| {
                    "pidfd_open and pidfd_send_signal work: signals cannot reach a recycled pid"
                        .to_string()
                })
                .map_err(|e| format!("pidfd_open failed ({e}): tend needs Linux 5.3 or later")),
        ),
        check(
            "pidfd inode",
            match Pidfd::open(me).ok().and_then(|f| f.inode()) {
                Some(_) => Ok(
                    "pidfs gives each process its own inode (Linux 6.8+): identities are exact"
                        .into(),
                ),
                None => Err(
                    "no pidfs inodes (Linux < 6.8): identities rely on boot id + start time".into(),
                ),
            },
        ),
        check(
            "subreaper",
            tend_proc::spawn::become_subreaper()
                .map(|_| "orphans of a command re-parent to its supervisor".to_string())
                .map_err(|e| format!("PR_SET_CHILD_SUBREAPER failed: {e}")),
        ),
        check(
            "boot id",
            procfs::boot_id()
                .map_err(|e| format!("cannot read the boot id ({e}); is /proc mounted?")),
        ),
    ]
}

/// `tend health`: 0 healthy, 1 degraded, 2 unhealthy. The checks are the
/// daemon's (`tend_supervisor::health::check`), plus whether the daemon
/// recorded in this home answers.
pub fn health(ctx: &Context) -> Result<i32> {
    let thresholds = Thresholds {
        long_running_after: ctx.config.alert_long_running_after,
        long_running_count: ctx.config.alert_long_running_count,
    };
    let path = ctx.config.store()?;
    let mut report = tend_supervisor::health::check(&ctx.ledger, &ctx.home, &path, &thresholds)?;
    match daemon(ctx) {
        Some(Ok(detail)) => report.add(
            "daemon",
            HealthStatus::Healthy,
            format!("running, {detail}"),
        ),
        Some(Err(why)) => report.add("daemon", HealthStatus::Degraded, why),
        None => report.add(
            "daemon",
            HealthStatus::Healthy,
            "none running (not needed for run, wait, kill and reap)",
        ),
    }
    if ctx.global.json {
        output::json(&report)?;
    } else {
        print_checks(&report.checks)?;
    }
    Ok(report.status.exit_code())
}

/// The daemon recorded in `daemon.json`: `None` if there is none, `Err`
/// if the file names a daemon that is gone or that does not answer on its
/// address (the file alone proves nothing: issue 8).
fn daemon(ctx: &Context) -> Option<Result<String, String>> {
    let text = match tend_supervisor::read_small(&ctx.home.root().join("daemon.json")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let id = tend_model::ProcessIdentity {
        boot_id: v["boot_id"].as_str()?.to_string(),
        pid: v["pid"].as_i64()? as i32,
        start_time: v["start_time"].as_u64()?,
        pidfd_ino: v["pidfd_ino"].as_u64(),
    };
    let listen = v["listen"].as_str().unwrap_or("?").to_string();
    Some(match Pidfd::open_verified(&id) {
        Ok(tend_proc::Verified::Alive(_)) => match super::probe::health(&listen, &ctx.home) {
            Ok(200) => Ok(format!(
                "listening on {listen} (pid {}), answered /api/v1/health",
                id.pid
            )),
            Ok(401) => Ok(format!(
                "listening on {listen} (pid {}), answered /api/v1/health but refused this home's token",
                id.pid
            )),
            Ok(code) => Err(format!(
                "the daemon (pid {}) on {listen} answered /api/v1/health with status {code}",
                id.pid
            )),
            Err(why) => Err(format!(
                "daemon.json names pid {}, which is alive but does not answer on {listen} ({why})",
                id.pid
            )),
        },
        _ => Err(format!(
            "daemon.json names a daemon (pid {}) that is gone; it did not stop cleanly",
            id.pid
        )),
    })
}

/// One line per check: `ok` or `warn`, the name, what was found.
fn print_checks(checks: &[HealthCheck]) -> Result<()> {
    let w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        say!(
            "{}  {:<w$}  {}",
            if c.ok { "ok  " } else { "warn" },
            c.name,
            output::esc(&c.detail)
        )?;
    }
    Ok(())
}
