-- Version 6: retries. Each attempt is an execution of its own; a retry is
-- recorded `queued` in the transaction that ends the attempt before it, so
-- a crash during the backoff never loses it.
ALTER TABLE executions ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;  -- attempts after the first, at most
ALTER TABLE executions ADD COLUMN retry_backoff_ms INTEGER;
ALTER TABLE executions ADD COLUMN retry_max_backoff_ms INTEGER;
ALTER TABLE executions ADD COLUMN retry_of TEXT;       -- the attempt before this one
ALTER TABLE executions ADD COLUMN start_after INTEGER; -- a pending attempt starts no earlier (ms)
-- What a supervisor needs to start the attempt when the one that scheduled
-- it is gone (the daemon adopts it): the run's RunSpec as JSON.
ALTER TABLE executions ADD COLUMN run_spec TEXT;
-- At most one next attempt per attempt.
CREATE UNIQUE INDEX executions_retry_of ON executions (retry_of) WHERE retry_of IS NOT NULL;

-- The fire of a job that an execution was started for (its nominal
-- instant, ms): recorded with the execution, so a fire decided but not
-- launched (a daemon killed in between) is found and started, and no fire
-- is ever launched twice. Retries do not copy it.
ALTER TABLE executions ADD COLUMN job_slot INTEGER;
CREATE UNIQUE INDEX executions_job_slot ON executions (job, job_slot) WHERE job_slot IS NOT NULL;
