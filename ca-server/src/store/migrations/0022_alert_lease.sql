-- Issue 15: the alert evaluator's lease, so that with several replicas one
-- evaluates the audit trail at a time (each event once, no alert queued
-- twice) and another takes over when the holder dies and its lease runs out.
ALTER TABLE alert_cursor ADD COLUMN lease_owner TEXT;
ALTER TABLE alert_cursor ADD COLUMN lease_until TEXT;
