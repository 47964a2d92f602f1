//! From what happened to the [`Outcome`] the ledger records. The mapping is
//! a pure function over [`Happened`], a small plain struct the supervisor
//! fills in at the end, so that every status and reason people read is
//! tested here without a process, a clock or a ledger.

use std::time::Duration;

use serde_json::json;
use tend_ledger::{KillReport, Outcome, Usage};
use tend_model::{Actor, EventKind, Status};

use super::ending::Cause;

/// What happened to an execution, as its supervisor saw it once the tree
/// was gone.
#[derive(Debug, Clone)]
pub(super) struct Happened {
    /// The command's exit code, if it exited.
    pub(super) exit_code: Option<i32>,
    /// The signal that ended the command, if one did (sent by tend or not).
    pub(super) signal: Option<i32>,
    /// The command's pid, named in the event's details.
    pub(super) pid: Option<i32>,
    /// A Ctrl-C was passed on to the command (foreground).
    pub(super) interrupted: bool,
    /// Processes the kernel's OOM killer ended for the cgroup's
    /// `memory.max` (0 where the kernel does not enforce the limit).
    pub(super) oom_kills: u64,
    /// The memory limit, if one was set.
    pub(super) memory_limit: Option<u64>,
    /// Why tend ended the tree and what the kill took, if tend ended it
    /// (including the clean-up of what the command left behind).
    pub(super) kill: Option<(Cause, KillReport)>,
    /// What the tree used.
    pub(super) usage: Usage,
}

/// The outcome to commit for what happened.
///
/// A cause of tend's decides the status (a limit's `timed_out`, a request's
/// or a signal's `killed`); otherwise the command's own exit does, even when
/// tend then ended processes it left behind (counted as `stragglers_ended`).
pub(super) fn outcome(h: Happened) -> Outcome {
    let mut details = json!({ "pid": h.pid });
    if let Some((Cause::Cleanup, k)) = &h.kill {
        details["stragglers_ended"] = json!(k.processes_signalled);
    }
    let (status, reason, event, actor) = verdict(&h);
    Outcome {
        status,
        reason,
        exit_code: h.exit_code,
        signal: h.signal,
        kill: h.kill.map(|(_, k)| k),
        usage: Some(h.usage),
        event,
        actor,
        details,
    }
}

/// The status, the reason in words, the event that records it and who
/// decided.
fn verdict(h: &Happened) -> (Status, String, EventKind, Actor) {
    match h.kill.as_ref().map(|(cause, _)| cause) {
        Some(Cause::Timeout(ms)) => timed_out("timed out after", *ms),
        Some(Cause::Heartbeat(ms)) => timed_out("no heartbeat within", *ms),
        Some(Cause::Idle(ms)) => timed_out("no output for", *ms),
        Some(Cause::Memory { used, limit }) => (
            Status::Killed,
            format!("memory limit exceeded ({} > {})", mib(*used), mib(*limit)),
            EventKind::Killed,
            Actor::Supervisor,
        ),
        Some(Cause::Request { by, reason }) => (
            Status::Killed,
            match reason {
                Some(r) => format!("killed by {by}: {r}"),
                None => format!("killed by {by}"),
            },
            EventKind::Killed,
            by.clone(),
        ),
        Some(Cause::Fence(why)) => (
            Status::Killed,
            format!("fenced: {why}"),
            EventKind::Killed,
            Actor::Supervisor,
        ),
        Some(Cause::Signal(name)) => (
            Status::Killed,
            format!("interrupted ({name} to the supervisor)"),
            EventKind::Killed,
            Actor::User(None),
        ),
        Some(Cause::Cleanup) | None if h.oom_kills > 0 => (
            Status::Killed,
            format!(
                "memory limit exceeded (the kernel ended {} process{} at {})",
                h.oom_kills,
                if h.oom_kills == 1 { "" } else { "es" },
                mib(h.memory_limit.unwrap_or(0))
            ),
            EventKind::Killed,
            Actor::Kernel,
        ),
        Some(Cause::Cleanup) | None if h.interrupted && h.signal == Some(2) => (
            Status::Killed,
            "interrupted (Ctrl-C, passed on to the command as SIGINT)".to_string(),
            EventKind::Killed,
            Actor::User(None),
        ),
        Some(Cause::Cleanup) | None => {
            let status = if h.exit_code == Some(0) {
                Status::Succeeded
            } else {
                Status::Failed
            };
            (status, exited(h), EventKind::Exited, Actor::Supervisor)
        }
    }
}

