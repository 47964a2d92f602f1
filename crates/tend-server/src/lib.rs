//! `tend serve`: the host's agent. It is a control plane only — every
//! execution it launches runs under its own supervisor (a `tend __supervise`
//! process), so stopping, crashing or upgrading the daemon never stops an
//! execution.
//!
//! What it does:
//! - serves the HTTP API under `/api/v1` ([`router`]), described by an
//!   OpenAPI document generated from the handlers and types
//!   (`/api/v1/openapi.json`), plus `/metrics` in Prometheus text;
//! - is the one daemon of its home ([`DaemonLock`]), and bounds every
//!   connection before anyone authenticates: a header timeout, a cap on
//!   open connections, a body timeout and size limit ([`Limits`]);
//! - refuses what a web page could send (a foreign `Host` or `Origin`, a
//!   body not declared JSON, a CORS preflight: [`AllowedHosts`]), then
//!   requires the token on every request;
//! - before it answers anything, reconciles the whole ledger and ends stray
//!   processes of this ledger ([`run`]);
//! - then watches: a subscription to the home's notifier (every transition,
//!   whoever made it: inotify on `notify/`, and LISTEN on a PostgreSQL
//!   ledger, see [`tend_supervisor::Notifier`]) and a pidfd on every live supervisor, so it
//!   reconciles the moment a supervisor dies and streams every transition to
//!   server-sent-event clients and long-poll waiters; a slow timer (every
//!   30 s) is only a backstop;
//! - on a shared (PostgreSQL) ledger, carries out the kill requests other
//!   hosts record for its agent: heard through LISTEN, swept when it
//!   starts and whenever its listener connected again;
//! - sends the ledger's alert outbox to the configured webhooks
//!   ([`alerts`]), retried with backoff, signed when a secret is set.
//!
//! What it does not do: hold any state that matters. Everything it reports
//! comes from the ledger, so a restarted daemon tells the same truth.
//!
//! ```no_run
//! # async fn demo(config: tend_server::Config) {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! tend_server::run(listener, config, std::future::pending()).await.unwrap();
//! # }
//! ```

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod alerts;
mod api;
mod auth;
mod connections;
mod dashboard;
mod error;
mod guard;
mod kills;
mod lease;
mod lock;
mod logs;
mod metrics;
mod pool;
mod readable;
mod scheduler;
mod state;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use api::router;
pub use error::ApiError;
pub use guard::AllowedHosts;
pub use lock::DaemonLock;
pub use pool::Pooled;
pub use state::AppState;

use tend_supervisor::Home;

/// Everything the daemon needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// The ledger's home (logs, notify files, token, daemon file).
    pub home: Home,
    /// The ledger.
    pub store: tend_ledger::Store,
    /// The `tend` executable that background supervisors run.
    pub exe: PathBuf,
    /// The API token. Every request needs it: there is no way to turn
    /// authentication off, and [`run`] refuses a token shorter than
    /// [`MIN_TOKEN_LEN`].
    pub token: String,
    /// Names besides the listen address that clients may reach the daemon
    /// by (`TEND_ALLOWED_HOSTS`), as `name` or `name:port`; see
    /// [`AllowedHosts`].
    pub allowed_hosts: Vec<String>,
    /// Bounds on what a client may hold open or send.
    pub limits: Limits,
    /// The defaults and maxima launches are resolved against (the same
    /// as `tend run`'s); its `kill_grace` also ends what the reaper finds.
    pub run: tend_model::run::Policy,
    /// How often the backstop reconcile runs.
    pub reconcile_every: Duration,
    /// The daemon's own prune, if it makes one (`TEND_PRUNE_EVERY`).
    pub prune: Option<PruneEvery>,
    /// Executions running longer than this count as long-running.
    pub long_running_after: Duration,
    /// Health is degraded when more than this many are long-running.
    pub long_running_alert: u64,
    /// Where alerts go, which, and how long they are retried.
    pub alerts: alerts::AlertConfig,
    /// The lease's interval and TTL (`TEND_LEASE_INTERVAL`,
    /// `TEND_LEASE_TTL`), used on a shared ledger only.
    pub lease: tend_supervisor::lease::LeaseTimes,
    /// Replace the daemon that serves the home now (`--replace`); one that
    /// tend started by itself is replaced either way.
    pub replace: bool,
    /// tend started this daemon itself for a launch on a shared ledger; the
    /// daemon file says so, and a later `tend serve` replaces it.
    pub started_by_tend: bool,
}

/// The daemon's periodic `tend prune`: how often, and with which age and
/// how many of each job it keeps.
#[derive(Clone, Debug)]
pub struct PruneEvery {
    /// The period (`TEND_PRUNE_EVERY`, 1h).
    pub every: Duration,
    /// Executions created longer ago than this go (`TEND_RETENTION`).
    pub older: Duration,
    /// The newest of each job that stay (`TEND_KEEP_LAST`).
    pub keep_last: u32,
}

