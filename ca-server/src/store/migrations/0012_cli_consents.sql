-- `tpa-ssh login` (loopback): the identity verified in the browser waits
-- here for the person's Approve or Deny before any one-time code goes to
-- the CLI's loopback listener. A row is bound to one web session (its
-- public id), decided once, and expires within minutes; the id in the
-- consent page's URL is stored as SHA-256 only. Rows are deleted an hour
-- after their expiry.

CREATE TABLE cli_consents (
    id_hash         TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    username        TEXT NOT NULL,
    groups          TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    client_source   TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    decision        TEXT CHECK (decision IN ('approved', 'denied')),
    decided_at      TEXT
) STRICT;

CREATE INDEX cli_consents_expires_at ON cli_consents (expires_at);

-- The address that opened `/cli/login`, shown on the consent page.
ALTER TABLE oidc_logins ADD COLUMN cli_source TEXT;
