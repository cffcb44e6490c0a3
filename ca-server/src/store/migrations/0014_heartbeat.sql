-- The write probe of /healthz: one row, rewritten every few seconds.
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    beat_at TEXT NOT NULL,
    beats INTEGER NOT NULL
);
