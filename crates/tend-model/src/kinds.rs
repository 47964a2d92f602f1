//! The small vocabularies tend decides by — containment tiers, event
//! kinds, actors, reasons an execution was lost — as enums with one string
//! form each. The ledger and the JSON keep the strings; code compares
//! variants, never text.

use std::fmt;
use std::str::FromStr;

/// Defines a fieldless enum with one string form per variant, `Display`,
/// `FromStr` and serde through that form.
macro_rules! named {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            /// The one string form (in the ledger, the JSON, the docs).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} '{s}': use one of {}", $what, all.join(", "))
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

named! {
    /// How an execution's process tree is held (see `tend doctor`).
    Containment, "containment tier" {
        /// A cgroup v2 of its own, ended with `cgroup.kill`.
        Cgroup = "cgroup",
        /// A PID namespace of its own under a tiny init.
        Pidns = "pidns",
        /// Its own session under a subreaper supervisor, found by markers.
        Session = "session",
    }
}

impl utoipa::PartialSchema for Containment {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Containment::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for Containment {}

named! {
    /// Where a run's command works instead of its cwd (`--workspace`).
    WorkspaceKind, "workspace" {
        /// A fresh private directory (mode 0700) under tend's home.
        Tmp = "tmp",
        /// A new git worktree of the repository at the run's cwd, on a new
        /// branch `exec-<id>`, under tend's home.
        Worktree = "worktree",
    }
}

impl utoipa::PartialSchema for WorkspaceKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(WorkspaceKind::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for WorkspaceKind {}

named! {
    /// What an audit event records.
    EventKind, "event kind" {
        /// The execution was recorded (`queued`).
        Created = "created",
        /// The command was started (`running`).
        Started = "started",
        /// The command ended by itself.
        Exited = "exited",
        /// It was killed on request.
        Killed = "killed",
        /// A timeout (wall, idle, heartbeat) ended it.
        TimedOut = "timed-out",
        /// The command could not be started.
        FailedToStart = "failed-to-start",
        /// Its supervision was found gone.
        MarkedLost = "marked-lost",
        /// Somebody asked for a kill.
        KillRequested = "kill-requested",
        /// The supervisor did not act on a kill, so the asker ended the tree.
        KillTakenOver = "kill-taken-over",
        /// Signals went out to processes of the tree.
        SignalSent = "signal-sent",
        /// tend may not signal some processes of the tree.
        SignalRefused = "signal-refused",
        /// Processes survived SIGKILL (uninterruptible sleep).
        Unkillable = "unkillable",
        /// No heartbeat came within the heartbeat timeout.
        HeartbeatMissed = "heartbeat-missed",
        /// A recorded PID now belongs to another process; it was left alone.
        IdentityMismatch = "identity-mismatch",
        /// A transition lost a race; the winner's status stands.
        TransitionRefused = "transition-refused",
        /// Output could no longer be written to the log.
        LogWriteFailed = "log-write-failed",
        /// The log could not be made durable before the outcome.
        LogSyncFailed = "log-sync-failed",
        /// Foreground output could not be written to tend's stdout or
        /// stderr (a full disk, `/dev/full`); it is still in the log.
        OutputUndelivered = "output-undelivered",
        /// tend's stdout and stderr were one file, so the command got one
        /// pipe for both: its order is kept, and all of it is in the stdout log.
        StreamsMerged = "streams-merged",
        /// The attempt ended in a retried outcome: its next attempt was
        /// recorded, to start after the backoff.
        RetryScheduled = "retry-scheduled",
        /// A pending attempt whose supervisor was gone was taken over by a
        /// new supervisor (the daemon's), which starts it.
        Adopted = "adopted",
        /// A queued execution was cancelled before it started.
        Cancelled = "cancelled",
        /// A job's schedule fired and an execution was started (job event).
        Fired = "fired",
        /// A fire was skipped: `forbid` and one of the job's runs was live
        /// (job event).
        FireSkipped = "fire-skipped",
        /// A fire was decided but its run never started (the daemon stopped
        /// in between): a restarted daemon started it late (job event).
        FireRecovered = "fire-recovered",
        /// Fires came and went while no daemon was up; the details say how
        /// many and what catch-up did (job event).
        FireMissed = "fire-missed",
        /// An alert about it reached every configured webhook.
        AlertSent = "alert-sent",
        /// An alert about it could not be delivered within the retry
        /// period (`TEND_ALERT_RETRY_FOR`) and was given up.
        AlertFailed = "alert-failed",
    }
}

named! {
    /// What an alert is about (`TEND_ALERTS` chooses which are sent).
    AlertKind, "alert kind" {
        /// An execution ended `lost`.
        Lost = "lost",
        /// An execution ended `timed_out`.
        TimedOut = "timed_out",
        /// An execution ended `failed`.
        Failed = "failed",
        /// The number of executions running longer than the threshold rose
        /// above the alert count, or fell back to it.
        LongRunning = "long_running",
        /// A job's schedule missed fires.
        FireMissed = "fire_missed",
        /// A home's health changed (healthy, degraded, unhealthy).
        Health = "health",
    }
}

impl AlertKind {
    /// What `TEND_ALERTS` sends when it is not set: everything but
    /// `failed`, which a busy host has many of.
    pub const DEFAULT: &'static [AlertKind] = &[
        AlertKind::Lost,
        AlertKind::TimedOut,
        AlertKind::LongRunning,
        AlertKind::FireMissed,
        AlertKind::Health,
    ];
}

named! {
    /// What a job does when a fire (or `job run`) comes while one of its
    /// executions is live (`--concurrency`).
    Concurrency, "concurrency policy" {
        /// Start another one beside it.
        Allow = "allow",
        /// Start nothing: a fire is recorded as skipped, `job run` refused.
        Forbid = "forbid",
        /// Kill the live one (audited), start once its tree is gone.
        Replace = "replace",
    }
}

named! {
    /// What a daemon that was down does with the fires it missed (`--catch-up`).
    CatchUp, "catch-up policy" {
        /// Run the latest missed fire once; record the others as missed.
        Latest = "latest",
        /// Record them all as missed; run nothing.
        Skip = "skip",
    }
}

/// The string enums of the API, described as the strings they are.
macro_rules! string_schema {
    ($($t:ty),+) => {$(
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(<$t>::ALL.iter().map(|c| c.as_str())))
                    .into()
            }
        }
        impl utoipa::ToSchema for $t {}
    )+};
}
string_schema!(Concurrency, CatchUp);

