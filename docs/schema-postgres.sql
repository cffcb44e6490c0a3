-- The PostgreSQL schema after all migrations, as PostgreSQL's catalog reports it
-- (rendered by store::pg::dump_schema). Kept equal to the migrated database by
-- ca-server's store::pg::tests::schema_matches_docs_postgres. The SQLite schema
-- is docs/schema.sql.

CREATE TABLE alert_cursor (
    id bigint NOT NULL,
    evaluated_through bigint NOT NULL,
    lease_owner text,
    lease_until text,
    CONSTRAINT alert_cursor_id_check CHECK ((id = 1)),
    CONSTRAINT alert_cursor_pkey PRIMARY KEY (id)
);

CREATE TABLE alert_windows (
    rule text NOT NULL,
    subject text NOT NULL,
    window_until text NOT NULL,
    suppressed bigint NOT NULL DEFAULT 0,
    CONSTRAINT alert_windows_pkey PRIMARY KEY (rule, subject)
);

CREATE TABLE approvals (
    request_id text NOT NULL,
    position bigint NOT NULL,
    approver_issuer text NOT NULL,
    approver_subject text NOT NULL,
    approver_username text NOT NULL,
    stage bigint NOT NULL,
    at text NOT NULL,
    content_hash text NOT NULL,
    stage_hash text,
    group_name text,
    comment text,
    CONSTRAINT approvals_pkey PRIMARY KEY (request_id, "position"),
    CONSTRAINT approvals_request_id_approver_issuer_approver_subject_key UNIQUE (request_id, approver_issuer, approver_subject),
    CONSTRAINT approvals_request_id_fkey FOREIGN KEY (request_id) REFERENCES requests(id)
);

CREATE TABLE audit_checkpoints (
    seq bigint NOT NULL,
    hash text NOT NULL,
    time text NOT NULL,
    key_fingerprint text NOT NULL,
    signature text NOT NULL,
    CONSTRAINT audit_checkpoints_pkey PRIMARY KEY (seq)
);

CREATE TABLE audit_events (
    seq bigint NOT NULL,
    time text NOT NULL,
    actor text NOT NULL,
    source text NOT NULL,
    action text NOT NULL,
    object text NOT NULL,
    outcome text NOT NULL,
    reason text NOT NULL,
    details text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    CONSTRAINT audit_events_hash_key UNIQUE (hash),
    CONSTRAINT audit_events_outcome_check CHECK ((outcome = ANY (ARRAY['success'::text, 'denied'::text, 'error'::text]))),
    CONSTRAINT audit_events_pkey PRIMARY KEY (seq)
);

CREATE TABLE audit_sink_cursors (
    sink text NOT NULL,
    delivered_through bigint NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    next_attempt_at text,
    last_error text,
    lease_owner text,
    lease_until text,
    CONSTRAINT audit_sink_cursors_pkey PRIMARY KEY (sink)
);

