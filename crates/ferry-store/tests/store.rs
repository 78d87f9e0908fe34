//! Behaviour tests of the store on a real SQLite file: transitions checked by the state
//! machine, environment holds and their fairness, superseding, approval rules, and the audit
//! chain written in the same transactions. (When the PostgreSQL store lands, these run
//! against it too.)

use ferry_core::{
    Actor, ApprovalRule, RunEvent, RunId, RunStatus, StageEvent, StageKind, StageStatus,
};
use ferry_secrets::MasterKey;
use ferry_store::{
    ApprovalMode, Decision, EventFilter, Hold, NewAction, NewRun, NewStage, NewWaiver, Plan,
    RunKind, RunOptions, StateBinding, Store, StoreConfig,
};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    project: i64,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        path: dir.path().join("ferry.db"),
        audit_checkpoint: dir.path().join("audit.head"),
    };
    let key = MasterKey::from_bytes([7; 32]);
    let store = Store::open(&config, &key).await.unwrap();
    let project = store
        .create_project(&admin(), "net", "/tmp/repo")
        .await
        .unwrap()
        .id;
    Fixture {
        _dir: dir,
        store,
        project,
    }
}

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        source: "test".into(),
    }
}

fn actor(name: &str) -> Actor {
    Actor {
        name: name.into(),
        source: "test".into(),
    }
}

fn new_run(project: i64, pipeline: &str) -> NewRun {
    let stage = |environment: &str, kind| NewStage {
        environment: environment.into(),
        kind,
        actions: vec![NewAction {
            name: "a".into(),
            kind: "command".into(),
            command: Some("true".into()),
            timeout_ms: 1000,
        }],
    };
    NewRun {
        project_id: project,
        pipeline: pipeline.into(),
        pipeline_path: "ferry.yaml".into(),
        git_ref: "main".into(),
        commit_sha: "0".repeat(40),
        spec_yaml: String::new(),
        first_environment: "prod".into(),
        stages: vec![
            stage("prod", StageKind::Plan),
            NewStage {
                environment: "prod".into(),
                kind: StageKind::Approval,
                actions: vec![],
            },
            stage("prod", StageKind::Apply),
        ],
        kind: RunKind::Deploy,
        options: RunOptions::default(),
        source_run: None,
        commit_author: Some("Dana Dev <dana@example.com>".into()),
    }
}

#[tokio::test]
async fn illegal_transitions_are_refused_and_terminal_runs_close_their_stages() {
    let f = fixture().await;
    let run = f
        .store
        .create_run(&admin(), &new_run(f.project, "p"))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    let err = f
        .store
        .transition_run(run.id, RunEvent::Succeed, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot succeed"), "{err}");
    f.store
        .transition_run(run.id, RunEvent::Start, None, None)
        .await
        .unwrap();
    let detail = f.store.run_detail(run.id).await.unwrap();
    f.store
        .transition_stage(detail.stages[0].id, StageEvent::Start, None)
        .await
        .unwrap();
    let cancelled = f
        .store
        .transition_run(run.id, RunEvent::Cancel, Some("stop"), Some(&actor("bob")))
        .await
        .unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let detail = f.store.run_detail(run.id).await.unwrap();
    let statuses: Vec<_> = detail.stages.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            StageStatus::Cancelled,
            StageStatus::Skipped,
            StageStatus::Skipped
        ]
    );
    assert!(detail.actions.iter().all(|a| a.status.is_terminal()));
    // Audited with the run's context and the extra details, in one entry.
    let records = f.store.audit_records(0, 100).await.unwrap();
    let cancel = records
        .iter()
        .find(|r| r.action == "run.cancel")
        .expect("cancel audited");
    assert_eq!(cancel.actor, "bob");
    assert!(
        cancel.details.contains("\"project\":\"net\"")
            && cancel.details.contains("\"reason\":\"stop\""),
        "{}",
        cancel.details
    );
}

