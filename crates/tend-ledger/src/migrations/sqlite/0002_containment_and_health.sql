-- Version 2: containment (the cgroup of an execution), health timeouts
-- (heartbeat, idle, memory), and what the execution used.
ALTER TABLE executions ADD COLUMN cgroup TEXT;
ALTER TABLE executions ADD COLUMN heartbeat_timeout_ms INTEGER;
ALTER TABLE executions ADD COLUMN idle_timeout_ms INTEGER;
ALTER TABLE executions ADD COLUMN max_memory_bytes INTEGER;
ALTER TABLE executions ADD COLUMN last_heartbeat_at INTEGER;
ALTER TABLE executions ADD COLUMN progress TEXT;
ALTER TABLE executions ADD COLUMN cpu_ms INTEGER;
ALTER TABLE executions ADD COLUMN max_rss_bytes INTEGER;