/// How the command itself ended, in words.
fn exited(h: &Happened) -> String {
    match (h.exit_code, h.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("killed by signal {s} ({})", signal_name(s)),
        _ => "ended".to_string(),
    }
}

/// The outcome parts of a timeout of any kind.
fn timed_out(what: &str, ms: u64) -> (Status, String, EventKind, Actor) {
    let after = tend_model::format_duration(Duration::from_millis(ms));
    (
        Status::TimedOut,
        format!("{what} {after}"),
        EventKind::TimedOut,
        Actor::Supervisor,
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1}M", bytes as f64 / 1_048_576.0)
}

/// `SIGTERM` for 15, and so on, for reasons people read.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tend_model::KillMethod;

    const MIB: u64 = 1_048_576;

    /// A kill by tend: its cause, how it ended and how many it signalled.
    fn kill(cause: Cause, method: KillMethod, n: u32) -> Option<(Cause, KillReport)> {
        let report = KillReport {
            method,
            duration_ms: 120,
            processes_signalled: n,
        };
        Some((cause, report))
    }

    fn happened(
        exit_code: Option<i32>,
        signal: Option<i32>,
        kill: Option<(Cause, KillReport)>,
    ) -> Happened {
        Happened {
            exit_code,
            signal,
            pid: Some(4242),
            interrupted: false,
            oom_kills: 0,
            memory_limit: None,
            kill,
            usage: Usage {
                cpu_ms: 7,
                max_rss_bytes: 9,
            },
        }
    }

    fn alice() -> Actor {
        Actor::User(Some("alice".into()))
    }

    #[test]
    fn what_happened_decides_status_reason_event_and_actor() {
        use EventKind as E;
        use KillMethod::{Forced, Graceful};
        use Status as S;
        let sup = Actor::Supervisor;
        let request = |reason: Option<&str>| Cause::Request {
            by: alice(),
            reason: reason.map(str::to_string),
        };
        let memory = Cause::Memory {
            used: 3 * MIB / 2,
            limit: MIB,
        };
        #[rustfmt::skip]
        let table: Vec<(&str, Happened, S, &str, E, Actor)> = vec![
            ("exit 0", happened(Some(0), None, None),
             S::Succeeded, "exited with code 0", E::Exited, sup.clone()),
            ("exit 3", happened(Some(3), None, None),
             S::Failed, "exited with code 3", E::Exited, sup.clone()),
            ("a signal tend did not send", happened(None, Some(9), None),
             S::Failed, "killed by signal 9 (SIGKILL)", E::Exited, sup.clone()),
            ("an unnamed signal", happened(None, Some(40), None),
             S::Failed, "killed by signal 40 (signal)", E::Exited, sup.clone()),
            ("neither exit nor signal", happened(None, None, None),
             S::Failed, "ended", E::Exited, sup.clone()),
            ("SIGTERM'd by a timeout", happened(None, Some(15), kill(Cause::Timeout(1000), Graceful, 1)),
             S::TimedOut, "timed out after 1.0s", E::TimedOut, sup.clone()),
            ("a timeout the command survived by exiting", happened(Some(0), None, kill(Cause::Timeout(90_000), Graceful, 1)),
             S::TimedOut, "timed out after 1m30s", E::TimedOut, sup.clone()),
            ("a missed heartbeat", happened(None, Some(15), kill(Cause::Heartbeat(400), Graceful, 1)),
             S::TimedOut, "no heartbeat within 400ms", E::TimedOut, sup.clone()),
            ("no output", happened(None, Some(9), kill(Cause::Idle(500), Forced, 2)),
             S::TimedOut, "no output for 500ms", E::TimedOut, sup.clone()),
            ("the memory limit", happened(None, Some(15), kill(memory, Graceful, 1)),
             S::Killed, "memory limit exceeded (1.5M > 1.0M)", E::Killed, sup.clone()),
            ("a request with a reason", happened(None, Some(15), kill(request(Some("stuck")), Graceful, 1)),
             S::Killed, "killed by user:alice: stuck", E::Killed, alice()),
            ("a request without one", happened(None, Some(9), kill(request(None), Forced, 1)),
             S::Killed, "killed by user:alice", E::Killed, alice()),
            ("Ctrl-C", happened(None, Some(15), kill(Cause::Signal("SIGINT"), Graceful, 1)),
             S::Killed, "interrupted (SIGINT to the supervisor)", E::Killed, Actor::User(None)),
            ("Ctrl-C passed on, and the command died of it", Happened { interrupted: true, ..happened(None, Some(2), None) },
             S::Killed, "interrupted (Ctrl-C, passed on to the command as SIGINT)", E::Killed, Actor::User(None)),
            ("Ctrl-C passed on, and the command exited by itself", Happened { interrupted: true, ..happened(Some(1), None, None) },
             S::Failed, "exited with code 1", E::Exited, sup.clone()),
            ("the kernel's OOM killer under memory.max", Happened { oom_kills: 1, memory_limit: Some(MIB), ..happened(None, Some(9), None) },
             S::Killed, "memory limit exceeded (the kernel ended 1 process at 1.0M)", E::Killed, Actor::Kernel),
            ("leftovers after exit 0", happened(Some(0), None, kill(Cause::Cleanup, Graceful, 2)),
             S::Succeeded, "exited with code 0", E::Exited, sup.clone()),
            ("leftovers after exit 1", happened(Some(1), None, kill(Cause::Cleanup, Forced, 1)),
             S::Failed, "exited with code 1", E::Exited, sup.clone()),
        ];
        for (name, h, status, reason, event, actor) in table {
            let o = outcome(h.clone());
            assert_eq!(o.status, status, "{name}");
            assert_eq!(o.reason, reason, "{name}");
            assert_eq!(o.event, event, "{name}");
            assert_eq!(o.actor, actor, "{name}");
            assert_eq!((o.exit_code, o.signal), (h.exit_code, h.signal), "{name}");
            assert_eq!(o.kill, h.kill.map(|(_, k)| k), "{name}");
            assert_eq!(o.usage, Some(h.usage), "{name}");
        }
    }

    #[test]
    fn the_kill_report_says_forced_or_graceful() {
        for method in [KillMethod::Graceful, KillMethod::Forced] {
            let o = outcome(happened(
                None,
                Some(15),
                kill(Cause::Timeout(1000), method, 3),
            ));
            let k = o.kill.expect("tend ended it");
            assert_eq!(k.method, method);
            assert_eq!((k.duration_ms, k.processes_signalled), (120, 3));
        }
    }

    #[test]
    fn details_name_the_pid_and_count_ended_leftovers() {
        let plain = outcome(happened(Some(0), None, None));
        assert_eq!(plain.details, json!({ "pid": 4242 }));
        let cleaned = outcome(happened(
            Some(0),
            None,
            kill(Cause::Cleanup, KillMethod::Forced, 2),
        ));
        assert_eq!(
            cleaned.details,
            json!({ "pid": 4242, "stragglers_ended": 2 })
        );
        // Only leftovers are stragglers: a kill tend decided ended the command.
        let timed = outcome(happened(
            None,
            Some(15),
            kill(Cause::Timeout(1000), KillMethod::Graceful, 2),
        ));
        assert_eq!(timed.details, json!({ "pid": 4242 }));
    }

    #[test]
    fn signal_names_are_the_usual_ones() {
        assert_eq!(signal_name(2), "SIGINT");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(64), "signal");
    }
}
