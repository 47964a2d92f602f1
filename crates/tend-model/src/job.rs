//! Stored jobs: a named [`RunOptions`] template with a schedule, and the
//! pure arithmetic of when it fires.
//!
//! A job is defined once ([`JobSpec`], what `tend job add` and
//! `POST /api/v1/jobs` take), checked by [`JobSpec::check`] (the run
//! template by the same [`RunOptions::resolve`] every door uses, the name,
//! the schedule and the zone), and stored as a [`JobDefinition`]; the ledger
//! hands it back as a [`Job`] with its counter and state.
//!
//! [`Schedule`] is a five-field cron pattern (an optional leading seconds
//! field, Vixie day-of-month/weekday rules, `@hourly`…`@yearly`), parsed by
//! `croner`, or `@every DUR`. [`next_fires`] and [`due`] are pure: the same
//! job, zone and instants give every daemon the same fires, which is what
//! lets the ledger deduplicate them on (job, nominal instant).
//!
//! DST, as croner defines it and the tests below check: a fixed-time fire
//! whose wall-clock time falls in a spring-forward gap fires once, at the
//! first valid instant after it; a fixed-time fire in a repeated fall-back
//! hour fires once (the first of the two instants), while interval patterns
//! (`*/15 * * * *`, `0 * * * *`) fire in both copies of the hour.
//!
//! The one thing here that reads the system is the time-zone database
//! ([`zone`], [`local_zone_name`]), read-only.
//!
//! ```
//! use tend_model::job::{next_fires, zone, Schedule};
//! let s = Schedule::parse("@every 90s").unwrap();
//! let fires = next_fires(&s, &zone("UTC").unwrap(), 0, 100_000, 2);
//! assert_eq!(fires[0].timestamp().as_millisecond(), 180_000);
//! ```

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use crate::run::{Policy, RunOptions, RunSpec};
use crate::{CatchUp, Concurrency};

/// Longest job name, in bytes.
pub const MAX_JOB_NAME_BYTES: usize = 64;

/// How many due slots [`due`] counts at most (a `@every 1s` job whose
/// daemon was down for a week has 600 000): past it the count says "at least".
pub const MAX_COUNTED: u64 = 100_000;

/// A job's input refused: which field, and why in one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// The field as the API spells it (`name`, `schedule`, `timezone`, or
    /// a run option's: `command`, `timeout`, …).
    pub field: &'static str,
    /// Why.
    pub message: String,
}

impl JobError {
    fn new(field: &'static str, message: impl Into<String>) -> JobError {
        JobError {
            field,
            message: message.into(),
        }
    }
}

impl From<crate::run::OptionError> for JobError {
    fn from(e: crate::run::OptionError) -> JobError {
        JobError::new(e.field, e.to_string())
    }
}

/// When a job fires.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A cron pattern, in the job's zone.
    Cron(Box<croner::Cron>),
    /// The job's creation time plus whole multiples of this.
    Every(Duration),
}

impl Schedule {
    /// Parses `@every DUR`, a nickname (`@daily`), or a five-field cron
    /// pattern with an optional leading seconds field. The error is one
    /// sentence naming what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if let Some(d) = t.strip_prefix("@every") {
            let d = d.trim();
            let every = crate::parse_duration(d).map_err(|e| format!("@every {d}: {e}"))?;
            if every < Duration::from_secs(1) {
                return Err(format!(
                    "@every {d} is too short: a schedule fires at most once a second"
                ));
            }
            if every.subsec_millis() != 0 {
                return Err(format!("@every {d}: use whole seconds"));
            }
            return Ok(Schedule::Every(every));
        }
        let fields = t.split_whitespace().count();
        if !t.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "'{t}' has {fields} fields; a schedule has five (min hour day month weekday), six with leading seconds, or is @hourly, @daily, @weekly, @monthly, @yearly or @every DUR"
            ));
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(t)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| {
                // croner says "Component error: Number out of bounds.": one
                // clause of this sentence.
                let why = e.to_string().trim_end_matches('.').to_lowercase();
                format!("'{t}' is not a valid schedule ({why}); fields are min hour day month weekday, with an optional leading seconds field")
            })
    }
}

/// The zone named `name` from the system's time-zone database.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    jiff::tz::db().get(name).map_err(|_| {
        format!("'{name}' is not a known time zone: use an IANA name such as Europe/Berlin or UTC")
    })
}

