//! The PostgreSQL ledger's schema: versioned migrations applied on open, in
//! one transaction under an advisory lock, so that any number of processes
//! opening a new database at once make exactly one ledger (one ledger id).
//! A database with a newer schema, or one that holds other software's
//! tables and no tend ledger, is refused with nothing written.

use postgres::{Client, GenericClient};

use super::client::{commit, Fail, PgResult};

/// Schema migrations as (the version they bring the schema to, SQL). The
/// versions are the SQLite backend's: the first file folds SQLite's 1 to 8.
const MIGRATIONS: &[(i64, &str)] = &[
    (8, include_str!("../migrations/postgres/0008_ledger.sql")),
    (
        9,
        include_str!("../migrations/postgres/0009_stats_index.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_agent_leases.sql"),
    ),
    (11, include_str!("../migrations/postgres/0011_notify.sql")),
];

/// The key of the advisory lock migrations hold (`tend` in ASCII).
const MIGRATION_LOCK: i64 = 0x7465_6e64;

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// What opening found.
pub(crate) enum Found {
    /// The schema is (now) at `latest()`; the ledger's id.
    Ready(String),
    /// Written by a newer tend.
    TooNew(i64),
    /// Another program's database: nothing was created.
    NotTends,
}

/// The stored schema version, when the database has a tend ledger.
pub(crate) fn version(c: &mut impl GenericClient) -> PgResult<Option<i64>> {
    // Read from the catalog with this statement's snapshot, not through
    // to_regclass: a process that waited on the migration lock would
    // otherwise look the name up in a catalog cache from before it waited.
    let has_meta: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class k \
             JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace \
             WHERE n.nspname = 'tend' AND k.relname = 'meta')",
            &[],
        )?
        .try_get(0)?;
    if !has_meta {
        return Ok(None);
    }
    let row = c.query_opt(
        "SELECT value FROM tend.meta WHERE key = 'schema_version'",
        &[],
    )?;
    let Some(row) = row else { return Ok(Some(0)) };
    let v: String = row.try_get(0)?;
    v.parse()
        .map(Some)
        .map_err(|_| Fail::Decode(format!("the stored schema version '{v}' is not a number")))
}

/// Whether the database holds tables (or views) outside PostgreSQL's own
/// schemas.
fn has_foreign_tables(c: &mut impl GenericClient) -> PgResult<bool> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class k \
         JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace \
         WHERE k.relkind IN ('r','p','v','m','f') \
         AND n.nspname NOT IN ('pg_catalog','information_schema') \
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%')",
        &[],
    )?
    .try_get(0)?)
}

fn ledger_id(c: &mut impl GenericClient) -> PgResult<String> {
    Ok(
        c.query_one("SELECT value FROM tend.meta WHERE key = 'ledger_id'", &[])?
            .try_get(0)?,
    )
}

/// Brings the schema up to date (see the module's documentation).
pub(crate) fn migrate(c: &mut Client) -> PgResult<Found> {
    match version(c)? {
        Some(v) if v > latest() => return Ok(Found::TooNew(v)),
        Some(v) if v == latest() => return Ok(Found::Ready(ledger_id(c)?)),
        _ => {}
    }
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // Read again under the lock: another process may have migrated.
    let found = version(&mut tx)?;
    match found {
        Some(v) if v > latest() => return Ok(Found::TooNew(v)),
        None if has_foreign_tables(&mut tx)? => return Ok(Found::NotTends),
        _ => {}
    }
    let from = found.unwrap_or(0);
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO tend.meta (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&v.to_string()],
        )?;
    }
    tx.execute(
        "INSERT INTO tend.meta (key, value) VALUES ('ledger_id', $1) ON CONFLICT (key) DO NOTHING",
        &[&super::random_ledger_id()],
    )?;
    let id = ledger_id(&mut tx)?;
    commit(tx)?;
    Ok(Found::Ready(id))
}
