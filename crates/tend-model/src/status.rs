use std::fmt;
use std::str::FromStr;

/// Where an execution is in its life. Every state names what happened, and
/// the terminal ones never change again (the ledger enforces it with a
/// trigger as well as with [`Status::can_become`]).
///
/// ```text
/// queued ──► running ──► succeeded | failed | timed_out | killed | lost
///   │
///   ├──► failed (the command could not be started)
///   ├──► lost   (the supervisor died before it started the command)
///   └──► cancelled
/// ```
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Recorded, supervisor alive, command not started yet.
    Queued,
    /// The command was started and its supervisor watches it.
    Running,
    /// The command exited with code 0.
    Succeeded,
    /// The command exited non-zero, died of a signal nobody sent, or could not be started.
    Failed,
    /// A timeout fired and tend ended the command.
    TimedOut,
    /// Somebody asked tend to kill it, and its whole tree is gone.
    Killed,
    /// Its supervision is gone (supervisor died, host rebooted, …); the reason says which.
    Lost,
    /// Ended before it was started.
    Cancelled,
}

/// A status name that tend does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown status '{0}': use one of queued, running, succeeded, failed, timed_out, killed, lost, cancelled")]
pub struct UnknownStatus(pub String);

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 8] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Killed,
        Status::Lost,
        Status::Cancelled,
    ];

    /// The name used in the ledger, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Killed => "killed",
            Status::Lost => "lost",
            Status::Cancelled => "cancelled",
        }
    }

    /// True once nothing can change the status any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    /// The one rule of the lifecycle: which edges exist.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        match self {
            Queued => matches!(next, Running | Failed | Lost | Cancelled),
            Running => matches!(next, Succeeded | Failed | TimedOut | Killed | Lost),
            _ => false,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses_never_change() {
        for from in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in Status::ALL {
                assert!(!from.can_become(to), "{from} -> {to} must be illegal");
            }
        }
    }

    #[test]
    fn running_ends_in_any_outcome_but_not_cancelled_or_queued() {
        use Status::*;
        for to in [Succeeded, Failed, TimedOut, Killed, Lost] {
            assert!(Running.can_become(to));
        }
        assert!(!Running.can_become(Cancelled));
        assert!(!Running.can_become(Queued));
        assert!(!Running.can_become(Running));
        assert!(Queued.can_become(Running));
        assert!(Queued.can_become(Cancelled));
        assert!(!Queued.can_become(Succeeded));
        assert!(!Queued.can_become(TimedOut));
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("done".parse::<Status>().is_err());
    }
}
