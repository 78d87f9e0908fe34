//! The ways a run comes to exist — a trigger (optionally one environment, a destroy, targets
//! and replacements), a retry, a promotion, a rollback (what approvers see and decide is
//! `approvals.rs`). Every path ends in [`Engine::start_run`], so each run is checked the same way:
//! the pipeline lowers, Terraform is available, the options name real environments and
//! well-formed addresses, and promotion order holds.

use ferry_core::{Actor, RunId, RunStatus};
use ferry_spec::PipelineSpec;
use ferry_store::{Deployment, NewRun, Project, Run, RunKind, RunOptions};

use crate::{git, stages, terraform, Engine, Error, Result};

/// What to run: the trigger's choices beyond project and ref.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub git_ref: Option<String>,
    pub pipeline: Option<String>,
    /// Only this environment. For a deploy, the earlier environments must already have
    /// completed the same commit (it is then a promotion); a destroy needs one.
    pub environment: Option<String>,
    pub destroy: bool,
    pub targets: Vec<String>,
    pub replaces: Vec<String>,
}

/// A Terraform resource address for `-target`/`-replace`: no option smuggling, no
/// whitespace, nothing Terraform would not parse as an address.
fn check_address(address: &str) -> Result<()> {
    let ok = !address.is_empty()
        && address.chars().count() <= 1024
        && !address.starts_with('-')
        && address
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control())
        && address
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "`{address}` is not a Terraform resource address (like aws_s3_bucket.logs or module.net.aws_vpc.main)"
        )))
    }
}

/// The environments from `start` on, in pipeline order.
fn from_environment(spec: &PipelineSpec, start: &str) -> Result<Vec<String>> {
    let names: Vec<String> = spec.environments.iter().map(|e| e.name.clone()).collect();
    let index = names.iter().position(|n| n == start).ok_or_else(|| {
        Error::Refused(format!(
            "the pipeline has no environment `{start}` (it has: {})",
            names.join(", ")
        ))
    })?;
    Ok(names[index..].to_vec())
}

impl Engine {
    /// Starts a run of a pipeline at `request.git_ref` (default: the default branch).
    /// Everything that can be checked before the run exists is checked here, so a bad ref,
    /// an invalid ferry.yaml, a missing terraform or an unknown environment is an error, not
    /// a failed run.
    pub async fn trigger(&self, actor: &Actor, project: &str, request: &RunRequest) -> Result<Run> {
        self.trigger_recording(actor, project, request, None).await
    }

    /// [`Engine::trigger`], recording `recorded_ref` as the run's ref instead of the one the
    /// commit was resolved from: a promotion pinned to a run's commit still deploys from that
    /// run's branch (which decides, among other things, which secrets it receives).
    async fn trigger_recording(
        &self,
        actor: &Actor,
        project: &str,
        request: &RunRequest,
        recorded_ref: Option<String>,
    ) -> Result<Run> {
        self.refuse_when_shutting_down()?;
        for address in request.targets.iter().chain(&request.replaces) {
            check_address(address)?;
        }
        let (project, mirror, git_ref, commit) =
            self.resolve(project, request.git_ref.as_deref()).await?;
        let (path, text, spec) = self
            .load_pipeline(&project, &mirror, &commit, request.pipeline.as_deref())
            .await?;
        let mut options = RunOptions {
            environments: Vec::new(),
            targets: request.targets.clone(),
            replaces: request.replaces.clone(),
            destroy: request.destroy,
        };
        let mut kind = RunKind::Deploy;
        match (&request.environment, request.destroy) {
            (None, true) => {
                return Err(Error::Refused(
                    "a destroy run needs the environment to destroy (--env)".into(),
                ))
            }
            (Some(env), true) => {
                from_environment(&spec, env)?;
                options.environments = vec![env.clone()];
                kind = RunKind::Destroy;
            }
            (Some(env), false) => {
                options.environments = from_environment(&spec, env)?;
                if spec.environments[0].name != *env {
                    self.check_promotable(&project, &spec, env, &commit).await?;
                    kind = RunKind::Promote;
                }
            }
            (None, false) => {}
        }
        let new = NewRun {
            project_id: project.id,
            pipeline: spec.name.clone(),
            pipeline_path: path,
            git_ref: recorded_ref.unwrap_or(git_ref),
            commit_sha: commit.clone(),
            spec_yaml: text,
            first_environment: String::new(),
            stages: Vec::new(),
            kind,
            options,
            source_run: None,
            commit_author: mirror.commit_author(&commit).await.ok(),
        };
        self.start_run(actor, &project.name, &spec, new).await
    }

