//! The driver of one run: acquire each environment in turn, execute its stages' actions,
//! wait for approvals, and record every outcome.
//!
//! The loop re-reads the run at each step and acts on the first unfinished stage; it keeps
//! no progress of its own, which is what makes resuming after a restart trivial.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_core::{
    ActionEvent, Actor, RunEvent, RunId, RunStatus, StageEvent, StageKind, StageStatus,
};
use ferry_executor::{ActionLog, Command, Outcome, RunLog, Stream};
use ferry_spec::{ExecutionMode, PipelineSpec};
use ferry_store::{Action, Hold, Plan, Run, RunDetail, Stage};
use sha2::{Digest, Sha256};

use crate::terraform::{self, PlanSummary};
use crate::{stages, Engine, Error, Result, RunHandle, StopReason};

/// What woke a waiting driver.
enum Wake {
    Changed,
    Cancelled,
    Shutdown,
}

/// Everything a driver sets up once per run.
struct Ctx {
    spec: PipelineSpec,
    secrets: crate::secrets::RunSecrets,
    log: RunLog,
    workdir: crate::workspace::RunDir,
    binary: Option<PathBuf>,
    /// Environments already recorded as completed by this run.
    deployed: std::collections::BTreeSet<String>,
}

pub(crate) async fn drive(engine: &Engine, run_id: RunId, handle: &RunHandle) -> Result<()> {
    let store = engine.store();
    let run = store.run(run_id).await?;
    let lowered = ferry_spec::lower(&run.pipeline_path, &run.spec_yaml);
    let Some(spec) = lowered.spec else {
        let reason = format!(
            "{} no longer lowers: {}",
            run.pipeline_path,
            lowered
                .errors()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
        store
            .transition_run(run_id, RunEvent::Fail, Some(&reason), None)
            .await?;
        return Ok(());
    };
    let secrets = match crate::secrets::resolve(
        engine,
        &spec,
        &run.pipeline_path,
        &run.project,
        run.project_id,
        &run.git_ref,
    )
    .await?
    {
        Ok(secrets) => secrets,
        Err(reason) => {
            store
                .transition_run(run_id, RunEvent::Fail, Some(&reason), None)
                .await?;
            return Ok(());
        }
    };
    let log = RunLog::open(&engine.log_path(run_id)).await?;
    *handle.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(log.subscribe());
    let workdir = crate::workspace::RunDir::new(engine.work_dir(run_id));
    let mut ctx = Ctx {
        spec,
        secrets,
        log,
        workdir,
        binary: None,
        deployed: Default::default(),
    };
    let mut changed = engine.inner.changed.subscribe();
    let result = drive_loop(engine, run_id, handle, &mut ctx, &mut changed)
        .await
        .map_err(|e| ctx.secrets.mask_error(e));
    let _ = ctx.log.action(0).flush().await;
    let finished = store
        .run(run_id)
        .await
        .map(|r| r.status.is_terminal())
        .unwrap_or(false);
    if finished {
        let _ = tokio::fs::remove_dir_all(ctx.workdir.root()).await;
        // Each action retires its own credential; this is the safety net for a driver that
        // stopped between minting and retiring one.
        store.revoke_run_tokens(run_id.0).await?;
        store
            .release_locks_held_by(&Actor::system("engine"), &format!("run-{run_id}-"))
            .await?;
    }
    result
}

async fn drive_loop(
    engine: &Engine,
    run_id: RunId,
    handle: &RunHandle,
    ctx: &mut Ctx,
    changed: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<()> {
    let store = engine.store();
    loop {
        if engine.inner.shutting_down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let detail = store.run_detail(run_id).await?;
        record_deployments(engine, ctx, &detail).await?;
        let run = &detail.run;
        if run.status.is_terminal() {
            return Ok(());
        }
        if handle.cancel.is_cancelled() {
            stop(engine, handle, run_id).await?;
            continue;
        }
        let Some(stage) = detail
            .stages
            .iter()
            .find(|s| !s.status.is_terminal())
            .cloned()
        else {
            sys(ctx, 0, "run succeeded").await;
            store
                .transition_run(run_id, RunEvent::Succeed, None, None)
                .await?;
            return Ok(());
        };
        let env_name = stage.environment.clone();
        let first_of_env = detail
            .stages
            .iter()
            .find(|s| s.environment == env_name)
            .map(|s| s.id)
            == Some(stage.id);
        if stage.status == StageStatus::Pending && first_of_env {
            match hold_environment(engine, handle, ctx, run, &env_name, changed).await? {
                Some(Wake::Changed) => {}
                Some(Wake::Cancelled) => continue,
                Some(Wake::Shutdown) | None => return Ok(()),
            }
            if store.run(run_id).await?.status == RunStatus::Queued {
                store
                    .transition_run(run_id, RunEvent::Start, None, None)
                    .await?;
            }
        }
        match (stage.kind, stage.status) {
            (StageKind::Approval | StageKind::Apply, StageStatus::Pending)
                if !plan_has_changes(&detail, &env_name) =>
            {
                store
                    .transition_stage(stage.id, StageEvent::Skip, Some("the plan has no changes"))
                    .await?;
                if stage.kind == StageKind::Apply {
                    sys(ctx, 0, &format!("{env_name}: no changes, nothing to apply")).await;
                    store.release_environment(run_id, &env_name).await?;
                    engine.notify_changed();
                }
            }
            (StageKind::Approval, StageStatus::Pending) => {
                store
                    .transition_stage(stage.id, StageEvent::Start, None)
                    .await?;
                store.await_approval(run_id, stage.id).await?;
                sys(ctx, 0, &format!("{env_name}: waiting for approval (ferry approve {run_id} --env {env_name} -m \"...\")")).await;
                engine.notify_changed();
            }
            (StageKind::Approval, StageStatus::WaitingForApproval) => {
                if approval_expired(ctx, &stage) {
                    let timeout = ctx
                        .spec
                        .environment(&env_name)
                        .map(|e| e.approval.timeout)
                        .unwrap_or_default();
                    let reason = format!(
                        "MANUAL_APPROVAL_FAILED: no decision in {env_name} within {}",
                        humantime::format_duration(timeout)
                    );
                    sys(ctx, 0, &reason).await;
                    store.expire_approval(stage.id, &reason).await?;
                    engine.notify_changed();
                    continue;
                }
                match wait(engine, handle, changed).await {
                    Wake::Changed => {}
                    Wake::Cancelled => continue,
                    Wake::Shutdown => return Ok(()),
                }
            }
            (_, StageStatus::Pending) => {
                let actions: Vec<Action> = detail
                    .actions
                    .iter()
                    .filter(|a| a.stage_id == stage.id)
                    .cloned()
                    .collect();
                if !execute_stage(engine, handle, ctx, run, &stage, &actions).await? {
                    return Ok(());
                }
            }
            (_, status) => {
                // Only a crash leaves a stage mid-way, and recovery interrupts such runs first.
                let reason = format!("stage {} of {env_name} was found {status}", stage.kind);
                store
                    .transition_run(run_id, RunEvent::Interrupt, Some(&reason), None)
                    .await?;
            }
        }
    }
}

/// Records each environment the run completed: every stage succeeded or was skipped, and
/// the apply succeeded or had nothing to do. This is the history promotion checks and
/// rollback returns to.
async fn record_deployments(engine: &Engine, ctx: &mut Ctx, detail: &RunDetail) -> Result<()> {
    for environment in detail.environments() {
        if ctx.deployed.contains(environment) {
            continue;
        }
        let stages: Vec<&Stage> = detail
            .stages
            .iter()
            .filter(|s| s.environment == environment)
            .collect();
        let plan = detail.plans.iter().find(|p| p.environment == environment);
        let changed = plan.is_none_or(|p| p.has_changes);
        let settled = stages
            .iter()
            .all(|s| matches!(s.status, StageStatus::Succeeded | StageStatus::Skipped));
        let applied = stages.iter().any(|s| {
            s.kind == StageKind::Apply
                && (s.status == StageStatus::Succeeded
                    || (s.status == StageStatus::Skipped && !changed))
        });
        if settled && applied {
            engine
                .store()
                .record_deployment(
                    &detail.run,
                    environment,
                    plan.map(|p| p.sha256.as_str()),
                    changed,
                )
                .await?;
            ctx.deployed.insert(environment.to_owned());
        }
    }
    Ok(())
}

/// Whether an approval has waited longer than its environment's `approval.timeout`.
fn approval_expired(ctx: &Ctx, stage: &Stage) -> bool {
    let Some(env) = ctx.spec.environment(&stage.environment) else {
        return false;
    };
    let Some(started) = stage
        .started_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return false;
    };
    let waited = chrono::Utc::now().signed_duration_since(started);
    waited
        .to_std()
        .map(|w| w >= env.approval.timeout)
        .unwrap_or(false)
}

fn plan_has_changes(detail: &RunDetail, environment: &str) -> bool {
    let plan = detail.plans.iter().find(|p| p.environment == environment);
    plan.is_none_or(|p| p.has_changes)
}

/// Waits until something changes, the run is cancelled, or the server shuts down.
async fn wait(
    engine: &Engine,
    handle: &RunHandle,
    changed: &mut tokio::sync::watch::Receiver<u64>,
) -> Wake {
    if engine.inner.shutting_down.load(Ordering::SeqCst) {
        return Wake::Shutdown;
    }
    tokio::select! {
        _ = changed.changed() => {
            if engine.inner.shutting_down.load(Ordering::SeqCst) { Wake::Shutdown } else { Wake::Changed }
        }
        _ = handle.cancel.cancelled() => Wake::Cancelled,
        // A safety net: re-check now and then even if a wake-up was somehow missed.
        _ = tokio::time::sleep(Duration::from_secs(2)) => Wake::Changed,
    }
}

/// Queues for `environment` until this run holds it. In `superseded` mode, older runs still
/// waiting for it are superseded first. Returns `None` when the run ended meanwhile.
async fn hold_environment(
    engine: &Engine,
    handle: &RunHandle,
    ctx: &mut Ctx,
    run: &Run,
    environment: &str,
    changed: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<Option<Wake>> {
    let store = engine.store();
    let env_spec = ctx
        .spec
        .environment(environment)
        .ok_or_else(|| Error::InvalidPipeline {
            path: run.pipeline_path.clone(),
            diagnostics: vec![format!(
                "environment `{environment}` is not in the pipeline"
            )],
        })?;
    if ctx.spec.mode_for(env_spec) == ExecutionMode::Superseded {
        let superseded = store.supersede_older(run.id, environment).await?;
        if !superseded.is_empty() {
            let ids: Vec<String> = superseded.iter().map(ToString::to_string).collect();
            sys(
                ctx,
                0,
                &format!("{environment}: superseded older runs {}", ids.join(", ")),
            )
            .await;
            engine.notify_changed();
        }
    }
    let mut announced = false;
    loop {
        match store.acquire_environment(run.id, environment).await? {
            Hold::Acquired => {
                engine.notify_changed();
                return Ok(Some(Wake::Changed));
            }
            Hold::RunFinished(_) => return Ok(None),
            Hold::Waiting { holder } => {
                if !announced {
                    let by = holder
                        .map(|h| format!(" (held by run {h})"))
                        .unwrap_or_default();
                    sys(
                        ctx,
                        0,
                        &format!("{environment}: waiting for the environment{by}"),
                    )
                    .await;
                    announced = true;
                }
                match wait(engine, handle, changed).await {
                    Wake::Changed => {}
                    other => return Ok(Some(other)),
                }
            }
        }
    }
}

/// Ends the run because its token fired: cancelled by someone, or cut by shutdown.
async fn stop(engine: &Engine, handle: &RunHandle, run_id: RunId) -> Result<()> {
    let reason = handle
        .reason
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let store = engine.store();
    match reason {
        Some(StopReason::Shutdown) => {
            store
                .transition_run(
                    run_id,
                    RunEvent::Interrupt,
                    Some("the server shut down"),
                    Some(&Actor::system("shutdown")),
                )
                .await?;
        }
        Some(StopReason::Cancel(actor)) => {
            let reason = format!("cancelled by {}", actor.name);
            store
                .transition_run(run_id, RunEvent::Cancel, Some(&reason), Some(&actor))
                .await?;
        }
        None => {
            store
                .transition_run(
                    run_id,
                    RunEvent::Cancel,
                    Some("cancelled"),
                    Some(&Actor::system("engine")),
                )
                .await?;
        }
    }
    engine.notify_changed();
    Ok(())
}

/// Runs a stage's actions in order. Returns `false` when the driver should exit (shutdown).
async fn execute_stage(
    engine: &Engine,
    handle: &RunHandle,
    ctx: &mut Ctx,
    run: &Run,
    stage: &Stage,
    actions: &[Action],
) -> Result<bool> {
    let store = engine.store();
    store
        .transition_stage(stage.id, StageEvent::Start, None)
        .await?;
    sys(
        ctx,
        0,
        &format!("{}: stage {} started", stage.environment, stage.kind),
    )
    .await;
    for action in actions {
        if handle.cancel.is_cancelled() {
            stop(engine, handle, run.id).await?;
            return Ok(true);
        }
        if engine.inner.shutting_down.load(Ordering::SeqCst) {
            let reason = format!(
                "the server shut down during stage {} of {}",
                stage.kind, stage.environment
            );
            store
                .transition_run(
                    run.id,
                    RunEvent::Interrupt,
                    Some(&reason),
                    Some(&Actor::system("shutdown")),
                )
                .await?;
            return Ok(false);
        }
        store.start_action(action.id).await?;
        if action.kind == stages::POLICY_CHECK {
            if !policy_check(engine, ctx, run, stage, action).await? {
                return Ok(true);
            }
            continue;
        }
        let started = Instant::now();
        let result = run_action(engine, handle, ctx, run, stage, action).await;
        let elapsed = started.elapsed();
        let outcome_label = match &result {
            Ok(o) if o.success() => "succeeded",
            Ok(Outcome::Cancelled) => "cancelled",
            _ => "failed",
        };
        if let Some(observer) = engine
            .inner
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            observer(&action.kind, outcome_label, elapsed);
        }
        match result {
            Ok(outcome) if outcome.success() => {
                store
                    .finish_action(action.id, ActionEvent::Succeed, Some(0), None)
                    .await?;
            }
            Ok(Outcome::Cancelled) => {
                let shutdown = matches!(
                    *handle.reason.lock().unwrap_or_else(|e| e.into_inner()),
                    Some(StopReason::Shutdown)
                );
                let event = if shutdown {
                    ActionEvent::Interrupt
                } else {
                    ActionEvent::Cancel
                };
                sys(
                    ctx,
                    action.id.0,
                    if shutdown {
                        "interrupted by server shutdown"
                    } else {
                        "cancelled"
                    },
                )
                .await;
                store.finish_action(action.id, event, None, None).await?;
                stop(engine, handle, run.id).await?;
                return Ok(!shutdown);
            }
            Ok(outcome) => {
                let describe = outcome.describe();
                sys(
                    ctx,
                    action.id.0,
                    &format!("`{}` failed: {describe}", action.name),
                )
                .await;
                let code = match outcome {
                    Outcome::Exited(code) => Some(code),
                    _ => None,
                };
                fail(engine, run, stage, action, code, &describe, None).await?;
                return Ok(true);
            }
            Err(error) => {
                let message = error.to_string();
                sys(
                    ctx,
                    action.id.0,
                    &format!("`{}` could not run: {message}", action.name),
                )
                .await;
                // A refusal to apply is the run's reason as it stands; anything else is
                // explained by the action that could not run.
                let reason = match &error {
                    Error::StalePlan(_) => Some(format!("{}: {message}", stage.environment)),
                    _ => None,
                };
                fail(engine, run, stage, action, None, &message, reason).await?;
                return Ok(true);
            }
        }
    }
    store
        .transition_stage(stage.id, StageEvent::Succeed, None)
        .await?;
    sys(
        ctx,
        0,
        &format!("{}: stage {} succeeded", stage.environment, stage.kind),
    )
    .await;
    if stage.kind == StageKind::Apply {
        store
            .release_environment(run.id, &stage.environment)
            .await?;
        engine.notify_changed();
    }
    Ok(true)
}

async fn fail(
    engine: &Engine,
    run: &Run,
    stage: &Stage,
    action: &Action,
    code: Option<i32>,
    describe: &str,
    reason: Option<String>,
) -> Result<()> {
    let store = engine.store();
    store
        .finish_action(action.id, ActionEvent::Fail, code, Some(describe))
        .await?;
    let reason = reason.unwrap_or_else(|| {
        format!(
            "{} {}: `{}` failed: {describe}",
            stage.environment, stage.kind, action.name
        )
    });
    store
        .transition_stage(stage.id, StageEvent::Fail, Some(&reason))
        .await?;
    store
        .transition_run(run.id, RunEvent::Fail, Some(&reason), None)
        .await?;
    engine.notify_changed();
    Ok(())
}

/// The policy stage's one action: judges the environment's plan in the server (no process,
/// no state credential). Returns whether it passed; a failure has already failed the stage
/// and the run (with a `POLICY_VIOLATION` event when findings block).
async fn policy_check(
    engine: &Engine,
    ctx: &mut Ctx,
    run: &Run,
    stage: &Stage,
    action: &Action,
) -> Result<bool> {
    let started = Instant::now();
    let mut lines = Vec::new();
    let verdict =
        crate::policy::check(engine, &ctx.spec, run, &stage.environment, &mut lines).await;
    for line in &lines {
        sys(ctx, action.id.0, line).await;
    }
    let observe = |label: &str| {
        if let Some(observer) = engine
            .inner
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            observer(&action.kind, label, started.elapsed());
        }
    };
    match verdict? {
        crate::policy::Verdict::Passed => {
            observe("succeeded");
            engine
                .store()
                .finish_action(action.id, ActionEvent::Succeed, Some(0), None)
                .await?;
            Ok(true)
        }
        crate::policy::Verdict::Violation { reason, details } => {
            observe("failed");
            sys(ctx, action.id.0, &reason).await;
            engine
                .store()
                .fail_policy_stage(action.id, stage.id, &reason, details)
                .await?;
            engine.notify_changed();
            Ok(false)
        }
        crate::policy::Verdict::Broken(message) => {
            observe("failed");
            sys(
                ctx,
                action.id.0,
                &format!("`{}` could not run: {message}", action.name),
            )
            .await;
            let reason = format!("{} {}: {message}", stage.environment, stage.kind);
            fail(engine, run, stage, action, None, &message, Some(reason)).await?;
            Ok(false)
        }
    }
}

