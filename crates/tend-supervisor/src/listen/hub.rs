//! The one LISTEN connection of a process and its subscribers: a thread
//! that holds a [`Listener`] and hands what it hears to every subscription
//! through an eventfd each, checks the connection, and makes it again when
//! it fails.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tend_ledger::{Heard, Listener};
use tend_model::ExecutionId;

/// How often the listener checks itself: a notification to its own
/// channel, which must come back within [`CHECK_WITHIN`]. A connection can
/// look open while nothing arrives (a pooler that moved the session, a
/// half-open TCP connection the keepalive has not yet given up on).
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long a check may take before the listener counts as broken.
pub const CHECK_WITHIN: Duration = Duration::from_secs(2);

/// The first pause before connecting again; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Names a subscription keeps at most; beyond that it only wakes (the
/// names are a hint, the ledger is re-read).
const QUEUE_MAX: usize = 4096;

/// What a subscription hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Committed transitions (`tend_transition`).
    Transitions,
    /// Kill requests (`tend_kill`).
    Kills,
}

/// One subscription's queue and the eventfd that says it is not empty.
pub(crate) struct Slot {
    kind: Kind,
    wake: OwnedFd,
    queue: Mutex<Vec<ExecutionId>>,
}

impl Slot {
    fn new(kind: Kind) -> std::io::Result<Slot> {
        use rustix::event::{eventfd, EventfdFlags};
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Slot {
            kind,
            wake,
            queue: Mutex::new(Vec::new()),
        })
    }

    /// Queues `id` (when given) and makes the descriptor readable; `None`
    /// only wakes: "look again at everything".
    fn push(&self, id: Option<&ExecutionId>) {
        if let Some(id) = id {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() < QUEUE_MAX && !q.contains(id) {
                q.push(id.clone());
            }
        }
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// What was queued; the descriptor is not readable after it.
    pub(crate) fn take(&self) -> Vec<ExecutionId> {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut buf);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl AsFd for Slot {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

/// The listening thread's shared state.
pub(crate) struct Hub {
    url: String,
    slots: Mutex<Vec<Weak<Slot>>>,
    healthy: AtomicBool,
    /// Whether the first connection attempt is over (made or failed).
    tried: (Mutex<bool>, Condvar),
}

impl Hub {
    /// Starts the listening thread for the ledger at `url`.
    pub(crate) fn start(url: &str) -> std::io::Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            url: url.to_string(),
            slots: Mutex::new(Vec::new()),
            healthy: AtomicBool::new(false),
            tried: (Mutex::new(false), Condvar::new()),
        });
        let h = hub.clone();
        std::thread::Builder::new()
            .name("tend-listen".into())
            .spawn(move || h.run())?;
        Ok(hub)
    }

    /// A new subscription of `kind`, heard from now on.
    pub(crate) fn join(&self, kind: Kind) -> std::io::Result<Arc<Slot>> {
        let slot = Arc::new(Slot::new(kind)?);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        Ok(slot)
    }

    /// Waits (at most `limit`) until the first connection attempt is over,
    /// so that a subscriber that then reads the ledger misses nothing.
    pub(crate) fn wait_first(&self, limit: Duration) {
        let (done, cv) = &self.tried;
        let guard = done.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cv.wait_timeout_while(guard, limit, |tried| !*tried);
    }

    /// Whether the connection is up, LISTENing, and passed its last check.
    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn run(self: Arc<Self>) {
        let mut pause = FIRST_PAUSE;
        loop {
            match Listener::open(&self.url) {
                Ok(l) => {
                    self.healthy.store(true, Ordering::Release);
                    self.mark_tried();
                    // LISTENing again after a failure: what was committed
                    // meanwhile was not heard, so every subscriber looks.
                    self.wake_all();
                    pause = FIRST_PAUSE;
                    self.serve(l);
                    self.healthy.store(false, Ordering::Release);
                    self.wake_all();
                }
                Err(_) => self.mark_tried(),
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Hands on what `l` hears until it fails (an error, or a check that
    /// did not come back in time).
    fn serve(&self, mut l: Listener) {
        let mut next_check = Instant::now() + CHECK_EVERY;
        let mut pending: Option<(String, Instant)> = None;
        loop {
            let until = pending.as_ref().map_or(next_check, |p| p.1);
            let heard = match l.next(until.saturating_duration_since(Instant::now())) {
                Ok(h) => h,
                Err(_) => return,
            };
            match heard {
                Some(Heard::Transition { id, .. }) => self.deliver(Kind::Transitions, &id),
                Some(Heard::Kill { id, .. }) => self.deliver(Kind::Kills, &id),
                Some(Heard::Ping(t)) if pending.as_ref().is_some_and(|p| p.0 == t) => {
                    pending = None;
                    next_check = Instant::now() + CHECK_EVERY;
                }
                Some(Heard::Ping(_)) => {}
                None if pending.is_some() => return,
                None => {
                    let token = format!("{:x}", tend_ledger::now_ms());
                    if l.ping(&token).is_err() {
                        return;
                    }
                    pending = Some((token, Instant::now() + CHECK_WITHIN));
                }
            }
            if pending.as_ref().is_some_and(|p| Instant::now() >= p.1) {
                return;
            }
        }
    }

    fn deliver(&self, kind: Kind, id: &ExecutionId) {
        for s in self.live_slots() {
            if s.kind == kind {
                s.push(Some(id));
            }
        }
    }

    fn wake_all(&self) {
        for s in self.live_slots() {
            s.push(None);
        }
    }

    fn live_slots(&self) -> Vec<Arc<Slot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().filter_map(Weak::upgrade).collect()
    }

    fn mark_tried(&self) {
        let (done, cv) = &self.tried;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}