    /// Starts `environment` (and the ones after it) for a commit that already completed
    /// every earlier environment: the commit of `from_run`, or what `git_ref` resolves to.
    pub async fn promote(
        &self,
        actor: &Actor,
        project: &str,
        pipeline: Option<&str>,
        environment: &str,
        git_ref: Option<&str>,
        from_run: Option<RunId>,
    ) -> Result<Run> {
        self.refuse_when_shutting_down()?;
        let (git_ref, pipeline, recorded_ref) = match from_run {
            Some(id) => {
                let run = self.store().run(id).await?;
                if run.project != project {
                    return Err(Error::Refused(format!(
                        "run {id} belongs to project `{}`, not `{project}`",
                        run.project
                    )));
                }
                (Some(run.commit_sha), Some(run.pipeline), Some(run.git_ref))
            }
            None => (
                git_ref.map(str::to_owned),
                pipeline.map(str::to_owned),
                None,
            ),
        };
        let request = RunRequest {
            git_ref,
            pipeline,
            environment: Some(environment.to_owned()),
            ..RunRequest::default()
        };
        let (project_row, mirror, _, commit) =
            self.resolve(project, request.git_ref.as_deref()).await?;
        let (_, _, spec) = self
            .load_pipeline(&project_row, &mirror, &commit, request.pipeline.as_deref())
            .await?;
        if spec.environments[0].name == environment {
            return Err(Error::Refused(format!(
                "`{environment}` is the pipeline's first environment; there is nothing to promote from (use `ferry run`)"
            )));
        }
        self.trigger_recording(actor, project, &request, recorded_ref)
            .await
    }

    /// Runs a failed, interrupted or cancelled run again on the same commit, from its first
    /// environment that did not complete. It re-plans: a retry never applies an old plan.
    pub async fn retry(&self, actor: &Actor, run_id: RunId) -> Result<Run> {
        self.refuse_when_shutting_down()?;
        let detail = self.store().run_detail(run_id).await?;
        let old = &detail.run;
        if !matches!(
            old.status,
            RunStatus::Failed | RunStatus::Interrupted | RunStatus::Cancelled | RunStatus::Stopped
        ) {
            return Err(ferry_store::Error::Conflict(format!(
                "run {run_id} is {}; only a failed, interrupted or cancelled run can be retried",
                old.status
            ))
            .into());
        }
        let spec = self.lower_run(old)?;
        let completed = self
            .store()
            .deployments(old.project_id, &old.pipeline, None, 10_000)
            .await?
            .into_iter()
            .filter(|d| d.run_id == run_id)
            .map(|d| d.environment)
            .collect::<Vec<_>>();
        let remaining: Vec<String> = detail
            .environments()
            .into_iter()
            .filter(|e| !completed.iter().any(|c| c == e))
            .map(str::to_owned)
            .collect();
        if remaining.is_empty() {
            return Err(ferry_store::Error::Conflict(format!(
                "run {run_id} completed every environment it had; nothing to retry"
            ))
            .into());
        }
        let options = RunOptions {
            environments: remaining,
            ..old.options.clone()
        };
        let new = NewRun {
            project_id: old.project_id,
            pipeline: old.pipeline.clone(),
            pipeline_path: old.pipeline_path.clone(),
            git_ref: old.git_ref.clone(),
            commit_sha: old.commit_sha.clone(),
            spec_yaml: old.spec_yaml.clone(),
            first_environment: String::new(),
            stages: Vec::new(),
            kind: RunKind::Retry,
            options,
            source_run: Some(run_id),
            commit_author: old.commit_author.clone(),
        };
        self.start_run(actor, &old.project, &spec, new).await
    }