/// Prunes once a period, as `tend prune` would, and logs what went: the
/// ledger stays the size its retention says without a cron line.
async fn prune_now_and_then(state: AppState) {
    let Some(p) = state.config().prune.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(p.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let p = p.clone();
        let done = state
            .blocking(move |_, l| {
                Ok(tend_supervisor::prune::prune(
                    l,
                    p.older,
                    p.keep_last,
                    false,
                    tend_supervisor::prune::Force::default(),
                )?)
            })
            .await;
        match done {
            Ok(r) if !r.executions.is_empty() => tracing::info!(
                executions = r.executions.len(),
                bytes = r.bytes,
                "pruned old executions"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = ?e, "the periodic prune failed; it tries again next period")
            }
        }
    }
}

/// What a client may hold open or send, so that nobody can tie the daemon
/// up before authenticating (issue 8).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest a client may take to send a request's headers; also how long
    /// an idle kept-alive connection stays open (`TEND_HEADER_TIMEOUT`).
    pub header_timeout: Duration,
    /// Longest a client may take to send a request's body
    /// (`TEND_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// Open connections at most; one more is answered 503 and closed
    /// (`TEND_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// Shortest API token accepted: 16 characters is already beyond guessing
/// over HTTP, and the daemon's own token has 64.
pub const MIN_TOKEN_LEN: usize = 16;

/// Environment variable that sets the API token instead of the token file.
pub const TOKEN_VAR: &str = "TEND_TOKEN";

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API token is empty, too short or unusable in a header, or its
    /// file is not private to this user.
    #[error("{0}")]
    Token(String),
    /// Another daemon already serves this home.
    #[error("{0}")]
    AlreadyRunning(String),
    /// A setting cannot be used (an allowed host, a limit).
    #[error("{0}")]
    Setting(String),
    /// The listen address is taken or not ours to use.
    #[error("cannot listen on {addr}: {}; choose another address with --listen or TEND_LISTEN (like --listen 127.0.0.1:7758)", plain(cause))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error (in the sentence, not a chained cause).
        cause: std::io::Error,
    },
    /// Serving failed.
    #[error("{doing}: {source}")]
    Io {
        /// What was being attempted.
        doing: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Startup recovery failed.
    #[error(transparent)]
    Supervisor(#[from] tend_supervisor::Error),
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] tend_ledger::Error),
}

/// Serves the API on `listener` until `shutdown` resolves. Takes the
/// home's daemon lock first (a second daemon on one home is refused),
/// then reconciles the ledger (dead supervisors → `lost`, stray marked
/// processes ended) before the first request is answered.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let lock = DaemonLock::acquire(&config.home)?;
    run_locked(listener, config, shutdown, lock).await
}

async fn run_locked(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    lock: DaemonLock,
) -> Result<(), Error> {
    check_token(&config.token, "the API token")?;
    check_limits(&config.limits)?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        doing: "reading the listen address",
        source,
    })?;
    let limits = config.limits.clone();
    // Opening a PostgreSQL ledger blocks (the synchronous driver runs a
    // runtime of its own, which cannot start inside this one).
    let state = tokio::task::spawn_blocking(move || AppState::new(config, addr))
        .await
        .expect("building the state does not panic")?;
    let recovered = {
        let s = state.clone();
        tokio::task::spawn_blocking(move || s.recover())
            .await
            .expect("the recovery task does not panic")?
    };
    tracing::info!(
        lost = recovered.0,
        stragglers = recovered.1,
        "startup recovery done"
    );
    // Stragglers were ended above; only now is the lease renewed, and no
    // work starts before it is.
    let conn = lease::first_renewal(&state).await;
    let fencer = lease::spawn(&state, conn);
    let watcher = tokio::spawn(watch::watch(state.clone()));
    let killer = tokio::spawn(kills::deliver_kills(state.clone()));
    let scheduler = tokio::spawn(scheduler::schedule(state.clone()));
    let pruner = tokio::spawn(prune_now_and_then(state.clone()));
    let alerter = tokio::spawn(alerts::send_alerts(state.clone()));
    state.write_daemon_file();
    tracing::info!(%addr, "listening");
    let stopper = state.clone();
    connections::serve(listener, router(state.clone()), &limits, async move {
        shutdown.await;
        stopper.stop();
    })
    .await;
    watcher.abort();
    killer.abort();
    if let Some(f) = fencer {
        f.abort();
    }
    scheduler.abort();
    pruner.abort();
    alerter.abort();
    // The file goes first, the lock last: a daemon that starts meanwhile
    // waits for neither and overwrites nothing of ours.
    state.remove_daemon_file();
    drop(lock);
    Ok(())
}

