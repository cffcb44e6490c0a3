-- Alerts on unusual activity: how far the rules have read the audit trail,
-- and each (rule, subject)'s current alert window (one alert per window).

CREATE TABLE alert_cursor (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    evaluated_through INTEGER NOT NULL
) STRICT;

CREATE TABLE alert_windows (
    rule         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    window_until TEXT    NOT NULL,
    suppressed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, subject)
) STRICT;