/// This host's zone as an IANA name (what `job add` stores by default);
/// `UTC` when the host's zone has no such name.
pub fn local_zone_name() -> String {
    TimeZone::try_system()
        .ok()
        .and_then(|z| z.iana_name().map(str::to_string))
        .unwrap_or_else(|| "UTC".into())
}

fn at_ms(ms: i64, zone: &TimeZone) -> Zoned {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(zone.clone())
}

/// The first `n` fires strictly after `after_ms`, in `zone`. `anchor_ms`
/// (the job's creation) is where `@every` counts from.
pub fn next_fires(
    schedule: &Schedule,
    zone: &TimeZone,
    anchor_ms: i64,
    after_ms: i64,
    n: usize,
) -> Vec<Zoned> {
    match schedule {
        Schedule::Every(d) => {
            let step = d.as_millis() as i64;
            let k = if after_ms < anchor_ms {
                1
            } else {
                (after_ms - anchor_ms) / step + 1
            };
            (0..n as i64)
                .map(|i| at_ms(anchor_ms + (k + i) * step, zone))
                .collect()
        }
        Schedule::Cron(c) => c.iter_after(at_ms(after_ms, zone)).take(n).collect(),
    }
}

/// The fires in `(after_ms, until_ms]`: how many (at most [`MAX_COUNTED`])
/// and the latest, in ms since the epoch. What a scheduler that wakes at
/// `until_ms` owes since it last decided at `after_ms`.
pub fn due(
    schedule: &Schedule,
    zone: &TimeZone,
    anchor_ms: i64,
    after_ms: i64,
    until_ms: i64,
) -> (u64, Option<i64>) {
    if until_ms <= after_ms {
        return (0, None);
    }
    match schedule {
        Schedule::Every(d) => {
            let step = d.as_millis() as i64;
            let slot = |t: i64| {
                if t < anchor_ms {
                    0
                } else {
                    (t - anchor_ms) / step
                }
            };
            let (first, last) = (slot(after_ms), slot(until_ms));
            let n = (last - first) as u64;
            (n, (n > 0).then(|| anchor_ms + last * step))
        }
        Schedule::Cron(c) => {
            let mut n = 0;
            let mut latest = None;
            for z in c.iter_after(at_ms(after_ms, zone)) {
                let t = z.timestamp().as_millisecond();
                if t > until_ms || n >= MAX_COUNTED {
                    break;
                }
                n += 1;
                latest = Some(t);
            }
            (n, latest)
        }
    }
}

/// A fire time as `job show` prints it: RFC 3339 with its UTC offset.
pub fn format_fire(z: &Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A job as given: by `tend job add`'s flags or `POST /api/v1/jobs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique name: letters, digits, `.`, `_`, `-`; at most 64 bytes.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// What each run runs: the options `tend run` and a launch take.
    pub run: RunOptions,
    /// `min hour day month weekday` (optional leading seconds),
    /// `@hourly`…`@yearly`, or `@every DUR`; none: it runs only on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA zone the schedule is read in (default: the zone of whoever
    /// stores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `allow`, `forbid` or `replace` (default `allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// `latest` or `skip` (default `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
}

/// A checked job, as the ledger stores it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobDefinition {
    /// Unique name.
    pub name: String,
    /// The run template, exactly as given (checked, not resolved: the
    /// policy of whoever starts a run applies then).
    pub run: RunOptions,
    /// The schedule's text, if it has one.
    pub schedule: Option<String>,
    /// IANA zone of the schedule.
    pub timezone: String,
    /// Overlap policy.
    pub concurrency: Concurrency,
    /// What a daemon that was down does with missed fires.
    pub catch_up: CatchUp,
}

impl JobSpec {
    /// Every rule a job must pass, the run template's by the one run
    /// validator against `policy`. `default_zone` is the zone a job that
    /// names none gets. Nothing is stored by a refused job.
    pub fn check(self, policy: &Policy, default_zone: &str) -> Result<JobDefinition, JobError> {
        check_name(&self.name)?;
        self.run.clone().resolve(policy)?;
        if let Some(s) = &self.schedule {
            Schedule::parse(s).map_err(|e| JobError::new("schedule", e))?;
        }
        let timezone = self.timezone.unwrap_or_else(|| default_zone.to_string());
        zone(&timezone).map_err(|e| JobError::new("timezone", e))?;
        Ok(JobDefinition {
            name: self.name,
            run: self.run,
            schedule: self.schedule.map(|s| s.trim().to_string()),
            timezone,
            concurrency: self.concurrency.unwrap_or(Concurrency::Allow),
            catch_up: self.catch_up.unwrap_or(CatchUp::Latest),
        })
    }
}

