-- Issue 15: a delivery lease per sink cursor, so that with several replicas
-- one delivers a sink at a time (in order, each item once when all goes
-- well) and another takes over when the holder dies and its lease runs out.
ALTER TABLE outbox_cursors ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox_cursors ADD COLUMN lease_until TEXT;
ALTER TABLE audit_sink_cursors ADD COLUMN lease_owner TEXT;
ALTER TABLE audit_sink_cursors ADD COLUMN lease_until TEXT;
