-- Version 9: `stats` reads a million rows in a fraction of a second. It
-- scans this covering index (every column it needs, in creation order, so
-- `--since` is a range) instead of the rows, and `lost` reasons come from a
-- small partial index.
CREATE INDEX executions_stats ON executions (created_at, status, name, started_at, finished_at);
CREATE INDEX executions_lost ON executions (created_at, reason) WHERE status = 'lost';
