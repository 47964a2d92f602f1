-- Version 5: stored jobs, their counters, their fires and their events, and
-- the link from an execution to its job.
CREATE TABLE jobs (
    name        TEXT PRIMARY KEY,
    run         TEXT NOT NULL,                    -- RunOptions as JSON: the template
    schedule    TEXT,
    timezone    TEXT NOT NULL,
    concurrency TEXT NOT NULL CHECK (concurrency IN ('allow','forbid','replace')),
    catch_up    TEXT NOT NULL CHECK (catch_up IN ('latest','skip')),
    paused      INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,                 -- ms since the Unix epoch
    fires_after INTEGER NOT NULL                  -- fires at or before this are not owed
) STRICT;

-- The per-job counter, kept apart from `jobs` and never deleted, so that a
-- number is never handed out twice, not even after `job rm` + `job add`.
-- It is advanced in the transaction that records the execution.
CREATE TABLE job_counters (
    job         TEXT PRIMARY KEY,
    next_number INTEGER NOT NULL
) STRICT;

-- One row per decided fire: the primary key is what makes a fire happen
-- once, whichever daemons race for it.
CREATE TABLE job_fires (
    job          TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,                -- the nominal instant, ms
    decided_at   INTEGER NOT NULL,
    decided_by   TEXT NOT NULL,                   -- agent id
    outcome      TEXT NOT NULL CHECK (outcome IN ('fired','skipped','missed')),
    PRIMARY KEY (job, scheduled_at)
) STRICT;

CREATE TABLE job_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    job     TEXT NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    details TEXT NOT NULL                         -- JSON object
) STRICT;
CREATE INDEX job_events_job ON job_events (job, seq);

CREATE TRIGGER job_events_append_only
BEFORE UPDATE ON job_events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

ALTER TABLE executions ADD COLUMN job TEXT;
ALTER TABLE executions ADD COLUMN job_number INTEGER;
ALTER TABLE executions ADD COLUMN attempt INTEGER;
-- A number (and attempt) of a job names one execution, ever.
CREATE UNIQUE INDEX executions_job_number ON executions (job, job_number, attempt)
    WHERE job IS NOT NULL;
