//! Alerts: the daemon's sender of the ledger's alert outbox.
//!
//! Alerts are queued by the ledger in the transaction of what causes them
//! (an execution ending `lost`, `timed_out` or `failed`; a `fire-missed`
//! job event), so a transition made while no daemon runs still alerts; the
//! level alerts (long-running, health) are queued by this sender when it
//! sees the level change (`levels.rs`). One task per daemon:
//!
//! 1. It wakes on every transition the watcher streams (the home's
//!    notifier), on the scheduler's missed fires, at the next due retry,
//!    at the instant the long-running count next grows, and on the
//!    `reconcile_every` backstop (which also re-checks health). There is
//!    no polling tick.
//! 2. Each wake is one pass on the blocking pool: it claims due alerts
//!    with a lease ([`tend_ledger::Ledger::claim_alerts`]: of several
//!    daemons on one ledger one sends each; a crashed sender's claim is
//!    retaken when its lease ends), POSTs each to every configured webhook
//!    that has not taken it yet ([`webhook::post`], 5 s at most each),
//!    and records the outcome: delivered (an `alert-sent` event), retried
//!    with a doubling backoff from 1 s to 5 min, given up as `failed`
//!    once `retry_for` has passed since it was queued (an `alert-failed`
//!    event; `tend health` says degraded), or skipped when its kind is not
//!    configured or no webhook is.
//!
//! Sending never blocks the API or the scheduler: they run on other tasks,
//! and each ledger call opens its own connection.

pub mod body;
mod levels;
mod sender;
pub mod webhook;

use std::time::Duration;

use tend_model::AlertKind;

pub use webhook::{Secret, Webhook};

pub(crate) use sender::send_alerts;

/// What the daemon alerts about, where to, and for how long it tries.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    /// Where alerts go (`TEND_ALERT_WEBHOOKS`); none: alerts are skipped.
    pub webhooks: Vec<Webhook>,
    /// What is sent (`TEND_ALERTS`); other kinds are skipped.
    pub kinds: Vec<AlertKind>,
    /// Signs each POST with Standard Webhooks headers (`TEND_ALERT_SECRET`).
    pub secret: Option<Secret>,
    /// How long an alert is retried after it was queued before it is given
    /// up (`TEND_ALERT_RETRY_FOR`, 24h).
    pub retry_for: Duration,
    /// The bound on one POST: connect, send and answer.
    pub timeout: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhooks: Vec::new(),
            kinds: AlertKind::DEFAULT.to_vec(),
            secret: None,
            retry_for: Duration::from_secs(86_400),
            timeout: webhook::TIMEOUT,
        }
    }
}

impl AlertConfig {
    /// Whether alerts of `kind` are sent anywhere.
    pub fn sends(&self, kind: AlertKind) -> bool {
        !self.webhooks.is_empty() && self.kinds.contains(&kind)
    }
}

/// What one webhook answered to `tend alert test`.
#[derive(Clone, Debug)]
pub struct TestAnswer {
    /// The webhook.
    pub webhook: Webhook,
    /// Its status code, or why there was none.
    pub answer: Result<u16, String>,
}

/// Sends one test alert to every configured webhook, directly (no
/// outbox), one after the other, and says what each answered.
pub fn send_test(config: &AlertConfig) -> Vec<TestAnswer> {
    let host = tend_proc::procfs::hostname();
    let body = body::test_body(&host).to_string();
    let id = format!("tend_test_{}", tend_ledger::now_ms());
    config
        .webhooks
        .iter()
        .map(|w| TestAnswer {
            webhook: w.clone(),
            answer: webhook::post(w, &id, &body, config.secret.as_ref(), config.timeout),
        })
        .collect()
}
