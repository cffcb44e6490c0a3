-- Issue 17's tables on PostgreSQL (SQLite's 0018_integrations and
-- 0019_alerts): verified emails, on-call approvals, integration checks, the
-- alert rules' cursor and each (rule, subject)'s alert window.

CREATE TABLE identity_emails (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    email      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);

CREATE TABLE automated_approvals (
    request_id   TEXT PRIMARY KEY REFERENCES requests (id),
    source       TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    at           TEXT NOT NULL,
    content_hash TEXT NOT NULL
);

CREATE TABLE integration_checks (
    request_id TEXT    NOT NULL REFERENCES requests (id),
    position   BIGINT  NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('on_call', 'ticket')),
    provider   TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    answer_id  TEXT,
    at         TEXT    NOT NULL,
    PRIMARY KEY (request_id, position)
);

CREATE TABLE alert_cursor (
    id                BIGINT PRIMARY KEY CHECK (id = 1),
    evaluated_through BIGINT NOT NULL
);

CREATE TABLE alert_windows (
    rule         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    window_until TEXT    NOT NULL,
    suppressed   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, subject)
);
