//! Where a ledger lives, and the one door through which every caller opens
//! it: a store location (`--store`, `TEND_STORE`, the home's default file)
//! becomes a `Box<dyn Ledger>`, so nothing above this crate names a backend.
//! A PostgreSQL location may carry a password: its `Debug`, its `Display`
//! and [`Store::without_password`] never show it; only
//! [`Store::reopen_form`], which a background supervisor needs to open the
//! same store, does.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Ledger, PgLedger, Result, SqliteLedger};

/// A ledger location, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by several hosts.
    Postgres(PgUrl),
}

/// A PostgreSQL URL as it was given (`postgres://` or `postgresql://`),
/// known to parse. Its `Debug` leaves the password out, so that logging a
/// [`Store`] never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// The URL as given, password included: for opening, never for showing.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL without its password.
    pub fn without_password(&self) -> String {
        crate::postgres::redact(&self.0)
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({:?})", self.without_password())
    }
}

impl Store {
    /// Parses a store location: a file path, `sqlite:PATH` or
    /// `sqlite://PATH`, or a PostgreSQL URL (`postgres://…`,
    /// `postgresql://…`). A relative path is made absolute against the
    /// current directory, so that a detached supervisor (which runs in `/`)
    /// opens the same file. A malformed URL is refused here, in one
    /// sentence that does not show its password.
    pub fn parse(store: &str) -> Result<Store, String> {
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            crate::postgres::Target::parse(store)?;
            return Ok(Store::Postgres(PgUrl(store.to_string())));
        }
        let path = store
            .strip_prefix("sqlite://")
            .or_else(|| store.strip_prefix("sqlite:"))
            .unwrap_or(store);
        if path.is_empty() || path.contains("://") {
            return Err(format!(
                "'{store}' is not a ledger location; give a file path, sqlite:///path/to/tend.db or postgres://user@host/database"
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
            Store::Postgres(_) => None,
        }
    }

    /// The location as it may be shown, or handed to a launched command:
    /// a PostgreSQL URL without its password (which the process that opens
    /// it then takes from `PGPASSWORD`), a SQLite path as it is.
    pub fn without_password(&self) -> String {
        match self {
            Store::Sqlite(p) => p.display().to_string(),
            Store::Postgres(u) => u.without_password(),
        }
    }
}

impl Store {
    /// The form [`Store::parse`] reads back to open the same store, a
    /// PostgreSQL URL with its password: only for handing to a background
    /// supervisor (on its stdin, never in an argument or the environment).
    pub fn reopen_form(&self) -> String {
        match self {
            Store::Sqlite(p) => p.display().to_string(),
            Store::Postgres(u) => u.as_str().to_string(),
        }
    }
}

impl fmt::Display for Store {
    /// The store as it may be shown: [`Store::without_password`], so that
    /// no message, log line or health report ever carries the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.without_password())
    }
}

/// Opens (creating and migrating where needed) the ledger at `store`.
pub fn open(store: &Store) -> Result<Box<dyn Ledger>> {
    match store {
        Store::Sqlite(p) => Ok(Box::new(SqliteLedger::open(p)?)),
        Store::Postgres(u) => Ok(Box::new(PgLedger::open(u.as_str())?)),
    }
}

/// Opens an existing ledger for reading only (a read-only home).
pub fn open_read_only(store: &Store) -> Result<Box<dyn Ledger>> {
    match store {
        Store::Sqlite(p) => Ok(Box::new(SqliteLedger::open_read_only(p)?)),
        Store::Postgres(u) => Ok(Box::new(PgLedger::open_read_only(u.as_str())?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_reopens_itself_and_shows_no_password() {
        for url in [
            "postgres://tend:s3cret@db.example:5432/ledger",
            "postgresql://tend:s3cret@db.example/ledger?sslmode=disable",
        ] {
            let s = Store::parse(url).unwrap();
            assert_eq!(s.reopen_form(), url, "the reopen form is the same store");
            assert_eq!(Store::parse(&s.reopen_form()).unwrap(), s);
            assert!(!s.without_password().contains("s3cret"));
            assert!(
                !s.to_string().contains("s3cret"),
                "Display shows no password"
            );
            assert!(!format!("{s:?}").contains("s3cret"));
            assert_eq!(s.sqlite_path(), None);
        }
        let err = Store::parse("postgres://tend:s3cret@db:port/x").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
