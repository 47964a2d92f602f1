//! Settings: `config.toml`, overridden by `TEND_*` variables, overridden by
//! flags. Every setting has a variable so tests can change it per process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

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
    /// `tend prune`'s default age (`TEND_RETENTION`, 7d).
    pub retention: std::time::Duration,
    /// Executions of each job that `tend prune` keeps whatever their age
    /// (`TEND_KEEP_LAST`, 10).
    pub keep_last: u32,
    /// How often `tend serve` prunes on its own (`TEND_PRUNE_EVERY`, 1h).
    pub prune_every: std::time::Duration,
    /// The lease's interval and TTL on a shared ledger
    /// (`TEND_LEASE_INTERVAL`, 5s; `TEND_LEASE_TTL`, 20s).
    pub lease: tend_supervisor::lease::LeaseTimes,
    /// The alert settings as written; checked by the commands that use
    /// them (`serve`, `alert test`, `doctor`), so that a bad webhook URL
    /// never stops a `tend run`.
    pub alerts: AlertSettings,
}

/// `TEND_ALERT_WEBHOOKS`, `TEND_ALERTS`, `TEND_ALERT_SECRET` and
/// `TEND_ALERT_RETRY_FOR` as written (the long-running threshold is
/// `alert_long_running_after` and `_count`, which health uses too).
#[derive(Clone, Default)]
pub struct AlertSettings {
    webhooks: Option<Setting>,
    kinds: Option<Setting>,
    secret: Option<Setting>,
    retry_for: Option<Setting>,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertSettings(…)")
    }
}

impl AlertSettings {
    fn load(src: &Sources) -> AlertSettings {
        AlertSettings {
            webhooks: src.get("alert_webhooks"),
            kinds: src.get("alerts"),
            secret: src.get("alert_secret"),
            retry_for: src.get("alert_retry_for"),
        }
    }

    /// Each webhook as written, checked on its own (for `tend doctor`).
    pub fn webhooks(&self) -> Vec<(String, Result<tend_server::alerts::Webhook, String>)> {
        let Some(s) = &self.webhooks else {
            return Vec::new();
        };
        s.value
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| (w.to_string(), tend_server::alerts::Webhook::parse(w)))
            .collect()
    }

    /// The checked settings; a bad one is one sentence naming where it was
    /// written (exit 2).
    pub fn resolve(&self) -> Result<tend_server::alerts::AlertConfig> {
        let mut c = tend_server::alerts::AlertConfig::default();
        for (_, w) in self.webhooks() {
            let w = w.map_err(|e| self.webhooks.as_ref().expect("listed").bad(e))?;
            c.webhooks.push(w);
        }
        if let Some(s) = &self.kinds {
            c.kinds = s
                .value
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| k.parse().map_err(|e| s.bad(e)))
                .collect::<Result<_>>()?;
        }
        if let Some(s) = &self.secret {
            c.secret = Some(tend_server::alerts::Secret::parse(&s.value).map_err(|e| s.bad(e))?);
        }
        if let Some(s) = &self.retry_for {
            c.retry_for = tend_model::parse_duration(&s.value).map_err(|e| s.bad(e))?;
        }
        Ok(c)
    }
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

/// Every key `config.toml` may hold, and the variable that overrides it.
const KEYS: &[(&str, &str)] = &[
    ("home", "TEND_HOME"),
    ("store", "TEND_STORE"),
    ("kill_grace", "TEND_KILL_GRACE"),
    ("default_timeout", "TEND_DEFAULT_TIMEOUT"),
    ("max_timeout", "TEND_MAX_TIMEOUT"),
    ("log_max_size", "TEND_LOG_MAX_SIZE"),
    ("containment", "TEND_CONTAINMENT"),
    ("listen", "TEND_LISTEN"),
    ("alert_long_running_after", "TEND_ALERT_LONG_RUNNING_AFTER"),
    ("alert_long_running_count", "TEND_ALERT_LONG_RUNNING_COUNT"),
    ("reconcile_every", "TEND_RECONCILE_EVERY"),
    ("lease_interval", "TEND_LEASE_INTERVAL"),
    ("lease_ttl", "TEND_LEASE_TTL"),
    ("allowed_hosts", "TEND_ALLOWED_HOSTS"),
    ("header_timeout", "TEND_HEADER_TIMEOUT"),
    ("body_timeout", "TEND_BODY_TIMEOUT"),
    ("max_connections", "TEND_MAX_CONNECTIONS"),
    ("retention", "TEND_RETENTION"),
    ("keep_last", "TEND_KEEP_LAST"),
    ("prune_every", "TEND_PRUNE_EVERY"),
    ("alert_webhooks", "TEND_ALERT_WEBHOOKS"),
    ("alerts", "TEND_ALERTS"),
    ("alert_secret", "TEND_ALERT_SECRET"),
    ("alert_retry_for", "TEND_ALERT_RETRY_FOR"),
];

