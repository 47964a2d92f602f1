//! The alert outbox's types. Alerts are queued by the ledger itself, in
//! the transaction of what causes them (an outcome, a missed fire), or by
//! [`crate::Ledger::set_alert_level`] when a level changes; a sender takes
//! them with [`crate::Ledger::claim_alerts`] and says how each went with
//! [`crate::Ledger::finish_alert`].

use tend_model::{AlertKind, ExecutionId};

/// One queued alert, as a sender claimed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Its number in this ledger; with the ledger id it names the alert
    /// across retries (the `webhook-id` header).
    pub id: i64,
    /// What it is about.
    pub kind: AlertKind,
    /// The execution it is about, if any (the row may be pruned since).
    pub execution: Option<ExecutionId>,
    /// The job it is about, if any.
    pub job: Option<String>,
    /// What was known when it was queued (the execution's status, reason,
    /// exit code…, the missed fires, the level).
    pub details: serde_json::Value,
    /// When it was queued, ms since the epoch.
    pub created_at: i64,
    /// Attempts made before this claim.
    pub attempts: u32,
    /// The webhooks (as the sender names them) that answered 2xx already,
    /// so that a retry goes only to the others.
    pub delivered_to: Vec<String>,
}

/// How a claimed alert went, for [`crate::Ledger::finish_alert`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertOutcome {
    /// Every webhook answered 2xx: an `alert-sent` event is recorded on the
    /// execution (or the job).
    Delivered {
        /// The webhooks that took it.
        delivered_to: Vec<String>,
    },
    /// Some webhook did not answer 2xx; try again at `at` (ms).
    Retry {
        /// When to try again.
        at: i64,
        /// What the last attempt got.
        error: String,
        /// The webhooks that took it so far.
        delivered_to: Vec<String>,
    },
    /// Given up after the retry period: an `alert-failed` event is recorded.
    Failed {
        /// What the last attempt got.
        error: String,
        /// The webhooks that took it all the same.
        delivered_to: Vec<String>,
    },
    /// Not sent at all (its kind is not configured, or no webhook is).
    Skipped {
        /// Why.
        why: String,
    },
}

/// Counts of the outbox, for health and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertCounts {
    /// Waiting to be sent (or being sent).
    pub queued: u64,
    /// Given up since the `since` asked for.
    pub failed: u64,
    /// The last error of the newest of those.
    pub last_error: Option<String>,
}
