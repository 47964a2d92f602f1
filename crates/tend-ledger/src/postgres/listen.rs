//! LISTEN on a PostgreSQL ledger: the connection through which a process
//! hears what other hosts commit. Migration 11's triggers NOTIFY every
//! transition (`tend_transition`) and every kill request of a live
//! execution (`tend_kill`) in the transaction that makes it; a [`Listener`]
//! holds a connection of its own (with TCP keepalive, since it only waits)
//! that LISTENs on both, and on a channel of its own for checking itself
//! ([`Listener::check`]).
//!
//! It is blocking, and meant for a thread of its own (or a short check):
//! never for a supervisor, which is single-threaded and forks. What is
//! heard is only a wake-up; the ledger stays the truth.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use tend_model::{ExecutionId, Status};

use super::client::{failure, Fail};
use super::connect::Target;
use crate::{Error, Result};

/// The channel of committed transitions: `<execution id> <new status>`.
pub const TRANSITIONS: &str = "tend_transition";

/// The channel of kill requests: `<execution id> <agent id of the row>`.
pub const KILLS: &str = "tend_kill";

/// After this long without traffic the kernel starts probing the
/// connection (then every half of it, three times).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// One notification, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// `id` changed status; it is now `status`.
    Transition {
        /// The execution.
        id: ExecutionId,
        /// Its new status.
        status: Status,
    },
    /// A kill of `id` was requested; `agent` launched it (and must carry
    /// it out).
    Kill {
        /// The execution.
        id: ExecutionId,
        /// The agent id on its row, if it has one.
        agent: Option<String>,
    },
    /// This listener's own check arrived ([`Listener::ping`]).
    Ping(String),
}

/// A connection that LISTENs for transitions and kill requests.
pub struct Listener {
    target: Target,
    client: Client,
    /// The channel only this connection listens on (named after its
    /// server process), for its checks.
    own: String,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("store", &self.target.shown())
            .field("own", &self.own)
            .finish()
    }
}

impl Listener {
    /// Connects to the ledger `url` names and LISTENs on every channel;
    /// from the moment this returns, every commit is heard.
    pub fn open(url: &str) -> Result<Listener> {
        let target = Target::parse(url).map_err(Error::Location)?;
        let doing = "listening for notifications";
        let mut client = target
            .connect_keepalive(KEEPALIVE_IDLE)
            .map_err(|f| failure(&target, doing, f))?;
        let own = (|| -> std::result::Result<String, Fail> {
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])?
                .try_get(0)?;
            let own = format!("tend_listener_{pid}");
            client.batch_execute(&format!(
                "LISTEN {TRANSITIONS}; LISTEN {KILLS}; LISTEN {own}"
            ))?;
            Ok(own)
        })()
        .map_err(|f| failure(&target, doing, f))?;
        Ok(Listener {
            target,
            client,
            own,
        })
    }

    /// Sends `token` to this listener's own channel: it is heard as
    /// [`Heard::Ping`] once the server has passed it through.
    pub fn ping(&mut self, token: &str) -> Result<()> {
        self.client
            .execute("SELECT pg_notify($1, $2)", &[&self.own, &token])
            .map(|_| ())
            .map_err(|e| failure(&self.target, "checking the listener", Fail::Pg(e)))
    }

    /// The next notification, waiting at most `timeout`; `Ok(None)` when
    /// none came. An error means the connection is gone: open another.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Heard>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = self.client.notifications().timeout_iter(left).next();
            let n = match got {
                Ok(Some(n)) => n,
                Ok(None) if self.client.is_closed() => return Err(self.closed()),
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(failure(
                        &self.target,
                        "listening for notifications",
                        Fail::Pg(e),
                    ))
                }
            };
            if let Some(heard) = decode(n.channel(), n.payload(), &self.own) {
                return Ok(Some(heard));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Whether LISTEN works here: a notification sent to itself arrives
    /// within `within`. Returns how long it took. Whatever else is heard
    /// meanwhile is dropped, so this is for a listener of its own (`tend
    /// doctor`). A transaction-mode pooler (PgBouncer) passes NOTIFY on but
    /// hands LISTEN's session to others, so nothing arrives.
    pub fn check(&mut self, within: Duration) -> Result<Duration> {
        let token = format!("{:016x}", super::random_u64());
        let started = Instant::now();
        self.ping(&token)?;
        loop {
            let left = within.saturating_sub(started.elapsed());
            match self.next(left)? {
                Some(Heard::Ping(t)) if t == token => return Ok(started.elapsed()),
                Some(_) => continue,
                None => {
                    let detail = format!(
                        "a notification this connection sent itself did not arrive within {} ms",
                        within.as_millis()
                    );
                    return Err(failure(
                        &self.target,
                        "checking LISTEN/NOTIFY",
                        Fail::Decode(detail),
                    ));
                }
            }
        }
    }

    fn closed(&self) -> Error {
        failure(
            &self.target,
            "listening for notifications",
            Fail::Unreachable("the connection closed".into()),
        )
    }
}

/// A notification as tend reads it; `None` for anything else (a malformed
/// payload, another channel).
fn decode(channel: &str, payload: &str, own: &str) -> Option<Heard> {
    if channel == own {
        return Some(Heard::Ping(payload.to_string()));
    }
    let (id, rest) = payload.split_once(' ').unwrap_or((payload, ""));
    let id = ExecutionId::parse(id).ok()?;
    match channel {
        TRANSITIONS => Some(Heard::Transition {
            id,
            status: rest.parse().ok()?,
        }),
        KILLS => Some(Heard::Kill {
            id,
            agent: (!rest.is_empty()).then(|| rest.to_string()),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_and_strangers_are_dropped() {
        let id = ExecutionId::parse("k3x9q2ab").unwrap();
        assert_eq!(
            decode(TRANSITIONS, "k3x9q2ab killed", "own"),
            Some(Heard::Transition {
                id: id.clone(),
                status: Status::Killed
            })
        );
        assert_eq!(
            decode(KILLS, "k3x9q2ab 0123abcd", "own"),
            Some(Heard::Kill {
                id: id.clone(),
                agent: Some("0123abcd".into())
            })
        );
        assert_eq!(
            decode(KILLS, "k3x9q2ab ", "own"),
            Some(Heard::Kill { id, agent: None })
        );
        assert_eq!(decode("own", "t", "own"), Some(Heard::Ping("t".into())));
        assert_eq!(decode(TRANSITIONS, "k3x9q2ab nonsense", "own"), None);
        assert_eq!(decode(TRANSITIONS, "NOT-AN-ID running", "own"), None);
        assert_eq!(decode("other", "k3x9q2ab running", "own"), None);
    }
}
