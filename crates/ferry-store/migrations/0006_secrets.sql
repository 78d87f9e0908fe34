-- Secrets (write-only values) and parameters (readable values), each scoped globally, to a
-- project, or to a project's environment; every value ever set is kept as a version,
-- sealed with the envelope scheme (per-value data key wrapped by the master key).

CREATE TABLE secrets (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('secret', 'param')),
    name           TEXT NOT NULL,
    project_id     INTEGER REFERENCES projects(id),   -- NULL: global
    environment    TEXT,                              -- NULL: the whole project (or global)
    -- '' (global), 'P' (project id) or 'P/ENV': NULLs are never equal in a UNIQUE index.
    scope_key      TEXT NOT NULL,
    version        INTEGER NOT NULL,                  -- the current version's number
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    updated_by     TEXT NOT NULL,
    last_used_at   TEXT,
    last_used_run  INTEGER,                           -- runs.id
    deleted_at     TEXT,
    deleted_by     TEXT,
    CHECK (environment IS NULL OR project_id IS NOT NULL),
    UNIQUE (kind, scope_key, name)
);

CREATE TABLE secret_versions (
    id         INTEGER PRIMARY KEY,
    secret_id  INTEGER NOT NULL REFERENCES secrets(id),
    version    INTEGER NOT NULL,
    key_id     TEXT,                 -- master key that wraps the data key; NULL once erased
    sealed     BLOB,                 -- NULL once the secret was removed (metadata stays)
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (secret_id, version)
);

-- Which version of which secret or parameter each run used.
CREATE TABLE run_secrets (
    run_id    INTEGER NOT NULL REFERENCES runs(id),
    secret_id INTEGER NOT NULL REFERENCES secrets(id),
    version   INTEGER NOT NULL,
    used_at   TEXT NOT NULL,
    PRIMARY KEY (run_id, secret_id)
);
