-- `tpa-ssh login --no-browser`: device-authorization logins (RFC 8628
-- style). The device code the CLI polls with and the short user code a
-- person types are stored as SHA-256 only. Rows stay an hour past their
-- expiry so that a late poll is told "expired", then are deleted.

CREATE TABLE device_logins (
    device_hash     TEXT PRIMARY KEY,
    user_code_hash  TEXT NOT NULL UNIQUE,
    client_source   TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    interval_secs   INTEGER NOT NULL,
    last_poll_at    TEXT,
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'done')),
    decided_at      TEXT,
    issuer          TEXT,
    subject         TEXT,
    username        TEXT,
    groups          TEXT
) STRICT;

CREATE INDEX device_logins_expires_at ON device_logins (expires_at);
