-- Identity and access: users, teams, role grants, scoped personal and service tokens,
-- browser sessions and login attempts (for throttling).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT,                      -- argon2id PHC string; NULL: cannot log in with a password
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
);

CREATE TABLE teams (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE team_members (
    team_id INTEGER NOT NULL REFERENCES teams(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (team_id, user_id)
);

-- A role for a user or a team on a project (NULL: every project) and optionally one
-- environment. Project names, not ids: a grant may be made before the project exists.
CREATE TABLE role_grants (
    id           INTEGER PRIMARY KEY,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'team')),
    subject_id   INTEGER NOT NULL,
    role         TEXT NOT NULL,
    project      TEXT,
    environment  TEXT,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
);
CREATE UNIQUE INDEX role_grants_unique ON role_grants(
    subject_kind, subject_id, role, IFNULL(project, ''), IFNULL(environment, '')
);

-- Tokens grow an owner (personal tokens act as their user), an expiry, and scopes.
ALTER TABLE tokens ADD COLUMN user_id INTEGER REFERENCES users(id);
ALTER TABLE tokens ADD COLUMN expires_at TEXT;

-- A service token's grants, or the limit a personal token puts on its user's grants.
CREATE TABLE token_scopes (
    token_id    INTEGER NOT NULL REFERENCES tokens(id),
    role        TEXT NOT NULL,
    project     TEXT,
    environment TEXT
);
CREATE INDEX token_scopes_by_token ON token_scopes(token_id);

-- Server-side browser sessions. Only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,              -- absolute expiry
    revoked_at   TEXT,
    source       TEXT NOT NULL
);

-- Failed logins, for throttling per account and per source address.
CREATE TABLE login_failures (
    id       INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    source   TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX login_failures_by_user ON login_failures(username, at);
CREATE INDEX login_failures_by_source ON login_failures(source, at);
