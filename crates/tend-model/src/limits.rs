//! The largest input tend accepts, checked at every edge (the CLI and the
//! API) before anything is recorded.
//!
//! Text an operator or a web client chooses ends up in every table row that
//! shows it; without a cap a 100 kB name pads every row of `tend list`, and
//! an unbounded grace period makes a kill wait for ever. The caps are
//! generous for real use and small enough that a row stays a row.
//!
//! ```
//! use tend_model::limits::{check_text, MAX_NAME_BYTES};
//! assert!(check_text("name", "backup", MAX_NAME_BYTES).is_ok());
//! assert!(check_text("name", &"x".repeat(300), MAX_NAME_BYTES).is_err());
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

/// Longest name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest deduplication key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 256;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;
/// Most labels on one execution.
pub const MAX_LABELS: usize = 64;
/// Longest kill reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest heartbeat progress text, in bytes.
pub const MAX_PROGRESS_BYTES: usize = 1024;
/// Longest environment variable name given for a run, in bytes.
pub const MAX_ENV_NAME_BYTES: usize = 256;
/// Longest environment variable value given for a run, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;
/// Most environment variables given for one run.
pub const MAX_ENV_VARS: usize = 256;
/// Longest SIGTERM → SIGKILL grace: a kill must end in bounded time.
pub const MAX_KILL_GRACE: Duration = Duration::from_secs(3600);

