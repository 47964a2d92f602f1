//! The PostgreSQL ledger's reads of executions: by prefix, by filter, by
//! key, the live ones, the health summary and the events. Every filter
//! value is a bound parameter; name globs become regular expressions
//! (`glob.rs`).

use postgres::types::ToSql;
use postgres::GenericClient;
use tend_model::{Event, Execution, ExecutionId, KillMethod};

use super::client::{Fail, PgResult};
use super::rows::{execution, executions, COLS};
use crate::{Error, Filter, Summary};

/// Boxed parameters of a query built at run time.
pub(crate) type Params = Vec<Box<dyn ToSql + Sync>>;

/// The parameters as the driver takes them.
pub(crate) fn refs(p: &Params) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|b| b.as_ref()).collect()
}

/// See [`crate::Ledger::resolve`]. The prefix is base36 (checked), so it
/// holds no `LIKE` wildcard, and the id's "C" collation lets `LIKE` use
/// the primary key.
pub(crate) fn resolve(c: &mut impl GenericClient, prefix: &str) -> PgResult<Execution> {
    let prefix = ExecutionId::check_prefix(prefix).map_err(Error::from)?;
    let sql =
        format!("SELECT {COLS} FROM tend.executions WHERE id LIKE $1 || '%' ORDER BY id LIMIT 11");
    let mut rows = executions(c.query(&sql, &[&prefix])?)?;
    match rows.len() {
        0 => Err(Fail::Ledger(Error::NotFound(prefix.to_string()))),
        1 => Ok(rows.remove(0)),
        _ => Err(Fail::Ledger(Error::Ambiguous {
            prefix: prefix.to_string(),
            candidates: rows.iter().take(10).map(|e| e.id.to_string()).collect(),
        })),
    }
}

/// The `WHERE` of a [`Filter`] (paging aside) and its parameters, shared
/// by `list` and `count` so that a count is of exactly what a list shows.
fn where_clause(f: &Filter) -> (String, Params) {
    let mut sql = String::from("true");
    let mut args: Params = Vec::new();
    let arg = |args: &mut Params, v: Box<dyn ToSql + Sync>| {
        args.push(v);
        format!("${}", args.len())
    };
    if !f.statuses.is_empty() {
        let s: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_string()).collect();
        sql += &format!(" AND status = ANY({})", arg(&mut args, Box::new(s)));
    }
    if let Some(name) = &f.name {
        match super::glob::to_regex(name) {
            Some(re) => sql += &format!(" AND name ~ {}", arg(&mut args, Box::new(re))),
            None => sql += " AND false",
        }
    }
    for (k, v) in &f.labels {
        let (k, v) = (
            arg(&mut args, Box::new(k.clone())),
            arg(&mut args, Box::new(v.clone())),
        );
        sql += &format!(" AND (labels::json ->> {k}) = {v}");
    }
    if let Some(since) = f.since_ms {
        sql += &format!(" AND created_at >= {}", arg(&mut args, Box::new(since)));
    }
    if let Some(job) = &f.job {
        sql += &format!(" AND job = {}", arg(&mut args, Box::new(job.clone())));
    }
    (sql, args)
}

/// See [`crate::Ledger::list`].
pub(crate) fn list(c: &mut impl GenericClient, f: &Filter) -> PgResult<Vec<Execution>> {
    let (filter, args) = where_clause(f);
    let mut sql = format!(
        "SELECT {COLS} FROM tend.executions WHERE {filter} ORDER BY created_at DESC, seq DESC"
    );
    if let Some(limit) = f.limit {
        sql += &format!(" LIMIT {limit}");
    }
    if let Some(offset) = f.offset {
        sql += &format!(" OFFSET {offset}");
    }
    executions(c.query(&sql, &refs(&args))?)
}

/// See [`crate::Ledger::count`].
pub(crate) fn count(c: &mut impl GenericClient, f: &Filter) -> PgResult<u64> {
    let (filter, args) = where_clause(f);
    let sql = format!("SELECT count(*) FROM tend.executions WHERE {filter}");
    Ok(c.query_one(&sql, &refs(&args))?.try_get::<_, i64>(0)? as u64)
}

/// See [`crate::Ledger::live`].
pub(crate) fn live(c: &mut impl GenericClient) -> PgResult<Vec<Execution>> {
    let sql = format!(
        "SELECT {COLS} FROM tend.executions WHERE status IN ('queued','running') \
         ORDER BY created_at, seq"
    );
    executions(c.query(&sql, &[])?)
}

