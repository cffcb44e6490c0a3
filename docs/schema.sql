-- The schema after all migrations, as SQLite reports it. Kept equal to the
-- migrated database by ca-server's store::tests::schema_matches_docs.

CREATE TRIGGER audit_checkpoints_append_only_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_append_only_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_events_append_only_delete
BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_append_only_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER revocations_final_delete BEFORE DELETE ON revocations
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revocations_final_update BEFORE UPDATE ON revocations
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_ca_keys_final_delete BEFORE DELETE ON revoked_ca_keys
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_ca_keys_final_update BEFORE UPDATE ON revoked_ca_keys
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_certificates_final_delete BEFORE DELETE ON revoked_certificates
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_certificates_final_update BEFORE UPDATE ON revoked_certificates
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TABLE alert_cursor (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    evaluated_through INTEGER NOT NULL
, lease_owner TEXT, lease_until TEXT) STRICT;

CREATE TABLE alert_windows (
    rule         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    window_until TEXT    NOT NULL,
    suppressed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, subject)
) STRICT;

CREATE TABLE approvals (
    request_id        TEXT    NOT NULL REFERENCES requests (id),
    position          INTEGER NOT NULL,
    approver_issuer   TEXT    NOT NULL,
    approver_subject  TEXT    NOT NULL,
    approver_username TEXT    NOT NULL,
    stage             INTEGER NOT NULL,
    at                TEXT    NOT NULL,
    content_hash      TEXT    NOT NULL, stage_hash TEXT, group_name TEXT, comment TEXT,
    PRIMARY KEY (request_id, position),
    UNIQUE (request_id, approver_issuer, approver_subject)
) STRICT;

CREATE TABLE audit_checkpoints (
    seq             INTEGER PRIMARY KEY,
    hash            TEXT    NOT NULL,
    time            TEXT    NOT NULL,
    key_fingerprint TEXT    NOT NULL,
    signature       TEXT    NOT NULL
) STRICT;

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    time       TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    object     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
    reason     TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE
) STRICT;

CREATE TABLE audit_sink_cursors (
    sink              TEXT    PRIMARY KEY,
    delivered_through INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    last_error        TEXT
, lease_owner TEXT, lease_until TEXT) STRICT;

CREATE TABLE auth_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('web_session', 'api')),
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    username    TEXT NOT NULL,
    groups      TEXT NOT NULL,
    csrf_token  TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
, device_login INTEGER NOT NULL DEFAULT 0 CHECK (device_login IN (0, 1)), display_name TEXT) STRICT;

CREATE TABLE automated_approvals (
    request_id   TEXT PRIMARY KEY REFERENCES requests (id),
    source       TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    at           TEXT NOT NULL,
    content_hash TEXT NOT NULL
) STRICT;

CREATE TABLE bastion_events (
    event_id    TEXT    PRIMARY KEY,
    bastion     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    request_id  TEXT,
    count       INTEGER NOT NULL CHECK (count >= 1),
    received_at TEXT    NOT NULL,
    audit_seq   INTEGER NOT NULL UNIQUE REFERENCES audit_events (seq)
) STRICT;

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

CREATE TABLE break_glass_reviews (
    request_id           TEXT PRIMARY KEY REFERENCES requests (id),
    reviewed_by_issuer   TEXT,
    reviewed_by_subject  TEXT,
    reviewed_by_username TEXT,
    reviewed_at          TEXT,
    comment              TEXT
) STRICT;

CREATE TABLE certificates (
    serial                  TEXT    PRIMARY KEY,
    key_id                  TEXT    NOT NULL,
    principals              TEXT    NOT NULL,
    extensions              TEXT    NOT NULL,
    critical_options        TEXT    NOT NULL,
    valid_after             INTEGER NOT NULL,
    valid_before            INTEGER NOT NULL,
    subject_key_fingerprint TEXT    NOT NULL,
    ca_key_fingerprint      TEXT    NOT NULL,
    request_id              TEXT,
    issued_by               TEXT    NOT NULL,
    issued_at               TEXT    NOT NULL,
    audit_seq               INTEGER NOT NULL UNIQUE REFERENCES audit_events (seq)
) STRICT;

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

CREATE TABLE cli_login_codes (
    code_hash       TEXT PRIMARY KEY,
    code_challenge  TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    username        TEXT NOT NULL,
    groups          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    used_at         TEXT
, display_name TEXT) STRICT;

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
, display_name TEXT) STRICT;

CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    beat_at TEXT NOT NULL,
    beats INTEGER NOT NULL
);

CREATE TABLE identity_emails (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    email      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;

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

CREATE TABLE krl_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (version >= 0)
) STRICT;

CREATE TABLE oidc_logins (
    state_hash          TEXT PRIMARY KEY,
    browser_hash        TEXT NOT NULL,
    connector           TEXT NOT NULL,
    nonce               TEXT NOT NULL,
    pkce_verifier       TEXT NOT NULL,
    next_path           TEXT NOT NULL,
    cli_redirect_uri    TEXT,
    cli_code_challenge  TEXT,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    used_at             TEXT
, cli_source TEXT) STRICT;

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
, lease_owner TEXT, lease_until TEXT) STRICT;

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
, grant_scope TEXT) STRICT;

CREATE TABLE revocations (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('serial', 'request', 'user', 'ca_key')),
    target      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    revoked_by  TEXT    NOT NULL,
    revoked_at  TEXT    NOT NULL,
    audit_seq   INTEGER NOT NULL UNIQUE REFERENCES audit_events (seq)
) STRICT;

CREATE TABLE revoked_ca_keys (
    fingerprint   TEXT    PRIMARY KEY,
    revocation_id INTEGER NOT NULL REFERENCES revocations (id)
) STRICT;

CREATE TABLE revoked_certificates (
    serial        TEXT    PRIMARY KEY REFERENCES certificates (serial),
    revocation_id INTEGER NOT NULL REFERENCES revocations (id)
) STRICT;

CREATE TABLE window_end_notices (
    request_id  TEXT    PRIMARY KEY REFERENCES requests (id),
    outbox_id   INTEGER,
    noticed_at  TEXT    NOT NULL
) STRICT;

CREATE INDEX auth_tokens_expires_at ON auth_tokens (expires_at);

CREATE INDEX bastion_sessions_request ON bastion_sessions (request_id, started_at);

CREATE INDEX certificates_request_id ON certificates (request_id);

CREATE INDEX certificates_valid_before ON certificates (valid_before);

CREATE INDEX cli_consents_expires_at ON cli_consents (expires_at);

CREATE INDEX cli_login_codes_expires_at ON cli_login_codes (expires_at);

CREATE INDEX device_logins_expires_at ON device_logins (expires_at);

CREATE INDEX oidc_logins_expires_at ON oidc_logins (expires_at);

CREATE INDEX requests_approved_window_end ON requests (window_end) WHERE state = 'approved';

CREATE INDEX requests_requester ON requests (requester_issuer, requester_subject, state);

CREATE INDEX requests_state ON requests (state, pending_until);

CREATE INDEX revocations_target ON revocations (kind, target);
