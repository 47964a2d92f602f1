//! Running executions and keeping the ledger true: the library that
//! `tend` and `tend serve` are built on, and the one to use to launch,
//! wait for, follow and kill executions from Rust (the CLI's `run -d`,
//! `wait`, `logs -f` and `kill` are thin layers over [`detach::launch`],
//! [`wait_until_done`], [`follow`] and [`kill()`]).
//!
//! - [`run`]: the supervisor. One single-threaded process per execution is
//!   the direct parent of the command; it commits the execution before the
//!   fork, watches the command through its pidfd, enforces the timeout,
//!   performs kills, ends every process the command left behind, and
//!   commits the outcome only when the tree is empty.
//! - [`reconcile`]: truth on read. Any tend process that reads the ledger
//!   first asks the kernel whether each live execution's supervisor is
//!   still the recorded process, and marks the ones whose supervision is
//!   gone `lost` (ending what is left of their trees).
//! - [`reap()`] and [`health::check`]: the reaper pass and the health
//!   report that the CLI and the daemon share.
//! - [`kill()`]: asks an execution's supervisor to end it, or ends it itself
//!   when the supervisor is dead.
//! - [`Notifier`]: the one seam through which transitions are announced
//!   and waited for ([`Home::notifier`]; today files and inotify).
//!   [`wait_until_done`] and [`follow`] block on it and on supervisors'
//!   pidfds, never on a sleep loop; [`verify_or_reconcile`] is the check
//!   they make before they trust a live row.
//!
//! What it does not do: it holds no state between calls and speaks no HTTP;
//! the daemon and the CLI are built on these functions.
//!
//! A program launches an execution in a home, under a background
//! supervisor that outlives it, and waits for its outcome. The supervisor
//! is the program [`detach::launch`] is given, run again with
//! [`detach::SUPERVISE_ARG`]: `tend` itself, or (as here) the calling
//! program, when it answers that argument first thing. `examples/` in this
//! crate does the same, and also follows output and kills.
//!
//! ```
//! use std::time::Duration;
//! use tend_model::run::{Policy, RunOptions};
//! use tend_supervisor::{detach, Home};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     if std::env::args().nth(1).as_deref() == Some(detach::SUPERVISE_ARG) {
//!         std::process::exit(detach::supervise_from_stdin());
//!     }
//!     let dir = tempfile::tempdir()?;
//!     let home = Home::new(dir.path());
//!     home.ensure()?;
//!     let store = tend_ledger::Store::Sqlite(home.default_db());
//!     let ledger = tend_ledger::open(&store)?;
//!     let opts = RunOptions {
//!         command: vec!["true".into()],
//!         ..RunOptions::default()
//!     };
//!     let spec = opts.resolve(&Policy::default())?;
//!     let me = std::env::current_exe()?;
//!     let detach::Answer::Started { id } = detach::launch(&me, &home, &store, &spec)? else {
//!         return Err("the command did not start".into());
//!     };
//!     let ids = [tend_model::ExecutionId::parse(&id)?];
//!     let timeout = Some(Duration::from_secs(10));
//!     let done = tend_supervisor::wait_until_done(&ledger, &home, &ids, timeout)?;
//!     assert_eq!(done.ok_or("still running")?[0].status, tend_model::Status::Succeeded);
//!     Ok(())
//! }
//! ```

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod deliver;
pub mod detach;
mod follow;
pub mod health;
mod home;
pub mod jobs;
pub mod kill;
pub mod lease;
mod leftovers;
mod listen;
mod logs;
mod notify;
pub mod output;
pub mod prune;
mod reap;
mod reaper;
pub mod retry;
mod signals;
mod supervisor;
mod takeover;
mod tier;
mod wait;
pub mod watchdog;
pub mod workspace;

pub use deliver::deliver;
pub use follow::follow;
pub use home::{open_small, read_small, Agent, Home, SMALL_FILE_MAX};
pub use kill::{kill, kill_noting, request as request_kill, KillResult};
pub use leftovers::end_marked;
pub use listen::{
    ListeningNotifier, CHECK_EVERY as LISTEN_CHECK_EVERY, CHECK_WITHIN as LISTEN_CHECK_WITHIN,
};
pub use notify::{wait_any, FileNotifier, Notifier, Subscription, Wake};
pub use reap::reap;
pub use reaper::{
    overdue_at, reconcile, reconcile_dry_run, reconcile_execution, sweep_stragglers,
    verify_or_reconcile, Reconciled, Straggler, Supervision,
};
pub use supervisor::{find_program, run, signal_name, Mode, Report, RunResult};
pub use tend_model::run::{OnDuplicate, RunSpec};
pub use tier::{choose as choose_tier, offered as offered_tiers, Tier};
pub use wait::wait_until_done;

