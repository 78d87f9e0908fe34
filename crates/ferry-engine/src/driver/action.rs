//! One action's execution: the run's checkout, Terraform's arguments, the action's state
//! credential and environment, and its processes with their output captured and masked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_executor::{ActionLog, Command, Outcome, Stream};
use ferry_store::{Action, Plan, Run, Stage};
use sha2::{Digest, Sha256};

use super::gate::{approved_plan, current_state, describe_state};
use super::{sys, Ctx};
use crate::terraform::{self, PlanSummary};
use crate::{stages, Engine, Error, Result, RunHandle};

/// The state-backend credential of one action: it reaches only the run's project and
/// environment. It is minted in the transaction that starts the action and retired (revoked,
/// any lock it left released) in the one that ends it (`Store::start_action`/`end_action`).
pub(super) struct Credential {
    pub(super) name: String,
    token: ferry_secrets::NewToken,
    scope: ferry_store::TokenScope,
    env: Vec<(String, String)>,
}

impl Credential {
    pub(super) fn new(engine: &Engine, run: &Run, stage: &Stage, action: &Action) -> Credential {
        let name = format!("run-{}-action-{}", run.id, action.id);
        let token = ferry_secrets::generate_token();
        let scope = ferry_store::TokenScope {
            run_id: run.id.0,
            project_id: run.project_id,
            environment: stage.environment.clone(),
        };
        let address = format!(
            "{}/tf/state/{}/{}",
            engine.inner.config.backend_url, run.project, stage.environment
        );
        let env = vec![
            ("TF_HTTP_ADDRESS".to_owned(), address.clone()),
            ("TF_HTTP_LOCK_ADDRESS".to_owned(), address.clone()),
            ("TF_HTTP_UNLOCK_ADDRESS".to_owned(), address),
            ("TF_HTTP_USERNAME".to_owned(), name.clone()),
            ("TF_HTTP_PASSWORD".to_owned(), token.plaintext.clone()),
        ];
        Credential {
            name,
            token,
            scope,
            env,
        }
    }

    /// What the store keeps of it: the hash, never the plaintext.
    pub(super) fn row(&self) -> ferry_store::RunCredential<'_> {
        ferry_store::RunCredential {
            name: &self.name,
            hash: &self.token.hash,
            hint: &self.token.hint,
            scope: &self.scope,
        }
    }
}

