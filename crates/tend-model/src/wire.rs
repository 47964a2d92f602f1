//! What tend reports about itself, in the one shape that the CLI's `--json`
//! output and the HTTP API share: a health report, a kill's result, a reap's
//! result. Declared once here so that `tend health --json` and
//! `GET /api/v1/health` (and `kill`, `reap`) cannot drift apart; computed
//! once too, in `tend-supervisor` (`health::check`, `reap`), except
//! [`Killed::new`], which needs nothing but the row.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::{Execution, KillMethod, Status};

/// How well a home is doing. Ordered from best to worst, so that a report's
/// status is the worst of its checks'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every check passed.
    #[default]
    Healthy,
    /// Something needs attention, but executions are supervised and recorded.
    Degraded,
    /// The ledger cannot be trusted, or executions are unsupervised.
    Unhealthy,
}

impl HealthStatus {
    /// The exit code of `tend health`: 0 healthy, 1 degraded, 2 unhealthy.
    pub fn exit_code(self) -> i32 {
        match self {
            HealthStatus::Healthy => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Unhealthy => 2,
        }
    }

    /// The word written in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of a health report (or of `tend doctor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct HealthCheck {
    /// What was checked: `ledger`, `stale`, `long-running`, `daemon`, …
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, in a sentence.
    pub detail: String,
}

/// The health of a home: its checks, the overall verdict, and a few counts.
/// `tend health --json` prints it (with a `daemon` check, which only the CLI
/// makes: it asks the daemon); `GET /api/v1/health` answers it (with
/// `uptime_s`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct HealthReport {
    /// The worst verdict of the checks: `healthy`, `degraded` or `unhealthy`.
    pub status: HealthStatus,
    /// Every check, in the order made.
    pub checks: Vec<HealthCheck>,
    /// Executions running now.
    pub running: u64,
    /// Executions queued now.
    pub queued: u64,
    /// Running longer than the alert threshold.
    pub long_running: u64,
    /// Live rows found without supervision (they are then marked `lost`).
    pub stale: u64,
    /// Executions created in the last 24 hours, per status.
    pub last_24h: BTreeMap<String, u64>,
    /// Seconds since the daemon started; only the daemon's answer has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
}

impl HealthReport {
    /// Records a check whose verdict is `verdict`; the report's status
    /// becomes the worse of the two.
    pub fn add(&mut self, name: &str, verdict: HealthStatus, detail: impl Into<String>) {
        self.status = self.status.max(verdict);
        self.checks.push(HealthCheck {
            name: name.into(),
            ok: verdict == HealthStatus::Healthy,
            detail: detail.into(),
        });
    }
}

/// What a kill did to one execution (`tend kill --json`, one per
/// execution; `POST /api/v1/executions/{id}/kill`): the execution as it is
/// after the kill, whose `kill_method`, `kill_duration_ms` and
/// `processes_signalled` say what this kill did, and whether it had already
/// finished.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Killed {
    /// The execution after the kill.
    #[serde(flatten)]
    pub execution: Execution,
    /// True when nothing was done because it had already ended.
    pub already_finished: bool,
}

impl Killed {
    /// The result for `e` as it is after the kill. An execution that had
    /// already finished reports method `none`, no duration and no process,
    /// even if an earlier kill recorded some.
    pub fn new(e: &Execution, already_finished: bool) -> Killed {
        let mut execution = e.clone();
        if already_finished || execution.kill_method.is_none() {
            execution.kill_method = Some(KillMethod::None);
            execution.kill_duration_ms = Some(0);
            execution.processes_signalled = Some(0);
        }
        Killed {
            execution,
            already_finished,
        }
    }
}

/// What a reap did, or with `dry_run` would do (`tend reap --json`,
/// `POST /api/v1/reap`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reaped {
    /// Executions whose supervision was gone, marked `lost`.
    pub lost: Vec<MarkedLost>,
    /// Processes of this ledger whose execution is terminal or unknown.
    pub stragglers: Vec<StrayProcess>,
    /// True when nothing was changed, only reported.
    pub dry_run: bool,
}

/// One execution a reap marked `lost`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct MarkedLost {
    /// Execution id.
    pub id: String,
    /// The status it had.
    pub was: Status,
    /// Why it is lost (`supervisor died`, `host rebooted`, …).
    pub reason: String,
    /// Processes of its tree that were still alive and were ended.
    pub processes_ended: u32,
}

/// One stray process a reap ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct StrayProcess {
    /// Its PID.
    pub pid: i32,
    /// The execution its marker names.
    pub execution_id: String,
    /// That execution's status, or null when the ledger has no such id.
    pub execution_status: Option<Status>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_as_bad_as_its_worst_check() {
        let mut r = HealthReport::default();
        assert_eq!(r.status, HealthStatus::Healthy);
        r.add("a", HealthStatus::Degraded, "x");
        r.add("b", HealthStatus::Healthy, "y");
        assert_eq!(r.status, HealthStatus::Degraded);
        assert!(!r.checks[0].ok && r.checks[1].ok);
        r.add("c", HealthStatus::Unhealthy, "z");
        assert_eq!(r.status.exit_code(), 2);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "unhealthy");
        assert!(json.get("uptime_s").is_none());
    }
}

/// What `tend stats` and `GET /api/v1/stats` report about the executions
/// created since a moment (and, optionally, whose name matches a glob).
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Stats {
    /// Executions counted.
    pub total: u64,
    /// Per status, those that have any.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Of those that ended: the share that failed, timed out or was lost.
    pub failure_rate: Option<f64>,
    /// Run time of those that started and ended, in milliseconds.
    pub duration_ms: Option<Percentiles>,
    /// `lost` executions per reason, most first.
    pub lost_by_reason: Vec<Counted>,
    /// The names with the longest single run, longest first.
    pub slowest: Vec<Counted>,
    /// The names with the most failures (failed, timed out, lost), most first.
    pub most_failing: Vec<Counted>,
    /// Per hour of the last 24 (UTC, oldest first): executions created and
    /// how many of them failed.
    pub per_hour: Vec<Hour>,
}

/// Percentiles of a duration, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Longest.
    pub max: u64,
}

/// A name (or reason) and a number: a count, or milliseconds for `slowest`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counted {
    /// The name or reason.
    pub key: String,
    /// The number.
    pub value: u64,
}

/// One hour's executions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Hour {
    /// Its start (RFC 3339).
    pub start: String,
    /// Executions created in it.
    pub created: u64,
    /// Of those, how many failed, timed out or were lost.
    pub failed: u64,
}
