-- Issue 11: the grant snapshot (exact certificate scope, as JSON) fixed at
-- submission, and why each approval counted (the stage's fingerprint and the
-- group the approver qualified through) with the approver's comment. Rows
-- written before this migration have NULLs: such a grant issues no
-- certificate and such an approval no longer counts (ask again).

ALTER TABLE requests ADD COLUMN grant_scope TEXT;

ALTER TABLE approvals ADD COLUMN stage_hash TEXT;

ALTER TABLE approvals ADD COLUMN group_name TEXT;

ALTER TABLE approvals ADD COLUMN comment TEXT;
