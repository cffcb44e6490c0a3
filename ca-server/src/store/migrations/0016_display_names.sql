-- The name people read (the OpenID `name` claim or the configured
-- `display_name_claim`, a local account's `display_name`), kept with the
-- login so that pages and `tpa-ssh whoami` show it. NULL shows the username
-- (rows written before this column existed).

ALTER TABLE auth_tokens ADD COLUMN display_name TEXT;
ALTER TABLE cli_login_codes ADD COLUMN display_name TEXT;
ALTER TABLE device_logins ADD COLUMN display_name TEXT;
