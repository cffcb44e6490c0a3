-- Issue 17: on-call approvals and ticket checks.

-- The verified email of an OpenID Connect identity, from its most recent
-- login whose ID token or userinfo said `email_verified: true`. A login
-- without a verified email deletes the row: on-call providers match people
-- by email, and only an address the identity provider vouches for counts.
CREATE TABLE identity_emails (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    email      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;

-- An approval made by an on-call check, recorded against the content hash
-- of the request it approved (like a person's approval). Its request keeps
-- `path = 'stages'` (the column's CHECK is older than on-call approvals):
-- this row is what makes it an on-call approval.
CREATE TABLE automated_approvals (
    request_id   TEXT PRIMARY KEY REFERENCES requests (id),
    source       TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    at           TEXT NOT NULL,
    content_hash TEXT NOT NULL
) STRICT;

-- What the on-call and ticket checks found at submission, shown on the
-- request page and in the API view.
CREATE TABLE integration_checks (
    request_id TEXT    NOT NULL REFERENCES requests (id),
    position   INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('on_call', 'ticket')),
    provider   TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    answer_id  TEXT,
    at         TEXT    NOT NULL,
    PRIMARY KEY (request_id, position)
) STRICT;
