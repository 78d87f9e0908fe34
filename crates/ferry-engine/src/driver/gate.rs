//! The apply gate: the plan an apply may use is exactly the approved one, against the state
//! it was planned on.

use ferry_core::FailureCode;
use ferry_store::{Plan, Run};
use sha2::{Digest, Sha256};

use crate::{Engine, Error, Result};

/// A refusal to apply: `STALE_PLAN: …`.
fn stale(detail: impl std::fmt::Display) -> Error {
    Error::StalePlan(FailureCode::StalePlan.reason(detail))
}

/// The plan to apply, or why none may be: apply exactly what was approved (PRODUCT.md §4
/// invariant 1). The stored plan file must hash to the digest recorded at plan time and
/// named by every approval of the environment, and the state must still be the one the plan
/// was made against. Checked here, before any `terraform apply` starts, rather than left to
/// Terraform's own stale-plan error. A refusal is [`Error::StalePlan`].
pub(super) async fn approved_plan(
    engine: &Engine,
    run: &Run,
    environment: &str,
) -> Result<(Plan, Vec<u8>)> {
    let store = engine.store();
    let Some(plan) = store.plan(run.id, environment).await? else {
        return Err(stale(format_args!(
            "no plan is recorded for {environment}; refusing to apply"
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
            return Err(stale(format_args!(
                "{}'s approval names plan {}, not the recorded plan {}; refusing to apply",
                approval.actor,
                approval.plan_sha256.as_deref().unwrap_or("(none)"),
                plan.sha256
            )));
        }
    }
    let bytes = match tokio::fs::read(&plan.plan_path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Err(stale(format_args!(
                "the stored plan file cannot be read ({e}); refusing to apply"
            )))
        }
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    if digest != plan.sha256 {
        return Err(stale(format_args!(
                "the stored plan file's sha256 is {digest}, not the approved {}; it was altered after planning; refusing to apply",
            plan.sha256
        )));
    }
    let now = current_state(engine, run, environment).await?;
    if now.as_ref().map(|b| (&b.lineage, b.serial))
        != plan.state.as_ref().map(|b| (&b.lineage, b.serial))
    {
        return Err(stale(format_args!(
                "the plan was made against state {} but the state is now {}; refusing to apply (ferry retry {} re-plans)",
            describe_state(&plan.state),
            describe_state(&now),
            run.id
        )));
    }
    Ok((plan, bytes))
}

/// The current version of the environment's state, if it has one.
pub(super) async fn current_state(
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

pub(super) fn describe_state(state: &Option<ferry_store::StateBinding>) -> String {
    match state {
        Some(b) => format!(
            "lineage {} serial {} (version {})",
            b.lineage, b.serial, b.version
        ),
        None => "(no state yet)".to_owned(),
    }
}
