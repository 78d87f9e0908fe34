-- Terraform states served by the built-in http backend, and their immutable versions.

CREATE TABLE states (
    id              INTEGER PRIMARY KEY,
    project_id      INTEGER NOT NULL REFERENCES projects(id),
    environment     TEXT NOT NULL,
    name            TEXT NOT NULL,           -- '' for the environment's main state
    current_version INTEGER,                 -- state_versions.id of the current version
    lock_id         TEXT,
    lock_info       TEXT,                    -- the holder's LockInfo JSON, as Terraform sent it
    locked_by       TEXT,                    -- the identity that took the lock
    locked_at       TEXT,
    retention_days  INTEGER NOT NULL DEFAULT 90,
    retention_keep  INTEGER NOT NULL DEFAULT 20,
    created_at      TEXT NOT NULL,
    deleted_at      TEXT,
    UNIQUE (project_id, environment, name)
);

CREATE TABLE state_versions (
    id            INTEGER PRIMARY KEY,
    state_id      INTEGER NOT NULL REFERENCES states(id),
    number        INTEGER NOT NULL,          -- 1, 2, 3 … within the state
    serial        INTEGER NOT NULL,
    lineage       TEXT NOT NULL,
    sha256        TEXT NOT NULL,             -- of the plaintext state
    size          INTEGER NOT NULL,
    has_resources INTEGER NOT NULL,
    writer        TEXT NOT NULL,             -- the identity that wrote it
    lock_id       TEXT,                      -- the lock held while writing, if any
    key_id        TEXT NOT NULL,             -- master key that wraps this version's data key
    blob          TEXT NOT NULL,             -- encrypted content, relative to the data dir
    created_at    TEXT NOT NULL,
    pruned_at     TEXT,
    UNIQUE (state_id, number)
);
