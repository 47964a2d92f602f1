-- Version 9 (as on SQLite): `stats` scans a covering index instead of the
-- rows, and `lost` reasons come from a small partial index.
CREATE INDEX executions_stats ON tend.executions (created_at, status, name, started_at, finished_at);
CREATE INDEX executions_lost ON tend.executions (created_at, reason) WHERE status = 'lost';
