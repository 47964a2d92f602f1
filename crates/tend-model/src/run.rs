//! The options of one run, and the one validator every door uses.
//!
//! `tend run` builds [`RunOptions`] from its flags, the API deserialises it
//! from a launch's body, and a stored job will keep it as its template. All
//! three then call [`RunOptions::resolve`], which applies the configured
//! defaults and limits ([`Policy`]) and refuses what no execution may be
//! recorded with, each refusal an [`OptionError`] naming the field and
//! saying why in the same sentence everywhere.
//!
//! ```
//! use std::time::Duration;
//! use tend_model::run::{Policy, RunOptions};
//! let opts = RunOptions {
//!     command: vec!["true".into()],
//!     timeout: Some(Duration::ZERO),
//!     ..RunOptions::default()
//! };
//! let e = opts.resolve(&Policy::default()).unwrap_err();
//! assert_eq!(e.field, "timeout");
//! assert_eq!(e.to_string(), "the timeout must be longer than zero; leave it out for no limit");
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{
    check_env, check_kill_grace, check_labels, check_text, check_time_limit, LimitError,
    MAX_KEY_BYTES, MAX_NAME_BYTES,
};
use crate::Containment;

/// What a run does when a live execution holds its key
/// (`--on-duplicate`): a key names at most one live execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Attach to the holder: follow its output, end with its result.
    #[default]
    Wait,
    /// Start nothing, say so, succeed.
    Skip,
    /// Start nothing and fail, naming the holder.
    Fail,
    /// Kill the holder (audited) and start once its tree is gone.
    Replace,
}

/// The options of one run as a person, a client or a stored job gives
/// them: nothing defaulted, nothing checked yet. Durations travel as text
/// (`90s`) and the memory limit as a size (`512M`), the way operators
/// write them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// argv; never run through a shell.
    #[schema(min_items = 1)]
    pub command: Vec<String>,
    /// Name (default: the program's file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Absolute working directory (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "path_bytes::option")]
    #[schema(value_type = Option<String>, pattern = "^/")]
    pub cwd: Option<PathBuf>,
    /// Extra environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Deduplication key: at most one live execution per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When a live execution holds the key: `wait` (attach to it), `skip`,
    /// `fail` or `replace` (kill it, then start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(wait|skip|fail|replace)$")]
    pub on_duplicate: Option<OnDuplicate>,
    /// With a key: a `succeeded` execution with it that ended less than this
    /// long ago stands for it (its result is reused); by default a finished
    /// execution frees its key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::duration"
    )]
    #[schema(value_type = Option<String>, pattern = r"^([0-9]{1,9}(ms|s|m|h|d)){1,4}$")]
    pub reuse_finished: Option<Duration>,
    /// End it after this long (`90s`, `5m`), at most the configured maximum (24h by default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::duration"
    )]
    #[schema(value_type = Option<String>, pattern = r"^([0-9]{1,9}(ms|s|m|h)){1,4}$")]
    pub timeout: Option<Duration>,
    /// SIGTERM → SIGKILL grace, at most 1h.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::duration"
    )]
    #[schema(value_type = Option<String>, pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub kill_grace: Option<Duration>,
    /// The command must run `tend heartbeat` within each such period.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::duration"
    )]
    #[schema(value_type = Option<String>, pattern = r"^([0-9]{1,9}(ms|s|m|h|d)){1,4}$")]
    pub heartbeat_timeout: Option<Duration>,
    /// End it when it prints nothing for this long.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::duration"
    )]
    #[schema(value_type = Option<String>, pattern = r"^([0-9]{1,9}(ms|s|m|h|d)){1,4}$")]
    pub idle_timeout: Option<Duration>,
    /// Memory limit for the whole tree (`512M`, `2G`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "text::size")]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]+([KMGTkmgt](i?B)?|B)?$")]
    pub max_memory: Option<u64>,
    /// Run a `failed`, `timed_out` or `lost` attempt again, up to this many
    /// times (never a `killed` one): each attempt is an execution of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 100)]
    pub retries: Option<u32>,
    /// The wait before the first retry (default 1s), doubled before each
    /// next one, with ±10 % jitter.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::duration"
    )]
    #[schema(value_type = Option<String>, pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub retry_backoff: Option<Duration>,
    /// The longest wait between two attempts (default 5m).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::duration"
    )]
    #[schema(value_type = Option<String>, pattern = r"^([0-9]{1,9}(ms|s|m|h|d)){1,4}$")]
    pub retry_max_backoff: Option<Duration>,
    /// Run the command in a fresh private directory (`tmp`) or in a new
    /// git worktree of the repository at `cwd` on branch `exec-<id>`
    /// (`worktree`), kept until `prune`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<crate::WorkspaceKind>,
}

