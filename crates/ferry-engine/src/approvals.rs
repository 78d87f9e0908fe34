//! Approvals as an approver meets them: the decision, the runs waiting for one's decision,
//! and everything shown before deciding (plan, checks, policy report, what is deployed now).
//! The decision itself is `ferry_core::approval::decide`.

use std::time::Duration;

use ferry_core::{Actor, ApprovalRule, RunId, StageKind, StageStatus};
use ferry_store::{ApprovalMode, Decision, Plan, Run};

use crate::{Engine, PlanSummary, Result};

/// Everything an approver sees before deciding.
#[derive(Debug, Clone)]
pub struct ApprovalView {
    pub run: Run,
    pub environment: String,
    pub rule: ApprovalRule,
    pub timeout: Duration,
    /// When the wait started, if it has.
    pub waiting_since: Option<String>,
    pub plan: Option<Plan>,
    pub summary: Option<PlanSummary>,
    /// The environment's test and policy stages: (kind, status, reason, actions as
    /// (name, status, exit code)).
    pub checks: Vec<CheckResult>,
    pub decisions: Vec<ferry_store::Approval>,
    /// The commit the environment runs now, if any, and the diff stat from it.
    pub deployed_commit: Option<String>,
    pub diff_stat: Option<String>,
    /// The policy stage's report for this environment, once it ran: every finding, with
    /// whether it blocks and the waiver covering it.
    pub policy: Option<ferry_policy::Report>,
}

#[derive(Debug, Clone)]
pub struct CheckResult {
    pub stage: StageKind,
    pub status: StageStatus,
    pub reason: Option<String>,
    pub actions: Vec<(String, String, Option<i64>)>,
}

impl Engine {
    /// Approves or rejects the approval a run waits for in `environment`.
    pub async fn decide(
        &self,
        actor: &Actor,
        run: RunId,
        environment: &str,
        decision: Decision,
        comment: &str,
        mode: ApprovalMode,
    ) -> Result<Run> {
        let current = self.store().run(run).await?;
        let rule = self.approval_rule(&current, environment)?;
        let run = self
            .store()
            .decide(actor, run, environment, &rule, decision, comment, mode)
            .await?;
        self.notify_changed();
        Ok(run)
    }

    /// The approvals `actor` could give now: runs waiting in an environment whose rule lets
    /// them decide, and on which they have not decided yet.
    pub async fn approvals_for(&self, actor: &Actor) -> Result<Vec<(Run, String)>> {
        let mut out = Vec::new();
        let teams = self.store().user_teams(&actor.name).await?;
        for (run, environment) in self.store().waiting_approvals().await? {
            let Ok(rule) = self.approval_rule(&run, &environment) else {
                continue;
            };
            if rule
                .check_member(
                    &run.triggered_by,
                    run.commit_author.as_deref(),
                    &actor.name,
                    &teams,
                )
                .is_err()
            {
                continue;
            }
            let detail = self.store().run_detail(run.id).await?;
            let decided = detail
                .approvals
                .iter()
                .any(|a| a.environment == environment && a.actor == actor.name);
            if !decided {
                out.push((run, environment));
            }
        }
        Ok(out)
    }

    /// What an approver of `environment` in `run` is shown.
    pub async fn approval_view(&self, run_id: RunId, environment: &str) -> Result<ApprovalView> {
        let detail = self.store().run_detail(run_id).await?;
        let run = detail.run.clone();
        let spec = self.lower_run(&run)?;
        let env = spec
            .environment(environment)
            .ok_or_else(|| ferry_store::Error::NotFound {
                what: "environment",
                id: format!("{environment} (run {run_id})"),
            })?;
        let rule = approval_rule_of(env);
        let plan = detail
            .plans
            .iter()
            .find(|p| p.environment == environment)
            .cloned();
        let summary = plan
            .as_ref()
            .map(crate::records::plan_summary)
            .transpose()?;
        let checks = detail
            .stages
            .iter()
            .filter(|s| {
                s.environment == environment
                    && matches!(s.kind, StageKind::Test | StageKind::Policy)
            })
            .map(|s| CheckResult {
                stage: s.kind,
                status: s.status,
                reason: s.reason.clone(),
                actions: detail
                    .actions
                    .iter()
                    .filter(|a| a.stage_id == s.id)
                    .map(|a| (a.name.clone(), a.status.to_string(), a.exit_code))
                    .collect(),
            })
            .collect();
        let waiting_since = detail
            .stages
            .iter()
            .find(|s| s.environment == environment && s.kind == StageKind::Approval)
            .and_then(|s| s.started_at.clone());
        let deployed_commit = self
            .store()
            .deployments(run.project_id, &run.pipeline, Some(environment), 1)
            .await?
            .into_iter()
            .next()
            .map(|d| d.commit_sha);
        let project = self.store().project(&run.project).await?;
        let diff_stat = match self.mirror_with(&project, &run.commit_sha).await {
            Ok(mirror) => mirror
                .diff_stat(deployed_commit.as_deref(), &run.commit_sha)
                .await
                .ok(),
            Err(_) => None,
        };
        let policy = self
            .store()
            .policy_report(run.id.0, environment)
            .await?
            .as_ref()
            .map(crate::records::policy_report)
            .transpose()?;
        Ok(ApprovalView {
            policy,
            decisions: detail
                .approvals
                .iter()
                .filter(|a| a.environment == environment)
                .cloned()
                .collect(),
            run,
            environment: environment.to_owned(),
            timeout: env.approval.timeout,
            rule,
            waiting_since,
            plan,
            summary,
            checks,
            deployed_commit,
            diff_stat,
        })
    }

    pub(crate) fn approval_rule(&self, run: &Run, environment: &str) -> Result<ApprovalRule> {
        let spec = self.lower_run(run)?;
        let env = spec.environment(environment).ok_or_else(|| {
            ferry_store::Error::Conflict(format!(
                "run {} has no environment `{environment}`",
                run.id
            ))
        })?;
        Ok(approval_rule_of(env))
    }
}

fn approval_rule_of(env: &ferry_spec::EnvironmentSpec) -> ApprovalRule {
    ApprovalRule {
        approvers: env.approval.approvers.clone(),
        required: env.approval.required,
    }
}
