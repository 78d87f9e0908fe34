-- Credentials minted for one action of a run: they reach only that run's project and
-- environment state, and are revoked when the action ends.
ALTER TABLE tokens ADD COLUMN run_id INTEGER REFERENCES runs(id);
ALTER TABLE tokens ADD COLUMN scope_project_id INTEGER REFERENCES projects(id);
ALTER TABLE tokens ADD COLUMN scope_environment TEXT;
CREATE INDEX tokens_by_run ON tokens(run_id) WHERE run_id IS NOT NULL;
