-- Version 8, the whole ledger at once: no PostgreSQL ledger predates it, so
-- the SQLite history (migrations/sqlite/0001..0008) is folded into this one
-- file, and the version numbers of the two backends mean the same schema.
-- Everything lives in the schema `tend`, so that a database shared with
-- other software never sees a name collide. Columns, names and meanings are
-- SQLite's; timestamps are BIGINT milliseconds since the Unix epoch; JSON is
-- kept as the text tend wrote (as in SQLite), cast where SQL reads into it.
CREATE SCHEMA IF NOT EXISTS tend;

CREATE TABLE tend.meta (
    key   TEXT PRIMARY KEY,                     -- schema_version, ledger_id
    value TEXT NOT NULL
);

CREATE TABLE tend.executions (
    id                    TEXT COLLATE "C" PRIMARY KEY, -- byte order: prefixes use the key
    seq                   BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order (SQLite's rowid)
    name                  TEXT NOT NULL,
    command               TEXT NOT NULL,          -- JSON array of argv
    cwd                   TEXT NOT NULL,
    cwd_bytes             BYTEA,                  -- exact bytes, only when cwd is not UTF-8
    env                   TEXT NOT NULL,          -- JSON object, --env extras only
    labels                TEXT NOT NULL,          -- JSON object
    key                   TEXT,
    live_key              TEXT,                   -- = key while it holds the key; NULL once terminal
    status                TEXT NOT NULL CHECK (status IN
                              ('queued','running','succeeded','failed','timed_out','killed','lost','cancelled')),
    reason                TEXT,
    exit_code             INTEGER,
    signal                INTEGER,
    created_at            BIGINT NOT NULL,
    started_at            BIGINT,
    finished_at           BIGINT,
    host                  TEXT NOT NULL,
    tier                  TEXT NOT NULL,
    agent_id              TEXT,
    sup_boot_id           TEXT NOT NULL,
    sup_pid               INTEGER NOT NULL,
    sup_start_time        BIGINT NOT NULL,
    sup_pidfd_ino         BIGINT,
    pid                   INTEGER,
    pid_start_time        BIGINT,
    pid_pidfd_ino         BIGINT,
    timeout_ms            BIGINT,
    kill_grace_ms         BIGINT NOT NULL,
    kill_requested_at     BIGINT,
    kill_requested_by     TEXT,
    kill_request_reason   TEXT,
    kill_request_force    BOOLEAN,
    kill_request_grace_ms BIGINT,
    kill_method           TEXT CHECK (kill_method IN ('graceful','forced','none')),
    kill_duration_ms      BIGINT,
    processes_signalled   BIGINT,
    stdout_path           TEXT NOT NULL,
    stderr_path           TEXT NOT NULL,
    version               BIGINT NOT NULL DEFAULT 0,
    cgroup                TEXT,
    heartbeat_timeout_ms  BIGINT,
    idle_timeout_ms       BIGINT,
    max_memory_bytes      BIGINT,
    last_heartbeat_at     BIGINT,
    progress              TEXT,
    cpu_ms                BIGINT,
    max_rss_bytes         BIGINT,
    job                   TEXT,
    job_number            BIGINT,
    attempt               BIGINT,
    job_slot              BIGINT,                 -- the fire it runs for (nominal instant, ms)
    retries               BIGINT NOT NULL DEFAULT 0,
    retry_backoff_ms      BIGINT,
    retry_max_backoff_ms  BIGINT,
    retry_of              TEXT,                   -- the attempt before this one
    start_after           BIGINT,                 -- a pending attempt starts no earlier (ms)
    run_spec              TEXT,                   -- the RunSpec as JSON, for adoption
    workspace_kind        TEXT,
    workspace_path        TEXT,
    workspace_repo        TEXT,
    workspace_branch      TEXT,
    CHECK (live_key IS NULL OR (live_key = key AND status IN ('queued','running')))
);

-- One live execution per key; releasing it is part of the terminal UPDATE.
CREATE UNIQUE INDEX executions_live_key ON tend.executions (live_key) WHERE live_key IS NOT NULL;
CREATE INDEX executions_key ON tend.executions (key, created_at) WHERE key IS NOT NULL;
CREATE INDEX executions_live ON tend.executions (status) WHERE status IN ('queued','running');
CREATE INDEX executions_created ON tend.executions (created_at, seq);
CREATE INDEX executions_name ON tend.executions (name, created_at);
-- A number (and attempt) of a job names one execution, ever.
CREATE UNIQUE INDEX executions_job_number ON tend.executions (job, job_number, attempt)
    WHERE job IS NOT NULL;
-- At most one next attempt per attempt.
CREATE UNIQUE INDEX executions_retry_of ON tend.executions (retry_of) WHERE retry_of IS NOT NULL;
-- A fire is launched at most once.
CREATE UNIQUE INDEX executions_job_slot ON tend.executions (job, job_slot) WHERE job_slot IS NOT NULL;
CREATE INDEX executions_workspace ON tend.executions (workspace_path) WHERE workspace_path IS NOT NULL;

-- The lifecycle as a database invariant, whoever writes: only the edges of
-- Status::can_become, and a terminal row never changes again.
CREATE FUNCTION tend.executions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status NOT IN ('queued','running') THEN
        RAISE EXCEPTION 'illegal transition: a terminal execution never changes'
            USING ERRCODE = 'check_violation', TABLE = 'executions';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
           (OLD.status = 'queued'  AND NEW.status IN ('running','failed','lost','cancelled'))
        OR (OLD.status = 'running' AND NEW.status IN ('succeeded','failed','timed_out','killed','lost'))) THEN
        RAISE EXCEPTION 'illegal transition: % to %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation', TABLE = 'executions';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER executions_legal_transition BEFORE UPDATE ON tend.executions
    FOR EACH ROW EXECUTE FUNCTION tend.executions_guard();