/// One setting's value, and where it came from, so that a bad value is
/// reported where the user wrote it: `TEND_KILL_GRACE`, or `kill_grace in
/// ~/.config/tend/config.toml`.
#[derive(Clone)]
struct Setting {
    value: String,
    from: String,
}

impl Setting {
    /// The one sentence for a value that cannot be used (exit 2).
    fn bad(&self, why: impl std::fmt::Display) -> anyhow::Error {
        crate::usage(format!("bad {}: {why}", self.from))
    }
}

/// The configuration file (if any) and the environment: a variable
/// overrides the file's key.
struct Sources {
    table: toml::Table,
    path: Option<PathBuf>,
}

impl Sources {
    fn read() -> Result<Sources> {
        let (path, must_exist) = config_path();
        let Some(path) = path else {
            return Ok(Sources {
                table: toml::Table::new(),
                path: None,
            });
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Sources {
                    table: toml::Table::new(),
                    path: None,
                })
            }
            Err(e) => {
                return Err(crate::usage(format!(
                    "cannot read the configuration file {} (TEND_CONFIG): {}",
                    path.display(),
                    e.to_string().split(" (os error").next().unwrap_or_default()
                )))
            }
        };
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            let why = e.message().trim_end_matches('.').to_string();
            crate::usage(format!(
                "the configuration file {} is not valid TOML: {why}",
                path.display()
            ))
        })?;
        if let Some(k) = table.keys().find(|k| !KEYS.iter().any(|(key, _)| key == k)) {
            return Err(crate::usage(format!(
                "the configuration file {} has an unknown key '{k}'; known keys: {}",
                path.display(),
                KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(Sources {
            table,
            path: Some(path),
        })
    }

    /// The value of `key`: its variable if set, else the file's.
    fn get(&self, key: &str) -> Option<Setting> {
        let env = KEYS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)?;
        if let Some(value) = var(env) {
            return Some(Setting {
                value,
                from: format!("{env} setting"),
            });
        }
        let from = || match &self.path {
            Some(p) => format!("setting '{key}' in {}", p.display()),
            None => format!("setting '{key}'"),
        };
        let value = match self.table.get(key)? {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map_or_else(|| format!("<{}>", v.type_str()), str::to_string)
                })
                .collect::<Vec<_>>()
                .join(","),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => format!("<a {}>", other.type_str()),
        };
        Some(Setting {
            value,
            from: from(),
        })
    }

    /// A duration setting.
    fn duration(&self, key: &str) -> Result<Option<Duration>> {
        self.get(key)
            .map(|s| tend_model::parse_duration(&s.value).map_err(|e| s.bad(e)))
            .transpose()
    }

    /// A whole-number setting.
    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>> {
        self.get(key)
            .map(|s| {
                s.value
                    .trim()
                    .parse()
                    .map_err(|_| s.bad(format!("'{}' is not a whole number", s.value)))
            })
            .transpose()
    }

    /// A path setting, `~` expanded and made absolute once, so that every
    /// directory a command is started from means the same home.
    fn path(&self, key: &str) -> Result<Option<PathBuf>> {
        self.get(key)
            .map(|s| {
                let p = expand_tilde(&s.value).map_err(|e| s.bad(e))?;
                std::path::absolute(&p).map_err(|e| s.bad(e))
            })
            .transpose()
    }
}

