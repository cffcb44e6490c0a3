-- Issue 17's window-end marker on PostgreSQL (SQLite's 0021_window_end_notices):
-- one row per request whose approved window ended, inserted in the transaction
-- that queues the closing ticket comment; the primary key makes a second pass,
-- a restart or another replica a no-op. `outbox_id` is NULL when the role did
-- not comment at that time.
CREATE TABLE window_end_notices (
    request_id  TEXT    PRIMARY KEY REFERENCES requests (id),
    outbox_id   BIGINT,
    noticed_at  TEXT    NOT NULL
);

-- Windows that had already ended when this migration ran count as noticed:
-- the first pass must not comment on history.
INSERT INTO window_end_notices (request_id, outbox_id, noticed_at)
SELECT id, NULL, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM requests
WHERE state = 'approved' AND window_end IS NOT NULL
  AND window_end <= to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-- The task looks for approved windows that ended recently.
CREATE INDEX requests_approved_window_end ON requests (window_end) WHERE state = 'approved';
