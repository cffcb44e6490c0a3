-- Post-incident review of break-glass grants: one row per break-glass request,
-- open until an approver of its role (not the requester) clears it.

CREATE TABLE break_glass_reviews (
    request_id           TEXT PRIMARY KEY REFERENCES requests (id),
    reviewed_by_issuer   TEXT,
    reviewed_by_subject  TEXT,
    reviewed_by_username TEXT,
    reviewed_at          TEXT,
    comment              TEXT
) STRICT;
