-- Alerts: a durable outbox, filled in the same transaction as what causes
-- each alert (by triggers, so that no writer can forget one), emptied by
-- whichever daemon claims a row; and the last level of the alerts that
-- fire on a change of level (long-running, health).
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN
                     ('lost','timed_out','failed','long_running','fire_missed','health')),
    execution_id TEXT,                            -- no foreign key: the alert outlives a prune
    job          TEXT,
    details      TEXT NOT NULL,                   -- JSON object, taken when it was queued
    created_at   INTEGER NOT NULL,                -- ms since the Unix epoch
    state        TEXT NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued','delivered','failed','skipped')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,                -- not tried before this
    claimed_by   TEXT,                            -- agent id of the sender holding it
    claim_until  INTEGER,                         -- nobody else takes it before this
    delivered_to TEXT NOT NULL DEFAULT '[]',      -- JSON array: hashes of webhooks that took it
    last_error   TEXT,
    done_at      INTEGER
) STRICT;
CREATE INDEX alerts_due ON alerts (next_at) WHERE state = 'queued';
CREATE INDEX alerts_created ON alerts (created_at);

-- One row per level alert: the level last queued, so that a change is
-- queued once, whichever daemon sees it first.
CREATE TABLE alert_levels (
    name       TEXT PRIMARY KEY,
    level      TEXT NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

-- An execution that ends lost, timed out or failed queues its alert in the
-- transaction that records the outcome.
CREATE TRIGGER executions_alert
AFTER UPDATE OF status ON executions
WHEN NEW.status <> OLD.status AND NEW.status IN ('lost','timed_out','failed')
    -- An attempt that a retry follows is not the run's end: only the last
    -- failing attempt alerts (a lost one always does).
    AND NOT (NEW.status IN ('timed_out','failed') AND COALESCE(NEW.attempt, 1) <= NEW.retries)
BEGIN
    INSERT INTO alerts (kind, execution_id, job, details, created_at, next_at)
    VALUES (NEW.status, NEW.id, NEW.job,
        json_object('id', NEW.id, 'name', NEW.name, 'status', NEW.status,
            'reason', NEW.reason, 'exit_code', NEW.exit_code, 'signal', NEW.signal,
            'job', NEW.job, 'job_number', NEW.job_number, 'attempt', NEW.attempt,
            'host', NEW.host, 'started_at', NEW.started_at, 'finished_at', NEW.finished_at),
        COALESCE(NEW.finished_at, CAST(unixepoch('subsec') * 1000 AS INTEGER)),
        COALESCE(NEW.finished_at, CAST(unixepoch('subsec') * 1000 AS INTEGER)));
END;

-- A schedule's missed fires queue their alert with the job event that
-- records them.
CREATE TRIGGER job_events_alert
AFTER INSERT ON job_events
WHEN NEW.kind = 'fire-missed'
BEGIN
    INSERT INTO alerts (kind, job, details, created_at, next_at)
    VALUES ('fire_missed', NEW.job, NEW.details, NEW.at, NEW.at);
END;
