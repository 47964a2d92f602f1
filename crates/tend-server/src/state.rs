use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tend_ledger::Ledger;
use tend_model::Execution;
use tokio::sync::broadcast;

use crate::{AllowedHosts, ApiError, Config, Error};

/// Shared by every handler and the watcher. Holds no ledger connection:
/// each blocking task opens its own (SQLite connections are cheap and not
/// shareable across threads), so a slow request never blocks another.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    listen: SocketAddr,
    allowed_hosts: AllowedHosts,
    transitions: broadcast::Sender<Arc<Execution>>,
    started: Instant,
    counters: Counters,
    stopping: tokio::sync::watch::Sender<bool>,
    alerts_wanted: tokio::sync::Notify,
    pool: crate::pool::Pool,
    lease: crate::lease::Lease,
    /// This home's agent id, read once.
    agent: String,
}

/// Counters of what this daemon process did (ledger-derived numbers are
/// computed from the ledger instead).
#[derive(Default)]
pub struct Counters {
    /// Launches through the API.
    pub launches: AtomicU64,
    /// Kill requests through the API.
    pub kill_requests: AtomicU64,
    /// Executions the daemon's reaper marked `lost`.
    pub reaped_lost: AtomicU64,
    /// Stray processes the daemon's reaper ended.
    pub reaped_stragglers: AtomicU64,
    /// Transitions streamed.
    pub transitions: AtomicU64,
    /// Alerts every configured webhook took.
    pub alerts_sent: AtomicU64,
    /// Alerts given up after the retry period.
    pub alerts_failed: AtomicU64,
}

impl AppState {
    /// Builds the state of a daemon listening on `listen` (the names it
    /// answers to derive from it); checks that the ledger opens and that
    /// the configured host names are host names.
    pub fn new(config: Config, listen: SocketAddr) -> Result<AppState, Error> {
        let allowed_hosts = AllowedHosts::new(listen, &config.allowed_hosts)?;
        config.home.ensure().map_err(|source| Error::Io {
            doing: "preparing tend's home",
            source,
        })?;
        let ledger = tend_ledger::open(&config.store)?;
        let lease = crate::lease::Lease::new(
            config.lease,
            ledger.shared(),
            config.run.kill_grace,
            ledger.ledger_id().to_string(),
        );
        drop(ledger);
        let agent = config
            .home
            .agent()
            .map_err(|source| Error::Io {
                doing: "reading the home's agent id",
                source,
            })?
            .id;
        let (transitions, _) = broadcast::channel(4096);
        let (stopping, _) = tokio::sync::watch::channel(false);
        Ok(AppState(Arc::new(Inner {
            config,
            listen,
            allowed_hosts,
            transitions,
            started: Instant::now(),
            counters: Counters::default(),
            stopping,
            alerts_wanted: tokio::sync::Notify::new(),
            pool: crate::pool::Pool::default(),
            lease,
            agent,
        })))
    }

    /// The agent's lease on a shared ledger (on SQLite, a lease that
    /// always lets work start).
    pub(crate) fn lease(&self) -> &crate::lease::Lease {
        &self.0.lease
    }

    /// Whether new work may start now; the 503 that says why not.
    pub fn may_start(&self) -> Result<(), ApiError> {
        self.0.lease.may_start().map_err(ApiError::unavailable)
    }

    /// Remembers (or forgets) a row of this home for the fence.
    pub fn track(&self, e: &Execution) {
        self.0.lease.track(&self.0.agent, e);
    }

    /// The address the API listens on.
    pub fn listen(&self) -> SocketAddr {
        self.0.listen
    }

    /// Whether [`AppState::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.0.stopping.borrow()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The API token; every request needs it.
    pub fn token(&self) -> &str {
        &self.0.config.token
    }