/// Executes one action: a user command, or a built-in Terraform step.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_action(
    engine: &Engine,
    handle: &RunHandle,
    ctx: &mut Ctx,
    run: &Run,
    stage: &Stage,
    action: &Action,
    credential: &Credential,
) -> Result<Outcome> {
    let deadline = Instant::now() + Duration::from_millis(action.timeout_ms.max(0) as u64);
    let binary = match &ctx.binary {
        Some(b) => b.clone(),
        None => {
            let found = terraform::check_binary(
                &ctx.spec.terraform,
                &engine.inner.config.path_var,
                &engine.inner.versions,
            )
            .await?;
            ctx.binary = Some(found.path.clone());
            found.path
        }
    };
    let env_name = stage.environment.clone();
    let tf_data = ctx.workdir.tf_data(&env_name);
    let tf_dir = prepare_workspace(engine, ctx, run, action).await?;
    let mut env = action_env(engine, ctx, run, stage, &tf_data);
    let _secret_files = ctx
        .secrets
        .apply(
            engine,
            run.id.0,
            &stage.environment,
            stage.kind.as_str(),
            ctx.workdir.root(),
            &mut env,
        )
        .await?;
    env.extend(credential.env.iter().cloned());
    let sandbox = engine.action_sandbox(&ctx.workdir, Some(&binary), &env)?;
    let bin = binary.to_string_lossy().into_owned();
    let tf = |args: &[&str]| {
        let mut argv = vec![bin.clone()];
        argv.extend(args.iter().map(|s| s.to_string()));
        Command::Argv(argv)
    };
    // A fresh workspace (a run resumed after a restart) must be initialised before use.
    if action.kind != stages::INIT && !tf_data.exists() {
        let outcome = exec(
            engine,
            handle,
            ctx,
            action,
            tf(&["init", "-input=false", "-no-color"]),
            &tf_dir,
            &env,
            sandbox.as_ref(),
            deadline,
        )
        .await?;
        if !outcome.success() {
            return Ok(outcome);
        }
    }
    match action.kind.as_str() {
        stages::INIT => {
            exec(
                engine,
                handle,
                ctx,
                action,
                tf(&["init", "-input=false", "-no-color"]),
                &tf_dir,
                &env,
                sandbox.as_ref(),
                deadline,
            )
            .await
        }
        stages::VALIDATE => {
            exec(
                engine,
                handle,
                ctx,
                action,
                tf(&["validate", "-no-color"]),
                &tf_dir,
                &env,
                sandbox.as_ref(),
                deadline,
            )
            .await
        }
        stages::COMMAND => {
            let command = action.command.clone().unwrap_or_default();
            exec(
                engine,
                handle,
                ctx,
                action,
                Command::Shell(command),
                &tf_dir,
                &env,
                sandbox.as_ref(),
                deadline,
            )
            .await
        }
        stages::PLAN => {
            let how = How {
                cwd: &tf_dir,
                env: &env,
                sandbox: sandbox.as_ref(),
                deadline,
            };
            plan(engine, handle, ctx, run, action, &env_name, &bin, &how).await
        }
        stages::APPLY => {
            let (plan, bytes) = approved_plan(engine, run, &env_name).await?;
            sys(
                ctx,
                action.id.0,
                &format!("applying the plan with sha256 {}", plan.sha256),
            )
            .await;
            // The action reads the approved bytes from a directory it cannot write.
            let copy = ctx.workdir.plan().join(format!("{env_name}.tfplan"));
            crate::workspace::write_scratch(&copy, &bytes)?;
            let copy = copy.to_string_lossy().into_owned();
            exec(
                engine,
                handle,
                ctx,
                action,
                tf(&["apply", "-input=false", "-no-color", &copy]),
                &tf_dir,
                &env,
                sandbox.as_ref(),
                deadline,
            )
            .await
        }
        other => Err(Error::Io(std::io::Error::other(format!(
            "unknown action kind `{other}`"
        )))),
    }
}

/// How one action's processes run: where, with what, confined how, until when.
struct How<'a> {
    cwd: &'a Path,
    env: &'a [(String, String)],
    sandbox: Option<&'a ferry_executor::Sandbox>,
    deadline: Instant,
}

