//! Environments, promotion and approvals bound to plans, through the API on real Terraform
//! and git: a commit goes dev (auto) → staging (one approval) → prod (two named approvers);
//! apply refuses a plan whose state moved on or whose file changed after approval; retry
//! re-plans; rollback returns an environment to an earlier commit through the same gate;
//! a destroy always waits for an approval; every decision is an event and an audit entry.

use std::time::Duration;

use ferry_api::{ApprovalCreate, Client, PromoteCreate, RollbackCreate, RunCreate};
use ferry_test_support::terraform_data_config;
use serde_json::json;

use crate::common::{api_error, approve, TestServer, RUN_TIMEOUT};
use crate::state_backend::{basic, raw, state_json};

const THREE_ENVS: &str = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: staging\n  - name: prod\n    approval: { approvers: [carol, dave, erin], required: 2 }\n";

fn decision(env: &str, decision: &str, comment: &str) -> ApprovalCreate {
    ApprovalCreate {
        environment: env.to_owned(),
        decision: decision.to_owned(),
        comment: comment.to_owned(),
        break_glass: false,
    }
}

async fn waiting_in(server: &TestServer, run: i64, env: &str) -> ferry_api::RunDetail {
    let want = env.to_owned();
    server
        .wait_run(
            run,
            &format!("waiting for approval in {env}"),
            RUN_TIMEOUT,
            move |d| {
                d.run.status == "WaitingForApproval"
                    && d.stages.iter().any(|s| {
                        s.environment == want
                            && s.kind == "approval"
                            && s.status == "WaitingForApproval"
                    })
            },
        )
        .await
}

