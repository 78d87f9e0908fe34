//! Store rows to wire types, by hand: the database shape and the public API evolve apart.

use ferry_api as api;
use ferry_engine::model as store;

use crate::error::ApiResult;

pub(crate) fn project(p: store::Project) -> api::Project {
    api::Project {
        name: p.name,
        repo: p.repo,
        created_at: p.created_at,
        created_by: p.created_by,
        git_username: p.git.as_ref().map(|g| g.username.clone()),
        git_secret: p.git.map(|g| g.secret),
    }
}

pub(crate) fn run(r: store::Run) -> api::Run {
    api::Run {
        id: r.id.0,
        project: r.project,
        number: r.number.0,
        pipeline: r.pipeline,
        git_ref: r.git_ref,
        commit: r.commit_sha,
        status: r.status.as_str().to_owned(),
        reason: r.reason,
        triggered_by: r.triggered_by,
        waiting_for: r.waiting_env,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        kind: r.kind.as_str().to_owned(),
        options: api::RunOptions {
            environments: r.options.environments,
            targets: r.options.targets,
            replaces: r.options.replaces,
            destroy: r.options.destroy,
        },
        source_run: r.source_run.map(|id| id.0),
        commit_author: r.commit_author,
    }
}

fn binding(b: Option<store::StateBinding>) -> Option<api::StateBinding> {
    b.map(|b| api::StateBinding {
        lineage: b.lineage,
        serial: b.serial,
    })
}

pub(crate) fn plan(p: store::Plan) -> ApiResult<api::PlanSummary> {
    let summary = ferry_engine::records::plan_summary(&p)?;
    Ok(api::PlanSummary {
        environment: p.environment,
        sha256: p.sha256,
        state: binding(p.state),
        add: summary.add,
        change: summary.change,
        destroy: summary.destroy,
        has_changes: p.has_changes,
        resources: summary
            .resources
            .into_iter()
            .map(|r| api::ResourceChange {
                address: r.address,
                action: r.action,
            })
            .collect(),
        created_at: p.created_at,
    })
}

pub(crate) fn approval(a: store::Approval) -> api::Approval {
    api::Approval {
        environment: a.environment,
        decision: a.decision.as_str().to_owned(),
        comment: a.comment,
        actor: a.actor,
        created_at: a.created_at,
        plan_sha256: a.plan_sha256,
        state: binding(a.state),
        commit: a.commit_sha,
        break_glass: a.break_glass,
    }
}

pub(crate) fn deployment(d: store::Deployment) -> api::Deployment {
    api::Deployment {
        environment: d.environment,
        pipeline: d.pipeline,
        run_id: d.run_id.0,
        run_number: d.run_number.0,
        run_kind: d.run_kind.as_str().to_owned(),
        commit: d.commit_sha,
        plan_sha256: d.plan_sha256,
        changed: d.changed,
        completed_at: d.completed_at,
    }
}

pub(crate) fn event(e: store::Event) -> api::Event {
    api::Event {
        id: e.id,
        kind: e.kind.as_str().to_owned(),
        time: e.time,
        project: e.project,
        pipeline: e.pipeline,
        run_id: e.run_id,
        run_number: e.run_number,
        environment: e.environment,
        stage: e.stage,
        action: e.action,
        commit: e.commit,
        actor: e.actor,
        reason: e.reason,
        details: serde_json::from_str(&e.details).unwrap_or_else(|_| serde_json::json!({})),
    }
}

pub(crate) fn audit(r: ferry_engine::model::AuditRecord) -> api::AuditEntry {
    api::AuditEntry {
        seq: r.seq,
        time: r.ts,
        actor: r.actor,
        action: r.action,
        target: r.target,
        outcome: r.outcome,
        source: r.source,
        details: serde_json::from_str(&r.details).unwrap_or_else(|_| serde_json::json!({})),
        mac: r.mac,
    }
}

