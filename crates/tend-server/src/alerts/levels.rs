//! The alerts that fire on a change of level rather than on one
//! transition: long-running executions (the count running longer than the
//! threshold rising above the alert count, and falling back) and a home's
//! health. The level is kept in the ledger ([`Ledger::set_alert_level`]),
//! so a restarted daemon does not say it again, and of several daemons on
//! one ledger only one queues a change.

use serde_json::json;
use tend_ledger::Ledger;
use tend_model::wire::HealthStatus;
use tend_model::{AlertKind, Execution, Status};
use tend_supervisor::health::Thresholds;

use crate::Config;

/// How many `running` executions have run for at least `after_ms` at
/// `now`, and the next instant that count grows by itself (when the next
/// of the others reaches `after_ms`; it falls only with a transition,
/// which wakes the sender anyway). So no timer ticks: the sender sleeps
/// until that instant or the next transition.
pub fn long_running<T>(
    rows: &[T],
    started_at: impl Fn(&T) -> Option<i64>,
    now: i64,
    after_ms: i64,
) -> (Vec<&T>, Option<i64>) {
    let mut over = Vec::new();
    let mut next: Option<i64> = None;
    for e in rows {
        let Some(started) = started_at(e) else {
            continue;
        };
        let at = started.saturating_add(after_ms);
        if at <= now {
            over.push(e);
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    (over, next)
}

/// Records the long-running level (`above` or `normal`) and queues an
/// alert when it changed. Returns when the count next grows by itself.
pub fn check_long_running(ledger: &dyn Ledger, c: &Config) -> tend_ledger::Result<Option<i64>> {
    let live: Vec<Execution> = ledger
        .live()?
        .into_iter()
        .filter(|e| e.status == Status::Running)
        .collect();
    let after = c.long_running_after;
    let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let (over, next) = long_running(&live, |e| e.started_at, tend_ledger::now_ms(), after_ms);
    let n = over.len() as u64;
    let level = if n > c.long_running_alert {
        "above"
    } else {
        "normal"
    };
    let ids: Vec<String> = over.iter().take(20).map(|e| e.id.to_string()).collect();
    let details = json!({
        "count": n, "alert_above": c.long_running_alert,
        "after": tend_model::format_duration(after), "executions": ids,
    });
    ledger.set_alert_level(
        "long_running",
        level,
        "normal",
        AlertKind::LongRunning,
        details,
    )?;
    Ok(next)
}

/// Checks the home's health as `tend health` does and queues an alert
/// when its verdict changed (per agent: health is a home's).
pub fn check_health(ledger: &dyn Ledger, c: &Config, agent: &str) -> Result<(), String> {
    let thresholds = Thresholds {
        long_running_after: c.long_running_after,
        long_running_count: c.long_running_alert,
    };
    let report = tend_supervisor::health::check(ledger, &c.home, &c.store, &thresholds)
        .map_err(|e| e.to_string())?;
    let level = match report.status {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unhealthy => "unhealthy",
    };
    let problems: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    let home = format!(
        "{}:{}",
        tend_proc::procfs::hostname(),
        c.home.root().display()
    );
    let details = json!({ "home": home, "agent": agent, "problems": problems });
    let name = format!("health:{agent}");
    ledger
        .set_alert_level(&name, level, "healthy", AlertKind::Health, details)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_and_the_next_instant_it_grows() {
        let started = [Some(0), Some(500), Some(900), None];
        let (over, next) = long_running(&started, |s| *s, 1000, 400);
        assert_eq!(over.len(), 2);
        assert_eq!(next, Some(1300));
        let (over, next) = long_running(&started, |s| *s, 2000, 400);
        assert_eq!((over.len(), next), (3, None));
    }
}
