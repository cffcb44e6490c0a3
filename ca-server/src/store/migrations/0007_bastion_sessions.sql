-- Session records delivered by bastions: one row per forwarded channel. The
-- bastion's random session id is the key, so a redelivered record is a no-op.

CREATE TABLE bastion_sessions (
    session_id        TEXT    PRIMARY KEY,
    bastion           TEXT    NOT NULL,
    request_id        TEXT    NOT NULL,
    serial            TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    login             TEXT    NOT NULL,
    requester         TEXT    NOT NULL,
    source            TEXT    NOT NULL,
    target            TEXT    NOT NULL,
    target_address    TEXT    NOT NULL,
    started_at        TEXT    NOT NULL,
    ended_at          TEXT    NOT NULL,
    bytes_to_target   INTEGER NOT NULL CHECK (bytes_to_target >= 0),
    bytes_from_target INTEGER NOT NULL CHECK (bytes_from_target >= 0),
    end_reason        TEXT    NOT NULL,
    error             TEXT,
    received_at       TEXT    NOT NULL,
    audit_seq         INTEGER NOT NULL UNIQUE REFERENCES audit_events (seq)
) STRICT;

CREATE INDEX bastion_sessions_request ON bastion_sessions (request_id, started_at);
