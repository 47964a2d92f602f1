//! tend's domain types, shared by every other crate and by the wire formats.
//!
//! This crate holds the nouns of tend — [`ExecutionId`], [`Status`],
//! [`Execution`], [`Event`], [`ProcessIdentity`] — and the rules that do not
//! need the outside world: which status transitions are legal, how a
//! duration is written, which exit code an execution stands for, which
//! names a [`Glob`] matches, how large an input may be ([`limits`]), which
//! options a run may have and how they are checked ([`run`]), and how
//! foreign text is shown to a person ([`text`]); and the reports that the
//! CLI and the API share ([`wire`]). It does no I/O, so every rule here is
//! tested without processes or files.
//!
//! ```
//! use tend_model::{Status, parse_duration};
//! assert!(Status::Running.can_become(Status::Succeeded));
//! assert!(!Status::Succeeded.can_become(Status::Running));
//! assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
//! ```

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

mod duration;
mod execution;
mod glob;
mod id;
pub mod job;
pub mod kinds;
pub mod limits;
pub mod run;
mod status;
pub mod text;
pub mod wire;

pub use duration::{format_duration, parse_duration, parse_size, DurationError, SizeError};
pub use execution::{
    format_rfc3339, Event, Execution, KillMethod, KillRequested, ProcessIdentity, Workspace,
};
pub use glob::{Glob, GlobError};
pub use id::{ExecutionId, IdError, ID_LEN, MIN_PREFIX_LEN};
pub use kinds::{
    Actor, AlertKind, CatchUp, Concurrency, Containment, EventKind, LostReason, WorkspaceKind,
};
pub use status::{Status, UnknownStatus};

/// Environment variable that carries the execution id into every launched
/// process; descendants inherit it, which is how escaped processes are found.
pub const MARKER_EXECUTION: &str = "TEND_EXECUTION_ID";
/// Environment variable that carries the ledger id, so that two ledgers on
/// one host never touch each other's processes.
pub const MARKER_LEDGER: &str = "TEND_LEDGER";
/// Environment variable that carries the agent id (the home that launched
/// the execution), so that a copy of a home, or another home on a shared
/// ledger, never touches this home's processes.
pub const MARKER_AGENT: &str = "TEND_AGENT_ID";