/// An input over its limit. The message names the field and the limit, so
/// the CLI and the API can show it as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    /// A text field is longer than its cap.
    #[error("the {field} is {len} bytes long; at most {max} bytes are allowed")]
    TooLong {
        /// Which field (`name`, `label value`, …).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// More labels than [`MAX_LABELS`].
    #[error("{0} labels were given; at most {MAX_LABELS} are allowed")]
    TooManyLabels(usize),
    /// A grace period longer than [`MAX_KILL_GRACE`].
    #[error("a kill grace of {0} is too long; at most 1h is allowed")]
    GraceTooLong(String),
    /// An environment variable name no `execve` takes as one.
    #[error("'{0}' is not an environment variable name: it must be non-empty, without '=' or control characters")]
    BadEnvName(String),
    /// More environment variables than [`MAX_ENV_VARS`].
    #[error("{0} environment variables were given; at most {MAX_ENV_VARS} are allowed")]
    TooManyEnv(usize),
    /// A time limit of zero (the option left out means "no limit").
    #[error("the {0} must be longer than zero; leave it out for no limit")]
    ZeroLimit(&'static str),
    /// A zero timeout where a default applies when it is left out.
    #[error("the timeout must be longer than zero; leave it out for the configured default of {0} (TEND_DEFAULT_TIMEOUT)")]
    ZeroTimeoutWithDefault(String),
    /// A size limit of zero (the option left out means "no limit").
    #[error("the {0} must be more than zero; leave it out for no limit")]
    ZeroSize(&'static str),
    /// An empty value where leaving the option out is the way to say "none".
    #[error("the {0} is empty; leave the option out instead")]
    Empty(&'static str),
    /// An option that only means something with a key.
    #[error("{0} needs a key: give one, or leave {0} out")]
    NeedsKey(&'static str),
    /// More retries than [`crate::run::MAX_RETRIES`].
    #[error("{0} retries were asked for; at most 100 are allowed")]
    TooManyRetries(u32),
    /// A retry backoff option without retries.
    #[error("{0} needs --retries: give a number of retries, or leave {0} out")]
    NeedsRetries(&'static str),
    /// A first retry wait longer than the longest.
    #[error("a retry backoff of {backoff} is longer than the longest backoff of {max} (retry_max_backoff)")]
    BackoffOverMax {
        /// The first wait, as given.
        backoff: String,
        /// The longest wait.
        max: String,
    },
    /// No program to run.
    #[error("the command is empty: name a program to run")]
    EmptyCommand,
    /// An argument no `execve` can pass.
    #[error("an argument of the command holds a NUL byte")]
    NulInCommand,
    /// A working directory that is not absolute.
    #[error("the working directory '{0}' is not an absolute path")]
    RelativeDir(String),
    /// A time limit over the configured maximum.
    #[error("the {field} of {given} is longer than the maximum of {max}; raise TEND_MAX_TIMEOUT to allow it")]
    LimitTooLong {
        /// Which limit (`timeout`, `idle timeout`, `heartbeat timeout`).
        field: &'static str,
        /// As given.
        given: String,
        /// The maximum.
        max: String,
    },
}

/// Refuses `value` when it is longer than `max` bytes.
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), LimitError> {
    if value.len() > max {
        return Err(LimitError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// A kill reason: not empty (leave it out instead), at most
/// [`MAX_REASON_BYTES`]. The CLI and the API both call it.
pub fn check_reason(reason: &str) -> Result<(), LimitError> {
    if reason.is_empty() {
        return Err(LimitError::Empty("reason"));
    }
    check_text("reason", reason, MAX_REASON_BYTES)
}

/// Refuses too many labels, or a label key or value over its cap.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), LimitError> {
    if labels.len() > MAX_LABELS {
        return Err(LimitError::TooManyLabels(labels.len()));
    }
    for (k, v) in labels {
        check_text("label key", k, MAX_LABEL_KEY_BYTES)?;
        check_text("label value", v, MAX_LABEL_VALUE_BYTES)?;
    }
    Ok(())
}

/// Refuses environment variables a run may not be given: names that are
/// empty or hold `=` or control characters, names and values over their
/// caps, too many of them. The CLI and the API refuse the same.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), LimitError> {
    if env.len() > MAX_ENV_VARS {
        return Err(LimitError::TooManyEnv(env.len()));
    }
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.chars().any(char::is_control) {
            return Err(LimitError::BadEnvName(crate::text::escape(k).into_owned()));
        }
        check_text("environment variable name", k, MAX_ENV_NAME_BYTES)?;
        check_text("environment variable value", v, MAX_ENV_VALUE_BYTES)?;
    }
    Ok(())
}

/// Refuses a grace period over [`MAX_KILL_GRACE`].
pub fn check_kill_grace(grace: Duration) -> Result<(), LimitError> {
    if grace > MAX_KILL_GRACE {
        return Err(LimitError::GraceTooLong(crate::format_duration(grace)));
    }
    Ok(())
}

/// The one rule for the time limits of a run (`timeout`, `idle timeout`,
/// `heartbeat timeout`), the same for the CLI, the API and stored jobs: more
/// than zero (leave it out for no limit), at most `max` (`TEND_MAX_TIMEOUT`,
/// 24h unless configured). Returns it in milliseconds, which then cannot
/// overflow.
pub fn check_time_limit(
    field: &'static str,
    limit: Duration,
    max: Duration,
) -> Result<u64, LimitError> {
    if limit.is_zero() {
        return Err(LimitError::ZeroLimit(field));
    }
    if limit > max {
        return Err(LimitError::LimitTooLong {
            field,
            given: crate::format_duration(limit),
            max: crate::format_duration(max),
        });
    }
    Ok(limit.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_at_the_cap_passes_and_one_byte_more_is_refused() {
        assert!(check_text("name", &"n".repeat(MAX_NAME_BYTES), MAX_NAME_BYTES).is_ok());
        let e = check_text("name", &"n".repeat(MAX_NAME_BYTES + 1), MAX_NAME_BYTES).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the name is 257 bytes long; at most 256 bytes are allowed"
        );
    }

    #[test]
    fn labels_are_capped_in_number_and_size() {
        let many: BTreeMap<_, _> = (0..=MAX_LABELS)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        assert_eq!(
            check_labels(&many),
            Err(LimitError::TooManyLabels(MAX_LABELS + 1))
        );
        let big = BTreeMap::from([("k".to_string(), "v".repeat(MAX_LABEL_VALUE_BYTES + 1))]);
        assert!(check_labels(&big).is_err());
    }

    #[test]
    fn time_limits_are_positive_and_bounded_with_one_sentence_each() {
        let max = Duration::from_secs(86_400);
        let cases: [(u64, Result<u64, &str>); 4] = [
            (1, Ok(1)),
            (0, Err("the timeout must be longer than zero; leave it out for no limit")),
            (86_400_000, Ok(86_400_000)),
            (
                u64::MAX / 1000,
                Err("the timeout of 213503982d08h is longer than the maximum of 1d00h; raise TEND_MAX_TIMEOUT to allow it"),
            ),
        ];
        for (ms, want) in cases {
            let got = check_time_limit("timeout", Duration::from_millis(ms), max);
            match want {
                Ok(v) => assert_eq!(got, Ok(v)),
                Err(text) => assert_eq!(got.unwrap_err().to_string(), text),
            }
        }
    }

    #[test]
    fn a_grace_over_an_hour_is_refused() {
        assert!(check_kill_grace(MAX_KILL_GRACE).is_ok());
        assert!(check_kill_grace(Duration::from_secs(u64::MAX / 1000)).is_err());
    }
}
