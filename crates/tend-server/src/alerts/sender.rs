//! The sender task and its pass (see the module above for the order of
//! things and the guarantees).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tend_ledger::{Alert, AlertOutcome, Ledger};
use tokio::sync::broadcast::error::RecvError;

use super::{body, levels, webhook, AlertConfig};
use crate::AppState;

/// Alerts claimed per round of a pass.
const BATCH: u32 = 10;
/// The first retry's delay; each next one doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Runs until aborted.
pub(crate) async fn send_alerts(state: AppState) {
    let mut transitions = state.subscribe();
    let agent = state
        .config()
        .home
        .agent()
        .map(|a| a.id)
        .unwrap_or_default();
    {
        // A daemon that starts is the only sender of its agent: what it
        // held when it died is its own to send again, now.
        let (s, me) = (state.clone(), agent.clone());
        let _ = tokio::task::spawn_blocking(move || s.ledger().ok().map(|l| l.release_alerts(&me)))
            .await;
    }
    let backstop = state.config().reconcile_every;
    let mut health = tokio::time::interval(backstop);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    health.tick().await;
    let mut health_due = true;
    loop {
        let (s, me) = (state.clone(), agent.clone());
        let check_health = std::mem::take(&mut health_due);
        let next = tokio::task::spawn_blocking(move || pass(&s, &me, check_health))
            .await
            .ok()
            .flatten();
        let sleep = match next {
            Some(at) => Duration::from_millis((at - tend_ledger::now_ms()).max(0) as u64 + 1),
            None => backstop,
        };
        tokio::select! {
            r = transitions.recv() => {
                if matches!(r, Err(RecvError::Closed)) {
                    return;
                }
                // One pass for everything that came meanwhile.
                while transitions.try_recv().is_ok() {}
            }
            _ = state.alerts_wanted() => {}
            _ = tokio::time::sleep(sleep.min(backstop)) => {}
            _ = health.tick() => health_due = true,
        }
    }
}

/// One look at the outbox: the long-running level (and, when due, health),
/// then every due alert sent. Returns when the next thing is due.
fn pass(state: &AppState, agent: &str, check_health: bool) -> Option<i64> {
    let c = state.config();
    let ledger = match state.ledger() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = ?e, "the alert sender cannot open the ledger");
            return None;
        }
    };
    let mut next = None;
    if c.alerts.sends(tend_model::AlertKind::LongRunning) {
        match levels::check_long_running(&*ledger, c) {
            Ok(at) => next = at,
            Err(e) => tracing::warn!(error = %e, "cannot check long-running executions"),
        }
    }
    if check_health && c.alerts.sends(tend_model::AlertKind::Health) {
        if let Err(e) = levels::check_health(&*ledger, c, agent) {
            tracing::warn!(error = %e, "cannot check health for alerts");
        }
    }
    if let Err(e) = send_due(state, &*ledger, agent) {
        tracing::warn!(error = %e, "the alert sender cannot read the outbox");
    }
    let due = ledger.next_alert_at().ok().flatten();
    [next, due].into_iter().flatten().min()
}

/// Claims and sends due alerts until none is left.
fn send_due(state: &AppState, ledger: &dyn Ledger, agent: &str) -> tend_ledger::Result<()> {
    let c = &state.config().alerts;
    let per_alert = c.timeout.as_millis() as i64 * c.webhooks.len().max(1) as i64;
    let lease = per_alert * i64::from(BATCH) + 30_000;
    let host = tend_proc::procfs::hostname();
    loop {
        let claimed = ledger.claim_alerts(agent, lease, BATCH)?;
        if claimed.is_empty() {
            return Ok(());
        }
        for alert in &claimed {
            let outcome = deliver(c, alert, &host, ledger.ledger_id());
            note(state, alert, &outcome);
            if !ledger.finish_alert(alert.id, agent, &outcome)? {
                tracing::warn!(
                    alert = alert.id,
                    "an alert's claim ran out before it was finished; another sender has it"
                );
            }
        }
    }
}

/// Sends `alert` to every webhook that has not taken it yet.
fn deliver(c: &AlertConfig, alert: &Alert, host: &str, ledger_id: &str) -> AlertOutcome {
    if c.webhooks.is_empty() {
        let why = "no webhook is configured (TEND_ALERT_WEBHOOKS)".into();
        return AlertOutcome::Skipped { why };
    }
    if !c.kinds.contains(&alert.kind) {
        let why = format!("{} alerts are not sent (TEND_ALERTS)", alert.kind);
        return AlertOutcome::Skipped { why };
    }
    let id = body::webhook_id(ledger_id, alert);
    let text = body::body(alert, host, ledger_id).to_string();
    let mut delivered_to = alert.delivered_to.clone();
    let mut errors = Vec::new();
    for hook in &c.webhooks {
        if delivered_to.iter().any(|d| d == hook.name()) {
            continue;
        }
        match webhook::post(hook, &id, &text, c.secret.as_ref(), c.timeout) {
            Ok(code) if (200..300).contains(&code) => delivered_to.push(hook.name().to_string()),
            Ok(code) => errors.push(format!("{} answered {code}", hook.shown())),
            Err(why) => errors.push(format!("{}: {why}", hook.shown())),
        }
    }
    if errors.is_empty() {
        return AlertOutcome::Delivered { delivered_to };
    }
    let error = errors.join("; ");
    let now = tend_ledger::now_ms();
    let deadline = alert
        .created_at
        .saturating_add(c.retry_for.as_millis() as i64);
    if now >= deadline {
        return AlertOutcome::Failed {
            error,
            delivered_to,
        };
    }
    let at = now.saturating_add(backoff(alert.attempts + 1).as_millis() as i64);
    AlertOutcome::Retry {
        at: at.min(deadline),
        error,
        delivered_to,
    }
}

/// The wait after the `attempt`th failed attempt: 1 s, 2 s, 4 s, … 5 min.
fn backoff(attempt: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    doubled.min(MAX_BACKOFF)
}

/// Counts and logs what became of an alert.
fn note(state: &AppState, alert: &Alert, outcome: &AlertOutcome) {
    let counters = state.counters();
    match outcome {
        AlertOutcome::Delivered { .. } => {
            counters.alerts_sent.fetch_add(1, Ordering::Relaxed);
            tracing::info!(alert = alert.id, kind = %alert.kind, "alert sent");
        }
        AlertOutcome::Retry { at, error, .. } => tracing::warn!(
            alert = alert.id, kind = %alert.kind, error = %error,
            retry_in_ms = at - tend_ledger::now_ms(), "an alert was not taken; it is tried again"
        ),
        AlertOutcome::Failed { error, .. } => {
            counters.alerts_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(alert = alert.id, kind = %alert.kind, error = %error,
                "an alert was given up after the retry period (TEND_ALERT_RETRY_FOR)");
        }
        AlertOutcome::Skipped { why } => {
            tracing::debug!(alert = alert.id, kind = %alert.kind, why = %why, "alert skipped")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_a_second_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
