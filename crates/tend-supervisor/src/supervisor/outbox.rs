//! What a supervisor records while its command runs, kept until the ledger
//! takes it.
//!
//! A busy or briefly unreachable ledger must not end a command that is
//! doing its work (issue 9): the audit events of a run (signals sent, a
//! missed heartbeat, undelivered output) wait here, in order, and are
//! retried with backoff while the command keeps running; whatever is still
//! waiting when the command has ended is committed before its outcome,
//! however long that takes. What cannot be recorded yet is said once: on
//! stderr in the foreground, else in `<id>.supervisor.log` beside the
//! execution's logs.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tend_ledger::Ledger;
use tend_model::{Actor, EventKind, ExecutionId};

use super::Mode;

/// First pause before a retry; doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between retries.
const MAX_PAUSE: Duration = Duration::from_secs(2);

struct Pending {
    kind: EventKind,
    actor: Actor,
    details: Value,
}

/// Events not yet in the ledger, and when to try again.
pub(crate) struct Outbox {
    id: ExecutionId,
    pending: VecDeque<Pending>,
    retry_at: Option<Instant>,
    pause: Duration,
    behind: bool,
    voice: Voice,
}

/// Where a supervisor says what it could not record yet.
enum Voice {
    Stderr,
    File(PathBuf),
}

impl Outbox {
    /// The outbox of execution `id`, whose stdout log is `stdout_path`.
    pub(crate) fn new(id: ExecutionId, mode: Mode, stdout_path: &str) -> Outbox {
        let voice = match mode {
            Mode::Foreground => Voice::Stderr,
            Mode::Detached => {
                let mut p = PathBuf::from(stdout_path);
                p.set_file_name(format!("{id}.supervisor.log"));
                Voice::File(p)
            }
        };
        Outbox {
            id,
            pending: VecDeque::new(),
            retry_at: None,
            pause: FIRST_PAUSE,
            behind: false,
            voice,
        }
    }

    /// Records an event now if the ledger takes it, else keeps it (after
    /// any kept before it: the audit stays in order).
    pub(crate) fn record<L: Ledger + ?Sized>(
        &mut self,
        ledger: &L,
        kind: EventKind,
        actor: Actor,
        mut details: Value,
    ) {
        if let Value::Object(m) = &mut details {
            m.entry("happened_at")
                .or_insert_with(|| tend_model::format_rfc3339(tend_ledger::now_ms()).into());
        }
        self.pending.push_back(Pending {
            kind,
            actor,
            details,
        });
        // While a retry is scheduled the ledger is known to refuse: the
        // event waits its turn instead of stalling the loop on another try.
        if self.retry_at.is_none() {
            self.flush(ledger);
        }
    }

    /// Holds every event back for `d` (they are queued, in order): for a
    /// kill that must not wait on a ledger that is likely out of reach.
    pub(crate) fn hold(&mut self, d: Duration) {
        let until = Instant::now() + d;
        self.retry_at = Some(self.retry_at.map_or(until, |t| t.max(until)));
    }

    /// Tries to record what is kept, in order. Returns true when nothing is
    /// left; otherwise a retry is scheduled ([`Outbox::retry_at`]).
    pub(crate) fn flush<L: Ledger + ?Sized>(&mut self, ledger: &L) -> bool {
        while let Some(p) = self.pending.front() {
            match ledger.record(&self.id, p.kind, &p.actor, p.details.clone()) {
                Ok(()) => {
                    self.pending.pop_front();
                }
                Err(e) if e.is_transient() => {
                    let what = format!("record the {} event", p.kind);
                    self.defer(&what, &e);
                    return false;
                }
                Err(e) => {
                    let kind = p.kind;
                    self.say(&format!(
                        "cannot record the {kind} event of {}: {e}",
                        self.id
                    ));
                    self.pending.pop_front();
                }
            }
        }
        self.caught_up();
        true
    }

    /// Records what is kept before the outcome, retrying until the ledger
    /// takes it or refuses for good.
    pub(crate) fn flush_all<L: Ledger + ?Sized>(&mut self, ledger: &L) {
        while !self.flush(ledger) {
            std::thread::sleep(self.pause);
        }
    }

    /// Commits a write that must not be lost (the outcome): retried with
    /// backoff for as long as the ledger's errors are transient, and said
    /// once, like an event that waits.
    pub(crate) fn commit<T>(
        &mut self,
        doing: &str,
        mut write: impl FnMut() -> Result<T, tend_ledger::Error>,
    ) -> Result<T, tend_ledger::Error> {
        loop {
            match write() {
                Ok(t) => {
                    self.caught_up();
                    return Ok(t);
                }
                Err(e) if e.is_transient() => {
                    self.defer(doing, &e);
                    std::thread::sleep(self.pause);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A read or write the supervisor needs (`doing`: "read the kill
    /// request") failed transiently: says so once and schedules the next
    /// attempt with backoff.
    pub(crate) fn defer(&mut self, doing: &str, e: &tend_ledger::Error) {
        if !self.behind {
            self.behind = true;
            self.say(&format!(
                "cannot {doing} of {} yet ({e}); retrying until the ledger takes it",
                self.id
            ));
        }
        self.retry_at = Some(Instant::now() + self.pause);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }

    /// The ledger answers again.
    pub(crate) fn caught_up(&mut self) {
        if self.behind && self.pending.is_empty() {
            self.behind = false;
            self.say(&format!(
                "the ledger answers again; {} is recorded up to date",
                self.id
            ));
        }
        if self.pending.is_empty() {
            self.retry_at = None;
            self.pause = FIRST_PAUSE;
        }
    }

    /// When the next retry is due, if one is.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The pause before the next retry.
    pub(crate) fn pause(&self) -> Duration {
        self.pause
    }

    fn say(&self, text: &str) {
        match &self.voice {
            Voice::Stderr => eprintln!("tend: {text}"),
            Voice::File(p) => {
                let line = format!(
                    "{} {text}\n",
                    tend_model::format_rfc3339(tend_ledger::now_ms())
                );
                use std::os::unix::fs::OpenOptionsExt;
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .mode(0o600)
                    .append(true)
                    .open(p)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
            }
        }
    }
}
