-- Revocations: one row per act of revocation (by serial, request, user or CA
-- key), the certificates each act revoked, the revoked CA keys, and the KRL
-- version. Revocation is final: triggers refuse to change or remove any row.

CREATE TABLE revocations (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('serial', 'request', 'user', 'ca_key')),
    target      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    revoked_by  TEXT    NOT NULL,
    revoked_at  TEXT    NOT NULL,
    audit_seq   INTEGER NOT NULL UNIQUE REFERENCES audit_events (seq)
) STRICT;

CREATE INDEX revocations_target ON revocations (kind, target);

CREATE TABLE revoked_certificates (
    serial        TEXT    PRIMARY KEY REFERENCES certificates (serial),
    revocation_id INTEGER NOT NULL REFERENCES revocations (id)
) STRICT;

CREATE TABLE revoked_ca_keys (
    fingerprint   TEXT    PRIMARY KEY,
    revocation_id INTEGER NOT NULL REFERENCES revocations (id)
) STRICT;

CREATE TRIGGER revocations_final_update BEFORE UPDATE ON revocations
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revocations_final_delete BEFORE DELETE ON revocations
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_certificates_final_update BEFORE UPDATE ON revoked_certificates
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_certificates_final_delete BEFORE DELETE ON revoked_certificates
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_ca_keys_final_update BEFORE UPDATE ON revoked_ca_keys
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

CREATE TRIGGER revoked_ca_keys_final_delete BEFORE DELETE ON revoked_ca_keys
BEGIN
    SELECT RAISE(ABORT, 'revocations are final');
END;

-- The KRL version: grows with every revocation and never goes back. It starts
-- at the audit head, which earlier builds served as the KRL version.
CREATE TABLE krl_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (version >= 0)
) STRICT;

INSERT INTO krl_state (id, version) SELECT 1, coalesce(max(seq), 0) FROM audit_events;
