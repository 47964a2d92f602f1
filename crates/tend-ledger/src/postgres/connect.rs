//! Where a PostgreSQL ledger is and how to reach it, as libpq users
//! expect: a `postgres://` or `postgresql://` URL, with the `PG*`
//! environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
//! `PGDATABASE`, `PGSSLMODE`, `PGCONNECT_TIMEOUT`, `PGAPPNAME`) for what the
//! URL leaves out, and libpq's defaults after that.
//!
//! Host names are resolved here, on the calling thread, and handed to the
//! driver as addresses: the driver would otherwise resolve them on a tokio
//! blocking-pool thread, and a supervisor is a single-threaded process
//! that forks.

use std::net::ToSocketAddrs;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::Config;

use super::client::Fail;

/// How long a connection attempt may take when neither the URL nor
/// `PGCONNECT_TIMEOUT` says: libpq waits forever, which would hang a
/// supervisor on an unreachable host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed PostgreSQL store: the driver's settings and the URL as it may
/// be shown (without its password).
#[derive(Clone)]
pub(crate) struct Target {
    config: Config,
    shown: String,
}

impl Target {
    /// Parses `url`, filling what it leaves out from `PG*` variables. The
    /// error is one sentence that shows the URL without its password.
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let shown = redact(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "'{shown}' is not a PostgreSQL URL; write postgres://user@host:port/database"
            ));
        }
        let (rest, sslmode) = take_param(url, "sslmode");
        let mut config: Config = rest
            .parse()
            .map_err(|e| format!("'{shown}' is not a usable PostgreSQL URL: {e}"))?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sslmode = sslmode.or_else(|| env("PGSSLMODE"));
        config.ssl_mode(ssl_mode(sslmode.as_deref(), &shown)?);
        fill_from_env(&mut config, env)?;
        Ok(Target { config, shown })
    }

    /// The URL without its password, for messages and for anything a
    /// launched command may see.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens a connection. Host names are resolved on this thread.
    pub(crate) fn connect(&self) -> Result<postgres::Client, Fail> {
        let config = self
            .resolved()
            .map_err(|e| Fail::Unreachable(format!("cannot resolve its host name: {e}")))?;
        config.connect(postgres::NoTls).map_err(Fail::Pg)
    }

    /// Like [`Target::connect`], with TCP keepalive probes after `idle`
    /// without traffic (then every `idle / 2`, three times): a connection
    /// that only waits for notifications sends nothing, so a peer or
    /// middlebox that vanished is noticed only this way.
    pub(crate) fn connect_keepalive(&self, idle: Duration) -> Result<postgres::Client, Fail> {
        let mut config = self
            .resolved()
            .map_err(|e| Fail::Unreachable(format!("cannot resolve its host name: {e}")))?;
        config
            .keepalives(true)
            .keepalives_idle(idle)
            .keepalives_interval(idle / 2)
            .keepalives_retries(3);
        config.connect(postgres::NoTls).map_err(Fail::Pg)
    }

    /// The host names resolved to addresses, as `(host, hostaddr)` pairs.
    fn resolved(&self) -> std::io::Result<Config> {
        let ports = self.config.get_ports();
        let mut c = copy_settings(&self.config);
        for (i, host) in self.config.get_hosts().iter().enumerate() {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => {
                    for addr in (name.as_str(), port).to_socket_addrs()? {
                        c.host(name).hostaddr(addr.ip()).port(port);
                    }
                }
                Host::Unix(dir) => {
                    c.host_path(dir).port(port);
                }
            }
        }
        Ok(c)
    }
}

/// The driver's settings other than the hosts, addresses and ports.
fn copy_settings(from: &Config) -> Config {
    let mut c = Config::new();
    if let Some(u) = from.get_user() {
        c.user(u);
    }
    if let Some(p) = from.get_password() {
        c.password(p);
    }
    if let Some(d) = from.get_dbname() {
        c.dbname(d);
    }
    if let Some(o) = from.get_options() {
        c.options(o);
    }
    if let Some(a) = from.get_application_name() {
        c.application_name(a);
    }
    if let Some(t) = from.get_connect_timeout() {
        c.connect_timeout(*t);
    }
    c.ssl_mode(from.get_ssl_mode())
        .keepalives(from.get_keepalives())
        .keepalives_idle(from.get_keepalives_idle())
        .target_session_attrs(from.get_target_session_attrs())
        .channel_binding(from.get_channel_binding());
    c
}

/// libpq's `sslmode`, as far as this build goes: it speaks without TLS, so
/// `disable`, `allow` and `prefer` connect in plain text and a mode that
/// demands TLS is refused, in one sentence, before anything is sent.
fn ssl_mode(mode: Option<&str>, shown: &str) -> Result<SslMode, String> {
    match mode.unwrap_or("prefer") {
        "disable" => Ok(SslMode::Disable),
        "allow" | "prefer" => Ok(SslMode::Prefer),
        m @ ("require" | "verify-ca" | "verify-full") => Err(format!(
            "'{shown}' asks for sslmode={m}, but this build of tend speaks to PostgreSQL without TLS; \
             use sslmode=disable or prefer (through a TLS tunnel where the network is not trusted)"
        )),
        m => Err(format!(
            "'{shown}' has sslmode={m}; give disable, allow, prefer, require, verify-ca or verify-full"
        )),
    }
}

