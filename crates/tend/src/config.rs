//! Settings: `config.toml`, overridden by `TEND_*` variables, overridden by
//! flags. Every setting has a variable so tests can change it per process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The resolved settings of one tend invocation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Folder of the default ledger, logs and exit files.
    pub home: PathBuf,
    /// Ledger location as given (`None`: `home/tend.db`).
    pub store: Option<String>,
    /// Default SIGTERM → SIGKILL grace.
    pub kill_grace: Duration,
    /// Timeout applied when `run` gives none.
    pub default_timeout: Option<Duration>,
    /// Longest timeout accepted.
    pub max_timeout: Duration,
    /// Size at which a log file is rotated.
    pub log_max_size: u64,
    /// Containment tier to insist on (`TEND_CONTAINMENT`), or the best.
    pub containment: Option<tend_model::Containment>,
    /// Where `tend serve` listens.
    pub listen: std::net::SocketAddr,
    /// Executions running longer than this are long-running.
    pub alert_long_running_after: Duration,
    /// Health is degraded with more long-running executions than this.
    pub alert_long_running_count: u64,
    /// How often the daemon's backstop reconcile runs.
    pub reconcile_every: Duration,
    /// Who may reach the daemon, and for how long (`tend serve` only).
    pub daemon: DaemonSettings,
}

/// The settings that bound what clients can do to `tend serve` (issue 8).
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Names besides its listen address that the daemon may be reached by
    /// (`TEND_ALLOWED_HOSTS`, comma-separated), as `name` or `name:port`.
    pub allowed_hosts: Vec<String>,
    /// Longest a client may take to send its request headers, and how long
    /// an idle connection stays open (`TEND_HEADER_TIMEOUT`, 10s).
    pub header_timeout: Duration,
    /// Longest a client may take to send a request body (`TEND_BODY_TIMEOUT`, 10s).
    pub body_timeout: Duration,
    /// Connections the daemon keeps open at most (`TEND_MAX_CONNECTIONS`, 256).
    pub max_connections: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    home: Option<PathBuf>,
    store: Option<String>,
    kill_grace: Option<String>,
    default_timeout: Option<String>,
    max_timeout: Option<String>,
    log_max_size: Option<String>,
    containment: Option<String>,
    listen: Option<String>,
    alert_long_running_after: Option<String>,
    alert_long_running_count: Option<u64>,
    reconcile_every: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    max_connections: Option<usize>,
}

impl Config {
    /// Reads the configuration file (if any) and the environment.
    pub fn load() -> Result<Config> {
        let path = config_path();
        let file: File = match path.as_deref().map(std::fs::read_to_string) {
            Some(Ok(text)) => toml::from_str(&text).with_context(|| {
                format!(
                    "the configuration file {} is not valid",
                    path.as_ref().expect("read above").display()
                )
            })?,
            Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("cannot read {}", path.expect("set above").display()))
            }
            _ => File::default(),
        };
        let daemon = DaemonSettings::load(&file)?;
        let home = match var("TEND_HOME").map(PathBuf::from).or(file.home) {
            Some(h) => h,
            None => default_home()?,
        };
        let log_max_size = match var("TEND_LOG_MAX_SIZE").or(file.log_max_size) {
            Some(s) => tend_model::parse_size(&s)
                .map_err(|e| crate::usage(format!("bad TEND_LOG_MAX_SIZE setting: {e}")))?,
            None => 64 << 20,
        };
        if log_max_size == 0 {
            return Err(crate::usage(
                "TEND_LOG_MAX_SIZE must be more than zero: a log needs room for its output",
            ));
        }
        check_busy_timeout()?;
        let kill_grace =
            duration("TEND_KILL_GRACE", &file.kill_grace)?.unwrap_or(Duration::from_secs(5));
        tend_model::limits::check_kill_grace(kill_grace)
            .map_err(|e| crate::usage(format!("TEND_KILL_GRACE: {e}")))?;
        let max_timeout =
            duration("TEND_MAX_TIMEOUT", &file.max_timeout)?.unwrap_or(Duration::from_secs(86_400));
        let default_timeout = duration("TEND_DEFAULT_TIMEOUT", &file.default_timeout)?;
        if default_timeout.is_some_and(|t| t > max_timeout) {
            bail!("the default timeout is longer than the maximum timeout; raise TEND_MAX_TIMEOUT or lower it");
        }
        Ok(Config {
            home,
            store: var("TEND_STORE").or(file.store),
            kill_grace,
            default_timeout,
            max_timeout,
            log_max_size,
            containment: var("TEND_CONTAINMENT")
                .or(file.containment)
                .map(|c| {
                    c.parse()
                        .map_err(|e| crate::usage(format!("bad TEND_CONTAINMENT setting: {e}")))
                })
                .transpose()?,
            listen: match var("TEND_LISTEN").or(file.listen) {
                Some(a) => a.parse().with_context(|| {
                    format!("bad listen address '{a}': write it like 127.0.0.1:7757")
                })?,
                None => std::net::SocketAddr::from(([127, 0, 0, 1], 7757)),
            },
            alert_long_running_after: duration(
                "TEND_ALERT_LONG_RUNNING_AFTER",
                &file.alert_long_running_after,
            )?
            .unwrap_or(Duration::from_secs(3600)),
            alert_long_running_count: match var("TEND_ALERT_LONG_RUNNING_COUNT") {
                Some(v) => v
                    .parse()
                    .context("bad TEND_ALERT_LONG_RUNNING_COUNT: give a whole number")?,
                None => file.alert_long_running_count.unwrap_or(5),
            },
            reconcile_every: duration("TEND_RECONCILE_EVERY", &file.reconcile_every)?
                .unwrap_or(Duration::from_secs(30)),
            daemon,
        })
    }

    /// The ledger to open, from `--store`/`TEND_STORE` or the home.
    /// The defaults and maxima that runs are resolved against, by `tend
    /// run` and by the daemon alike.
    pub fn policy(&self) -> Result<tend_model::run::Policy> {
        Ok(tend_model::run::Policy {
            max_timeout: self.max_timeout,
            default_timeout: self.default_timeout,
            kill_grace: self.kill_grace,
            log_max_bytes: self.log_max_size,
            containment: self.containment,
            store: Some(self.store()?.to_string()),
        })
    }

    pub fn store(&self) -> Result<tend_ledger::Store> {
        match self.store.as_deref() {
            None => Ok(tend_ledger::Store::Sqlite(std::path::absolute(
                self.home.join("tend.db"),
            )?)),
            Some(s) => tend_ledger::Store::parse(s).map_err(|e| anyhow::anyhow!(e)),
        }
    }
}