CREATE TABLE auth_tokens (
    id text NOT NULL,
    token_hash text NOT NULL,
    kind text NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    username text NOT NULL,
    groups text NOT NULL,
    csrf_token text,
    created_at text NOT NULL,
    expires_at text NOT NULL,
    revoked_at text,
    device_login boolean NOT NULL DEFAULT false,
    display_name text,
    CONSTRAINT auth_tokens_kind_check CHECK ((kind = ANY (ARRAY['web_session'::text, 'api'::text]))),
    CONSTRAINT auth_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT auth_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE TABLE automated_approvals (
    request_id text NOT NULL,
    source text NOT NULL,
    evidence text NOT NULL,
    at text NOT NULL,
    content_hash text NOT NULL,
    CONSTRAINT automated_approvals_pkey PRIMARY KEY (request_id),
    CONSTRAINT automated_approvals_request_id_fkey FOREIGN KEY (request_id) REFERENCES requests(id)
);

CREATE TABLE bastion_events (
    event_id text NOT NULL,
    bastion text NOT NULL,
    kind text NOT NULL,
    request_id text,
    count bigint NOT NULL,
    received_at text NOT NULL,
    audit_seq bigint NOT NULL,
    CONSTRAINT bastion_events_audit_seq_fkey FOREIGN KEY (audit_seq) REFERENCES audit_events(seq),
    CONSTRAINT bastion_events_audit_seq_key UNIQUE (audit_seq),
    CONSTRAINT bastion_events_count_check CHECK ((count >= 1)),
    CONSTRAINT bastion_events_pkey PRIMARY KEY (event_id)
);

CREATE TABLE bastion_sessions (
    session_id text NOT NULL,
    bastion text NOT NULL,
    request_id text NOT NULL,
    serial text NOT NULL,
    key_id text NOT NULL,
    login text NOT NULL,
    requester text NOT NULL,
    source text NOT NULL,
    target text NOT NULL,
    target_address text NOT NULL,
    started_at text NOT NULL,
    ended_at text NOT NULL,
    bytes_to_target bigint NOT NULL,
    bytes_from_target bigint NOT NULL,
    end_reason text NOT NULL,
    error text,
    received_at text NOT NULL,
    audit_seq bigint NOT NULL,
    CONSTRAINT bastion_sessions_audit_seq_fkey FOREIGN KEY (audit_seq) REFERENCES audit_events(seq),
    CONSTRAINT bastion_sessions_audit_seq_key UNIQUE (audit_seq),
    CONSTRAINT bastion_sessions_bytes_from_target_check CHECK ((bytes_from_target >= 0)),
    CONSTRAINT bastion_sessions_bytes_to_target_check CHECK ((bytes_to_target >= 0)),
    CONSTRAINT bastion_sessions_pkey PRIMARY KEY (session_id)
);

CREATE TABLE break_glass_reviews (
    request_id text NOT NULL,
    reviewed_by_issuer text,
    reviewed_by_subject text,
    reviewed_by_username text,
    reviewed_at text,
    comment text,
    CONSTRAINT break_glass_reviews_pkey PRIMARY KEY (request_id),
    CONSTRAINT break_glass_reviews_request_id_fkey FOREIGN KEY (request_id) REFERENCES requests(id)
);

CREATE TABLE certificates (
    serial text NOT NULL,
    key_id text NOT NULL,
    principals text NOT NULL,
    extensions text NOT NULL,
    critical_options text NOT NULL,
    valid_after bigint NOT NULL,
    valid_before bigint NOT NULL,
    subject_key_fingerprint text NOT NULL,
    ca_key_fingerprint text NOT NULL,
    request_id text,
    issued_by text NOT NULL,
    issued_at text NOT NULL,
    audit_seq bigint NOT NULL,
    CONSTRAINT certificates_audit_seq_fkey FOREIGN KEY (audit_seq) REFERENCES audit_events(seq),
    CONSTRAINT certificates_audit_seq_key UNIQUE (audit_seq),
    CONSTRAINT certificates_pkey PRIMARY KEY (serial)
);

CREATE TABLE cli_consents (
    id_hash text NOT NULL,
    session_id text NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    username text NOT NULL,
    groups text NOT NULL,
    redirect_uri text NOT NULL,
    code_challenge text NOT NULL,
    client_source text NOT NULL,
    created_at text NOT NULL,
    expires_at text NOT NULL,
    decision text,
    decided_at text,
    CONSTRAINT cli_consents_decision_check CHECK ((decision = ANY (ARRAY['approved'::text, 'denied'::text]))),
    CONSTRAINT cli_consents_pkey PRIMARY KEY (id_hash)
);

CREATE TABLE cli_login_codes (
    code_hash text NOT NULL,
    code_challenge text NOT NULL,
    redirect_uri text NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    username text NOT NULL,
    groups text NOT NULL,
    created_at text NOT NULL,
    expires_at text NOT NULL,
    used_at text,
    display_name text,
    CONSTRAINT cli_login_codes_pkey PRIMARY KEY (code_hash)
);

CREATE TABLE device_logins (
    device_hash text NOT NULL,
    user_code_hash text NOT NULL,
    client_source text NOT NULL,
    created_at text NOT NULL,
    expires_at text NOT NULL,
    interval_secs bigint NOT NULL,
    last_poll_at text,
    status text NOT NULL,
    decided_at text,
    issuer text,
    subject text,
    username text,
    groups text,
    display_name text,
    CONSTRAINT device_logins_pkey PRIMARY KEY (device_hash),
    CONSTRAINT device_logins_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'approved'::text, 'denied'::text, 'expired'::text, 'done'::text]))),
    CONSTRAINT device_logins_user_code_hash_key UNIQUE (user_code_hash)
);

CREATE TABLE heartbeat (
    id bigint NOT NULL,
    beat_at text NOT NULL,
    beats bigint NOT NULL,
    CONSTRAINT heartbeat_id_check CHECK ((id = 1)),
    CONSTRAINT heartbeat_pkey PRIMARY KEY (id)
);