    /// Returns `environment` to the commit of an earlier run that completed it: `to_run`, or
    /// the most recent one whose commit differs from what the environment runs now. The
    /// rollback is a new run planned, policy-checked and approved like any other.
    pub async fn rollback(
        &self,
        actor: &Actor,
        project: &str,
        pipeline: Option<&str>,
        environment: &str,
        to_run: Option<RunId>,
    ) -> Result<Run> {
        self.refuse_when_shutting_down()?;
        let project_row = self.store().project(project).await?;
        let pipeline = match pipeline {
            Some(p) => p.to_owned(),
            None => self.single_pipeline(project).await?,
        };
        let history = self
            .store()
            .deployments(project_row.id, &pipeline, Some(environment), 1000)
            .await?;
        let Some(current) = history.first() else {
            return Err(ferry_store::Error::Conflict(format!(
                "pipeline `{pipeline}` has never completed `{environment}`; there is nothing to roll back"
            ))
            .into());
        };
        let target: &Deployment = match to_run {
            Some(id) => history.iter().find(|d| d.run_id == id).ok_or_else(|| {
                ferry_store::Error::Conflict(format!(
                    "run {id} never completed `{environment}` of pipeline `{pipeline}`"
                ))
            })?,
            None => history
                .iter()
                .find(|d| d.commit_sha != current.commit_sha)
                .ok_or_else(|| {
                    ferry_store::Error::Conflict(format!(
                        "`{environment}` has only ever run commit {}; there is no earlier commit to roll back to",
                        short(&current.commit_sha)
                    ))
                })?,
        };
        if target.commit_sha == current.commit_sha {
            return Err(ferry_store::Error::Conflict(format!(
                "`{environment}` already runs commit {} (run {})",
                short(&target.commit_sha),
                current.run_id
            ))
            .into());
        }
        let source = self.store().run(target.run_id).await?;
        let mirror = self.mirror_with(&project_row, &target.commit_sha).await?;
        let text = mirror
            .read_file(&target.commit_sha, &source.pipeline_path)
            .await?;
        let spec = lower(&source.pipeline_path, &text)?;
        from_environment(&spec, environment)?;
        let new = NewRun {
            project_id: project_row.id,
            pipeline: pipeline.clone(),
            pipeline_path: source.pipeline_path.clone(),
            // The branch the returned-to commit was deployed from, not the bare commit id:
            // the run deploys like that one did (the same branch-limited secrets).
            git_ref: source.git_ref.clone(),
            commit_sha: target.commit_sha.clone(),
            spec_yaml: text,
            first_environment: String::new(),
            stages: Vec::new(),
            kind: RunKind::Rollback,
            options: RunOptions {
                environments: vec![environment.to_owned()],
                ..RunOptions::default()
            },
            source_run: Some(target.run_id),
            commit_author: mirror.commit_author(&target.commit_sha).await.ok(),
        };
        self.start_run(actor, &project_row.name, &spec, new).await
    }

    /// Each environment's history of completed runs, newest first.
    pub async fn deployments(
        &self,
        project: &str,
        pipeline: Option<&str>,
        environment: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Deployment>> {
        let project_row = self.store().project(project).await?;
        let pipeline = match pipeline {
            Some(p) => p.to_owned(),
            None => self.single_pipeline(project).await?,
        };
        Ok(self
            .store()
            .deployments(project_row.id, &pipeline, environment, limit)
            .await?)
    }

    pub(crate) fn lower_run(&self, run: &Run) -> Result<PipelineSpec> {
        lower(&run.pipeline_path, &run.spec_yaml)
    }

    /// The name of the project's only pipeline (by the runs it has had, else its default
    /// branch), for commands where `--pipeline` may be left out.
    async fn single_pipeline(&self, project: &str) -> Result<String> {
        let (_, pipelines) = self.pipelines(project, None).await?;
        match pipelines.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => Err(Error::NoPipeline {
                project: project.to_owned(),
                commit: "the default branch".into(),
            }),
            many => Err(Error::AmbiguousPipeline {
                available: many.iter().map(|p| p.name.clone()).collect(),
            }),
        }
    }

