//! `/metrics` in the Prometheus text format. Counts of executions come from
//! the ledger (true across restarts); counters of what this daemon process
//! did come from memory.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use tend_model::Status;

use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("token" = [])))]
pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = s
        .blocking(|s, l| {
            let cutoff = tend_ledger::now_ms() - s.config().long_running_after.as_millis() as i64;
            let sum = l.summary(None, cutoff)?;
            let mut o = String::new();
            let _ = writeln!(o, "# HELP tend_executions Executions in the ledger by status.\n# TYPE tend_executions gauge");
            for st in Status::ALL {
                let n = sum.by_status.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
                let _ = writeln!(o, "tend_executions{{status=\"{st}\"}} {n}");
            }
            let _ = writeln!(o, "# HELP tend_executions_started_total Executions whose command was started.\n# TYPE tend_executions_started_total counter");
            let _ = writeln!(o, "tend_executions_started_total {}", sum.started);
            let _ = writeln!(o, "# HELP tend_executions_long_running Executions running longer than the alert threshold.\n# TYPE tend_executions_long_running gauge");
            let _ = writeln!(o, "tend_executions_long_running {}", sum.long_running);
            let _ = writeln!(o, "# HELP tend_kills_total Executions ended by tend, by kill method.\n# TYPE tend_kills_total counter");
            for m in ["graceful", "forced"] {
                let n = sum.kills_by_method.iter().find(|(k, _)| k.as_str() == m).map_or(0, |(_, n)| *n);
                let _ = writeln!(o, "tend_kills_total{{method=\"{m}\"}} {n}");
            }
            let _ = writeln!(o, "# HELP tend_kill_duration_seconds Time from kill request to empty tree.\n# TYPE tend_kill_duration_seconds histogram");
            let mut count = 0;
            for (le, n) in &sum.kill_duration_le {
                let _ = writeln!(o, "tend_kill_duration_seconds_bucket{{le=\"{}\"}} {n}", *le as f64 / 1000.0);
                count = *n;
            }
            let total: u64 = sum.kills_by_method.iter().map(|(_, n)| n).sum::<u64>().max(count);
            let _ = writeln!(o, "tend_kill_duration_seconds_bucket{{le=\"+Inf\"}} {total}");
            let _ = writeln!(o, "tend_kill_duration_seconds_sum {}", sum.kill_duration_sum_ms as f64 / 1000.0);
            let _ = writeln!(o, "tend_kill_duration_seconds_count {total}");
            let _ = writeln!(o, "# HELP tend_lost_total Executions marked lost, by reason.\n# TYPE tend_lost_total counter");
            for (reason, n) in &sum.lost_by_reason {
                let _ = writeln!(o, "tend_lost_total{{reason=\"{}\"}} {n}", escape(reason));
            }
            let _ = writeln!(o, "# HELP tend_job_fires_total A job's scheduled fires, by outcome (from the ledger).\n# TYPE tend_job_fires_total counter");
            for f in l.fire_stats(None)? {
                for (outcome, n) in [("fired", f.fired), ("skipped", f.skipped), ("missed", f.missed)] {
                    let _ = writeln!(o, "tend_job_fires_total{{job=\"{}\",outcome=\"{outcome}\"}} {n}", escape(&f.job));
                }
            }
            let queued = l.alert_counts(tend_ledger::now_ms())?.queued;
            let _ = writeln!(o, "# HELP tend_alerts_queued Alerts in the outbox waiting to be sent (from the ledger).\n# TYPE tend_alerts_queued gauge");
            let _ = writeln!(o, "tend_alerts_queued {queued}");
            let c = s.counters();
            let counters = [
                ("tend_api_launches_total", "Launches through the API.", &c.launches),
                ("tend_api_kill_requests_total", "Kill requests through the API.", &c.kill_requests),
                ("tend_reaper_lost_total", "Executions this daemon's reaper marked lost.", &c.reaped_lost),
                ("tend_reaper_stragglers_total", "Stray processes this daemon's reaper ended.", &c.reaped_stragglers),
                ("tend_transitions_streamed_total", "Transitions sent to event subscribers.", &c.transitions),
                ("tend_alerts_sent_total", "Alerts this daemon delivered to every webhook.", &c.alerts_sent),
                ("tend_alerts_failed_total", "Alerts this daemon gave up after the retry period.", &c.alerts_failed),
            ];
            for (name, help, v) in counters {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
            }
            let _ = writeln!(o, "# HELP tend_daemon_uptime_seconds Seconds since the daemon started.\n# TYPE tend_daemon_uptime_seconds gauge");
            let _ = writeln!(o, "tend_daemon_uptime_seconds {}", s.uptime_s());
            Ok(o)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
