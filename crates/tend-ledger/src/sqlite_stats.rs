//! `stats` over the SQLite ledger: a handful of aggregate queries, each
//! answered by SQLite over the rows, never by decoding them in Rust.

use rusqlite::types::Value;
use rusqlite::Connection;
use tend_model::wire::{Counted, Hour, Percentiles, Stats};

use crate::{Error, Result};

/// The statuses that count as a failure in stats.
const FAILED: &str = "status IN ('failed','timed_out','lost')";
/// The statuses an execution ends in.
const ENDED: &str = "status NOT IN ('queued','running')";

/// The filter's `WHERE` and its arguments.
fn filter(since_ms: Option<i64>, name: Option<&str>) -> (String, Vec<Value>) {
    let mut sql = String::from("created_at >= ?1");
    let mut args = vec![Value::Integer(since_ms.unwrap_or(i64::MIN))];
    if let Some(n) = name {
        args.push(Value::Text(n.to_string()));
        sql += " AND name GLOB ?2";
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

fn counted(rows: Vec<(String, i64)>) -> Vec<Counted> {
    rows.into_iter()
        .map(|(key, n)| Counted {
            key,
            value: n.max(0) as u64,
        })
        .collect()
}

/// Every figure of [`Stats`] for the executions created at or after
/// `since_ms` whose name matches the glob `name`.
pub(crate) fn stats(conn: &Connection, since_ms: Option<i64>, name: Option<&str>) -> Result<Stats> {
    let (w, args) = filter(since_ms, name);
    let mut s = Stats::default();
    let by_status = pairs(
        conn,
        &format!("SELECT status, count(*) FROM executions WHERE {w} GROUP BY status"),
        &args,
    )?;
    s.total = by_status.iter().map(|(_, n)| *n as u64).sum();
    s.by_status = by_status.into_iter().map(|(k, n)| (k, n as u64)).collect();
    let ended: u64 = s
        .by_status
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "queued" | "running"))
        .map(|(_, n)| n)
        .sum();
    let failed: u64 = ["failed", "timed_out", "lost"]
        .iter()
        .filter_map(|k| s.by_status.get(*k))
        .sum();
    s.failure_rate = (ended > 0).then(|| failed as f64 / ended as f64);
    s.duration_ms = percentiles(conn, &w, &args)?;
    s.lost_by_reason = counted(pairs(conn, &format!(
        "SELECT reason, count(*) FROM executions WHERE {w} AND status = 'lost' GROUP BY reason ORDER BY 2 DESC LIMIT 10"), &args)?);
    s.slowest = counted(pairs(conn, &format!(
        "SELECT name, max(finished_at - started_at) FROM executions WHERE {w} AND started_at IS NOT NULL \
         AND finished_at IS NOT NULL GROUP BY name ORDER BY 2 DESC LIMIT 5"), &args)?);
    s.most_failing = counted(pairs(conn, &format!(
        "SELECT name, count(*) FROM executions WHERE {w} AND {FAILED} GROUP BY name ORDER BY 2 DESC LIMIT 5"), &args)?);
    s.per_hour = per_hour(conn, name)?;
    Ok(s)
}

/// p50/p90/p95/p99/max of the run time of those that started and ended:
/// one count, then one indexed step to each rank.
fn percentiles(conn: &Connection, w: &str, args: &[Value]) -> Result<Option<Percentiles>> {
    let ran = format!("{w} AND {ENDED} AND started_at IS NOT NULL AND finished_at IS NOT NULL");
    let n: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM executions WHERE {ran}"),
            rusqlite::params_from_iter(args),
            |r| r.get(0),
        )
        .map_err(Error::storage("computing stats"))?;
    if n == 0 {
        return Ok(None);
    }
    let at = |q: f64| -> Result<u64> {
        let rank = (((n as f64) * q).ceil() as i64 - 1).clamp(0, n - 1);
        let sql = format!(
            "SELECT finished_at - started_at AS d FROM executions WHERE {ran} ORDER BY d LIMIT 1 OFFSET {rank}"
        );
        conn.query_row(&sql, rusqlite::params_from_iter(args), |r| {
            r.get::<_, i64>(0)
        })
        .map(|d| d.max(0) as u64)
        .map_err(Error::storage("computing stats"))
    };
    Ok(Some(Percentiles {
        p50: at(0.50)?,
        p90: at(0.90)?,
        p95: at(0.95)?,
        p99: at(0.99)?,
        max: at(1.0)?,
    }))
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