fn check_limits(l: &Limits) -> Result<(), Error> {
    if l.header_timeout.is_zero() || l.body_timeout.is_zero() || l.max_connections == 0 {
        return Err(Error::Setting(
            "the header timeout, the body timeout and the connection limit must all be more than 0"
                .into(),
        ));
    }
    Ok(())
}

/// Takes the home's daemon lock, binds `addr`, installs SIGTERM/SIGINT
/// handlers for a graceful stop, and runs the daemon on a small
/// multi-threaded runtime. This is `tend serve`. The lock comes before the
/// bind, so that a second daemon is told about the first rather than about
/// a busy port.
pub fn serve(addr: SocketAddr, config: Config) -> Result<(), Error> {
    let mut lock = DaemonLock::acquire_or_replace(&config.home, config.replace)?;
    if config.started_by_tend {
        lock.mark_started_by_tend()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            doing: "starting the runtime",
            source,
        })?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|cause| Error::Bind { addr, cause })?;
        introduce(listener.local_addr().unwrap_or(addr), &config);
        run_locked(listener, config, shutdown_signal(), lock).await
    })
}

/// `Address already in use`, without `(os error 98)`.
fn plain(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or_default().to_string()
}

/// What an operator needs on starting the daemon, on stderr before the
/// log: the dashboard's address (with the token after `#`, which no browser
/// sends to a server), where the API listens, where the token is, and a warning when the API
/// is reachable beyond this host over plain HTTP.
fn introduce(addr: SocketAddr, config: &Config) {
    eprintln!(
        "tend serve: the dashboard is at http://{addr}/#token={}",
        config.token
    );
    eprintln!(
        "tend serve: the API listens on http://{addr}/api/v1/ (OpenAPI: /api/v1/openapi.json)"
    );
    eprintln!(
        "tend serve: send the token in {} as Authorization: Bearer <token>",
        config.home.root().join("token").display()
    );
    if !addr.ip().is_loopback() {
        eprintln!(
            "tend serve: warning: {addr} is reachable from other hosts and the API is plain HTTP; put a TLS proxy in front (see docs/serve.md)"
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Reads the token: `TEND_TOKEN` if set, else `<home>/token`, created
/// with 32 random bytes (64 hex digits) and mode 0600 on first use. A token
/// that is set but empty, shorter than [`MIN_TOKEN_LEN`], or not printable
/// ASCII is an error, never a way to turn authentication off (issue 8); so
/// is a token file that is not a regular file of this user's that nobody
/// else can read or write.
pub fn load_token(home: &Home) -> Result<String, Error> {
    let path = home.root().join("token");
    if let Some(t) = std::env::var_os(TOKEN_VAR) {
        let t = t.to_string_lossy().into_owned();
        let hint = format!("unset {TOKEN_VAR} to use the token in {}", path.display());
        check_token(&t, TOKEN_VAR).map_err(|e| Error::Token(format!("{e} ({hint})")))?;
        return Ok(t);
    }
    let io = |source| Error::Io {
        doing: "reading or creating the API token file",
        source,
    };
    match tend_supervisor::open_small(&path) {
        Ok((meta, t)) => {
            check_token_file(&path, &meta)?;
            let t = String::from_utf8_lossy(&t).trim().to_string();
            let what = format!("the token in {}", path.display());
            check_token(&t, &what).map_err(|e| {
                Error::Token(format!(
                    "{e} (delete the file and tend serve makes a new one)"
                ))
            })?;
            return Ok(t);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    home.ensure().map_err(io)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    f.write_all(token.as_bytes()).map_err(io)?;
    Ok(token)
}

/// Refuses a token file that is not this user's alone: one that another
/// user owns, or that others can read or write, may be a token they know
/// (or will learn), and the daemon runs commands as whoever starts it.
fn check_token_file(path: &std::path::Path, meta: &std::fs::Metadata) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let path = path.display();
    if meta.uid() != me {
        return Err(Error::Token(format!(
            "the token file {path} belongs to user {} and not to you (user {me}), so another user may know it; delete it and tend serve makes a new one",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Token(format!(
            "the token file {path} can be read or changed by other users (mode {:04o}); run chmod 600 {path}, or delete it and tend serve makes a new one",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Refuses a token that is empty, short, or could not travel in a header.
fn check_token(token: &str, what: &str) -> Result<(), Error> {
    let n = token.chars().count();
    if n == 0 {
        return Err(Error::Token(format!(
            "{what} is empty: the API always needs a token of at least {MIN_TOKEN_LEN} characters"
        )));
    }
    if n < MIN_TOKEN_LEN {
        return Err(Error::Token(format!(
            "{what} has {n} characters: an API token needs at least {MIN_TOKEN_LEN}"
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Token(format!(
            "{what} has spaces or characters outside printable ASCII, which cannot be sent in a header"
        )));
    }
    Ok(())
}
