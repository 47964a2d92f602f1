//! The one connection of a [`crate::PgLedger`], and what to do when a call
//! on it fails: reconnect when the connection broke, try again (a bounded
//! number of times, as the SQLite backend waits on its busy timeout) when
//! the failure is transient — a refused or reset connection, a
//! serialization failure (40001), a deadlock (40P01), a server shutting
//! down — and otherwise say what failed in one sentence naming the store.
//!
//! The synchronous driver runs its connection on a current-thread tokio
//! runtime inside the calling thread: connecting and querying start no
//! thread (a supervisor is single-threaded and forks; the test
//! `postgres_threads` checks it).

use std::sync::Mutex;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Transaction};

use super::connect::Target;
use crate::{Error, Result};

/// Why a call on the connection failed, before it becomes an [`Error`].
#[derive(Debug)]
pub(crate) enum Fail {
    /// What the driver or the server said.
    Pg(postgres::Error),
    /// The connection broke while committing: whether the write was made
    /// is unknown, so it is not tried again.
    Unknown(postgres::Error),
    /// No connection could be made (the host name did not resolve).
    Unreachable(String),
    /// A refusal of the ledger's own (not found, illegal…).
    Ledger(Error),
    /// A stored value that does not decode.
    Decode(String),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Ledger(e)
    }
}

/// A call's result before it leaves the backend.
pub(crate) type PgResult<T> = std::result::Result<T, Fail>;

/// A failure of the PostgreSQL ledger, named by its store (never with its
/// password): the source of [`Error::Storage`].
#[derive(Debug)]
pub(crate) struct PgFailure {
    store: String,
    detail: String,
}

impl std::fmt::Display for PgFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (PostgreSQL ledger {})", self.detail, self.store)
    }
}

impl std::error::Error for PgFailure {}

/// Attempts after a broken or refused connection, and the first pause
/// (doubling: about 1.5 s in all).
const RECONNECTS: u32 = 4;
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Attempts after a serialization failure or deadlock.
const CONFLICT_RETRIES: u32 = 20;

/// How a failure is handled.
struct Verdict {
    /// The connection is unusable: drop it, connect again.
    broken: bool,
    /// Trying again may succeed, and cannot write twice.
    retry: bool,
    /// A conflict with another transaction (not a connection problem).
    conflict: bool,
}

fn verdict(f: &Fail) -> Verdict {
    let (broken, retry, conflict) = match f {
        Fail::Pg(e) => match e.code() {
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                (false, true, true)
            }
            Some(c) if connection_state(c) => (true, true, false),
            Some(_) => (false, false, false),
            None => {
                let gone = is_connection_error(e);
                (gone, gone, false)
            }
        },
        Fail::Unknown(_) => (true, false, false),
        Fail::Unreachable(_) => (true, true, false),
        Fail::Ledger(_) | Fail::Decode(_) => (false, false, false),
    };
    Verdict {
        broken,
        retry,
        conflict,
    }
}

/// Server states that mean "this connection, not this statement": the
/// connection-exception class and a server shutting down or starting.
fn connection_state(c: &SqlState) -> bool {
    c.code().starts_with("08")
        || *c == SqlState::ADMIN_SHUTDOWN
        || *c == SqlState::CRASH_SHUTDOWN
        || *c == SqlState::CANNOT_CONNECT_NOW
        || *c == SqlState::TOO_MANY_CONNECTIONS
}

/// A closed connection or an I/O failure (refused, reset, timed out).
fn is_connection_error(e: &postgres::Error) -> bool {
    use std::error::Error as _;
    e.is_closed()
        || e.source().is_some_and(|s| s.is::<std::io::Error>())
        || e.to_string().contains("timeout")
}

/// Whether PostgreSQL refused the user or password.
fn is_auth(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    })
}

/// The words for a driver error: the server's message, else the driver's.
pub(crate) fn detail(e: &postgres::Error) -> String {
    use std::error::Error as _;
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => match e.source() {
            Some(s) if s.is::<std::io::Error>() => s.to_string(),
            _ => e.to_string(),
        },
    }
}

/// Commits, telling a broken connection during the commit (outcome
/// unknown) from any other failure.
pub(crate) fn commit(tx: Transaction<'_>) -> PgResult<()> {
    tx.commit().map_err(|e| {
        if is_connection_error(&e) {
            Fail::Unknown(e)
        } else {
            Fail::Pg(e)
        }
    })
}

