-- Issue 15: the alert evaluator's lease on PostgreSQL (SQLite's
-- 0022_alert_lease), so that with several replicas one evaluates the audit
-- trail at a time and another takes over when the holder's lease runs out.
ALTER TABLE alert_cursor ADD COLUMN lease_owner TEXT;
ALTER TABLE alert_cursor ADD COLUMN lease_until TEXT;
