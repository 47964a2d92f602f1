//! The embedded SQLite backend: one file, WAL, `synchronous=FULL`, and
//! `BEGIN IMMEDIATE` for every write so that concurrent writers queue on the
//! busy timeout instead of failing with `SQLITE_BUSY_SNAPSHOT`.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use serde_json::json;
use tend_model::{
    Actor, Event, EventKind, Execution, ExecutionId, KillMethod, KillRequested, ProcessIdentity,
    Status,
};

use tend_model::job::{Job, JobDefinition, JobEvent};

pub(crate) use crate::columns::random_u64;
use crate::columns::{json_map, path_columns, path_from_columns, random_ledger_id};
use crate::{
    now_ms, Alert, AlertCounts, AlertOutcome, Claim, Created, Error, Filter, FireOutcome,
    FireStats, KillRequest, Ledger, NewExecution, Outcome, Result, Retry, Summary, Transition,
};

mod alerts;
pub(crate) use alerts::prune as prune_alerts;
mod jobs;
mod retries;
mod workspaces;

/// Schema migrations, applied in order; the index + 1 is the schema version
/// stored in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_containment_and_health.sql"),
    include_str!("migrations/sqlite/0003_cwd_bytes.sql"),
    include_str!("migrations/sqlite/0004_agents.sql"),
    include_str!("migrations/sqlite/0005_jobs.sql"),
    include_str!("migrations/sqlite/0006_retries_and_fire_slots.sql"),
    include_str!("migrations/sqlite/0007_alerts.sql"),
    include_str!("migrations/sqlite/0008_workspaces.sql"),
    include_str!("migrations/sqlite/0009_stats_index.sql"),
    include_str!("migrations/sqlite/0010_agent_leases.sql"),
    include_str!("migrations/sqlite/0011_notify.sql"),
];

/// How long a writer waits for another's transaction before giving up.
/// Ledger transactions take well under a millisecond, so this only matters
/// when hundreds of processes write at once (or a foreign writer holds the
/// lock; `TEND_SQLITE_BUSY_TIMEOUT`, in milliseconds, changes it).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

fn busy_timeout() -> Duration {
    std::env::var("TEND_SQLITE_BUSY_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(BUSY_TIMEOUT, Duration::from_millis)
}

/// Creates the ledger file readable by its owner only (command lines and
/// `--env` values are in it); SQLite gives the WAL and shared-memory files
/// the same mode. Returns whether the file is new.
fn create_private(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes a new file's name durable: without this a power cut can lose the
/// directory entry of a ledger whose first commits were acknowledged.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

pub(crate) const COLS: &str =
    "id, name, status, reason, exit_code, signal, pid, key, labels, command, cwd, env, \
    created_at, started_at, finished_at, host, tier, \
    sup_boot_id, sup_pid, sup_start_time, sup_pidfd_ino, pid_start_time, pid_pidfd_ino, \
    timeout_ms, kill_grace_ms, kill_requested_at, kill_requested_by, kill_request_reason, \
    kill_request_force, kill_request_grace_ms, kill_method, kill_duration_ms, processes_signalled, \
    stdout_path, stderr_path, version, cgroup, heartbeat_timeout_ms, idle_timeout_ms, \
    max_memory_bytes, last_heartbeat_at, progress, cpu_ms, max_rss_bytes, cwd_bytes, agent_id, \
    job, job_number, attempt, retries, retry_backoff_ms, retry_max_backoff_ms, retry_of, \
    start_after, workspace_kind, workspace_path, workspace_repo, workspace_branch";

/// A ledger in one SQLite file.
pub struct SqliteLedger {
    pub(crate) conn: Connection,
    path: std::path::PathBuf,
    ledger_id: String,
    copied_from: Option<String>,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file and brings its schema up
    /// to date. A file written by a newer tend, or one that is not a SQLite
    /// database, is refused with an error that says so.
    pub fn open(path: &Path) -> Result<Self> {
        let fresh = create_private(path).unwrap_or(false);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = connect(path, flags)?;
        let classify = |e: rusqlite::Error| classify_open_error(path, e);
        enable_wal(&conn).map_err(classify)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(classify)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(classify)?;
        // Sorts and temporary indexes stay in memory: a read must not write.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(classify)?;
        // Every tend command is a short-lived process, usually the ledger's
        // only connection: without this, each one would checkpoint the WAL
        // and delete it on close, and the next would create it again (two
        // fsyncs and two file creations per command). Committed data is
        // durable in the WAL either way; writers checkpoint it as it grows.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(classify)?;
        migrate(&conn, path)?;
        let copied_from = adopt_if_copied(&conn, path)?;
        if fresh {
            sync_dir(path).map_err(|e| Error::Open {
                path: path.to_path_buf(),
                detail: format!("cannot make its folder durable: {e}"),
            })?;
        }
        SqliteLedger::with(conn, path, copied_from)
    }

    /// Opens an existing ledger for reading only, for a home on a read-only
    /// file system: nothing is created, migrated or written, and every
    /// write through it fails with a storage error.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = connect(path, flags)?;
        let classify = |e: rusqlite::Error| classify_open_error(path, e);
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(classify)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(classify)?;
        if found != MIGRATIONS.len() as i64 {
            return Err(Error::Open {
                path: path.to_path_buf(),
                detail: format!(
                    "its schema version is {found}, this tend needs {}, and a read-only ledger cannot be migrated",
                    MIGRATIONS.len()
                ),
            });
        }
        SqliteLedger::with(conn, path, None)
    }

    /// The ledger over an opened, migrated connection.
    fn with(conn: Connection, path: &Path, copied_from: Option<String>) -> Result<Self> {
        let ledger_id = conn
            .query_row("SELECT value FROM meta WHERE key = 'ledger_id'", [], |r| {
                r.get(0)
            })
            .map_err(|e| classify_open_error(path, e))?;
        Ok(SqliteLedger {
            conn,
            path: path.to_path_buf(),
            ledger_id,
            copied_from,
        })
    }

    /// The newest schema version this build knows.
    pub fn schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when SQLite finds nothing wrong.
    pub fn check_integrity(&self) -> Result<(), String> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if r == "ok" {
            Ok(())
        } else {
            Err(r)
        }
    }

    /// Begins a write transaction. The wait for the lock is SQLite's busy
    /// timeout, taken in steps of [`crate::LONG_BUSY`]: after each step the
    /// busy hook may free a writer that cannot finish (see `busy.rs`).
    pub(crate) fn write(&self) -> Result<Transaction<'_>> {
        let started = std::time::Instant::now();
        let total = busy_timeout();
        let tx = loop {
            let left = total.saturating_sub(started.elapsed());
            let _ = self.conn.busy_timeout(crate::LONG_BUSY.min(left));
            match Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate) {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < total =>
                {
                    crate::busy::long_busy();
                }
                other => break other,
            }
        };
        let _ = self.conn.busy_timeout(total);
        tx.map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => Error::Busy {
                waited: tend_model::format_duration(total),
            },
            _ => Error::storage("beginning a write")(e),
        })
    }
}