#[tokio::test]
async fn environments_go_to_waiting_runs_in_arrival_order() {
    let f = fixture().await;
    let r1 = f
        .store
        .create_run(&admin(), &new_run(f.project, "p"))
        .await
        .unwrap()
        .id;
    let r2 = f
        .store
        .create_run(&admin(), &new_run(f.project, "p"))
        .await
        .unwrap()
        .id;
    let r3 = f
        .store
        .create_run(&admin(), &new_run(f.project, "p"))
        .await
        .unwrap()
        .id;
    // Runs start queued for their first environment, so nobody can jump the line.
    assert_eq!(
        f.store.acquire_environment(r3, "prod").await.unwrap(),
        Hold::Waiting { holder: None }
    );
    assert_eq!(
        f.store.acquire_environment(r1, "prod").await.unwrap(),
        Hold::Acquired
    );
    assert_eq!(
        f.store.acquire_environment(r2, "prod").await.unwrap(),
        Hold::Waiting { holder: Some(r1) }
    );
    let queue = f.store.queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].holder.as_ref().map(|h| h.0), Some(r1));
    assert_eq!(queue[0].waiting, vec![r2, r3]);
    f.store.release_environment(r1, "prod").await.unwrap();
    assert_eq!(
        f.store.acquire_environment(r3, "prod").await.unwrap(),
        Hold::Waiting { holder: None }
    );
    assert_eq!(
        f.store.acquire_environment(r2, "prod").await.unwrap(),
        Hold::Acquired
    );
    // A different pipeline does not share the environment.
    let other = f
        .store
        .create_run(&admin(), &new_run(f.project, "other"))
        .await
        .unwrap()
        .id;
    assert_eq!(
        f.store.acquire_environment(other, "prod").await.unwrap(),
        Hold::Acquired
    );
    // A finished run gives up its hold and never acquires again.
    f.store
        .transition_run(r2, RunEvent::Cancel, None, Some(&admin()))
        .await
        .unwrap();
    assert_eq!(
        f.store.acquire_environment(r2, "prod").await.unwrap(),
        Hold::RunFinished(RunStatus::Cancelled)
    );
    assert_eq!(
        f.store.acquire_environment(r3, "prod").await.unwrap(),
        Hold::Acquired
    );
}

async fn waiting_for_approval(f: &Fixture, triggered_by: &Actor, pipeline: &str) -> RunId {
    let run = f
        .store
        .create_run(triggered_by, &new_run(f.project, pipeline))
        .await
        .unwrap()
        .id;
    assert_eq!(
        f.store.acquire_environment(run, "prod").await.unwrap(),
        Hold::Acquired
    );
    f.store
        .transition_run(run, RunEvent::Start, None, None)
        .await
        .unwrap();
    f.store
        .record_plan(&Plan {
            run_id: run,
            environment: "prod".into(),
            sha256: "ab".repeat(32),
            has_changes: true,
            summary: "{}".into(),
            plan_path: "/nonexistent".into(),
            json_path: "/nonexistent".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            state: Some(StateBinding {
                lineage: "lin".into(),
                serial: 7,
                version: 3,
            }),
        })
        .await
        .unwrap();
    let stage = f.store.run_detail(run).await.unwrap().stages[1].id;
    f.store
        .transition_stage(stage, StageEvent::Start, None)
        .await
        .unwrap();
    f.store.await_approval(run, stage).await.unwrap();
    run
}

#[tokio::test]
async fn a_newer_run_supersedes_one_waiting_for_approval() {
    let f = fixture().await;
    let old = waiting_for_approval(&f, &admin(), "p").await;
    let new = f
        .store
        .create_run(&admin(), &new_run(f.project, "p"))
        .await
        .unwrap()
        .id;
    assert_eq!(
        f.store.supersede_older(new, "prod").await.unwrap(),
        vec![old]
    );
    let old_run = f.store.run(old).await.unwrap();
    assert_eq!(old_run.status, RunStatus::Superseded);
    assert!(old_run.reason.unwrap().contains(&format!("run {new}")));
    assert_eq!(
        f.store.acquire_environment(new, "prod").await.unwrap(),
        Hold::Acquired
    );
}

