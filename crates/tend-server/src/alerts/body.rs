//! What an alert says: one JSON object per alert, built only from its
//! outbox row (so a pruned execution still alerts as it was), with a
//! `text` line that chat webhooks (Slack, Mattermost) show as it is.

use serde_json::{json, Value};
use tend_ledger::Alert;
use tend_model::AlertKind;

/// The `webhook-id` of an alert: the same on every retry, so that a
/// receiver can drop a delivery it already had; unique across ledgers.
pub fn webhook_id(ledger_id: &str, alert: &Alert) -> String {
    format!("tend_{ledger_id}_{}", alert.id)
}

/// The JSON body: `type` (the alert kind), `alert` (its number), `at`
/// (when it was queued, RFC 3339), `host` (who sends it), `text` (one
/// line for a person), and `execution`, `job` or `details` with what the
/// ledger knew when it was queued.
pub fn body(alert: &Alert, host: &str, ledger_id: &str) -> Value {
    let d = &alert.details;
    let mut v = json!({
        "type": alert.kind,
        "alert": alert.id,
        "ledger": ledger_id,
        "at": tend_model::format_rfc3339(alert.created_at),
        "host": host,
        "text": text(alert),
    });
    match alert.kind {
        AlertKind::Lost | AlertKind::TimedOut | AlertKind::Failed => {
            let mut e = d.clone();
            if let (Some(job), Some(n)) = (d["job"].as_str(), d["job_number"].as_u64()) {
                let attempt = d["attempt"].as_u64().unwrap_or(1) as u32;
                e["job_ref"] = json!(tend_model::job::job_ref(job, n, attempt));
            }
            for at in ["started_at", "finished_at"] {
                if let Some(ms) = d[at].as_i64() {
                    e[at] = json!(tend_model::format_rfc3339(ms));
                }
            }
            v["execution"] = e;
        }
        AlertKind::FireMissed => {
            let mut j = d.clone();
            j["name"] = json!(alert.job);
            v["job"] = j;
        }
        AlertKind::LongRunning | AlertKind::Health => v["details"] = d.clone(),
    }
    v
}

/// A test alert (`tend alert test`), shaped like the others.
pub fn test_body(host: &str) -> Value {
    json!({
        "type": "test",
        "at": tend_model::format_rfc3339(tend_ledger::now_ms()),
        "host": host,
        "text": format!("tend: a test alert from {host} (tend alert test)"),
    })
}

/// One line for a person.
fn text(alert: &Alert) -> String {
    let d = &alert.details;
    let s = |k: &str| d[k].as_str().unwrap_or("?").to_string();
    let what = || {
        let id = s("id");
        match d["job"].as_str() {
            Some(job) => format!("{} ({id}, job {job})", s("name")),
            None => format!("{} ({id})", s("name")),
        }
    };
    let reason = d["reason"].as_str().unwrap_or("no reason recorded");
    match alert.kind {
        AlertKind::Lost => format!("tend: {} was lost: {reason}", what()),
        AlertKind::TimedOut => format!("tend: {} timed out: {reason}", what()),
        AlertKind::Failed => format!("tend: {} failed: {reason}", what()),
        AlertKind::FireMissed => format!(
            "tend: job {} missed {} fire(s), the latest at {}",
            alert.job.as_deref().unwrap_or("?"),
            d["missed"].as_u64().unwrap_or(0),
            s("latest")
        ),
        AlertKind::LongRunning => {
            let (n, after, max) = (&d["count"], s("after"), &d["alert_above"]);
            if s("level") == "above" {
                format!("tend: {n} executions have run longer than {after} (alert above {max})")
            } else {
                format!("tend: executions running longer than {after} are back to {n} (alert above {max})")
            }
        }
        AlertKind::Health => {
            let problems: Vec<String> = d["problems"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            match problems.is_empty() {
                true => format!("tend: {} is {} again", s("home"), s("level")),
                false => format!(
                    "tend: {} is {}: {}",
                    s("home"),
                    s("level"),
                    problems.join("; ")
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_alert_names_the_execution_its_job_and_why() {
        let alert = Alert {
            id: 7,
            kind: AlertKind::Lost,
            execution: Some(tend_model::ExecutionId::parse("ab12cd34").unwrap()),
            job: Some("backup".into()),
            details: json!({"id": "ab12cd34", "name": "backup", "status": "lost",
                "reason": "supervisor died", "job": "backup", "job_number": 3, "attempt": 1,
                "finished_at": 0}),
            created_at: 0,
            attempts: 0,
            delivered_to: vec![],
        };
        let b = body(&alert, "h1", "led");
        assert_eq!(b["type"], "lost");
        assert_eq!(b["execution"]["job_ref"], "backup#3");
        assert_eq!(b["execution"]["finished_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(
            b["text"],
            "tend: backup (ab12cd34, job backup) was lost: supervisor died"
        );
        assert_eq!(webhook_id("led", &alert), "tend_led_7");
    }
}