CREATE TABLE identity_emails (
    issuer text NOT NULL,
    subject text NOT NULL,
    email text NOT NULL,
    updated_at text NOT NULL,
    CONSTRAINT identity_emails_pkey PRIMARY KEY (issuer, subject)
);

CREATE TABLE integration_checks (
    request_id text NOT NULL,
    position bigint NOT NULL,
    kind text NOT NULL,
    provider text NOT NULL,
    outcome text NOT NULL,
    summary text NOT NULL,
    answer_id text,
    at text NOT NULL,
    CONSTRAINT integration_checks_kind_check CHECK ((kind = ANY (ARRAY['on_call'::text, 'ticket'::text]))),
    CONSTRAINT integration_checks_pkey PRIMARY KEY (request_id, "position"),
    CONSTRAINT integration_checks_request_id_fkey FOREIGN KEY (request_id) REFERENCES requests(id)
);

CREATE TABLE krl_state (
    id bigint NOT NULL,
    version bigint NOT NULL,
    CONSTRAINT krl_state_id_check CHECK ((id = 1)),
    CONSTRAINT krl_state_pkey PRIMARY KEY (id),
    CONSTRAINT krl_state_version_check CHECK ((version >= 0))
);

CREATE TABLE oidc_logins (
    state_hash text NOT NULL,
    browser_hash text NOT NULL,
    connector text NOT NULL,
    nonce text NOT NULL,
    pkce_verifier text NOT NULL,
    next_path text NOT NULL,
    cli_redirect_uri text,
    cli_code_challenge text,
    created_at text NOT NULL,
    expires_at text NOT NULL,
    used_at text,
    cli_source text,
    CONSTRAINT oidc_logins_pkey PRIMARY KEY (state_hash)
);

CREATE TABLE outbox (
    id bigint NOT NULL GENERATED BY DEFAULT AS IDENTITY,
    created_at text NOT NULL,
    kind text NOT NULL,
    payload text NOT NULL,
    CONSTRAINT outbox_pkey PRIMARY KEY (id)
);

CREATE TABLE outbox_cursors (
    sink text NOT NULL,
    delivered_through bigint NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    next_attempt_at text,
    last_error text,
    lease_owner text,
    lease_until text,
    CONSTRAINT outbox_cursors_pkey PRIMARY KEY (sink)
);

CREATE TABLE requests (
    id text NOT NULL,
    requester_issuer text NOT NULL,
    requester_subject text NOT NULL,
    requester_username text NOT NULL,
    role text NOT NULL,
    hosts text NOT NULL,
    duration_secs bigint NOT NULL,
    reason text NOT NULL,
    ticket text,
    start_at text,
    path text NOT NULL,
    created_at text NOT NULL,
    pending_until text NOT NULL,
    state text NOT NULL,
    window_start text,
    window_end text,
    decided_by_issuer text,
    decided_by_subject text,
    comment text,
    updated_at text NOT NULL,
    grant_scope text,
    CONSTRAINT requests_duration_secs_check CHECK ((duration_secs > 0)),
    CONSTRAINT requests_path_check CHECK ((path = ANY (ARRAY['auto'::text, 'stages'::text, 'break_glass'::text]))),
    CONSTRAINT requests_pkey PRIMARY KEY (id),
    CONSTRAINT requests_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'approved'::text, 'denied'::text, 'expired'::text, 'cancelled'::text, 'revoked'::text])))
);

CREATE TABLE revocations (
    id bigint NOT NULL GENERATED BY DEFAULT AS IDENTITY,
    kind text NOT NULL,
    target text NOT NULL,
    reason text NOT NULL,
    revoked_by text NOT NULL,
    revoked_at text NOT NULL,
    audit_seq bigint NOT NULL,
    CONSTRAINT revocations_audit_seq_fkey FOREIGN KEY (audit_seq) REFERENCES audit_events(seq),
    CONSTRAINT revocations_audit_seq_key UNIQUE (audit_seq),
    CONSTRAINT revocations_kind_check CHECK ((kind = ANY (ARRAY['serial'::text, 'request'::text, 'user'::text, 'ca_key'::text]))),
    CONSTRAINT revocations_pkey PRIMARY KEY (id)
);

CREATE TABLE revoked_ca_keys (
    fingerprint text NOT NULL,
    revocation_id bigint NOT NULL,
    CONSTRAINT revoked_ca_keys_pkey PRIMARY KEY (fingerprint),
    CONSTRAINT revoked_ca_keys_revocation_id_fkey FOREIGN KEY (revocation_id) REFERENCES revocations(id)
);

