-- Git credentials of a project: a username and the NAME of a secret in the secret store
-- (resolved project scope first, then global, each time Ferry fetches). Never the value.
ALTER TABLE projects ADD COLUMN git_username TEXT;
ALTER TABLE projects ADD COLUMN git_secret TEXT;
