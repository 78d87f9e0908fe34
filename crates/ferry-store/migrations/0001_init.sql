-- Ferry's metadata schema, SQLite flavour. Timestamps are RFC 3339 UTC text.

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the token; the token itself is never stored
    hint         TEXT NOT NULL,              -- first characters, for lists
    admin        INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
);
CREATE UNIQUE INDEX tokens_active_name ON tokens(name) WHERE revoked_at IS NULL;

CREATE TABLE projects (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    repo       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    project_id    INTEGER NOT NULL REFERENCES projects(id),
    number        INTEGER NOT NULL,
    pipeline      TEXT NOT NULL,
    pipeline_path TEXT NOT NULL,
    git_ref       TEXT NOT NULL,
    commit_sha    TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    triggered_by  TEXT NOT NULL,
    spec_yaml     TEXT NOT NULL,             -- the ferry.yaml of that commit, as read at trigger time
    waiting_env   TEXT,                      -- the environment this run queues for, if any
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    UNIQUE (project_id, number)
);
CREATE INDEX runs_by_status ON runs(status, id);
CREATE INDEX runs_by_project ON runs(project_id, id);

CREATE TABLE stages (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    position    INTEGER NOT NULL,
    environment TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    started_at  TEXT,
    finished_at TEXT,
    UNIQUE (run_id, position)
);

CREATE TABLE actions (
    id             INTEGER PRIMARY KEY,
    stage_id       INTEGER NOT NULL REFERENCES stages(id),
    run_id         INTEGER NOT NULL REFERENCES runs(id),
    position       INTEGER NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,            -- a built-in (terraform_init, ...) or `command`
    command        TEXT,
    timeout_ms     INTEGER NOT NULL,
    status         TEXT NOT NULL,
    exit_code      INTEGER,
    error          TEXT,
    pid            INTEGER,                  -- process group of the running action, for crash recovery
    pid_start_time INTEGER,
    started_at     TEXT,
    finished_at    TEXT,
    UNIQUE (stage_id, position)
);
CREATE INDEX actions_by_run ON actions(run_id, id);
CREATE INDEX actions_running ON actions(status) WHERE status = 'InProgress';

CREATE TABLE plans (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    environment TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    has_changes INTEGER NOT NULL,
    summary     TEXT NOT NULL,               -- JSON: counts and per-resource actions
    plan_path   TEXT NOT NULL,
    json_path   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (run_id, environment)
);

CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    environment TEXT NOT NULL,
    decision    TEXT NOT NULL,               -- approve | reject
    comment     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Which run holds an environment (from plan through apply, approval wait included).
CREATE TABLE env_holds (
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    pipeline    TEXT NOT NULL,
    environment TEXT NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    since       TEXT NOT NULL,
    PRIMARY KEY (project_id, pipeline, environment)
);

-- The audit chain. Each row's mac covers its content and the previous row's mac.
CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY,
    ts       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    source   TEXT NOT NULL,
    details  TEXT NOT NULL,
    prev_mac TEXT NOT NULL,
    mac      TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
