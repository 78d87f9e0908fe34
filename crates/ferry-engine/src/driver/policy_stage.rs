//! The policy stage's one action, judged inside the server: no process, no credential.

use std::time::Instant;

use ferry_core::ActionEvent;
use ferry_store::{Action, ActionEnd, Failure, Run, Stage};

use super::{end_action, fail, sys, Ctx};
use crate::{Engine, Result};

/// The policy stage's one action: judges the environment's plan in the server (no process,
/// no state credential). Returns whether it passed; a failure has already failed the stage
/// and the run (with a `POLICY_VIOLATION` event when findings block).
pub(super) async fn policy_check(
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
            let end = ActionEnd {
                event: ActionEvent::Succeed,
                exit_code: Some(0),
                error: None,
                credential: None,
                failure: None,
            };
            end_action(engine, ctx, action, &end).await?;
            Ok(true)
        }
        crate::policy::Verdict::Violation { reason, details } => {
            observe("failed");
            sys(ctx, action.id.0, &reason).await;
            let end = ActionEnd {
                event: ActionEvent::Fail,
                exit_code: Some(1),
                error: Some(&reason),
                credential: None,
                failure: Some(Failure {
                    reason: &reason,
                    event: Some((ferry_core::EventType::PolicyViolation, details)),
                }),
            };
            end_action(engine, ctx, action, &end).await?;
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
            fail(
                engine,
                ctx,
                stage,
                action,
                None,
                &message,
                Some(reason),
                None,
            )
            .await?;
            Ok(false)
        }
    }
}
