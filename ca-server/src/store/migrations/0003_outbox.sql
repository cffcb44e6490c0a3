-- Notifications to deliver (webhooks), written in the same transaction as the
-- change they announce, and each sink's delivery position.

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY,
    created_at TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL
) STRICT;

CREATE TABLE outbox_cursors (
    sink              TEXT    PRIMARY KEY,
    delivered_through INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    last_error        TEXT
) STRICT;