/// A job name is printed as `name#42`, in paths and URLs: a plain word.
pub fn check_name(name: &str) -> Result<(), JobError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() {
        return Err(JobError::new("name", "the job name is empty"));
    }
    if name.len() > MAX_JOB_NAME_BYTES {
        return Err(JobError::new(
            "name",
            format!(
                "the job name is {} bytes long; at most {MAX_JOB_NAME_BYTES} are allowed",
                name.len()
            ),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(plain) {
        return Err(JobError::new(
            "name",
            format!(
                "'{}' is not a job name: use letters, digits, '.', '_' and '-', starting with a letter or digit",
                crate::text::escape(name)
            ),
        ));
    }
    Ok(())
}

/// A stored job with its state.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// What was defined.
    #[serde(flatten)]
    pub definition: JobDefinition,
    /// Paused jobs fire nothing (`job run` still runs them).
    pub paused: bool,
    /// The number its next execution gets; never goes back, not even when
    /// the job is removed and added again.
    pub next_number: u64,
    /// When it was first added (`@every` counts from here).
    #[serde(serialize_with = "crate::execution::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Fires at or before this instant are not owed: it was added, replaced
    /// or resumed then.
    #[serde(serialize_with = "crate::execution::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub fires_after: i64,
}

impl Job {
    /// Its schedule, parsed, with its zone; `None` for an on-demand job
    /// (or one stored by a tend that knew a syntax this one does not).
    pub fn schedule(&self) -> Option<(Schedule, TimeZone)> {
        let s = Schedule::parse(self.definition.schedule.as_deref()?).ok()?;
        Some((s, zone(&self.definition.timezone).ok()?))
    }

    /// The first `n` fires after `after_ms` (none when paused or unscheduled).
    pub fn next_fires(&self, after_ms: i64, n: usize) -> Vec<Zoned> {
        match self.schedule() {
            Some((s, z)) if !self.paused => {
                next_fires(&s, &z, self.created_at, after_ms.max(self.fires_after), n)
            }
            _ => Vec::new(),
        }
    }

    /// The resolved run of this job's next execution: its template under
    /// `policy`, linked to the job so the ledger numbers it.
    pub fn spec(&self, policy: &Policy) -> Result<RunSpec, JobError> {
        let mut spec = self.definition.run.clone().resolve(policy)?;
        if spec.name.is_none() {
            spec.name = Some(self.definition.name.clone());
        }
        spec.job = Some(self.definition.name.clone());
        Ok(spec)
    }
}

/// An execution's place in its job, as shown: `backup#42`, `backup#42.2`
/// for a second attempt.
pub fn job_ref(job: &str, number: u64, attempt: u32) -> String {
    if attempt > 1 {
        format!("{job}#{number}.{attempt}")
    } else {
        format!("{job}#{number}")
    }
}

/// One audit record of a job (fires skipped or missed, …).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JobEvent {
    /// Order among all job events.
    pub seq: i64,
    /// The job's name.
    pub job: String,
    /// When.
    #[serde(serialize_with = "crate::execution::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// What (`fired`, `fire-skipped`, `fire-missed`).
    pub kind: String,
    /// Who (`scheduler`, `user:NAME`, `api`).
    pub actor: String,
    /// Details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A job as `job list --json` and `GET /api/v1/jobs` show it: the stored
/// job and its next fires (RFC 3339 with their UTC offsets).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// The next fires (none when paused or unscheduled).
    pub next_fires: Vec<String>,
}

impl JobView {
    /// `job` with its next `n` fires after `now_ms`.
    pub fn new(job: Job, now_ms: i64, n: usize) -> JobView {
        let next_fires = job.next_fires(now_ms, n).iter().map(format_fire).collect();
        JobView { job, next_fires }
    }
}

/// A job as `job show --json` and `GET /api/v1/jobs/{name}` show it: the
/// view, its last executions (newest first) and its events.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    /// The job and its next fires.
    #[serde(flatten)]
    pub view: JobView,
    /// Its last executions, newest first.
    pub executions: Vec<crate::Execution>,
    /// Its events (fires skipped or missed), oldest first.
    pub events: Vec<JobEvent>,
}

#[cfg(test)]
mod tests;