/// See [`crate::Ledger::by_key`].
pub(crate) fn by_key(c: &mut impl GenericClient, key: &str) -> PgResult<Option<Execution>> {
    let sql = format!("SELECT {COLS} FROM tend.executions WHERE live_key = $1");
    if let Some(r) = c.query_opt(&sql, &[&key])? {
        return execution(&r).map(Some);
    }
    let sql = format!(
        "SELECT {COLS} FROM tend.executions WHERE key = $1 \
         AND status NOT IN ('queued','running','lost','cancelled') \
         ORDER BY created_at DESC, seq DESC LIMIT 1"
    );
    c.query_opt(&sql, &[&key])?
        .as_ref()
        .map(execution)
        .transpose()
}

/// Pairs of (text, count) from `sql`.
fn pairs(
    c: &mut impl GenericClient,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> PgResult<Vec<(String, u64)>> {
    c.query(sql, args)?
        .iter()
        .map(|r| {
            let k: Option<String> = r.try_get(0)?;
            Ok((k.unwrap_or_default(), r.try_get::<_, i64>(1)?.max(0) as u64))
        })
        .collect()
}

/// See [`crate::Ledger::summary`].
pub(crate) fn summary(
    c: &mut impl GenericClient,
    since_ms: Option<i64>,
    long_running_before: i64,
) -> PgResult<Summary> {
    let since = since_ms.unwrap_or(i64::MIN);
    let mut out = Summary::default();
    let by_status = pairs(
        c,
        "SELECT status, count(*) FROM tend.executions \
        WHERE created_at >= $1 GROUP BY status",
        &[&since],
    )?;
    out.by_status = by_status
        .into_iter()
        .filter_map(|(s, n)| Some((s.parse().ok()?, n)))
        .collect();
    out.lost_by_reason = pairs(
        c,
        "SELECT COALESCE(reason, ''), count(*) FROM tend.executions \
        WHERE status = 'lost' AND created_at >= $1 GROUP BY reason ORDER BY 2 DESC LIMIT 50",
        &[&since],
    )?;
    let methods = pairs(
        c,
        "SELECT kill_method, count(*) FROM tend.executions \
        WHERE kill_method IS NOT NULL AND created_at >= $1 GROUP BY kill_method",
        &[&since],
    )?;
    out.kills_by_method = methods
        .into_iter()
        .filter_map(|(m, n)| Some((KillMethod::parse(&m)?, n)))
        .collect();
    let buckets: Vec<String> = crate::KILL_BUCKETS_MS
        .iter()
        .map(|b| format!("count(*) FILTER (WHERE kill_duration_ms <= {b})"))
        .collect();
    let sql = format!(
        "SELECT COALESCE(SUM(kill_duration_ms), 0)::BIGINT, {}, \
         (SELECT count(*) FROM tend.executions WHERE started_at IS NOT NULL AND created_at >= $1), \
         (SELECT count(*) FROM tend.executions WHERE status = 'running' AND started_at < $2) \
         FROM tend.executions WHERE kill_duration_ms IS NOT NULL AND created_at >= $1",
        buckets.join(", ")
    );
    let r = c.query_one(&sql, &[&since, &long_running_before])?;
    let n = |i: usize| -> PgResult<u64> { Ok(r.try_get::<_, i64>(i)?.max(0) as u64) };
    out.kill_duration_sum_ms = n(0)?;
    for (i, b) in crate::KILL_BUCKETS_MS.iter().enumerate() {
        out.kill_duration_le.push((*b, n(i + 1)?));
    }
    out.started = n(crate::KILL_BUCKETS_MS.len() + 1)?;
    out.long_running = n(crate::KILL_BUCKETS_MS.len() + 2)?;
    Ok(out)
}

/// See [`crate::Ledger::events`].
pub(crate) fn events(c: &mut impl GenericClient, id: &ExecutionId) -> PgResult<Vec<Event>> {
    let rows = c.query(
        "SELECT seq, at, kind, actor, details FROM tend.events \
         WHERE execution_id = $1 ORDER BY seq",
        &[&id.as_str()],
    )?;
    rows.iter()
        .map(|r| {
            let details: String = r.try_get(4)?;
            Ok(Event {
                seq: r.try_get(0)?,
                execution_id: id.clone(),
                at: r.try_get(1)?,
                kind: r.try_get(2)?,
                actor: r.try_get(3)?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}
