//! `stats` over the PostgreSQL ledger: a handful of aggregate queries, each
//! answered by the server over the rows, never by decoding them in Rust.
//! The figures and their cuts are the SQLite backend's (`sqlite_stats.rs`).

use postgres::GenericClient;
use tend_model::wire::{Counted, Hour, Percentiles, Stats};

use super::client::PgResult;
use super::reads::{refs, Params};

/// The statuses that count as a failure in stats.
const FAILED: &str = "status IN ('failed','timed_out','lost')";
/// The statuses an execution ends in.
const ENDED: &str = "status NOT IN ('queued','running')";

/// The filter's `WHERE` and its parameters.
fn filter(since_ms: Option<i64>, name: Option<&str>) -> (String, Params) {
    let mut sql = String::from("created_at >= $1");
    let mut args: Params = vec![Box::new(since_ms.unwrap_or(i64::MIN))];
    if let Some(n) = name {
        match super::glob::to_regex(n) {
            Some(re) => {
                args.push(Box::new(re));
                sql += " AND name ~ $2";
            }
            None => sql += " AND false",
        }
    }
    (sql, args)
}

/// Pairs of (text, number) from `sql`.
fn pairs(c: &mut impl GenericClient, sql: &str, args: &Params) -> PgResult<Vec<(String, i64)>> {
    c.query(sql, &refs(args))?
        .iter()
        .map(|r| {
            let k: Option<String> = r.try_get(0)?;
            Ok((k.unwrap_or_default(), r.try_get(1)?))
        })
        .collect()
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
pub(crate) fn stats(
    c: &mut impl GenericClient,
    since_ms: Option<i64>,
    name: Option<&str>,
) -> PgResult<Stats> {
    let (w, args) = filter(since_ms, name);
    let mut s = Stats::default();
    let q = |sql: &str| sql.replace("{w}", &w).replace("{FAILED}", FAILED);
    let by_status = pairs(
        c,
        &q("SELECT status, count(*) FROM tend.executions WHERE {w} GROUP BY status"),
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
    s.duration_ms = percentiles(c, &w, &args)?;
    s.lost_by_reason = counted(pairs(
        c,
        &q(
            "SELECT reason, count(*) FROM tend.executions WHERE {w} AND status = 'lost' \
         GROUP BY reason ORDER BY 2 DESC LIMIT 10",
        ),
        &args,
    )?);
    s.slowest = counted(pairs(c, &q(
        "SELECT name, max(finished_at - started_at) FROM tend.executions WHERE {w} \
         AND started_at IS NOT NULL AND finished_at IS NOT NULL GROUP BY name ORDER BY 2 DESC LIMIT 5"), &args)?);
    s.most_failing = counted(pairs(
        c,
        &q(
            "SELECT name, count(*) FROM tend.executions WHERE {w} AND {FAILED} \
         GROUP BY name ORDER BY 2 DESC LIMIT 5",
        ),
        &args,
    )?);
    s.per_hour = per_hour(c, name)?;
    Ok(s)
}

/// p50/p90/p95/p99/max of the run time of those that started and ended,
/// by the same nearest rank the SQLite backend takes (`percentile_disc`).
fn percentiles(
    c: &mut impl GenericClient,
    w: &str,
    args: &Params,
) -> PgResult<Option<Percentiles>> {
    let sql = format!(
        "SELECT count(*), percentile_disc(ARRAY[0.5, 0.9, 0.95, 0.99, 1.0]) \
         WITHIN GROUP (ORDER BY finished_at - started_at) FROM tend.executions \
         WHERE {w} AND {ENDED} AND started_at IS NOT NULL AND finished_at IS NOT NULL"
    );
    let r = c.query_one(&sql, &refs(args))?;
    if r.try_get::<_, i64>(0)? == 0 {
        return Ok(None);
    }
    let p: Vec<i64> = r.try_get(1)?;
    let at = |i: usize| p.get(i).copied().unwrap_or(0).max(0) as u64;
    Ok(Some(Percentiles {
        p50: at(0),
        p90: at(1),
        p95: at(2),
        p99: at(3),
        max: at(4),
    }))
}

/// The last 24 hours, hour by hour (hours without executions included).
fn per_hour(c: &mut impl GenericClient, name: Option<&str>) -> PgResult<Vec<Hour>> {
    const HOUR: i64 = 3_600_000;
    let first = (crate::now_ms() / HOUR - 23) * HOUR;
    let (w, args) = filter(Some(first), name);
    let sql = format!(
        "SELECT created_at / {HOUR}, count(*), count(*) FILTER (WHERE {FAILED}) \
         FROM tend.executions WHERE {w} GROUP BY 1"
    );
    let rows: Vec<(i64, i64, i64)> = c
        .query(&sql, &refs(&args))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<PgResult<_>>()?;
    Ok((0..24)
        .map(|i| {
            let h = first / HOUR + i;
            let (n, f) = rows
                .iter()
                .find(|r| r.0 == h)
                .map_or((0, 0), |r| (r.1, r.2));
            Hour {
                start: tend_model::format_rfc3339(h * HOUR),
                created: n as u64,
                failed: f as u64,
            }
        })
        .collect())
}