/// `~` and `~/…` as the shell means them (the user's `HOME`); other text
/// as it is. `~user` is not expanded: say so rather than guess.
pub fn expand_tilde(text: &str) -> Result<PathBuf, String> {
    let rest = match text.strip_prefix('~') {
        None => return Ok(PathBuf::from(text)),
        Some(r) if r.is_empty() || r.starts_with('/') => r.trim_start_matches('/'),
        Some(_) => return Err(format!("'{text}': only ~ and ~/ are expanded, not ~user")),
    };
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(rest)),
        None => Err(format!("'{text}' starts with ~ but HOME is not set")),
    }
}

impl Config {
    /// Reads the configuration file (if any) and the environment.
    pub fn load() -> Result<Config> {
        let src = Sources::read()?;
        let daemon = DaemonSettings::load(&src)?;
        let home = match src.path("home")? {
            Some(h) => h,
            None => default_home()?,
        };
        let log_max_size = match src.get("log_max_size") {
            Some(s) => tend_model::parse_size(&s.value).map_err(|e| s.bad(e))?,
            None => 64 << 20,
        };
        if log_max_size == 0 {
            let from = src.get("log_max_size").map_or(String::new(), |s| s.from);
            return Err(crate::usage(format!(
                "bad {from}: it must be more than zero, a log needs room for its output"
            )));
        }
        check_busy_timeout()?;
        let kill_grace = src
            .duration("kill_grace")?
            .unwrap_or(Duration::from_secs(5));
        if let Err(e) = tend_model::limits::check_kill_grace(kill_grace) {
            return Err(src.get("kill_grace").expect("set when too long").bad(e));
        }
        let max_timeout = src
            .duration("max_timeout")?
            .unwrap_or(Duration::from_secs(86_400));
        let default_timeout = src.duration("default_timeout")?;
        if default_timeout.is_some_and(|t| t > max_timeout) {
            return Err(crate::usage(
                "the default timeout is longer than the maximum timeout; raise TEND_MAX_TIMEOUT or lower TEND_DEFAULT_TIMEOUT",
            ));
        }
        let store = match src.get("store") {
            Some(s) if !s.value.contains(':') => Some(
                expand_tilde(&s.value)
                    .map_err(|e| s.bad(e))?
                    .to_string_lossy()
                    .into_owned(),
            ),
            other => other.map(|s| s.value),
        };
        Ok(Config {
            home,
            store,
            kill_grace,
            default_timeout,
            max_timeout,
            log_max_size,
            containment: src
                .get("containment")
                .map(|s| s.value.parse().map_err(|e| s.bad(e)))
                .transpose()?,
            listen: match src.get("listen") {
                Some(s) => parse_listen(&s.value).map_err(|e| s.bad(e))?,
                None => std::net::SocketAddr::from(([127, 0, 0, 1], 7757)),
            },
            alert_long_running_after: src
                .duration("alert_long_running_after")?
                .unwrap_or(Duration::from_secs(3600)),
            alert_long_running_count: src.number("alert_long_running_count")?.unwrap_or(5),
            reconcile_every: src
                .duration("reconcile_every")?
                .unwrap_or(Duration::from_secs(30)),
            daemon,
            retention: src
                .duration("retention")?
                .unwrap_or(Duration::from_secs(7 * 86_400)),
            keep_last: src.number("keep_last")?.unwrap_or(10),
            prune_every: prune_every(&src)?,
            lease: lease_times(&src)?,
            alerts: AlertSettings::load(&src),
        })
    }

    /// Puts the resolved lease settings into this process's environment,
    /// so that every supervisor and daemon it starts (which read them from
    /// there) agrees with it, whether they came from the file or a variable.
    pub fn export_lease(&self) {
        use tend_supervisor::lease::{INTERVAL_VAR, TTL_VAR};
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        std::env::set_var(INTERVAL_VAR, ms(self.lease.interval));
        std::env::set_var(TTL_VAR, ms(self.lease.ttl));
    }