CREATE TABLE tend.events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id TEXT COLLATE "C" NOT NULL REFERENCES tend.executions (id) ON DELETE CASCADE,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    details      TEXT NOT NULL                  -- JSON object
);
CREATE INDEX events_execution ON tend.events (execution_id, seq);

CREATE FUNCTION tend.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE ON tend.events
    FOR EACH ROW EXECUTE FUNCTION tend.append_only();

-- Stored jobs; the RunOptions template as JSON.
CREATE TABLE tend.jobs (
    name        TEXT COLLATE "C" PRIMARY KEY,
    run         TEXT NOT NULL,
    schedule    TEXT,
    timezone    TEXT NOT NULL,
    concurrency TEXT NOT NULL CHECK (concurrency IN ('allow','forbid','replace')),
    catch_up    TEXT NOT NULL CHECK (catch_up IN ('latest','skip')),
    paused      BOOLEAN NOT NULL DEFAULT false,
    created_at  BIGINT NOT NULL,
    fires_after BIGINT NOT NULL                 -- fires at or before this are not owed
);

-- The per-job counter, apart from `jobs` and never deleted: a number is
-- never handed out twice, not even after `job rm` + `job add`.
CREATE TABLE tend.job_counters (
    job         TEXT PRIMARY KEY,
    next_number BIGINT NOT NULL
);

-- One row per decided fire: the primary key makes a fire happen once.
CREATE TABLE tend.job_fires (
    job          TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    decided_at   BIGINT NOT NULL,
    decided_by   TEXT NOT NULL,                 -- agent id
    outcome      TEXT NOT NULL CHECK (outcome IN ('fired','skipped','missed')),
    PRIMARY KEY (job, scheduled_at)
);

CREATE TABLE tend.job_events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job     TEXT NOT NULL,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    details TEXT NOT NULL                       -- JSON object
);
CREATE INDEX job_events_job ON tend.job_events (job, seq);
CREATE TRIGGER job_events_append_only BEFORE UPDATE ON tend.job_events
    FOR EACH ROW EXECUTE FUNCTION tend.append_only();

-- The alert outbox, filled by the triggers below in the transaction of the
-- cause, emptied by whichever daemon claims a row.
CREATE TABLE tend.alerts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN
                     ('lost','timed_out','failed','long_running','fire_missed','health')),
    execution_id TEXT,                          -- no foreign key: the alert outlives a prune
    job          TEXT,
    details      TEXT NOT NULL,                 -- JSON object, taken when it was queued
    created_at   BIGINT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued','delivered','failed','skipped')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    claimed_by   TEXT,
    claim_until  BIGINT,
    delivered_to TEXT NOT NULL DEFAULT '[]',    -- JSON array
    last_error   TEXT,
    done_at      BIGINT
);
CREATE INDEX alerts_due ON tend.alerts (next_at) WHERE state = 'queued';
CREATE INDEX alerts_created ON tend.alerts (created_at);

CREATE TABLE tend.alert_levels (
    name       TEXT PRIMARY KEY,
    level      TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);

-- An execution that ends lost, timed out or failed queues its alert in the
-- transaction that records the outcome; an attempt that a retry follows is
-- not the run's end (a lost one always alerts).
CREATE FUNCTION tend.executions_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    at BIGINT := COALESCE(NEW.finished_at, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('lost','timed_out','failed')
       AND NOT (NEW.status IN ('timed_out','failed') AND COALESCE(NEW.attempt, 1) <= NEW.retries) THEN
        INSERT INTO tend.alerts (kind, execution_id, job, details, created_at, next_at)
        VALUES (NEW.status, NEW.id, NEW.job,
            json_build_object('id', NEW.id, 'name', NEW.name, 'status', NEW.status,
                'reason', NEW.reason, 'exit_code', NEW.exit_code, 'signal', NEW.signal,
                'job', NEW.job, 'job_number', NEW.job_number, 'attempt', NEW.attempt,
                'host', NEW.host, 'started_at', NEW.started_at,
                'finished_at', NEW.finished_at)::TEXT,
            at, at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER executions_alert AFTER UPDATE OF status ON tend.executions
    FOR EACH ROW EXECUTE FUNCTION tend.executions_alert();

-- A schedule's missed fires queue their alert with the job event that
-- records them.
CREATE FUNCTION tend.job_events_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'fire-missed' THEN
        INSERT INTO tend.alerts (kind, job, details, created_at, next_at)
        VALUES ('fire_missed', NEW.job, NEW.details, NEW.at, NEW.at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER job_events_alert AFTER INSERT ON tend.job_events
    FOR EACH ROW EXECUTE FUNCTION tend.job_events_alert();

-- Every workspace tend made, kept until it is cleaned up (it outlives the
-- rows of the executions that used it).
CREATE TABLE tend.workspaces (
    path             TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('tmp','worktree')),
    repository       TEXT,
    branch           TEXT,
    execution_id     TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    worktree_removed BOOLEAN NOT NULL DEFAULT false
);
