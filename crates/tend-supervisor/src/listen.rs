//! The notifier of a home on a shared (PostgreSQL) ledger: the home's
//! files, as [`FileNotifier`] keeps them, and LISTEN, so that a
//! subscription also wakes when another host commits a transition, and the
//! daemon hears kill requests for its agent.
//!
//! Announcing needs nothing more than the files: the ledger's triggers
//! NOTIFY every transition and kill request in the transaction that makes
//! it (migration 11). Listening takes a thread (`hub.rs`), started by the
//! first subscription, that holds a connection of its own, so it is only
//! for processes that are no supervisor (a supervisor is single-threaded
//! and forks, and only announces): the CLI's commands other than a
//! foreground run, and the daemon ([`Home::listening`](crate::Home::listening)).
//!
//! The listener checks itself every [`CHECK_EVERY`](hub::CHECK_EVERY) (a
//! notification to its own channel must arrive within
//! [`CHECK_WITHIN`](hub::CHECK_WITHIN)); when that fails, or the connection
//! does, it connects again, LISTENs, then wakes every subscriber so that it
//! reads the ledger again. While it is not healthy
//! ([`Subscription::hears_remote`] is false) waiters of another host's
//! executions look again on a short interval instead.

mod hub;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tend_model::{ExecutionId, Status};

use crate::notify::{FileNotifier, Notifier, Subscription};
use crate::Error;

use hub::{Hub, Kind, Slot};

pub use hub::{CHECK_EVERY, CHECK_WITHIN};

/// How long a first subscription waits for the listener's first
/// connection before it goes on without (and waiters use their backstop).
const FIRST_CONNECT: Duration = Duration::from_secs(3);

/// [`FileNotifier`] plus LISTEN on a PostgreSQL ledger.
pub struct ListeningNotifier {
    files: FileNotifier,
    url: String,
    hub: OnceLock<Result<Arc<Hub>, String>>,
}

impl std::fmt::Debug for ListeningNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListeningNotifier")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ListeningNotifier {
    /// Announces through `files`, and listens on the ledger at `url` (the
    /// URL as given, password included) once somebody subscribes.
    pub fn new(files: FileNotifier, url: &str) -> ListeningNotifier {
        ListeningNotifier {
            files,
            url: url.to_string(),
            hub: OnceLock::new(),
        }
    }

    fn hub(&self) -> Result<Arc<Hub>, Error> {
        let hub = self.hub.get_or_init(|| {
            let hub = Hub::start(&self.url).map_err(|e| e.to_string())?;
            hub.wait_first(FIRST_CONNECT);
            Ok(hub)
        });
        hub.clone().map_err(|e| Error::Io {
            doing: "starting the ledger's listener",
            source: std::io::Error::other(e),
        })
    }

    fn join(
        &self,
        kind: Kind,
        files: Option<Box<dyn Subscription>>,
    ) -> Result<Box<dyn Subscription>, Error> {
        let hub = self.hub()?;
        let slot = hub
            .join(kind)
            .map_err(Error::io("subscribing to the listener"))?;
        let epoll = match &files {
            Some(f) => Some(joined(f.as_fd(), slot.as_fd())?),
            None => None,
        };
        Ok(Box::new(ListenSubscription {
            files,
            slot,
            hub,
            epoll,
        }))
    }
}

impl Notifier for ListeningNotifier {
    fn announce(&self, id: &ExecutionId, status: Status) {
        // The trigger NOTIFYs other hosts; the files wake this one's
        // waiters, which may not listen.
        self.files.announce(id, status);
    }

    fn subscribe(&self) -> Result<Box<dyn Subscription>, Error> {
        let files = self.files.subscribe()?;
        self.join(Kind::Transitions, Some(files))
    }

    fn subscribe_with_output(&self, logs: &Path) -> Result<Box<dyn Subscription>, Error> {
        let files = self.files.subscribe_with_output(logs)?;
        self.join(Kind::Transitions, Some(files))
    }

    fn announce_jobs(&self) {
        self.files.announce_jobs();
    }

    fn subscribe_jobs(&self) -> Result<Box<dyn Subscription>, Error> {
        self.files.subscribe_jobs()
    }

    fn subscribe_kills(&self) -> Result<Option<Box<dyn Subscription>>, Error> {
        self.join(Kind::Kills, None).map(Some)
    }
}

/// An epoll descriptor over the files' subscription and the listener's
/// eventfd: readable when either is, so callers poll one descriptor.
fn joined(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    use rustix::event::epoll;
    let io = Error::io("joining the subscriptions");
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| io(e.into()))?;
    for (i, fd) in [a, b].into_iter().enumerate() {
        epoll::add(
            &ep,
            fd,
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN,
        )
        .map_err(|e| Error::io("joining the subscriptions")(e.into()))?;
    }
    Ok(ep)
}

/// What a [`ListeningNotifier`] hands out.
struct ListenSubscription {
    files: Option<Box<dyn Subscription>>,
    slot: Arc<Slot>,
    hub: Arc<Hub>,
    epoll: Option<OwnedFd>,
}

impl AsFd for ListenSubscription {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.epoll {
            Some(ep) => ep.as_fd(),
            None => self.slot.as_fd(),
        }
    }
}

impl Subscription for ListenSubscription {
    fn take(&mut self) -> Vec<ExecutionId> {
        let mut ids = self.files.as_mut().map(|f| f.take()).unwrap_or_default();
        for id in self.slot.take() {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    fn hears_remote(&self) -> bool {
        self.hub.healthy()
    }
}
