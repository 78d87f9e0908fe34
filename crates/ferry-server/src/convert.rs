//! Store rows to wire types, by hand: the database shape and the public API evolve apart.

use ferry_api as api;
use ferry_store as store;

pub(crate) fn project(p: store::Project) -> api::Project {
    api::Project {
        name: p.name,
        repo: p.repo,
        created_at: p.created_at,
        created_by: p.created_by,
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
    }
}

pub(crate) fn run_detail(d: store::RunDetail) -> api::RunDetail {
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
    let plans = d
        .plans
        .into_iter()
        .map(|p| {
            let summary: ferry_engine::PlanSummary =
                serde_json::from_str(&p.summary).unwrap_or_default();
            api::PlanSummary {
                environment: p.environment,
                sha256: p.sha256,
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
            }
        })
        .collect();
    let approvals = d
        .approvals
        .into_iter()
        .map(|a| api::Approval {
            environment: a.environment,
            decision: a.decision.as_str().to_owned(),
            comment: a.comment,
            actor: a.actor,
            created_at: a.created_at,
        })
        .collect();
    api::RunDetail {
        run: run(d.run),
        stages,
        plans,
        approvals,
    }
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

pub(crate) fn log_line(l: ferry_executor::LogLine) -> api::LogLine {
    api::LogLine {
        seq: l.seq,
        action: l.action,
        n: l.n,
        ts: l.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        stream: match l.stream {
            ferry_executor::Stream::Out => "out",
            ferry_executor::Stream::Err => "err",
            ferry_executor::Stream::Sys => "sys",
        }
        .to_owned(),
        text: l.text,
        continued: l.c,
    }
}