    /// Refuses a promotion to `environment` unless every earlier environment of the pipeline
    /// completed `commit`.
    async fn check_promotable(
        &self,
        project: &Project,
        spec: &PipelineSpec,
        environment: &str,
        commit: &str,
    ) -> Result<()> {
        for earlier in spec
            .environments
            .iter()
            .take_while(|e| e.name != environment)
        {
            let done = self
                .store()
                .deployed(project.id, &spec.name, &earlier.name, commit)
                .await?;
            if done.is_none() {
                return Err(ferry_store::Error::Conflict(format!(
                    "commit {} has not completed `{}` yet; environments are promoted in order",
                    short(commit),
                    earlier.name
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Finds the pipeline to run in a project at a commit.
    pub(crate) async fn load_pipeline(
        &self,
        project: &Project,
        mirror: &git::Mirror,
        commit: &str,
        pipeline: Option<&str>,
    ) -> Result<(String, String, PipelineSpec)> {
        let mut candidates: Vec<_> = crate::lowered_pipelines(mirror, commit)
            .await?
            .into_iter()
            .map(|(path, text, lowered)| {
                let name = lowered.spec.as_ref().map(|s| s.name.clone());
                (path, text, lowered, name)
            })
            .collect();
        if candidates.is_empty() {
            return Err(Error::NoPipeline {
                project: project.name.clone(),
                commit: commit.to_owned(),
            });
        }
        let available: Vec<String> = candidates
            .iter()
            .map(|(path, _, _, name)| name.clone().unwrap_or_else(|| path.clone()))
            .collect();
        let index = match pipeline {
            Some(wanted) => candidates
                .iter()
                .position(|(path, _, _, name)| name.as_deref() == Some(wanted) || path == wanted)
                .ok_or_else(|| Error::PipelineNotFound {
                    name: wanted.to_owned(),
                    available: available.clone(),
                })?,
            None if candidates.len() == 1 => 0,
            None => return Err(Error::AmbiguousPipeline { available }),
        };
        let (path, text, lowered, _) = candidates.swap_remove(index);
        let Some(spec) = lowered.spec else {
            return Err(Error::InvalidPipeline {
                path,
                diagnostics: lowered.errors().map(ToString::to_string).collect(),
            });
        };
        // Symlinks committed in the repository may not lead a path out of it.
        if let Err(error) = crate::workspace::check_tree_paths(mirror, commit, &spec).await {
            return Err(match error {
                Error::Escape(escape) => Error::InvalidPipeline {
                    path,
                    diagnostics: vec![escape.to_string()],
                },
                other => other,
            });
        }
        Ok((path, text, spec))
    }

    /// The one place a run is created: stages from the spec and options, checks that need
    /// the spec, then the driver.
    async fn start_run(
        &self,
        actor: &Actor,
        project: &str,
        spec: &PipelineSpec,
        mut new: NewRun,
    ) -> Result<Run> {
        // Every secret and parameter the run will need must exist now: a missing one is an
        // error naming it, not a run that fails halfway.
        if let Err(message) = crate::secrets::resolve(
            self,
            spec,
            &new.pipeline_path,
            project,
            new.project_id,
            &new.git_ref,
        )
        .await?
        {
            return Err(Error::MissingSecret { message });
        }
        terraform::check_binary(
            &spec.terraform,
            &self.inner.config.path_var,
            &self.inner.versions,
        )
        .await?;
        new.stages = stages::plan_stages(spec, &new.options);
        let Some(first) = new.stages.first() else {
            return Err(Error::Refused(
                "the run would have no environment to go through".into(),
            ));
        };
        new.first_environment = first.environment.clone();
        let run = self.inner.store.create_run(actor, &new).await?;
        tracing::info!(run = %run.id, project = %run.project, number = %run.number, kind = run.kind.as_str(), "run created");
        self.spawn_driver(run.id);
        self.notify_changed();
        Ok(run)
    }

    fn refuse_when_shutting_down(&self) -> Result<()> {
        if self
            .inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }
}

fn lower(path: &str, text: &str) -> Result<PipelineSpec> {
    let lowered = ferry_spec::lower(path, text);
    let diagnostics = lowered.errors().map(ToString::to_string).collect();
    lowered.spec.ok_or_else(|| Error::InvalidPipeline {
        path: path.to_owned(),
        diagnostics,
    })
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        for ok in [
            "terraform_data.a",
            "module.net.aws_vpc.main",
            "aws_instance.web[0]",
            "aws_instance.web[\"a\"]",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-destroy", "a b", "1abc", "x\ny"] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
