//! `tend serve`: the host's agent. It is a control plane only — every
//! execution it launches runs under its own supervisor (a `tend __supervise`
//! process), so stopping, crashing or upgrading the daemon never stops an
//! execution.
//!
//! What it does:
//! - serves the HTTP API under `/api/v1` ([`router`]), described by an
//!   OpenAPI document generated from the handlers and types
//!   (`/api/v1/openapi.json`), plus `/metrics` in Prometheus text;
//! - before it answers anything, reconciles the whole ledger and ends stray
//!   processes of this ledger ([`run`]);
//! - then watches: inotify on the ledger's `notify/` folder (every
//!   transition, whoever made it) and a pidfd on every live supervisor, so it
//!   reconciles the moment a supervisor dies and streams every transition to
//!   server-sent-event clients and long-poll waiters; a slow timer (every
//!   30 s) is only a backstop.
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

mod api;
mod auth;
mod error;
mod logs;
mod metrics;
mod openapi;
mod state;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use api::router;
pub use error::ApiError;
pub use state::AppState;

use tend_supervisor::Home;

/// Everything the daemon needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// The ledger's home (logs, notify files, token, daemon file).
    pub home: Home,
    /// The SQLite ledger file.
    pub db: PathBuf,
    /// The `tend` executable that background supervisors run.
    pub exe: PathBuf,
    /// The API token; `None` turns authentication off (refused unless the
    /// address is loopback).
    pub token: Option<String>,
    /// Default SIGTERM → SIGKILL grace for launches.
    pub kill_grace: Duration,
    /// Longest timeout a launch may ask for.
    pub max_timeout: Duration,
    /// Size at which log files rotate.
    pub log_max_size: u64,
    /// Containment tier to insist on, if any.
    pub containment: Option<String>,
    /// How often the backstop reconcile runs.
    pub reconcile_every: Duration,
    /// Executions running longer than this count as long-running.
    pub long_running_after: Duration,
    /// Health is degraded when more than this many are long-running.
    pub long_running_alert: u64,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address is not loopback and no token is set.
    #[error("refusing to listen on {0} without an API token: set TEND_TOKEN, or listen on a loopback address")]
    NoToken(SocketAddr),
    /// Binding or serving failed.
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

/// Serves the API on `listener` until `shutdown` resolves. Reconciles the
/// ledger (dead supervisors → `lost`, stray marked processes ended) before
/// the first request is answered.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(|source| Error::Io {
        doing: "reading the listen address",
        source,
    })?;
    if config.token.is_none() && !addr.ip().is_loopback() {
        return Err(Error::NoToken(addr));
    }
    let state = AppState::new(config)?;
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
    let watcher = tokio::spawn(watch::watch(state.clone()));
    state.write_daemon_file(addr);
    tracing::info!(%addr, "listening");
    let stopper = state.clone();
    let served = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopper.stop();
        })
        .await
        .map_err(|source| Error::Io {
            doing: "serving HTTP",
            source,
        });
    watcher.abort();
    state.remove_daemon_file();
    served
}

/// Binds `addr`, installs SIGTERM/SIGINT handlers for a graceful stop, and
/// runs the daemon on a small multi-threaded runtime. This is `tend serve`.
pub fn serve(addr: SocketAddr, config: Config) -> Result<(), Error> {
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
            .map_err(|source| Error::Io {
                doing: "binding the listen address",
                source,
            })?;
        run(listener, config, shutdown_signal()).await
    })
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

/// Registers an owned descriptor (an inotify fd or a pidfd) with the tokio
/// reactor for readability.
pub(crate) fn readable_fd<T: std::os::fd::AsRawFd>(
    fd: T,
) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // The safe constructor was deprecated in favour of an unsafe one whose
    // contract is that the fd stays open and unchanged while registered —
    // which holds here: `T` owns its fd and never replaces it, and this
    // crate forbids unsafe code.
    #[allow(deprecated)]
    tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
}

/// Reads the token: `TEND_TOKEN` if set (an empty value turns
/// authentication off), else `<home>/token`, created with 32 random bytes
/// and mode 0600 on first use.
pub fn load_token(home: &Home) -> std::io::Result<Option<String>> {
    if let Ok(t) = std::env::var("TEND_TOKEN") {
        return Ok((!t.is_empty()).then_some(t));
    }
    let path = home.root().join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_string())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    Ok(Some(token))
}
