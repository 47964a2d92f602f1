//! What only the SQLite backend has: its file's schema version, a file
//! that is not a database, reopening a file.

use tend_ledger::{Error, Ledger, SqliteLedger};

use super::created;
use super::factory::sqlite;

#[test]
fn a_newer_ledger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tend.db");
    drop(SqliteLedger::open(&path).unwrap());
    let c = rusqlite_bump(&path);
    assert!(c);
    let err = SqliteLedger::open(&path).unwrap_err();
    assert!(matches!(err, Error::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade tend"));
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tend.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = SqliteLedger::open(&path).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn reopening_keeps_the_ledger_id_and_data() {
    let (dir, l) = sqlite();
    let id = l.ledger_id().to_string();
    let e = created(&l, None);
    drop(l);
    let l = SqliteLedger::open(&dir.path().join("tend.db")).unwrap();
    assert_eq!(l.ledger_id(), id);
    assert_eq!(l.get(&e.id).unwrap().id, e.id);
    assert_eq!(l.integrity_check(), Some(Ok(())));
}

fn rusqlite_bump(path: &std::path::Path) -> bool {
    std::process::Command::new("sqlite3")
        .arg(path)
        .arg("PRAGMA user_version = 99;")
        .status()
        .map(|s| s.success())
        .unwrap_or_else(|_| bump_without_cli(path))
}

fn bump_without_cli(path: &std::path::Path) -> bool {
    // user_version lives at byte offset 60 of the header, big-endian.
    let mut bytes = std::fs::read(path).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(path, bytes).is_ok()
}
