-- Tokens from device logins (`tpa-ssh login --no-browser`) are marked, so
-- `whoami` and the audit trail can say so (issue 18): a device login is the
-- one a phisher can start for someone else, so its token is shorter-lived
-- (`auth.device_token_ttl`) and visible as such.
ALTER TABLE auth_tokens ADD COLUMN device_login INTEGER NOT NULL DEFAULT 0 CHECK (device_login IN (0, 1));
