-- Version 11: wake-ups across hosts. Every committed change of status, and
-- every kill request of a live execution, is NOTIFYed in the transaction
-- that makes it, whoever writes (a supervisor, a reaper, raw SQL): NOTIFY
-- is delivered at commit and dropped with a rollback, so a listener never
-- hears of a transition that did not happen.
--   tend_transition: '<execution id> <new status>'
--   tend_kill:       '<execution id> <agent id of the row, or empty>'
-- A notification is only a wake-up; the ledger stays the truth.
CREATE FUNCTION tend.executions_notify_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tend_transition', NEW.id || ' ' || NEW.status);
    RETURN NULL;
END $$;

CREATE TRIGGER executions_notify_created AFTER INSERT ON tend.executions
    FOR EACH ROW EXECUTE FUNCTION tend.executions_notify_transition();
CREATE TRIGGER executions_notify_transition AFTER UPDATE OF status ON tend.executions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tend.executions_notify_transition();

CREATE FUNCTION tend.executions_notify_kill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tend_kill', NEW.id || ' ' || COALESCE(NEW.agent_id, ''));
    RETURN NULL;
END $$;

CREATE TRIGGER executions_notify_kill AFTER UPDATE OF kill_requested_at ON tend.executions
    FOR EACH ROW WHEN (NEW.kill_requested_at IS NOT NULL AND NEW.status IN ('queued', 'running'))
    EXECUTE FUNCTION tend.executions_notify_kill();
