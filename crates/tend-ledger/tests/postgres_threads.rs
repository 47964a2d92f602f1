//! Connecting to a PostgreSQL ledger and using it starts no thread: the
//! supervisor is a single-threaded process that forks, so the backend's
//! driver must run its connection inside the calling thread (the `postgres`
//! crate's current-thread runtime), and host names are resolved on that
//! thread too (the driver would use a blocking-pool thread). Alone in its
//! test binary, so that no other test's threads are counted.

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

use tend_ledger::{Filter, Ledger, PgLedger};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn connecting_and_querying_start_no_thread() {
    let Some(admin) = server() else { return };
    let db = format!("tend_threads_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let server = admin.replacen("/postgres", &format!("/{db}"), 1);
    let before = threads();
    let l = PgLedger::open(&server).unwrap();
    l.list(&Filter::default()).unwrap();
    l.schema().unwrap();
    // By name, as a user's URL usually is: resolved here, not on a pool.
    let by_name = server.replacen("@127.0.0.1:", "@localhost:", 1);
    let named = PgLedger::open(&by_name).unwrap();
    named.live().unwrap();
    assert_eq!(threads(), before, "a ledger connection started a thread");
    drop((l, named));
    assert_eq!(threads(), before);
    c.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .unwrap();
}

/// The test server (`TEND_TEST_POSTGRES`), or `None` when skipping was
/// asked for with `TEND_TEST_NO_POSTGRES=1`.
fn server() -> Option<String> {
    match std::env::var("TEND_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("TEND_TEST_NO_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("skipped: TEND_TEST_NO_POSTGRES=1 skips the PostgreSQL tests");
            None
        }
        _ => panic!(
            "this test needs a PostgreSQL server: run scripts/test, or set TEND_TEST_POSTGRES \
             (scripts/postgres start prints one); TEND_TEST_NO_POSTGRES=1 skips it"
        ),
    }
}