/// Who did something, as the audit trail names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The execution's own supervisor.
    Supervisor,
    /// Whoever reconciled the ledger with the kernel.
    Reaper,
    /// The kernel itself (a PID namespace's leftovers).
    Kernel,
    /// The ledger (a copied ledger ending its copied rows).
    Ledger,
    /// The HTTP API.
    Api,
    /// The daemon's job scheduler.
    Scheduler,
    /// The daemon's alert sender.
    Alerts,
    /// A person at a shell: `user:NAME`, or `user` when the name is unknown
    /// (Ctrl-C at the terminal).
    User(Option<String>),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Supervisor => f.write_str("supervisor"),
            Actor::Reaper => f.write_str("reaper"),
            Actor::Kernel => f.write_str("kernel"),
            Actor::Ledger => f.write_str("ledger"),
            Actor::Api => f.write_str("api"),
            Actor::Scheduler => f.write_str("scheduler"),
            Actor::Alerts => f.write_str("alerts"),
            Actor::User(None) => f.write_str("user"),
            Actor::User(Some(n)) => write!(f, "user:{n}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "supervisor" => Actor::Supervisor,
            "reaper" => Actor::Reaper,
            "kernel" => Actor::Kernel,
            "ledger" => Actor::Ledger,
            "api" => Actor::Api,
            "scheduler" => Actor::Scheduler,
            "alerts" => Actor::Alerts,
            "user" => Actor::User(None),
            _ => match s.strip_prefix("user:") {
                Some(n) => Actor::User(Some(n.to_string())),
                None => return Err(format!("unknown actor '{s}'")),
            },
        })
    }
}

/// Why an execution's supervision is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// The host booted since it was recorded.
    HostRebooted,
    /// Its supervisor's process is gone.
    SupervisorDied,
    /// Its supervisor's PID now belongs to another process.
    SupervisorPidReused,
    /// The supervisor died before it started the command.
    DiedBeforeStart,
}

impl LostReason {
    /// Whether processes of the execution may still be alive to end (after
    /// a reboot none are).
    pub fn may_have_processes(&self) -> bool {
        !matches!(self, LostReason::HostRebooted)
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::HostRebooted => "host rebooted",
            LostReason::SupervisorDied => "supervisor died",
            LostReason::SupervisorPidReused => {
                "supervisor died (its pid now belongs to another process)"
            }
            LostReason::DiedBeforeStart => {
                "failed to start: the supervisor died before starting the command"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_as_itself() {
        for c in Containment::ALL {
            assert_eq!(c.as_str().parse::<Containment>(), Ok(*c));
        }
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(*k));
        }
        for k in AlertKind::ALL {
            assert_eq!(k.as_str().parse::<AlertKind>(), Ok(*k));
        }
        for a in [
            Actor::Supervisor,
            Actor::Reaper,
            Actor::Kernel,
            Actor::Ledger,
            Actor::Api,
            Actor::Alerts,
            Actor::User(None),
            Actor::User(Some("root".into())),
        ] {
            assert_eq!(a.to_string().parse::<Actor>(), Ok(a));
        }
        assert!("chroot".parse::<Containment>().is_err());
    }

    #[test]
    fn the_json_keeps_the_ledgers_strings() {
        assert_eq!(
            serde_json::to_string(&Containment::Cgroup).unwrap(),
            "\"cgroup\""
        );
        assert_eq!(EventKind::TimedOut.as_str(), "timed-out");
        assert_eq!(LostReason::HostRebooted.to_string(), "host rebooted");
    }
}
