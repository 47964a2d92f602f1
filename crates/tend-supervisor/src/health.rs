//! [`check`]: the one health computation, behind `tend health` and
//! `GET /api/v1/health`, so that both give the same checks and the same
//! verdict.
//!
//! In order: the home (writable, `unhealthy` when not: nothing could be
//! recorded, no execution started; `degraded` when its file system has
//! less than [`MIN_FREE_BYTES`] or 1% of its space, or 1% of its inodes,
//! left); the ledger (reachable and migrated to this build's schema;
//! the full integrity check, whose cost grows with the ledger, is
//! `tend doctor`'s: health is probed often); stale executions (live rows whose supervision is gone: they
//! are reconciled on the spot, as every reader of the ledger does, so the
//! report is `degraded`, or `unhealthy` when some could not be marked
//! `lost`); long-running executions (`degraded` above the alert count);
//! missed fires of a job in the last day (`degraded`); alerts given up in
//! the last day, after `TEND_ALERT_RETRY_FOR` of retries (`degraded`).
//! Whether a daemon runs is the CLI's own check: it asks the daemon.

use std::time::Duration;

use tend_ledger::{Ledger, Store};
use tend_model::format_duration;
use tend_model::wire::{HealthReport, HealthStatus};
use tend_model::Status;

use crate::{reconcile, reconcile_dry_run, Error, Home};

/// When long-running executions make a home `degraded`.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Executions running longer than this count as long-running.
    pub long_running_after: Duration,
    /// More long-running executions than this is `degraded`.
    pub long_running_count: u64,
}

/// Checks the ledger at `store` (opened as `ledger`) and the executions of
/// `home`; reconciles stale executions as it finds them. An error is a
/// ledger that failed after its integrity check passed (busy past its
/// timeout, a full disk while reconciling).
pub fn check<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    store: &Store,
    thresholds: &Thresholds,
) -> Result<HealthReport, Error> {
    let mut report = HealthReport::default();
    check_home(&mut report, home);
    match ledger.schema() {
        Ok((found, wanted)) if found == wanted => {
            let detail = format!("{store} reachable, schema {found}");
            report.add("ledger", HealthStatus::Healthy, detail);
        }
        Ok((found, wanted)) => {
            let detail = format!("{store} has schema {found}, this tend needs {wanted}");
            report.add("ledger", HealthStatus::Unhealthy, detail);
            return Ok(report);
        }
        Err(e) => {
            report.add("ledger", HealthStatus::Unhealthy, format!("{store}: {e}"));
            return Ok(report);
        }
    }
    check_stale(&mut report, ledger, home)?;
    check_long_running(&mut report, ledger, thresholds)?;
    check_fires(&mut report, ledger)?;
    check_alerts(&mut report, ledger)?;
    let live = ledger.live()?;
    report.running = live.iter().filter(|e| e.status == Status::Running).count() as u64;
    report.queued = live.len() as u64 - report.running;
    Ok(report)
}

/// Degraded when a job's schedule missed fires in the last day (a daemon
/// was down when they came); said only where jobs are scheduled.
fn check_fires(report: &mut HealthReport, ledger: &(impl Ledger + ?Sized)) -> Result<(), Error> {
    let day = ledger.fire_stats(Some(tend_ledger::now_ms() - 86_400_000))?;
    let missed: Vec<String> = day
        .iter()
        .filter(|f| f.missed > 0)
        .map(|f| format!("{} of {}", f.missed, f.job))
        .collect();
    if !missed.is_empty() {
        let detail = format!(
            "fires missed in the last day, while no daemon ran: {}",
            missed.join(", ")
        );
        report.add("jobs", HealthStatus::Degraded, detail);
    } else if !day.is_empty() {
        report.add(
            "jobs",
            HealthStatus::Healthy,
            "no fire missed in the last day".to_string(),
        );
    }
    Ok(())
}

