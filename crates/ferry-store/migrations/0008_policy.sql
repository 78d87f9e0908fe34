-- The policy gate: each environment's policy report, kept with its plan for the approval
-- view, and the waivers approvers granted (audited; revoked rows are kept).

CREATE TABLE policy_reports (
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    environment TEXT NOT NULL,
    blocked     INTEGER NOT NULL,                                      -- 1: POLICY_VIOLATION
    report      TEXT NOT NULL,                                         -- JSON: ferry_policy::Report
    created_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, environment)
);

CREATE TABLE waivers (
    id            INTEGER PRIMARY KEY,
    project_id    INTEGER NOT NULL REFERENCES projects(id),
    rule          TEXT NOT NULL,
    address       TEXT NOT NULL,
    environment   TEXT NOT NULL,
    resource_type TEXT,                                                -- NULL: a configuration-wide finding
    reason        TEXT NOT NULL,
    expires_at    TEXT NOT NULL,                                       -- RFC 3339, UTC
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    run_id        INTEGER REFERENCES runs(id),                         -- the run whose finding was waived
    revoked_at    TEXT,
    revoked_by    TEXT
);
CREATE INDEX waivers_by_project ON waivers(project_id, environment, id);
