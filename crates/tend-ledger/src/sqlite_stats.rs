//! `stats` over the SQLite ledger: one pass over a covering index (no row
//! is decoded), plus two small indexed queries for lost reasons and the
//! last day's hours.

use std::collections::{BTreeMap, HashMap};

use rusqlite::types::Value;
use rusqlite::Connection;
use tend_model::wire::{Counted, Hour, Percentiles, Stats};

use crate::{Error, Result};

/// The statuses that count as a failure in stats.
const FAILED: &str = "status IN ('failed','timed_out','lost')";

/// The filter's `WHERE` and its arguments. The unary `+` keeps SQLite from
/// choosing the name index (which would fetch every matching row) over the
/// covering `executions_stats` index.
fn filter(since_ms: Option<i64>, name: Option<&str>) -> (String, Vec<Value>) {
    let mut sql = String::from("created_at >= ?1");
    let mut args = vec![Value::Integer(since_ms.unwrap_or(i64::MIN))];
    if let Some(n) = name {
        args.push(Value::Text(n.to_string()));
        sql += " AND +name GLOB ?2";
    }
    (sql, args)
}

/// Pairs of (text, number) from `sql`.
fn pairs(conn: &Connection, sql: &str, args: &[Value]) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn
        .prepare(sql)
        .map_err(Error::storage("computing stats"))?;
    stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok((
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get(1)?,
        ))
    })
    .and_then(|r| r.collect())
    .map_err(Error::storage("computing stats"))
}

/// What one pass over the matching rows gathers.
#[derive(Default)]
struct Pass {
    by_status: BTreeMap<String, u64>,
    /// Run times of those that started and ended.
    durations: Vec<i64>,
    /// Per name: the longest run and the number of failures.
    names: HashMap<String, (Option<i64>, u64)>,
}

impl Pass {
    fn add(&mut self, status: &str, name: &str, duration: Option<i64>) {
        match self.by_status.get_mut(status) {
            Some(n) => *n += 1,
            None => {
                self.by_status.insert(status.to_string(), 1);
            }
        }
        let ended = !matches!(status, "queued" | "running");
        let failed = matches!(status, "failed" | "timed_out" | "lost");
        let duration = duration.filter(|_| ended);
        if let Some(d) = duration {
            self.durations.push(d);
        }
        if duration.is_none() && !failed {
            return;
        }
        let entry = match self.names.get_mut(name) {
            Some(e) => e,
            None => self.names.entry(name.to_string()).or_default(),
        };
        entry.0 = entry.0.max(duration);
        entry.1 += u64::from(failed);
    }
}

/// One scan of the covering index: counts, run times and per-name figures
/// together, instead of a sort or a grouping per figure.
fn scan(conn: &Connection, w: &str, args: &[Value]) -> Result<Pass> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT status, name, finished_at - started_at FROM executions WHERE {w}"
        ))
        .map_err(Error::storage("computing stats"))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args))
        .map_err(Error::storage("computing stats"))?;
    let mut pass = Pass::default();
    while let Some(r) = rows.next().map_err(Error::storage("computing stats"))? {
        let err = || Error::storage("computing stats");
        let status = r.get_ref(0).map_err(err())?.as_str().unwrap_or_default();
        let name = r.get_ref(1).map_err(err())?.as_str().unwrap_or_default();
        let d: Option<i64> = r.get(2).map_err(err())?;
        pass.add(status, name, d);
    }
    Ok(pass)
}

/// The first `n` of `items` by value, most first (ties by name).
fn top(items: impl Iterator<Item = (String, u64)>, n: usize) -> Vec<Counted> {
    let mut v: Vec<Counted> = items.map(|(key, value)| Counted { key, value }).collect();
    v.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.key.cmp(&b.key)));
    v.truncate(n);
    v
}

/// Every figure of [`Stats`] for the executions created at or after
/// `since_ms` whose name matches the glob `name`.
pub(crate) fn stats(conn: &Connection, since_ms: Option<i64>, name: Option<&str>) -> Result<Stats> {
    let (w, args) = filter(since_ms, name);
    let mut pass = scan(conn, &w, &args)?;
    let mut s = Stats {
        total: pass.by_status.values().sum(),
        ..Stats::default()
    };
    let ended: u64 = s.total
        - ["queued", "running"]
            .iter()
            .filter_map(|k| pass.by_status.get(*k))
            .sum::<u64>();
    let failed: u64 = ["failed", "timed_out", "lost"]
        .iter()
        .filter_map(|k| pass.by_status.get(*k))
        .sum();
    s.failure_rate = (ended > 0).then(|| failed as f64 / ended as f64);
    s.duration_ms = percentiles(&mut pass.durations);
    s.by_status = pass.by_status;
    s.lost_by_reason = top(
        pairs(conn, &format!(
            "SELECT reason, count(*) FROM executions WHERE {w} AND status = 'lost' GROUP BY reason"), &args)?
        .into_iter()
        .map(|(k, n)| (k, n.max(0) as u64)),
        10,
    );
    s.slowest = top(
        pass.names
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.0?.max(0) as u64))),
        5,
    );
    s.most_failing = top(
        pass.names
            .into_iter()
            .filter(|(_, v)| v.1 > 0)
            .map(|(k, v)| (k, v.1)),
        5,
    );
    s.per_hour = per_hour(conn, name)?;
    Ok(s)
}

/// p50/p90/p95/p99/max: the nearest rank of each, from one sort.
fn percentiles(durations: &mut [i64]) -> Option<Percentiles> {
    let n = durations.len();
    if n == 0 {
        return None;
    }
    durations.sort_unstable();
    let at = |q: f64| durations[((n as f64 * q).ceil() as usize).clamp(1, n) - 1].max(0) as u64;
    Some(Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    })
}

/// The last 24 hours, hour by hour (hours without executions included).
fn per_hour(conn: &Connection, name: Option<&str>) -> Result<Vec<Hour>> {
    const HOUR: i64 = 3_600_000;
    let first = (crate::now_ms() / HOUR - 23) * HOUR;
    let (w, args) = filter(Some(first), name);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT created_at / {HOUR}, count(*), sum({FAILED}) FROM executions WHERE {w} GROUP BY 1"
        ))
        .map_err(Error::storage("computing stats"))?;
    let rows: Vec<(i64, i64, i64)> = stmt
        .query_map(rusqlite::params_from_iter(&args), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .and_then(|r| r.collect())
        .map_err(Error::storage("computing stats"))?;
    Ok((0..24)
        .map(|i| {
            let h = first / HOUR + i;
            let (c, f) = rows
                .iter()
                .find(|r| r.0 == h)
                .map_or((0, 0), |r| (r.1, r.2));
            Hour {
                start: tend_model::format_rfc3339(h * HOUR),
                created: c as u64,
                failed: f as u64,
            }
        })
        .collect())
}