/// What can go wrong while supervising or reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] tend_ledger::Error),
    /// The containment tier asked for is not available on this host.
    #[error("the {tier} containment tier is not available here: {why}")]
    Unavailable {
        /// The tier asked for.
        tier: String,
        /// Why not.
        why: String,
    },
    /// The execution belongs to another home's agent (this home is a copy
    /// of it, or shares its ledger): only that agent may act on it.
    #[error("execution {id} was launched by another home (agent {agent}); act on it from there")]
    Foreign {
        /// The execution.
        id: String,
        /// The agent that launched it.
        agent: String,
    },
    /// The execution's supervisor keeps another file as this ledger (the
    /// file at this path is a copy, or was replaced): this ledger's requests
    /// never reach it, so nothing is done to its processes from here.
    #[error("execution {id} is supervised through another copy of this ledger's file; act on it through that one")]
    OtherLedger {
        /// The execution.
        id: String,
    },
    /// A system call failed; `doing` says what tend was attempting.
    #[error("{doing}: {source}")]
    Io {
        /// What was being attempted.
        doing: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { doing, source }
    }
}

/// Whether `e` is supervised on this machine, so that the kernel can be
/// asked about its supervisor. The boot id decides (it is random per boot of
/// one machine), so a host name changed while executions run does not turn
/// them into strangers; the host name covers rows from before a reboot.
pub fn is_local(e: &tend_model::Execution, host: &str) -> bool {
    e.host == host || tend_proc::procfs::boot_id().is_ok_and(|b| b == e.supervisor.boot_id)
}

/// Whether this process may ask its kernel about `e`'s supervisor (pin it,
/// nudge it, take a kill over): `e` is supervised on this machine
/// ([`is_local`]) and, on a `shared` ledger ([`Ledger::shared`](tend_ledger::Ledger::shared)),
/// was launched by this home's agent. Another agent's execution on a shared
/// ledger is reached only through the ledger — a kill request its daemon
/// carries out, the notification of its end — even when both homes are on
/// one machine, so that nothing works here that would not across hosts.
pub fn supervised_here(shared: bool, home: &Home, e: &tend_model::Execution, host: &str) -> bool {
    is_local(e, host) && !(shared && another_agents(home, e))
}

/// Whether `e` was launched by an agent other than `home`'s.
pub(crate) fn another_agents(home: &Home, e: &tend_model::Execution) -> bool {
    match (&e.agent_id, home.agent()) {
        (Some(theirs), Ok(ours)) => *theirs != ours.id,
        _ => false,
    }
}

/// Variables that hold tend's own secrets (the daemon's API token). They
/// are removed from the environment of every supervisor the launcher
/// starts and of every command a supervisor starts, so that no command
/// tend runs inherits them (issue 8), and a foreground `tend run` executes
/// itself again without them, since its command can read its parent's
/// `/proc/PID/environ`; a value given explicitly in the run's `env` is
/// still passed.
pub const SECRET_VARS: &[&str] = &["TEND_TOKEN"];

/// Variables that hold the store's secrets. A supervisor may need them to
/// reach a PostgreSQL ledger, so only the commands it starts lose them
/// (their `TEND_STORE` is the URL without its password as well).
pub const STORE_SECRET_VARS: &[&str] = &["PGPASSWORD"];

/// The processes carrying `ledger`'s marker (and no other agent's than
/// `agent`, when given), with the execution id each names. Processes from
/// before agents were recorded carry no agent marker and count.
pub fn marked_processes(ledger: &str, agent: Option<&str>) -> Vec<(tend_proc::Pidfd, String)> {
    use tend_model::{MARKER_AGENT, MARKER_EXECUTION, MARKER_LEDGER};
    tend_proc::tree::marked(&tend_proc::tree::Markers {
        must: (MARKER_LEDGER, ledger),
        must_not_differ: agent.map(|a| (MARKER_AGENT, a)),
        key: MARKER_EXECUTION,
    })
}

/// Environment variable naming a crash point for tests: the supervisor
/// SIGKILLs itself when it reaches the point of that name
/// (`after-queued-commit`, `after-spawn`, `before-terminal-commit`,
/// `after-terminal-commit`). It is removed from the command's environment.
/// `tend top` reads it too: `top-panic-after-draw` panics after a frame;
/// and the daemon: `scheduler-after-claim`, a fire decided, its run not
/// launched.
pub const FAILPOINT_VAR: &str = "TEND_FAILPOINT";

/// SIGKILLs the calling process if [`FAILPOINT_VAR`] names `name`.
pub fn failpoint(name: &str) {
    if std::env::var(FAILPOINT_VAR).is_ok_and(|v| v == name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