impl DaemonSettings {
    /// From the environment, else the configuration file.
    fn load(file: &File) -> Result<DaemonSettings> {
        let positive = |name: &str, from_file: &Option<String>| -> Result<Duration> {
            let d = duration(name, from_file)?.unwrap_or(Duration::from_secs(10));
            if d.is_zero() {
                bail!("bad {name} setting: it must be more than 0");
            }
            Ok(d)
        };
        let max_connections = match var("TEND_MAX_CONNECTIONS") {
            Some(v) => v
                .parse()
                .context("bad TEND_MAX_CONNECTIONS: give a whole number")?,
            None => file.max_connections.unwrap_or(256),
        };
        if max_connections == 0 {
            bail!("bad TEND_MAX_CONNECTIONS setting: it must be at least 1");
        }
        let allowed_hosts = match var("TEND_ALLOWED_HOSTS") {
            Some(v) => v.split(',').map(|h| h.trim().to_string()).collect(),
            None => file.allowed_hosts.clone().unwrap_or_default(),
        };
        Ok(DaemonSettings {
            allowed_hosts: allowed_hosts
                .into_iter()
                .filter(|h| !h.is_empty())
                .collect(),
            header_timeout: positive("TEND_HEADER_TIMEOUT", &file.header_timeout)?,
            body_timeout: positive("TEND_BODY_TIMEOUT", &file.body_timeout)?,
            max_connections,
        })
    }
}

/// Longest `TEND_SQLITE_BUSY_TIMEOUT` accepted, in milliseconds (a day).
const MAX_BUSY_TIMEOUT_MS: u64 = 86_400_000;

/// `TEND_SQLITE_BUSY_TIMEOUT` is read by the ledger itself (which falls
/// back to 30 s on a value it cannot use); a value it cannot use is the
/// user's mistake, said here at the edge.
fn check_busy_timeout() -> Result<()> {
    let name = "TEND_SQLITE_BUSY_TIMEOUT";
    match var(name).map(|v| v.parse::<u64>()) {
        None | Some(Ok(0..=MAX_BUSY_TIMEOUT_MS)) => Ok(()),
        Some(_) => Err(crate::usage(format!(
            "bad {name} setting: give a whole number of milliseconds up to {MAX_BUSY_TIMEOUT_MS} (a day), like 30000"
        ))),
    }
}

/// A `TEND_*` variable; set but empty counts as unset.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A duration from the variable `name`, else from the file.
fn duration(name: &str, from_file: &Option<String>) -> Result<Option<Duration>> {
    // A setting that cannot be used is the user's mistake: exit 2.
    match var(name).or_else(|| from_file.clone()) {
        Some(s) => {
            Ok(Some(tend_model::parse_duration(&s).map_err(|e| {
                crate::usage(format!("bad {name} setting: {e}"))
            })?))
        }
        None => Ok(None),
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TEND_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tend").join("config.toml"))
}

fn default_home() -> Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state"))
        });
    match state {
        Some(s) => Ok(s.join("tend")),
        None => bail!("cannot find a home for the ledger: set TEND_HOME (or HOME)"),
    }
}