/// The ledger's connection, made again whenever it broke.
pub(crate) struct Conn {
    pub(crate) target: Target,
    client: Mutex<Option<Client>>,
}

impl Conn {
    /// A connection to `target`, made now: an unreachable server, a
    /// refused password, a missing database are said at once.
    pub(crate) fn open(target: Target) -> Result<Conn> {
        let client = connect(&target).map_err(|f| open_error(&target, f))?;
        Ok(Conn {
            target,
            client: Mutex::new(Some(client)),
        })
    }

    /// Closes the connection, if one is open; the next call connects again.
    pub(crate) fn close(&self) {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        *slot = None;
    }

    /// Runs `f` on the connection (connecting first if it broke), trying
    /// again on a transient failure.
    pub(crate) fn run<T>(
        &self,
        doing: &'static str,
        mut f: impl FnMut(&mut Client) -> PgResult<T>,
    ) -> Result<T> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let (mut reconnects, mut conflicts) = (0, 0);
        loop {
            if slot.as_ref().is_some_and(Client::is_closed) {
                *slot = None;
            }
            let result = match slot.as_mut() {
                Some(c) => f(c),
                None => connect(&self.target).and_then(|c| f(slot.insert(c))),
            };
            let fail = match result {
                Ok(v) => return Ok(v),
                Err(fail) => fail,
            };
            let v = verdict(&fail);
            if v.broken {
                *slot = None;
            }
            if v.retry && v.conflict && conflicts < CONFLICT_RETRIES {
                conflicts += 1;
                std::thread::sleep(Duration::from_millis(1 + (crate::now_ms() as u64 % 20)));
                continue;
            }
            if v.retry && !v.conflict && reconnects < RECONNECTS {
                std::thread::sleep(RECONNECT_PAUSE * 2u32.pow(reconnects));
                reconnects += 1;
                continue;
            }
            return Err(self.error(doing, fail));
        }
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        doing: &'static str,
        mut f: impl FnMut(&mut Transaction<'_>) -> PgResult<T>,
    ) -> Result<T> {
        self.run(doing, |c| {
            let mut tx = c.transaction()?;
            let v = f(&mut tx)?;
            commit(tx)?;
            Ok(v)
        })
    }

    /// The [`Error`] for a failure while `doing`.
    fn error(&self, doing: &'static str, fail: Fail) -> Error {
        failure(&self.target, doing, fail)
    }
}

/// The [`Error`] for a failure on a connection to `target` while `doing`.
pub(crate) fn failure(target: &Target, doing: &'static str, fail: Fail) -> Error {
    let store = target.shown().to_string();
    let detail = match fail {
        Fail::Ledger(e) => return e,
        Fail::Pg(e) if is_auth(&e) => {
            return Error::Denied {
                store,
                detail: detail(&e),
            }
        }
        Fail::Pg(e) => detail(&e),
        Fail::Unknown(e) => format!(
            "the connection broke while committing ({}); whether the write was made is unknown",
            detail(&e)
        ),
        Fail::Unreachable(d) | Fail::Decode(d) => d,
    };
    Error::Storage {
        doing,
        source: Box::new(PgFailure { store, detail }),
    }
}

/// A new connection, with the session settings tend relies on: a
/// transaction left open by a stopped process (SIGSTOP inside a write) is
/// ended by the server instead of holding its row locks for ever.
fn connect(target: &Target) -> PgResult<Client> {
    let mut c = target.connect()?;
    c.batch_execute("SET idle_in_transaction_session_timeout = '60s'")?;
    Ok(c)
}

/// The one-sentence refusal of an open that could not connect.
pub(crate) fn open_error(target: &Target, fail: Fail) -> Error {
    let store = target.shown().to_string();
    match fail {
        Fail::Pg(e) if is_auth(&e) => Error::Denied {
            store,
            detail: detail(&e),
        },
        Fail::Pg(e) => Error::Open {
            path: store.into(),
            detail: detail(&e),
        },
        Fail::Unknown(e) => Error::Open {
            path: store.into(),
            detail: detail(&e),
        },
        Fail::Unreachable(d) | Fail::Decode(d) => Error::Open {
            path: store.into(),
            detail: d,
        },
        Fail::Ledger(e) => e,
    }
}