/// Switches the file to WAL. On a fresh file several processes may try at
/// once, and the switch does not wait on the busy timeout: the loser gets
/// `SQLITE_BUSY` at once (issue 9). So it is retried here, with a short
/// backoff, for as long as the busy timeout, until the file is in WAL mode.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + busy_timeout();
    let mut pause = Duration::from_millis(1);
    loop {
        let switched = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    return Ok(mode);
                }
                conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            });
        match switched {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other.map(drop),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A connection to the file with its busy timeout, the file remembered for
/// the lock watchdog (see `busy.rs`).
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::Open {
        path: path.to_path_buf(),
        detail: sqlite_detail(&e),
    })?;
    crate::busy::watch(path);
    conn.busy_timeout(busy_timeout())
        .map_err(|e| classify_open_error(path, e))?;
    Ok(conn)
}

fn sqlite_detail(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(err, Some(msg)) => format!("{msg} ({:?})", err.code),
        other => other.to_string(),
    }
}

fn classify_open_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            detail: sqlite_detail(&e),
        },
        _ => Error::Open {
            path: path.to_path_buf(),
            detail: sqlite_detail(&e),
        },
    }
}

fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let classify = |e: rusqlite::Error| classify_open_error(path, e);
    let latest = MIGRATIONS.len() as i64;
    let version = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    let found = version(conn).map_err(classify)?;
    if found > latest {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found,
            supported: latest,
        });
    }
    if found == latest {
        return Ok(());
    }
    // Several processes may open a new ledger at once: the first to take the
    // write lock migrates, the others see the new version and do nothing.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(classify)?;
    let found = version(&tx).map_err(classify)?;
    if found > latest {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found,
            supported: latest,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(classify)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(classify)?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('ledger_id', ?1)",
        [random_ledger_id()],
    )
    .map_err(classify)?;
    tx.commit().map_err(classify)
}

/// The file's identity on this machine: a copy (a restored backup, a baked
/// image, `cp -a` of a home) has another, though every byte is the same.
fn file_identity(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| Error::Open {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(format!("{}:{}", m.dev(), m.ino()))
}

/// Recognises a copied ledger file by its recorded identity (device and
/// inode) and path, and makes the copy a ledger of its own, in one
/// transaction. A file with another identity at the *same* path was
/// replaced in place (a restored backup, `mv` over it): the original is
/// gone, so it stays the same ledger and only its identity is updated. A
/// copy at another path gets a new ledger id (so it
/// never claims the original's marked processes or cgroups) and every live
/// execution `lost` without touching a process — their supervision stayed
/// with the original. Returns the original's id when this call did it.
fn adopt_if_copied(conn: &Connection, path: &Path) -> Result<Option<String>> {
    let me = file_identity(path)?;
    let read = |c: &Connection| -> Result<Option<String>> {
        c.query_row("SELECT value FROM meta WHERE key = 'file_id'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(Error::storage("reading the ledger's file identity"))
    };
    if read(conn)?.as_deref() == Some(me.as_str()) {
        return Ok(None);
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(Error::storage("beginning a write"))?;
    let recorded = read(&tx)?;
    let here = std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let recorded_path: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'file_path'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(Error::storage("reading the ledger's file identity"))?;
    let set = |k: &str, v: &str| set_meta(&tx, k, v);
    let copied_from = match recorded {
        Some(r) if r == me => None,
        // First open since file identities were recorded: this is the file.
        None => None,
        // Replaced in place: still this ledger.
        Some(_) if recorded_path.as_deref() == Some(here.as_str()) => None,
        Some(_) => Some(become_a_ledger_of_its_own(&tx)?),
    };
    set("file_id", &me)?;
    set("file_path", &here)?;
    tx.commit()
        .map_err(Error::storage("committing the ledger's identity"))?;
    Ok(copied_from)
}

/// Sets one `meta` value, as part of the ledger's identity.
fn set_meta(tx: &Transaction<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        [key, value],
    )
    .map(drop)
    .map_err(Error::storage("recording the ledger's identity"))
}

/// Makes a copied ledger file a ledger of its own, inside `tx`: a new
/// ledger id (so it never claims the original's marked processes or
/// cgroups), and every live execution `lost` without touching a process,
/// since their supervision stayed with the original. Returns the
/// original's ledger id.
fn become_a_ledger_of_its_own(tx: &Transaction<'_>) -> Result<String> {
    let old: String = tx
        .query_row("SELECT value FROM meta WHERE key = 'ledger_id'", [], |r| {
            r.get(0)
        })
        .map_err(Error::storage("reading the ledger id"))?;
    set_meta(tx, "ledger_id", &random_ledger_id())?;
    let live: Vec<String> = {
        let mut q = tx
            .prepare("SELECT id FROM executions WHERE status IN ('queued','running')")
            .map_err(Error::storage("listing live executions"))?;
        let ids = q
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(Error::storage("listing live executions"))?;
        ids
    };
    let reason = format!("copied from ledger {old}: its supervision stayed with the original");
    for id in &live {
        tx.execute(
            "UPDATE executions SET status = 'lost', reason = ?2, finished_at = ?3, \
             live_key = NULL, version = version + 1 WHERE id = ?1",
            params![id, reason, now_ms()],
        )
        .map_err(Error::storage("ending a copied execution"))?;
        insert_event(
            tx,
            id,
            EventKind::MarkedLost,
            &Actor::Ledger,
            &json!({ "reason": reason, "copied_from": old,
            "note": "no process was signalled: it belongs to the original ledger" }),
        )?;
    }
    alerts::skip_copied(tx)?;
    Ok(old)
}

pub(crate) fn row_to_execution(r: &Row<'_>) -> rusqlite::Result<Execution> {
    let id: String = r.get(0)?;
    let status: String = r.get(2)?;
    let bad = |i: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into())
    };
    let status: Status = status
        .parse()
        .map_err(|e: tend_model::UnknownStatus| bad(2, e.to_string()))?;
    let command: String = r.get(9)?;
    let sup_boot: String = r.get(17)?;
    let pid: Option<i32> = r.get(6)?;
    let process = process_of(r, pid, &sup_boot)?;
    let kill_request = kill_request_of(r)?;
    Ok(Execution {
        id: ExecutionId::parse(&id).map_err(|e| bad(0, e.to_string()))?,
        name: r.get(1)?,
        status,
        reason: r.get(3)?,
        exit_code: r.get(4)?,
        signal: r.get(5)?,
        pid,
        key: r.get(7)?,
        labels: json_map(&r.get::<_, String>(8)?),
        command: serde_json::from_str(&command).map_err(|e| bad(9, e.to_string()))?,
        cwd: path_from_columns(r.get(10)?, r.get(44)?),
        env: json_map(&r.get::<_, String>(11)?),
        created_at: r.get(12)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
        host: r.get(15)?,
        tier: r
            .get::<_, String>(16)?
            .parse()
            .map_err(|e: String| bad(16, e))?,
        supervisor: ProcessIdentity {
            boot_id: sup_boot,
            pid: r.get(18)?,
            start_time: r.get::<_, i64>(19)? as u64,
            pidfd_ino: r.get::<_, Option<i64>>(20)?.map(|v| v as u64),
        },
        process,
        timeout_ms: r.get::<_, Option<i64>>(23)?.map(|v| v as u64),
        kill_grace_ms: r.get::<_, i64>(24)? as u64,
        kill_request,
        kill_method: r
            .get::<_, Option<String>>(30)?
            .as_deref()
            .and_then(KillMethod::parse),
        kill_duration_ms: r.get::<_, Option<i64>>(31)?.map(|v| v as u64),
        processes_signalled: r.get::<_, Option<i64>>(32)?.map(|v| v as u32),
        stdout_path: r.get(33)?,
        stderr_path: r.get(34)?,
        version: r.get(35)?,
        cgroup: r.get(36)?,
        heartbeat_timeout_ms: r.get::<_, Option<i64>>(37)?.map(|v| v as u64),
        idle_timeout_ms: r.get::<_, Option<i64>>(38)?.map(|v| v as u64),
        max_memory_bytes: r.get::<_, Option<i64>>(39)?.map(|v| v as u64),
        last_heartbeat_at: r.get(40)?,
        progress: r.get(41)?,
        cpu_ms: r.get::<_, Option<i64>>(42)?.map(|v| v as u64),
        max_rss_bytes: r.get::<_, Option<i64>>(43)?.map(|v| v as u64),
        agent_id: r.get(45)?,
        job: r.get(46)?,
        job_number: r.get::<_, Option<i64>>(47)?.map(|v| v as u64),
        attempt: r.get::<_, Option<i64>>(48)?.map(|v| v as u32),
        retries: r.get::<_, i64>(49)? as u32,
        retry_backoff_ms: r.get::<_, Option<i64>>(50)?.map(|v| v as u64),
        retry_max_backoff_ms: r.get::<_, Option<i64>>(51)?.map(|v| v as u64),
        retry_of: r
            .get::<_, Option<String>>(52)?
            .map(|s| ExecutionId::parse(&s).map_err(|e| bad(52, e.to_string())))
            .transpose()?,
        start_after: r.get(53)?,
        workspace: workspace_of(r)?,
    })
}

