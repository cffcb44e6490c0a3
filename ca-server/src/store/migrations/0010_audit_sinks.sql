-- Each audit sink's delivery position in the audit trail. The append-only,
-- seq-ordered audit_events table is the sinks' outbox: a sink has delivered
-- every event up to delivered_through, and retries the next one after a failure.

CREATE TABLE audit_sink_cursors (
    sink              TEXT    PRIMARY KEY,
    delivered_through INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    last_error        TEXT
) STRICT;
