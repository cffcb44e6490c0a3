-- Access requests and their approvals.

CREATE TABLE requests (
    id                 TEXT    PRIMARY KEY,
    requester_issuer   TEXT    NOT NULL,
    requester_subject  TEXT    NOT NULL,
    requester_username TEXT    NOT NULL,
    role               TEXT    NOT NULL,
    hosts              TEXT    NOT NULL,
    duration_secs      INTEGER NOT NULL CHECK (duration_secs > 0),
    reason             TEXT    NOT NULL,
    ticket             TEXT,
    start_at           TEXT,
    path               TEXT    NOT NULL CHECK (path IN ('auto', 'stages', 'break_glass')),
    created_at         TEXT    NOT NULL,
    pending_until      TEXT    NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled', 'revoked')),
    window_start       TEXT,
    window_end         TEXT,
    decided_by_issuer  TEXT,
    decided_by_subject TEXT,
    comment            TEXT,
    updated_at         TEXT    NOT NULL
) STRICT;

CREATE INDEX requests_requester ON requests (requester_issuer, requester_subject, state);
CREATE INDEX requests_state ON requests (state, pending_until);

CREATE TABLE approvals (
    request_id        TEXT    NOT NULL REFERENCES requests (id),
    position          INTEGER NOT NULL,
    approver_issuer   TEXT    NOT NULL,
    approver_subject  TEXT    NOT NULL,
    approver_username TEXT    NOT NULL,
    stage             INTEGER NOT NULL,
    at                TEXT    NOT NULL,
    content_hash      TEXT    NOT NULL,
    PRIMARY KEY (request_id, position),
    UNIQUE (request_id, approver_issuer, approver_subject)
) STRICT;