async fn sys(ctx: &mut Ctx, action: i64, text: &str) {
    let mut log = ctx.log.action(action);
    if let Err(error) = log.line(Stream::Sys, text).await {
        tracing::warn!(%error, "could not write to the run log");
    }
    let _ = log.flush().await;
}

/// Executes one action: a user command, or a built-in Terraform step.
async fn run_action(
    engine: &Engine,
    handle: &RunHandle,
    ctx: &mut Ctx,
    run: &Run,
    stage: &Stage,
    action: &Action,
) -> Result<Outcome> {
    let credential = Credential::mint(engine, run, stage, action).await?;
    let result = run_action_with(engine, handle, ctx, run, stage, action, &credential).await;
    credential.retire(engine, ctx, action).await?;
    result
}

/// The state-backend credential of one action: it reaches only the run's project and
/// environment, and is revoked (and any lock it left behind released) when the action ends.
struct Credential {
    name: String,
    env: Vec<(String, String)>,
}

impl Credential {
    async fn mint(
        engine: &Engine,
        run: &Run,
        stage: &Stage,
        action: &Action,
    ) -> Result<Credential> {
        let name = format!("run-{}-action-{}", run.id, action.id);
        let token = ferry_secrets::generate_token();
        let scope = ferry_store::TokenScope {
            run_id: run.id.0,
            project_id: run.project_id,
            environment: stage.environment.clone(),
        };
        engine
            .store()
            .create_run_token(&name, &token.hash, &token.hint, &scope)
            .await?;
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
        Ok(Credential { name, env })
    }