#[tokio::test]
async fn approvals_follow_the_rule() {
    let f = fixture().await;
    let alice = actor("alice");
    let run = waiting_for_approval(&f, &alice, "p").await;
    let two = ApprovalRule {
        approvers: vec!["bob".into(), "carol".into(), "alice".into()],
        required: 2,
    };
    let err = f
        .store
        .decide(
            &alice,
            run,
            "prod",
            &two,
            Decision::Approve,
            "mine",
            ApprovalMode::Normal,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ferry_store::Error::Denied(_)), "{err}");
    let err = f
        .store
        .decide(
            &actor("mallory"),
            run,
            "prod",
            &two,
            Decision::Approve,
            "hi",
            ApprovalMode::Normal,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not among"), "{err}");
    let after_one = f
        .store
        .decide(
            &actor("bob"),
            run,
            "prod",
            &two,
            Decision::Approve,
            "ok",
            ApprovalMode::Normal,
        )
        .await
        .unwrap();
    assert_eq!(
        after_one.status,
        RunStatus::WaitingForApproval,
        "one of two approvals"
    );
    let err = f
        .store
        .decide(
            &actor("bob"),
            run,
            "prod",
            &two,
            Decision::Approve,
            "again",
            ApprovalMode::Normal,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already decided"), "{err}");
    let after_two = f
        .store
        .decide(
            &actor("carol"),
            run,
            "prod",
            &two,
            Decision::Approve,
            "ok",
            ApprovalMode::Normal,
        )
        .await
        .unwrap();
    assert_eq!(after_two.status, RunStatus::InProgress);
    let err = f
        .store
        .decide(
            &actor("carol"),
            run,
            "staging",
            &two,
            Decision::Approve,
            "x",
            ApprovalMode::Normal,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ferry_store::Error::Conflict(_)), "{err}");

    let rejected = waiting_for_approval(&f, &alice, "q").await;
    let anyone = ApprovalRule {
        approvers: vec![],
        required: 1,
    };
    let run = f
        .store
        .decide(
            &actor("dave"),
            rejected,
            "prod",
            &anyone,
            Decision::Reject,
            "too risky",
            ApprovalMode::Normal,
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.reason.unwrap().contains("too risky"));
    assert!(f
        .store
        .queue()
        .await
        .unwrap()
        .iter()
        .all(|q| q.holder.as_ref().map(|h| h.0) != Some(rejected)));

    let records = f.store.audit_records(0, 1000).await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.actor == "alice" && r.outcome == "denied"),
        "self-approval is audited"
    );
    let report = f
        .store
        .verify_audit()
        .await
        .unwrap()
        .expect("chain verifies");
    assert_eq!(report.entries as usize, records.len());
}

