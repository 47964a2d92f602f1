-- Version 1: executions, their append-only events, and ledger metadata.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE executions (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    command             TEXT NOT NULL,            -- JSON array of argv
    cwd                 TEXT NOT NULL,
    env                 TEXT NOT NULL,            -- JSON object, --env extras only
    labels              TEXT NOT NULL,            -- JSON object
    key                 TEXT,
    live_key            TEXT,                     -- = key while it holds the key; NULL once terminal
    status              TEXT NOT NULL CHECK (status IN
                            ('queued','running','succeeded','failed','timed_out','killed','lost','cancelled')),
    reason              TEXT,
    exit_code           INTEGER,
    signal              INTEGER,
    created_at          INTEGER NOT NULL,         -- ms since the Unix epoch
    started_at          INTEGER,
    finished_at         INTEGER,
    host                TEXT NOT NULL,
    tier                TEXT NOT NULL,
    sup_boot_id         TEXT NOT NULL,
    sup_pid             INTEGER NOT NULL,
    sup_start_time      INTEGER NOT NULL,
    sup_pidfd_ino       INTEGER,
    pid                 INTEGER,
    pid_start_time      INTEGER,
    pid_pidfd_ino       INTEGER,
    timeout_ms          INTEGER,
    kill_grace_ms       INTEGER NOT NULL,
    kill_requested_at   INTEGER,
    kill_requested_by   TEXT,
    kill_request_reason TEXT,
    kill_request_force  INTEGER,
    kill_request_grace_ms INTEGER,
    kill_method         TEXT CHECK (kill_method IN ('graceful','forced','none')),
    kill_duration_ms    INTEGER,
    processes_signalled INTEGER,
    stdout_path         TEXT NOT NULL,
    stderr_path         TEXT NOT NULL,
    version             INTEGER NOT NULL DEFAULT 0,
    CHECK (live_key IS NULL OR (live_key = key AND status IN ('queued','running')))
) STRICT;

-- One live execution per key; releasing it is part of the terminal UPDATE.
CREATE UNIQUE INDEX executions_live_key ON executions (live_key) WHERE live_key IS NOT NULL;
CREATE INDEX executions_key ON executions (key, created_at) WHERE key IS NOT NULL;
CREATE INDEX executions_live ON executions (status) WHERE status IN ('queued','running');
CREATE INDEX executions_created ON executions (created_at);
CREATE INDEX executions_name ON executions (name, created_at);

-- The lifecycle as a database invariant: only the edges of Status::can_become,
-- and a terminal row never changes again.
CREATE TRIGGER executions_terminal_is_final
BEFORE UPDATE ON executions
WHEN OLD.status NOT IN ('queued','running')
BEGIN
    SELECT RAISE(ABORT, 'illegal transition: a terminal execution never changes');
END;

CREATE TRIGGER executions_legal_transition
BEFORE UPDATE OF status ON executions
WHEN NEW.status <> OLD.status AND NOT (
       (OLD.status = 'queued'  AND NEW.status IN ('running','failed','lost','cancelled'))
    OR (OLD.status = 'running' AND NEW.status IN ('succeeded','failed','timed_out','killed','lost')))
BEGIN
    SELECT RAISE(ABORT, 'illegal transition');
END;

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    details      TEXT NOT NULL                    -- JSON object
) STRICT;
CREATE INDEX events_execution ON events (execution_id, seq);

CREATE TRIGGER events_append_only
BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