#[allow(clippy::too_many_arguments)]
async fn plan(
    engine: &Engine,
    handle: &RunHandle,
    ctx: &mut Ctx,
    run: &Run,
    action: &Action,
    env_name: &str,
    bin: &str,
    how: &How<'_>,
) -> Result<Outcome> {
    // Terraform writes into the run's `out/`; Ferry then copies the results into the data
    // dir, which no action can see, reading them without following links.
    let dir = engine
        .data_dir()
        .join("plans")
        .join(format!("run-{}", run.id));
    tokio::fs::create_dir_all(&dir).await?;
    let plan_path = dir.join(format!("{env_name}.tfplan"));
    let json_path = dir.join(format!("{env_name}.json"));
    let out_plan = ctx.workdir.out().join(format!("{env_name}.tfplan"));
    let out_json = ctx.workdir.out().join(format!("{env_name}.json"));
    for stale in [&out_plan, &out_json] {
        match tokio::fs::remove_file(stale).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let plan_arg = format!("-out={}", out_plan.display());
    let mut argv = vec![
        bin.to_owned(),
        "plan".into(),
        "-input=false".into(),
        "-no-color".into(),
        plan_arg,
    ];
    if let Some(vars) = ctx
        .spec
        .environment(env_name)
        .and_then(|e| e.vars_file.clone())
    {
        crate::workspace::inside(how.cwd, &vars, "vars_file")?;
        argv.push(format!("-var-file={vars}"));
    }
    if run.options.destroy {
        argv.push("-destroy".into());
    }
    argv.extend(run.options.targets.iter().map(|a| format!("-target={a}")));
    argv.extend(run.options.replaces.iter().map(|a| format!("-replace={a}")));
    // The state the plan reads: the environment is held, so it only moves if someone writes
    // past Ferry (an admin, a direct backend client). Equal before and after, or the plan is
    // not trusted.
    let before = current_state(engine, run, env_name).await?;
    let outcome = exec(
        engine,
        handle,
        ctx,
        action,
        Command::Argv(argv),
        how.cwd,
        how.env,
        how.sandbox,
        how.deadline,
    )
    .await?;
    if !outcome.success() {
        return Ok(outcome);
    }
    let plan_bytes = crate::workspace::read_regular(&out_plan)?;
    crate::workspace::write_new(&plan_path, &plan_bytes)?;
    // `terraform show -json` goes to a file, not the log: it can be large and holds values.
    let show = Command::Argv(vec![
        "/bin/sh".into(),
        "-c".into(),
        r#"exec "$0" show -json -no-color "$1" > "$2""#.into(),
        bin.to_owned(),
        out_plan.to_string_lossy().into_owned(),
        out_json.to_string_lossy().into_owned(),
    ]);
    let outcome = exec(
        engine,
        handle,
        ctx,
        action,
        show,
        how.cwd,
        how.env,
        how.sandbox,
        how.deadline,
    )
    .await?;
    if !outcome.success() {
        return Ok(outcome);
    }
    crate::workspace::write_new(&json_path, &crate::workspace::read_regular(&out_json)?)?;
    let _ = tokio::fs::remove_file(&out_json).await;
    let sha256 = hex::encode(Sha256::digest(&plan_bytes));
    let json_bytes = crate::secrets::mask_file(ctx.secrets.masker(), &json_path).await?;
    let json: serde_json::Value = serde_json::from_slice(&json_bytes).map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "terraform show -json gave invalid JSON: {e}"
        )))
    })?;
    let after = current_state(engine, run, env_name).await?;
    if before != after {
        sys(
            ctx,
            action.id.0,
            &format!(
                "the state of {env_name} changed while planning ({} → {}); the plan is not recorded",
                describe_state(&before),
                describe_state(&after)
            ),
        )
        .await;
        return Ok(Outcome::Exited(1));
    }
    let summary = PlanSummary::from_plan_json(&json);
    let has_changes = summary.has_changes();
    sys(
        ctx,
        action.id.0,
        &format!(
            "plan for {env_name}: {} (sha256 {sha256}, against state {})",
            summary.short(),
            describe_state(&after)
        ),
    )
    .await;
    engine
        .store()
        .record_plan(&Plan {
            run_id: run.id,
            environment: env_name.to_owned(),
            sha256,
            has_changes,
            summary: crate::records::encode(&summary),
            plan_path: plan_path.to_string_lossy().into_owned(),
            json_path: json_path.to_string_lossy().into_owned(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            state: after,
        })
        .await?;
    Ok(outcome)
}

/// Makes sure the run's checkout exists and points Terraform at Ferry's state backend (the
/// environment's address and credential come with each action's environment variables).
/// Returns the Terraform directory, checked again to resolve inside the checkout: an
/// earlier action may have swapped a directory for a link.
async fn prepare_workspace(
    engine: &Engine,
    ctx: &mut Ctx,
    run: &Run,
    action: &Action,
) -> Result<PathBuf> {
    let src = ctx.workdir.src();
    ctx.workdir.create()?;
    if !src.join(".git").exists() {
        sys(
            ctx,
            action.id.0,
            &format!("checking out {} ({})", run.commit_sha, run.git_ref),
        )
        .await;
        let _ = tokio::fs::remove_dir_all(&src).await;
        let project = engine.store().project(&run.project).await?;
        let mirror = engine.mirror_with(&project, &run.commit_sha).await?;
        mirror.checkout(&run.commit_sha, &src).await?;
    }
    let dir = ctx.spec.terraform.dir.clone();
    let tf_dir = crate::workspace::inside(&src, &dir, "terraform.dir")?;
    if !tf_dir.is_dir() {
        return Err(Error::Io(std::io::Error::other(format!(
            "terraform directory `{dir}` does not exist at commit {}",
            run.commit_sha
        ))));
    }
    // Ferry's own override, exactly: a commit's file (or link) of that name is replaced.
    let ours = crate::workspace::read_regular(&tf_dir.join(terraform::OVERRIDE_FILE))
        .is_ok_and(|bytes| bytes == terraform::BACKEND_OVERRIDE.as_bytes());
    if !ours {
        if terraform::declares_backend(&tf_dir) {
            sys(
                ctx,
                action.id.0,
                "the configuration declares a backend; Ferry's built-in state backend replaces it for this run",
            )
            .await;
        }
        crate::workspace::write_beneath(
            &src,
            &dir,
            terraform::OVERRIDE_FILE,
            terraform::BACKEND_OVERRIDE.as_bytes(),
        )?;
    }
    Ok(tf_dir)
}

