-- Version 10: agent leases on a shared ledger. Each agent's `tend serve`
-- renews its row with one UPDATE per interval, whatever its number of
-- executions; the row is judged by the database clock, so hosts' clocks
-- need not agree. `renewed_at` is the database's clock at the last renewal
-- and `server_started` the server's start time then: after a restart of the
-- database the TTL counts from the restart, so no lease expires because the
-- database was away. `epoch` grows whenever the lease is taken anew (first
-- time, or after it expired); a reaper claims an expired agent's executions
-- under the row's lock and records the epoch it claimed (`claimed_epoch`),
-- so that exactly one verdict is made and a returning agent, which takes a
-- new epoch, never finds its old executions judged twice.
CREATE TABLE tend.agents (
    agent_id       TEXT COLLATE "C" PRIMARY KEY,
    host           TEXT NOT NULL,
    api            TEXT,                          -- published API address, when it serves one
    epoch          BIGINT NOT NULL,
    ttl_ms         BIGINT NOT NULL,               -- the owner's TTL: peers judge by it
    renewed_at     TIMESTAMPTZ NOT NULL,          -- database clock
    server_started TIMESTAMPTZ NOT NULL,          -- pg_postmaster_start_time() at that renewal
    acquired_at    TIMESTAMPTZ NOT NULL,          -- when this epoch began
    renewals       BIGINT NOT NULL DEFAULT 0,     -- writes made, for tests and benchmarks
    claimed_epoch  BIGINT,                        -- the epoch whose executions a reaper marked lost
    claimed_by     TEXT,                          -- that reaper's agent id
    claimed_at     TIMESTAMPTZ
);

-- Whether an agent's lease has lapsed, by the database clock: its TTL after
-- its last renewal, or after the server's restart when the server started
-- since that renewal.
CREATE FUNCTION tend.lease_expired(renewed TIMESTAMPTZ, seen_start TIMESTAMPTZ, ttl_ms BIGINT)
RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT clock_timestamp() > (CASE WHEN seen_start = pg_postmaster_start_time() THEN renewed
                                     ELSE GREATEST(renewed, pg_postmaster_start_time()) END)
                               + ttl_ms * INTERVAL '1 millisecond'
$$;

-- The live executions of one agent, found without a scan of the rest.
CREATE INDEX executions_agent_live ON tend.executions (agent_id) WHERE status IN ('queued','running');