fn statuses(detail: &ferry_api::RunDetail, env: &str) -> Vec<(String, String)> {
    detail
        .stages
        .iter()
        .filter(|s| s.environment == env)
        .map(|s| (s.kind.clone(), s.status.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_promoted_through_three_environments_with_their_own_rules() {
    let mut server = TestServer::start().await;
    server
        .project(
            "net",
            &[
                ("ferry.yaml", THREE_ENVS),
                ("main.tf", &terraform_data_config(2)),
            ],
        )
        .await;
    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;

    let run = bob.runs_create("net", &RunCreate::default()).await.unwrap();
    assert_eq!(run.kind, "deploy");
    // dev applies on its own; staging waits after plan and policy.
    let detail = waiting_in(&server, run.id, "staging").await;
    assert_eq!(
        statuses(&detail, "dev")
            .iter()
            .map(|(k, s)| format!("{k}:{s}"))
            .collect::<Vec<_>>(),
        [
            "validate:Succeeded",
            "plan:Succeeded",
            "policy:Succeeded",
            "apply:Succeeded"
        ]
    );
    // Nobody approves their own change; the environment's own rule applies.
    let (status, body) = api_error(bob.approvals_create(run.id, &approve("staging")).await);
    assert_eq!(
        (status, body.code.as_str()),
        (403, "forbidden"),
        "{}",
        body.message
    );
    // `ferry approvals` for carol lists it; for bob (the triggerer) it does not.
    let mine = carol.approvals_pending().await.unwrap();
    assert_eq!(
        mine.iter()
            .map(|p| (p.run.id, p.environment.as_str()))
            .collect::<Vec<_>>(),
        [(run.id, "staging")]
    );
    assert!(bob.approvals_pending().await.unwrap().is_empty());
    // The approval view: plan, checks, commit, diff stat.
    let view = carol.approval_view(run.id, "staging").await.unwrap();
    let plan = view.plan.as_ref().expect("plan shown");
    assert_eq!((plan.add, plan.change, plan.destroy), (2, 0, 0));
    assert!(view
        .checks
        .iter()
        .any(|c| c.stage == "policy" && c.status == "Succeeded"));
    assert!(
        view.diff_stat.as_deref().unwrap_or("").contains("main.tf"),
        "{:?}",
        view.diff_stat
    );
    assert_eq!(view.required, 1);

    carol
        .approvals_create(run.id, &approve("staging"))
        .await
        .unwrap();
    let detail = waiting_in(&server, run.id, "prod").await;
    let staging_plan = detail
        .plans
        .iter()
        .find(|p| p.environment == "staging")
        .unwrap()
        .sha256
        .clone();
    let approval = detail
        .approvals
        .iter()
        .find(|a| a.environment == "staging")
        .unwrap();
    assert_eq!(
        approval.plan_sha256.as_deref(),
        Some(staging_plan.as_str()),
        "bound to the plan"
    );
    assert_eq!(approval.commit.as_deref(), Some(run.commit.as_str()));

    // prod: two distinct named approvers; bob is not listed; carol once only.
    let (status, _) = api_error(bob.approvals_create(run.id, &approve("prod")).await);
    assert_eq!(status, 403);
    let after_one = carol
        .approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    assert_eq!(after_one.status, "WaitingForApproval");
    let (status, body) = api_error(carol.approvals_create(run.id, &approve("prod")).await);
    assert_eq!(status, 409, "{}", body.message);
    // Deciding for an environment that does not wait: 409.
    let (status, _) = api_error(dave.approvals_create(run.id, &approve("staging")).await);
    assert_eq!(status, 409);
    dave.approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    let done = server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    assert_eq!(done.plans.len(), 3);

    // History: each environment completed with this commit.
    let history = server.admin.deployments("net", None, None).await.unwrap();
    let mut envs: Vec<&str> = history.iter().map(|d| d.environment.as_str()).collect();
    envs.sort();
    assert_eq!(envs, ["dev", "prod", "staging"]);
    assert!(history
        .iter()
        .all(|d| d.commit == run.commit && d.run_id == run.id && d.changed));

    // Events: the whole story, in order, with the approvals' plan digests.
    let page = server
        .admin
        .events(0, &[("run", run.id.to_string()), ("limit", "1000".into())])
        .await
        .unwrap();
    let kinds: Vec<(&str, Option<&str>)> = page
        .events
        .iter()
        .filter(|e| !e.kind.starts_with("ACTION_") && !e.kind.starts_with("STAGE_"))
        .map(|e| (e.kind.as_str(), e.environment.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("PIPELINE_EXECUTION_STARTED", None),
            ("MANUAL_APPROVAL_NEEDED", Some("staging")),
            ("MANUAL_APPROVAL_SUCCEEDED", Some("staging")),
            ("MANUAL_APPROVAL_NEEDED", Some("prod")),
            ("MANUAL_APPROVAL_SUCCEEDED", Some("prod")),
            ("PIPELINE_EXECUTION_SUCCEEDED", None),
        ]
    );
    let succeeded = page
        .events
        .iter()
        .find(|e| e.kind == "MANUAL_APPROVAL_SUCCEEDED")
        .unwrap();
    assert_eq!(succeeded.actor, "carol");
    assert_eq!(succeeded.details["plan_sha256"], json!(staging_plan));
    assert!(page
        .events
        .iter()
        .any(|e| e.kind == "ACTION_EXECUTION_SUCCEEDED"
            && e.action.as_deref() == Some("terraform apply")
            && e.environment.as_deref() == Some("prod")));
    // The cursor pages without gaps or repeats.
    let first = server
        .admin
        .events(0, &[("run", run.id.to_string()), ("limit", "3".into())])
        .await
        .unwrap();
    let second = server
        .admin
        .events(
            first.next_after,
            &[("run", run.id.to_string()), ("limit", "3".into())],
        )
        .await
        .unwrap();
    assert_eq!(first.events.len(), 3);
    assert_eq!(second.events[0].id, page.events[3].id);
    // Filter by type.
    let needed = server
        .admin
        .events(0, &[("type", "MANUAL_APPROVAL_NEEDED".into())])
        .await
        .unwrap();
    assert_eq!(needed.events.len(), 2);

    // Audit: approvals name the plan digest; only admins read the audit log.
    let audit = server
        .admin
        .audit(0, &[("action", "run.approve".into())])
        .await
        .unwrap();
    let granted: Vec<_> = audit
        .entries
        .iter()
        .filter(|e| e.outcome != "denied")
        .collect();
    assert_eq!(granted.len(), 3, "{:#?}", audit.entries);
    assert!(granted.iter().all(|e| e.details["plan_sha256"].is_string()));
    assert_eq!(
        audit
            .entries
            .iter()
            .filter(|e| e.outcome == "denied")
            .count(),
        2,
        "bob's two refused attempts are on the record too"
    );
    let (status, _) = api_error(carol.audit(0, &[]).await);
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_needs_the_earlier_environments_and_starts_at_the_named_one() {
    let mut server = TestServer::start().await;
    let two = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: prod\n    auto_apply: true\n";
    server
        .project(
            "net",
            &[("ferry.yaml", two), ("main.tf", &terraform_data_config(1))],
        )
        .await;
    let body = PromoteCreate {
        environment: "prod".into(),
        ..PromoteCreate::default()
    };
    let (status, body_err) = api_error(server.admin.promote("net", &body).await);
    assert_eq!(status, 409, "{}", body_err.message);
    assert!(
        body_err.message.contains("has not completed `dev`"),
        "{}",
        body_err.message
    );
    // `--env prod` on a plain trigger is the same check.
    let direct = RunCreate {
        environment: Some("prod".into()),
        ..RunCreate::default()
    };
    assert_eq!(
        api_error(server.admin.runs_create("net", &direct).await).0,
        409
    );

    // Deploy only dev, then promote the same commit to prod.
    let dev_only = server
        .admin
        .runs_create(
            "net",
            &RunCreate {
                environment: Some("dev".into()),
                ..RunCreate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        dev_only.options.environments,
        ["dev", "prod"],
        "from dev on"
    );
    server
        .wait_status(dev_only.id, "Succeeded", RUN_TIMEOUT)
        .await;
    let promoted = server
        .admin
        .promote(
            "net",
            &PromoteCreate {
                environment: "prod".into(),
                from_run: Some(dev_only.id),
                ..PromoteCreate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(promoted.kind, "promote");
    assert_eq!(promoted.commit, dev_only.commit);
    let detail = server
        .wait_status(promoted.id, "Succeeded", RUN_TIMEOUT)
        .await;
    assert!(detail.stages.iter().all(|s| s.environment == "prod"));
    // The first environment cannot be promoted to; an unknown one is a bad request.
    let (status, _) = api_error(
        server
            .admin
            .promote(
                "net",
                &PromoteCreate {
                    environment: "dev".into(),
                    ..PromoteCreate::default()
                },
            )
            .await,
    );
    assert_eq!(status, 422);
    let (status, _) = api_error(
        server
            .admin
            .promote(
                "net",
                &PromoteCreate {
                    environment: "qa".into(),
                    ..PromoteCreate::default()
                },
            )
            .await,
    );
    assert_eq!(status, 422);
    server.stop().await;
}

/// Invariant 1: apply exactly what was approved. The state changes (a direct backend write)
/// between approval and apply: Ferry refuses before any `terraform apply`, and a retry
/// re-plans against the new state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_whose_state_moved_on_is_refused_and_a_retry_replans() {
    let mut server = TestServer::start().await;
    let yaml = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    approval: { required: 2 }\n";
    server
        .project(
            "net",
            &[("ferry.yaml", yaml), ("main.tf", &terraform_data_config(1))],
        )
        .await;
    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let carol = server.user("carol").await;
    let run = server
        .admin
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    waiting_in(&server, run.id, "prod").await;
    bob.approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    // Someone writes the state past Ferry (an admin with a backend client).
    let auth = basic("ops", server.admin_token());
    let (status, text) = raw(
        &server,
        "POST",
        "/tf/state/net/prod",
        Some(&auth),
        state_json(5, "side-door"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    carol
        .approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    let failed = server.wait_status(run.id, "Failed", RUN_TIMEOUT).await;
    let reason = failed.run.reason.clone().unwrap_or_default();
    assert!(reason.contains("STALE_PLAN"), "{reason}");
    assert!(
        reason.contains("side-door"),
        "names the state it found: {reason}"
    );
    let log = server.admin.logs_get(run.id, 0, 10_000).await.unwrap();
    assert!(
        !log.lines
            .iter()
            .any(|l| l.text.starts_with("$ ") && l.text.contains(" apply ")),
        "no terraform apply may start"
    );
    // Retry re-plans against the state as it is now and applies after a fresh approval.
    let retry = bob.runs_retry(run.id).await.unwrap();
    assert_eq!(
        (retry.kind.as_str(), retry.source_run),
        ("retry", Some(run.id))
    );
    waiting_in(&server, retry.id, "prod").await;
    let detail = server.admin.runs_get(retry.id).await.unwrap();
    let state = detail.plans[0]
        .state
        .as_ref()
        .expect("planned against the side-door state");
    assert_eq!((state.lineage.as_str(), state.serial), ("side-door", 5));
    carol
        .approvals_create(retry.id, &approve("prod"))
        .await
        .unwrap();
    // Second approver: the triggerer (bob) may not; use a third identity.
    let dave = server.user("dave").await;
    dave.approvals_create(retry.id, &approve("prod"))
        .await
        .unwrap();
    server.wait_status(retry.id, "Succeeded", RUN_TIMEOUT).await;
    // A succeeded run cannot be retried.
    assert_eq!(api_error(bob.runs_retry(retry.id).await).0, 409);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_file_altered_after_approval_is_refused() {
    let mut server = TestServer::start().await;
    let yaml = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    approval: { required: 2 }\n";
    server
        .project(
            "net",
            &[("ferry.yaml", yaml), ("main.tf", &terraform_data_config(1))],
        )
        .await;
    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let carol = server.user("carol").await;
    let run = server
        .admin
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    waiting_in(&server, run.id, "prod").await;
    bob.approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    let plan = server
        .data_dir()
        .join(format!("plans/run-{}/prod.tfplan", run.id));
    let mut bytes = std::fs::read(&plan).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&plan, bytes).unwrap();
    carol
        .approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    let failed = server.wait_status(run.id, "Failed", RUN_TIMEOUT).await;
    let reason = failed.run.reason.unwrap_or_default();
    assert!(
        reason.contains("STALE_PLAN") && reason.contains("altered"),
        "{reason}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_an_environment_to_an_earlier_commit_through_the_gate() {
    let server = TestServer::start().await;
    let yaml = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: prod\n";
    let repo = ferry_test_support::GitRepo::new();
    repo.write("ferry.yaml", yaml)
        .write("main.tf", &terraform_data_config(2));
    repo.commit("initial");
    server
        .admin
        .projects_create(&ferry_api::ProjectCreate {
            name: "net".into(),
            repo: repo.path().to_string_lossy().into_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let none = RollbackCreate {
        environment: "prod".into(),
        ..RollbackCreate::default()
    };
    assert_eq!(
        api_error(server.admin.rollback("net", &none).await).0,
        409,
        "no history yet"
    );

    let good = server
        .admin
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    waiting_in(&server, good.id, "prod").await;
    bob.approvals_create(good.id, &approve("prod"))
        .await
        .unwrap();
    server.wait_status(good.id, "Succeeded", RUN_TIMEOUT).await;
    // A bad change: five resources instead of two.
    repo.write("main.tf", &terraform_data_config(5));
    repo.commit("bad change");
    let bad = server
        .admin
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    waiting_in(&server, bad.id, "prod").await;
    bob.approvals_create(bad.id, &approve("prod"))
        .await
        .unwrap();
    server.wait_status(bad.id, "Succeeded", RUN_TIMEOUT).await;
    assert_eq!(resources(&server.admin).await, 5);

    let rollback = server.admin.rollback("net", &none).await.unwrap();
    assert_eq!(rollback.kind, "rollback");
    assert_eq!(rollback.commit, good.commit);
    assert_eq!(rollback.source_run, Some(good.id));
    // The rollback waits for an approval like any other run, and its plan destroys three.
    waiting_in(&server, rollback.id, "prod").await;
    let view = bob.approval_view(rollback.id, "prod").await.unwrap();
    let plan = view.plan.unwrap();
    assert_eq!(plan.destroy, 3);
    assert_eq!(
        plan.resources[0].action, "delete",
        "destroys are shown first"
    );
    bob.approvals_create(rollback.id, &approve("prod"))
        .await
        .unwrap();
    server
        .wait_status(rollback.id, "Succeeded", RUN_TIMEOUT)
        .await;
    assert_eq!(resources(&server.admin).await, 2);
    let history = server
        .admin
        .deployments("net", None, Some("prod"))
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|d| (d.run_id, d.run_kind.as_str()))
            .collect::<Vec<_>>(),
        [
            (rollback.id, "rollback"),
            (bad.id, "deploy"),
            (good.id, "deploy")
        ]
    );
    // Rolling back to the commit prod already runs is refused.
    let same = RollbackCreate {
        environment: "prod".into(),
        to_run: Some(good.id),
        ..RollbackCreate::default()
    };
    assert_eq!(api_error(server.admin.rollback("net", &same).await).0, 409);
    server.stop().await;
}

async fn resources(client: &Client) -> usize {
    let state = client.state_show("net", "prod", None, None).await.unwrap();
    state.resources.iter().map(|r| r.instances).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_always_waits_for_approval_and_options_are_recorded() {
    let mut server = TestServer::start().await;
    let yaml = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n";
    server
        .project(
            "net",
            &[("ferry.yaml", yaml), ("main.tf", &terraform_data_config(2))],
        )
        .await;
    let first = server
        .admin
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    server.wait_status(first.id, "Succeeded", RUN_TIMEOUT).await;

    // Bad requests: a destroy without an environment, a malformed address.
    let no_env = RunCreate {
        destroy: true,
        ..RunCreate::default()
    };
    assert_eq!(
        api_error(server.admin.runs_create("net", &no_env).await).0,
        422
    );
    let bad_target = RunCreate {
        targets: vec!["-lock=false".into()],
        ..RunCreate::default()
    };
    assert_eq!(
        api_error(server.admin.runs_create("net", &bad_target).await).0,
        400
    );

    // A targeted replace is recorded on the run and planned as a replacement.
    let replace = server
        .admin
        .runs_create(
            "net",
            &RunCreate {
                replaces: vec!["terraform_data.r[0]".into()],
                ..RunCreate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(replace.options.replaces, ["terraform_data.r[0]"]);
    let detail = server
        .wait_status(replace.id, "Succeeded", RUN_TIMEOUT)
        .await;
    let plan = &detail.plans[0];
    assert_eq!(
        plan.resources
            .iter()
            .map(|r| (r.action.as_str(), r.address.as_str()))
            .collect::<Vec<_>>(),
        [("replace", "terraform_data.r[0]")]
    );

    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let destroy = server
        .admin
        .runs_create(
            "net",
            &RunCreate {
                environment: Some("dev".into()),
                destroy: true,
                ..RunCreate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(destroy.kind, "destroy");
    waiting_in(&server, destroy.id, "dev").await;
    let view = bob.approval_view(destroy.id, "dev").await.unwrap();
    assert!(view.run.options.destroy);
    assert_eq!(view.plan.unwrap().destroy, 2);
    bob.approvals_create(destroy.id, &approve("dev"))
        .await
        .unwrap();
    server
        .wait_status(destroy.id, "Succeeded", RUN_TIMEOUT)
        .await;
    let state = server
        .admin
        .state_show("net", "dev", None, None)
        .await
        .unwrap();
    assert_eq!(
        state.resources.iter().map(|r| r.instances).sum::<usize>(),
        0,
        "{:?}",
        state.resources
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_that_cannot_be_taken_are_refused_and_break_glass_is_loud() {
    let mut server = TestServer::start().await;
    let yaml = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    approval: { approvers: [carol, dave], required: 2 }\n";
    server
        .project(
            "net",
            &[("ferry.yaml", yaml), ("main.tf", &terraform_data_config(1))],
        )
        .await;
    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let carol = server.user("carol").await;
    let run = bob.runs_create("net", &RunCreate::default()).await.unwrap();
    // Not waiting yet (or any more): 409.
    let early = carol.approvals_create(run.id, &approve("prod")).await;
    if let Err(e) = &early {
        assert_eq!(e.status(), Some(409), "{e}");
    }
    waiting_in(&server, run.id, "prod").await;
    // Reject without a comment: 400.
    let (status, _) = api_error(
        carol
            .approvals_create(run.id, &decision("prod", "reject", "  "))
            .await,
    );
    assert_eq!(status, 400);
    // Break glass: not for non-admins, not for rejections, needs a reason.
    let glass = |decision_kind: &str, comment: &str| ApprovalCreate {
        environment: "prod".into(),
        decision: decision_kind.into(),
        comment: comment.into(),
        break_glass: true,
    };
    assert_eq!(
        api_error(
            carol
                .approvals_create(run.id, &glass("approve", "fire"))
                .await
        )
        .0,
        403
    );
    assert_eq!(
        api_error(
            server
                .admin
                .approvals_create(run.id, &glass("reject", "fire"))
                .await
        )
        .0,
        400
    );
    assert_eq!(
        api_error(
            server
                .admin
                .approvals_create(run.id, &glass("approve", ""))
                .await
        )
        .0,
        400
    );
    let run_after = server
        .admin
        .approvals_create(run.id, &glass("approve", "prod is down, INC-42"))
        .await
        .unwrap();
    assert_ne!(
        run_after.status, "WaitingForApproval",
        "break glass satisfies the count alone"
    );
    server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    let events = server
        .admin
        .events(0, &[("type", "MANUAL_APPROVAL_OVERRIDDEN".into())])
        .await
        .unwrap();
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].actor, "admin");
    assert_eq!(
        events.events[0].reason.as_deref(),
        Some("prod is down, INC-42")
    );
    let audit = server
        .admin
        .audit(0, &[("action", "run.break_glass".into())])
        .await
        .unwrap();
    let granted: Vec<_> = audit
        .entries
        .iter()
        .filter(|e| e.outcome == "break_glass")
        .collect();
    assert_eq!(granted.len(), 1, "{:#?}", audit.entries);
    assert!(granted[0].details["plan_sha256"].is_string());
    assert!(audit
        .entries
        .iter()
        .any(|e| e.outcome == "denied" && e.actor == "carol"));
    // Approving a finished run: 409.
    assert_eq!(
        api_error(carol.approvals_create(run.id, &approve("prod")).await).0,
        409
    );
    // Bad event and audit queries: 400.
    assert_eq!(
        server
            .call("GET", "/api/v1/events?type=NOPE", None)
            .await
            .status,
        400
    );
    assert_eq!(
        server
            .call("GET", "/api/v1/audit?since=yesterday", None)
            .await
            .status,
        400
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_events_live_and_resumes_after_the_last_id() {
    use futures::StreamExt;
    let mut server = TestServer::start().await;
    server
        .project(
            "net",
            &[
                ("ferry.yaml", ferry_test_support::MINIMAL_FERRY_YAML),
                ("main.tf", &terraform_data_config(1)),
            ],
        )
        .await;
    let response = server
        .http
        .get(format!(
            "{}/api/v1/events/stream?type=PIPELINE_EXECUTION_SUCCEEDED,PIPELINE_EXECUTION_STARTED",
            server.url
        ))
        .bearer_auth(server.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run = server
        .admin
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while !text.contains("event: PIPELINE_EXECUTION_SUCCEEDED") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the success event arrives")
            .expect("stream open")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: PIPELINE_EXECUTION_STARTED"), "{text}");
    assert!(text.contains(&format!("\"run_id\":{}", run.id)), "{text}");
    let started_id: i64 = text
        .lines()
        .skip_while(|l| *l != "event: PIPELINE_EXECUTION_STARTED")
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .parse()
        .unwrap();
    // Reconnecting with Last-Event-ID resumes after it: the next event is the success.
    let resumed = server
        .http
        .get(format!(
            "{}/api/v1/events/stream?type=PIPELINE_EXECUTION_SUCCEEDED,PIPELINE_EXECUTION_STARTED",
            server.url
        ))
        .bearer_auth(server.admin_token())
        .header("Last-Event-ID", started_id.to_string())
        .send()
        .await
        .unwrap();
    let mut body = resumed.bytes_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&chunk);
    assert!(
        first.contains("event: PIPELINE_EXECUTION_SUCCEEDED"),
        "{first}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_times_out_fails_the_run_on_the_record() {
    let mut server = TestServer::start().await;
    let yaml = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    approval: { timeout: 2s }\n";
    server
        .project(
            "net",
            &[("ferry.yaml", yaml), ("main.tf", &terraform_data_config(1))],
        )
        .await;
    let run = server
        .admin
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    waiting_in(&server, run.id, "prod").await;
    let failed = server.wait_status(run.id, "Failed", RUN_TIMEOUT).await;
    let reason = failed.run.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("MANUAL_APPROVAL_FAILED"), "{reason}");
    let plan = failed.plans[0].sha256.clone();
    // Too late: the run is over.
    let bob = server.user("bob").await;
    let (status, _) = api_error(bob.approvals_create(run.id, &approve("prod")).await);
    assert_eq!(status, 409);
    let events = server
        .admin
        .events(
            0,
            &[
                ("run", run.id.to_string()),
                ("type", "MANUAL_APPROVAL_FAILED".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].details["plan_sha256"], json!(plan));
    let audit = server
        .admin
        .audit(0, &[("action", "run.approval_timeout".into())])
        .await
        .unwrap();
    assert_eq!(audit.entries.len(), 1, "{:#?}", audit.entries);
    assert_eq!(audit.entries[0].actor, "system");
    assert_eq!(audit.entries[0].details["plan_sha256"], json!(plan));
    server.stop().await;
}
