//! Where a ledger lives, and the one door through which every caller opens
//! it: a store location (`--store`, `TEND_STORE`, the home's default file)
//! becomes a `Box<dyn Ledger>`, so nothing above this crate names a backend.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Ledger, Result, SqliteLedger};

/// A ledger location, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
}

impl Store {
    /// Parses a store location: a file path, `sqlite:PATH` or
    /// `sqlite://PATH`. A relative path is made absolute against the current
    /// directory, so that a detached supervisor (which runs in `/`) opens
    /// the same file.
    pub fn parse(store: &str) -> Result<Store, String> {
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            return Err(
                "PostgreSQL ledgers are not supported by this build yet; use a SQLite path for --store"
                    .into(),
            );
        }
        let path = store
            .strip_prefix("sqlite://")
            .or_else(|| store.strip_prefix("sqlite:"))
            .unwrap_or(store);
        if path.is_empty() || path.contains("://") {
            return Err(format!(
                "'{store}' is not a ledger location; give a file path or sqlite:///path/to/tend.db"
            ));
        }
        let path = std::path::absolute(Path::new(path))
            .map_err(|e| format!("'{store}' is not a usable ledger location: {e}"))?;
        Ok(Store::Sqlite(path))
    }

    /// The SQLite file, for a store that is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Store::Sqlite(p) => Some(p),
        }
    }
}

impl fmt::Display for Store {
    /// The form [`Store::parse`] reads back (handed to commands as
    /// `TEND_STORE`, and to background supervisors).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::Sqlite(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Opens (creating and migrating where needed) the ledger at `store`.
pub fn open(store: &Store) -> Result<Box<dyn Ledger>> {
    match store {
        Store::Sqlite(p) => Ok(Box::new(SqliteLedger::open(p)?)),
    }
}

/// Opens an existing ledger for reading only (a read-only home).
pub fn open_read_only(store: &Store) -> Result<Box<dyn Ledger>> {
    match store {
        Store::Sqlite(p) => Ok(Box::new(SqliteLedger::open_read_only(p)?)),
    }
}