pub(crate) fn approval_view(v: ferry_engine::ApprovalView) -> ApiResult<api::ApprovalView> {
    Ok(api::ApprovalView {
        run: run(v.run),
        environment: v.environment,
        approvers: v.rule.approvers,
        required: v.rule.required,
        timeout_seconds: v.timeout.as_secs(),
        waiting_since: v.waiting_since,
        plan: v.plan.map(plan).transpose()?,
        checks: v
            .checks
            .into_iter()
            .map(|c| api::Check {
                stage: c.stage.as_str().to_owned(),
                status: c.status.as_str().to_owned(),
                reason: c.reason,
                actions: c
                    .actions
                    .into_iter()
                    .map(|(name, status, exit_code)| api::CheckAction {
                        name,
                        status,
                        exit_code,
                    })
                    .collect(),
            })
            .collect(),
        decisions: v.decisions.into_iter().map(approval).collect(),
        deployed_commit: v.deployed_commit,
        diff_stat: v.diff_stat,
        policy: v.policy.map(policy_report),
    })
}

pub(crate) fn policy_report(r: ferry_policy::Report) -> api::PolicyReport {
    api::PolicyReport {
        environment: r.environment.clone(),
        fail_on: r.fail_on.as_str().to_owned(),
        blocked: r.blocked(),
        findings: r
            .entries
            .into_iter()
            .map(|e| api::PolicyFinding {
                rule: e.finding.rule,
                severity: e.finding.severity.as_str().to_owned(),
                address: e.finding.address,
                message: e.finding.message,
                remediation: e.finding.remediation,
                blocking: e.blocking,
                waived: e.waiver.is_some(),
                waived_by: e.waiver.as_ref().map(|w| w.created_by.clone()),
                waiver_reason: e.waiver.as_ref().map(|w| w.reason.clone()),
                waiver_expires_at: e.waiver.as_ref().map(|w| {
                    w.expires_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
            })
            .collect(),
    }
}

pub(crate) fn waiver(w: store::WaiverRow) -> api::Waiver {
    api::Waiver {
        id: w.id,
        project: w.project,
        rule: w.rule,
        address: w.address,
        environment: w.environment,
        resource_type: w.resource_type,
        reason: w.reason,
        expires_at: w.expires_at,
        created_by: w.created_by,
        created_at: w.created_at,
        run_id: w.run_id,
        revoked_at: w.revoked_at,
        revoked_by: w.revoked_by,
    }
}

pub(crate) fn run_detail(d: store::RunDetail) -> ApiResult<api::RunDetail> {
    let stages = d
        .stages
        .into_iter()
        .map(|s| api::Stage {
            id: s.id.0,
            environment: s.environment,
            kind: s.kind.as_str().to_owned(),
            status: s.status.as_str().to_owned(),
            reason: s.reason,
            started_at: s.started_at,
            finished_at: s.finished_at,
            actions: d
                .actions
                .iter()
                .filter(|a| a.stage_id == s.id)
                .map(|a| api::Action {
                    id: a.id.0,
                    name: a.name.clone(),
                    kind: a.kind.clone(),
                    command: a.command.clone(),
                    status: a.status.as_str().to_owned(),
                    exit_code: a.exit_code,
                    error: a.error.clone(),
                    started_at: a.started_at.clone(),
                    finished_at: a.finished_at.clone(),
                })
                .collect(),
        })
        .collect();
    let plans = d.plans.into_iter().map(plan).collect::<ApiResult<_>>()?;
    let approvals = d.approvals.into_iter().map(approval).collect();
    Ok(api::RunDetail {
        run: run(d.run),
        stages,
        plans,
        approvals,
        policy: Vec::new(),
    })
}

pub(crate) fn token(t: store::Token) -> api::Token {
    api::Token {
        name: t.name,
        hint: t.hint,
        admin: t.admin,
        user: None,
        scopes: Vec::new(),
        expires_at: t.expires_at,
        created_at: t.created_at,
        created_by: t.created_by,
        revoked_at: t.revoked_at,
        last_used_at: t.last_used_at,
    }
}

pub(crate) fn log_line(l: ferry_engine::model::LogLine) -> api::LogLine {
    api::LogLine {
        seq: l.seq,
        action: l.action,
        n: l.n,
        ts: l.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        stream: match l.stream {
            ferry_engine::model::Stream::Out => "out",
            ferry_engine::model::Stream::Err => "err",
            ferry_engine::model::Stream::Sys => "sys",
        }
        .to_owned(),
        text: l.text,
        continued: l.c,
    }
}
