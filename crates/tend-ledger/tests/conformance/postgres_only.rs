//! What only the PostgreSQL backend has: its refusals (a newer schema, a
//! database that is not tend's, a wrong password, an unreachable server),
//! concurrent first opens of one database, and the database's own refusal
//! of an illegal transition, whoever writes.

use std::sync::{Arc, Barrier};

use tend_ledger::{Error, Ledger, PgLedger};
use tend_model::Status;

use super::factory::{with_database, Database};
use super::{created, outcome, proc_id};

/// One sentence: no line break, and one full stop at most, at the end.
fn one_sentence(e: &Error) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "{text}");
    text
}

#[test]
fn a_newer_schema_is_refused() {
    let Some(db) = Database::fresh() else { return };
    drop(db.ledger());
    db.client()
        .batch_execute("UPDATE tend.meta SET value = '99' WHERE key = 'schema_version'")
        .unwrap();
    let err = PgLedger::open(&db.url).unwrap_err();
    assert!(matches!(err, Error::TooNew { found: 99, .. }), "{err}");
    let text = one_sentence(&err);
    assert!(text.contains("upgrade tend"), "{text}");
}

#[test]
fn a_database_that_is_not_tends_is_refused_and_left_alone() {
    let Some(db) = Database::fresh() else { return };
    let mut c = db.client();
    c.batch_execute("CREATE TABLE public.invoices (id int)")
        .unwrap();
    let err = PgLedger::open(&db.url).unwrap_err();
    assert!(matches!(err, Error::NotTends { .. }), "{err}");
    assert!(one_sentence(&err).contains("not tend's"));
    let tend_schema: bool = c
        .query_one("SELECT to_regnamespace('tend') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!tend_schema, "nothing was created");
}

#[test]
fn a_wrong_password_is_one_sentence_without_the_password() {
    let Some(db) = Database::fresh() else { return };
    let url = db.url.replacen("://tend:", "://tend:wrong-secret-", 1);
    assert_ne!(
        url, db.url,
        "the test server's URL names user tend with a password"
    );
    let err = PgLedger::open(&url).unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    let text = one_sentence(&err);
    assert!(
        !text.contains("wrong-secret") && text.contains("password"),
        "{text}"
    );
    assert!(!err.is_transient());
}

#[test]
fn an_unreachable_server_is_one_sentence_and_transient() {
    let Some(_db) = Database::fresh() else { return };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let err = PgLedger::open(&format!("postgres://tend:pw@127.0.0.1:{port}/x")).unwrap_err();
    assert!(started.elapsed().as_secs() < 5, "refused at once");
    assert!(matches!(err, Error::Open { .. }), "{err}");
    let text = one_sentence(&err);
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && !text.contains(":pw@"),
        "{text}"
    );
    assert!(
        err.is_transient(),
        "a supervisor keeps its outcome and tries again"
    );
    let err = PgLedger::open("postgres://tend@host.invalid/x").unwrap_err();
    assert!(one_sentence(&err).contains("host.invalid"), "{err}");
}

#[test]
fn a_malformed_url_is_refused_before_anything_is_sent() {
    for url in [
        "postgres://tend:pw@h:port/x",
        "postgres://tend:pw@h/x?sslmode=sometimes",
        "postgres://tend:pw@h/x?sslmode=verify-full",
    ] {
        let err = PgLedger::open(url).unwrap_err();
        assert!(matches!(err, Error::Location(_)), "{err}");
        assert!(!one_sentence(&err).contains("pw@"), "{err}");
    }
}

#[test]
fn concurrent_first_opens_make_one_ledger() {
    let Some(db) = Database::fresh() else { return };
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (url, barrier) = (db.url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PgLedger::open(&url).map(|l| l.ledger_id().to_string())
            })
        })
        .collect();
    let ids: std::collections::HashSet<String> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[test]
fn reopening_keeps_the_ledger_id_and_data() {
    let Some(db) = Database::fresh() else { return };
    let l = db.ledger();
    let (id, e) = (l.ledger_id().to_string(), created(&l, None));
    drop(l);
    let l = db.ledger();
    assert_eq!(l.ledger_id(), id);
    assert_eq!(l.get(&e.id).unwrap().id, e.id);
    let v = tend_ledger::SqliteLedger::schema_version();
    assert_eq!(l.schema().unwrap(), (v, v), "SQLite's version numbers");
    assert_eq!(
        (l.integrity_check(), l.files(), l.copied_from()),
        (None, vec![], None)
    );
    let ro = PgLedger::open_read_only(&db.url).unwrap();
    assert_eq!(ro.ledger_id(), id);
}

#[test]
fn the_database_refuses_an_illegal_transition_from_raw_sql() {
    let Some(db) = Database::fresh() else { return };
    let l = db.ledger();
    let queued = created(&l, None);
    let done = created(&l, None);
    l.start(&done.id, &proc_id()).unwrap();
    l.transition(
        &done.id,
        Status::Running,
        &outcome(Status::Succeeded, "supervisor"),
    )
    .unwrap();
    let mut c = db.client();
    let update = |c: &mut postgres::Client, sql: &str, id: &str| {
        let e = c.execute(sql, &[&id]).unwrap_err();
        e.as_db_error()
            .map_or(e.to_string(), |d| d.message().to_string())
    };
    let skip = update(
        &mut c,
        "UPDATE tend.executions SET status = 'succeeded' WHERE id = $1",
        queued.id.as_str(),
    );
    assert!(skip.contains("illegal transition"), "{skip}");
    for sql in [
        "UPDATE tend.executions SET status = 'running' WHERE id = $1",
        "UPDATE tend.executions SET reason = 'rewritten' WHERE id = $1",
    ] {
        let err = update(&mut c, sql, done.id.as_str());
        assert!(err.contains("terminal execution never changes"), "{err}");
    }
    assert!(c
        .execute(
            "UPDATE tend.events SET kind = 'x' WHERE execution_id = $1",
            &[&done.id.as_str()]
        )
        .is_err());
    assert_eq!(l.get(&queued.id).unwrap().status, Status::Queued);
    assert_eq!(
        l.get(&done.id).unwrap().reason.as_deref(),
        Some("by supervisor")
    );
}

#[test]
fn a_database_in_the_url_is_the_one_used() {
    let Some(db) = Database::fresh() else { return };
    assert!(with_database(&db.url, "other").ends_with("/other"));
    let l = db.ledger();
    let mut c = db.client();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM tend.meta WHERE key = 'ledger_id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let id: String = c
        .query_one("SELECT value FROM tend.meta WHERE key = 'ledger_id'", &[])
        .unwrap()
        .get(0);
    assert_eq!(id, l.ledger_id());
}

#[test]
fn a_broken_connection_is_made_again() {
    let Some(db) = Database::fresh() else { return };
    let l = db.ledger();
    let e = created(&l, None);
    let ended: i64 = db
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "the ledger's connection was ended");
    assert_eq!(l.get(&e.id).unwrap().id, e.id, "read on a new connection");
    l.start(&e.id, &proc_id()).unwrap();
}