    /// The names a request's `Host` (and `Origin`) may give.
    pub fn allowed_hosts(&self) -> &AllowedHosts {
        &self.0.allowed_hosts
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// Seconds since the daemon started.
    pub fn uptime_s(&self) -> u64 {
        self.0.started.elapsed().as_secs()
    }

    /// A ledger connection: a fresh one on SQLite, a reused one on
    /// PostgreSQL ([`Pooled`](crate::Pooled)). Blocking: call it off the runtime's
    /// threads.
    pub fn ledger(&self) -> Result<crate::pool::Pooled<'_>, ApiError> {
        self.0
            .pool
            .get(&self.0.config.store)
            .map_err(ApiError::from)
    }

    /// Runs `f` with a ledger connection on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AppState, &dyn Ledger) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || {
            let l = s.ledger()?;
            f(&s, &*l)
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Tells long-lived responses (event streams, log follows, waits) to end,
    /// so that a graceful shutdown does not wait for clients forever.
    pub fn stop(&self) {
        let _ = self.0.stopping.send(true);
    }

    /// Resolves once [`AppState::stop`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.0.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Wakes the alert sender: something that is not a transition (a
    /// missed fire) may have queued an alert.
    pub fn want_alerts(&self) {
        self.0.alerts_wanted.notify_one();
    }

    /// Resolves at the next [`AppState::want_alerts`] (at once when one
    /// came since the last wait).
    pub async fn alerts_wanted(&self) {
        self.0.alerts_wanted.notified().await
    }

    /// A receiver of every transition from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Execution>> {
        self.0.transitions.subscribe()
    }

    /// Streams a transition to subscribers.
    pub fn publish(&self, e: Execution) {
        self.0.counters.transitions.fetch_add(1, Ordering::Relaxed);
        self.track(&e);
        let _ = self.0.transitions.send(Arc::new(e));
    }

    /// Startup recovery: reconcile the whole ledger and end stray processes
    /// of this ledger. Returns (executions marked lost, stragglers ended).
    pub fn recover(&self) -> Result<(usize, usize), Error> {
        let ledger = tend_ledger::open(&self.0.config.store)?;
        let lost = tend_supervisor::reconcile(&*ledger, &self.0.config.home)?;
        let strays = tend_supervisor::sweep_stragglers(
            &*ledger,
            &self.0.config.home,
            false,
            self.0.config.run.kill_grace,
        )?;
        self.note_reaped(lost.len(), strays.len());
        Ok((lost.len(), strays.len()))
    }

    /// Counts what a reaper pass did.
    pub fn note_reaped(&self, lost: usize, strays: usize) {
        self.0
            .counters
            .reaped_lost
            .fetch_add(lost as u64, Ordering::Relaxed);
        self.0
            .counters
            .reaped_stragglers
            .fetch_add(strays as u64, Ordering::Relaxed);
    }

    /// Records this daemon in `<home>/daemon.json` (identity and address),
    /// for `tend health` and `tend doctor`, which also ask the address
    /// whether it answers. Only the holder of the home's
    /// [`crate::DaemonLock`] writes or removes the file.
    pub fn write_daemon_file(&self) {
        let addr = self.0.listen;
        let me = std::process::id() as i32;
        let Ok(id) = tend_proc::identify(me) else {
            return;
        };
        let body = serde_json::json!({
            "pid": id.pid, "start_time": id.start_time, "boot_id": id.boot_id,
            "pidfd_ino": id.pidfd_ino, "listen": addr.to_string(),
            "started_by_tend": self.0.config.started_by_tend,
        });
        let path = self.0.config.home.root().join("daemon.json");
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, body.to_string()).is_ok() {
            let _ = std::fs::rename(tmp, path);
        }
    }

    /// Removes the daemon file at a graceful stop.
    pub fn remove_daemon_file(&self) {
        let _ = std::fs::remove_file(self.0.config.home.root().join("daemon.json"));
    }

    /// Rows of the ledger's live executions.
    pub fn live(&self) -> Result<Vec<Execution>, ApiError> {
        Ok(self.ledger()?.live()?)
    }
}