/// The defaults and maxima a run is resolved against: the configuration of
/// the CLI or of the daemon (`TEND_MAX_TIMEOUT`, `TEND_DEFAULT_TIMEOUT`,
/// `TEND_KILL_GRACE`, `TEND_LOG_MAX_SIZE`, `TEND_CONTAINMENT`), and the
/// ledger the command is told about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Longest time limit a run may ask for.
    pub max_timeout: Duration,
    /// Timeout of a run that names none.
    pub default_timeout: Option<Duration>,
    /// Grace of a run that names none.
    pub kill_grace: Duration,
    /// Size at which a log file rotates.
    pub log_max_bytes: u64,
    /// Containment tier to insist on; `None` picks the best the host offers.
    pub containment: Option<Containment>,
    /// Ledger location handed to the command as `TEND_STORE`.
    pub store: Option<String>,
}

impl Default for Policy {
    /// The built-in configuration: 24h at most, no default timeout, 5s
    /// grace, 64 MiB logs.
    fn default() -> Self {
        Policy {
            max_timeout: Duration::from_secs(24 * 3600),
            default_timeout: None,
            kill_grace: Duration::from_secs(5),
            log_max_bytes: 64 << 20,
            containment: None,
            store: None,
        }
    }
}

/// A run option refused: which field (its API name, `heartbeat_timeout`)
/// and the sentence saying why, the same for every door.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{error}")]
pub struct OptionError {
    /// The field as the API and stored jobs spell it.
    pub field: &'static str,
    /// Why, in one sentence.
    pub error: LimitError,
}

fn at(field: &'static str) -> impl FnOnce(LimitError) -> OptionError {
    move |error| OptionError { field, error }
}

impl RunOptions {
    /// Every rule a run must pass, and the [`RunSpec`] it becomes with the
    /// policy's defaults applied. The CLI, the API and stored jobs all call
    /// this, so they accept and refuse alike, in the same words.
    pub fn resolve(self, policy: &Policy) -> Result<RunSpec, OptionError> {
        check_command(&self.command).map_err(at("command"))?;
        let retry = self.retry_policy()?;
        self.check_key_options()?;
        let cwd = self.cwd.unwrap_or_else(|| PathBuf::from("/"));
        if !cwd.is_absolute() {
            let shown = crate::text::escape(&cwd.to_string_lossy()).into_owned();
            return Err(at("cwd")(LimitError::RelativeDir(shown)));
        }
        for (field, value, max) in [
            ("name", &self.name, MAX_NAME_BYTES),
            ("key", &self.key, MAX_KEY_BYTES),
        ] {
            match value.as_deref() {
                Some("") => return Err(at(field)(LimitError::Empty(field))),
                Some(v) => check_text(field, v, max).map_err(at(field))?,
                None => {}
            }
        }
        check_labels(&self.labels).map_err(at("labels"))?;
        check_env(&self.env).map_err(at("env"))?;
        let max = policy.max_timeout;
        let limit = |field, name, d: Option<Duration>| {
            d.map(|d| check_time_limit(name, d, max))
                .transpose()
                .map_err(at(field))
        };
        if let (Some(Duration::ZERO), Some(d)) = (self.timeout, policy.default_timeout) {
            let default = crate::format_duration(d);
            return Err(at("timeout")(LimitError::ZeroTimeoutWithDefault(default)));
        }
        let timeout_ms = limit(
            "timeout",
            "timeout",
            self.timeout.or(policy.default_timeout),
        )?;
        let heartbeat_timeout_ms = limit(
            "heartbeat_timeout",
            "heartbeat timeout",
            self.heartbeat_timeout,
        )?;
        let idle_timeout_ms = limit("idle_timeout", "idle timeout", self.idle_timeout)?;
        if self.max_memory == Some(0) {
            return Err(at("max_memory")(LimitError::ZeroSize("memory limit")));
        }
        let grace = self.kill_grace.unwrap_or(policy.kill_grace);
        check_kill_grace(grace).map_err(at("kill_grace"))?;
        Ok(RunSpec {
            name: self.name,
            command: self.command,
            cwd,
            env: self.env,
            labels: self.labels,
            key: self.key,
            on_duplicate: self.on_duplicate.unwrap_or_default(),
            reuse_finished_ms: self.reuse_finished.map(|d| d.as_millis() as u64),
            timeout_ms,
            kill_grace_ms: grace.as_millis() as u64,
            log_max_bytes: policy.log_max_bytes,
            heartbeat_timeout_ms,
            idle_timeout_ms,
            max_memory_bytes: self.max_memory,
            containment: policy.containment,
            store: policy.store.clone(),
            tty: false,
            requested_by: None,
            job: None,
            fire: None,
            workspace: self.workspace,
            retries: retry.retries,
            retry_backoff_ms: retry.backoff_ms,
            retry_max_backoff_ms: retry.max_backoff_ms,
        })
    }