/// Degraded when an alert was given up in the last day (its webhooks did
/// not take it within the retry period); said only where alerts exist.
fn check_alerts(report: &mut HealthReport, ledger: &(impl Ledger + ?Sized)) -> Result<(), Error> {
    let c = ledger.alert_counts(tend_ledger::now_ms() - 86_400_000)?;
    if c.failed > 0 {
        let detail = format!(
            "{} alert(s) could not be delivered in the last day (the last one: {})",
            c.failed,
            c.last_error.as_deref().unwrap_or("no answer")
        );
        report.add("alerts", HealthStatus::Degraded, detail);
    } else if c.queued > 0 {
        let detail = format!("{} alert(s) waiting to be sent by tend serve", c.queued);
        report.add("alerts", HealthStatus::Healthy, detail);
    }
    Ok(())
}

/// Below this much free space on the home's file system, health is
/// `degraded`: a few log files' worth, before runs start failing.
pub const MIN_FREE_BYTES: u64 = 10 << 20;

/// The home can be written (as [`Home::ensure`] checks it: `access(W_OK)`,
/// which answers for a read-only mount too), and its file system has room.
fn check_home(report: &mut HealthReport, home: &Home) {
    let root = home.root();
    let path = root.display();
    for dir in [root.to_path_buf(), home.logs_dir(), home.notify_dir()] {
        if let Err(e) = rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK) {
            let e = std::io::Error::from(e);
            let detail = format!(
                "{} cannot be written ({e}): no execution can be recorded or started",
                dir.display()
            );
            report.add("home", HealthStatus::Unhealthy, detail);
            return;
        }
    }
    let Ok(fs) = rustix::fs::statvfs(root) else {
        report.add("home", HealthStatus::Healthy, format!("{path} writable"));
        return;
    };
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    let total = fs.f_blocks.saturating_mul(fs.f_frsize);
    let mib = |b: u64| b >> 20;
    if free < MIN_FREE_BYTES || free.saturating_mul(100) < total {
        let detail = format!(
            "{path} writable, but only {} MiB of {} MiB free on its file system",
            mib(free),
            mib(total)
        );
        report.add("home", HealthStatus::Degraded, detail);
    } else if fs.f_files > 0 && fs.f_favail.saturating_mul(100) < fs.f_files {
        let detail = format!(
            "{path} writable, but only {} of {} inodes free on its file system",
            fs.f_favail, fs.f_files
        );
        report.add("home", HealthStatus::Degraded, detail);
    } else {
        let detail = format!("{path} writable, {} MiB free", mib(free));
        report.add("home", HealthStatus::Healthy, detail);
    }
}

fn check_stale(
    report: &mut HealthReport,
    ledger: &(impl Ledger + ?Sized),
    home: &Home,
) -> Result<(), Error> {
    let stale = reconcile_dry_run(ledger, home)?.len();
    report.stale = stale as u64;
    if stale == 0 {
        let detail = "every live execution has a live supervisor";
        report.add("stale", HealthStatus::Healthy, detail);
        return Ok(());
    }
    reconcile(ledger, home)?;
    let left = reconcile_dry_run(ledger, home)?.len();
    if left == 0 {
        let detail = format!("{stale} execution(s) had lost their supervisor; now marked lost");
        report.add("stale", HealthStatus::Degraded, detail);
    } else {
        let detail = format!(
            "{left} of {stale} execution(s) whose supervisor is gone could not be marked lost"
        );
        report.add("stale", HealthStatus::Unhealthy, detail);
    }
    Ok(())
}

fn check_long_running(
    report: &mut HealthReport,
    ledger: &(impl Ledger + ?Sized),
    t: &Thresholds,
) -> Result<(), Error> {
    let now = tend_ledger::now_ms();
    let cutoff = now - t.long_running_after.as_millis() as i64;
    let day = ledger.summary(Some(now - 86_400_000), cutoff)?;
    report.long_running = day.long_running;
    report.last_24h = day
        .by_status
        .iter()
        .map(|(st, n)| (st.to_string(), *n))
        .collect();
    let after = format_duration(t.long_running_after);
    if day.long_running > t.long_running_count {
        let detail = format!(
            "{} executions have run longer than {after} (alert above {})",
            day.long_running, t.long_running_count
        );
        report.add("long-running", HealthStatus::Degraded, detail);
    } else {
        let detail = format!("{} running longer than {after}", day.long_running);
        report.add("long-running", HealthStatus::Healthy, detail);
    }
    Ok(())
}
