-- Refusal reports delivered by bastions (rejected authentications, refused
-- channels), each also an audit event. The bastion's random event id is the
-- key, so a redelivered report is a no-op.

CREATE TABLE bastion_events (
    event_id    TEXT    PRIMARY KEY,
    bastion     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    request_id  TEXT,
    count       INTEGER NOT NULL CHECK (count >= 1),
    received_at TEXT    NOT NULL,
    audit_seq   INTEGER NOT NULL UNIQUE REFERENCES audit_events (seq)
) STRICT;