    /// `--on-duplicate` and `--reuse-finished` only with a key, and a reuse
    /// window that is not empty.
    fn check_key_options(&self) -> Result<(), OptionError> {
        if self.key.is_none() {
            if self.on_duplicate.is_some() {
                return Err(at("on_duplicate")(LimitError::NeedsKey("on_duplicate")));
            }
            if self.reuse_finished.is_some() {
                return Err(at("reuse_finished")(LimitError::NeedsKey("reuse_finished")));
            }
        }
        if self.reuse_finished == Some(Duration::ZERO) {
            return Err(at("reuse_finished")(LimitError::Empty("reuse window")));
        }
        Ok(())
    }

    /// `--retries` and its backoff: at most [`MAX_RETRIES`]; the backoff
    /// options only with retries, and the first wait no longer than the
    /// longest.
    fn retry_policy(&self) -> Result<RetryPolicy, OptionError> {
        let retries = self.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(at("retries")(LimitError::TooManyRetries(retries)));
        }
        if retries == 0 {
            for (field, given) in [
                ("retry_backoff", self.retry_backoff.is_some()),
                ("retry_max_backoff", self.retry_max_backoff.is_some()),
            ] {
                if given {
                    return Err(at(field)(LimitError::NeedsRetries(field)));
                }
            }
        }
        if self.retry_max_backoff == Some(Duration::ZERO) {
            return Err(at("retry_max_backoff")(LimitError::ZeroLimit(
                "longest retry backoff",
            )));
        }
        let backoff = self.retry_backoff.unwrap_or(DEFAULT_RETRY_BACKOFF);
        let max = self.retry_max_backoff.unwrap_or(DEFAULT_RETRY_MAX_BACKOFF);
        if backoff > max {
            return Err(at("retry_backoff")(LimitError::BackoffOverMax {
                backoff: crate::format_duration(backoff),
                max: crate::format_duration(max),
            }));
        }
        Ok(RetryPolicy {
            retries,
            backoff_ms: backoff.as_millis() as u64,
            max_backoff_ms: max.as_millis() as u64,
        })
    }
}

/// The most retries a run may ask for: more is a loop, not a retry.
pub const MAX_RETRIES: u32 = 100;
/// The first wait before a retry when `--retry-backoff` is left out.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts when `--retry-max-backoff` is left out.
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How a run is retried, resolved.
struct RetryPolicy {
    retries: u32,
    backoff_ms: u64,
    max_backoff_ms: u64,
}

/// The wait before the attempt after attempt `attempt` (1-based) ended:
/// `backoff` doubled once per earlier retry, capped at `max`, times
/// `jitter` (0.9–1.1, drawn by the caller), and never more than `max`.
pub fn retry_delay_ms(attempt: u32, backoff_ms: u64, max_ms: u64, jitter: f64) -> u64 {
    let doublings = attempt.saturating_sub(1).min(40);
    let base = backoff_ms.saturating_mul(1u64 << doublings).min(max_ms);
    ((base as f64 * jitter.clamp(0.9, 1.1)) as u64).min(max_ms)
}

/// A program is named, and no argument holds a NUL byte (no `execve`
/// passes one). Empty arguments are fine: `printf ''` is a real command.
fn check_command(command: &[String]) -> Result<(), LimitError> {
    match command.first() {
        None => Err(LimitError::EmptyCommand),
        Some(p) if p.is_empty() => Err(LimitError::EmptyCommand),
        Some(_) if command.iter().any(|a| a.contains('\0')) => Err(LimitError::NulInCommand),
        Some(_) => Ok(()),
    }
}