/// What the URL left out, from the `PG*` variables, then libpq's defaults:
/// the local socket folder, port 5432, the user's login name, a database
/// named after the user.
fn fill_from_env(c: &mut Config, env: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    if c.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(default_host);
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            if h.starts_with('/') {
                c.host_path(h);
            } else {
                c.host(h);
            }
        }
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            let port = p
                .parse()
                .map_err(|_| format!("PGPORT={p} is not a port number"))?;
            c.port(port);
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(login_name)
            .ok_or("no PostgreSQL user: put one in the URL or set PGUSER")?;
        c.user(&user);
    }
    if c.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            c.dbname(&d);
        }
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD").or_else(|| from_pgpass(c, &env)) {
            c.password(p);
        }
    }
    if c.get_connect_timeout().is_none() {
        let secs = env("PGCONNECT_TIMEOUT").and_then(|s| s.parse::<u64>().ok());
        c.connect_timeout(secs.map_or(CONNECT_TIMEOUT, |s| Duration::from_secs(s.max(2))));
    }
    if c.get_application_name().is_none() {
        c.application_name(&env("PGAPPNAME").unwrap_or_else(|| "tend".into()));
    }
    Ok(())
}

/// The password file's password for the first host of `c`.
fn from_pgpass(c: &Config, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let host = match c.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        Host::Unix(p) => p.display().to_string(),
    };
    let user = c.get_user()?;
    let wanted = super::pgpass::Wanted {
        host: &host,
        port: c.get_ports().first().copied().unwrap_or(5432),
        database: c.get_dbname().unwrap_or(user),
        user,
    };
    super::pgpass::lookup(super::pgpass::default_file(env), &wanted)
}

/// libpq's default host: the local socket folder where there is one.
fn default_host() -> String {
    if std::path::Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "localhost".into()
    }
}

/// The effective user's login name, as libpq takes it (from the password
/// database), without calling into libc.
fn login_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == euid).then(|| f[0].to_string())
    })
}

/// `url` without the query parameter `name`, and that parameter's value.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| match p.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), value)
    } else {
        (format!("{base}?{}", kept.join("&")), value)
    }
}

/// `url` with its password left out, wherever it was written: in the user
/// part (`user:secret@`) or as a `password=` parameter. What remains still
/// opens the same store when the password comes from `PGPASSWORD`.
pub(crate) fn redact(url: &str) -> String {
    let (url, _) = take_param(url, "password");
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{hosts}{tail}")
        }
        None => url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        for (url, shown) in [
            (
                "postgres://tend:s3cr%40t@db:5432/x",
                "postgres://tend@db:5432/x",
            ),
            ("postgresql://tend@db/x", "postgresql://tend@db/x"),
            (
                "postgres://db/x?password=s3cret&sslmode=disable",
                "postgres://db/x?sslmode=disable",
            ),
            ("postgres://a:b:c@h/x?password=p", "postgres://a@h/x"),
            ("postgres://h", "postgres://h"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        let err = Target::parse("postgres://u:hunter2@h:notaport/x")
            .err()
            .unwrap();
        assert!(
            !err.contains("hunter2") && err.contains("postgres://u@h"),
            "{err}"
        );
    }

    #[test]
    fn a_mode_that_demands_tls_is_refused_in_one_sentence() {
        let err = Target::parse("postgres://u:pw@h/x?sslmode=require")
            .err()
            .unwrap();
        assert!(
            err.contains("sslmode=require") && !err.contains("pw@"),
            "{err}"
        );
        assert!(Target::parse("postgres://u@h/x?sslmode=disable").is_ok());
        assert!(Target::parse("postgres://u@h/x?sslmode=bogus").is_err());
    }

    #[test]
    fn the_environment_fills_what_the_url_leaves_out() {
        let vars = |k: &str| match k {
            "PGHOST" => Some("pg.example,/run/pg".to_string()),
            "PGPORT" => Some("6543".to_string()),
            "PGUSER" => Some("alice".to_string()),
            "PGPASSWORD" => Some("pw".to_string()),
            "PGDATABASE" => Some("ledger".to_string()),
            _ => None,
        };
        let mut c: Config = "postgres://".parse().unwrap();
        fill_from_env(&mut c, vars).unwrap();
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_ports(), [6543]);
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        assert_eq!(c.get_dbname(), Some("ledger"));
        let mut c: Config = "postgres://bob:x@h:1/d".parse().unwrap();
        fill_from_env(&mut c, vars).unwrap();
        assert_eq!((c.get_user(), c.get_dbname()), (Some("bob"), Some("d")));
        assert_eq!(c.get_ports(), [1]);
    }
}