CREATE TABLE revoked_certificates (
    serial text NOT NULL,
    revocation_id bigint NOT NULL,
    CONSTRAINT revoked_certificates_pkey PRIMARY KEY (serial),
    CONSTRAINT revoked_certificates_revocation_id_fkey FOREIGN KEY (revocation_id) REFERENCES revocations(id),
    CONSTRAINT revoked_certificates_serial_fkey FOREIGN KEY (serial) REFERENCES certificates(serial)
);

CREATE TABLE tpa_schema (
    id bigint NOT NULL,
    version bigint NOT NULL,
    CONSTRAINT tpa_schema_id_check CHECK ((id = 1)),
    CONSTRAINT tpa_schema_pkey PRIMARY KEY (id)
);

CREATE TABLE window_end_notices (
    request_id text NOT NULL,
    outbox_id bigint,
    noticed_at text NOT NULL,
    CONSTRAINT window_end_notices_pkey PRIMARY KEY (request_id),
    CONSTRAINT window_end_notices_request_id_fkey FOREIGN KEY (request_id) REFERENCES requests(id)
);

CREATE INDEX auth_tokens_expires_at ON public.auth_tokens USING btree (expires_at);

CREATE INDEX bastion_sessions_request ON public.bastion_sessions USING btree (request_id, started_at);

CREATE INDEX certificates_request_id ON public.certificates USING btree (request_id);

CREATE INDEX certificates_valid_before ON public.certificates USING btree (valid_before);

CREATE INDEX cli_consents_expires_at ON public.cli_consents USING btree (expires_at);

CREATE INDEX cli_login_codes_expires_at ON public.cli_login_codes USING btree (expires_at);

CREATE INDEX device_logins_expires_at ON public.device_logins USING btree (expires_at);

CREATE INDEX oidc_logins_expires_at ON public.oidc_logins USING btree (expires_at);

CREATE INDEX requests_approved_window_end ON public.requests USING btree (window_end) WHERE (state = 'approved'::text);

CREATE INDEX requests_requester ON public.requests USING btree (requester_issuer, requester_subject, state);

CREATE INDEX requests_state ON public.requests USING btree (state, pending_until);

CREATE INDEX revocations_target ON public.revocations USING btree (kind, target);

CREATE TRIGGER audit_checkpoints_append_only BEFORE DELETE OR UPDATE ON public.audit_checkpoints FOR EACH ROW EXECUTE FUNCTION tpa_refuse_change('audit_checkpoints is append-only');

CREATE TRIGGER audit_checkpoints_append_only_truncate BEFORE TRUNCATE ON public.audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION tpa_refuse_change('audit_checkpoints is append-only');

CREATE TRIGGER audit_events_append_only BEFORE DELETE OR UPDATE ON public.audit_events FOR EACH ROW EXECUTE FUNCTION tpa_refuse_change('audit_events is append-only');

CREATE TRIGGER audit_events_append_only_truncate BEFORE TRUNCATE ON public.audit_events FOR EACH STATEMENT EXECUTE FUNCTION tpa_refuse_change('audit_events is append-only');

CREATE TRIGGER revocations_final BEFORE DELETE OR UPDATE ON public.revocations FOR EACH ROW EXECUTE FUNCTION tpa_refuse_change('revocations are final');

CREATE TRIGGER revocations_final_truncate BEFORE TRUNCATE ON public.revocations FOR EACH STATEMENT EXECUTE FUNCTION tpa_refuse_change('revocations are final');

CREATE TRIGGER revoked_ca_keys_final BEFORE DELETE OR UPDATE ON public.revoked_ca_keys FOR EACH ROW EXECUTE FUNCTION tpa_refuse_change('revocations are final');

CREATE TRIGGER revoked_ca_keys_final_truncate BEFORE TRUNCATE ON public.revoked_ca_keys FOR EACH STATEMENT EXECUTE FUNCTION tpa_refuse_change('revocations are final');

CREATE TRIGGER revoked_certificates_final BEFORE DELETE OR UPDATE ON public.revoked_certificates FOR EACH ROW EXECUTE FUNCTION tpa_refuse_change('revocations are final');

CREATE TRIGGER revoked_certificates_final_truncate BEFORE TRUNCATE ON public.revoked_certificates FOR EACH STATEMENT EXECUTE FUNCTION tpa_refuse_change('revocations are final');

CREATE OR REPLACE FUNCTION public.tpa_refuse_change()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END;
$function$;
