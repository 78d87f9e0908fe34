//! The driver of one run: acquire each environment in turn, execute its stages' actions,
//! wait for approvals, and record every outcome.
//!
//! The loop re-reads the run at each step and acts on the first unfinished stage; it keeps
//! no progress of its own, which is what makes resuming after a restart trivial.
//!
//! `action` executes one action (checkout, Terraform arguments, credentials, capture);
//! `gate` decides whether an apply may use the recorded plan.

mod action;
mod gate;
mod policy_stage;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_core::{
    ActionEvent, Actor, RunEvent, RunId, RunStatus, StageEvent, StageKind, StageStatus,
};
use ferry_executor::{Outcome, RunLog, Stream};
use ferry_spec::{ExecutionMode, PipelineSpec};
use ferry_store::{Action, ActionEnd, Failure, Hold, Run, RunDetail, Stage};

use crate::{stages, Engine, Error, Result, RunHandle, StopReason};
use action::{run_action, Credential};
use policy_stage::policy_check;

/// What woke a waiting driver.
enum Wake {
    Changed,
    Cancelled,
    Shutdown,
}

/// Everything a driver sets up once per run.
pub(super) struct Ctx {
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
                    let reason =
                        ferry_core::FailureCode::ManualApprovalFailed.reason(format_args!(
                            "no decision in {env_name} within {}",
                            humantime::format_duration(timeout)
                        ));
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
        if action.kind == stages::POLICY_CHECK {
            store.start_action(action.id, None).await?;
            if !policy_check(engine, ctx, run, stage, action).await? {
                return Ok(true);
            }
            continue;
        }
        let credential = Credential::new(engine, run, stage, action);
        store
            .start_action(action.id, Some(&credential.row()))
            .await?;
        let started = Instant::now();
        let result = run_action(engine, handle, ctx, run, stage, action, &credential).await;
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
                let end = ActionEnd {
                    event: ActionEvent::Succeed,
                    exit_code: Some(0),
                    error: None,
                    credential: Some(&credential.name),
                    failure: None,
                };
                end_action(engine, ctx, action, &end).await?;
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
                let end = ActionEnd {
                    event,
                    exit_code: None,
                    error: None,
                    credential: Some(&credential.name),
                    failure: None,
                };
                end_action(engine, ctx, action, &end).await?;
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
                fail(
                    engine,
                    ctx,
                    stage,
                    action,
                    code,
                    &describe,
                    None,
                    Some(&credential.name),
                )
                .await?;
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
                fail(
                    engine,
                    ctx,
                    stage,
                    action,
                    None,
                    &message,
                    reason,
                    Some(&credential.name),
                )
                .await?;
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

/// Ends an action in one commit (its credential retired with it) and logs the locks it left.
pub(super) async fn end_action(
    engine: &Engine,
    ctx: &mut Ctx,
    action: &Action,
    end: &ActionEnd<'_>,
) -> Result<()> {
    let released = engine.store().end_action(action.id, end).await?;
    for state in released {
        sys(
            ctx,
            action.id.0,
            &format!("released the lock this action left on state {state}"),
        )
        .await;
    }
    if end.failure.is_some() {
        engine.notify_changed();
    }
    Ok(())
}

/// Fails the action, its stage and the run in one commit, with `reason` (default: the
/// action's own failure) as the stage's and the run's reason.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fail(
    engine: &Engine,
    ctx: &mut Ctx,
    stage: &Stage,
    action: &Action,
    code: Option<i32>,
    describe: &str,
    reason: Option<String>,
    credential: Option<&str>,
) -> Result<()> {
    let reason = reason.unwrap_or_else(|| {
        format!(
            "{} {}: `{}` failed: {describe}",
            stage.environment, stage.kind, action.name
        )
    });
    let end = ActionEnd {
        event: ActionEvent::Fail,
        exit_code: code,
        error: Some(describe),
        credential,
        failure: Some(Failure {
            reason: &reason,
            event: None,
        }),
    };
    end_action(engine, ctx, action, &end).await
}

pub(super) async fn sys(ctx: &mut Ctx, action: i64, text: &str) {
    let mut log = ctx.log.action(action);
    if let Err(error) = log.line(Stream::Sys, text).await {
        tracing::warn!(%error, "could not write to the run log");
    }
    let _ = log.flush().await;
}