/// The workspace, if the run has one (columns 54 to 57).
fn workspace_of(r: &Row<'_>) -> rusqlite::Result<Option<tend_model::Workspace>> {
    let (Some(kind), Some(path)) = (r.get::<_, Option<String>>(54)?, r.get(55)?) else {
        return Ok(None);
    };
    let kind = kind.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(54, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(Some(tend_model::Workspace {
        kind,
        path,
        repository: r.get(56)?,
        branch: r.get(57)?,
    }))
}

/// The command's identity, once it started (`pid` is column 6): it runs on
/// the supervisor's boot.
fn process_of(
    r: &Row<'_>,
    pid: Option<i32>,
    boot_id: &str,
) -> rusqlite::Result<Option<ProcessIdentity>> {
    let pid_start: Option<i64> = r.get(21)?;
    Ok(match (pid, pid_start) {
        (Some(pid), Some(st)) => Some(ProcessIdentity {
            boot_id: boot_id.to_string(),
            pid,
            start_time: st as u64,
            pidfd_ino: r.get::<_, Option<i64>>(22)?.map(|v| v as u64),
        }),
        _ => None,
    })
}

/// The kill asked for, if one was (columns 25 to 29).
fn kill_request_of(r: &Row<'_>) -> rusqlite::Result<Option<KillRequested>> {
    Ok(match r.get::<_, Option<i64>>(25)? {
        Some(at) => Some(KillRequested {
            at,
            by: r.get::<_, Option<String>>(26)?.unwrap_or_default(),
            reason: r.get(27)?,
            force: r.get::<_, Option<i64>>(28)?.unwrap_or(0) != 0,
            grace_ms: r.get::<_, Option<i64>>(29)?.map(|v| v as u64),
        }),
        None => None,
    })
}

fn get_in(conn: &Connection, id: &str) -> Result<Option<Execution>> {
    conn.query_row(
        &format!("SELECT {COLS} FROM executions WHERE id = ?1"),
        [id],
        row_to_execution,
    )
    .optional()
    .map_err(Error::storage("reading an execution"))
}

/// Inserts `new` as `queued` with the id `id`. `None` when the id is
/// taken already (the caller tries another).
fn insert_queued(
    conn: &Connection,
    new: &NewExecution,
    id: &ExecutionId,
    live_key: Option<String>,
    job_number: Option<i64>,
) -> Result<Option<Execution>> {
    let log = |ext: &str| {
        new.log_dir
            .join(format!("{id}.{ext}"))
            .display()
            .to_string()
    };
    let (cwd_text, cwd_bytes) = path_columns(&new.cwd);
    let ws = new.workspace.as_ref().map(|w| w.for_execution(id));
    let row = conn.query_row(
            &format!(
                "INSERT INTO executions (id, name, command, cwd, env, labels, key, live_key, status, \
                 created_at, host, tier, sup_boot_id, sup_pid, sup_start_time, sup_pidfd_ino, \
                 timeout_ms, kill_grace_ms, stdout_path, stderr_path, cgroup, heartbeat_timeout_ms, \
                 idle_timeout_ms, max_memory_bytes, cwd_bytes, agent_id, job, job_number, attempt, \
                 retries, retry_backoff_ms, retry_max_backoff_ms, run_spec, job_slot, \
                 workspace_kind, workspace_path, workspace_repo, workspace_branch) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, \
                 ?33, ?34, ?35, ?36, ?37) \
                 ON CONFLICT (id) DO NOTHING RETURNING {COLS}"
            ),
            params![
                id.as_str(),
                new.name,
                serde_json::to_string(&new.command).expect("a list of strings serialises"),
                cwd_text,
                serde_json::to_string(&new.env).expect("a string map serialises"),
                serde_json::to_string(&new.labels).expect("a string map serialises"),
                new.key,
                live_key,
                now_ms(),
                new.host,
                new.tier.as_str(),
                new.supervisor.boot_id,
                new.supervisor.pid,
                new.supervisor.start_time as i64,
                new.supervisor.pidfd_ino.map(|v| v as i64),
                new.timeout_ms.map(|v| v as i64),
                new.kill_grace_ms as i64,
                log("out"),
                log("err"),
                new.cgroup.as_ref().map(|c| c.join(id.as_str()).display().to_string()),
                new.heartbeat_timeout_ms.map(|v| v as i64),
                new.idle_timeout_ms.map(|v| v as i64),
                new.max_memory_bytes.map(|v| v as i64),
                cwd_bytes,
                new.agent_id,
                new.job,
                job_number,
                (new.job.is_some() || new.retries > 0).then_some(1i64),
                new.retries as i64,
                new.retry_backoff_ms.map(|v| v as i64),
                new.retry_max_backoff_ms.map(|v| v as i64),
                new.run_spec,
                new.job_slot,
                ws.as_ref().map(|w| w.kind.as_str()),
                ws.as_ref().map(|w| w.path.clone()),
                ws.as_ref().and_then(|w| w.repository.clone()),
                ws.as_ref().and_then(|w| w.branch.clone()),
            ],
            row_to_execution,
        )
        .optional()
        .map_err(Error::storage("recording a new execution"))?;
    if let (Some(_), Some(w)) = (&row, &ws) {
        workspaces::record(conn, w, id)?;
    }
    Ok(row)
}

/// What stands for `key` when a new execution wants it: the live holder,
/// else (with `reuse_ms`) the newest `succeeded` one that finished within
/// that long.
fn holder(conn: &Connection, key: &str, reuse_ms: Option<u64>) -> Result<Option<Execution>> {
    let live = conn
        .query_row(
            &format!("SELECT {COLS} FROM executions WHERE live_key = ?1"),
            [key],
            row_to_execution,
        )
        .optional()
        .map_err(Error::storage("looking up a key"))?;
    let Some(ms) = reuse_ms.filter(|_| live.is_none()) else {
        return Ok(live);
    };
    conn.query_row(
        &format!(
            "SELECT {COLS} FROM executions WHERE key = ?1 AND status = 'succeeded' \
             AND finished_at >= ?2 ORDER BY finished_at DESC, rowid DESC LIMIT 1"
        ),
        params![key, crate::ms_ago(std::time::Duration::from_millis(ms))],
        row_to_execution,
    )
    .optional()
    .map_err(Error::storage("looking up a key"))
}

fn by_key_in(conn: &Connection, key: &str) -> Result<Option<Execution>> {
    let live = conn
        .query_row(
            &format!("SELECT {COLS} FROM executions WHERE live_key = ?1"),
            [key],
            row_to_execution,
        )
        .optional()
        .map_err(Error::storage("looking up a key"))?;
    if live.is_some() {
        return Ok(live);
    }
    conn.query_row(
        &format!(
            "SELECT {COLS} FROM executions WHERE key = ?1 \
             AND status NOT IN ('queued','running','lost','cancelled') \
             ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ),
        [key],
        row_to_execution,
    )
    .optional()
    .map_err(Error::storage("looking up a key"))
}

fn insert_event(
    conn: &Connection,
    id: &str,
    kind: EventKind,
    actor: &Actor,
    details: &serde_json::Value,
) -> Result<()> {
    conn.execute(
        "INSERT INTO events (execution_id, at, kind, actor, details) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            id,
            now_ms(),
            kind.as_str(),
            actor.to_string(),
            details.to_string()
        ],
    )
    .map(drop)
    .map_err(Error::storage("recording an event"))
}

/// Refuses an outcome that no row may take from `expected`.
fn check_transition(expected: Status, o: &Outcome) -> Result<()> {
    if expected.can_become(o.status) {
        Ok(())
    } else {
        Err(Error::IllegalTransition {
            from: expected,
            to: o.status,
        })
    }
}

/// `expected` → the outcome's status as one guarded update, with its event
/// (or the refusal's), inside the caller's transaction.
fn transition_in(
    tx: &Connection,
    id: &ExecutionId,
    expected: Status,
    o: &Outcome,
) -> Result<Transition> {
    let kill = o.kill.as_ref();
    let row = tx
            .query_row(
                &format!(
                    "UPDATE executions SET status = ?3, reason = ?4, exit_code = ?5, signal = ?6, \
                     finished_at = ?7, kill_method = ?8, kill_duration_ms = ?9, processes_signalled = ?10, \
                     cpu_ms = COALESCE(?11, cpu_ms), max_rss_bytes = COALESCE(?12, max_rss_bytes), \
                     live_key = NULL, version = version + 1 \
                     WHERE id = ?1 AND status = ?2 RETURNING {COLS}"
                ),
                params![
                    id.as_str(),
                    expected.as_str(),
                    o.status.as_str(),
                    o.reason,
                    o.exit_code,
                    o.signal,
                    now_ms(),
                    kill.map(|k| k.method.as_str()),
                    kill.map(|k| k.duration_ms as i64),
                    kill.map(|k| k.processes_signalled as i64),
                    o.usage.map(|u| u.cpu_ms as i64),
                    o.usage.map(|u| u.max_rss_bytes as i64),
                ],
                row_to_execution,
            )
            .optional()
            .map_err(Error::storage("recording an outcome"))?;
    let t = match row {
        Some(e) => {
            let mut details = json!({
                "status": o.status, "reason": o.reason,
                "exit_code": o.exit_code, "signal": o.signal,
            });
            if let Some(k) = kill {
                details["kill_method"] = json!(k.method);
                details["kill_duration_ms"] = json!(k.duration_ms);
                details["processes_signalled"] = json!(k.processes_signalled);
            }
            merge(&mut details, &o.details);
            insert_event(tx, id.as_str(), o.event, &o.actor, &details)?;
            Transition::Won(e)
        }
        None => {
            let current =
                get_in(tx, id.as_str())?.ok_or_else(|| Error::NotFound(id.to_string()))?;
            insert_event(
                tx,
                id.as_str(),
                EventKind::TransitionRefused,
                &o.actor,
                &json!({
                    "wanted": o.status, "expected": expected,
                    "actual": current.status, "reason": o.reason,
                }),
            )?;
            Transition::Lost(current)
        }
    };
    Ok(t)
}

impl Ledger for SqliteLedger {
    fn ledger_id(&self) -> &str {
        &self.ledger_id
    }

    fn schema(&self) -> Result<(i64, i64)> {
        let found = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(Error::storage("reading the schema version"))?;
        Ok((found, MIGRATIONS.len() as i64))
    }

    fn integrity_check(&self) -> Option<Result<(), String>> {
        Some(self.check_integrity())
    }

    fn copied_from(&self) -> Option<&str> {
        self.copied_from.as_deref()
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        vec![self.path.clone()]
    }

    fn create(&self, new: &NewExecution) -> Result<Created> {
        // A collision of two random ids is detected by the primary key and
        // retried with a fresh id; eight tries make a failure astronomically
        // unlikely without looping forever on a broken random source.
        for _ in 0..8 {
            let tx = self.write()?;
            if let Some(key) = &new.key {
                if let Some(existing) = holder(&tx, key, new.reuse_finished_ms)? {
                    return Ok(Created::Existing(existing));
                }
            }
            let live_key = new.key.clone();
            let id = ExecutionId::from_random(random_u64());
            // The job's number comes from its counter in this transaction:
            // a rollback (an id collision below) gives it back, a commit
            // spends it for good.
            let number = match &new.job {
                Some(job) => Some(jobs::take_number(&tx, job)?),
                None => None,
            };
            let row = insert_queued(&tx, new, &id, live_key, number)?;
            let Some(row) = row else { continue };
            insert_event(
                &tx,
                id.as_str(),
                EventKind::Created,
                &Actor::Supervisor,
                &json!({ "supervisor_pid": new.supervisor.pid, "tier": new.tier, "key": new.key }),
            )?;
            tx.commit()
                .map_err(Error::storage("committing a new execution"))?;
            return Ok(Created::New(row));
        }
        Err(Error::Storage {
            doing: "choosing an execution id",
            source: "eight random ids in a row were taken".into(),
        })
    }

    fn start(&self, id: &ExecutionId, p: &ProcessIdentity) -> Result<Transition> {
        let tx = self.write()?;
        let row = tx
            .query_row(
                &format!(
                    "UPDATE executions SET status = 'running', started_at = ?2, pid = ?3, \
                     pid_start_time = ?4, pid_pidfd_ino = ?5, version = version + 1 \
                     WHERE id = ?1 AND status = 'queued' RETURNING {COLS}"
                ),
                params![
                    id.as_str(),
                    now_ms(),
                    p.pid,
                    p.start_time as i64,
                    p.pidfd_ino.map(|v| v as i64)
                ],
                row_to_execution,
            )
            .optional()
            .map_err(Error::storage("recording a start"))?;
        let t = match row {
            Some(e) => {
                insert_event(
                    &tx,
                    id.as_str(),
                    EventKind::Started,
                    &Actor::Supervisor,
                    &json!({ "pid": p.pid }),
                )?;
                Transition::Won(e)
            }
            None => {
                let current =
                    get_in(&tx, id.as_str())?.ok_or_else(|| Error::NotFound(id.to_string()))?;
                insert_event(
                    &tx,
                    id.as_str(),
                    EventKind::TransitionRefused,
                    &Actor::Supervisor,
                    &json!({ "wanted": "running", "expected": "queued", "actual": current.status }),
                )?;
                Transition::Lost(current)
            }
        };
        tx.commit().map_err(Error::storage("committing a start"))?;
        Ok(t)
    }

    fn transition(&self, id: &ExecutionId, expected: Status, o: &Outcome) -> Result<Transition> {
        check_transition(expected, o)?;
        let tx = self.write()?;
        let t = transition_in(&tx, id, expected, o)?;
        tx.commit()
            .map_err(Error::storage("committing an outcome"))?;
        Ok(t)
    }

    fn transition_retrying(
        &self,
        id: &ExecutionId,
        expected: Status,
        o: &Outcome,
        retry: &Retry,
    ) -> Result<(Transition, Option<Execution>)> {
        check_transition(expected, o)?;
        for _ in 0..8 {
            let tx = self.write()?;
            let t = transition_in(&tx, id, expected, o)?;
            let next = match &t {
                Transition::Won(row) if retries::wanted(row) => {
                    match retries::insert(&tx, row, retry)? {
                        Some(next) => Some(next),
                        // An id collision: roll back, try again.
                        None => continue,
                    }
                }
                _ => None,
            };
            tx.commit()
                .map_err(Error::storage("committing an outcome"))?;
            return Ok((t, next));
        }
        Err(Error::Storage {
            doing: "choosing an execution id",
            source: "eight random ids in a row were taken".into(),
        })
    }

    fn next_attempt(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        retries::next(&self.conn, id)
    }

    fn adopt(
        &self,
        id: &ExecutionId,
        from: &ProcessIdentity,
        to: &ProcessIdentity,
    ) -> Result<Transition> {
        let tx = self.write()?;
        let t = retries::adopt(&tx, id, from, to)?;
        tx.commit()
            .map_err(Error::storage("committing an adoption"))?;
        Ok(t)
    }

    fn run_spec(&self, id: &ExecutionId) -> Result<Option<String>> {
        retries::run_spec(&self.conn, id)
    }

    fn request_kill(&self, id: &ExecutionId, k: &KillRequest) -> Result<Execution> {
        let tx = self.write()?;
        let row = tx
            .query_row(
                &format!(
                    "UPDATE executions SET kill_requested_at = COALESCE(kill_requested_at, ?2), \
                     kill_requested_by = COALESCE(kill_requested_by, ?3), \
                     kill_request_reason = COALESCE(kill_request_reason, ?4), \
                     kill_request_force = MAX(COALESCE(kill_request_force, 0), ?5), \
                     kill_request_grace_ms = COALESCE(?6, kill_request_grace_ms), version = version + 1 \
                     WHERE id = ?1 AND status IN ('queued','running') RETURNING {COLS}"
                ),
                params![id.as_str(), now_ms(), k.actor.to_string(), k.reason, k.force as i64, k.grace_ms.map(|v| v as i64)],
                row_to_execution,
            )
            .optional()
            .map_err(Error::storage("recording a kill request"))?;
        let e = match row {
            Some(e) => {
                insert_event(
                    &tx,
                    id.as_str(),
                    EventKind::KillRequested,
                    &k.actor,
                    &json!({ "reason": k.reason, "force": k.force, "grace_ms": k.grace_ms }),
                )?;
                e
            }
            None => get_in(&tx, id.as_str())?.ok_or_else(|| Error::NotFound(id.to_string()))?,
        };
        tx.commit()
            .map_err(Error::storage("committing a kill request"))?;
        Ok(e)
    }

    fn heartbeat(&self, id: &ExecutionId, progress: Option<&str>) -> Result<Execution> {
        let tx = self.write()?;
        let row = tx
            .query_row(
                &format!(
                    "UPDATE executions SET last_heartbeat_at = ?2, progress = COALESCE(?3, progress) \
                     WHERE id = ?1 AND status = 'running' RETURNING {COLS}"
                ),
                params![id.as_str(), now_ms(), progress],
                row_to_execution,
            )
            .optional()
            .map_err(Error::storage("recording a heartbeat"))?;
        let e = match row {
            Some(e) => e,
            None => get_in(&tx, id.as_str())?.ok_or_else(|| Error::NotFound(id.to_string()))?,
        };
        tx.commit()
            .map_err(Error::storage("committing a heartbeat"))?;
        Ok(e)
    }

    fn get(&self, id: &ExecutionId) -> Result<Execution> {
        get_in(&self.conn, id.as_str())?.ok_or_else(|| Error::NotFound(id.to_string()))
    }

    fn resolve(&self, prefix: &str) -> Result<Execution> {
        let prefix = ExecutionId::check_prefix(prefix)?;
        // The prefix is base36 only (checked above), so it holds no GLOB
        // metacharacters, and GLOB with a literal prefix uses the primary key.
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM executions WHERE id GLOB ?1 || '*' ORDER BY id LIMIT 11"
            ))
            .map_err(Error::storage("resolving an id"))?;
        let mut rows: Vec<Execution> = stmt
            .query_map([prefix], row_to_execution)
            .and_then(|rows| rows.collect())
            .map_err(Error::storage("resolving an id"))?;
        match rows.len() {
            0 => Err(Error::NotFound(prefix.to_string())),
            1 => Ok(rows.remove(0)),
            _ => Err(Error::Ambiguous {
                prefix: prefix.to_string(),
                candidates: rows.iter().take(10).map(|e| e.id.to_string()).collect(),
            }),
        }
    }

    fn list(&self, f: &Filter) -> Result<Vec<Execution>> {
        let (filter, args) = where_clause(f);
        let mut sql = format!("SELECT {COLS} FROM executions WHERE {filter}");
        sql += " ORDER BY created_at DESC, rowid DESC";
        match (f.limit, f.offset) {
            (Some(limit), Some(offset)) => sql += &format!(" LIMIT {limit} OFFSET {offset}"),
            (Some(limit), None) => sql += &format!(" LIMIT {limit}"),
            (None, Some(offset)) => sql += &format!(" LIMIT -1 OFFSET {offset}"),
            (None, None) => {}
        }
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(Error::storage("listing executions"))?;
        stmt.query_map(rusqlite::params_from_iter(args), row_to_execution)
            .and_then(|rows| rows.collect())
            .map_err(Error::storage("listing executions"))
    }

    fn prune(&self, before_ms: i64, keep_last: u32, dry_run: bool) -> Result<Vec<Execution>> {
        self.prune_rows(before_ms, keep_last, dry_run)
    }

    fn stats(&self, since_ms: Option<i64>, name: Option<&str>) -> Result<tend_model::wire::Stats> {
        crate::sqlite_stats::stats(&self.conn, since_ms, name)
    }

    fn count(&self, f: &Filter) -> Result<u64> {
        let (filter, args) = where_clause(f);
        let sql = format!("SELECT COUNT(*) FROM executions WHERE {filter}");
        self.conn
            .query_row(&sql, rusqlite::params_from_iter(args), |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(Error::storage("counting executions"))
    }

    fn live(&self) -> Result<Vec<Execution>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM executions WHERE status IN ('queued','running')"
            ))
            .map_err(Error::storage("reading live executions"))?;
        // Sorted here rather than by SQLite, which would build a temporary
        // B-tree for the ORDER BY over a partial index.
        let mut rows: Vec<Execution> = stmt
            .query_map([], row_to_execution)
            .and_then(|rows| rows.collect())
            .map_err(Error::storage("reading live executions"))?;
        rows.sort_by_key(|e| e.created_at);
        Ok(rows)
    }

    fn by_key(&self, key: &str) -> Result<Option<Execution>> {
        by_key_in(&self.conn, key)
    }

    fn summary(&self, since_ms: Option<i64>, long_running_before: i64) -> Result<Summary> {
        let since = since_ms.unwrap_or(i64::MIN);
        let doing = Error::storage;
        let mut out = Summary::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT status, count(*) FROM executions WHERE created_at >= ?1 GROUP BY status",
            )
            .map_err(doing("summarising"))?;
        let rows: Vec<(String, i64)> = stmt
            .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|r| r.collect())
            .map_err(doing("summarising"))?;
        out.by_status = rows
            .into_iter()
            .filter_map(|(s, n)| Some((s.parse().ok()?, n as u64)))
            .collect();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(reason, ''), count(*) FROM executions \
                 WHERE status = 'lost' AND created_at >= ?1 GROUP BY reason ORDER BY 2 DESC LIMIT 50",
            )
            .map_err(doing("summarising"))?;
        out.lost_by_reason = stmt
            .query_map([since], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .and_then(|r| r.collect())
            .map_err(doing("summarising"))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kill_method, count(*) FROM executions \
                 WHERE kill_method IS NOT NULL AND created_at >= ?1 GROUP BY kill_method",
            )
            .map_err(doing("summarising"))?;
        let rows: Vec<(String, i64)> = stmt
            .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|r| r.collect())
            .map_err(doing("summarising"))?;
        out.kills_by_method = rows
            .into_iter()
            .filter_map(|(m, n)| Some((KillMethod::parse(&m)?, n as u64)))
            .collect();
        let buckets: Vec<String> = crate::KILL_BUCKETS_MS
            .iter()
            .map(|b| format!("COALESCE(SUM(kill_duration_ms <= {b}), 0)"))
            .collect();
        let sql = format!(
            "SELECT COALESCE(SUM(kill_duration_ms), 0), {}, \
             (SELECT count(*) FROM executions WHERE started_at IS NOT NULL AND created_at >= ?1), \
             (SELECT count(*) FROM executions WHERE status = 'running' AND started_at < ?2) \
             FROM executions WHERE kill_duration_ms IS NOT NULL AND created_at >= ?1",
            buckets.join(", ")
        );
        self.conn
            .query_row(&sql, params![since, long_running_before], |r| {
                out.kill_duration_sum_ms = r.get::<_, i64>(0)? as u64;
                for (i, b) in crate::KILL_BUCKETS_MS.iter().enumerate() {
                    out.kill_duration_le
                        .push((*b, r.get::<_, i64>(i + 1)? as u64));
                }
                out.started = r.get::<_, i64>(crate::KILL_BUCKETS_MS.len() + 1)? as u64;
                out.long_running = r.get::<_, i64>(crate::KILL_BUCKETS_MS.len() + 2)? as u64;
                Ok(())
            })
            .map_err(doing("summarising"))?;
        Ok(out)
    }

    fn events(&self, id: &ExecutionId) -> Result<Vec<Event>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, execution_id, at, kind, actor, details FROM events \
                 WHERE execution_id = ?1 ORDER BY seq",
            )
            .map_err(Error::storage("reading events"))?;
        stmt.query_map([id.as_str()], |r| {
            let details: String = r.get(5)?;
            Ok(Event {
                seq: r.get(0)?,
                execution_id: id.clone(),
                at: r.get(2)?,
                kind: r.get(3)?,
                actor: r.get(4)?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(Error::storage("reading events"))
    }

    fn record(
        &self,
        id: &ExecutionId,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()> {
        let tx = self.write()?;
        insert_event(&tx, id.as_str(), kind, actor, &details)?;
        tx.commit().map_err(Error::storage("committing an event"))
    }

    fn add_job(&self, def: &JobDefinition, replace: bool) -> Result<Job> {
        let tx = self.write()?;
        let job = jobs::add(&tx, def, replace)?;
        tx.commit().map_err(Error::storage("committing a job"))?;
        Ok(job)
    }

    fn job(&self, name: &str) -> Result<Job> {
        jobs::get(&self.conn, name)?.ok_or_else(|| Error::NoJob(name.to_string()))
    }

    fn jobs(&self) -> Result<Vec<Job>> {
        jobs::all(&self.conn)
    }

    fn remove_job(&self, name: &str) -> Result<Job> {
        let tx = self.write()?;
        let job = jobs::get(&tx, name)?.ok_or_else(|| Error::NoJob(name.to_string()))?;
        tx.execute("DELETE FROM jobs WHERE name = ?1", [name])
            .map_err(Error::storage("removing a job"))?;
        tx.commit()
            .map_err(Error::storage("committing a job's removal"))?;
        Ok(job)
    }

    fn set_paused(&self, name: &str, paused: bool) -> Result<Job> {
        let tx = self.write()?;
        jobs::set_paused(&tx, name, paused)?;
        let job = jobs::get(&tx, name)?.ok_or_else(|| Error::NoJob(name.to_string()))?;
        tx.commit().map_err(Error::storage("committing a pause"))?;
        Ok(job)
    }

    fn claim_fire(&self, job: &str, at: i64, by: &str, outcome: FireOutcome) -> Result<Claim> {
        let tx = self.write()?;
        let claim = jobs::claim(&tx, job, at, by, outcome)?;
        tx.commit().map_err(Error::storage("committing a fire"))?;
        Ok(claim)
    }

    fn left_workspaces(&self) -> Result<Vec<crate::LeftWorkspace>> {
        workspaces::left(&self.conn)
    }

    fn workspace_cleaned(&self, path: &str, branch_kept: bool) -> Result<()> {
        workspaces::cleaned(&self.conn, path, branch_kept)
    }

    fn unlaunched_fire(&self, job: &str, by: &str, since_ms: i64) -> Result<Option<i64>> {
        jobs::unlaunched_fire(&self.conn, job, by, since_ms)
    }

    fn last_fire(&self, job: &str) -> Result<Option<i64>> {
        jobs::last_fire(&self.conn, job)
    }

    fn record_job(
        &self,
        job: &str,
        kind: EventKind,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<()> {
        let tx = self.write()?;
        jobs::insert_event(&tx, job, kind, actor, &details)?;
        tx.commit()
            .map_err(Error::storage("committing a job event"))
    }

    fn job_events(&self, job: &str) -> Result<Vec<JobEvent>> {
        jobs::events(&self.conn, job)
    }

    fn fire_stats(&self, since_ms: Option<i64>) -> Result<Vec<FireStats>> {
        jobs::stats(&self.conn, since_ms.unwrap_or(i64::MIN))
    }

    fn set_alert_level(
        &self,
        name: &str,
        level: &str,
        quiet: &str,
        kind: tend_model::AlertKind,
        details: serde_json::Value,
    ) -> Result<bool> {
        // Most calls change nothing: say so without taking the write lock.
        if alerts::stored_level(&self.conn, name)?.as_deref() == Some(level) {
            return Ok(false);
        }
        let tx = self.write()?;
        let queued = alerts::set_level(&tx, name, level, quiet, kind, &details)?;
        tx.commit()
            .map_err(Error::storage("committing an alert level"))?;
        Ok(queued)
    }

    fn claim_alerts(&self, by: &str, lease_ms: i64, limit: u32) -> Result<Vec<Alert>> {
        let tx = self.write()?;
        let claimed = alerts::claim(&tx, by, lease_ms, limit)?;
        tx.commit().map_err(Error::storage("committing a claim"))?;
        Ok(claimed)
    }

    fn release_alerts(&self, by: &str) -> Result<u64> {
        let tx = self.write()?;
        let n = alerts::release(&tx, by)?;
        tx.commit()
            .map_err(Error::storage("committing a release"))?;
        Ok(n)
    }

    fn finish_alert(&self, id: i64, by: &str, outcome: &AlertOutcome) -> Result<bool> {
        let tx = self.write()?;
        let done = alerts::finish(&tx, id, by, outcome)?;
        tx.commit().map_err(Error::storage("committing an alert"))?;
        Ok(done)
    }

    fn next_alert_at(&self) -> Result<Option<i64>> {
        alerts::next_at(&self.conn)
    }

    fn alert_counts(&self, failed_since_ms: i64) -> Result<AlertCounts> {
        alerts::counts(&self.conn, failed_since_ms)
    }

    fn prune_alerts(&self, before_ms: i64) -> Result<u64> {
        self.prune_alert_rows(before_ms)
    }
}

fn merge(into: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(into), Some(extra)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            into.insert(k.clone(), v.clone());
        }
    }
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("ledger_id", &self.ledger_id)
            .finish()
    }
}

/// The `WHERE` of a [`Filter`] (paging aside) and its arguments, shared by
/// `list` and `count` so that a count is of exactly what a list shows.
fn where_clause(f: &Filter) -> (String, Vec<Value>) {
    let mut sql = String::from("1");
    let mut args: Vec<Value> = Vec::new();
    if !f.statuses.is_empty() {
        let marks: Vec<String> = f
            .statuses
            .iter()
            .map(|s| {
                args.push(Value::Text(s.as_str().to_string()));
                format!("?{}", args.len())
            })
            .collect();
        sql += &format!(" AND status IN ({})", marks.join(","));
    }
    if let Some(name) = &f.name {
        args.push(Value::Text(name.clone()));
        sql += &format!(" AND name GLOB ?{}", args.len());
    }
    for (k, v) in &f.labels {
        args.push(Value::Text(k.clone()));
        args.push(Value::Text(v.clone()));
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ?{} AND value = ?{})",
            args.len() - 1,
            args.len()
        );
    }
    if let Some(since) = f.since_ms {
        args.push(Value::Integer(since));
        sql += &format!(" AND created_at >= ?{}", args.len());
    }
    if let Some(job) = &f.job {
        args.push(Value::Text(job.clone()));
        sql += &format!(" AND job = ?{}", args.len());
    }
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("t.db")).unwrap();
        for id in ["abcd0001", "abcd0002", "abce0003"] {
            l.conn
                .execute(
                    "INSERT INTO executions (id, name, command, cwd, env, labels, status, created_at, host, \
                     tier, sup_boot_id, sup_pid, sup_start_time, kill_grace_ms, stdout_path, stderr_path) \
                     VALUES (?1, 'n', '[]', '/', '{}', '{}', 'queued', 0, 'h', 'session', 'b', 1, 1, 0, '', '')",
                    [id],
                )
                .unwrap();
        }
        match l.resolve("abcd") {
            Err(Error::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates, ["abcd0001", "abcd0002"])
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        assert_eq!(l.resolve("abce").unwrap().id.as_str(), "abce0003");
        assert_eq!(l.resolve("abcd0002").unwrap().id.as_str(), "abcd0002");
    }

    // Issue 9: concurrent first use of a fresh file failed at once with
    // "database is locked" (the WAL switch does not wait on the busy timeout).
    #[test]
    fn concurrent_first_opens_all_succeed_with_one_ledger_id() {
        for round in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(12));
            let threads: Vec<_> = (0..12)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteLedger::open(&path).map(|l| l.ledger_id().to_string())
                    })
                })
                .collect();
            let ids: std::collections::HashSet<String> = threads
                .into_iter()
                .map(|t| match t.join().unwrap() {
                    Ok(id) => id,
                    Err(e) => panic!("round {round}: {e}"),
                })
                .collect();
            assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
        }
    }

    #[test]
    fn a_copied_file_takes_a_new_id_and_ends_its_live_rows_without_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let (orig, copy) = (dir.path().join("a.db"), dir.path().join("b.db"));
        let l = SqliteLedger::open(&orig).unwrap();
        l.conn
            .execute(
                "INSERT INTO executions (id, name, command, cwd, env, labels, status, created_at, host, \
                 tier, sup_boot_id, sup_pid, sup_start_time, kill_grace_ms, stdout_path, stderr_path) \
                 VALUES ('live0001', 'n', '[]', '/', '{}', '{}', 'queued', 0, 'h', 'session', 'b', 1, 1, 0, '', '')",
                [],
            )
            .unwrap();
        l.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let id = l.ledger_id().to_string();
        drop(l);
        std::fs::copy(&orig, &copy).unwrap();
        let c = SqliteLedger::open(&copy).unwrap();
        assert_eq!(c.copied_from(), Some(id.as_str()));
        assert_ne!(c.ledger_id(), id);
        let e = c.get(&ExecutionId::parse("live0001").unwrap()).unwrap();
        assert_eq!(e.status, Status::Lost);
        assert!(e.reason.unwrap().contains("copied"));
        // Its alerts, the copied rows' too, are the original's to send.
        assert_eq!(c.alert_counts(0).unwrap().queued, 0);
        let skipped: i64 = c
            .conn
            .query_row(
                "SELECT count(*) FROM alerts WHERE state = 'skipped'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(skipped, 1);
        drop(c);
        // Said once; the original is untouched.
        assert_eq!(SqliteLedger::open(&copy).unwrap().copied_from(), None);
        let o = SqliteLedger::open(&orig).unwrap();
        assert_eq!((o.copied_from(), o.ledger_id()), (None, id.as_str()));
        assert_eq!(
            o.get(&ExecutionId::parse("live0001").unwrap())
                .unwrap()
                .status,
            Status::Queued
        );
    }

    #[test]
    fn a_file_replaced_in_place_stays_the_same_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let (db, backup) = (dir.path().join("t.db"), dir.path().join("backup.db"));
        let l = SqliteLedger::open(&db).unwrap();
        l.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let id = l.ledger_id().to_string();
        drop(l);
        std::fs::copy(&db, &backup).unwrap();
        // A restore: the backup moved over the original (a new inode).
        std::fs::rename(&backup, &db).unwrap();
        let r = SqliteLedger::open(&db).unwrap();
        assert_eq!((r.copied_from(), r.ledger_id()), (None, id.as_str()));
    }
}
