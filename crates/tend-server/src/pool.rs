//! Ledger connections the daemon's blocking tasks reuse. A SQLite
//! connection costs a file open, so each task still opens its own (and
//! sees a replaced or copied file at once); a PostgreSQL connection costs a
//! TCP handshake and an authentication exchange, so on PostgreSQL a task
//! takes one from here and puts it back when done.

use std::ops::Deref;
use std::sync::Mutex;

use tend_ledger::{Ledger, Store};

/// Connections kept for reuse at most; more tasks at once open more.
const KEEP: usize = 8;

/// The idle connections of one store.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Box<dyn Ledger>>>,
}

impl Pool {
    /// A connection to `store`: an idle one if it keeps connections.
    pub(crate) fn get<'a>(&'a self, store: &Store) -> tend_ledger::Result<Pooled<'a>> {
        let keeps = matches!(store, Store::Postgres(_));
        let reused = keeps
            .then(|| self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop())
            .flatten();
        let ledger = match reused {
            Some(l) => l,
            None => tend_ledger::open(store)?,
        };
        Ok(Pooled {
            ledger: Some(ledger),
            home: keeps.then_some(self),
        })
    }
}

/// A ledger connection that goes back to its pool when dropped.
pub struct Pooled<'a> {
    ledger: Option<Box<dyn Ledger>>,
    home: Option<&'a Pool>,
}

impl Deref for Pooled<'_> {
    type Target = dyn Ledger;

    fn deref(&self) -> &(dyn Ledger + 'static) {
        &**self.ledger.as_ref().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let (Some(pool), Some(l)) = (self.home, self.ledger.take()) else {
            return;
        };
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < KEEP {
            idle.push(l);
        }
    }
}
