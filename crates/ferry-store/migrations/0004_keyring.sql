-- Keys Ferry keeps wrapped by the master key, so the master key can be rotated without
-- changing what they protect (the audit chain's MAC key).
CREATE TABLE keyring (
    purpose TEXT PRIMARY KEY,
    key_id  TEXT NOT NULL,   -- the master key that wraps it
    sealed  BLOB NOT NULL
);