    async fn retire(self, engine: &Engine, ctx: &mut Ctx, action: &Action) -> Result<()> {
        let store = engine.store();
        store.revoke_token_named(&self.name).await?;
        let released = store
            .release_locks_held_by(&Actor::system("engine"), &self.name)
            .await?;
        for state in released {
            sys(
                ctx,
                action.id.0,
                &format!("released the lock this action left on state {state}"),
            )
            .await;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_action_with(
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
            let (plan, bytes) = match approved_plan(engine, run, &env_name).await? {
                Ok(approved) => approved,
                Err(refusal) => return Err(Error::StalePlan(refusal)),
            };
            sys(
                ctx,
                action.id.0,
                &format!("applying the plan with sha256 {}", plan.sha256),
            )
            .await;
            // The action reads the approved bytes from a directory it cannot write.
            let copy = ctx.workdir.plan().join(format!("{env_name}.tfplan"));
            crate::workspace::write_new(&copy, &bytes)?;
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

/// The plan to apply, or why none may be: apply exactly what was approved (PRODUCT.md §4
/// invariant 1). The stored plan file must hash to the digest recorded at plan time and
/// named by every approval of the environment, and the state must still be the one the plan
/// was made against. Checked here, before any `terraform apply` starts, rather than left to
/// Terraform's own stale-plan error.
async fn approved_plan(
    engine: &Engine,
    run: &Run,
    environment: &str,
) -> Result<std::result::Result<(Plan, Vec<u8>), String>> {
    let store = engine.store();
    let Some(plan) = store.plan(run.id, environment).await? else {
        return Ok(Err(format!(
            "STALE_PLAN: no plan is recorded for {environment}; refusing to apply"
        )));
    };
    let detail = store.run_detail(run.id).await?;
    for approval in detail
        .approvals
        .iter()
        .filter(|a| a.environment == environment && a.decision == ferry_store::Decision::Approve)
    {
        if approval.plan_sha256.as_deref() != Some(plan.sha256.as_str())
            || approval.state.as_ref().map(|b| (&b.lineage, b.serial))
                != plan.state.as_ref().map(|b| (&b.lineage, b.serial))
        {
            return Ok(Err(format!(
                "STALE_PLAN: {}'s approval names plan {}, not the recorded plan {}; refusing to apply",
                approval.actor,
                approval.plan_sha256.as_deref().unwrap_or("(none)"),
                plan.sha256
            )));
        }
    }
    let bytes = match tokio::fs::read(&plan.plan_path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Ok(Err(format!(
                "STALE_PLAN: the stored plan file cannot be read ({e}); refusing to apply"
            )))
        }
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    if digest != plan.sha256 {
        return Ok(Err(format!(
            "STALE_PLAN: the stored plan file's sha256 is {digest}, not the approved {}; it was altered after planning; refusing to apply",
            plan.sha256
        )));
    }
    let now = current_state(engine, run, environment).await?;
    if now.as_ref().map(|b| (&b.lineage, b.serial))
        != plan.state.as_ref().map(|b| (&b.lineage, b.serial))
    {
        return Ok(Err(format!(
            "STALE_PLAN: the plan was made against state {} but the state is now {}; refusing to apply (ferry retry {} re-plans)",
            describe_state(&plan.state),
            describe_state(&now),
            run.id
        )));
    }
    Ok(Ok((plan, bytes)))
}

/// The current version of the environment's state, if it has one.
async fn current_state(
    engine: &Engine,
    run: &Run,
    environment: &str,
) -> Result<Option<ferry_store::StateBinding>> {
    let addr = ferry_store::StateAddr {
        project_id: run.project_id,
        project: &run.project,
        environment,
        name: "",
    };
    Ok(engine
        .store()
        .state(addr)
        .await?
        .and_then(|(_, version)| version)
        .map(|v| ferry_store::StateBinding {
            lineage: v.lineage,
            serial: v.serial,
            version: v.number,
        }))
}

fn describe_state(state: &Option<ferry_store::StateBinding>) -> String {
    match state {
        Some(b) => format!(
            "lineage {} serial {} (version {})",
            b.lineage, b.serial, b.version
        ),
        None => "(no state yet)".to_owned(),
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
            summary: serde_json::to_string(&summary).unwrap_or_default(),
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
    let running = ferry_executor::spawn(&spec)?.with_filters(stdout_filter, stderr_filter);
    engine
        .store()
        .set_action_process(action.id, running.pid(), running.start_time())
        .await?;
    let outcome = running.wait(&mut log, handle.cancel.clone()).await?;
    log.flush().await?;
    Ok(outcome)
}
