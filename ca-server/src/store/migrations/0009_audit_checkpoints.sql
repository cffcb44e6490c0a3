-- Signed audit checkpoints: the chain head (seq and hash) signed with the
-- audit key. Append-only like the trail itself.

CREATE TABLE audit_checkpoints (
    seq             INTEGER PRIMARY KEY,
    hash            TEXT    NOT NULL,
    time            TEXT    NOT NULL,
    key_fingerprint TEXT    NOT NULL,
    signature       TEXT    NOT NULL
) STRICT;

CREATE TRIGGER audit_checkpoints_append_only_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_append_only_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