/// The complete environment of an action: a short allow-list from the server, the
/// pipeline's and environment's declared variables, and Ferry's own run variables.
fn action_env(
    engine: &Engine,
    ctx: &Ctx,
    run: &Run,
    stage: &Stage,
    tf_data: &Path,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = engine
        .inner
        .config
        .passthrough_env
        .iter()
        .cloned()
        .collect();
    env.insert("PATH".into(), engine.inner.config.path_var.clone());
    env.extend(ctx.spec.env.clone());
    if let Some(e) = ctx.spec.environment(&stage.environment) {
        env.extend(e.env.clone());
    }
    for (k, v) in [
        ("CI", "true".to_owned()),
        ("TF_IN_AUTOMATION", "1".to_owned()),
        ("TF_INPUT", "0".to_owned()),
        ("CHECKPOINT_DISABLE", "1".to_owned()),
        ("TF_DATA_DIR", tf_data.to_string_lossy().into_owned()),
        // A private temporary directory: the machine's /tmp is out of the sandbox's reach.
        ("TMPDIR", ctx.workdir.tmp().to_string_lossy().into_owned()),
        ("FERRY_RUN_ID", run.id.to_string()),
        ("FERRY_RUN_NUMBER", run.number.to_string()),
        ("FERRY_PROJECT", run.project.clone()),
        ("FERRY_PIPELINE", run.pipeline.clone()),
        ("FERRY_ENVIRONMENT", stage.environment.clone()),
        ("FERRY_STAGE", stage.kind.as_str().to_owned()),
        ("FERRY_COMMIT", run.commit_sha.clone()),
        ("FERRY_REF", run.git_ref.clone()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env.into_iter().collect()
}

/// Spawns one process for an action, records its process group, and waits for it.
#[allow(clippy::too_many_arguments)]
async fn exec(
    engine: &Engine,
    handle: &RunHandle,
    ctx: &mut Ctx,
    action: &Action,
    command: Command,
    cwd: &Path,
    env: &[(String, String)],
    sandbox: Option<&ferry_executor::Sandbox>,
    deadline: Instant,
) -> Result<Outcome> {
    let shown = match &command {
        Command::Shell(s) => s.clone(),
        Command::Argv(argv) => argv.join(" "),
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    if timeout.is_zero() {
        return Ok(Outcome::TimedOut);
    }
    let spec = ferry_executor::ActionSpec {
        command,
        cwd: cwd.to_owned(),
        env: env.to_vec(),
        timeout,
        kill_grace: engine.inner.config.kill_grace,
        sandbox: sandbox.cloned(),
    };
    let (stdout_filter, stderr_filter) = crate::secrets::MaskFilter::pair(ctx.secrets.masker());
    let mut log: ActionLog<'_> = ctx.log.action(action.id.0);
    log.line(Stream::Sys, &format!("$ {shown}")).await?;
    let running = engine.inner.executor.start(crate::executor::Job {
        run: action.run_id,
        action: action.id,
        spec,
        stdout: stdout_filter,
        stderr: stderr_filter,
    })?;
    // Recorded before waiting: recovery kills what a crash left running.
    if let Some((pid, start_time)) = running.process() {
        engine
            .store()
            .set_action_process(action.id, pid, start_time)
            .await?;
    }
    let outcome = running.wait(&mut log, handle.cancel.clone()).await?;
    log.flush().await?;
    Ok(outcome)
}
