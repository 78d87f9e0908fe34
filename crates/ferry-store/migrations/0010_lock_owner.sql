-- Who may release a state lock without it being a force-unlock: `run:N` (any action of run N),
-- `user:NAME` (a person, by session or personal token) or `token:ID` (a service token).
-- NULL on locks taken before this column existed: `locked_by` is compared instead.
ALTER TABLE states ADD COLUMN lock_owner TEXT;
