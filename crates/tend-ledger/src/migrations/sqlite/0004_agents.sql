-- Version 4: the agent (home) that launched each execution, so that a home
-- never acts on another home's executions.
ALTER TABLE executions ADD COLUMN agent_id TEXT;
