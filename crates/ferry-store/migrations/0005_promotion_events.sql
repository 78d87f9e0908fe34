-- Environments and promotion: what kind of run this is and what it was asked to do, the
-- state every plan was made against, what every approval was bound to, the history of
-- applied commits per environment, and the durable event log.

ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy';      -- deploy | retry | promote | rollback | destroy
ALTER TABLE runs ADD COLUMN options TEXT NOT NULL DEFAULT '{}';       -- JSON: environments, targets, replaces
ALTER TABLE runs ADD COLUMN source_run_id INTEGER REFERENCES runs(id);  -- the run retried, or rolled back to
ALTER TABLE runs ADD COLUMN commit_author TEXT;                        -- `Name <email>` of the commit, for self-approval

-- The state a plan read: equal before and after the plan, or the plan is not recorded.
ALTER TABLE plans ADD COLUMN state_lineage TEXT;                       -- NULL: no state existed
ALTER TABLE plans ADD COLUMN state_serial INTEGER;
ALTER TABLE plans ADD COLUMN state_version INTEGER;                    -- Ferry's version number

-- What an approval approved: apply refuses anything else.
ALTER TABLE approvals ADD COLUMN plan_sha256 TEXT;
ALTER TABLE approvals ADD COLUMN state_lineage TEXT;
ALTER TABLE approvals ADD COLUMN state_serial INTEGER;
ALTER TABLE approvals ADD COLUMN commit_sha TEXT;
ALTER TABLE approvals ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;

-- One row per environment a run completed (applied, or found nothing to apply).
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    pipeline    TEXT NOT NULL,
    environment TEXT NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    commit_sha  TEXT NOT NULL,
    plan_sha256 TEXT,
    changed     INTEGER NOT NULL,                                      -- 0: the plan had no changes
    completed_at TEXT NOT NULL,
    UNIQUE (run_id, environment)
);
CREATE INDEX deployments_by_env ON deployments(project_id, pipeline, environment, id);

-- The event log: written in the same transaction as the transition it reports.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,                                   -- the cursor
    type        TEXT NOT NULL,
    ts          TEXT NOT NULL,
    project     TEXT NOT NULL,
    pipeline    TEXT NOT NULL,
    run_id      INTEGER NOT NULL,
    run_number  INTEGER NOT NULL,
    environment TEXT,
    stage       TEXT,
    action      TEXT,
    commit_sha  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    details     TEXT NOT NULL                                          -- JSON object
);
CREATE INDEX events_by_run ON events(run_id, id);
CREATE INDEX events_by_type ON events(type, id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