#[tokio::test]
async fn decisions_are_bound_to_the_plan_and_reported_as_events() {
    let f = fixture().await;
    let run = waiting_for_approval(&f, &actor("alice"), "p").await;
    let one = ApprovalRule {
        approvers: vec![],
        required: 1,
    };
    let err = f
        .store
        .decide(
            &actor("dana"),
            run,
            "prod",
            &one,
            Decision::Approve,
            "I wrote it",
            ApprovalMode::Normal,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("author"), "{err}");
    let two = ApprovalRule {
        approvers: vec![],
        required: 2,
    };
    let run_after = f
        .store
        .decide(
            &actor("bob"),
            run,
            "prod",
            &two,
            Decision::Approve,
            "emergency",
            ApprovalMode::BreakGlass,
        )
        .await
        .unwrap();
    assert_eq!(
        run_after.status,
        RunStatus::InProgress,
        "break glass satisfies the count"
    );
    let detail = f.store.run_detail(run).await.unwrap();
    let approval = &detail.approvals[0];
    assert!(approval.break_glass);
    assert_eq!(
        approval.plan_sha256.as_deref(),
        Some("ab".repeat(32).as_str())
    );
    assert_eq!(
        approval
            .state
            .as_ref()
            .map(|b| (b.lineage.as_str(), b.serial)),
        Some(("lin", 7))
    );
    assert_eq!(
        approval.commit_sha.as_deref(),
        Some("0".repeat(40).as_str())
    );

    let events = f
        .store
        .events(&EventFilter {
            run: Some(run.0),
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "PIPELINE_EXECUTION_STARTED",
            "STAGE_EXECUTION_STARTED",
            "MANUAL_APPROVAL_NEEDED",
            "MANUAL_APPROVAL_OVERRIDDEN",
            "MANUAL_APPROVAL_SUCCEEDED",
        ]
    );
    let overridden = &events[3];
    assert_eq!(overridden.actor, "bob");
    assert_eq!(overridden.environment.as_deref(), Some("prod"));
    assert!(
        overridden.details.contains(&"ab".repeat(32)),
        "{}",
        overridden.details
    );
    // The cursor pages, and filters combine.
    let after = f
        .store
        .events(&EventFilter {
            after: Some(events[2].id),
            run: Some(run.0),
            limit: 1,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, events[3].id);
}

#[tokio::test]
async fn a_policy_violation_fails_action_stage_and_run_with_its_event_at_once() {
    let f = fixture().await;
    let run = f
        .store
        .create_run(&admin(), &new_run(f.project, "p"))
        .await
        .unwrap();
    f.store
        .transition_run(run.id, RunEvent::Start, None, None)
        .await
        .unwrap();
    let detail = f.store.run_detail(run.id).await.unwrap();
    let (stage, action) = (detail.stages[0].id, detail.actions[0].id);
    f.store
        .transition_stage(stage, StageEvent::Start, None)
        .await
        .unwrap();
    f.store.start_action(action, None).await.unwrap();
    f.store
        .record_policy_report(run.id.0, "prod", true, r#"{"entries":[]}"#)
        .await
        .unwrap();
    let reason = "POLICY_VIOLATION: 1 finding at or above high in prod: R-1 on x.y";
    f.store
        .end_action(
            action,
            &ferry_store::ActionEnd {
                event: ferry_core::ActionEvent::Fail,
                exit_code: Some(1),
                error: Some(reason),
                credential: None,
                failure: Some(ferry_store::Failure {
                    reason,
                    event: Some((
                        ferry_core::EventType::PolicyViolation,
                        serde_json::json!({ "findings": [{"rule": "R-1"}] }),
                    )),
                }),
            },
        )
        .await
        .unwrap();
    let detail = f.store.run_detail(run.id).await.unwrap();
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert_eq!(detail.run.reason.as_deref(), Some(reason));
    assert_eq!(detail.stages[0].status, StageStatus::Failed);
    assert_eq!(detail.actions[0].error.as_deref(), Some(reason));
    let events = f
        .store
        .events(&EventFilter {
            run: Some(run.id.0),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let tail = &kinds[kinds.len() - 4..];
    assert_eq!(
        tail,
        [
            "ACTION_EXECUTION_FAILED",
            "POLICY_VIOLATION",
            "STAGE_EXECUTION_FAILED",
            "PIPELINE_EXECUTION_FAILED"
        ]
    );
    let violation = &events[events.len() - 3];
    assert_eq!(violation.environment.as_deref(), Some("prod"));
    assert!(violation.details.contains("R-1"), "{}", violation.details);
    let report = f
        .store
        .policy_report(run.id.0, "prod")
        .await
        .unwrap()
        .unwrap();
    assert!(report.blocked);
    assert_eq!(f.store.policy_reports(run.id.0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn waivers_are_audited_listed_and_revoked_once() {
    let f = fixture().await;
    let new = NewWaiver {
        project_id: f.project,
        rule: "FERRY-S3-004".into(),
        address: "aws_s3_bucket.logs".into(),
        environment: "prod".into(),
        resource_type: Some("aws_s3_bucket".into()),
        reason: "log bucket".into(),
        expires_at: "2030-01-01T00:00:00Z".into(),
        run_id: None,
    };
    let w = f.store.create_waiver(&actor("carol"), &new).await.unwrap();
    assert_eq!(
        (w.created_by.as_str(), w.project.as_str()),
        ("carol", "net")
    );
    assert_eq!(
        f.store.waivers(f.project, false).await.unwrap(),
        std::slice::from_ref(&w)
    );
    let revoked = f.store.revoke_waiver(&actor("dave"), w.id).await.unwrap();
    assert_eq!(revoked.revoked_by.as_deref(), Some("dave"));
    let again = f
        .store
        .revoke_waiver(&actor("dave"), w.id)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already revoked"), "{again}");
    assert!(f.store.waivers(f.project, false).await.unwrap().is_empty());
    assert_eq!(f.store.waivers(f.project, true).await.unwrap().len(), 1);
    let actions: Vec<(String, String)> = f
        .store
        .audit_records(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action.starts_with("policy."))
        .map(|r| (r.action, r.actor))
        .collect();
    assert_eq!(
        actions,
        [
            ("policy.waive".to_owned(), "carol".to_owned()),
            ("policy.unwaive".to_owned(), "dave".to_owned())
        ]
    );
}
