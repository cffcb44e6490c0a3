-- Issue 17: the natural end of an approved request's window, noticed once.
-- The background task that notices ended windows inserts one row per request
-- in the transaction that queues the closing ticket comment; the primary key
-- makes a second pass, a restart or a second replica a no-op (the insert
-- conflicts and nothing more is queued). `outbox_id` is the queued comment,
-- NULL when the role did not comment at that time.
CREATE TABLE window_end_notices (
    request_id  TEXT    PRIMARY KEY REFERENCES requests (id),
    outbox_id   INTEGER,
    noticed_at  TEXT    NOT NULL
) STRICT;

-- Windows that had already ended when this migration ran count as noticed:
-- the first pass must not comment on history.
INSERT INTO window_end_notices (request_id, outbox_id, noticed_at)
SELECT id, NULL, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM requests
WHERE state = 'approved' AND window_end IS NOT NULL
  AND window_end <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- The task looks for approved windows that ended recently.
CREATE INDEX requests_approved_window_end ON requests (window_end) WHERE state = 'approved';