    /// The defaults and maxima that runs are resolved against, by `tend
    /// run` and by the daemon alike.
    pub fn policy(&self) -> Result<tend_model::run::Policy> {
        Ok(tend_model::run::Policy {
            max_timeout: self.max_timeout,
            default_timeout: self.default_timeout,
            kill_grace: self.kill_grace,
            log_max_bytes: self.log_max_size,
            containment: self.containment,
            // What commands see as TEND_STORE: never the password.
            store: Some(self.store()?.without_password()),
        })
    }

    /// The ledger to open, from `--store`/`TEND_STORE` or the home.
    pub fn store(&self) -> Result<tend_ledger::Store> {
        match self.store.as_deref() {
            None => Ok(tend_ledger::Store::Sqlite(std::path::absolute(
                self.home.join("tend.db"),
            )?)),
            Some(s) => tend_ledger::Store::parse(s).map_err(crate::usage),
        }
    }
}

/// The lease's interval and TTL: 5s and 20s unless set, the TTL at least
/// twice the interval.
fn lease_times(src: &Sources) -> Result<tend_supervisor::lease::LeaseTimes> {
    let d = tend_supervisor::lease::LeaseTimes::default();
    let interval = src.duration("lease_interval")?.unwrap_or(d.interval);
    let ttl = src.duration("lease_ttl")?.unwrap_or(d.ttl);
    tend_supervisor::lease::LeaseTimes::new(interval, ttl).map_err(crate::usage)
}

/// How often `tend serve` prunes: more than zero, 1h unless set.
fn prune_every(src: &Sources) -> Result<Duration> {
    match src.duration("prune_every")? {
        Some(d) if d.is_zero() => Err(src
            .get("prune_every")
            .expect("zero is set")
            .bad("it must be more than 0")),
        Some(d) => Ok(d),
        None => Ok(Duration::from_secs(3600)),
    }
}

/// A listen address as people write it: `127.0.0.1:7757`, `localhost:7762`
/// (resolved, loopback first), or a bare port `7763` (loopback).
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let t = text.trim();
    if let Ok(port) = t.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = t.parse() {
        return Ok(a);
    }
    let why = || {
        format!("'{t}' is not an address to listen on: write it like 127.0.0.1:7757, localhost:7757 or 7757")
    };
    if !t.contains(':') {
        return Err(why());
    }
    let mut addrs: Vec<_> = t.to_socket_addrs().map_err(|_| why())?.collect();
    addrs.sort_by_key(|a| !a.ip().is_loopback());
    addrs.into_iter().next().ok_or_else(why)
}

impl DaemonSettings {
    /// From the environment, else the configuration file.
    fn load(src: &Sources) -> Result<DaemonSettings> {
        let positive = |key: &str| -> Result<Duration> {
            let d = src.duration(key)?.unwrap_or(Duration::from_secs(10));
            if d.is_zero() {
                return Err(src
                    .get(key)
                    .expect("zero is set")
                    .bad("it must be more than 0"));
            }
            Ok(d)
        };
        let max_connections = src.number("max_connections")?.unwrap_or(256);
        if max_connections == 0 {
            return Err(src
                .get("max_connections")
                .expect("zero is set")
                .bad("it must be at least 1"));
        }
        let allowed_hosts = src
            .get("allowed_hosts")
            .map(|s| s.value)
            .unwrap_or_default();
        Ok(DaemonSettings {
            allowed_hosts: allowed_hosts
                .split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            header_timeout: positive("header_timeout")?,
            body_timeout: positive("body_timeout")?,
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

/// The configuration file: `TEND_CONFIG` (which must then exist), else
/// `$XDG_CONFIG_HOME/tend/config.toml` or `~/.config/tend/config.toml` (if
/// it exists).
fn config_path() -> (Option<PathBuf>, bool) {
    if let Some(p) = std::env::var_os("TEND_CONFIG").filter(|p| !p.is_empty()) {
        let p = expand_tilde(&p.to_string_lossy()).unwrap_or_else(|_| PathBuf::from(p));
        return (Some(p), true);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    (base.map(|b| b.join("tend").join("config.toml")), false)
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
