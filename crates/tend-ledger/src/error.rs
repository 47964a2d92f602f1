use std::path::PathBuf;

/// What can go wrong in the ledger. `NotFound` and `Ambiguous` are kept
/// apart from the rest so callers can say "no such execution" (or 404)
/// instead of reporting a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No execution has this id or prefix.
    #[error("no execution matches '{0}'")]
    NotFound(String),
    /// No stored job has this name.
    #[error("no job is named '{0}'; see tend job list")]
    NoJob(String),
    /// A job of this name exists already.
    #[error("a job named '{0}' exists already; give --replace to redefine it")]
    JobExists(String),
    /// A prefix matches several executions.
    #[error("'{prefix}' matches several executions ({}); give more characters", candidates.join(", "))]
    Ambiguous {
        /// The prefix that was given.
        prefix: String,
        /// Up to ten ids it matches.
        candidates: Vec<String>,
    },
    /// The input cannot be an id or prefix.
    #[error(transparent)]
    BadId(#[from] tend_model::IdError),
    /// Another process held the ledger's write lock for the whole busy
    /// timeout. Transient: whatever must not be lost is retried.
    #[error("the ledger is busy: another process has held its write lock for {waited}; try again (TEND_SQLITE_BUSY_TIMEOUT waits longer)")]
    Busy {
        /// How long this process waited.
        waited: String,
    },
    /// A transition that the lifecycle does not have (`queued → succeeded`,
    /// anything out of a terminal status): refused before any write, and
    /// by the database as well.
    #[error("an execution cannot go from {from} to {to}")]
    IllegalTransition {
        /// The status the caller expected.
        from: tend_model::Status,
        /// The status it asked for.
        to: tend_model::Status,
    },
    /// The file (or PostgreSQL database) was written by a newer tend.
    #[error("the ledger {path} has schema version {found}, newer than this tend understands ({supported}); upgrade tend")]
    TooNew {
        /// Ledger file (or PostgreSQL URL, without its password).
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The file exists but is not a usable SQLite database.
    #[error("the ledger {path} is not a readable tend ledger ({detail}); move it aside to start a new one")]
    Corrupt {
        /// Ledger file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file could not be opened or created (or the PostgreSQL server
    /// not reached).
    #[error("cannot open the ledger {path}: {detail}")]
    Open {
        /// Ledger file (or PostgreSQL URL, without its password).
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The store is no location tend can use: a malformed PostgreSQL URL,
    /// or an `sslmode` this build does not speak. Nothing was sent.
    #[error("{0}")]
    Location(String),
    /// PostgreSQL refused the user or the password. Not transient: trying
    /// again sends the same credentials.
    #[error("PostgreSQL refused the credentials for the ledger {store}: {detail}")]
    Denied {
        /// The store, without its password.
        store: String,
        /// What the server said.
        detail: String,
    },
    /// The PostgreSQL database holds tables of other software and no tend
    /// ledger: tend creates nothing in it.
    #[error("the database of {store} holds tables that are not tend's and no tend ledger; give tend a database of its own (CREATE DATABASE tend)")]
    NotTends {
        /// The store, without its password.
        store: String,
    },
    /// Any other storage failure, with what was being attempted.
    #[error("ledger error while {doing}: {source}")]
    Storage {
        /// What the ledger was doing.
        doing: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether trying again later may succeed: the database was busy, the
    /// disk full, the file system read-only for now. An outcome that cannot
    /// be written because of such an error is kept and retried, never lost.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Storage { .. } | Error::Open { .. } | Error::Busy { .. }
        )
    }

    pub(crate) fn storage(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |e| Error::Storage {
            doing,
            source: Box::new(e),
        }
    }
}