/// Everything a supervisor needs to start one execution: [`RunOptions`]
/// resolved against a [`Policy`]. Serialisable, because a detached
/// supervisor receives it from `tend run -d` (or the daemon) on stdin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Human name; defaults to the program's file name.
    pub name: Option<String>,
    /// argv; never passed through a shell.
    pub command: Vec<String>,
    /// Absolute working directory, byte for byte: a directory whose name
    /// is not UTF-8 is run in exactly, never in a lossy look-alike.
    #[serde(with = "path_bytes")]
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Deduplication key.
    pub key: Option<String>,
    /// What to do when the key is taken.
    pub on_duplicate: OnDuplicate,
    /// Reuse a `succeeded` execution with the key that ended within this
    /// long.
    #[serde(default)]
    pub reuse_finished_ms: Option<u64>,
    /// End it after this long.
    pub timeout_ms: Option<u64>,
    /// SIGTERM → SIGKILL grace.
    pub kill_grace_ms: u64,
    /// Size at which a log file is rotated (one old file is kept).
    pub log_max_bytes: u64,
    /// The command must run `tend heartbeat` within each such period.
    pub heartbeat_timeout_ms: Option<u64>,
    /// End it when it prints nothing for this long.
    pub idle_timeout_ms: Option<u64>,
    /// End it when its tree's resident memory exceeds this.
    pub max_memory_bytes: Option<u64>,
    /// Containment tier to insist on (`cgroup`, `session`); `None` picks the
    /// best this host offers.
    pub containment: Option<Containment>,
    /// Ledger location handed to the command as `TEND_STORE`, so that a
    /// `tend heartbeat` (or any tend) inside it uses the same ledger.
    pub store: Option<String>,
    /// Run it on a pseudo-terminal of its own (`tend run -t`, foreground
    /// only): set by the CLI after [`RunOptions::resolve`], since a stored
    /// job or a daemon launch has no terminal to give it.
    #[serde(default)]
    pub tty: bool,
    /// Who asked for this run (`user:alice`, `api`, `job`), for the audit
    /// of what it does to others: the kill of a key's holder it replaces.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// The stored job this is a run of: the ledger numbers it from the
    /// job's counter in the transaction that records it.
    #[serde(default)]
    pub job: Option<String>,
    /// The fire of the job this run is for (its nominal instant, ms), set
    /// by the scheduler: recorded with the execution, so that a fire is
    /// launched once.
    #[serde(default)]
    pub fire: Option<i64>,
    /// `--workspace`: the command runs there instead of in `cwd`.
    #[serde(default)]
    pub workspace: Option<crate::WorkspaceKind>,
    /// How many times a `failed`, `timed_out` or `lost` attempt is run
    /// again (`--retries`); each attempt is an execution of its own.
    #[serde(default)]
    pub retries: u32,
    /// The wait before the first retry; doubled before each next one.
    #[serde(default)]
    pub retry_backoff_ms: u64,
    /// The longest wait between two attempts.
    #[serde(default)]
    pub retry_max_backoff_ms: u64,
}

impl RunSpec {
    /// The name to record: the given one, or the program's file name (cut
    /// to [`MAX_NAME_BYTES`], since nobody chose it to be that long).
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let program = self.command.first().map_or("", |p| p.as_str());
            let base = program.rsplit('/').next().unwrap_or(program);
            let mut end = base.len().min(MAX_NAME_BYTES);
            while !base.is_char_boundary(end) {
                end -= 1;
            }
            base[..end].to_string()
        })
    }
}

/// Durations and sizes on the wire as operators write them.
mod text {
    pub mod duration {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&crate::format_duration(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| crate::parse_duration(&t).map_err(serde::de::Error::custom))
                .transpose()
        }
    }

    pub mod size {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match n {
                Some(n) => s.serialize_str(&n.to_string()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| crate::parse_size(&t).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// A path on the wire: a JSON string when it is UTF-8, else the array of
/// its bytes, so that no path is changed on the way.
mod path_bytes {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire<'a> {
        Text(std::borrow::Cow<'a, str>),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        match p.to_str() {
            Some(t) => Wire::Text(t.into()),
            None => Wire::Bytes(p.as_os_str().as_bytes().to_vec()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Text(t) => PathBuf::from(t.into_owned()),
            Wire::Bytes(b) => PathBuf::from(OsString::from_vec(b)),
        })
    }

    pub mod option {
        use std::path::PathBuf;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
            match p {
                Some(p) => super::serialize(p, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] PathBuf);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests;
